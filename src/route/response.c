/* Rate-limit header fields and the bodies of sluice's own answers (SPEC.md section 6).
 *
 * These are written on every response of a limited route, and a denied request is little
 * else, so the text is assembled in a buffer on the stack and handed to the verdict's
 * buffers in one piece: printf-style formatting and byte-at-a-time appends cost more than
 * the decision. */
#include <string.h>

#include "response.h"
#include "sluice/limit.h"
#include "sluice/rates.h"
#include "sluice/text.h"

/* Appends `s` between double quotes, each byte of `special` preceded by a backslash and
 * control characters as \u00XX when `json`. Names are validated as [A-Za-z0-9_-] by the
 * loader, so the first scan almost always finds nothing to escape; the output stays well
 * formed whatever they hold. */
static void text_quoted(struct sl_text *t, const char *s, bool json)
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(s);
    size_t plain = 0;

    while (plain < n && s[plain] != '"' && s[plain] != '\\' && (unsigned char)s[plain] >= 0x20)
        plain++;
    if (plain == n && n + 2 <= sizeof t->buf - t->len) {
        char *p = t->buf + t->len;
        p[0] = '"';
        memcpy(p + 1, s, n);
        p[n + 1] = '"';
        t->len += n + 2;
        return;
    }
    SL_TEXT_LIT(t, "\"");
    sl_text_add(t, s, plain);
    for (size_t i = plain; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            char esc[2] = {'\\', (char)c};
            sl_text_add(t, esc, 2);
        } else if (c < 0x20 && json) {
            char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            sl_text_add(t, esc, 6);
        } else {
            sl_text_add(t, (const char *)&c, 1);
        }
    }
    SL_TEXT_LIT(t, "\"");
}

/* Header fields count whole seconds; rounding down would tell a client to come back
 * before the quota is restored. */
static uint64_t seconds_up(uint64_t us)
{
    return us / 1000000u + (us % 1000000u != 0);
}

/* Shadow limits are candidates under trial: clients never see them. A consumer's
 * `unlimited` rate has no quota to describe: the limit is left out, as if it did not apply. */
static bool answered(const struct sl_verdict_check *c)
{
    return c->applied && c->status == SL_STORE_OK && !c->limit->shadow &&
           c->quota.count != SL_RATE_UNLIMITED;
}

/* draft-ietf-httpapi-ratelimit-headers-10: one list member per limit, in configuration
 * order, under the limit's name (an sf-string, RFC 8941 3.3.3). */
static void add_draft(struct sl_text *t, const struct sl_verdict *v, size_t n)
{
    bool first = true;

    SL_TEXT_LIT(t, "RateLimit-Policy: ");
    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!answered(c))
            continue;
        if (!first)
            SL_TEXT_LIT(t, ", ");
        first = false;
        text_quoted(t, c->limit->name, false);
        SL_TEXT_LIT(t, ";q=");
        sl_text_u64(t, c->quota.count); /* the rate that applied: a consumer's, if any */
        SL_TEXT_LIT(t, ";w=");
        sl_text_u64(t, seconds_up(c->quota.period_us));
    }
    SL_TEXT_LIT(t, "\r\nRateLimit: ");
    first = true;
    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!answered(c))
            continue;
        if (!first)
            SL_TEXT_LIT(t, ", ");
        first = false;
        text_quoted(t, c->limit->name, false);
        SL_TEXT_LIT(t, ";r=");
        sl_text_u64(t, c->decision.remaining);
        SL_TEXT_LIT(t, ";t=");
        sl_text_u64(t, seconds_up(c->decision.reset_us));
    }
    SL_TEXT_LIT(t, "\r\n");
}

/* The legacy fields describe one limit: the one closest to denying (lowest remaining,
 * the first in configuration order on ties), as most gateways report. */
static void add_legacy(struct sl_text *t, const struct sl_verdict *v, size_t n)
{
    const struct sl_verdict_check *pick = NULL;

    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (answered(c) && (!pick || c->decision.remaining < pick->decision.remaining))
            pick = c;
    }
    SL_TEXT_LIT(t, "X-RateLimit-Limit: ");
    sl_text_u64(t, pick->decision.limit);
    SL_TEXT_LIT(t, "\r\nX-RateLimit-Remaining: ");
    sl_text_u64(t, pick->decision.remaining);
    SL_TEXT_LIT(t, "\r\nX-RateLimit-Reset: ");
    sl_text_u64(t, seconds_up(pick->decision.reset_us));
    SL_TEXT_LIT(t, "\r\n");
}

