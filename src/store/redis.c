/* The Redis store's decisions: a pipelined script call on the node the topology picks for
 * the key (redis_eval.c sends it, batching a loop turn's decisions on one key), a deadline
 * for each, and pending entries that outlive late replies. Until the topology's first
 * attempt is over, a decision whose node is not up waits for it (sl_redis_attempt_done); a
 * key Redis denied is answered from the over-limit cache (deny_cache.c) before any node is
 * picked, and when that denial runs out one request asks again while the others wait. The
 * connections are in redis_conn.c, which nodes exist in redis_topology.c. */
#include <event2/dns.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "../tls/tls.h"
#include "redis_internal.h"
#include "sluice/clock.h"
#include "sluice/deny_cache.h"
#include "sluice/log.h"
#include "sluice/lua_scripts.h"
#include "sluice/metrics.h"
#include "sluice/sha256.h"
#include "sluice/text.h"

/* Key values longer than this are replaced by their SHA-256 (SPEC.md section 3). The key is
 * key_prefix + route + ":" + limit + ":" + algorithm tag + ":" + value (store_redis.h). */
#define KEY_VALUE_MAX 200
/* With commands outstanding and no reply for this long, the connection is deemed dead even
 * though TCP has not said so (a black-holed peer): it is dropped and reopened. */
#define STALL_US 2000000
static const struct sl_store_ops redis_ops;

static void list_remove(struct sl_redis_store *s, struct sl_redis_pending *p)
{
    if (p->prev)
        p->prev->next = p->next;
    else
        s->head = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else
        s->tail = p->prev;
    p->prev = p->next = NULL;
}

static void arm_deadline(struct sl_redis_store *s, uint64_t now_us)
{
    if (!s->head)
        return;
    uint64_t wait = s->head->deadline_us > now_us ? s->head->deadline_us - now_us : 0;
    struct timeval tv = {.tv_sec = (time_t)(wait / 1000000),
                         .tv_usec = (suseconds_t)(wait % 1000000)};
    if (evtimer_add(s->deadline_timer, &tv) == 0)
        s->deadline_armed_us = s->head->deadline_us;
}

/* Appends `p`, whose deadline is the latest (all share one timeout), made at `now_us`. */
static void list_append(struct sl_redis_store *s, struct sl_redis_pending *p, uint64_t now_us)
{
    p->prev = s->tail;
    p->next = NULL;
    if (s->tail)
        s->tail->next = p;
    else
        s->head = p;
    s->tail = p;
    /* A timer still set for an earlier deadline (the list emptied since) goes off first and
     * is set again for the list's head then: setting it for each lone decision would cost
     * more than the decision's own bookkeeping. */
    if (s->head == p && !(s->deadline_armed_us && s->deadline_armed_us <= p->deadline_us))
        arm_deadline(s, now_us);
}

static void wait_for(struct sl_redis_pending *probe, struct sl_redis_pending *p)
{
    p->awaited = probe;
    p->wnext = NULL;
    p->wprev = probe->wtail;
    if (probe->wtail)
        probe->wtail->wnext = p;
    else
        probe->waiters = p;
    probe->wtail = p;
}

static void stop_waiting(struct sl_redis_pending *p)
{
    struct sl_redis_pending *probe = p->awaited;
    if (p->wprev)
        p->wprev->wnext = p->wnext;
    else
        probe->waiters = p->wnext;
    if (p->wnext)
        p->wnext->wprev = p->wprev;
    else
        probe->wtail = p->wprev;
    p->awaited = p->wprev = p->wnext = NULL;
}

static void redecide(struct sl_redis_store *s, struct sl_redis_pending *p);

