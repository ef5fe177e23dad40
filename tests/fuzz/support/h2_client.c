/* The strict HTTP/2 client of the proxy targets (h2_client.h). */
#include "h2_client.h"

#include <nghttp2/nghttp2.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

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

void fz_h2_client_check(struct evbuffer *from_sluice)
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
