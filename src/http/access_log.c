/* The access log (SPEC section 9): one JSON object per line, collected in a per-worker
 * buffer and written when it fills or once a second, never one write per request. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "http.h"
#include "sluice/clock.h"
#include "sluice/json.h"
#include "sluice/log.h"
#include "sluice/route.h"

#define FLUSH_BYTES (64 * 1024)
/* Distinct headers and cookies logged under access_log_key_fields; a configuration naming
 * more is unusual, and the rest are left out (a replay reports them as not recorded). */
#define MAX_KEY_FIELDS 64

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

/* A header or cookie the configuration reads: a route's header condition, or a
 * header:/cookie: key source. */
struct key_field {
    enum sl_key_kind kind;
    const char *name;
    size_t len;
};

static size_t add_field(struct key_field *f, size_t n, enum sl_key_kind kind, const char *name)
{
    size_t len = strlen(name);

    for (size_t i = 0; i < n; i++)
        if (f[i].kind == kind && f[i].len == len &&
            (kind == SL_KEY_HEADER ? strncasecmp(f[i].name, name, len)
                                   : memcmp(f[i].name, name, len)) == 0)
            return n;
    if (n < MAX_KEY_FIELDS)
        f[n++] = (struct key_field){kind, name, len};
    return n;
}

static size_t collect_fields(const struct sl_config *cfg, struct key_field *f)
{
    size_t n = 0;

    for (size_t r = 0; r < cfg->nroutes; r++) {
        const struct sl_route *route = &cfg->routes[r];
        for (size_t i = 0; i < route->nheaders; i++)
            n = add_field(f, n, SL_KEY_HEADER, route->headers[i].name);
        for (size_t l = 0; l < route->nlimits; l++)
            for (size_t k = 0; k < route->limits[l].nkeys; k++) {
                const struct sl_key_source *src = &route->limits[l].keys[k];
                if (src->kind == SL_KEY_HEADER || src->kind == SL_KEY_COOKIE)
                    n = add_field(f, n, src->kind, src->name);
            }
    }
    return n;
}

/* access_log_key_fields: what `sluice replay` needs beyond the standard fields to match
 * routes and build keys, as "key_fields": {"host": ..., "header:NAME": ..., "cookie:NAME":
 * ...}, null where the request had none. The query is already in "path". A cookie's value
 * is taken by the key builder itself, so it is exactly what a cookie: key would hold. */
static void add_key_fields(struct evbuffer *b, const struct sl_config *cfg,
                           const struct sl_request *req)
{
    struct key_field f[MAX_KEY_FIELDS];
    size_t n = collect_fields(cfg, f);
    static const char lead[] = ",\"key_fields\":{\"host\":";
    const char *host;
    size_t host_len;

    evbuffer_add(b, lead, sizeof lead - 1);
    if (sl_request_authority(req, &host, &host_len))
        sl_json_append_string(b, host, host_len);
    else
        evbuffer_add(b, "null", 4);
    for (size_t i = 0; i < n; i++) {
        char name[300], value[512];
        int nlen =
            snprintf(name, sizeof name, "%s:%.*s", f[i].kind == SL_KEY_HEADER ? "header" : "cookie",
                     (int)f[i].len, f[i].name);
        if (nlen < 0 || (size_t)nlen >= sizeof name)
            continue;
        evbuffer_add(b, ",", 1);
        sl_json_append_string(b, name, (size_t)nlen);
        evbuffer_add(b, ":", 1);
        if (f[i].kind == SL_KEY_HEADER) {
            const struct sl_header *h = sl_request_header(req, f[i].name, f[i].len);
            if (h)
                sl_json_append_string(b, h->value, h->value_len);
            else
                evbuffer_add(b, "null", 4);
            continue;
        }
        struct sl_key_source src = {SL_KEY_COOKIE, (char *)f[i].name, f[i].len};
        struct sl_limit one = {.keys = &src, .nkeys = 1};
        struct sl_key_ctx ctx = {.req = req};
        ssize_t len = sl_key_build(&one, &ctx, value, sizeof value);
        char *big = NULL;
        if (len > (ssize_t)sizeof value && (big = malloc((size_t)len)))
            sl_key_build(&one, &ctx, big, (size_t)len);
        if (len < 0 || (len > (ssize_t)sizeof value && !big))
            evbuffer_add(b, "null", 4);
        else
            sl_json_append_string(b, big ? big : value, (size_t)len);
        free(big);
    }
    evbuffer_add(b, "}", 1);
}

void sl_access_log_request(struct sl_worker *w, const struct sl_exchange *x)
{
    struct evbuffer *b = w->log_buf;
    uint64_t now = sl_clock_real_us();
    int64_t sec = (int64_t)(now / 1000000);
    const struct sl_request *req = &x->req;

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
    const char *client = x->peer_text;
    if (x->has_verdict && x->verdict.client.family) {
        int fam = x->verdict.client.family;
        if (inet_ntop(fam, x->verdict.client.addr, ip, sizeof ip))
            client = ip;
    }
    sl_json_append_string(b, client, strlen(client));
    evbuffer_add(b, ",\"method\":", 10);
    sl_json_append_string(b, req->method, req->method_len);
    evbuffer_add(b, ",\"path\":", 8);
    sl_json_append_string(b, req->target, req->target_len);
    evbuffer_add_printf(b, ",\"status\":%d,\"route\":", x->status);
    const char *route = x->has_verdict && x->verdict.route ? x->verdict.route->name : "";
    sl_json_append_string(b, route, strlen(route));
    evbuffer_add(b, ",\"decision\":", 12);
    const char *decision = x->has_verdict ? sl_outcome_name(x->verdict.outcome) : "";
    sl_json_append_string(b, decision, strlen(decision));
    /* Only a request the engine saw has a complete head to read. Before the sizes and
     * durations: `sluice replay` stops reading a line at "bytes_in". */
    if (x->cfg->access_log_key_fields && x->has_verdict)
        add_key_fields(b, x->cfg, req);
    evbuffer_add_printf(b, ",\"bytes_in\":%" PRIu64 ",\"bytes_out\":%" PRIu64, x->bytes_in,
                        x->bytes_out);
    add_ms(b, "duration_ms", x->duration_us);
    if (x->t_upstream)
        add_ms(b, "upstream_ms", x->upstream_us);
    else
        evbuffer_add(b, ",\"upstream_ms\":null", 19);
    static const char *const protos[] = {
        [SL_PROTO_10] = ",\"proto\":\"1.0\"}\n",
        [SL_PROTO_11] = ",\"proto\":\"1.1\"}\n",
        [SL_PROTO_2] = ",\"proto\":\"2\"}\n",
    };
    evbuffer_add(b, protos[x->proto], strlen(protos[x->proto]));
    if (evbuffer_get_length(b) >= FLUSH_BYTES)
        sl_access_log_flush(w);
}
