/* Socket reads beyond what a bufferevent does by itself. */
#include <sys/uio.h>

#include "http.h"

/* libevent 2.1's per-read cap (EVBUFFER_MAX_READ): a read that filled it may have left
 * data behind. */
#define LIBEVENT_READ_CAP 4096
#define TOP_UP_MAX (64 * 1024)

int sl_write_now(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    /* A socket bufferevent freezes the front of its output between its own writes. */
    evbuffer_unfreeze(out, 1);
    int n = evbuffer_write(out, bufferevent_getfd(bev));
    evbuffer_freeze(out, 1);
    return n;
}

void sl_read_more(struct bufferevent *bev)
{
    struct evbuffer *in = bufferevent_get_input(bev);
    size_t len = evbuffer_get_length(in);
    struct evbuffer_iovec v[2];

    if (len < LIBEVENT_READ_CAP || len >= SL_INPUT_MAX)
        return;
    size_t want = SL_INPUT_MAX - len;
    if (want > TOP_UP_MAX)
        want = TOP_UP_MAX;
    /* A socket bufferevent freezes the end of its input between its own reads. */
    evbuffer_unfreeze(in, 0);
    int n = evbuffer_reserve_space(in, (ev_ssize_t)want, v, 2);
    if (n <= 0) {
        evbuffer_freeze(in, 0);
        return;
    }
    ssize_t got = readv(bufferevent_getfd(bev), (struct iovec *)v, n);
    if (got <= 0)
        got = 0;
    size_t left = (size_t)got;
    int used = 0;
    while (used < n && left > 0) {
        if (v[used].iov_len > left)
            v[used].iov_len = left;
        left -= v[used].iov_len;
        used++;
    }
    evbuffer_commit_space(in, v, used);
    evbuffer_freeze(in, 0);
}
