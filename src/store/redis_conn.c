/* The Redis connection's life cycle: resolve, connect, AUTH, SELECT, SCRIPT LOAD, then
 * READY; after any failure, drop the connection and try again after 100 ms, doubling to 5 s.
 * A host name is looked up with evdns on the worker's loop before every attempt: hiredis
 * would call getaddrinfo(), which blocks the worker for as long as DNS takes, and looking
 * up again on each attempt follows a Redis that moved to another address.
 * sluice_store_errors_total counts failed decisions (the engine does), not connection
 * attempts, so that an idle instance retrying every 5 s does not count errors. */
#include <arpa/inet.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <hiredis/adapters/libevent.h>
#include <string.h>

#include "redis_internal.h"
#include "sluice/log.h"
#include "sluice/metrics.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
/* Connecting and loading the scripts may take this long beyond redis.timeout: hiredis has no
 * connect timeout of its own, and a black-holed address would otherwise hang forever. */
#define CONNECT_GRACE_MS 1000

static void set_connected(struct sl_redis_store *s, bool connected)
{
    if (atomic_load(&s->connected) == connected)
        return;
    atomic_store(&s->connected, connected);
    sl_metrics_redis_connected(s->metrics, connected);
}

static void log_failure(struct sl_redis_store *s, const char *what, const char *why)
{
    enum sl_log_level level = s->quiet ? SL_LOG_DEBUG : SL_LOG_WARN;
    sl_log(level, "redis (worker %u): %s: %s; retrying in %llu ms", s->worker_id, what,
           why ? why : "unknown error", (unsigned long long)s->backoff_ms);
    s->quiet = true;
}

static void arm_timer(struct sl_redis_store *s, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(s->conn_timer, &tv);
}

/* Called with the state already IDLE and s->ac already detached. */
static void schedule_retry(struct sl_redis_store *s)
{
    if (s->freeing)
        return;
    arm_timer(s, s->backoff_ms);
    s->backoff_ms = s->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : s->backoff_ms * 2;
    sl_redis_attempt_done(s, false);
}

static void become_idle(struct sl_redis_store *s)
{
    s->ac = NULL;
    s->state = SL_REDIS_IDLE;
    set_connected(s, false);
}

void sl_redis_conn_drop(struct sl_redis_store *s, const char *why)
{
    redisAsyncContext *ac = s->ac;
    if (!ac)
        return;
    log_failure(s, "connection dropped", why);
    /* Idle first: the NULL-reply callbacks redisAsyncFree runs may start new decisions, which
     * must fail at once rather than reach the dying context. */
    become_idle(s);
    redisAsyncFree(ac);
    schedule_retry(s);
}

static void handshake_done(struct sl_redis_store *s)
{
    evtimer_del(s->conn_timer);
    s->state = SL_REDIS_READY;
    s->backoff_ms = BACKOFF_FIRST_MS;
    s->quiet = false;
    set_connected(s, true);
    if (s->unix_path)
        sl_log_info("redis (worker %u): connected to unix:%s", s->worker_id, s->unix_path);
    else
        sl_log_info("redis (worker %u): connected to %s:%d", s->worker_id, s->host, s->port);
    sl_redis_attempt_done(s, true);
}

/* Replies to AUTH and SELECT (privdata NULL) and to SCRIPT LOAD (privdata the script). */
static void on_handshake_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    struct sl_redis_store *s = ac->data;
    const redisReply *reply = r;
    if (ac != s->ac || s->state != SL_REDIS_CONNECTING || !reply)
        return; /* an abandoned connection, or a lost one (on_disconnect handles it) */
    if (reply->type == REDIS_REPLY_ERROR) {
        sl_redis_conn_drop(s, reply->str);
        return;
    }
    struct sl_redis_script *script = privdata;
    if (script) {
        if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
            sl_redis_conn_drop(s, "unexpected reply to SCRIPT LOAD");
            return;
        }
        memcpy(script->sha, reply->str, 40);
        script->sha[40] = '\0';
    }
    if (--s->handshake_left == 0)
        handshake_done(s);
}

static void on_connect(const redisAsyncContext *ac, int status)
{
    struct sl_redis_store *s = ac->data;
    if (ac != s->ac || status == REDIS_OK)
        return;
    /* hiredis frees the context after this callback. */
    log_failure(s, "cannot connect", ac->errstr);
    become_idle(s);
    schedule_retry(s);
}

static void on_disconnect(const redisAsyncContext *ac, int status)
{
    struct sl_redis_store *s = ac->data;
    if (ac != s->ac)
        return; /* freed by us: already handled */
    log_failure(s, "connection lost", ac->err ? ac->errstr : "closed by the server");
    become_idle(s);
    schedule_retry(s);
}

static int queue_handshake(struct sl_redis_store *s, redisAsyncContext *ac)
{
    int rc = REDIS_OK;
    s->handshake_left = 0;
    if (s->password) {
        if (s->user)
            rc |=
                redisAsyncCommand(ac, on_handshake_reply, NULL, "AUTH %s %s", s->user, s->password);
        else
            rc |= redisAsyncCommand(ac, on_handshake_reply, NULL, "AUTH %s", s->password);
        s->handshake_left++;
    }
    if (s->db != 0) {
        rc |= redisAsyncCommand(ac, on_handshake_reply, NULL, "SELECT %d", s->db);
        s->handshake_left++;
    }
    for (size_t i = 0; i < s->nscripts; i++) {
        rc |= redisAsyncCommand(ac, on_handshake_reply, &s->scripts[i], "SCRIPT LOAD %s",
                                s->scripts[i].body);
        s->handshake_left++;
    }
    /* A PING ends the handshake, so that a store with no script still waits for the server. */
    rc |= redisAsyncCommand(ac, on_handshake_reply, NULL, "PING");
    s->handshake_left++;
    return rc == REDIS_OK ? 0 : -1;
}

