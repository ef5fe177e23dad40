/* The layout of the metrics registry, shared by the recording side (metrics.c) and the
 * exposition (exposition.c). Nothing outside src/admin/ includes this file. */
#ifndef SLUICE_METRICS_INTERNAL_H
#define SLUICE_METRICS_INTERNAL_H

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/metrics.h"

/* Histogram upper bounds: from 100 us (a memory-store decision) to 10 s (a slow upstream). */
#define SL_HIST_BUCKETS 16
struct sl_hist_bound {
    uint64_t le_us;
    const char *le; /* the `le` label value */
};
extern const struct sl_hist_bound sl_hist_bounds[SL_HIST_BUCKETS];

/* Per-bucket (not cumulative) counts; the last bucket is +Inf. The count of a histogram is
 * the sum of its buckets, so _count and le="+Inf" always agree within one scrape. */
struct sl_hist {
    _Atomic uint64_t buckets[SL_HIST_BUCKETS + 1];
    _Atomic uint64_t sum_us;
};

#define SL_STATUS_MIN 100
#define SL_STATUS_COUNT 500 /* 100..599 */
#define SL_CHECK_RESULT_COUNT 4
#define SL_UPSTREAM_ERR_COUNT 5
#define SL_STORE_KIND_COUNT 2
#define SL_STORE_ERR_KIND_COUNT 3 /* timeout, connection, script */
#define SL_UNDERSCORES_COUNT 3    /* enum sl_underscores: drop, allow, reject */
/* Rate limit service domains named over the life of the process; one more id, the last,
 * counts calls on a domain the files do not have (domain=""), so that a client cannot add
 * series by naming domains. */
#define SL_METRICS_MAX_RLS_DOMAINS 256
#define SL_RLS_CODE_COUNT 3 /* enum sl_rls_code_kind: ok, over_limit, error */

/* One route's counters in one slot, allocated by the slot's worker on first use, so a slot
 * costs memory only for the routes its worker has seen. */
struct sl_route_counters {
    _Atomic uint64_t requests[SL_OUTCOME_COUNT];
    struct sl_hist duration;
    _Atomic uint64_t responses[SL_STATUS_COUNT];
};

/* Limit check counters of SL_LIMIT_CHUNK consecutive limit ids in one slot. */
#define SL_LIMIT_CHUNK 64
struct sl_limit_counters {
    _Atomic uint64_t checks[SL_LIMIT_CHUNK][SL_CHECK_RESULT_COUNT];
    _Atomic uint64_t units[SL_LIMIT_CHUNK][2]; /* [0] cost, [1] charge */
    _Atomic uint64_t charge_errors[SL_LIMIT_CHUNK];
};

enum sl_redis_state { SL_REDIS_UNKNOWN, SL_REDIS_DOWN, SL_REDIS_UP };

/* Written only by its worker, read by the scraping thread: plain relaxed loads and stores,
 * no read-modify-write. Aligned so that no two slots share a cache line. */
struct sl_metrics_slot {
    alignas(64) _Atomic uint64_t conn_opened;
    _Atomic uint64_t conn_closed;
    _Atomic uint64_t http2_streams;
    _Atomic uint64_t http2_goaways[SL_H2_GOAWAY_KINDS];
    _Atomic uint64_t tls_handshakes[SL_TLS_HANDSHAKE_KINDS];
    _Atomic uint64_t upstream_errors[SL_UPSTREAM_ERR_COUNT];
    _Atomic uint64_t underscore_headers[SL_UNDERSCORES_COUNT];
    _Atomic uint64_t store_errors[SL_STORE_KIND_COUNT][SL_STORE_ERR_KIND_COUNT];
    struct sl_hist store_duration[SL_STORE_KIND_COUNT];
    _Atomic uint64_t deny_cache_hits;
    _Atomic int redis_state;
    _Atomic uint64_t redis_redirections[2]; /* [0] moved, [1] ask */
    _Atomic uint64_t redis_refreshes;
    _Atomic(struct sl_route_counters *) routes[SL_METRICS_MAX_ROUTES];
    _Atomic(struct sl_limit_counters *) limits[SL_METRICS_MAX_LIMITS / SL_LIMIT_CHUNK];
    _Atomic uint64_t rls_requests[SL_METRICS_MAX_RLS_DOMAINS + 1][SL_RLS_CODE_COUNT];
    struct sl_metrics *owner; /* for the domain names (metrics_rls.c) */
};

struct sl_metrics_limit_name {
    unsigned route_id;
    char *name;
};

/* Names are appended under `lock` and never removed; `nroutes`/`nlimits` are published with
 * release stores after the names they cover, so the exposition reads them without the lock. */
struct sl_metrics {
    unsigned nslots;
    struct sl_metrics_slot **slots;

