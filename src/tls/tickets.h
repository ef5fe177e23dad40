/* Session ticket keys shared by every TLS listener of the process (tickets.c). */
#ifndef SLUICE_TLS_TICKETS_H
#define SLUICE_TLS_TICKETS_H

#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <stdint.h>

/* How long a key issues tickets; it opens them for as long again. */
#define SL_TICKET_ROTATE_S 3600

/* OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb): seals new tickets
 * under the current key; opens a ticket under the current key (1) or the previous one (2,
 * so OpenSSL issues a fresh ticket); 0 for a ticket under no key kept (a full handshake);
 * -1 on failure. Thread-safe. */
int sl_tls_ticket_cb(SSL *ssl, unsigned char key_name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                     EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx, int enc);

/* Tests: the clock the rotation goes by (NULL: the monotonic clock); forgets every key. */
void sl_tls_tickets_set_clock(uint64_t (*now_us)(void));

#endif
