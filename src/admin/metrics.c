/* The metrics registry: the names behind the ids, the per-worker slots and the hot-path
 * recording functions. The exposition lives in exposition.c. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_internal.h"
#include "sluice/clock.h"

#define NO_ID UINT_MAX

const struct sl_hist_bound sl_hist_bounds[SL_HIST_BUCKETS] = {
    {100, "0.0001"},  {250, "0.00025"}, {500, "0.0005"},  {1000, "0.001"},
    {2500, "0.0025"}, {5000, "0.005"},  {10000, "0.01"},  {25000, "0.025"},
    {50000, "0.05"},  {100000, "0.1"},  {250000, "0.25"}, {500000, "0.5"},
    {1000000, "1"},   {2500000, "2.5"}, {5000000, "5"},   {10000000, "10"},
};

/* Zeroed memory of its own cache lines, so a worker's counters never share a line with
 * another worker's. */
static void *alloc_lines(size_t size)
{
    size = (size + 63) & ~(size_t)63;
    void *p = aligned_alloc(64, size);
    if (p)
        memset(p, 0, size);
    return p;
}

static uint32_t hash_name(uint32_t h, const char *name)
{
    /* FNV-1a: names come from the operator's file, not from clients. */
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 16777619u;
    return h;
}

/* Returns the id of `name`, appending it when new, or NO_ID when the table is full.
 * Called with m->lock held. */
unsigned sl_metrics_intern_route(struct sl_metrics *m, const char *name)
{
    const uint32_t mask = 2 * SL_METRICS_MAX_ROUTES - 1;
    uint32_t i = hash_name(2166136261u, name) & mask;
    unsigned n = atomic_load_explicit(&m->nroutes, memory_order_relaxed);

    for (; m->route_index[i]; i = (i + 1) & mask)
        if (strcmp(m->route_names[m->route_index[i] - 1], name) == 0)
            return m->route_index[i] - 1;
    if (n == SL_METRICS_MAX_ROUTES)
        return NO_ID;
    m->route_names[n] = strdup(name);
    if (!m->route_names[n])
        return NO_ID;
    m->route_index[i] = n + 1;
    atomic_store_explicit(&m->nroutes, n + 1, memory_order_release);
    return n;
}

unsigned sl_metrics_intern_limit(struct sl_metrics *m, unsigned route_id, const char *name)
{
    const uint32_t mask = 2 * SL_METRICS_MAX_LIMITS - 1;
    uint32_t i = hash_name(2166136261u ^ route_id, name) & mask;
    unsigned n = atomic_load_explicit(&m->nlimits, memory_order_relaxed);

    for (; m->limit_index[i]; i = (i + 1) & mask) {
        const struct sl_metrics_limit_name *l = &m->limit_names[m->limit_index[i] - 1];
        if (l->route_id == route_id && strcmp(l->name, name) == 0)
            return m->limit_index[i] - 1;
    }
    if (n == SL_METRICS_MAX_LIMITS)
        return NO_ID;
    m->limit_names[n].name = strdup(name);
    if (!m->limit_names[n].name)
        return NO_ID;
    m->limit_names[n].route_id = route_id;
    m->limit_index[i] = n + 1;
    atomic_store_explicit(&m->nlimits, n + 1, memory_order_release);
    return n;
}

struct sl_metrics *sl_metrics_new(unsigned nslots)
{
    struct sl_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    if (pthread_mutex_init(&m->lock, NULL) != 0) {
        free(m);
        return NULL;
    }
    m->slots = calloc(nslots ? nslots : 1, sizeof *m->slots);
    if (!m->slots)
        goto fail;
    m->nslots = nslots;
    m->started_ms = sl_clock_real_us() / 1000;
    for (unsigned i = 0; i < nslots; i++) {
        m->slots[i] = alloc_lines(sizeof *m->slots[i]);
        if (!m->slots[i])
            goto fail;
        m->slots[i]->owner = m;
    }
    if (sl_metrics_intern_route(m, "") != 0)
        goto fail;
    return m;
fail:
    sl_metrics_free(m);
    return NULL;
}

static void free_slot(struct sl_metrics_slot *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < SL_METRICS_MAX_ROUTES; i++)
        free(atomic_load_explicit(&s->routes[i], memory_order_relaxed));
    for (size_t i = 0; i < SL_METRICS_MAX_LIMITS / SL_LIMIT_CHUNK; i++)
        free(atomic_load_explicit(&s->limits[i], memory_order_relaxed));
    free(s);
}

