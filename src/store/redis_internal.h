/* Shared between redis.c (decisions), redis_eval.c (their script calls and replies),
 * redis_conn.c (one connection's life cycle) and redis_topology.c (which connections exist
 * and which one serves a key). */
#ifndef SLUICE_STORE_REDIS_INTERNAL_H
#define SLUICE_STORE_REDIS_INTERNAL_H

#include <event2/util.h>
#include <hiredis/hiredis.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "redis_link.h"
#include "sluice/redis_slots.h"
#include "sluice/store_redis.h"

struct event;
struct evdns_base;
struct evdns_getaddrinfo_request;

/* One algorithm's script and its SHA-1 as Redis reports it from SCRIPT LOAD (the same on
 * every node: it is the SHA-1 of the body). */
struct sl_redis_script {
    const struct sl_algorithm_ops *alg;
    const char *body;
    unsigned nargv; /* the ARGV it reads: ARGV[1] to ARGV[nargv] */
    char sha[41];   /* empty until the first SCRIPT LOAD reply */
    /* The same algorithm deciding many requests on one key in one call (redis_eval.c), or
     * NULL; a batch script has its body allocated (owned) and no batch of its own. */
    const struct sl_redis_script *batch;
    char *owned_body;
};

#define SL_REDIS_MAX_SCRIPTS 16
/* Slots of a loop turn's table of batches, by a hash of the limit and the units asked. */
#define SL_REDIS_TURN_SLOTS 64
/* The arguments a script may read, in this order: N, P (us), need, take, burst, delay,
 * member; a test's pinned time follows as ARGV[8] (sl_store_redis_pin_clock). */
#define SL_REDIS_NARGV 7

enum sl_redis_state {
    SL_REDIS_IDLE,       /* no connection; conn_timer runs the next attempt */
    SL_REDIS_RESOLVING,  /* the host name is being looked up; conn_timer bounds it */
    SL_REDIS_CONNECTING, /* connect, AUTH, SELECT, SCRIPT LOAD in flight; conn_timer bounds it */
    SL_REDIS_READY,      /* commands are sent */
};

enum sl_redis_node_kind {
    SL_REDIS_NODE_DATA,     /* runs the scripts: the server, a cluster master, the master */
    SL_REDIS_NODE_SENTINEL, /* tells where the master is */
};

/* One connection to one server, reconnected with backoff after any failure. */
struct sl_redis_node {
    struct sl_redis_store *store;
    enum sl_redis_node_kind kind;
    char *host; /* owned; NULL with unix_path */
    int port;
    char *unix_path; /* owned or NULL */

    struct sl_redis_link *link; /* owned; NULL while IDLE or RESOLVING */
    enum sl_redis_state state;
    unsigned handshake_left; /* replies still awaited before READY */
    struct event *conn_timer;
    struct evdns_getaddrinfo_request *resolving; /* while RESOLVING */
    uint64_t backoff_ms;
    bool quiet;     /* a failure was already logged: repeat attempts log at debug level */
    bool attempted; /* its first attempt has finished (set by the topology when told) */

    unsigned inflight;    /* script calls sent on `link` and not answered */
    uint64_t progress_us; /* last reply, or when inflight left 0: for stall detection */
    /* TLS: the session the server last gave, offered on the next attempt to the same
     * address so that a reconnect resumes it (an abbreviated handshake); owned or NULL. */
    SSL_SESSION *tls_session;
};

struct sl_deny_cache;

/* One decision. Before it is sent (held at start-up, see sl_redis_attempt_done; waiting for
 * another's answer; queued for this loop turn's batch) the store owns it; the link owns it
 * from the EVALSHA until its reply callback, which frees it and those it carries. The
 * callback to the caller (cb) runs at most once, on reply, timeout or failure. */
