/* An exchange carried to an HTTP/2 upstream as one stream (sl_h2_upstream_ops): the
 * request head as HPACK fields, its body framed from an evbuffer whose chains move to the
 * socket uncopied, the response head, body and trailers handed to the client codec, and
 * the response window opened only as the client takes the bytes. A stream the upstream
 * refused (GOAWAY, REFUSED_STREAM) before any body byte left goes once more on another
 * connection; anything else that breaks is a 502 or a cut. */
#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "h2u.h"
#include "sluice/clock.h"
#include "sluice/forward.h"
#include "sluice/log.h"

static void timer_cb(evutil_socket_t fd, short what, void *arg);
static void forward(struct sl_exchange *x);
static void forward_body(struct sl_exchange *x, struct evbuffer *held);

static void stream_free(struct sl_h2u_stream *s)
{
    if (s->body)
        evbuffer_free(s->body);
    free(s->hbuf);
    free(s->fields);
    free(s);
}

void sl_h2u_stream_unlink_free(struct sl_h2u_stream *s)
{
    struct sl_h2u_conn *c = s->c;

    event_del(&s->timer);
    if (c) {
        if (s->prev)
            s->prev->next = s->next;
        else
            c->streams = s->next;
        if (s->next)
            s->next->prev = s->prev;
        c->nstreams--;
        if (s->id > 0 && !s->closed && !c->dying)
            nghttp2_session_set_stream_user_data(c->session, s->id, NULL);
        sl_h2u_conn_stream_gone(c);
    }
    stream_free(s);
}

/* Lets the stream go from its exchange. While nghttp2 still holds it (it may still read
 * its data source) it stays on the connection, reset with `code` unless the response
 * ended, until the stream closes; else it is freed now. */
static void let_go(struct sl_h2u_stream *s, uint32_t code, bool ended)
{
    struct sl_h2u_conn *c = s->c;

    event_del(&s->timer);
    if (s->x) {
        s->x->up = NULL;
        s->x = NULL;
    }
    if (!c || c->dying || s->closed || s->id <= 0) {
        sl_h2u_stream_unlink_free(s);
        return;
    }
    if (!ended || code != NGHTTP2_NO_ERROR)
        nghttp2_submit_rst_stream(c->session, NGHTTP2_FLAG_NONE, s->id, code);
    /* Bytes the client never took are given back to the connection's window. */
    if (s->unconsumed)
        nghttp2_session_consume_connection(c->session, s->unconsumed);
    s->unconsumed = 0;
}

/* ---- deadlines ---- */

/* The wait for the response runs once the request is sent, and again after each part of
 * it (upstream.timeout); a gRPC deadline bounds the whole call. */
static void arm(struct sl_h2u_stream *s)
{
    struct sl_exchange *x = s->x;
    uint64_t now = sl_clock_mono_us(), due = 0;

    if (x->req_done || s->got_response)
        due = now + x->cfg->upstream.timeout_ms * 1000;
    if (s->deadline_us && (!due || s->deadline_us < due))
        due = s->deadline_us;
    if (!due) {
        event_del(&s->timer);
        return;
    }
    uint64_t left = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(left / 1000000), (suseconds_t)(left % 1000000)};
    event_add(&s->timer, &tv);
}

/* ---- the request ---- */

ssize_t sl_h2u_body_read(nghttp2_session *ss, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    struct sl_h2u_stream *s = src->ptr;
    size_t avail = evbuffer_get_length(s->body);
    bool end = s->x && s->x->req_done;

    (void)ss, (void)id, (void)buf, (void)arg;
    if (!s->x)
        return NGHTTP2_ERR_DEFERRED; /* reset, and closed once that is sent */
    if (avail == 0 && !end) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (len > avail)
        len = avail;
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (end && len == avail)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)len;
}

