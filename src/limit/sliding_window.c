/* sliding_window: at most N admitted requests in (now − P, now], exactly.
 *
 * State: a ring buffer of the timestamps of the last (up to N) admitted requests, oldest
 * first, so its size is O(N): 16 + 8·N bytes. Denied requests are not recorded, so a
 * client that keeps knocking is not locked out for longer.
 * A change of rate keeps the log, read under the new N and P. When N shrinks, only the
 * newest N entries are kept: while an older one is in the window so are the N newer ones,
 * which alone deny, so the decisions (and retry_after, from the oldest kept) are those of
 * the whole log, as the Redis script counts it.
 * remaining: N minus the requests admitted in (now − P, now].
 * reset:     until the newest recorded request leaves the window (log empty again).
 * retry_after (denied): until the oldest recorded request leaves the window, i.e. when
 *            now − oldest reaches P. */
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"

#include "arith.h"

struct sliding_window_state {
    uint64_t head; /* index of the oldest timestamp */
    uint64_t len;  /* timestamps held */
    uint64_t ts[]; /* N slots */
};

static size_t sliding_window_state_size(const struct sl_quota *q)
{
    size_t fixed = sizeof(struct sliding_window_state);
    if (q->count > (SIZE_MAX - fixed) / sizeof(uint64_t))
        return SIZE_MAX; /* no allocation can satisfy it; the store reports the failure */
    return fixed + (size_t)q->count * sizeof(uint64_t);
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

    while (s->len > 0 && has_left_window(s->ts[s->head], now_us, p)) {
        s->head = s->head + 1 == n ? 0 : s->head + 1;
        s->len--;
    }

    *out = (struct sl_decision){.limit = n};
    if (s->len < n) {
        uint64_t tail = s->head + s->len;
        s->ts[tail >= n ? tail - n : tail] = now_us;
        s->len++;
        out->allowed = true;
        out->remaining = n - s->len;
        out->reset_us = p;
        return;
    }
    uint64_t newest =
        s->ts[s->head + s->len - 1 >= n ? s->head + s->len - 1 - n : s->head + s->len - 1];
    out->reset_us = sl_sat64((sl_u128)newest + p - now_us);
    out->retry_after_us = sl_sat64((sl_u128)s->ts[s->head] + p - now_us);
}

static void sliding_window_rescale(const struct sl_quota *to, const struct sl_rate *from,
                                   const void *old, void *state)
{
    const struct sliding_window_state *o = old;
    struct sliding_window_state *s = state;
    uint64_t keep = o->len < to->count ? o->len : to->count;
    for (uint64_t i = 0; i < keep; i++) {
        uint64_t at = o->head + (o->len - keep) + i; /* below 2·N_old */
        s->ts[i] = o->ts[at >= from->count ? at - from->count : at];
    }
    s->head = 0;
    s->len = keep;
}

const struct sl_algorithm_ops sl_alg_sliding_window = {
    .name = "sliding_window",
    .tag = "sw",
    .state_size = sliding_window_state_size,
    .decide = sliding_window_decide,
    .rescale = sliding_window_rescale,
    .redis_script = sl_lua_sliding_window,
};