void sl_redis_complete(struct sl_redis_pending *p, const struct sl_decision *d,
                       enum sl_store_status status)
{
    struct sl_redis_store *s = p->store;
    sl_store_cb cb = p->cb;
    void *arg = p->arg;
    list_remove(s, p);
    if (p->awaited)
        stop_waiting(p);
    if (p->probing) {
        /* A denial replaced the cache's entry (on_reply), which cleared the mark. An
         * admission that took the last unit leaves the key where it was, run out: the next
         * request (the first waiter) asks alone again, and most likely meets the next
         * denial. Anything else, an admission with units to spare or a failure, drops the
         * entry: the next requests ask Redis each. */
        size_t len;
        const char *value = sl_redis_pending_value(p, &len);
        struct sl_quota q = sl_redis_pending_quota(p);
        if (d && d->allowed && d->remaining == 0)
            sl_deny_cache_probe(s->deny, p->lim, &q, value, len, NULL);
        else if (!sl_redis_held_by_cache(d))
            sl_deny_cache_forget(s->deny, p->lim, &q, value, len);
        p->probing = false;
    }
    p->cb = NULL;
    cb(arg, d, status);
    /* Those waiting for this answer decide again now: most find the fresh denial held. */
    while (p->waiters) {
        struct sl_redis_pending *w = p->waiters;
        stop_waiting(w);
        redecide(s, w);
    }
}

/* Completes `p` with a failure and frees it unless its link (sent) or this turn's batch
 * (queued, see sl_redis_flush) still holds it. */
static void complete_failed(struct sl_redis_pending *p, enum sl_store_status status)
{
    sl_redis_complete(p, NULL, status);
    if (!p->node && !p->queued)
        free(p);
}

static void fail_now(struct sl_redis_store *s, sl_store_cb cb, void *arg,
                     enum sl_store_status status)
{
    cb(arg, NULL, status);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_store *s = arg;
    uint64_t now = sl_clock_mono_us();
    s->deadline_armed_us = 0;
    while (s->head && s->head->deadline_us <= now)
        complete_failed(s->head, SL_STORE_ERR_TIMEOUT);
    sl_redis_topo_check_stalls(s, now, STALL_US);
    arm_deadline(s, sl_clock_mono_us());
}

static const struct sl_redis_script *find_script(const struct sl_redis_store *s,
                                                 const struct sl_algorithm_ops *alg)
{
    for (size_t i = 0; i < s->nscripts; i++)
        if (s->scripts[i].alg == alg && !s->scripts[i].owned_body)
            return &s->scripts[i];
    for (size_t i = 0; i < s->nscripts; i++)
        if (alg && strcmp(s->scripts[i].alg->name, alg->name) == 0 && !s->scripts[i].owned_body)
            return &s->scripts[i];
    return NULL;
}

static struct sl_redis_pending *pending_new(struct sl_redis_store *s,
                                            const struct sl_redis_script *script,
                                            const struct sl_limit *lim, const struct sl_quota *q,
                                            const char *key, size_t key_len,
                                            const struct sl_units *u)
{
    const char *route = lim->route ? lim->route->name : "";
    const char *tag = lim->alg->tag;
    size_t route_len = strlen(route), limit_len = strlen(lim->name), tag_len = strlen(tag);
    char digest[2 * SL_SHA256_LEN + 1];
    if (key_len > KEY_VALUE_MAX) {
        sl_sha256_hex(key, key_len, digest);
        key = digest;
        key_len = 2 * SL_SHA256_LEN;
    }
    size_t total = s->prefix_len + route_len + 1 + limit_len + 1 + tag_len + 1 + key_len;
    struct sl_redis_pending *p = malloc(sizeof *p + total);
    if (!p)
        return NULL;
    *p = (struct sl_redis_pending){.store = s,
                                   .script = script,
                                   .limit_id = lim->metrics_id,
                                   .count = q->count,
                                   .period_us = q->period_us,
                                   .burst = q->burst,
                                   .units = *u,
                                   .delay = lim->delay,
                                   .batch_n = 1,
                                   .key_len = total};
    char *k = p->key;
    memcpy(k, s->prefix, s->prefix_len);
    k += s->prefix_len;
    memcpy(k, route, route_len);
    k += route_len;
    *k++ = ':';
    memcpy(k, lim->name, limit_len);
    k += limit_len;
    *k++ = ':';
    memcpy(k, tag, tag_len);
    k += tag_len;
    *k++ = ':';
    p->name_len = (size_t)(k - p->key);
    memcpy(k, key, key_len);
    if (script->nargv >= SL_REDIS_NARGV) {
        /* The key's time to live past this entry, in ms, as the script sets it
         * (src/limit/lua/sliding_window.lua), then the unique part. */
        char *m = p->member;
        m += sl_u64_format(m, q->period_us / 1000 + (q->period_us % 1000 != 0));
        *m++ = '/';
        size_t plen = strlen(s->member_prefix);
        memcpy(m, s->member_prefix, plen);
        m += plen;
        m += sl_u64_format(m, s->seq++);
        p->member_len = (size_t)(m - p->member);
    }
    return p;
}

