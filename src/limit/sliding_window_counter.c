/* sliding_window_counter: the usual O(1) approximation of a sliding window. With `prev` and
 * `curr` the units admitted in the previous and the current aligned window and
 * `elapsed` = now mod P, a request of `need` units (1 by default; m = need − 1) is admitted
 * when the estimate before its last unit is below N:
 *
 *     prev·(P − elapsed)/P + curr + m < N,   compared exactly as   prev·(P − elapsed) + (curr +
 * m)·P < N·P.
 *
 * For need 1 this is the classic rule; need 0 is always admitted.
 *
 * State: the start (µs) of the current window and the two counters. The start, rather than
 * the window's index, keeps its meaning when P changes: both counters carry over while the
 * stored window began inside the current aligned window under the new P, and otherwise the
 * counters roll forward as below.
 *
 * Debt: charges may push curr past N. When a window ends, at most N of its units become
 * prev (they decay over the next window, as always) and the rest stays in curr: after w
 * windows, curr = max(0, curr − w·N) and prev = min(max(0, curr − (w − 1)·N), N). Within N
 * this is the classic roll (curr becomes prev, two windows forget everything); in debt the
 * estimate falls by N per window, the refill rate. Counters saturate at SL_COUNTER_MAX (2^50)
 * and reported times at SL_TIME_MAX (2^52 µs). prev never exceeds N, so every product below
 * is at most N·P (the Lua twin's bound): a curr + m at or above N is decided by comparison.
 *
 * remaining: units still admitted at this instant: the count of c ≥ curr with
 *            prev·(P − elapsed) + c·P < N·P, less curr.
 * reset:     until both counters weigh nothing: ceil(curr/N) windows after this one ends when
 *            curr > 0, the end of this window when only prev > 0.
 * retry_after (denied): the first instant at which the rule admits `need`, found exactly:
 *            later in this window as prev's weight decays, or in the first window whose
 *            curr leaves room, as its prev decays. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct sliding_window_counter_state {
    uint64_t start; /* µs; a multiple of the P it began under */
    uint64_t prev;
    uint64_t curr;
};

static size_t sliding_window_counter_state_size(const struct sl_quota *q)
{
    return sizeof(struct sliding_window_counter_state);
}

static uint64_t cap_time(sl_u128 t)
{
    return t > SL_TIME_MAX ? SL_TIME_MAX : (uint64_t)t;
}

/* Within a window whose counters are `prev` and `curr`, the first offset e at which
 * prev·(P − e) + (curr + m)·P < N·P, given curr + m < N: prev·(P − e) ≤ (N − curr − m)·P − 1.
 * 0 when it holds from the start. */
static uint64_t first_offset(uint64_t n, uint64_t p, uint64_t prev, uint64_t curr, uint64_t m)
{
    if (prev == 0)
        return 0;
    sl_u128 room = sl_mul128(n - curr - m, p) - 1;
    sl_u128 q = room / prev;
    return q >= p ? 0 : p - (uint64_t)q;
}

/* Microseconds from `elapsed` into the window until `need` (≤ N) is admitted; the caller has
 * established that it is not admitted now. */
static uint64_t retry_after(uint64_t n, uint64_t p, uint64_t prev, uint64_t curr, uint64_t elapsed,
                            uint64_t m)
{
    if (curr + m < n) /* later in this window; prev > 0, else it would be admitted now */
        return first_offset(n, p, prev, curr, m) - elapsed;
    /* The first window w ≥ 1 after this one with curr_w + m < N, curr_w = max(0, curr − w·N). */
    uint64_t w = (curr + m - n) / n + 1;
    sl_u128 spent = sl_mul128(w, n), before = spent - n; /* (w − 1)·N */
    uint64_t curr_w = spent >= curr ? 0 : curr - (uint64_t)spent;
    uint64_t prev_w = before >= curr ? 0 : curr - (uint64_t)before;
    if (prev_w > n)
        prev_w = n;
    return cap_time((sl_u128)(p - elapsed) + sl_mul128(w - 1, p) +
                    first_offset(n, p, prev_w, curr_w, m));
}

static void sliding_window_counter_decide(const struct sl_limit *lim, const struct sl_quota *q,
                                          void *state, uint64_t now_us, const struct sl_units *u,
                                          struct sl_decision *out)
{
    struct sliding_window_counter_state *s = state;
    uint64_t n = q->count, p = q->period_us;
    uint64_t k = now_us / p, elapsed = now_us % p, stored = s->start / p;

    /* k below the stored window means the clock stepped back: keep the newer counters. */
    if (k > stored) {
        sl_u128 spent = sl_mul128(k - stored, n), before = spent - n;
        uint64_t prev = before >= s->curr ? 0 : s->curr - (uint64_t)before;
        s->prev = prev > n ? n : prev;
        s->curr = spent >= s->curr ? 0 : s->curr - (uint64_t)spent;
        s->start = k * p;
    }

    sl_u128 limit = sl_mul128(n, p);
    sl_u128 weighted_prev = sl_mul128(s->prev, p - elapsed);
    uint64_t m = u->need ? u->need - 1 : 0;
    *out = (struct sl_decision){.limit = n};
    bool fits =
        u->need == 0 || (s->curr + m < n && weighted_prev + sl_mul128(s->curr + m, p) < limit);
    if (fits) {
        s->curr = s->curr + u->take > SL_COUNTER_MAX ? SL_COUNTER_MAX : s->curr + u->take;
        out->allowed = true;
        /* prev ≤ N, so weighted_prev ≤ limit. */
        sl_u128 room = sl_ceil_div128(limit - weighted_prev, p);
        out->remaining = room > s->curr ? sl_sat64(room - s->curr) : 0;
    } else if (u->need > n) {
        out->retry_after_us = SL_TIME_MAX; /* never fits */
    } else {
        out->retry_after_us = retry_after(n, p, s->prev, s->curr, elapsed, m);
    }
    if (s->curr > 0)
        out->reset_us =
            cap_time((sl_u128)(p - elapsed) + sl_mul128(s->curr / n + (s->curr % n != 0), p));
    else if (s->prev > 0)
        out->reset_us = p - elapsed;
}

const struct sl_algorithm_ops sl_alg_sliding_window_counter = {
    .name = "sliding_window_counter",
    .tag = "swc",
    .has_units = true,
    .state_size = sliding_window_counter_state_size,
    .decide = sliding_window_counter_decide,
    .rescale = NULL, /* the start and the counters read the same under any rate */
    .redis_script = sl_lua_sliding_window_counter,
};
