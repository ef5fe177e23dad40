/* One envoyproxy/ratelimit configuration file into the configuration: its domain, its
 * descriptors, nested, and their rate_limit blocks, with ratelimit's checks (loadConfig and
 * loadDescriptors in its src/config/config_impl.go):
 *   - the domain is not empty, and not already loaded from another file unless domains
 *     merge;
 *   - every descriptor has a non-empty key, and no two siblings share a composite key
 *     ("key" or "key_value");
 *   - a rate_limit's unit is one of second ... year, in any case, unless it is unlimited,
 *     which must have none;
 *   - no replaces entry is empty or the limit's own name;
 *   - share_threshold only on a composite key holding a '*'.
 * Beyond them, sluice's `algorithm` and `burst`, checked as a route's limits check them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rls_yaml.h"
#include "sluice/limit.h"

/* The files are a few KiB; a bound keeps a wrong path (a log, a device) from being read. */
#define MAX_FILE_BYTES (16u << 20)

/* sluice's own bounds on a limit (a route's limits have the same): the sliding log keeps
 * each admitted request, and burst feeds exact integer arithmetic. */
#define SLIDING_WINDOW_MAX 100000
#define BURST_MAX 1000000000

static const char *const unit_names[] = {"SECOND", "MINUTE", "HOUR", "DAY",
                                         "MONTH",  "YEAR",   "WEEK", NULL};
static const enum sl_rls_unit unit_values[] = {
    SL_RLS_UNIT_SECOND, SL_RLS_UNIT_MINUTE, SL_RLS_UNIT_HOUR, SL_RLS_UNIT_DAY,
    SL_RLS_UNIT_MONTH,  SL_RLS_UNIT_YEAR,   SL_RLS_UNIT_WEEK,
};

static enum sl_rls_unit parse_unit(const char *s)
{
    for (size_t i = 0; unit_names[i]; i++)
        if (strcasecmp(s, unit_names[i]) == 0)
            return unit_values[i];
    return SL_RLS_UNIT_UNKNOWN;
}

static void oom(struct sl_rls_reader *r, const yaml_node_t *node)
{
    sl_rls_y_report(r, node, "", "out of memory");
}

/* rate_limit.replaces: a list of {name: ...}, numbered in the domain. */
static void load_replaces(struct sl_rls_reader *r, struct sl_rls_domain *dom, const yaml_node_t *rl,
                          const char *path, struct sl_rls_limit *lim)
{
    char lpath[SL_RLS_PATH_MAX], ipath[SL_RLS_PATH_MAX], npath[SL_RLS_PATH_MAX];
    yaml_node_t *v = sl_rls_y_get(r, rl, "replaces");

    sl_rls_y_join(lpath, path, "replaces");
    long n = sl_rls_y_list(r, v, lpath);
    if (n <= 0)
        return;
    int *ids = calloc((size_t)n, sizeof *ids);
    if (!ids) {
        oom(r, v);
        return;
    }
    lim->replaces = ids;
    for (size_t i = 0; i < (size_t)n; i++) {
        sl_rls_y_join_index(ipath, lpath, i);
        yaml_node_t *item = sl_rls_y_item(r, v, i, ipath), *at;
        if (!item)
            continue;
        sl_rls_y_check_keys(r, item, ipath, false);
        const char *name = sl_rls_y_string(r, item, ipath, "name", &at);
        if (!name)
            continue;
        sl_rls_y_join(npath, ipath, "name");
        if (!*name) {
            sl_rls_y_report(r, at ? at : item, npath, "should not have an empty replaces entry");
            continue;
        }
        if (strcmp(name, lim->name) == 0) {
            sl_rls_y_report(r, at, npath,
                            "replaces should not contain name of same descriptor (\"%s\")", name);
            continue;
        }
        int id = sl_rls_domain_intern(dom, name);
        if (id < 0) {
            oom(r, at);
            continue;
        }
        ids[lim->nreplaces++] = id;
    }
}

