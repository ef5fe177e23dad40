/* The configuration loader's shared state and its typed readers of YAML nodes.
 *
 * Each reader looks up one key of a mapping, expands ${VAR} in the scalar, converts and
 * range-checks it, and on any problem records "file:line:col: path: message" and leaves
 * the output untouched (so it keeps its default). Loading goes on after an error, so
 * that one run reports every problem in the file. */
#ifndef SLUICE_CONFIG_LOADER_H
#define SLUICE_CONFIG_LOADER_H

#include <stdbool.h>
#include <stdint.h>
#include <yaml.h>

#include "buf.h"
#include "sluice/config.h"
#include "sluice/limit.h"

/* Key paths such as "routes[12].limits[3].rate" fit easily; longer ones are truncated. */
#define SL_LD_PATH_MAX 256

/* One reported problem: its position, for sorting, and its line in `errors`. */
struct sl_ld_problem {
    size_t line, col, seq;
    size_t off, len;
};

struct sl_loader {
    const char *file;
    yaml_document_t doc;
    struct sl_cfg_buf errors; /* the problem lines, in the order found */
    struct sl_ld_problem *problems;
    size_t nerrors, cap;
    char **expanded;       /* per node: the expanded scalar, filled on first use */
    unsigned char *failed; /* per node: expansion failed and was reported */
    size_t nnodes;
};

/* Records "file:line:col: message" (or "file: message" when `line` is 0); control
 * characters of the message become "?", so that every problem stays one line. */
