/* Limiter algorithms: one file per algorithm behind sl_algorithm_ops, plus the registry.
 *
 * An algorithm is state layout and arithmetic only: no I/O, no locking, no clock reads.
 * The memory store calls decide() under its stripe lock with a zeroed state for a new
 * key; the Redis store runs redis_script, which must make the same decision.
 *
 * Every algorithm expects count ≥ 1 and period_us ≥ 1 (sl_parse_rate guarantees both) and
 * decides in exact integer arithmetic, without floating point: results are exact while
 * now_us·N and (burst + 1)·P stay below 2^127 (any now_us below 2^63 with N, burst and P
 * below 2^62). Each algorithm's file says what remaining and reset mean for it. */
#ifndef SLUICE_LIMIT_H
#define SLUICE_LIMIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"

struct sl_decision {
    bool allowed;
    uint64_t limit;          /* N */
    uint64_t remaining;      /* requests still admitted now, after this one */
    uint64_t reset_us;       /* until the quota is fully restored (state is as new) */
    uint64_t retry_after_us; /* denied: until a request would be admitted; else 0 */
    uint64_t delay_us;       /* allowed: hold the request this long first (leaky_bucket) */
};

struct sl_algorithm_ops {
    const char *name;                /* as in the configuration: "token_bucket" */
    const char *tag;                 /* short and fixed, in the Redis key: "tb" (SPEC.md 3) */
    bool has_burst;                  /* accepts `burst` */
    bool burst_defaults_to_count;    /* default burst: N when true, else 0 */
    bool has_delay;                  /* accepts `delay` */

    /* Bytes of per-key state for `lim` (SIZE_MAX when it cannot be held); a zeroed state
     * is a fresh key. The state needs 8-byte alignment. */
    size_t (*state_size)(const struct sl_limit *lim);

    /* Decides one request at `now_us` (monotonic, microseconds), updates `state` and fills
     * every field of `out`. Not thread-safe on one state: the caller serialises. Once
     * `out->reset_us` has passed the state is equivalent to a zeroed one and may be
     * dropped. */
    void (*decide)(const struct sl_limit *lim, void *state, uint64_t now_us,
                   struct sl_decision *out);

    /* Carries a state written under the rate `from` (same route, limit and algorithm) over to
     * `lim`'s rate: reads `old` (a state of `from`'s size) and writes `state` (zeroed, of
     * state_size(lim) bytes; another buffer). NULL when the state reads the same under any
     * rate: it is then kept as is. The rule (README, "Limits"): state survives a change of
     * rate and is read under the new rate for what it records in time; a scaled value is
     * rounded toward later, so that a change never admits more. */
    void (*rescale)(const struct sl_limit *lim, const struct sl_rate *from, const void *old,
                    void *state);

    /* The same decision as one Lua script for EVALSHA, touching only KEYS[1] and reading
     * the time with TIME. ARGV: [1] N, [2] P in microseconds, [3] burst, [4] delay (0|1),
     * [5] a member unique to this request (sliding_window). Returns the array
     * {allowed (0|1), remaining, reset_us, retry_after_us, delay_us}. Sets a TTL. A key
     * written under another N or P is read as rescale() reads it (scaled states keep the N
     * they were written under in the key). */
    const char *redis_script;
};

/* The algorithm registered under `name`, or NULL. */
const struct sl_algorithm_ops *sl_algorithm_find(const char *name);

/* Every registered algorithm, NULL-terminated (for error messages listing the choices). */
const struct sl_algorithm_ops *const *sl_algorithm_all(void);

#endif
