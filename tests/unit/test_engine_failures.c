/* The limiter engine when stores fail or answer late: each failure_mode, answers that
 * arrive after the verdict, decisions that re-enter the engine, and keys that outgrow the
 * buffers. */
#include "sluice/clock.h"
#include "sluice/top.h"
#include "support/engine_fixture.h"

static void two_limits_one_failing(void)
{
    struct sl_route *rt = add_route("login", SL_MATCH_ANY, NULL);
    add_limit(rt, "local", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "global", 100, 60, SL_STORE_REDIS);
    script(&redis, "global", SL_STORE_ERR_TIMEOUT, allow(0, 0, 0));
    cfg.response_headers = SL_HEADERS_DRAFT;
}

START_TEST(failure_open_admits)
{
    two_limits_one_failing();
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_STORE_ERROR);
    ck_assert_int_eq(r->v.status, 0);
    /* Only limits that answered are described. */
    ck_assert_str_eq(r->headers, "RateLimit-Policy: \"local\";q=10;w=1\r\n"
                                 "RateLimit: \"local\";r=9;t=1\r\n");
}
END_TEST

START_TEST(failure_closed_answers_503)
{
    two_limits_one_failing();
    cfg.failure_mode = SL_FAILURE_CLOSED;
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_STORE_ERROR);
    ck_assert_int_eq(r->v.status, 503);
    ck_assert_str_eq(r->headers, "Retry-After: 1\r\n");
    ck_assert_str_eq(r->body, "{\"error\":\"store_unavailable\"}");

    /* A denial stands: the answer is 429, whatever the other store did. */
    memory.script[0] = (struct script){"local", SL_STORE_OK, deny(10, 1000000, 1000000)};
    r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_int_eq(r->v.status, 429);
}
END_TEST

START_TEST(failure_local_asks_memory)
{
    two_limits_one_failing();
    cfg.failure_mode = SL_FAILURE_LOCAL;
    script(&memory, "global", SL_STORE_OK, allow(100, 42, 60000000));
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_int_eq(r->v.status, 0);
    ck_assert_uint_eq(redis.ncalls, 1);
    ck_assert_uint_eq(memory.ncalls, 2);
    ck_assert_str_eq(memory.limits[1]->name, "global");
    ck_assert_str_eq(memory.keys[1], redis.keys[0]);
    ck_assert_str_eq(r->headers, "RateLimit-Policy: \"local\";q=10;w=1, \"global\";q=100;w=60\r\n"
                                 "RateLimit: \"local\";r=9;t=1, \"global\";r=42;t=60\r\n");

    memory.script[0].d = deny(100, 60000000, 5000000);
    r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_str_eq(r->body, "{\"error\":\"rate_limited\",\"route\":\"login\",\"limit\":"
                              "\"global\",\"retry_after\":5}");
}
END_TEST

