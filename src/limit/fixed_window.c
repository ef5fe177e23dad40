/* fixed_window: at most N admitted units in each aligned window [k·P, (k+1)·P); a request
 * takes `cost` units (1 by default) and is admitted when they all fit.
 *
 * State: the start (µs) of the window last seen and the units taken in it. The start, rather
 * than the window's index, keeps its meaning when P changes: the count carries over while the
 * stored window began inside the current aligned window under the new P, and a new window
 * starts otherwise. N can change freely: the count is compared with the new N.
 *
 * Charges (struct sl_units.take beyond what fits) may push the count past N: that is debt.
 * Each window that begins repays N units of it, so a count within N is gone after one window,
 * as before, and a debt of D windows' worth lasts D windows. The count saturates at
 * SL_COUNTER_MAX (2^50) and reported times at SL_TIME_MAX (2^52 µs).
 *
 * remaining: N minus the units taken in the current window (0 in debt).
 * reset:     until the count is back to zero: the end of this window, later in debt.
 * retry_after (denied): the start of the first window in which `need` units fit. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct fixed_window_state {
    uint64_t start; /* µs; a multiple of the P it began under */
    uint64_t admitted;
};

static size_t fixed_window_state_size(const struct sl_quota *q)
{
    return sizeof(struct fixed_window_state);
}

/* From the end of the window starting at `stored`·P, `windows` more windows: capped. */
static uint64_t windows_from_end(uint64_t until_end, uint64_t windows, uint64_t p)
{
    sl_u128 t = (sl_u128)until_end + sl_mul128(windows, p);
    return t > SL_TIME_MAX ? SL_TIME_MAX : (uint64_t)t;
}

static void fixed_window_decide(const struct sl_limit *lim, const struct sl_quota *q, void *state,
                                uint64_t now_us, const struct sl_units *u, struct sl_decision *out)
{
    struct fixed_window_state *s = state;
    uint64_t n = q->count, p = q->period_us;
    uint64_t k = now_us / p, stored = s->start / p;

    /* A stored window after the current one means the clock stepped back: keep counting in
     * the newer window rather than hand out a fresh quota. */
    if (stored < k) {
        /* Each window begun since repays N units. */
        sl_u128 repaid = sl_mul128(k - stored, n);
        s->admitted = repaid >= s->admitted ? 0 : s->admitted - (uint64_t)repaid;
        s->start = k * p;
        stored = k;
    }
    uint64_t until_end = sl_sat64(sl_mul128(stored + 1, p) - now_us);

    *out = (struct sl_decision){.limit = n};
    bool fits = u->need == 0 || (u->need <= n && s->admitted + u->need <= n);
    if (fits) {
        s->admitted =
            s->admitted + u->take > SL_COUNTER_MAX ? SL_COUNTER_MAX : s->admitted + u->take;
        out->allowed = true;
        out->remaining = s->admitted < n ? n - s->admitted : 0;
    } else if (u->need > n) {
        out->retry_after_us = SL_TIME_MAX; /* never fits */
    } else {
        /* The first window after which the count plus need is within N. */
        uint64_t w = sl_ceil_div128(s->admitted + u->need - n, n);
        out->retry_after_us = windows_from_end(until_end, w - 1, p);
    }
    uint64_t windows = s->admitted / n + (s->admitted % n != 0); /* until the count is 0 */
    out->reset_us = windows <= 1 ? until_end : windows_from_end(until_end, windows - 1, p);
}

const struct sl_algorithm_ops sl_alg_fixed_window = {
    .name = "fixed_window",
    .tag = "fw",
    .has_units = true,
    .state_size = fixed_window_state_size,
    .decide = fixed_window_decide,
    .rescale = NULL, /* the start and the count read the same under any rate */
    .redis_script = sl_lua_fixed_window,
};
