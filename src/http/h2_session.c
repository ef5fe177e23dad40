/* An HTTP/2 client connection: taken over from the HTTP/1 code when it opens with the
 * preface, served by a libnghttp2 server session. This file holds the socket and the
 * session: reading into nghttp2 and writing what it sends, the deadlines (head, idle,
 * stalled), the control-frame allowance, GOAWAY, and freeing safely from inside its own
 * callbacks. Streams are h2_stream.c's. */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "h2.h"
#include "h2_io.h"
#include "sluice/clock.h"
#include "sluice/log.h"

static void conn_free(struct sl_h2_conn *c);

void sl_h2_enter(struct sl_h2_conn *c)
{
    c->busy++;
}

char *sl_h2_scratch(struct sl_worker *w, size_t n)
{
    if (n > w->h2_scratch_cap) {
        char *p = realloc(w->h2_scratch, n);
        if (!p)
            return NULL;
        w->h2_scratch = p;
        w->h2_scratch_cap = n;
    }
    return w->h2_scratch;
}

static void kill_conn(struct sl_h2_conn *c)
{
    if (c->dying)
        return;
    c->dying = true;
    while (c->streams)
        sl_h2_stream_release(c->streams);
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    event_del(&c->rev);
    c->rev_active = false;
    event_del(&c->timer);
}

void sl_h2_goaway(struct sl_h2_conn *c, uint32_t code, enum sl_h2_goaway reason)
{
    if (c->dying)
        return;
    c->goaway_reason = reason;
    if (code == NGHTTP2_NO_ERROR) {
        if (c->goaway)
            return;
        /* The streams received so far finish; later ones are refused by nghttp2. */
        nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->session),
                              NGHTTP2_NO_ERROR, NULL, 0);
    } else {
        nghttp2_session_terminate_session(c->session, code);
    }
    c->goaway = true;
}

bool sl_h2_calm(struct sl_h2_conn *c)
{
    uint64_t now = sl_clock_mono_us();

    c->calm_tokens += (double)(now - c->calm_us) * SL_H2_CALM_RATE / 1e6;
    if (c->calm_tokens > SL_H2_CALM_BURST)
        c->calm_tokens = SL_H2_CALM_BURST;
    c->calm_us = now;
    if (c->calm_tokens >= 1) {
        c->calm_tokens -= 1;
        return true;
    }
    sl_h2_goaway(c, NGHTTP2_ENHANCE_YOUR_CALM, SL_H2_GOAWAY_CALM);
    return false;
}

/* ---- nghttp2's callbacks ---- */

static struct sl_h2_stream *stream_get(struct sl_h2_conn *c, int32_t id)
{
    return nghttp2_session_get_stream_user_data(c->session, id);
}

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    struct sl_h2_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    (void)s, (void)flags;
    if (evbuffer_get_length(out) >= SL_HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(out, data, len);
    return (ssize_t)len;
}

static int begin_headers_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct sl_h2_conn *c = arg;

    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    if (!(f->hd.flags & NGHTTP2_FLAG_END_HEADERS))
        c->head_since_us = sl_clock_mono_us();
    struct sl_h2_stream *st = sl_h2_stream_new(c, f->hd.stream_id);
    if (!st)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    c->first = false;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static int header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t name_len, const uint8_t *value, size_t value_len, uint8_t flags,
                     void *arg)
{
    struct sl_h2_conn *c = arg;
    struct sl_h2_stream *st;

    (void)s, (void)flags;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0; /* trailers: an HTTP/1.1 upstream is not sent them */
    st = stream_get(c, f->hd.stream_id);
    if (!st)
        return 0;
    if (sl_h2_head_field(st, name, name_len, value, value_len) < 0)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    return 0;
}

