/* The connection under either upstream codec: a socket, or TLS to an https:// or h2://
 * upstream, with the server's name checked and the worker's last session resumed. */
#include <openssl/err.h>
#include <string.h>

#include "../tls/sessions.h"
#include "../tls/tls.h"
#include "http.h"
#include "sluice/log.h"

/* The host part of "host:port" or "[v6]:port", the name TLS verifies by default. */
static void host_of(const struct sl_upstream_config *u, char *out, size_t size)
{
    const char *text = u->host ? u->host : u->addr.text;
    size_t n = strlen(text);

    if (!u->host && text[0] == '[') {
        const char *end = strchr(text, ']');
        text++;
        n = end ? (size_t)(end - text) : 0;
    } else if (!u->host) {
        const char *colon = strrchr(text, ':');
        n = colon ? (size_t)(colon - text) : n;
    }
    if (n >= size)
        n = size - 1;
    memcpy(out, text, n);
    out[n] = '\0';
}

struct bufferevent *sl_upstream_bev_new(struct sl_worker *w, const struct sl_upstream_config *u)
{
    if (!u->tls.enabled || !u->tls_ctx)
        return bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    char host[256], err[256];
    host_of(u, host, sizeof host);
    SSL *ssl = sl_tls_client_ssl_new(u->tls_ctx, &u->tls, host, err, sizeof err);
    if (!ssl) {
        sl_log_warn("upstream %s: %s", u->addr.text, err);
        return NULL;
    }
    sl_tls_session_use(&w->upstream_session, ssl);
    struct bufferevent *bev = bufferevent_openssl_socket_new(
        w->base, -1, ssl, BUFFEREVENT_SSL_CONNECTING, BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

void sl_upstream_bev_free(struct bufferevent *bev)
{
    SSL *ssl = sl_bev_tls(bev) ? bufferevent_openssl_get_ssl(bev) : NULL;
    /* OpenSSL takes a session freed without a shutdown for a broken one and will not
     * resume it: close_notify goes out if the socket takes it, and the session stays. */
    if (ssl && SSL_is_init_finished(ssl)) {
        SSL_shutdown(ssl);
        ERR_clear_error();
    }
    bufferevent_free(bev);
}

bool sl_upstream_tls_failed(struct bufferevent *bev, const char *target)
{
    unsigned long e = sl_bev_tls(bev) ? bufferevent_get_openssl_error(bev) : 0;
    if (!e)
        return false;
    char why[256];
    ERR_error_string_n(e, why, sizeof why);
    /* The certificate's own complaint says more than "certificate verify failed". */
    long verify = SSL_get_verify_result(bufferevent_openssl_get_ssl(bev));
    sl_log_warn("upstream %s: TLS handshake failed: %s%s%s", target, why,
                verify != X509_V_OK ? ": " : "",
                verify != X509_V_OK ? X509_verify_cert_error_string(verify) : "");
    while (bufferevent_get_openssl_error(bev))
        ;
    return true;
}

bool sl_upstream_alpn_is(struct bufferevent *bev, const char *proto)
{
    const unsigned char *p = NULL;
    unsigned int n = 0;
    SSL_get0_alpn_selected(bufferevent_openssl_get_ssl(bev), &p, &n);
    return n == strlen(proto) && memcmp(p, proto, n) == 0;
}