START_TEST(failure_local_after_a_late_answer)
{
    two_limits_one_failing();
    cfg.failure_mode = SL_FAILURE_LOCAL;
    redis.async = true;
    struct result r1, r2;
    peer_addr.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    start(&r1, "GET", "/", NULL, 0);
    /* A second request overwrites the engine's buffers before the first is answered. */
    inet_pton(AF_INET, "198.51.100.7", &peer_addr.sin_addr);
    start(&r2, "GET", "/", NULL, 0);
    ck_assert_int_eq(r1.calls + r2.calls, 0);
    fake_flush(&redis);
    ck_assert_int_eq(r1.calls, 1);
    ck_assert_int_eq(r2.calls, 1);
    ck_assert_int_eq(r1.v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_uint_eq(memory.ncalls, 4);
    ck_assert_str_eq(memory.limits[2]->name, "global");
    ck_assert_str_eq(memory.keys[2], "192.0.2.1");
    ck_assert_str_eq(memory.keys[3], "198.51.100.7");
    done(&r1);
    done(&r2);
}
END_TEST

static uint64_t top_count(struct sl_top *top, const struct sl_limit *lim, bool denied,
                          const char *key)
{
    struct sl_top_report rep;
    uint64_t n = 0;
    ck_assert_int_eq(sl_top_read(top, lim, sl_clock_mono_us(), SL_TOP_K, &rep), 0);
    const struct sl_top_list *l = denied ? &rep.denied : &rep.seen;
    for (size_t i = 0; i < l->n; i++)
        if (strcmp(l->items[i].key, key) == 0)
            n = l->items[i].count;
    sl_top_report_deinit(&rep);
    return n;
}

/* The heavy hitters learn each limit's decision under the key it was asked with, also when
 * the answer comes after other requests have reused the engine's buffers. */
START_TEST(late_answers_reach_the_heavy_hitters)
{
    struct sl_top *top = sl_top_new(1, 0);
    two_limits_one_failing();
    struct sl_limit *local = &routes[0].limits[0], *global = &routes[0].limits[1];
    local->metrics_id = 0;
    global->metrics_id = 1;
    local->top_tag = global->top_tag = 1;
    cfg.admin_top = true;
    script(&redis, "global", SL_STORE_OK, deny(100, 60000000, 5000000));
    redis.async = true;
    sl_engine_set_top(engine, sl_top_slot(top, 0));

    struct result r1, r2;
    peer_addr.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    start(&r1, "GET", "/", NULL, 0);
    inet_pton(AF_INET, "198.51.100.7", &peer_addr.sin_addr);
    start(&r2, "GET", "/", NULL, 0);
    ck_assert_uint_eq(top_count(top, local, false, "192.0.2.1"), 1);
    ck_assert_uint_eq(top_count(top, global, false, "192.0.2.1"), 0);
    fake_flush(&redis);
    ck_assert_int_eq(r1.v.outcome, SL_OUTCOME_LIMITED);
    for (int i = 0; i < 2; i++) {
        const char *key = i ? "198.51.100.7" : "192.0.2.1";
        ck_assert_uint_eq(top_count(top, local, false, key), 1);
        ck_assert_uint_eq(top_count(top, local, true, key), 0);
        ck_assert_uint_eq(top_count(top, global, false, key), 1);
        ck_assert_uint_eq(top_count(top, global, true, key), 1);
    }
    done(&r1);
    done(&r2);

    /* admin.top off in the configuration: nothing more is recorded. */
    cfg.admin_top = false;
    redis.async = false;
    decide("GET", "/");
    ck_assert_uint_eq(top_count(top, global, false, "192.0.2.1"), 1);
    sl_engine_set_top(engine, NULL);
    sl_top_free(top);
}
END_TEST

START_TEST(late_answers_finish_once)
{
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    add_limit(rt, "a", 10, 1, SL_STORE_REDIS);
    add_limit(rt, "b", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "c", 10, 1, SL_STORE_REDIS);
    script(&redis, "c", SL_STORE_OK, deny(10, 1000000, 1000000));
    redis.async = true;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    peer_addr.sin_family = AF_INET;
    struct result r;
    start(&r, "GET", "/", NULL, 0);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_uint_eq(redis.ndeferred, 2);
    fake_flush(&redis);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_str_eq(r.body, "{\"error\":\"rate_limited\",\"route\":\"all\",\"limit\":\"c\","
                             "\"retry_after\":1}");
    done(&r);
}
END_TEST

/* A verdict callback that starts the next request, as a pipelining connection does. */
static struct result nested_result;
static int nested_started;

static void start_next(void *arg, struct sl_verdict *v)
{
    on_verdict(arg, v);
    if (nested_started++ == 0)
        start(&nested_result, "GET", "/b/nested", NULL, 0);
}

START_TEST(reentrant_decisions)
{
    static struct sl_key_source path_key = {SL_KEY_PATH, NULL, 0};
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    struct sl_limit *l = add_limit(rt, "per_path", 10, 1, SL_STORE_REDIS);
    l->keys = &path_key;
    l = add_limit(rt, "per_path_too", 10, 1, SL_STORE_REDIS);
    l->keys = &path_key;
    redis.async = true;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    peer_addr.sin_family = AF_INET;

    /* Request A waits on Redis. */
    struct result a;
    struct sl_request req = {"GET", 3, "/a/first", 8, NULL, 0, (struct sockaddr *)&peer_addr, NULL, 0};
    memset(&a, 0, sizeof a);
    a.v.headers = &a.vheaders;
    a.v.body = &a.vbody;
    sl_engine_decide(engine, &cfg, &req, &a.v, start_next, &a);
    ck_assert_int_eq(a.calls, 0);

    /* Request B's first decision flushes A, whose callback starts a nested request while B
     * still has a limit to issue: B's second key must still be B's path. */
    redis.flush_on_decide = true;
    struct result b;
    start(&b, "GET", "/a/second", NULL, 0);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(nested_started, 1);
    ck_assert_uint_eq(redis.ncalls, 6);
    ck_assert_str_eq(redis.keys[0], "/a/first");
    ck_assert_str_eq(redis.keys[1], "/a/first");
    ck_assert_str_eq(redis.keys[2], "/a/second");
    ck_assert_str_eq(redis.keys[3], "/b/nested");
    ck_assert_str_eq(redis.keys[4], "/b/nested");
    ck_assert_str_eq(redis.keys[5], "/a/second");
    redis.flush_on_decide = false;
    fake_flush(&redis);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(nested_result.calls, 1);
    ck_assert_int_eq(b.v.outcome, SL_OUTCOME_ALLOWED);
    done(&a);
    done(&b);
    done(&nested_result);
}
END_TEST

START_TEST(long_keys_grow_the_buffers)
{
    static struct sl_key_source hkey = {SL_KEY_HEADER, "X-Big", 5};
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    struct sl_limit *l = add_limit(rt, "big", 10, 1, SL_STORE_MEMORY);
    l->keys = &hkey;
    char big[100];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct sl_header hs[] = {{"X-Big", 5, big, strlen(big)}};
    char target[2000] = "/";
    memset(target + 1, 'p', sizeof target - 2);
    target[sizeof target - 1] = '\0';
    struct result r;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    peer_addr.sin_family = AF_INET;
    start(&r, "GET", target, hs, 1);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_str_eq(memory.keys[0], big);
    done(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine_failures");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, failure_open_admits);
    tcase_add_test(tc, failure_closed_answers_503);
    tcase_add_test(tc, failure_local_asks_memory);
    tcase_add_test(tc, failure_local_after_a_late_answer);
    tcase_add_test(tc, late_answers_finish_once);
    tcase_add_test(tc, late_answers_reach_the_heavy_hitters);
    tcase_add_test(tc, reentrant_decisions);
    tcase_add_test(tc, long_keys_grow_the_buffers);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
