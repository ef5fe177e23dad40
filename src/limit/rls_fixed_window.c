/* rls_fixed_window: envoyproxy/ratelimit's fixed window, the `fixed_window` of the rate limit
 * service (SPEC.md section 12), whose answers must be ratelimit's exactly. It differs from
 * sluice's own fixed_window in what it counts, as ratelimit's INCRBY does:
 *
 *   - every hit is counted, admitted or not: a client over the limit stays over it until the
 *     window ends, whatever it asks next;
 *   - a request is over the limit when the count after its hits exceeds N: `take` units
 *     (the hits) are added first, then compared; `need` is not read. Zero hits (check only)
 *     add nothing and are over only while the count already exceeds N;
 *   - a new window starts from zero: nothing carries over (no debt).
 *
 * Windows are [k·P, (k+1)·P) of the clock the store decides on: with the rate limit
 * service's clocks (CLOCK_REALTIME on the memory store, Redis's TIME) aligned to the epoch by
 * the unit, as ratelimit's now / divider * divider.
 *
 * State: the window's start (µs) and the hits counted in it, saturating at SL_COUNTER_MAX.
 * remaining: N minus the count, 0 when over. reset and retry_after: the end of the window. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

struct rls_window_state {
    uint64_t start; /* µs; a multiple of P */
    uint64_t count;
};

static size_t rls_window_state_size(const struct sl_quota *q)
{
    (void)q;
    return sizeof(struct rls_window_state);
}

static void rls_window_decide(const struct sl_limit *lim, const struct sl_quota *q, void *state,
                              uint64_t now_us, const struct sl_units *u, struct sl_decision *out)
{
    struct rls_window_state *s = state;
    uint64_t n = q->count, p = q->period_us;
    uint64_t k = now_us / p;

    (void)lim;
    /* A stored window after the current one means the clock stepped back: keep counting in
     * it rather than hand out a fresh quota. */
    if (s->start / p < k) {
        s->start = k * p;
        s->count = 0;
    }
    uint64_t until_end = (s->start / p + 1) * p - now_us;
    uint64_t take = u->take > SL_UNITS_MAX ? SL_UNITS_MAX : u->take;
    s->count = s->count + take > SL_COUNTER_MAX ? SL_COUNTER_MAX : s->count + take;

    *out = (struct sl_decision){.limit = n, .reset_us = until_end};
    if (s->count <= n) {
        out->allowed = true;
        out->remaining = n - s->count;
    } else {
        out->retry_after_us = until_end;
    }
}

const struct sl_algorithm_ops sl_alg_rls_fixed_window = {
    .name = "fixed_window",
    .tag = "rfw",
    .has_units = true,
    .state_size = rls_window_state_size,
    .decide = rls_window_decide,
    .rescale = NULL, /* the start and the count read the same under any rate */
    .redis_script = sl_lua_rls_fixed_window,
};
