/* leaky_bucket: requests leave evenly spaced, one every T = P/N (GCRA). A request that
 * arrives before its turn waits in a queue of at most `burst` places (default 0); with
 * the queue full it is denied.
 *
 * State: the next free departure time `tat`, scaled by N (µs × N) so that T is exactly P
 * and spacing has no rounding drift. A request at `now` departs at max(tat, now) and
 * waits d = departure − now. The requests ahead of it still waiting are those that
 * depart after now: ceil(d/T) − 1 of them when d > 0 (the one departing at tat − T ≤ now
 * has left). It is admitted when fewer than `burst` are waiting, i.e. when d ≤ burst·T,
 * and tat moves to departure + T. So burst B admits B + 1 requests at once, as nginx's
 * limit_req does with burst=B.
 *
 * delay (default): the request is held d, rounded up to the microsecond. With delay off
 * (nginx `nodelay`) it is forwarded at once, but its departure slot is still taken, so
 * the long-run rate stays N/P.
 *
 * A change of rate keeps tat the same instant: converted to the new N exactly, rounded
 * toward later (never a place more). The new burst applies at once: a queue longer than it
 * admits nothing until it has drained below it.
 *
 * remaining: requests still admitted (at once or queued) at this instant.
 * reset:     until the queue has drained (tat reached).
 * retry_after (denied): until a queue place frees. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct leaky_bucket_state {
    uint64_t tat[2]; /* sl_u128, µs × N */
};

static size_t leaky_bucket_state_size(const struct sl_quota *q)
{
    return sizeof(struct leaky_bucket_state);
}

static void leaky_bucket_decide(const struct sl_limit *lim, const struct sl_quota *q, void *state,
                                uint64_t now_us, const struct sl_units *u, struct sl_decision *out)
{
    uint64_t n = q->count, p = q->period_us;
    sl_u128 now = sl_mul128(now_us, n);
    sl_u128 queue = sl_mul128(q->burst, p);
    sl_u128 tat = sl_load128(state);
    sl_u128 departure = sl_max128(tat, now);
    sl_u128 wait = departure - now;

    *out = (struct sl_decision){.limit = n};
    if (wait <= queue) {
        tat = departure + p;
        sl_store128(state, tat);
        sl_u128 ahead = tat - now; /* the wait of the next request */
        out->allowed = true;
        out->remaining = ahead <= queue ? sl_sat64((queue - ahead) / p + 1) : 0;
        out->reset_us = sl_sat64(sl_ceil_div128(ahead, n));
        out->delay_us = lim->delay ? sl_sat64(sl_ceil_div128(wait, n)) : 0;
        return;
    }
    /* wait > queue ≥ 0, so tat > now: the first instant t with tat − t·N ≤ burst·P. */
    out->reset_us = sl_sat64(sl_ceil_div128(wait, n));
    out->retry_after_us = sl_sat64(sl_ceil_div128(tat - queue, n) - now_us);
}

static void leaky_bucket_rescale(const struct sl_quota *to, const struct sl_rate *from,
                                 const void *old, void *state)
{
    sl_store128(state, sl_rescale_time(sl_load128(old), from->count, to->count));
}

const struct sl_algorithm_ops sl_alg_leaky_bucket = {
    .name = "leaky_bucket",
    .tag = "lb",
    .has_burst = true,
    .has_delay = true,
    .state_size = leaky_bucket_state_size,
    .decide = leaky_bucket_decide,
    .rescale = leaky_bucket_rescale,
    .redis_script = sl_lua_leaky_bucket,
};
