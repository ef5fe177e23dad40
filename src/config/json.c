/* sl_cfg_to_json(): the effective configuration for the admin /config endpoint.
 * Durations are in milliseconds and sizes in bytes; passwords and the admin token never
 * appear. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "sluice/config.h"
#include "sluice/limit.h"
#include "sluice/rates.h"
#include "sluice/rls_config.h"

static const char redacted[] = "***";

static void json_str_or_null(struct sl_cfg_buf *b, const char *s)
{
    if (s)
        sl_cfg_buf_json(b, s);
    else
        sl_cfg_buf_adds(b, "null");
}

/* The redis URL with the password of its user info replaced. */
static void redis_url(struct sl_cfg_buf *b, const struct sl_redis_config *r)
{
    const char *url = r->url;
    const char *scheme = strstr(url, "://");

    if (!scheme || !r->password) {
        sl_cfg_buf_json(b, url);
        return;
    }
    const char *auth = scheme + 3;
    size_t n = strcspn(auth, "/");
    const char *at = memrchr(auth, '@', n);
    const char *colon = at ? memchr(auth, ':', (size_t)(at - auth)) : NULL;
    if (!colon) {
        sl_cfg_buf_json(b, url);
        return;
    }
    struct sl_cfg_buf tmp = {0};
    sl_cfg_buf_add(&tmp, url, (size_t)(colon + 1 - url));
    sl_cfg_buf_adds(&tmp, redacted);
    sl_cfg_buf_adds(&tmp, at);
    char *text = sl_cfg_buf_take(&tmp);
    if (text)
        sl_cfg_buf_json(b, text);
    else
        b->failed = true;
    free(text);
}

static void cidr_list(struct sl_cfg_buf *b, const struct sl_cidr_list *list)
{
    char ip[64];

    sl_cfg_buf_adds(b, "[");
    for (size_t i = 0; i < list->count; i++) {
        sl_ip_format(&list->items[i].net, ip, sizeof ip);
        sl_cfg_buf_addf(b, "%s\"%s/%u\"", i ? "," : "", ip, list->items[i].prefix);
    }
    sl_cfg_buf_adds(b, "]");
}

/* `prefix` and `name` joined, as one JSON string. */
static void json_prefixed(struct sl_cfg_buf *b, const char *prefix, const char *name)
{
    struct sl_cfg_buf tmp = {0};
    sl_cfg_buf_addf(&tmp, "%s%s", prefix, name);
    char *text = sl_cfg_buf_take(&tmp);
    if (text)
        sl_cfg_buf_json(b, text);
    else
        b->failed = true;
    free(text);
}

static void key_source(struct sl_cfg_buf *b, const struct sl_key_source *k)
{
    static const char *const kinds[] = {
        [SL_KEY_CLIENT_IP] = "client_ip", [SL_KEY_HEADER] = "header", [SL_KEY_QUERY] = "query",
        [SL_KEY_COOKIE] = "cookie",       [SL_KEY_METHOD] = "method", [SL_KEY_PATH] = "path",
        [SL_KEY_HOST] = "host",           [SL_KEY_ROUTE] = "route",
        [SL_KEY_TLS_CLIENT_SUBJECT] = "tls_client_subject",
    };
    if (!k->name) {
        sl_cfg_buf_json(b, kinds[k->kind]);
        return;
    }
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s:", kinds[k->kind]);
    json_prefixed(b, prefix, k->name);
}

/* A limit's `rates:`: its shape and counts, never the entries (a file may list millions). */
static void rates(struct sl_cfg_buf *b, const struct sl_rates *r)
{
    sl_cfg_buf_adds(b, ",\"rates\":{\"by\":");
    sl_cfg_buf_json(b, r->by_text ? r->by_text : "");
    sl_cfg_buf_addf(b, ",\"values\":%zu", r->ninline);
    if (r->file) {
        sl_cfg_buf_adds(b, ",\"file\":");
        sl_cfg_buf_json(b, r->file);
        sl_cfg_buf_addf(b, ",\"file_lines\":%zu", r->nfile);
    }
    sl_cfg_buf_addf(b, ",\"bytes\":%zu}", sl_rates_bytes(r));
}

