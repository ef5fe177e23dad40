/* Cost and response charges (SPEC.md section 3, Cost): how many units a request asks of a
 * limit, and the numbers an upstream's answer reports. */
#ifndef SLUICE_CHARGE_H
#define SLUICE_CHARGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/limit.h"
#include "sluice/request.h"

/* A number of units as a header carries it: decimal digits only (no sign, no space inside),
 * at most SL_UNITS_MAX. Returns true and sets `*out`, or false for anything else. */
bool sl_units_parse(const char *text, size_t len, uint64_t *out);

/* What `req` asks of `lim` when it is decided (struct sl_units): the limit's cost (a constant,
 * the header's number, 1 when the header is absent or no cost is set), or for a limit charged
 * by the response without a cost, {1, 0}: a unit must be left, none is taken until the
 * charge. Returns 0, or -1 when the cost header is present but not a number of units. */
int sl_cost_units(const struct sl_limit *lim, const struct sl_request *req, struct sl_units *out);

/* The units the response header named by `lim`'s charge reports, among `hs`: the first
 * field of that name (case-insensitive), read as sl_units_parse() reads. False when it is
 * missing or malformed. */
bool sl_charge_header_units(const struct sl_limit *lim, const struct sl_header *hs, size_t nheaders,
                            uint64_t *out);

#endif
