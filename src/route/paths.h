/* The operator's path-folding rules, as two in-place steps of sl_path_normalize()
 * (src/route/paths.c explains the order). Private to src/route/. */
#ifndef SLUICE_ROUTE_PATHS_H
#define SLUICE_ROUTE_PATHS_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config.h"

/* On the decoded path p[0..n) (starting with "/"), before dot segments are resolved:
 * parameters stripped, then %2F decoded, as `rules` ask. Returns the new length (<= n). */
size_t sl_path_rules_before_dots(const struct sl_path_rules *rules, char *p, size_t n);

/* On the resolved path p[0..n): case folded, then a trailing slash dropped, as `rules`
 * ask. Returns the new length (<= n, and >= 1 for a non-empty path). */
size_t sl_path_rules_after_dots(const struct sl_path_rules *rules, char *p, size_t n);

#endif
