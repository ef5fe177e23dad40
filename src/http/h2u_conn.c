/* Connections to an HTTP/2 upstream (h2c://): a few per worker, each a libnghttp2 client
 * session carrying many exchanges as streams, as many as the upstream's SETTINGS allow
 * (at most SL_H2U_MAX_STREAMS). Requests are submitted at once, even before the
 * connection is up: nghttp2 queues their frames behind the preface. Streams are
 * h2u_stream.c's. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "h2_io.h"
#include "h2u.h"
#include "sluice/log.h"

static void conn_free(struct sl_h2u_conn *c);

void sl_h2u_enter(struct sl_h2u_conn *c)
{
    c->busy++;
}

static struct sl_h2u_stream *stream_get(struct sl_h2u_conn *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->session, id);
}

/* Ends the connection under its streams: each is retried elsewhere or failed. */
static void kill_conn(struct sl_h2u_conn *c, enum sl_upstream_error kind)
{
    if (c->dying)
        return;
    c->dying = true;
    c->goaway = true;
    while (c->streams) {
        if (c->streams->x)
            sl_h2u_on_conn_failed(c->streams, kind);
        else
            sl_h2u_stream_unlink_free(c->streams);
    }
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
}

static void send_frames(struct sl_h2u_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int rv = sl_h2_io_send(c->session, out);

    if (rv != 0) {
        sl_log_debug("http2 upstream %s: %s", c->target, nghttp2_strerror(rv));
        kill_conn(c, SL_UPSTREAM_ERR_RESET);
        return;
    }
    /* Written once the callbacks already due in this loop turn have run: the frames of
     * every stream they serve go in one write, with no poll in between. */
    if (c->connected && evbuffer_get_length(out) && !c->flush_pending &&
        !(bufferevent_get_enabled(c->bev) & EV_WRITE)) { /* else the socket's turn writes it */
        c->flush_pending = true;
        event_active(&c->flush, EV_TIMEOUT, 0);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_h2u_conn *c = arg;

    (void)fd, (void)what;
    c->flush_pending = false;
    if (!c->dying)
        sl_flush(c->bev);
}

void sl_h2u_leave(struct sl_h2u_conn *c)
{
    if (c->busy > 1) {
        c->busy--;
        return;
    }
    /* Still held while the streams are woken and frames go: nothing frees it under us. */
    if (!c->dying) {
        sl_h2u_wake(c);
        send_frames(c);
        /* Both ends said GOAWAY and nothing is left to say: the connection is done. */
        if (c->goaway && c->nstreams == 0 && !nghttp2_session_want_write(c->session) &&
            evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            c->dying = true;
    }
    c->busy = 0;
    if (c->dying)
        conn_free(c);
}

/* ---- the session's callbacks ---- */

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    struct sl_h2u_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    (void)s, (void)flags;
    if (evbuffer_get_length(out) >= SL_HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(out, data, len);
    return (ssize_t)len;
}

static int header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
    struct sl_h2u_stream *st = stream_get(arg, f->hd.stream_id);

    (void)s, (void)flags;
    if (!st)
        return 0;
    return sl_h2u_on_header(st, f, name, namelen, value, valuelen);
}

static int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct sl_h2u_conn *c = arg;

    (void)s;
    switch (f->hd.type) {
    case NGHTTP2_SETTINGS:
        c->settled = true;
        return 0;
    case NGHTTP2_GOAWAY:
        /* Streams above last_stream_id are closed by nghttp2 as refused, and go again. */
        c->goaway = true;
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA: {
        struct sl_h2u_stream *st = stream_get(c, f->hd.stream_id);
        return st ? sl_h2u_on_frame(st, f) : 0;
    }
    default:
        return 0;
    }
}

static int data_chunk_cb(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *arg)
{
    struct sl_h2u_conn *c = arg;
    struct sl_h2u_stream *st = stream_get(c, id);

    (void)flags;
    if (st)
        sl_h2u_on_data(st, data, len);
    else
        nghttp2_session_consume(s, id, len); /* a stream sluice let go of */
    return 0;
}

static int stream_close_cb(nghttp2_session *s, int32_t id, uint32_t error, void *arg)
{
    struct sl_h2u_stream *st = stream_get(arg, id);

    (void)s;
    if (st)
        sl_h2u_on_close(st, error, error == NGHTTP2_REFUSED_STREAM);
    return 0;
}

