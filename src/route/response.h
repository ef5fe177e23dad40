/* What the engine writes into a verdict's response: the RateLimit header fields of the
 * applied limits and the bodies of the answers sluice gives itself (SPEC.md section 6). */
#ifndef SLUICE_ROUTE_RESPONSE_H
#define SLUICE_ROUTE_RESPONSE_H

#include "sluice/engine.h"

/* The checks a verdict holds for `route`: one per limit, up to SL_MAX_LIMITS_PER_ROUTE. */
static inline size_t sl_verdict_nchecks(const struct sl_route *route)
{
    return route->nlimits < SL_MAX_LIMITS_PER_ROUTE ? route->nlimits : SL_MAX_LIMITS_PER_ROUTE;
}

/* Appends the rate-limit header fields of v's answered checks (those with a decision) to
 * v->headers in cfg->response_headers style. Writes nothing when no check answered. */
void sl_response_ratelimit_headers(const struct sl_config *cfg, struct sl_verdict *v);

/* Makes `v` a rate-limited answer: status, the rate-limit header fields as
 * sl_response_ratelimit_headers() writes them, Retry-After (the largest retry_after among
 * denying checks, whole seconds rounded up, at least 1) and the JSON body naming the first
 * denying limit in configuration order. When a limit denied because the request's cost
 * exceeds its capacity, no wait would help: the body says so
 * ({"error":"cost_exceeds_capacity",…,"cost":C,"capacity":K}) and there is no Retry-After. */
void sl_response_limited(const struct sl_config *cfg, struct sl_verdict *v);

/* Makes `v` the 400 of a request whose cost header for `lim` is not a number of units:
 * {"error":"bad_cost","route":…,"limit":…,"header":NAME}. */
void sl_response_bad_cost(struct sl_verdict *v, const struct sl_limit *lim);

/* Makes `v` the 503 of failure_mode closed: Retry-After: 1 and {"error":"store_unavailable"}. */
void sl_response_store_unavailable(struct sl_verdict *v);

#endif
