/* TLS with OpenSSL, shared by every side that speaks it (SPEC section 11): for now the client
 * side, which Redis connections use (redis.tls) and upstreams will (upstream.tls). */
#ifndef SLUICE_TLS_H
#define SLUICE_TLS_H

#include <openssl/ssl.h>
#include <stddef.h>

#include "sluice/config.h"

/* A client context for `c`: TLS 1.2 at least, OpenSSL's default ciphers, the trust store of
 * c->ca (else the system's), peer verification when c->verify, and c->cert/c->key as the
 * client certificate. The files are read now. Free with SSL_CTX_free; thread-safe to share.
 * NULL on failure, with the reason (naming the file) in `err`. */
SSL_CTX *sl_tls_client_ctx_new(const struct sl_tls_client_config *c, char *err, size_t errlen);

/* One connection's SSL on `ctx`, to `host` (the host connected to: a name or a numeric
 * address): SNI is c->server_name or `host` (not sent for an address), and with c->verify the
 * certificate must name it (DNS name, or IP address). The caller owns the result (a
 * bufferevent_openssl takes it over). NULL on failure, with the reason in `err`. */
SSL *sl_tls_client_ssl_new(SSL_CTX *ctx, const struct sl_tls_client_config *c, const char *host,
                           char *err, size_t errlen);

#endif
