/* One Redis connection's life cycle: resolve, connect, AUTH, SELECT, SCRIPT LOAD, then
 * READY; after any failure, drop the connection and try again after 100 ms, doubling to 5 s.
 * A host name is looked up with evdns on the worker's loop before every attempt: a blocking
 * getaddrinfo() would stall the worker for as long as DNS takes, and looking up again on
 * each attempt follows a Redis that moved to another address. The connection itself is a
 * struct sl_redis_link (redis_link.c).
 * The topology hears of every node that comes up or goes down (sl_redis_topo_node_up/down);
 * sluice_store_errors_total counts failed decisions (the engine does), not connection
 * attempts, so that an idle instance retrying every 5 s does not count errors. */
#include <arpa/inet.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/event.h>
#include <event2/util.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "../tls/tls.h"
#include "redis_internal.h"
#include "sluice/log.h"

#define BACKOFF_FIRST_MS 100
#define BACKOFF_MAX_MS 5000
/* Connecting and loading the scripts may take this long beyond redis.timeout: a connect has
 * no timeout of its own, and a black-holed address would otherwise hang forever. */
#define CONNECT_GRACE_MS 1000

static const char *kind_name(const struct sl_redis_node *n)
{
    return n->kind == SL_REDIS_NODE_SENTINEL ? "sentinel " : "";
}

static void log_failure(struct sl_redis_node *n, const char *what, const char *why)
{
    enum sl_log_level level = n->quiet ? SL_LOG_DEBUG : SL_LOG_WARN;
    if (n->unix_path)
        sl_log(level, "redis (worker %u): unix:%s: %s: %s; retrying in %llu ms",
               n->store->worker_id, n->unix_path, what, why ? why : "unknown error",
               (unsigned long long)n->backoff_ms);
    else
        sl_log(level, "redis (worker %u): %s%s:%d: %s: %s; retrying in %llu ms",
               n->store->worker_id, kind_name(n), n->host, n->port, what,
               why ? why : "unknown error", (unsigned long long)n->backoff_ms);
    n->quiet = true;
}

static void arm_timer(struct sl_redis_node *n, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(n->conn_timer, &tv);
}

/* Called with the state already IDLE and n->link already detached. */
static void schedule_retry(struct sl_redis_node *n)
{
    if (n->store->freeing)
        return;
    arm_timer(n, n->backoff_ms);
    n->backoff_ms = n->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : n->backoff_ms * 2;
}

/* An attempt that failed before it had a connection: retry later, and let the topology know
 * (a sentinel moves on to the next address). */
static void attempt_failed(struct sl_redis_node *n)
{
    schedule_retry(n);
    if (!n->store->freeing)
        sl_redis_topo_node_down(n, false);
}

/* Every way out of a connection ends here, then tells the topology (which may retarget the
 * node, so it is told after the node is consistent). */
static void become_idle(struct sl_redis_node *n)
{
    bool was_ready = n->state == SL_REDIS_READY;
    n->link = NULL;
    n->state = SL_REDIS_IDLE;
    n->inflight = 0;
    if (!n->store->freeing)
        sl_redis_topo_node_down(n, was_ready);
}

void sl_redis_node_drop(struct sl_redis_node *n, const char *why)
{
    struct sl_redis_link *link = n->link;
    if (!link)
        return;
    bool was_ready = n->state == SL_REDIS_READY;
    log_failure(n, "connection dropped", why);
    /* Idle first: the NULL-reply callbacks the free runs may start new decisions, which must
     * not reach the dying link. */
    n->link = NULL;
    n->state = SL_REDIS_IDLE;
    schedule_retry(n);
    sl_redis_link_free(link);
    n->inflight = 0;
    if (!n->store->freeing)
        sl_redis_topo_node_down(n, was_ready);
}

static void handshake_done(struct sl_redis_node *n)
{
    evtimer_del(n->conn_timer);
    n->state = SL_REDIS_READY;
    n->backoff_ms = BACKOFF_FIRST_MS;
    n->quiet = false;
    if (n->unix_path)
        sl_log_info("redis (worker %u): connected to unix:%s", n->store->worker_id, n->unix_path);
    else
        sl_log_info("redis (worker %u): connected to %s%s:%d", n->store->worker_id, kind_name(n),
                    n->host, n->port);
    sl_redis_topo_node_up(n);
}

/* privdata of a handshake command other than SCRIPT LOAD (whose privdata is the script). */
static const char step_auth, step_other;

static void on_handshake_reply(struct sl_redis_link *l, void *r, void *privdata)
{
    struct sl_redis_node *n = sl_redis_link_data(l);
    const redisReply *reply = r;
    if (l != n->link || n->state != SL_REDIS_CONNECTING || !reply)
        return; /* an abandoned connection, or a lost one (on_close handles it) */
    /* A sentinel without a password of its own refuses AUTH: it still answers, so go on. */
    bool tolerated = privdata == &step_auth && n->kind == SL_REDIS_NODE_SENTINEL &&
                     reply->type == REDIS_REPLY_ERROR && strstr(reply->str, "without any password");
    if (reply->type == REDIS_REPLY_ERROR && !tolerated) {
        sl_redis_node_drop(n, reply->str);
        return;
    }
    if (privdata != &step_auth && privdata != &step_other) {
        struct sl_redis_script *script = privdata;
        if (reply->type != REDIS_REPLY_STRING || reply->len != 40) {
            sl_redis_node_drop(n, "unexpected reply to SCRIPT LOAD");
            return;
        }
        memcpy(script->sha, reply->str, 40);
        script->sha[40] = '\0';
    }
    if (--n->handshake_left == 0)
        handshake_done(n);
}

