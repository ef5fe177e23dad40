/* Socket I/O next to the bufferevents. A bufferevent here writes (when the socket is
 * full), connects and reports write errors; reading is done by a plain event of our own:
 * libevent 2.1 reads at most 4 KiB per readable event and asks FIONREAD first, an extra
 * syscall per read, which on a proxy is a sixth of all syscalls per request.
 *
 * Both directions use the socket calls (recv, sendmsg) rather than readv and writev: those
 * go through the file layer, which locks the file position and posts file-access events
 * on every call, work a socket never needs. */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "../tls/tls_server.h"
#include "http.h"

/* One read per readable event, at most this much (level-triggered: the rest comes on the
 * next loop turn, after the other connections had theirs). */
#define READ_MAX (64 * 1024)

/* Chains handed to one sendmsg(); a response head and body take two or three. */
#define WRITE_IOV 16

int sl_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    struct evbuffer_iovec v[WRITE_IOV];
    int n = evbuffer_peek(out, -1, NULL, v, WRITE_IOV);

    if (n <= 0)
        return 0;
    struct msghdr msg = {
        .msg_iov = (struct iovec *)v, /* evbuffer_iovec is laid out as struct iovec */
        .msg_iovlen = (size_t)(n < WRITE_IOV ? n : WRITE_IOV),
    };
    ssize_t sent = sendmsg(bufferevent_getfd(bev), &msg, MSG_NOSIGNAL);
    if (sent > 0) {
        /* A socket bufferevent freezes the front of its output between its own writes. */
        evbuffer_unfreeze(out, 1);
        evbuffer_drain(out, (size_t)sent);
        evbuffer_freeze(out, 1);
    }
    return (int)sent;
}

int sl_read_socket(struct bufferevent *bev, evutil_socket_t fd)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    struct evbuffer_iovec v[2];

    if (fd < 0) /* TLS: the bufferevent has read and decrypted; the bytes are in `in` */
        return len ? (int)(len < INT_MAX ? len : INT_MAX) : SL_READ_AGAIN;
    if (len >= SL_INPUT_MAX)
        return SL_READ_AGAIN;
    size_t want = SL_INPUT_MAX - len;
    if (want > READ_MAX)
        want = READ_MAX;
    /* A socket bufferevent freezes the end of its input between its own reads. */
    evbuffer_unfreeze(in, 0);
    int n = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    if (n <= 0) {
        evbuffer_freeze(in, 0);
        return SL_READ_ERROR;
    }
    ssize_t got;
    if (n == 1) {
        got = recv(fd, v[0].iov_base, v[0].iov_len, 0);
    } else {
        struct msghdr msg = {.msg_iov = (struct iovec *)v, .msg_iovlen = (size_t)n};
        got = recvmsg(fd, &msg, 0);
    }
    int err = errno;
    size_t left = got > 0 ? (size_t)got : 0;
    int used = 0;
    while (used < n && left > 0) {
        if (v[used].iov_len > left)
            v[used].iov_len = left;
        left -= v[used].iov_len;
        used++;
    }
    evbuffer_commit_space(in, v, used);
    evbuffer_freeze(in, 0);
    if (got > 0)
        return (int)got;
    if (got == 0)
        return SL_READ_EOF;
    if (err == EAGAIN || err == EWOULDBLOCK || err == EINTR)
        return SL_READ_AGAIN;
    errno = err;
    return SL_READ_ERROR;
}

/* A TLS bufferevent reads by itself (up to its high watermark, SL_INPUT_MAX); `rev` is then
 * only the read timeout, restarted by sl_reader_touch on every read. */
static void tls_reader_set(struct bufferevent *bev, struct event *rev, bool *active, bool want,
                           const struct timeval *timeout, bool *timeout_changed)
{
    if (want && !*active)
        bufferevent_enable(bev, EV_READ);
    else if (!want && *active)
        bufferevent_disable(bev, EV_READ);
    if (want && timeout && (!*active || *timeout_changed))
        event_add(rev, timeout);
    else if ((!want || !timeout) && event_pending(rev, EV_TIMEOUT, NULL))
        event_del(rev);
    *active = want;
    *timeout_changed = false;
}