/* Sends `p` (its caller set, in the deadline list, not sent) as the cache's `state` of its
 * key says: waits for the request already asking, or asks, registering as the one asking
 * when the held denial has run out. Until the topology's first attempt has finished
 * (sl_redis_attempt_done), a decision with no node yet waits for it, within its deadline,
 * rather than failing: a fleet starting under load would otherwise fall into failure_mode
 * for its first requests. */
static void dispatch(struct sl_redis_store *s, struct sl_redis_pending *p, enum sl_deny_state state,
                     void *probe)
{
    if (state == SL_DENY_PROBING) {
        wait_for(probe, p);
        return;
    }
    /* The node is picked by the whole Redis key, prefix included, as Redis hashes it. */
    struct sl_redis_node *n = sl_redis_topo_pick(s, p->key, p->key_len);
    if (!n && !s->attempted)
        return; /* held */
    if (!n) {
        complete_failed(p, SL_STORE_ERR_CONNECTION);
        return;
    }
    if (state != SL_DENY_EXPIRED) {
        if (sl_redis_submit(s, n, p) != 0)
            complete_failed(p, SL_STORE_ERR_CONNECTION);
        return;
    }
    /* The request asking again goes at once and alone: the others wait for its answer. */
    if (sl_redis_send(n, p) != 0) {
        complete_failed(p, SL_STORE_ERR_CONNECTION);
        return;
    }
    size_t len;
    const char *value = sl_redis_pending_value(p, &len);
    struct sl_quota q = sl_redis_pending_quota(p);
    sl_deny_cache_probe(s->deny, p->lim, &q, value, len, p);
    p->probing = true;
}

/* `p` waited for a probe that has its answer now: the cache decides it or it is sent. */
static void redecide(struct sl_redis_store *s, struct sl_redis_pending *p)
{
    if (s->freeing) {
        complete_failed(p, SL_STORE_ERR_CONNECTION);
        return;
    }
    size_t len;
    const char *value = sl_redis_pending_value(p, &len);
    struct sl_decision held;
    void *probe = NULL;
    struct sl_quota q = sl_redis_pending_quota(p);
    enum sl_deny_state state = sl_deny_cache_find(s->deny, p->lim, &q, value, len, p->units.need,
                                                  sl_clock_mono_us(), &held, &probe);
    if (state == SL_DENY_HELD) {
        sl_metrics_deny_cache_hit(s->metrics);
        sl_redis_complete(p, &held, SL_STORE_OK);
        free(p);
        return;
    }
    dispatch(s, p, state, probe);
}

static void redis_decide(struct sl_store *store, const struct sl_limit *lim,
                         const struct sl_quota *q, const char *key, size_t key_len,
                         const struct sl_units *u, sl_store_cb cb, void *arg)
{
    struct sl_redis_store *s = (struct sl_redis_store *)store;
    const struct sl_redis_script *script = find_script(s, lim->alg);
    if (!script) {
        fail_now(s, cb, arg, SL_STORE_ERR_SCRIPT);
        return;
    }
    if (s->freeing) {
        fail_now(s, cb, arg, SL_STORE_ERR_CONNECTION);
        return;
    }
    /* The over-limit cache is keyed by the limit and the key value as the Redis key holds
     * it; it answers before any node is picked, whatever the connections' state, and
     * before anything is allocated. A decision that asks no unit (a charge) never uses it. */
    enum sl_deny_state state = SL_DENY_UNKNOWN;
    void *probe = NULL;
    uint64_t now = sl_clock_mono_us();
    if (s->deny && u->need > 0) {
        char digest[2 * SL_SHA256_LEN + 1];
        const char *value = key;
        size_t value_len = key_len;
        if (key_len > KEY_VALUE_MAX) {
            sl_sha256_hex(key, key_len, digest);
            value = digest;
            value_len = 2 * SL_SHA256_LEN;
        }
        struct sl_decision held;
        state = sl_deny_cache_find(s->deny, lim, q, value, value_len, u->need, now, &held, &probe);
        if (state == SL_DENY_HELD) {
            sl_metrics_deny_cache_hit(s->metrics);
            cb(arg, &held, SL_STORE_OK);
            return;
        }
    }
    struct sl_redis_pending *p = pending_new(s, script, lim, q, key, key_len, u);
    if (!p) {
        fail_now(s, cb, arg, SL_STORE_ERR_CONNECTION);
        return;
    }
    p->cb = cb;
    p->arg = arg;
    p->lim = lim;
    p->deadline_us = now + s->timeout_us;
    list_append(s, p, now);
    dispatch(s, p, state, probe);
}

