/* Which Redis servers the store talks to, behind one interface: a decision asks
 * sl_redis_topo_pick() for the node that serves its key, whatever the mode.
 *
 * - url: one DATA node, the server.
 * - cluster: a DATA node per master, one connection each. The slot map is read with
 *   CLUSTER SLOTS from any connected node: at start, after a MOVED, and after a node is lost.
 *   Reads are spaced by at least 100 ms, and after a failed read by a backoff doubling to
 *   5 s, so that a storm of MOVED replies or a dead node costs one read at a time.
 * - sentinel: one SENTINEL node, asked SENTINEL get-master-addr-by-name and then subscribed
 *   to +switch-master on the same connection, and one DATA node for the master, moved to the
 *   new address on +switch-master. A READONLY reply or a lost master makes sluice ask again
 *   (by reconnecting the sentinel connection, which cannot send commands once subscribed,
 *   to the next sentinel of the list); so does losing the sentinel.
 *
 * Nodes are never freed before the store: a slot owner is an index into `nodes`, and a
 * node that left the cluster just keeps reconnecting with backoff (one attempt in 5 s).
 *
 * The start-up gate (sl_redis_attempt_done) opens once the mode's first attempt is over:
 * url, the server's; cluster, the first map read (or its failure) and the first attempt of
 * every master the map names, or every seed failing; sentinel, the first lookup (or the
 * sentinel failing before it named a master) and the master's first attempt. */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_internal.h"
#include "sluice/clock.h"
#include "sluice/log.h"
#include "sluice/metrics.h"

#define REFRESH_MIN_INTERVAL_US 100000
#define REFRESH_BACKOFF_FIRST_MS 100
#define REFRESH_BACKOFF_MAX_MS 5000
/* A master that keeps failing its connection attempts makes sluice ask the sentinels again at
 * most this often (a master lost while connected makes it ask at once). */
#define REASK_MIN_INTERVAL_US 1000000

static bool node_ready(const struct sl_redis_node *n)
{
    return n && n->state == SL_REDIS_READY;
}

static void set_connected(struct sl_redis_store *s, bool connected)
{
    if (atomic_load(&s->connected) == connected)
        return;
    atomic_store(&s->connected, connected);
    sl_metrics_redis_connected(s->metrics, connected);
}

/* Connected means: every master this worker needs is READY. */
static void recompute_connected(struct sl_redis_store *s)
{
    struct sl_redis_topology *t = &s->topo;
    if (t->mode != SL_REDIS_MODE_CLUSTER) {
        set_connected(s, node_ready(t->master));
        return;
    }
    if (!t->map_known) {
        set_connected(s, false);
        return;
    }
    bool up = true;
    uint16_t checked = 0;
    for (size_t slot = 0; slot < SL_REDIS_SLOTS && up; slot++) {
        uint16_t o = t->slot_owner[slot];
        if (o == checked)
            continue; /* slot ranges are long: skip the owner just checked */
        up = o != 0 && node_ready(t->nodes[o - 1]);
        checked = o;
    }
    set_connected(s, up);
}

/* Cluster: the first map read is over, and so is the first attempt of every master it names;
 * or, with no map, no node could be reached to read it. */
static bool cluster_first_attempt_over(const struct sl_redis_topology *t)
{
    if (!t->map_known) {
        if (t->first_read_over)
            return true;
        for (size_t i = 0; i < t->nnodes; i++)
            if (!t->nodes[i]->attempted || node_ready(t->nodes[i]))
                return false;
        return !t->refresh_inflight;
    }
    uint16_t checked = 0;
    for (size_t slot = 0; slot < SL_REDIS_SLOTS; slot++) {
        uint16_t o = t->slot_owner[slot];
        if (o == checked || o == 0)
            continue;
        if (!t->nodes[o - 1]->attempted)
            return false;
        checked = o;
    }
    return true;
}

/* Opens the start-up gate (sl_redis_attempt_done) once the configured topology's first
 * attempt is over: decisions held until then go to their nodes, or fail. */
