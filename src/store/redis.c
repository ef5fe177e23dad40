/* The Redis store's decisions: one pipelined EVALSHA per decision on the node the topology
 * picks for its key, a deadline for each, and pending entries that outlive late replies.
 * Redirections (MOVED, ASK) are followed inside the same deadline. Until the topology's first
 * attempt is over, a decision whose node is not up waits for it (sl_redis_attempt_done); a
 * key Redis denied is answered from the over-limit cache (deny_cache.c) before any node is
 * picked. The connections are in redis_conn.c, which nodes exist in redis_topology.c. */
#include <event2/dns.h>
#include <event2/event.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

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
/* A decision follows at most this many redirections: a slot moves once at a time, so more
 * means a cluster whose nodes disagree, and the decision fails rather than loop until its
 * deadline. */
#define MAX_REDIRECTS 5
/* A script error (a key of the wrong type, a rate past the script's range) repeats for every
 * request on the limit: it is logged at most this often per limit, over all workers. */
#define SCRIPT_LOG_INTERVAL_US 60000000

/* When each limit's script error was last logged (monotonic µs, 0: never), by metrics id,
 * which names a limit by route and name across reloads. Shared by every worker's store. */
static _Atomic uint64_t script_logged_at[SL_METRICS_MAX_LIMITS];

/* One decision. Before it is sent (held at start-up, see sl_redis_attempt_done) the store
 * owns it; hiredis owns it from the EVALSHA until its reply callback, which frees it. The
 * callback to the caller (cb) runs at most once, on reply, timeout or failure. */
struct sl_redis_pending {
    struct sl_redis_store *store;
    struct sl_redis_node *node;           /* where the EVALSHA went; NULL while held */
    struct sl_redis_pending *prev, *next; /* in the store's deadline list until completed */
    sl_store_cb cb;                       /* NULL once completed */
    void *arg;
    uint64_t deadline_us;
    const struct sl_redis_script *script;
    unsigned limit_id; /* the limit's metrics id, for rate-limited logging */
    /* Copied from the limit, which may be gone by the time a NOSCRIPT retry is sent. */
    uint64_t count, period_us, burst;
    struct sl_units units;
    bool delay;
    bool retried; /* after NOSCRIPT */
    bool asking;  /* sent after ASKING, following an ASK */
    unsigned redirects;
    uint64_t sent_us; /* when first sent: a held denial counts from here */
    /* The caller's limit, alive while cb is set (the caller holds its configuration). */
    const struct sl_limit *lim;
    char member[64];
    size_t member_len;
    size_t name_len; /* key_prefix + route:limit:tag, the key without its value */
    size_t key_len;
    char key[];
};

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
    evtimer_add(s->deadline_timer, &tv);
}

static void list_append(struct sl_redis_store *s, struct sl_redis_pending *p)
{
    p->prev = s->tail;
    p->next = NULL;
    if (s->tail)
        s->tail->next = p;
    else
        s->head = p;
    s->tail = p;
    if (s->head == p)
        arm_deadline(s, sl_clock_mono_us());
}

static void complete(struct sl_redis_pending *p, const struct sl_decision *d,
                     enum sl_store_status status)
{
    struct sl_redis_store *s = p->store;
    sl_store_cb cb = p->cb;
    void *arg = p->arg;
    list_remove(s, p);
    p->cb = NULL;
    cb(arg, d, status);
}

/* Completes `p` with a failure and frees it unless hiredis still holds it. */
static void complete_failed(struct sl_redis_pending *p, enum sl_store_status status)
{
    complete(p, NULL, status);
    if (!p->node)
        free(p);
}

static void fail_now(struct sl_redis_store *s, sl_store_cb cb, void *arg,
                     enum sl_store_status status)
{
    cb(arg, NULL, status);
}

/* The script reply {allowed, remaining, reset_us, retry_after_us, delay_us}, all integers
 * >= 0; anything else is refused rather than trusted. */
static int parse_decision(const redisReply *r, uint64_t count, struct sl_decision *d)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements != 5)
        return -1;
    uint64_t v[5];
    for (size_t i = 0; i < 5; i++) {
        const redisReply *e = r->element[i];
        if (!e || e->type != REDIS_REPLY_INTEGER || e->integer < 0)
            return -1;
        v[i] = (uint64_t)e->integer;
    }
    if (v[0] > 1)
        return -1;
    *d = (struct sl_decision){.allowed = v[0] == 1,
                              .limit = count,
                              .remaining = v[1],
                              .reset_us = v[2],
                              .retry_after_us = v[3],
                              .delay_us = v[4]};
    return 0;
}

