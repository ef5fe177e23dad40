/* The key under which a limit's store holds a key value, for the tools that show or
 * count keys as an operator will find them in the store. */
#ifndef SLUICE_CLI_STORE_KEY_H
#define SLUICE_CLI_STORE_KEY_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config.h"

/* Values longer than this are held under their SHA-256 in hex in Redis (SPEC.md 3). */
#define SL_CLI_KEY_VALUE_MAX 200

/* Writes the Redis key of `value` (`len` bytes) under `lim` into a malloc'd buffer the
 * caller frees: key_prefix + route, limit, algorithm tag (sl_algorithm_ops.tag) and value
 * joined by ":", exactly as store_redis.h names the key it uses, the value
 * replaced by its digest past SL_CLI_KEY_VALUE_MAX bytes (`*digest` says so). Sets
 * `*out_len`; returns NULL on ENOMEM. */
char *sl_cli_redis_key(const struct sl_config *cfg, const struct sl_limit *lim, const char *value,
                       size_t len, size_t *out_len, bool *digest);

#endif
