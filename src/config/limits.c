/* A route's limits: algorithm, rate, key sources, store and the algorithm's options. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "sluice/config_parse.h"
#include "sluice/limit.h"
#include "sluice/store_memory.h"

static const char key_expected[] = "a key source (client_ip, header:NAME, query:NAME, "
                                   "cookie:NAME, method, path, host or route)";

static bool is_token_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&'*+-.^_`|~", c));
}

int sl_ld_key_source(const char *text, struct sl_key_source *out)
{
    static const struct {
        const char *name;
        enum sl_key_kind kind;
    } plain[] = {
        {"client_ip", SL_KEY_CLIENT_IP}, {"method", SL_KEY_METHOD}, {"path", SL_KEY_PATH},
        {"host", SL_KEY_HOST},           {"route", SL_KEY_ROUTE},
        {"tls_client_subject", SL_KEY_TLS_CLIENT_SUBJECT},
    };
    static const struct {
        const char *prefix;
        enum sl_key_kind kind;
    } named[] = {
        {"header:", SL_KEY_HEADER},
        {"query:", SL_KEY_QUERY},
        {"cookie:", SL_KEY_COOKIE},
    };

    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++) {
        if (strcmp(text, plain[i].name) == 0) {
            *out = (struct sl_key_source){.kind = plain[i].kind};
            return 0;
        }
    }
    for (size_t i = 0; i < sizeof named / sizeof named[0]; i++) {
        size_t plen = strlen(named[i].prefix);
        if (strncmp(text, named[i].prefix, plen) != 0)
            continue;
        const char *name = text + plen;
        if (!*name)
            return -1;
        if (named[i].kind == SL_KEY_HEADER)
            for (const char *c = name; *c; c++)
                if (!is_token_char(*c))
                    return -1;
        char *copy = strdup(name);
        if (!copy)
            return -1;
        *out = (struct sl_key_source){named[i].kind, copy, strlen(copy)};
        return 0;
    }
    return -1;
}

static void load_keys(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      struct sl_limit *lim)
{
    char kpath[SL_LD_PATH_MAX], ipath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, node, "key");

    if (!v)
        return; /* the default, client_ip, is already in place */
    sl_ld_path(kpath, path, "key");
    bool single = v->type == YAML_SCALAR_NODE;
    long n = single ? 1 : sl_ld_sequence(ld, v, kpath);
    if (n < 0)
        return;
    if (n == 0) {
        sl_ld_error(ld, v, kpath, "expected %s or a list of them, got an empty list", key_expected);
        return;
    }
    struct sl_key_source *keys = calloc((size_t)n, sizeof *keys);
    if (!keys) {
        sl_ld_error(ld, v, kpath, "out of memory");
        return;
    }
    size_t count = 0;
    for (size_t i = 0; i < (size_t)n; i++) {
        yaml_node_t *item = single ? v : sl_ld_item(ld, v, i);
        if (single)
            snprintf(ipath, sizeof ipath, "%s", kpath);
        else
            sl_ld_path_index(ipath, kpath, i);
        const char *text = sl_ld_scalar(ld, item, ipath, key_expected);
        if (!text)
            continue;
        if (sl_ld_key_source(text, &keys[count]) < 0) {
            sl_ld_error(ld, item, ipath, "expected %s, got %s", key_expected,
                        sl_ld_quote(text, got, sizeof got));
            continue;
        }
        count++;
    }
    if (count != (size_t)n) {
        for (size_t i = 0; i < count; i++)
            free(keys[i].name);
        free(keys);
        return;
    }
    free(lim->keys);
    lim->keys = keys;
    lim->nkeys = count;
}

static const struct sl_algorithm_ops *load_algorithm(struct sl_loader *ld, const yaml_node_t *node,
                                                     const char *path)
{
    char vpath[SL_LD_PATH_MAX], got[96], expected[300];
    const struct sl_algorithm_ops *const *all = sl_algorithm_all();
    size_t n = (size_t)snprintf(expected, sizeof expected, "one of");

    for (size_t i = 0; all[i] && n < sizeof expected; i++)
        n += (size_t)snprintf(expected + n, sizeof expected - n, "%s %s", i ? "," : "",
                              all[i]->name);
    sl_ld_path(vpath, path, "algorithm");
    yaml_node_t *v = sl_ld_get(ld, node, "algorithm");
    if (!v) {
        sl_ld_error(ld, node, vpath, "required key is missing; expected %s", expected);
        return NULL;
    }
    const char *text = sl_ld_scalar(ld, v, vpath, expected);
    if (!text)
        return NULL;
    const struct sl_algorithm_ops *alg = sl_algorithm_find(text);
    if (!alg)
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
    return alg;
}

