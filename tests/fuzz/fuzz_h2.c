/* What an HTTP/2 client sends: frames after the connection preface (HEADERS and
 * CONTINUATION in any order, DATA against the windows, RST_STREAM, PING, SETTINGS,
 * WINDOW_UPDATE, GOAWAY, garbage) through sluice's own connection code, which hands the
 * connection to its HTTP/2 codec, on a worker with a limited route, a delayed one and an
 * unlimited one. Each stream goes to an HTTP/1.1 upstream that parses what sluice
 * forwards as a strict server would (support/strict_upstream.h). The client reads what
 * sluice sends as a strict HTTP/2 client would (support/h2_client.h): whole frames of
 * known types on the right streams, header blocks that HPACK decodes into a response head
 * (":status" first, lower case names, no connection-specific field), no DATA before the
 * head or after the end, and a body as long as its Content-Length. Any of these broken is
 * a finding, as is any sanitizer report or an access log line that is not JSON.
 *
 * Input: byte 0 chooses the upstream's answer, when it answers, whether the input carries
 * the preface itself, a half-close and the peer; byte 1 the size of the client's writes;
 * the rest is what the client sends after the preface and an empty SETTINGS frame (or
 * everything it sends, preface included, when byte 0 says so). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "support/h2_client.h"
#include "support/proxy.h"
#include "support/strict_upstream.h"

static const char config_yaml[] =
    "listen: 127.0.0.1:1\n"
    "upstream: {url: 'http://127.0.0.1:1'}\n"
    "access_log: /dev/null\n"
    "log_level: error\n"
    "client: {max_header_bytes: 2k, max_body_bytes: 4k, http2: true, "
    "http2_max_streams: 8}\n"
    "memory: {max_keys: 64}\n"
    "trusted_proxies: [10.0.0.0/8]\n"
    "routes:\n"
    "  - name: limited\n"
    "    match: {path_prefix: /limited}\n"
    "    limits:\n"
    "      - {name: ip, algorithm: token_bucket, rate: 2/1m, key: client_ip}\n"
    "      - {name: user, algorithm: fixed_window, rate: 3/1m, key: ['header:x-user', method]}\n"
    "  - name: slow\n"
    "    match: {path_prefix: /slow}\n"
    "    limits:\n"
    "      - {name: lb, algorithm: leaky_bucket, rate: 1/1h, burst: 1, key: client_ip}\n"
    "  - name: rest\n"
    "    match: {path_prefix: /}\n"
    "    limits: []\n";

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof preface - 1)
/* An empty SETTINGS frame: the client's half of the connection preface (RFC 9113 3.4). */
static const uint8_t empty_settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};

static struct sl_config *cfg;
/* More than a client's stream window (65535 bytes unless it opens it) and than sluice
 * keeps of a response body for a stream (SL_HIGH_WATER): past it the upstream is not read
 * until the client takes some. */
#define BIG_BODY (300 * 1024)
static char big_answer[BIG_BODY + 64];

/* What the upstream answers each request with (bits 0-2 of byte 0). */
static const char *const answers[] = {
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok",
    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n"
    "3\r\nabc\r\n0\r\nX-T: 1\r\n\r\n",
    "HTTP/1.1 200 OK\r\nConnection: close, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: 5\r\n\r\nuntil eof",
    "HTTP/1.1 204 No Content\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\n",
    "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 404 Not Found\r\n"
    "Content-Length: 3\r\n\r\nno!",
    NULL,                                               /* never answers */
    big_answer,                                         /* filled in by LLVMFuzzerInitialize */
    "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", /* and closes: cut short */
};

struct run {
    unsigned answer;
    bool early; /* answer at the end of the head, before the body */
};

static void answer(struct fz_upstream *up, bool is_head, bool upgrade)
{
    const struct run *r = up->proxy->data;
    const char *text = answers[r->answer];

    (void)upgrade; /* an HTTP/2 client has no way to ask for one */
    if (!text)
        return;
    size_t len = strlen(text);
    if (is_head && r->answer != 7) {
        /* The same heads without the body, as HEAD asks. */
        const char *end = strstr(text, "\r\n\r\n");
        if (r->answer == 4)
            end = strstr(end + 4, "\r\n\r\n");
        len = (size_t)(end + 4 - text);
    }
    fz_upstream_send(up, text, len);
    if (r->answer == 2 || r->answer == 7)
        fz_upstream_close(up);
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

/* ---- the run ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    size_t n =
        (size_t)sprintf(big_answer, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", BIG_BODY);
    memset(big_answer + n, 'x', BIG_BODY);
    big_answer[n + BIG_BODY] = '\0';
    cfg = fz_proxy_setup(config_yaml);
    return 0;
}

/* Peers: an untrusted client (v4 and v6), a trusted proxy, a unix socket. */
static socklen_t make_peer(unsigned kind, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (kind == 1) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
        s6->sin6_family = AF_INET6;
        inet_pton(AF_INET6, "2001:db8::7", &s6->sin6_addr);
        s6->sin6_port = htons(40000);
        return sizeof *s6;
    }
    if (kind == 3) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        sun->sun_family = AF_UNIX;
        return sizeof(sa_family_t);
    }
    struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, kind == 0 ? "198.51.100.7" : "10.0.0.1", &s4->sin_addr);
    s4->sin_port = htons(40000);
    return sizeof *s4;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    struct run r = {.answer = data[0] & 7, .early = (data[0] & 0x08) != 0};
    bool own_preface = (data[0] & 0x10) != 0, half_close = (data[0] & 0x20) != 0;
    struct sockaddr_storage peer;
    socklen_t peer_len = make_peer(data[0] >> 6, &peer);
    size_t piece = data[1] & 0x80 ? 0 : (size_t)data[1] + 1;
    const uint8_t *frames = data + 2;
    size_t frames_len = size - 2;
    struct fz_proxy p;

    /* At most 64 writes, each followed by a run of the loop: a long input in small pieces
     * would cost more time than it finds. */
    if (piece && frames_len / piece > 64)
        piece = frames_len / 64 + 1;
    fz_strict_begin(&calls);
    fz_proxy_start(&p, cfg, &fz_strict_hooks, (struct sockaddr *)&peer, peer_len);
    p.data = &r;
    if (!own_preface) {
        fz_client_send(&p, preface, PREFACE_LEN, piece);
        fz_client_send(&p, empty_settings, sizeof empty_settings, piece);
    }
    fz_client_send(&p, frames, frames_len, piece);
    if (half_close) {
        fz_client_shutdown(&p);
        fz_proxy_run(&p);
    }
    /* Only a connection that opened with the preface speaks HTTP/2; any other is HTTP/1's,
     * which fuzz_request checks. */
    if (!own_preface || (frames_len >= PREFACE_LEN && memcmp(frames, preface, PREFACE_LEN) == 0))
        fz_h2_client_check(p.to_client);
    fz_proxy_finish(&p);
    return 0;
}
