/* TLS client sessions kept for resumption: a connection to an upstream resumes the session
 * the previous one was given (a ticket), so that a pool that opens connections again pays a
 * full handshake only once. One slot per worker and upstream; worker thread only. */
#ifndef SLUICE_TLS_SESSIONS_H
#define SLUICE_TLS_SESSIONS_H

#include <openssl/ssl.h>

struct sl_tls_session_slot {
    SSL_SESSION *session; /* the newest session a server gave, or NULL; owned */
    SSL_CTX *ctx;         /* the context it belongs to, for identity only */
};

/* Makes `ctx`'s connections hand every new session to the slot their SSL names. */
void sl_tls_client_keep_sessions(SSL_CTX *ctx);

/* `ssl` (on a context set up by sl_tls_client_keep_sessions) resumes the slot's session
 * when it has one of the same context, and leaves its own new sessions there. The slot
 * must outlive `ssl`'s handshake and its sessions' arrival. */
void sl_tls_session_use(struct sl_tls_session_slot *slot, SSL *ssl);

/* Forgets the kept session. */
void sl_tls_session_slot_clear(struct sl_tls_session_slot *slot);

#endif
