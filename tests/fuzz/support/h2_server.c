/* The strict HTTP/2 upstream of the h2c:// targets (h2_server.h). */
#include "h2_server.h"

#include <nghttp2/nghttp2.h>
#include <string.h>

#define WINDOW_MAX 0x7fffffffu
#define DEFAULT_WINDOW 65535u
/* Streams followed by number; sluice opens few per input, the rest share slots. */
#define SLOTS 128

static const char client_magic[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define MAGIC_LEN (sizeof client_magic - 1)

enum { T_DATA, T_HEADERS, T_RST_STREAM = 3, T_SETTINGS, T_PING = 6, T_GOAWAY, T_WINDOW_UPDATE };

/* What the script grants: the largest INITIAL_WINDOW_SIZE it ever says (each stream starts
 * with at most that) and every WINDOW_UPDATE, so DATA past them is past every window. */
struct credit {
    uint64_t initial;
    uint64_t conn;
    uint64_t stream[SLOTS];
};

struct conn {
    struct fz_upstream *up;
    nghttp2_session *session;
    bool scripted;
    /* Scripted: sluice's bytes not yet a whole frame, and what the frames said. */
    struct evbuffer *in;
    bool magic_seen, acked, goaway;
    int32_t last_id;
    uint64_t conn_data, stream_data[SLOTS];
    /* Per stream slot: the request's :authority came, it is a HEAD. */
    bool authority[SLOTS], head[SLOTS];
};

static struct conn conns[FZ_MAX_UPSTREAMS];
static struct credit credit;
static nghttp2_session_callbacks *callbacks;
static nghttp2_option *options;

static size_t slot(int32_t id)
{
    return ((uint32_t)id >> 1) % SLOTS;
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* ---- the session's callbacks ---- */

static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
    struct conn *c = arg;
    (void)s, (void)flags;
    if (!c->scripted)
        fz_upstream_send(c->up, data, len);
    return (ssize_t)len;
}

/* The session refuses what it received: the stream or connection error it sends. */
static int frame_send_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    (void)s, (void)arg;
    if (f->hd.type == NGHTTP2_RST_STREAM && f->rst_stream.error_code != NGHTTP2_NO_ERROR)
        fz_fail("the upstream resets stream %d of sluice's: %s", f->hd.stream_id,
                nghttp2_http2_strerror(f->rst_stream.error_code));
    if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
        fz_fail("the upstream ends sluice's connection: %s (%.*s)",
                nghttp2_http2_strerror(f->goaway.error_code), (int)f->goaway.opaque_data_len,
                (const char *)f->goaway.opaque_data);
    return 0;
}

static int invalid_frame_cb(nghttp2_session *s, const nghttp2_frame *f, int error, void *arg)
{
    (void)s, (void)arg;
    fz_fail("sluice sent an invalid frame of type %u on stream %d: %s", f->hd.type, f->hd.stream_id,
            nghttp2_strerror(error));
}

static int begin_headers_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct conn *c = arg;
    (void)s;
    c->authority[slot(f->hd.stream_id)] = false;
    c->head[slot(f->hd.stream_id)] = false;
    return 0;
}

static int header_cb(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *arg)
{
    struct conn *c = arg;
    size_t i = slot(f->hd.stream_id);

    (void)s, (void)flags;
    for (size_t k = 0; k < namelen; k++)
        if (name[k] >= 'A' && name[k] <= 'Z')
            fz_fail("sluice sent the upstream the field name %.*s", (int)namelen, name);
    if (namelen == 10 && memcmp(name, ":authority", 10) == 0)
        c->authority[i] = valuelen > 0;
    if (namelen == 7 && memcmp(name, ":method", 7) == 0)
        c->head[i] = valuelen == 4 && memcmp(value, "HEAD", 4) == 0;
    if (namelen == 2 && memcmp(name, "te", 2) == 0 &&
        (valuelen != 8 || memcmp(value, "trailers", 8) != 0))
        fz_fail("sluice sent the upstream te: %.*s", (int)valuelen, value);
    return 0;
}

static ssize_t ok_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
                       nghttp2_data_source *src, void *arg)
{
    (void)s, (void)id, (void)len, (void)src, (void)arg;
    memcpy(buf, "ok", 2);
    *flags |= NGHTTP2_DATA_FLAG_EOF;
    return 2;
}

