/* TLS client contexts and connections. Verification follows OpenSSL's own: the chain up to
 * a trusted root (c->ca, or the system's store: SSL_CERT_FILE and SSL_CERT_DIR apply), then
 * the host name (SSL_set1_host, no partial wildcards) or the IP address in the certificate's
 * subjectAltName. A failure shows in the handshake, and SSL_get_verify_result says why. */
#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>

#include "tls.h"

/* `what`, then OpenSSL's first queued reason, into `err`; the queue is emptied. */
static void report(char *err, size_t errlen, const char *what)
{
    unsigned long e = ERR_get_error();
    char reason[256] = "";
    if (e)
        ERR_error_string_n(e, reason, sizeof reason);
    snprintf(err, errlen, "%s%s%s", what, e ? ": " : "", reason);
    ERR_clear_error();
}

SSL_CTX *sl_tls_client_ctx_new(const struct sl_tls_client_config *c, char *err, size_t errlen)
{
    char what[512];
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx) {
        report(err, errlen, "cannot make a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    int loaded = c->ca ? SSL_CTX_load_verify_locations(ctx, c->ca, NULL)
                       : SSL_CTX_set_default_verify_paths(ctx);
    if (loaded != 1) {
        snprintf(what, sizeof what, "cannot load the CA bundle %s",
                 c->ca ? c->ca : "of the system");
        goto fail;
    }
    SSL_CTX_set_verify(ctx, c->verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
    if (c->cert && SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) {
        snprintf(what, sizeof what, "cannot load the certificate %s", c->cert);
        goto fail;
    }
    if (c->key && SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) {
        snprintf(what, sizeof what, "cannot load the key %s", c->key);
        goto fail;
    }
    if (c->cert && c->key && SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(what, sizeof what, "%s is not the key of %s", c->key, c->cert);
        goto fail;
    }
    return ctx;
fail:
    report(err, errlen, what);
    SSL_CTX_free(ctx);
    return NULL;
}

static bool is_address(const char *host)
{
    unsigned char buf[16];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

SSL *sl_tls_client_ssl_new(SSL_CTX *ctx, const struct sl_tls_client_config *c, const char *host,
                           char *err, size_t errlen)
{
    const char *name = c->server_name ? c->server_name : host;
    SSL *ssl = SSL_new(ctx);
    if (!ssl) {
        report(err, errlen, "cannot make a TLS connection");
        return NULL;
    }
    bool address = is_address(name);
    /* RFC 6066 section 3: SNI carries host names only, never a literal address. */
    if (!address && SSL_set_tlsext_host_name(ssl, name) != 1)
        goto fail;
    if (c->verify) {
        X509_VERIFY_PARAM *param = SSL_get0_param(ssl);
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if (address ? X509_VERIFY_PARAM_set1_ip_asc(param, name) != 1
                    : SSL_set1_host(ssl, name) != 1)
            goto fail;
    }
    return ssl;
fail:
    snprintf(err, errlen, "cannot verify the name %s", name);
    ERR_clear_error();
    SSL_free(ssl);
    return NULL;
}
