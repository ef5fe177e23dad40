/* The limiter engine: route, keys, store decisions and their aggregation into a verdict
 * (SPEC.md sections 4, 5 and 6).
 *
 * A request's limits are all asked at once; a store may answer inside sl_store_decide()
 * (memory) or later on the event loop (Redis). The verdict holds one reference for the
 * issuing loop and one per decision in flight, and is finished when the last is dropped,
 * so that it is finished exactly once, after every limit was issued and answered. */
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "engine_internal.h"
#include "response.h"
#include "sluice/charge.h"
#include "sluice/clock.h"
#include "sluice/engine.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
#include "sluice/rates.h"
#include "sluice/route.h"
#include "sluice/top.h"
#include "sluice/usage_scan.h"

const char *sl_outcome_name(enum sl_outcome outcome)
{
    static const char *const names[SL_OUTCOME_COUNT] = {"allowed", "limited",   "shadow_limited",
                                                        "exempt",  "unmatched", "store_error"};
    return (unsigned)outcome < SL_OUTCOME_COUNT ? names[outcome] : "unknown";
}

struct sl_engine *sl_engine_new(struct event_base *base, struct sl_store *memory,
                                struct sl_store *redis, struct sl_metrics_slot *metrics)
{
    struct sl_engine *e = calloc(1, sizeof *e);

    if (!e)
        return NULL;
    e->base = base;
    e->memory = memory;
    e->redis = redis;
    e->metrics = metrics;
    return e;
}

void sl_engine_set_top(struct sl_engine *engine, struct sl_top_slot *top)
{
    engine->top = top;
}

void sl_engine_set_thread(struct sl_engine *engine, unsigned thread)
{
    engine->thread = thread;
}

static void scratch_deinit(struct scratch *s)
{
    free(s->path);
    free(s->host);
    free(s->key);
    free(s->by);
}

void sl_engine_free(struct sl_engine *engine)
{
    if (!engine)
        return;
    scratch_deinit(&engine->scratch);
    while (engine->free_blocks) {
        struct sl_key_block *b = engine->free_blocks;
        engine->free_blocks = b->next;
        free(b);
    }
    free(engine);
}

/* Grows `*buf` to hold `need` bytes; doubling keeps growth rare. Returns 0 or -1. */
static int reserve(char **buf, size_t *cap, size_t need)
{
    if (need <= *cap)
        return 0;
    size_t n = *cap * 2 > need ? *cap * 2 : need;
    if (n < 256)
        n = 256;
    char *p = realloc(*buf, n);
    if (!p)
        return -1;
    *buf = p;
    *cap = n;
    return 0;
}

static void metric_check(struct sl_engine *e, const struct sl_limit *lim,
                         enum sl_check_result result)
{
    if (e->metrics)
        sl_metrics_limit_check(e->metrics, lim, result);
}

/* Saves check `i`'s key for a local retry, and for the heavy-hitter sketches, which learn a
 * Redis decision later. Without room the retry is not possible and the limit is treated as
 * failure_mode open would treat it; the sketches miss that one request. */
static void keep_key(struct sl_engine *e, struct sl_verdict *v, size_t i, const char *key,
                     size_t len)
{
    struct sl_key_block *b = v->priv.keys;

    if (!b) {
        b = e->free_blocks;
        if (b) {
            e->free_blocks = b->next;
        } else {
            b = malloc(sizeof *b + 256);
            if (!b)
                return;
            b->cap = 256;
        }
        b->len = 0;
        memset(b->kept, 0, sizeof b->kept);
        v->priv.keys = b;
    }
    if (b->cap - b->len < len) {
        size_t cap = b->cap * 2 > b->len + len ? b->cap * 2 : b->len + len;
        struct sl_key_block *nb = realloc(b, sizeof *b + cap);
        if (!nb)
            return;
        b = nb;
        b->cap = cap;
        v->priv.keys = b;
    }
    memcpy(b->data + b->len, key, len);
    b->off[i] = b->len;
    b->klen[i] = len;
    b->kept[i] = true;
    b->len += len;
}

static void finish(struct sl_verdict *v);

static bool top_on(const struct sl_engine *e, const struct sl_verdict *v)
{
    return e->top && v->priv.cfg->admin_top;
}