static int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
    struct conn *c = arg;
    int32_t id = f->hd.stream_id;

    if (f->hd.type == NGHTTP2_HEADERS && f->headers.cat == NGHTTP2_HCAT_REQUEST &&
        !c->authority[slot(id)])
        fz_fail("sluice sent the upstream a request without :authority on stream %d", id);
    if (c->scripted || id == 0 || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM) ||
        (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA))
        return 0;
    /* The request is whole: the honest upstream answers it. */
    bool head = c->head[slot(id)];
    const nghttp2_nv nv[] = {
        {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
        {(uint8_t *)"content-length", (uint8_t *)"2", 14, 1, NGHTTP2_NV_FLAG_NONE},
    };
    nghttp2_data_provider ok = {.read_callback = ok_read};
    if (nghttp2_submit_response(s, id, nv, 2, head ? NULL : &ok) != 0)
        fz_fail("the upstream cannot answer stream %d", id);
    return 0;
}

/* ---- per connection ---- */

static struct conn *conn_of(struct fz_upstream *up)
{
    struct conn *c = &conns[up - up->proxy->up];
    if (c->session)
        return c;
    c->up = up;
    c->scripted = up == &up->proxy->up[0];
    c->in = evbuffer_new();
    if (!c->in || nghttp2_session_server_new2(&c->session, callbacks, c, options) != 0)
        fz_fail("out of memory");
    /* Windows wide open: the session checks framing, the script's windows are checked
     * against what it granted. */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, WINDOW_MAX}};
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1) != 0 ||
        nghttp2_session_set_local_window_size(c->session, NGHTTP2_FLAG_NONE, 0, WINDOW_MAX) != 0 ||
        nghttp2_session_send(c->session) != 0)
        fz_fail("cannot start the upstream's session");
    return c;
}

static void recv_bytes(struct conn *c, const uint8_t *p, size_t len)
{
    ssize_t n = nghttp2_session_mem_recv(c->session, p, len);
    if (n < 0)
        fz_fail("the upstream cannot read what sluice sent: %s", nghttp2_strerror((int)n));
    if (nghttp2_session_send(c->session) != 0)
        fz_fail("the upstream's session cannot send");
}

static void count_data(struct conn *c, int32_t id, uint32_t len)
{
    size_t i = slot(id);
    c->conn_data += len;
    c->stream_data[i] += len;
    if (c->conn_data > credit.conn)
        fz_fail("sluice sent %llu bytes of DATA on a connection window of %llu",
                (unsigned long long)c->conn_data, (unsigned long long)credit.conn);
    if (c->stream_data[i] > credit.initial + credit.stream[i])
        fz_fail("sluice sent %llu bytes of DATA on stream %d, a window of %llu",
                (unsigned long long)c->stream_data[i], id,
                (unsigned long long)(credit.initial + credit.stream[i]));
}

/* One whole frame sluice sent on the scripted connection. */
static void scripted_frame(struct conn *c, const uint8_t *f, uint32_t len)
{
    static const uint8_t ack[9] = {0, 0, 0, T_SETTINGS, 1, 0, 0, 0, 0};
    uint8_t type = f[3], flags = f[4];
    int32_t id = (int32_t)(be32(f + 5) & WINDOW_MAX);

    switch (type) {
    case T_SETTINGS:
        if (flags & 1)
            return; /* sluice acknowledges the script's SETTINGS */
        recv_bytes(c, f, 9 + len);
        /* The session's own SETTINGS count as acknowledged, so its windows apply. */
        if (!c->acked)
            recv_bytes(c, ack, sizeof ack);
        c->acked = true;
        return;
    case T_PING:
    case T_WINDOW_UPDATE:
        if ((type == T_PING && len != 8) || (type == T_WINDOW_UPDATE && len != 4))
            fz_fail("sluice sent a frame of type %u with %u bytes", type, len);
        if (type == T_WINDOW_UPDATE && (be32(f + 9) & WINDOW_MAX) == 0)
            fz_fail("sluice sent a WINDOW_UPDATE of 0 on stream %d", id);
        return;
    case T_GOAWAY:
        if (len < 8)
            fz_fail("sluice sent a GOAWAY of %u bytes", len);
        c->goaway = true;
        return;
    case T_HEADERS:
        if (id > c->last_id) {
            if (c->goaway)
                fz_fail("sluice opened stream %d after its GOAWAY", id);
            c->last_id = id;
        }
        break;
    case T_DATA:
        count_data(c, id, len);
        break;
    case T_RST_STREAM:
        if (len != 4)
            fz_fail("sluice sent a RST_STREAM of %u bytes", len);
        /* A stream the script opened, as a PUSH_PROMISE does: refused, the session
         * never heard of it. */
        if ((id & 1) == 0 || id > c->last_id)
            return;
        break;
    default:
        break;
    }
    recv_bytes(c, f, 9 + len);
}

