/* GET /dashboard.json and the sampling behind its charts (dashboard.h). Every number comes
 * from the registry through metrics_read.c, as /metrics does, so the page and a scrape
 * agree; strings go through sl_json_append_string(). */
#include "dashboard.h"

#include <event2/buffer.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "history.h"
#include "metrics_internal.h"
#include "sluice/json.h"
#include "sluice/limit.h"
#include "sluice/store_memory.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif

struct sl_dashboard {
    struct sl_metrics *metrics;
    struct sl_top *top;
    struct sl_history *history;
    /* Route ids whose counters existed at the last sample: a route sampled for the first
     * time without its bit was first used since, so its whole count is one interval's. */
    uint64_t touched[SL_METRICS_MAX_ROUTES / 64];
    struct sl_history_point *points; /* scratch of the sampler */
    size_t npoints_cap;
};

struct sl_dashboard *sl_dashboard_new(struct sl_metrics *metrics, struct sl_top *top,
                                      uint64_t now_ms)
{
    struct sl_dashboard *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    d->metrics = metrics;
    d->top = top;
    d->history = sl_history_new(now_ms);
    if (!d->history) {
        free(d);
        return NULL;
    }
    return d;
}

void sl_dashboard_free(struct sl_dashboard *d)
{
    if (!d)
        return;
    sl_history_free(d->history);
    free(d->points);
    free(d);
}

int sl_dashboard_sample(struct sl_dashboard *d, const struct sl_config *cfg, uint64_t now_ms)
{
    size_t nroutes = cfg ? cfg->nroutes : 0, n = 0;

    for (size_t r = 0; r < nroutes; r++) {
        const struct sl_route *route = &cfg->routes[r];
        unsigned id = route->metrics_id;
        uint64_t counts[SL_OUTCOME_COUNT];
        if (id >= SL_METRICS_MAX_ROUTES || !sl_metrics_route_requests(d->metrics, id, counts))
            continue;
        /* Room for the used routes only: a large table mostly unused costs nothing here. */
        if (n == d->npoints_cap) {
            size_t cap = d->npoints_cap ? 2 * d->npoints_cap : 64;
            struct sl_history_point *p = realloc(d->points, cap * sizeof *p);
            if (!p)
                return -1;
            d->points = p;
            d->npoints_cap = cap;
        }
        uint64_t bit = 1ull << (id % 64);
        d->points[n++] =
            (struct sl_history_point){route->name, counts[SL_OUTCOME_ALLOWED],
                                      counts[SL_OUTCOME_LIMITED], !(d->touched[id / 64] & bit)};
        d->touched[id / 64] |= bit;
    }
    return sl_history_sample(d->history, d->points, n, now_ms);
}

/* ---- the JSON answer ---- */

struct out {
    struct evbuffer *buf;
    int err;
};

__attribute__((format(printf, 2, 3))) static void put(struct out *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (evbuffer_add_vprintf(o->buf, fmt, ap) < 0)
        o->err = -1;
    va_end(ap);
}

static void str(struct out *o, const char *s)
{
    if (sl_json_append_string(o->buf, s, strlen(s)) < 0)
        o->err = -1;
}

/* `"name":[v0,v1,...]` */
static void u64_array(struct out *o, const char *name, const uint64_t *v, size_t n)
{
    put(o, "\"%s\":[", name);
    for (size_t i = 0; i < n; i++)
        put(o, "%s%" PRIu64, i ? "," : "", v[i]);
    put(o, "]");
}

static const char levels[SL_DASHBOARD_LEVELS + 1] =
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

/* One series as one character a point: its rate in steps of `peak` / 61, a rate above
 * zero never shown as zero. */
static void series(struct out *o, const char *name, const double *rate, size_t n, double peak)
{
    char text[SL_HISTORY_SAMPLES + 1];
    for (size_t i = 0; i < n; i++) {
        int step = peak > 0 ? (int)(rate[i] / peak * (SL_DASHBOARD_LEVELS - 1) + 0.5) : 0;
        if (step == 0 && rate[i] > 0)
            step = 1;
        text[i] = levels[step];
    }
    text[n] = '\0';
    put(o, ",\"%s\":\"%s\"", name, text);
}