static int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct sl_h2_conn *c = arg;
    struct sl_h2_stream *st = f->hd.stream_id ? stream_get(c, f->hd.stream_id) : NULL;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    (void)s;
    switch (f->hd.type) {
    case NGHTTP2_HEADERS:
        c->head_since_us = 0;
        c->progress_us = sl_clock_mono_us();
        if (!st)
            break;
        if (f->headers.cat == NGHTTP2_HCAT_REQUEST)
            sl_h2_stream_start(st, end);
        else if (end)
            sl_h2_stream_end(st);
        break;
    case NGHTTP2_DATA:
        /* Only requests and their bodies count as use: a client that pings or updates
         * windows while no stream moves is still stalled. */
        c->progress_us = sl_clock_mono_us();
        if (f->hd.length == 0 && !end)
            sl_h2_calm(c); /* empty DATA frames cost work and carry nothing */
        if (st && end)
            sl_h2_stream_end(st);
        break;
    case NGHTTP2_RST_STREAM:
    case NGHTTP2_PRIORITY:
        sl_h2_calm(c);
        break;
    case NGHTTP2_PING:
    case NGHTTP2_SETTINGS:
        if (!(f->hd.flags & NGHTTP2_FLAG_ACK))
            sl_h2_calm(c);
        break;
    default:
        break;
    }
    return 0;
}

static int data_chunk_cb(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data,
                         size_t len, void *arg)
{
    struct sl_h2_conn *c = arg;
    struct sl_h2_stream *st = stream_get(c, id);

    (void)flags;
    if (st)
        sl_h2_stream_data(st, data, len);
    else
        nghttp2_session_consume(s, id, len);
    return 0;
}

static int stream_close_cb(nghttp2_session *s, int32_t id, uint32_t error, void *arg)
{
    struct sl_h2_conn *c = arg;
    struct sl_h2_stream *st = stream_get(c, id);

    (void)s;
    if (st)
        sl_h2_stream_closed(st, error);
    return 0;
}

static int frame_send_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct sl_h2_conn *c = arg;

    if (f->hd.type == NGHTTP2_GOAWAY) {
        uint32_t code = f->goaway.error_code;
        enum sl_h2_goaway reason = code == NGHTTP2_NO_ERROR            ? c->goaway_reason
                                   : code == NGHTTP2_ENHANCE_YOUR_CALM ? SL_H2_GOAWAY_CALM
                                                                       : SL_H2_GOAWAY_PROTOCOL;
        sl_metrics_http2_goaway(c->w->metrics, reason);
        c->goaway = true;
        return 0;
    }
    if (f->hd.type == NGHTTP2_HEADERS)
        c->progress_us = sl_clock_mono_us(); /* a response began: the connection moves */
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
        (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        struct sl_h2_stream *st = stream_get(c, f->hd.stream_id);
        if (st)
            sl_h2_stream_sent(st);
    }
    (void)s;
    return 0;
}

static nghttp2_session_callbacks *session_callbacks;
static nghttp2_option *session_options;
static pthread_once_t session_once = PTHREAD_ONCE_INIT;

/* The same for every session: made once, read by every worker. */
static void session_setup(void)
{
    nghttp2_session_callbacks *p;
    nghttp2_option *o;

    if (nghttp2_session_callbacks_new(&p) != 0)
        return;
    nghttp2_session_callbacks_set_send_callback(p, send_cb);
    nghttp2_session_callbacks_set_send_data_callback(p, sl_h2_stream_send_data);
    nghttp2_session_callbacks_set_on_begin_headers_callback(p, begin_headers_cb);
    nghttp2_session_callbacks_set_on_header_callback(p, header_cb);
    nghttp2_session_callbacks_set_on_frame_recv_callback(p, frame_recv_cb);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(p, data_chunk_cb);
    nghttp2_session_callbacks_set_on_stream_close_callback(p, stream_close_cb);
    nghttp2_session_callbacks_set_on_frame_send_callback(p, frame_send_cb);
    if (nghttp2_option_new(&o) != 0) {
        nghttp2_session_callbacks_del(p);
        return;
    }
    /* Windows open as bytes move upstream (h2_stream.c), not as they arrive. */
    nghttp2_option_set_no_auto_window_update(o, 1);
    /* sluice's own allowance (sl_h2_calm) answers a reset flood first, with
     * ENHANCE_YOUR_CALM; nghttp2's stays behind it as a backstop. */
    nghttp2_option_set_stream_reset_rate_limit(o, 4 * SL_H2_CALM_BURST, 4 * SL_H2_CALM_RATE);
    session_options = o;
    session_callbacks = p;
}

