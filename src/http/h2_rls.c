/* The rate limit service's side of the HTTP/2 codec: on a connection its listener accepted,
 * every stream is a gRPC call, answered here and never handed to the exchange (no route, no
 * limit of a route, no upstream, no access log line).
 *
 * A POST of SL_RLS_PATH with a gRPC content-type collects its request body in body_in, at
 * most one message of SL_RLS_MAX_MESSAGE bytes and its prefix: the bytes are consumed (the
 * window opened again) as they come, so that a whole message arrives whatever the stream's
 * window; CONN_HELD_MAX, not the windows, then bounds what a connection's calls hold. At
 * END_STREAM src/rls/ decides it, possibly later (Redis), while the stream waits as one
 * waits for the engine (decision_pending). The answer is a 200 with content-type
 * application/grpc, the response message and the trailer grpc-status: 0; any error is
 * trailers-only, as gRPC servers send it. A call with a grpc-timeout not decided within it
 * (a slow store) is answered DEADLINE_EXCEEDED then; the decision that comes later goes
 * nowhere. */
#include <stdio.h>
#include <string.h>

#include "grpc.h"
#include "h2.h"

static const char METHOD[] = "POST";

/* The request bytes all the calls of one connection may hold while they arrive: two whole
 * messages of the largest size. Real calls are a few hundred bytes; a client holding more
 * at once, over many streams, has the call that would pass it refused (RESOURCE_EXHAUSTED),
 * so a connection costs at most this much whatever its streams. */
#define CONN_HELD_MAX (2 * (SL_RLS_MAX_MESSAGE + 5))

/* Lets go of what the stream's call holds. */
static void drop(struct sl_h2_stream *st)
{
    size_t n = evbuffer_get_length(st->body_in);
    st->c->rls_held -= n;
    evbuffer_drain(st->body_in, n);
}

/* Trailers-only: one HEADERS frame with END_STREAM (grpc/doc/PROTOCOL-HTTP2.md). The
 * messages are sluice's own, printable ASCII without '%': nothing to percent-encode. */
static void answer_error(struct sl_h2_stream *st, int status, const char *message)
{
    struct sl_textbuf head = {0};
    char code[8];
    int n = snprintf(code, sizeof code, "%d", status);
    int err = 0;

    if (st->submitted)
        return;
    st->local = true;
    st->resp_eof = true;
    st->rls_call = false;
    drop(st);
    static const char start[] = "content-type: application/grpc\r\ngrpc-status: ";
    err |= sl_textbuf_add(&head, start, sizeof start - 1);
    err |= sl_textbuf_add(&head, code, (size_t)n);
    err |= sl_textbuf_add(&head, "\r\n", 2);
    if (message) {
        err |= sl_textbuf_add(&head, "grpc-message: ", 14);
        err |= sl_textbuf_add(&head, message, strlen(message));
        err |= sl_textbuf_add(&head, "\r\n", 2);
    }
    if (err || sl_h2_head_submit(st, 200, NULL, 0, &head, true) < 0)
        nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id,
                                  NGHTTP2_INTERNAL_ERROR);
    sl_textbuf_free(&head);
    st->x.status = 200;
}

static void answer(struct sl_h2_stream *st, const struct sl_rls_result *result)
{
    static const struct sl_header ok = {"grpc-status", 11, "0", 1};
    static char line[] = "content-type: application/grpc\r\n";
    static const struct sl_textbuf ctype = {.data = line, .len = sizeof line - 1};

    if (st->submitted)
        return; /* the deadline was answered */
    /* The message is packed straight into the buffer nghttp2's DATA frames are cut from. */
    if (sl_rls_answer(result, st->body_out) < 0) {
        evbuffer_drain(st->body_out, evbuffer_get_length(st->body_out));
        answer_error(st, SL_RLS_GRPC_INTERNAL, "out of memory");
        return;
    }
    st->local = true;
    st->rls_call = false;
    st->x.bytes_out += evbuffer_get_length(st->body_out);
    st->resp_eof = true;
    /* The trailers are kept once the head is submitted; nghttp2 reads the body later. */
    if (sl_h2_head_submit(st, 200, NULL, 0, &ctype, false) < 0)
        nghttp2_submit_rst_stream(st->c->session, NGHTTP2_FLAG_NONE, st->id,
                                  NGHTTP2_INTERNAL_ERROR);
    else
        sl_h2_stream_trailers(&st->x, &ok, 1);
    st->x.status = 200;
}