static int send_eval(struct sl_redis_node *n, struct sl_redis_pending *p);

/* Sends `p` again after NOSCRIPT (loading the script first) or a redirection (to `to`).
 * Both go down the same connection as the ASKING they may need, so the order holds. */
static int resend(struct sl_redis_pending *p, struct sl_redis_node *to, bool load, bool asking)
{
    if (!to || to->state != SL_REDIS_READY)
        return -1;
    if (load && redisAsyncCommand(to->ac, NULL, NULL, "SCRIPT LOAD %s", p->script->body) != 0)
        return -1;
    if (asking && redisAsyncCommand(to->ac, NULL, NULL, "ASKING") != REDIS_OK)
        return -1;
    p->asking = asking;
    return send_eval(to, p);
}

/* MOVED or ASK: 0 when `p` was sent on, -1 when it is not a redirection or cannot follow. */
static int follow_redirect(struct sl_redis_store *s, struct sl_redis_pending *p,
                           const redisReply *reply, bool *handled)
{
    char host[256];
    unsigned slot;
    int port;
    enum sl_redis_redirect kind =
        sl_redis_redirect_parse(reply->str, reply->len, &slot, host, sizeof host, &port);
    *handled = kind != SL_REDIS_NO_REDIRECT;
    if (!*handled)
        return -1;
    sl_metrics_redis_redirection(s->metrics, kind == SL_REDIS_MOVED);
    struct sl_redis_node *to = sl_redis_topo_node_at(s, host, port);
    if (kind == SL_REDIS_MOVED && to)
        sl_redis_topo_moved(s, slot, to);
    /* ASK is followed once: a second one means the slot moved on meanwhile. */
    if (p->redirects++ >= MAX_REDIRECTS || (kind == SL_REDIS_ASK && p->asking))
        return -1;
    return resend(p, to, false, kind == SL_REDIS_ASK);
}

/* Logs the script error of `p` unless its limit's was logged within the last minute. */
static void log_script_error(const struct sl_redis_store *s, const struct sl_redis_pending *p,
                             const redisReply *reply)
{
    _Atomic uint64_t *at = &script_logged_at[p->limit_id % SL_METRICS_MAX_LIMITS];
    uint64_t now = sl_clock_mono_us(), last = atomic_load_explicit(at, memory_order_relaxed);
    if (last != 0 && now - last < SCRIPT_LOG_INTERVAL_US)
        return;
    if (!atomic_compare_exchange_strong_explicit(at, &last, now ? now : 1, memory_order_relaxed,
                                                 memory_order_relaxed))
        return; /* another worker logs it */
    sl_log_warn("redis (worker %u): %s script on %.*s*: %s (logged at most once a minute per "
                "limit)",
                s->worker_id, p->script->alg->name, (int)p->name_len, p->key,
                reply->type == REDIS_REPLY_ERROR ? reply->str : "malformed reply");
}

static void on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct sl_redis_pending *p = privdata;
    struct sl_redis_store *s = p->store;
    struct sl_redis_node *n = ac->data;
    const redisReply *reply = r;
    if (n->inflight > 0)
        n->inflight--;
    if (reply)
        n->progress_us = sl_clock_mono_us();
    if (!p->cb)
        goto done; /* completed already (timed out): the late reply is dropped */
    if (!reply) {
        complete(p, NULL, SL_STORE_ERR_CONNECTION);
        goto done;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        bool handled;
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && !p->retried && ac == n->ac) {
            /* The server lost its script cache (restart, SCRIPT FLUSH): load it again and
             * retry once. */
            p->retried = true;
            if (resend(p, n, true, p->asking) == 0)
                return;
            complete(p, NULL, SL_STORE_ERR_CONNECTION);
            goto done;
        }
        if (follow_redirect(s, p, reply, &handled) == 0)
            return;
        if (handled) {
            complete(p, NULL, SL_STORE_ERR_CONNECTION);
            goto done;
        }
        if (strncmp(reply->str, "READONLY", 8) == 0) {
            /* The master became a replica (failover): find the new one. */
            sl_redis_topo_readonly(s, n);
            complete(p, NULL, SL_STORE_ERR_CONNECTION);
            goto done;
        }
        if (strncmp(reply->str, "CLUSTERDOWN", 11) == 0 ||
            strncmp(reply->str, "TRYAGAIN", 8) == 0) {
            /* The cluster, not the script, failed: a slot without a master, or keys in
             * migration. The map is read again in case it changed. */
            sl_redis_topo_unavailable(s);
            complete(p, NULL, SL_STORE_ERR_CONNECTION);
            goto done;
        }
    }
    struct sl_decision d;
    if (parse_decision(reply, p->count, &d) == 0) {
        /* Only while the caller waits: a late reply's limit may be gone with a reload. */
        if (s->deny && !d.allowed)
            sl_deny_cache_add(s->deny, p->lim, p->key + p->name_len, p->key_len - p->name_len,
                              p->units.need, p->sent_us, &d);
        complete(p, &d, SL_STORE_OK);
        goto done;
    }
    log_script_error(s, p, reply);
    complete(p, NULL, SL_STORE_ERR_SCRIPT);
