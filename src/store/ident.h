/* A limit's key as the local stores know it (memory.c, deny_cache.c): route and limit names,
 * a block of words naming the limit's algorithm and rate, and the key value, laid end to end.
 * The names end in NUL and the block has a fixed width per store, with the key last, so two
 * identities of one store are equal exactly when their bytes are. Hashed and compared in
 * pieces, as the caller has them, never copied first; the deny cache keeps the bytes, the
 * memory store only their 128-bit digest. Private to src/store/. */
#ifndef SLUICE_STORE_IDENT_H
#define SLUICE_STORE_IDENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/siphash.h"

#define SL_IDENT_MAX_WORDS 5

struct sl_ident {
    const char *route, *limit;
    size_t route_len, limit_len; /* including the NUL */
    uint64_t words[SL_IDENT_MAX_WORDS];
    size_t words_len; /* bytes of `words` in use */
    const char *key;
    size_t key_len;
    size_t len; /* of the whole identity laid out */
};

/* The identity of `key` under `lim` with `nwords` (<= SL_IDENT_MAX_WORDS) words; names and
 * key are borrowed. */
static inline void sl_ident_init(struct sl_ident *id, const struct sl_limit *lim,
                                 const uint64_t *words, size_t nwords, const char *key,
                                 size_t key_len)
{
    id->route = lim->route ? lim->route->name : "";
    id->limit = lim->name;
    id->route_len = strlen(id->route) + 1;
    id->limit_len = strlen(id->limit) + 1;
    id->words_len = nwords * sizeof(uint64_t);
    memcpy(id->words, words, id->words_len);
    id->key = key;
    id->key_len = key_len;
    id->len = id->route_len + id->limit_len + id->words_len + key_len;
}

/* Writes the identity's id->len bytes at `p`. */
static inline void sl_ident_lay_out(unsigned char *p, const struct sl_ident *id)
{
    memcpy(p, id->route, id->route_len);
    p += id->route_len;
    memcpy(p, id->limit, id->limit_len);
    p += id->limit_len;
    memcpy(p, id->words, id->words_len);
    p += id->words_len;
    memcpy(p, id->key, id->key_len);
}

/* Identities up to this size are laid out on the stack to be hashed. */
#define SL_IDENT_FLAT_MAX 256

/* Feeds the laid-out bytes to `h`: whole words at a time from a copy on the stack when short
 * enough, since the names are a few bytes each and fed piece by piece most of their bytes
 * would go one at a time; piece by piece when longer. */
static inline void sl_ident_feed(struct sl_siphash *h, const struct sl_ident *id)
{
    if (id->len <= SL_IDENT_FLAT_MAX) {
        unsigned char flat[SL_IDENT_FLAT_MAX];
        sl_ident_lay_out(flat, id);
        sl_siphash_update(h, flat, id->len);
        return;
    }
    sl_siphash_update(h, id->route, id->route_len);
    sl_siphash_update(h, id->limit, id->limit_len);
    sl_siphash_update(h, id->words, id->words_len);
    sl_siphash_update(h, id->key, id->key_len);
}

/* SipHash-1-3 of the laid-out bytes, keyed by (k0, k1). */
static inline uint64_t sl_ident_hash(const struct sl_ident *id, uint64_t k0, uint64_t k1)
{
    struct sl_siphash h;
    sl_siphash_init(&h, k0, k1, 1, 3);
    sl_ident_feed(&h, id);
    return sl_siphash_final(&h);
}

/* The 128-bit SipHash-1-3 of the laid-out bytes, keyed by (k0, k1): an identity that a store
 * may keep in place of the bytes, since with a secret key no client can make two identities
 * share it. */
static inline void sl_ident_digest(const struct sl_ident *id, uint64_t k0, uint64_t k1,
                                   uint64_t out[2])
{
    struct sl_siphash h;
    sl_siphash_init128(&h, k0, k1, 1, 3);
    sl_ident_feed(&h, id);
    sl_siphash_final128(&h, out);
}

/* Whether the `len` bytes at `p` are this identity laid out. */
static inline bool sl_ident_equal(const unsigned char *p, size_t len, const struct sl_ident *id)
{
    if (len != id->len || memcmp(p, id->route, id->route_len) != 0)
        return false;
    p += id->route_len;
    if (memcmp(p, id->limit, id->limit_len) != 0)
        return false;
    p += id->limit_len;
    if (memcmp(p, id->words, id->words_len) != 0)
        return false;
    p += id->words_len;
    return memcmp(p, id->key, id->key_len) == 0;
}

#endif