static void check_first_attempt(struct sl_redis_store *s)
{
    struct sl_redis_topology *t = &s->topo;
    bool over;
    if (s->attempted || s->freeing || !t->built)
        return;
    if (t->mode == SL_REDIS_MODE_CLUSTER)
        over = cluster_first_attempt_over(t);
    else if (t->master)
        over = t->master->attempted;
    else /* sentinel: the lookup failed (the sentinel went down before naming a master) */
        over = t->mode == SL_REDIS_MODE_SENTINEL && t->sentinel && t->sentinel->attempted;
    if (over)
        sl_redis_attempt_done(s);
}

static int add_node(struct sl_redis_topology *t, struct sl_redis_node *n)
{
    struct sl_redis_node **grown = realloc(t->nodes, (t->nnodes + 1) * sizeof *grown);
    if (!grown)
        return -1;
    t->nodes = grown;
    t->nodes[t->nnodes++] = n;
    return 0;
}

static size_t node_index(const struct sl_redis_topology *t, const struct sl_redis_node *n)
{
    for (size_t i = 0; i < t->nnodes; i++)
        if (t->nodes[i] == n)
            return i;
    return t->nnodes;
}

struct sl_redis_node *sl_redis_topo_node_at(struct sl_redis_store *s, const char *host, int port)
{
    struct sl_redis_topology *t = &s->topo;
    for (size_t i = 0; i < t->nnodes; i++)
        if (t->nodes[i]->kind == SL_REDIS_NODE_DATA && sl_redis_node_is(t->nodes[i], host, port))
            return t->nodes[i];
    /* A slot owner is an index that fits in 16 bits. */
    if (t->nnodes >= 0xFFFE)
        return NULL;
    struct sl_redis_node *n = sl_redis_node_new(s, SL_REDIS_NODE_DATA, host, port, NULL);
    if (n && add_node(t, n) < 0) {
        sl_redis_node_free(n);
        n = NULL;
    }
    return n;
}

/* --- cluster: the slot map ------------------------------------------------------------- */

static void arm_refresh(struct sl_redis_store *s, uint64_t us)
{
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000), .tv_usec = (suseconds_t)(us % 1000000)};
    evtimer_add(s->topo.refresh_timer, &tv);
}

static void refresh_failed(struct sl_redis_store *s)
{
    struct sl_redis_topology *t = &s->topo;
    t->refresh_wanted = true;
    arm_refresh(s, t->refresh_backoff_ms * 1000);
    t->refresh_backoff_ms = t->refresh_backoff_ms * 2 > REFRESH_BACKOFF_MAX_MS
                                ? REFRESH_BACKOFF_MAX_MS
                                : t->refresh_backoff_ms * 2;
}

static int apply_map(struct sl_redis_store *s, const struct sl_redis_slot_map *map)
{
    struct sl_redis_topology *t = &s->topo;
    uint16_t *index = calloc(map->nmasters + 1, sizeof *index);
    if (!index)
        return -1;
    for (size_t i = 0; i < map->nmasters; i++) {
        struct sl_redis_node *n =
            sl_redis_topo_node_at(s, map->masters[i].host, map->masters[i].port);
        index[i + 1] = n ? (uint16_t)(node_index(t, n) + 1) : 0;
    }
    for (size_t slot = 0; slot < SL_REDIS_SLOTS; slot++)
        t->slot_owner[slot] = index[map->owner[slot]];
    t->map_known = true;
    free(index);
    return 0;
}

static void on_slots(struct sl_redis_link *l, void *r, void *privdata)
{
    struct sl_redis_node *n = privdata;
    struct sl_redis_store *s = n->store;
    struct sl_redis_topology *t = &s->topo;
    const redisReply *reply = r;
    struct sl_redis_slot_map map;

    (void)l;
    t->refresh_inflight = false;
    if (s->freeing)
        return;
    t->first_read_over = true;
    if (!reply || sl_redis_slot_map_parse(reply, n->host, &map) < 0) {
        sl_log(SL_LOG_WARN, "redis (worker %u): %s:%d: cannot read the slot map: %s", s->worker_id,
               n->host, n->port,
               !reply                             ? "connection lost"
               : reply->type == REDIS_REPLY_ERROR ? reply->str
                                                  : "malformed reply");
        refresh_failed(s);
        check_first_attempt(s);
        return;
    }
    int rc = apply_map(s, &map);
    sl_redis_slot_map_deinit(&map);
    if (rc < 0) {
        refresh_failed(s);
        check_first_attempt(s);
        return;
    }
    t->refresh_backoff_ms = REFRESH_BACKOFF_FIRST_MS;
    t->last_refresh_us = sl_clock_mono_us();
    if (t->refresh_wanted)
        arm_refresh(s, REFRESH_MIN_INTERVAL_US);
    recompute_connected(s);
    check_first_attempt(s);
}