/* Starts connecting to `ip` (a numeric address), or to the unix socket when `ip` is NULL. */
static void connect_to(struct sl_redis_store *s, const char *ip)
{
    redisAsyncContext *ac =
        ip ? redisAsyncConnect(ip, s->port) : redisAsyncConnectUnix(s->unix_path);
    if (!ac || ac->err) {
        log_failure(s, "cannot connect", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        schedule_retry(s);
        return;
    }
    ac->data = s;
    if (redisLibeventAttach(ac, s->evbase) != REDIS_OK) {
        redisAsyncFree(ac);
        schedule_retry(s);
        return;
    }
    redisAsyncSetConnectCallback(ac, on_connect);
    redisAsyncSetDisconnectCallback(ac, on_disconnect);
    s->ac = ac;
    s->state = SL_REDIS_CONNECTING;
    if (queue_handshake(s, ac) != 0) {
        sl_redis_conn_drop(s, "cannot queue the handshake");
        return;
    }
    arm_timer(s, s->timeout_us / 1000 + CONNECT_GRACE_MS);
}

/* The first IPv4 address of `res`, else its first address, in text. */
static bool pick_address(const struct evutil_addrinfo *res, char *ip, size_t len)
{
    const struct evutil_addrinfo *pick = NULL;
    for (const struct evutil_addrinfo *a = res; a && !pick; a = a->ai_next)
        if (a->ai_family == AF_INET)
            pick = a;
    if (!pick)
        pick = res;
    if (!pick)
        return false;
    const void *addr = pick->ai_family == AF_INET
                           ? (const void *)&((const struct sockaddr_in *)pick->ai_addr)->sin_addr
                           : (const void *)&((const struct sockaddr_in6 *)pick->ai_addr)->sin6_addr;
    return inet_ntop(pick->ai_family, addr, ip, (socklen_t)len) != NULL;
}

static void on_resolved(int err, struct evutil_addrinfo *res, void *arg)
{
    struct sl_redis_store *s = arg;
    char ip[INET6_ADDRSTRLEN];
    bool found = err == 0 && pick_address(res, ip, sizeof ip);

    if (res)
        evutil_freeaddrinfo(res);
    /* Given up on (timer, shutdown): whoever cancelled moved on, and `s` may be gone, as
     * evdns may report the cancellation from a later loop turn. */
    if (err == EVUTIL_EAI_CANCEL)
        return;
    s->resolving = NULL;
    if (s->state != SL_REDIS_RESOLVING)
        return;
    s->state = SL_REDIS_IDLE;
    evtimer_del(s->conn_timer);
    if (!found) {
        log_failure(s, "cannot resolve", err ? evutil_gai_strerror(err) : "no address");
        schedule_retry(s);
        return;
    }
    connect_to(s, ip);
}

static bool is_numeric(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static void connect_start(struct sl_redis_store *s)
{
    if (s->unix_path || is_numeric(s->host)) {
        connect_to(s, s->unix_path ? NULL : s->host);
        return;
    }
    if (!s->dns)
        s->dns = evdns_base_new(s->evbase, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                               EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!s->dns) {
        log_failure(s, "cannot resolve", "no resolver (/etc/resolv.conf)");
        schedule_retry(s);
        return;
    }
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    s->state = SL_REDIS_RESOLVING;
    arm_timer(s, s->timeout_us / 1000 + CONNECT_GRACE_MS);
    /* The answer may come before this returns (hosts file), and then NULL is returned. */
    s->resolving = evdns_getaddrinfo(s->dns, s->host, NULL, &hints, on_resolved, s);
}

/* Gives up a lookup in flight; its callback runs with EVUTIL_EAI_CANCEL. */
static void cancel_resolving(struct sl_redis_store *s)
{
    struct evdns_getaddrinfo_request *req = s->resolving;
    s->state = SL_REDIS_IDLE;
    s->resolving = NULL;
    if (req)
        evdns_getaddrinfo_cancel(req);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_store *s = arg;
    if (s->state == SL_REDIS_IDLE) {
        connect_start(s);
    } else if (s->state == SL_REDIS_RESOLVING) {
        cancel_resolving(s);
        log_failure(s, "cannot resolve", "timed out");
        schedule_retry(s);
    } else if (s->state == SL_REDIS_CONNECTING) {
        sl_redis_conn_drop(s, "timed out connecting");
    }
}

int sl_redis_conn_init(struct sl_redis_store *s)
{
    s->backoff_ms = BACKOFF_FIRST_MS;
    s->state = SL_REDIS_IDLE;
    atomic_init(&s->connected, false);
    s->conn_timer = evtimer_new(s->evbase, on_conn_timer, s);
    if (!s->conn_timer)
        return -1;
    sl_metrics_redis_connected(s->metrics, false);
    connect_start(s);
    return 0;
}

void sl_redis_conn_deinit(struct sl_redis_store *s)
{
    s->freeing = true;
    if (s->state == SL_REDIS_RESOLVING)
        cancel_resolving(s);
    redisAsyncContext *ac = s->ac;
    become_idle(s);
    if (ac)
        redisAsyncFree(ac);
    if (s->dns)
        evdns_base_free(s->dns, 0);
    s->dns = NULL;
    if (s->conn_timer)
        event_free(s->conn_timer);
    s->conn_timer = NULL;
}
