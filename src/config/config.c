/* The snapshot's lifetime: reference counting and release; what a reload carries over. */
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "loader.h"
#include "sluice/config_parse.h"
#include "sluice/rates.h"
#include "sluice/rls_config.h"
#include "sluice/route_index.h"

struct sl_config *sl_cfg_ref(struct sl_config *cfg)
{
    atomic_fetch_add_explicit(&cfg->refs, 1, memory_order_relaxed);
    return cfg;
}

void sl_cfg_unref(struct sl_config *cfg)
{
    /* acq_rel: the thread that frees sees every other holder's last reads finished. */
    if (cfg && atomic_fetch_sub_explicit(&cfg->refs, 1, memory_order_acq_rel) == 1)
        sl_cfg_free(cfg);
}

static void free_route(struct sl_route *route)
{
    free(route->name);
    if (route->path_match == SL_MATCH_REGEX)
        regfree(&route->regex);
    free(route->path);
    for (size_t i = 0; i < route->nmethods; i++)
        free(route->methods[i]);
    free(route->methods);
    free(route->host);
    for (size_t i = 0; i < route->nheaders; i++) {
        free(route->headers[i].name);
        free(route->headers[i].value);
    }
    free(route->headers);
    for (size_t i = 0; i < route->nlimits; i++) {
        struct sl_limit *lim = &route->limits[i];
        free(lim->name);
        free(lim->rate_text);
        free(lim->cost_header);
        free(lim->charge_name);
        for (size_t k = 0; k < lim->nkeys; k++)
            free(lim->keys[k].name);
        free(lim->keys);
        sl_rates_free(lim->rates);
    }
    free(route->limits);
}

void sl_cfg_free(struct sl_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->file);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        sl_listen_config_deinit(&cfg->listeners[i]);
    free(cfg->listeners);
    sl_sockaddr_deinit(&cfg->admin_listen);
    sl_sockaddr_deinit(&cfg->rls.listen);
    free(cfg->rls.config);
    sl_rls_config_free(cfg->rls.files);
    free(cfg->admin_token);
    free(cfg->upstream.url);
    free(cfg->upstream.host);
    sl_sockaddr_deinit(&cfg->upstream.addr);
    sl_tls_client_config_deinit(&cfg->upstream.tls);
    SSL_CTX_free(cfg->upstream.tls_ctx);
    for (size_t i = 0; i < cfg->client.nupgrades; i++)
        free(cfg->client.upgrades[i]);
    free(cfg->client.upgrades);
    sl_cidr_list_deinit(&cfg->trusted_proxies);
    sl_cidr_list_deinit(&cfg->exempt);
    free(cfg->redis.url);
    free(cfg->redis.host);
    free(cfg->redis.unix_path);
    free(cfg->redis.user);
    free(cfg->redis.password);
    free(cfg->redis.key_prefix);
    for (size_t i = 0; i < cfg->redis.naddrs; i++)
        free(cfg->redis.addrs[i].host);
    free(cfg->redis.addrs);
    free(cfg->redis.sentinel_master);
    sl_tls_client_config_deinit(&cfg->redis.tls);
    free(cfg->access_log_path);
    sl_route_index_free(cfg->route_index);
    for (size_t i = 0; i < cfg->nroutes; i++)
        free_route(&cfg->routes[i]);
    free(cfg->routes);
    free(cfg);
}

static const struct sl_limit *find_limit(const struct sl_config *cfg, const struct sl_limit *lim)
{
    for (size_t i = 0; cfg && i < cfg->nroutes; i++) {
        const struct sl_route *route = &cfg->routes[i];
        if (strcmp(route->name, lim->route->name) != 0)
            continue;
        for (size_t j = 0; j < route->nlimits; j++)
            if (strcmp(route->limits[j].name, lim->name) == 0 && route->limits[j].alg == lim->alg)
                return &route->limits[j];
        return NULL;
    }
    return NULL;
}

/* Whether states written under `r` are found under `lim`'s identity as they are: the same
 * rate, and the same layout (with or without `rates:`). */
static bool same_identity(const struct sl_limit *lim, const struct sl_prev_rate *r)
{
    return r->rate.count == lim->count && r->rate.period_us == lim->period_us &&
           r->headed == (lim->rates != NULL);
}