/* The link failed; it frees itself once this returns. */
static void on_close(struct sl_redis_link *l, const char *why, void *data)
{
    struct sl_redis_node *n = data;
    if (l != n->link)
        return;
    log_failure(n, sl_redis_link_connected(l) ? "connection lost" : "cannot connect", why);
    schedule_retry(n);
    become_idle(n);
}

static int queue_handshake(struct sl_redis_node *n, struct sl_redis_link *l)
{
    struct sl_redis_store *s = n->store;
    int rc = 0;
    n->handshake_left = 0;
    if (s->password) {
        void *step = (void *)&step_auth;
        if (s->user)
            rc |= sl_redis_link_command(l, on_handshake_reply, step, "AUTH %s %s", s->user,
                                        s->password);
        else
            rc |= sl_redis_link_command(l, on_handshake_reply, step, "AUTH %s", s->password);
        n->handshake_left++;
    }
    if (n->kind == SL_REDIS_NODE_DATA) {
        /* A cluster has database 0 only (the configuration refuses another). */
        if (s->db != 0) {
            rc |= sl_redis_link_command(l, on_handshake_reply, (void *)&step_other, "SELECT %d",
                                        s->db);
            n->handshake_left++;
        }
        for (size_t i = 0; i < s->nscripts; i++) {
            rc |= sl_redis_link_command(l, on_handshake_reply, &s->scripts[i], "SCRIPT LOAD %s",
                                        s->scripts[i].body);
            n->handshake_left++;
        }
    }
    /* A PING ends the handshake, so that a node with no script still waits for the server. */
    rc |= sl_redis_link_command(l, on_handshake_reply, (void *)&step_other, "PING");
    n->handshake_left++;
    return rc == 0 ? 0 : -1;
}

/* The socket address of `ip` (numeric) and `port`, or of the unix socket `path`; its length,
 * or 0 when it cannot be one. */
static socklen_t make_address(struct sockaddr_storage *ss, const char *ip, int port,
                              const char *path)
{
    memset(ss, 0, sizeof *ss);
    if (path) {
        struct sockaddr_un *sun = (struct sockaddr_un *)ss;
        size_t len = strlen(path);
        if (len >= sizeof sun->sun_path)
            return 0;
        sun->sun_family = AF_UNIX;
        memcpy(sun->sun_path, path, len + 1);
        return (socklen_t)sizeof *sun;
    }
    struct sockaddr_in *sin = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)port);
        return (socklen_t)sizeof *sin;
    }
    if (inet_pton(AF_INET6, ip, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)port);
        return (socklen_t)sizeof *sin6;
    }
    return 0;
}

/* Starts connecting to `ip` (a numeric address), or to the unix socket when `ip` is NULL. */
static void connect_to(struct sl_redis_node *n, const char *ip)
{
    struct sl_redis_store *s = n->store;
    struct sockaddr_storage ss;
    socklen_t len = make_address(&ss, ip, n->port, ip ? NULL : n->unix_path);
    if (len == 0) {
        log_failure(n, "cannot connect", ip ? "not an address" : "socket path too long");
        attempt_failed(n);
        return;
    }
    SSL *ssl = NULL;
    if (s->tls.enabled) {
        char err[256];
        if (!s->tls_ctx ||
            !(ssl = sl_tls_client_ssl_new(s->tls_ctx, &s->tls, n->host, err, sizeof err))) {
            log_failure(n, "cannot connect", s->tls_ctx ? err : s->tls_error);
            attempt_failed(n);
            return;
        }
    }
    if (ssl) {
        SSL_set_app_data(ssl, n);
        if (n->tls_session)
            SSL_set_session(ssl, n->tls_session);
    }
    struct sl_redis_link *l =
        sl_redis_link_new(s->evbase, (struct sockaddr *)&ss, len, ssl, on_close, n);
    if (!l) {
        log_failure(n, "cannot connect", strerror(errno));
        attempt_failed(n);
        return;
    }
    n->link = l;
    n->state = SL_REDIS_CONNECTING;
    if (queue_handshake(n, l) != 0) {
        sl_redis_node_drop(n, "cannot queue the handshake");
        return;
    }
    arm_timer(n, s->timeout_us / 1000 + CONNECT_GRACE_MS);
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
    struct sl_redis_node *n = arg;
    char ip[INET6_ADDRSTRLEN];
    bool found = err == 0 && pick_address(res, ip, sizeof ip);

    if (res)
        evutil_freeaddrinfo(res);
    /* Given up on (timer, shutdown, retarget): whoever cancelled moved on, and `n` may be
     * gone, as evdns may report the cancellation from a later loop turn. */
    if (err == EVUTIL_EAI_CANCEL)
        return;
    n->resolving = NULL;
    if (n->state != SL_REDIS_RESOLVING)
        return;
    n->state = SL_REDIS_IDLE;
    evtimer_del(n->conn_timer);
    if (!found) {
        log_failure(n, "cannot resolve", err ? evutil_gai_strerror(err) : "no address");
        attempt_failed(n);
        return;
    }
    connect_to(n, ip);
}

