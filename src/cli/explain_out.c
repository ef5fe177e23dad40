/* `sluice explain` output: text for people, one JSON object for scripts. Every string that
 * comes from the request or the file is written through the JSON string escaper, in text
 * too, so that control bytes in a header cannot reach the terminal and a key's exact bytes
 * can be read back. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "explain.h"
#include "sluice/config_parse.h"
#include "sluice/json.h"
#include "sluice/limit.h"
#include "sluice/rates.h"

static void quoted(struct evbuffer *b, const char *s, size_t n)
{
    sl_json_append_string(b, s, n);
}

static void quoted_str(struct evbuffer *b, const char *s)
{
    quoted(b, s, strlen(s));
}

/* A buffer's text as one JSON string (the buffer is drained). */
static void json_from(struct evbuffer *b, struct evbuffer *text)
{
    size_t n = evbuffer_get_length(text);
    quoted(b, (const char *)evbuffer_pullup(text, (ssize_t)n), n);
    evbuffer_drain(text, n);
}

static const char *const miss_names[] = {
    [SL_ROUTE_MATCHES] = "",           [SL_ROUTE_MISS_PATH] = "path",
    [SL_ROUTE_MISS_METHOD] = "method", [SL_ROUTE_MISS_HOST] = "host",
    [SL_ROUTE_MISS_HEADER] = "header",
};

/* Why route `t` did not match, in words. */
static void miss_reason(const struct sl_explain *x, const struct sl_explain_route *t,
                        struct evbuffer *b)
{
    static const char *const how[] = {[SL_MATCH_PATH] = "is not path",
                                      [SL_MATCH_PREFIX] = "is not under path_prefix",
                                      [SL_MATCH_REGEX] = "does not match path_regex"};
    const struct sl_route *r = t->route;

    switch (t->miss) {
    case SL_ROUTE_MATCHES:
        evbuffer_add_printf(b, "matched");
        break;
    case SL_ROUTE_MISS_PATH:
        if (!x->path) {
            evbuffer_add_printf(b, "the target has no path to match");
            break;
        }
        evbuffer_add_printf(b, "path ");
        quoted(b, x->path, x->path_len);
        evbuffer_add_printf(b, " %s ", how[r->path_match]);
        quoted_str(b, r->path);
        break;
    case SL_ROUTE_MISS_METHOD:
        evbuffer_add_printf(b, "method ");
        quoted(b, x->req->method, x->req->method_len);
        evbuffer_add_printf(b, " is not one of");
        for (size_t i = 0; i < r->nmethods; i++)
            evbuffer_add_printf(b, "%s %s", i ? "," : "", r->methods[i]);
        break;
    case SL_ROUTE_MISS_HOST:
        if (x->has_host) {
            evbuffer_add_printf(b, "host ");
            quoted(b, x->host, x->host_len);
            evbuffer_add_printf(b, " is not ");
        } else {
            evbuffer_add_printf(b, "the request names no host; the route wants ");
        }
        quoted_str(b, r->host);
        break;
    case SL_ROUTE_MISS_HEADER:
        evbuffer_add_printf(b, "no header %s with exactly the value ", r->headers[t->header].name);
        quoted_str(b, r->headers[t->header].value);
        break;
    }
}

static const char *const why_codes[] = {
    [SL_CLIENT_NO_TRUSTED_PROXIES] = "no_trusted_proxies",
    [SL_CLIENT_PEER_UNTRUSTED] = "untrusted_peer",
    [SL_CLIENT_PEER_NO_XFF] = "no_forwarded_for",
    [SL_CLIENT_XFF_UNTRUSTED_HOP] = "first_untrusted_hop",
    [SL_CLIENT_XFF_ALL_TRUSTED] = "all_hops_trusted",
    [SL_CLIENT_XFF_MALFORMED] = "malformed_hop",
};

static bool from_forwarded_for(const struct sl_explain *x)
{
    return x->trace.why == SL_CLIENT_XFF_UNTRUSTED_HOP || x->trace.why == SL_CLIENT_XFF_ALL_TRUSTED;
}

