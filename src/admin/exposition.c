/* The Prometheus text exposition (format 0.0.4) of the metrics registry: sums the worker
 * slots series by series. Families are written in the order of SPEC.md section 8.
 *
 * A route's series appear once some worker has counted a request on it (its counters
 * exist): a table of a thousand routes of which a few are used would otherwise expose
 * tens of thousands of zeros per scrape. Counters are allocated before their first
 * increment, so the first scrape that shows a route shows all it counted. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_internal.h"
#include "sluice/store_memory.h"

#ifndef SLUICE_VERSION
#define SLUICE_VERSION "unknown"
#endif

struct emitter {
    struct evbuffer *out;
    int err;
};

__attribute__((format(printf, 2, 3))) static void emit(struct emitter *e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (evbuffer_add_vprintf(e->out, fmt, ap) < 0)
        e->err = -1;
    va_end(ap);
}

/* A label value with backslash, double quote and line feed escaped, as the format demands.
 * Route and limit names are restricted by the configuration; the escaping is what keeps a
 * future relaxation of that rule from breaking the exposition. */
static void emit_label(struct emitter *e, const char *name, const char *value)
{
    emit(e, "%s=\"", name);
    for (const char *p = value; *p;) {
        size_t n = strcspn(p, "\\\"\n");
        if (n && evbuffer_add(e->out, p, n) < 0)
            e->err = -1;
        p += n;
        if (*p) {
            emit(e, "\\%c", *p == '\n' ? 'n' : *p);
            p++;
        }
    }
    emit(e, "\"");
}

