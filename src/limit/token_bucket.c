/* token_bucket: a bucket of at most `burst` tokens (default N) refilled continuously at
 * N tokens per P; a request takes `cost` tokens (1 by default) and is admitted when the
 * bucket holds them all.
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
 * Debt: a charge (struct sl_units.take beyond what the bucket holds) moves tat further than
 * `burst` tokens ahead: the bucket is below empty, and admits nothing until refill has
 * repaid the debt. The lack tat − now·N saturates at max(2^53 − 1, burst·P), which the Lua
 * twin holds exactly: a debt of (2^53 − burst·P)/P tokens at least (25 hours of a
 * 100000/1h budget); more is forgiven. Reported times saturate at SL_TIME_MAX (2^52 µs).
 *
 * remaining: whole tokens left after this request (0 in debt).
 * reset:     until the bucket is full again (tat reached).
 * retry_after (denied): until the bucket holds `need` whole tokens. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct token_bucket_state {
    uint64_t tat[2]; /* sl_u128, µs × N */
};

static size_t token_bucket_state_size(const struct sl_quota *q)
{
    return sizeof(struct token_bucket_state);
}

#define LACK_MAX 9007199254740991ull /* 2^53 − 1 */

static uint64_t cap_time(sl_u128 t)
{
    return t > SL_TIME_MAX ? SL_TIME_MAX : (uint64_t)t;
}

static void token_bucket_decide(const struct sl_limit *lim, const struct sl_quota *q, void *state,
                                uint64_t now_us, const struct sl_units *u, struct sl_decision *out)
{
    uint64_t n = q->count, p = q->period_us;
    sl_u128 now = sl_mul128(now_us, n);
    sl_u128 capacity = sl_mul128(q->burst, p);
    sl_u128 lack = sl_max128(sl_load128(state), now) - now; /* missing tokens, times P */

    *out = (struct sl_decision){.limit = n};
    /* Taking a token moves tat one token's worth (P) later; the bucket may lack at most
     * `burst` tokens, except by a charge. */
    if (u->need == 0 || (u->need <= q->burst && lack + sl_mul128(u->need, p) <= capacity)) {
        sl_u128 most = sl_max128(LACK_MAX, capacity);
        lack += sl_mul128(u->take, p);
        if (lack > most)
            lack = most;
        sl_store128(state, now + lack);
        out->allowed = true;
        out->remaining = lack < capacity ? sl_sat64((capacity - lack) / p) : 0;
        out->reset_us = cap_time(sl_ceil_div128(lack, n));
        return;
    }
    out->reset_us = cap_time(sl_ceil_div128(lack, n));
    if (q->burst == 0) {
        out->retry_after_us = p;
        return;
    }
    if (u->need > q->burst) {
        out->retry_after_us = SL_TIME_MAX; /* never fits */
        return;
    }
    /* The first instant t with lack − (t − now)·N ≤ burst·P − need·P; here lack is above the
     * right side, so t > now_us. */
    out->retry_after_us = cap_time(sl_ceil_div128(lack - (capacity - sl_mul128(u->need, p)), n));
}

static void token_bucket_rescale(const struct sl_quota *to, const struct sl_rate *from,
                                 const void *old, void *state)
{
    sl_store128(state, sl_rescale_time(sl_load128(old), from->count, to->count));
}

const struct sl_algorithm_ops sl_alg_token_bucket = {
    .name = "token_bucket",
    .tag = "tb",
    .has_burst = true,
    .burst_defaults_to_count = true,
    .has_units = true,
    .state_size = token_bucket_state_size,
    .decide = token_bucket_decide,
    .rescale = token_bucket_rescale,
    .redis_script = sl_lua_token_bucket,
};
