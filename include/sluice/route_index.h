/* The route index: first-match routing at a cost that follows the path's length, not the
 * number of routes (SPEC.md section 2).
 *
 * Built once per configuration snapshot, off the hot path; read-only afterwards, so any
 * number of workers may look up at once, each with its own thread slot (the matcher's
 * scratch space). Lookups never allocate. sl_route_match() uses
 * the snapshot's index when it has one and walks the table otherwise; both give the same
 * route for every request. */
#ifndef SLUICE_ROUTE_INDEX_H
#define SLUICE_ROUTE_INDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/request.h"

struct sl_route_index;

/* What matches the path_regex routes. */
enum sl_regex_matcher {
    SL_REGEX_MATCHER_BEST,      /* Hyperscan when sluice was built with it, else POSIX */
    SL_REGEX_MATCHER_POSIX,     /* the literal-prefix prefilter, then regexec per candidate */
    SL_REGEX_MATCHER_HYPERSCAN, /* every pattern in one database: one scan per request */
};

/* False for SL_REGEX_MATCHER_HYPERSCAN in a build without Hyperscan. */
bool sl_regex_matcher_available(enum sl_regex_matcher m);

/* Why sl_route_index_new() failed. */
struct sl_route_index_error {
    size_t route;      /* the route whose pattern the matcher refused, or SIZE_MAX */
    char message[256]; /* "out of memory" or the matcher's own words */
};

/* Builds the index of `cfg`'s routes with matcher `m`. `cfg` must outlive it and its
 * routes must not change afterwards (the index borrows their paths and compiled regexes;
 * path_regex patterns must have passed sl_regex_dialect_check()). Slow with Hyperscan
 * (milliseconds per pattern): build it off the hot path. Returns NULL, with `*err` filled
 * when not NULL, on ENOMEM, when the matcher refuses a pattern or is not built in. Free
 * with sl_route_index_free(). */
struct sl_route_index *sl_route_index_new(const struct sl_config *cfg, enum sl_regex_matcher m,
                                          struct sl_route_index_error *err);

/* Gives thread slots 0..threads-1 the matcher's per-thread scratch space (Hyperscan's
 * scratch; nothing for the POSIX matcher), freed with the index. Call before the index is
 * shared between threads. Returns 0, or -1 on ENOMEM. */
int sl_route_index_reserve(struct sl_route_index *index, unsigned threads);

/* Releases the index. Accepts NULL. */
void sl_route_index_free(struct sl_route_index *index);

/* The route sl_route_match() would return for the same arguments (see route.h), found
 * through the index: exact and prefix paths by hashing the path's prefixes that end at a
 * segment boundary; path_regex routes by one scan of the Hyperscan database, or, with the
 * POSIX matcher, by their literal prefix, so that regexec runs only for patterns the path
 * could match. `cfg` is the configuration the index was built from. `thread` is the
 * caller's thread slot: no two threads may use one at once. A slot without scratch (see
 * sl_route_index_reserve()) still gets the right route, from regexec. Never allocates. */
const struct sl_route *sl_route_index_match(const struct sl_route_index *index,
                                            const struct sl_config *cfg, unsigned thread,
                                            const struct sl_request *req, const char *path,
                                            size_t path_len, const char *host, size_t host_len);

/* What the index holds, for sluice -t. */
struct sl_route_index_stats {
    size_t exact, prefix;  /* routes with path / path_prefix */
    size_t regex_prefixed; /* path_regex routes with a literal prefix (the POSIX prefilter's) */
    size_t regex_any;      /* path_regex routes without one */
    size_t any;            /* routes without a path condition */
    size_t bytes;          /* memory the index takes, besides the matcher's */
    enum sl_regex_matcher matcher; /* POSIX or HYPERSCAN */
    size_t database_bytes;         /* Hyperscan: hs_database_size() */
    size_t scratch_bytes;          /* Hyperscan: hs_scratch_size() of one thread's scratch */
    unsigned threads;              /* Hyperscan: thread slots with scratch */
    size_t patterns;               /* Hyperscan: distinct patterns compiled */
};
void sl_route_index_stats(const struct sl_route_index *index, struct sl_route_index_stats *out);

/* Checks that the POSIX ERE `pattern` keeps to the constructs POSIX and Hyperscan read
 * alike (src/route/regex_dialect.c lists them), whichever matcher this build uses, so that
 * every build accepts the same patterns. Returns 0, or -1 with a message naming the
 * refused construct and its offset in `err`. */
int sl_regex_dialect_check(const char *pattern, char *err, size_t errlen);

/* The literal text every match of the POSIX ERE `pattern` starts with: the characters
 * after a leading "^" up to the first operator, minus a character that a "*", "?", "{"
 * or "+" follows. Empty when the pattern is not anchored, has an alternative ("|") outside
 * parentheses and brackets, or starts otherwise. Writes at most `size` - 1 bytes and a NUL
 * to `out`; returns the length. A shorter answer is always safe: it only lets more
 * patterns reach regexec. */
size_t sl_regex_literal_prefix(const char *pattern, char *out, size_t size);

#endif
