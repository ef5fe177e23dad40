/* Typed readers of one envoyproxy/ratelimit configuration file's YAML document (rls_yaml.c).
 * Each reports a problem as "file:line:col: path: message" and the reading goes on. */
#ifndef SLUICE_RLS_YAML_H
#define SLUICE_RLS_YAML_H

#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#include "rls_internal.h"

/* Key paths such as "descriptors[3].descriptors[0].rate_limit.unit"; longer ones are cut. */
#define SL_RLS_PATH_MAX 256

struct sl_rls_reader {
    struct sl_rls_config *cfg;
    const char *file;
    bool merge_domains;
    yaml_document_t doc;
    struct sl_rls_errors *errors;
};

void sl_rls_y_report(struct sl_rls_reader *r, const yaml_node_t *node, const char *path,
                     const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* "parent.key" (or "key" at the top) and "parent[i]" into `out`. */
void sl_rls_y_join(char out[SL_RLS_PATH_MAX], const char *parent, const char *key);
void sl_rls_y_join_index(char out[SL_RLS_PATH_MAX], const char *parent, size_t i);

/* An empty plain scalar, "~" or "null". */
bool sl_rls_y_is_null(const yaml_node_t *n);

/* "a mapping", "a list", "an empty value" or the quoted scalar, for messages. */
const char *sl_rls_y_describe(const yaml_node_t *n, char *out, size_t size);

/* Checks mapping `map`'s keys: strings, from ratelimit's set (plus algorithm and burst when
 * `in_rate_limit`), each once. */
void sl_rls_y_check_keys(struct sl_rls_reader *r, const yaml_node_t *map, const char *path,
                         bool in_rate_limit);

/* map[key], or NULL. */
yaml_node_t *sl_rls_y_get(struct sl_rls_reader *r, const yaml_node_t *map, const char *key);

/* map[key]'s text, "" when absent or empty, NULL (reported) for a mapping or a list; `where`,
 * when not NULL, receives the value's node (NULL when absent). */
const char *sl_rls_y_string(struct sl_rls_reader *r, const yaml_node_t *map, const char *path,
                            const char *key, yaml_node_t **where);

/* map[key] as YAML 1.1 true or false; false when absent, empty or reported. */
bool sl_rls_y_bool(struct sl_rls_reader *r, const yaml_node_t *map, const char *path,
                   const char *key);

/* map[key] as an integer from 0 to `max` (empty: 0); false when absent or reported. */
bool sl_rls_y_uint(struct sl_rls_reader *r, const yaml_node_t *map, const char *path,
                   const char *key, uint64_t max, uint64_t *out);

/* The length of list `v` (0 when NULL or empty), or -1 after reporting it is not a list. */
long sl_rls_y_list(struct sl_rls_reader *r, const yaml_node_t *v, const char *path);

/* Item `i` of `seq` when it is a mapping; else NULL, reported at `path`. */
yaml_node_t *sl_rls_y_item(struct sl_rls_reader *r, const yaml_node_t *seq, size_t i,
                           const char *path);

#endif
