/* One ShouldRateLimit call decided as envoyproxy/ratelimit decides it (its
 * src/service/ratelimit.go and src/limiter/base_limiter.go):
 *
 *   - each descriptor finds its limit (sl_rls_match), or the descriptor's own `limit`
 *     override when the domain is known: unnamed, never in shadow mode;
 *   - a limit another matched limit `replaces` is neither checked nor counted; an unlimited
 *     one is answered OK with limit_remaining 2^32 − 1 and no current_limit; no limit at all
 *     is OK with nothing else;
 *   - the others are decided on the store, all at once, the cost being the descriptor's
 *     hits_addend when it carries one (0: check only), else the request's (0 meaning 1);
 *   - a shadow_mode limit over its limit is answered OK but counted as any other;
 *   - overall OVER_LIMIT when a descriptor outside quota mode is over its limit, or when
 *     every quota-mode descriptor is; rls.shadow_mode (ratelimit's SHADOW_MODE) answers that
 *     OK as well.
 *
 * The call is reference counted as the engine's verdict is: one reference for the loop that
 * issues the decisions and one per decision in flight, so that it finishes exactly once,
 * after every decision was issued and answered, whichever store answers first. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/service/ratelimit/v3/rls.pb-c.h"
#include "sluice/clock.h"
#include "sluice/limit.h"
#include "sluice/metrics.h"
#include "sluice/rls.h"
#include "sluice/top.h"

typedef Envoy__Service__Ratelimit__V3__RateLimitRequest Request;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor Descriptor;

/* A request's descriptors and entries are bounded only by the message's size (1 MiB); these
 * keep one call's work and memory proportional to what a real Envoy sends. */
#define MAX_ENTRIES 64
#define MAX_KEY 4096

/* One descriptor of the call. */
struct item {
    const struct sl_rls_limit *limit; /* NULL: none applies */
    struct sl_rls_limit override;     /* the descriptor's own limit, when it gave one */
    char *override_name;              /* its full key; owned */
    uint64_t hits;
    char *key; /* the entries as the store keys them; owned */
    size_t key_len;
    uint64_t asked_us; /* for the store duration metric */
    struct sl_rls_call *call;
    bool local; /* decided on the local store after the main one failed */
};

struct sl_rls_call {
    const struct sl_rls_env *env;
    const struct sl_config *cfg;
    const struct sl_rls_settings *settings;
    Request *req;
    unsigned refs;
    struct item *items;
    struct sl_rls_result result;
    sl_rls_reply_cb cb;
    void *arg;
};

static void call_free(struct sl_rls_call *c)
{
    for (size_t i = 0; c->items && i < c->result.nstatuses; i++) {
        free(c->items[i].override_name);
        free(c->items[i].key);
    }
    envoy__service__ratelimit__v3__rate_limit_request__free_unpacked(c->req, NULL);
    free(c);
}

/* A checked limit in quota mode: a replaced or unlimited one is not checked, so not counted
 * among the quota-mode descriptors, as ratelimit drops it from its limits to check. */
static bool quota(const struct sl_rls_call *c, size_t i)
{
    return c->result.statuses[i].has_limit && c->result.statuses[i].quota_mode;
}

/* The overall code and the x-ratelimit-* headers, as ratelimit's shouldRateLimitWorker. */
static void conclude(struct sl_rls_call *c)
{
    struct sl_rls_result *r = &c->result;
    size_t failed = 0, failed_quota = 0, total_quota = 0;
    const struct sl_rls_status *min = NULL;
    uint32_t min_remaining = UINT32_MAX;

    for (size_t i = 0; i < r->nstatuses; i++) {
        const struct sl_rls_status *s = &r->statuses[i];
        if (c->settings->response_headers && s->has_limit && s->limit_remaining < min_remaining) {
            min = s;
            min_remaining = s->limit_remaining;
        }
        if (s->code == SL_RLS_OVER_LIMIT) {
            if (quota(c, i)) {
                failed_quota++;
            } else {
                failed++;
                min = s;
                min_remaining = 0;
            }
        }
        if (quota(c, i))
            total_quota++;
    }
    r->overall = SL_RLS_OK;
    if (failed > 0 || (total_quota > 0 && total_quota == failed_quota))
        r->overall = SL_RLS_OVER_LIMIT;
    if (c->settings->response_headers && min && min->has_limit) {
        r->headers = true;
        r->header_limit = min->requests_per_unit;
        r->header_remaining = min->limit_remaining;
        r->header_reset_s = (min->reset_us + 999999) / 1000000;
    }
    if (r->overall == SL_RLS_OVER_LIMIT && c->settings->shadow_mode)
        r->overall = SL_RLS_OK;
}

