/* The Redis store against a real redis-server started by each test on a free port: the five
 * scripts' decisions (and that they match the C algorithms), the key layout, NOSCRIPT
 * recovery, timeouts, a server that stops and comes back, and a wrong password. */
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
#include "support/run_suite.h"

#define MS 1000ull
#define S 1000000ull
#define HOUR (3600 * S)

static int port;
static pid_t server;
static struct event_base *base;
static struct sl_route route = {.name = (char *)"r1"};

/* --- redis-server ----------------------------------------------------------------------- */

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    return ntohs(sin.sin_port);
}

static redisContext *client(void)
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
static redisContext *client_auth(const char *password)
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
static void server_start_with(const char *password, const char *unix_path)
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

static void server_start(const char *password)
{
    server_start_with(password, NULL);
}

static void server_stop(void)
{
    if (server > 0) {
        kill(server, SIGKILL);
        waitpid(server, NULL, 0);
    }
    server = 0;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    port = free_port();
    server_start(NULL);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
}

static void teardown(void)
{
    event_base_free(base);
    server_stop();
}

/* --- the store under test --------------------------------------------------------------- */

static struct sl_redis_config config(uint64_t timeout_ms, const char *password)
{
    return (struct sl_redis_config){.enabled = true,
                                    .host = (char *)"127.0.0.1",
                                    .port = port,
                                    .password = (char *)password,
                                    .timeout_ms = timeout_ms,
                                    .key_prefix = (char *)"sluice:"};
}

static struct sl_limit limit(const char *alg, uint64_t n, uint64_t p, uint64_t burst, bool delay)
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

static void on_result(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    if (d)
        r->d = *d;
    r->at_us = sl_clock_mono_us();
}

/* Runs the loop in 5 ms slices until `*calls` is non-zero or `max_us` has passed. */
static bool run_until_called(const int *calls, uint64_t max_us)
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

static bool run_until_connected(struct sl_store *store, bool want, uint64_t max_us)
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

static struct sl_store *store_new(uint64_t timeout_ms, const char *password)
{
    struct sl_redis_config cfg = config(timeout_ms, password);
    struct sl_store *store = sl_store_redis_new(base, &cfg, 0, NULL);
    ck_assert_ptr_nonnull(store);
    ck_assert_msg(run_until_connected(store, true, 5 * S), "store did not connect");
    return store;
}

static struct result decide(struct sl_store *store, const struct sl_limit *lim, const char *key)
{
    struct result r = {0};
    sl_store_decide(store, lim, key, strlen(key), on_result, &r);
    ck_assert_msg(run_until_called(&r.calls, 5 * S), "no callback within 5 s");
    ck_assert_int_eq(r.calls, 1);
    return r;
}

static struct sl_decision decide_ok(struct sl_store *store, const struct sl_limit *lim,
                                    const char *key)
{
    struct result r = decide(store, lim, key);
    ck_assert_int_eq(r.status, SL_STORE_OK);
    ck_assert_uint_eq(r.d.limit, lim->count);
    return r.d;
}

static long long command_int(const char *fmt, const char *arg)
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

/* --- the scripts' decisions ------------------------------------------------------------- */

START_TEST(test_scripts_embedded)
{
    ck_assert_ptr_eq(sl_lua_script_find("fixed_window"), sl_lua_fixed_window);
    ck_assert_ptr_eq(sl_lua_script_find("leaky_bucket"), sl_lua_leaky_bucket);
    ck_assert_ptr_null(sl_lua_script_find("nope"));
    ck_assert_ptr_nonnull(strstr(sl_lua_token_bucket, "redis.call('TIME')"));
    for (const struct sl_algorithm_ops *const *a = sl_algorithm_all(); *a; a++)
        ck_assert_msg(sl_lua_script_find((*a)->name), "no script for %s", (*a)->name);
}
END_TEST

START_TEST(test_fixed_window)
{
    struct sl_store *store = store_new(1000, NULL);
    /* A one-hour window, so that the sequence never straddles a window edge. */
    struct sl_limit lim = limit("fixed_window", 3, HOUR, 0, false);
    for (uint64_t i = 0; i < 3; i++) {
        struct sl_decision d = decide_ok(store, &lim, "a");
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.remaining, 2 - i);
        ck_assert_uint_le(d.reset_us, HOUR);
        ck_assert_uint_eq(d.retry_after_us, 0);
    }
    struct sl_decision d = decide_ok(store, &lim, "a");
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.remaining, 0);
    ck_assert_uint_gt(d.retry_after_us, 0);
    ck_assert_uint_le(d.retry_after_us, HOUR);
    ck_assert_uint_eq(d.retry_after_us, d.reset_us);
    /* Another key value has its own window. */
    ck_assert(decide_ok(store, &lim, "b").allowed);
    sl_store_free(store);
}
END_TEST

