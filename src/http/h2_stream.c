/* An HTTP/2 stream as an exchange: its request handed to the engine, what the exchange
 * asks of it (sl_h2_client_ops: sluice's own answers, holds, the hand-over to the
 * upstream, the response head and body), and the bodies both ways under flow control.
 * The request body is consumed (its window opened again) only as it moves upstream; the
 * response body is framed from body_out, whose chains move to the socket uncopied. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "h2.h"
#include "sluice/clock.h"
#include "sluice/log.h"

static struct sl_h2_stream *stream_of(struct sl_exchange *x)
{
    return (struct sl_h2_stream *)x; /* the exchange is the stream's first member */
}

static void timer_cb(evutil_socket_t fd, short what, void *arg);

/* Streams a worker keeps for its next ones, with their buffers: a stream is a few KiB
 * (the exchange, its verdict), too large for malloc's per-thread cache, and its buffers
 * are a dozen allocations more. Enough for two connections' worth of streams in flight. */
#define SPARE_MAX 256

static void destroy(struct sl_h2_stream *st)
{
    free(st->trailers);
    if (st->body_in)
        evbuffer_free(st->body_in);
    if (st->body_out)
        evbuffer_free(st->body_out);
    sl_textbuf_free(&st->x.vheaders);
    sl_textbuf_free(&st->x.vbody);
    sl_h2_head_free(st);
    free(st);
}

/* Zeroes a spare stream but for its allocations and the engine's per-limit checks, which
 * the engine sets for each decision (as it does for a reused HTTP/1 exchange): those are
 * most of the stream's bytes. */
static void reset(struct sl_h2_stream *st)
{
    size_t a = offsetof(struct sl_h2_stream, x.verdict.priv.checks);
    size_t b = a + sizeof st->x.verdict.priv.checks;
    struct evbuffer *body_in = st->body_in, *body_out = st->body_out;
    struct sl_textbuf vheaders = st->x.vheaders, vbody = st->x.vbody;
    char *hbuf = st->hbuf;
    size_t hcap = st->hcap, fields_cap = st->fields_cap, headers_cap = st->headers_cap;
    struct sl_h2_field *fields = st->fields;
    struct sl_header *headers = st->headers;

    memset(st, 0, a);
    memset((char *)st + b, 0, sizeof *st - b);
    st->body_in = body_in;
    st->body_out = body_out;
    st->x.vheaders = vheaders;
    st->x.vbody = vbody;
    st->hbuf = hbuf;
    st->hcap = hcap;
    st->fields = fields;
    st->fields_cap = fields_cap;
    st->headers = headers;
    st->headers_cap = headers_cap;
}

/* A spare stream, every field zero but its allocations, or a new one. */
static struct sl_h2_stream *take(struct sl_worker *w)
{
    struct sl_h2_stream *st = w->h2_spares;

    if (st) {
        w->h2_spares = st->next;
        w->h2_nspares--;
        reset(st);
        return st;
    }
    st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->body_in = evbuffer_new();
    st->body_out = evbuffer_new();
    if (!st->body_in || !st->body_out) {
        destroy(st);
        return NULL;
    }
    return st;
}

void sl_h2_spares_free(struct sl_worker *w)
{
    while (w->h2_spares) {
        struct sl_h2_stream *st = w->h2_spares;
        w->h2_spares = st->next;
        destroy(st);
    }
    w->h2_nspares = 0;
    free(w->h2_scratch);
    w->h2_scratch = NULL;
    w->h2_scratch_cap = 0;
}

struct sl_h2_stream *sl_h2_stream_new(struct sl_h2_conn *c, int32_t id)
{
    struct sl_h2_stream *st = take(c->w);
    if (!st)
        return NULL;
    st->c = c;
    st->id = id;
    st->content_length = -1;
    st->x.client = &sl_h2_client_ops;
    st->x.w = c->w;
    sl_worker_adopt_config(c->w);
    st->x.cfg = sl_cfg_ref(c->w->cfg);
    st->x.peer_text = c->peer_text;
    st->x.peer_text_len = c->peer_text_len;
    st->x.proto = SL_PROTO_2;
    st->x.tls = c->tls;
    st->x.t_start = sl_clock_mono_us();
    evtimer_assign(&st->timer, c->w->base, timer_cb, st);
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    c->nstreams++;
    st->opened = true;
    sl_metrics_http2_stream(c->w->metrics);
    return st;
}

void sl_h2_stream_touch(struct sl_h2_stream *st)
{
    if (st->dirty || !st->opened)
        return;
    st->dirty = true;
    st->dirty_next = st->c->dirty;
    st->c->dirty = st;
}