static void redis_free(struct sl_store *store)
{
    struct sl_redis_store *s = (struct sl_redis_store *)store;
    s->freeing = true;
    /* Answer every caller first; the entries sent stay with their links, which free them below. */
    sl_redis_unqueue_all(s);
    while (s->head)
        complete_failed(s->head, SL_STORE_ERR_CONNECTION);
    sl_redis_topo_deinit(s);
    if (s->deadline_timer)
        event_free(s->deadline_timer);
    if (s->flush_event)
        event_free(s->flush_event);
    /* evdns answers a cancelled lookup from the loop's next turn, and only then frees it:
     * a lookup cancelled just now, at shutdown when the loop has stopped, would leak. Give
     * it that turn while the resolver still exists. Its callback touches nothing of ours
     * (EVUTIL_EAI_CANCEL), and the store's own events are gone by now. */
    if (s->dns && s->lookups_cancelled)
        event_base_loop(s->evbase, EVLOOP_NONBLOCK);
    if (s->dns)
        evdns_base_free(s->dns, 0);
    sl_deny_cache_free(s->deny);
    SSL_CTX_free(s->tls_ctx);
    sl_tls_client_config_deinit(&s->tls);
    for (size_t i = 0; i < s->nscripts; i++)
        free(s->scripts[i].owned_body);
    free(s->user);
    free(s->password);
    free(s->prefix);
    free(s);
}

static const struct sl_store_ops redis_ops = {"redis", redis_decide, redis_free};

bool sl_store_redis_connected(const struct sl_store *store)
{
    const struct sl_redis_store *s = (const struct sl_redis_store *)store;
    return store && store->ops == &redis_ops && atomic_load(&s->connected);
}

bool sl_store_redis_started(const struct sl_store *store)
{
    const struct sl_redis_store *s = (const struct sl_redis_store *)store;
    return store && store->ops == &redis_ops && atomic_load(&s->started);
}

void sl_redis_attempt_done(struct sl_redis_store *s)
{
    if (s->attempted || s->freeing)
        return;
    s->attempted = true;
    atomic_store(&s->started, true);
    /* The list holds the decisions held (no node), those waiting for another's answer
     * (awaited) or queued for this turn's batch, and those sent to a node that was up
     * already. Each held one goes to the node its
     * key has now, or fails. A caller's callback may start new decisions, which are sent at once
     * (to the tail) or fail at once. */
    struct sl_redis_pending *p = s->head;
    while (p) {
        struct sl_redis_pending *next = p->next;
        if (!p->node && !p->awaited && !p->queued) {
            struct sl_redis_node *n = sl_redis_topo_pick(s, p->key, p->key_len);
            if (!n || sl_redis_send(n, p) != 0)
                complete_failed(p, SL_STORE_ERR_CONNECTION);
        }
        p = next;
    }
}

/* The store's TLS context. Files that could not be read (they were at load time) leave the
 * store up, failing every connection attempt with the reason, as a dead server would. */
