/* What an HTTP/2 client sends: frames after the connection preface (HEADERS and
 * CONTINUATION in any order, DATA against the windows, RST_STREAM, PING, SETTINGS,
 * WINDOW_UPDATE, GOAWAY, garbage) through sluice's own connection code, which hands the
 * connection to its HTTP/2 codec, on a worker with a limited route, a delayed one and an
 * unlimited one. Each stream goes to an HTTP/1.1 upstream that parses what sluice
 * forwards as a strict server would (support/strict_upstream.h). The client reads what
 * sluice sends as a strict HTTP/2 client would: whole frames of known types on the right
 * streams, header blocks that HPACK decodes into a response head (":status" first, lower
 * case names, no connection-specific field), no DATA before the head or after the end,
 * and a body as long as its Content-Length. Any of these broken is a finding, as is any
 * sanitizer report or an access log line that is not JSON.
 *
 * Input: byte 0 chooses the upstream's answer, when it answers, whether the input carries
 * the preface itself, a half-close and the peer; byte 1 the size of the client's writes;
 * the rest is what the client sends after the preface and an empty SETTINGS frame (or
 * everything it sends, preface included, when byte 0 says so). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

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

/* ---- the client: what sluice sends, read as a strict HTTP/2 client would ---- */

enum {
    F_DATA,
    F_HEADERS,
    F_PRIORITY,
    F_RST_STREAM,
    F_SETTINGS,
    F_PUSH_PROMISE,
    F_PING,
    F_GOAWAY,
    F_WINDOW_UPDATE,
    F_CONTINUATION,
};
#define FLAG_END_STREAM 0x1
#define FLAG_ACK 0x1
#define FLAG_END_HEADERS 0x4
#define FLAG_PADDED 0x8
#define FLAG_PRIORITY 0x20

/* What the client knows of one stream from sluice's frames. */
struct peer_stream {
    uint32_t id;
    bool final;             /* a final (non-1xx) response head came */
    bool ended;             /* END_STREAM came */
    bool reset;             /* RST_STREAM came */
    int64_t content_length; /* -1: none */
    uint64_t data;
};

#define MAX_PEER_STREAMS 256

struct reader {
    nghttp2_hd_inflater *hpack;
    struct peer_stream streams[MAX_PEER_STREAMS];
    size_t nstreams;
    /* The header block being read (HEADERS, then CONTINUATION up to END_HEADERS). */
    uint8_t *block;
    size_t block_len, block_cap;
    uint32_t block_stream;
    bool block_end_stream;
    bool in_block;
};

static struct peer_stream *peer_stream(struct reader *rd, uint32_t id)
{
    for (size_t i = 0; i < rd->nstreams; i++)
        if (rd->streams[i].id == id)
            return &rd->streams[i];
    if (rd->nstreams == MAX_PEER_STREAMS)
        return NULL; /* not followed: a client opens at most 2^30 streams, the table less */
    struct peer_stream *s = &rd->streams[rd->nstreams++];
    memset(s, 0, sizeof *s);
    s->id = id;
    s->content_length = -1;
    return s;
}

