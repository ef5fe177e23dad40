/* Placeholder algorithms: admit everything. Replaced by one file per algorithm. */
#include "sluice/limit.h"

static size_t stub_state_size(const struct sl_limit *lim)
{
    return 8;
}

static void stub_decide(const struct sl_limit *lim, void *state, uint64_t now_us,
                        struct sl_decision *out)
{
    *out = (struct sl_decision){.allowed = true, .limit = lim->count, .remaining = lim->count};
}

#define STUB(id, burst, to_count, delay)                                                       \
    const struct sl_algorithm_ops sl_alg_##id = {#id, burst, to_count, delay, stub_state_size, \
                                                 stub_decide, ""}
STUB(fixed_window, false, false, false);
STUB(sliding_window, false, false, false);
STUB(sliding_window_counter, false, false, false);
STUB(token_bucket, true, true, false);
STUB(leaky_bucket, true, false, true);