static void load_rate(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      struct sl_limit *lim)
{
    static const char expected[] = "\"N/unit\" such as \"100/s\" or \"5/10m\"";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, node, "rate");

    sl_ld_path(vpath, path, "rate");
    if (!v) {
        sl_ld_error(ld, node, vpath, "required key is missing; expected %s", expected);
        return;
    }
    const char *text = sl_ld_scalar(ld, v, vpath, expected);
    if (!text)
        return;
    if (sl_parse_rate(text, &lim->count, &lim->period_us) < 0) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return;
    }
    lim->rate_text = sl_ld_strdup(ld, v, text);
}

/* Rates the decisions cannot hold exactly are refused here rather than failing at run
 * time: the sliding log keeps 8 bytes per admitted request per key, and the Redis scripts
 * compute in Lua numbers (doubles), exact only below 2^53. A state headed by its rate (with
 * `rates:`) takes 16 bytes more in memory. */
const char *sl_ld_quota_problem(const struct sl_config *cfg, const struct sl_limit *lim,
                                const struct sl_quota *q, char *msg, size_t size)
{
    static const uint64_t max_count = 1000000000, max_period_us = 366ull * 86400 * 1000000;
    static const uint64_t max_log = 100000;
    const double exact = 9007199254740992.0; /* 2^53 */
    const char *alg = lim->alg->name;
    size_t head = lim->rates ? sizeof(struct sl_rate) : 0;
    size_t state = lim->alg->state_size(q);

    if (q->count > max_count || q->period_us > max_period_us) {
        snprintf(msg, size, "expected at most %llu requests per at most 366d",
                 (unsigned long long)max_count);
    } else if (strcmp(alg, "sliding_window") == 0 && q->count > max_log) {
        snprintf(msg, size,
                 "expected at most %llu requests for sliding_window (it logs each one; "
                 "use sliding_window_counter for more)",
                 (unsigned long long)max_log);
    } else if ((lim->store == SL_STORE_MEMORY || cfg->failure_mode == SL_FAILURE_LOCAL) &&
               state + head >
                   sl_store_memory_max_state(cfg->memory_max_keys, cfg->memory_max_bytes)) {
        size_t room = sl_store_memory_max_state(cfg->memory_max_keys, cfg->memory_max_bytes);
        snprintf(msg, size,
                 "expected a per-key state the memory store has room for (%s: %zu bytes, "
                 "at most %zu with memory.max_bytes %llu; raise memory.max_bytes)",
                 alg, state + head, room, (unsigned long long)cfg->memory_max_bytes);
    } else if (lim->store == SL_STORE_REDIS) {
        double p = (double)q->period_us, n = (double)q->count, b = (double)q->burst;
        bool counter = strcmp(alg, "sliding_window_counter") == 0;
        bool bucket = strcmp(alg, "token_bucket") == 0 || strcmp(alg, "leaky_bucket") == 0;
        if (!((counter && n * p >= exact) || (bucket && (b + 1) * p + n >= exact)))
            return NULL;
        snprintf(msg, size,
                 "expected a smaller rate or burst for %s on the redis store (%s must "
                 "stay below 2^53 microseconds)",
                 alg, counter ? "N times the period" : "(burst + 1) times the period");
    } else {
        return NULL;
    }
    return msg;
}

static void check_bounds(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                         const struct sl_config *cfg, const struct sl_limit *lim)
{
    yaml_node_t *v = sl_ld_get(ld, node, "rate");
    char vpath[SL_LD_PATH_MAX], got[96], msg[300];
    struct sl_quota q = sl_limit_quota(lim);

    sl_ld_path(vpath, path, "rate");
    sl_ld_quote(lim->rate_text ? lim->rate_text : "", got, sizeof got);
    if (sl_ld_quota_problem(cfg, lim, &q, msg, sizeof msg))
        sl_ld_error(ld, v, vpath, "%s, got %s", msg, got);
}

/* Reports `option` (burst or delay) given to an algorithm that has no use for it. */
static void reject_option(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                          const char *option, const struct sl_algorithm_ops *alg, bool burst)
{
    const struct sl_algorithm_ops *const *all = sl_algorithm_all();
    char vpath[SL_LD_PATH_MAX], which[200];
    size_t n = 0;

    which[0] = '\0';
    for (size_t i = 0; all[i] && n < sizeof which; i++)
        if (burst ? all[i]->has_burst : all[i]->has_delay)
            n += (size_t)snprintf(which + n, sizeof which - n, "%s%s", n ? ", " : "", all[i]->name);
    sl_ld_path(vpath, path, option);
    sl_ld_error(ld, sl_ld_get(ld, node, option), vpath, "%s is not supported by %s (only by %s)",
                option, alg->name, which);
}