    pthread_mutex_t lock;
    _Atomic unsigned nroutes;
    _Atomic unsigned nlimits;
    char *route_names[SL_METRICS_MAX_ROUTES];
    struct sl_metrics_limit_name limit_names[SL_METRICS_MAX_LIMITS];
    uint32_t route_index[2 * SL_METRICS_MAX_ROUTES]; /* open addressing: id + 1, 0 = empty */
    uint32_t limit_index[2 * SL_METRICS_MAX_LIMITS];

    _Atomic bool redis_enabled;    /* of the configuration bound last */
    _Atomic bool route_histograms; /* likewise: admin.route_histograms */
    _Atomic(const struct sl_store *) memory;
    _Atomic uint64_t reloads[2]; /* [0] success, [1] failure */
    uint64_t started_ms;         /* wall clock at sl_metrics_new(); read-only after */
    /* The last reload: its wall-clock time in ms shifted left once, plus 1 when it
     * succeeded; 0 = none yet. One word, so a reader never pairs one reload's time with
     * another's result. */
    _Atomic uint64_t last_reload;

    /* Rate limit service domains (metrics_rls.c): appended under `lock`, each index entry
     * stored (release) after the name it points to. */
    _Atomic unsigned nrls_domains;
    char *rls_domains[SL_METRICS_MAX_RLS_DOMAINS];
    _Atomic uint32_t rls_index[2 * SL_METRICS_MAX_RLS_DOMAINS]; /* id + 1, 0 = empty */
};

/* The id of a route name, and of a limit name under a route id, appended when new; UINT_MAX
 * when the registry is full. With m->lock held (metrics.c). */
unsigned sl_metrics_intern_route(struct sl_metrics *m, const char *name);
unsigned sl_metrics_intern_limit(struct sl_metrics *m, unsigned route_id, const char *name);

/* metrics_rls.c: names the domains of cfg's rls files (with m->lock held), frees the names,
 * and writes sluice_rls_requests_total. */
void sl_metrics_rls_bind(struct sl_metrics *m, const struct sl_config *cfg);
void sl_metrics_rls_free(struct sl_metrics *m);
struct evbuffer;
void sl_metrics_rls_emit(struct sl_metrics *m, struct evbuffer *out, int *err);

static inline uint64_t sl_metrics_load(const _Atomic uint64_t *c)
{
    return atomic_load_explicit(c, memory_order_relaxed);
}

/* Reading the registry (metrics_read.c), for the exposition and the dashboard: sums over
 * the worker slots, each counter read once, while the workers write them. */

/* Per-bucket sums of one histogram over the slots. */
struct sl_metrics_hist {
    uint64_t buckets[SL_HIST_BUCKETS + 1];
    uint64_t sum_us;
};
void sl_metrics_add_hist(struct sl_metrics_hist *h, const struct sl_hist *src);

/* The per-slot counters that are not indexed by a name, summed over the slots. */
struct sl_metrics_totals {
    uint64_t opened, closed;
    uint64_t http2_streams;
    uint64_t http2_goaways[SL_H2_GOAWAY_KINDS];
    uint64_t tls_handshakes[SL_TLS_HANDSHAKE_KINDS];
    uint64_t upstream_errors[SL_UPSTREAM_ERR_COUNT];
    uint64_t underscore_headers[SL_UNDERSCORES_COUNT];
    uint64_t store_errors[SL_STORE_KIND_COUNT][SL_STORE_ERR_KIND_COUNT];
    struct sl_metrics_hist store_duration[SL_STORE_KIND_COUNT];
    uint64_t redirections[2]; /* [0] moved, [1] ask */
    uint64_t refreshes;
    uint64_t deny_cache_hits;
};
void sl_metrics_sum_totals(struct sl_metrics *m, struct sl_metrics_totals *t);

/* Slot `slot`'s counters of route id `id`, or NULL while that worker has not used it. */
struct sl_route_counters *sl_metrics_slot_route(struct sl_metrics *m, unsigned slot, unsigned id);

/* True once some worker has counted a request on route id `id` (its series exist). */
bool sl_metrics_route_touched(struct sl_metrics *m, unsigned id);

/* Fills counts[SL_OUTCOME_COUNT] with route id `id`'s requests by decision; returns
 * sl_metrics_route_touched() (all zeros when false). */
bool sl_metrics_route_requests(struct sl_metrics *m, unsigned id, uint64_t *counts);

/* Fills counts[SL_CHECK_RESULT_COUNT] with limit id `id`'s checks by result. */
void sl_metrics_limit_checks(struct sl_metrics *m, unsigned id, uint64_t *counts);

/* sluice_redis_connected: 1 only when Redis is configured and every worker last reported
 * its connection up (a worker that never reported counts as down). */
int sl_metrics_redis_up(struct sl_metrics *m);

#endif
