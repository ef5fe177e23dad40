/* The heads sluice forwards in each direction (RFC 9110 section 7.6.1 for hop-by-hop
 * fields, the de-facto X-Forwarded-* headers). */
#include "sluice/forward.h"

#include <event2/buffer.h>
#include <string.h>
#include <strings.h>

#include "sluice/text.h"

#define NAME(s) s, sizeof(s) - 1

/* Every Connection option is a header name to drop (RFC 9110 7.6.1). More names than this
 * are not worth honouring individually; past it the rest are still removed by a rescan. */
#define MAX_CONNECTION_TOKENS 16

struct token {
    const char *s;
    size_t len;
};

struct tokens {
    struct token t[MAX_CONNECTION_TOKENS];
    size_t n;
    bool overflow;
};

static bool name_is(const char *name, size_t len, const char *lit, size_t lit_len)
{
    return len == lit_len && strncasecmp(name, lit, len) == 0;
}

bool sl_forward_is_hop_by_hop(const char *name, size_t len)
{
    switch (len) {
    case 2:
        return name_is(name, len, NAME("TE"));
    case 14:
        /* RFC 9113 3.2.1: it belongs to the connection that asks for h2c. Content-Length
         * has the same length and is on nearly every message: its first byte settles it. */
        return (name[0] | 0x20) == 'h' && name_is(name, len, NAME("HTTP2-Settings"));
    case 7:
        return name_is(name, len, NAME("Trailer")) || name_is(name, len, NAME("Upgrade"));
    case 10:
        return name_is(name, len, NAME("Connection")) || name_is(name, len, NAME("Keep-Alive"));
    case 16:
        return name_is(name, len, NAME("Proxy-Connection"));
    case 17:
        return name_is(name, len, NAME("Transfer-Encoding"));
    default:
        return false;
    }
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

/* The next comma-separated, trimmed, non-empty element of a list value from `*pos`;
 * false at the end. */
static inline bool next_element(const char *v, size_t len, size_t *pos, struct token *out)
{
    size_t i = *pos;
    while (i < len) {
        size_t start = i;
        while (i < len && v[i] != ',')
            i++;
        size_t end = i++;
        while (start < end && is_ows(v[start]))
            start++;
        while (end > start && is_ows(v[end - 1]))
            end--;
        if (end > start) {
            *pos = i;
            *out = (struct token){v + start, end - start};
            return true;
        }
    }
    *pos = i;
    return false;
}

static void split_list(const char *v, size_t len, struct tokens *out)
{
    struct token t;
    for (size_t pos = 0; next_element(v, len, &pos, &t);) {
        if (out->n < MAX_CONNECTION_TOKENS)
            out->t[out->n++] = t;
        else
            out->overflow = true;
    }
}

static bool list_has(const struct tokens *tk, const char *name, size_t len)
{
    for (size_t i = 0; i < tk->n; i++)
        if (name_is(name, len, tk->t[i].s, tk->t[i].len))
            return true;
    return false;
}

/* A header named by an element of any Connection header, scanning all of them; used only
 * when there were more elements than `tokens` holds. */
static bool named_by_connection_slow(const struct sl_header *h, size_t n, const char *name,
                                     size_t len)
{
    struct token t;
    for (size_t i = 0; i < n; i++) {
        if (!name_is(h[i].name, h[i].name_len, NAME("Connection")))
            continue;
        for (size_t pos = 0; next_element(h[i].value, h[i].value_len, &pos, &t);)
            if (name_is(name, len, t.s, t.len))
                return true;
    }
    return false;
}

/* An Upgrade element is "name" or "name/version" (RFC 9110 7.8); the name decides. */
static bool upgrade_allowed(const struct token *t, char *const *names, size_t nnames)
{
    const char *slash = memchr(t->s, '/', t->len);
    size_t len = slash ? (size_t)(slash - t->s) : t->len;

    /* Never h2c, whatever the list: HTTP/2 in a tunnel is requests no limit sees. */
    if (name_is(t->s, len, NAME("h2c")))
        return false;
    for (size_t i = 0; i < nnames; i++)
        if (name_is(t->s, len, names[i], strlen(names[i])))
            return true;
    return false;
}

size_t sl_forward_upgrades(const struct sl_header *h, size_t n, char *const *names,
                           size_t nnames, size_t *allowed)
{
    size_t total = 0;
    struct token t;

    *allowed = 0;
    for (size_t i = 0; i < n; i++) {
        if (!name_is(h[i].name, h[i].name_len, NAME("Upgrade")))
            continue;
        for (size_t pos = 0; next_element(h[i].value, h[i].value_len, &pos, &t); total++)
            *allowed += upgrade_allowed(&t, names, nnames);
    }
    return total;
}

/* One Upgrade field holding the allowed elements of all of the request's, in order. */
static void add_upgrade(struct sl_text *out, const struct sl_forward_request *f)
{
    const struct sl_header *h = f->req->headers;
    const char *sep = "Upgrade: ";
    struct token t;

    for (size_t i = 0; i < f->req->nheaders; i++) {
        if (!name_is(h[i].name, h[i].name_len, NAME("Upgrade")))
            continue;
        for (size_t pos = 0; next_element(h[i].value, h[i].value_len, &pos, &t);) {
            if (!upgrade_allowed(&t, f->upgrades, f->nupgrades))
                continue;
            sl_text_add(out, sep, strlen(sep));
            sl_text_add(out, t.s, t.len);
            sep = ", ";
        }
    }
    SL_TEXT_LIT(out, "\r\n");
}

static void connection_tokens(const struct sl_header *h, size_t n, struct tokens *tk)
{
    tk->n = 0;
    tk->overflow = false;
    for (size_t i = 0; i < n; i++)
        if (name_is(h[i].name, h[i].name_len, NAME("Connection")))
            split_list(h[i].value, h[i].value_len, tk);
}

static bool named_by_connection(const struct tokens *tk, const struct sl_header *h, size_t n,
                                const char *name, size_t len)
{
    if (list_has(tk, name, len))
        return true;
    return tk->overflow && named_by_connection_slow(h, n, name, len);
}

static void add_header(struct sl_text *t, const struct sl_header *h)
{
    sl_text_add(t, h->name, h->name_len);
    SL_TEXT_LIT(t, ": ");
    sl_text_add(t, h->value, h->value_len);
    SL_TEXT_LIT(t, "\r\n");
}

/* Whether the request's field `i` is left out of what goes upstream: hop-by-hop, named by
 * Connection, one sluice sets itself, or Expect that sluice answered. X-Forwarded-For is
 * left out here and merged by add_forwarded_for; `*xff` says one was seen. */
static bool request_field_dropped(const struct sl_forward_request *f, const struct tokens *tk,
                                  size_t i, bool *xff)
{
    const struct sl_header *h = f->req->headers;
    const char *name = h[i].name;
    size_t len = h[i].name_len;

    if (sl_forward_is_hop_by_hop(name, len) ||
        named_by_connection(tk, h, f->req->nheaders, name, len))
        return true;
    if (name_is(name, len, NAME("X-Forwarded-Proto")) ||
        name_is(name, len, NAME("X-Forwarded-Host")))
        return true;
    if (f->strip_expect && name_is(name, len, NAME("Expect")))
        return true;
    if (name_is(name, len, NAME("X-Forwarded-For"))) {
        *xff = true;
        return true;
    }
    return false;
}

/* Several X-Forwarded-For fields are one list (RFC 9110 5.3): they are merged into one
 * value so that the peer lands at the end of the whole list. */
static void add_forwarded_for(struct sl_text *t, const struct sl_forward_request *f, bool xff)
{
    const struct sl_header *h = f->req->headers;
    const char *sep = "";

    for (size_t i = 0; xff && i < f->req->nheaders; i++) {
        if (!name_is(h[i].name, h[i].name_len, NAME("X-Forwarded-For")) || h[i].value_len == 0)
            continue;
        sl_text_add(t, sep, strlen(sep));
        sl_text_add(t, h[i].value, h[i].value_len);
        sep = ", ";
    }
    if (f->peer) {
        sl_text_add(t, sep, strlen(sep));
        sl_text_add(t, f->peer, f->peer_len);
    }
}

int sl_forward_request_head(const struct sl_forward_request *f, struct evbuffer *out)
{
    const struct sl_request *r = f->req;
    const struct sl_header *h = r->headers;
    const struct sl_header *host = NULL;
    struct tokens tk;
    bool xff_seen = false;
    char version[] = "HTTP/1.1\r\n";
    struct sl_text t;

    version[7] = (char)('0' + f->http_minor);
    connection_tokens(h, r->nheaders, &tk);
    sl_text_init(&t, out);

    sl_text_add(&t, r->method, r->method_len);
    SL_TEXT_LIT(&t, " ");
    sl_text_add(&t, r->target, r->target_len);
    SL_TEXT_LIT(&t, " ");
    sl_text_add(&t, version, sizeof version - 1);

    for (size_t i = 0; i < r->nheaders; i++) {
        if (request_field_dropped(f, &tk, i, &xff_seen))
            continue;
        if (!host && name_is(h[i].name, h[i].name_len, NAME("Host")))
            host = &h[i];
        add_header(&t, &h[i]);
    }
    if (xff_seen || f->peer) {
        SL_TEXT_LIT(&t, "X-Forwarded-For: ");
        add_forwarded_for(&t, f, xff_seen);
        SL_TEXT_LIT(&t, "\r\n");
    }
    if (f->https)
        SL_TEXT_LIT(&t, "X-Forwarded-Proto: https\r\n");
    else
        SL_TEXT_LIT(&t, "X-Forwarded-Proto: http\r\n");
    if (host) {
        SL_TEXT_LIT(&t, "X-Forwarded-Host: ");
        sl_text_add(&t, host->value, host->value_len);
        SL_TEXT_LIT(&t, "\r\n");
    }
    if (f->chunked)
        SL_TEXT_LIT(&t, "Transfer-Encoding: chunked\r\n");
    if (f->upgrade) {
        add_upgrade(&t, f);
        SL_TEXT_LIT(&t, "Connection: upgrade\r\n");
    }
    SL_TEXT_LIT(&t, "\r\n");
    return sl_text_flush(&t);
}

int sl_forward_request_fields(const struct sl_forward_request *f, struct sl_textbuf *scratch,
                              sl_forward_field_fn *field, void *arg)
{
    const struct sl_request *r = f->req;
    const struct sl_header *h = r->headers;
    const struct sl_header *host = NULL;
    struct tokens tk;
    bool xff_seen = false, te_trailers = false;
    struct sl_text t;

    connection_tokens(h, r->nheaders, &tk);
    for (size_t i = 0; i < r->nheaders; i++) {
        /* RFC 9113 8.2.2: TE may go on HTTP/2 with "trailers" alone, which gRPC needs. */
        if (name_is(h[i].name, h[i].name_len, NAME("TE")))
            te_trailers = te_trailers || name_is(h[i].value, h[i].value_len, NAME("trailers"));
        if (request_field_dropped(f, &tk, i, &xff_seen))
            continue;
        if (name_is(h[i].name, h[i].name_len, NAME("Host"))) {
            host = host ? host : &h[i]; /* the caller's :authority */
            continue;
        }
        field(arg, h[i].name, h[i].name_len, h[i].value, h[i].value_len);
    }
    if (te_trailers)
        field(arg, NAME("te"), NAME("trailers"));
    scratch->len = 0;
    if (xff_seen || f->peer) {
        sl_text_init_textbuf(&t, scratch);
        add_forwarded_for(&t, f, xff_seen);
        if (sl_text_flush(&t) < 0)
            return -1;
        field(arg, NAME("x-forwarded-for"), scratch->data, scratch->len);
    }
    if (f->https)
        field(arg, NAME("x-forwarded-proto"), NAME("https"));
    else
        field(arg, NAME("x-forwarded-proto"), NAME("http"));
    if (host)
        field(arg, NAME("x-forwarded-host"), host->value, host->value_len);
    return 0;
}

int sl_forward_response_head(const struct sl_forward_response *f, struct evbuffer *out)
{
    const struct sl_header *h = f->headers;
    struct tokens tk;
    char status[] = "HTTP/1.1 000 ";
    struct sl_text t;

    /* llhttp accepts only three-digit status codes */
    status[9] = (char)('0' + f->status / 100 % 10);
    status[10] = (char)('0' + f->status / 10 % 10);
    status[11] = (char)('0' + f->status % 10);

    connection_tokens(h, f->nheaders, &tk);
    sl_text_init(&t, out);
    sl_text_add(&t, status, sizeof status - 1);
    sl_text_add(&t, f->reason, f->reason_len);
    SL_TEXT_LIT(&t, "\r\n");
    for (size_t i = 0; i < f->nheaders; i++) {
        const char *name = h[i].name;
        size_t len = h[i].name_len;

        if (f->drop_content_length && name_is(name, len, NAME("Content-Length")))
            continue;
        if (f->keep_transfer_encoding && name_is(name, len, NAME("Transfer-Encoding"))) {
            add_header(&t, &h[i]);
            continue;
        }
        if (f->connection == SL_CONN_UPGRADE && name_is(name, len, NAME("Upgrade"))) {
            add_header(&t, &h[i]);
            continue;
        }
        if (sl_forward_is_hop_by_hop(name, len) ||
            named_by_connection(&tk, h, f->nheaders, name, len))
            continue;
        add_header(&t, &h[i]);
    }
    if (f->add_chunked)
        SL_TEXT_LIT(&t, "Transfer-Encoding: chunked\r\n");
    if (f->extra && f->extra->len)
        sl_text_add(&t, f->extra->data, f->extra->len);
    switch (f->connection) {
    case SL_CONN_CLOSE:
        SL_TEXT_LIT(&t, "Connection: close\r\n");
        break;
    case SL_CONN_KEEP_ALIVE:
        SL_TEXT_LIT(&t, "Connection: keep-alive\r\n");
        break;
    case SL_CONN_UPGRADE:
        SL_TEXT_LIT(&t, "Connection: upgrade\r\n");
        break;
    case SL_CONN_NONE:
        break;
    }
    SL_TEXT_LIT(&t, "\r\n");
    return sl_text_flush(&t);
}

bool sl_forward_status_bodiless(int status)
{
    return (status >= 100 && status < 200) || status == 204 || status == 304;
}

const char *sl_forward_check_response(unsigned http_major, unsigned http_minor, int status,
                                      bool bodiless, const struct sl_header *h, size_t n)
{
    unsigned te = 0;

    if (http_major != 1)
        return "an HTTP version other than 1.x";
    if (status < 100 || status > 599)
        return "a status code outside 100..599";
    if (bodiless)
        return NULL; /* its head alone frames it: no length header can mislead */
    for (size_t i = 0; i < n; i++) {
        if (!name_is(h[i].name, h[i].name_len, NAME("Transfer-Encoding")))
            continue;
        /* RFC 9112 6.1: in HTTP/1.0 the framing is faulty. A list not ending in chunked
         * is delimited by the close, one ending in it carries codings sluice would pass
         * to clients that may not know them, and "chunked" twice is forbidden; nginx
         * refuses all of them too. */
        if (http_minor == 0)
            return "Transfer-Encoding in an HTTP/1.0 response";
        if (++te > 1 || !name_is(h[i].value, h[i].value_len, NAME("chunked")))
            return "a Transfer-Encoding other than \"chunked\"";
    }
    return NULL;
}