static void untouch(struct sl_h2_stream *st)
{
    if (!st->dirty)
        return;
    for (struct sl_h2_stream **p = &st->c->dirty; *p; p = &(*p)->dirty_next) {
        if (*p == st) {
            *p = st->dirty_next;
            break;
        }
    }
    st->dirty = false;
}

static void unlink_stream(struct sl_h2_stream *st)
{
    struct sl_h2_conn *c = st->c;

    if (!st->opened)
        return;
    st->opened = false;
    if (st->prev)
        st->prev->next = st->next;
    else
        c->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    c->nstreams--;
    if (c->nstreams == 0)
        c->active_us = sl_clock_mono_us();
}

static void stream_free(struct sl_h2_stream *st)
{
    struct sl_worker *w = st->x.w;

    sl_engine_verdict_done(w->engine, &st->x.verdict);
    sl_exchange_release_upstream(&st->x);
    if (st->timer_set)
        event_del(&st->timer);
    sl_cfg_unref(st->x.cfg);
    if (w->draining || w->h2_nspares >= SPARE_MAX) {
        destroy(st);
        return;
    }
    evbuffer_drain(st->body_in, evbuffer_get_length(st->body_in));
    evbuffer_drain(st->body_out, evbuffer_get_length(st->body_out));
    free(st->trailers);
    st->trailers = NULL;
    st->next = w->h2_spares;
    w->h2_spares = st;
    w->h2_nspares++;
}

void sl_h2_stream_release(struct sl_h2_stream *st)
{
    struct sl_h2_conn *c = st->c;

    st->x.gone = true;
    untouch(st);
    sl_exchange_release_upstream(&st->x);
    if (st->timer_set) {
        event_del(&st->timer);
        st->timer_set = false;
    }
    if (!c->dying && st->id && !st->closed)
        nghttp2_session_set_stream_user_data(c->session, st->id, NULL);
    unlink_stream(st);
    if (st->x.decision_pending) {
        /* The engine's callback frees it. */
        st->prev = NULL;
        st->next = c->pending;
        if (c->pending)
            c->pending->prev = st;
        c->pending = st;
        c->npending++;
        return;
    }
    stream_free(st);
}

static void unlink_pending(struct sl_h2_stream *st)
{
    struct sl_h2_conn *c = st->c;

    if (st->prev)
        st->prev->next = st->next;
    else
        c->pending = st->next;
    if (st->next)
        st->next->prev = st->prev;
    c->npending--;
}

bool sl_h2_stream_settle(struct sl_h2_stream *st)
{
    st->x.decision_pending = false;
    if (st->opened)
        return true;
    unlink_pending(st);
    stream_free(st); /* the stream ended while the call was decided */
    return false;
}

void sl_h2_stream_abandon(struct sl_h2_stream *st)
{
    unlink_pending(st);
    st->x.decision_pending = false;
    stream_free(st);
}

/* Moves request body bytes upstream while it has room, opening the client's window by as
 * much; ends the body once END_STREAM has come and all went up. */
static void pump_body(struct sl_h2_stream *st)
{
    struct sl_exchange *x = &st->x;
    /* An HTTP/1.1 upstream gets chunks when the client gave no length. */
    bool chunk = x->chunked && !x->upstream->unframed;

    while (evbuffer_get_length(st->body_in)) {
        size_t room, n = evbuffer_get_length(st->body_in);
        struct evbuffer *out = x->upstream->body(x, &room);
        if (room == 0) {
            x->req_blocked = true;
            break;
        }
        if (n > room)
            n = room;
        if (chunk)
            evbuffer_add_printf(out, "%zx\r\n", n);
        evbuffer_remove_buffer(st->body_in, out, n);
        if (chunk)
            evbuffer_add(out, "\r\n", 2);
        nghttp2_session_consume(st->c->session, st->id, n);
    }
    if (st->req_end && !x->req_done && evbuffer_get_length(st->body_in) == 0) {
        size_t room;
        if (chunk)
            evbuffer_add(x->upstream->body(x, &room), "0\r\n\r\n", 5);
        x->req_done = true;
    }
    x->upstream->body_sent(x);
}

/* Gives back the window of bytes sluice will never send anywhere. */
static void drop_body(struct sl_h2_stream *st)
{
    size_t n = evbuffer_get_length(st->body_in);
    if (n) {
        evbuffer_drain(st->body_in, n);
        nghttp2_session_consume(st->c->session, st->id, n);
    }
}

