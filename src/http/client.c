/* A client connection: the request state machine from head to the end of the response,
 * keep-alive and pipelining, timeouts, and the hand-off to the engine. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "http.h"
#include "sluice/clock.h"
#include "sluice/log.h"

static void conn_free(struct sl_conn *c);
static void arm_timer(struct sl_conn *c, uint64_t ms);

void sl_conn_enter(struct sl_conn *c)
{
    c->busy++;
}

void sl_conn_leave(struct sl_conn *c)
{
    if (--c->busy == 0 && c->dying && !c->decision_pending)
        conn_free(c);
}

void sl_conn_kill(struct sl_conn *c)
{
    if (!c->dying) {
        c->dying = true;
        sl_upstream_release(c, false);
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        event_del(&c->timer);
    }
    if (c->busy == 0 && !c->decision_pending)
        conn_free(c);
}

void sl_conn_flush(struct sl_conn *c)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) == 0 || c->dying)
        return;
    /* Writing now rather than when the loop next polls saves two epoll_ctl calls and a
     * loop turn per response; the bufferevent takes over only when the socket is full. */
    if (!(bufferevent_get_enabled(c->bev) & EV_WRITE)) {
        evbuffer_write(out, bufferevent_getfd(c->bev));
        if (evbuffer_get_length(out) == 0)
            return;
    }
    bufferevent_enable(c->bev, EV_WRITE);
}

/* Answers an error of sluice's own and closes after it; mid-response there is no way to
 * say anything, so the connection is cut. */
void sl_conn_fail(struct sl_conn *c, int status)
{
    sl_upstream_release(c, false);
    if (c->resp_head_sent) {
        sl_conn_kill(c);
        return;
    }
    sl_reply(c, status, NULL, NULL, true);
    sl_conn_request_done(c);
}

