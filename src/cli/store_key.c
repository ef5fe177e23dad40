/* Redis keys as the Redis store names them (SPEC.md section 3): one key per route, limit,
 * algorithm and key value, so that changing a limit's algorithm never reads another
 * algorithm's state. */
#include "store_key.h"

#include <stdlib.h>
#include <string.h>

#include "sluice/limit.h"
#include "sluice/sha256.h"

char *sl_cli_redis_key(const struct sl_config *cfg, const struct sl_limit *lim, const char *value,
                       size_t len, size_t *out_len, bool *digest)
{
    const char *prefix = cfg->redis.key_prefix ? cfg->redis.key_prefix : "";
    const char *route = lim->route ? lim->route->name : "";
    const char *tag = lim->alg->tag;
    char hex[2 * SL_SHA256_LEN + 1];

    *digest = len > SL_CLI_KEY_VALUE_MAX;
    if (*digest) {
        sl_sha256_hex(value, len, hex);
        value = hex;
        len = 2 * SL_SHA256_LEN;
    }
    const char *parts[] = {prefix, route, ":", lim->name, ":", tag, ":"};
    size_t total = len;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++)
        total += strlen(parts[i]);
    char *key = malloc(total + 1);
    if (!key)
        return NULL;
    char *p = key;
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        size_t n = strlen(parts[i]);
        memcpy(p, parts[i], n);
        p += n;
    }
    memcpy(p, value, len);
    p[len] = '\0';
    *out_len = total;
    return key;
}