void sl_metrics_free(struct sl_metrics *m)
{
    if (!m)
        return;
    for (unsigned i = 0; m->slots && i < m->nslots; i++)
        free_slot(m->slots[i]);
    free(m->slots);
    for (unsigned i = 0; i < atomic_load(&m->nroutes); i++)
        free(m->route_names[i]);
    for (unsigned i = 0; i < atomic_load(&m->nlimits); i++)
        free(m->limit_names[i].name);
    sl_metrics_rls_free(m);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

struct sl_metrics_slot *sl_metrics_slot(struct sl_metrics *m, unsigned i)
{
    return i < m->nslots ? m->slots[i] : NULL;
}

int sl_metrics_bind(struct sl_metrics *m, struct sl_config *cfg)
{
    int rc = 0;

    pthread_mutex_lock(&m->lock);
    atomic_store(&m->redis_enabled, cfg->redis.enabled);
    atomic_store(&m->route_histograms, cfg->admin_route_histograms);
    for (size_t r = 0; r < cfg->nroutes; r++) {
        struct sl_route *route = &cfg->routes[r];
        route->metrics_id = sl_metrics_intern_route(m, route->name);
        if (route->metrics_id == NO_ID)
            rc = -1;
        for (size_t l = 0; l < route->nlimits; l++) {
            struct sl_limit *lim = &route->limits[l];
            lim->metrics_id =
                route->metrics_id == NO_ID ? NO_ID : sl_metrics_intern_limit(m, route->metrics_id, lim->name);
            if (lim->metrics_id == NO_ID)
                rc = -1;
        }
    }
    sl_metrics_rls_bind(m, cfg);
    pthread_mutex_unlock(&m->lock);
    return rc;
}

void sl_metrics_set_memory_store(struct sl_metrics *m, const struct sl_store *memory)
{
    atomic_store(&m->memory, memory);
}

void sl_metrics_config_reload(struct sl_metrics *m, bool success)
{
    atomic_fetch_add_explicit(&m->reloads[success ? 0 : 1], 1, memory_order_relaxed);
    atomic_store(&m->last_reload, (sl_clock_real_us() / 1000) << 1 | (success ? 1 : 0));
}

/* The slot's only writer increments: a relaxed load and store, no locked instruction. */
static inline void bump(_Atomic uint64_t *c, uint64_t n)
{
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + n,
                          memory_order_relaxed);
}

static void observe(struct sl_hist *h, uint64_t us)
{
    size_t b = 0;
    while (b < SL_HIST_BUCKETS && us > sl_hist_bounds[b].le_us)
        b++;
    bump(&h->buckets[b], 1);
    bump(&h->sum_us, us);
}

static struct sl_route_counters *route_counters(struct sl_metrics_slot *s,
                                                const struct sl_route *route)
{
    unsigned id = route ? route->metrics_id : 0;
    if (id >= SL_METRICS_MAX_ROUTES)
        return NULL;
    struct sl_route_counters *rc = atomic_load_explicit(&s->routes[id], memory_order_relaxed);
    if (!rc) {
        rc = alloc_lines(sizeof *rc);
        /* Release: the scraper must see the zeroed block before the pointer to it. */
        if (rc)
            atomic_store_explicit(&s->routes[id], rc, memory_order_release);
    }
    return rc;
}

void sl_metrics_request(struct sl_metrics_slot *s, const struct sl_route *route,
                        enum sl_outcome outcome, uint64_t duration_us)
{
    struct sl_route_counters *rc;
    if (!s || (unsigned)outcome >= SL_OUTCOME_COUNT || !(rc = route_counters(s, route)))
        return;
    bump(&rc->requests[outcome], 1);
    observe(&rc->duration, duration_us);
}

void sl_metrics_response(struct sl_metrics_slot *s, const struct sl_route *route, int status)
{
    struct sl_route_counters *rc;
    if (!s || status < SL_STATUS_MIN || status >= SL_STATUS_MIN + SL_STATUS_COUNT ||
        !(rc = route_counters(s, route)))
        return;
    bump(&rc->responses[status - SL_STATUS_MIN], 1);
}