done:
    free(p);
}

static int send_eval(struct sl_redis_node *n, struct sl_redis_pending *p)
{
    char count[SL_U64_DIGITS], period[SL_U64_DIGITS], need[SL_U64_DIGITS], take[SL_U64_DIGITS],
        burst[SL_U64_DIGITS], now[SL_U64_DIGITS];
    const char *argv[] = {
        "EVALSHA", p->script->sha,       "1",       p->key, count, period, need, take,
        burst,     p->delay ? "1" : "0", p->member, now};
    size_t argvlen[] = {7,
                        strlen(p->script->sha),
                        1,
                        p->key_len,
                        sl_u64_format(count, p->count),
                        sl_u64_format(period, p->period_us),
                        sl_u64_format(need, p->units.need),
                        sl_u64_format(take, p->units.take),
                        sl_u64_format(burst, p->burst),
                        1,
                        p->member_len,
                        0};
    int argc = 4 + (int)p->script->nargv;
    if (p->store->pinned_clock) {
        /* A unit test's time instead of Redis's (the scripts' ARGV[8]). */
        argvlen[11] = sl_u64_format(now, p->store->pinned_clock());
        argc = 4 + SL_REDIS_NARGV + 1;
    }
    if (redisAsyncCommandArgv(n->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK)
        return -1;
    p->node = n;
    /* The first send: a NOSCRIPT retry or a redirection goes later, and counting a denial
     * from the earlier instant only shortens how long it is held. */
    if (!p->sent_us)
        p->sent_us = sl_clock_mono_us();
    if (n->inflight++ == 0)
        n->progress_us = sl_clock_mono_us();
    return 0;
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_store *s = arg;
    uint64_t now = sl_clock_mono_us();
    while (s->head && s->head->deadline_us <= now)
        complete_failed(s->head, SL_STORE_ERR_TIMEOUT);
    sl_redis_topo_check_stalls(s, now, STALL_US);
    arm_deadline(s, sl_clock_mono_us());
}

static const struct sl_redis_script *find_script(const struct sl_redis_store *s,
                                                 const struct sl_algorithm_ops *alg)
{
    for (size_t i = 0; i < s->nscripts; i++)
        if (s->scripts[i].alg == alg)
            return &s->scripts[i];
    for (size_t i = 0; i < s->nscripts; i++)
        if (alg && strcmp(s->scripts[i].alg->name, alg->name) == 0)
            return &s->scripts[i];
    return NULL;
}

static struct sl_redis_pending *pending_new(struct sl_redis_store *s,
                                            const struct sl_redis_script *script,
                                            const struct sl_limit *lim, const char *key,
                                            size_t key_len, const struct sl_units *u)
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
                                   .count = lim->count,
                                   .period_us = lim->period_us,
                                   .burst = lim->burst,
                                   .units = *u,
                                   .delay = lim->delay,
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
        size_t plen = strlen(s->member_prefix);
        memcpy(p->member, s->member_prefix, plen);
        p->member_len = plen + sl_u64_format(p->member + plen, s->seq++);
    }
    return p;
}

