/* Typed readers of the YAML document: every value is checked, converted, and any problem
 * recorded with its position and key path. */
#include <ctype.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "sluice/config_parse.h"

/* Records a problem in `file` (NULL: the configuration file) at `line`:`col`, sorted at
 * `sort_line`:`sort_col` of the configuration file. */
static void vreport_in(struct sl_loader *ld, const char *file, size_t line, size_t col,
                       size_t sort_line, size_t sort_col, const char *fmt, va_list ap)
{
    char msg[1024];

    vsnprintf(msg, sizeof msg, fmt, ap);
    /* Messages quote the file's own text (keys, values, ${VAR} references), which may hold
     * line breaks: one would split a problem over lines of -t output and the reload log, and
     * could forge lines of its own. */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    if (ld->nerrors == ld->cap) {
        size_t cap = ld->cap ? ld->cap * 2 : 16;
        struct sl_ld_problem *p = realloc(ld->problems, cap * sizeof *p);
        if (!p) {
            ld->errors.failed = true;
            ld->nerrors++;
            return;
        }
        ld->problems = p;
        ld->cap = cap;
    }
    size_t off = ld->errors.len;
    if (!file)
        file = ld->file;
    if (line && col)
        sl_cfg_buf_addf(&ld->errors, "%s:%zu:%zu: %s\n", file, line, col, msg);
    else if (line)
        sl_cfg_buf_addf(&ld->errors, "%s:%zu: %s\n", file, line, msg);
    else
        sl_cfg_buf_addf(&ld->errors, "%s: %s\n", file, msg);
    ld->problems[ld->nerrors] =
        (struct sl_ld_problem){sort_line, sort_col, ld->nerrors, off, ld->errors.len - off};
    ld->nerrors++;
}

static void vreport(struct sl_loader *ld, size_t line, size_t col, const char *fmt, va_list ap)
{
    vreport_in(ld, NULL, line, col, line, col, fmt, ap);
}

void sl_ld_report_in(struct sl_loader *ld, const char *file, size_t line, size_t col,
                     const yaml_node_t *at, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vreport_in(ld, file, line, col, at ? at->start_mark.line + 1 : 0,
               at ? at->start_mark.column + 1 : 0, fmt, ap);
    va_end(ap);
}

void sl_ld_report(struct sl_loader *ld, size_t line, size_t col, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vreport(ld, line, col, fmt, ap);
    va_end(ap);
}

void sl_ld_error(struct sl_loader *ld, const yaml_node_t *node, const char *path, const char *fmt,
                 ...)
{
    char msg[1024];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line = node ? node->start_mark.line + 1 : 1;
    size_t col = node ? node->start_mark.column + 1 : 1;
    sl_ld_report(ld, line, col, "%s%s%s", path, *path ? ": " : "", msg);
}

static int by_position(const void *a, const void *b)
{
    const struct sl_ld_problem *x = a, *y = b;

    if (x->line != y->line)
        return x->line < y->line ? -1 : 1;
    if (x->col != y->col)
        return x->col < y->col ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;
}

char *sl_ld_take_errors(struct sl_loader *ld)
{
    struct sl_cfg_buf out = {0};

    if (ld->errors.failed)
        return NULL;
    qsort(ld->problems, ld->nerrors, sizeof *ld->problems, by_position);
    for (size_t i = 0; i < ld->nerrors; i++)
        sl_cfg_buf_add(&out, ld->errors.data + ld->problems[i].off, ld->problems[i].len);
    return sl_cfg_buf_take(&out);
}

void sl_ld_path(char out[SL_LD_PATH_MAX], const char *parent, const char *key)
{
    if (snprintf(out, SL_LD_PATH_MAX, "%s%s%s", parent, *parent ? "." : "", key) < 0)
        out[0] = '\0';
}

void sl_ld_path_index(char out[SL_LD_PATH_MAX], const char *parent, size_t i)
{
    if (snprintf(out, SL_LD_PATH_MAX, "%s[%zu]", parent, i) < 0)
        out[0] = '\0';
}

