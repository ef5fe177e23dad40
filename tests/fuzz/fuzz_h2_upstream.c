/* What an HTTP/2 upstream (h2c://) sends: frames after its SETTINGS (response heads,
 * interim 1xx, trailers and trailers-only in HEADERS and CONTINUATION, DATA against the
 * windows, RST_STREAM and REFUSED_STREAM, GOAWAY, PING, SETTINGS, WINDOW_UPDATE, garbage,
 * an early close) through sluice's HTTP/2 upstream codec to a client. The client sends a
 * few requests through sluice's own connection code, over HTTP/1.1 (GET, POST with a
 * Content-Length or chunked, HEAD, pipelined) or HTTP/2 (support/h2_client.h checks what
 * it reads); over HTTP/1.1 what it reads must parse with llhttp as a strict client would
 * (status line, framing, no hop-by-hop field, nothing after Connection: close). What sluice
 * sends the upstream is checked as a strict HTTP/2 server would (support/h2_server.h). Any
 * of these broken is a finding, as is any sanitizer report or an access log line that is
 * not JSON.
 *
 * Input: byte 0 chooses the client's requests and protocol, whether the input carries the
 * upstream's SETTINGS, a response head made here for stream 1, the upstream's close and
 * the client's half-close; byte 1 the size of the upstream's writes; byte 2 the head made
 * here; the rest is what the upstream sends on sluice's first connection, after an empty
 * SETTINGS frame and its acknowledgement (or everything, when byte 0 says so). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "support/h2_client.h"
#include "support/h2_server.h"
#include "support/proxy.h"

static const char config_yaml[] =
    "listen: 127.0.0.1:1\n"
    "upstream: {url: 'h2c://127.0.0.1:1'}\n"
    "access_log: /dev/null\n"
    "log_level: error\n"
    "client: {max_header_bytes: 2k, max_body_bytes: 64k, http2: true, "
    "http2_max_streams: 8}\n"
    "memory: {max_keys: 64}\n"
    "routes:\n"
    "  - name: limited\n"
    "    match: {path_prefix: /limited}\n"
    "    limits:\n"
    "      - {name: ip, algorithm: token_bucket, rate: 100/1m, key: client_ip}\n"
    "  - name: rest\n"
    "    match: {path_prefix: /}\n"
    "    limits: []\n";

static struct sl_config *cfg;

/* ---- the HTTP/1.1 client ---- */

/* The requests (bits 0-2 of byte 0) and their methods in order: a response to HEAD has no
 * body. */
static const char *const requests[] = {
    "GET /limited/a HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /limited/up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTE: trailers\r\n\r\n"
    "5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n",
    "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /1 HTTP/1.1\r\nHost: x\r\n\r\n"
    "POST /2 HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi"
    "POST /3 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhi\r\n0\r\n\r\n"
    "HEAD /4 HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n",
    "POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
};
static const char *const methods[] = {"G", "P", "P", "H", "GH", "GPPH", "GG", "P"};

struct h1_check {
    const char *methods;
    size_t responses; /* final responses parsed */
    bool in_head;
    char name[64];
    size_t name_len;
};

static int cl_message_begin(llhttp_t *p)
{
    struct h1_check *k = p->data;
    k->in_head = true;
    k->name_len = 0;
    return 0;
}

static int cl_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct h1_check *k = p->data;
    size_t room = sizeof k->name - k->name_len;
    memcpy(k->name + k->name_len, at, len < room ? len : room);
    k->name_len += len < room ? len : room;
    return 0;
}

static int cl_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct h1_check *k = p->data;
    if (k->in_head && k->name_len == 10 && strncasecmp(k->name, "Connection", 10) == 0 &&
        !(len == 5 && strncasecmp(at, "close", 5) == 0) &&
        !(len == 10 && strncasecmp(at, "keep-alive", 10) == 0))
        fz_fail("sluice sent the client Connection: %.*s", (int)len, at);
    return 0;
}

static int cl_header_value_complete(llhttp_t *p)
{
    struct h1_check *k = p->data;
    if (k->in_head && fz_hop_by_hop(k->name, k->name_len))
        fz_fail("sluice relayed the hop-by-hop field %.*s", (int)k->name_len, k->name);
    k->name_len = 0;
    return 0;
}

static int cl_headers_complete(llhttp_t *p)
{
    struct h1_check *k = p->data;
    k->in_head = false;
    if (p->status_code < 100 || p->status_code > 599 || p->status_code == 101)
        fz_fail("sluice sent the client status %d", p->status_code);
    /* RFC 9112 6.3: a 1xx, 204 or 304, or a response to HEAD, ends with its head. */
    if (p->status_code < 200 || p->status_code == 204 || p->status_code == 304)
        return 1;
    return k->responses < strlen(k->methods) && k->methods[k->responses] == 'H' ? 1 : 0;
}

