/* A client connection: its socket, buffers, timers and callbacks, keep-alive and
 * pipelining, lingering close, and freeing it safely from inside its own callbacks. */
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

void sl_conn_enter(struct sl_conn *c)
{
    c->busy++;
}

/* Reads while the input has room, the peer has not closed and the connection lives; the
 * outermost callback decides, once everything it did to the buffers is done. */
static void sync_read(struct sl_conn *c)
{
    bool want = !c->dying && !c->client_eof &&
                evbuffer_get_length(bufferevent_get_input(c->bev)) < SL_INPUT_MAX;
    sl_reader_set(c->bev, &c->rev, &c->rev_active, want, c->read_timeout_on ? &c->read_timeout : NULL,
                  &c->rev_timeout_changed);
    if (c->x.up)
        c->x.upstream->sync(&c->x);
}

void sl_conn_leave(struct sl_conn *c)
{
    if (--c->busy > 0)
        return;
    if (!c->dying)
        sync_read(c);
    else if (!c->x.decision_pending)
        conn_free(c);
}

void sl_conn_kill(struct sl_conn *c)
{
    if (!c->dying) {
        c->dying = true;
        c->x.gone = true;
        sl_exchange_release_upstream(&c->x);
        bufferevent_disable(c->bev, EV_READ | EV_WRITE);
        event_del(&c->rev);
        c->rev_active = false;
        event_del(&c->timer);
        c->timer_due_us = 0;
    }
    if (c->busy == 0 && !c->x.decision_pending)
        conn_free(c);
}

void sl_conn_flush(struct sl_conn *c)
{
    if (!c->dying)
        sl_flush(c->bev);
}

void sl_conn_send_text(struct sl_conn *c, struct sl_text *t)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);

    if (t->len && !c->dying && !c->x.tls && evbuffer_get_length(out) == 0 &&
        !(bufferevent_get_enabled(c->bev) & EV_WRITE)) {
        ssize_t n = send(bufferevent_getfd(c->bev), t->buf, t->len, MSG_NOSIGNAL);
        if (n == (ssize_t)t->len) {
            t->len = 0;
            return;
        }
        /* The rest, or all of it after an error, which the bufferevent's own write then
         * meets and reports. */
        if (n > 0) {
            memmove(t->buf, t->buf + n, t->len - (size_t)n);
            t->len -= (size_t)n;
        }
    }
    sl_text_flush(t);
    sl_conn_flush(c);
}

/* Answers an error of sluice's own and closes after it; mid-response there is no way to
 * say anything, so the connection is cut. */
void sl_conn_fail(struct sl_conn *c, int status)
{
    sl_exchange_release_upstream(&c->x);
    if (c->x.resp_head_sent) {
        sl_conn_kill(c);
        return;
    }
    sl_reply(c, status, NULL, NULL, true);
    sl_conn_request_done(c);
}

void sl_conn_linger_start(struct sl_conn *c)
{
    if (c->client_eof) {
        sl_conn_kill(c);
        return;
    }
    shutdown(bufferevent_getfd(c->bev), SHUT_WR);
    evbuffer_drain(bufferevent_get_input(c->bev),
                   evbuffer_get_length(bufferevent_get_input(c->bev)));
    sl_conn_arm_timer(c, SL_LINGER_MS);
    c->lingering = true;
}

void sl_conn_arm_timer(struct sl_conn *c, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    event_add(&c->timer, &tv);
    c->timer_due_us = sl_clock_mono_us() + ms * 1000;
}

/* The idle deadline moves on with every request, and re-adding the timer each time costs
 * a timer heap removal and insertion under libevent's lock: a tenth of answering a 429.
 * While the pending timer fires no later than the new deadline, the deadline is only
 * recorded; the timer, firing early, re-arms itself for the rest. */
void sl_conn_arm_idle(struct sl_conn *c, uint64_t now_us)
{
    uint64_t ms = c->cfg->client.idle_timeout_ms;

    c->idle_until_us = now_us + ms * 1000;
    if (c->timer_due_us && c->timer_due_us <= c->idle_until_us)
        return;
    sl_conn_arm_timer(c, ms);
}

void sl_conn_set_read_timeout(struct sl_conn *c, bool on)
{
    uint64_t ms = c->cfg->client.idle_timeout_ms;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    if (on != c->read_timeout_on) {
        c->read_timeout_on = on;
        c->read_timeout = tv;
        c->rev_timeout_changed = true;
    }
    sl_write_timeout_set(c->bev, &c->write_timeout_ms, ms);
}

