/* The HTTP/1.1 upstream side of an exchange: connecting (or reusing a pooled connection),
 * sending the head, and relaying the response down. It sees the client only through the
 * exchange and its sl_client_ops; the client side pumps the request body up and runs the
 * tunnel after 101 (client_stream.c). */
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
    sl_upstream_bev_free(up->bev);
    sl_head_deinit(&up->head);
    free(up);
}

void sl_upstream_flush(struct sl_upstream *up)
{
    if (up->connected)
        sl_flush(up->bev);
}

/* The response wait starts once the whole request is sent: a slow upload is not an
 * upstream timeout. Writes are bounded by the timeout throughout. */
void sl_upstream_set_timeouts(struct sl_exchange *x)
{
    struct sl_upstream *up = x->up;
    const struct sl_upstream_config *u = &x->cfg->upstream;
    struct timeval rd = tv_ms(u->timeout_ms);
    bool on = up->connected && x->req_done;
    if (on != up->read_timeout_on || (on && up->read_timeout.tv_sec != rd.tv_sec)) {
        up->read_timeout_on = on;
        up->read_timeout = rd;
        up->rev_timeout_changed = true;
    }
    if (!up->connected && sl_bev_tls(up->bev)) {
        /* The handshake reads as well as writes: connect_timeout bounds both. The next
         * call, once connected, sets the timeouts again whatever they are. */
        struct timeval ct = tv_ms(u->connect_timeout_ms);
        bufferevent_set_timeouts(up->bev, &ct, &ct);
        up->write_timeout_ms = UINT64_MAX;
        return;
    }
    sl_write_timeout_set(up->bev, &up->write_timeout_ms,
                         up->connected ? u->timeout_ms : u->connect_timeout_ms);
}

/* A TLS bufferevent reads by itself: its own events take the priority. */
static void set_read_priority(struct sl_upstream *up, int prio)
{
    if (sl_bev_tls(up->bev))
        bufferevent_priority_set(up->bev, prio);
    else
        event_priority_set(&up->rev, prio);
}

/* Connects to `addr` (`len` bytes), or when `addr` is NULL to upstream `u`'s host name. */
static struct sl_upstream *up_connect(struct sl_worker *w, const struct sl_upstream_config *u,
                                      const struct sockaddr_storage *addr, socklen_t len)
{
    struct sl_upstream *up = calloc(1, sizeof *up);
    if (!up)
        return NULL;
    up->w = w;
    up->bev = sl_upstream_bev_new(w, u);
    up->tls_ctx = u->tls_ctx;
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
    sl_reader_assign(&up->rev, w->base, up->bev, up_readcb, up);
    return up;
}

static void write_head(struct sl_exchange *x)
{
    struct sl_forward_request f = {
        .req = &x->req,
        .http_minor = x->proto == SL_PROTO_10 ? 0 : 1,
        .peer = x->peer_text_len ? x->peer_text : NULL,
        .peer_len = x->peer_text_len,
        .upgrade = x->upgrade,
        .upgrades = x->cfg->client.upgrades,
        .nupgrades = x->cfg->client.nupgrades,
        .chunked = x->chunked,
        .strip_expect = x->expect_continue,
        .https = x->tls,
    };
    struct sl_upstream *up = x->up;
    sl_forward_request_head(&f, bufferevent_get_output(up->bev));
}

static void attach(struct sl_exchange *x, bool fresh)
{
    struct sl_worker *w = x->w;
    const struct sl_upstream_config *u = &x->cfg->upstream;
    socklen_t len = u->addr.len;
    const struct sockaddr_storage *addr = u->host ? sl_upstream_name_addr(w, u, &len) : &u->addr.ss;
    /* With no address known for a name, the pool holds nothing worth taking yet. */
    struct sl_upstream *up = fresh || !addr ? NULL : sl_pool_take(w, addr, len, u->tls_ctx);

    if (up) {
        up->reused = true;
    } else {
        up = up_connect(w, u, addr, len);
        if (!up) {
            sl_log_warn("upstream %s: cannot connect", u->addr.text);
            sl_metrics_upstream_error(w->metrics, SL_UPSTREAM_ERR_CONNECT);
            x->client->fail(x, 502);
            return;
        }
    }
    up->x = x;
    up->got_bytes = up->eof = up->head_sent = up->tunnel = false;
    x->up = up;
    /* Until the response head is relayed (see SL_PRIO_URGENT). libevent refuses while the
     * event is active, which leaves the previous level: a matter of order only. */
    set_read_priority(up, SL_PRIO_URGENT);
    bufferevent_setcb(up->bev, sl_bev_tls(up->bev) ? sl_upstream_tls_readcb : NULL, up_writecb,
                      up_eventcb, up);
    sl_head_reset(&up->head);
    up->head.skip_body = x->is_head;
    llhttp_init(&up->parser, HTTP_RESPONSE, &sl_response_settings);
    up->parser.data = &up->head;
    sl_upstream_set_timeouts(x);
    write_head(x);
    /* With a body to follow, the pump writes head and body together. */
    if (!x->has_body || x->req_done)
        sl_upstream_flush(up);
}