static void unref(struct sl_rls_call *c)
{
    if (--c->refs > 0)
        return;
    conclude(c);
    if (c->env->metrics)
        sl_metrics_rls_request(c->env->metrics, c->result.domain,
                               c->result.store_error                    ? SL_RLS_CODE_ERROR
                               : c->result.overall == SL_RLS_OVER_LIMIT ? SL_RLS_CODE_OVER_LIMIT
                                                                        : SL_RLS_CODE_OK);
    struct sl_rls_reply reply = {SL_RLS_GRPC_OK, NULL, &c->result};
    c->cb(c->arg, &reply);
    call_free(c);
}

static void set_limit(struct sl_rls_status *s, const struct sl_rls_limit *l)
{
    s->has_limit = true;
    s->requests_per_unit = l->requests_per_unit;
    s->unit = l->unit;
    s->name = l->name;
    s->quota_mode = l->quota_mode;
    /* ratelimit reports whole seconds; sluice's other algorithms keep the fraction. */
    s->whole_seconds = l->lim.alg == &sl_alg_rls_fixed_window;
}

/* Until the end of the unit's current window on the epoch clock, as ratelimit's
 * CalculateReset: for limits no store decides. */
static uint64_t window_left_us(const struct sl_rls_call *c, enum sl_rls_unit unit)
{
    uint64_t p = sl_rls_unit_seconds(unit) * 1000000;
    uint64_t now = c->env->clock_us();
    return p ? p - now % p : 0;
}

static void decided(void *arg, const struct sl_decision *d, enum sl_store_status status);

/* Asks the store of `it`; a failure there is failure_mode's (decided()). */
static void ask(struct item *it, struct sl_store *store)
{
    struct sl_rls_call *c = it->call;
    const struct sl_limit *lim = &it->limit->lim;
    struct sl_units u = {it->hits, it->hits};

    c->refs++;
    it->asked_us = sl_clock_mono_us();
    sl_store_decide_units(store, lim, it->key, it->key_len, &u, decided, it);
}

static void decided(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    struct item *it = arg;
    struct sl_rls_call *c = it->call;
    size_t i = (size_t)(it - c->items);
    struct sl_rls_status *s = &c->result.statuses[i];
    const struct sl_rls_env *env = c->env;
    enum sl_store_kind kind = it->local ? SL_STORE_MEMORY : env->store_kind;

    if (env->metrics) {
        if (status == SL_STORE_OK)
            sl_metrics_store_duration(env->metrics, kind, sl_clock_mono_us() - it->asked_us);
        else
            sl_metrics_store_error(env->metrics, kind, status);
    }
    set_limit(s, it->limit);
    if (status != SL_STORE_OK) {
        c->result.store_error = true;
        switch (c->cfg->failure_mode) {
        case SL_FAILURE_LOCAL:
            if (!it->local && env->local && env->local != env->store) {
                it->local = true;
                ask(it, env->local);
                unref(c);
                return;
            }
            /* No local store to ask: as open. */
            __attribute__((fallthrough));
        case SL_FAILURE_OPEN:
            s->code = SL_RLS_OK;
            s->limit_remaining = 0;
            s->reset_us = 0;
            break;
        case SL_FAILURE_CLOSED:
            /* As a proxied request's 503 with Retry-After: 1. */
            s->code = SL_RLS_OVER_LIMIT;
            s->limit_remaining = 0;
            s->reset_us = 1000000;
            break;
        }
        unref(c);
        return;
    }
    s->code = d->allowed || it->limit->shadow_mode ? SL_RLS_OK : SL_RLS_OVER_LIMIT;
    s->limit_remaining = d->remaining > UINT32_MAX ? UINT32_MAX : (uint32_t)d->remaining;
    s->reset_us = d->reset_us;
    if (env->top && c->cfg->admin_top && it->limit != &it->override)
        sl_top_record(env->top, &it->limit->lim, it->key, it->key_len, !d->allowed,
                      sl_clock_mono_us());
    unref(c);
}

