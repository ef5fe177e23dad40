/* Typed readers of an envoyproxy/ratelimit configuration file's YAML nodes, each problem
 * reported with its position and key path.
 *
 * ratelimit decodes the file twice with yaml.v2: once as a generic map, whose keys must all
 * be strings from one fixed set wherever they stand and whose lists must hold mappings only,
 * then into its typed structure. The same checks are made here in one walk, every problem is
 * reported with its position and key path, and reading goes on after one so that a run
 * names them all. Scalars resolve as YAML 1.1 (yaml.v2) resolves them: a plain 0.25 or yes
 * as a key is not a string, a string field takes any scalar's text, a bool field takes the
 * words of YAML 1.1 unquoted. ${VAR} is not expanded: ratelimit does not. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rls_yaml.h"

/* ratelimit's keys (validKeys in its config_impl.go), accepted at any depth as it accepts
 * them; the ones a position has no use for are ignored there, as ratelimit ignores them. */
static const char *const valid_keys[] = {
    "domain",
    "key",
    "value",
    "descriptors",
    "rate_limit",
    "unit",
    "requests_per_unit",
    "unlimited",
    "shadow_mode",
    "quota_mode",
    "name",
    "replaces",
    "detailed_metric",
    "value_to_metric",
    "share_threshold",
    "metadata",
    NULL,
};

/* The same, for messages. */
static const char known_keys[] =
    "domain, key, value, descriptors, rate_limit, unit, requests_per_unit, unlimited, "
    "shadow_mode, quota_mode, name, replaces, detailed_metric, value_to_metric, "
    "share_threshold, metadata";

/* sluice's own, in a rate_limit block only. */
static const char *const rate_limit_keys[] = {"algorithm", "burst", NULL};

void sl_rls_y_report(struct sl_rls_reader *r, const yaml_node_t *node, const char *path,
                     const char *fmt, ...)
{
    char msg[768];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    sl_rls_error(r->errors, r->file, node ? node->start_mark.line + 1 : 1,
                 node ? node->start_mark.column + 1 : 1, "%s%s%s", path, *path ? ": " : "", msg);
}

void sl_rls_y_join(char out[SL_RLS_PATH_MAX], const char *parent, const char *key)
{
    if (snprintf(out, SL_RLS_PATH_MAX, "%s%s%s", parent, *parent ? "." : "", key) < 0)
        out[0] = '\0';
}

void sl_rls_y_join_index(char out[SL_RLS_PATH_MAX], const char *parent, size_t i)
{
    if (snprintf(out, SL_RLS_PATH_MAX, "%s[%zu]", parent, i) < 0)
        out[0] = '\0';
}

static yaml_node_t *node_at(struct sl_rls_reader *r, int id)
{
    return yaml_document_get_node(&r->doc, id);
}

static const char *text(const yaml_node_t *n)
{
    return (const char *)n->data.scalar.value;
}

static bool plain(const yaml_node_t *n)
{
    return n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
}

static bool one_of(const char *s, const char *const *words)
{
    for (; *words; words++)
        if (strcmp(s, *words) == 0)
            return true;
    return false;
}

static const char *const true_words[] = {"y",    "Y",    "yes", "Yes", "YES", "true",
                                         "True", "TRUE", "on",  "On",  "ON",  NULL};
static const char *const false_words[] = {"n",     "N",     "no",  "No",  "NO",  "false",
                                          "False", "FALSE", "off", "Off", "OFF", NULL};
static const char *const null_words[] = {"", "~", "null", "Null", "NULL", NULL};

bool sl_rls_y_is_null(const yaml_node_t *n)
{
    return plain(n) && one_of(text(n), null_words);
}

/* A plain scalar YAML 1.1 reads as a number: an integer (decimal, 0x, 0o, 0b, with '_'
 * between digits) or a float (also .inf and .nan). */
static bool is_number(const char *s)
{
    static const char *const special[] = {".inf",  ".Inf",  ".INF",  "+.inf", "+.Inf",
                                          "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
                                          ".NaN",  ".NAN",  NULL};
    char clean[128], *end;
    size_t n = 0;

    if (one_of(s, special))
        return true;
    for (; *s && n + 1 < sizeof clean; s++)
        if (*s != '_')
            clean[n++] = *s;
    clean[n] = '\0';
    if (!n || *s)
        return false;
    const char *digits = clean + (clean[0] == '+' || clean[0] == '-');
    if (digits[0] == '0' && (digits[1] == 'b' || digits[1] == 'o')) {
        errno = 0;
        strtoull(digits + 2, &end, digits[1] == 'b' ? 2 : 8);
        return digits[2] && !*end;
    }
    errno = 0;
    strtod(clean, &end);
    return !*end && strpbrk(clean, "0123456789") != NULL;
}

/* Whether yaml.v2 decodes `n` as a string: a quoted scalar, or a plain one that is not a
 * bool, null or number. */
static bool is_string(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE)
        return false;
    if (!plain(n))
        return true;
    const char *s = text(n);
    return !one_of(s, true_words) && !one_of(s, false_words) && !one_of(s, null_words) &&
           !is_number(s);
}

const char *sl_rls_y_describe(const yaml_node_t *n, char *out, size_t size)
{
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (sl_rls_y_is_null(n))
        return "an empty value";
    size_t len = strlen(text(n));
    if (len + 3 > size)
        snprintf(out, size, "\"%.*s...\"", (int)(size - 6), text(n));
    else
        snprintf(out, size, "\"%s\"", text(n));
    return out;
}