void sl_upstream_forward(struct sl_exchange *x)
{
    attach(x, false);
}

void sl_upstream_release(struct sl_exchange *x, bool reuse)
{
    struct sl_upstream *up = x->up;
    if (!up)
        return;
    x->up = NULL;
    up->x = NULL;
    if (reuse)
        sl_pool_put(x->w, up, x->cfg->upstream.keepalive);
    else
        sl_upstream_free(up);
}

/* A pooled connection the upstream had closed fails before answering; a request that can
 * be sent twice without harm is retried once on a new connection (as nginx does). */
static bool try_retry(struct sl_exchange *x)
{
    struct sl_upstream *up = x->up;
    if (!up->reused || up->got_bytes || x->retried || !x->idempotent || x->has_body)
        return false;
    x->retried = true;
    sl_upstream_release(x, false);
    attach(x, true);
    return true;
}

static void upstream_failed(struct sl_exchange *x, enum sl_upstream_error kind, int status)
{
    sl_metrics_upstream_error(x->w->metrics, kind);
    sl_log_debug("upstream %s: %s", x->cfg->upstream.addr.text,
                 kind == SL_UPSTREAM_ERR_TIMEOUT   ? "timeout"
                 : kind == SL_UPSTREAM_ERR_CONNECT ? "connect failed"
                 : kind == SL_UPSTREAM_ERR_RESOLVE ? "name not resolved"
                 : kind == SL_UPSTREAM_ERR_TLS     ? "TLS handshake failed"
                                                   : "reset");
    x->client->fail(x, status);
}

static void response_done(struct sl_exchange *x)
{
    struct sl_upstream *up = x->up;
    bool reuse = x->req_done && !up->eof && llhttp_should_keep_alive(&up->parser) &&
                 evbuffer_get_length(bufferevent_get_input(up->bev)) == 0 &&
                 evbuffer_get_length(bufferevent_get_output(up->bev)) == 0;

    x->resp_done = true;
    x->upstream_us = sl_clock_mono_us() - x->t_upstream;
    if (x->has_verdict)
        sl_engine_charge_body_end(x->w->engine, &x->verdict);
    x->client->response_flush(x);
    sl_upstream_release(x, reuse);
    x->client->done(x);
}

static void tap_body(void *arg, const char *at, size_t n)
{
    struct sl_exchange *x = arg;
    sl_engine_charge_body(&x->verdict, at, n);
}

static void send_response_head(struct sl_exchange *x)
{
    struct sl_upstream *up = x->up;
    struct sl_head *h = &up->head;
    int status = up->parser.status_code;
    bool no_content = sl_forward_status_bodiless(status);
    bool bodiless = no_content || h->skip_body;
    bool decode = false;

    if (sl_head_finish(h) < 0) {
        x->client->kill(x);
        return;
    }
    const char *bad = sl_forward_check_response(up->parser.http_major, up->parser.http_minor,
                                                status, bodiless, h->headers, h->nfields);
    if (bad) {
        sl_log_warn("upstream %s sent a response with %s", x->cfg->upstream.addr.text, bad);
        upstream_failed(x, SL_UPSTREAM_ERR_RESET, 502);
        return;
    }
    if (status == 101) {
        /* RFC 9110 15.2.2: a 101 names the protocol in Upgrade; without it the client
         * cannot tell what the bytes after the head are, and would read them as HTTP. */
        size_t allowed, named = sl_forward_upgrades(h->headers, h->nfields,
                                                    x->cfg->client.upgrades,
                                                    x->cfg->client.nupgrades, &allowed);
        /* Nor is a switch to a protocol not allowed tunnelled, h2c above all. */
        if (!x->upgrade || !(up->parser.flags & F_UPGRADE) || named == 0 || allowed < named) {
            upstream_failed(x, SL_UPSTREAM_ERR_RESET, 502);
            return;
        }
        up->tunnel = true;
    }
    /* The head is all a response_header charge needs: it is made now, never delaying the
     * response (a Redis charge is one pipelined call, not awaited). */
    if (x->has_verdict) {
        sl_engine_charge_head(x->w->engine, &x->verdict, h->headers, h->nfields);
        if (sl_engine_charge_pending(&x->verdict)) {
            h->body_tap = tap_body; /* a response_json charge reads the body as it passes */
            h->body_tap_arg = x;
        }
    }
    struct sl_response_head r = {
        .status = status,
        /* "HTTP/1.1 204\r\n\r\n" leaves no head text at all. */
        .reason = h->buf ? h->buf + h->reason_off : "",
        .reason_len = h->reason_len,
        .headers = h->headers,
        .nheaders = h->nfields,
        .chunked = (up->parser.flags & F_CHUNKED) != 0,
        .ends_by_close = llhttp_message_needs_eof(&up->parser),
        .no_content = no_content,
        .bodiless = bodiless,
        .upgrade = up->tunnel,
    };
    up->out = x->client->response_head(x, &r, &decode);
    up->head_sent = true;
    if (decode)
        h->body_sink = up->out; /* relayed without the upstream's chunked framing */
    llhttp_resume(&up->parser);
    if (up->tunnel) {
        x->upstream_us = sl_clock_mono_us() - x->t_upstream;
        return;
    }
    llhttp_execute(&up->parser, "", 0); /* a bodiless response completes here */
}