static void linger_start(struct sl_conn *c)
{
    if (c->client_eof) {
        sl_conn_kill(c);
        return;
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
    bufferevent_enable(c->bev, EV_READ);
    arm_timer(c, SL_LINGER_MS);
    c->lingering = true;
}

static void arm_timer(struct sl_conn *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(&c->timer, &tv);
}

static void set_read_timeout(struct sl_conn *c, bool on)
{
    uint64_t ms = c->cfg->client.idle_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    bufferevent_set_timeouts(c->bev, on ? &tv : NULL, &tv);
}

void sl_conn_request_done(struct sl_conn *c)
{
    struct sl_worker *w = c->w;
    uint64_t now = sl_clock_mono_us();
    const struct sl_route *route = c->has_verdict ? c->verdict.route : NULL;

    c->duration_us = now - c->t_start;
    if (c->has_verdict)
        sl_metrics_request(w->metrics, route, c->verdict.outcome, c->duration_us);
    sl_metrics_response(w->metrics, route, c->status);
    if (c->cfg->access_log != SL_ACCESS_LOG_OFF)
        sl_access_log_request(w, c);

    if (c->has_body && !c->req_done)
        c->close_after = true; /* the rest of the body would be read as the next request */
    if (w->draining)
        c->close_after = true;
    if (c->close_after) {
        c->state = SL_C_LINGER;
        if (c->has_body && !c->req_done)
            set_read_timeout(c, false);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            linger_start(c);
        return;
    }
    if (c->has_body)
        set_read_timeout(c, false);
    c->state = SL_C_HEAD;
    c->head_started = false;
    c->first_request = false;
    c->has_verdict = false;
    sl_head_reset(&c->head);
    llhttp_resume(&c->parser);
    arm_timer(c, c->cfg->client.idle_timeout_ms);
    if (!c->in_process)
        sl_conn_process(c);
}

static void forward(struct sl_conn *c)
{
    if (c->expect_continue) {
        /* RFC 9110 10.1.1: the client waits for this before sending the body; it is sent
         * only once the request is admitted, so a refused body is never transmitted. */
        static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
        evbuffer_add(bufferevent_get_output(c->bev), cont, sizeof cont - 1);
        c->bytes_out += sizeof cont - 1;
        sl_conn_flush(c);
    }
    c->state = SL_C_PROXY;
    c->t_upstream = sl_clock_mono_us();
    if (c->has_body && !c->req_done)
        set_read_timeout(c, true);
    sl_upstream_forward(c);
}

static void apply_verdict(struct sl_conn *c)
{
    struct sl_verdict *v = &c->verdict;

    c->has_verdict = true;
    if (v->status) {
        /* With Expect the body was never sent, and without it the body may be large: both
         * are better ended by closing than by reading and discarding. */
        bool close = c->close_after || (c->has_body && !c->req_done && c->expect_continue);
        sl_reply(c, v->status, v->headers, v->body, close);
        if (c->has_body && !c->req_done && !close) {
            c->state = SL_C_DISCARD;
            set_read_timeout(c, true);
        } else {
            sl_conn_request_done(c);
        }
        return;
    }
    if (v->delay_us) {
        c->state = SL_C_DELAY;
        struct timeval tv = {(time_t)(v->delay_us / 1000000),
                             (suseconds_t)(v->delay_us % 1000000)};
        event_add(&c->timer, &tv);
        return;
    }
    forward(c);
}

static void on_verdict(void *arg, struct sl_verdict *v)
{
    struct sl_conn *c = arg;
    sl_conn_enter(c);
    c->decision_pending = false;
    if (!c->dying) {
        apply_verdict(c);
        if (!c->in_process && !c->dying)
            sl_conn_process(c);
    }
    sl_conn_leave(c);
}

static bool name_is(const struct sl_header *h, const char *lit, size_t len)
{
    return h->name_len == len && strncasecmp(h->name, lit, len) == 0;
}

static bool value_is(const struct sl_header *h, const char *lit, size_t len)
{
    return h->value_len == len && strncasecmp(h->value, lit, len) == 0;
}

/* Checks llhttp leaves to the application (RFC 9112 sections 3.2, 5.1, 6.1); returns the
 * status to answer, or 0. */
static int validate(struct sl_conn *c)
{
    const struct sl_head *h = &c->head;
    unsigned hosts = 0;

    if (llhttp_get_http_major(&c->parser) != 1 || llhttp_get_http_minor(&c->parser) > 1)
        return 505;
    if (h->obs_fold || llhttp_get_method(&c->parser) == HTTP_CONNECT)
        return 400;
    for (size_t i = 0; i < h->nfields; i++) {
        const struct sl_header *f = &h->headers[i];
        char last = f->name_len ? f->name[f->name_len - 1] : ' ';
        if (last == ' ' || last == '\t')
            return 400; /* whitespace before the colon: a request smuggling vector */
        if (name_is(f, "Host", 4))
            hosts++;
        else if (name_is(f, "Transfer-Encoding", 17)) {
            /* Only "chunked", alone, is a framing sluice can relay unambiguously; "gzip,
             * chunked" and friends are refused rather than guessed at. HTTP/1.0 has no
             * chunked framing at all. */
            if (!value_is(f, "chunked", 7) || c->http_minor == 0)
                return 400;
        } else if (name_is(f, "Expect", 6) && value_is(f, "100-continue", 12)) {
            c->expect_continue = c->http_minor == 1;
        }
    }
    if (hosts > 1 || (hosts == 0 && c->http_minor == 1))
        return 400;
    if (c->upgrade && c->has_body)
        return 400;
    return 0;
}

static void start_request(struct sl_conn *c)
{
    struct sl_head *h = &c->head;
    llhttp_t *p = &c->parser;

    event_del(&c->timer);
    if (sl_head_finish(h) < 0) {
        sl_conn_kill(c);
        return;
    }
    uint8_t method = llhttp_get_method(p);
    c->http_minor = llhttp_get_http_minor(p);
    c->chunked = (p->flags & F_CHUNKED) != 0;
    c->has_body = c->chunked || p->content_length > 0;
    c->upgrade = llhttp_get_upgrade(p) != 0;
    c->is_head = method == HTTP_HEAD;
    c->idempotent = method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS ||
                    method == HTTP_TRACE || method == HTTP_PUT || method == HTTP_DELETE;
    c->expect_continue = false;
    c->req_done = c->resp_head_sent = c->resp_done = false;
    c->req_blocked = c->resp_blocked = c->retried = false;
    c->close_after = !llhttp_should_keep_alive(p);
    c->status = 0;
    c->upstream_us = 0;
    c->t_upstream = 0;

    int status = validate(c);
    if (!status && !c->chunked && c->cfg->client.max_body_bytes &&
        p->content_length > c->cfg->client.max_body_bytes)
        status = 413;
    if (status) {
        c->has_body = false; /* never read: the connection closes */
        sl_reply(c, status, NULL, NULL, true);
        sl_conn_request_done(c);
        return;
    }
    llhttp_resume(p);
    if (!c->has_body) {
        /* Lets llhttp reach on_message_complete, which needs no further byte. */
        llhttp_execute(p, h->buf, 0);
        c->req_done = true;
    }

    struct sl_request req = {
        .method = h->buf + h->method_off,
        .method_len = h->method_len,
        .target = h->buf + h->url_off,
        .target_len = h->url_len,
        .headers = h->headers,
        .nheaders = h->nfields,
        .peer = (const struct sockaddr *)&c->peer,
    };
    struct sl_verdict *v = &c->verdict;
    evbuffer_drain(c->vheaders, evbuffer_get_length(c->vheaders));
    evbuffer_drain(c->vbody, evbuffer_get_length(c->vbody));
    v->headers = c->vheaders;
    v->body = c->vbody;
    c->state = SL_C_DECIDE;
    c->decision_pending = true;
    sl_engine_decide(c->w->engine, c->cfg, &req, v, on_verdict, c);
}

/* Returns true when the state moved on and the caller should look again. */
static bool read_head(struct sl_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    size_t avail = evbuffer_get_length(in);

    if (avail == 0) {
        if (c->client_eof)
            sl_conn_kill(c);
        return false;
    }
    /* A client that pipelines without reading its responses waits until it reads. */
    if (evbuffer_get_length(bufferevent_get_output(c->bev)) >= SL_HIGH_WATER)
        return false;
    if (!c->head_started) {
        c->head_started = true;
        c->t_start = sl_clock_mono_us();
        c->bytes_in = c->bytes_out = 0;
        c->head_bytes = 0;
        c->is_head = false;
        if (c->cfg != c->w->cfg) {
            sl_cfg_unref(c->cfg);
            c->cfg = sl_cfg_ref(c->w->cfg);
        }
        c->head.max = c->cfg->client.max_header_bytes;
        if (!c->first_request)
            arm_timer(c, c->cfg->client.header_timeout_ms);
    }

    llhttp_errno_t err;
    long n = sl_parse_run(&c->parser, in, avail, true, &err);
    int status = 0;
    if (n < 0) {
        status = c->head.overflow ? 431 : 400;
        sl_log_debug("bad request from %s: %s", c->peer_text, llhttp_errno_name(err));
    } else {
        evbuffer_drain(in, (size_t)n);
        c->bytes_in += (uint64_t)n;
        c->head_bytes += (uint64_t)n;
        if (c->head_bytes > c->cfg->client.max_header_bytes)
            status = 431;
    }
    if (status) {
        event_del(&c->timer);
        sl_reply(c, status, NULL, NULL, true);
        sl_conn_request_done(c);
        return false;
    }
    if (!c->head.head_done) {
        if (c->client_eof)
            sl_conn_kill(c);
        return false;
    }
    start_request(c);
    return true;
}

static bool discard_body(struct sl_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    llhttp_errno_t err;
    long n = sl_parse_run(&c->parser, in, evbuffer_get_length(in), false, &err);

    if (n < 0) {
        c->close_after = true;
        sl_conn_request_done(c);
        return false;
    }
    evbuffer_drain(in, (size_t)n);
    c->bytes_in += (uint64_t)n;
    if (!c->head.msg_done) {
        if (c->client_eof)
            sl_conn_kill(c);
        return false;
    }
    c->req_done = true;
    sl_conn_request_done(c);
    return true;
}

void sl_conn_process(struct sl_conn *c)
{
    bool again = true;

    c->in_process = true;
    while (again && !c->dying) {
        switch (c->state) {
        case SL_C_HEAD:
            again = read_head(c);
            break;
        case SL_C_PROXY:
            if (!c->req_done && c->up)
                sl_upstream_pump_body(c);
            again = false;
            break;
        case SL_C_DISCARD:
            again = discard_body(c);
            break;
        case SL_C_TUNNEL:
            sl_tunnel_pump(c);
            again = false;
            break;
        case SL_C_LINGER: {
            struct evbuffer *in = bufferevent_get_input(c->bev);
            if (c->lingering)
                evbuffer_drain(in, evbuffer_get_length(in));
            again = false;
            break;
        }
        default:
            again = false;
            break;
        }
    }
    c->in_process = false;
}

static void conn_readcb(struct bufferevent *bev, void *arg)
{
    struct sl_conn *c = arg;
    sl_conn_enter(c);
    sl_conn_process(c);
    sl_conn_leave(c);
}

static void conn_writecb(struct bufferevent *bev, void *arg)
{
    struct sl_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(bev);

    sl_conn_enter(c);
    if (c->state == SL_C_TUNNEL) {
        sl_tunnel_pump(c);
    } else if (c->resp_blocked && c->up) {
        c->resp_blocked = false;
        sl_upstream_process(c);
    }
    if (!c->dying && evbuffer_get_length(out) == 0) {
        bufferevent_disable(bev, EV_WRITE);
        if (c->state == SL_C_LINGER && !c->lingering)
            linger_start(c);
        else if (c->state == SL_C_HEAD && !c->dying)
            sl_conn_process(c); /* pipelined requests held back by a full output */
    }
    sl_conn_leave(c);
}

static void conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct sl_conn *c = arg;

    sl_conn_enter(c);
    if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        /* A client may half-close after its request and still read the response. */
        c->client_eof = true;
        switch (c->state) {
        case SL_C_HEAD:
        case SL_C_DISCARD:
        case SL_C_LINGER:
            sl_conn_kill(c);
            break;
        case SL_C_TUNNEL:
            sl_tunnel_pump(c);
            break;
        default:
            if (!c->req_done && evbuffer_get_length(bufferevent_get_input(bev)) == 0)
                sl_conn_kill(c);
            else
                c->close_after = true;
            break;
        }
    } else {
        sl_conn_kill(c);
    }
    sl_conn_leave(c);
}