START_TEST(test_sliding_window)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("sliding_window", 3, 10 * S, 0, false);
    /* Three decisions sent at once: their members must differ even within one microsecond. */
    struct result r[3] = {{0}};
    for (int i = 0; i < 3; i++)
        sl_store_decide(store, &lim, "a", 1, on_result, &r[i]);
    ck_assert(run_until_called(&r[2].calls, 5 * S));
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, SL_STORE_OK);
        ck_assert(r[i].d.allowed);
        ck_assert_uint_eq(r[i].d.remaining, 2 - i);
        ck_assert_uint_eq(r[i].d.reset_us, 10 * S);
    }
    struct sl_decision d = decide_ok(store, &lim, "a");
    ck_assert(!d.allowed);
    /* Admitted again when the oldest entry leaves the window: just under P from now. */
    ck_assert_uint_le(d.retry_after_us, 10 * S);
    ck_assert_uint_gt(d.retry_after_us, 9 * S);
    ck_assert_uint_ge(d.reset_us, d.retry_after_us);
    /* Denied requests are not recorded. */
    ck_assert_int_eq(command_int("ZCARD %s", "sluice:r1:l1:a"), 3);
    sl_store_free(store);
}
END_TEST

START_TEST(test_sliding_window_counter)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("sliding_window_counter", 3, HOUR, 0, false);
    for (uint64_t i = 0; i < 3; i++) {
        struct sl_decision d = decide_ok(store, &lim, "a");
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.remaining, 2 - i);
        ck_assert_uint_gt(d.reset_us, HOUR); /* curr > 0: the end of the next window */
        ck_assert_uint_le(d.reset_us, 2 * HOUR);
    }
    struct sl_decision d = decide_ok(store, &lim, "a");
    ck_assert(!d.allowed);
    /* prev is 0: the next window admits from its first microsecond on (elapsed 1). */
    ck_assert_uint_eq(d.retry_after_us, d.reset_us - HOUR + 1);
    sl_store_free(store);
}
END_TEST

START_TEST(test_token_bucket)
{
    struct sl_store *store = store_new(1000, NULL);
    /* 2 per hour, a burst of 3: three at once, then one every 30 minutes. */
    struct sl_limit lim = limit("token_bucket", 2, HOUR, 3, false);
    for (uint64_t i = 0; i < 3; i++) {
        struct sl_decision d = decide_ok(store, &lim, "a");
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.remaining, 2 - i);
        ck_assert_uint_le(d.reset_us, (i + 1) * HOUR / 2);
        ck_assert_uint_gt(d.reset_us, (i + 1) * HOUR / 2 - S);
    }
    struct sl_decision d = decide_ok(store, &lim, "a");
    ck_assert(!d.allowed);
    ck_assert_uint_le(d.retry_after_us, HOUR / 2);
    ck_assert_uint_gt(d.retry_after_us, HOUR / 2 - S);
    sl_store_free(store);
}
END_TEST

START_TEST(test_leaky_bucket)
{
    struct sl_store *store = store_new(1000, NULL);
    /* 10/10s: one departure a second (wide enough for a loaded machine); two queue places. */
    struct sl_limit lim = limit("leaky_bucket", 10, 10 * S, 2, true);
    uint64_t start = sl_clock_mono_us();
    for (uint64_t i = 0; i < 3; i++) {
        struct sl_decision d = decide_ok(store, &lim, "a");
        uint64_t since = sl_clock_mono_us() - start;
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.remaining, 2 - i);
        /* The i-th request departs i seconds after the first: its delay is that, less the
         * time already spent between the decisions. */
        ck_assert_uint_le(d.delay_us, i * S);
        ck_assert_uint_ge(d.delay_us + since, i * S);
    }
    struct sl_decision d = decide_ok(store, &lim, "a");
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.delay_us, 0);
    ck_assert_uint_gt(d.retry_after_us, 0);
    ck_assert_uint_le(d.retry_after_us, S);

    /* delay: false admits queued requests at once, and still fills the queue. */
    lim.delay = false;
    for (int i = 0; i < 3; i++) {
        d = decide_ok(store, &lim, "b");
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.delay_us, 0);
    }
    ck_assert(!decide_ok(store, &lim, "b").allowed);
    sl_store_free(store);
}
END_TEST

