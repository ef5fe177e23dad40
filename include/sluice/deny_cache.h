/* The local over-limit cache (redis.deny_cache, SPEC.md section 3), as Envoy's ratelimit
 * service keeps one: when Redis denies a key with retry_after R, no request on that key can
 * be admitted before R has passed (quota only frees with time), so the denial is held here
 * and repeated without asking Redis until then. Counted from when the request was sent to
 * Redis, which is no later than when Redis decided, a held denial never outlives Redis's.
 *
 * A denial is held under the limit's identity: route and limit names, algorithm, N, P,
 * burst and delay, by value, so that a reload changing any of them finds nothing held and
 * asks Redis, and the key value as the Redis key holds it (over 200 bytes, its digest: the
 * caller's part, which also bounds an entry's size). Bounded by an entry count, least recently used
 * first out. Keys are hashed with a random SipHash key (client-chosen keys cannot be made to
 * collide). One cache per worker, used by that worker only: no locks. The clock is the caller's
 * (now_us, sent_us: CLOCK_MONOTONIC microseconds), so tests drive it. */
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

/* The denial held for `key` (binary-safe, borrowed) under `lim` at `now_us`, for a request
 * asking `need` units: a denial of a larger need says nothing of it (false, the entry kept).
 * When one is live, fills `out` as Redis would answer now: denied, limit N, remaining 0, reset and
 * retry_after counted down to `now_us`, and returns true. An entry whose time has come
 * (now_us >= sent + retry_after) is dropped and false returned. */
bool sl_deny_cache_find(struct sl_deny_cache *cache, const struct sl_limit *lim, const char *key,
                        size_t key_len, uint64_t need, uint64_t now_us, struct sl_decision *out);

/* Holds Redis's denial `d` of `key` under `lim`, for a request of `need` units sent at
 * `sent_us`, until sent_us + d->retry_after_us; it then answers requests of that need or more.
 * Ignores allowed decisions and those with no retry_after. A key already held keeps its entry
 * when that is of a need no larger and ends no earlier, else takes the new one. When full, the
 * least recently used entry makes room. Out of memory, nothing is held (the next request asks
 * Redis). */
void sl_deny_cache_add(struct sl_deny_cache *cache, const struct sl_limit *lim, const char *key,
                       size_t key_len, uint64_t need, uint64_t sent_us,
                       const struct sl_decision *d);

/* Entries held now, expired ones not yet dropped included. */
size_t sl_deny_cache_count(const struct sl_deny_cache *cache);

#endif
