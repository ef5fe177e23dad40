/* A TLS listener's certificates: read and checked at load, a context each, the one a
 * client asks for chosen by SNI, and ALPN between "h2" and "http/1.1". */
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "tickets.h"
#include "tls_server.h"

/* A name a certificate serves: "api.example.com", or "*.example.com" for any one label. */
struct served_name {
    char *name; /* owned; for a wildcard, from the "." on */
    size_t ctx; /* index into ctxs */
    bool wildcard;
};

struct sl_tls_server {
    SSL_CTX **ctxs; /* one per certificate, in the file's order; ctxs[0] is the default */
    size_t nctxs;
    struct served_name *names;
    size_t nnames;
    bool h2;
};

/* OpenSSL's last error as text, clearing its queue. */
static const char *ssl_error(char *buf, size_t size)
{
    unsigned long e = ERR_peek_last_error();
    ERR_error_string_n(e, buf, size);
    ERR_clear_error();
    return e ? buf : "unknown error";
}

static bool add_name(struct sl_tls_server *s, const char *name, size_t len, size_t ctx)
{
    if (len == 0 || len > 253)
        return true;
    struct served_name *grown = realloc(s->names, (s->nnames + 1) * sizeof *grown);
    if (!grown)
        return false;
    s->names = grown;
    bool wildcard = len > 2 && name[0] == '*' && name[1] == '.';
    size_t skip = wildcard ? 1 : 0;
    char *copy = strndup(name + skip, len - skip);
    if (!copy)
        return false;
    s->names[s->nnames++] = (struct served_name){copy, ctx, wildcard};
    return true;
}

/* The DNS names of the certificate in `ctx`: its subjectAltName entries, or, when it has
 * none, its subject's common name (as clients did before SANs). */
static bool collect_names(struct sl_tls_server *s, size_t i)
{
    X509 *x = SSL_CTX_get0_certificate(s->ctxs[i]);
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool ok = true;

    if (sans) {
        for (int k = 0; ok && k < sk_GENERAL_NAME_num(sans); k++) {
            const GENERAL_NAME *gn = sk_GENERAL_NAME_value(sans, k);
            if (gn->type != GEN_DNS)
                continue;
            const ASN1_IA5STRING *dns = gn->d.dNSName;
            ok = add_name(s, (const char *)ASN1_STRING_get0_data(dns),
                          (size_t)ASN1_STRING_length(dns), i);
        }
        GENERAL_NAMES_free(sans);
        return ok;
    }
    char cn[256];
    int len = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof cn);
    return len <= 0 || add_name(s, cn, (size_t)len, i);
}

/* Exact names first, then wildcards, then the first certificate. */
static size_t pick(const struct sl_tls_server *s, const char *host)
{
    size_t len = strlen(host);
    const char *dot = strchr(host, '.');

    for (size_t i = 0; i < s->nnames; i++)
        if (!s->names[i].wildcard && strcasecmp(s->names[i].name, host) == 0)
            return s->names[i].ctx;
    if (dot && dot != host && (size_t)(dot - host) < len)
        for (size_t i = 0; i < s->nnames; i++)
            if (s->names[i].wildcard && strcasecmp(s->names[i].name, dot) == 0)
                return s->names[i].ctx;
    return 0;
}

static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct sl_tls_server *s = arg;
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    size_t i = host ? pick(s, host) : 0;

    if (i != 0 && !SSL_set_SSL_CTX(ssl, s->ctxs[i]))
        return SSL_TLSEXT_ERR_ALERT_FATAL;
    return SSL_TLSEXT_ERR_OK;
}