/* How the client address was chosen, in words. */
static void client_reason(const struct sl_explain *x, struct evbuffer *b)
{
    size_t hop = x->trace.hop;

    switch (x->trace.why) {
    case SL_CLIENT_NO_TRUSTED_PROXIES:
        evbuffer_add_printf(b,
                            "the peer %s; trusted_proxies is empty, so X-Forwarded-For is "
                            "not read",
                            x->peer);
        break;
    case SL_CLIENT_PEER_UNTRUSTED:
        evbuffer_add_printf(b,
                            "the peer %s, which is not in trusted_proxies, so its "
                            "X-Forwarded-For is ignored",
                            x->peer);
        break;
    case SL_CLIENT_PEER_NO_XFF:
        evbuffer_add_printf(b,
                            "the peer %s, a trusted proxy that sent no X-Forwarded-For "
                            "address",
                            x->peer);
        break;
    case SL_CLIENT_XFF_UNTRUSTED_HOP:
        evbuffer_add_printf(b,
                            "X-Forwarded-For entry %zu from the right: the first address "
                            "not in trusted_proxies (the peer %s is trusted%s)",
                            hop, x->peer, hop > 1 ? ", and so are the entries to its right" : "");
        break;
    case SL_CLIENT_XFF_ALL_TRUSTED:
        evbuffer_add_printf(b,
                            "X-Forwarded-For entry %zu from the right, the leftmost: the "
                            "peer %s and every entry are in trusted_proxies",
                            hop, x->peer);
        break;
    case SL_CLIENT_XFF_MALFORMED:
        evbuffer_add_printf(b,
                            "the peer %s: X-Forwarded-For entry %zu from the right is not "
                            "an address, so the chain is not followed past it",
                            x->peer, hop);
        break;
    }
    if (!x->client.family)
        evbuffer_add_printf(b, "; a unix-socket client without a believed address, keyed as "
                               "\"unix\"");
}

static void rate_text(const struct sl_limit *lim, struct evbuffer *b)
{
    evbuffer_add_printf(b, "algorithm %s, rate %s, burst %" PRIu64 ", shadow %s", lim->alg->name,
                        lim->rate_text, lim->burst, lim->shadow ? "yes" : "no");
    /* Names come from the configuration, which allows only token characters in them. */
    if (lim->cost_kind == SL_COST_CONST)
        evbuffer_add_printf(b, ", cost %" PRIu64, lim->cost);
    else if (lim->cost_kind == SL_COST_HEADER)
        evbuffer_add_printf(b, ", cost header:%s", lim->cost_header);
    if (lim->charge_kind != SL_CHARGE_NONE)
        evbuffer_add_printf(b, ", charge %s:%s",
                            lim->charge_kind == SL_CHARGE_HEADER ? "response_header"
                                                                 : "response_json",
                            lim->charge_name);
}

/* Which rate a limit with `rates:` applied, and why: the file and line, the inline value, or
 * the default rate with the reason. */
static void text_rates(const struct sl_explain_limit *l, struct evbuffer *b)
{
    const struct sl_limit *lim = l->limit;
    const struct sl_rates *r = lim->rates;
    char rate[64];

    if (l->rate) {
        const struct sl_quota *q = &r->quotas[l->rate->rate];
        sl_format_rate(q->count, q->period_us, rate, sizeof rate);
        evbuffer_add_printf(b, "    rate applied: %s, for %s ", rate, r->by_text);
        quoted(b, l->by_value, l->by_value_len);
        if (l->rate->line)
            evbuffer_add_printf(b, ": %s line %" PRIu32, r->file, l->rate->line);
        else
            evbuffer_add_printf(b, ": inline value");
        if (q->count == SL_RATE_UNLIMITED)
            evbuffer_add_printf(b, " (unlimited: no store is asked)");
        else if (q->count == 0)
            evbuffer_add_printf(b, " (always denied, Retry-After the period; no store is asked)");
        evbuffer_add_printf(b, "\n");
        return;
    }
    evbuffer_add_printf(b, "    rate applied: %s, default rate: ", lim->rate_text);
    if (!l->by_value) {
        evbuffer_add_printf(b, "%s absent\n", r->by_text);
        return;
    }
    evbuffer_add_printf(b, "%s ", r->by_text);
    quoted(b, l->by_value, l->by_value_len);
    evbuffer_add_printf(b, " not listed\n");
}