/* algorithm and burst: the algorithm's view of the limit. */
static void load_algorithm(struct sl_rls_reader *r, const yaml_node_t *rl, const char *path,
                           struct sl_rls_limit *lim)
{
    char vpath[SL_RLS_PATH_MAX], got[96];
    yaml_node_t *at, *burst_at = sl_rls_y_get(r, rl, "burst");
    const char *name = sl_rls_y_string(r, rl, path, "algorithm", &at);
    struct sl_limit *l = &lim->lim;
    uint64_t burst;

    if (lim->unlimited) {
        if (at || burst_at) {
            sl_rls_y_join(vpath, path, at ? "algorithm" : "burst");
            sl_rls_y_report(r, at ? at : burst_at, vpath,
                            "an unlimited rate_limit is never counted: it takes no %s",
                            at ? "algorithm" : "burst");
        }
        return;
    }
    if (!name)
        return;
    l->alg = sl_algorithm_find(*name ? name : "fixed_window");
    if (!l->alg) {
        const struct sl_algorithm_ops *const *all = sl_algorithm_all();
        char list[256];
        size_t n = 0;
        list[0] = '\0';
        for (size_t i = 0; all[i] && n < sizeof list; i++)
            n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", all[i]->name);
        sl_rls_y_join(vpath, path, "algorithm");
        sl_rls_y_report(r, at, vpath, "expected one of %s, got %s", list,
                        sl_rls_y_describe(at, got, sizeof got));
        return;
    }
    l->count = lim->requests_per_unit;
    l->period_us = sl_rls_unit_seconds(lim->unit) * 1000000;
    l->shadow = lim->shadow_mode;
    l->name = (char *)lim->full_key;
    l->burst = l->alg->burst_defaults_to_count ? l->count : 0;
    sl_rls_y_join(vpath, path, "burst");
    if (burst_at && !l->alg->has_burst)
        sl_rls_y_report(r, burst_at, vpath, "burst is not supported by %s", l->alg->name);
    else if (sl_rls_y_uint(r, rl, path, "burst", BURST_MAX, &burst))
        l->burst = burst;
    if (strcmp(l->alg->name, "sliding_window") == 0 && l->count > SLIDING_WINDOW_MAX) {
        sl_rls_y_join(vpath, path, "requests_per_unit");
        sl_rls_y_report(r, sl_rls_y_get(r, rl, "requests_per_unit"), vpath,
                        "expected at most %d requests for sliding_window (it logs each one; use "
                        "sliding_window_counter for more), got %llu",
                        SLIDING_WINDOW_MAX, (unsigned long long)l->count);
    }
}

