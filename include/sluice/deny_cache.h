/* The local over-limit cache (redis.deny_cache, SPEC.md section 3), as Envoy's ratelimit
 * service keeps one: when Redis denies a key with retry_after R, no request on that key can
 * be admitted before R has passed (quota only frees with time), so the denial is held here
 * and repeated without asking Redis until then. Counted from when the request was sent to
 * Redis, which is no later than when Redis decided, a held denial never outlives Redis's.
 *
 * A denial is held under the limit's identity: route and limit names, algorithm, N, P and
 * burst of the quota decided under (the limit's rate, or a consumer's), and delay, by value, so
 * that a reload changing any of them finds nothing held and asks Redis, and the key value as the
 * Redis key holds it (over 200 bytes, its digest: the caller's part, which also bounds an entry's
 * size). Bounded by an entry count, least recently used first out. Keys are hashed with a random
 * SipHash key (client-chosen keys cannot be made to collide). One cache per worker, used by that
 * worker only: no locks. The clock is the caller's (now_us, sent_us: CLOCK_MONOTONIC microseconds),
 * so tests drive it. */
#ifndef SLUICE_DENY_CACHE_H
#define SLUICE_DENY_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/limit.h"

struct sl_deny_cache;

/* A cache holding at most `max_entries` (>= 1) denials. NULL on ENOMEM. */
struct sl_deny_cache *sl_deny_cache_new(size_t max_entries);

/* Releases the cache and every entry. Accepts NULL. */
void sl_deny_cache_free(struct sl_deny_cache *cache);

/* What the cache knows of a key. */
enum sl_deny_state {
    SL_DENY_UNKNOWN, /* nothing held: ask Redis */
    SL_DENY_HELD,    /* a live denial: answer it locally */
    /* The held denial has run out. Quota may have freed, but for a key under a flood only
     * one request needs to find out: the caller sends this one and registers it with
     * sl_deny_cache_probe, and the requests that follow wait for its answer instead of
     * all asking Redis at once. */
    SL_DENY_EXPIRED,
    SL_DENY_PROBING, /* run out, and a request registered as asking Redis: wait for it */
};

/* What is held for `key` (binary-safe, borrowed) under `lim` and quota `q` at `now_us`, for a
 * request asking `need` units: a denial of a larger need says nothing of it (SL_DENY_UNKNOWN, the
 * entry kept for larger asks). SL_DENY_HELD fills `out` as Redis would answer now: denied,
 * limit N, remaining 0, reset and retry_after counted down to `now_us`. SL_DENY_PROBING sets
 * `*probe` to the token registered by sl_deny_cache_probe. An entry whose time has come (now_us >=
 * sent + retry_after) stays, as SL_DENY_EXPIRED, until an answer replaces it (sl_deny_cache_add),
 * sl_deny_cache_forget drops it, or it is the least recently used. */
enum sl_deny_state sl_deny_cache_find(struct sl_deny_cache *cache, const struct sl_limit *lim,
                                      const struct sl_quota *q, const char *key, size_t key_len,
                                      uint64_t need, uint64_t now_us, struct sl_decision *out,
                                      void **probe);

/* Marks the run-out denial of `key` under `lim` as being asked again by `token` (the
 * caller's; never dereferenced here), or clears the mark when `token` is NULL. Until the
 * mark is cleared, or sl_deny_cache_add or sl_deny_cache_forget is called for the same
 * key, sl_deny_cache_find answers SL_DENY_PROBING with it. The caller does one of these
 * three when the token's answer (or failure) comes, before the token dies. */
void sl_deny_cache_probe(struct sl_deny_cache *cache, const struct sl_limit *lim,
                         const struct sl_quota *q, const char *key, size_t key_len, void *token);

/* Drops whatever is held for `key` under `lim`: Redis admitted it, or could not be asked,
 * so the next requests ask Redis each. */
void sl_deny_cache_forget(struct sl_deny_cache *cache, const struct sl_limit *lim,
                          const struct sl_quota *q, const char *key, size_t key_len);

/* Holds Redis's denial `d` of `key` under `lim`, for a request of `need` units sent at
 * `sent_us`, until sent_us + d->retry_after_us; it then answers requests of that need or
 * more. Ignores allowed decisions and those with no retry_after. A key already held keeps
 * its entry when that is of a need no larger and ends no earlier, else takes the new one.
 * When full, the least recently used entry makes room. Out of memory, nothing is held (the
 * next request asks Redis). A probe registered for the key is cleared: the denial it was
 * asking about has been answered. */
void sl_deny_cache_add(struct sl_deny_cache *cache, const struct sl_limit *lim,
                       const struct sl_quota *q, const char *key, size_t key_len, uint64_t need,
                       uint64_t sent_us, const struct sl_decision *d);

/* Entries held now, run-out ones included. */
size_t sl_deny_cache_count(const struct sl_deny_cache *cache);

#endif