/* The check's final answer, for the heavy hitters: every decided request counts as seen,
 * and a denial (a shadow limit's "would deny" included) as denied. The key is in the
 * scratch buffer for an answer given at once, else in the key block. */
static void record_top(struct sl_engine *e, struct sl_verdict *v, size_t i, bool denied,
                       uint64_t now)
{
    const struct sl_verdict_check *c = &v->priv.checks[i];
    const struct sl_key_block *b = v->priv.keys;
    if (now == 0)
        now = sl_clock_mono_us();
    if (c == e->asking)
        sl_top_record(e->top, c->limit, e->asking_key, e->asking_len, denied, now);
    else if (b && b->kept[i])
        sl_top_record(e->top, c->limit, b->data + b->off[i], b->klen[i], denied, now);
}

static void release(struct sl_verdict *v)
{
    if (--v->priv.pending == 0)
        finish(v);
}

static void on_decision(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    struct sl_verdict_check *c = arg;
    struct sl_verdict *v = c->verdict;
    struct sl_engine *e = v->priv.engine;
    /* The clock is read only for the metrics: a replay of a log decides without them. */
    uint64_t now = e->metrics ? sl_clock_mono_us() : 0;

    if (e->metrics)
        sl_metrics_store_duration(e->metrics, c->store, now - c->started_us);
    c->status = status;
    if (status == SL_STORE_OK) {
        c->decision = *d;
        if (top_on(e, v))
            record_top(e, v, (size_t)(c - v->priv.checks), !d->allowed, now);
        if (d->allowed && c->units.take > 0 && e->metrics && sl_limit_takes_units(c->limit))
            sl_metrics_limit_units(e->metrics, c->limit, false, c->units.take);
        metric_check(e, c->limit,
                     d->allowed         ? SL_CHECK_ALLOW
                     : c->limit->shadow ? SL_CHECK_SHADOW_DENY
                                        : SL_CHECK_DENY);
        release(v);
        return;
    }
    if (e->metrics)
        sl_metrics_store_error(e->metrics, c->store, status);
    size_t i = (size_t)(c - v->priv.checks);
    struct sl_key_block *b = v->priv.keys;
    if (v->priv.cfg->failure_mode == SL_FAILURE_LOCAL && c->store == SL_STORE_REDIS && b &&
        b->kept[i]) {
        /* The same limit on this instance's memory: local quotas instead of none while
         * Redis is away. The reference stays with the retry. */
        c->store = SL_STORE_MEMORY;
        c->started_us = now;
        sl_store_decide_quota(e->memory, c->limit, &c->quota, b->data + b->off[i], b->klen[i],
                              &c->units, on_decision, c);
        return;
    }
    metric_check(e, c->limit, SL_CHECK_ERROR);
    if (top_on(e, v))
        record_top(e, v, i, false, now);
    release(v);
}

/* Aggregates the answered checks. Every limit counts independently, as Envoy's
 * descriptors do: a request denied by one limit has still used a unit of the others.
 * A shadow limit only marks the request as one it would have limited: its store failing,
 * denying or asking for a delay changes nothing for the client. */
static void aggregate(struct sl_verdict *v)
{
    const struct sl_config *cfg = v->priv.cfg;
    const struct sl_route *route = v->route;
    bool denied = false, errored = false, shadow_denied = false;
    uint64_t delay = 0;

    for (size_t i = 0; i < sl_verdict_nchecks(route); i++) {
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (!c->applied)
            continue;
        if (c->limit->shadow)
            shadow_denied |= c->status == SL_STORE_OK && !c->decision.allowed;
        else if (c->status != SL_STORE_OK)
            errored = true;
        else if (!c->decision.allowed)
            denied = true;
        else if (c->decision.delay_us > delay)
            delay = c->decision.delay_us;
    }
    /* Shadow routes are measured, never enforced, and invisible to clients. */
    if (route->shadow) {
        v->outcome = denied || shadow_denied ? SL_OUTCOME_SHADOW_LIMITED
                     : errored               ? SL_OUTCOME_STORE_ERROR
                                             : SL_OUTCOME_ALLOWED;
        return;
    }
    /* A denial stands whatever the store did for the other limits. */
    if (denied) {
        v->outcome = SL_OUTCOME_LIMITED;
        sl_response_limited(cfg, v);
        return;
    }
    if (errored && cfg->failure_mode == SL_FAILURE_CLOSED) {
        v->outcome = SL_OUTCOME_STORE_ERROR;
        sl_response_store_unavailable(v);
        return;
    }
    /* Open, or local without a retry: admitted, and reported as a store error. */
    v->outcome = errored         ? SL_OUTCOME_STORE_ERROR
                 : shadow_denied ? SL_OUTCOME_SHADOW_LIMITED
                                 : SL_OUTCOME_ALLOWED;
    v->delay_us = delay;
    sl_response_ratelimit_headers(cfg, v);
}