/* A descriptor's rate_limit block, or NULL when it has none (or it was reported). */
static struct sl_rls_limit *load_limit(struct sl_rls_reader *r, struct sl_rls_domain *dom,
                                       const yaml_node_t *desc, const char *dpath,
                                       const char *full_key)
{
    char path[SL_RLS_PATH_MAX], vpath[SL_RLS_PATH_MAX], got[96];
    yaml_node_t *rl = sl_rls_y_get(r, desc, "rate_limit"), *unit_at;
    uint64_t rpu = 0;

    if (!rl || sl_rls_y_is_null(rl))
        return NULL;
    sl_rls_y_join(path, dpath, "rate_limit");
    if (rl->type != YAML_MAPPING_NODE) {
        sl_rls_y_report(r, rl, path, "expected a mapping with unit and requests_per_unit, got %s",
                        sl_rls_y_describe(rl, got, sizeof got));
        return NULL;
    }
    sl_rls_y_check_keys(r, rl, path, true);
    struct sl_rls_limit *lim = calloc(1, sizeof *lim);
    const char *name = sl_rls_y_string(r, rl, path, "name", NULL);
    if (!lim || !(lim->name = strdup(name ? name : "")) || !(lim->full_key = strdup(full_key))) {
        oom(r, rl);
        goto fail;
    }
    lim->unlimited = sl_rls_y_bool(r, rl, path, "unlimited");
    lim->shadow_mode = sl_rls_y_bool(r, desc, dpath, "shadow_mode");
    lim->quota_mode = sl_rls_y_bool(r, desc, dpath, "quota_mode");
    lim->detailed_metric = sl_rls_y_bool(r, desc, dpath, "detailed_metric");
    if (sl_rls_y_uint(r, rl, path, "requests_per_unit", UINT32_MAX, &rpu))
        lim->requests_per_unit = (uint32_t)rpu;
    const char *unit = sl_rls_y_string(r, rl, path, "unit", &unit_at);
    lim->unit = unit ? parse_unit(unit) : SL_RLS_UNIT_UNKNOWN;
    sl_rls_y_join(vpath, path, "unit");
    if (lim->unlimited && lim->unit != SL_RLS_UNIT_UNKNOWN)
        sl_rls_y_report(r, unit_at, vpath, "should not specify rate limit unit when unlimited");
    else if (!lim->unlimited && unit && lim->unit == SL_RLS_UNIT_UNKNOWN)
        sl_rls_y_report(r, unit_at ? unit_at : rl, vpath,
                        "invalid rate limit unit \"%s\"; expected second, minute, hour, day, "
                        "week, month or year",
                        unit);
    lim->name_id = -1;
    if (lim->name[0] && (lim->name_id = sl_rls_domain_intern(dom, lim->name)) < 0)
        oom(r, rl);
    load_replaces(r, dom, rl, path, lim);
    load_algorithm(r, rl, path, lim);
    /* ratelimit's fixed window, not sluice's: every hit counted, no debt. */
    if (lim->lim.alg == sl_algorithm_find("fixed_window"))
        lim->lim.alg = &sl_alg_rls_fixed_window;
    lim->lim.route = &dom->route;
    lim->file = r->file;
    lim->line = rl->start_mark.line + 1;
    lim->column = rl->start_mark.column + 1;
    return lim;

fail:
    if (lim) {
        free((char *)lim->name);
        free((char *)lim->full_key);
        free(lim);
    }
    return NULL;
}

static void load_descriptors(struct sl_rls_reader *r, struct sl_rls_domain *dom,
                             struct sl_rls_node *parent, const yaml_node_t *list, const char *path,
                             const char *parent_key);

