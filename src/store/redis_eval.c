/* The Redis store's script calls: the EVALSHA of a decision, or of every decision on one limit
 * made in one loop turn, and its reply (NOSCRIPT, redirections, errors, the decisions).
 *
 * Under load a worker makes many decisions on each limit in the same loop turn: on one key
 * (a route-wide or per-tenant limit) or on many (a per-client one). They are queued until
 * the turn's callbacks have run (the link writes the turn's commands in one go anyway, on the
 * next write event, so nothing waits longer) and go as one call of the algorithm's batch
 * script, which runs the algorithm once per decision, in order, in one script invocation:
 * exactly the decisions the separate calls would have had, at the instant of the call, for
 * one call's cost in Redis and here. A decision made while its connection has nothing in
 * flight and nothing is queued goes at once: that is a lone decision, and the next ones, if
 * a burst follows, are batched. In a cluster a call's keys share a slot, and a call refused
 * because that slot is half-migrated goes again one decision at a time. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_internal.h"
#include "sluice/clock.h"
#include "sluice/deny_cache.h"
#include "sluice/log.h"
#include "sluice/lua_scripts.h"
#include "sluice/metrics.h"
#include "sluice/redis_slots.h"
#include "sluice/text.h"

/* A decision follows at most this many redirections: a slot moves once at a time, so more
 * means a cluster whose nodes disagree, and the decision fails rather than loop until its
 * deadline. */
#define MAX_REDIRECTS 5
/* A script error (a key of the wrong type, a rate past the script's range) repeats for every
 * request on the limit: it is logged at most this often per limit, over all workers. */
#define SCRIPT_LOG_INTERVAL_US 60000000
/* Decisions one batch carries at most: one script call is one Redis command, and Redis
 * serves nothing else while it runs. */
#define BATCH_MAX 64
/* The elements of a decision in a script's reply; the last two are left out when 0. */
#define FIELDS 5
#define FIELDS_MIN 3

/* When each limit's script error was last logged (monotonic µs, 0: never), by metrics id,
 * which names a limit by route and name across reloads. Shared by every worker's store. */
static _Atomic uint64_t script_logged_at[SL_METRICS_MAX_LIMITS];

/* The batch script runs the prelude once (arguments, the instant from TIME) and the algorithm
 * once per key in KEYS, in order, each decision on the state the one before it left: a turn's
 * decisions on one limit go as one call whether they share a key or not. A key may repeat
 * (a route-wide limit's): its state is held in the script from its first save and written
 * once at the end (the prelude's `held`). sliding_window's member is made unique per
 * decision by a suffix.
 * A call costs Redis its arguments, TIME and the numbers parsed, about a third of a lone
 * decision; a batch pays that once for the turn, and a key asked again its GET and SET once.
 * The reply is the decisions' own, one element each; a decision that fails (a key of the
 * wrong type) is its error element, and the others stand as made. */
static const char BATCH_DECIDE[] = "local function decide()\n";
static const char BATCH_TAIL[] =
    "\nend\n"
    "local unique, out = ARGV[7], {}\n"
    "held = {}\n"
    "for i = 1, #KEYS do\n"
    "    key = KEYS[i]\n"
    "    if unique then\n"
    "        member = unique .. ':' .. i\n"
    "    end\n"
    "    local ok, r = pcall(decide)\n"
    "    if not ok then\n"
    "        r = type(r) == 'table' and r.err and r or {err = tostring(r)}\n"
    "    end\n"
    "    out[i] = r\n"
    "end\n"
    "for i = 1, #held do\n"
    "    local h = held[held[i]]\n"
    "    write(held[i], h[5], h[1], h[2], h[3], h[4])\n"
    "end\n"
    "return out\n";

char *sl_redis_batch_body(const char *body)
{
    /* Every embedded script begins with the same prelude; another has no batch. */
    size_t len = strlen(body), head = sl_lua_prelude_len;
    if (len < head || memcmp(body, sl_lua_scripts[0].body, head) != 0)
        return NULL;
    size_t own = len - head, decide = sizeof BATCH_DECIDE - 1;
    char *out = malloc(len + decide + sizeof BATCH_TAIL);
    if (!out)
        return NULL;
    char *at = out;
    memcpy(at, body, head);
    at += head;
    memcpy(at, BATCH_DECIDE, decide);
    at += decide;
    memcpy(at, body + head, own);
    memcpy(at + own, BATCH_TAIL, sizeof BATCH_TAIL);
    return out;
}

