/* What an exchange asks of an HTTP/1 client connection (sl_h1_client_ops): sluice's own
 * answers, holds and hand-overs, the response head written for this client's version, the
 * request body pumped up as the upstream takes it, and the tunnel after 101. The exchange
 * is embedded in the connection, which is found from it. */
#include <stddef.h>
#include <time.h>

#include "http.h"
#include "sluice/clock.h"
#include "sluice/forward.h"

static struct sl_conn *conn_of(struct sl_exchange *x)
{
    return (struct sl_conn *)((char *)x - offsetof(struct sl_conn, x));
}

static void h1_forward(struct sl_exchange *x)
{
    struct sl_conn *c = conn_of(x);

    if (x->expect_continue) {
        /* RFC 9110 10.1.1: the client waits for this before sending the body; it is sent
         * only once the request is admitted, so a refused body is never transmitted. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        evbuffer_add(bufferevent_get_output(c->bev), cont, sizeof cont - 1);
        x->bytes_out += sizeof cont - 1;
        sl_conn_flush(c);
    }
    c->state = SL_C_PROXY;
    x->t_upstream = sl_clock_mono_us();
    if (x->has_body && !x->req_done)
        sl_conn_set_read_timeout(c, true);
    sl_exchange_upstream(x);
}

static void h1_reply(struct sl_exchange *x, int status, const struct sl_textbuf *headers,
                     const struct sl_textbuf *body)
{
    struct sl_conn *c = conn_of(x);
    /* With Expect the body was never sent, and without it the body may be large: both
     * are better ended by closing than by reading and discarding. */
    bool close = c->close_after || (x->has_body && !x->req_done && x->expect_continue);

    sl_reply(c, status, headers, body, close);
    if (x->has_body && !x->req_done && !close) {
        c->state = SL_C_DISCARD;
        sl_conn_set_read_timeout(c, true);
    } else {
        sl_conn_request_done(c);
    }
}

static void h1_hold(struct sl_exchange *x, uint64_t left_us)
{
    struct sl_conn *c = conn_of(x);
    struct timeval tv = {(time_t)(left_us / 1000000), (suseconds_t)(left_us % 1000000)};

    c->state = SL_C_DELAY;
    /* libevent counts a timeout from the time it cached at the start of this loop turn;
     * the delay counts from now, later by whatever this turn did before it, and a request
     * released early by that much would overrun the rate. */
    event_base_update_cache_time(c->w->base);
    event_add(&c->timer, &tv);
    c->timer_due_us = 0; /* not a deadline sl_conn_arm_idle may extend */
}

static void h1_verdict(struct sl_exchange *x)
{
    struct sl_conn *c = conn_of(x);

    sl_conn_enter(c);
    if (!c->dying) {
        sl_exchange_act(x);
        if (!c->in_process && !c->dying)
            sl_conn_process(c);
    }
    sl_conn_leave(c);
}


static void h1_enter(struct sl_exchange *x)
{
    sl_conn_enter(conn_of(x));
}

static void h1_leave(struct sl_exchange *x)
{
    sl_conn_leave(conn_of(x));
}

static void h1_fail(struct sl_exchange *x, int status)
{
    sl_conn_fail(conn_of(x), status);
}

static void h1_kill(struct sl_exchange *x)
{
    sl_conn_kill(conn_of(x));
}

static struct evbuffer *h1_response_head(struct sl_exchange *x, const struct sl_response_head *r,
                                         bool *decode)
{
    struct sl_conn *c = conn_of(x);
    struct evbuffer *out = bufferevent_get_output(c->bev);
    /* HTTP/1.0 has no chunked framing: such a client gets the body decoded, delimited by
     * the close. */
    bool dechunk = r->chunked && c->http_minor == 0 && !r->bodiless;
    /* A body with no length of its own (from an HTTP/2 upstream) is framed here: in
     * chunks for HTTP/1.1, by the close for HTTP/1.0. */
    bool unsized = r->unframed && r->content_length < 0 && !r->bodiless;
    enum sl_conn_header conn = SL_CONN_NONE;

    c->chunk_out = unsized && c->http_minor == 1;
    if (r->upgrade) {
        conn = SL_CONN_UPGRADE;
    } else {
        /* A response that ends by closing, or that comes before the request body is
         * all sent (whose rest would be read as the next request), ends the
         * connection: the client is told so in the head. */
        if (r->ends_by_close || dechunk || (unsized && !c->chunk_out) || !x->req_done)
            c->close_after = true;
        if (c->close_after)
            conn = SL_CONN_CLOSE;
        else if (c->http_minor == 0)
            conn = SL_CONN_KEEP_ALIVE;
    }
    /* Transfer-Encoding goes only to HTTP/1.1 clients (RFC 9112 6.1), and never with a
     * status that has no content; on a response to HEAD it tells what GET would use. */
    struct sl_forward_response f = {
        .status = r->status,
        .reason = r->reason,
        .reason_len = r->reason_len,
        .headers = r->headers,
        .nheaders = r->nheaders,
        .keep_transfer_encoding = c->http_minor == 1 && !r->no_content,
        .drop_content_length = r->no_content && r->status != 304,
        .add_chunked = c->chunk_out,
        .connection = conn,
        .extra = x->has_verdict ? &x->vheaders : NULL,
    };
    size_t before = evbuffer_get_length(out);
    sl_forward_response_head(&f, out);
    x->bytes_out += evbuffer_get_length(out) - before;
    x->status = r->status;
    x->resp_head_sent = true;
    *decode = dechunk;
    if (r->upgrade) {
        c->state = SL_C_TUNNEL;
        sl_write_timeout_set(c->bev, &c->write_timeout_ms, 0);
    }
    if (c->chunk_out) {
        if (!c->chunk_stage && !(c->chunk_stage = evbuffer_new())) {
            c->chunk_out = false;
            c->close_after = true; /* cut short; the client sees a broken chunked body */
        }
        return c->chunk_out ? c->chunk_stage : out;
    }
    return out;
}

static void h1_response_flush(struct sl_exchange *x)
{
    struct sl_conn *c = conn_of(x);

    if (c->chunk_out && !c->dying) {
        struct evbuffer *out = bufferevent_get_output(c->bev);
        size_t n = evbuffer_get_length(c->chunk_stage);
        if (n) {
            /* The data's chains move behind the chunk's size line, uncopied. */
            evbuffer_add_printf(out, "%zx\r\n", n);
            evbuffer_remove_buffer(c->chunk_stage, out, n);
            evbuffer_add(out, "\r\n", 2);
        }
        if (evbuffer_get_length(out) >= SL_HIGH_WATER)
            x->resp_blocked = true;
    }
    sl_conn_flush(c);
}

static void h1_response_end(struct sl_exchange *x, const struct sl_header *trailers, size_t n)
{
    struct sl_conn *c = conn_of(x);

    if (!c->chunk_out || c->dying)
        return; /* framed by its length or the close: trailers have nowhere to go */
    struct evbuffer *out = bufferevent_get_output(c->bev);
    evbuffer_add(out, "0\r\n", 3);
    for (size_t i = 0; i < n; i++) {
        evbuffer_add(out, trailers[i].name, trailers[i].name_len);
        evbuffer_add(out, ": ", 2);
        evbuffer_add(out, trailers[i].value, trailers[i].value_len);
        evbuffer_add(out, "\r\n", 2);
    }
    evbuffer_add(out, "\r\n", 2);
    c->chunk_out = false;
    sl_conn_flush(c);
}

static void h1_done(struct sl_exchange *x)
{
    sl_conn_request_done(conn_of(x));
}

static void h1_request_body(struct sl_exchange *x)
{
    sl_conn_process(conn_of(x));
}

static void h1_tunnel(struct sl_exchange *x)
{
    sl_tunnel_pump(conn_of(x));
}

const struct sl_client_ops sl_h1_client_ops = {
    .verdict = h1_verdict,
    .reply = h1_reply,
    .forward = h1_forward,
    .hold = h1_hold,
    .enter = h1_enter,
    .leave = h1_leave,
    .fail = h1_fail,
    .kill = h1_kill,
    .response_head = h1_response_head,
    .response_flush = h1_response_flush,
    .done = h1_done,
    .request_body = h1_request_body,
    .tunnel = h1_tunnel,
    .response_end = h1_response_end,
};

void sl_conn_pump_body(struct sl_conn *c)
{
    struct sl_exchange *x = &c->x;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    uint64_t max = c->cfg->client.max_body_bytes;
    /* Both heads say chunked for an HTTP/1.1 upstream: the body moves as it came, chunks
     * and all. An HTTP/2 upstream takes bare data. */
    bool decode = x->chunked && x->upstream->unframed;

    while (!x->req_done) {
        size_t room;
        struct evbuffer *out = x->upstream->body(x, &room);
        if (room == 0) {
            x->req_blocked = true;
            break;
        }
        if (evbuffer_get_length(in) == 0)
            break;
        llhttp_errno_t err;
        c->head.body_sink = decode ? out : NULL;
        long n = sl_parse_run(&c->parser, in, room, false, &err);
        c->head.body_sink = NULL;
        if (n < 0) {
            /* Bad chunk framing: the upstream has a partial body; the connection to it
             * goes, and the client is told when the response has not started. */
            sl_conn_fail(c, 400);
            return;
        }
        if (decode)
            evbuffer_drain(in, (size_t)n);
        else
            evbuffer_remove_buffer(in, out, (size_t)n);
        x->bytes_in += (uint64_t)n;
        if (max && c->head.body_bytes > max) {
            sl_conn_fail(c, 413);
            return;
        }
        if (c->head.msg_done) {
            x->req_done = true;
            sl_conn_set_read_timeout(c, false);
        }
        if (n == 0)
            break;
    }
    x->upstream->body_sent(x);
    if (!x->req_done && c->client_eof && evbuffer_get_length(in) == 0)
        sl_conn_kill(c);
}

void sl_tunnel_pump(struct sl_conn *c)
{
    struct sl_upstream *up = c->x.up;
    if (!up) {
        sl_conn_kill(c);
        return;
    }
    struct evbuffer *cin = bufferevent_get_input(c->bev), *cout = bufferevent_get_output(c->bev);
    struct evbuffer *uin = bufferevent_get_input(up->bev), *uout = bufferevent_get_output(up->bev);

    if (evbuffer_get_length(uout) < SL_HIGH_WATER)
        evbuffer_add_buffer(uout, cin);
    if (evbuffer_get_length(cout) < SL_HIGH_WATER) {
        c->x.bytes_out += evbuffer_get_length(uin);
        evbuffer_add_buffer(cout, uin);
    }
    sl_upstream_flush(up);
    sl_conn_flush(c);
    bool client_gone = c->client_eof && !evbuffer_get_length(cin) && !evbuffer_get_length(uout);
    bool upstream_gone = up->eof && !evbuffer_get_length(uin) && !evbuffer_get_length(cout);
    if (client_gone || upstream_gone) {
        c->x.resp_done = true;
        c->close_after = true;
        sl_conn_request_done(c); /* logs the exchange */
        if (!c->dying)
            sl_conn_kill(c);
    }
}