static void remember_rate(struct sl_limit *lim, struct sl_prev_rate r, uint64_t now_us)
{
    if (lim->nprev_rates == SL_LIMIT_PREV_RATES || r.until_us <= now_us || same_identity(lim, &r))
        return;
    for (size_t i = 0; i < lim->nprev_rates; i++)
        if (lim->prev_rates[i].rate.count == r.rate.count &&
            lim->prev_rates[i].rate.period_us == r.rate.period_us &&
            lim->prev_rates[i].headed == r.headed)
            return;
    lim->prev_rates[lim->nprev_rates++] = r;
}

static uint64_t lifetime_of(uint64_t burst, uint64_t period_us)
{
    __extension__ unsigned __int128 t = (unsigned __int128)(burst + 2) * period_us;
    return t > UINT64_MAX ? UINT64_MAX : (uint64_t)t;
}

/* Every algorithm's state is as new once its reset has passed, which is at most
 * (burst + 2)·P: P or 2·P for the windows, burst·P/N and (burst + 1)·P/N for the buckets. With
 * `rates:`, the longest over the limit's rates. */
static uint64_t state_lifetime_us(const struct sl_limit *lim)
{
    const uint64_t in_flight_us = 10000000;
    uint64_t t = lifetime_of(lim->burst, lim->period_us);
    for (uint32_t i = 0; lim->rates && i < lim->rates->nquotas; i++) {
        const struct sl_quota *q = &lim->rates->quotas[i];
        uint64_t u = lifetime_of(q->burst, q->period_us);
        if (q->count != 0 && q->count != SL_RATE_UNLIMITED && u > t)
            t = u;
    }
    return t > UINT64_MAX - in_flight_us ? UINT64_MAX : t + in_flight_us;
}

void sl_cfg_inherit_rates(struct sl_config *cfg, const struct sl_config *prev, uint64_t now_us)
{
    for (size_t i = 0; i < cfg->nroutes; i++) {
        for (size_t j = 0; j < cfg->routes[i].nlimits; j++) {
            struct sl_limit *lim = &cfg->routes[i].limits[j];
            const struct sl_limit *old = find_limit(prev, lim);
            if (!old)
                continue;
            uint64_t life = state_lifetime_us(old);
            struct sl_prev_rate r = {{old->count, old->period_us},
                                     now_us > UINT64_MAX - life ? UINT64_MAX : now_us + life,
                                     old->rates != NULL};
            remember_rate(lim, r, now_us);
            for (size_t k = 0; k < old->nprev_rates; k++)
                remember_rate(lim, old->prev_rates[k], now_us);
        }
    }
}

static size_t add_file(const char **paths, const uint8_t **digests, size_t max, size_t n,
                       const char *path, const uint8_t *digest)
{
    if (n < max) {
        paths[n] = path;
        digests[n] = digest;
    }
    return n + 1;
}

size_t sl_cfg_files(const struct sl_config *cfg, const char **paths, const uint8_t **digests,
                    size_t max)
{
    size_t n = 0;
    if (n < max) {
        paths[n] = cfg->file;
        digests[n] = cfg->file_digest;
    }
    n++;
    for (size_t i = 0; i < cfg->nroutes; i++)
        for (size_t j = 0; j < cfg->routes[i].nlimits; j++) {
            const struct sl_rates *r = cfg->routes[i].limits[j].rates;
            if (!r || !r->file)
                continue;
            if (n < max) {
                paths[n] = r->file;
                digests[n] = r->file_digest;
            }
            n++;
        }
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct sl_tls_server_config *t = cfg->listeners[i].tls;
        for (size_t k = 0; t && k < t->ncerts; k++) {
            n = add_file(paths, digests, max, n, t->certs[k].cert, t->certs[k].cert_digest);
            n = add_file(paths, digests, max, n, t->certs[k].key, t->certs[k].key_digest);
        }
        if (t && t->client_ca)
            n = add_file(paths, digests, max, n, t->client_ca, t->client_ca_digest);
    }
    /* The rate limit service's files, with no digest of what was loaded: the watch takes
     * them as they are when it starts. A file added to their directory is not among them. */
    size_t nrls = cfg->rls.files ? sl_rls_config_nfiles(cfg->rls.files) : 0;
    for (size_t i = 0; i < nrls; i++, n++) {
        if (n < max) {
            paths[n] = sl_rls_config_file(cfg->rls.files, i);
            digests[n] = NULL;
        }
    }
    return n;
}
