/* One request on an HTTP/1 client connection: reading and checking its head, handing it
 * to the connection's exchange, doing what the exchange asks in HTTP/1 (sluice's own
 * answer, the hold, the hand-over to the upstream), and going on to the next request or
 * closing once the exchange is finished. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grpc.h"
#include "http.h"
#include "sluice/clock.h"
#include "sluice/forward.h"
#include "sluice/log.h"

void sl_request_expose_head(struct sl_conn *c, bool complete)
{
    const struct sl_head *h = &c->head;
    /* A request refused in its first bytes has no head text at all. */
    const char *text = h->buf ? h->buf : "";

    c->x.req.method = text + h->method_off;
    c->x.req.method_len = h->method_len;
    c->x.req.target = text + h->url_off;
    c->x.req.target_len = h->url_len;
    /* `headers` holds the fields once the head is complete and checked. */
    c->x.req.headers = h->headers;
    c->x.req.nheaders = complete ? h->nfields : 0;
    c->x.req.peer = (const struct sockaddr *)&c->peer;
    c->x.req.tls_subject = c->tls_subject;
    c->x.req.tls_subject_len = c->tls_subject_len;
    c->x.proto = c->http_minor ? SL_PROTO_11 : SL_PROTO_10;
}

void sl_conn_request_done(struct sl_conn *c)
{
    struct sl_worker *w = c->w;
    uint64_t now = sl_clock_mono_us();

    if (!c->x.has_verdict)
        sl_request_expose_head(c, false); /* refused before the engine saw it */
    sl_exchange_finish(&c->x, now);

    if (c->x.has_body && !c->x.req_done)
        c->close_after = true; /* the rest of the body would be read as the next request */
    if (w->draining)
        c->close_after = true;
    if (c->close_after) {
        c->state = SL_C_LINGER;
        if (c->x.has_body && !c->x.req_done)
            sl_conn_set_read_timeout(c, false);
        if (evbuffer_get_length(bufferevent_get_output(c->bev)) == 0)
            sl_conn_linger_start(c);
        return;
    }
    if (c->x.has_body)
        sl_conn_set_read_timeout(c, false);
    c->state = SL_C_HEAD;
    c->head_started = false;
    c->header_timer = false;
    c->first_request = false;
    c->x.has_verdict = false;
    sl_head_reset(&c->head);
    if (c->x.upgrade) {
        /* The upstream declined the upgrade: the connection goes on as HTTP/1.1, and
         * llhttp, which stopped at the upgrade, starts over. */
        llhttp_init(&c->parser, HTTP_REQUEST, &sl_request_settings);
        c->parser.data = &c->head;
        c->x.upgrade = false;
    } else {
        llhttp_resume(&c->parser);
    }
    sl_conn_arm_idle(c, now);
    if (!c->in_process)
        sl_conn_process(c);
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
    if (h->obs_fold)
        return 400;
    /* A tunnel to wherever the client names would carry anything past the limits. */
    if (llhttp_get_method(&c->parser) == HTTP_CONNECT)
        return 405;
    for (size_t i = 0; i < h->nfields; i++) {
        const struct sl_header *f = &h->headers[i];
        char last = f->name_len ? f->name[f->name_len - 1] : ' ';
        if (last == ' ' || last == '\t')
            return 400; /* whitespace before the colon: a request smuggling vector */
        /* The length alone sets most fields aside, without comparing their names. */
        switch (f->name_len) {
        case 4:
            hosts += name_is(f, "Host", 4);
            break;
        case 6:
            if (name_is(f, "Expect", 6) && value_is(f, "100-continue", 12))
                c->x.expect_continue = c->http_minor == 1;
            break;
        case 12:
            if (name_is(f, "Content-Type", 12))
                c->x.grpc = sl_grpc_content_type(f->value, f->value_len);
            break;
        case 17:
            /* Only "chunked", alone, is a framing sluice can relay unambiguously; "gzip,
             * chunked" and friends are refused rather than guessed at. HTTP/1.0 has no
             * chunked framing at all. */
            if (name_is(f, "Transfer-Encoding", 17) &&
                (!value_is(f, "chunked", 7) || c->http_minor == 0))
                return 400;
            break;
        }
    }
    if (hosts > 1 || (hosts == 0 && c->http_minor == 1))
        return 400;
    if (c->x.upgrade && c->x.has_body)
        return 400;
    return 0;
}

/* client.underscores_in_headers. Many application stacks fold "_" and "-" together (CGI
 * and WSGI map both X-Api-Key and X_Api_Key to HTTP_X_API_KEY), so a field sluice does not
 * know by a name can reach the application as that header: a limit keyed on it skipped,
 * a Transfer_Encoding taken for framing. Dropped fields leave the head before anything in
 * sluice reads it. Returns the status to answer, or 0. */
static int check_underscores(struct sl_conn *c)
{
    enum sl_underscores mode = c->cfg->client.underscores_in_headers;
    size_t n = sl_head_underscored(&c->head, mode == SL_UNDERSCORES_DROP);

    if (n == 0)
        return 0;
    sl_metrics_headers_underscore(c->w->metrics, mode, n);
    return mode == SL_UNDERSCORES_REJECT ? 400 : 0;
}

/* client.upgrades: an Upgrade naming no allowed protocol is not one. The field goes (a
 * non-upgrade head never forwards it), and llhttp, told so before it resumes, reads any
 * body and the next request as HTTP/1.1 instead of stopping for a new protocol. Without
 * this an upstream that speaks h2c after 101 would take every later request on the
 * connection past the limits. */