/* One descriptor of `list`, added under `parent`. */
static void load_descriptor(struct sl_rls_reader *r, struct sl_rls_domain *dom,
                            struct sl_rls_node *parent, const yaml_node_t *desc, const char *path,
                            const char *parent_key)
{
    char kpath[SL_RLS_PATH_MAX], got[96], *full = NULL;
    yaml_node_t *key_at, *meta;
    const char *key = sl_rls_y_string(r, desc, path, "key", &key_at);
    const char *value = sl_rls_y_string(r, desc, path, "value", NULL);
    struct sl_rls_node *node = NULL;

    sl_rls_y_check_keys(r, desc, path, false);
    sl_rls_y_join(kpath, path, "key");
    if (key && !*key)
        sl_rls_y_report(r, key_at ? key_at : desc, kpath, "descriptor has empty key");
    if (!key || !*key || !value)
        return;
    node = calloc(1, sizeof *node);
    /* asprintf() leaves its pointer undefined when it fails. */
    if (node && asprintf(&node->composite, "%s%s%s", key, *value ? "_" : "", value) < 0)
        node->composite = NULL;
    if (node && node->composite && asprintf(&full, "%s%s", parent_key, node->composite) < 0)
        full = NULL;
    if (!node || !node->composite || !full || !(node->key = strdup(key)) ||
        !(node->value = strdup(value))) {
        oom(r, desc);
        goto fail;
    }
    node->composite_len = strlen(node->composite);
    node->file = r->file;
    node->line = desc->start_mark.line + 1;
    struct sl_rls_node *twin = sl_rls_node_kid(parent, node->composite);
    if (twin) {
        sl_rls_y_report(r, key_at, path,
                        "duplicate descriptor composite key \"%s\"; first given at %s%s%zu", full,
                        twin->file == r->file ? "" : twin->file,
                        twin->file == r->file ? "line " : ":", twin->line);
        goto fail;
    }
    node->value_to_metric = sl_rls_y_bool(r, desc, path, "value_to_metric");
    node->share_threshold = sl_rls_y_bool(r, desc, path, "share_threshold");
    if (node->share_threshold && !strchr(node->composite, '*'))
        sl_rls_y_report(r, sl_rls_y_get(r, desc, "share_threshold"), path,
                        "share_threshold can only be used with wildcard values (containing "
                        "'*'), but found key \"%s\"",
                        node->composite);
    if ((meta = sl_rls_y_get(r, desc, "metadata")) && !sl_rls_y_is_null(meta) &&
        meta->type != YAML_MAPPING_NODE) {
        sl_rls_y_join(kpath, path, "metadata");
        sl_rls_y_report(r, meta, kpath, "expected a mapping, got %s",
                        sl_rls_y_describe(meta, got, sizeof got));
    }
    node->limit = load_limit(r, dom, desc, path, full);
    if (!node->limit) {
        /* Read for their checks alone: ratelimit decodes them whether or not they matter. */
        sl_rls_y_bool(r, desc, path, "shadow_mode");
        sl_rls_y_bool(r, desc, path, "quota_mode");
        sl_rls_y_bool(r, desc, path, "detailed_metric");
    }
    if (sl_rls_node_add(parent, node) < 0) {
        oom(r, desc);
        goto fail;
    }
    char *below = NULL;
    if (asprintf(&below, "%s.", full) < 0) {
        oom(r, desc);
    } else {
        sl_rls_y_join(kpath, path, "descriptors");
        load_descriptors(r, dom, node, sl_rls_y_get(r, desc, "descriptors"), kpath, below);
        free(below);
    }
    free(full);
    return;

fail:
    if (node) {
        sl_rls_node_deinit(node);
        free(node);
    }
    free(full);
}

static void load_descriptors(struct sl_rls_reader *r, struct sl_rls_domain *dom,
                             struct sl_rls_node *parent, const yaml_node_t *list, const char *path,
                             const char *parent_key)
{
    char ipath[SL_RLS_PATH_MAX];
    long n = sl_rls_y_list(r, list, path);

    for (long i = 0; i < n; i++) {
        sl_rls_y_join_index(ipath, path, (size_t)i);
        yaml_node_t *desc = sl_rls_y_item(r, list, (size_t)i, ipath);
        if (desc)
            load_descriptor(r, dom, parent, desc, ipath, parent_key);
    }
}

static struct sl_rls_domain *find_domain(struct sl_rls_config *cfg, const char *name)
{
    for (size_t i = 0; i < cfg->ndomains; i++)
        if (strcmp(cfg->domains[i]->root.key, name) == 0)
            return cfg->domains[i];
    return NULL;
}

/* "rls:DOMAIN", the stores' route name for the domain's limits; NULL on ENOMEM. */
static char *route_name(const char *domain)
{
    size_t n = strlen(domain);
    char *s = malloc(4 + n + 1);
    if (s) {
        memcpy(s, "rls:", 4);
        memcpy(s + 4, domain, n + 1);
    }
    return s;
}

static struct sl_rls_domain *new_domain(struct sl_rls_reader *r, const char *name,
                                        const yaml_node_t *at)
{
    struct sl_rls_config *cfg = r->cfg;
    struct sl_rls_domain *dom = calloc(1, sizeof *dom);

    if (!dom || !(dom->root.key = strdup(name)) || !(dom->root.value = strdup("")) ||
        !(dom->root.composite = strdup(name)) || !(dom->route.name = route_name(name)))
        goto fail;
    dom->root.composite_len = strlen(name);
    dom->root.file = r->file;
    dom->root.line = at->start_mark.line + 1;
    if (cfg->ndomains == cfg->cap) {
        size_t cap = cfg->cap ? cfg->cap * 2 : 8;
        struct sl_rls_domain **d = realloc(cfg->domains, cap * sizeof *d);
        if (!d)
            goto fail;
        cfg->domains = d;
        cfg->cap = cap;
    }
    cfg->domains[cfg->ndomains++] = dom;
    return dom;

fail:
    sl_rls_domain_free(dom);
    oom(r, at);
    return NULL;
}