int sl_h2u_send_data(nghttp2_session *ss, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t len, nghttp2_data_source *src, void *arg)
{
    struct sl_h2u_stream *s = src->ptr;
    struct sl_h2u_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    (void)ss, (void)frame;
    if (evbuffer_get_length(out) >= SL_HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(out, framehd, 9);
    evbuffer_remove_buffer(s->body, out, len);
    s->body_sent += len;
    if (s->x && s->x->req_blocked && evbuffer_get_length(s->body) < SL_LOW_WATER)
        s->wake = true; /* the client side is called once the session is done sending */
    return 0;
}

/* Starts the stream on a connection with room; false when none could be had. */
static bool start(struct sl_h2u_stream *s)
{
    struct sl_exchange *x = s->x;
    struct sl_h2u_conn *c = sl_h2u_conn_pick(x->w, &x->cfg->upstream);

    if (!c)
        return false;
    s->c = c;
    s->id = 0;
    s->next = c->streams;
    s->prev = NULL;
    if (c->streams)
        c->streams->prev = s;
    c->streams = s;
    c->nstreams++;
    sl_h2u_enter(c);
    bool ok = sl_h2u_head_submit(s) == 0;
    if (!ok) {
        s->x = NULL;
        sl_h2u_stream_unlink_free(s);
    }
    sl_h2u_leave(c);
    return ok;
}

/* ---- the response ---- */

static void fail(struct sl_h2u_stream *s, enum sl_upstream_error kind, int status)
{
    struct sl_exchange *x = s->x;

    sl_metrics_upstream_error(x->w->metrics, kind);
    if (s->head_sent) {
        let_go(s, NGHTTP2_CANCEL, false);
        x->client->kill(x);
    } else {
        x->client->fail(x, status); /* releases the stream first */
    }
}

/* Sends the exchange again on another connection, with the body bytes it still holds. */
static bool retry(struct sl_h2u_stream *s)
{
    struct sl_exchange *x = s->x;
    struct evbuffer *body = s->body;

    if (x->retried || s->got_response || s->body_sent)
        return false;
    x->retried = true;
    s->body = evbuffer_new();
    if (!s->body) {
        s->body = body;
        return false;
    }
    let_go(s, NGHTTP2_CANCEL, false);
    forward_body(x, body);
    if (x->up)
        x->upstream->body_sent(x);
    evbuffer_free(body);
    return true;
}

static void tap_body(struct sl_h2u_stream *s, const uint8_t *data, size_t len)
{
    sl_engine_charge_body(&s->x->verdict, (const char *)data, len);
}

/* The response is whole: its end and trailers go to the client, the stream is let go (a
 * request still being sent is stopped), and the exchange is done. */
static void complete(struct sl_h2u_stream *s, const struct sl_header *trailers, size_t n,
                     bool cancel)
{
    struct sl_exchange *x = s->x;

    x->resp_done = true;
    x->upstream_us = sl_clock_mono_us() - x->t_upstream;
    if (x->has_verdict)
        sl_engine_charge_body_end(x->w->engine, &x->verdict);
    x->client->response_flush(x);
    x->client->response_end(x, trailers, n);
    /* A request still being sent is stopped: RFC 9113 8.1 lets the server end it early. */
    let_go(s, cancel ? NGHTTP2_CANCEL : NGHTTP2_NO_ERROR, x->req_done && !cancel);
    x->client->done(x);
}

static void send_head(struct sl_h2u_stream *s, bool end)
{
    struct sl_exchange *x = s->x;
    bool no_content = sl_forward_status_bodiless(s->status);
    bool decode;
    struct sl_response_head r = {
        .status = s->status,
        .reason = sl_reason(s->status),
        .headers = s->fields,
        .nheaders = s->nfields,
        .no_content = no_content,
        .bodiless = no_content || x->is_head || end,
        .unframed = true,
        .content_length = s->content_length,
    };
    r.reason_len = strlen(r.reason);
    if (x->has_verdict) {
        sl_engine_charge_head(x->w->engine, &x->verdict, s->fields, s->nfields);
        s->tap = sl_engine_charge_pending(&x->verdict);
    }
    s->head_sent = true;
    s->out = x->client->response_head(x, &r, &decode);
    s->nfields = s->hlen = 0; /* the client codec copied what it keeps */
}

int sl_h2u_on_frame(struct sl_h2u_stream *s, const nghttp2_frame *f)
{
    struct sl_exchange *x = s->x;
    bool end = (f->hd.flags & NGHTTP2_FLAG_END_STREAM) != 0;

    if (!x)
        return 0;
    x->client->enter(x);
    if (f->hd.type == NGHTTP2_HEADERS && !s->head_sent) {
        if (s->status >= 100 && s->status < 200 && !end) {
            s->nfields = s->hlen = 0; /* an interim response: the final one follows */
        } else if (s->status < 200 || s->status > 599) {
            sl_log_warn("http2 upstream %s sent status %d", s->c->target, s->status);
            fail(s, SL_UPSTREAM_ERR_RESET, 502);
        } else {
            s->got_response = true;
            send_head(s, end);
            if (x->up == s && end)
                complete(s, NULL, 0, false);
            else if (x->up == s)
                arm(s);
        }
    } else if (f->hd.type == NGHTTP2_HEADERS && end) {
        complete(s, s->fields, s->nfields, false); /* trailers */
    } else if (f->hd.type == NGHTTP2_DATA && s->head_sent) {
        x->client->response_flush(x);
        if (x->up == s) {
            if (evbuffer_get_length(s->out) >= SL_HIGH_WATER)
                x->resp_blocked = true;
            if (!x->resp_blocked && s->unconsumed) {
                nghttp2_session_consume(s->c->session, s->id, s->unconsumed);
                s->unconsumed = 0;
            }
            if (end)
                complete(s, NULL, 0, false);
            else
                arm(s);
        }
    }
    x->client->leave(x);
    return 0;
}

void sl_h2u_on_data(struct sl_h2u_stream *s, const uint8_t *data, size_t len)
{
    struct sl_exchange *x = s->x;

    if (!x || !s->head_sent) {
        nghttp2_session_consume(s->c->session, s->id, len);
        return;
    }
    if (s->tap)
        tap_body(s, data, len);
    evbuffer_add(s->out, data, len);
    x->bytes_out += len;
    s->unconsumed += len;
}

void sl_h2u_on_close(struct sl_h2u_stream *s, uint32_t error, bool refused)
{
    struct sl_exchange *x = s->x;

    s->closed = true;
    if (s->unconsumed)
        nghttp2_session_consume_connection(s->c->session, s->unconsumed);
    s->unconsumed = 0;
    if (!x) {
        sl_h2u_stream_unlink_free(s);
        return;
    }
    x->client->enter(x);
    if (refused && retry(s)) {
        x->client->leave(x);
        return;
    }
    if (x->up == s) {
        sl_log_debug("http2 upstream %s: stream closed: %s", s->c->target,
                     nghttp2_http2_strerror(error));
        fail(s, SL_UPSTREAM_ERR_RESET, 502);
    }
    x->client->leave(x);
}

void sl_h2u_on_conn_failed(struct sl_h2u_stream *s, enum sl_upstream_error kind)
{
    struct sl_exchange *x = s->x;
    bool was_connected = s->c->connected;

    x->client->enter(x);
    /* A request a connection that had been up may have processed goes again only when
     * it can do no harm twice, as on HTTP/1.1. */
    if (was_connected && kind == SL_UPSTREAM_ERR_RESET && x->idempotent && retry(s)) {
        x->client->leave(x);
        return;
    }
    fail(s, kind, kind == SL_UPSTREAM_ERR_TIMEOUT ? 504 : 502);
    x->client->leave(x);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_h2u_stream *s = arg;
    struct sl_exchange *x = s->x;
    struct sl_h2u_conn *c = s->c;

    (void)fd, (void)what;
    sl_h2u_enter(c);
    x->client->enter(x);
    if (s->head_sent && s->grpc && s->deadline_us && sl_clock_mono_us() >= s->deadline_us) {
        /* The gRPC client learns why its call ended. */
        static const struct sl_header t[] = {
            {"grpc-status", 11, "4", 1},
            {"grpc-message", 12, "Deadline Exceeded", 17},
        };
        sl_metrics_upstream_error(x->w->metrics, SL_UPSTREAM_ERR_TIMEOUT);
        x->req_done = true; /* whatever the client still sends goes nowhere */
        complete(s, t, 2, true);
    } else {
        fail(s, SL_UPSTREAM_ERR_TIMEOUT, 504);
    }
    x->client->leave(x);
    sl_h2u_leave(c);
}

void sl_h2u_wake(struct sl_h2u_conn *c)
{
    /* A client callback may end any stream of the list: start over after each. */
    for (struct sl_h2u_stream *s = c->streams; s;) {
        struct sl_exchange *x = s->x;
        if (!s->wake || !x) {
            s = s->next;
            continue;
        }
        s->wake = false;
        x->client->enter(x);
        if (x->req_blocked) {
            x->req_blocked = false;
            x->client->request_body(x);
        }
        x->client->leave(x);
        s = c->streams;
    }
}

/* ---- what the client side asks ---- */

/* Starts x on a new stream whose body begins with the bytes of `held` (moved out; NULL:
 * none). They are in place before the request is submitted: a body already whole and not
 * there then would make the request go with END_STREAM, and its bytes never. */
static void forward_body(struct sl_exchange *x, struct evbuffer *held)
{
    struct sl_h2u_stream *s = calloc(1, sizeof *s);
    uint64_t grpc_us = sl_grpc_timeout_us(&x->req);

    if (s)
        s->body = evbuffer_new();
    if (s && s->body && held)
        evbuffer_add_buffer(s->body, held);
    if (!s || !s->body) {
        if (s)
            stream_free(s);
        x->client->fail(x, 502);
        return;
    }
    s->x = x;
    s->content_length = -1;
    if (grpc_us)
        s->deadline_us = x->t_upstream + grpc_us;
    evtimer_assign(&s->timer, x->w->base, timer_cb, s);
    x->up = s;
    if (!start(s)) {
        sl_log_warn("http2 upstream %s: cannot connect", x->cfg->upstream.addr.text);
        x->up = NULL;
        s->x = NULL;
        stream_free(s);
        sl_metrics_upstream_error(x->w->metrics, SL_UPSTREAM_ERR_CONNECT);
        x->client->fail(x, 502);
        return;
    }
    arm(s);
}

static void forward(struct sl_exchange *x)
{
    forward_body(x, NULL);
}

static struct evbuffer *body(struct sl_exchange *x, size_t *room)
{
    struct sl_h2u_stream *s = x->up;
    size_t n = evbuffer_get_length(s->body);

    *room = n < SL_HIGH_WATER ? SL_HIGH_WATER - n : 0;
    return s->body;
}

static void body_sent(struct sl_exchange *x)
{
    struct sl_h2u_stream *s = x->up;
    struct sl_h2u_conn *c = s->c;

    if (!c)
        return;
    sl_h2u_enter(c);
    if (s->deferred && (evbuffer_get_length(s->body) || x->req_done)) {
        s->deferred = false;
        nghttp2_session_resume_data(c->session, s->id);
    }
    if (x->req_done)
        arm(s);
    sl_h2u_leave(c);
}

static void resume(struct sl_exchange *x)
{
    struct sl_h2u_stream *s = x->up;
    struct sl_h2u_conn *c = s->c;

    if (!s->unconsumed || !c)
        return;
    sl_h2u_enter(c);
    nghttp2_session_consume(c->session, s->id, s->unconsumed); /* WINDOW_UPDATE at leave */
    s->unconsumed = 0;
    sl_h2u_leave(c);
}

static void sync_read(struct sl_exchange *x)
{
    (void)x; /* the connection reads for all its streams; windows hold each back */
}

static void release(struct sl_exchange *x)
{
    struct sl_h2u_stream *s = x->up;
    struct sl_h2u_conn *c = s->c;

    if (c)
        sl_h2u_enter(c);
    let_go(s, NGHTTP2_CANCEL, false);
    if (c)
        sl_h2u_leave(c);
}

const struct sl_upstream_ops sl_h2_upstream_ops = {
    .forward = forward,
    .body = body,
    .body_sent = body_sent,
    .resume = resume,
    .sync = sync_read,
    .release = release,
    .unframed = true,
};