/* Marks the charges a forwarded request owes: its admitted checks of charged limits whose
 * keys were kept. Returns true when there is one. */
static bool mark_charges(struct sl_verdict *v)
{
    struct sl_key_block *b = v->priv.keys;
    bool any = false;
    if (!v->route || v->status != 0 || !b)
        return false;
    for (size_t i = 0; i < sl_verdict_nchecks(v->route); i++) {
        struct sl_verdict_check *c = &v->priv.checks[i];
        c->charge_due = c->applied && c->limit->charge_kind != SL_CHARGE_NONE &&
                        c->status == SL_STORE_OK && c->decision.allowed && b->kept[i];
        any |= c->charge_due;
    }
    return any;
}

void sl_engine_recycle_keys(struct sl_engine *e, struct sl_verdict *v)
{
    if (v->priv.keys) {
        v->priv.keys->next = e->free_blocks;
        e->free_blocks = v->priv.keys;
        v->priv.keys = NULL;
    }
}

static void finish(struct sl_verdict *v)
{
    struct sl_engine *e = v->priv.engine;

    if (v->route && v->outcome == SL_OUTCOME_ALLOWED && !v->rejected)
        aggregate(v);
    if (!mark_charges(v))
        sl_engine_recycle_keys(e, v);
    /* Last: the callback may free `v`. */
    v->priv.cb(v->priv.arg, v);
}

static struct sl_store *store_for(struct sl_engine *e, const struct sl_limit *lim,
                                  enum sl_store_kind *kind)
{
    if (lim->store == SL_STORE_REDIS && e->redis) {
        *kind = SL_STORE_REDIS;
        return e->redis;
    }
    *kind = SL_STORE_MEMORY;
    return e->memory;
}

/* What the request asks of each limit. A malformed cost header makes the request a 400 (no
 * limit is asked, so none is spent); on a shadow limit, which must never change an answer,
 * it counts as the default cost. Returns 0, or -1 when `v` is answered. */
static int read_costs(struct sl_verdict *v, const struct sl_request *req)
{
    const struct sl_route *route = v->route;
    for (size_t i = 0; i < sl_verdict_nchecks(route); i++) {
        const struct sl_limit *lim = &route->limits[i];
        struct sl_verdict_check *c = &v->priv.checks[i];
        if (sl_cost_units(lim, req, &c->units) == 0)
            continue;
        if (lim->shadow) {
            c->units = (struct sl_units){1, 1};
            continue;
        }
        v->rejected = true;
        sl_response_bad_cost(v, lim);
        return -1;
    }
    return 0;
}

/* Reads the consumer's rate from c's limit's `rates:` into c->quota (the limit's own stays
 * when none applies). Returns true when no store is to be asked: `unlimited` admits and
 * "0/P" denies at once, Retry-After the period (SPEC.md section 3, Per-consumer rates). */
static bool apply_rates(struct sl_engine *e, struct scratch *s, struct sl_verdict_check *c,
                        const struct sl_key_ctx *ctx, size_t key_len)
{
    const struct sl_limit *lim = c->limit;
    bool absent;
    c->rate = sl_rates_pick(lim, ctx, s->key, key_len, &s->by, &s->by_cap, &absent);
    if (!c->rate)
        return false;
    c->quota = lim->rates->quotas[c->rate->rate];
    if (c->quota.count == SL_RATE_UNLIMITED) {
        c->status = SL_STORE_OK;
        c->decision = (struct sl_decision){.allowed = true};
        metric_check(e, lim, SL_CHECK_ALLOW);
        return true;
    }
    if (c->quota.count == 0) {
        c->status = SL_STORE_OK;
        c->decision = (struct sl_decision){.reset_us = c->quota.period_us,
                                           .retry_after_us = c->quota.period_us};
        metric_check(e, lim, lim->shadow ? SL_CHECK_SHADOW_DENY : SL_CHECK_DENY);
        return true;
    }
    return false;
}