static void limit(struct sl_cfg_buf *b, const struct sl_limit *lim)
{
    sl_cfg_buf_adds(b, "{\"name\":");
    sl_cfg_buf_json(b, lim->name);
    sl_cfg_buf_adds(b, ",\"algorithm\":");
    sl_cfg_buf_json(b, lim->alg->name);
    sl_cfg_buf_adds(b, ",\"rate\":");
    sl_cfg_buf_json(b, lim->rate_text);
    sl_cfg_buf_addf(b, ",\"count\":%llu,\"period_ms\":%llu", (unsigned long long)lim->count,
                    (unsigned long long)(lim->period_us / 1000));
    if (lim->alg->has_burst)
        sl_cfg_buf_addf(b, ",\"burst\":%llu", (unsigned long long)lim->burst);
    if (lim->alg->has_delay)
        sl_cfg_buf_addf(b, ",\"delay\":%s", lim->delay ? "true" : "false");
    if (lim->cost_kind == SL_COST_CONST)
        sl_cfg_buf_addf(b, ",\"cost\":%llu", (unsigned long long)lim->cost);
    if (lim->cost_kind == SL_COST_HEADER) {
        sl_cfg_buf_adds(b, ",\"cost\":");
        json_prefixed(b, "header:", lim->cost_header);
    }
    if (lim->charge_kind != SL_CHARGE_NONE) {
        sl_cfg_buf_adds(b, ",\"charge\":");
        json_prefixed(b,
                      lim->charge_kind == SL_CHARGE_HEADER ? "response_header:" : "response_json:",
                      lim->charge_name);
    }
    sl_cfg_buf_adds(b, ",\"key\":[");
    for (size_t k = 0; k < lim->nkeys; k++) {
        if (k)
            sl_cfg_buf_adds(b, ",");
        key_source(b, &lim->keys[k]);
    }
    sl_cfg_buf_addf(b, "],\"store\":\"%s\",\"shadow\":%s",
                    lim->store == SL_STORE_REDIS ? "redis" : "memory",
                    lim->shadow ? "true" : "false");
    if (lim->rates)
        rates(b, lim->rates);
    sl_cfg_buf_adds(b, "}");
}

static void route(struct sl_cfg_buf *b, const struct sl_route *r)
{
    static const char *const path_keys[] = {[SL_MATCH_PATH] = "path",
                                            [SL_MATCH_PREFIX] = "path_prefix",
                                            [SL_MATCH_REGEX] = "path_regex"};

    sl_cfg_buf_adds(b, "{\"name\":");
    sl_cfg_buf_json(b, r->name);
    sl_cfg_buf_adds(b, ",\"match\":{");
    const char *sep = "";
    if (r->path_match != SL_MATCH_ANY) {
        sl_cfg_buf_addf(b, "\"%s\":", path_keys[r->path_match]);
        sl_cfg_buf_json(b, r->path);
        sep = ",";
    }
    if (r->nmethods) {
        sl_cfg_buf_addf(b, "%s\"methods\":[", sep);
        for (size_t i = 0; i < r->nmethods; i++) {
            if (i)
                sl_cfg_buf_adds(b, ",");
            sl_cfg_buf_json(b, r->methods[i]);
        }
        sl_cfg_buf_adds(b, "]");
        sep = ",";
    }
    if (r->host) {
        sl_cfg_buf_addf(b, "%s\"host\":", sep);
        sl_cfg_buf_json(b, r->host);
        sep = ",";
    }
    if (r->nheaders) {
        sl_cfg_buf_addf(b, "%s\"headers\":{", sep);
        for (size_t i = 0; i < r->nheaders; i++) {
            if (i)
                sl_cfg_buf_adds(b, ",");
            sl_cfg_buf_json(b, r->headers[i].name);
            sl_cfg_buf_adds(b, ":");
            sl_cfg_buf_json(b, r->headers[i].value);
        }
        sl_cfg_buf_adds(b, "}");
    }
    sl_cfg_buf_addf(b, "},\"shadow\":%s,\"limits\":[", r->shadow ? "true" : "false");
    for (size_t i = 0; i < r->nlimits; i++) {
        if (i)
            sl_cfg_buf_adds(b, ",");
        limit(b, &r->limits[i]);
    }
    sl_cfg_buf_adds(b, "]}");
}

