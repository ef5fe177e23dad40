/* token_bucket: a bucket of at most `burst` tokens (default N) refilled continuously at
 * N tokens per P; a request takes one token and is admitted when there is one.
 *
 * State: the theoretical arrival time (GCRA) `tat`: the instant at which the bucket would
 * be full again. Times are kept scaled by N (µs × N), where one token is worth exactly P,
 * so refill is exact at any rate (3/10s refills one token every 3 333 333⅓ µs, with no
 * drift). The bucket holds burst − (tat − now)/T tokens, T = P/N, and a zeroed state is
 * a full bucket.
 *
 * A change of rate keeps tat the same instant: converted to the new N exactly, rounded
 * toward later (never a token more). The new burst applies at once: a bucket that lacks more
 * than the new capacity admits nothing until it has refilled below it.
 *
 * burst 0 is a bucket that can hold no token: nothing is ever admitted. Such a decision
 * reports retry_after = P, since no instant would do.
 *
 * remaining: whole tokens left after this request.
 * reset:     until the bucket is full again (tat reached).
 * retry_after (denied): until the bucket holds one whole token. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct token_bucket_state {
    uint64_t tat[2]; /* sl_u128, µs × N */
};

static size_t token_bucket_state_size(const struct sl_limit *lim)
{
    return sizeof(struct token_bucket_state);
}

static void token_bucket_decide(const struct sl_limit *lim, void *state, uint64_t now_us,
                                struct sl_decision *out)
{
    uint64_t n = lim->count, p = lim->period_us;
    sl_u128 now = sl_mul128(now_us, n);
    sl_u128 capacity = sl_mul128(lim->burst, p);
    sl_u128 tat = sl_max128(sl_load128(state), now);

    *out = (struct sl_decision){.limit = n};
    /* Taking a token moves tat one token's worth (P) later; the bucket may lack at most
     * `burst` tokens. */
    if (tat - now + p <= capacity) {
        tat += p;
        sl_store128(state, tat);
        out->allowed = true;
        out->remaining = sl_sat64((capacity - (tat - now)) / p);
        out->reset_us = sl_sat64(sl_ceil_div128(tat - now, n));
        return;
    }
    out->reset_us = sl_sat64(sl_ceil_div128(tat - now, n));
    if (lim->burst == 0) {
        out->retry_after_us = p;
        return;
    }
    /* The first instant t with tat − t·N ≤ (burst − 1)·P; tat > now here, so t > now_us. */
    out->retry_after_us = sl_sat64(sl_ceil_div128(tat - (capacity - p), n) - now_us);
}

static void token_bucket_rescale(const struct sl_limit *lim, const struct sl_rate *from,
                                 const void *old, void *state)
{
    sl_store128(state, sl_rescale_time(sl_load128(old), from->count, lim->count));
}

const struct sl_algorithm_ops sl_alg_token_bucket = {
    .name = "token_bucket",
    .tag = "tb",
    .has_burst = true,
    .burst_defaults_to_count = true,
    .state_size = token_bucket_state_size,
    .decide = token_bucket_decide,
    .rescale = token_bucket_rescale,
    .redis_script = sl_lua_token_bucket,
};