/* ---- the socket ---- */

/* Feeds what the socket gave to nghttp2. A fatal error (a flood nghttp2 caught itself, a
 * broken preface) ends the connection with GOAWAY when the session can still send one. */
static void receive(struct sl_h2_conn *c)
{
    int n = sl_h2_io_recv(c->session, bufferevent_get_input(c->bev), &c->dying);

    if (n == 0)
        return;
    sl_log_debug("http2 client %s: %s", c->peer_text, nghttp2_strerror(n));
    if (n == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
        kill_conn(c);
        return;
    }
    bool flood = n == NGHTTP2_ERR_FLOODED || n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS;
    sl_h2_goaway(c, flood ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_PROTOCOL_ERROR,
                 flood ? SL_H2_GOAWAY_CALM : SL_H2_GOAWAY_PROTOCOL);
    c->client_eof = true; /* read nothing more */
}

static void send_frames(struct sl_h2_conn *c)
{
    int rv = sl_h2_io_send(c->session, bufferevent_get_output(c->bev));

    if (rv != 0) {
        sl_log_debug("http2 client %s: %s", c->peer_text, nghttp2_strerror(rv));
        kill_conn(c);
        return;
    }
    /* Written once the callbacks already due in this loop turn have run: the responses
     * that one upstream read completes for this connection go in one write. */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) && !c->flush_pending &&
        !(bufferevent_get_enabled(c->bev) & EV_WRITE)) { /* else the socket's turn writes it */
        c->flush_pending = true;
        event_active(&c->flush, EV_TIMEOUT, 0);
    }
}

static void flush_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_h2_conn *c = arg;

    (void)fd, (void)what;
    c->flush_pending = false;
    sl_h2_enter(c);
    if (!c->dying && !c->lingering)
        sl_flush(c->bev);
    sl_h2_leave(c); /* the output may now be empty: the connection may end */
}

static void readcb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_h2_conn *c = arg;

    (void)what;
    sl_h2_enter(c);
    int n = sl_read_socket(c->bev, fd);
    if (n > 0 && c->lingering)
        evbuffer_drain(bufferevent_get_input(c->bev), (size_t)n);
    else if (n > 0)
        receive(c);
    else if (n == SL_READ_EOF || n == SL_READ_ERROR)
        kill_conn(c); /* an HTTP/2 client that closes wants no more answers */
    sl_h2_leave(c);
}

static void tls_readcb(struct bufferevent *bev, void *arg)
{
    (void)bev;
    readcb(-1, EV_READ, arg);
}

static void writecb(struct bufferevent *bev, void *arg)
{
    struct sl_h2_conn *c = arg;

    sl_h2_enter(c);
    if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    sl_h2_leave(c);
}

static void eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct sl_h2_conn *c = arg;

    (void)bev, (void)what; /* a write error or timeout: the client is not reading */
    sl_h2_enter(c);
    kill_conn(c);
    sl_h2_leave(c);
}

/* ---- deadlines ---- */

static uint64_t deadline(struct sl_h2_conn *c)
{
    const struct sl_client_config *cc = &c->cfg->client;

    if (c->head_since_us)
        return c->head_since_us + cc->header_timeout_ms * 1000;
    if (c->nstreams == 0)
        return c->active_us + (c->first ? cc->header_timeout_ms : cc->idle_timeout_ms) * 1000;
    return c->progress_us + cc->idle_timeout_ms * 1000;
}

/* The timer fires at the deadline or earlier; an early one is set again for the rest, so
 * that the deadlines, which move on with every frame, cost no timer operation each. */