/* A TLS client's settings; the key file's path is shown, never its contents. */
static void tls_client(struct sl_cfg_buf *b, const struct sl_tls_client_config *c)
{
    if (!c->enabled) {
        sl_cfg_buf_adds(b, "null");
        return;
    }
    sl_cfg_buf_adds(b, "{\"ca\":");
    json_str_or_null(b, c->ca);
    sl_cfg_buf_addf(b, ",\"verify\":%s,\"server_name\":", c->verify ? "true" : "false");
    json_str_or_null(b, c->server_name);
    sl_cfg_buf_adds(b, ",\"cert\":");
    json_str_or_null(b, c->cert);
    sl_cfg_buf_adds(b, ",\"key\":");
    json_str_or_null(b, c->key);
    sl_cfg_buf_adds(b, "}");
}

/* The rls block, with the domains its files hold; null when absent. */
static void rls(struct sl_cfg_buf *b, const struct sl_rls_settings *r)
{
    if (!r->enabled) {
        sl_cfg_buf_adds(b, "null");
        return;
    }
    sl_cfg_buf_adds(b, "{\"listen\":");
    sl_cfg_buf_json(b, r->listen.text);
    sl_cfg_buf_adds(b, ",\"config\":");
    sl_cfg_buf_json(b, r->config);
    sl_cfg_buf_addf(b, ",\"response_headers\":%s,\"shadow_mode\":%s,\"domains\":[",
                    r->response_headers ? "true" : "false", r->shadow_mode ? "true" : "false");
    size_t n = r->files ? sl_rls_config_ndomains(r->files) : 0;
    for (size_t i = 0; i < n; i++) {
        if (i)
            sl_cfg_buf_adds(b, ",");
        sl_cfg_buf_json(b, sl_rls_domain_name(sl_rls_config_domain(r->files, i)));
    }
    sl_cfg_buf_adds(b, "]}");
}

static void redis(struct sl_cfg_buf *b, const struct sl_redis_config *r)
{
    if (!r->enabled) {
        sl_cfg_buf_adds(b, "null");
        return;
    }
    static const char *const modes[] = {"url", "cluster", "sentinel"};
    sl_cfg_buf_addf(b, "{\"mode\":\"%s\",\"url\":", modes[r->mode]);
    if (r->url)
        redis_url(b, r);
    else
        sl_cfg_buf_adds(b, "null");
    sl_cfg_buf_adds(b, ",\"addresses\":[");
    for (size_t i = 0; i < r->naddrs; i++) {
        sl_cfg_buf_adds(b, i ? ",{\"host\":" : "{\"host\":");
        sl_cfg_buf_json(b, r->addrs[i].host);
        sl_cfg_buf_addf(b, ",\"port\":%d}", r->addrs[i].port);
    }
    sl_cfg_buf_adds(b, "],\"sentinel_master\":");
    json_str_or_null(b, r->sentinel_master);
    sl_cfg_buf_adds(b, ",\"host\":");
    json_str_or_null(b, r->host);
    sl_cfg_buf_addf(b, ",\"port\":%d,\"unix_path\":", r->port);
    json_str_or_null(b, r->unix_path);
    sl_cfg_buf_adds(b, ",\"user\":");
    json_str_or_null(b, r->user);
    sl_cfg_buf_adds(b, ",\"password\":");
    json_str_or_null(b, r->password ? redacted : NULL);
    sl_cfg_buf_addf(b, ",\"db\":%d,\"timeout_ms\":%llu,\"key_prefix\":", r->db,
                    (unsigned long long)r->timeout_ms);
    sl_cfg_buf_json(b, r->key_prefix);
    sl_cfg_buf_addf(b, ",\"deny_cache\":%llu,\"tls\":", (unsigned long long)r->deny_cache);
    tls_client(b, &r->tls);
    sl_cfg_buf_adds(b, "}");
}