/* The same sequences on the memory store (the C algorithms), on a clock set to the middle of
 * a window, as the scripts give on Redis's clock. The decisions are milliseconds apart, so
 * the times agree to within that. */
static uint64_t memory_now;

static uint64_t memory_clock(void)
{
    return memory_now;
}

static void compare_with_memory(struct sl_store *store, const char *alg, uint64_t n, uint64_t p,
                                uint64_t burst, bool delay, int steps)
{
    struct sl_limit lim = limit(alg, n, p, burst, delay);
    struct sl_store *memory = sl_store_memory_new(100, memory_clock);
    ck_assert_ptr_nonnull(memory);
    memory_now = 1000 * p + p / 2;
    for (int i = 0; i < steps; i++) {
        struct result c = {0};
        sl_store_decide(memory, &lim, alg, strlen(alg), on_result, &c);
        ck_assert_int_eq(c.calls, 1);
        ck_assert_int_eq(c.status, SL_STORE_OK);
        struct sl_decision r = decide_ok(store, &lim, alg);
        ck_assert_msg(r.allowed == c.d.allowed, "%s step %d: allowed %d, memory %d", alg, i,
                      r.allowed, c.d.allowed);
        ck_assert_uint_eq(r.remaining, c.d.remaining);
        ck_assert_uint_eq(r.limit, c.d.limit);
        /* Window-aligned algorithms depend on where in the window "now" is; the rest do not. */
        if (strcmp(alg, "token_bucket") == 0 || strcmp(alg, "leaky_bucket") == 0 ||
            strcmp(alg, "sliding_window") == 0) {
            uint64_t slack = S;
            ck_assert_uint_le(r.reset_us, c.d.reset_us);
            ck_assert_uint_ge(r.reset_us + slack, c.d.reset_us);
            ck_assert_uint_le(r.retry_after_us, c.d.retry_after_us);
            ck_assert_uint_ge(r.retry_after_us + slack, c.d.retry_after_us);
            ck_assert_uint_le(r.delay_us, c.d.delay_us);
            ck_assert_uint_ge(r.delay_us + slack, c.d.delay_us);
        } else {
            ck_assert_uint_eq(r.retry_after_us == 0, c.d.retry_after_us == 0);
        }
    }
    sl_store_free(memory);
}

START_TEST(test_same_as_c)
{
    struct sl_store *store = store_new(1000, NULL);
    compare_with_memory(store, "fixed_window", 4, HOUR, 0, false, 6);
    compare_with_memory(store, "sliding_window", 4, HOUR, 0, false, 6);
    compare_with_memory(store, "sliding_window_counter", 4, HOUR, 0, false, 6);
    compare_with_memory(store, "token_bucket", 3, 10 * S, 5, false, 7);
    compare_with_memory(store, "leaky_bucket", 3, 10 * S, 2, true, 5);
    sl_store_free(store);
}
END_TEST

/* --- keys, scripts, failures ------------------------------------------------------------ */

START_TEST(test_key_layout)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("fixed_window", 5, 60 * S, 0, false);
    decide_ok(store, &lim, "10.0.0.1");
    /* Binary-safe values: a NUL and a space stay part of the key. */
    struct result r = {0};
    sl_store_decide(store, &lim, "a b\0c", 5, on_result, &r);
    ck_assert(run_until_called(&r.calls, 5 * S));
    ck_assert_int_eq(r.status, SL_STORE_OK);

    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    redisReply *keys = redisCommand(c, "KEYS sluice:*");
    ck_assert_int_eq(keys->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(keys->elements, 2);
    freeReplyObject(keys);
    redisReply *ttl = redisCommand(c, "PTTL %s", "sluice:r1:l1:10.0.0.1");
    ck_assert_int_eq(ttl->type, REDIS_REPLY_INTEGER);
    ck_assert_int_gt(ttl->integer, 0);
    ck_assert_int_le(ttl->integer, 60000);
    freeReplyObject(ttl);
    redisReply *e = redisCommand(c, "EXISTS %b", "sluice:r1:l1:a b\0c", (size_t)18);
    ck_assert_int_eq(e->integer, 1);
    freeReplyObject(e);
    redisFree(c);
    sl_store_free(store);
}
END_TEST

START_TEST(test_long_key_digest)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("sliding_window", 5, 60 * S, 0, false);
    char value[301];
    memset(value, 'v', 300);
    value[300] = '\0';
    decide_ok(store, &lim, value);
    char hex[65], key[128];
    sl_sha256_hex(value, 300, hex);
    snprintf(key, sizeof key, "sluice:r1:l1:%s", hex);
    ck_assert_int_eq(command_int("EXISTS %s", key), 1);
    /* 200 bytes is still used as is. */
    value[200] = '\0';
    decide_ok(store, &lim, value);
    char plain[400];
    snprintf(plain, sizeof plain, "sluice:r1:l1:%s", value);
    ck_assert_int_eq(command_int("EXISTS %s", plain), 1);
    sl_store_free(store);
}
END_TEST

