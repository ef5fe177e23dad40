/* envoyproxy/ratelimit's configuration files, read as it reads them, and the lookup of the
 * limit a request descriptor matches (src/rls/README.md has the rules and their corners).
 *
 * A configuration is built once by sl_rls_config_load() and is read-only afterwards: any
 * number of threads may look limits up in it at once. Lookups allocate nothing; every
 * pointer they return lives as long as the configuration. */
#ifndef SLUICE_RLS_CONFIG_H
#define SLUICE_RLS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"

/* RateLimitResponse.RateLimit.Unit, with the API's numbers (WEEK came last). */
enum sl_rls_unit {
    SL_RLS_UNIT_UNKNOWN = 0,
    SL_RLS_UNIT_SECOND = 1,
    SL_RLS_UNIT_MINUTE = 2,
    SL_RLS_UNIT_HOUR = 3,
    SL_RLS_UNIT_DAY = 4,
    SL_RLS_UNIT_MONTH = 5,
    SL_RLS_UNIT_YEAR = 6,
    SL_RLS_UNIT_WEEK = 7,
};

/* One `rate_limit` block. */
struct sl_rls_limit {
    uint32_t requests_per_unit;
    enum sl_rls_unit unit; /* SL_RLS_UNIT_UNKNOWN only when unlimited */
    bool unlimited;        /* always OK, never counted */
    bool shadow_mode;      /* the descriptor's: counted, always answered OK */
    bool quota_mode;       /* the descriptor's quota_mode, kept for the answers */
    bool detailed_metric;  /* the descriptor's */
    const char *name;      /* rate_limit.name; "" when none */
    int name_id;           /* the name's number in its domain; -1 when unnamed */
    const int *replaces;   /* name numbers of rate_limit.replaces, in file order */
    size_t nreplaces;
    const char *full_key; /* "domain.key_value.key": the entry's path, as ratelimit names it */
    /* The algorithm's view, for sl_algorithm_ops: alg (fixed_window unless `algorithm` says
     * otherwise), count = requests_per_unit, period_us = the unit, burst, shadow, name =
     * full_key. Unset (alg NULL) when unlimited. count may be 0: every request is over. */
    struct sl_limit lim;
    const char *file; /* where the block is written */
    size_t line, column;
};

/* One configured descriptor entry: `key`, optional `value`, and what sits under it. */
struct sl_rls_node;

/* The value of a node ("" when it gave a key only), and whether it shares one counter for
 * every value its wildcard matches (share_threshold). */
const char *sl_rls_node_value(const struct sl_rls_node *node);
bool sl_rls_node_shares(const struct sl_rls_node *node);

struct sl_rls_domain;
struct sl_rls_config;

/* One entry of a request descriptor; the strings need no NUL. */
struct sl_rls_entry {
    const char *key;
    size_t key_len;
    const char *value;
    size_t value_len;
};

/* Loads `path`: one file, or a directory of them (its *.yaml and *.yml files, dot files
 * skipped, in name order; symbolic links followed). Each file holds one domain; a domain in
 * two files is an error unless `merge_domains`, which joins them (ratelimit's
 * MERGE_DOMAIN_CONFIG). Returns NULL and sets `*errors` (one "file:line:col: path: message"
 * line per problem; the caller frees it) when anything is wrong. */
struct sl_rls_config *sl_rls_config_load(const char *path, bool merge_domains, char **errors);

/* Releases the configuration; accepts NULL. */
void sl_rls_config_free(struct sl_rls_config *cfg);

/* Calls `fn` on every limit of `cfg` (NULL: none), domain by domain in name order, each tree
 * in file order. For binding metrics and sketch ids before the configuration is published,
 * and for listing the limits; the only writes allowed are to lim->lim's ids. */
void sl_rls_config_each_limit(struct sl_rls_config *cfg,
                              void (*fn)(struct sl_rls_limit *lim, void *arg), void *arg);

/* The files read, in the order read (for reload.watch). */
size_t sl_rls_config_nfiles(const struct sl_rls_config *cfg);
const char *sl_rls_config_file(const struct sl_rls_config *cfg, size_t i);

/* The number of domains, and domain `i`'s name (for listing them). */
size_t sl_rls_config_ndomains(const struct sl_rls_config *cfg);
const char *sl_rls_domain_name(const struct sl_rls_domain *dom);
const struct sl_rls_domain *sl_rls_config_domain(const struct sl_rls_config *cfg, size_t i);

/* The domain called `name`, or NULL: an unknown domain has no limits. */
const struct sl_rls_domain *sl_rls_domain_find(const struct sl_rls_config *cfg, const char *name,
                                               size_t len);

/* The limit `entries` match in `dom` as ratelimit's GetLimit finds it, or NULL for none.
 * When `path` is not NULL it receives, for each of the n entries, the node that matched it
 * (filled only when a limit is returned). Allocates nothing. */
const struct sl_rls_limit *sl_rls_match(const struct sl_rls_domain *dom,
                                        const struct sl_rls_entry *entries, size_t n,
                                        const struct sl_rls_node **path);

/* The walk sl_rls_match makes, for explaining it: fills path[i] with the node entry i matched
 * and returns how many entries matched, in order, before one matched nothing (n: all). */
size_t sl_rls_walk(const struct sl_rls_domain *dom, const struct sl_rls_entry *entries, size_t n,
                   const struct sl_rls_node **path);

/* The key value a store holds the counter of `entries` under: "key_value" joined by "_" as
 * ratelimit's cache key joins them (less its domain, which the limit's route names, and its
 * window, which the state holds), an entry whose node (`path[i]`, when `path` is given)
 * shares its threshold by the node's configured value, so that every value its wildcard
 * matches shares one counter. Writes at most `size` bytes to `buf` (no NUL) and returns the
 * length of the whole value. */
size_t sl_rls_key_value(const struct sl_rls_entry *entries, size_t n,
                        const struct sl_rls_node *const *path, char *buf, size_t size);

/* The rate_limit written on `node`, or NULL. */
const struct sl_rls_limit *sl_rls_node_limit(const struct sl_rls_node *node);

/* One request's matched limits (NULL where a descriptor matched none): sets replaced[i]
 * for each limit another matched limit's `replaces` names, which is then neither checked
 * nor counted. An unlimited limit is never replaced; it still replaces others. */
void sl_rls_replaced(const struct sl_rls_limit *const *limits, size_t n, bool *replaced);

/* Seconds in `unit` as ratelimit counts them (MONTH 30 days, YEAR 365), 0 for UNKNOWN. */
uint64_t sl_rls_unit_seconds(enum sl_rls_unit unit);

/* "second", "minute", ... as the YAML writes it; "unknown" for UNKNOWN. */
const char *sl_rls_unit_name(enum sl_rls_unit unit);

#endif