static void arm(struct sl_h2_conn *c, uint64_t due_us)
{
    uint64_t now = sl_clock_mono_us();

    if (c->timer_due_us && c->timer_due_us <= due_us)
        return;
    uint64_t us = due_us > now ? due_us - now : 0;
    struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
    event_add(&c->timer, &tv);
    c->timer_due_us = due_us;
}

static bool owed(const struct sl_h2_conn *c)
{
    for (const struct sl_h2_stream *st = c->streams; st; st = st->next)
        if (sl_h2_stream_owes(st))
            return true;
    return false;
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_h2_conn *c = arg;
    uint64_t now = sl_clock_mono_us(), due = deadline(c);

    (void)fd, (void)what;
    c->timer_due_us = 0;
    sl_h2_enter(c);
    if (c->lingering) {
        kill_conn(c);
    } else if (due > now + 1000) {
        arm(c, due);
    } else if (c->goaway) {
        kill_conn(c); /* the client did not close after GOAWAY */
    } else if (c->head_since_us || c->nstreams == 0) {
        /* A header block never finished, or no stream for the idle time (PING and
         * SETTINGS do not count as use). */
        sl_h2_goaway(c, NGHTTP2_NO_ERROR, SL_H2_GOAWAY_IDLE);
        c->client_eof = true;
        arm(c, now + SL_LINGER_MS * 1000);
    } else if (!owed(c)) {
        /* The streams wait for the upstream or a delay, which have deadlines of their
         * own (upstream.timeout, the limit's): the client is not stalling. */
        c->progress_us = now;
        arm(c, deadline(c));
    } else {
        /* Streams open and nothing moving either way for the idle time: a window that
         * never opens, a body that never comes. */
        sl_h2_goaway(c, NGHTTP2_NO_ERROR, SL_H2_GOAWAY_STALLED);
        while (c->streams)
            sl_h2_stream_release(c->streams);
        c->client_eof = true;
        arm(c, now + SL_LINGER_MS * 1000);
    }
    sl_h2_leave(c);
}

/* After the last frame, as after an HTTP/1 connection's last response (client.c): the
 * write side is shut and what the client still sends (WINDOW_UPDATE for the last DATA, a
 * PING) is read and dropped for a while, since closing with unread bytes would answer
 * them with a reset that can destroy the last frames before the client reads them. */
static void linger(struct sl_h2_conn *c)
{
    if (c->client_eof) {
        kill_conn(c);
        return;
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    c->lingering = true;
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    struct timeval tv = {SL_LINGER_MS / 1000, (SL_LINGER_MS % 1000) * 1000};
    event_add(&c->timer, &tv);
    c->timer_due_us = sl_clock_mono_us() + SL_LINGER_MS * 1000;
    sl_reader_set(c->bev, &c->rev, &c->rev_active, true, NULL, &c->rev_timeout_changed);
}

/* ---- the outermost callback ---- */

void sl_h2_leave(struct sl_h2_conn *c)
{
    if (--c->busy > 0)
        return;
    if (!c->dying && !c->lingering) {
        struct sl_h2_stream *st;
        while ((st = c->dirty)) {
            c->dirty = st->dirty_next;
            st->dirty = false;
            sl_h2_stream_sync(st);
        }
        send_frames(c);
    }
    if (!c->dying) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        bool done = !nghttp2_session_want_read(c->session) &&
                    !nghttp2_session_want_write(c->session);
        if (c->goaway && c->nstreams == 0 && !nghttp2_session_want_write(c->session))
            done = true;
        if (c->lingering) {
            sl_reader_set(c->bev, &c->rev, &c->rev_active, true, NULL, &c->rev_timeout_changed);
        } else if (done && evbuffer_get_length(out) == 0) {
            linger(c);
        } else {
            if (done) /* the last frames are written, then the connection closes */
                bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
            bool want = !done && !c->client_eof && evbuffer_get_length(out) < SL_HIGH_WATER &&
                        evbuffer_get_length(bufferevent_get_input(c->bev)) < SL_INPUT_MAX;
            sl_reader_set(c->bev, &c->rev, &c->rev_active, want, NULL, &c->rev_timeout_changed);
            arm(c, deadline(c));
        }
    }
    if (c->dying && c->npending == 0)
        conn_free(c);
}