static void json_rates(const struct sl_explain_limit *l, struct evbuffer *b)
{
    const struct sl_limit *lim = l->limit;
    const struct sl_rates *r = lim->rates;
    char rate[64];

    evbuffer_add_printf(b, ",\"rates\":{\"by\":");
    quoted_str(b, r->by_text);
    evbuffer_add_printf(b, ",\"value\":");
    if (l->by_value)
        quoted(b, l->by_value, l->by_value_len);
    else
        evbuffer_add_printf(b, "null");
    if (l->rate) {
        const struct sl_quota *q = &r->quotas[l->rate->rate];
        sl_format_rate(q->count, q->period_us, rate, sizeof rate);
        evbuffer_add_printf(b, ",\"applied\":");
        quoted_str(b, rate);
        if (l->rate->line) {
            evbuffer_add_printf(b, ",\"from\":\"file\",\"file\":");
            quoted_str(b, r->file);
            evbuffer_add_printf(b, ",\"line\":%" PRIu32 "}", l->rate->line);
        } else {
            evbuffer_add_printf(b, ",\"from\":\"values\"}");
        }
        return;
    }
    evbuffer_add_printf(b, ",\"applied\":");
    quoted_str(b, lim->rate_text);
    evbuffer_add_printf(b, ",\"from\":\"default\",\"reason\":\"%s\"}",
                        l->by_value ? "not listed" : "source absent");
}

static void text_limit(const struct sl_explain *x, const struct sl_explain_limit *l,
                       struct evbuffer *b)
{
    const struct sl_limit *lim = l->limit;
    char name[300];

    evbuffer_add_printf(b, "  %s: ", lim->name);
    if (!l->applies) {
        evbuffer_add_printf(b, "skipped: source absent (%s)\n",
                            sl_explain_source_name(&lim->keys[l->missing], name, sizeof name));
    } else if (lim->store == SL_STORE_REDIS) {
        evbuffer_add_printf(b, "key ");
        quoted(b, l->redis_key, l->redis_key_len);
        if (l->digest)
            evbuffer_add_printf(b, " (the SHA-256 of the %zu-byte value ", l->value_len);
        else
            evbuffer_add_printf(b, " (value ");
        quoted(b, l->value, l->value_len);
        evbuffer_add_printf(b, ")\n");
    } else {
        evbuffer_add_printf(b, "key ");
        quoted(b, l->value, l->value_len);
        evbuffer_add_printf(b, " (memory identity: route, limit, algorithm, rate and key)\n");
    }
    evbuffer_add_printf(b, "    store %s, ", lim->store == SL_STORE_REDIS ? "redis" : "memory");
    rate_text(lim, b);
    evbuffer_add_printf(b, "\n");
    if (l->applies && lim->rates)
        text_rates(l, b);
}

int sl_explain_write_text(const struct sl_explain *x, struct evbuffer *b)
{
    /* The method is a token (checked with the arguments): printed as is. */
    evbuffer_add_printf(b, "request: %.*s ", (int)x->req->method_len, x->req->method);
    quoted(b, x->req->target, x->req->target_len);
    evbuffer_add_printf(b, "\npath:    ");
    if (x->path)
        quoted(b, x->path, x->path_len);
    else
        evbuffer_add_printf(b, "none (the target has no path)");
    evbuffer_add_printf(b, "\nhost:    ");
    if (x->has_host)
        quoted(b, x->host, x->host_len);
    else
        evbuffer_add_printf(b, "none");
    evbuffer_add_printf(b, "\nclient:  %s, ", x->client_text);
    client_reason(x, b);
    if (x->exempt)
        evbuffer_add_printf(b, "\n         exempt: the client is in exempt and is never limited");
    evbuffer_add_printf(b, "\nroutes:\n");
    for (size_t i = 0; i < x->ntried; i++) {
        evbuffer_add_printf(b, "  %s: %s", x->tried[i].route->name,
                            x->tried[i].miss == SL_ROUTE_MATCHES ? "" : "no match: ");
        miss_reason(x, &x->tried[i], b);
        evbuffer_add_printf(b, "\n");
    }
    if (!x->route) {
        evbuffer_add_printf(b, "no route matches: forwarded with no limit (decision "
                               "\"unmatched\")\n");
        return 0;
    }
    evbuffer_add_printf(b, "limits of route %s%s:\n", x->route->name,
                        x->route->shadow ? " (a shadow route: counted, never enforced)" : "");
    if (x->nlimits == 0)
        evbuffer_add_printf(b, "  none: forwarded with no limit\n");
    for (size_t i = 0; i < x->nlimits; i++)
        text_limit(x, &x->limits[i], b);
    return 0;
}

static void json_limit(const struct sl_explain *x, const struct sl_explain_limit *l,
                       struct evbuffer *b)
{
    const struct sl_limit *lim = l->limit;
    char name[300];