/* Reports `cost` or `charge` on an algorithm that does not take units. */
static void reject_units(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                         const char *option, const struct sl_algorithm_ops *alg)
{
    const struct sl_algorithm_ops *const *all = sl_algorithm_all();
    char vpath[SL_LD_PATH_MAX], which[200];
    size_t n = 0;

    which[0] = '\0';
    for (size_t i = 0; all[i] && n < sizeof which; i++)
        if (all[i]->has_units)
            n += (size_t)snprintf(which + n, sizeof which - n, "%s%s", n ? ", " : "", all[i]->name);
    sl_ld_path(vpath, path, option);
    sl_ld_error(ld, sl_ld_get(ld, node, option), vpath,
                "%s is not supported by %s: it admits whole requests (only %s count units)", option,
                alg->name, which);
}

/* A header name after `prefix` in `text`, copied to `*out`; -1 when it is not one. */
static int parse_header_ref(const char *text, const char *prefix, char **out, size_t *len)
{
    size_t plen = strlen(prefix);
    if (strncmp(text, prefix, plen) != 0 || !text[plen])
        return -1;
    for (const char *c = text + plen; *c; c++)
        if (!is_token_char(*c))
            return -1;
    if (!(*out = strdup(text + plen)))
        return -1;
    *len = strlen(*out);
    return 0;
}

/* `cost`: a number of units (0 to 2^32) or "header:NAME". A constant above the limit's
 * capacity could never be admitted: refused here rather than denying every request. */
static void load_cost(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      struct sl_limit *lim)
{
    static const char expected[] = "a number of units from 0 to 4294967296, or \"header:NAME\"";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, node, "cost");

    if (!v)
        return;
    sl_ld_path(vpath, path, "cost");
    if (!lim->alg->has_units) {
        reject_units(ld, node, path, "cost", lim->alg);
        return;
    }
    const char *text = sl_ld_scalar(ld, v, vpath, expected);
    if (!text)
        return;
    if (parse_header_ref(text, "header:", &lim->cost_header, &lim->cost_header_len) == 0) {
        lim->cost_kind = SL_COST_HEADER;
        return;
    }
    char *end;
    errno = 0;
    unsigned long long units = strtoull(text, &end, 10);
    if (!(*text >= '0' && *text <= '9') || *end || errno || units > SL_UNITS_MAX) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return;
    }
    if (units > sl_limit_capacity(lim)) {
        sl_ld_error(ld, v, vpath,
                    "expected at most the limit's capacity (%s %llu), got %llu: such a request "
                    "could never be admitted",
                    lim->alg->has_burst ? "burst" : "N of the rate",
                    (unsigned long long)sl_limit_capacity(lim), units);
        return;
    }
    lim->cost_kind = SL_COST_CONST;
    lim->cost = units;
}

/* A dot path of map keys: non-empty segments of printable characters other than '.'. */
static bool is_dot_path(const char *p)
{
    size_t seg = 0, nsegs = 1;
    for (; *p; p++) {
        if (*p == '.') {
            if (seg == 0)
                return false;
            seg = 0;
            nsegs++;
        } else if ((unsigned char)*p <= ' ' || *p == 0x7f) {
            return false;
        } else {
            seg++;
        }
    }
    return seg > 0 && nsegs <= 16;
}

/* `charge`: "response_header:NAME" or "response_json:PATH". The limit becomes a budget
 * charged after the fact. */
static void load_charge(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                        struct sl_limit *lim)
{
    static const char expected[] = "\"response_header:NAME\" or \"response_json:PATH\" (a dot "
                                   "path of at most 16 keys such as usage.total_tokens)";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, node, "charge");

    if (!v)
        return;
    sl_ld_path(vpath, path, "charge");
    if (!lim->alg->has_units) {
        reject_units(ld, node, path, "charge", lim->alg);
        return;
    }
    const char *text = sl_ld_scalar(ld, v, vpath, expected);
    if (!text)
        return;
    if (parse_header_ref(text, "response_header:", &lim->charge_name, &lim->charge_name_len) == 0) {
        lim->charge_kind = SL_CHARGE_HEADER;
        return;
    }
    const char *json = "response_json:";
    if (strncmp(text, json, strlen(json)) == 0 && is_dot_path(text + strlen(json))) {
        lim->charge_kind = SL_CHARGE_JSON;
        lim->charge_name = sl_ld_strdup(ld, v, text + strlen(json));
        lim->charge_name_len = lim->charge_name ? strlen(lim->charge_name) : 0;
        return;
    }
    sl_ld_error(ld, v, vpath, "expected %s, got %s", expected, sl_ld_quote(text, got, sizeof got));
}

