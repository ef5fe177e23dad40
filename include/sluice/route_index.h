/* The route index: first-match routing at a cost that follows the path's length, not the
 * number of routes (SPEC.md section 2).
 *
 * Built once per configuration snapshot, off the hot path; read-only afterwards, so any
 * number of workers may look up at once. Lookups never allocate. sl_route_match() uses
 * the snapshot's index when it has one and walks the table otherwise; both give the same
 * route for every request. */
#ifndef SLUICE_ROUTE_INDEX_H
#define SLUICE_ROUTE_INDEX_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config.h"
#include "sluice/request.h"

struct sl_route_index;

/* Builds the index of `cfg`'s routes. `cfg` must outlive it and its routes must not change
 * afterwards (the index borrows their paths). Returns NULL on ENOMEM; free with
 * sl_route_index_free(). */
struct sl_route_index *sl_route_index_new(const struct sl_config *cfg);

/* Releases the index. Accepts NULL. */
void sl_route_index_free(struct sl_route_index *index);

/* The route sl_route_match() would return for the same arguments (see route.h), found
 * through the index: exact and prefix paths by hashing the path's prefixes that end at a
 * segment boundary, path_regex routes by their literal prefix, so that regexec runs only
 * for patterns the path could match. `cfg` is the configuration the index was built
 * from. */
const struct sl_route *sl_route_index_match(const struct sl_route_index *index,
                                            const struct sl_config *cfg,
                                            const struct sl_request *req, const char *path,
                                            size_t path_len, const char *host, size_t host_len);

/* What the index holds, for sluice -t. */
struct sl_route_index_stats {
    size_t exact, prefix;  /* routes with path / path_prefix */
    size_t regex_prefixed; /* path_regex routes tried only when their literal prefix fits */
    size_t regex_any;      /* path_regex routes with no usable literal prefix: always tried */
    size_t any;            /* routes without a path condition */
    size_t bytes;          /* memory the index takes */
};
void sl_route_index_stats(const struct sl_route_index *index, struct sl_route_index_stats *out);

/* The literal text every match of the POSIX ERE `pattern` starts with: the characters
 * after a leading "^" up to the first operator, minus a character that a "*", "?", "{"
 * or "+" follows. Empty when the pattern is not anchored, has an alternative ("|") outside
 * parentheses and brackets, or starts otherwise. Writes at most `size` - 1 bytes and a NUL
 * to `out`; returns the length. A shorter answer is always safe: it only lets more
 * patterns reach regexec. */
size_t sl_regex_literal_prefix(const char *pattern, char *out, size_t size);

#endif
