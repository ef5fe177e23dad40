/* The Redis store when things go wrong: NOSCRIPT recovery, script errors, timeouts, a
 * server that stops and comes back or stalls, a wrong password, freeing the store with
 * decisions in flight, and decisions asked before the first connection attempt ended. */
#include "support/redis_fixture.h"
#include "support/run_suite.h"

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

/* Lines of `path` that contain `needle`. */
static int count_lines(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char line[1024];
    int n = 0;
    while (fgets(line, sizeof line, f))
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

START_TEST(test_wrong_type_is_a_script_error_logged_once_a_minute_per_limit)
{
    /* Something else wrote the limit's key with another type. */
    redisContext *c = client();
    freeReplyObject(redisCommand(c, "SET sluice:r1:l1:fw:a x"));
    /* As long as a state, but not numbers sluice writes (tiny fractions). */
    freeReplyObject(redisCommand(c, "SET sluice:r1:l2:fw:a 0123456789abcdef"));
    redisFree(c);
    char path[] = "/tmp/sluice-log-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);

    struct sl_store *store = store_new(1000, NULL);
    struct sl_redis_config cfg = config(1000, NULL);
    struct sl_store *other = sl_store_redis_new(base, &cfg, 1, NULL); /* another worker */
    ck_assert(run_until_connected(other, true, 5 * S));
    struct sl_limit lim = limit("fixed_window", 5, HOUR, 0, false);
    struct sl_limit lim2 = limit("fixed_window", 5, HOUR, 0, false);
    lim2.name = (char *)"l2";
    lim2.metrics_id = 1;
    for (int i = 0; i < 20; i++) {
        ck_assert_int_eq(decide(store, &lim, "a").status, SL_STORE_ERR_SCRIPT);
        ck_assert_int_eq(decide(other, &lim, "a").status, SL_STORE_ERR_SCRIPT);
        ck_assert_int_eq(decide(store, &lim2, "a").status, SL_STORE_ERR_SCRIPT);
    }
    /* The store stays up and other keys decide as usual. */
    ck_assert(sl_store_redis_connected(store));
    ck_assert(decide_ok(store, &lim, "b").allowed);
    sl_store_free(other);
    sl_store_free(store);

    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(fd);
    /* 60 failed decisions, one line per limit. */
    ck_assert_int_eq(count_lines(path, "WRONGTYPE"), 2);
    ck_assert_int_eq(count_lines(path, "script on sluice:r1:l1:fw:*: WRONGTYPE"), 1);
    ck_assert_int_eq(count_lines(path, "script on sluice:r1:l2:fw:*: WRONGTYPE"), 1);
    unlink(path);
}
END_TEST

START_TEST(test_timeout)
{
    struct sl_store *store = store_new(50, NULL);
    struct sl_limit lim = limit("fixed_window", 1000, HOUR, 0, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);

    pause_server(1000);

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

/* The deadline timer, still set for an answered decision's deadline, goes off before a later
 * decision's and is set again for it: that decision times out at its own deadline, neither
 * at the earlier one nor much after. */
START_TEST(test_timeout_after_an_answered_decision)
{
    struct sl_store *store = store_new(300, NULL);
    struct sl_limit lim = limit("fixed_window", 1000, HOUR, 0, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    struct timeval tv = {0, 150000};
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);

    pause_server(1000);
    struct result r = {0};
    uint64_t start = sl_clock_mono_us();
    sl_store_decide(store, &lim, "a", 1, on_result, &r);
    ck_assert(run_until_called(&r.calls, 5 * S));
    ck_assert_int_eq(r.status, SL_STORE_ERR_TIMEOUT);
    ck_assert_uint_ge(r.at_us - start, 295 * MS);
    ck_assert_uint_le(r.at_us - start, 700 * MS);
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
    pause_server(4000);
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

/* Freed while its first host-name lookup is still in flight (at shutdown, when the loop
 * has stopped): the cancelled lookup must not leak (LeakSanitizer checks at exit). */
START_TEST(test_free_during_lookup)
{
    struct sl_redis_config cfg = config(50, NULL);
    cfg.host = (char *)"lookup-in-flight.invalid";
    struct sl_store *store = sl_store_redis_new(base, &cfg, 0, NULL);
    ck_assert_ptr_nonnull(store);
    ck_assert(!sl_store_redis_connected(store));
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
    redisReply *e = redisCommand(c, "EXISTS sluice:r1:l1:fw:a");
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

START_TEST(test_decisions_wait_for_the_first_attempt)
{
    /* Asked before the connection is up: each decision is sent once it is, not failed. */
    struct sl_redis_config cfg = config(2000, NULL);
    struct sl_store *store = sl_store_redis_new(base, &cfg, 0, NULL);
    ck_assert_ptr_nonnull(store);
    ck_assert(!sl_store_redis_started(store));
    struct sl_limit lim = limit("fixed_window", 2, HOUR, 0, false);
    struct result r[3] = {{0}};
    for (int i = 0; i < 3; i++)
        sl_store_decide(store, &lim, "a", 1, on_result, &r[i]);
    ck_assert_int_eq(r[0].calls + r[1].calls + r[2].calls, 0);
    ck_assert(run_until_called(&r[2].calls, 3 * S));
    ck_assert(sl_store_redis_started(store));
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, SL_STORE_OK);
        ck_assert(r[i].d.allowed == (i < 2)); /* in the order asked */
    }
    sl_store_free(store);
}
END_TEST

START_TEST(test_held_decision_fails_with_the_attempt)
{
    /* Nothing listens: the attempt fails at once, and so does the decision waiting on it,
     * long before its own deadline. */
    server_stop();
    struct sl_redis_config cfg = config(2000, NULL);
    uint64_t start = sl_clock_mono_us();
    struct sl_store *store = sl_store_redis_new(base, &cfg, 0, NULL);
    struct sl_limit lim = limit("fixed_window", 2, HOUR, 0, false);
    struct result r = {0};
    sl_store_decide(store, &lim, "a", 1, on_result, &r);
    ck_assert(run_until_called(&r.calls, 3 * S));
    ck_assert_int_eq(r.status, SL_STORE_ERR_CONNECTION);
    ck_assert_uint_lt(r.at_us - start, 1000 * MS);
    ck_assert(sl_store_redis_started(store));
    ck_assert(!sl_store_redis_connected(store));
    /* After the first attempt, decisions no longer wait. */
    struct result now = {0};
    sl_store_decide(store, &lim, "a", 1, on_result, &now);
    ck_assert_int_eq(now.calls, 1);
    ck_assert_int_eq(now.status, SL_STORE_ERR_CONNECTION);
    sl_store_free(store);
}
END_TEST

START_TEST(test_held_decision_times_out)
{
    /* A peer that accepts connections and never answers (a wedged server): the handshake
     * hangs for redis.timeout + 1 s, but each decision ends within redis.timeout. */
    server_stop();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET,
                              .sin_port = htons((uint16_t)port),
                              .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(listen(fd, 16), 0);
    struct sl_redis_config cfg = config(50, NULL);
    struct sl_store *store = sl_store_redis_new(base, &cfg, 0, NULL);
    struct sl_limit lim = limit("fixed_window", 2, HOUR, 0, false);
    struct result r = {0};
    uint64_t start = sl_clock_mono_us();
    sl_store_decide(store, &lim, "a", 1, on_result, &r);
    ck_assert(run_until_called(&r.calls, 3 * S));
    ck_assert_int_eq(r.status, SL_STORE_ERR_TIMEOUT);
    ck_assert_uint_ge(r.at_us - start, 45 * MS);
    ck_assert_uint_le(r.at_us - start, 500 * MS);
    ck_assert(!sl_store_redis_started(store));
    /* The attempt gives up after redis.timeout + 1 s. */
    uint64_t end = sl_clock_mono_us() + 3 * S;
    while (!sl_store_redis_started(store) && sl_clock_mono_us() < end) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    ck_assert(sl_store_redis_started(store));
    ck_assert_uint_ge(sl_clock_mono_us() - start, 1000 * MS);
    sl_store_free(store);
    close(fd);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store_redis_failures");
    TCase *tc = tcase_create("redis");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_noscript_reload);
    tcase_add_test(tc, test_script_error);
    tcase_add_test(tc, test_wrong_type_is_a_script_error_logged_once_a_minute_per_limit);
    tcase_add_test(tc, test_timeout);
    tcase_add_test(tc, test_timeout_after_an_answered_decision);
    tcase_add_test(tc, test_server_restart);
    tcase_add_test(tc, test_stalled_connection);
    tcase_add_test(tc, test_server_absent_at_start);
    tcase_add_test(tc, test_password);
    tcase_add_test(tc, test_unix_socket);
    tcase_add_test(tc, test_free_with_pending);
    tcase_add_test(tc, test_decisions_wait_for_the_first_attempt);
    tcase_add_test(tc, test_held_decision_fails_with_the_attempt);
    tcase_add_test(tc, test_held_decision_times_out);
    tcase_add_test(tc, test_free_during_lookup);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
