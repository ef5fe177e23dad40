/* SipHash-c-d (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012). */
#include "sluice/siphash.h"

#include <endian.h>
#include <string.h>

static inline uint64_t rotl(uint64_t x, int b)
{
    return (x << b) | (x >> (64 - b));
}

/* The four state words, worked on in a local copy so that they stay in registers: through
 * the caller's struct every round would load and store them. */
struct sip_state {
    uint64_t v0, v1, v2, v3;
};

static inline void sip_round(struct sip_state *s)
{
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
}

/* `n` rounds; the counts of SipHash-1-3, the hash tables' variant, spelled out so that the
 * compiler unrolls them. */
static inline void rounds(struct sip_state *s, int n)
{
    if (n == 1) {
        sip_round(s);
    } else if (n == 3) {
        sip_round(s);
        sip_round(s);
        sip_round(s);
    } else {
        for (int i = 0; i < n; i++)
            sip_round(s);
    }
}

static inline void compress(struct sip_state *s, uint64_t m, int c)
{
    s->v3 ^= m;
    rounds(s, c);
    s->v0 ^= m;
}

static inline struct sip_state load_state(const struct sl_siphash *h)
{
    return (struct sip_state){h->v0, h->v1, h->v2, h->v3};
}

static inline void store_state(struct sl_siphash *h, const struct sip_state *s)
{
    h->v0 = s->v0;
    h->v1 = s->v1;
    h->v2 = s->v2;
    h->v3 = s->v3;
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
    struct sip_state s = load_state(h);

    h->len += len;
    if (used) {
        while (used < 8 && len > 0) {
            h->tail |= (uint64_t)*p++ << (8 * used++);
            len--;
        }
        if (used < 8)
            return;
        compress(&s, h->tail, h->c);
        h->tail = 0;
    }
    for (; len >= 8; p += 8, len -= 8)
        compress(&s, load_le64(p), h->c);
    for (unsigned i = 0; i < len; i++)
        h->tail |= (uint64_t)p[i] << (8 * i);
    store_state(h, &s);
}

uint64_t sl_siphash_final(struct sl_siphash *h)
{
    struct sip_state s = load_state(h);
    compress(&s, h->tail | h->len << 56, h->c);
    s.v2 ^= 0xff;
    rounds(&s, h->d);
    return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

void sl_siphash_init128(struct sl_siphash *h, uint64_t k0, uint64_t k1, int c, int d)
{
    sl_siphash_init(h, k0, k1, c, d);
    h->v1 ^= 0xee;
}

void sl_siphash_final128(struct sl_siphash *h, uint64_t out[2])
{
    struct sip_state s = load_state(h);
    compress(&s, h->tail | h->len << 56, h->c);
    s.v2 ^= 0xee;
    rounds(&s, h->d);
    out[0] = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
    s.v1 ^= 0xdd;
    rounds(&s, h->d);
    out[1] = s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t sl_siphash(uint64_t k0, uint64_t k1, int c, int d, const void *data, size_t len)
{
    struct sl_siphash h;
    sl_siphash_init(&h, k0, k1, c, d);
    sl_siphash_update(&h, data, len);
    return sl_siphash_final(&h);
}