/* The route's charts: per-second rates over the history's intervals, and their sums. */
static void charts(struct out *o, struct sl_dashboard *d, const struct sl_route *route,
                   const uint32_t *ms, size_t nms)
{
    uint64_t grew[2][SL_HISTORY_SAMPLES];
    double rate[2][SL_HISTORY_SAMPLES], peak = 0;
    uint64_t sum[2] = {0, 0};
    size_t n = sl_history_read(d->history, route->name, grew[0], grew[1]);

    for (size_t i = 0; i < n; i++) {
        /* The route's intervals are the newest of the history's. */
        uint32_t span = ms[nms - n + i];
        for (int s = 0; s < 2; s++) {
            rate[s][i] = span ? (double)grew[s][i] * 1000.0 / span : 0;
            sum[s] += grew[s][i];
        }
        /* The page stacks the two: the peak is that of their sum. */
        if (rate[0][i] + rate[1][i] > peak)
            peak = rate[0][i] + rate[1][i];
    }
    put(o, ",\"window\":[%" PRIu64 ",%" PRIu64 "]", sum[0], sum[1]);
    put(o, ",\"last\":[%.6g,%.6g],\"peak\":%.6g", n ? rate[0][n - 1] : 0.0,
        n ? rate[1][n - 1] : 0.0, peak);
    series(o, "allowed", rate[0], n, peak);
    series(o, "limited", rate[1], n, peak);
}

static void limit_json(struct out *o, struct sl_dashboard *d, const struct sl_limit *lim)
{
    static const char *const stores[] = {"memory", "redis"};
    uint64_t checks[SL_CHECK_RESULT_COUNT];

    sl_metrics_limit_checks(d->metrics, lim->metrics_id, checks);
    put(o, "{\"name\":");
    str(o, lim->name);
    put(o, ",\"algorithm\":");
    str(o, lim->alg ? lim->alg->name : "");
    put(o, ",\"rate\":");
    str(o, lim->rate_text ? lim->rate_text : "");
    put(o, ",\"burst\":%" PRIu64 ",\"store\":\"%s\"", lim->burst,
        stores[lim->store == SL_STORE_REDIS]);
    if (lim->shadow)
        put(o, ",\"shadow\":true");
    put(o, ",");
    u64_array(o, "checks", checks, SL_CHECK_RESULT_COUNT);
    put(o, "}");
}

/* Every used route of `cfg`, in file order. */
static void routes_json(struct out *o, struct sl_dashboard *d, const struct sl_config *cfg)
{
    uint32_t ms[SL_HISTORY_SAMPLES];
    size_t nms = sl_history_intervals(d->history, ms);
    bool first = true;

    put(o, "\"routes\":[");
    for (size_t r = 0; r < cfg->nroutes; r++) {
        const struct sl_route *route = &cfg->routes[r];
        uint64_t counts[SL_OUTCOME_COUNT];
        if (route->metrics_id >= SL_METRICS_MAX_ROUTES ||
            !sl_metrics_route_requests(d->metrics, route->metrics_id, counts))
            continue;
        put(o, "%s{\"name\":", first ? "" : ",");
        first = false;
        str(o, route->name);
        if (route->shadow)
            put(o, ",\"shadow\":true");
        put(o, ",");
        u64_array(o, "requests", counts, SL_OUTCOME_COUNT);
        charts(o, d, route, ms, nms);
        put(o, ",\"limits\":[");
        for (size_t l = 0; l < route->nlimits; l++) {
            put(o, "%s", l ? "," : "");
            limit_json(o, d, &route->limits[l]);
        }
        put(o, "]}");
    }
    put(o, "]");
}

/* ---- top keys ---- */

struct top_entry {
    const struct sl_limit *lim;
    struct sl_top_report report;
};

static int busiest_first(const void *a, const void *b)
{
    const struct top_entry *x = a, *y = b;
    if (x->report.denied.total != y->report.denied.total)
        return x->report.denied.total < y->report.denied.total ? 1 : -1;
    if (x->report.seen.total != y->report.seen.total)
        return x->report.seen.total < y->report.seen.total ? 1 : -1;
    return x->lim->index < y->lim->index ? -1 : x->lim->index > y->lim->index;
}

/* A key cut to SL_DASHBOARD_KEY_BYTES at the start of a UTF-8 character, marked with "…". */
static int key_json(struct evbuffer *buf, const struct sl_top_item *it)
{
    size_t len = it->len;
    if (len <= SL_DASHBOARD_KEY_BYTES)
        return sl_json_append_string(buf, it->key, len);
    len = SL_DASHBOARD_KEY_BYTES;
    while (len > 0 && ((unsigned char)it->key[len] & 0xC0) == 0x80)
        len--;
    char cut[SL_DASHBOARD_KEY_BYTES + 4];
    memcpy(cut, it->key, len);
    memcpy(cut + len, "\xE2\x80\xA6", 3);
    return sl_json_append_string(buf, cut, len + 3);
}

