/* What route matching and the route index share. Private to src/route/. */
#ifndef SLUICE_ROUTE_MATCH_H
#define SLUICE_ROUTE_MATCH_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config.h"
#include "sluice/request.h"

/* True when `r`'s method, host and header conditions hold for the request; its path
 * condition is not looked at. `host` is the normalised host or NULL. */
bool sl_route_conditions_hold(const struct sl_route *r, const struct sl_request *req,
                              const char *host, size_t host_len);

#endif
