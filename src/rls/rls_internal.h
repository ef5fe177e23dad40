/* The layout behind include/sluice/rls_config.h, shared by the loader (rls_config.c,
 * rls_yaml.c), the tree (rls_tree.c) and the lookup (rls_match.c).
 *
 * A domain is a root node. A node's children are looked up by their composite key (`key`,
 * or `key_value` when a value is given, ratelimit's map key) in an open-addressing table of
 * child indexes built once every file is read; the children whose composite key holds a
 * '*' are also listed, in file order, with the key cut at each '*', for wildcard matching. */
#ifndef SLUICE_RLS_INTERNAL_H
#define SLUICE_RLS_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/rls_config.h"

struct sl_rls_node {
    char *key;       /* owned */
    char *value;     /* owned; "" when none */
    char *composite; /* key or key_value; owned */
    size_t composite_len;
    bool share_threshold;
    bool value_to_metric;
    struct sl_rls_limit *limit; /* owned; NULL when the entry has no rate_limit */
    const char *file;           /* where the entry is written */
    size_t line;

    struct sl_rls_node **kids; /* owned, in file order */
    size_t nkids, kids_cap;
    uint32_t *table; /* owned; kid index + 1, 0 = empty; table_mask + 1 slots */
    size_t table_mask;
    struct sl_rls_node **wild; /* owned array of borrowed kids with a '*', in file order */
    size_t nwild;
    size_t *cuts; /* composite offsets of each '*' (wildcard nodes only) */
    size_t ncuts;
};

struct sl_rls_domain {
    struct sl_rls_node root; /* key = the domain's name */
    /* What the stores see as the route of the domain's limits: only its name, "rls:DOMAIN",
     * which puts the domain in every key (Redis: key_prefix + "rls:DOMAIN:" + ...). */
    struct sl_route route;
    char **names;            /* rate_limit names and replaces, numbered; owned */
    size_t nnames, names_cap;
};

struct sl_rls_config {
    struct sl_rls_domain **domains; /* owned; sorted by name once loaded */
    size_t ndomains, cap;
    char **files; /* names of the files read; owned */
    size_t nfiles;
};

/* 32-bit FNV-1a over `len` bytes, continuing from `h` (start with SL_RLS_HASH_INIT). */
#define SL_RLS_HASH_INIT 2166136261u
uint32_t sl_rls_hash(uint32_t h, const char *s, size_t len);

/* Adds `kid` (taking ownership) under `parent`; -1 on ENOMEM. */
int sl_rls_node_add(struct sl_rls_node *parent, struct sl_rls_node *kid);

/* The kid of `parent` whose composite key is `composite`, during loading (a linear scan). */
struct sl_rls_node *sl_rls_node_kid(const struct sl_rls_node *parent, const char *composite);

/* Builds every lookup table under `node`; -1 on ENOMEM. */
int sl_rls_node_index(struct sl_rls_node *node);

/* Releases what `node` owns (not `node` itself). */
void sl_rls_node_deinit(struct sl_rls_node *node);

/* The number of `name` in `dom`, numbering it if new; -1 on ENOMEM. */
int sl_rls_domain_intern(struct sl_rls_domain *dom, const char *name);

void sl_rls_domain_free(struct sl_rls_domain *dom);

/* Reads one file into `cfg`: its domain, descriptors and limits. Problems are appended to
 * `errors` as lines (rls_yaml.c). */
struct sl_rls_errors {
    char *text;
    size_t len, cap;
    size_t count;
    bool oom;
};
void sl_rls_load_file(struct sl_rls_config *cfg, const char *file, bool merge_domains,
                      struct sl_rls_errors *errors);

/* Appends "file:line:col: message" (or "file: message" when line is 0) to `errors`. */
void sl_rls_error(struct sl_rls_errors *errors, const char *file, size_t line, size_t col,
                  const char *fmt, ...) __attribute__((format(printf, 5, 6)));

#endif
