/* Reading the metrics registry: the sums over the worker slots that the exposition and the
 * dashboard both show, so that the two never disagree on what a counter means. */
#include <string.h>

#include "metrics_internal.h"

void sl_metrics_add_hist(struct sl_metrics_hist *h, const struct sl_hist *src)
{
    for (size_t b = 0; b <= SL_HIST_BUCKETS; b++)
        h->buckets[b] += sl_metrics_load(&src->buckets[b]);
    h->sum_us += sl_metrics_load(&src->sum_us);
}

void sl_metrics_sum_totals(struct sl_metrics *m, struct sl_metrics_totals *t)
{
    memset(t, 0, sizeof *t);
    for (unsigned i = 0; i < m->nslots; i++) {
        const struct sl_metrics_slot *s = m->slots[i];
        /* Closed before opened: a connection closed between the two reads can then only
         * make the active gauge high for one scrape, never wrap below zero. */
        t->closed += sl_metrics_load(&s->conn_closed);
        t->opened += sl_metrics_load(&s->conn_opened);
        t->http2_streams += sl_metrics_load(&s->http2_streams);
        for (size_t k = 0; k < SL_H2_GOAWAY_KINDS; k++)
            t->http2_goaways[k] += sl_metrics_load(&s->http2_goaways[k]);
        for (size_t k = 0; k < SL_TLS_HANDSHAKE_KINDS; k++)
            t->tls_handshakes[k] += sl_metrics_load(&s->tls_handshakes[k]);
        for (size_t k = 0; k < SL_UPSTREAM_ERR_COUNT; k++)
            t->upstream_errors[k] += sl_metrics_load(&s->upstream_errors[k]);
        for (size_t k = 0; k < SL_UNDERSCORES_COUNT; k++)
            t->underscore_headers[k] += sl_metrics_load(&s->underscore_headers[k]);
        for (size_t st = 0; st < SL_STORE_KIND_COUNT; st++) {
            for (size_t k = 0; k < SL_STORE_ERR_KIND_COUNT; k++)
                t->store_errors[st][k] += sl_metrics_load(&s->store_errors[st][k]);
            sl_metrics_add_hist(&t->store_duration[st], &s->store_duration[st]);
        }
        for (size_t k = 0; k < 2; k++)
            t->redirections[k] += sl_metrics_load(&s->redis_redirections[k]);
        t->refreshes += sl_metrics_load(&s->redis_refreshes);
        t->deny_cache_hits += sl_metrics_load(&s->deny_cache_hits);
    }
}

struct sl_route_counters *sl_metrics_slot_route(struct sl_metrics *m, unsigned slot, unsigned id)
{
    return atomic_load_explicit(&m->slots[slot]->routes[id], memory_order_acquire);
}

bool sl_metrics_route_touched(struct sl_metrics *m, unsigned id)
{
    for (unsigned i = 0; i < m->nslots; i++)
        if (sl_metrics_slot_route(m, i, id))
            return true;
    return false;
}

bool sl_metrics_route_requests(struct sl_metrics *m, unsigned id, uint64_t *counts)
{
    bool touched = false;

    memset(counts, 0, SL_OUTCOME_COUNT * sizeof *counts);
    if (id >= SL_METRICS_MAX_ROUTES)
        return false;
    for (unsigned i = 0; i < m->nslots; i++) {
        const struct sl_route_counters *rc = sl_metrics_slot_route(m, i, id);
        if (!rc)
            continue;
        touched = true;
        for (size_t o = 0; o < SL_OUTCOME_COUNT; o++)
            counts[o] += sl_metrics_load(&rc->requests[o]);
    }
    return touched;
}

void sl_metrics_limit_checks(struct sl_metrics *m, unsigned id, uint64_t *counts)
{
    memset(counts, 0, SL_CHECK_RESULT_COUNT * sizeof *counts);
    if (id >= SL_METRICS_MAX_LIMITS)
        return;
    for (unsigned i = 0; i < m->nslots; i++) {
        const struct sl_limit_counters *lc =
            atomic_load_explicit(&m->slots[i]->limits[id / SL_LIMIT_CHUNK], memory_order_acquire);
        for (size_t k = 0; lc && k < SL_CHECK_RESULT_COUNT; k++)
            counts[k] += sl_metrics_load(&lc->checks[id % SL_LIMIT_CHUNK][k]);
    }
}

int sl_metrics_redis_up(struct sl_metrics *m)
{
    if (!atomic_load(&m->redis_enabled) || m->nslots == 0)
        return 0;
    for (unsigned i = 0; i < m->nslots; i++)
        if (atomic_load_explicit(&m->slots[i]->redis_state, memory_order_relaxed) != SL_REDIS_UP)
            return 0;
    return 1;
}
