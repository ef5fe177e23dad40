/* fixed_window: at most N admitted requests in each aligned window [k·P, (k+1)·P).
 *
 * State: the index k of the window last seen and the requests admitted in it.
 * remaining: N minus the requests admitted in the current window.
 * reset:     until the current window ends (the count starts again from zero).
 * retry_after (denied): the same instant, the start of the next window. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct fixed_window_state {
    uint64_t window;
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
    uint64_t k = now_us / p;

    /* A window index below the stored one means the clock stepped back: keep counting in
     * the newer window rather than hand out a fresh quota. */
    if (k > s->window) {
        s->window = k;
        s->admitted = 0;
    }
    uint64_t until_end = sl_sat64(sl_mul128(s->window + 1, p) - now_us);

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
    .redis_script = sl_lua_fixed_window,
};
