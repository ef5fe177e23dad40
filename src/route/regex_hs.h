/* The path_regex routes of a configuration in one Hyperscan database: one scan of the path
 * reports every route whose pattern matches. Private to src/route/; built only with
 * Hyperscan (SLUICE_HAVE_HYPERSCAN).
 *
 * The database is read-only once built and shared by all threads; each thread scans with
 * its own scratch space, one per thread slot, reserved before the configuration is
 * published and freed with it. */
#ifndef SLUICE_ROUTE_REGEX_HS_H
#define SLUICE_ROUTE_REGEX_HS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"

struct sl_regex_hs;

/* Compiles every distinct path_regex of `cfg` once (caseless with paths.case_insensitive, as
 * regcomp's REG_ICASE); routes sharing a pattern, say one per method, share its id.
 * Returns NULL on failure with a message in `err` and, when one pattern was refused, its
 * route position in `*route` (else SIZE_MAX). Free with sl_regex_hs_free(). */
struct sl_regex_hs *sl_regex_hs_new(const struct sl_config *cfg, size_t *route, char *err,
                                    size_t errlen);

/* Releases the database and every scratch. Accepts NULL. */
void sl_regex_hs_free(struct sl_regex_hs *set);

/* Gives thread slots 0..threads-1 a scratch each. Call before the set is shared: the slot
 * array may move. Returns 0, or -1 on ENOMEM (slots already given keep theirs). */
int sl_regex_hs_reserve(struct sl_regex_hs *set, unsigned threads);

/* Decides whether a route whose pattern matched is taken (its other conditions hold). */
typedef bool (*sl_regex_hs_accept)(void *arg, uint32_t route);

/* Scans `path` once with thread slot `thread`'s scratch and lowers `*best` to the first
 * route, in file order, before `*best` whose pattern matches and that `accept` takes
 * (`accept` is asked only about such routes, each at most once). Returns 0, or -1 when
 * the slot has no scratch or the scan failed: then the caller must match another way
 * (`*best` may have been lowered already, to a true match). Never allocates. */
int sl_regex_hs_first(const struct sl_regex_hs *set, unsigned thread, const char *path, size_t len,
                      uint32_t *best, sl_regex_hs_accept accept, void *arg);

/* The database's size, one scratch's size, the number of slots with one, and the number of
 * distinct patterns. */
void sl_regex_hs_sizes(const struct sl_regex_hs *set, size_t *database, size_t *scratch,
                       unsigned *threads, size_t *patterns);

#endif