void sl_reader_set(struct bufferevent *bev, struct event *rev, bool *active, bool want,
                   const struct timeval *timeout, bool *timeout_changed)
{
    if (rev->ev_fd < 0) { /* event_get_fd(), without the call */
        tls_reader_set(bev, rev, active, want, timeout, timeout_changed);
        return;
    }
    if (want && (!*active || *timeout_changed)) {
        /* event_add() with no timeout leaves a timeout set before in place: an idle
         * pooled connection would time out the next request it carries. */
        if (*active && !timeout)
            event_del(rev);
        event_add(rev, timeout);
        *active = true;
        *timeout_changed = false;
    } else if (!want && *active) {
        event_del(rev);
        *active = false;
    }
}

void sl_write_timeout_set(struct bufferevent *bev, uint64_t *cur_ms, uint64_t ms)
{
    if (*cur_ms == ms)
        return;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    bufferevent_set_timeouts(bev, NULL, ms ? &tv : NULL);
    *cur_ms = ms;
}

void sl_reader_assign(struct event *rev, struct event_base *base, struct bufferevent *bev,
                      event_callback_fn cb, void *arg)
{
    if (sl_bev_tls(bev)) {
        event_assign(rev, base, -1, 0, cb, arg);
        bufferevent_setwatermark(bev, EV_READ, 0, SL_INPUT_MAX);
        bufferevent_disable(bev, EV_READ);
    } else {
        event_assign(rev, base, bufferevent_getfd(bev), EV_READ | EV_PERSIST, cb, arg);
    }
}

void sl_reader_touch(struct event *rev, const struct timeval *timeout)
{
    if (timeout && event_pending(rev, EV_TIMEOUT, NULL))
        event_add(rev, timeout);
}

struct bufferevent *sl_tls_accept(struct event_base *base, evutil_socket_t fd,
                                  const struct sl_tls_server *tls)
{
    SSL *ssl = sl_tls_server_ssl_new(tls);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, fd, ssl, BUFFEREVENT_SSL_ACCEPTING,
                                       BEV_OPT_CLOSE_ON_FREE);
    if (!bev) {
        SSL_free(ssl);
        return NULL;
    }
    /* Most clients close without close_notify; that is an end of stream, not an attack
     * (a truncation matters only to a body without its own length, which HTTP frames). */
    bufferevent_openssl_set_allow_dirty_shutdown(bev, 1);
    return bev;
}

bool sl_tls_handshake_event(struct sl_metrics_slot *m, struct bufferevent *bev, short what,
                            bool *done)
{
    if (what & BEV_EVENT_CONNECTED) {
        *done = true;
        sl_metrics_tls_handshake(m, SSL_session_reused(bufferevent_openssl_get_ssl(bev))
                                        ? SL_TLS_HANDSHAKE_RESUMED
                                        : SL_TLS_HANDSHAKE_OK);
        return true;
    }
    if (!*done) {
        *done = true; /* counted once */
        sl_metrics_tls_handshake(m, SL_TLS_HANDSHAKE_FAILED);
    }
    return false;
}

char *sl_tls_peer_subject(struct bufferevent *bev, size_t *len)
{
    char text[1024];
    size_t n = sl_tls_client_subject(bufferevent_openssl_get_ssl(bev), text, sizeof text);
    char *copy = n ? malloc(n + 1) : NULL;

    if (copy)
        memcpy(copy, text, n + 1);
    *len = copy ? n : 0;
    return copy;
}

/* The TLS bufferevent seals each chain of its output as a record of its own and writes
 * each record with a syscall of its own: a response head and its body would take two of
 * each. A small output is made one chain first, so that it goes as one record in one
 * write; encryption copies the bytes anyway. */
#define TLS_RECORD_MAX 16384

void sl_tls_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    size_t len = evbuffer_get_length(out);

    if (len <= TLS_RECORD_MAX && evbuffer_get_contiguous_space(out) < len)
        evbuffer_pullup(out, -1);
    bufferevent_enable(bev, EV_WRITE);
}
