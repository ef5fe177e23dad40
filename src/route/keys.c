/* A limit's key: the values of its sources in this request (SPEC.md section 4). */
#include <string.h>
#include <strings.h>

#include "sluice/route.h"
#include "sluice/text.h"

/* Writes what fits and counts everything, so the caller learns the size it needs. */
struct writer {
    char *buf;
    size_t size;
    size_t len;
};

static void put(struct writer *w, const char *s, size_t n)
{
    if (w->len < w->size) {
        size_t room = w->size - w->len;
        memcpy(w->buf + w->len, s, n < room ? n : room);
    }
    w->len += n;
}

static void put_byte(struct writer *w, char c)
{
    put(w, &c, 1);
}

/* A source's value in the request. Query values are still encoded (`encoded`). */
struct value {
    const char *s;
    size_t n;
    bool encoded;
};

static int hex_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

/* The next byte of application/x-www-form-urlencoded text, as the application decodes
 * it; a '%' without two hex digits stands for itself. */
static unsigned char next_decoded(const char *s, size_t n, size_t *i)
{
    unsigned char c = (unsigned char)s[*i];

    if (c == '+') {
        (*i)++;
        return ' ';
    }
    if (c == '%' && *i + 2 < n) {
        int hi = hex_value((unsigned char)s[*i + 1]), lo = hex_value((unsigned char)s[*i + 2]);
        if (hi >= 0 && lo >= 0) {
            *i += 3;
            return (unsigned char)(hi << 4 | lo);
        }
    }
    (*i)++;
    return c;
}

static bool decoded_equals(const char *s, size_t n, const char *want, size_t want_len)
{
    size_t i = 0, k = 0;

    while (i < n)
        if (k == want_len || next_decoded(s, n, &i) != (unsigned char)want[k++])
            return false;
    return k == want_len;
}

static size_t decoded_len(const char *s, size_t n)
{
    size_t i = 0, k = 0;

    for (; i < n; k++)
        next_decoded(s, n, &i);
    return k;
}

static void put_decoded(struct writer *w, const char *s, size_t n)
{
    for (size_t i = 0; i < n;)
        put_byte(w, (char)next_decoded(s, n, &i));
}

/* The first parameter called `name` in the query; "?a" and "?a=" both give "". */
static bool query_value(const struct sl_request *req, const char *name, size_t name_len,
                        struct value *v)
{
    const char *q = memchr(req->target, '?', req->target_len);

    if (!q)
        return false;
    q++;
    const char *end = req->target + req->target_len;
    const char *hash = memchr(q, '#', (size_t)(end - q));
    if (hash)
        end = hash;
    for (;;) {
        const char *amp = memchr(q, '&', (size_t)(end - q));
        const char *stop = amp ? amp : end;
        const char *eq = memchr(q, '=', (size_t)(stop - q));
        const char *name_end = eq ? eq : stop;
        if (decoded_equals(q, (size_t)(name_end - q), name, name_len)) {
            v->s = eq ? eq + 1 : stop;
            v->n = (size_t)(stop - v->s);
            v->encoded = true;
            return true;
        }
        if (stop == end)
            return false;
        q = stop + 1;
    }
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

/* The first cookie called `name` (case-sensitive, RFC 6265 5.4) over every Cookie header,
 * whose pairs are separated by ";" and optional spaces. The value is taken as sent. */
static bool cookie_value(const struct sl_request *req, const char *name, size_t name_len,
                         struct value *v)
{
    for (size_t h = 0; h < req->nheaders; h++) {
        const struct sl_header *hdr = &req->headers[h];
        if (hdr->name_len != 6 || strncasecmp(hdr->name, "cookie", 6) != 0)
            continue;
        const char *p = hdr->value, *end = hdr->value + hdr->value_len;
        while (p < end) {
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            while (p < stop && is_space(*p))
                p++;
            const char *eq = memchr(p, '=', (size_t)(stop - p));
            if (eq && (size_t)(eq - p) == name_len && memcmp(p, name, name_len) == 0) {
                const char *e = stop;
                while (e > eq + 1 && is_space(e[-1]))
                    e--;
                v->s = eq + 1;
                v->n = (size_t)(e - v->s);
                v->encoded = false;
                return true;
            }
            if (stop == end)
                break;
            p = stop + 1;
        }
    }
    return false;
}

static bool plain(const char *s, size_t n, struct value *v)
{
    if (!s)
        return false;
    v->s = s;
    v->n = n;
    v->encoded = false;
    return true;
}

static bool source_value(const struct sl_key_source *src, const struct sl_key_ctx *ctx,
                         struct value *v)
{
    const struct sl_request *req = ctx->req;

    switch (src->kind) {
    case SL_KEY_CLIENT_IP:
        return plain(ctx->client, ctx->client_len, v);
    case SL_KEY_HEADER: {
        const struct sl_header *h = sl_request_header(req, src->name, src->name_len);
        return h && plain(h->value, h->value_len, v);
    }
    case SL_KEY_QUERY:
        return query_value(req, src->name, src->name_len, v);
    case SL_KEY_COOKIE:
        return cookie_value(req, src->name, src->name_len, v);
    case SL_KEY_METHOD:
        return plain(req->method, req->method_len, v);
    case SL_KEY_PATH:
        return plain(ctx->path, ctx->path_len, v);
    case SL_KEY_HOST:
        return plain(ctx->host, ctx->host_len, v);
    case SL_KEY_ROUTE:
        return plain(ctx->route->name, strlen(ctx->route->name), v);
    case SL_KEY_TLS_CLIENT_SUBJECT:
        return req->tls_subject && plain(req->tls_subject, req->tls_subject_len, v);
    }
    return false;
}

static ssize_t build(const struct sl_key_source *keys, size_t nkeys, const struct sl_key_ctx *ctx,
                     char *buf, size_t size)
{
    struct writer w = {buf, size, 0};

    for (size_t i = 0; i < nkeys; i++) {
        struct value v;
        if (!source_value(&keys[i], ctx, &v))
            return -1;
        if (nkeys > 1) {
            /* The length prefix makes the parts self-delimiting: ("a,b", "c") and
             * ("a", "b,c") cannot meet, whatever bytes the values hold. */
            char num[SL_U64_DIGITS + 2];
            size_t k = 0;
            if (i)
                num[k++] = ',';
            k += sl_u64_format(num + k, v.encoded ? decoded_len(v.s, v.n) : v.n);
            num[k++] = ':';
            put(&w, num, k);
        }
        if (v.encoded)
            put_decoded(&w, v.s, v.n);
        else
            put(&w, v.s, v.n);
    }
    return (ssize_t)w.len;
}

ssize_t sl_key_build(const struct sl_limit *lim, const struct sl_key_ctx *ctx, char *buf,
                     size_t size)
{
    return build(lim->keys, lim->nkeys, ctx, buf, size);
}

ssize_t sl_key_source_build(const struct sl_key_source *src, const struct sl_key_ctx *ctx,
                            char *buf, size_t size)
{
    return build(src, 1, ctx, buf, size);
}