/* One cleartext address as the string it was written as; else the list, TLS included. */
static void listen_json(struct sl_cfg_buf *b, const struct sl_config *cfg)
{
    if (cfg->nlisteners == 1 && !cfg->listeners[0].tls) {
        sl_cfg_buf_json(b, cfg->listeners[0].addr.text);
        return;
    }
    sl_cfg_buf_adds(b, "[");
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct sl_listen_config *l = &cfg->listeners[i];
        sl_cfg_buf_adds(b, i ? ",{\"address\":" : "{\"address\":");
        sl_cfg_buf_json(b, l->addr.text);
        if (l->tls) {
            sl_cfg_buf_adds(b, ",\"tls\":{\"certificates\":[");
            for (size_t k = 0; k < l->tls->ncerts; k++) {
                sl_cfg_buf_adds(b, k ? ",{\"cert\":" : "{\"cert\":");
                sl_cfg_buf_json(b, l->tls->certs[k].cert);
                sl_cfg_buf_adds(b, ",\"key\":");
                sl_cfg_buf_json(b, l->tls->certs[k].key);
                sl_cfg_buf_adds(b, "}");
            }
            sl_cfg_buf_addf(b, "],\"min_version\":\"1.%d\",\"client_ca\":",
                            l->tls->min_version - 10);
            json_str_or_null(b, l->tls->client_ca);
            sl_cfg_buf_adds(b, "}");
        }
        sl_cfg_buf_adds(b, "}");
    }
    sl_cfg_buf_adds(b, "]");
}