/* The rate-limit fields of v's answered checks, in cfg->response_headers style. */
static void add_ratelimit_fields(struct sl_text *t, const struct sl_config *cfg,
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
    struct sl_text t;
    sl_text_init_textbuf(&t, v->headers);
    add_ratelimit_fields(&t, cfg, v);
    sl_text_flush(&t);
}

/* The answer to a request whose cost limit `c` can never admit. */
static void response_never_fits(const struct sl_config *cfg, struct sl_verdict *v,
                                const struct sl_verdict_check *c)
{
    v->status = cfg->response_status;
    if (v->headers) {
        struct sl_text t;
        sl_text_init_textbuf(&t, v->headers);
        add_ratelimit_fields(&t, cfg, v);
        sl_text_flush(&t);
    }
    if (v->body) {
        struct sl_text t;
        sl_text_init_textbuf(&t, v->body);
        SL_TEXT_LIT(&t, "{\"error\":\"cost_exceeds_capacity\",\"route\":");
        text_quoted(&t, v->route->name, true);
        SL_TEXT_LIT(&t, ",\"limit\":");
        text_quoted(&t, c->limit->name, true);
        SL_TEXT_LIT(&t, ",\"cost\":");
        sl_text_u64(&t, c->units.need);
        SL_TEXT_LIT(&t, ",\"capacity\":");
        sl_text_u64(&t, sl_quota_capacity(c->limit, &c->quota));
        SL_TEXT_LIT(&t, "}");
        sl_text_flush(&t);
    }
}

void sl_response_bad_cost(struct sl_verdict *v, const struct sl_limit *lim)
{
    v->status = 400;
    if (!v->body)
        return;
    struct sl_text t;
    sl_text_init_textbuf(&t, v->body);
    SL_TEXT_LIT(&t, "{\"error\":\"bad_cost\",\"route\":");
    text_quoted(&t, v->route->name, true);
    SL_TEXT_LIT(&t, ",\"limit\":");
    text_quoted(&t, lim->name, true);
    SL_TEXT_LIT(&t, ",\"header\":");
    text_quoted(&t, lim->cost_header, true);
    SL_TEXT_LIT(&t, "}");
    sl_text_flush(&t);
}

void sl_response_limited(const struct sl_config *cfg, struct sl_verdict *v)
{
    const struct sl_verdict_check *first = NULL;
    uint64_t retry_us = 0;

    for (size_t i = 0; i < sl_verdict_nchecks(v->route); i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!answered(c) || c->decision.allowed)
            continue;
        if (c->never_fits) {
            response_never_fits(cfg, v, c);
            return;
        }
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
        struct sl_text t;
        sl_text_init_textbuf(&t, v->headers);
        add_ratelimit_fields(&t, cfg, v);
        SL_TEXT_LIT(&t, "Retry-After: ");
        sl_text_u64(&t, retry);
        SL_TEXT_LIT(&t, "\r\n");
        sl_text_flush(&t);
    }
    if (v->body) {
        struct sl_text t;
        sl_text_init_textbuf(&t, v->body);
        SL_TEXT_LIT(&t, "{\"error\":\"rate_limited\",\"route\":");
        text_quoted(&t, v->route->name, true);
        SL_TEXT_LIT(&t, ",\"limit\":");
        text_quoted(&t, first ? first->limit->name : "", true);
        SL_TEXT_LIT(&t, ",\"retry_after\":");
        sl_text_u64(&t, retry);
        SL_TEXT_LIT(&t, "}");
        sl_text_flush(&t);
    }
}

void sl_response_store_unavailable(struct sl_verdict *v)
{
    static const char retry[] = "Retry-After: 1\r\n";
    static const char body[] = "{\"error\":\"store_unavailable\"}";

    if (v->headers)
        sl_textbuf_add(v->headers, retry, sizeof retry - 1);
    if (v->body)
        sl_textbuf_add(v->body, body, sizeof body - 1);
    v->status = 503;
}