/* The store's key value of the entries (sl_rls_key_value), kept by the item. */
static int make_key(struct item *it, const struct sl_rls_entry *entries, size_t n,
                    const struct sl_rls_node *const *path)
{
    size_t len = sl_rls_key_value(entries, n, path, NULL, 0);
    if (!(it->key = malloc(len + 1)))
        return -1;
    sl_rls_key_value(entries, n, path, it->key, len);
    it->key[len] = '\0';
    it->key_len = len;
    return 0;
}

/* The descriptor's `limit`: ratelimit's NewRateLimit with the request's numbers, decided by
 * the fixed window. Its unit is read as ratelimit reads it, as a RateLimitResponse unit: 7 is
 * WEEK there, whether or not the sender's RateLimitUnit has it. */
static int make_override(struct item *it, const char *domain, const Descriptor *d)
{
    uint32_t unit = (uint32_t)d->limit->unit;
    if (unit < SL_RLS_UNIT_SECOND || unit > SL_RLS_UNIT_WEEK)
        return -1;
    size_t n = strlen(domain) + 1 + it->key_len + 1;
    if (!(it->override_name = malloc(n)))
        return -2;
    memcpy(it->override_name, domain, strlen(domain));
    it->override_name[strlen(domain)] = '.';
    memcpy(it->override_name + strlen(domain) + 1, it->key, it->key_len + 1);
    struct sl_rls_limit *o = &it->override;
    o->requests_per_unit = d->limit->requests_per_unit;
    o->unit = (enum sl_rls_unit)unit;
    o->name = "";
    o->name_id = -1;
    o->full_key = it->override_name;
    o->lim.alg = &sl_alg_rls_fixed_window;
    o->lim.count = o->requests_per_unit;
    o->lim.period_us = sl_rls_unit_seconds(o->unit) * 1000000;
    o->lim.name = it->override_name;
    o->lim.metrics_id = UINT_MAX; /* no sketch: the request, not the files, made it */
    it->limit = o;
    return 0;
}

/* Finds each descriptor's limit. Returns 0, or the gRPC status to answer with. */
static int find_limits(struct sl_rls_call *c, const struct sl_rls_domain *dom, const char **message)
{
    const Request *req = c->req;
    struct sl_rls_entry entries[MAX_ENTRIES];
    const struct sl_rls_node *path[MAX_ENTRIES];

    for (size_t i = 0; i < req->n_descriptors; i++) {
        const Descriptor *d = req->descriptors[i];
        struct item *it = &c->items[i];
        it->call = c;
        if (d->hits_addend)
            it->hits = d->hits_addend->value;
        else
            it->hits = req->hits_addend ? req->hits_addend : 1;
        if (it->hits > SL_UNITS_MAX)
            it->hits = SL_UNITS_MAX; /* over any limit a uint32 can state */
        if (!dom)
            continue;
        if (d->n_entries > MAX_ENTRIES) {
            *message = "a descriptor has too many entries";
            return SL_RLS_GRPC_INVALID_ARGUMENT;
        }
        for (size_t k = 0; k < d->n_entries; k++) {
            const char *key = d->entries[k]->key, *value = d->entries[k]->value;
            entries[k] = (struct sl_rls_entry){key, strlen(key), value, strlen(value)};
        }
        it->limit = d->limit ? NULL : sl_rls_match(dom, entries, d->n_entries, path);
        if (!it->limit && !d->limit)
            continue;
        if (make_key(it, entries, d->n_entries, it->limit ? path : NULL) < 0)
            goto nomem;
        if (it->key_len > MAX_KEY) {
            *message = "a descriptor's entries are too long";
            return SL_RLS_GRPC_INVALID_ARGUMENT;
        }
        if (d->limit) {
            int rc = make_override(it, sl_rls_domain_name(dom), d);
            if (rc == -1) {
                *message = "a descriptor's limit override has an unknown unit";
                return SL_RLS_GRPC_INVALID_ARGUMENT;
            }
            if (rc < 0)
                goto nomem;
        }
    }
    return 0;

nomem:
    *message = "out of memory";
    return SL_RLS_GRPC_INTERNAL;
}