static int cl_message_complete(llhttp_t *p)
{
    struct h1_check *k = p->data;
    if (p->status_code >= 200)
        k->responses++;
    return 0;
}

static const llhttp_settings_t client_settings = {
    .on_message_begin = cl_message_begin,
    .on_header_field = cl_header_field,
    .on_header_value = cl_header_value,
    .on_header_value_complete = cl_header_value_complete,
    .on_headers_complete = cl_headers_complete,
    .on_message_complete = cl_message_complete,
};

/* Parses everything sluice sent the client; llhttp itself refuses bytes after a response
 * that said Connection: close, and trailers outside a chunked body. */
static void h1_check(struct evbuffer *from_sluice, const char *expected)
{
    struct h1_check k = {.methods = expected};
    llhttp_t parser;
    size_t len = evbuffer_get_length(from_sluice);
    const char *b = (const char *)evbuffer_pullup(from_sluice, -1);

    if (len == 0)
        return;
    llhttp_init(&parser, HTTP_RESPONSE, &client_settings);
    parser.data = &k;
    llhttp_errno_t err = llhttp_execute(&parser, b, len);
    if (err != HPE_OK)
        fz_fail("the client cannot parse what sluice sent: %s (%s) at byte %zu of:\n%s",
                llhttp_errno_name(err), llhttp_get_error_reason(&parser),
                (size_t)(llhttp_get_error_pos(&parser) - b), fz_printable(b, len));
    if (k.responses > strlen(expected))
        fz_fail("sluice sent %zu responses to %zu requests", k.responses, strlen(expected));
}

/* ---- the HTTP/2 client and the upstream's head, made with HPACK ---- */

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define PREFACE_LEN (sizeof preface - 1)
#define NV(n, v)                                                                                   \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, 0                            \
    }

/* The client's streams 1, 3, 5 and 7 after its preface and SETTINGS; the first 1 to 4 go
 * (bits 0-1 of byte 0). Bit 2: stream 1 asks for trailers, and the client's windows are
 * 1 MiB from the start; else they are 65535 bytes until the upstream's bytes have gone. */
static uint8_t h2_requests[2][4][256];
static size_t h2_request_len[2][4];

static size_t frame_header(uint8_t *out, size_t len, uint8_t type, uint8_t flags, uint32_t id)
{
    uint8_t h[9] = {
        (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len,       type,       flags,
        (uint8_t)(id >> 24),  (uint8_t)(id >> 16), (uint8_t)(id >> 8), (uint8_t)id};
    memcpy(out, h, 9);
    return 9;
}

/* A HEADERS frame of `nv` on stream `id` (END_HEADERS, END_STREAM when `end`), with no
 * entry added to the peer's dynamic table; its length. */
static size_t headers_frame(uint8_t *out, size_t room, uint32_t id, const nghttp2_nv *nv, size_t n,
                            bool end)
{
    nghttp2_hd_deflater *d;
    if (nghttp2_hd_deflate_new(&d, 0) != 0)
        fz_fail("out of memory");
    ssize_t len = nghttp2_hd_deflate_hd(d, out + 9, room - 9, nv, n);
    nghttp2_hd_deflate_del(d);
    if (len < 0)
        fz_fail("cannot encode a header block: %s", nghttp2_strerror((int)len));
    frame_header(out, (size_t)len, 1, (uint8_t)(0x4 | (end ? 0x1 : 0)), id);
    return 9 + (size_t)len;
}

static size_t data_frame(uint8_t *out, uint32_t id, const char *text, bool end)
{
    size_t len = strlen(text);
    frame_header(out, len, 0, end ? 0x1 : 0, id);
    memcpy(out + 9, text, len);
    return 9 + len;
}

static void make_h2_requests(void)
{
    for (int te = 0; te < 2; te++) {
        const nghttp2_nv get[] = {NV(":method", "GET"), NV(":scheme", "http"),
                                  NV(":authority", "x"), NV(":path", "/limited/a"),
                                  NV("te", "trailers")};
        const nghttp2_nv post[] = {NV(":method", "POST"), NV(":scheme", "http"),
                                   NV(":authority", "x"), NV(":path", "/up"),
                                   NV("content-length", "5")};
        const nghttp2_nv head[] = {NV(":method", "HEAD"), NV(":scheme", "http"),
                                   NV(":authority", "x"), NV(":path", "/a")};
        uint8_t *o;
        size_t n;

        o = h2_requests[te][0];
        h2_request_len[te][0] = headers_frame(o, 256, 1, get, te ? 5 : 4, true);
        o = h2_requests[te][1];
        n = headers_frame(o, 256, 3, post, 5, false);
        h2_request_len[te][1] = n + data_frame(o + n, 3, "hello", true);
        o = h2_requests[te][2]; /* no content-length: the body ends with END_STREAM */
        n = headers_frame(o, 256, 5, post, 4, false);
        n += data_frame(o + n, 5, "abc", false);
        h2_request_len[te][2] = n + data_frame(o + n, 5, "de", true);
        o = h2_requests[te][3];
        h2_request_len[te][3] = headers_frame(o, 256, 7, head, 4, true);
    }
}

/* The response head made for stream 1 (byte 2): bits 0-1 the status, bit 2 END_STREAM
 * (trailers-only, or a bodiless answer), bit 3 a content-length of 5, bit 4 an interim
 * 103 before it. */
static size_t made_head(uint8_t *out, size_t room, uint8_t how)
{
    static const char *const statuses[] = {"200", "204", "404", "304"};
    nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)(uintptr_t)statuses[how & 3], 7, 3, 0},
        NV("content-type", "text/plain"),
        NV("content-length", "5"),
    };
    const nghttp2_nv early[] = {NV(":status", "103"), NV("link", "</a>")};
    size_t n = 0;

    if (how & 0x10)
        n = headers_frame(out, room, 1, early, 2, false);
    return n + headers_frame(out + n, room - n, 1, nv, (how & 0x08) ? 3 : 2, (how & 0x04) != 0);
}

