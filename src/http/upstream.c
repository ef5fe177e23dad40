/* The upstream side of a request: connecting (or reusing a pooled connection), sending
 * the head, streaming the body up and the response down, and the tunnel after 101. */
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "http.h"
#include "sluice/clock.h"
#include "sluice/forward.h"
#include "sluice/log.h"

/* Upstream response heads larger than this are refused with 502 (nginx's default
 * proxy_buffer_size is far smaller). */
#define UPSTREAM_HEAD_MAX (64 * 1024)

static void up_readcb(evutil_socket_t fd, short what, void *arg);
static void up_writecb(struct bufferevent *bev, void *arg);
static void up_eventcb(struct bufferevent *bev, short what, void *arg);

static struct timeval tv_ms(uint64_t ms)
{
    return (struct timeval){(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
}

void sl_upstream_free(struct sl_upstream *up)
{
    if (!up)
        return;
    if (up->rev_active)
        event_del(&up->rev);
    bufferevent_free(up->bev);
    sl_head_deinit(&up->head);
    free(up);
}

void sl_upstream_flush(struct sl_upstream *up)
{
    struct evbuffer *out = bufferevent_get_output(up->bev);
    if (!up->connected || evbuffer_get_length(out) == 0)
        return;
    if (!(bufferevent_get_enabled(up->bev) & EV_WRITE)) {
        sl_write_now(up->bev);
        if (evbuffer_get_length(out) == 0)
            return;
    }
    bufferevent_enable(up->bev, EV_WRITE);
}

/* The response wait starts once the whole request is sent: a slow upload is not an
 * upstream timeout. Writes are bounded by the timeout throughout. */
static void set_timeouts(struct sl_conn *c)
{
    struct sl_upstream *up = c->up;
    const struct sl_upstream_config *u = &c->cfg->upstream;
    struct timeval rd = tv_ms(u->timeout_ms);
    bool on = up->connected && c->x.req_done;
    if (on != up->read_timeout_on || (on && up->read_timeout.tv_sec != rd.tv_sec)) {
        up->read_timeout_on = on;
        up->read_timeout = rd;
        up->rev_timeout_changed = true;
    }
    sl_write_timeout_set(up->bev, &up->write_timeout_ms,
                         up->connected ? u->timeout_ms : u->connect_timeout_ms);
}

/* Connects to `addr` (`len` bytes), or when `addr` is NULL to upstream `u`'s host name. */
static struct sl_upstream *up_connect(struct sl_worker *w, const struct sl_upstream_config *u,
                                      const struct sockaddr_storage *addr, socklen_t len)
{
    struct sl_upstream *up = calloc(1, sizeof *up);
    if (!up)
        return NULL;
    up->w = w;
    up->bev = bufferevent_socket_new(w->base, -1, BEV_OPT_CLOSE_ON_FREE);
    if (!up->bev) {
        free(up);
        return NULL;
    }
    if (addr) {
        memcpy(&up->addr, addr, len);
        up->addr_len = len;
    }
    up->by_name = !addr;
    sl_head_init(&up->head, UPSTREAM_HEAD_MAX);
    bufferevent_setwatermark(up->bev, EV_WRITE, SL_LOW_WATER, 0);
    bufferevent_set_max_single_write(up->bev, SL_HIGH_WATER);
    bufferevent_enable(up->bev, EV_WRITE);
    int rc = addr ? bufferevent_socket_connect(up->bev, (const struct sockaddr *)addr, (int)len)
                  : sl_upstream_name_connect(w, u, up->bev);
    if (rc < 0) {
        sl_upstream_free(up);
        return NULL;
    }
    event_assign(&up->rev, w->base, bufferevent_getfd(up->bev), EV_READ | EV_PERSIST, up_readcb,
                 up);
    return up;
}

static void write_head(struct sl_conn *c)
{
    struct sl_forward_request f = {
        .req =
            &(struct sl_request){
                .method = c->head.buf + c->head.method_off,
                .method_len = c->head.method_len,
                .target = c->head.buf + c->head.url_off,
                .target_len = c->head.url_len,
                .headers = c->head.headers,
                .nheaders = c->head.nfields,
            },
        .http_minor = c->http_minor,
        .peer = c->peer_text_len ? c->peer_text : NULL,
        .peer_len = c->peer_text_len,
        .upgrade = c->x.upgrade,
        .upgrades = c->cfg->client.upgrades,
        .nupgrades = c->cfg->client.nupgrades,
        .chunked = c->x.chunked,
        .strip_expect = c->x.expect_continue,
    };
    sl_forward_request_head(&f, bufferevent_get_output(c->up->bev));
}

static void attach(struct sl_conn *c, bool fresh)
{
    struct sl_worker *w = c->w;
    const struct sl_upstream_config *u = &c->cfg->upstream;
    socklen_t len = u->addr.len;
    const struct sockaddr_storage *addr = u->host ? sl_upstream_name_addr(w, u, &len) : &u->addr.ss;
    /* With no address known for a name, the pool holds nothing worth taking yet. */
    struct sl_upstream *up = fresh || !addr ? NULL : sl_pool_take(w, addr, len);

    if (up) {
        up->reused = true;
    } else {
        up = up_connect(w, u, addr, len);
        if (!up) {
            sl_log_warn("upstream %s: cannot connect", u->addr.text);
            sl_metrics_upstream_error(w->metrics, SL_UPSTREAM_ERR_CONNECT);
            sl_conn_fail(c, 502);
            return;
        }
    }
    up->conn = c;
    up->got_bytes = up->eof = up->head_sent = up->tunnel = false;
    c->up = up;
    /* Until the response head is relayed (see SL_PRIO_URGENT). libevent refuses while the
     * event is active, which leaves the previous level: a matter of order only. */
    event_priority_set(&up->rev, SL_PRIO_URGENT);
    bufferevent_setcb(up->bev, NULL, up_writecb, up_eventcb, up);
    sl_head_reset(&up->head);
    up->head.skip_body = c->x.is_head;
    llhttp_init(&up->parser, HTTP_RESPONSE, &sl_response_settings);
    up->parser.data = &up->head;
    set_timeouts(c);
    write_head(c);
    /* With a body to follow, the pump writes head and body together. */
    if (!c->x.has_body || c->x.req_done)
        sl_upstream_flush(up);
}

void sl_upstream_forward(struct sl_conn *c)
{
    attach(c, false);
}

void sl_upstream_release(struct sl_conn *c, bool reuse)
{
    struct sl_upstream *up = c->up;
    if (!up)
        return;
    c->up = NULL;
    up->conn = NULL;
    if (reuse)
        sl_pool_put(c->w, up, c->cfg->upstream.keepalive);
    else
        sl_upstream_free(up);
}

/* A pooled connection the upstream had closed fails before answering; a request that can
 * be sent twice without harm is retried once on a new connection (as nginx does). */
static bool try_retry(struct sl_conn *c)
{
    struct sl_upstream *up = c->up;
    if (!up->reused || up->got_bytes || c->x.retried || !c->x.idempotent || c->x.has_body)
        return false;
    c->x.retried = true;
    sl_upstream_release(c, false);
    attach(c, true);
    return true;
}

static void upstream_failed(struct sl_conn *c, enum sl_upstream_error kind, int status)
{
    sl_metrics_upstream_error(c->w->metrics, kind);
    sl_log_debug("upstream %s: %s", c->cfg->upstream.addr.text,
                 kind == SL_UPSTREAM_ERR_TIMEOUT   ? "timeout"
                 : kind == SL_UPSTREAM_ERR_CONNECT ? "connect failed"
                 : kind == SL_UPSTREAM_ERR_RESOLVE ? "name not resolved"
                                                   : "reset");
    sl_conn_fail(c, status);
}

static void response_done(struct sl_conn *c)
{
    struct sl_upstream *up = c->up;
    bool reuse = c->x.req_done && !up->eof && llhttp_should_keep_alive(&up->parser) &&
                 evbuffer_get_length(bufferevent_get_input(up->bev)) == 0 &&
                 evbuffer_get_length(bufferevent_get_output(up->bev)) == 0;

    c->x.resp_done = true;
    c->x.upstream_us = sl_clock_mono_us() - c->x.t_upstream;
    if (c->x.has_verdict)
        sl_engine_charge_body_end(c->w->engine, &c->x.verdict);
    sl_conn_flush(c);
    sl_upstream_release(c, reuse);
    sl_conn_request_done(c);
}

static void tap_body(void *arg, const char *at, size_t n)
{
    struct sl_conn *c = arg;
    sl_engine_charge_body(&c->x.verdict, at, n);
}

static void send_response_head(struct sl_conn *c)
{
    struct sl_upstream *up = c->up;
    struct sl_head *h = &up->head;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    int status = up->parser.status_code;
    bool no_content = sl_forward_status_bodiless(status);
    bool bodiless = no_content || h->skip_body;
    bool chunked = (up->parser.flags & F_CHUNKED) != 0;
    bool dechunk = chunked && c->http_minor == 0 && !bodiless;
    enum sl_conn_header conn = SL_CONN_NONE;

    if (sl_head_finish(h) < 0) {
        sl_conn_kill(c);
        return;
    }
    const char *bad = sl_forward_check_response(up->parser.http_major, up->parser.http_minor,
                                                status, bodiless, h->headers, h->nfields);
    if (bad) {
        sl_log_warn("upstream %s sent a response with %s", c->cfg->upstream.addr.text, bad);
        upstream_failed(c, SL_UPSTREAM_ERR_RESET, 502);
        return;
    }
    if (status == 101) {
        /* RFC 9110 15.2.2: a 101 names the protocol in Upgrade; without it the client
         * cannot tell what the bytes after the head are, and would read them as HTTP. */
        size_t allowed, named = sl_forward_upgrades(h->headers, h->nfields,
                                                    c->cfg->client.upgrades,
                                                    c->cfg->client.nupgrades, &allowed);
        /* Nor is a switch to a protocol not allowed tunnelled, h2c above all. */
        if (!c->x.upgrade || !(up->parser.flags & F_UPGRADE) || named == 0 || allowed < named) {
            upstream_failed(c, SL_UPSTREAM_ERR_RESET, 502);
            return;
        }
        up->tunnel = true;
        conn = SL_CONN_UPGRADE;
    } else {
        /* A response that ends by closing, or that comes before the request body is
         * all sent (whose rest would be read as the next request), ends the
         * connection: the client is told so in the head. */
        if (llhttp_message_needs_eof(&up->parser) || dechunk || !c->x.req_done)
            c->close_after = true;
        if (c->close_after)
            conn = SL_CONN_CLOSE;
        else if (c->http_minor == 0)
            conn = SL_CONN_KEEP_ALIVE;
    }
    /* Transfer-Encoding goes only to HTTP/1.1 clients (RFC 9112 6.1), and never with a
     * status that has no content; on a response to HEAD it tells what GET would use. */
    struct sl_forward_response f = {
        .status = status,
        /* "HTTP/1.1 204\r\n\r\n" leaves no head text at all. */
        .reason = h->buf ? h->buf + h->reason_off : "",
        .reason_len = h->reason_len,
        .headers = h->headers,
        .nheaders = h->nfields,
        .keep_transfer_encoding = c->http_minor == 1 && !no_content,
        .drop_content_length = no_content && status != 304,
        .connection = conn,
        .extra = c->x.has_verdict ? &c->x.vheaders : NULL,
    };
    /* The head is all a response_header charge needs: it is made now, never delaying the
     * response (a Redis charge is one pipelined call, not awaited). */
    if (c->x.has_verdict) {
        sl_engine_charge_head(c->w->engine, &c->x.verdict, h->headers, h->nfields);
        if (sl_engine_charge_pending(&c->x.verdict)) {
            h->body_tap = tap_body; /* a response_json charge reads the body as it passes */
            h->body_tap_arg = c;
        }
    }
    size_t before = evbuffer_get_length(out);
    sl_forward_response_head(&f, out);
    c->x.bytes_out += evbuffer_get_length(out) - before;
    c->x.status = status;
    c->x.resp_head_sent = up->head_sent = true;
    if (dechunk)
        h->body_sink = out; /* HTTP/1.0 has no chunked framing: relay the decoded body */
    llhttp_resume(&up->parser);
    if (up->tunnel) {
        c->state = SL_C_TUNNEL;
        c->x.upstream_us = sl_clock_mono_us() - c->x.t_upstream;
        sl_write_timeout_set(c->bev, &c->write_timeout_ms, 0);
        return;
    }
    llhttp_execute(&up->parser, "", 0); /* a bodiless response completes here */
}

static void pump_response(struct sl_conn *c)
{
    struct sl_upstream *up = c->up;
    struct evbuffer *in = bufferevent_get_input(up->bev);
    struct evbuffer *out = bufferevent_get_output(c->bev);

    while (!up->head.msg_done) {
        size_t olen = evbuffer_get_length(out);
        if (olen >= SL_HIGH_WATER) {
            c->x.resp_blocked = true;
            break;
        }
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            break;
        llhttp_errno_t err;
        long n = sl_parse_run(&up->parser, in, SL_HIGH_WATER - olen, false, &err);
        if (n < 0) {
            sl_log_debug("upstream sent a malformed body: %s", llhttp_errno_name(err));
            sl_metrics_upstream_error(c->w->metrics, SL_UPSTREAM_ERR_RESET);
            sl_conn_kill(c);
            return;
        }
        if (up->head.body_sink) {
            evbuffer_drain(in, (size_t)n);
            c->x.bytes_out += evbuffer_get_length(out) - olen; /* decoded by on_body */
        } else {
            evbuffer_remove_buffer(in, out, (size_t)n);
            c->x.bytes_out += (uint64_t)n;
        }
        if (n == 0)
            break;
    }
    if (up->head.msg_done) {
        response_done(c);
        return;
    }
    sl_conn_flush(c);
    if (up->eof && evbuffer_get_length(in) == 0) {
        /* A body delimited by the close of the connection ends here; any other ends
         * early, and the client can only learn it by the connection closing too. */
        llhttp_finish(&up->parser);
        if (up->head.msg_done) {
            response_done(c);
            return;
        }
        sl_metrics_upstream_error(c->w->metrics, SL_UPSTREAM_ERR_RESET);
        sl_conn_kill(c);
    }
}

void sl_upstream_process(struct sl_conn *c)
{
    struct sl_upstream *up = c->up;
    if (!up || up->tunnel)
        return;
    struct evbuffer *in = bufferevent_get_input(up->bev);

    if (!up->head_sent) {
        if (evbuffer_get_length(in))
            up->got_bytes = true;
        llhttp_errno_t err;
        long n = sl_parse_run(&up->parser, in, evbuffer_get_length(in), false, &err);
        if (n < 0) {
            sl_log_warn("upstream %s sent a malformed response: %s", c->cfg->upstream.addr.text,
                        llhttp_errno_name(err));
            upstream_failed(c, SL_UPSTREAM_ERR_RESET, 502);
            return;
        }
        evbuffer_drain(in, (size_t)n);
        if (!up->head.head_done) {
            if (up->eof) {
                if (!try_retry(c))
                    upstream_failed(c, SL_UPSTREAM_ERR_RESET, 502);
            }
            return;
        }
        send_response_head(c);
        if (c->dying || !c->up)
            return;
        if (up->tunnel) {
            sl_tunnel_pump(c);
            return;
        }
    }
    pump_response(c);
}

void sl_upstream_pump_body(struct sl_conn *c)
{
    struct sl_upstream *up = c->up;
    struct evbuffer *in = bufferevent_get_input(c->bev);
    struct evbuffer *out = bufferevent_get_output(up->bev);
    uint64_t max = c->cfg->client.max_body_bytes;

    while (!c->x.req_done) {
        size_t olen = evbuffer_get_length(out);
        if (olen >= SL_HIGH_WATER) {
            c->x.req_blocked = true;
            break;
        }
        if (evbuffer_get_length(in) == 0)
            break;
        llhttp_errno_t err;
        long n = sl_parse_run(&c->parser, in, SL_HIGH_WATER - olen, false, &err);
        if (n < 0) {
            /* Bad chunk framing: the upstream has a partial body; the connection to it
             * goes, and the client is told when the response has not started. */
            sl_conn_fail(c, 400);
            return;
        }
        evbuffer_remove_buffer(in, out, (size_t)n);
        c->x.bytes_in += (uint64_t)n;
        if (max && c->head.body_bytes > max) {
            sl_conn_fail(c, 413);
            return;
        }
        if (c->head.msg_done) {
            c->x.req_done = true;
            sl_conn_set_read_timeout(c, false);
            set_timeouts(c);
        }
        if (n == 0)
            break;
    }
    sl_upstream_flush(up);
    if (!c->x.req_done && c->client_eof && evbuffer_get_length(in) == 0)
        sl_conn_kill(c);
}

void sl_tunnel_pump(struct sl_conn *c)
{
    struct sl_upstream *up = c->up;
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

void sl_upstream_sync_read(struct sl_upstream *up)
{
    bool want = !up->eof && evbuffer_get_length(bufferevent_get_input(up->bev)) < SL_INPUT_MAX;
    sl_reader_set(&up->rev, &up->rev_active, want, up->read_timeout_on ? &up->read_timeout : NULL,
                  &up->rev_timeout_changed);
}

static void up_readcb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_upstream *up = arg;
    struct sl_conn *c = up->conn;

    if (!c) {
        sl_pool_drop(up);
        return;
    }
    sl_conn_enter(c);
    if (what & EV_TIMEOUT) {
        up_eventcb(up->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, up);
    } else {
        int n = sl_read_socket(up->bev, fd);
        if (n > 0 && up->tunnel)
            sl_tunnel_pump(c);
        else if (n > 0)
            sl_upstream_process(c);
        else if (n == SL_READ_EOF)
            up_eventcb(up->bev, BEV_EVENT_READING | BEV_EVENT_EOF, up);
        else if (n == SL_READ_ERROR)
            up_eventcb(up->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, up);
    }
    /* A body or a tunnel streams at the normal level: it can go on indefinitely. */
    if (!c->dying && c->up == up && up->head_sent)
        event_priority_set(&up->rev, SL_PRIO_NORMAL);
    sl_conn_leave(c);
}

static void up_writecb(struct bufferevent *bev, void *arg)
{
    struct sl_upstream *up = arg;
    struct sl_conn *c = up->conn;

    sl_conn_enter(c);
    if (up->tunnel) {
        sl_tunnel_pump(c);
    } else if (c->x.req_blocked) {
        c->x.req_blocked = false;
        sl_conn_process(c);
    }
    if (!c->dying && c->up == up && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    sl_conn_leave(c);
}

static void up_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct sl_upstream *up = arg;
    struct sl_conn *c = up->conn;

    sl_conn_enter(c);
    if (!(what & BEV_EVENT_CONNECTED) && !up->connected && up->by_name)
        sl_upstream_name_forget(up->w);
    if (what & BEV_EVENT_CONNECTED) {
        int one = 1;
        up->connected = true;
        if (up->by_name) {
            up->addr_len = sizeof up->addr;
            if (getpeername(bufferevent_getfd(bev), (struct sockaddr *)&up->addr, &up->addr_len) ==
                0)
                sl_upstream_name_learn(up->w, &up->addr, up->addr_len);
            else
                up->addr_len = 0;
        }
        if (up->addr.ss_family != AF_UNIX)
            setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        set_timeouts(c);
    } else if (what & BEV_EVENT_TIMEOUT) {
        if (!up->connected)
            upstream_failed(c, SL_UPSTREAM_ERR_CONNECT, 504);
        else
            upstream_failed(c, SL_UPSTREAM_ERR_TIMEOUT, 504);
    } else if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        up->eof = true;
        if (up->tunnel)
            sl_tunnel_pump(c);
        else
            sl_upstream_process(c);
    } else if (!up->connected && bufferevent_socket_get_dns_error(bev)) {
        sl_log_warn("upstream %s: cannot resolve: %s", c->cfg->upstream.addr.text,
                    evutil_gai_strerror(bufferevent_socket_get_dns_error(bev)));
        upstream_failed(c, SL_UPSTREAM_ERR_RESOLVE, 502);
    } else if (!up->connected) {
        sl_log_warn("upstream %s: %s", c->cfg->upstream.addr.text,
                    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        upstream_failed(c, SL_UPSTREAM_ERR_CONNECT, 502);
    } else if (up->tunnel || !try_retry(c)) {
        upstream_failed(c, SL_UPSTREAM_ERR_RESET, 502);
    }
    sl_conn_leave(c);
}