const char *sl_ld_quote(const char *text, char *out, size_t size)
{
    size_t len = strlen(text), room = size - 3; /* the quotes and the NUL */
    bool cut = len > room;
    size_t take = cut ? room - 3 : len, n = 0;

    out[n++] = '"';
    /* Control characters would break the one-problem-per-line format. */
    for (size_t i = 0; i < take; i++)
        out[n++] = ((unsigned char)text[i] < 0x20 || text[i] == 0x7f) ? '?' : text[i];
    if (cut) {
        memcpy(out + n, "...", 3);
        n += 3;
    }
    out[n++] = '"';
    out[n] = '\0';
    return out;
}

char *sl_ld_strdup(struct sl_loader *ld, const yaml_node_t *node, const char *s)
{
    char *copy = strdup(s);
    if (!copy)
        sl_ld_error(ld, node, "", "out of memory");
    return copy;
}

yaml_node_t *sl_ld_node(struct sl_loader *ld, int id)
{
    return yaml_document_get_node(&ld->doc, id);
}

static size_t node_index(struct sl_loader *ld, const yaml_node_t *node)
{
    return (size_t)(node - ld->doc.nodes.start);
}

static const char *raw(const yaml_node_t *node)
{
    return (const char *)node->data.scalar.value;
}

bool sl_ld_is_null(const yaml_node_t *node)
{
    if (node->type != YAML_SCALAR_NODE || node->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return false;
    const char *s = raw(node);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

const char *sl_ld_describe(struct sl_loader *ld, const yaml_node_t *node, char *out, size_t size)
{
    if (node->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (node->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (sl_ld_is_null(node))
        return "an empty value";
    const char *text = ld->expanded[node_index(ld, node)];
    return sl_ld_quote(text ? text : raw(node), out, size);
}

const char *sl_ld_scalar(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                         const char *expected)
{
    size_t i = node_index(ld, node);
    char got[96];

    if (node->type != YAML_SCALAR_NODE) {
        sl_ld_error(ld, node, path, "expected %s, got %s", expected,
                    sl_ld_describe(ld, node, got, sizeof got));
        return NULL;
    }
    if (ld->expanded[i])
        return ld->expanded[i];
    if (ld->failed[i])
        return NULL;
    if (strlen(raw(node)) != node->data.scalar.length) {
        sl_ld_error(ld, node, path, "expected %s, got a value holding a NUL character", expected);
        ld->failed[i] = 1;
        return NULL;
    }
    char *text = NULL;
    if (sl_expand_env(raw(node), &text) < 0) {
        sl_ld_error(ld, node, path, "%s", text ? text : "out of memory");
        free(text);
        ld->failed[i] = 1;
        return NULL;
    }
    ld->expanded[i] = text;
    return text;
}

static const char *join_names(const char *const *names, char *out, size_t size)
{
    size_t n = 0;

    out[0] = '\0';
    for (size_t i = 0; names[i] && n < size; i++) {
        int w = snprintf(out + n, size - n, "%s%s", i ? ", " : "", names[i]);
        if (w < 0)
            break;
        n += (size_t)w;
    }
    return out;
}

bool sl_ld_mapping(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                   const char *const *keys)
{
    char got[96], kpath[SL_LD_PATH_MAX], names[512];

    if (sl_ld_is_null(node))
        return true;
    if (node->type != YAML_MAPPING_NODE) {
        sl_ld_error(ld, node, path, "expected a mapping, got %s",
                    sl_ld_describe(ld, node, got, sizeof got));
        return false;
    }
    for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = sl_ld_node(ld, p->key);
        if (key->type != YAML_SCALAR_NODE) {
            sl_ld_error(ld, key, path, "expected a key name, got %s",
                        sl_ld_describe(ld, key, got, sizeof got));
            continue;
        }
        sl_ld_path(kpath, path, raw(key));
        size_t k = 0;
        while (keys[k] && strcmp(keys[k], raw(key)) != 0)
            k++;
        if (!keys[k]) {
            sl_ld_error(ld, key, kpath, "unknown key; expected one of %s",
                        join_names(keys, names, sizeof names));
            continue;
        }
        for (yaml_node_pair_t *q = node->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *prev = sl_ld_node(ld, q->key);
            if (prev->type == YAML_SCALAR_NODE && strcmp(raw(prev), raw(key)) == 0) {
                sl_ld_error(ld, key, kpath, "duplicate key; first given at line %zu",
                            prev->start_mark.line + 1);
                break;
            }
        }
    }
    return true;
}

yaml_node_t *sl_ld_get(struct sl_loader *ld, const yaml_node_t *map, const char *key)
{
    if (map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = sl_ld_node(ld, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(raw(k), key) == 0)
            return sl_ld_node(ld, p->value);
    }
    return NULL;
}

long sl_ld_sequence(struct sl_loader *ld, const yaml_node_t *node, const char *path)
{
    char got[96];

    if (sl_ld_is_null(node))
        return 0;
    if (node->type != YAML_SEQUENCE_NODE) {
        sl_ld_error(ld, node, path, "expected a list, got %s",
                    sl_ld_describe(ld, node, got, sizeof got));
        return -1;
    }
    return (long)(node->data.sequence.items.top - node->data.sequence.items.start);
}

yaml_node_t *sl_ld_item(struct sl_loader *ld, const yaml_node_t *seq, size_t i)
{
    return sl_ld_node(ld, seq->data.sequence.items.start[i]);
}

/* The expanded text of map[key] and its node and path, or NULL when absent or reported. */
static const char *value_of(struct sl_loader *ld, const yaml_node_t *map, const char *path,
                            const char *key, const char *expected, char vpath[SL_LD_PATH_MAX],
                            yaml_node_t **vnode)
{
    *vnode = sl_ld_get(ld, map, key);
    if (!*vnode)
        return NULL;
    sl_ld_path(vpath, path, key);
    return sl_ld_scalar(ld, *vnode, vpath, expected);
}

bool sl_ld_string(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                  char **out)
{
    char vpath[SL_LD_PATH_MAX];
    yaml_node_t *v;
    const char *text = value_of(ld, map, path, key, "a string", vpath, &v);

    if (!text)
        return false;
    char *copy = strdup(text);
    if (!copy) {
        sl_ld_error(ld, v, vpath, "out of memory");
        return false;
    }
    free(*out);
    *out = copy;
    return true;
}

bool sl_ld_bool(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                bool *out)
{
    static const char expected[] = "true or false";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v;
    const char *text = value_of(ld, map, path, key, expected, vpath, &v);

    if (!text)
        return false;
    if (!strcmp(text, "true") || !strcmp(text, "True") || !strcmp(text, "TRUE"))
        *out = true;
    else if (!strcmp(text, "false") || !strcmp(text, "False") || !strcmp(text, "FALSE"))
        *out = false;
    else {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return false;
    }
    return true;
}

static int parse_uint(const char *text, uint64_t *out)
{
    uint64_t v = 0;

    if (!*text)
        return -1;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        unsigned d = (unsigned)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *out = v;
    return 0;
}

bool sl_ld_uint(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                uint64_t min, uint64_t max, uint64_t *out)
{
    char vpath[SL_LD_PATH_MAX], got[96], expected[96];
    yaml_node_t *v;
    uint64_t n;

    if (max == UINT64_MAX)
        snprintf(expected, sizeof expected, "an integer of at least %llu", (unsigned long long)min);
    else
        snprintf(expected, sizeof expected, "an integer from %llu to %llu", (unsigned long long)min,
                 (unsigned long long)max);
    const char *text = value_of(ld, map, path, key, expected, vpath, &v);
    if (!text)
        return false;
    if (parse_uint(text, &n) < 0 || n < min || n > max) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return false;
    }
    *out = n;
    return true;
}

bool sl_ld_duration(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                    uint64_t min_ms, uint64_t *out_ms)
{
    static const char expected[] = "a duration such as \"250ms\", \"2s\", \"5m\", \"1h\" or \"1d\"";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v;
    uint64_t ms;
    const char *text = value_of(ld, map, path, key, expected, vpath, &v);

    if (!text)
        return false;
    if (sl_parse_duration_ms(text, &ms) < 0) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return false;
    }
    if (ms < min_ms) {
        sl_ld_error(ld, v, vpath, "expected a duration of at least %llums, got %s",
                    (unsigned long long)min_ms, sl_ld_quote(text, got, sizeof got));
        return false;
    }
    *out_ms = ms;
    return true;
}

bool sl_ld_size(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                uint64_t min, uint64_t *out)
{
    static const char expected[] = "a size such as \"512\", \"16k\", \"1m\" or \"1g\"";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v;
    uint64_t n;
    const char *text = value_of(ld, map, path, key, expected, vpath, &v);

    if (!text)
        return false;
    if (sl_parse_size(text, &n) < 0) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return false;
    }
    if (n < min) {
        sl_ld_error(ld, v, vpath, "expected a size of at least %llu bytes, got %s",
                    (unsigned long long)min, sl_ld_quote(text, got, sizeof got));
        return false;
    }
    *out = n;
    return true;
}