static bool is_numeric(const char *host)
{
    unsigned char addr[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, addr) == 1 || inet_pton(AF_INET6, host, addr) == 1;
}

static void connect_start(struct sl_redis_node *n)
{
    struct sl_redis_store *s = n->store;
    if (n->unix_path || is_numeric(n->host)) {
        connect_to(n, n->unix_path ? NULL : n->host);
        return;
    }
    if (!s->dns)
        s->dns = evdns_base_new(s->evbase, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                               EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!s->dns) {
        log_failure(n, "cannot resolve", "no resolver (/etc/resolv.conf)");
        attempt_failed(n);
        return;
    }
    struct evutil_addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    n->state = SL_REDIS_RESOLVING;
    arm_timer(n, s->timeout_us / 1000 + CONNECT_GRACE_MS);
    /* The answer may come before this returns (hosts file), and then NULL is returned. */
    n->resolving = evdns_getaddrinfo(s->dns, n->host, NULL, &hints, on_resolved, n);
}

/* Gives up a lookup in flight; its callback runs with EVUTIL_EAI_CANCEL. */
static void cancel_resolving(struct sl_redis_node *n)
{
    struct evdns_getaddrinfo_request *req = n->resolving;
    n->state = SL_REDIS_IDLE;
    n->resolving = NULL;
    if (req) {
        evdns_getaddrinfo_cancel(req);
        if (n->store->freeing)
            n->store->lookups_cancelled++;
    }
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_node *n = arg;
    (void)fd;
    (void)what;
    if (n->state == SL_REDIS_IDLE) {
        connect_start(n);
    } else if (n->state == SL_REDIS_RESOLVING) {
        cancel_resolving(n);
        log_failure(n, "cannot resolve", "timed out");
        attempt_failed(n);
    } else if (n->state == SL_REDIS_CONNECTING) {
        sl_redis_node_drop(n, "timed out connecting");
    }
}

struct sl_redis_node *sl_redis_node_new(struct sl_redis_store *s, enum sl_redis_node_kind kind,
                                        const char *host, int port, const char *unix_path)
{
    struct sl_redis_node *n = calloc(1, sizeof *n);
    if (!n)
        return NULL;
    n->store = s;
    n->kind = kind;
    n->port = port;
    n->backoff_ms = BACKOFF_FIRST_MS;
    n->state = SL_REDIS_IDLE;
    if ((host && !(n->host = strdup(host))) || (unix_path && !(n->unix_path = strdup(unix_path))))
        goto fail;
    n->conn_timer = evtimer_new(s->evbase, on_conn_timer, n);
    if (!n->conn_timer)
        goto fail;
    connect_start(n);
    return n;
fail:
    sl_redis_node_free(n);
    return NULL;
}

/* Closes whatever connection or lookup is under way, without telling the topology. */
static void close_quietly(struct sl_redis_node *n)
{
    if (n->state == SL_REDIS_RESOLVING)
        cancel_resolving(n);
    struct sl_redis_link *link = n->link;
    n->link = NULL;
    n->state = SL_REDIS_IDLE;
    n->inflight = 0;
    if (n->conn_timer)
        evtimer_del(n->conn_timer);
    sl_redis_link_free(link);
}

void sl_redis_node_free(struct sl_redis_node *n)
{
    if (!n)
        return;
    close_quietly(n);
    if (n->conn_timer)
        event_free(n->conn_timer);
    SSL_SESSION_free(n->tls_session);
    free(n->host);
    free(n->unix_path);
    free(n);
}

int sl_redis_node_keep_session(SSL *ssl, SSL_SESSION *session)
{
    struct sl_redis_node *n = SSL_get_app_data(ssl);
    SSL_SESSION_free(n->tls_session);
    n->tls_session = session;
    return 1;
}

int sl_redis_node_set_address(struct sl_redis_node *n, const char *host, int port)
{
    char *copy = strdup(host);
    if (!copy)
        return -1;
    free(n->host);
    n->host = copy;
    n->port = port;
    /* Another server: its sessions are its own. */
    SSL_SESSION_free(n->tls_session);
    n->tls_session = NULL;
    return 0;
}

int sl_redis_node_retarget(struct sl_redis_node *n, const char *host, int port)
{
    if (sl_redis_node_set_address(n, host, port) < 0)
        return -1;
    close_quietly(n);
    n->backoff_ms = BACKOFF_FIRST_MS;
    n->quiet = false;
    connect_start(n);
    return 0;
}

bool sl_redis_node_is(const struct sl_redis_node *n, const char *host, int port)
{
    return n->host && n->port == port && strcmp(n->host, host) == 0;
}
