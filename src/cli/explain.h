/* `sluice explain`: what the engine would see and decide for one request, gathered by the
 * engine's own functions (explain.c) and written for people or scripts (explain_out.c). */
#ifndef SLUICE_CLI_EXPLAIN_H
#define SLUICE_CLI_EXPLAIN_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config.h"
#include "sluice/request.h"
#include "sluice/route.h"

struct evbuffer;

/* One route tried, in file order, up to and including the one that matched. */
struct sl_explain_route {
    const struct sl_route *route;
    enum sl_route_miss miss;
    size_t header; /* SL_ROUTE_MISS_HEADER: the condition not met */
};

struct sl_explain_limit {
    const struct sl_limit *limit;
    bool applies;   /* every key source is present */
    size_t missing; /* !applies: the first absent source */
    char *value;    /* the key value the engine hands the store; owned */
    size_t value_len;
    char *redis_key; /* redis store: the key as Redis holds it; owned */
    size_t redis_key_len;
    bool digest; /* the Redis key holds the value's SHA-256 */
    /* With `rates:`: the value `by` found (NULL when its source is absent; owned) and the
     * entry it selected (NULL: the limit's own rate). */
    char *by_value;
    size_t by_value_len;
    const struct sl_rates_entry *rate;
};

struct sl_explain {
    const struct sl_config *cfg;
    const struct sl_request *req;
    const char *peer; /* as given, or the default */
    char *path;       /* normalised; NULL when the target has none; owned */
    size_t path_len;
    char *host; /* normalised; NULL when the request names none; owned */
    size_t host_len;
    bool has_host;
    struct sl_ip client; /* family 0: a unix-socket peer without a believed address */
    char client_text[64];
    struct sl_client_trace trace;
    bool exempt;
    struct sl_explain_route *tried; /* owned */
    size_t ntried;
    const struct sl_route *route; /* the match, or NULL */
    struct sl_explain_limit limits[SL_MAX_LIMITS_PER_ROUTE];
    size_t nlimits;
};

/* `explain --rls DOMAIN DESCRIPTOR` (explain_rls.c): prints which limit of the rls files the
 * descriptor ("key=value,...") matches and why. Returns the exit status. */
int sl_cli_explain_rls(const char *config, const char *domain, const char *descriptor);

/* Text of a key source as configured ("header:X-Api-Key"), into `buf`. */
const char *sl_explain_source_name(const struct sl_key_source *src, char *buf, size_t size);

/* Appends the explanation for people, or as one JSON object and a newline. 0 or -1. */
int sl_explain_write_text(const struct sl_explain *x, struct evbuffer *out);
int sl_explain_write_json(const struct sl_explain *x, struct evbuffer *out);

#endif
