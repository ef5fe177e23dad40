/* Client sessions kept for the next connection to the same server (sessions.h). */
#include "sessions.h"

static int on_new_session(SSL *ssl, SSL_SESSION *session)
{
    struct sl_tls_session_slot *slot = SSL_get_app_data(ssl);
    if (!slot)
        return 0;
    SSL_SESSION_free(slot->session);
    slot->session = session;
    return 1; /* the slot keeps the reference */
}

void sl_tls_client_keep_sessions(SSL_CTX *ctx)
{
    /* Clients keep sessions themselves, in the slot: OpenSSL's client cache would be one
     * more structure shared by the workers, and it finds nothing by itself anyway. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(ctx, on_new_session);
}

void sl_tls_session_use(struct sl_tls_session_slot *slot, SSL *ssl)
{
    SSL_CTX *ctx = SSL_get_SSL_CTX(ssl);
    if (slot->ctx != ctx) {
        /* Another configuration's: its server or its settings may differ. */
        sl_tls_session_slot_clear(slot);
        slot->ctx = ctx;
    }
    if (slot->session)
        SSL_set_session(ssl, slot->session);
    SSL_set_app_data(ssl, slot);
}

void sl_tls_session_slot_clear(struct sl_tls_session_slot *slot)
{
    SSL_SESSION_free(slot->session);
    slot->session = NULL;
    slot->ctx = NULL;
}
