/* Route matching: the first route, in file order, whose every condition holds. */
#include <string.h>
#include <strings.h>

#include "match.h"
#include "sluice/route.h"
#include "sluice/route_index.h"

/* Segment-aware, as Envoy's path_separated_prefix: "/api" covers "/api" and "/api/..."
 * but not "/apix", which is almost never meant. A prefix ending in "/" covers everything
 * below it. */
static bool prefix_matches(const char *prefix, const char *path, size_t path_len)
{
    size_t n = strlen(prefix);

    if (path_len < n || memcmp(path, prefix, n) != 0)
        return false;
    return path_len == n || prefix[n - 1] == '/' || path[n] == '/';
}

static bool path_matches(const struct sl_route *r, const char *path, size_t path_len)
{
    switch (r->path_match) {
    case SL_MATCH_ANY:
        return true;
    case SL_MATCH_PATH:
        return path && strlen(r->path) == path_len && memcmp(r->path, path, path_len) == 0;
    case SL_MATCH_PREFIX:
        return path && r->path[0] && prefix_matches(r->path, path, path_len);
    case SL_MATCH_REGEX:
        return path && regexec(&r->regex, path, 0, NULL, 0) == 0;
    }
    return false;
}

static bool method_matches(const struct sl_route *r, const struct sl_request *req)
{
    if (r->nmethods == 0)
        return true;
    for (size_t i = 0; i < r->nmethods; i++)
        if (strlen(r->methods[i]) == req->method_len &&
            memcmp(r->methods[i], req->method, req->method_len) == 0)
            return true;
    return false;
}

/* Every configured header must be present; with repeated headers, any one of them
 * carrying exactly the value will do. Sets `*missing` to the first one not met. */
static bool headers_match(const struct sl_route *r, const struct sl_request *req, size_t *missing)
{
    for (size_t i = 0; i < r->nheaders; i++) {
        const struct sl_header_match *m = &r->headers[i];
        size_t name_len = strlen(m->name), value_len = strlen(m->value);
        bool found = false;
        for (size_t j = 0; j < req->nheaders && !found; j++) {
            const struct sl_header *h = &req->headers[j];
            found = h->name_len == name_len && strncasecmp(h->name, m->name, name_len) == 0 &&
                    h->value_len == value_len && memcmp(h->value, m->value, value_len) == 0;
        }
        if (!found) {
            *missing = i;
            return false;
        }
    }
    return true;
}

enum sl_route_miss sl_route_test(const struct sl_route *r, const struct sl_request *req,
                                 const char *path, size_t path_len, const char *host,
                                 size_t host_len, size_t *header)
{
    size_t missing = 0;

    if (!path_matches(r, path, path_len))
        return SL_ROUTE_MISS_PATH;
    if (!method_matches(r, req))
        return SL_ROUTE_MISS_METHOD;
    if (r->host && (!host || strlen(r->host) != host_len || memcmp(r->host, host, host_len) != 0))
        return SL_ROUTE_MISS_HOST;
    if (!headers_match(r, req, &missing)) {
        if (header)
            *header = missing;
        return SL_ROUTE_MISS_HEADER;
    }
    return SL_ROUTE_MATCHES;
}

bool sl_route_conditions_hold(const struct sl_route *r, const struct sl_request *req,
                              const char *host, size_t host_len)
{
    size_t missing;

    if (!method_matches(r, req))
        return false;
    if (r->host && (!host || strlen(r->host) != host_len || memcmp(r->host, host, host_len) != 0))
        return false;
    return headers_match(r, req, &missing);
}

const struct sl_route *sl_route_match(const struct sl_config *cfg, unsigned thread,
                                      const struct sl_request *req, const char *path,
                                      size_t path_len, const char *host, size_t host_len)
{
    if (cfg->route_index)
        return sl_route_index_match(cfg->route_index, cfg, thread, req, path, path_len, host,
                                    host_len);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route *r = &cfg->routes[i];
        if (path_matches(r, path, path_len) && sl_route_conditions_hold(r, req, host, host_len))
            return r;
    }
    return NULL;
}
