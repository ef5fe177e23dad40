/* A TLS listener's certificates, loaded and ready to serve (SPEC section 11).
 *
 * Built once per configuration snapshot, when the file is loaded: every certificate and
 * key is read and checked then, so that `sluice -t` and a reload refuse a bad file before
 * anything serves with it. Read-only afterwards and shared by every worker; an accepted
 * connection's SSL keeps what it was made from alive, so a reload never disturbs a
 * session already open. */
#ifndef SLUICE_TLS_SERVER_H
#define SLUICE_TLS_SERVER_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "sluice/config.h"

/* Reads and checks `c`'s certificates (readable PEM, a key that matches, valid now) and
 * its client_ca, and makes a context per certificate: TLS 1.2 or 1.3 from
 * c->min_version, OpenSSL's default ciphers, no renegotiation, session tickets under
 * keys kept in memory and rotated, ALPN "h2" (when `h2`) and "http/1.1". Returns NULL
 * with a message naming the file in `err`. */
struct sl_tls_server *sl_tls_server_new(const struct sl_tls_server_config *c, bool h2, char *err,
                                        size_t errlen);

/* Releases `s`; accepts NULL. Connections made from it keep what they use. */
void sl_tls_server_free(struct sl_tls_server *s);

/* A server-side SSL for one accepted connection, certificate chosen later by SNI, or NULL
 * when out of memory. The caller owns it (a bufferevent frees it with itself). */
SSL *sl_tls_server_ssl_new(const struct sl_tls_server *s);

/* The verified client certificate's subject as an RFC 2253 string, written into `out`
 * (NUL-terminated, at most `size` bytes with the NUL); returns its length, or 0 when the
 * client presented none or it was not verified. */
size_t sl_tls_client_subject(SSL *ssl, char *out, size_t size);

#endif
