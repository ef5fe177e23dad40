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

/* The rate one decision is made under: the limit's own (sl_limit_quota), or the one its
 * `rates:` gives the request's consumer (SPEC.md section 3, Per-consumer rates). */
struct sl_quota {
    uint64_t count;     /* N, at least 1 */
    uint64_t period_us; /* P, at least 1 */
    uint64_t burst;     /* the limit's burst; where it sets none, the algorithm's default for N */
};

/* The limit's own rate as a quota. */
static inline struct sl_quota sl_limit_quota(const struct sl_limit *lim)
{
    return (struct sl_quota){lim->count, lim->period_us, lim->burst};
}

struct sl_decision {
    bool allowed;
    uint64_t limit;          /* N */
    uint64_t remaining;      /* requests still admitted now, after this one */
    uint64_t reset_us;       /* until the quota is fully restored (state is as new) */
    uint64_t retry_after_us; /* denied: until a request would be admitted; else 0 */
    uint64_t delay_us;       /* allowed: hold the request this long first (leaky_bucket) */
};

/* What one decision asks of a limit, in units (SPEC.md section 3, Cost). A request of cost c
 * asks {c, c}; a request on a limit charged by the response asks {c, c} with its `cost`, else
 * {1, 0} (admitted while a unit is left, taking none); the charge itself asks {0, amount}. Both
 * are at most SL_UNITS_MAX. */
struct sl_units {
    uint64_t need; /* admitted only if this many units fit now; 0 always admits */
    uint64_t take; /* taken when admitted; may exceed what is left (debt, repaid by refill) */
};

/* A cost or charge above this is refused (2^32): with it, every product the algorithms and
 * the Lua scripts form stays exact (see each algorithm's file). */
#define SL_UNITS_MAX 4294967296ull

/* Units held in a fixed_window or sliding_window_counter counter, debt included, saturate
 * here (2^50), so that the Lua twins hold them exactly in doubles. */
#define SL_COUNTER_MAX 1125899906842624ull

/* Times reported (reset, retry_after) saturate here (2^52 µs, 142 years) on every algorithm
 * that takes units, so that a deep debt reads the same on both stores. */
#define SL_TIME_MAX 4503599627370496ull

struct sl_algorithm_ops {
    const char *name;             /* as in the configuration: "token_bucket" */
    const char *tag;              /* short and fixed, in the Redis key: "tb" (SPEC.md 3) */
    bool has_burst;               /* accepts `burst` */
    bool burst_defaults_to_count; /* default burst: N when true, else 0 */
    bool has_delay;               /* accepts `delay` */
    bool has_units;               /* accepts `cost` and `charge` (decide honours units) */

    /* Bytes of per-key state under quota `q` (SIZE_MAX when it cannot be held); a zeroed
     * state is a fresh key. The state needs 8-byte alignment. */
    size_t (*state_size)(const struct sl_quota *q);

    /* Decides one request asking `u` of `lim` under quota `q` (N, P and burst come from `q`,
     * every other option from `lim`) at `now_us` (monotonic, microseconds), updates `state`
     * and fills every field of `out`. remaining, reset and retry_after count units;
     * retry_after is when u->need fits. A need above the limit's capacity never fits: it is
     * denied (the engine refuses it before asking). Algorithms without has_units read `u`
     * as {1, 1}. Not thread-safe on one state: the caller serialises. Once `out->reset_us`
     * has passed the state is equivalent to a zeroed one and may be dropped. */
    void (*decide)(const struct sl_limit *lim, const struct sl_quota *q, void *state,
                   uint64_t now_us, const struct sl_units *u, struct sl_decision *out);

    /* Bytes of the state rescale() makes of `old` (written under `from`) for quota `to`: at
     * least state_size(to), more when what `old` records needs more room under `to` (a
     * sliding_window log longer than the new N). NULL: state_size(to). */
    size_t (*rescaled_size)(const struct sl_quota *to, const struct sl_rate *from, const void *old);

    /* Carries a state written under the rate `from` (same route, limit and algorithm) over to
     * quota `to`: reads `old` (a state decided under `from`) and writes `state` (zeroed, of
     * rescaled_size bytes; another buffer). NULL when the state reads the same under any
     * rate: it is then kept as is. The rule (README, "Limits"): state survives a change of
     * rate and is read under the new rate for what it records in time; a scaled value is
     * rounded toward later, so that a change never admits more. */
    void (*rescale)(const struct sl_quota *to, const struct sl_rate *from, const void *old,
                    void *state);

    /* The same decision as one Lua script for EVALSHA, touching only KEYS[1] and reading
     * the time with TIME. ARGV: [1] N, [2] P in microseconds, [3] need, [4] take, [5] burst,
     * [6] delay (0|1), [7] a member unique to this request, beginning with ceil(P / 1000)
     * and '/' (sliding_window), and [8], only from tests (sl_store_redis_pin_clock), the
     * time in microseconds instead of TIME. Returns the array
     * {allowed (0|1), remaining, reset_us, retry_after_us, delay_us}. Sets a TTL, and keeps
     * the key alive, denials included, as long as decide() would keep its state: until
     * reset_us has passed. A key written under another N or P is read as rescale() reads it
     * (scaled states keep the N they were written under in the key). */
    const char *redis_script;
};

/* The algorithm registered under `name`, or NULL. */
const struct sl_algorithm_ops *sl_algorithm_find(const char *name);

/* The most units `lim` can ever admit at once: burst for algorithms with one, else N. A need
 * above it never fits. */
uint64_t sl_limit_capacity(const struct sl_limit *lim);

/* The same under quota `q`. */
uint64_t sl_quota_capacity(const struct sl_limit *lim, const struct sl_quota *q);

/* True when `lim` has a `cost` or a `charge`: its units are counted in the metrics. */
static inline bool sl_limit_takes_units(const struct sl_limit *lim)
{
    return lim->cost_kind != SL_COST_DEFAULT || lim->charge_kind != SL_CHARGE_NONE;
}

/* Every registered algorithm, NULL-terminated (for error messages listing the choices). */
const struct sl_algorithm_ops *const *sl_algorithm_all(void);

/* envoyproxy/ratelimit's fixed window, which the rate limit service's `fixed_window` decides
 * with (rls_fixed_window.c): not in the registry, since no route can name it. */
extern const struct sl_algorithm_ops sl_alg_rls_fixed_window;

/* Every algorithm a store may be asked to decide with: the registry's and the rate limit
 * service's, NULL-terminated (the Redis store loads their scripts). */
const struct sl_algorithm_ops *const *sl_algorithm_stored(void);

#endif