START_TEST(test_noscript_reload)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("token_bucket", 5, 60 * S, 5, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    redisContext *c = client();
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    struct sl_decision d = decide_ok(store, &lim, "a");
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 3); /* the retry ran once, not twice */
    ck_assert(decide_ok(store, &lim, "a").allowed);
    sl_store_free(store);
}
END_TEST

START_TEST(test_script_error)
{
    /* Rates past the scripts' exact range are refused by the script, not decided wrongly. */
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("sliding_window_counter", 1000000000, 86400 * S, 0, false);
    ck_assert_int_eq(decide(store, &lim, "a").status, SL_STORE_ERR_SCRIPT);
    ck_assert(sl_store_redis_connected(store));
    lim = limit("token_bucket", 5, HOUR, 5, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    sl_store_free(store);
}
END_TEST

START_TEST(test_timeout)
{
    struct sl_store *store = store_new(50, NULL);
    struct sl_limit lim = limit("fixed_window", 1000, HOUR, 0, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);

    /* The server holds every client's commands for 1 s, as if it slept (DEBUG SLEEP
     * would need enable-debug-command); the pause is in force once CLIENT PAUSE returns. */
    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    redisReply *paused = redisCommand(c, "CLIENT PAUSE 1000");
    ck_assert_int_eq(paused->type, REDIS_REPLY_STATUS);
    freeReplyObject(paused);
    redisFree(c);

    struct result r = {0};
    uint64_t start = sl_clock_mono_us();
    sl_store_decide(store, &lim, "a", 1, on_result, &r);
    ck_assert(run_until_called(&r.calls, 5 * S));
    ck_assert_int_eq(r.status, SL_STORE_ERR_TIMEOUT);
    ck_assert_uint_ge(r.at_us - start, 45 * MS);
    ck_assert_uint_le(r.at_us - start, 500 * MS);

    /* Once the pause ends, the late reply is read and dropped (ASan watches) before the
     * reply to the next decision, which the connection still serves. */
    struct result next;
    do {
        next = decide(store, &lim, "a");
        ck_assert(next.status == SL_STORE_OK || next.status == SL_STORE_ERR_TIMEOUT);
        ck_assert_uint_le(next.at_us - start, 3 * S);
    } while (next.status != SL_STORE_OK);
    ck_assert_uint_ge(next.at_us - start, 900 * MS);
    ck_assert(next.d.allowed);
    ck_assert_int_eq(r.calls, 1);
    ck_assert(sl_store_redis_connected(store));
    sl_store_free(store);
}
END_TEST

START_TEST(test_server_restart)
{
    struct sl_store *store = store_new(50, NULL);
    struct sl_limit lim = limit("fixed_window", 5, HOUR, 0, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);

    /* A decision in flight when the server dies fails with a connection error. */
    struct result r = {0};
    sl_store_decide(store, &lim, "a", 1, on_result, &r);
    server_stop();
    ck_assert(run_until_called(&r.calls, 5 * S));
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, SL_STORE_ERR_CONNECTION);
    ck_assert(run_until_connected(store, false, S));

    /* While disconnected, decisions fail at once. */
    struct result now = {0};
    sl_store_decide(store, &lim, "a", 1, on_result, &now);
    ck_assert_int_eq(now.calls, 1);
    ck_assert_int_eq(now.status, SL_STORE_ERR_CONNECTION);

    uint64_t start = sl_clock_mono_us();
    server_start(NULL);
    ck_assert_msg(run_until_connected(store, true, 3 * S), "no reconnection within 3 s");
    ck_assert_uint_le(sl_clock_mono_us() - start, 2 * S);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    sl_store_free(store);
}
END_TEST