void sl_ld_report(struct sl_loader *ld, size_t line, size_t col, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Records "file:line:col: message" for another file the configuration names (a rates file),
 * "file:line: message" when `col` is 0, or "file: message" when `line` is 0; sorted with the
 * configuration file's problems at the position of `at`. */
void sl_ld_report_in(struct sl_loader *ld, const char *file, size_t line, size_t col,
                     const yaml_node_t *at, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Records "file:line:col: path: message" at the position of `node` (1:1 when NULL). */
void sl_ld_error(struct sl_loader *ld, const yaml_node_t *node, const char *path, const char *fmt,
                 ...) __attribute__((format(printf, 4, 5)));

/* Every problem recorded, sorted by position, one per line; NULL on ENOMEM. The caller
 * frees it. */
char *sl_ld_take_errors(struct sl_loader *ld);

/* Writes "parent.key" (or "key" at the top level) / "parent[i]" into `out`. */
void sl_ld_path(char out[SL_LD_PATH_MAX], const char *parent, const char *key);
void sl_ld_path_index(char out[SL_LD_PATH_MAX], const char *parent, size_t i);

/* Writes `text` quoted, escaped and shortened for a message into `out`. */
const char *sl_ld_quote(const char *text, char *out, size_t size);

/* "a mapping", "a list" or the quoted scalar: what a message says it found. */
const char *sl_ld_describe(struct sl_loader *ld, const yaml_node_t *node, char *out, size_t size);

yaml_node_t *sl_ld_node(struct sl_loader *ld, int id);

/* True for an empty or "~"/"null" plain scalar. */
bool sl_ld_is_null(const yaml_node_t *node);

/* The ${VAR}-expanded text of a scalar (owned by the loader), or NULL after reporting
 * that `node` is not `expected` or that expansion failed. */
const char *sl_ld_scalar(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                         const char *expected);

/* Checks that `node` is a mapping (an empty value counts as an empty one) whose keys are
 * all in `keys` (NULL-terminated) and appear once. Returns false, reported, if not a
 * mapping; unknown and repeated keys are reported but do not fail the mapping. */
bool sl_ld_mapping(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                   const char *const *keys);

/* The value under `key` in mapping `map`, or NULL. */
yaml_node_t *sl_ld_get(struct sl_loader *ld, const yaml_node_t *map, const char *key);

/* The length of a list (an empty value counts as an empty list), or -1 after reporting
 * that `node` is not a list. */
long sl_ld_sequence(struct sl_loader *ld, const yaml_node_t *node, const char *path);

/* Item `i` of list `seq`. */
yaml_node_t *sl_ld_item(struct sl_loader *ld, const yaml_node_t *seq, size_t i);

/* Typed readers of `map[key]`; `path` is the mapping's path. Each returns true when the
 * key is present and valid, and false when it is absent or was reported. */
bool sl_ld_string(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                  char **out);
bool sl_ld_bool(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                bool *out);
bool sl_ld_uint(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                uint64_t min, uint64_t max, uint64_t *out);
bool sl_ld_duration(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                    uint64_t min_ms, uint64_t *out_ms);
bool sl_ld_size(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                uint64_t min, uint64_t *out);
/* One of `names` (NULL-terminated); `*out` receives its index. */
bool sl_ld_enum(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                const char *const *names, int *out);
bool sl_ld_sockaddr(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                    struct sl_sockaddr *out);
bool sl_ld_cidrs(struct sl_loader *ld, const yaml_node_t *map, const char *path, const char *key,
                 struct sl_cidr_list *out);

/* Reads map["name"], required, of the form [A-Za-z0-9_-]+, into a new string. */
bool sl_ld_name(struct sl_loader *ld, const yaml_node_t *map, const char *path, char **out);

/* strdup() that records "out of memory" at `node` when it fails. */
char *sl_ld_strdup(struct sl_loader *ld, const yaml_node_t *node, const char *s);
/* A path the file names (a rates file, the ratelimit files, certificates and keys), resolved
 * against the configuration file's directory when relative, so that `sluice -c
 * conf/sluice.yaml` finds it wherever sluice runs; malloc'd, NULL when out of memory. */
char *sl_ld_resolve(const struct sl_loader *ld, const char *file);

/* The address forms of url.c. "http://host[:port][/]" or "unix:/path" -> up->addr, or
 * up->host and up->port for a host name (the caller frees addr.text and host, also on
 * failure). "redis://[user:password@]host[:port][/db]" or "unix:/path[?db=N]" -> the
 * address fields of `r`, which are freed first and left empty on failure. Both return 0
 * or -1. */
int sl_ld_parse_upstream_url(const char *url, struct sl_upstream_config *up);
int sl_ld_parse_redis_url(const char *url, struct sl_redis_config *r);

/* A key source as a limit's `key` names one ("client_ip", "header:NAME", ...); name copied.
 * Returns 0, or -1 when `text` is none. */
int sl_ld_key_source(const char *text, struct sl_key_source *out);

/* What keeps quota `q` from serving `lim` under `cfg`, as "expected ..." in `msg`, or NULL
 * when it fits every bound (limits.c). */
const char *sl_ld_quota_problem(const struct sl_config *cfg, const struct sl_limit *lim,
                                const struct sl_quota *q, char *msg, size_t size);

/* A limit's `rates:` block, read once the limit's algorithm, rate, burst, key and store are
 * (rates.c). */
void sl_ld_rates(struct sl_loader *ld, const yaml_node_t *limit_node, const char *path,
                 const struct sl_config *cfg, struct sl_limit *lim);

/* Section loaders (url.c, routes.c, limits.c, rls_block.c). */
/* listen.c: the listeners (before admin, which must differ from them), then, once the
 * client block is read (ALPN offers "h2" only with client.http2), their certificates. */
void sl_ld_listen(struct sl_loader *ld, const yaml_node_t *root, struct sl_config *cfg);
void sl_ld_listen_tls(struct sl_loader *ld, const yaml_node_t *root, struct sl_config *cfg);
void sl_listen_config_deinit(struct sl_listen_config *l);

void sl_ld_upstream(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg);
void sl_ld_redis(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg);
/* A TLS client's mapping at `path` (tls.c): turns `c` on, and checks the files it names. */
void sl_ld_tls_client(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      struct sl_tls_client_config *c);
void sl_ld_routes(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg);
/* The rls block, its listener and the ratelimit files it names (rls_block.c). */
void sl_ld_rls(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg);
void sl_ld_limits(struct sl_loader *ld, const yaml_node_t *route_node, const char *path,
                  struct sl_config *cfg, struct sl_route *route);

/* Releases everything `cfg` owns, and `cfg` (config.c). */
void sl_cfg_free(struct sl_config *cfg);

#endif