static void redis_decide(struct sl_store *store, const struct sl_limit *lim, const char *key,
                         size_t key_len, const struct sl_units *u, sl_store_cb cb, void *arg)
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
     * it; it answers before any node is picked, whatever the connections' state. */
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
        if (sl_deny_cache_find(s->deny, lim, value, value_len, u->need, sl_clock_mono_us(),
                               &held)) {
            sl_metrics_deny_cache_hit(s->metrics);
            cb(arg, &held, SL_STORE_OK);
            return;
        }
    }
    struct sl_redis_pending *p = pending_new(s, script, lim, key, key_len, u);
    if (!p) {
        fail_now(s, cb, arg, SL_STORE_ERR_CONNECTION);
        return;
    }
    /* The node is picked by the whole Redis key, prefix included, as Redis hashes it. Until
     * the topology's first attempt has finished (sl_redis_attempt_done), a decision with no
     * node yet waits for it, within its deadline, rather than failing: a fleet starting under
     * load would otherwise fall into failure_mode for its first requests. */
    struct sl_redis_node *n = sl_redis_topo_pick(s, p->key, p->key_len);
    bool hold = !n && !s->attempted;
    if (!n && !hold) {
        free(p);
        fail_now(s, cb, arg, SL_STORE_ERR_CONNECTION);
        return;
    }
    p->cb = cb;
    p->arg = arg;
    p->lim = lim;
    p->deadline_us = sl_clock_mono_us() + s->timeout_us;
    if (hold) {
        list_append(s, p);
        return;
    }
    if (send_eval(n, p) != 0) {
        free(p);
        fail_now(s, cb, arg, SL_STORE_ERR_CONNECTION);
        return;
    }
    list_append(s, p);
}

static void redis_free(struct sl_store *store)
{
    struct sl_redis_store *s = (struct sl_redis_store *)store;
    s->freeing = true;
    /* Answer every caller first; the entries sent stay with hiredis, which frees them below. */
    while (s->head)
        complete_failed(s->head, SL_STORE_ERR_CONNECTION);
    sl_redis_topo_deinit(s);
    if (s->deadline_timer)
        event_free(s->deadline_timer);
    /* evdns answers a cancelled lookup from the loop's next turn, and only then frees it:
     * a lookup cancelled just now, at shutdown when the loop has stopped, would leak. Give
     * it that turn while the resolver still exists. Its callback touches nothing of ours
     * (EVUTIL_EAI_CANCEL), and the store's own events are gone by now. */
    if (s->dns && s->lookups_cancelled)
        event_base_loop(s->evbase, EVLOOP_NONBLOCK);
    if (s->dns)
        evdns_base_free(s->dns, 0);
    sl_deny_cache_free(s->deny);
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
    /* The list holds the decisions held (no node) and those sent to a node that was up
     * already. Each held one goes to the node its key has now, or fails. A caller's callback
     * may start new decisions, which are sent at once (to the tail) or fail at once. */
    struct sl_redis_pending *p = s->head;
    while (p) {
        struct sl_redis_pending *next = p->next;
        if (!p->node) {
            struct sl_redis_node *n = sl_redis_topo_pick(s, p->key, p->key_len);
            if (!n || send_eval(n, p) != 0)
                complete_failed(p, SL_STORE_ERR_CONNECTION);
        }
        p = next;
    }
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
    const struct sl_algorithm_ops *const *all = sl_algorithm_all();
    for (size_t i = 0; all[i] && s->nscripts < SL_REDIS_MAX_SCRIPTS; i++) {
        const char *body = all[i]->redis_script;
        if (!body || !*body)
            body = sl_lua_script_find(all[i]->name);
        if (!body)
            continue;
        s->scripts[s->nscripts++] =
            (struct sl_redis_script){.alg = all[i], .body = body, .nargv = script_nargv(body)};
    }
}

/* Members of sliding-window sets must be unique across instances, workers and requests:
 * random bits per store, the worker, then a counter. */
static void init_member_prefix(struct sl_redis_store *s)
{
    uint64_t nonce;
    if (getrandom(&nonce, sizeof nonce, GRND_NONBLOCK) != sizeof nonce)
        nonce = sl_clock_real_us() ^ ((uint64_t)getpid() << 40) ^ (uint64_t)(uintptr_t)s;
    snprintf(s->member_prefix, sizeof s->member_prefix, "%016" PRIx64 ":%u:", nonce, s->worker_id);
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
    load_scripts(s);
    init_member_prefix(s);
    if (cfg->deny_cache && !(s->deny = sl_deny_cache_new(cfg->deny_cache)))
        goto fail;
    s->deadline_timer = evtimer_new(base, on_deadline, s);
    if (!s->deadline_timer || sl_redis_topo_init(s, cfg) != 0)
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

int sl_redis_parse_decision(const redisReply *r, uint64_t count, struct sl_decision *d)
{
    return parse_decision(r, count, d);
}