    evbuffer_add_printf(b, "{\"name\":");
    quoted_str(b, lim->name);
    evbuffer_add_printf(b, ",\"applies\":%s,\"skipped\":", l->applies ? "true" : "false");
    if (l->applies) {
        evbuffer_add_printf(b, "null,\"key\":");
        if (lim->store == SL_STORE_REDIS)
            quoted(b, l->redis_key, l->redis_key_len);
        else
            quoted(b, l->value, l->value_len);
        evbuffer_add_printf(b, ",\"value\":");
        quoted(b, l->value, l->value_len);
        evbuffer_add_printf(b, ",\"digest\":%s", l->digest ? "true" : "false");
    } else {
        evbuffer_add_printf(b, "\"source absent\",\"absent\":");
        quoted_str(b, sl_explain_source_name(&lim->keys[l->missing], name, sizeof name));
    }
    evbuffer_add_printf(b, ",\"sources\":[");
    for (size_t k = 0; k < lim->nkeys; k++) {
        evbuffer_add_printf(b, "%s", k ? "," : "");
        quoted_str(b, sl_explain_source_name(&lim->keys[k], name, sizeof name));
    }
    evbuffer_add_printf(
        b, "],\"store\":\"%s\",\"algorithm\":", lim->store == SL_STORE_REDIS ? "redis" : "memory");
    quoted_str(b, lim->alg->name);
    evbuffer_add_printf(b, ",\"rate\":");
    quoted_str(b, lim->rate_text);
    evbuffer_add_printf(
        b, ",\"count\":%" PRIu64 ",\"period_us\":%" PRIu64 ",\"burst\":%" PRIu64 ",\"shadow\":%s",
        lim->count, lim->period_us, lim->burst, lim->shadow ? "true" : "false");
    if (l->applies && lim->rates)
        json_rates(l, b);
    evbuffer_add_printf(b, "}");
}

int sl_explain_write_json(const struct sl_explain *x, struct evbuffer *b)
{
    struct evbuffer *t = evbuffer_new();
    if (!t)
        return -1;
    evbuffer_add_printf(b, "{\"method\":");
    quoted(b, x->req->method, x->req->method_len);
    evbuffer_add_printf(b, ",\"target\":");
    quoted(b, x->req->target, x->req->target_len);
    evbuffer_add_printf(b, ",\"path\":");
    if (x->path)
        quoted(b, x->path, x->path_len);
    else
        evbuffer_add_printf(b, "null");
    evbuffer_add_printf(b, ",\"host\":");
    if (x->has_host)
        quoted(b, x->host, x->host_len);
    else
        evbuffer_add_printf(b, "null");
    evbuffer_add_printf(b, ",\"client\":{\"address\":");
    quoted_str(b, x->client_text);
    evbuffer_add_printf(b, ",\"peer\":");
    quoted_str(b, x->peer);
    evbuffer_add_printf(
        b, ",\"source\":\"%s\",\"hop\":", from_forwarded_for(x) ? "x-forwarded-for" : "peer");
    if (x->trace.hop)
        evbuffer_add_printf(b, "%zu", x->trace.hop);
    else
        evbuffer_add_printf(b, "null");
    evbuffer_add_printf(b, ",\"why\":\"%s\",\"reason\":", why_codes[x->trace.why]);
    client_reason(x, t);
    json_from(b, t);
    evbuffer_add_printf(b, ",\"exempt\":%s},\"routes\":[", x->exempt ? "true" : "false");
    for (size_t i = 0; i < x->ntried; i++) {
        const struct sl_explain_route *r = &x->tried[i];
        evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
        quoted_str(b, r->route->name);
        evbuffer_add_printf(
            b, ",\"matched\":%s,\"failed\":", r->miss == SL_ROUTE_MATCHES ? "true" : "false");
        if (r->miss == SL_ROUTE_MATCHES)
            evbuffer_add_printf(b, "null");
        else
            evbuffer_add_printf(b, "\"%s\"", miss_names[r->miss]);
        evbuffer_add_printf(b, ",\"reason\":");
        miss_reason(x, r, t);
        json_from(b, t);
        evbuffer_add_printf(b, "}");
    }
    evbuffer_add_printf(b, "],\"route\":");
    if (x->route)
        quoted_str(b, x->route->name);
    else
        evbuffer_add_printf(b, "null");
    evbuffer_add_printf(b, ",\"shadow_route\":%s,\"limits\":[",
                        x->route && x->route->shadow ? "true" : "false");
    for (size_t i = 0; i < x->nlimits; i++) {
        evbuffer_add_printf(b, "%s", i ? "," : "");
        json_limit(x, &x->limits[i], b);
    }
    evbuffer_add_printf(b, "]}\n");
    evbuffer_free(t);
    return 0;
}
