/* What a client sends: request heads and bodies (pipelined, split across reads, cut short)
 * through sluice's own connection code, on a worker whose routes use every match and key
 * kind, trusted proxies and exemptions. The upstream parses what sluice forwards as a
 * strict HTTP/1.1 server would: a stream it cannot parse, a hop-by-hop field, a second Host
 * or X-Forwarded-For, or a Transfer-Encoding other than chunked is a finding (a smuggling
 * vector), as is any sanitizer report or an access log line that is not JSON.
 *
 * Input: byte 0 chooses the peer, the upstream's answers and how the client behaves;
 * byte 1 the size of the client's writes; the rest is what the client sends. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#include "support/proxy.h"

static const char config_yaml[] =
    "listen: 127.0.0.1:1\n"
    "upstream: {url: 'http://127.0.0.1:1'}\n"
    "access_log: /dev/null\n"
    "log_level: error\n"
    "client: {max_header_bytes: 2k, max_body_bytes: 1k}\n"
    "memory: {max_keys: 64}\n"
    "trusted_proxies: [10.0.0.0/8, '2001:db8::/32']\n"
    "exempt: [192.0.2.99/32]\n"
    "routes:\n"
    "  - name: login\n"
    "    match: {path: /api/login, methods: [POST, PUT]}\n"
    "    limits:\n"
    "      - {name: ip, algorithm: sliding_window, rate: 2/1m, key: client_ip}\n"
    "      - {name: user, algorithm: fixed_window, rate: 3/1m, key: ['header:X-User', method]}\n"
    "  - name: users\n"
    "    match: {path_regex: '^/users/[0-9]+(/.*)?$', host: api.example.com}\n"
    "    limits:\n"
    "      - {name: q, algorithm: token_bucket, rate: 2/1m, burst: 3, key: 'query:id'}\n"
    "      - {name: c, algorithm: sliding_window_counter, rate: 2/1m, key: 'cookie:session'}\n"
    "  - name: v2\n"
    "    match: {path_prefix: /v2/, headers: {X-Api-Version: '2'}}\n"
    "    shadow: true\n"
    "    limits:\n"
    "      - {name: all, algorithm: fixed_window, rate: 1/1h, key: [route, host, path]}\n"
    "  - name: slow\n"
    "    match: {path_prefix: /slow}\n"
    "    limits:\n"
    "      - {name: lb, algorithm: leaky_bucket, rate: 1/1h, burst: 1, key: client_ip}\n"
    "      - {name: nd, algorithm: leaky_bucket, rate: 2/1h, burst: 1, delay: false, "
    "key: path}\n"
    "  - name: rest\n"
    "    match: {path_prefix: /}\n"
    "    limits:\n"
    "      - {name: ip, algorithm: token_bucket, rate: 4/1m, key: client_ip}\n";

static struct sl_config *cfg;

/* What the upstream answers each request with (bits 2-4 of byte 0). */
static const char *const answers[] = {
    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nok", /* and closes */
    "HTTP/1.1 204 No Content\r\n\r\n",
    "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n",
    "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
};

struct run {
    unsigned answer;
    bool early; /* answer at the end of the head, before the body */
};

struct upstream_state {
    bool in_head;
    bool is_head;
    bool upgrade;
    unsigned hosts, xffs, xfps;
    const char *name;
    size_t name_len;
    char name_buf[64];
};

static struct upstream_state states[FZ_MAX_UPSTREAMS];

static struct upstream_state *state_of(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    return up->data;
}

static bool name_is(const struct upstream_state *s, const char *lit)
{
    return s->name_len == strlen(lit) && strncasecmp(s->name_buf, lit, s->name_len) == 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct upstream_state *s = state_of(p);
    memset(s, 0, sizeof *s);
    s->in_head = true;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct upstream_state *s = state_of(p);
    size_t room = sizeof s->name_buf - s->name_len;
    memcpy(s->name_buf + s->name_len, at, len < room ? len : room);
    s->name_len += len < room ? len : room;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct upstream_state *s = state_of(p);
    if (!s->in_head)
        return 0; /* a trailer, relayed inside the chunked body */
    if (name_is(s, "Transfer-Encoding") && (len != 7 || strncasecmp(at, "chunked", 7) != 0))
        fz_fail("sluice forwarded Transfer-Encoding: %.*s", (int)len, at);
    if (name_is(s, "Connection") && (len != 7 || strncasecmp(at, "upgrade", 7) != 0))
        fz_fail("sluice forwarded Connection: %.*s", (int)len, at);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct upstream_state *s = state_of(p);
    if (s->in_head) {
        if (fz_hop_by_hop(s->name_buf, s->name_len))
            fz_fail("sluice forwarded the hop-by-hop field %.*s", (int)s->name_len, s->name_buf);
        s->hosts += name_is(s, "Host");
        s->xffs += name_is(s, "X-Forwarded-For");
        s->xfps += name_is(s, "X-Forwarded-Proto");
    }
    s->name_len = 0;
    return 0;
}