static void load_store(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                       const struct sl_config *cfg, struct sl_limit *lim)
{
    static const char *const stores[] = {"memory", "redis", NULL};
    char vpath[SL_LD_PATH_MAX];
    int store;

    lim->store = cfg->redis.enabled ? SL_STORE_REDIS : SL_STORE_MEMORY;
    if (!sl_ld_enum(ld, node, path, "store", stores, &store))
        return;
    lim->store = store == 1 ? SL_STORE_REDIS : SL_STORE_MEMORY;
    if (lim->store == SL_STORE_REDIS && !cfg->redis.enabled) {
        sl_ld_path(vpath, path, "store");
        sl_ld_error(ld, sl_ld_get(ld, node, "store"), vpath,
                    "expected memory, got \"redis\", which needs a top-level redis block");
    }
}

static void load_name(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      const struct sl_route *route, struct sl_limit *lim)
{
    char vpath[SL_LD_PATH_MAX];
    /* path is "routes[i].limits[j]": the earlier limits share its prefix. */
    int prefix = (int)(strrchr(path, '[') - path);

    if (!sl_ld_name(ld, node, path, &lim->name))
        return;
    for (size_t j = 0; j + 1 < route->nlimits; j++) {
        if (route->limits[j].name && strcmp(route->limits[j].name, lim->name) == 0) {
            sl_ld_path(vpath, path, "name");
            sl_ld_error(ld, sl_ld_get(ld, node, "name"), vpath,
                        "duplicate limit name \"%s\"; %.*s[%zu] has it already", lim->name, prefix,
                        path, j);
            return;
        }
    }
}

static void load_limit(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                       const struct sl_config *cfg, struct sl_route *route)
{
    static const char *const keys[] = {"name",  "algorithm", "rate", "key",    "store", "burst",
                                       "delay", "shadow",    "cost", "charge", "rates", NULL};
    struct sl_limit *lim = &route->limits[route->nlimits++];
    char got[96];

    lim->route = route;
    lim->delay = true;
    lim->keys = calloc(1, sizeof *lim->keys);
    if (lim->keys) {
        lim->keys[0].kind = SL_KEY_CLIENT_IP;
        lim->nkeys = 1;
    }
    if (node->type != YAML_MAPPING_NODE) {
        sl_ld_error(ld, node, path,
                    "expected a limit (a mapping with name, algorithm, rate, key), got %s",
                    sl_ld_describe(ld, node, got, sizeof got));
        return;
    }
    sl_ld_mapping(ld, node, path, keys);
    load_name(ld, node, path, route, lim);
    lim->alg = load_algorithm(ld, node, path);
    load_rate(ld, node, path, lim);
    load_keys(ld, node, path, lim);
    load_store(ld, node, path, cfg, lim);
    if (!lim->alg)
        return;

    bool has_burst = sl_ld_get(ld, node, "burst") != NULL;
    if (has_burst && !lim->alg->has_burst)
        reject_option(ld, node, path, "burst", lim->alg, true);
    else if (!(lim->burst_set = sl_ld_uint(ld, node, path, "burst", 0, 1000000000, &lim->burst)))
        lim->burst = lim->alg->burst_defaults_to_count ? lim->count : 0;

    if (sl_ld_get(ld, node, "delay") && !lim->alg->has_delay)
        reject_option(ld, node, path, "delay", lim->alg, false);
    else
        sl_ld_bool(ld, node, path, "delay", &lim->delay);
    sl_ld_bool(ld, node, path, "shadow", &lim->shadow);
    if (lim->count) {
        /* Before the bounds: a state headed by its rate is larger. */
        sl_ld_rates(ld, node, path, cfg, lim);
        check_bounds(ld, node, path, cfg, lim);
        load_cost(ld, node, path, lim);
        load_charge(ld, node, path, lim);
    }
}

void sl_ld_limits(struct sl_loader *ld, const yaml_node_t *route_node, const char *path,
                  struct sl_config *cfg, struct sl_route *route)
{
    char lpath[SL_LD_PATH_MAX], ipath[SL_LD_PATH_MAX];
    yaml_node_t *v = sl_ld_get(ld, route_node, "limits");

    if (!v)
        return;
    sl_ld_path(lpath, path, "limits");
    long n = sl_ld_sequence(ld, v, lpath);
    if (n <= 0)
        return;
    if (n > SL_MAX_LIMITS_PER_ROUTE) {
        sl_ld_error(ld, v, lpath, "expected at most %d limits per route, got %ld",
                    SL_MAX_LIMITS_PER_ROUTE, n);
        return;
    }
    route->limits = calloc((size_t)n, sizeof *route->limits);
    if (!route->limits) {
        sl_ld_error(ld, v, lpath, "out of memory");
        return;
    }
    for (size_t i = 0; i < (size_t)n; i++) {
        sl_ld_path_index(ipath, lpath, i);
        load_limit(ld, sl_ld_item(ld, v, i), ipath, cfg, route);
    }
}
