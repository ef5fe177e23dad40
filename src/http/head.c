/* Collecting request and response heads from llhttp callbacks into one buffer per
 * connection, and running a parser over an evbuffer without copying it. */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "sluice/forward.h"

#define INITIAL_CAP 1024
#define INITIAL_FIELDS 16

void sl_head_init(struct sl_head *h, size_t max)
{
    memset(h, 0, sizeof *h);
    h->max = max;
}

void sl_head_deinit(struct sl_head *h)
{
    free(h->buf);
    free(h->fields);
    free(h->headers);
    memset(h, 0, sizeof *h);
}

void sl_head_reset(struct sl_head *h)
{
    h->len = 0;
    h->nfields = 0;
    h->method_len = h->url_len = h->reason_len = 0;
    h->tok = SL_TOK_NONE;
    h->overflow = h->obs_fold = h->head_done = h->msg_done = false;
    h->skip_body = h->interim = false;
    h->body_bytes = 0;
    h->body_sink = NULL;
    h->body_tap = NULL;
    h->prev_byte = '\n';
}

/* Appends `n` bytes to the head text; the new bytes extend the token in progress. */
static int head_append(struct sl_head *h, const char *at, size_t n)
{
    /* llhttp may report an empty span (a field with no name) before any byte was kept,
     * and memcpy to a null buffer is undefined even for no bytes. */
    if (n == 0)
        return 0;
    if (h->len + n > h->max) {
        h->overflow = true;
        return -1;
    }
    if (h->len + n > h->cap) {
        size_t cap = h->cap ? h->cap : INITIAL_CAP;
        while (cap < h->len + n)
            cap *= 2;
        char *buf = realloc(h->buf, cap);
        if (!buf)
            return -1;
        h->buf = buf;
        h->cap = cap;
    }
    memcpy(h->buf + h->len, at, n);
    h->len += n;
    return 0;
}

static struct sl_head *head_of(llhttp_t *p)
{
    return p->data;
}

static int on_method(llhttp_t *p, const char *at, size_t n)
{
    struct sl_head *h = head_of(p);
    if (h->tok != SL_TOK_METHOD) {
        h->tok = SL_TOK_METHOD;
        h->method_off = (uint32_t)h->len;
    }
    if (head_append(h, at, n) < 0)
        return -1;
    h->method_len += (uint32_t)n;
    return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
    struct sl_head *h = head_of(p);
    if (h->tok != SL_TOK_URL) {
        h->tok = SL_TOK_URL;
        h->url_off = (uint32_t)h->len;
    }
    if (head_append(h, at, n) < 0)
        return -1;
    h->url_len += (uint32_t)n;
    return 0;
}

static int on_status(llhttp_t *p, const char *at, size_t n)
{
    struct sl_head *h = head_of(p);
    if (h->tok != SL_TOK_STATUS) {
        h->tok = SL_TOK_STATUS;
        h->reason_off = (uint32_t)h->len;
    }
    if (head_append(h, at, n) < 0)
        return -1;
    h->reason_len += (uint32_t)n;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t n)
{
    struct sl_head *h = head_of(p);
    if (h->head_done)
        return 0; /* a trailer: relayed in the raw chunked body, not collected */
    if (h->tok != SL_TOK_NAME) {
        if (h->nfields == h->fields_cap) {
            size_t cap = h->fields_cap ? h->fields_cap * 2 : INITIAL_FIELDS;
            struct sl_head_field *f = realloc(h->fields, cap * sizeof *f);
            if (!f)
                return -1;
            h->fields = f;
            h->fields_cap = cap;
        }
        struct sl_head_field *f = &h->fields[h->nfields++];
        f->name_off = (uint32_t)h->len;
        f->name_len = 0;
        f->value_off = 0;
        f->value_len = 0;
        h->tok = SL_TOK_NAME;
    }
    if (head_append(h, at, n) < 0)
        return -1;
    h->fields[h->nfields - 1].name_len += (uint32_t)n;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t n)
{
    struct sl_head *h = head_of(p);
    if (h->head_done)
        return 0;
    struct sl_head_field *f = &h->fields[h->nfields - 1];
    if (h->tok != SL_TOK_VALUE) {
        f->value_off = (uint32_t)h->len;
        h->tok = SL_TOK_VALUE;
    }
    if (head_append(h, at, n) < 0)
        return -1;
    f->value_len += (uint32_t)n;
    return 0;
}

/* A field without value still needs its value offset set. */
static int on_header_field_complete(llhttp_t *p)
{
    struct sl_head *h = head_of(p);
    if (!h->head_done) {
        h->fields[h->nfields - 1].value_off = (uint32_t)h->len;
        h->tok = SL_TOK_NONE;
    }
    return 0;
}

static int on_token_complete(llhttp_t *p)
{
    head_of(p)->tok = SL_TOK_NONE;
    return 0;
}

static int on_request_headers_complete(llhttp_t *p)
{
    head_of(p)->head_done = true;
    return HPE_PAUSED;
}

