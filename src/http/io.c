/* Socket I/O next to the bufferevents. A bufferevent here writes (when the socket is
 * full), connects and reports write errors; reading is done by a plain event of our own:
 * libevent 2.1 reads at most 4 KiB per readable event and asks FIONREAD first, an extra
 * syscall per read, which on a proxy is a sixth of all syscalls per request. */
#include <errno.h>
#include <sys/uio.h>

#include "http.h"

/* One read per readable event, at most this much (level-triggered: the rest comes on the
 * next loop turn, after the other connections had theirs). */
#define READ_MAX (64 * 1024)

int sl_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    /* A socket bufferevent freezes the front of its output between its own writes. */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    return n;
}

int sl_read_socket(struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    struct evbuffer_iovec v[2];

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
    ssize_t got = readv(bufferevent_getfd(bev), (struct iovec *)v, n);
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

void sl_reader_set(struct event *rev, bool *active, bool want, const struct timeval *timeout,
                   bool *timeout_changed)
{
    if (want && (!*active || *timeout_changed)) {
        event_add(rev, timeout);
        *active = true;
        *timeout_changed = false;
    } else if (!want && *active) {
        event_del(rev);
        *active = false;
    }
}