/* The counters of `limit`'s chunk in `s`, allocated on first use; NULL without room. */
static struct sl_limit_counters *limit_counters(struct sl_metrics_slot *s,
                                                const struct sl_limit *limit)
{
    if (!s || limit->metrics_id >= SL_METRICS_MAX_LIMITS)
        return NULL;
    unsigned chunk = limit->metrics_id / SL_LIMIT_CHUNK;
    struct sl_limit_counters *lc = atomic_load_explicit(&s->limits[chunk], memory_order_relaxed);
    if (!lc) {
        lc = alloc_lines(sizeof *lc);
        if (!lc)
            return NULL;
        atomic_store_explicit(&s->limits[chunk], lc, memory_order_release);
    }
    return lc;
}

void sl_metrics_limit_check(struct sl_metrics_slot *s, const struct sl_limit *limit,
                            enum sl_check_result result)
{
    struct sl_limit_counters *lc;
    if ((unsigned)result >= SL_CHECK_RESULT_COUNT || !(lc = limit_counters(s, limit)))
        return;
    bump(&lc->checks[limit->metrics_id % SL_LIMIT_CHUNK][result], 1);
}

void sl_metrics_limit_units(struct sl_metrics_slot *s, const struct sl_limit *limit, bool charge,
                            uint64_t units)
{
    struct sl_limit_counters *lc = limit_counters(s, limit);
    if (lc)
        bump(&lc->units[limit->metrics_id % SL_LIMIT_CHUNK][charge], units);
}

void sl_metrics_charge_error(struct sl_metrics_slot *s, const struct sl_limit *limit)
{
    struct sl_limit_counters *lc = limit_counters(s, limit);
    if (lc)
        bump(&lc->charge_errors[limit->metrics_id % SL_LIMIT_CHUNK], 1);
}

void sl_metrics_store_duration(struct sl_metrics_slot *s, enum sl_store_kind store,
                               uint64_t duration_us)
{
    if (s && (unsigned)store < SL_STORE_KIND_COUNT)
        observe(&s->store_duration[store], duration_us);
}

void sl_metrics_store_error(struct sl_metrics_slot *s, enum sl_store_kind store,
                            enum sl_store_status kind)
{
    /* SL_STORE_ERR_TIMEOUT..SCRIPT map to kind labels 0..2; SL_STORE_OK is no error. */
    unsigned k = (unsigned)kind - SL_STORE_ERR_TIMEOUT;
    if (s && (unsigned)store < SL_STORE_KIND_COUNT && k < SL_STORE_ERR_KIND_COUNT)
        bump(&s->store_errors[store][k], 1);
}

void sl_metrics_upstream_error(struct sl_metrics_slot *s, enum sl_upstream_error kind)
{
    if (s && (unsigned)kind < SL_UPSTREAM_ERR_COUNT)
        bump(&s->upstream_errors[kind], 1);
}

void sl_metrics_headers_underscore(struct sl_metrics_slot *s, enum sl_underscores action,
                                   uint64_t n)
{
    if (s && (unsigned)action < SL_UNDERSCORES_COUNT)
        bump(&s->underscore_headers[action], n);
}

void sl_metrics_connection_opened(struct sl_metrics_slot *s)
{
    if (s)
        bump(&s->conn_opened, 1);
}

void sl_metrics_connection_closed(struct sl_metrics_slot *s)
{
    if (s)
        bump(&s->conn_closed, 1);
}

void sl_metrics_http2_stream(struct sl_metrics_slot *s)
{
    if (s)
        bump(&s->http2_streams, 1);
}

void sl_metrics_http2_goaway(struct sl_metrics_slot *s, enum sl_h2_goaway reason)
{
    if (s && (unsigned)reason < SL_H2_GOAWAY_KINDS)
        bump(&s->http2_goaways[reason], 1);
}

void sl_metrics_tls_handshake(struct sl_metrics_slot *s, enum sl_tls_handshake result)
{
    if (s && (unsigned)result < SL_TLS_HANDSHAKE_KINDS)
        bump(&s->tls_handshakes[result], 1);
}

void sl_metrics_deny_cache_hit(struct sl_metrics_slot *s)
{
    if (s)
        bump(&s->deny_cache_hits, 1);
}

void sl_metrics_redis_connected(struct sl_metrics_slot *s, bool connected)
{
    if (s)
        atomic_store_explicit(&s->redis_state, connected ? SL_REDIS_UP : SL_REDIS_DOWN,
                              memory_order_relaxed);
}

void sl_metrics_redis_redirection(struct sl_metrics_slot *s, bool moved)
{
    if (s)
        bump(&s->redis_redirections[moved ? 0 : 1], 1);
}

void sl_metrics_redis_topology_refresh(struct sl_metrics_slot *s)
{
    if (s)
        bump(&s->redis_refreshes, 1);
}
