/* SipHash-c-d: a keyed 64-bit hash. With a secret random key, inputs chosen by a client
 * cannot be made to collide on purpose (hash flooding). Hash tables use SipHash-1-3 (as
 * Python and Rust do); SipHash-2-4 is the original, with published reference vectors.
 * Streaming, so that a value built from several pieces is hashed without first being
 * copied into one buffer. */
#ifndef SLUICE_SIPHASH_H
#define SLUICE_SIPHASH_H

#include <stddef.h>
#include <stdint.h>

struct sl_siphash {
    uint64_t v0, v1, v2, v3;
    uint64_t tail; /* bytes not yet forming a whole word, little-endian */
    uint64_t len;  /* bytes hashed so far */
    int c, d;      /* compression and finalization rounds */
};

/* Starts SipHash-c-d under the 128-bit key (k0, k1). */
void sl_siphash_init(struct sl_siphash *h, uint64_t k0, uint64_t k1, int c, int d);

/* Appends `len` bytes. */
void sl_siphash_update(struct sl_siphash *h, const void *data, size_t len);

/* Returns the hash of everything appended; `h` must not be used afterwards. */
uint64_t sl_siphash_final(struct sl_siphash *h);

/* Starts SipHash-c-d with a 128-bit output (the variant with published reference vectors
 * as SipHash-2-4-128); finish it with sl_siphash_final128, not sl_siphash_final. */
void sl_siphash_init128(struct sl_siphash *h, uint64_t k0, uint64_t k1, int c, int d);

/* Writes the 128-bit hash of everything appended as two words (the output's first eight
 * bytes little-endian in out[0]); `h` must not be used afterwards. */
void sl_siphash_final128(struct sl_siphash *h, uint64_t out[2]);

/* One-shot form. */
uint64_t sl_siphash(uint64_t k0, uint64_t k1, int c, int d, const void *data, size_t len);

#endif
