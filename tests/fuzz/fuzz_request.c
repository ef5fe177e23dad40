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
#include <sys/un.h>

#include "support/proxy.h"
#include "support/strict_upstream.h"

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

static void answer(struct fz_upstream *up, bool is_head, bool upgrade)
{
    const struct run *r = up->proxy->data;
    unsigned a = r->answer;

    if (a == 6 && !upgrade)
        a = 0; /* 101 only to an upgrade request, else sluice rightly refuses it */
    const char *text = answers[a];
    size_t len = strlen(text);
    if (is_head && a != 6) {
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

static void on_head(struct fz_upstream *up, bool is_head, bool upgrade)
{
    const struct run *r = up->proxy->data;
    if (r->early)
        answer(up, is_head, upgrade);
}

static void on_end(struct fz_upstream *up, bool is_head, bool upgrade)
{
    const struct run *r = up->proxy->data;
    if (!r->early)
        answer(up, is_head, upgrade);
}

static const struct fz_strict_calls calls = {on_head, on_end};

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

    fz_strict_begin(&calls);
    fz_proxy_start(&p, cfg, &fz_strict_hooks, (struct sockaddr *)&peer, peer_len);
    p.data = &r;
    fz_client_send(&p, data + 2, size - 2, piece);
    if (half_close) {
        fz_client_shutdown(&p);
        fz_proxy_run(&p);
    }
    fz_proxy_finish(&p);
    return 0;
}
