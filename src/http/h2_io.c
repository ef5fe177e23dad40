/* Bytes between an evbuffer and a libnghttp2 session (h2_io.h), and the client preface
 * that tells an HTTP/2 connection from an HTTP/1 one (http.h). */
#include "h2_io.h"

#include <string.h>
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

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof preface - 1)

int sl_h2_preface(struct evbuffer *in)
{
    char buf[PREFACE_LEN];
    size_t n = evbuffer_get_length(in);

    if (n > PREFACE_LEN)
        n = PREFACE_LEN;
    evbuffer_copyout(in, buf, n);
    if (memcmp(buf, preface, n) != 0)
        return -1;
    return n == PREFACE_LEN ? 1 : 0;
}
