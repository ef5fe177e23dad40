/* Rate-limit header fields and the bodies of sluice's own answers (SPEC.md section 6). */
#include <event2/buffer.h>
#include <inttypes.h>

#include "response.h"

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

/* An sf-string (RFC 8941 3.3.3): limit names are [A-Za-z0-9_-], escaped all the same. */
static void add_sf_string(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            evbuffer_add(out, "\\", 1);
        evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

/* A JSON string; names are validated by the loader, but the body must stay JSON whatever
 * they hold. */
static void add_json_string(struct evbuffer *out, const char *s)
{
    evbuffer_add(out, "\"", 1);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            evbuffer_add_printf(out, "\\%c", c);
        else if (c < 0x20)
            evbuffer_add_printf(out, "\\u%04x", c);
        else
            evbuffer_add(out, s, 1);
    }
    evbuffer_add(out, "\"", 1);
}

/* draft-ietf-httpapi-ratelimit-headers-10: one list member per limit, in configuration
 * order, under the limit's name. */
static void add_draft(struct evbuffer *out, const struct sl_verdict *v, size_t n)
{
    const char *sep = "";

    evbuffer_add_printf(out, "RateLimit-Policy: ");
    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!answered(c))
            continue;
        evbuffer_add_printf(out, "%s", sep);
        add_sf_string(out, c->limit->name);
        evbuffer_add_printf(out, ";q=%" PRIu64 ";w=%" PRIu64, c->limit->count,
                            seconds_up(c->limit->period_us));
        sep = ", ";
    }
    evbuffer_add_printf(out, "\r\nRateLimit: ");
    sep = "";
    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!answered(c))
            continue;
        evbuffer_add_printf(out, "%s", sep);
        add_sf_string(out, c->limit->name);
        evbuffer_add_printf(out, ";r=%" PRIu64 ";t=%" PRIu64, c->decision.remaining,
                            seconds_up(c->decision.reset_us));
        sep = ", ";
    }
    evbuffer_add_printf(out, "\r\n");
}

/* The legacy fields describe one limit: the one closest to denying (lowest remaining,
 * the first in configuration order on ties), as most gateways report. */
static void add_legacy(struct evbuffer *out, const struct sl_verdict *v, size_t n)
{
    const struct sl_verdict_check *pick = NULL;

    for (size_t i = 0; i < n; i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (answered(c) && (!pick || c->decision.remaining < pick->decision.remaining))
            pick = c;
    }
    evbuffer_add_printf(out,
                        "X-RateLimit-Limit: %" PRIu64 "\r\nX-RateLimit-Remaining: %" PRIu64
                        "\r\nX-RateLimit-Reset: %" PRIu64 "\r\n",
                        pick->decision.limit, pick->decision.remaining,
                        seconds_up(pick->decision.reset_us));
}

void sl_response_ratelimit_headers(const struct sl_config *cfg, struct sl_verdict *v)
{
    size_t n = sl_verdict_nchecks(v->route);
    bool any = false;

    for (size_t i = 0; i < n && !any; i++)
        any = answered(&v->priv.checks[i]);
    if (!any || !v->headers)
        return;
    if (cfg->response_headers == SL_HEADERS_DRAFT || cfg->response_headers == SL_HEADERS_BOTH)
        add_draft(v->headers, v, n);
    if (cfg->response_headers == SL_HEADERS_LEGACY || cfg->response_headers == SL_HEADERS_BOTH)
        add_legacy(v->headers, v, n);
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
    if (v->headers)
        evbuffer_add_printf(v->headers, "Retry-After: %" PRIu64 "\r\n", retry);
    if (v->body) {
        evbuffer_add_printf(v->body, "{\"error\":\"rate_limited\",\"route\":");
        add_json_string(v->body, v->route->name);
        evbuffer_add_printf(v->body, ",\"limit\":");
        add_json_string(v->body, first ? first->limit->name : "");
        evbuffer_add_printf(v->body, ",\"retry_after\":%" PRIu64 "}", retry);
    }
}

void sl_response_store_unavailable(struct sl_verdict *v)
{
    v->status = 503;
    if (v->headers)
        evbuffer_add_printf(v->headers, "Retry-After: 1\r\n");
    if (v->body)
        evbuffer_add_printf(v->body, "{\"error\":\"store_unavailable\"}");
}