static void scripted_data(struct conn *c, const char *bytes, size_t len)
{
    evbuffer_add(c->in, bytes, len);
    if (!c->magic_seen) {
        if (evbuffer_get_length(c->in) < MAGIC_LEN)
            return;
        const uint8_t *m = evbuffer_pullup(c->in, MAGIC_LEN);
        if (memcmp(m, client_magic, MAGIC_LEN) != 0)
            fz_fail("sluice's connection does not open with the preface: %s",
                    fz_printable(m, MAGIC_LEN));
        recv_bytes(c, m, MAGIC_LEN);
        evbuffer_drain(c->in, MAGIC_LEN);
        c->magic_seen = true;
    }
    while (evbuffer_get_length(c->in) >= 9) {
        const uint8_t *h = evbuffer_pullup(c->in, 9);
        uint32_t n = (uint32_t)h[0] << 16 | (uint32_t)h[1] << 8 | h[2];
        if (evbuffer_get_length(c->in) < 9 + (size_t)n)
            return;
        scripted_frame(c, evbuffer_pullup(c->in, 9 + (ssize_t)n), n);
        evbuffer_drain(c->in, 9 + (size_t)n);
    }
}

static void upstream_data(struct fz_upstream *up, const char *bytes, size_t len)
{
    struct conn *c = conn_of(up);
    if (c->scripted)
        scripted_data(c, bytes, len);
    else
        recv_bytes(c, (const uint8_t *)bytes, len);
}

static const llhttp_settings_t no_settings;
const struct fz_hooks fz_h2_server_hooks = {upstream_data, &no_settings};

/* ---- the script ---- */

/* Frames the script's bytes as sluice would, as far as they go. */
static void grant(const uint8_t *b, size_t len)
{
    memset(&credit, 0, sizeof credit);
    credit.initial = DEFAULT_WINDOW;
    credit.conn = DEFAULT_WINDOW;
    for (size_t off = 0; len - off >= 9;) {
        uint32_t n = (uint32_t)b[off] << 16 | (uint32_t)b[off + 1] << 8 | b[off + 2];
        uint8_t type = b[off + 3];
        int32_t id = (int32_t)(be32(b + off + 5) & WINDOW_MAX);
        const uint8_t *p = b + off + 9;
        if (len - off - 9 < n)
            break;
        if (type == T_SETTINGS && !(b[off + 4] & 1)) {
            for (uint32_t i = 0; i + 6 <= n; i += 6)
                if (p[i] == 0 && p[i + 1] == 4 && be32(p + i + 2) <= WINDOW_MAX &&
                    be32(p + i + 2) > credit.initial)
                    credit.initial = be32(p + i + 2);
        } else if (type == T_WINDOW_UPDATE && n == 4) {
            uint32_t inc = be32(p) & WINDOW_MAX;
            if (id == 0)
                credit.conn += inc;
            else
                credit.stream[slot(id)] += inc;
        }
        off += 9 + n;
    }
}

void fz_h2_server_play(struct fz_proxy *p, const uint8_t *bytes, size_t len, size_t piece,
                       bool close)
{
    if (p->nup == 0)
        return;
    if (piece == 0)
        piece = len;
    for (size_t off = 0; off < len && p->up[0].fd >= 0; off += piece) {
        fz_upstream_send(&p->up[0], bytes + off, len - off < piece ? len - off : piece);
        fz_proxy_run(p);
    }
    if (close) {
        fz_upstream_close(&p->up[0]);
        fz_proxy_run(p);
    }
}

void fz_h2_server_begin(const uint8_t *script, size_t len)
{
    if (!callbacks) {
        if (nghttp2_session_callbacks_new(&callbacks) != 0 || nghttp2_option_new(&options) != 0)
            fz_fail("out of memory");
        nghttp2_session_callbacks_set_send_callback(callbacks, send_cb);
        nghttp2_session_callbacks_set_on_frame_send_callback(callbacks, frame_send_cb);
        nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(callbacks, invalid_frame_cb);
        nghttp2_session_callbacks_set_on_begin_headers_callback(callbacks, begin_headers_cb);
        nghttp2_session_callbacks_set_on_header_callback(callbacks, header_cb);
        nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, frame_recv_cb);
    }
    grant(script, len);
}

void fz_h2_server_end(void)
{
    for (size_t i = 0; i < FZ_MAX_UPSTREAMS; i++) {
        if (conns[i].session)
            nghttp2_session_del(conns[i].session);
        if (conns[i].in)
            evbuffer_free(conns[i].in);
    }
    memset(conns, 0, sizeof conns);
}