static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    static const unsigned char both[] = "\x02h2\x08http/1.1";
    static const unsigned char http1[] = "\x08http/1.1";
    const struct sl_tls_server *s = arg;
    const unsigned char *ours = s->h2 ? both : http1;
    unsigned int ourlen = s->h2 ? sizeof both - 1 : sizeof http1 - 1;

    /* Our order is the preference: h2 whenever the client offers it. A client offering
     * neither goes on without ALPN, as HTTP/1.1. */
    if (SSL_select_next_proto((unsigned char **)out, outlen, ours, ourlen, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    return SSL_TLSEXT_ERR_OK;
}

static int check_certificate(SSL_CTX *ctx, const struct sl_tls_certificate *cert, char *err,
                             size_t errlen)
{
    char why[256];

    if (SSL_CTX_use_certificate_chain_file(ctx, cert->cert) != 1) {
        snprintf(err, errlen, "%s: cannot read a PEM certificate chain: %s", cert->cert,
                 ssl_error(why, sizeof why));
        return -1;
    }
    BIO *kb = BIO_new_file(cert->key, "r");
    EVP_PKEY *key = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
    BIO_free(kb);
    if (!key) {
        snprintf(err, errlen, "%s: cannot read a PEM private key: %s", cert->key,
                 ssl_error(why, sizeof why));
        return -1;
    }
    int used = SSL_CTX_use_PrivateKey(ctx, key);
    EVP_PKEY_free(key);
    if (used != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "%s: the key does not match the certificate in %s", cert->key,
                 cert->cert);
        return -1;
    }
    const ASN1_TIME *not_after = X509_get0_notAfter(SSL_CTX_get0_certificate(ctx));
    if (X509_cmp_current_time(not_after) <= 0) {
        BIO *b = BIO_new(BIO_s_mem());
        char when[64] = "";
        if (b && ASN1_TIME_print(b, not_after) == 1) {
            int n = BIO_read(b, when, (int)sizeof when - 1);
            when[n > 0 ? n : 0] = '\0';
        }
        BIO_free(b);
        snprintf(err, errlen, "%s: the certificate expired (not after %s)", cert->cert, when);
        return -1;
    }
    return 0;
}

static int trust_client_ca(SSL_CTX *ctx, const char *ca, char *err, size_t errlen)
{
    char why[256];
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(ca);

    if (!names || SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        sk_X509_NAME_pop_free(names, X509_NAME_free);
        snprintf(err, errlen, "%s: cannot read PEM CA certificates: %s", ca,
                 ssl_error(why, sizeof why));
        return -1;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    return 0;
}

static SSL_CTX *new_ctx(struct sl_tls_server *s, const struct sl_tls_server_config *c,
                        const struct sl_tls_certificate *cert, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "out of memory for a TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, c->min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* Client-initiated renegotiation costs the server a handshake for nothing. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION);
    /* An idle connection keeps no read or write buffer (34 KiB each otherwise). */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    /* Resumption is by tickets alone: a server-side cache would be one more lock shared by
     * the workers, and would not survive a reload. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, sl_tls_ticket_cb);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"sluice", 6);
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, s);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, s);
    if (check_certificate(ctx, cert, err, errlen) < 0 ||
        (c->client_ca && trust_client_ca(ctx, c->client_ca, err, errlen) < 0)) {
        SSL_CTX_free(ctx);
        return NULL;
    }
    return ctx;
}

struct sl_tls_server *sl_tls_server_new(const struct sl_tls_server_config *c, bool h2, char *err,
                                        size_t errlen)
{
    struct sl_tls_server *s = calloc(1, sizeof *s);

    if (!s || !(s->ctxs = calloc(c->ncerts, sizeof *s->ctxs))) {
        free(s);
        snprintf(err, errlen, "out of memory for TLS");
        return NULL;
    }
    s->h2 = h2;
    for (size_t i = 0; i < c->ncerts; i++) {
        s->ctxs[i] = new_ctx(s, c, &c->certs[i], err, errlen);
        if (!s->ctxs[i])
            goto fail;
        s->nctxs++;
        if (!collect_names(s, i)) {
            snprintf(err, errlen, "out of memory for TLS");
            goto fail;
        }
    }
    return s;

fail:
    sl_tls_server_free(s);
    return NULL;
}

void sl_tls_server_free(struct sl_tls_server *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nctxs; i++)
        SSL_CTX_free(s->ctxs[i]);
    free(s->ctxs);
    for (size_t i = 0; i < s->nnames; i++)
        free(s->names[i].name);
    free(s->names);
    free(s);
}

SSL *sl_tls_server_ssl_new(const struct sl_tls_server *s)
{
    return SSL_new(s->ctxs[0]);
}

size_t sl_tls_client_subject(SSL *ssl, char *out, size_t size)
{
    X509 *peer = SSL_get0_peer_certificate(ssl);
    BIO *b;
    size_t n = 0;

    if (size == 0)
        return 0;
    out[0] = '\0';
    if (!peer || SSL_get_verify_result(ssl) != X509_V_OK || !(b = BIO_new(BIO_s_mem())))
        return 0;
    if (X509_NAME_print_ex(b, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253) >= 0) {
        int got = BIO_read(b, out, (int)(size - 1));
        n = got > 0 ? (size_t)got : 0;
    }
    out[n] = '\0';
    BIO_free(b);
    return n;
}