/* `[total,[[key,count],...]]` */
static int list_json(struct evbuffer *buf, const struct sl_top_list *l)
{
    if (evbuffer_add_printf(buf, "[%" PRIu64 ",[", l->total) < 0)
        return -1;
    for (size_t i = 0; i < l->n; i++)
        if (evbuffer_add(buf, i ? ",[" : "[", i ? 2 : 1) < 0 || key_json(buf, &l->items[i]) < 0 ||
            evbuffer_add_printf(buf, ",%" PRIu64 "]", l->items[i].count) < 0)
            return -1;
    return evbuffer_add(buf, "]]", 2);
}

static int top_entry_json(struct evbuffer *buf, const struct top_entry *e)
{
    const char *route = e->lim->route ? e->lim->route->name : "";
    return evbuffer_add(buf, "{\"route\":", 9) < 0 ||
                   sl_json_append_string(buf, route, strlen(route)) < 0 ||
                   evbuffer_add(buf, ",\"limit\":", 9) < 0 ||
                   sl_json_append_string(buf, e->lim->name, strlen(e->lim->name)) < 0 ||
                   evbuffer_add(buf, ",\"requests\":", 12) < 0 ||
                   list_json(buf, &e->report.seen) < 0 ||
                   evbuffer_add(buf, ",\"denials\":", 11) < 0 ||
                   list_json(buf, &e->report.denied) < 0 || evbuffer_add(buf, "}", 1) < 0
               ? -1
               : 0;
}

/* The limits that saw requests in the /top window, those that denied most first, as many
 * as `budget` bytes hold; "omitted" counts the rest. null with admin.top off. */
static void top_json(struct out *o, struct sl_dashboard *d, const struct sl_config *cfg,
                     uint64_t mono_us, size_t budget)
{
    if (!d->top || !cfg->admin_top) {
        put(o, "\"top\":null");
        return;
    }
    struct top_entry *entries = calloc(cfg->nlimits ? cfg->nlimits : 1, sizeof *entries);
    struct evbuffer *one = evbuffer_new();
    size_t n = 0, used = 0, omitted = 0;
    bool first = true;

    if (!entries || !one) {
        o->err = -1;
        goto out;
    }
    for (size_t r = 0; r < cfg->nroutes; r++) {
        for (size_t l = 0; l < cfg->routes[r].nlimits && n < cfg->nlimits; l++) {
            struct top_entry *e = &entries[n];
            e->lim = &cfg->routes[r].limits[l];
            if (sl_top_read(d->top, e->lim, mono_us, SL_DASHBOARD_TOP_KEYS, &e->report) < 0) {
                o->err = -1;
                goto out;
            }
            if (e->report.seen.total == 0 && e->report.denied.total == 0)
                sl_top_report_deinit(&e->report);
            else
                n++;
        }
    }
    qsort(entries, n, sizeof *entries, busiest_first);
    put(o, "\"top\":{\"window_seconds\":%" PRIu64 ",\"keys\":%d,\"limits\":[",
        sl_top_window_us(d->top, mono_us) / 1000000, SL_DASHBOARD_TOP_KEYS);
    for (size_t i = 0; i < n; i++) {
        evbuffer_drain(one, evbuffer_get_length(one));
        if (top_entry_json(one, &entries[i]) < 0) {
            o->err = -1;
            goto out;
        }
        size_t len = evbuffer_get_length(one) + 1;
        if (used + len > budget) {
            omitted++;
            continue;
        }
        used += len;
        put(o, "%s", first ? "" : ",");
        first = false;
        if (evbuffer_add_buffer(o->buf, one) < 0)
            o->err = -1;
    }
    put(o, "],\"omitted\":%zu}", omitted);
out:
    for (size_t i = 0; i < n; i++)
        sl_top_report_deinit(&entries[i].report);
    free(entries);
    if (one)
        evbuffer_free(one);
}

/* ---- health ---- */

static void errors_json(struct out *o, const uint64_t *errors)
{
    put(o, "\"errors\":{\"timeout\":%" PRIu64 ",\"connection\":%" PRIu64 ",\"script\":%" PRIu64 "}",
        errors[0], errors[1], errors[2]);
}

