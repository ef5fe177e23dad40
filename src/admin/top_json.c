/* GET /top: the query, the merge of the asked limits and the JSON answer (SPEC.md
 * section 8). Keys come from clients: every one goes through sl_json_append_string(). */
#include <event2/buffer.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/json.h"
#include "sluice/rls_config.h"
#include "sluice/top.h"

static int add_list(struct evbuffer *out, const struct sl_top_list *l)
{
    if (evbuffer_add_printf(out, "{\"total\":%llu,\"error_bound\":%llu,\"top\":[",
                            (unsigned long long)l->total, (unsigned long long)l->error_bound) < 0)
        return -1;
    for (size_t i = 0; i < l->n; i++) {
        const struct sl_top_item *it = &l->items[i];
        if (evbuffer_add_printf(out, "%s{\"key\":", i ? "," : "") < 0 ||
            sl_json_append_string(out, it->key, it->len) < 0 ||
            evbuffer_add_printf(out, ",\"count\":%llu,\"error\":%llu}",
                                (unsigned long long)it->count, (unsigned long long)it->error) < 0)
            return -1;
    }
    return evbuffer_add(out, "]}", 2);
}

static int add_limit(struct evbuffer *out, struct sl_top *top, const struct sl_limit *lim,
                     uint64_t now_us, size_t n, bool first)
{
    struct sl_top_report r;
    const char *route = lim->route ? lim->route->name : "";

    if (sl_top_read(top, lim, now_us, n, &r) < 0)
        return -1;
    int rc = evbuffer_add_printf(out, "%s{\"route\":", first ? "" : ",") < 0 ||
                     sl_json_append_string(out, route, strlen(route)) < 0 ||
                     evbuffer_add_printf(out, ",\"limit\":") < 0 ||
                     sl_json_append_string(out, lim->name, strlen(lim->name)) < 0 ||
                     evbuffer_add_printf(out, ",\"requests\":") < 0 || add_list(out, &r.seen) < 0 ||
                     evbuffer_add_printf(out, ",\"denials\":") < 0 ||
                     add_list(out, &r.denied) < 0 || evbuffer_add(out, "}", 1) < 0
                 ? -1
                 : 0;
    sl_top_report_deinit(&r);
    return rc;
}

static int error_body(struct evbuffer *out, const char *error, const char *message)
{
    return evbuffer_add_printf(out, "{\"error\":\"%s\",\"message\":", error) < 0 ||
                   sl_json_append_string(out, message, strlen(message)) < 0 ||
                   evbuffer_add(out, "}\n", 2) < 0
               ? -1
               : 0;
}

/* `n` as the query gives it: an integer from 1 to SL_TOP_K. */
static bool parse_n(const char *text, size_t *n)
{
    size_t v = 0;
    if (!*text)
        return false;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9' || v > SL_TOP_K)
            return false;
        v = v * 10 + (size_t)(*p - '0');
    }
    if (v < 1 || v > SL_TOP_K)
        return false;
    *n = v;
    return true;
}

/* The rate limit service's limits, by "rls:DOMAIN/FULL_KEY", and each in turn when listing. */
struct rls_walk {
    const char *spec;
    size_t route_len;
    const struct sl_limit *found;
    struct evbuffer *out;
    struct sl_top *top;
    uint64_t now_us;
    size_t n;
    bool *first;
    int rc;
};

static void find_rls(struct sl_rls_limit *l, void *arg)
{
    struct rls_walk *w = arg;
    const char *route = l->lim.route->name;
    if (l->lim.alg && strlen(route) == w->route_len && memcmp(route, w->spec, w->route_len) == 0 &&
        strcmp(l->full_key, w->spec + w->route_len + 1) == 0)
        w->found = &l->lim;
}

static int add_limit(struct evbuffer *out, struct sl_top *top, const struct sl_limit *lim,
                     uint64_t now_us, size_t n, bool first);

static void list_rls(struct sl_rls_limit *l, void *arg)
{
    struct rls_walk *w = arg;
    if (!l->lim.alg || w->rc < 0 || (w->found && w->found != &l->lim))
        return;
    w->rc = add_limit(w->out, w->top, &l->lim, w->now_us, w->n, *w->first);
    *w->first = false;
}

static const struct sl_limit *find_limit(const struct sl_config *cfg, const char *spec)
{
    const char *slash = strchr(spec, '/');
    if (!slash)
        return NULL;
    if (strncmp(spec, "rls:", 4) == 0) {
        struct rls_walk w = {.spec = spec, .route_len = (size_t)(slash - spec)};
        sl_rls_config_each_limit(cfg->rls.files, find_rls, &w);
        return w.found;
    }
    size_t rlen = (size_t)(slash - spec);
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const struct sl_route *route = &cfg->routes[r];
        if (strlen(route->name) != rlen || memcmp(route->name, spec, rlen) != 0)
            continue;
        for (size_t l = 0; l < route->nlimits; l++)
            if (strcmp(route->limits[l].name, slash + 1) == 0)
                return &route->limits[l];
    }
    return NULL;
}

int sl_top_render(struct sl_top *top, const struct sl_config *cfg, const char *query,
                  uint64_t now_us, struct evbuffer *out)
{
    struct evkeyvalq params;
    const struct sl_limit *only = NULL;
    size_t n = SL_TOP_DEFAULT_N;
    char msg[320];
    int status = 200;

    /* Fills `params` (initialised first) whatever it returns. */
    if (evhttp_parse_query_str(query ? query : "", &params) < 0) {
        status = 400;
        if (error_body(out, "bad_request", "the query string is malformed") < 0)
            status = -1;
        goto out;
    }
    const char *nv = evhttp_find_header(&params, "n");
    const char *lv = evhttp_find_header(&params, "limit");
    if (nv && !parse_n(nv, &n)) {
        snprintf(msg, sizeof msg, "n: expected an integer from 1 to %d, got \"%.200s\"", SL_TOP_K,
                 nv);
        status = error_body(out, "bad_request", msg) < 0 ? -1 : 400;
        goto out;
    }
    if (lv && !(only = find_limit(cfg, lv))) {
        snprintf(msg, sizeof msg, "limit: no limit \"%.200s\" (expected ROUTE/LIMIT)", lv);
        status = error_body(out, "unknown_limit", msg) < 0 ? -1 : 404;
        goto out;
    }

    uint64_t span_s = sl_top_window_us(top, now_us) / 1000000;
    if (evbuffer_add_printf(out, "{\"window_seconds\":%llu,\"memory_bytes\":%zu,\"limits\":[",
                            (unsigned long long)span_s, sl_top_memory(top)) < 0)
        goto fail;
    bool firstlim = true;
    for (size_t r = 0; r < cfg->nroutes; r++) {
        for (size_t l = 0; l < cfg->routes[r].nlimits; l++) {
            const struct sl_limit *lim = &cfg->routes[r].limits[l];
            if (only && lim != only)
                continue;
            if (add_limit(out, top, lim, now_us, n, firstlim) < 0)
                goto fail;
            firstlim = false;
        }
    }
    /* The rate limit service's limits with a sketch of their own, after the routes'. */
    struct rls_walk w = {
        .found = only, .out = out, .top = top, .now_us = now_us, .n = n, .first = &firstlim};
    if (!only || (only->route && strncmp(only->route->name, "rls:", 4) == 0))
        sl_rls_config_each_limit(cfg->rls.files, list_rls, &w);
    if (w.rc < 0)
        goto fail;
    if (evbuffer_add(out, "]}\n", 3) < 0)
        goto fail;
    goto out;
fail:
    status = -1;
out:
    evhttp_clear_headers(&params);
    return status;
}