static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_conn *c = arg;

    sl_conn_enter(c);
    switch (c->state) {
    case SL_C_HEAD:
        if (c->head_started || c->first_request) {
            if (!c->head_started) {
                c->t_start = sl_clock_mono_us();
                c->bytes_in = c->bytes_out = 0;
            }
            sl_reply(c, 408, NULL, NULL, true);
            sl_conn_request_done(c);
        } else {
            sl_conn_kill(c); /* keep-alive idle_timeout: close quietly */
        }
        break;
    case SL_C_DELAY:
        forward(c);
        if (!c->dying)
            sl_conn_process(c);
        break;
    case SL_C_LINGER:
        sl_conn_kill(c);
        break;
    default:
        break;
    }
    sl_conn_leave(c);
}

static void format_peer(struct sl_conn *c)
{
    const struct sockaddr *sa = (const struct sockaddr *)&c->peer;
    c->peer_text[0] = '\0';
    if (sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, c->peer_text,
                  sizeof c->peer_text);
    else if (sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, c->peer_text,
                  sizeof c->peer_text);
    c->peer_text_len = strlen(c->peer_text);
}

void sl_conn_accept(struct sl_worker *w, evutil_socket_t fd, const struct sockaddr *sa,
                    int salen)
{
    struct sl_conn *c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->w = w;
    c->bev = bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    c->vheaders = evbuffer_new();
    c->vbody = evbuffer_new();
    if (!c->bev || !c->vheaders || !c->vbody)
        goto fail;
    fd = -1; /* owned by the bufferevent now */
    if (salen > 0 && (size_t)salen <= sizeof c->peer) {
        memcpy(&c->peer, sa, (size_t)salen);
        c->peer_len = (socklen_t)salen;
    }
    if (sa->sa_family == AF_INET || sa->sa_family == AF_INET6) {
        int one = 1;
        setsockopt(bufferevent_getfd(c->bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    format_peer(c);
    c->cfg = sl_cfg_ref(w->cfg);
    sl_head_init(&c->head, c->cfg->client.max_header_bytes);
    sl_head_reset(&c->head);
    llhttp_init(&c->parser, HTTP_REQUEST, &sl_request_settings);
    c->parser.data = &c->head;
    event_assign(&c->timer, w->base, -1, 0, conn_timer_cb, c);
    c->state = SL_C_HEAD;
    c->first_request = true;

    bufferevent_setcb(c->bev, conn_readcb, conn_writecb, conn_eventcb, c);
    bufferevent_setwatermark(c->bev, EV_READ, 0, SL_INPUT_MAX);
    bufferevent_setwatermark(c->bev, EV_WRITE, SL_LOW_WATER, 0);
    bufferevent_set_max_single_read(c->bev, 64 * 1024);
    bufferevent_set_max_single_write(c->bev, SL_HIGH_WATER);
    set_read_timeout(c, false);
    bufferevent_enable(c->bev, EV_READ);
    arm_timer(c, c->cfg->client.header_timeout_ms);

    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    w->nconns++;
    sl_metrics_connection_opened(w->metrics);
    sl_worker_conn_added(w);
    return;

fail:
    sl_log_error("out of memory accepting a connection");
    if (c) {
        if (c->bev)
            bufferevent_free(c->bev);
        if (c->vheaders)
            evbuffer_free(c->vheaders);
        if (c->vbody)
            evbuffer_free(c->vbody);
        free(c);
    }
    if (fd >= 0)
        evutil_closesocket(fd);
}

static void conn_free(struct sl_conn *c)
{
    struct sl_worker *w = c->w;

    sl_upstream_release(c, false);
    event_del(&c->timer);
    bufferevent_free(c->bev);
    evbuffer_free(c->vheaders);
    evbuffer_free(c->vbody);
    sl_head_deinit(&c->head);
    sl_cfg_unref(c->cfg);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    w->nconns--;
    free(c);
    sl_metrics_connection_closed(w->metrics);
    sl_worker_conn_removed(w);
    sl_worker_maybe_done(w);
}

void sl_conn_shutdown(struct sl_conn *c, bool graceful)
{
    if (graceful && !(c->state == SL_C_HEAD && !c->head_started)) {
        c->close_after = true; /* finish the request in flight, then close */
        return;
    }
    sl_conn_kill(c);
}