static void load_root(struct sl_rls_reader *r)
{
    yaml_node_t *root = yaml_document_get_root_node(&r->doc), *at;
    char got[96], *parent_key = NULL;

    if (!root || sl_rls_y_is_null(root)) {
        sl_rls_error(r->errors, r->file, 1, 1, "domain: config file cannot have empty domain");
        return;
    }
    if (root->type != YAML_MAPPING_NODE) {
        sl_rls_y_report(r, root, "", "expected a mapping with domain and descriptors, got %s",
                        sl_rls_y_describe(root, got, sizeof got));
        return;
    }
    sl_rls_y_check_keys(r, root, "", false);
    const char *name = sl_rls_y_string(r, root, "", "domain", &at);
    if (!name)
        return;
    if (!*name) {
        sl_rls_y_report(r, at ? at : root, "domain", "config file cannot have empty domain");
        return;
    }
    struct sl_rls_domain *dom = find_domain(r->cfg, name);
    if (dom && !r->merge_domains) {
        sl_rls_y_report(r, at, "domain",
                        "duplicate domain \"%s\" in config file; %s has it already", name,
                        dom->root.file);
        return;
    }
    if (!dom && !(dom = new_domain(r, name, at)))
        return;
    if (asprintf(&parent_key, "%s.", name) < 0) {
        oom(r, at);
        return;
    }
    load_descriptors(r, dom, &dom->root, sl_rls_y_get(r, root, "descriptors"), "descriptors",
                     parent_key);
    free(parent_key);
}

static int read_all(const char *file, char **out, size_t *out_len, struct sl_rls_errors *errors)
{
    char *data = NULL;
    size_t len = 0, cap = 0;
    struct stat st;
    int fd = open(file, O_RDONLY | O_CLOEXEC);

    if (fd < 0 || (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))) {
        sl_rls_error(errors, file, 0, 0, "cannot open: %s", strerror(fd < 0 ? errno : EISDIR));
        goto fail;
    }
    for (;;) {
        if (len == cap) {
            if (cap > MAX_FILE_BYTES) {
                sl_rls_error(errors, file, 0, 0, "cannot read: larger than 16 MiB");
                goto fail;
            }
            cap = cap ? cap * 2 : 4096;
            char *bigger = realloc(data, cap + 1);
            if (!bigger) {
                sl_rls_error(errors, file, 0, 0, "cannot read: %s", strerror(ENOMEM));
                goto fail;
            }
            data = bigger;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sl_rls_error(errors, file, 0, 0, "cannot read: %s", strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    *out = data;
    *out_len = len;
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    free(data);
    return -1;
}

void sl_rls_load_file(struct sl_rls_config *cfg, const char *file, bool merge_domains,
                      struct sl_rls_errors *errors)
{
    struct sl_rls_reader r = {
        .cfg = cfg, .file = file, .merge_domains = merge_domains, .errors = errors};
    yaml_parser_t parser;
    char *text = NULL;
    size_t len = 0;

    if (read_all(file, &text, &len, errors) < 0)
        return;
    if (!yaml_parser_initialize(&parser)) {
        sl_rls_error(errors, file, 0, 0, "out of memory");
        free(text);
        return;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &r.doc)) {
        sl_rls_error(errors, file, parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                     "error loading config file: %s%s%s",
                     parser.problem ? parser.problem : "not YAML", parser.context ? " " : "",
                     parser.context ? parser.context : "");
    } else {
        load_root(&r);
        yaml_document_delete(&r.doc);
    }
    yaml_parser_delete(&parser);
    free(text);
}
