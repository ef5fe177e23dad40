/* sl_secret_equal(): digests compared without an early exit.
 *
 * Comparing the values themselves byte by byte, even without an early exit, would take time
 * in proportion to the longer of the two: a client sending ever longer guesses would learn
 * the secret's length. Their digests have one length whatever the inputs, and SHA-256's
 * compression has no branch or table index that depends on the data. */
#include "sluice/secret.h"

#include <stdint.h>

#include "sluice/sha256.h"

static void digest(const void *data, size_t len, uint8_t out[SL_SHA256_LEN])
{
    struct sl_sha256 ctx;

    sl_sha256_init(&ctx);
    sl_sha256_update(&ctx, data, len);
    sl_sha256_final(&ctx, out);
}

bool sl_secret_equal(const void *given, size_t len, const void *secret, size_t secret_len)
{
    uint8_t a[SL_SHA256_LEN], b[SL_SHA256_LEN];
    /* volatile: the compiler may not stop at the first difference, which would tell how many
     * leading bytes of the digests matched. */
    volatile uint8_t diff = 0;

    digest(given, len, a);
    digest(secret, secret_len, b);
    for (size_t i = 0; i < SL_SHA256_LEN; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}