static void answer(struct fz_upstream *up)
{
    const struct run *r = up->proxy->data;
    struct upstream_state *s = up->data;
    unsigned a = r->answer;

    if (a == 6 && !s->upgrade)
        a = 0; /* 101 only to an upgrade request, else sluice rightly refuses it */
    const char *text = answers[a];
    size_t len = strlen(text);
    if (s->is_head && a != 6) {
        /* The same heads without the body, as HEAD asks. */
        const char *end = strstr(text, "\r\n\r\n");
        if (a == 4)
            end = strstr(end + 4, "\r\n\r\n");
        len = (size_t)(end + 4 - text);
    }
    fz_upstream_send(up, text, len);
    if (a == 2 || a == 7)
        fz_upstream_close(up);
    if (a == 6)
        up->tunnel = true;
}

static int on_headers_complete(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    struct upstream_state *s = up->data;
    const struct run *r = up->proxy->data;

    s->in_head = false;
    s->is_head = llhttp_get_method(p) == HTTP_HEAD;
    s->upgrade = llhttp_get_upgrade(p);
    up->requests++;
    if (s->hosts > 1)
        fz_fail("sluice forwarded %u Host fields", s->hosts);
    if (s->xffs > 1 || s->xfps != 1)
        fz_fail("sluice forwarded %u X-Forwarded-For and %u X-Forwarded-Proto fields", s->xffs,
                s->xfps);
    if (r->early)
        answer(up);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    const struct run *r = up->proxy->data;
    if (!r->early)
        answer(up);
    return 0;
}

static const llhttp_settings_t upstream_settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

static void upstream_data(struct fz_upstream *up, const char *bytes, size_t len)
{
    if (!up->data)
        up->data = &states[up - up->proxy->up];
    while (!up->tunnel && len > 0) {
        llhttp_errno_t err = llhttp_execute(&up->parser, bytes, len);
        if (err == HPE_OK)
            return;
        if (err != HPE_PAUSED_UPGRADE)
            fz_fail("the upstream cannot parse what sluice forwarded: %s (%s)",
                    llhttp_errno_name(err), llhttp_get_error_reason(&up->parser));
        /* The rest is the upgraded protocol, or, when the upgrade was declined, the next
         * request. */
        const char *pos = llhttp_get_error_pos(&up->parser);
        len -= (size_t)(pos - bytes);
        bytes = pos;
        llhttp_init(&up->parser, HTTP_REQUEST, &upstream_settings);
        up->parser.data = up;
    }
}

static const struct fz_hooks hooks = {upstream_data, &upstream_settings};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cfg = fz_proxy_setup(config_yaml);
    return 0;
}

/* Peers: a trusted proxy (v4 and v6), an untrusted client, an exempt one, a unix socket. */
static socklen_t make_peer(unsigned kind, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (kind == 1 || kind == 4) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, kind == 1 ? "2001:db8::7" : "::ffff:10.1.2.3", &s6->sin6_addr);
        s6->sin6_port = htons(40000);
        return sizeof *s6;
    }
    if (kind == 5) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        sun->sun_family = AF_UNIX;
        return sizeof(sa_family_t);
    }
    static const char *const v4[] = {"10.0.0.1", "", "198.51.100.7", "192.0.2.99", "", ""};
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, v4[kind], &s4->sin_addr);
    s4->sin_port = htons(40000);
    return sizeof *s4;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct run r = {.answer = (data[0] >> 2) & 7, .early = (data[0] & 0x40) != 0};
    struct sockaddr_storage peer;
    socklen_t peer_len =
        make_peer((data[0] & 3) + ((data[0] & 0x80) && (data[0] & 3) < 2 ? 4 : 0), &peer);
    size_t piece = data[1] & 0x80 ? 0 : (size_t)data[1] + 1;
    bool half_close = (data[1] & 0x80) && (data[1] & 1);
    struct fz_proxy p;

    memset(states, 0, sizeof states);
    fz_proxy_start(&p, cfg, &hooks, (struct sockaddr *)&peer, peer_len);
    p.data = &r;
    fz_client_send(&p, data + 2, size - 2, piece);
    if (half_close) {
        fz_client_shutdown(&p);
        fz_proxy_run(&p);
    }
    fz_proxy_finish(&p);
    return 0;
}