static void health_json(struct out *o, struct sl_metrics *m)
{
    struct sl_metrics_totals t;
    const struct sl_store *memory = atomic_load(&m->memory);

    sl_metrics_sum_totals(m, &t);
    put(o, "\"redis\":{\"configured\":%s,\"connected\":%s,",
        atomic_load(&m->redis_enabled) ? "true" : "false",
        sl_metrics_redis_up(m) ? "true" : "false");
    errors_json(o, t.store_errors[SL_STORE_REDIS]);
    put(o,
        ",\"deny_cache_hits\":%" PRIu64 ",\"redirections\":{\"moved\":%" PRIu64 ",\"ask\":%" PRIu64
        "},\"topology_refreshes\":%" PRIu64 "}",
        t.deny_cache_hits, t.redirections[0], t.redirections[1], t.refreshes);
    put(o, ",\"memory\":{\"keys\":%" PRIu64 ",\"evictions\":%" PRIu64 ",",
        memory ? sl_store_memory_keys(memory) : 0, memory ? sl_store_memory_evictions(memory) : 0);
    errors_json(o, t.store_errors[SL_STORE_MEMORY]);
    put(o,
        "},\"upstream_errors\":{\"connect\":%" PRIu64 ",\"timeout\":%" PRIu64 ",\"reset\":%" PRIu64
        ",\"resolve\":%" PRIu64 "}",
        t.upstream_errors[SL_UPSTREAM_ERR_CONNECT], t.upstream_errors[SL_UPSTREAM_ERR_TIMEOUT],
        t.upstream_errors[SL_UPSTREAM_ERR_RESET], t.upstream_errors[SL_UPSTREAM_ERR_RESOLVE]);
    put(o, ",\"connections\":{\"active\":%" PRIu64 ",\"accepted\":%" PRIu64 "}",
        t.opened > t.closed ? t.opened - t.closed : 0, t.opened);
}

static void config_json(struct out *o, struct sl_metrics *m, const struct sl_config *cfg)
{
    char digest[2 * SL_SHA256_LEN + 1];
    static const char hex[] = "0123456789abcdef";
    uint64_t last = atomic_load(&m->last_reload);

    for (size_t i = 0; i < SL_SHA256_LEN; i++) {
        digest[2 * i] = hex[cfg->file_digest[i] >> 4];
        digest[2 * i + 1] = hex[cfg->file_digest[i] & 15];
    }
    digest[2 * SL_SHA256_LEN] = '\0';
    put(o, "\"config\":{\"file\":");
    str(o, cfg->file ? cfg->file : "");
    put(o, ",\"sha256\":\"%s\",\"routes\":%zu,\"limits\":%zu", digest, cfg->nroutes, cfg->nlimits);
    put(o, ",\"reloads\":{\"success\":%" PRIu64 ",\"failure\":%" PRIu64 "}",
        atomic_load(&m->reloads[0]), atomic_load(&m->reloads[1]));
    if (last)
        put(o, ",\"last_reload\":{\"ms\":%" PRIu64 ",\"result\":\"%s\"}}", last >> 1,
            last & 1 ? "success" : "failure");
    else
        put(o, ",\"last_reload\":null}");
}

int sl_dashboard_render(struct sl_dashboard *d, const struct sl_config *cfg, uint64_t mono_us,
                        uint64_t wall_ms, struct evbuffer *out)
{
    struct out o = {out, 0};
    struct sl_metrics *m = d->metrics;
    uint64_t unmatched[SL_OUTCOME_COUNT];
    size_t start = evbuffer_get_length(out);

    put(&o, "{\"version\":\"%s\",\"now_ms\":%" PRIu64 ",\"started_ms\":%" PRIu64 ",",
        SLUICE_VERSION, wall_ms, m->started_ms);
    config_json(&o, m, cfg);
    put(&o, ",\"decisions\":[");
    for (size_t i = 0; i < SL_OUTCOME_COUNT; i++)
        put(&o, "%s\"%s\"", i ? "," : "", sl_outcome_name((enum sl_outcome)i));
    put(&o, "],\"checks\":[\"allow\",\"deny\",\"error\",\"shadow_deny\"]");
    put(&o, ",\"interval_ms\":%d,\"samples\":%zu,\"history_bytes\":%zu,", SL_HISTORY_INTERVAL_MS,
        sl_history_len(d->history), sl_history_bytes(d->history));
    routes_json(&o, d, cfg);
    sl_metrics_route_requests(m, 0, unmatched);
    put(&o, ",\"unmatched\":%" PRIu64 ",", unmatched[SL_OUTCOME_UNMATCHED]);
    size_t taken = evbuffer_get_length(out) - start;
    top_json(&o, d, cfg, mono_us,
             taken + SL_DASHBOARD_TOP_MIN_BYTES < SL_DASHBOARD_FILL_BYTES
                 ? SL_DASHBOARD_FILL_BYTES - taken
                 : SL_DASHBOARD_TOP_MIN_BYTES);
    put(&o, ",");
    health_json(&o, m);
    put(&o, "}\n");
    return o.err;
}