/* ---- the run ---- */

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc, (void)argv;
    make_h2_requests();
    cfg = fz_proxy_setup(config_yaml);
    return 0;
}

/* The upstream's bytes: at most a frame and a head made here before the input's. */
#define MAX_SCRIPT (1 << 20)
static uint8_t script[MAX_SCRIPT];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3 || size > MAX_SCRIPT - 512)
        return 0;
    unsigned which = data[0] & 7;
    bool h2 = (data[0] & 0x08) != 0, own_settings = (data[0] & 0x10) != 0;
    bool make_head = (data[0] & 0x20) != 0, close = (data[0] & 0x40) != 0;
    bool half_close = (data[0] & 0x80) != 0;
    size_t piece = data[1] & 0x80 ? 0 : (size_t)data[1] + 1;
    size_t len = 0;
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    struct fz_proxy p;

    if (!own_settings) {
        static const uint8_t settings[18] = {0, 0, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0};
        memcpy(script, settings, sizeof settings);
        len = sizeof settings;
    }
    if (make_head)
        len += made_head(script + len, 512 - len, data[2]);
    memcpy(script + len, data + 3, size - 3);
    len += size - 3;
    /* At most 64 writes, each followed by a run of the loop. */
    if (piece && len / piece > 64)
        piece = len / 64 + 1;

    inet_pton(AF_INET, "198.51.100.7", &peer.sin_addr);
    fz_h2_server_begin(script, len);
    fz_proxy_start(&p, cfg, &fz_h2_server_hooks, (struct sockaddr *)&peer, sizeof peer);
    if (h2) {
        static const uint8_t empty_settings[9] = {0, 0, 0, 4, 0, 0, 0, 0, 0};
        /* A window of 1 MiB for each stream and for the connection. */
        static const uint8_t wide_settings[] = {0, 0, 6, 4, 0, 0, 0, 0, 0, 0, 4, 0,    0x10, 0,
                                                0, 0, 0, 4, 8, 0, 0, 0, 0, 0, 0, 0x0f, 0,    0};
        unsigned te = (which >> 2) & 1;
        fz_client_send(&p, preface, PREFACE_LEN, 0);
        if (te)
            fz_client_send(&p, wide_settings, sizeof wide_settings, 0);
        else
            fz_client_send(&p, empty_settings, sizeof empty_settings, 0);
        for (unsigned i = 0; i <= (which & 3); i++)
            fz_client_send(&p, h2_requests[te][i], h2_request_len[te][i], 0);
    } else {
        fz_client_send(&p, requests[which], strlen(requests[which]), 0);
    }
    fz_h2_server_play(&p, script, len, piece, close);
    if (h2 && !((which >> 2) & 1)) {
        /* The client that kept its windows at 65535 bytes opens them now: what sluice held
         * back for it goes, and the upstream's windows open again. */
        uint8_t update[5 * 13];
        for (unsigned i = 0; i <= (which & 3) + 1; i++) {
            uint32_t id = i ? 2 * i - 1 : 0;
            frame_header(update + 13 * i, 4, 8, 0, id);
            memcpy(update + 13 * i + 9, "\x00\x10\x00\x00", 4);
        }
        fz_client_send(&p, update, 13 * ((which & 3) + 2), 0);
    }
    if (half_close) {
        fz_client_shutdown(&p);
        fz_proxy_run(&p);
    }
    if (h2)
        fz_h2_client_check(p.to_client);
    else
        h1_check(p.to_client, methods[which]);
    fz_proxy_finish(&p);
    fz_h2_server_end();
    return 0;
}
