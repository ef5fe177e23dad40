/* HTTP/2 upstream heads: the request as HPACK fields (sl_forward_request_fields' rules,
 * names lower-cased, Host as :authority), the response head and trailers collected as
 * nghttp2 decodes them. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "h2u.h"
#include "sluice/forward.h"

struct nv_list {
    nghttp2_nv *nv;
    size_t n, cap;
    char *names; /* lower-cased names, one after another */
    size_t names_len;
};

static void add_field(void *arg, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
    struct nv_list *l = arg;
    if (l->n == l->cap)
        return; /* sized by the caller: cannot happen */
    char *d = l->names + l->names_len;
    for (size_t i = 0; i < name_len; i++)
        d[i] = (char)((name[i] >= 'A' && name[i] <= 'Z') ? name[i] + 32 : name[i]);
    l->names_len += name_len;
    l->nv[l->n++] = (nghttp2_nv){(uint8_t *)d, (uint8_t *)(uintptr_t)value, name_len, value_len,
                                 NGHTTP2_NV_FLAG_NONE};
}

int sl_h2u_head_submit(struct sl_h2u_stream *s)
{
    struct sl_exchange *x = s->x;
    const struct sl_request *r = &x->req;
    struct sl_forward_request f = {
        .req = r,
        .peer = x->peer_text_len ? x->peer_text : NULL,
        .peer_len = x->peer_text_len,
        .strip_expect = x->expect_continue,
        .https = x->tls,
    };
    const char *authority = s->c->target;
    size_t authority_len = strlen(authority), names = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        names += r->headers[i].name_len;
        if (r->headers[i].name_len == 4 && strncasecmp(r->headers[i].name, "host", 4) == 0 &&
            authority == s->c->target) {
            authority = r->headers[i].value;
            authority_len = r->headers[i].value_len;
        }
    }
    /* Four pseudo-fields, the request's own, and te, X-Forwarded-For, -Proto, -Host. */
    size_t cap = 4 + r->nheaders + 4;
    struct nv_list l = {.cap = cap};
    char *mem = malloc(cap * sizeof(nghttp2_nv) + names + 64);
    if (!mem)
        return -1;
    l.nv = (nghttp2_nv *)mem;
    l.names = mem + cap * sizeof(nghttp2_nv);
    l.nv[l.n++] = (nghttp2_nv){(uint8_t *)":method", (uint8_t *)(uintptr_t)r->method, 7,
                               r->method_len, NGHTTP2_NV_FLAG_NONE};
    l.nv[l.n++] = (nghttp2_nv){(uint8_t *)":scheme", (uint8_t *)"http", 7, 4,
                               NGHTTP2_NV_FLAG_NONE};
    l.nv[l.n++] = (nghttp2_nv){(uint8_t *)":authority", (uint8_t *)(uintptr_t)authority, 10,
                               authority_len, NGHTTP2_NV_FLAG_NONE};
    l.nv[l.n++] = (nghttp2_nv){(uint8_t *)":path", (uint8_t *)(uintptr_t)r->target, 5,
                               r->target_len, NGHTTP2_NV_FLAG_NONE};
    struct sl_textbuf xff = {0};
    int rc = sl_forward_request_fields(&f, &xff, add_field, &l);
    if (rc == 0) {
        nghttp2_data_provider prd = {.source.ptr = s, .read_callback = sl_h2u_body_read};
        bool body = x->has_body && !(x->req_done && evbuffer_get_length(s->body) == 0);
        int32_t id = nghttp2_submit_request(s->c->session, NULL, l.nv, l.n, body ? &prd : NULL, s);
        if (id < 0)
            rc = -1;
        else
            s->id = id;
    }
    sl_textbuf_free(&xff);
    free(mem);
    return rc;
}

int sl_h2u_on_header(struct sl_h2u_stream *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen)
{
    (void)f;
    if (!s->x)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        int v = 0;
        for (size_t i = 0; i < valuelen && i < 3; i++)
            v = v * 10 + (value[i] - '0');
        s->status = v;
        return 0;
    }
    if (name[0] == ':')
        return 0;
    if (s->hlen + namelen + valuelen > s->hcap) {
        size_t cap = s->hcap ? s->hcap : 1024;
        while (cap < s->hlen + namelen + valuelen)
            cap *= 2;
        char *p = realloc(s->hbuf, cap);
        if (!p)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        /* The fields so far point into the old buffer: move them along. */
        for (size_t i = 0; i < s->nfields; i++) {
            s->fields[i].name = p + (s->fields[i].name - s->hbuf);
            s->fields[i].value = p + (s->fields[i].value - s->hbuf);
        }
        s->hbuf = p;
        s->hcap = cap;
    }
    if (s->nfields == s->fields_cap) {
        size_t cap = s->fields_cap ? 2 * s->fields_cap : 16;
        struct sl_header *p = realloc(s->fields, cap * sizeof *p);
        if (!p)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        s->fields = p;
        s->fields_cap = cap;
    }
    char *d = s->hbuf + s->hlen;
    memcpy(d, name, namelen);
    memcpy(d + namelen, value, valuelen);
    s->hlen += namelen + valuelen;
    s->fields[s->nfields++] = (struct sl_header){d, namelen, d + namelen, valuelen};
    if (namelen == 14 && memcmp(name, "content-length", 14) == 0) {
        int64_t n = 0;
        for (size_t i = 0; i < valuelen && n < (INT64_MAX - 9) / 10; i++)
            n = n * 10 + (value[i] - '0'); /* nghttp2 checked it is digits */
        s->content_length = n;
    }
    if (namelen == 12 && memcmp(name, "content-type", 12) == 0 && valuelen >= 16 &&
        memcmp(value, "application/grpc", 16) == 0)
        s->grpc = true;
    return 0;
}
