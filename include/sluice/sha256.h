/* SHA-256 (FIPS 180-4), for digests of long Redis key values and for comparing secrets
 * (secret.h). A digest takes time that depends on the data's length only: no branch or table
 * index depends on its bytes (sl_sha256_hex's digit table is indexed by the digest). Not a
 * password hash: no salt, no work factor. */
#ifndef SLUICE_SHA256_H
#define SLUICE_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SL_SHA256_LEN 32

struct sl_sha256 {
    uint32_t h[8];
    uint64_t total; /* bytes hashed so far */
    uint8_t block[64];
    size_t used; /* bytes waiting in `block` */
};

void sl_sha256_init(struct sl_sha256 *ctx);
void sl_sha256_update(struct sl_sha256 *ctx, const void *data, size_t len);
/* Writes the 32-byte digest to `out`; `ctx` must be initialised again before reuse. */
void sl_sha256_final(struct sl_sha256 *ctx, uint8_t out[SL_SHA256_LEN]);

/* The digest of `len` bytes as 64 lower-case hex digits and a NUL, written to `hex`. */
void sl_sha256_hex(const void *data, size_t len, char hex[2 * SL_SHA256_LEN + 1]);

#endif
