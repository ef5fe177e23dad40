/* Moving bytes between an evbuffer and a libnghttp2 session, the same for the HTTP/2
 * client codec (a server session) and the HTTP/2 upstream codec (a client session). */
#ifndef SLUICE_HTTP_H2_IO_H
#define SLUICE_HTTP_H2_IO_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>

struct evbuffer;

/* Feeds what `in` holds to `session`, a chain at a time, while `*stop` stays false (a
 * callback may end the connection). Returns 0, or nghttp2's error, `in` then drained. */
int sl_h2_io_recv(nghttp2_session *session, struct evbuffer *in, const bool *stop);

/* Lets `session` frame what it has queued into `out` (through its send callbacks) until
 * `out` holds SL_HIGH_WATER or what is left waits for a window or for data. Returns 0, or
 * nghttp2's error. */
int sl_h2_io_send(nghttp2_session *session, struct evbuffer *out);

#endif
