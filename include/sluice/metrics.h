/* The metrics registry. Hot-path counters live in per-worker slots written only by their
 * own thread (no locks, no shared cache lines); the admin thread sums the slots when
 * /metrics is scraped. Names and labels follow SPEC.md section 8. */
#ifndef SLUICE_METRICS_H
#define SLUICE_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/engine.h"
#include "sluice/store.h"

struct evbuffer;
struct sl_metrics;
struct sl_metrics_slot;

/* Capacity for distinct names over the life of the process (names are never forgotten, so
 * that counters continue across reloads). Route id 0 is the unmatched route, "". */
#define SL_METRICS_MAX_ROUTES 4096
#define SL_METRICS_MAX_LIMITS 16384

/* SL_CHECK_SHADOW_DENY: a shadow limit that would have denied. */
enum sl_check_result { SL_CHECK_ALLOW, SL_CHECK_DENY, SL_CHECK_ERROR, SL_CHECK_SHADOW_DENY };
enum sl_upstream_error {
    SL_UPSTREAM_ERR_CONNECT,
    SL_UPSTREAM_ERR_TIMEOUT,
    SL_UPSTREAM_ERR_RESET,
    SL_UPSTREAM_ERR_RESOLVE, /* a host-name upstream's name did not resolve */
    SL_UPSTREAM_ERR_TLS,     /* the TLS handshake with the upstream failed */
};
/* How a client's TLS handshake ended: the `result` label. */
enum sl_tls_handshake {
    SL_TLS_HANDSHAKE_OK,      /* "ok": a full handshake */
    SL_TLS_HANDSHAKE_RESUMED, /* "resumed": a session ticket was accepted */
    SL_TLS_HANDSHAKE_FAILED,  /* "failed": no common version or cipher, a bad certificate, a
                               * client gone mid-way */
    SL_TLS_HANDSHAKE_KINDS
};

/* Why sluice sent a client's HTTP/2 connection a GOAWAY: the `reason` label. */
enum sl_h2_goaway {
    SL_H2_GOAWAY_SHUTDOWN, /* "shutdown": sluice is stopping; open streams may finish */
    SL_H2_GOAWAY_IDLE,     /* "idle": client.idle_timeout passed with nothing to do */
    SL_H2_GOAWAY_STALLED,  /* "stalled": the client kept its flow-control window shut */
    SL_H2_GOAWAY_CALM,     /* "enhance_your_calm": a flood (rapid reset, CONTINUATION, ...) */
    SL_H2_GOAWAY_PROTOCOL, /* "protocol_error": PROTOCOL_ERROR or another connection error */
    SL_H2_GOAWAY_KINDS
};

/* The `code` of sluice_rls_requests_total: a call's overall answer, or a store failure. */
enum sl_rls_code_kind { SL_RLS_CODE_OK, SL_RLS_CODE_OVER_LIMIT, SL_RLS_CODE_ERROR };

/* A registry with `nslots` worker slots. NULL on ENOMEM. */
struct sl_metrics *sl_metrics_new(unsigned nslots);
void sl_metrics_free(struct sl_metrics *metrics);

/* Slot `i` (0 <= i < nslots), for worker i only. */
struct sl_metrics_slot *sl_metrics_slot(struct sl_metrics *metrics, unsigned i);

/* Gives cfg's routes and limits their metrics ids, stable by name across reloads, so a
 * route's counters continue after a reload. Call before publishing `cfg`. Thread-safe.
 * Also records whether `cfg` configures Redis, for sluice_redis_connected.
 * Returns 0, or -1 when the registry has no room for more names; the routes and limits
 * that did not fit get an id past the capacity, which the recording functions ignore. */
int sl_metrics_bind(struct sl_metrics *metrics, struct sl_config *cfg);

/* Hot path: one ShouldRateLimit call answered, on `domain` (a domain of the rls files bound
 * by sl_metrics_bind; any other is counted as ""). `s` may be NULL. */