void sl_h2_stream_data(struct sl_h2_stream *st, const uint8_t *data, size_t n)
{
    struct sl_exchange *x = &st->x;
    uint64_t max = x->cfg->client.max_body_bytes;

    x->bytes_in += n;
    if (st->rls_call) {
        sl_h2_rls_data(st, data, n);
        return;
    }
    if (st->local || x->gone) {
        nghttp2_session_consume(st->c->session, st->id, n);
        return;
    }
    evbuffer_add(st->body_in, data, n);
    if (max && x->bytes_in > max) {
        drop_body(st);
        x->client->fail(x, 413);
        return;
    }
    if (x->up && x->t_upstream)
        pump_body(st);
}

void sl_h2_stream_end(struct sl_h2_stream *st)
{
    st->req_end = true;
    if (st->rls_call) {
        sl_h2_rls_end(st);
        return;
    }
    if (st->local) {
        st->x.req_done = true;
        return;
    }
    if (st->x.up && st->x.t_upstream)
        pump_body(st);
}

static void finish(struct sl_h2_stream *st)
{
    if (st->finished)
        return;
    st->finished = true;
    sl_exchange_finish(&st->x, sl_clock_mono_us());
}

void sl_h2_stream_sent(struct sl_h2_stream *st)
{
    /* RFC 9113 8.1: a response complete before its request may stop the request with
     * RST_STREAM NO_ERROR; the body would go nowhere. */
    if (!st->req_end)
        nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_NO_ERROR);
    finish(st);
    /* Under shutdown.drain_delay a response is followed by GOAWAY, as an HTTP/1.1 one
     * carries "Connection: close": the streams received so far are still answered. */
    if (atomic_load_explicit(&st->c->w->server->closing, memory_order_relaxed))
        sl_h2_goaway(st->c, NGHTTP2_NO_ERROR, SL_H2_GOAWAY_SHUTDOWN);
}

void sl_h2_stream_closed(struct sl_h2_stream *st, uint32_t error)
{
    (void)error;
    st->closed = true;
    sl_h2_rls_closed(st);
    drop_body(st);
    sl_h2_stream_release(st);
}

bool sl_h2_stream_owes(const struct sl_h2_stream *st)
{
    /* A response waiting for the client's window, or a request body still to come. */
    return evbuffer_get_length(st->body_out) > 0 || (!st->req_end && !st->local);
}

void sl_h2_stream_sync(struct sl_h2_stream *st)
{
    struct sl_exchange *x = &st->x;

    if (x->resp_blocked && x->up && evbuffer_get_length(st->body_out) < SL_LOW_WATER) {
        x->resp_blocked = false;
        x->upstream->resume(x);
    }
    if (x->up)
        x->upstream->sync(x);
}

/* ---- what the exchange asks ---- */

static void h2_verdict(struct sl_exchange *x)
{
    struct sl_h2_stream *st = stream_of(x);
    struct sl_h2_conn *c = st->c;

    sl_h2_enter(c);
    if (!st->opened) {
        unlink_pending(st);
        stream_free(st); /* the stream ended while the engine decided */
    } else {
        sl_exchange_act(x);
    }
    sl_h2_leave(c);
}

static void h2_reply(struct sl_exchange *x, int status, const struct sl_textbuf *headers,
                     const struct sl_textbuf *body)
{
    struct sl_h2_stream *st = stream_of(x);
    char ctype[] = "content-type: application/json\r\ncontent-length: ";
    struct sl_textbuf head = {0};
    size_t body_len = 0;
    bool bodiless = true;

    if (st->submitted) {
        x->client->kill(x);
        return;
    }
    evbuffer_drain(st->body_out, evbuffer_get_length(st->body_out));
    if (x->grpc) {
        /* Trailers-only (grpc.h): one HEADERS frame with END_STREAM. */
        struct sl_text t;
        sl_text_init_textbuf(&t, &head);
        sl_grpc_answer(&t, x, status, headers, body);
        sl_text_flush(&t);
        status = 200;
    } else {
        if (body && body->len)
            evbuffer_add(st->body_out, body->data, body->len);
        else
            evbuffer_add_printf(st->body_out, "{\"error\":\"%s\"}\n", sl_error_name(status));
        body_len = evbuffer_get_length(st->body_out);
        sl_textbuf_add(&head, ctype, sizeof ctype - 1);
        char num[24];
        sl_textbuf_add(&head, num, sl_u64_format(num, body_len));
        sl_textbuf_add(&head, "\r\n", 2);
        if (headers && headers->len)
            sl_textbuf_add(&head, headers->data, headers->len);
        bodiless = x->is_head;
        if (x->is_head)
            evbuffer_drain(st->body_out, body_len);
    }
    st->local = true;
    st->resp_eof = true;
    drop_body(st);
    if (sl_h2_head_submit(st, status, NULL, 0, &head, bodiless) < 0) {
        sl_textbuf_free(&head);
        x->client->kill(x);
        return;
    }
    sl_textbuf_free(&head);
    x->status = status;
    x->resp_head_sent = x->resp_done = true;
    x->bytes_out += body_len;
}