struct sl_redis_pending {
    struct sl_redis_store *store;
    struct sl_redis_node *node;           /* where the EVALSHA went; NULL until sent */
    struct sl_redis_pending *prev, *next; /* in the store's deadline list until completed */
    sl_store_cb cb;                       /* NULL once completed */
    void *arg;
    uint64_t deadline_us;
    const struct sl_redis_script *script;
    unsigned limit_id; /* the limit's metrics id, for rate-limited logging */
    /* The quota decided under, copied: the limit may be gone by the time a NOSCRIPT retry is
     * sent. */
    uint64_t count, period_us, burst;
    struct sl_units units;
    bool delay;
    bool retried; /* after NOSCRIPT */
    /* Single flight on a run-out cached denial (deny_cache.h): the one request asking Redis
     * again, and those that wait for its answer rather than ask too. */
    bool probing;                             /* registered with the cache as asking */
    struct sl_redis_pending *awaited;         /* while waiting: the probe it waits for */
    struct sl_redis_pending *waiters, *wtail; /* a probe's, in arrival order */
    struct sl_redis_pending *wprev, *wnext;   /* in `awaited`'s waiters */
    bool asking;                              /* sent after ASKING, following an ASK */
    unsigned redirects;
    uint64_t sent_us; /* when first sent: a held denial counts from here */
    /* The caller's limit, alive while cb is set (the caller holds its configuration). */
    const struct sl_limit *lim;
    /* Decisions on one limit made in one loop turn go as one script call (redis_eval.c): the
     * first, the leader, carries the others, in order, and its reply answers them all. */
    struct sl_redis_pending *batch_next; /* leader: its first follower; follower: the next */
    struct sl_redis_pending *batch_last; /* leader, while queued: its last follower */
    struct sl_redis_pending *turn_next;  /* leader, while queued: the next batch */
    unsigned batch_n;                    /* leader: the decisions it carries, itself included */
    bool queued;                         /* in this turn's batches, not sent yet */
    uint8_t slot;                        /* leader, while queued: its turn_slot index */
    uint16_t key_slot;                   /* cluster mode: the key's hash slot; else 0 */
    char member[96]; /* sliding_window: ttl in ms, '/', member_prefix, seq: at most 80 */
    size_t member_len;
    size_t name_len; /* key_prefix + route:limit:tag, the key without its value */
    size_t key_len;
    char key[];
};

/* Where the store's servers are (redis_topology.c). */
struct sl_redis_topology {
    enum sl_redis_mode mode;
    struct sl_redis_node **nodes; /* owned; DATA nodes, then at most one SENTINEL */
    size_t nnodes;
    struct sl_redis_node *master;   /* url and sentinel modes: the node decisions go to */
    struct sl_redis_node *sentinel; /* sentinel mode: the sentinel asked and listened to */
    size_t next_sentinel;           /* index into the configured addresses, rotating */
    char *master_name;              /* owned */
    struct sl_redis_addr *addrs;    /* cluster seeds or sentinels; owned */
    size_t naddrs;

    /* Cluster mode: the owner of each slot, as an index into nodes + 1 (0: unknown). */
    uint16_t *slot_owner; /* owned, SL_REDIS_SLOTS entries */
    bool map_known;
    bool refresh_inflight;
    bool refresh_wanted;
    struct event *refresh_timer;
    uint64_t refresh_backoff_ms;
    uint64_t last_refresh_us;
    size_t rotate;        /* where the next map read starts looking for a READY node */
    bool first_read_over; /* the first map read has answered or failed */
    bool built;           /* every configured node is recorded (the gate may open) */
};

struct sl_redis_store {
    struct sl_store base;
    struct event_base *evbase;
    struct sl_metrics_slot *metrics;
    unsigned worker_id;

    /* Settings, copied from the configuration. */
    char *user;
    char *password;
    int db;
    uint64_t timeout_us;
    char *prefix;
    size_t prefix_len;

    struct sl_redis_topology topo;
    /* redis.tls: every connection (servers, masters, sentinels) speaks TLS on tls_ctx, made
     * from the configuration's files when the store is; NULL with tls.enabled means they
     * could not be read (tls_error says why) and every attempt fails. */
    struct sl_tls_client_config tls; /* owned copy */
    SSL_CTX *tls_ctx;
    char tls_error[256];
    struct evdns_base *dns; /* made at the first name to look up */
    atomic_bool connected;
    bool attempted;      /* the topology's first attempt has finished (sl_redis_attempt_done) */
    atomic_bool started; /* `attempted`, readable from any thread (for /readyz) */
    bool freeing;
    unsigned lookups_cancelled; /* by the free: evdns reports them back one loop turn later */

