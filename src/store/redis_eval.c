/* The Redis store's script calls: the EVALSHA of a decision, or of every decision on one key
 * made in one loop turn, and its reply (NOSCRIPT, redirections, errors, the decisions).
 *
 * A route-wide or per-tenant limit is one key that every request touches: under load a
 * worker makes many decisions on it in the same loop turn. They are queued until the turn's
 * callbacks have run (hiredis writes the turn's commands in one go anyway, on the next
 * write event, so nothing waits longer) and go as one call of the algorithm's batch script,
 * which runs the algorithm once per request, in order, in one script invocation: exactly the
 * decisions the separate calls would have had, for one command's cost in Redis and here.
 * A decision made while its connection has nothing in flight and nothing is queued goes at
 * once: that is a lone decision, and the next ones, if a burst follows, are batched. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_internal.h"
#include "sluice/clock.h"
#include "sluice/deny_cache.h"
#include "sluice/log.h"
#include "sluice/metrics.h"
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
/* The elements of one decision in a batch script's reply; a script's own may leave out the
 * last two when they are 0 (see parse_at). */
#define FIELDS 5
#define FIELDS_MIN 3

/* When each limit's script error was last logged (monotonic µs, 0: never), by metrics id,
 * which names a limit by route and name across reloads. Shared by every worker's store. */
static _Atomic uint64_t script_logged_at[SL_METRICS_MAX_LIMITS];

/* The batch script wraps an algorithm's script (prelude included) as a function of its
 * ARGV and calls it once per decision. The call's ARGV is the script's own followed by the
 * count; a member (sliding_window's ARGV[7]) is made unique per decision by a suffix.
 *
 * What costs in Redis is the commands a script calls, not its arithmetic, so the wrapper
 * gives the algorithm its own `redis` whose call() and pcall() keep the key's state string in
 * the script: TIME is read once (the decisions of one loop turn share an instant), GET of the
 * key answers from the script's copy once read or written, SET is written once at the end.
 * Any other command (a hash's HMGET, sliding_window's sorted set) writes what is pending and
 * goes to Redis. The decisions are those the algorithm makes in sequence on that state; a
 * script error fails them all and writes nothing. */
static const char BATCH_HEAD[] =
    "local R = redis\n"
    "local clock, value, pending = nil, nil, nil\n"
    "local function flush()\n"
    "    if pending then\n"
    "        R.call('SET', KEYS[1], value, 'PX', pending)\n"
    "        pending = nil\n"
    "    end\n"
    "end\n"
    "local function via(send)\n"
    "    return function(cmd, key, ...)\n"
    "        if cmd == 'TIME' then\n"
    "            clock = clock or R.call('TIME')\n"
    "            return clock\n"
    "        end\n"
    "        if key == KEYS[1] and cmd == 'GET' and value ~= nil then\n"
    "            return value\n"
    "        end\n"
    "        if key == KEYS[1] and cmd == 'SET' then\n"
    "            local v, _, ttl = ...\n"
    "            value, pending = v, ttl\n"
    "            return {ok = 'OK'}\n"
    "        end\n"
    "        flush()\n"
    "        local r = send(cmd, key, ...)\n"
    "        if key == KEYS[1] and cmd == 'GET' and type(r) ~= 'table' then\n"
    "            value = r\n"
    "        end\n"
    "        return r\n"
    "    end\n"
    "end\n"
    "local redis = {call = via(R.call), pcall = via(R.pcall), error_reply = R.error_reply,\n"
    "               replicate_commands = R.replicate_commands}\n"
    "local function decide(ARGV)\n";
static const char BATCH_TAIL[] =
    "\nend\n"
    "local k = tonumber(ARGV[#ARGV])\n"
    "local argv, out = {}, {}\n"
    "for i = 1, #ARGV - 1 do argv[i] = ARGV[i] end\n"
    "for i = 1, k do\n"
    "    if ARGV[7] and #ARGV > 7 then argv[7] = ARGV[7] .. ':' .. i end\n"
    "    local r = decide(argv)\n"
    "    if r.err then return r end\n"
    "    for j = 1, 5 do out[#out + 1] = r[j] or 0 end\n"
    "end\n"
    "flush()\n"
    "return out\n";

