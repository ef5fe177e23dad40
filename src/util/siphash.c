/* SipHash-c-d (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012). */
#include "sluice/siphash.h"

#include <endian.h>
#include <string.h>

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

static inline void sip_round(struct sl_siphash *h)
{
    h->v0 += h->v1;
    h->v1 = rotl(h->v1, 13);
    h->v1 ^= h->v0;
    h->v0 = rotl(h->v0, 32);
    h->v2 += h->v3;
    h->v3 = rotl(h->v3, 16);
    h->v3 ^= h->v2;
    h->v0 += h->v3;
    h->v3 = rotl(h->v3, 21);
    h->v3 ^= h->v0;
    h->v2 += h->v1;
    h->v1 = rotl(h->v1, 17);
    h->v1 ^= h->v2;
    h->v2 = rotl(h->v2, 32);
}

static inline void compress(struct sl_siphash *h, uint64_t m)
{
    h->v3 ^= m;
    for (int i = 0; i < h->c; i++)
        sip_round(h);
    h->v0 ^= m;
}

/* The algorithm reads words little-endian whatever the host. */
static inline uint64_t load_le64(const unsigned char *p)
{
    uint64_t v;
    memcpy(&v, p, sizeof v);
    return le64toh(v);
}

void sl_siphash_init(struct sl_siphash *h, uint64_t k0, uint64_t k1, int c, int d)
{
    h->v0 = k0 ^ 0x736f6d6570736575ull;
    h->v1 = k1 ^ 0x646f72616e646f6dull;
    h->v2 = k0 ^ 0x6c7967656e657261ull;
    h->v3 = k1 ^ 0x7465646279746573ull;
    h->tail = 0;
    h->len = 0;
    h->c = c;
    h->d = d;
}

void sl_siphash_update(struct sl_siphash *h, const void *data, size_t len)
{
    const unsigned char *p = data;
    unsigned used = h->len & 7;

    h->len += len;
    if (used) {
        while (used < 8 && len > 0) {
            h->tail |= (uint64_t)*p++ << (8 * used++);
            len--;
        }
        if (used < 8)
            return;
        compress(h, h->tail);
        h->tail = 0;
    }
    for (; len >= 8; p += 8, len -= 8)
        compress(h, load_le64(p));
    for (unsigned i = 0; i < len; i++)
        h->tail |= (uint64_t)p[i] << (8 * i);
}

uint64_t sl_siphash_final(struct sl_siphash *h)
{
    compress(h, h->tail | h->len << 56);
    h->v2 ^= 0xff;
    for (int i = 0; i < h->d; i++)
        sip_round(h);
    return h->v0 ^ h->v1 ^ h->v2 ^ h->v3;
}

void sl_siphash_init128(struct sl_siphash *h, uint64_t k0, uint64_t k1, int c, int d)
{
    sl_siphash_init(h, k0, k1, c, d);
    h->v1 ^= 0xee;
}

void sl_siphash_final128(struct sl_siphash *h, uint64_t out[2])
{
    compress(h, h->tail | h->len << 56);
    h->v2 ^= 0xee;
    for (int i = 0; i < h->d; i++)
        sip_round(h);
    out[0] = h->v0 ^ h->v1 ^ h->v2 ^ h->v3;
    h->v1 ^= 0xdd;
    for (int i = 0; i < h->d; i++)
        sip_round(h);
    out[1] = h->v0 ^ h->v1 ^ h->v2 ^ h->v3;
}

uint64_t sl_siphash(uint64_t k0, uint64_t k1, int c, int d, const void *data, size_t len)
{
    struct sl_siphash h;
    sl_siphash_init(&h, k0, k1, c, d);
    sl_siphash_update(&h, data, len);
    return sl_siphash_final(&h);
}
