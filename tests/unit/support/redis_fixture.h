/* A real redis-server on a free port for the Redis store's suites, started before and
 * killed after every test, and helpers that drive one store on one event_base. */
#ifndef SLUICE_TEST_REDIS_FIXTURE_H
#define SLUICE_TEST_REDIS_FIXTURE_H

#include <check.h>
#include <errno.h>
#include <event2/event.h>
#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/clock.h"
#include "sluice/limit.h"
#include "sluice/lua_scripts.h"
#include "sluice/sha256.h"
#include "sluice/store_memory.h"
#include "sluice/store_redis.h"

#define MS 1000ull
#define S 1000000ull
#define HOUR (3600 * S)

static int port;
static pid_t server;
static struct event_base *base;
static struct sl_route route = {.name = (char *)"r1"};

/* --- redis-server ----------------------------------------------------------------------- */

static inline int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static inline redisContext *client(void)
{
    struct timeval tv = {1, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) {
        redisFree(c);
        return NULL;
    }
    return c;
}

/* A client authenticated with `password` (NULL: none), or NULL while the server is not up. */
static inline redisContext *client_auth(const char *password)
{
    redisContext *c = client();
    if (c && password) {
        redisReply *r = redisCommand(c, "AUTH %s", password);
        freeReplyObject(r);
    }
    return c;
}

/* Starts redis-server on `port` (and on the unix socket `unix_path` when not NULL), requiring
 * `password` when not NULL, and waits until it answers. */
static inline void server_start_with(const char *password, const char *unix_path)
{
    char portbuf[16];
    snprintf(portbuf, sizeof portbuf, "%d", port);
    const char *argv[16] = {"redis-server", "--port", portbuf,        "--bind", "127.0.0.1",
                            "--save",       "",       "--appendonly", "no"};
    int argc = 9;
    if (password) {
        argv[argc++] = "--requirepass";
        argv[argc++] = password;
    }
    if (unix_path) {
        argv[argc++] = "--unixsocket";
        argv[argc++] = unix_path;
    }
    server = fork();
    ck_assert_int_ge(server, 0);
    if (server == 0) {
        /* Dies with the test process, even when a failed assertion skips the teardown. */
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        int devnull = open("/dev/null", O_WRONLY);
        dup2(devnull, STDOUT_FILENO);
        execvp("redis-server", (char *const *)argv);
        _exit(127);
    }
    /* Readiness by polling PING (a refused connection, or LOADING, means not yet). */
    uint64_t end = sl_clock_mono_us() + 10 * S;
    for (;;) {
        redisContext *c = client_auth(password);
        redisReply *r = c ? redisCommand(c, "PING") : NULL;
        bool up = r && r->type == REDIS_REPLY_STATUS && strcmp(r->str, "PONG") == 0;
        freeReplyObject(r);
        if (c)
            redisFree(c);
        if (up)
            return;
        ck_assert_msg(sl_clock_mono_us() < end, "redis-server did not start on port %d", port);
        usleep(10000);
    }
}

static inline void server_start(const char *password)
{
    server_start_with(password, NULL);
}

static inline void server_stop(void)
{
    if (server > 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
    }
    server = 0;
}

static inline void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    port = free_port();
    server_start(NULL);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
}

static inline void teardown(void)
{
    event_base_free(base);
    server_stop();
}

/* --- the store under test --------------------------------------------------------------- */

static inline struct sl_redis_config config(uint64_t timeout_ms, const char *password)
{
    return (struct sl_redis_config){.enabled = true,
                                    .host = (char *)"127.0.0.1",
                                    .port = port,
                                    .password = (char *)password,
                                    .timeout_ms = timeout_ms,
                                    .key_prefix = (char *)"sluice:"};
}

static inline struct sl_limit limit(const char *alg, uint64_t n, uint64_t p, uint64_t burst,
                                    bool delay)
{
    struct sl_limit l = {.name = (char *)"l1",
                         .route = &route,
                         .alg = sl_algorithm_find(alg),
                         .count = n,
                         .period_us = p,
                         .burst = burst,
                         .delay = delay,
                         .store = SL_STORE_REDIS};
    ck_assert_ptr_nonnull(l.alg);
    return l;
}

struct result {
    int calls;
    enum sl_store_status status;
    struct sl_decision d;
    uint64_t at_us;
};

