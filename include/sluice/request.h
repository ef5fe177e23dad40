/* A parsed request head, as the proxy hands it to the engine. Everything is borrowed from
 * the connection and valid only during sl_engine_decide(); nothing is NUL-terminated. */
#ifndef SLUICE_REQUEST_H
#define SLUICE_REQUEST_H

#include <stddef.h>
#include <sys/socket.h>

struct sl_header {
    const char *name;
    size_t name_len;
    const char *value; /* surrounding whitespace removed */
    size_t value_len;
};

struct sl_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target exactly as sent, query included */
    size_t target_len;
    const struct sl_header *headers; /* in arrival order, duplicates kept */
    size_t nheaders;
    const struct sockaddr *peer; /* NULL or AF_UNIX for unix-socket clients */
    /* The verified client certificate's subject, RFC 2253 (listen[].tls.client_ca); NULL
     * when the connection has none. */
    const char *tls_subject;
    size_t tls_subject_len;
};

/* The first header named `name` (case-insensitive), or NULL. */
const struct sl_header *sl_request_header(const struct sl_request *req, const char *name,
                                          size_t name_len);

#endif
