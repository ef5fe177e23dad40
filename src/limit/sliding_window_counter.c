/* sliding_window_counter: the usual O(1) approximation of a sliding window. With `prev` and
 * `curr` the requests admitted in the previous and the current aligned window and
 * `elapsed` = now mod P, a request is admitted when
 *
 *     prev·(P − elapsed)/P + curr < N,   compared exactly as   prev·(P − elapsed) + curr·P < N·P.
 *
 * State: the start (µs) of the current window and the two counters. The start, rather than
 * the window's index, keeps its meaning when P changes: both counters carry over while the
 * stored window began inside the current aligned window under the new P, curr becomes prev
 * when it began exactly one window before, and a new window starts otherwise.
 * remaining: requests still admitted at this instant: the count of c ≥ curr with
 *            prev·(P − elapsed) + c·P < N·P.
 * reset:     until both counters weigh nothing: the end of the next window when curr > 0,
 *            the end of this window when only prev > 0.
 * retry_after (denied): the first instant at which the estimate drops below N, found
 *            exactly: later in this window as prev's weight decays, or in the next. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct sliding_window_counter_state {
    uint64_t start; /* µs; a multiple of the P it began under */
    uint64_t prev;
    uint64_t curr;
};

static size_t sliding_window_counter_state_size(const struct sl_limit *lim)
{
    return sizeof(struct sliding_window_counter_state);
}

/* Microseconds from `elapsed` into the window until the estimate drops below N; the
 * caller has established that it is not below N now. */
static uint64_t retry_after(uint64_t n, uint64_t p, uint64_t prev, uint64_t curr, uint64_t elapsed)
{
    if (curr < n) {
        /* Within this window: prev·(P − e) ≤ (N − curr)·P − 1. prev > 0, else the estimate
         * would be curr < N. At e = P the next window starts with prev = curr < N, which
         * admits, so the bound also covers that case. */
        sl_u128 room = sl_mul128(n - curr, p) - 1;
        uint64_t at = p - (uint64_t)(room / prev);
        return at - elapsed;
    }
    /* This window is spent; in the next, curr becomes prev: curr·(P − e) ≤ N·P − 1. */
    uint64_t at = p - (uint64_t)((sl_mul128(n, p) - 1) / curr);
    return sl_sat64((sl_u128)(p - elapsed) + at);
}

static void sliding_window_counter_decide(const struct sl_limit *lim, void *state, uint64_t now_us,
                                          struct sl_decision *out)
{
    struct sliding_window_counter_state *s = state;
    uint64_t n = lim->count, p = lim->period_us;
    uint64_t k = now_us / p, elapsed = now_us % p, stored = s->start / p;

    /* k below the stored window means the clock stepped back: keep the newer counters. */
    if (k == stored + 1) {
        s->prev = s->curr;
        s->curr = 0;
        s->start = k * p;
    } else if (k > stored) {
        s->prev = 0;
        s->curr = 0;
        s->start = k * p;
    }

    sl_u128 limit = sl_mul128(n, p);
    sl_u128 weighted_prev = sl_mul128(s->prev, p - elapsed);
    *out = (struct sl_decision){.limit = n};
    if (weighted_prev + sl_mul128(s->curr, p) < limit) {
        s->curr++;
        out->allowed = true;
        /* curr·P < limit − weighted_prev held before the increment, so this is ≥ 0. */
        out->remaining = sl_sat64(sl_ceil_div128(limit - weighted_prev, p) - s->curr);
    } else {
        out->retry_after_us = retry_after(n, p, s->prev, s->curr, elapsed);
    }
    if (s->curr > 0)
        out->reset_us = sl_sat64((sl_u128)p + (p - elapsed));
    else if (s->prev > 0)
        out->reset_us = p - elapsed;
}

const struct sl_algorithm_ops sl_alg_sliding_window_counter = {
    .name = "sliding_window_counter",
    .tag = "swc",
    .state_size = sliding_window_counter_state_size,
    .decide = sliding_window_counter_decide,
    .rescale = NULL, /* the start and the counters read the same under any rate */
    .redis_script = sl_lua_sliding_window_counter,
};