char *sl_redis_batch_body(const char *body)
{
    size_t len = strlen(body);
    char *out = malloc(sizeof BATCH_HEAD - 1 + len + sizeof BATCH_TAIL);
    if (!out)
        return NULL;
    memcpy(out, BATCH_HEAD, sizeof BATCH_HEAD - 1);
    memcpy(out + sizeof BATCH_HEAD - 1, body, len);
    memcpy(out + sizeof BATCH_HEAD - 1 + len, BATCH_TAIL, sizeof BATCH_TAIL);
    return out;
}

/* The script `p` goes with: its algorithm's, or that one's batch when it carries others. */
static const struct sl_redis_script *script_of(const struct sl_redis_pending *p)
{
    return p->batch_n > 1 ? p->script->batch : p->script;
}

/* The decision in the `n` elements of `r` from `first`: {allowed, remaining, reset_us,
 * retry_after_us, delay_us}, all integers >= 0, those past `n` 0; anything else is refused
 * rather than trusted. The scripts leave out trailing zeros (an admission without a delay
 * is 3 elements): each element is an allocation here and a conversion in Redis. */
static int parse_at(const redisReply *r, size_t first, size_t n, uint64_t count,
                    struct sl_decision *d)
{
    uint64_t v[FIELDS] = {0};
    for (size_t j = 0; j < n; j++) {
        const redisReply *e = r->element[first + j];
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

int sl_redis_parse_decision(const redisReply *r, uint64_t count, struct sl_decision *d)
{
    if (r->type != REDIS_REPLY_ARRAY || r->elements < FIELDS_MIN || r->elements > FIELDS)
        return -1;
    return parse_at(r, 0, r->elements, count, d);
}

/* Sends `p` again after NOSCRIPT (loading the script first) or a redirection (to `to`).
 * Both go down the same connection as the ASKING they may need, so the order holds. */
static int resend(struct sl_redis_pending *p, struct sl_redis_node *to, bool load, bool asking)
{
    if (!to || to->state != SL_REDIS_READY)
        return -1;
    if (load && redisAsyncCommand(to->ac, NULL, NULL, "SCRIPT LOAD %s", script_of(p)->body) != 0)
        return -1;
    if (asking && redisAsyncCommand(to->ac, NULL, NULL, "ASKING") != REDIS_OK)
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
 * the over-limit cache; 0, or -1 (nothing completed) when the reply has another shape. */
static int answer_all(struct sl_redis_store *s, struct sl_redis_pending *p, const redisReply *r)
{
    struct sl_decision d[BATCH_MAX];
    if (p->batch_n == 1) { /* the algorithm's own script */
        if (sl_redis_parse_decision(r, p->count, &d[0]) != 0)
            return -1;
    } else {
        if (r->type != REDIS_REPLY_ARRAY || r->elements != (size_t)p->batch_n * FIELDS ||
            p->batch_n > BATCH_MAX)
            return -1;
        for (size_t i = 0; i < p->batch_n; i++)
            if (parse_at(r, i * FIELDS, FIELDS, p->count, &d[i]) != 0)
                return -1;
    }
    size_t i = 0;
    for (struct sl_redis_pending *q = p; q; q = q->batch_next, i++) {
        /* Only while the caller waits: a late reply's limit may be gone with a reload. */
        if (!q->cb)
            continue;
        if (s->deny && q->units.need > 0 && sl_redis_held_by_cache(&d[i])) {
            size_t len;
            const char *value = sl_redis_pending_value(q, &len);
            sl_deny_cache_add(s->deny, q->lim, value, len, q->units.need, p->sent_us, &d[i]);
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
    if (!awaited(p))
        goto done; /* completed already (timed out): the late reply is dropped */
    if (!reply) {
        fail_all(p, SL_STORE_ERR_CONNECTION);
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
    char count[SL_U64_DIGITS], period[SL_U64_DIGITS], need[SL_U64_DIGITS], take[SL_U64_DIGITS],
        burst[SL_U64_DIGITS], now[SL_U64_DIGITS], k[SL_U64_DIGITS];
    const char *argv[] = {"EVALSHA", script->sha, "1",  p->key, count,
                          period,    need,        take, burst,  p->delay ? "1" : "0",
                          p->member, now,         NULL};
    size_t argvlen[] = {7,
                        strlen(script->sha),
                        1,
                        p->key_len,
                        sl_u64_format(count, p->count),
                        sl_u64_format(period, p->period_us),
                        sl_u64_format(need, p->units.need),
                        sl_u64_format(take, p->units.take),
                        sl_u64_format(burst, p->burst),
                        1,
                        p->member_len,
                        0,
                        0};
    int argc = 4 + (int)sent_nargv(p, script->nargv);
    if (p->store->pinned_clock) {
        /* A unit test's time instead of Redis's (the scripts' ARGV[8]). */
        argvlen[11] = sl_u64_format(now, p->store->pinned_clock());
        argc = 4 + SL_REDIS_NARGV + 1;
    }
    if (p->batch_n > 1) {
        /* The count follows the arguments the algorithm reads (the batch script's last). */
        argv[argc] = k;
        argvlen[argc] = sl_u64_format(k, p->batch_n);
        argc++;
    }
    if (redisAsyncCommandArgv(n->ac, on_reply, p, argc, argv, argvlen) != REDIS_OK)
        return -1;
    /* hiredis holds them all now: a timeout completes one without freeing it. */
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

/* Keys of one limit share their start and differ in their value, at the end: its last
 * eight bytes and the length pick the slot. Two keys in one slot go apart, never wrong. */
static size_t turn_slot(const struct sl_redis_pending *p)
{
    uint64_t tail = 0;
    size_t n = p->key_len < sizeof tail ? p->key_len : sizeof tail;
    memcpy(&tail, p->key + p->key_len - n, n);
    uint64_t h = (tail ^ p->key_len) * 0x9e3779b97f4a7c15ull;
    return (size_t)(h >> 58) % SL_REDIS_TURN_SLOTS;
}

/* Whether `p` can ride with `leader`: the same key under the same script and rate (a reload
 * may put two rates of one limit in one turn), asking the same units. */
static bool same_call(const struct sl_redis_pending *leader, const struct sl_redis_pending *p)
{
    return leader->batch_n < BATCH_MAX && leader->script == p->script &&
           leader->key_len == p->key_len && leader->count == p->count &&
           leader->units.need == p->units.need && leader->units.take == p->units.take &&
           leader->period_us == p->period_us && leader->burst == p->burst &&
           leader->delay == p->delay && memcmp(leader->key, p->key, p->key_len) == 0;
}

static void queue(struct sl_redis_store *s, struct sl_redis_pending *p);

/* A hash of the limit and the key: keys of one limit differ at their end, and one client's
 * key is often the same under several limits. */
static uint64_t key_hash(const struct sl_redis_pending *p)
{
    uint64_t tail = 0;
    size_t n = p->key_len < sizeof tail ? p->key_len : sizeof tail;
    memcpy(&tail, p->key + p->key_len - n, n);
    return (tail ^ p->key_len ^ (uint64_t)(uintptr_t)p->lim) * 0x9e3779b97f4a7c15ull;
}

int sl_redis_submit(struct sl_redis_store *s, struct sl_redis_node *n, struct sl_redis_pending *p)
{
    /* A decision on an idle connection goes at once: waiting for the turn's end would cost
     * it an event and a pass over the turn's batches for nothing. The next decisions find
     * it in flight and wait, so nothing queued is overtaken (nor what a flush running
     * callbacks has yet to send). When the last turn showed keys asked in bursts (a
     * route-wide limit under load), the first of a turn waits too, or each turn would cost
     * such a key two calls. */
    if (n->inflight == 0 && !s->turn_head && !s->flushing && !s->bursty) {
        if (sl_redis_send(n, p) != 0)
            return -1;
        s->lone_hash = key_hash(p);
        s->lone_live = true;
        return 0;
    }
    if (s->lone_live && key_hash(p) == s->lone_hash)
        s->repeated = true; /* a burst that began with the decision sent at once */
    queue(s, p);
    return 0;
}

static void queue(struct sl_redis_store *s, struct sl_redis_pending *p)
{
    p->queued = true;
    p->batch_n = 1;
    size_t slot = turn_slot(p);
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