    struct sl_redis_script scripts[SL_REDIS_MAX_SCRIPTS];
    size_t nscripts;

    /* Decisions awaiting completion, in deadline order (all share one timeout). */
    struct sl_redis_pending *head, *tail;
    struct event *deadline_timer;
    uint64_t deadline_armed_us; /* the deadline deadline_timer is set for; 0: not set */
    struct sl_deny_cache *deny; /* redis.deny_cache, or NULL when off */
    /* This loop turn's batches (redis_eval.c): leaders by a hash of their call, in order. */
    struct sl_redis_pending *turn_slot[SL_REDIS_TURN_SLOTS];
    struct sl_redis_pending *turn_head, *turn_tail;
    struct event *flush_event; /* runs sl_redis_flush once the turn's callbacks are done */
    bool flush_scheduled;
    /* Whether limits come in bursts (sl_redis_submit): the last flush sent a batch of several
     * decisions, or one that could have ridden with the decision sent at once (lone_hash)
     * while lone_live. */
    bool bursty, repeated, lone_live;
    bool flushing; /* sl_redis_flush is sending the turn's batches */
    uint64_t lone_hash;
    char member_prefix[40];
    uint64_t seq;
    uint64_t (*pinned_clock)(void); /* tests only: sent as the scripts' time; NULL: TIME */
};

/* redis_eval.c: a script's reply {allowed, remaining, reset_us, retry_after_us, delay_us}
 * (the last two may be left out when 0) as the decision of a limit of `count` requests.
 * Returns 0, or -1 (`d` untouched) for a reply of any other shape, which is never trusted. */
int sl_redis_parse_decision(const redisReply *r, uint64_t count, struct sl_decision *d);

/* redis_conn.c: one node's connection. */

/* A node of `kind` at host:port (copied), or at unix_path when host is NULL; starts
 * connecting at once. NULL on ENOMEM. */
struct sl_redis_node *sl_redis_node_new(struct sl_redis_store *s, enum sl_redis_node_kind kind,
                                        const char *host, int port, const char *unix_path);

/* Frees the connection (the link then calls back every command still pending, with a NULL
 * reply), the timer and the node. No reconnection follows. Accepts NULL. */
void sl_redis_node_free(struct sl_redis_node *n);

/* Abandons the connection after a failure and schedules the next attempt with backoff.
 * Safe inside the link's callbacks. */
void sl_redis_node_drop(struct sl_redis_node *n, const char *why);

/* The address the next connection attempt goes to; the current connection is kept.
 * `host` is copied. Returns 0 or -1 (ENOMEM). */
int sl_redis_node_set_address(struct sl_redis_node *n, const char *host, int port);

/* Points the node at another address: the connection is closed (the topology is not told:
 * it asked) and the next attempt, to the new address, starts at once. `host` is copied.
 * Returns 0 or -1 (ENOMEM). */
int sl_redis_node_retarget(struct sl_redis_node *n, const char *host, int port);

/* The store's TLS contexts call this with each new session of a connection of a node (its
 * SSL's app data); the node keeps it for its next attempt. Returns 1 (the session is kept). */
int sl_redis_node_keep_session(SSL *ssl, SSL_SESSION *session);

/* True when `n` serves host:port. */
bool sl_redis_node_is(const struct sl_redis_node *n, const char *host, int port);

/* redis_topology.c: which nodes exist and which one serves a key. */

/* Builds the nodes of the configured mode and starts connecting. 0 or -1 (ENOMEM). */
int sl_redis_topo_init(struct sl_redis_store *s, const struct sl_redis_config *cfg);

/* Frees every node; pending commands are called back with a NULL reply. */
void sl_redis_topo_deinit(struct sl_redis_store *s);

/* The node a decision on `key` goes to, or NULL when it is not known or not READY. */
struct sl_redis_node *sl_redis_topo_pick(struct sl_redis_store *s, const char *key, size_t len);