/* The script `p` goes with: its algorithm's, or that one's batch when it carries others. */
static const struct sl_redis_script *script_of(const struct sl_redis_pending *p)
{
    return p->batch_n > 1 ? p->script->batch : p->script;
}

/* The decision in `r`: {allowed, remaining, reset_us, retry_after_us, delay_us}, all integers
 * >= 0; anything else is refused rather than trusted. The scripts leave out trailing zeros
 * (an admission without a delay is 3 elements): each element is an allocation here and a
 * conversion in Redis. */
int sl_redis_parse_decision(const redisReply *r, uint64_t count, struct sl_decision *d)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < FIELDS_MIN || r->elements > FIELDS)
        return -1;
    uint64_t v[FIELDS] = {0};
    for (size_t j = 0; j < r->elements; j++) {
        const redisReply *e = r->element[j];
        if (!e || e->type != REDIS_REPLY_INTEGER || e->integer < 0)
            return -1;
        v[j] = (uint64_t)e->integer;
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

/* Sends `p` again after NOSCRIPT (loading the script first) or a redirection (to `to`).
 * Both go down the same connection as the ASKING they may need, so the order holds. */
static int resend(struct sl_redis_pending *p, struct sl_redis_node *to, bool load, bool asking)
{
    if (!to || to->state != SL_REDIS_READY)
        return -1;
    if (load && sl_redis_link_command(to->link, NULL, NULL, "SCRIPT LOAD %s", script_of(p)->body))
        return -1;
    if (asking && sl_redis_link_command(to->link, NULL, NULL, "ASKING") != 0)
        return -1;
    p->asking = asking;
    return sl_redis_send(to, p);
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

/* Sends each decision `p` carries again as its own call, to the node that answered TRYAGAIN:
 * a batch whose keys share a slot in migration, some moved and some not, is refused whole
 * and run by neither node. Alone, a key is served where it is, or its ASK followed. The
 * leader's ASKING and redirections go with each. Those that cannot go fail, and are freed. */
static void split(struct sl_redis_pending *p, struct sl_redis_node *n)
{
    bool asking = p->asking;
    unsigned redirects = p->redirects;
    uint64_t sent_us = p->sent_us;
    for (struct sl_redis_pending *q = p, *next; q; q = next) {
        next = q->batch_next;
        q->batch_next = NULL;
        q->batch_n = 1;
        q->redirects = redirects;
        q->retried = false; /* the algorithm's own script, which the node may lack */
        q->sent_us = sent_us;
        if (q->cb && resend(q, n, false, asking) == 0)
            continue;
        if (q->cb)
            sl_redis_complete(q, NULL, SL_STORE_ERR_CONNECTION);
        free(q);
    }
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

/* Completes `p` and every decision it carries with the same failure. */
static void fail_all(struct sl_redis_pending *p, enum sl_store_status status)
{
    for (struct sl_redis_pending *q = p; q; q = q->batch_next)
        if (q->cb)
            sl_redis_complete(q, NULL, status);
}

/* Completes `p` and those it carries with their decisions from `reply`, holding denials in
 * the over-limit cache, and a batch's decision that failed in the script with its error;
 * 0, or -1 (nothing completed) when the reply has another shape. */
static int answer_all(struct sl_redis_store *s, struct sl_redis_pending *p, const redisReply *r)
{
    struct sl_decision d[BATCH_MAX];
    const redisReply *failed[BATCH_MAX] = {NULL};
    if (p->batch_n == 1) { /* the algorithm's own script */
        if (sl_redis_parse_decision(r, p->count, &d[0]) != 0)
            return -1;
    } else {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != p->batch_n || p->batch_n > BATCH_MAX)
            return -1;
        for (size_t i = 0; i < p->batch_n; i++) {
            const redisReply *e = r->element[i];
            if (e && e->type == REDIS_REPLY_ERROR)
                failed[i] = e;
            else if (!e || sl_redis_parse_decision(e, p->count, &d[i]) != 0)
                return -1;
        }
    }
    size_t i = 0;
    for (struct sl_redis_pending *q = p; q; q = q->batch_next, i++) {
        /* Only while the caller waits: a late reply's limit may be gone with a reload. */
        if (!q->cb)
            continue;
        if (failed[i]) {
            log_script_error(s, q, failed[i]);
            sl_redis_complete(q, NULL, SL_STORE_ERR_SCRIPT);
            continue;
        }
        if (s->deny && q->units.need > 0 && sl_redis_held_by_cache(&d[i])) {
            size_t len;
            const char *value = sl_redis_pending_value(q, &len);
            struct sl_quota quota = sl_redis_pending_quota(q);
            sl_deny_cache_add(s->deny, q->lim, &quota, value, len, q->units.need, p->sent_us,
                              &d[i]);
        }
        sl_redis_complete(q, &d[i], SL_STORE_OK);
    }
    return 0;
}

/* Frees `p` and the decisions it carries. */
static void free_all(struct sl_redis_pending *p)
{
    while (p) {
        struct sl_redis_pending *next = p->batch_next;
        free(p);
        p = next;
    }
}

/* Whether `p` or one it carries still waits for its answer. */
static bool awaited(const struct sl_redis_pending *p)
{
    for (; p; p = p->batch_next)
        if (p->cb)
            return true;
    return false;
}

static void on_reply(struct sl_redis_link *l, void *r, void *privdata)
{
    struct sl_redis_pending *p = privdata;
    struct sl_redis_store *s = p->store;
    struct sl_redis_node *n = sl_redis_link_data(l);
    const redisReply *reply = r;
    if (n->inflight > 0)
        n->inflight--;
    if (reply)
        n->progress_us = sl_clock_mono_us();
    if (!awaited(p))
        goto done; /* completed already (timed out): the late reply is dropped */
    if (!reply) {
        fail_all(p, SL_STORE_ERR_CONNECTION);
        goto done;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        bool handled;
        if (strncmp(reply->str, "NOSCRIPT", 8) == 0 && !p->retried && l == n->link) {
            /* The server lost its script cache (restart, SCRIPT FLUSH): load it again and
             * retry once. */
            p->retried = true;
            if (resend(p, n, true, p->asking) == 0)
                return;
            fail_all(p, SL_STORE_ERR_CONNECTION);
            goto done;
        }
        if (follow_redirect(s, p, reply, &handled) == 0)
            return;
        if (handled) {
            fail_all(p, SL_STORE_ERR_CONNECTION);
            goto done;
        }
        if (strncmp(reply->str, "READONLY", 8) == 0) {
            /* The master became a replica (failover): find the new one. */
            sl_redis_topo_readonly(s, n);
            fail_all(p, SL_STORE_ERR_CONNECTION);
            goto done;
        }
        if (strncmp(reply->str, "TRYAGAIN", 8) == 0 && p->batch_n > 1) {
            split(p, n);
            return;
        }
        if (strncmp(reply->str, "CLUSTERDOWN", 11) == 0 ||
            strncmp(reply->str, "TRYAGAIN", 8) == 0) {
            /* The cluster, not the script, failed: a slot without a master, or keys in
             * migration. The map is read again in case it changed. */
            sl_redis_topo_unavailable(s);
            fail_all(p, SL_STORE_ERR_CONNECTION);
            goto done;
        }
    }
    if (answer_all(s, p, reply) == 0)
        goto done;
    log_script_error(s, p, reply);
    fail_all(p, SL_STORE_ERR_SCRIPT);
done:
    free_all(p);
}

/* How many of the `nargv` arguments a script reads `p` sends: those at the end that hold their
 * default (the prelude's: need 1, take = need, burst = N) are left out, down to N and P. Each
 * costs Redis an object and a Lua string, and sluice its formatting; a decision at unit cost
 * on a bucket of N sends two. Past [5] (leaky_bucket's delay, sliding_window's member) every
 * one is sent. */
static unsigned sent_nargv(const struct sl_redis_pending *p, unsigned nargv)
{
    unsigned k = nargv;
    if (k == 5 && p->burst == p->count)
        k = 4;
    if (k == 4 && p->units.take == p->units.need)
        k = 3;
    if (k == 3 && p->units.need == 1)
        k = 2;
    return k;
}

int sl_redis_send(struct sl_redis_node *n, struct sl_redis_pending *p)
{
    const struct sl_redis_script *script = script_of(p);
    char nkeys[SL_U64_DIGITS], count[SL_U64_DIGITS], period[SL_U64_DIGITS], need[SL_U64_DIGITS],
        take[SL_U64_DIGITS], burst[SL_U64_DIGITS], now[SL_U64_DIGITS];
    /* EVALSHA sha numkeys, the keys (the batch's, in order), then the arguments. */
    const char *argv[3 + BATCH_MAX + SL_REDIS_NARGV + 1];
    size_t argvlen[3 + BATCH_MAX + SL_REDIS_NARGV + 1];
    int argc = 0;
    argv[argc] = "EVALSHA";
    argvlen[argc++] = 7;
    argv[argc] = script->sha;
    argvlen[argc++] = strlen(script->sha);
    argv[argc] = nkeys;
    argvlen[argc++] = sl_u64_format(nkeys, p->batch_n);
    for (const struct sl_redis_pending *q = p; q && argc < 3 + BATCH_MAX; q = q->batch_next) {
        argv[argc] = q->key;
        argvlen[argc++] = q->key_len;
    }
    const char *args[] = {count, period, need, take, burst, p->delay ? "1" : "0", p->member, now};
    size_t arglen[] = {sl_u64_format(count, p->count),
                       sl_u64_format(period, p->period_us),
                       sl_u64_format(need, p->units.need),
                       sl_u64_format(take, p->units.take),
                       sl_u64_format(burst, p->burst),
                       1,
                       p->member_len,
                       0};
    unsigned nargs = sent_nargv(p, script->nargv);
    if (p->store->pinned_clock) {
        /* A unit test's time instead of Redis's (the scripts' ARGV[8]). */
        arglen[7] = sl_u64_format(now, p->store->pinned_clock());
        nargs = SL_REDIS_NARGV + 1;
    }
    for (unsigned i = 0; i < nargs; i++) {
        argv[argc] = args[i];
        argvlen[argc++] = arglen[i];
    }
    if (sl_redis_link_command_argv(n->link, on_reply, p, argc, argv, argvlen) != 0)
        return -1;
    /* The link holds them all now: a timeout completes one without freeing it. */
    for (struct sl_redis_pending *q = p; q; q = q->batch_next)
        q->node = n;
    /* The first send: a NOSCRIPT retry or a redirection goes later, and counting a denial
     * from the earlier instant only shortens how long it is held. */
    if (!p->sent_us)
        p->sent_us = sl_clock_mono_us();
    if (n->inflight++ == 0)
        n->progress_us = sl_clock_mono_us();
    return 0;
}

/* --- this loop turn's batches ----------------------------------------------------------- */

/* A hash of what makes decisions one call: the limit and the units asked, and in a cluster the
 * key's slot (one script call's keys must share one). */
static uint64_t call_hash(const struct sl_redis_pending *p)
{
    return ((uint64_t)(uintptr_t)p->lim ^ p->units.need ^ ((uint64_t)p->key_slot << 48)) *
           0x9e3779b97f4a7c15ull;
}

/* Whether `p` can ride with `leader`: the same script and rate (a reload may put two rates of
 * one limit in one turn), asking the same units, and a key in the same cluster slot. */
static bool same_call(const struct sl_redis_pending *leader, const struct sl_redis_pending *p)
{
    return leader->batch_n < BATCH_MAX && leader->script == p->script &&
           leader->count == p->count && leader->units.need == p->units.need &&
           leader->units.take == p->units.take && leader->period_us == p->period_us &&
           leader->burst == p->burst && leader->delay == p->delay &&
           leader->key_slot == p->key_slot;
}

static void queue(struct sl_redis_store *s, struct sl_redis_pending *p);

int sl_redis_submit(struct sl_redis_store *s, struct sl_redis_node *n, struct sl_redis_pending *p)
{
    /* A decision on an idle connection goes at once: waiting for the turn's end would cost
     * it an event and a pass over the turn's batches for nothing. The next decisions find
     * it in flight and wait, so nothing queued is overtaken (nor what a flush running
     * callbacks has yet to send). When the last turn showed limits asked in bursts (any
     * limit under load), the first of a turn waits too, or each turn would cost such a
     * limit two calls. */
    if (s->topo.mode == SL_REDIS_MODE_CLUSTER)
        p->key_slot = (uint16_t)sl_redis_key_slot(p->key, p->key_len);
    if (n->inflight == 0 && !s->turn_head && !s->flushing && !s->bursty) {
        if (sl_redis_send(n, p) != 0)
            return -1;
        s->lone_hash = call_hash(p);
        s->lone_live = true;
        return 0;
    }
    if (s->lone_live && call_hash(p) == s->lone_hash)
        s->repeated = true; /* a burst that began with the decision sent at once */
    queue(s, p);
    return 0;
}

static void queue(struct sl_redis_store *s, struct sl_redis_pending *p)
{
    p->queued = true;
    p->batch_n = 1;
    size_t slot = (size_t)(call_hash(p) >> 58) % SL_REDIS_TURN_SLOTS;
    struct sl_redis_pending *leader = s->turn_slot[slot];
    if (leader && p->script->batch && same_call(leader, p)) {
        if (leader->batch_last)
            leader->batch_last->batch_next = p;
        else
            leader->batch_next = p;
        leader->batch_last = p;
        leader->batch_n++;
        return;
    }
    /* A new batch; a slot taken by another key keeps its own (the two go apart). */
    p->slot = (uint8_t)slot;
    if (!leader)
        s->turn_slot[slot] = p;
    p->turn_next = NULL;
    if (s->turn_tail)
        s->turn_tail->turn_next = p;
    else
        s->turn_head = p;
    s->turn_tail = p;
    if (!s->flush_scheduled) {
        s->flush_scheduled = true;
        event_active(s->flush_event, EV_TIMEOUT, 0);
    }
}

/* The batch led by `p` without the decisions completed while it was queued (they could
 * only have timed out), which the store frees; its new leader, or NULL if none is left. */
static struct sl_redis_pending *prune(struct sl_redis_pending *p)
{
    struct sl_redis_pending *leader = NULL, *last = NULL;
    unsigned n = 0;
    while (p) {
        struct sl_redis_pending *next = p->batch_next;
        p->queued = false;
        p->batch_next = NULL;
        if (!p->cb) {
            free(p);
        } else {
            if (last)
                last->batch_next = p;
            else
                leader = p;
            last = p;
            n++;
        }
        p = next;
    }
    if (leader) {
        leader->batch_n = n;
        leader->batch_last = NULL;
    }
    return leader;
}

void sl_redis_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    struct sl_redis_store *s = arg;
    s->flush_scheduled = false;
    s->flushing = true;
    bool bursty = s->repeated;
    s->repeated = s->lone_live = false;
    struct sl_redis_pending *p = s->turn_head;
    s->turn_head = s->turn_tail = NULL;
    for (struct sl_redis_pending *q = p; q; q = q->turn_next)
        if (s->turn_slot[q->slot] == q)
            s->turn_slot[q->slot] = NULL;
    while (p) {
        struct sl_redis_pending *next = p->turn_next;
        p = prune(p);
        if (!p) {
            p = next;
            continue;
        }
        bursty |= p->batch_n > 1;
        struct sl_redis_node *n = sl_redis_topo_pick(s, p->key, p->key_len);
        if (!n || sl_redis_send(n, p) != 0) {
            /* Never sent: the store still owns them. */
            while (p) {
                struct sl_redis_pending *q = p->batch_next;
                p->batch_next = NULL;
                sl_redis_complete(p, NULL, SL_STORE_ERR_CONNECTION);
                free(p);
                p = q;
            }
        }
        p = next;
    }
    s->flushing = false;
    s->bursty = bursty;
}

void sl_redis_unqueue_all(struct sl_redis_store *s)
{
    for (struct sl_redis_pending *p = s->turn_head; p; p = p->turn_next)
        for (struct sl_redis_pending *q = p; q; q = q->batch_next)
            q->queued = false;
    memset(s->turn_slot, 0, sizeof s->turn_slot);
    s->turn_head = s->turn_tail = NULL;
}