/* Asks the store of every limit whose key sources are all present. */
static void issue(struct sl_engine *e, struct scratch *s, struct sl_verdict *v,
                  const struct sl_key_ctx *ctx)
{
    const struct sl_route *route = v->route;
    bool retry = v->priv.cfg->failure_mode == SL_FAILURE_LOCAL && e->redis;
    bool top = top_on(e, v);

    /* Only the matched route's checks are ever read (sl_verdict_nchecks): a route of one
     * limit clears one check, not SL_MAX_LIMITS_PER_ROUTE of them. */
    memset(v->priv.checks, 0, sl_verdict_nchecks(route) * sizeof *v->priv.checks);
    if (read_costs(v, ctx->req) < 0)
        return;
    for (size_t i = 0; i < sl_verdict_nchecks(route); i++) {
        const struct sl_limit *lim = &route->limits[i];
        struct sl_verdict_check *c = &v->priv.checks[i];
        ssize_t n = sl_key_build(lim, ctx, s->key, s->key_cap);
        if (n < 0)
            continue;
        c->verdict = v;
        c->limit = lim;
        c->applied = true;
        c->quota = sl_limit_quota(lim);
        struct sl_store *store = store_for(e, lim, &c->store);
        if ((size_t)n > s->key_cap) {
            if (reserve(&s->key, &s->key_cap, (size_t)n) < 0) {
                /* The limit cannot be asked: as if its store had failed. */
                sl_log_error("engine: out of memory building the key of limit %s", lim->name);
                c->status = SL_STORE_ERR_CONNECTION;
                metric_check(e, lim, SL_CHECK_ERROR);
                continue;
            }
            sl_key_build(lim, ctx, s->key, s->key_cap);
        }
        if (lim->rates && apply_rates(e, s, c, ctx, (size_t)n))
            continue;
        if (sl_limit_takes_units(lim) && c->units.need > sl_quota_capacity(lim, &c->quota)) {
            /* It can never fit: denied here, and no store is asked to spend anything. */
            c->status = SL_STORE_OK;
            c->never_fits = true;
            c->decision = (struct sl_decision){.limit = c->quota.count};
            metric_check(e, lim, lim->shadow ? SL_CHECK_SHADOW_DENY : SL_CHECK_DENY);
            continue;
        }
        /* A Redis answer comes later, when the scratch buffer holds other keys; a charge is
         * made when the response arrives. */
        if (((top || retry) && c->store == SL_STORE_REDIS) || lim->charge_kind != SL_CHARGE_NONE)
            keep_key(e, v, i, s->key, (size_t)n);
        c->started_us = e->metrics ? sl_clock_mono_us() : 0;
        v->priv.pending++;
        const struct sl_verdict_check *outer = e->asking;
        const char *outer_key = e->asking_key;
        size_t outer_len = e->asking_len;
        e->asking = c;
        e->asking_key = s->key;
        e->asking_len = (size_t)n;
        sl_store_decide_quota(store, lim, &c->quota, s->key, (size_t)n, &c->units, on_decision, c);
        /* Restored: this call may run inside another request's sl_store_decide(). */
        e->asking = outer;
        e->asking_key = outer_key;
        e->asking_len = outer_len;
    }
}

/* The client's text for client_ip keys, as inet_ntop writes it. IPv4, nearly every client,
 * is written here: inet_ntop goes through sprintf, which costs more than the decision. */
static size_t format_client(const struct sl_ip *ip, char *buf, size_t size)
{
    if (ip->family != AF_INET || size < INET_ADDRSTRLEN)
        return sl_ip_format(ip, buf, size);
    char *p = buf;
    for (int i = 0; i < 4; i++) {
        unsigned b = ip->addr[i];
        if (b >= 100)
            *p++ = (char)('0' + b / 100);
        if (b >= 10)
            *p++ = (char)('0' + b / 10 % 10);
        *p++ = (char)('0' + b % 10);
        *p++ = '.';
    }
    p[-1] = '\0';
    return (size_t)(p - 1 - buf);
}

