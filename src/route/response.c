/* Rate-limit header fields and the bodies of sluice's own answers (SPEC.md section 6).
 *
 * These are written on every response of a limited route, and a denied request is little
 * else, so the text is assembled in a buffer on the stack and handed to the evbuffer in one
 * piece: printf-style formatting and byte-at-a-time appends cost more than the decision. */
#include <event2/buffer.h>
#include <string.h>

#include "response.h"

/* Text on its way to an evbuffer. Whatever does not fit is flushed first, so any length
 * works; one response's fields fit with room to spare. */
struct text {
    struct evbuffer *out;
    size_t len;
    char buf[1024];
};

static void text_flush(struct text *t)
{
    if (t->len)
        evbuffer_add(t->out, t->buf, t->len);
    t->len = 0;
}

static void text_add(struct text *t, const char *s, size_t n)
{
    if (n > sizeof t->buf - t->len) {
        text_flush(t);
        if (n > sizeof t->buf) {
            evbuffer_add(t->out, s, n);
            return;
        }
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

#define TEXT_LIT(t, lit) text_add((t), (lit), sizeof(lit) - 1)

static void text_u64(struct text *t, uint64_t v)
{
    char digits[20];
    size_t i = sizeof digits;

    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    text_add(t, digits + i, sizeof digits - i);
}

/* Appends `s` between double quotes, each byte of `special` preceded by a backslash and
 * control characters as \u00XX when `json`. Names are validated as [A-Za-z0-9_-] by the
 * loader, so the first scan almost always finds nothing to escape; the output stays well
 * formed whatever they hold. */
static void text_quoted(struct text *t, const char *s, bool json)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    size_t plain = 0;

    while (plain < n && s[plain] != '"' && s[plain] != '\\' && (unsigned char)s[plain] >= 0x20)
        plain++;
    TEXT_LIT(t, "\"");
    text_add(t, s, plain);
    for (size_t i = plain; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            text_add(t, esc, 2);
        } else if (c < 0x20 && json) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            text_add(t, esc, 6);
        } else {
            text_add(t, (const char *)&c, 1);
        }
    }
    TEXT_LIT(t, "\"");
}

/* Header fields count whole seconds; rounding down would tell a client to come back
 * before the quota is restored. */
static uint64_t seconds_up(uint64_t us)
{
    return us / 1000000u + (us % 1000000u != 0);
}

static bool answered(const struct sl_verdict_check *c)
{
    return c->applied && c->status == SL_STORE_OK;
}

/* draft-ietf-httpapi-ratelimit-headers-10: one list member per limit, in configuration
 * order, under the limit's name (an sf-string, RFC 8941 3.3.3). */
static void add_draft(struct text *t, const struct sl_verdict *v, size_t n)
{
    bool first = true;

    TEXT_LIT(t, "RateLimit-Policy: ");
    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!answered(c))
            continue;
        if (!first)
            TEXT_LIT(t, ", ");
        first = false;
        text_quoted(t, c->limit->name, false);
        TEXT_LIT(t, ";q=");
        text_u64(t, c->limit->count);
        TEXT_LIT(t, ";w=");
        text_u64(t, seconds_up(c->limit->period_us));
    }
    TEXT_LIT(t, "\r\nRateLimit: ");
    first = true;
    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!answered(c))
            continue;
        if (!first)
            TEXT_LIT(t, ", ");
        first = false;
        text_quoted(t, c->limit->name, false);
        TEXT_LIT(t, ";r=");
        text_u64(t, c->decision.remaining);
        TEXT_LIT(t, ";t=");
        text_u64(t, seconds_up(c->decision.reset_us));
    }
    TEXT_LIT(t, "\r\n");
}

/* The legacy fields describe one limit: the one closest to denying (lowest remaining,
 * the first in configuration order on ties), as most gateways report. */
static void add_legacy(struct text *t, const struct sl_verdict *v, size_t n)
{
    const struct sl_verdict_check *pick = NULL;

    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (answered(c) && (!pick || c->decision.remaining < pick->decision.remaining))
            pick = c;
    }
    TEXT_LIT(t, "X-RateLimit-Limit: ");
    text_u64(t, pick->decision.limit);
    TEXT_LIT(t, "\r\nX-RateLimit-Remaining: ");
    text_u64(t, pick->decision.remaining);
    TEXT_LIT(t, "\r\nX-RateLimit-Reset: ");
    text_u64(t, seconds_up(pick->decision.reset_us));
    TEXT_LIT(t, "\r\n");
}

/* The rate-limit fields of v's answered checks, in cfg->response_headers style. */
static void add_ratelimit_fields(struct text *t, const struct sl_config *cfg,
                                 const struct sl_verdict *v)
{
    size_t n = sl_verdict_nchecks(v->route);
    bool any = false;

    for (size_t i = 0; i < n && !any; i++)
        any = answered(&v->priv.checks[i]);
    if (!any)
        return;
    if (cfg->response_headers == SL_HEADERS_DRAFT || cfg->response_headers == SL_HEADERS_BOTH)
        add_draft(t, v, n);
    if (cfg->response_headers == SL_HEADERS_LEGACY || cfg->response_headers == SL_HEADERS_BOTH)
        add_legacy(t, v, n);
}

void sl_response_ratelimit_headers(const struct sl_config *cfg, struct sl_verdict *v)
{
    if (!v->headers)
        return;
    struct text t = {.out = v->headers};
    add_ratelimit_fields(&t, cfg, v);
    text_flush(&t);
}

void sl_response_limited(const struct sl_config *cfg, struct sl_verdict *v)
{
    const struct sl_verdict_check *first = NULL;
    uint64_t retry_us = 0;

    for (size_t i = 0; i < sl_verdict_nchecks(v->route); i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!answered(c) || c->decision.allowed)
            continue;
        if (!first)
            first = c;
        if (c->decision.retry_after_us > retry_us)
            retry_us = c->decision.retry_after_us;
    }
    uint64_t retry = seconds_up(retry_us);
    if (retry == 0)
        retry = 1;
    v->status = cfg->response_status;
    if (v->headers) {
        struct text t = {.out = v->headers};
        add_ratelimit_fields(&t, cfg, v);
        TEXT_LIT(&t, "Retry-After: ");
        text_u64(&t, retry);
        TEXT_LIT(&t, "\r\n");
        text_flush(&t);
    }
    if (v->body) {
        struct text t = {.out = v->body};
        TEXT_LIT(&t, "{\"error\":\"rate_limited\",\"route\":");
        text_quoted(&t, v->route->name, true);
        TEXT_LIT(&t, ",\"limit\":");
        text_quoted(&t, first ? first->limit->name : "", true);
        TEXT_LIT(&t, ",\"retry_after\":");
        text_u64(&t, retry);
        TEXT_LIT(&t, "}");
        text_flush(&t);
    }
}

void sl_response_store_unavailable(struct sl_verdict *v)
{
    static const char retry[] = "Retry-After: 1\r\n";
    static const char body[] = "{\"error\":\"store_unavailable\"}";

    if (v->headers)
        evbuffer_add(v->headers, retry, sizeof retry - 1);
    if (v->body)
        evbuffer_add(v->body, body, sizeof body - 1);
    v->status = 503;
}