static inline void on_result(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    if (d)
        r->d = *d;
    r->at_us = sl_clock_mono_us();
}

/* Runs the loop in 5 ms slices until `*calls` is non-zero or `max_us` has passed. */
static inline bool run_until_called(const int *calls, uint64_t max_us)
{
    uint64_t end = sl_clock_mono_us() + max_us;
    while (*calls == 0) {
        if (sl_clock_mono_us() >= end)
            return false;
        struct timeval tv = {0, 5000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return true;
}

static inline bool run_until_connected(struct sl_store *store, bool want, uint64_t max_us)
{
    uint64_t end = sl_clock_mono_us() + max_us;
    while (sl_store_redis_connected(store) != want) {
        if (sl_clock_mono_us() >= end)
            return false;
        struct timeval tv = {0, 5000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    return true;
}

/* Holds every client's commands for `ms` (as if the server slept: DEBUG SLEEP would need
 * enable-debug-command); the pause is in force once this returns. */
static inline void pause_server(int ms)
{
    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "CLIENT PAUSE %d", ms);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_STATUS);
    freeReplyObject(r);
    redisFree(c);
}

/* A limit's state in the string `v` of `len` bytes: `fields` little-endian doubles, each an
 * integer in [0, 2^53) (src/limit/lua/prelude/prelude.lua); returns whether it is one, with
 * the numbers in `out`. */
static inline bool state_of(const char *v, size_t len, int fields, double *out)
{
    if (len != 8 * (size_t)fields)
        return false;
    for (int i = 0; i < fields; i++) {
        uint64_t bits = 0;
        for (int b = 7; b >= 0; b--)
            bits = bits << 8 | (unsigned char)v[8 * i + b];
        memcpy(&out[i], &bits, sizeof out[i]);
        if (!(out[i] >= 0 && out[i] < 9007199254740992.0) || out[i] != (double)(uint64_t)out[i])
            return false;
    }
    return true;
}

/* Writes `fields` numbers as a limit's state at `key`, as the scripts do. */
static inline void set_state(redisContext *c, const char *key, int fields, const double *in)
{
    char v[24];
    for (int i = 0; i < fields; i++) {
        uint64_t bits;
        memcpy(&bits, &in[i], sizeof bits);
        for (int b = 0; b < 8; b++)
            v[8 * i + b] = (char)(bits >> (8 * b));
    }
    freeReplyObject(redisCommand(c, "SET %s %b", key, v, (size_t)(8 * fields)));
}

static inline struct sl_store *store_new(uint64_t timeout_ms, const char *password)
{
    struct sl_redis_config cfg = config(timeout_ms, password);
    struct sl_store *store = sl_store_redis_new(base, &cfg, 0, NULL);
    ck_assert_ptr_nonnull(store);
    ck_assert_msg(run_until_connected(store, true, 5 * S), "store did not connect");
    return store;
}

static inline struct result decide(struct sl_store *store, const struct sl_limit *lim,
                                   const char *key)
{
    struct result r = {0};
    sl_store_decide(store, lim, key, strlen(key), on_result, &r);
    ck_assert_msg(run_until_called(&r.calls, 5 * S), "no callback within 5 s");
    ck_assert_int_eq(r.calls, 1);
    return r;
}

static inline struct sl_decision decide_ok(struct sl_store *store, const struct sl_limit *lim,
                                           const char *key)
{
    struct result r = decide(store, lim, key);
    ck_assert_int_eq(r.status, SL_STORE_OK);
    ck_assert_uint_eq(r.d.limit, lim->count);
    return r.d;
}

static inline long long command_int(const char *fmt, const char *arg)
{
    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, fmt, arg);
    ck_assert_ptr_nonnull(r);
    ck_assert_int_eq(r->type, REDIS_REPLY_INTEGER);
    long long v = r->integer;
    freeReplyObject(r);
    redisFree(c);
    return v;
}

/* EVALSHA calls the server has run since it started. */
static inline long long evalsha_calls(void)
{
    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "INFO commandstats");
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    const char *at = strstr(r->str, "cmdstat_evalsha:calls=");
    long long n = at ? atoll(at + strlen("cmdstat_evalsha:calls=")) : 0;
    freeReplyObject(r);
    redisFree(c);
    return n;
}

#endif
