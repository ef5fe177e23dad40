/* HTTP/2 heads: a request head collected from the fields HPACK decoded (nghttp2 has
 * checked the pseudo-headers and the connection-specific fields, RFC 9113 8.2), made into
 * the protocol-neutral request; a response head turned into name-value pairs. */
#include <stdlib.h>
#include <string.h>

#include "grpc.h"
#include "h2.h"
#include "sluice/forward.h"

/* RFC 9113 6.5.2: a field counts its name, its value and 32 bytes of overhead. */
#define FIELD_OVERHEAD 32

static int reserve(struct sl_h2_stream *st, size_t n)
{
    if (st->hlen + n <= st->hcap)
        return 0;
    size_t cap = st->hcap ? st->hcap : 256;
    while (cap < st->hlen + n)
        cap *= 2;
    char *p = realloc(st->hbuf, cap);
    if (!p)
        return -1;
    st->hbuf = p;
    st->hcap = cap;
    return 0;
}

static uint32_t append(struct sl_h2_stream *st, const void *p, size_t n)
{
    uint32_t off = (uint32_t)st->hlen;
    memcpy(st->hbuf + st->hlen, p, n);
    st->hlen += n;
    return off;
}

static bool is(const uint8_t *name, size_t len, const char *lit)
{
    return len == strlen(lit) && memcmp(name, lit, len) == 0;
}

int sl_h2_head_field(struct sl_h2_stream *st, const uint8_t *name, size_t name_len,
                     const uint8_t *value, size_t value_len)
{
    const struct sl_client_config *cc = &st->x.cfg->client;

    if (st->local_status)
        return 0; /* answered already: the rest of the head is not kept */
    st->hsize += name_len + value_len + FIELD_OVERHEAD;
    if (st->hsize > cc->max_header_bytes) {
        st->local_status = 431;
        return 0;
    }
    if (reserve(st, name_len + value_len) < 0)
        return -1;
    if (name_len && name[0] == ':') {
        uint32_t off = append(st, value, value_len), len = (uint32_t)value_len;
        if (is(name, name_len, ":method")) {
            st->method_off = off;
            st->method_len = len;
        } else if (is(name, name_len, ":path")) {
            st->path_off = off;
            st->path_len = len;
        } else if (is(name, name_len, ":authority")) {
            st->authority_off = off;
            st->authority_len = len;
        }
        return 0;
    }
    if (memchr(name, '_', name_len)) {
        /* client.underscores_in_headers, as on HTTP/1 (request.c). */
        sl_metrics_headers_underscore(st->c->w->metrics, cc->underscores_in_headers, 1);
        if (cc->underscores_in_headers == SL_UNDERSCORES_REJECT)
            st->local_status = 400;
        if (cc->underscores_in_headers != SL_UNDERSCORES_ALLOW)
            return 0;
    }
    if (st->nfields == st->fields_cap) {
        size_t cap = st->fields_cap ? st->fields_cap * 2 : 16;
        struct sl_h2_field *f = realloc(st->fields, cap * sizeof *f);
        if (!f)
            return -1;
        st->fields = f;
        st->fields_cap = cap;
    }
    struct sl_h2_field *f = &st->fields[st->nfields++];
    f->name_len = (uint32_t)name_len;
    f->name_off = append(st, name, name_len);
    f->value_len = (uint32_t)value_len;
    f->value_off = append(st, value, value_len);
    if (is(name, name_len, "content-length")) {
        /* nghttp2 has checked it is digits and matches the DATA that follows. */
        int64_t n = 0;
        for (size_t i = 0; i < value_len && n < INT64_MAX / 10; i++)
            n = n * 10 + (value[i] - '0');
        st->content_length = n;
    } else if (is(name, name_len, "content-type")) {
        st->x.grpc = sl_grpc_content_type((const char *)value, value_len);
    }
    return 0;
}

static bool field_is(const struct sl_h2_stream *st, const struct sl_h2_field *f, const char *lit)
{
    return is((const uint8_t *)st->hbuf + f->name_off, f->name_len, lit);
}