static int on_response_headers_complete(llhttp_t *p)
{
    struct sl_head *h = head_of(p);
    /* RFC 9112 6.3, rule 1: a response to HEAD and every 1xx, 204 and 304 end with the
     * head whatever Content-Length or Transfer-Encoding say; llhttp leaves that rule to
     * its embedder and would otherwise wait for a body that never comes. A 101 is
     * followed by the new protocol, which the tunnel relays raw. */
    if (h->skip_body || sl_forward_status_bodiless(p->status_code))
        p->flags |= F_SKIPBODY;
    if (p->status_code >= 100 && p->status_code < 200 && p->status_code != 101) {
        /* An interim response (100 Continue, 103 Early Hints): sluice answers Expect
         * itself, so interim responses are dropped and the final one is awaited. Their
         * Connection header does not end the exchange: the final response decides. */
        h->interim = true;
        p->flags = (p->flags & ~F_CONNECTION_CLOSE) | F_CONNECTION_KEEP_ALIVE;
        return 0;
    }
    h->head_done = true;
    return HPE_PAUSED;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
    struct sl_head *h = head_of(p);
    h->body_bytes += n;
    if (h->body_tap)
        h->body_tap(h->body_tap_arg, at, n);
    if (h->body_sink && evbuffer_add(h->body_sink, at, n) < 0)
        return -1;
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct sl_head *h = head_of(p);
    if (h->interim) {
        bool skip = h->skip_body;
        sl_head_reset(h);
        h->skip_body = skip;
        return 0;
    }
    h->msg_done = true;
    return HPE_PAUSED;
}

const llhttp_settings_t sl_request_settings = {
    .on_method = on_method,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_method_complete = on_token_complete,
    .on_url_complete = on_token_complete,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_token_complete,
    .on_headers_complete = on_request_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

const llhttp_settings_t sl_response_settings = {
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_status_complete = on_token_complete,
    .on_header_field_complete = on_header_field_complete,
    .on_header_value_complete = on_token_complete,
    .on_headers_complete = on_response_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

int sl_head_finish(struct sl_head *h)
{
    if (h->nfields > h->headers_cap) {
        struct sl_header *hd = realloc(h->headers, h->nfields * sizeof *hd);
        if (!hd)
            return -1;
        h->headers = hd;
        h->headers_cap = h->nfields;
    }
    for (size_t i = 0; i < h->nfields; i++) {
        const struct sl_head_field *f = &h->fields[i];
        const char *v = h->buf + f->value_off;
        size_t vl = f->value_len;
        while (vl && is_ows(v[0])) {
            v++;
            vl--;
        }
        while (vl && is_ows(v[vl - 1]))
            vl--;
        h->headers[i] = (struct sl_header){h->buf + f->name_off, f->name_len, v, vl};
    }
    return 0;
}

size_t sl_head_underscored(struct sl_head *h, bool remove)
{
    size_t found = 0, kept = 0;
    for (size_t i = 0; i < h->nfields; i++) {
        if (memchr(h->headers[i].name, '_', h->headers[i].name_len)) {
            found++;
            if (remove)
                continue;
        }
        h->fields[kept] = h->fields[i];
        h->headers[kept++] = h->headers[i];
    }
    h->nfields = kept;
    return found;
}

/* Obsolete line folding (RFC 9112 5.2) is a line of the head that starts with whitespace;
 * llhttp accepts it, so it is caught here and rejected. */
static void scan_fold(struct sl_head *h, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (h->prev_byte == '\n' && is_ows(s[0]))
        h->obs_fold = true;
    const char *p = s, *end = s + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        p++;
        if (p < end && is_ows(*p))
            h->obs_fold = true;
    }
    h->prev_byte = (unsigned char)s[n - 1];
}

long sl_parse_run(llhttp_t *p, struct evbuffer *in, size_t limit, bool scan_head,
                  llhttp_errno_t *err)
{
    struct evbuffer_iovec vec[8];
    size_t avail = evbuffer_get_length(in);
    if (limit > avail)
        limit = avail;
    int n = evbuffer_peek(in, (ev_ssize_t)limit, NULL, vec, 8);
    if (n > 8)
        n = 8;
    size_t done = 0;

    *err = HPE_OK;
    for (int i = 0; i < n && done < limit; i++) {
        const char *base = vec[i].iov_base;
        size_t len = vec[i].iov_len;
        if (len > limit - done)
            len = limit - done;
        llhttp_errno_t e = llhttp_execute(p, base, len);
        size_t took = len;
        if (e == HPE_PAUSED || e == HPE_PAUSED_UPGRADE)
            took = (size_t)(llhttp_get_error_pos(p) - base);
        else if (e != HPE_OK) {
            *err = e;
            return -1;
        }
        if (scan_head)
            scan_fold(head_of(p), base, took);
        done += took;
        if (e != HPE_OK) {
            *err = e;
            break;
        }
    }
    return (long)done;
}