bool sl_ld_enum(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                const char *const *names, int *out)
{
    char vpath[SL_LD_PATH_MAX], got[96], list[256], expected[300];
    yaml_node_t *v;

    snprintf(expected, sizeof expected, "one of %s", join_names(names, list, sizeof list));
    const char *text = value_of(ld, map, path, key, expected, vpath, &v);
    if (!text)
        return false;
    for (int i = 0; names[i]; i++) {
        if (strcmp(names[i], text) == 0) {
            *out = i;
            return true;
        }
    }
    sl_ld_error(ld, v, vpath, "expected %s, got %s", expected, sl_ld_quote(text, got, sizeof got));
    return false;
}

bool sl_ld_sockaddr(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                    struct sl_sockaddr *out)
{
    static const char expected[] =
        "\"host:port\", \"[ipv6]:port\" or \"unix:/path\" with a numeric host or localhost";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v;
    struct sl_sockaddr addr;
    const char *text = value_of(ld, map, path, key, expected, vpath, &v);

    if (!text)
        return false;
    if (sl_parse_sockaddr(text, &addr) < 0) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return false;
    }
    sl_sockaddr_deinit(out);
    *out = addr;
    return true;
}

bool sl_ld_cidrs(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                 struct sl_cidr_list *out)
{
    static const char expected[] =
        "a CIDR such as \"10.0.0.0/8\", \"2001:db8::/32\" or an address, with no host bits "
        "set beyond the prefix";
    char lpath[SL_LD_PATH_MAX], ipath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, map, key);

    if (!v)
        return false;
    sl_ld_path(lpath, path, key);
    long n = sl_ld_sequence(ld, v, lpath);
    if (n <= 0)
        return n == 0;
    struct sl_cidr *items = calloc((size_t)n, sizeof *items);
    if (!items) {
        sl_ld_error(ld, v, lpath, "out of memory");
        return false;
    }
    size_t count = 0;
    for (size_t i = 0; i < (size_t)n; i++) {
        yaml_node_t *item = sl_ld_item(ld, v, i);
        sl_ld_path_index(ipath, lpath, i);
        const char *text = sl_ld_scalar(ld, item, ipath, expected);
        if (!text)
            continue;
        if (sl_cidr_parse(text, &items[count]) < 0) {
            sl_ld_error(ld, item, ipath, "expected %s, got %s", expected,
                        sl_ld_quote(text, got, sizeof got));
            continue;
        }
        count++;
    }
    sl_cidr_list_deinit(out);
    out->items = items;
    out->count = count;
    return count == (size_t)n;
}

static bool valid_name(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '-')
            return false;
    return true;
}

bool sl_ld_name(struct sl_loader *ld, const yaml_node_t *map, const char *path, char **out)
{
    static const char expected[] = "a name of letters, digits, \"_\" and \"-\"";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, map, "name");

    sl_ld_path(vpath, path, "name");
    if (!v) {
        sl_ld_error(ld, map, vpath, "required key is missing; expected %s", expected);
        return false;
    }
    const char *text = sl_ld_scalar(ld, v, vpath, expected);
    if (!text)
        return false;
    if (!valid_name(text)) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return false;
    }
    *out = sl_ld_strdup(ld, v, text);
    return *out != NULL;
}

char *sl_ld_resolve(const struct sl_loader *ld, const char *file)
{
    if (file[0] == '/')
        return strdup(file);
    char *copy = strdup(ld->file);
    if (!copy)
        return NULL;
    const char *dir = dirname(copy);
    size_t n = strlen(dir) + 1 + strlen(file) + 1;
    char *out = malloc(n);
    if (out)
        snprintf(out, n, "%s/%s", dir, file);
    free(copy);
    return out;
}
