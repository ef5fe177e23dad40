/* The access log (SPEC section 9): one JSON object per line, collected in a per-worker
 * buffer and written when it fills or once a second, never one write per request. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "sluice/clock.h"
#include "sluice/json.h"
#include "sluice/log.h"

#define FLUSH_BYTES (64 * 1024)

static void flush_timer_cb(evutil_socket_t fd, short what, void *arg)
{
    sl_access_log_flush(arg);
}

int sl_access_log_init(struct sl_worker *w)
{
    struct timeval second = {1, 0};
    w->log_buf = evbuffer_new();
    w->log_timer = event_new(w->base, -1, EV_PERSIST, flush_timer_cb, w);
    if (!w->log_buf || !w->log_timer)
        return -1;
    w->log_sec = -1;
    return event_add(w->log_timer, &second);
}

void sl_access_log_deinit(struct sl_worker *w)
{
    if (w->log_buf)
        sl_access_log_flush(w);
    if (w->log_timer)
        event_free(w->log_timer);
    if (w->log_buf)
        evbuffer_free(w->log_buf);
    w->log_timer = NULL;
    w->log_buf = NULL;
}

void sl_access_log_flush(struct sl_worker *w)
{
    int fd = w->server->access_fd;
    while (evbuffer_get_length(w->log_buf) > 0) {
        if (fd < 0 || evbuffer_write(w->log_buf, fd) < 0) {
            if (fd >= 0 && errno == EINTR)
                continue;
            /* A full disk or a closed pipe must not stall the proxy: drop the lines. */
            evbuffer_drain(w->log_buf, evbuffer_get_length(w->log_buf));
        }
    }
}

static void add_ms(struct evbuffer *b, const char *key, uint64_t us)
{
    evbuffer_add_printf(b, ",\"%s\":%" PRIu64 ".%03" PRIu64, key, us / 1000, us % 1000);
}

void sl_access_log_request(struct sl_worker *w, const struct sl_conn *c)
{
    struct evbuffer *b = w->log_buf;
    uint64_t now = sl_clock_real_us();
    int64_t sec = (int64_t)(now / 1000000);
    const struct sl_head *h = &c->head;

    if (w->server->access_fd < 0)
        return;
    if (sec != w->log_sec) {
        time_t t = (time_t)sec;
        struct tm tm;
        gmtime_r(&t, &tm);
        strftime(w->log_ts, sizeof w->log_ts, "%Y-%m-%dT%H:%M:%S.", &tm);
        w->log_sec = sec;
    }
    evbuffer_add_printf(b, "{\"ts\":\"%s%03uZ\",\"client\":", w->log_ts,
                        (unsigned)(now / 1000 % 1000));
    char ip[48];
    const char *client = c->peer_text;
    if (c->has_verdict && c->verdict.client.family) {
        int fam = c->verdict.client.family;
        if (inet_ntop(fam, c->verdict.client.addr, ip, sizeof ip))
            client = ip;
    }
    sl_json_append_string(b, client, strlen(client));
    /* A request refused in its first bytes has no head text at all. */
    const char *text = h->buf ? h->buf : "";
    evbuffer_add(b, ",\"method\":", 10);
    sl_json_append_string(b, text + h->method_off, h->method_len);
    evbuffer_add(b, ",\"path\":", 8);
    sl_json_append_string(b, text + h->url_off, h->url_len);
    evbuffer_add_printf(b, ",\"status\":%d,\"route\":", c->status);
    const char *route = c->has_verdict && c->verdict.route ? c->verdict.route->name : "";
    sl_json_append_string(b, route, strlen(route));
    evbuffer_add(b, ",\"decision\":", 12);
    const char *decision = c->has_verdict ? sl_outcome_name(c->verdict.outcome) : "";
    sl_json_append_string(b, decision, strlen(decision));
    evbuffer_add_printf(b, ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64, c->bytes_in,
                        c->bytes_out);
    add_ms(b, "duration_ms", c->duration_us);
    if (c->t_upstream)
        add_ms(b, "upstream_ms", c->upstream_us);
    else
        evbuffer_add(b, ",\"upstream_ms\":null", 19);
    evbuffer_add(b, "}\n", 2);
    if (evbuffer_get_length(b) >= FLUSH_BYTES)
        sl_access_log_flush(w);
}