static bool connection_specific(const uint8_t *name, size_t len)
{
    static const char *const names[] = {"connection", "keep-alive",        "proxy-connection",
                                        "te",         "transfer-encoding", "upgrade"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (len == strlen(names[i]) && memcmp(name, names[i], len) == 0)
            return true;
    return false;
}

/* Decodes one complete header block and checks it as a response head or trailers. */
static void header_block(struct reader *rd)
{
    struct peer_stream *s = peer_stream(rd, rd->block_stream);
    const uint8_t *in = rd->block;
    size_t left = rd->block_len, nfields = 0;
    bool trailers = s && s->final, informational = false;
    int64_t content_length = -1;

    for (;;) {
        nghttp2_nv nv;
        int flags = 0;
        ssize_t n = nghttp2_hd_inflate_hd2(rd->hpack, &nv, &flags, in, left, 1);
        if (n < 0)
            fz_fail("sluice sent a header block HPACK cannot decode: %s", nghttp2_strerror((int)n));
        in += n;
        left -= (size_t)n;
        if (flags & NGHTTP2_HD_INFLATE_FINAL) {
            nghttp2_hd_inflate_end_headers(rd->hpack);
            break;
        }
        if (!(flags & NGHTTP2_HD_INFLATE_EMIT)) {
            if (n == 0)
                fz_fail("sluice sent a header block that ends inside a field");
            continue;
        }
        if (nv.namelen == 0)
            fz_fail("sluice sent a field with an empty name");
        for (size_t i = 0; i < nv.namelen; i++)
            if (nv.name[i] >= 'A' && nv.name[i] <= 'Z')
                fz_fail("sluice sent the field name %.*s, not lower case", (int)nv.namelen,
                        nv.name);
        if (nv.name[0] == ':') {
            if (nfields > 0 || trailers || nv.namelen != 7 || memcmp(nv.name, ":status", 7) ||
                nv.valuelen != 3 || nv.value[0] < '1' || nv.value[0] > '5' || nv.value[1] < '0' ||
                nv.value[1] > '9' || nv.value[2] < '0' || nv.value[2] > '9')
                fz_fail("sluice sent the pseudo-header %.*s: %.*s out of place", (int)nv.namelen,
                        nv.name, (int)nv.valuelen, nv.value);
            informational = nv.value[0] == '1';
        } else if (nfields == 0 && !trailers) {
            fz_fail("sluice sent a response head without :status first (%.*s)", (int)nv.namelen,
                    nv.name);
        } else if (connection_specific(nv.name, nv.namelen)) {
            fz_fail("sluice sent the connection-specific field %.*s", (int)nv.namelen, nv.name);
        } else if (nv.namelen == 14 && memcmp(nv.name, "content-length", 14) == 0) {
            content_length = 0;
            for (size_t i = 0; i < nv.valuelen; i++) {
                if (nv.value[i] < '0' || nv.value[i] > '9' || i > 15)
                    fz_fail("sluice sent content-length: %.*s", (int)nv.valuelen, nv.value);
                content_length = content_length * 10 + (nv.value[i] - '0');
            }
        }
        nfields++;
    }
    if (nfields == 0 && !trailers)
        fz_fail("sluice sent an empty response head on stream %u", rd->block_stream);
    if (trailers && !rd->block_end_stream)
        fz_fail("sluice sent trailers without END_STREAM on stream %u", rd->block_stream);
    if (informational && rd->block_end_stream)
        fz_fail("sluice ended stream %u with a 1xx response", rd->block_stream);
    if (s && !trailers && !informational) {
        s->final = true;
        s->content_length = content_length;
    }
}

static void end_stream(struct peer_stream *s)
{
    if (!s)
        return;
    /* A response to HEAD, or a 204 or 304, has a Content-Length and no body. */
    if (s->content_length >= 0 && s->data != 0 && s->data != (uint64_t)s->content_length)
        fz_fail("sluice ended stream %u after %llu bytes of a body of %lld", s->id,
                (unsigned long long)s->data, (long long)s->content_length);
    s->ended = true;
}

static void add_block(struct reader *rd, const uint8_t *p, size_t n)
{
    if (rd->block_len + n > rd->block_cap) {
        size_t cap = rd->block_cap ? rd->block_cap : 1024;
        while (cap < rd->block_len + n)
            cap *= 2;
        rd->block = realloc(rd->block, cap);
        if (!rd->block)
            fz_fail("out of memory");
        rd->block_cap = cap;
    }
    memcpy(rd->block + rd->block_len, p, n);
    rd->block_len += n;
}

/* One frame of sluice's; `p` is its payload. */
static void frame(struct reader *rd, uint8_t type, uint8_t flags, uint32_t id, const uint8_t *p,
                  size_t len)
{
    bool on_stream = type == F_DATA || type == F_HEADERS || type == F_RST_STREAM ||
                     type == F_CONTINUATION || type == F_PRIORITY;

    if (type > F_CONTINUATION || type == F_PUSH_PROMISE)
        fz_fail("sluice sent a frame of type %u", type);
    /* WINDOW_UPDATE is the one frame both on the connection and on a stream. */
    if ((type != F_WINDOW_UPDATE && on_stream != (id != 0)) || (id != 0 && !(id & 1)))
        fz_fail("sluice sent a frame of type %u on stream %u", type, id);
    if (rd->in_block != (type == F_CONTINUATION) || (rd->in_block && id != rd->block_stream))
        fz_fail("sluice sent a frame of type %u on stream %u inside a header block", type, id);
    if ((type == F_SETTINGS && len % 6) || (type == F_PING && len != 8) ||
        (type == F_GOAWAY && len < 8) || (type == F_RST_STREAM && len != 4) ||
        (type == F_WINDOW_UPDATE && len != 4) || (type == F_PRIORITY && len != 5))
        fz_fail("sluice sent a frame of type %u with %zu bytes", type, len);

    struct peer_stream *s = on_stream ? peer_stream(rd, id) : NULL;
    if (s && (s->ended || s->reset) && type != F_RST_STREAM && type != F_PRIORITY)
        fz_fail("sluice sent a frame of type %u on stream %u after it ended", type, id);
    if ((type == F_DATA || type == F_HEADERS) && (flags & FLAG_PADDED)) {
        if (len < 1 || p[0] >= len)
            fz_fail("sluice sent a frame with more padding than payload");
        len -= 1u + p[0];
        p++;
    }
    switch (type) {
    case F_DATA:
        if (s && !s->final)
            fz_fail("sluice sent DATA on stream %u before a final response head", id);
        if (s)
            s->data += len;
        if (flags & FLAG_END_STREAM)
            end_stream(s);
        break;
    case F_HEADERS:
        if (flags & FLAG_PRIORITY) {
            if (len < 5)
                fz_fail("sluice sent HEADERS too short for its priority");
            p += 5;
            len -= 5;
        }
        rd->block_len = 0;
        rd->block_stream = id;
        rd->block_end_stream = (flags & FLAG_END_STREAM) != 0;
        /* fall through */
    case F_CONTINUATION:
        add_block(rd, p, len);
        rd->in_block = !(flags & FLAG_END_HEADERS);
        if (!rd->in_block) {
            header_block(rd);
            if (rd->block_end_stream)
                end_stream(peer_stream(rd, rd->block_stream));
        }
        break;
    case F_RST_STREAM:
        if (s)
            s->reset = true;
        break;
    default:
        break;
    }
}

/* Reads every frame sluice sent to the client; the last may be cut short by the end of
 * the connection. */
static void read_frames(struct evbuffer *from_sluice)
{
    struct reader rd = {0};
    size_t size = evbuffer_get_length(from_sluice), off = 0;
    const uint8_t *b = evbuffer_pullup(from_sluice, -1);

    if (size == 0)
        return;
    if (nghttp2_hd_inflate_new(&rd.hpack) != 0)
        fz_fail("out of memory");
    if (size < 9 || b[3] != F_SETTINGS || (b[4] & FLAG_ACK))
        fz_fail("sluice's first frame is not SETTINGS: %s", fz_printable(b, size < 9 ? size : 9));
    while (size - off >= 9) {
        uint32_t len = (uint32_t)b[off] << 16 | (uint32_t)b[off + 1] << 8 | b[off + 2];
        uint32_t id = ((uint32_t)b[off + 5] << 24 | (uint32_t)b[off + 6] << 16 |
                       (uint32_t)b[off + 7] << 8 | b[off + 8]) &
                      0x7fffffffu;
        if (size - off - 9 < len)
            break;
        frame(&rd, b[off + 3], b[off + 4], id, b + off + 9, len);
        off += 9 + len;
    }
    nghttp2_hd_inflate_del(rd.hpack);
    free(rd.block);
}

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
        read_frames(p.to_client);
    fz_proxy_finish(&p);
    return 0;
}