/* Starts the decision of descriptor `i`, or answers it at once when no store is needed. */
static void start(struct sl_rls_call *c, size_t i, const bool *replaced)
{
    struct item *it = &c->items[i];
    struct sl_rls_status *s = &c->result.statuses[i];
    const struct sl_rls_limit *l = it->limit;

    s->code = SL_RLS_OK;
    if (!l || replaced[i])
        return;
    if (l->unlimited) {
        s->limit_remaining = UINT32_MAX;
        return;
    }
    if (l->requests_per_unit == 0) {
        /* No algorithm takes N = 0: every hit is over it, a check alone is not. */
        set_limit(s, l);
        s->code = it->hits > 0 && !l->shadow_mode ? SL_RLS_OVER_LIMIT : SL_RLS_OK;
        s->reset_us = window_left_us(c, l->unit);
        return;
    }
    ask(it, c->env->store);
}

int sl_rls_decide(const struct sl_rls_env *env, const struct sl_config *cfg, void *request,
                  sl_rls_reply_cb cb, void *arg, int *grpc, const char **message)
{
    const struct sl_rls_settings *settings = &cfg->rls;
    Request *req = request;
    size_t n = 0;
    struct sl_rls_call *c = NULL;
    bool *replaced = NULL;
    const struct sl_rls_limit **limits = NULL;

    *message = "out of memory";
    *grpc = SL_RLS_GRPC_INTERNAL;
    /* ratelimit answers these with an error, which grpc-go sends as UNKNOWN. */
    if (!req->domain || !req->domain[0]) {
        *grpc = SL_RLS_GRPC_UNKNOWN;
        *message = "rate limit domain must not be empty";
        goto fail;
    }
    if (req->n_descriptors == 0) {
        *grpc = SL_RLS_GRPC_UNKNOWN;
        *message = "rate limit descriptor list must not be empty";
        goto fail;
    }
    n = req->n_descriptors;
    /* The call, its items, statuses, matched limits and replaced flags in one block. */
    size_t size = sizeof *c + n * (sizeof *c->items + sizeof *c->result.statuses + sizeof *limits +
                                   sizeof *replaced);
    c = calloc(1, size);
    if (!c)
        goto fail;
    c->items = (struct item *)(c + 1);
    c->result.statuses = (struct sl_rls_status *)(c->items + n);
    limits = (const struct sl_rls_limit **)(c->result.statuses + n);
    replaced = (bool *)(limits + n);
    c->env = env;
    c->cfg = cfg;
    c->settings = settings;
    c->req = req;
    c->cb = cb;
    c->arg = arg;
    c->result.nstatuses = n;

    const struct sl_rls_domain *dom =
        settings->files ? sl_rls_domain_find(settings->files, req->domain, strlen(req->domain))
                        : NULL;
    c->result.domain = dom ? sl_rls_domain_name(dom) : "";
    int rc = find_limits(c, dom, message);
    if (rc) {
        *grpc = rc;
        goto fail;
    }
    for (size_t i = 0; i < n; i++)
        limits[i] = c->items[i].limit;
    sl_rls_replaced(limits, n, replaced);
    c->refs = 1;
    for (size_t i = 0; i < n; i++)
        start(c, i, replaced);
    unref(c);
    return 0;

fail:
    if (c) {
        c->result.nstatuses = n;
        call_free(c);
    } else {
        envoy__service__ratelimit__v3__rate_limit_request__free_unpacked(req, NULL);
    }
    return -1;
}