int sl_h2_head_finish(struct sl_h2_stream *st)
{
    size_t cookies = 0, cookie_len = 0;
    bool host = false;

    for (size_t i = 0; i < st->nfields; i++) {
        if (field_is(st, &st->fields[i], "cookie")) {
            cookies++;
            cookie_len += st->fields[i].value_len + 2;
        } else if (field_is(st, &st->fields[i], "host")) {
            host = true;
        }
    }
    /* The extra fields are written after the others: "host" from :authority, and the
     * cookie crumbs joined into one field, as an HTTP/1.1 upstream expects it. */
    if (reserve(st, sizeof "host" + st->authority_len + sizeof "cookie" + cookie_len) < 0)
        return -1;
    size_t n = st->nfields + 2;
    if (n > st->headers_cap) {
        struct sl_header *h = realloc(st->headers, n * sizeof *h);
        if (!h)
            return -1;
        st->headers = h;
        st->headers_cap = n;
    }
    size_t k = 0;
    const char *b = st->hbuf;
    for (size_t i = 0; i < st->nfields; i++) {
        const struct sl_h2_field *f = &st->fields[i];
        if (cookies > 1 && field_is(st, f, "cookie"))
            continue;
        st->headers[k++] = (struct sl_header){b + f->name_off, f->name_len, b + f->value_off,
                                              f->value_len};
    }
    if (!host && st->authority_len) {
        uint32_t name = append(st, "host", 4);
        b = st->hbuf;
        st->headers[k++] = (struct sl_header){b + name, 4, b + st->authority_off,
                                              st->authority_len};
    }
    if (cookies > 1) {
        uint32_t name = append(st, "cookie", 6), value = (uint32_t)st->hlen;
        for (size_t i = 0; i < st->nfields; i++) {
            const struct sl_h2_field *f = &st->fields[i];
            if (!field_is(st, f, "cookie"))
                continue;
            if (st->hlen > value)
                append(st, "; ", 2);
            append(st, st->hbuf + f->value_off, f->value_len);
        }
        b = st->hbuf;
        st->headers[k++] = (struct sl_header){b + name, 6, b + value, st->hlen - value};
    }
    struct sl_request *r = &st->x.req;
    r->method = b + st->method_off;
    r->method_len = st->method_len;
    r->target = b + st->path_off;
    r->target_len = st->path_len;
    r->headers = st->headers;
    r->nheaders = k;
    r->peer = (const struct sockaddr *)&st->c->peer;
    r->tls_subject = st->c->tls_subject;
    r->tls_subject_len = st->c->tls_subject_len;
    return 0;
}

static bool method_is(const struct sl_request *r, const char *m)
{
    return r->method_len == strlen(m) && memcmp(r->method, m, r->method_len) == 0;
}

/* The methods llhttp parses, which are all an HTTP/1 client can send (request.c answers
 * others with 400). An HTTP/1.1 upstream is sent no other: its parser may know no more,
 * and both client codecs then let the same requests through. PRI is the HTTP/2 preface's,
 * not a method. */
static const char *const h1_methods[] = {
#define SL_METHOD(num, name, string) #string,
    HTTP_METHOD_MAP(SL_METHOD)
#undef SL_METHOD
};

static bool method_known(const struct sl_request *r)
{
    for (size_t i = 0; i < sizeof h1_methods / sizeof h1_methods[0]; i++)
        if (method_is(r, h1_methods[i]))
            return !method_is(r, "PRI");
    return false;
}

int sl_h2_head_check(struct sl_h2_stream *st)
{
    struct sl_exchange *x = &st->x;
    const struct sl_request *r = &x->req;

    x->is_head = method_is(r, "HEAD");
    x->idempotent = x->is_head || method_is(r, "GET") || method_is(r, "OPTIONS") ||
                    method_is(r, "TRACE") || method_is(r, "PUT") || method_is(r, "DELETE");
    if (st->local_status)
        return st->local_status;
    /* A tunnel to wherever the client names would carry anything past the limits. */
    if (method_is(r, "CONNECT"))
        return 405;
    if (!method_known(r))
        return 400;
    if (x->cfg->client.max_body_bytes && st->content_length > 0 &&
        (uint64_t)st->content_length > x->cfg->client.max_body_bytes)
        return 413;
    return 0;
}