static void emit_family(struct emitter *e, const char *name, const char *type, const char *help)
{
    emit(e, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* `name{k1="v1",k2="v2"} value`; k2 may be NULL. */
static void emit_series(struct emitter *e, const char *name, const char *k1, const char *v1,
                        const char *k2, const char *v2, uint64_t value)
{
    emit(e, "%s{", name);
    emit_label(e, k1, v1);
    if (k2) {
        emit(e, ",");
        emit_label(e, k2, v2);
    }
    emit(e, "} %" PRIu64 "\n", value);
}

/* `label` may be NULL: a histogram with no label but `le`. */
static void emit_hist(struct emitter *e, const char *name, const char *label, const char *value,
                      const struct sl_metrics_hist *h)
{
    uint64_t cumulative = 0;
    for (size_t b = 0; b <= SL_HIST_BUCKETS; b++) {
        cumulative += h->buckets[b];
        emit(e, "%s_bucket{", name);
        if (label) {
            emit_label(e, label, value);
            emit(e, ",");
        }
        emit(e, "le=\"%s\"} %" PRIu64 "\n", b < SL_HIST_BUCKETS ? sl_hist_bounds[b].le : "+Inf",
             cumulative);
    }
    /* Microseconds printed as exact decimal seconds. */
    emit(e, "%s_sum", name);
    if (label) {
        emit(e, "{");
        emit_label(e, label, value);
        emit(e, "}");
    }
    emit(e, " %" PRIu64 ".%06" PRIu64 "\n", h->sum_us / 1000000, h->sum_us % 1000000);
    emit(e, "%s_count", name);
    if (label) {
        emit(e, "{");
        emit_label(e, label, value);
        emit(e, "}");
    }
    emit(e, " %" PRIu64 "\n", cumulative);
}

static void emit_requests(struct emitter *e, struct sl_metrics *m, unsigned nroutes)
{
    emit_family(e, "sluice_requests_total", "counter", "Requests by route and limiter decision.");
    for (unsigned r = 0; r < nroutes; r++) {
        uint64_t counts[SL_OUTCOME_COUNT];
        if (!sl_metrics_route_requests(m, r, counts))
            continue;
        for (size_t o = 0; o < SL_OUTCOME_COUNT; o++)
            emit_series(e, "sluice_requests_total", "route", m->route_names[r], "decision",
                        sl_outcome_name((enum sl_outcome)o), counts[o]);
    }
}

static void emit_limit_checks(struct emitter *e, struct sl_metrics *m, unsigned nlimits)
{
    static const char *const results[SL_CHECK_RESULT_COUNT] = {"allow", "deny", "error",
                                                               "shadow_deny"};

    emit_family(e, "sluice_limit_checks_total", "counter",
                "Limit evaluations by route, limit and result.");
    for (unsigned l = 0; l < nlimits; l++) {
        const struct sl_metrics_limit_name *name = &m->limit_names[l];
        uint64_t counts[SL_CHECK_RESULT_COUNT], any = 0;
        sl_metrics_limit_checks(m, l, counts);
        for (size_t k = 0; k < SL_CHECK_RESULT_COUNT; k++)
            any |= counts[k];
        /* A check is counted before its request is: either makes the limit appear. */
        if (!any && !sl_metrics_route_touched(m, name->route_id))
            continue;
        for (size_t k = 0; k < SL_CHECK_RESULT_COUNT; k++) {
            emit(e, "sluice_limit_checks_total{");
            emit_label(e, "route", m->route_names[name->route_id]);
            emit(e, ",");
            emit_label(e, "limit", name->name);
            emit(e, ",result=\"%s\"} %" PRIu64 "\n", results[k], counts[k]);
        }
    }
}

/* sluice_limit_units_total and sluice_charge_errors_total, for the limits that took units:
 * limits of unit cost have none, and no series. */
static void emit_limit_units(struct emitter *e, struct sl_metrics *m, unsigned nlimits)
{
    static const char *const kinds[2] = {"cost", "charge"};
    uint64_t(*units)[2] = calloc(nlimits ? nlimits : 1, sizeof *units);
    uint64_t *errors = calloc(nlimits ? nlimits : 1, sizeof *errors);
    if (!units || !errors) {
        e->err = -1;
        goto out;
    }
    for (unsigned l = 0; l < nlimits; l++) {
        for (unsigned i = 0; i < m->nslots; i++) {
            const struct sl_limit_counters *lc = atomic_load_explicit(
                &m->slots[i]->limits[l / SL_LIMIT_CHUNK], memory_order_acquire);
            if (!lc)
                continue;
            for (size_t k = 0; k < 2; k++)
                units[l][k] += sl_metrics_load(&lc->units[l % SL_LIMIT_CHUNK][k]);
            errors[l] += sl_metrics_load(&lc->charge_errors[l % SL_LIMIT_CHUNK]);
        }
    }
    emit_family(e, "sluice_limit_units_total", "counter",
                "Units taken by limits with a cost or a charge, by route, limit and kind.");
    for (unsigned l = 0; l < nlimits; l++) {
        if (!units[l][0] && !units[l][1] && !errors[l])
            continue;
        const struct sl_metrics_limit_name *name = &m->limit_names[l];
        for (size_t k = 0; k < 2; k++) {
            emit(e, "sluice_limit_units_total{");
            emit_label(e, "route", m->route_names[name->route_id]);
            emit(e, ",");
            emit_label(e, "limit", name->name);
            emit(e, ",kind=\"%s\"} %" PRIu64 "\n", kinds[k], units[l][k]);
        }
    }
    emit_family(e, "sluice_charge_errors_total", "counter",
                "Responses of charged limits that reported no usable number, by route and limit.");
    for (unsigned l = 0; l < nlimits; l++) {
        if (!units[l][1] && !errors[l])
            continue;
        const struct sl_metrics_limit_name *name = &m->limit_names[l];
        emit(e, "sluice_charge_errors_total{");
        emit_label(e, "route", m->route_names[name->route_id]);
        emit(e, ",");
        emit_label(e, "limit", name->name);
        emit(e, "} %" PRIu64 "\n", errors[l]);
    }
out:
    free(units);
    free(errors);
}

/* Status codes are not enumerable up front: only codes actually sent appear. */
static void emit_responses(struct emitter *e, struct sl_metrics *m, unsigned nroutes)
{
    emit_family(e, "sluice_responses_total", "counter",
                "Responses sent to clients by route and status code.");
    for (unsigned r = 0; r < nroutes; r++) {
        uint64_t counts[SL_STATUS_COUNT] = {0};
        bool any = false;
        for (unsigned i = 0; i < m->nslots; i++) {
            const struct sl_route_counters *rc = sl_metrics_slot_route(m, i, r);
            for (size_t c = 0; rc && c < SL_STATUS_COUNT; c++)
                counts[c] += sl_metrics_load(&rc->responses[c]);
            any |= rc != NULL;
        }
        for (size_t c = 0; any && c < SL_STATUS_COUNT; c++) {
            char code[12];
            if (!counts[c])
                continue;
            snprintf(code, sizeof code, "%u", (unsigned)(c + SL_STATUS_MIN));
            emit_series(e, "sluice_responses_total", "route", m->route_names[r], "code", code,
                        counts[c]);
        }
    }
}

static void emit_request_durations(struct emitter *e, struct sl_metrics *m, unsigned nroutes)
{
    bool per_route = atomic_load(&m->route_histograms);
    emit_family(e, "sluice_request_duration_seconds", "histogram",
                per_route ? "Time from the request head to the end of the response, by route."
                          : "Time from the request head to the end of the response.");
    struct sl_metrics_hist all = {0};
    for (unsigned r = 0; r < nroutes; r++) {
        struct sl_metrics_hist h = {0};
        bool touched = false;
        for (unsigned i = 0; i < m->nslots; i++) {
            const struct sl_route_counters *rc = sl_metrics_slot_route(m, i, r);
            if (rc) {
                sl_metrics_add_hist(per_route ? &h : &all, &rc->duration);
                touched = true;
            }
        }
        if (per_route && touched)
            emit_hist(e, "sluice_request_duration_seconds", "route", m->route_names[r], &h);
    }
    /* admin.route_histograms: false, for large route tables: 19 series, not 19 a route. */
    if (!per_route)
        emit_hist(e, "sluice_request_duration_seconds", NULL, NULL, &all);
}

static const char *const store_names[SL_STORE_KIND_COUNT] = {"memory", "redis"};

static void emit_store(struct emitter *e, const struct sl_metrics_totals *t)
{
    static const char *const kinds[SL_STORE_ERR_KIND_COUNT] = {"timeout", "connection", "script"};

    emit_family(e, "sluice_store_duration_seconds", "histogram",
                "Time a store took to decide one limit, by store.");
    for (size_t s = 0; s < SL_STORE_KIND_COUNT; s++)
        emit_hist(e, "sluice_store_duration_seconds", "store", store_names[s],
                  &t->store_duration[s]);
    emit_family(e, "sluice_store_errors_total", "counter", "Store failures by store and kind.");
    for (size_t s = 0; s < SL_STORE_KIND_COUNT; s++)
        for (size_t k = 0; k < SL_STORE_ERR_KIND_COUNT; k++)
            emit_series(e, "sluice_store_errors_total", "store", store_names[s], "kind", kinds[k],
                        t->store_errors[s][k]);
    emit_family(e, "sluice_deny_cache_hits_total", "counter",
                "Redis decisions answered by the local over-limit cache (redis.deny_cache).");
    emit(e, "sluice_deny_cache_hits_total %" PRIu64 "\n", t->deny_cache_hits);
}

/* Every reason from the start, at 0: a dashboard's rate() then has a series before the
 * first GOAWAY of its kind. */
static void emit_http2(struct emitter *e, const struct sl_metrics_totals *t)
{
    static const char *const reasons[SL_H2_GOAWAY_KINDS] = {"shutdown", "idle", "stalled",
                                                            "enhance_your_calm", "protocol_error"};

    emit_family(e, "sluice_http2_streams_total", "counter",
                "Streams clients opened on HTTP/2 connections.");
    emit(e, "sluice_http2_streams_total %" PRIu64 "\n", t->http2_streams);
    emit_family(e, "sluice_http2_goaways_total", "counter",
                "GOAWAY frames sent to HTTP/2 clients, by reason.");
    for (size_t k = 0; k < SL_H2_GOAWAY_KINDS; k++)
        emit_series(e, "sluice_http2_goaways_total", "reason", reasons[k], NULL, NULL,
                    t->http2_goaways[k]);
}

static void emit_tls(struct emitter *e, const struct sl_metrics_totals *t)
{
    static const char *const results[SL_TLS_HANDSHAKE_KINDS] = {"ok", "resumed", "failed"};

    emit_family(e, "sluice_tls_handshakes_total", "counter",
                "TLS handshakes with clients, by result.");
    for (size_t k = 0; k < SL_TLS_HANDSHAKE_KINDS; k++)
        emit_series(e, "sluice_tls_handshakes_total", "result", results[k], NULL, NULL,
                    t->tls_handshakes[k]);
}

static void emit_process(struct emitter *e, struct sl_metrics *m, const struct sl_metrics_totals *t)
{
    static const char *const upstream_kinds[SL_UPSTREAM_ERR_COUNT] = {"connect", "timeout", "reset",
                                                                      "resolve", "tls"};
    static const char *const underscore_actions[SL_UNDERSCORES_COUNT] = {"drop", "allow", "reject"};
    const struct sl_store *memory = atomic_load(&m->memory);

    emit_family(e, "sluice_redis_connected", "gauge",
                "1 when Redis is configured and every worker is connected to every master it "
                "needs, else 0.");
    emit(e, "sluice_redis_connected %d\n", sl_metrics_redis_up(m));
    emit_family(e, "sluice_redis_redirections_total", "counter",
                "Redis Cluster redirections answered (MOVED, ASK), by kind.");
    emit_series(e, "sluice_redis_redirections_total", "kind", "moved", NULL, NULL,
                t->redirections[0]);
    emit_series(e, "sluice_redis_redirections_total", "kind", "ask", NULL, NULL,
                t->redirections[1]);
    emit_family(e, "sluice_redis_topology_refreshes_total", "counter",
                "Times the Redis Cluster slot map or the Sentinel master address was asked for.");
    emit(e, "sluice_redis_topology_refreshes_total %" PRIu64 "\n", t->refreshes);

    emit_family(e, "sluice_upstream_errors_total", "counter", "Upstream failures by kind.");
    for (size_t k = 0; k < SL_UPSTREAM_ERR_COUNT; k++)
        emit_series(e, "sluice_upstream_errors_total", "kind", upstream_kinds[k], NULL, NULL,
                    t->upstream_errors[k]);
    emit_family(e, "sluice_headers_underscore_total", "counter",
                "Request header fields whose name has an underscore, by what "
                "client.underscores_in_headers did.");
    for (size_t k = 0; k < SL_UNDERSCORES_COUNT; k++)
        emit_series(e, "sluice_headers_underscore_total", "action", underscore_actions[k], NULL,
                    NULL, t->underscore_headers[k]);
    emit_family(e, "sluice_connections_active", "gauge", "Client connections open now.");
    emit(e, "sluice_connections_active %" PRIu64 "\n",
         t->opened > t->closed ? t->opened - t->closed : 0);
    emit_family(e, "sluice_connections_accepted_total", "counter", "Client connections accepted.");
    emit(e, "sluice_connections_accepted_total %" PRIu64 "\n", t->opened);
    emit_http2(e, t);
    emit_tls(e, t);

    emit_family(e, "sluice_memory_keys", "gauge", "Keys held by the memory store.");
    emit(e, "sluice_memory_keys %" PRIu64 "\n", memory ? sl_store_memory_keys(memory) : 0);
    emit_family(
        e, "sluice_memory_evictions_total", "counter",
        "Keys evicted from the memory store to stay within memory.max_keys or memory.max_bytes.");
    emit(e, "sluice_memory_evictions_total %" PRIu64 "\n",
         memory ? sl_store_memory_evictions(memory) : 0);

    emit_family(e, "sluice_config_reloads_total", "counter", "Configuration reloads by result.");
    emit(e, "sluice_config_reloads_total{result=\"success\"} %" PRIu64 "\n",
         atomic_load(&m->reloads[0]));
    emit(e, "sluice_config_reloads_total{result=\"failure\"} %" PRIu64 "\n",
         atomic_load(&m->reloads[1]));

    emit_family(e, "sluice_build_info", "gauge", "The running version; the value is always 1.");
    emit_series(e, "sluice_build_info", "version", SLUICE_VERSION, NULL, NULL, 1);
}

int sl_metrics_render(struct sl_metrics *m, struct evbuffer *out)
{
    struct emitter e = {out, 0};
    /* Acquire: every name below these counts is complete. */
    unsigned nroutes = atomic_load_explicit(&m->nroutes, memory_order_acquire);
    unsigned nlimits = atomic_load_explicit(&m->nlimits, memory_order_acquire);

    emit_requests(&e, m, nroutes);
    emit_limit_checks(&e, m, nlimits);
    emit_limit_units(&e, m, nlimits);
    emit_responses(&e, m, nroutes);
    emit_request_durations(&e, m, nroutes);
    struct sl_metrics_totals t;
    sl_metrics_sum_totals(m, &t);
    emit_store(&e, &t);
    emit_process(&e, m, &t);
    sl_metrics_rls_emit(m, out, &e.err);
    return e.err;
}
