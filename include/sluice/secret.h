/* Comparing a value a client sent with a secret (the admin token) without telling the
 * client, through the time the answer takes, how much of its guess was right. */
#ifndef SLUICE_SECRET_H
#define SLUICE_SECRET_H

#include <stdbool.h>
#include <stddef.h>

/* True when the `len` bytes at `given` equal the `secret_len` bytes at `secret`. Each side is
 * first reduced to its SHA-256 digest and the two digests are compared in full: the time
 * depends on the two lengths only (for the secret, on its count of 64-byte blocks), never on
 * the contents or on where the first difference lies. Thread-safe; no allocation. */
bool sl_secret_equal(const void *given, size_t len, const void *secret, size_t secret_len);

#endif