void sl_h2_head_free(struct sl_h2_stream *st)
{
    free(st->hbuf);
    free(st->fields);
    free(st->headers);
}

/* Lower-cases `n` bytes of `s` into `d`: HTTP/2 field names are lower case (RFC 9113
 * 8.2.1), and an HTTP/1.1 upstream's are not. */
static void lower(char *d, const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        d[i] = (char)(c | (unsigned char)((unsigned char)(c - 'A') < 26) << 5);
    }
}

/* Parses "Name: value\r\n" lines (the verdict's) into `nv` from `*k` on, names lowered
 * into `d`; returns where `d` ends. */
static char *add_lines(const struct sl_textbuf *t, nghttp2_nv *nv, size_t *k, char *d)
{
    const char *p = t->data, *end = t->data + t->len;

    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        const char *colon = memchr(p, ':', (size_t)((eol ? eol : end) - p));
        if (!eol || !colon)
            break;
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == '\r' || ve[-1] == ' '))
            ve--;
        size_t nl = (size_t)(colon - p);
        lower(d, p, nl);
        nv[(*k)++] = (nghttp2_nv){(uint8_t *)d, (uint8_t *)(uintptr_t)v, nl, (size_t)(ve - v),
                                  NGHTTP2_NV_FLAG_NONE};
        d += nl;
        p = eol + 1;
    }
    return d;
}

static size_t count_lines(const struct sl_textbuf *t)
{
    size_t n = 0;
    if (!t || !t->len)
        return 0;
    for (const char *p = t->data, *end = p + t->len; (p = memchr(p, '\n', (size_t)(end - p)));
         p++)
        n++;
    return n;
}

int sl_h2_head_submit(struct sl_h2_stream *st, int status, const struct sl_header *headers,
                      size_t nheaders, const struct sl_textbuf *extra, bool bodiless)
{
    size_t nlines = count_lines(extra), names = extra ? extra->len : 0;
    for (size_t i = 0; i < nheaders; i++)
        names += headers[i].name_len;
    size_t nnv = 1 + nheaders + nlines;
    char *scratch = sl_h2_scratch(st->c->w, nnv * sizeof(nghttp2_nv) + names + 4);
    if (!scratch)
        return -1;
    nghttp2_nv *nv = (nghttp2_nv *)scratch;
    char *d = scratch + nnv * sizeof(nghttp2_nv);
    char *code = d;
    size_t k = 0;

    code[0] = (char)('0' + status / 100 % 10);
    code[1] = (char)('0' + status / 10 % 10);
    code[2] = (char)('0' + status % 10);
    d += 3;
    nv[k++] = (nghttp2_nv){(uint8_t *)":status", (uint8_t *)code, 7, 3, NGHTTP2_NV_FLAG_NONE};
    for (size_t i = 0; i < nheaders; i++) {
        const struct sl_header *h = &headers[i];
        /* The connection-specific fields of HTTP/1.1 have no place in HTTP/2 (RFC 9113
         * 8.2.2), and a client treats a response carrying one as malformed. */
        if (sl_forward_is_hop_by_hop(h->name, h->name_len))
            continue;
        lower(d, h->name, h->name_len);
        nv[k++] = (nghttp2_nv){(uint8_t *)d, (uint8_t *)(uintptr_t)h->value, h->name_len,
                               h->value_len, NGHTTP2_NV_FLAG_NONE};
        d += h->name_len;
    }
    /* A route without limits leaves the verdict's lines empty, their data NULL. */
    if (extra && extra->len)
        d = add_lines(extra, nv, &k, d);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = sl_h2_stream_read};
    int rv = nghttp2_submit_response(st->c->session, st->id, nv, k, bodiless ? NULL : &prd);
    if (rv != 0)
        return -1;
    st->submitted = true;
    return 0;
}