void sl_metrics_rls_request(struct sl_metrics_slot *s, const char *domain,
                            enum sl_rls_code_kind code);

/* The memory store whose key and eviction counts the gauges report (borrowed). */
void sl_metrics_set_memory_store(struct sl_metrics *metrics, const struct sl_store *memory);

/* Hot path: called only by the slot's worker; no locks, no allocation except once per
 * route (and per 64 limits) the first time the worker records it. `s` may be NULL (nothing
 * is recorded). `route` is NULL for unmatched requests. sl_metrics_request() also observes
 * the route's request duration; statuses outside 100..599 are not recorded. */
void sl_metrics_request(struct sl_metrics_slot *s, const struct sl_route *route,
                        enum sl_outcome outcome, uint64_t duration_us);
void sl_metrics_limit_check(struct sl_metrics_slot *s, const struct sl_limit *limit,
                            enum sl_check_result result);
/* Units a limit with `cost` or `charge` took: admitted by cost (charge false), or charged
 * from the upstream's answer (charge true). */
void sl_metrics_limit_units(struct sl_metrics_slot *s, const struct sl_limit *limit, bool charge,
                            uint64_t units);
/* A response of a charged limit's request that reported no usable number. */
void sl_metrics_charge_error(struct sl_metrics_slot *s, const struct sl_limit *limit);
void sl_metrics_response(struct sl_metrics_slot *s, const struct sl_route *route, int status);
void sl_metrics_store_duration(struct sl_metrics_slot *s, enum sl_store_kind store,
                               uint64_t duration_us);
void sl_metrics_store_error(struct sl_metrics_slot *s, enum sl_store_kind store,
                            enum sl_store_status kind);
void sl_metrics_upstream_error(struct sl_metrics_slot *s, enum sl_upstream_error kind);
/* `n` request header fields whose name has a "_", and what client.underscores_in_headers
 * did with them. */
void sl_metrics_headers_underscore(struct sl_metrics_slot *s, enum sl_underscores action,
                                   uint64_t n);
void sl_metrics_connection_opened(struct sl_metrics_slot *s);
void sl_metrics_connection_closed(struct sl_metrics_slot *s);
/* A stream a client opened on an HTTP/2 connection (its request is counted as any other). */
void sl_metrics_http2_stream(struct sl_metrics_slot *s);
/* A GOAWAY sent to an HTTP/2 client; reasons outside the enum are not recorded. */
void sl_metrics_http2_goaway(struct sl_metrics_slot *s, enum sl_h2_goaway reason);
/* A client's TLS handshake ended. */
void sl_metrics_tls_handshake(struct sl_metrics_slot *s, enum sl_tls_handshake result);
/* A Redis decision answered from the worker's over-limit cache instead of Redis. */
void sl_metrics_deny_cache_hit(struct sl_metrics_slot *s);
/* Every worker with a Redis connection reports its state; sluice_redis_connected is 1 when
 * Redis is configured and every slot reported "connected" last. */
void sl_metrics_redis_connected(struct sl_metrics_slot *s, bool connected);

/* The Redis store's topology, from the slot's worker: a MOVED (moved = true) or ASK
 * redirection answered, and a slot map or master address asked for again. */
void sl_metrics_redis_redirection(struct sl_metrics_slot *s, bool moved);
void sl_metrics_redis_topology_refresh(struct sl_metrics_slot *s);

/* Process-wide events. Thread-safe. The last reload's time and result are kept for the
 * dashboard. */
void sl_metrics_config_reload(struct sl_metrics *metrics, bool success);

/* Appends the Prometheus text exposition (format 0.0.4) to `out`. Thread-safe; reads the
 * slots while workers write them, so each series is exact but the series of one scrape
 * are not one atomic snapshot. Returns 0, or -1 on ENOMEM. */
int sl_metrics_render(struct sl_metrics *metrics, struct evbuffer *out);

#endif