START_TEST(test_stalled_connection)
{
    /* The server stops answering but keeps the connection open (as a black-holed peer would):
     * decisions time out, and after 2 s without a reply the store reconnects. */
    struct sl_store *store = store_new(50, NULL);
    struct sl_limit lim = limit("fixed_window", 1000, HOUR, 0, false);
    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    freeReplyObject(redisCommand(c, "CLIENT PAUSE 4000"));
    redisFree(c);
    uint64_t start = sl_clock_mono_us();
    while (sl_store_redis_connected(store)) {
        struct result r = decide(store, &lim, "a");
        /* The decision in flight when the store gives up on the connection fails with it. */
        ck_assert(r.status == SL_STORE_ERR_TIMEOUT ||
                  (r.status == SL_STORE_ERR_CONNECTION && !sl_store_redis_connected(store)));
        ck_assert_uint_le(sl_clock_mono_us() - start, 3500 * MS);
    }
    ck_assert_uint_ge(sl_clock_mono_us() - start, 2 * S);
    ck_assert_msg(run_until_connected(store, true, 5 * S), "no reconnection after the pause");
    ck_assert(decide_ok(store, &lim, "a").allowed);
    sl_store_free(store);
}
END_TEST

START_TEST(test_server_absent_at_start)
{
    server_stop();
    struct sl_redis_config cfg = config(50, NULL);
    struct sl_store *store = sl_store_redis_new(base, &cfg, 3, NULL);
    ck_assert_ptr_nonnull(store);
    struct sl_limit lim = limit("fixed_window", 5, HOUR, 0, false);
    ck_assert(!run_until_connected(store, true, 300 * MS));
    struct result r = decide(store, &lim, "a");
    ck_assert_int_eq(r.status, SL_STORE_ERR_CONNECTION);
    server_start(NULL);
    ck_assert(run_until_connected(store, true, 3 * S));
    ck_assert(decide_ok(store, &lim, "a").allowed);
    sl_store_free(store);
}
END_TEST

START_TEST(test_password)
{
    server_stop();
    server_start("s3cret");
    struct sl_limit lim = limit("fixed_window", 5, HOUR, 0, false);

    struct sl_redis_config bad = config(50, "wrong");
    struct sl_store *store = sl_store_redis_new(base, &bad, 0, NULL);
    ck_assert_ptr_nonnull(store);
    ck_assert(!run_until_connected(store, true, 500 * MS));
    ck_assert_int_eq(decide(store, &lim, "a").status, SL_STORE_ERR_CONNECTION);
    sl_store_free(store);

    struct sl_redis_config good = config(50, "s3cret");
    good.user = (char *)"default";
    good.db = 3;
    store = sl_store_redis_new(base, &good, 0, NULL);
    ck_assert(run_until_connected(store, true, 3 * S));
    ck_assert(decide_ok(store, &lim, "a").allowed);
    sl_store_free(store);

    /* The key went to database 3. */
    redisContext *c = client_auth("s3cret");
    freeReplyObject(redisCommand(c, "SELECT 3"));
    redisReply *e = redisCommand(c, "EXISTS sluice:r1:l1:a");
    ck_assert_int_eq(e->integer, 1);
    freeReplyObject(e);
    redisFree(c);
}
END_TEST

START_TEST(test_unix_socket)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/sluice-test-%d.sock", port);
    server_stop();
    server_start_with(NULL, path);
    struct sl_redis_config cfg = config(1000, NULL);
    cfg.host = NULL;
    cfg.unix_path = path;
    struct sl_store *store = sl_store_redis_new(base, &cfg, 0, NULL);
    ck_assert(run_until_connected(store, true, 3 * S));
    struct sl_limit lim = limit("leaky_bucket", 10, S, 0, true);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    sl_store_free(store);
    server_stop();
    unlink(path);
}
END_TEST

START_TEST(test_free_with_pending)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("sliding_window", 5, HOUR, 0, false);
    struct result r[4] = {{0}};
    for (int i = 0; i < 4; i++)
        sl_store_decide(store, &lim, "a", 1, on_result, &r[i]);
    sl_store_free(store);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, SL_STORE_ERR_CONNECTION);
    }
    /* Nothing fires later. */
    struct timeval tv = {0, 100000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(r[i].calls, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store_redis");
    TCase *tc = tcase_create("redis");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_scripts_embedded);
    tcase_add_test(tc, test_fixed_window);
    tcase_add_test(tc, test_sliding_window);
    tcase_add_test(tc, test_sliding_window_counter);
    tcase_add_test(tc, test_token_bucket);
    tcase_add_test(tc, test_leaky_bucket);
    tcase_add_test(tc, test_same_as_c);
    tcase_add_test(tc, test_key_layout);
    tcase_add_test(tc, test_long_key_digest);
    tcase_add_test(tc, test_noscript_reload);
    tcase_add_test(tc, test_script_error);
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_server_restart);
    tcase_add_test(tc, test_stalled_connection);
    tcase_add_test(tc, test_server_absent_at_start);
    tcase_add_test(tc, test_password);
    tcase_add_test(tc, test_unix_socket);
    tcase_add_test(tc, test_free_with_pending);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