static nghttp2_session_callbacks *session_callbacks;
static nghttp2_option *session_options;
static pthread_once_t session_once = PTHREAD_ONCE_INIT;

static void session_setup(void)
{
    nghttp2_session_callbacks *p;
    nghttp2_option *o;

    if (nghttp2_session_callbacks_new(&p) != 0)
        return;
    nghttp2_session_callbacks_set_send_callback(p, send_cb);
    nghttp2_session_callbacks_set_send_data_callback(p, sl_h2u_send_data);
    nghttp2_session_callbacks_set_on_header_callback(p, header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(p, frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(p, data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(p, stream_close_cb);
    if (nghttp2_option_new(&o) != 0) {
        nghttp2_session_callbacks_del(p);
        return;
    }
    /* A response's window opens only as the client takes its bytes (backpressure). */
    nghttp2_option_set_no_auto_window_update(o, 1);
    session_callbacks = p;
    session_options = o;
}

/* ---- the socket ---- */

static void receive(struct sl_h2u_conn *c)
{
    int n = sl_h2_io_recv(c->session, bufferevent_get_input(c->bev), &c->dying);

    if (n != 0) {
        sl_log_warn("http2 upstream %s: %s", c->target, nghttp2_strerror(n));
        kill_conn(c, SL_UPSTREAM_ERR_RESET);
    }
}

static void readcb(struct bufferevent *bev, void *arg)
{
    struct sl_h2u_conn *c = arg;

    (void)bev;
    sl_h2u_enter(c);
    receive(c);
    sl_h2u_leave(c);
}

static void writecb(struct bufferevent *bev, void *arg)
{
    struct sl_h2u_conn *c = arg;

    (void)bev;
    sl_h2u_enter(c); /* room again: leave sends what waited */
    sl_h2u_leave(c);
}

static void eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct sl_h2u_conn *c = arg;
    struct sl_worker *w = c->w;

    sl_h2u_enter(c);
    if ((what & BEV_EVENT_CONNECTED) && sl_bev_tls(bev) && !sl_upstream_alpn_is(bev, "h2")) {
        sl_log_warn("http2 upstream %s: the server did not agree to h2 by ALPN", c->target);
        kill_conn(c, SL_UPSTREAM_ERR_TLS);
    } else if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        c->connected = true;
        bufferevent_set_timeouts(bev, NULL, NULL);
        if (c->by_name) {
            struct sockaddr_storage ss;
            socklen_t len = sizeof ss;
            if (getpeername(bufferevent_getfd(bev), (struct sockaddr *)&ss, &len) == 0)
                sl_upstream_name_learn(w, &ss, len);
        }
        setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        bufferevent_enable(bev, EV_READ);
    } else {
        enum sl_upstream_error kind = SL_UPSTREAM_ERR_RESET;
        if (!c->connected) {
            if (c->by_name)
                sl_upstream_name_forget(w);
            kind = (what & BEV_EVENT_TIMEOUT)              ? SL_UPSTREAM_ERR_TIMEOUT
                   : bufferevent_socket_get_dns_error(bev) ? SL_UPSTREAM_ERR_RESOLVE
                   : sl_upstream_tls_failed(bev, c->target) ? SL_UPSTREAM_ERR_TLS
                                                            : SL_UPSTREAM_ERR_CONNECT;
            if (kind != SL_UPSTREAM_ERR_TLS)
                sl_log_warn("http2 upstream %s: cannot connect", c->target);
        } else {
            receive(c); /* what came before the close: a GOAWAY, last responses */
        }
        kill_conn(c, kind);
    }
    sl_h2u_leave(c);
}

/* ---- life ---- */

static struct sl_h2u_conn *conn_new(struct sl_worker *w, const struct sl_upstream_config *u)
{
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, SL_H2U_STREAM_WINDOW},
    };
    struct sl_h2u_conn *c = calloc(1, sizeof *c);

    pthread_once(&session_once, session_setup);
    if (!c || !session_callbacks)
        goto fail;
    c->w = w;
    c->target = strdup(u->addr.text);
    c->tls_ctx = u->tls_ctx;
    c->bev = sl_upstream_bev_new(w, u);
    if (!c->target || !c->bev)
        goto fail;
    if (nghttp2_session_client_new2(&c->session, session_callbacks, c, session_options) != 0) {
        c->session = NULL;
        goto fail;
    }
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                              SL_H2U_CONN_WINDOW))
        goto fail;
    event_assign(&c->flush, w->base, -1, 0, flush_cb, c);
    bufferevent_setcb(c->bev, readcb, writecb, eventcb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, SL_LOW_WATER, 0);
    struct timeval tv = {(time_t)(u->connect_timeout_ms / 1000),
                         (suseconds_t)(u->connect_timeout_ms % 1000) * 1000};
    /* A TLS handshake reads as well as writes: connect_timeout bounds both. */
    bufferevent_set_timeouts(c->bev, sl_bev_tls(c->bev) ? &tv : NULL, &tv);
    socklen_t len = u->addr.len;
    const struct sockaddr_storage *addr = u->host ? sl_upstream_name_addr(w, u, &len) : &u->addr.ss;
    c->by_name = !addr;
    int rc = addr ? bufferevent_socket_connect(c->bev, (const struct sockaddr *)addr, (int)len)
                  : sl_upstream_name_connect(w, u, c->bev);
    if (rc < 0)
        goto fail;
    c->next = w->h2u;
    if (w->h2u)
        w->h2u->prev = c;
    w->h2u = c;
    return c;