/* Reads the map from a READY node, starting the search at a different node each time so that
 * one slow node does not answer every read. */
static void refresh_now(struct sl_redis_store *s)
{
    struct sl_redis_topology *t = &s->topo;
    struct sl_redis_node *pick = NULL;
    for (size_t k = 0; k < t->nnodes && !pick; k++) {
        struct sl_redis_node *n = t->nodes[(t->rotate + k) % t->nnodes];
        if (n->kind == SL_REDIS_NODE_DATA && node_ready(n))
            pick = n;
    }
    t->rotate++;
    if (!pick) {
        /* None is up: the first node to finish its handshake reads the map. */
        t->refresh_wanted = true;
        return;
    }
    t->refresh_wanted = false;
    if (sl_redis_link_command(pick->link, on_slots, pick, "CLUSTER SLOTS") != 0) {
        t->first_read_over = true;
        refresh_failed(s);
        return;
    }
    t->refresh_inflight = true;
    sl_metrics_redis_topology_refresh(s->metrics);
}

static void request_refresh(struct sl_redis_store *s)
{
    struct sl_redis_topology *t = &s->topo;
    if (t->mode != SL_REDIS_MODE_CLUSTER || s->freeing)
        return;
    t->refresh_wanted = true;
    if (t->refresh_inflight || evtimer_pending(t->refresh_timer, NULL))
        return;
    uint64_t since = sl_clock_mono_us() - t->last_refresh_us;
    if (t->last_refresh_us && since < REFRESH_MIN_INTERVAL_US)
        arm_refresh(s, REFRESH_MIN_INTERVAL_US - since);
    else
        refresh_now(s);
}

static void on_refresh_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_store *s = arg;
    (void)fd;
    (void)what;
    if (!s->topo.refresh_inflight && s->topo.refresh_wanted)
        refresh_now(s);
}

void sl_redis_topo_moved(struct sl_redis_store *s, unsigned slot, struct sl_redis_node *to)
{
    struct sl_redis_topology *t = &s->topo;
    if (t->mode != SL_REDIS_MODE_CLUSTER || slot >= SL_REDIS_SLOTS)
        return;
    size_t i = node_index(t, to);
    if (i < t->nnodes)
        t->slot_owner[slot] = (uint16_t)(i + 1);
    request_refresh(s);
}

void sl_redis_topo_unavailable(struct sl_redis_store *s)
{
    request_refresh(s);
}

/* --- sentinel: the master's address ---------------------------------------------------- */

static void set_master(struct sl_redis_store *s, const char *host, int port, const char *why)
{
    struct sl_redis_topology *t = &s->topo;
    if (t->master && sl_redis_node_is(t->master, host, port))
        return;
    sl_log_info("redis (worker %u): master %s is at %s:%d (%s)", s->worker_id, t->master_name, host,
                port, why);
    if (!t->master) {
        struct sl_redis_node *n = sl_redis_node_new(s, SL_REDIS_NODE_DATA, host, port, NULL);
        if (n && add_node(t, n) < 0) {
            sl_redis_node_free(n);
            n = NULL;
        }
        t->master = n;
    } else if (sl_redis_node_retarget(t->master, host, port) < 0) {
        sl_log(SL_LOG_WARN, "redis (worker %u): out of memory moving to the new master",
               s->worker_id);
    }
    recompute_connected(s);
    check_first_attempt(s); /* the master's first attempt may have failed at once */
}

/* Messages on +switch-master: "<name> <old-ip> <old-port> <new-ip> <new-port>". */
static void on_switch(struct sl_redis_link *l, void *r, void *privdata)
{
    struct sl_redis_node *n = privdata;
    struct sl_redis_store *s = n->store;
    const redisReply *reply = r;
    char name[256], host[256];
    int port;

    if (l != n->link || !reply || reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        strcmp(reply->element[0]->str, "message") != 0 ||
        reply->element[2]->type != REDIS_REPLY_STRING)
        return;
    if (sscanf(reply->element[2]->str, "%255s %*s %*s %255s %d", name, host, &port) != 3 ||
        strcmp(name, s->topo.master_name) != 0 || port < 1 || port > 65535)
        return;
    set_master(s, host, port, "switched by the sentinels");
}

