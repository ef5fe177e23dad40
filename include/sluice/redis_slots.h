/* Redis Cluster's key space: the slot of a key, the slot map a node reports (CLUSTER SLOTS)
 * and the redirections (MOVED, ASK) a node answers with. Pure functions, no I/O: the
 * topology (src/store/redis_topology.c) keeps the map and the connections. */
#ifndef SLUICE_REDIS_SLOTS_H
#define SLUICE_REDIS_SLOTS_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"

struct redisReply;

#define SL_REDIS_SLOTS 16384

/* CRC16 as the Redis Cluster specification defines it (XMODEM: polynomial 0x1021, initial
 * value 0, no reflection). CRC16("123456789") is 0x31C3. */
uint16_t sl_redis_crc16(const char *buf, size_t len);

/* The slot of `key`: CRC16 of the key, or of its hash tag (the bytes between the first "{"
 * and the next "}", when there is at least one), modulo 16384. */
unsigned sl_redis_key_slot(const char *key, size_t len);

/* Which master owns each slot. */
struct sl_redis_slot_map {
    struct sl_redis_addr *masters; /* owned, hosts owned */
    size_t nmasters;
    uint16_t owner[SL_REDIS_SLOTS]; /* index into masters + 1; 0 = no master serves it */
};

/* Parses a CLUSTER SLOTS reply into `out` (zeroed by the caller or deinitialised). A master
 * reported with an empty host (the node's own preferred endpoint is unknown) is taken to be
 * `asked_host`, the host the question went to. Returns 0, or -1 for a malformed reply or
 * ENOMEM (then `out` holds nothing). */
int sl_redis_slot_map_parse(const struct redisReply *reply, const char *asked_host,
                            struct sl_redis_slot_map *out);

/* Frees what `map` holds and zeroes it. */
void sl_redis_slot_map_deinit(struct sl_redis_slot_map *map);

enum sl_redis_redirect { SL_REDIS_NO_REDIRECT, SL_REDIS_MOVED, SL_REDIS_ASK };

/* Reads an error reply "MOVED <slot> <host>:<port>" or "ASK <slot> <host>:<port>" into
 * `slot`, `host` (NUL-terminated, at most `hostlen` - 1 bytes) and `port`. Returns
 * SL_REDIS_NO_REDIRECT for any other error or a malformed one. */
enum sl_redis_redirect sl_redis_redirect_parse(const char *err, size_t len, unsigned *slot,
                                               char *host, size_t hostlen, int *port);

#endif