fail:
    if (c) {
        if (c->session)
            nghttp2_session_del(c->session);
        if (c->bev)
            bufferevent_free(c->bev);
        free(c->target);
        free(c);
    }
    return NULL;
}

static void conn_free(struct sl_h2u_conn *c)
{
    struct sl_worker *w = c->w;

    if (c->prev)
        c->prev->next = c->next;
    else
        w->h2u = c->next;
    if (c->next)
        c->next->prev = c->prev;
    while (c->streams) /* reset ones nghttp2 had not closed yet */
        sl_h2u_stream_unlink_free(c->streams);
    event_del(&c->flush);
    nghttp2_session_del(c->session);
    sl_upstream_bev_free(c->bev);
    free(c->target);
    free(c);
}

/* Says GOAWAY and lets the connection end once written. */
static void close_conn(struct sl_h2u_conn *c)
{
    sl_h2u_enter(c);
    if (!c->goaway) {
        c->goaway = true;
        nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
    }
    sl_h2u_leave(c);
}

static unsigned stream_room(const struct sl_h2u_conn *c)
{
    unsigned max = SL_H2U_MAX_STREAMS;
    if (c->settled) {
        uint32_t peer = nghttp2_session_get_remote_settings(
            c->session, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
        if (peer < max)
            max = peer;
    }
    return c->nstreams < max ? max - c->nstreams : 0;
}

struct sl_h2u_conn *sl_h2u_conn_pick(struct sl_worker *w, const struct sl_upstream_config *u)
{
    struct sl_h2u_conn *found = NULL;

    for (struct sl_h2u_conn *c = w->h2u, *next; c; c = next) {
        next = c->next;
        if (c->goaway || c->dying)
            continue;
        if (strcmp(c->target, u->addr.text) != 0 || c->tls_ctx != u->tls_ctx) {
            /* An upstream a reload replaced: its idle connections serve no one now. */
            if (c->nstreams == 0)
                close_conn(c);
            continue;
        }
        if (!found && stream_room(c))
            found = c;
    }
    return found ? found : conn_new(w, u);
}

void sl_h2u_conn_stream_gone(struct sl_h2u_conn *c)
{
    if (c->nstreams > 0 || c->goaway || c->dying)
        return;
    /* Connections without a stream are kept up to upstream.keepalive, as HTTP/1.1 ones
     * are: a burst's connections serve the next burst. */
    unsigned idle = 0;
    for (struct sl_h2u_conn *o = c->w->h2u; o; o = o->next)
        if (o->nstreams == 0 && !o->goaway && !o->dying)
            idle++;
    if (c->w->draining || idle > c->w->cfg->upstream.keepalive) {
        c->goaway = true;
        nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
    }
}

void sl_h2u_close_all(struct sl_worker *w, bool idle_only)
{
    for (struct sl_h2u_conn *c = w->h2u, *next; c; c = next) {
        next = c->next;
        if (!idle_only) {
            sl_h2u_enter(c);
            kill_conn(c, SL_UPSTREAM_ERR_RESET);
            sl_h2u_leave(c);
        } else if (c->nstreams == 0) {
            close_conn(c);
        }
    }
}
