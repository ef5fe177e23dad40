/* Redis Cluster's key space (see include/sluice/redis_slots.h). */
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/redis_slots.h"

/* Bit by bit rather than by a table: a key is a few dozen bytes, and one decision's network
 * round trip costs a thousand times more than these shifts. */
uint16_t sl_redis_crc16(const char *buf, size_t len)
{
    uint16_t crc = 0;
    for (size_t i = 0; i < len; i++) {
        crc ^= (uint16_t)((unsigned char)buf[i] << 8);
        for (int b = 0; b < 8; b++)
            crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021) : (uint16_t)(crc << 1);
    }
    return crc;
}

unsigned sl_redis_key_slot(const char *key, size_t len)
{
    const char *open = memchr(key, '{', len);
    if (open) {
        size_t rest = len - (size_t)(open + 1 - key);
        const char *close = memchr(open + 1, '}', rest);
        /* "{}" is no tag: the whole key is hashed, as Redis does. */
        if (close && close > open + 1)
            return sl_redis_crc16(open + 1, (size_t)(close - open - 1)) & (SL_REDIS_SLOTS - 1);
    }
    return sl_redis_crc16(key, len) & (SL_REDIS_SLOTS - 1);
}

void sl_redis_slot_map_deinit(struct sl_redis_slot_map *map)
{
    for (size_t i = 0; i < map->nmasters; i++)
        free(map->masters[i].host);
    free(map->masters);
    memset(map, 0, sizeof *map);
}

static bool reply_uint(const redisReply *r, long long max, long long *out)
{
    if (!r || r->type != REDIS_REPLY_INTEGER || r->integer < 0 || r->integer > max)
        return false;
    *out = r->integer;
    return true;
}

/* The index + 1 of master host:port in `map`, added if new; 0 on ENOMEM. */
static unsigned master_index(struct sl_redis_slot_map *map, const char *host, size_t hlen, int port)
{
    for (size_t i = 0; i < map->nmasters; i++)
        if (map->masters[i].port == port && strlen(map->masters[i].host) == hlen &&
            memcmp(map->masters[i].host, host, hlen) == 0)
            return (unsigned)i + 1;
    if (map->nmasters >= 0xFFFE)
        return 0;
    struct sl_redis_addr *grown = realloc(map->masters, (map->nmasters + 1) * sizeof *grown);
    if (!grown)
        return 0;
    map->masters = grown;
    char *copy = strndup(host, hlen);
    if (!copy)
        return 0;
    map->masters[map->nmasters++] = (struct sl_redis_addr){.host = copy, .port = port};
    return (unsigned)map->nmasters;
}

/* One entry: [start, end, [host, port, id, ...], replica...]. */
static int parse_range(const redisReply *e, const char *asked_host, struct sl_redis_slot_map *map)
{
    long long start, end, port;
    if (!e || e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        !reply_uint(e->element[0], SL_REDIS_SLOTS - 1, &start) ||
        !reply_uint(e->element[1], SL_REDIS_SLOTS - 1, &end) || end < start)
        return -1;
    const redisReply *m = e->element[2];
    if (!m || m->type != REDIS_REPLY_ARRAY || m->elements < 2 || !m->element[0] ||
        !reply_uint(m->element[1], 65535, &port) || port == 0)
        return -1;
    const char *host = asked_host;
    size_t hlen = strlen(asked_host);
    if (m->element[0]->type == REDIS_REPLY_STRING && m->element[0]->len > 0) {
        host = m->element[0]->str;
        hlen = m->element[0]->len;
    } else if (m->element[0]->type != REDIS_REPLY_STRING &&
               m->element[0]->type != REDIS_REPLY_NIL) {
        return -1;
    }
    /* "?" is an endpoint the node does not know: the range has no reachable master. */
    if (hlen == 1 && host[0] == '?')
        return 0;
    unsigned idx = master_index(map, host, hlen, (int)port);
    if (idx == 0)
        return -1;
    for (long long s = start; s <= end; s++)
        map->owner[s] = (uint16_t)idx;
    return 0;
}

int sl_redis_slot_map_parse(const struct redisReply *reply, const char *asked_host,
                            struct sl_redis_slot_map *out)
{
    memset(out, 0, sizeof *out);
    if (!reply || reply->type != REDIS_REPLY_ARRAY)
        return -1;
    for (size_t i = 0; i < reply->elements; i++) {
        if (parse_range(reply->element[i], asked_host ? asked_host : "", out) < 0) {
            sl_redis_slot_map_deinit(out);
            return -1;
        }
    }
    return 0;
}

enum sl_redis_redirect sl_redis_redirect_parse(const char *err, size_t len, unsigned *slot,
                                               char *host, size_t hostlen, int *port)
{
    enum sl_redis_redirect kind;
    size_t skip;
    if (len > 6 && memcmp(err, "MOVED ", 6) == 0) {
        kind = SL_REDIS_MOVED;
        skip = 6;
    } else if (len > 4 && memcmp(err, "ASK ", 4) == 0) {
        kind = SL_REDIS_ASK;
        skip = 4;
    } else {
        return SL_REDIS_NO_REDIRECT;
    }
    const char *p = err + skip, *end = err + len;
    unsigned long s = 0;
    size_t digits = 0;
    for (; p < end && *p >= '0' && *p <= '9' && digits < 6; p++, digits++)
        s = s * 10 + (unsigned long)(*p - '0');
    if (digits == 0 || s >= SL_REDIS_SLOTS || p >= end || *p != ' ')
        return SL_REDIS_NO_REDIRECT;
    const char *addr = p + 1;
    /* The port follows the last colon: an IPv6 address has colons of its own. */
    const char *colon = NULL;
    for (const char *q = addr; q < end; q++) {
        if (*q == ':')
            colon = q;
        else if (*q == ' ')
            return SL_REDIS_NO_REDIRECT;
    }
    if (!colon || colon == addr || (size_t)(colon - addr) >= hostlen)
        return SL_REDIS_NO_REDIRECT;
    long pt = 0;
    size_t pdigits = 0;
    for (const char *q = colon + 1; q < end; q++, pdigits++) {
        if (*q < '0' || *q > '9' || pdigits >= 5)
            return SL_REDIS_NO_REDIRECT;
        pt = pt * 10 + (*q - '0');
    }
    if (pdigits == 0 || pt < 1 || pt > 65535)
        return SL_REDIS_NO_REDIRECT;
    memcpy(host, addr, (size_t)(colon - addr));
    host[colon - addr] = '\0';
    *slot = (unsigned)s;
    *port = (int)pt;
    return kind;
}