static void pump_response(struct sl_exchange *x)
{
    struct sl_upstream *up = x->up;
    struct evbuffer *in = bufferevent_get_input(up->bev);
    struct evbuffer *out = up->out;

    while (!up->head.msg_done) {
        size_t olen = evbuffer_get_length(out);
        if (olen >= SL_HIGH_WATER) {
            x->resp_blocked = true;
            break;
        }
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            break;
        llhttp_errno_t err;
        long n = sl_parse_run(&up->parser, in, SL_HIGH_WATER - olen, false, &err);
        if (n < 0) {
            sl_log_debug("upstream sent a malformed body: %s", llhttp_errno_name(err));
            sl_metrics_upstream_error(x->w->metrics, SL_UPSTREAM_ERR_RESET);
            x->client->kill(x);
            return;
        }
        if (up->head.body_sink) {
            evbuffer_drain(in, (size_t)n);
            x->bytes_out += evbuffer_get_length(out) - olen; /* decoded by on_body */
        } else {
            evbuffer_remove_buffer(in, out, (size_t)n);
            x->bytes_out += (uint64_t)n;
        }
        if (n == 0)
            break;
    }
    if (up->head.msg_done) {
        response_done(x);
        return;
    }
    x->client->response_flush(x);
    if (up->eof && evbuffer_get_length(in) == 0) {
        /* A body delimited by the close of the connection ends here; any other ends
         * early, and the client can only learn it by the connection closing too. */
        llhttp_finish(&up->parser);
        if (up->head.msg_done) {
            response_done(x);
            return;
        }
        sl_metrics_upstream_error(x->w->metrics, SL_UPSTREAM_ERR_RESET);
        x->client->kill(x);
    }
}

void sl_upstream_process(struct sl_exchange *x)
{
    struct sl_upstream *up = x->up;
    if (!up || up->tunnel)
        return;
    struct evbuffer *in = bufferevent_get_input(up->bev);

    if (!up->head_sent) {
        if (evbuffer_get_length(in))
            up->got_bytes = true;
        llhttp_errno_t err;
        long n = sl_parse_run(&up->parser, in, evbuffer_get_length(in), false, &err);
        if (n < 0) {
            sl_log_warn("upstream %s sent a malformed response: %s", x->cfg->upstream.addr.text,
                        llhttp_errno_name(err));
            upstream_failed(x, SL_UPSTREAM_ERR_RESET, 502);
            return;
        }
        evbuffer_drain(in, (size_t)n);
        if (!up->head.head_done) {
            if (up->eof) {
                if (!try_retry(x))
                    upstream_failed(x, SL_UPSTREAM_ERR_RESET, 502);
            }
            return;
        }
        send_response_head(x);
        if (x->gone || x->up != up)
            return;
        if (up->tunnel) {
            x->client->tunnel(x);
            return;
        }
    }
    pump_response(x);
}

void sl_upstream_sync_read(struct sl_upstream *up)
{
    bool want = !up->eof && evbuffer_get_length(bufferevent_get_input(up->bev)) < SL_INPUT_MAX;
    sl_reader_set(up->bev, &up->rev, &up->rev_active, want, up->read_timeout_on ? &up->read_timeout : NULL,
                  &up->rev_timeout_changed);
}