void sl_conn_process(struct sl_conn *c)
{
    bool again = true;

    c->in_process = true;
    while (again && !c->dying) {
        switch (c->state) {
        case SL_C_HEAD:
            again = sl_request_read_head(c);
            break;
        case SL_C_PROXY:
            if (!c->x.req_done && c->x.up)
                sl_conn_pump_body(c);
            again = false;
            break;
        case SL_C_DISCARD:
            again = sl_request_discard_body(c);
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

static void conn_eventcb(struct bufferevent *bev, short what, void *arg);

static void conn_readcb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_conn *c = arg;

    sl_conn_enter(c);
    if (what & EV_TIMEOUT) {
        conn_eventcb(c->bev, BEV_EVENT_READING | BEV_EVENT_TIMEOUT, c);
    } else {
        int n = sl_read_socket(c->bev, fd);
        if (n > 0)
            sl_conn_process(c);
        else if (n == SL_READ_EOF)
            conn_eventcb(c->bev, BEV_EVENT_READING | BEV_EVENT_EOF, c);
        else if (n == SL_READ_ERROR)
            conn_eventcb(c->bev, BEV_EVENT_READING | BEV_EVENT_ERROR, c);
    }
    sl_conn_leave(c);
}

/* A TLS connection's bufferevent read and decrypted bytes into its input. */
static void conn_tls_readcb(struct bufferevent *bev, void *arg)
{
    struct sl_conn *c = arg;

    (void)bev;
    sl_reader_touch(&c->rev, c->read_timeout_on ? &c->read_timeout : NULL);
    conn_readcb(-1, EV_READ, c);
}

static void conn_writecb(struct bufferevent *bev, void *arg)
{
    struct sl_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(bev);

    sl_conn_enter(c);
    if (c->state == SL_C_TUNNEL) {
        sl_tunnel_pump(c);
    } else if (c->x.resp_blocked && c->x.up) {
        c->x.resp_blocked = false;
        c->x.upstream->resume(&c->x);
    }
    if (!c->dying && evbuffer_get_length(out) == 0) {
        bufferevent_disable(bev, EV_WRITE);
        if (c->state == SL_C_LINGER && !c->lingering)
            sl_conn_linger_start(c);
        else if (c->state == SL_C_HEAD && !c->dying)
            sl_conn_process(c); /* pipelined requests held back by a full output */
    }
    sl_conn_leave(c);
}

static void conn_eventcb(struct bufferevent *bev, short what, void *arg)
{
    struct sl_conn *c = arg;

    if (c->x.tls && sl_tls_handshake_event(c->w->metrics, bev, what, &c->tls_done)) {
        c->tls_subject = sl_tls_peer_subject(bev, &c->tls_subject_len);
        return;
    }
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
            if (!c->x.req_done && evbuffer_get_length(bufferevent_get_input(bev)) == 0)
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
    c->timer_due_us = 0;
    switch (c->state) {
    case SL_C_HEAD:
        if (!c->head_started && !c->first_request) {
            /* Idle: the deadline may have moved on since the timer was set. Within a
             * millisecond of it counts as reached. */
            uint64_t now = sl_clock_mono_us();
            if (c->idle_until_us > now + 1000) {
                sl_conn_arm_timer(c, (c->idle_until_us - now + 999) / 1000);
                break;
            }
        }
        if (c->head_started || c->first_request) {
            if (!c->head_started) {
                c->x.t_start = sl_clock_mono_us();
                c->x.bytes_in = c->x.bytes_out = 0;
            }
            sl_reply(c, 408, NULL, NULL, true);
            sl_conn_request_done(c);
        } else {
            sl_conn_kill(c); /* keep-alive idle_timeout: close quietly */
        }
        break;
    case SL_C_DELAY:
        /* Whatever clock the timer went by, the request leaves no earlier than decided. */
        sl_exchange_hold(&c->x);
        if (!c->dying)
            sl_conn_process(c);
        break;
    case SL_C_LINGER:
        if (c->lingering) /* else a deadline of the request, left pending, went off */
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

static void accept_conn(struct sl_worker *w, evutil_socket_t fd, const struct sockaddr *sa,
                        int salen, const struct sl_tls_server *tls, bool rls)
{
    struct sl_conn *c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->w = w;
    c->x.tls = tls != NULL;
    c->rls = rls;
    c->bev = tls ? sl_tls_accept(w->base, fd, tls)
                 : bufferevent_socket_new(w->base, fd, BEV_OPT_CLOSE_ON_FREE);
    if (!c->bev)
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
    c->x.client = &sl_h1_client_ops;
    c->x.w = w;
    c->x.peer_text = c->peer_text;
    c->x.peer_text_len = c->peer_text_len;
    c->cfg = sl_cfg_ref(w->cfg);
    c->x.cfg = c->cfg;
    sl_head_init(&c->head, c->cfg->client.max_header_bytes);
    sl_head_reset(&c->head);
    llhttp_init(&c->parser, HTTP_REQUEST, &sl_request_settings);
    c->parser.data = &c->head;
    event_assign(&c->timer, w->base, -1, 0, conn_timer_cb, c);
    sl_reader_assign(&c->rev, w->base, c->bev, conn_readcb, c);
    c->state = SL_C_HEAD;
    c->first_request = true;

    bufferevent_setcb(c->bev, tls ? conn_tls_readcb : NULL, conn_writecb, conn_eventcb, c);
    bufferevent_setwatermark(c->bev, EV_WRITE, SL_LOW_WATER, 0);
    bufferevent_set_max_single_write(c->bev, SL_HIGH_WATER);
    sl_conn_set_read_timeout(c, false);
    bufferevent_disable(c->bev, EV_WRITE); /* on by default; sl_conn_flush writes directly */
    sync_read(c);
    sl_conn_arm_timer(c, c->cfg->client.header_timeout_ms);

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
        free(c);
    }
    if (fd >= 0)
        evutil_closesocket(fd);
}

void sl_conn_accept(struct sl_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                    const struct sl_tls_server *tls)
{
    accept_conn(w, fd, sa, salen, tls, false);
}

void sl_conn_accept_rls(struct sl_worker *w, evutil_socket_t fd, const struct sockaddr *sa,
                        int salen)
{
    accept_conn(w, fd, sa, salen, NULL, true);
}

struct bufferevent *sl_conn_hand_over(struct sl_conn *c)
{
    struct bufferevent *bev = c->bev;

    event_del(&c->rev);
    c->rev_active = false;
    event_del(&c->timer);
    c->timer_due_us = 0;
    bufferevent_setcb(bev, NULL, NULL, NULL, NULL);
    c->bev = NULL;
    c->handed_over = true;
    c->dying = true;
    c->x.gone = true;
    return bev;
}

static void conn_free(struct sl_conn *c)
{
    struct sl_worker *w = c->w;

    sl_engine_verdict_done(w->engine, &c->x.verdict);
    sl_exchange_release_upstream(&c->x);
    event_del(&c->timer);
    event_del(&c->rev);
    if (c->bev)
        bufferevent_free(c->bev);
    sl_textbuf_free(&c->x.vheaders);
    sl_textbuf_free(&c->x.vbody);
    if (c->chunk_stage)
        evbuffer_free(c->chunk_stage);
    free(c->tls_subject);
    sl_head_deinit(&c->head);
    sl_cfg_unref(c->cfg);
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    bool handed_over = c->handed_over;
    free(c);
    if (handed_over)
        w->nconns--; /* the connection lives on as HTTP/2, counted there */
    else
        sl_worker_conn_gone(w);
}

void sl_conn_shutdown(struct sl_conn *c, bool graceful)
{
    if (graceful && c->state == SL_C_HEAD && !c->head_started && !c->dying) {
        /* A request the client sent before the shutdown, still unread in the socket, is
         * served: closing with it unread would reset the connection under the client. */
        sl_conn_enter(c);
        conn_readcb(c->x.tls ? -1 : bufferevent_getfd(c->bev), EV_READ, c);
        bool idle = !c->dying && c->state == SL_C_HEAD && !c->head_started;
        if (!c->dying && !idle)
            c->close_after = true; /* finish the request in flight, then close */
        if (idle)
            sl_conn_kill(c);
        sl_conn_leave(c);
        return;
    }
    if (graceful && !(c->state == SL_C_HEAD && !c->head_started)) {
        c->close_after = true; /* finish the request in flight, then close */
        return;
    }
    sl_conn_kill(c);
}
