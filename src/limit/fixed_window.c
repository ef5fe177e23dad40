/* fixed_window: at most N admitted requests in each aligned window [k·P, (k+1)·P).
 *
 * State: the start (µs) of the window last seen and the requests admitted in it. The start,
 * rather than the window's index, keeps its meaning when P changes: the count carries over
 * while the stored window began inside the current aligned window under the new P, and a
 * new window starts otherwise. N can change freely: the count is compared with the new N.
 * remaining: N minus the requests admitted in the current window.
 * reset:     until the current window ends (the count starts again from zero).
 * retry_after (denied): the same instant, the start of the next window. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct fixed_window_state {
    uint64_t start; /* µs; a multiple of the P it began under */
    uint64_t admitted;
};

static size_t fixed_window_state_size(const struct sl_limit *lim)
{
    return sizeof(struct fixed_window_state);
}

static void fixed_window_decide(const struct sl_limit *lim, void *state, uint64_t now_us,
                                struct sl_decision *out)
{
    struct fixed_window_state *s = state;
    uint64_t n = lim->count, p = lim->period_us;
    uint64_t k = now_us / p, stored = s->start / p;

    /* A stored window after the current one means the clock stepped back: keep counting in
     * the newer window rather than hand out a fresh quota. */
    if (stored < k) {
        s->start = k * p;
        s->admitted = 0;
        stored = k;
    }
    uint64_t until_end = sl_sat64(sl_mul128(stored + 1, p) - now_us);

    *out = (struct sl_decision){.limit = n, .reset_us = until_end};
    if (s->admitted < n) {
        s->admitted++;
        out->allowed = true;
        out->remaining = n - s->admitted;
    } else {
        out->retry_after_us = until_end;
    }
}

const struct sl_algorithm_ops sl_alg_fixed_window = {
    .name = "fixed_window",
    .tag = "fw",
    .state_size = fixed_window_state_size,
    .decide = fixed_window_decide,
    .rescale = NULL, /* the start and the count read the same under any rate */
    .redis_script = sl_lua_fixed_window,
};