/* ---- life ---- */

static int session_new(struct sl_h2_conn *c)
{
    const struct sl_client_config *cc = &c->cfg->client;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, cc->http2_max_streams},
        {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, SL_H2_STREAM_WINDOW},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)cc->max_header_bytes},
    };

    pthread_once(&session_once, session_setup);
    if (!session_callbacks)
        return -1;
    if (nghttp2_session_server_new2(&c->session, session_callbacks, c, session_options) != 0)
        return -1;
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, sizeof iv / sizeof iv[0]) ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0,
                                              SL_H2_CONN_WINDOW))
        return -1;
    return 0;
}

void sl_h2_take_over(struct sl_conn *h1)
{
    struct sl_worker *w = h1->w;
    struct sl_h2_conn *c = calloc(1, sizeof *c);

    if (!c) {
        sl_conn_kill(h1);
        return;
    }
    c->w = w;
    c->cfg = sl_cfg_ref(h1->cfg);
    memcpy(&c->peer, &h1->peer, sizeof c->peer);
    c->peer_len = h1->peer_len;
    memcpy(c->peer_text, h1->peer_text, sizeof c->peer_text);
    c->peer_text_len = h1->peer_text_len;
    c->tls_subject = h1->tls_subject; /* taken over */
    c->tls_subject_len = h1->tls_subject_len;
    h1->tls_subject = NULL;
    c->active_us = c->progress_us = c->calm_us = sl_clock_mono_us();
    c->calm_tokens = SL_H2_CALM_BURST;
    c->first = true;
    c->rls = h1->rls;
    if (session_new(c) < 0) {
        if (c->session)
            nghttp2_session_del(c->session);
        sl_cfg_unref(c->cfg);
        free(c);
        sl_conn_kill(h1);
        return;
    }
    c->bev = sl_conn_hand_over(h1);
    evtimer_assign(&c->timer, w->base, timer_cb, c);
    event_assign(&c->flush, w->base, -1, 0, flush_cb, c);
    c->tls = sl_bev_tls(c->bev);
    sl_reader_assign(&c->rev, w->base, c->bev, readcb, c);
    bufferevent_setcb(c->bev, c->tls ? tls_readcb : NULL, writecb, eventcb, c);
    {
        uint64_t ms = c->cfg->client.idle_timeout_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        bufferevent_set_timeouts(c->bev, NULL, &tv);
    }
    c->next = w->h2conns;
    if (w->h2conns)
        w->h2conns->prev = c;
    w->h2conns = c;
    w->nconns++;

    sl_h2_enter(c);
    receive(c); /* the preface and whatever followed it */
    sl_h2_leave(c);
}

static void conn_free(struct sl_h2_conn *c)
{
    struct sl_worker *w = c->w;

    nghttp2_session_del(c->session);
    event_del(&c->timer);
    event_del(&c->flush);
    event_del(&c->rev);
    bufferevent_free(c->bev);
    free(c->tls_subject);
    sl_cfg_unref(c->cfg);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->h2conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    free(c);
    sl_worker_conn_gone(w);
}

void sl_h2_shutdown(struct sl_h2_conn *c, bool graceful)
{
    sl_h2_enter(c);
    if (graceful)
        sl_h2_goaway(c, NGHTTP2_NO_ERROR, SL_H2_GOAWAY_SHUTDOWN);
    else
        kill_conn(c);
    sl_h2_leave(c);
}

void sl_h2_abandon(struct sl_h2_conn *c)
{
    sl_h2_enter(c);
    kill_conn(c);
    while (c->pending)
        sl_h2_stream_abandon(c->pending);
    sl_h2_leave(c);
}