/* The DATA node at host:port, made (and connecting) if new; NULL on ENOMEM. */
struct sl_redis_node *sl_redis_topo_node_at(struct sl_redis_store *s, const char *host, int port);

/* A MOVED reply: the slot now lives at `to`; the map is read again. */
void sl_redis_topo_moved(struct sl_redis_store *s, unsigned slot, struct sl_redis_node *to);

/* A CLUSTERDOWN or TRYAGAIN reply: the map is read again (cluster mode). */
void sl_redis_topo_unavailable(struct sl_redis_store *s);

/* A READONLY reply from `n`: the master moved (sentinel mode); ask again. */
void sl_redis_topo_readonly(struct sl_redis_store *s, struct sl_redis_node *n);

/* From redis_conn.c: `n` finished its handshake, or lost its connection or failed an attempt
 * (`was_ready` tells which). `n` already has its next attempt scheduled. */
void sl_redis_topo_node_up(struct sl_redis_node *n);
void sl_redis_topo_node_down(struct sl_redis_node *n, bool was_ready);

/* Drops the connections that stopped answering (`now_us` - progress past `stall_us`). */
void sl_redis_topo_check_stalls(struct sl_redis_store *s, uint64_t now_us, uint64_t stall_us);

/* redis.c */

/* Completes `p`: takes it off the deadline list and off any wait, settles the over-limit
 * cache's mark when it was the request asking again, calls its caller back with `d` (NULL
 * on failure) and `status`, then lets those waiting for it decide again. Frees nothing. */
void sl_redis_complete(struct sl_redis_pending *p, const struct sl_decision *d,
                       enum sl_store_status status);

/* The quota `p` is decided under. */
static inline struct sl_quota sl_redis_pending_quota(const struct sl_redis_pending *p)
{
    return (struct sl_quota){p->count, p->period_us, p->burst};
}

/* The key's value as the Redis key and the over-limit cache hold it (digested if long). */
static inline const char *sl_redis_pending_value(const struct sl_redis_pending *p, size_t *len)
{
    *len = p->key_len - p->name_len;
    return p->key + p->name_len;
}

/* A denial the over-limit cache holds (sl_deny_cache_add takes exactly these). */
static inline bool sl_redis_held_by_cache(const struct sl_decision *d)
{
    return d && !d->allowed && d->retry_after_us > 0;
}

/* redis_eval.c */

/* Sends `p` (and the decisions it carries) to `n` as one EVALSHA; 0, or -1 when the link
 * refused the command (nothing sent, the store still owns them). */
int sl_redis_send(struct sl_redis_node *n, struct sl_redis_pending *p);

/* Sends `p` (in the deadline list) to `n` at once when nothing waits for an answer from `n`,
 * nothing is queued and keys have not been coming in bursts; else queues it for this loop
 * turn: it joins the batch of an earlier decision on the same key and rate, or starts one,
 * and sl_redis_flush sends them once the turn's callbacks have run, or fails them when their
 * node is gone. Returns 0, or -1 when sending at once failed (the store still owns `p`). */
int sl_redis_submit(struct sl_redis_store *s, struct sl_redis_node *n, struct sl_redis_pending *p);
void sl_redis_flush(evutil_socket_t fd, short what, void *arg);

/* Forgets this turn's batches (the store is being freed; it completes the decisions). */
void sl_redis_unqueue_all(struct sl_redis_store *s);

/* The batch script of an algorithm's embedded script `body` (lua_scripts.h: the prelude, then
 * the algorithm's own part): malloc'ed; NULL on ENOMEM or for a body without the prelude. */
char *sl_redis_batch_body(const char *body);

/* From the topology: its first attempt has finished, connected or not (url: the server's
 * first connection attempt; cluster: the first slot map read, or its failure, and the first
 * attempt of every master it names; sentinel: the first master lookup, or its failure, and
 * the master's first attempt). The first call sends each decision held since start-up to
 * the node its key has now, or fails it with SL_STORE_ERR_CONNECTION; later calls do
 * nothing. */
void sl_redis_attempt_done(struct sl_redis_store *s);

#endif