static void on_master_addr(struct sl_redis_link *l, void *r, void *privdata)
{
    struct sl_redis_node *n = privdata;
    struct sl_redis_store *s = n->store;
    const redisReply *reply = r;

    if (l != n->link || !reply || s->freeing)
        return;
    if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
        reply->element[0]->type != REDIS_REPLY_STRING ||
        reply->element[1]->type != REDIS_REPLY_STRING) {
        sl_redis_node_drop(n, reply->type == REDIS_REPLY_ERROR ? reply->str
                                                               : "does not know the master");
        return;
    }
    int port = atoi(reply->element[1]->str);
    if (port < 1 || port > 65535) {
        sl_redis_node_drop(n, "gave a master address without a port");
        return;
    }
    set_master(s, reply->element[0]->str, port, "asked the sentinels");
    if (sl_redis_link_subscribe(l, on_switch, n, "+switch-master") != 0)
        sl_redis_node_drop(n, "cannot subscribe to +switch-master");
}

static void ask_sentinel(struct sl_redis_store *s, struct sl_redis_node *n)
{
    s->topo.last_refresh_us = sl_clock_mono_us();
    sl_metrics_redis_topology_refresh(s->metrics);
    if (sl_redis_link_command(n->link, on_master_addr, n, "SENTINEL get-master-addr-by-name %s",
                              s->topo.master_name) != 0)
        sl_redis_node_drop(n, "cannot ask for the master");
}

/* The subscribed connection cannot ask: reconnect it, which asks again once READY. */
static void reask(struct sl_redis_store *s, const char *why)
{
    struct sl_redis_node *sentinel = s->topo.sentinel;
    if (s->freeing || !node_ready(sentinel))
        return; /* reconnecting already: it asks once READY */
    sl_redis_node_drop(sentinel, why);
}

void sl_redis_topo_readonly(struct sl_redis_store *s, struct sl_redis_node *n)
{
    if (s->topo.mode == SL_REDIS_MODE_SENTINEL && n == s->topo.master)
        reask(s, "the master answered READONLY: asking where it went");
}

/* --- events from the connections ------------------------------------------------------- */

void sl_redis_topo_node_up(struct sl_redis_node *n)
{
    struct sl_redis_store *s = n->store;
    struct sl_redis_topology *t = &s->topo;
    if (n->kind == SL_REDIS_NODE_SENTINEL) {
        /* The sentinel's attempt ends with its answer (on_master_addr), not here. */
        ask_sentinel(s, n);
        return;
    }
    n->attempted = true;
    if (t->mode == SL_REDIS_MODE_CLUSTER && (!t->map_known || t->refresh_wanted) &&
        !t->refresh_inflight && !evtimer_pending(t->refresh_timer, NULL))
        refresh_now(s);
    recompute_connected(s);
    check_first_attempt(s);
}

void sl_redis_topo_node_down(struct sl_redis_node *n, bool was_ready)
{
    struct sl_redis_store *s = n->store;
    struct sl_redis_topology *t = &s->topo;
    n->attempted = true;
    if (n->kind == SL_REDIS_NODE_SENTINEL) {
        /* The next attempt goes to the next sentinel of the list. */
        const struct sl_redis_addr *a = &t->addrs[t->next_sentinel++ % t->naddrs];
        sl_redis_node_set_address(n, a->host, a->port);
        check_first_attempt(s);
        return;
    }
    recompute_connected(s);
    if (t->mode == SL_REDIS_MODE_CLUSTER) {
        request_refresh(s);
    } else if (t->mode == SL_REDIS_MODE_SENTINEL && n == t->master) {
        if (was_ready || sl_clock_mono_us() - t->last_refresh_us >= REASK_MIN_INTERVAL_US)
            reask(s, "the master is unreachable: asking where it is");
    }
    check_first_attempt(s);
}

void sl_redis_topo_check_stalls(struct sl_redis_store *s, uint64_t now_us, uint64_t stall_us)
{
    struct sl_redis_topology *t = &s->topo;
    for (size_t i = 0; i < t->nnodes; i++) {
        struct sl_redis_node *n = t->nodes[i];
        if (n->kind == SL_REDIS_NODE_DATA && n->inflight > 0 && node_ready(n) &&
            now_us - n->progress_us >= stall_us)
            sl_redis_node_drop(n, "no reply within 2 s");
    }
}