/* Reads the request head into `s`: client, path and host, then the route. */
static int read_head(struct sl_engine *e, struct scratch *s, const struct sl_config *cfg,
                     const struct sl_request *req, struct sl_verdict *v, struct sl_key_ctx *ctx,
                     char *client, size_t client_size)
{
    ctx->req = req;
    sl_client_ip(&cfg->trusted_proxies, req, &v->client);
    if (v->client.family) {
        ctx->client = client;
        ctx->client_len = format_client(&v->client, client, client_size);
    } else {
        ctx->client = SL_KEY_UNIX_CLIENT;
        ctx->client_len = strlen(SL_KEY_UNIX_CLIENT);
    }

    if (reserve(&s->path, &s->path_cap, req->target_len + 2) < 0)
        return -1;
    ssize_t n = sl_path_normalize(&cfg->paths, req->target, req->target_len, s->path, s->path_cap);
    ctx->path = n >= 0 ? s->path : NULL;
    ctx->path_len = n >= 0 ? (size_t)n : 0;

    const char *authority;
    size_t alen;
    ctx->host = NULL;
    ctx->host_len = 0;
    if (sl_request_authority(req, &authority, &alen)) {
        if (reserve(&s->host, &s->host_cap, alen + 1) < 0)
            return -1;
        n = sl_host_normalize(authority, alen, s->host, s->host_cap);
        if (n >= 0) {
            ctx->host = s->host;
            ctx->host_len = (size_t)n;
        }
    }
    v->route =
        sl_route_match(cfg, e->thread, req, ctx->path, ctx->path_len, ctx->host, ctx->host_len);
    ctx->route = v->route;
    return 0;
}

void sl_engine_decide(struct sl_engine *engine, const struct sl_config *cfg,
                      const struct sl_request *req, struct sl_verdict *v, sl_verdict_cb cb,
                      void *arg)
{
    struct scratch nested = {0};
    struct scratch *s = &engine->scratch;
    struct sl_key_ctx ctx;
    char client[64];

    /* A store answering inside sl_store_decide() may finish another request whose
     * callback starts the next one: that call must not reuse buffers still in use. */
    if (engine->scratch_busy)
        s = &nested;
    else
        engine->scratch_busy = true;

    v->route = NULL;
    v->outcome = SL_OUTCOME_ALLOWED;
    v->status = 0;
    v->delay_us = 0;
    v->rejected = false;
    memset(&v->client, 0, sizeof v->client);
    v->priv.cb = cb;
    v->priv.arg = arg;
    v->priv.engine = engine;
    v->priv.cfg = cfg;
    v->priv.pending = 1; /* held by this call until every limit is issued */
    sl_engine_recycle_keys(engine,
                           v); /* a previous request's, should its end have gone unreported */
    v->priv.started_us = engine->metrics ? sl_clock_mono_us() : 0;

    if (read_head(engine, s, cfg, req, v, &ctx, client, sizeof client) < 0) {
        /* Without the path no route can be chosen: as if the store had failed. */
        sl_log_error("engine: out of memory reading a request head");
        v->route = NULL;
        v->outcome = SL_OUTCOME_STORE_ERROR;
        if (cfg->failure_mode == SL_FAILURE_CLOSED)
            sl_response_store_unavailable(v);
    } else if (v->client.family && sl_cidr_list_contains(&cfg->exempt, &v->client)) {
        v->outcome = SL_OUTCOME_EXEMPT;
    } else if (!v->route) {
        v->outcome = SL_OUTCOME_UNMATCHED;
    } else {
        issue(engine, s, v, &ctx);
    }
    if (s == &nested)
        scratch_deinit(&nested);
    else
        engine->scratch_busy = false;
    release(v);
}

void sl_engine_verdict_done(struct sl_engine *engine, struct sl_verdict *v)
{
    if (!v->priv.keys)
        return;
    if (!engine) { /* the engine is gone (worker shutdown): nothing to recycle into */
        for (size_t i = 0; v->route && i < sl_verdict_nchecks(v->route); i++) {
            sl_usage_scan_free(v->priv.checks[i].scan);
            v->priv.checks[i].scan = NULL;
        }
        free(v->priv.keys);
        v->priv.keys = NULL;
        return;
    }
    if (v->route)
        for (size_t i = 0; i < sl_verdict_nchecks(v->route); i++) {
            struct sl_verdict_check *c = &v->priv.checks[i];
            c->charge_due = false;
            sl_usage_scan_free(c->scan); /* a body cut short charges nothing */
            c->scan = NULL;
        }
    sl_engine_recycle_keys(engine, v);
}
