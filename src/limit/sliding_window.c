/* sliding_window: at most N admitted requests in (now − P, now], exactly.
 *
 * State: a ring buffer of the admitted requests' timestamps, oldest first, each dropped once
 * a decision finds it out of the window, in `cap` slots: N for a key that has only known this
 * rate, so its size is O(N): 16 + 8·N bytes. Denied requests are not recorded, so a client
 * that keeps knocking is not locked out for longer.
 * A change of rate keeps the whole log and reads it under the new N and P, as the Redis
 * script reads its sorted set: a log written under a larger N may hold more than N entries,
 * every one counted while it is in the window, so that a key moved to a smaller N and back
 * within the window finds all the requests it made there. Such a log gets the slots it
 * needs (rescaled_size); it never grows past N under the new rate, so it only empties until
 * the next change, and the store gives the room back once the key's state expires.
 * remaining: N minus the requests admitted in (now − P, now].
 * reset:     until the newest recorded request leaves the window (log empty again).
 * retry_after (denied): until fewer than N recorded requests are left in the window: when
 *            now − ts reaches P for the (len − N + 1)-th oldest, the oldest when len = N.
 * N is below 2^32 (the configuration allows 100 000): a larger one has no state. */
#include <assert.h>

#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct sliding_window_state {
    uint32_t head; /* slot of the oldest timestamp */
    uint32_t len;  /* timestamps held */
    uint32_t cap;  /* slots in ts; 0 (a zeroed state) until the first decision makes it N */
    uint64_t ts[];
};

/* Bytes of a state with `slots` slots, or SIZE_MAX when no state can have that many. */
static size_t log_size(uint64_t slots)
{
    size_t fixed = sizeof(struct sliding_window_state);
    if (slots > UINT32_MAX || slots > (SIZE_MAX - fixed) / sizeof(uint64_t))
        return SIZE_MAX; /* no allocation can satisfy it; the store reports the failure */
    return fixed + (size_t)slots * sizeof(uint64_t);
}

static size_t sliding_window_state_size(const struct sl_quota *q)
{
    return log_size(q->count);
}

/* The slot of the i-th oldest timestamp (i below len). */
static uint64_t slot(const struct sliding_window_state *s, uint64_t i)
{
    uint64_t at = s->head + i;
    return at >= s->cap ? at - s->cap : at;
}

/* A timestamp from the future (a clock step back) stays in the window. */
static bool has_left_window(uint64_t ts, uint64_t now_us, uint64_t p)
{
    return ts <= now_us && now_us - ts >= p;
}

static void sliding_window_decide(const struct sl_limit *lim, const struct sl_quota *q, void *state,
                                  uint64_t now_us, const struct sl_units *u,
                                  struct sl_decision *out)
{
    struct sliding_window_state *s = state;
    uint64_t n = q->count, p = q->period_us;

    if (s->cap == 0)
        s->cap = (uint32_t)n; /* a fresh state, state_size(q) bytes */
    while (s->len > 0 && has_left_window(s->ts[s->head], now_us, p)) {
        s->head = s->head + 1 == s->cap ? 0 : s->head + 1;
        s->len--;
    }

    *out = (struct sl_decision){.limit = n};
    if (s->len < n) {
        /* The store sizes a state for N at least (state_size, rescaled_size). */
        assert(s->cap >= n);
        s->ts[slot(s, s->len)] = now_us;
        s->len++;
        out->allowed = true;
        out->remaining = n - s->len;
        out->reset_us = p;
        return;
    }
    out->reset_us = sl_sat64((sl_u128)s->ts[slot(s, s->len - 1)] + p - now_us);
    out->retry_after_us = sl_sat64((sl_u128)s->ts[slot(s, s->len - n)] + p - now_us);
}

/* Slots for the log of `old` under `to`: every entry it holds, and room for N. */
static uint64_t rescaled_slots(const struct sl_quota *to, const struct sliding_window_state *old)
{
    return old->len > to->count ? old->len : to->count;
}

static size_t sliding_window_rescaled_size(const struct sl_quota *to, const struct sl_rate *from,
                                           const void *old)
{
    return log_size(rescaled_slots(to, old));
}

/* Entries that have left the new window are kept too: rescale() has no clock, and the next
 * decision drops them. */
static void sliding_window_rescale(const struct sl_quota *to, const struct sl_rate *from,
                                   const void *old, void *state)
{
    const struct sliding_window_state *o = old;
    struct sliding_window_state *s = state;
    for (uint32_t i = 0; i < o->len; i++)
        s->ts[i] = o->ts[slot(o, i)];
    s->head = 0;
    s->len = o->len;
    s->cap = (uint32_t)rescaled_slots(to, o);
}

const struct sl_algorithm_ops sl_alg_sliding_window = {
    .name = "sliding_window",
    .tag = "sw",
    .state_size = sliding_window_state_size,
    .decide = sliding_window_decide,
    .rescaled_size = sliding_window_rescaled_size,
    .rescale = sliding_window_rescale,
    .redis_script = sl_lua_sliding_window,
};