struct sl_redis_node *sl_redis_topo_pick(struct sl_redis_store *s, const char *key, size_t len)
{
    struct sl_redis_topology *t = &s->topo;
    if (t->mode != SL_REDIS_MODE_CLUSTER)
        return node_ready(t->master) ? t->master : NULL;
    if (!t->map_known)
        return NULL;
    uint16_t o = t->slot_owner[sl_redis_key_slot(key, len)];
    return o && node_ready(t->nodes[o - 1]) ? t->nodes[o - 1] : NULL;
}

/* --- life cycle ------------------------------------------------------------------------ */

static int copy_addrs(struct sl_redis_topology *t, const struct sl_redis_config *cfg)
{
    if (cfg->naddrs == 0)
        return 0;
    t->addrs = calloc(cfg->naddrs, sizeof *t->addrs);
    if (!t->addrs)
        return -1;
    t->naddrs = cfg->naddrs;
    for (size_t i = 0; i < cfg->naddrs; i++) {
        t->addrs[i].port = cfg->addrs[i].port;
        if (!(t->addrs[i].host = strdup(cfg->addrs[i].host)))
            return -1;
    }
    return 0;
}

/* A first attempt may have failed inside sl_redis_node_new, before the topology recorded the
 * node: the gate is checked only from here on. */
static int built(struct sl_redis_store *s)
{
    s->topo.built = true;
    check_first_attempt(s);
    return 0;
}

int sl_redis_topo_init(struct sl_redis_store *s, const struct sl_redis_config *cfg)
{
    struct sl_redis_topology *t = &s->topo;
    t->mode = cfg->mode;
    t->refresh_backoff_ms = REFRESH_BACKOFF_FIRST_MS;
    atomic_init(&s->connected, false);
    sl_metrics_redis_connected(s->metrics, false);
    if (copy_addrs(t, cfg) < 0)
        return -1;
    if (t->mode == SL_REDIS_MODE_URL) {
        const char *host = cfg->unix_path ? NULL : cfg->host ? cfg->host : "127.0.0.1";
        t->master = sl_redis_node_new(s, SL_REDIS_NODE_DATA, host, cfg->port, cfg->unix_path);
        if (!t->master || add_node(t, t->master) < 0)
            return -1;
        return built(s);
    }
    if (t->naddrs == 0)
        return -1;
    if (t->mode == SL_REDIS_MODE_SENTINEL) {
        if (!(t->master_name = strdup(cfg->sentinel_master ? cfg->sentinel_master : "")))
            return -1;
        t->next_sentinel = 1;
        t->sentinel =
            sl_redis_node_new(s, SL_REDIS_NODE_SENTINEL, t->addrs[0].host, t->addrs[0].port, NULL);
        if (!t->sentinel || add_node(t, t->sentinel) < 0)
            return -1;
        return built(s);
    }
    t->slot_owner = calloc(SL_REDIS_SLOTS, sizeof *t->slot_owner);
    t->refresh_timer = evtimer_new(s->evbase, on_refresh_timer, s);
    if (!t->slot_owner || !t->refresh_timer)
        return -1;
    for (size_t i = 0; i < t->naddrs; i++)
        if (!sl_redis_topo_node_at(s, t->addrs[i].host, t->addrs[i].port))
            return -1;
    return built(s);
}

void sl_redis_topo_deinit(struct sl_redis_store *s)
{
    struct sl_redis_topology *t = &s->topo;
    /* Each free calls back the commands still pending on that node (NULL replies). */
    for (size_t i = 0; i < t->nnodes; i++)
        sl_redis_node_free(t->nodes[i]);
    free(t->nodes);
    t->nodes = NULL;
    t->nnodes = 0;
    t->master = t->sentinel = NULL;
    if (t->refresh_timer)
        event_free(t->refresh_timer);
    t->refresh_timer = NULL;
    free(t->slot_owner);
    for (size_t i = 0; i < t->naddrs; i++)
        free(t->addrs[i].host);
    free(t->addrs);
    free(t->master_name);
    set_connected(s, false);
}