static void h2_forward(struct sl_exchange *x)
{
    struct sl_h2_stream *st = stream_of(x);

    x->t_upstream = sl_clock_mono_us();
    sl_exchange_upstream(x);
    sl_h2_stream_touch(st); /* the upstream is to be read */
    if (x->up && x->has_body)
        pump_body(st);
}

static void timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_h2_stream *st = arg;
    struct sl_h2_conn *c = st->c;

    (void)fd, (void)what;
    st->timer_set = false;
    sl_h2_enter(c);
    sl_exchange_hold(&st->x);
    sl_h2_leave(c);
}

static void h2_hold(struct sl_exchange *x, uint64_t left_us)
{
    struct sl_h2_stream *st = stream_of(x);
    struct timeval tv = {(time_t)(left_us / 1000000), (suseconds_t)(left_us % 1000000)};

    /* As on HTTP/1 (client_exchange.c): the delay counts from now, not the loop's cache. */
    event_base_update_cache_time(x->w->base);
    event_add(&st->timer, &tv);
    st->timer_set = true;
}

static void h2_enter(struct sl_exchange *x)
{
    struct sl_h2_stream *st = stream_of(x);

    sl_h2_enter(st->c);
    sl_h2_stream_touch(st); /* an upstream callback: its reading is decided at the end */
}

static void h2_leave(struct sl_exchange *x)
{
    sl_h2_leave(stream_of(x)->c);
}

/* Ends the stream alone: the connection and its other streams go on. */
static void h2_kill(struct sl_exchange *x)
{
    struct sl_h2_stream *st = stream_of(x);

    sl_exchange_release_upstream(x);
    x->gone = true;
    if (!st->closed)
        nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id,
                                  NGHTTP2_INTERNAL_ERROR);
}

static void h2_fail(struct sl_exchange *x, int status)
{
    sl_exchange_release_upstream(x);
    if (x->resp_head_sent)
        h2_kill(x);
    else
        h2_reply(x, status, NULL, NULL);
}

static struct evbuffer *h2_response_head(struct sl_exchange *x, const struct sl_response_head *r,
                                         bool *decode)
{
    struct sl_h2_stream *st = stream_of(x);

    *decode = true; /* HTTP/2 frames the body itself */
    x->status = r->status;
    x->resp_head_sent = true;
    if (sl_h2_head_submit(st, r->status, r->headers, r->nheaders,
                          x->has_verdict ? &x->vheaders : NULL, r->bodiless) < 0)
        h2_kill(x);
    return st->body_out;
}

static void resume(struct sl_h2_stream *st)
{
    if (st->deferred && !st->closed) {
        st->deferred = false;
        nghttp2_session_resume_data(st->c->session, st->id);
    }
}

static void h2_response_flush(struct sl_exchange *x)
{
    struct sl_h2_stream *st = stream_of(x);
    if (evbuffer_get_length(st->body_out))
        resume(st);
}

static void h2_done(struct sl_exchange *x)
{
    struct sl_h2_stream *st = stream_of(x);
    st->resp_eof = true;
    resume(st);
}

static void h2_request_body(struct sl_exchange *x)
{
    if (x->up)
        pump_body(stream_of(x));
}

static void h2_tunnel(struct sl_exchange *x)
{
    h2_kill(x); /* never upgraded: HTTP/2 has no 101 */
}

const struct sl_client_ops sl_h2_client_ops = {
    .verdict = h2_verdict,
    .reply = h2_reply,
    .forward = h2_forward,
    .hold = h2_hold,
    .enter = h2_enter,
    .leave = h2_leave,
    .fail = h2_fail,
    .kill = h2_kill,
    .response_head = h2_response_head,
    .response_flush = h2_response_flush,
    .done = h2_done,
    .request_body = h2_request_body,
    .tunnel = h2_tunnel,
    .response_end = sl_h2_stream_trailers,
};

void sl_h2_stream_start(struct sl_h2_stream *st, bool end_stream)
{
    struct sl_exchange *x = &st->x;

    st->req_end = end_stream;
    x->has_body = !end_stream;
    x->req_done = end_stream;
    x->chunked = x->has_body && st->content_length < 0;
    if (sl_h2_head_finish(st) < 0) {
        h2_kill(x);
        return;
    }
    if (st->c->rls) {
        sl_h2_rls_start(st);
        return;
    }
    int status = sl_h2_head_check(st);
    if (status) {
        h2_reply(x, status, NULL, NULL);
        return;
    }
    sl_exchange_decide(x);
}
