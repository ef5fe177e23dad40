/* Bytes between an evbuffer and a libnghttp2 session (h2_io.h). */
#include "h2_io.h"

#include <sys/types.h>

#include "http.h"

int sl_h2_io_recv(nghttp2_session *session, struct evbuffer *in, const bool *stop)
{
    while (!*stop && evbuffer_get_length(in)) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        ssize_t n = nghttp2_session_mem_recv(session, v.iov_base, v.iov_len);
        if (n < 0) {
            evbuffer_drain(in, evbuffer_get_length(in));
            return (int)n;
        }
        evbuffer_drain(in, (size_t)n);
    }
    return 0;
}

int sl_h2_io_send(nghttp2_session *session, struct evbuffer *out)
{
    while (evbuffer_get_length(out) < SL_HIGH_WATER && nghttp2_session_want_write(session)) {
        size_t before = evbuffer_get_length(out);
        int rv = nghttp2_session_send(session);
        if (rv != 0)
            return rv;
        if (evbuffer_get_length(out) == before)
            break; /* everything left waits for a window or for data */
    }
    return 0;
}