int sl_cfg_to_json(const struct sl_config *cfg, char **out)
{
    static const char *const failure_modes[] = {"open", "closed", "local"};
    static const char *const header_modes[] = {"both", "draft", "legacy", "none"};
    static const char *const log_levels[] = {"error", "warn", "info", "debug"};
    static const char *const underscores[] = {"drop", "allow", "reject"};
    const struct sl_upstream_config *up = &cfg->upstream;
    const struct sl_client_config *c = &cfg->client;
    struct sl_cfg_buf b = {0};

    sl_cfg_buf_adds(&b, "{\"file\":");
    json_str_or_null(&b, cfg->file);
    sl_cfg_buf_adds(&b, ",\"listen\":");
    listen_json(&b, cfg);
    sl_cfg_buf_addf(&b, ",\"workers\":%u,\"admin\":{\"listen\":", cfg->workers);
    sl_cfg_buf_json(&b, cfg->admin_enabled ? cfg->admin_listen.text : "off");
    sl_cfg_buf_adds(&b, cfg->admin_route_histograms ? ",\"route_histograms\":true"
                                                    : ",\"route_histograms\":false");
    sl_cfg_buf_adds(&b, cfg->admin_top ? ",\"top\":true" : ",\"top\":false");
    sl_cfg_buf_adds(&b, ",\"token\":");
    json_str_or_null(&b, cfg->admin_token ? redacted : NULL);
    sl_cfg_buf_adds(&b,
                    cfg->admin_metrics_auth ? ",\"metrics_auth\":true" : ",\"metrics_auth\":false");
    sl_cfg_buf_adds(&b, "},\"upstream\":{\"url\":");
    sl_cfg_buf_json(&b, up->url);
    sl_cfg_buf_addf(&b, ",\"connect_timeout_ms\":%llu,\"timeout_ms\":%llu,\"keepalive\":%u",
                    (unsigned long long)up->connect_timeout_ms, (unsigned long long)up->timeout_ms,
                    up->keepalive);
    sl_cfg_buf_adds(&b, ",\"tls\":");
    tls_client(&b, &up->tls);
    sl_cfg_buf_adds(&b, "}");
    sl_cfg_buf_addf(&b,
                    ",\"client\":{\"header_timeout_ms\":%llu,\"idle_timeout_ms\":%llu,"
                    "\"max_header_bytes\":%llu,\"max_body_bytes\":%llu,"
                    "\"max_connections\":%u,\"underscores_in_headers\":\"%s\",\"upgrades\":[",
                    (unsigned long long)c->header_timeout_ms,
                    (unsigned long long)c->idle_timeout_ms, (unsigned long long)c->max_header_bytes,
                    (unsigned long long)c->max_body_bytes, c->max_connections,
                    underscores[c->underscores_in_headers]);
    for (size_t i = 0; i < c->nupgrades; i++) {
        if (i)
            sl_cfg_buf_adds(&b, ",");
        sl_cfg_buf_json(&b, c->upgrades[i]);
    }
    sl_cfg_buf_addf(&b, "],\"http2\":%s,\"http2_max_streams\":%u}", c->http2 ? "true" : "false",
                    (unsigned)c->http2_max_streams);
    sl_cfg_buf_addf(&b,
                    ",\"paths\":{\"case_insensitive\":%s,\"strip_path_parameters\":%s,"
                    "\"decode_slash\":%s,\"ignore_trailing_slash\":%s}",
                    cfg->paths.case_insensitive ? "true" : "false",
                    cfg->paths.strip_path_parameters ? "true" : "false",
                    cfg->paths.decode_slash ? "true" : "false",
                    cfg->paths.ignore_trailing_slash ? "true" : "false");
    sl_cfg_buf_adds(&b, ",\"trusted_proxies\":");
    cidr_list(&b, &cfg->trusted_proxies);
    sl_cfg_buf_adds(&b, ",\"exempt\":");
    cidr_list(&b, &cfg->exempt);
    sl_cfg_buf_adds(&b, ",\"redis\":");
    redis(&b, &cfg->redis);
    sl_cfg_buf_adds(&b, ",\"rls\":");
    rls(&b, &cfg->rls);
    sl_cfg_buf_addf(&b,
                    ",\"failure_mode\":\"%s\",\"memory\":{\"max_keys\":%llu,\"max_bytes\":%llu},"
                    "\"response\":{\"status\":%d,\"headers\":\"%s\",\"grpc_status\":%d},"
                    "\"shutdown\":{\"drain_delay_ms\":%llu},"
                    "\"reload\":{\"watch\":%s,\"debounce_ms\":%llu},\"access_log\":",
                    failure_modes[cfg->failure_mode], (unsigned long long)cfg->memory_max_keys,
                    (unsigned long long)cfg->memory_max_bytes, cfg->response_status,
                    header_modes[cfg->response_headers], cfg->response_grpc_status,
                    (unsigned long long)cfg->shutdown_drain_delay_ms,
                    cfg->reload_watch ? "true" : "false",
                    (unsigned long long)cfg->reload_debounce_ms);
    if (cfg->access_log == SL_ACCESS_LOG_FILE)
        sl_cfg_buf_json(&b, cfg->access_log_path);
    else
        sl_cfg_buf_adds(&b, cfg->access_log == SL_ACCESS_LOG_OFF ? "\"off\"" : "\"stdout\"");
    sl_cfg_buf_addf(&b, ",\"access_log_key_fields\":%s,\"log_level\":\"%s\",\"routes\":[",
                    cfg->access_log_key_fields ? "true" : "false", log_levels[cfg->log_level]);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        if (i)
            sl_cfg_buf_adds(&b, ",");
        route(&b, &cfg->routes[i]);
    }
    sl_cfg_buf_adds(&b, "]}");
    *out = sl_cfg_buf_take(&b);
    return *out ? 0 : -1;
}