static void filter_upgrade(struct sl_conn *c, uint8_t method)
{
    const struct sl_client_config *cc = &c->cfg->client;
    size_t allowed;

    if (!c->x.upgrade || method == HTTP_CONNECT)
        return;
    sl_forward_upgrades(c->head.headers, c->head.nfields, cc->upgrades, cc->nupgrades, &allowed);
    if (allowed == 0) {
        c->x.upgrade = false;
        c->parser.upgrade = 0;
    }
}

static void start_request(struct sl_conn *c)
{
    struct sl_head *h = &c->head;
    llhttp_t *p = &c->parser;

    /* The timer still pending (idle or header deadline) is left to fire: in any state
     * but reading a head it does nothing, and the end of the request re-arms it. That
     * saves two timer operations per request. */
    if (sl_head_finish(h) < 0) {
        sl_conn_kill(c);
        return;
    }
    uint8_t method = llhttp_get_method(p);
    c->http_minor = llhttp_get_http_minor(p);
    c->x.chunked = (p->flags & F_CHUNKED) != 0;
    c->x.has_body = c->x.chunked || p->content_length > 0;
    c->x.upgrade = llhttp_get_upgrade(p) != 0;
    filter_upgrade(c, method);
    c->x.is_head = method == HTTP_HEAD;
    c->x.idempotent = method == HTTP_GET || method == HTTP_HEAD || method == HTTP_OPTIONS ||
                    method == HTTP_TRACE || method == HTTP_PUT || method == HTTP_DELETE;
    c->x.expect_continue = false;
    c->x.req_done = c->x.resp_head_sent = c->x.resp_done = false;
    c->x.req_blocked = c->x.resp_blocked = c->x.retried = false;
    c->close_after = !llhttp_should_keep_alive(p) ||
                     atomic_load_explicit(&c->w->server->closing, memory_order_relaxed);
    c->x.status = 0;
    c->x.upstream_us = 0;
    c->x.t_upstream = 0;

    int status = check_underscores(c);
    if (!status)
        status = validate(c);
    if (!status && !c->x.chunked && c->cfg->client.max_body_bytes &&
        p->content_length > c->cfg->client.max_body_bytes)
        status = 413;
    if (status) {
        c->x.has_body = false; /* never read: the connection closes */
        sl_reply(c, status, NULL, NULL, true);
        sl_conn_request_done(c);
        return;
    }
    llhttp_resume(p);
    if (!c->x.has_body) {
        /* Lets llhttp reach on_message_complete, which needs no further byte. */
        llhttp_execute(p, h->buf, 0);
        c->x.req_done = true;
    }

    sl_request_expose_head(c, true);
    c->state = SL_C_DECIDE;
    sl_exchange_decide(&c->x);
}

/* Returns true when the state moved on and the caller should look again. */
bool sl_request_read_head(struct sl_conn *c)
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
    /* HTTP/2 with prior knowledge (RFC 9113 3.3) opens with its preface, which llhttp
     * would take for a request line; only a connection's first bytes can be it. */
    if (c->first_request && !c->head_started && (c->cfg->client.http2 || c->rls)) {
        int preface = sl_h2_preface(in);
        if (preface == 0)
            return false;
        if (preface > 0) {
            sl_h2_take_over(c);
            return false;
        }
        /* The rate limit service speaks gRPC, which is HTTP/2 only. */
        if (c->rls) {
            sl_conn_kill(c);
            return false;
        }
    }
    if (!c->head_started) {
        c->head_started = true;
        c->x.t_start = sl_clock_mono_us();
        c->x.bytes_in = c->x.bytes_out = 0;
        c->x.head_bytes = 0;
        c->x.is_head = c->x.grpc = false;
        sl_worker_adopt_config(c->w);
        if (c->cfg != c->w->cfg) {
            sl_cfg_unref(c->cfg);
            c->cfg = sl_cfg_ref(c->w->cfg);
        }
        c->head.max = c->cfg->client.max_header_bytes;
        c->x.cfg = c->cfg;
    }

    llhttp_errno_t err;
    long n = sl_parse_run(&c->parser, in, avail, true, &err);
    int status = 0;
    if (n < 0) {
        status = c->head.overflow ? 431 : 400;
        sl_log_debug("bad request from %s: %s", c->peer_text, llhttp_errno_name(err));
    } else {
        evbuffer_drain(in, (size_t)n);
        c->x.bytes_in += (uint64_t)n;
        c->x.head_bytes += (uint64_t)n;
        if (c->x.head_bytes > c->cfg->client.max_header_bytes)
            status = 431;
    }
    if (status) {
        sl_reply(c, status, NULL, NULL, true);
        sl_conn_request_done(c);
        return false;
    }
    if (!c->head.head_done) {
        if (c->client_eof) {
            sl_conn_kill(c);
        } else if (!c->header_timer) {
            /* Only a head split over reads needs its own deadline; the first request's
             * runs from the accept. */
            c->header_timer = true;
            if (!c->first_request)
                sl_conn_arm_timer(c, c->cfg->client.header_timeout_ms);
        }
        return false;
    }
    start_request(c);
    return true;
}

bool sl_request_discard_body(struct sl_conn *c)
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
    c->x.bytes_in += (uint64_t)n;
    if (!c->head.msg_done) {
        if (c->client_eof)
            sl_conn_kill(c);
        return false;
    }
    c->x.req_done = true;
    sl_conn_request_done(c);
    return true;
}