/* Checks the keys of mapping `map` (ratelimit's validateYamlKeys, plus repeated keys). */
void sl_rls_y_check_keys(struct sl_rls_reader *r, const yaml_node_t *map, const char *path,
                         bool in_rate_limit)
{
    char kpath[SL_RLS_PATH_MAX], got[96];

    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *key = node_at(r, p->key);
        if (!is_string(key)) {
            sl_rls_y_report(r, key, path, "key is not of type string: %s",
                            sl_rls_y_describe(key, got, sizeof got));
            continue;
        }
        sl_rls_y_join(kpath, path, text(key));
        if (!one_of(text(key), valid_keys) &&
            !(in_rate_limit && one_of(text(key), rate_limit_keys))) {
            sl_rls_y_report(r, key, kpath, "unknown key \"%s\"; expected one of %s%s", text(key),
                            in_rate_limit ? "algorithm, burst, " : "", known_keys);
            continue;
        }
        for (yaml_node_pair_t *q = map->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *prev = node_at(r, q->key);
            if (prev->type == YAML_SCALAR_NODE && strcmp(text(prev), text(key)) == 0) {
                sl_rls_y_report(r, key, kpath, "duplicate key; first given at line %zu",
                                prev->start_mark.line + 1);
                break;
            }
        }
    }
}

yaml_node_t *sl_rls_y_get(struct sl_rls_reader *r, const yaml_node_t *map, const char *key)
{
    if (map->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
         p++) {
        yaml_node_t *k = node_at(r, p->key);
        if (k->type == YAML_SCALAR_NODE && strcmp(text(k), key) == 0)
            return node_at(r, p->value);
    }
    return NULL;
}

/* map[key] as a string: a scalar's text, "" when absent or empty; NULL, reported, when the
 * value is a mapping or a list. */
const char *sl_rls_y_string(struct sl_rls_reader *r, const yaml_node_t *map, const char *path,
                            const char *key, yaml_node_t **where)
{
    char vpath[SL_RLS_PATH_MAX], got[96];
    yaml_node_t *v = sl_rls_y_get(r, map, key);

    if (where)
        *where = v;
    if (!v || sl_rls_y_is_null(v))
        return "";
    if (v->type != YAML_SCALAR_NODE) {
        sl_rls_y_join(vpath, path, key);
        sl_rls_y_report(r, v, vpath, "expected a string, got %s",
                        sl_rls_y_describe(v, got, sizeof got));
        return NULL;
    }
    return text(v);
}

bool sl_rls_y_bool(struct sl_rls_reader *r, const yaml_node_t *map, const char *path,
                   const char *key)
{
    char vpath[SL_RLS_PATH_MAX], got[96];
    yaml_node_t *v = sl_rls_y_get(r, map, key);

    if (!v || sl_rls_y_is_null(v))
        return false;
    if (plain(v) && one_of(text(v), true_words))
        return true;
    if (!(plain(v) && one_of(text(v), false_words))) {
        sl_rls_y_join(vpath, path, key);
        sl_rls_y_report(r, v, vpath, "expected true or false, got %s",
                        sl_rls_y_describe(v, got, sizeof got));
    }
    return false;
}

/* map[key] as an unsigned integer up to `max`; `*out` keeps its value when absent or bad. */
bool sl_rls_y_uint(struct sl_rls_reader *r, const yaml_node_t *map, const char *path,
                   const char *key, uint64_t max, uint64_t *out)
{
    char vpath[SL_RLS_PATH_MAX], got[96];
    yaml_node_t *v = sl_rls_y_get(r, map, key);
    uint64_t n = 0;

    if (!v)
        return false;
    if (sl_rls_y_is_null(v)) {
        *out = 0;
        return true;
    }
    const char *s = v->type == YAML_SCALAR_NODE && plain(v) ? text(v) : "";
    s += *s == '+';
    bool ok = *s != '\0';
    for (const char *c = s; ok && *c; c++) {
        ok = *c >= '0' && *c <= '9' && n <= (max - (uint64_t)(*c - '0')) / 10;
        n = n * 10 + (uint64_t)(*c - '0');
    }
    if (!ok) {
        sl_rls_y_join(vpath, path, key);
        sl_rls_y_report(r, v, vpath, "expected an integer from 0 to %llu, got %s",
                        (unsigned long long)max, sl_rls_y_describe(v, got, sizeof got));
        return false;
    }
    *out = n;
    return true;
}

/* A list's length (0 when absent or empty); -1, reported, when `v` is not a list. Each item
 * must be a mapping, as ratelimit wants of every list: those that are not are reported and
 * skipped by the caller (item_ok). */
long sl_rls_y_list(struct sl_rls_reader *r, const yaml_node_t *v, const char *path)
{
    char got[96];

    if (!v || sl_rls_y_is_null(v))
        return 0;
    if (v->type != YAML_SEQUENCE_NODE) {
        sl_rls_y_report(r, v, path, "expected a list, got %s",
                        sl_rls_y_describe(v, got, sizeof got));
        return -1;
    }
    return (long)(v->data.sequence.items.top - v->data.sequence.items.start);
}

yaml_node_t *sl_rls_y_item(struct sl_rls_reader *r, const yaml_node_t *seq, size_t i,
                           const char *path)
{
    char got[96];
    yaml_node_t *item = node_at(r, seq->data.sequence.items.start[i]);

    if (item->type == YAML_MAPPING_NODE)
        return item;
    sl_rls_y_report(r, item, path, "expected a mapping (lists hold mappings only), got %s",
                    sl_rls_y_describe(item, got, sizeof got));
    return NULL;
}