static void up_readcb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_upstream *up = arg;
    struct sl_exchange *x = up->x;

    if (!x) {
        sl_pool_drop(up);
        return;
    }
    x->client->enter(x);
    if (what & EV_TIMEOUT) {
        up_eventcb(up->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, up);
    } else {
        int n = sl_read_socket(up->bev, fd);
        if (n > 0 && up->tunnel)
            x->client->tunnel(x);
        else if (n > 0)
            sl_upstream_process(x);
        else if (n == SL_READ_EOF)
            up_eventcb(up->bev, BEV_EVENT_READING | BEV_EVENT_EOF, up);
        else if (n == SL_READ_ERROR)
            up_eventcb(up->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, up);
    }
    /* A body or a tunnel streams at the normal level: it can go on indefinitely. */
    if (!x->gone && x->up == up && up->head_sent)
        set_read_priority(up, SL_PRIO_NORMAL);
    x->client->leave(x);
}

void sl_upstream_tls_readcb(struct bufferevent *bev, void *arg)
{
    struct sl_upstream *up = arg;

    (void)bev;
    sl_reader_touch(&up->rev, up->read_timeout_on ? &up->read_timeout : NULL);
    up_readcb(-1, EV_READ, up);
}

static void up_writecb(struct bufferevent *bev, void *arg)
{
    struct sl_upstream *up = arg;
    struct sl_exchange *x = up->x;

    x->client->enter(x);
    if (up->tunnel) {
        x->client->tunnel(x);
    } else if (x->req_blocked) {
        x->req_blocked = false;
        x->client->request_body(x);
    }
    if (!x->gone && x->up == up && evbuffer_get_length(bufferevent_get_output(bev)) == 0)
        bufferevent_disable(bev, EV_WRITE);
    x->client->leave(x);
}

static void up_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct sl_upstream *up = arg;
    struct sl_exchange *x = up->x;

    x->client->enter(x);
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
        sl_upstream_set_timeouts(x);
    } else if (what & BEV_EVENT_TIMEOUT) {
        if (!up->connected)
            upstream_failed(x, SL_UPSTREAM_ERR_CONNECT, 504);
        else
            upstream_failed(x, SL_UPSTREAM_ERR_TIMEOUT, 504);
    } else if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_ERROR)) {
        up->eof = true;
        if (up->tunnel)
            x->client->tunnel(x);
        else
            sl_upstream_process(x);
    } else if (!up->connected && bufferevent_socket_get_dns_error(bev)) {
        sl_log_warn("upstream %s: cannot resolve: %s", x->cfg->upstream.addr.text,
                    evutil_gai_strerror(bufferevent_socket_get_dns_error(bev)));
        upstream_failed(x, SL_UPSTREAM_ERR_RESOLVE, 502);
    } else if (!up->connected && sl_upstream_tls_failed(bev, x->cfg->upstream.addr.text)) {
        upstream_failed(x, SL_UPSTREAM_ERR_TLS, 502);
    } else if (!up->connected) {
        sl_log_warn("upstream %s: %s", x->cfg->upstream.addr.text,
                    evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
        upstream_failed(x, SL_UPSTREAM_ERR_CONNECT, 502);
    } else if (up->tunnel || !try_retry(x)) {
        upstream_failed(x, SL_UPSTREAM_ERR_RESET, 502);
    }
    x->client->leave(x);
}

static struct evbuffer *h1_body(struct sl_exchange *x, size_t *room)
{
    struct sl_upstream *up = x->up;
    struct evbuffer *out = bufferevent_get_output(up->bev);
    size_t olen = evbuffer_get_length(out);

    *room = olen < SL_HIGH_WATER ? SL_HIGH_WATER - olen : 0;
    return out;
}

static void h1_body_sent(struct sl_exchange *x)
{
    if (x->req_done)
        sl_upstream_set_timeouts(x);
    sl_upstream_flush(x->up);
}

static void h1_sync(struct sl_exchange *x)
{
    sl_upstream_sync_read(x->up);
}

static void h1_release(struct sl_exchange *x)
{
    sl_upstream_release(x, false);
}

const struct sl_upstream_ops sl_h1_upstream_ops = {
    .forward = sl_upstream_forward,
    .body = h1_body,
    .body_sent = h1_body_sent,
    .resume = sl_upstream_process,
    .sync = h1_sync,
    .release = h1_release,
    .unframed = false,
};
