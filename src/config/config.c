/* The snapshot's lifetime: reference counting and release. */
#include <stdlib.h>

#include "loader.h"
#include "sluice/config_parse.h"

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
        for (size_t k = 0; k < lim->nkeys; k++)
            free(lim->keys[k].name);
        free(lim->keys);
    }
    free(route->limits);
}

void sl_cfg_free(struct sl_config *cfg)
{
    if (!cfg)
        return;
    free(cfg->file);
    sl_sockaddr_deinit(&cfg->listen);
    sl_sockaddr_deinit(&cfg->admin_listen);
    free(cfg->upstream.url);
    free(cfg->upstream.host);
    sl_sockaddr_deinit(&cfg->upstream.addr);
    sl_cidr_list_deinit(&cfg->trusted_proxies);
    sl_cidr_list_deinit(&cfg->exempt);
    free(cfg->redis.url);
    free(cfg->redis.host);
    free(cfg->redis.unix_path);
    free(cfg->redis.user);
    free(cfg->redis.password);
    free(cfg->redis.key_prefix);
    free(cfg->access_log_path);
    for (size_t i = 0; i < cfg->nroutes; i++)
        free_route(&cfg->routes[i]);
    free(cfg->routes);
    free(cfg);
}