static int start_tls(struct sl_redis_store *s, const struct sl_tls_client_config *c)
{
    if (sl_tls_client_config_copy(&s->tls, c) != 0)
        return -1;
    s->tls_ctx = sl_tls_client_ctx_new(c, s->tls_error, sizeof s->tls_error);
    if (!s->tls_ctx) {
        sl_log_error("redis (worker %u): TLS: %s", s->worker_id, s->tls_error);
        return 0;
    }
    /* A client looks no session up by itself: each node keeps its connection's last one
     * and offers it on its next attempt (sl_redis_node_keep_session). */
    SSL_CTX_set_session_cache_mode(s->tls_ctx,
                                   SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
    SSL_CTX_sess_set_new_cb(s->tls_ctx, sl_redis_node_keep_session);
    return 0;
}

static int copy_str(char **dst, const char *src)
{
    *dst = NULL;
    if (src && !(*dst = strdup(src)))
        return -1;
    return 0;
}

/* The highest ARGV[k] `body` reads, up to SL_REDIS_NARGV (past it is the tests' pinned time,
 * sent only with one). Every script takes the same list (N, P, need, take, burst, delay,
 * member) and most read only its start: sending just that saves Redis parsing and sluice
 * formatting arguments nobody reads. */
static unsigned script_nargv(const char *body)
{
    unsigned n = 0;
    for (const char *at = strstr(body, "ARGV["); at; at = strstr(at + 5, "ARGV[")) {
        unsigned k = (unsigned)strtoul(at + 5, NULL, 10);
        if (k > n && k <= SL_REDIS_NARGV)
            n = k;
    }
    return n;
}

static void load_scripts(struct sl_redis_store *s)
{
    const struct sl_algorithm_ops *const *all = sl_algorithm_stored();
    for (size_t i = 0; all[i] && s->nscripts < SL_REDIS_MAX_SCRIPTS; i++) {
        const char *body = all[i]->redis_script;
        if (!body || !*body)
            body = sl_lua_script_find(all[i]->name);
        if (!body)
            continue;
        s->scripts[s->nscripts++] =
            (struct sl_redis_script){.alg = all[i], .body = body, .nargv = script_nargv(body)};
    }
    /* Each with its batch (redis_eval.c); without one (no memory), its decisions go one by
     * one. */
    for (size_t i = 0, n = s->nscripts; i < n && s->nscripts < SL_REDIS_MAX_SCRIPTS; i++) {
        char *batch = sl_redis_batch_body(s->scripts[i].body);
        if (!batch)
            continue;
        struct sl_redis_script *b = &s->scripts[s->nscripts++];
        *b = (struct sl_redis_script){.alg = s->scripts[i].alg,
                                      .body = batch,
                                      .nargv = s->scripts[i].nargv,
                                      .owned_body = batch};
        s->scripts[i].batch = b;
    }
}

/* Members of sliding-window sets must be unique across instances, workers and requests:
 * random bits per store, the worker, then a counter. The 64 random bits are spelled in 11
 * characters of base64url rather than 16 hex digits: Redis keeps a member per admitted
 * request, so each byte is paid once per request in the window. */
static void init_member_prefix(struct sl_redis_store *s)
{
    static const char digits[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    uint64_t nonce;
    if (getrandom(&nonce, sizeof nonce, GRND_NONBLOCK) != sizeof nonce)
        nonce = sl_clock_real_us() ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)s;
    char spelled[12];
    for (int i = 0; i < 11; i++, nonce >>= 6)
        spelled[i] = digits[nonce & 63];
    spelled[11] = '\0';
    snprintf(s->member_prefix, sizeof s->member_prefix, "%s%u:", spelled, s->worker_id);
}

struct sl_store *sl_store_redis_new(struct event_base *base, const struct sl_redis_config *cfg,
                                    unsigned worker_id, struct sl_metrics_slot *metrics)
{
    struct sl_redis_store *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->base.ops = &redis_ops;
    s->evbase = base;
    s->metrics = metrics;
    s->worker_id = worker_id;
    s->db = cfg->mode == SL_REDIS_MODE_CLUSTER ? 0 : cfg->db;
    s->timeout_us = cfg->timeout_ms * 1000;
    if (copy_str(&s->user, cfg->user) || copy_str(&s->password, cfg->password) ||
        copy_str(&s->prefix, cfg->key_prefix ? cfg->key_prefix : ""))
        goto fail;
    s->prefix_len = strlen(s->prefix);
    if (cfg->tls.enabled && start_tls(s, &cfg->tls) != 0)
        goto fail;
    load_scripts(s);
    init_member_prefix(s);
    if (cfg->deny_cache && !(s->deny = sl_deny_cache_new(cfg->deny_cache)))
        goto fail;
    s->deadline_timer = evtimer_new(base, on_deadline, s);
    s->flush_event = event_new(base, -1, 0, sl_redis_flush, s);
    if (!s->deadline_timer || !s->flush_event || sl_redis_topo_init(s, cfg) != 0)
        goto fail;
    return &s->base;
fail:
    redis_free(&s->base);
    return NULL;
}

void sl_store_redis_pin_clock(struct sl_store *store, uint64_t (*clock_us)(void))
{
    ((struct sl_redis_store *)store)->pinned_clock = clock_us;
}