static void replied(void *arg, const struct sl_rls_reply *reply)
{
    struct sl_h2_stream *st = arg;
    struct sl_h2_conn *c = st->c;

    sl_h2_enter(c);
    if (sl_h2_stream_settle(st) && !st->closed) {
        if (st->timer_set) {
            event_del(&st->timer);
            st->timer_set = false;
        }
        if (reply->grpc_status == SL_RLS_GRPC_OK)
            answer(st, reply->result);
        else
            answer_error(st, reply->grpc_status, reply->grpc_message);
    }
    sl_h2_leave(c);
}

static void deadline_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_h2_stream *st = arg;
    struct sl_h2_conn *c = st->c;

    (void)fd, (void)what;
    st->timer_set = false;
    sl_h2_enter(c);
    answer_error(st, SL_GRPC_DEADLINE_EXCEEDED, "the call's grpc-timeout passed");
    sl_h2_leave(c);
}

void sl_h2_rls_start(struct sl_h2_stream *st)
{
    struct sl_request *r = &st->x.req;
    size_t plen = sizeof SL_RLS_PATH - 1;

    /* The exchange is never started: nothing of it is counted or logged. */
    st->finished = true;
    if (r->method_len != sizeof METHOD - 1 || memcmp(r->method, METHOD, r->method_len) != 0 ||
        r->target_len != plen || memcmp(r->target, SL_RLS_PATH, plen) != 0 || !st->x.grpc) {
        answer_error(st, SL_RLS_GRPC_UNIMPLEMENTED,
                     "only envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit is served");
        return;
    }
    st->rls_call = true;
    uint64_t us = sl_grpc_timeout_us(r);
    if (us) {
        /* The stream's timer, which holds a proxied request on a leaky bucket, is free. */
        struct timeval tv = {(time_t)(us / 1000000), (suseconds_t)(us % 1000000)};
        evtimer_assign(&st->timer, st->c->w->base, deadline_cb, st);
        if (evtimer_add(&st->timer, &tv) == 0)
            st->timer_set = true;
    }
    if (st->req_end)
        sl_h2_rls_end(st);
}

void sl_h2_rls_data(struct sl_h2_stream *st, const uint8_t *data, size_t n)
{
    nghttp2_session_consume(st->c->session, st->id, n);
    if (!st->rls_call || st->x.gone || st->x.decision_pending)
        return;
    if (st->c->rls_held + n > CONN_HELD_MAX) {
        answer_error(st, SL_RLS_GRPC_RESOURCE_EXHAUSTED,
                     "the connection's calls hold more request bytes than the service takes");
        return;
    }
    evbuffer_add(st->body_in, data, n);
    st->c->rls_held += n;
    size_t have = evbuffer_get_length(st->body_in);
    int64_t len = sl_rls_announced(st->body_in);
    /* Refused as soon as the prefix says so, before the message has to be held. */
    if (len > SL_RLS_MAX_MESSAGE)
        answer_error(st, SL_RLS_GRPC_RESOURCE_EXHAUSTED,
                     "the request message is larger than the 1 MiB the service takes");
    else if (len >= 0 && have > (uint64_t)len + 5)
        answer_error(st, SL_RLS_GRPC_INVALID_ARGUMENT,
                     "the request body is not exactly one gRPC message");
}

void sl_h2_rls_end(struct sl_h2_stream *st)
{
    struct sl_worker *w = st->x.w;

    if (!st->rls_call || st->x.decision_pending)
        return;
    st->x.req_done = true;
    st->x.decision_pending = true;
    st->c->rls_held -= evbuffer_get_length(st->body_in); /* taken whole by sl_rls_serve */
    sl_rls_serve(&w->rls_env, st->x.cfg, st->body_in, replied, st);
}

void sl_h2_rls_closed(struct sl_h2_stream *st)
{
    if (st->rls_call)
        drop(st);
}
