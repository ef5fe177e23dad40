/* Shared between redis.c (decisions) and redis_conn.c (the connection's life cycle). */
#ifndef SLUICE_STORE_REDIS_INTERNAL_H
#define SLUICE_STORE_REDIS_INTERNAL_H

#include <hiredis/async.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/store_redis.h"

struct event;
struct evdns_base;
struct evdns_getaddrinfo_request;

/* One algorithm's script and its SHA-1 as Redis reports it from SCRIPT LOAD. */
struct sl_redis_script {
    const struct sl_algorithm_ops *alg;
    const char *body;
    unsigned nargv; /* the ARGV it reads: ARGV[1] to ARGV[nargv] */
    char sha[41];   /* empty until the first SCRIPT LOAD reply */
};

#define SL_REDIS_MAX_SCRIPTS 16
/* The arguments a script may read, in this order: N, P (us), burst, delay, member. */
#define SL_REDIS_NARGV 5

enum sl_redis_state {
    SL_REDIS_IDLE,       /* no connection; conn_timer runs the next attempt */
    SL_REDIS_RESOLVING,  /* the host name is being looked up; conn_timer bounds it */
    SL_REDIS_CONNECTING, /* connect, AUTH, SELECT, SCRIPT LOAD in flight; conn_timer bounds it */
    SL_REDIS_READY,      /* decisions are sent */
};

struct sl_redis_pending;

struct sl_redis_store {
    struct sl_store base;
    struct event_base *evbase;
    struct sl_metrics_slot *metrics;
    unsigned worker_id;

    /* Settings, copied from the configuration. */
    char *host;
    int port;
    char *unix_path;
    char *user;
    char *password;
    int db;
    uint64_t timeout_us;
    char *prefix;
    size_t prefix_len;

    /* The connection. */
    redisAsyncContext *ac;
    enum sl_redis_state state;
    unsigned handshake_left; /* replies still awaited before READY */
    struct event *conn_timer;
    struct evdns_base *dns;                      /* made at the first name to look up */
    struct evdns_getaddrinfo_request *resolving; /* while RESOLVING */
    uint64_t backoff_ms;
    bool quiet; /* a failure was already logged: repeat attempts log at debug level */
    atomic_bool connected;
    bool freeing;

    struct sl_redis_script scripts[SL_REDIS_MAX_SCRIPTS];
    size_t nscripts;

    /* Decisions awaiting completion, in deadline order (all share one timeout). */
    struct sl_redis_pending *head, *tail;
    struct event *deadline_timer;
    unsigned inflight;    /* commands hiredis holds a pending entry for */
    uint64_t progress_us; /* last reply, or when inflight left 0: for stall detection */
    char member_prefix[40];
    uint64_t seq;
};

/* redis_conn.c */

/* Creates the timers and starts the first connection attempt. Returns 0 or -1 (ENOMEM). */
int sl_redis_conn_init(struct sl_redis_store *s);

/* Frees the connection (hiredis then calls back every command still pending, with a NULL
 * reply) and the timers. No reconnection follows. */
void sl_redis_conn_deinit(struct sl_redis_store *s);

/* Abandons the connection after a failure and schedules the next attempt with backoff.
 * Safe inside hiredis callbacks. */
void sl_redis_conn_drop(struct sl_redis_store *s, const char *why);

#endif
