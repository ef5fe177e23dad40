/* The limiter engine: the proxy's decision hook. For each parsed request head it matches
 * a route, builds each limit's key, asks the limit's store, and says what to do:
 * forward now, forward after a delay, or answer with a status of its own. */
#ifndef SLUICE_ENGINE_H
#define SLUICE_ENGINE_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/cidr.h"
#include "sluice/config.h"
#include "sluice/limit.h"
#include "sluice/request.h"
#include "sluice/store.h"

struct event_base;
struct sl_textbuf;
struct sl_metrics_slot;
struct sl_top_slot;

/* The `decision` label of sluice_requests_total. */
enum sl_outcome {
    SL_OUTCOME_ALLOWED,
    SL_OUTCOME_LIMITED,
    SL_OUTCOME_SHADOW_LIMITED,
    SL_OUTCOME_EXEMPT,
    SL_OUTCOME_UNMATCHED,
    SL_OUTCOME_STORE_ERROR,
};
#define SL_OUTCOME_COUNT 6

const char *sl_outcome_name(enum sl_outcome outcome);

struct sl_verdict;
struct sl_key_block;
struct sl_usage_scan;
struct sl_rates_entry;
typedef void (*sl_verdict_cb)(void *arg, struct sl_verdict *verdict);

/* Engine-private: one limit's decision in flight. */
struct sl_verdict_check {
    struct sl_verdict *verdict;
    const struct sl_limit *limit;
    enum sl_store_kind store; /* the store asked last */
    bool applied;             /* every key source was present */
    enum sl_store_status status;
    struct sl_decision decision;       /* valid when status is SL_STORE_OK */
    struct sl_units units;             /* what the request asked of the limit */
    struct sl_quota quota;             /* the rate decided under: the limit's, or the consumer's */
    const struct sl_rates_entry *rate; /* the `rates:` entry that gave it; NULL: the limit's */
    bool never_fits;                   /* denied without asking: the cost exceeds the capacity */
    bool charge_due;            /* admitted under a `charge`: the response will say how much */
    struct sl_usage_scan *scan; /* response_json: the body's scanner, from head to end */
    uint64_t started_us;
};

struct sl_verdict {
    /* Set by the caller before sl_engine_decide(); owned by the caller; either may be NULL.
     * The engine appends to them. */
    struct sl_textbuf *headers; /* "Name: value\r\n" lines for the client response */
    struct sl_textbuf *body;    /* the body when `status` is set */

    /* Results, valid when the callback runs. */
    const struct sl_route *route; /* the matched route (also for exempt clients), or NULL */
    enum sl_outcome outcome;
    int status;          /* 0: forward upstream; else answer this status with `body` */
    uint64_t delay_us;   /* forward only after this long (leaky_bucket) */
    bool rejected;       /* refused before any limit was asked (a malformed cost header, 400):
                            no decision to count */
    struct sl_ip client; /* the client address limits saw (family 0 for unix peers) */

    /* Engine-private: the decisions of the request in flight. */
    struct {
        sl_verdict_cb cb;
        void *arg;
        struct sl_engine *engine;
        const struct sl_config *cfg;
        unsigned pending;
        struct sl_key_block *keys; /* keys kept for a failure_mode local retry, or NULL */
        struct sl_verdict_check checks[SL_MAX_LIMITS_PER_ROUTE];
        uint64_t started_us;
    } priv;
};

/* One engine per worker thread. `memory` is the process's shared memory store
 * (borrowed); `redis` is this worker's Redis store or NULL (borrowed); `metrics` is this
 * worker's metrics slot (borrowed, may be NULL in tests). */
struct sl_engine *sl_engine_new(struct event_base *base, struct sl_store *memory,
                                struct sl_store *redis, struct sl_metrics_slot *metrics);

/* Sets the thread slot the engine's route lookups use (sl_route_match()): the worker's
 * number. 0 until set, which suits a program with one engine. */
void sl_engine_set_thread(struct sl_engine *engine, unsigned thread);
void sl_engine_free(struct sl_engine *engine);

/* Gives the engine this worker's heavy-hitter sketches (borrowed; NULL: none). While the
 * configuration has admin.top on, every limit's final decision is recorded there. */
void sl_engine_set_top(struct sl_engine *engine, struct sl_top_slot *top);

/* Decides `req` under `cfg` and calls `cb(arg, v)` exactly once: before returning when
 * every store involved answers at once, else later on the worker's event loop (at most
 * redis.timeout later). `req` is borrowed for the call only; `cfg` and `v` must stay
 * alive until the callback. Call only from the engine's worker thread. */
void sl_engine_decide(struct sl_engine *engine, const struct sl_config *cfg,
                      const struct sl_request *req, struct sl_verdict *v, sl_verdict_cb cb,
                      void *arg);

/* Charges after the fact (SPEC.md section 3, Cost). A verdict whose request is forwarded
 * keeps the keys of its admitted charged limits until sl_engine_verdict_done(). */

/* The response head of v's request arrived: every admitted limit with
 * charge "response_header:NAME" takes the number that header holds from its key's budget, as
 * one more store decision asking {0, number} (on Redis one pipelined EVALSHA, never awaited).
 * A missing or malformed header charges nothing and is counted. A response_json charge starts
 * scanning the body if its Content-Type is JSON or server-sent events, and is counted as an
 * error at once otherwise. `hs` is borrowed. */
void sl_engine_charge_head(struct sl_engine *engine, struct sl_verdict *v,
                           const struct sl_header *hs, size_t nheaders);

/* For response_json charges started by sl_engine_charge_head(): the next `len` bytes of the
 * decoded response body, scanned where they lie (borrowed for the call; never copied). */
void sl_engine_charge_body(struct sl_verdict *v, const char *data, size_t len);

/* The response body ended: each response_json charge takes the number its scanner found;
 * a body without it (not JSON, malformed, field missing) charges nothing and is counted. */
void sl_engine_charge_body_end(struct sl_engine *engine, struct sl_verdict *v);

/* True while some limit of `v` still waits for its charge. */
bool sl_engine_charge_pending(const struct sl_verdict *v);

/* v's request is over, answered or abandoned: a charge not made by now is not made (a
 * response that never arrived charges nothing beyond the cost). Releases what `v` kept.
 * Call before `v` is decided again or freed; a verdict that kept nothing is left alone.
 * `engine` NULL: the engine was freed first; what `v` kept is freed. */
void sl_engine_verdict_done(struct sl_engine *engine, struct sl_verdict *v);

#endif
