/* The Redis store's scripts against a real redis-server: each algorithm's decisions (and
 * that they match the C algorithms), the key layout, and the over-limit cache. One loop
 * turn's decisions are in test_store_redis_batches.c. */
#include "support/redis_fixture.h"
#include "support/run_suite.h"

/* --- the scripts' decisions ------------------------------------------------------------- */

START_TEST(test_scripts_embedded)
{
    ck_assert_ptr_eq(sl_lua_script_find("fixed_window"), sl_lua_fixed_window);
    ck_assert_ptr_eq(sl_lua_script_find("leaky_bucket"), sl_lua_leaky_bucket);
    ck_assert_ptr_null(sl_lua_script_find("nope"));
    ck_assert_ptr_nonnull(strstr(sl_lua_token_bucket, "redis.call('TIME')"));
    for (const struct sl_algorithm_ops *const *a = sl_algorithm_all(); *a; a++)
        ck_assert_msg(sl_lua_script_find((*a)->name), "no script for %s", (*a)->name);
    /* The tags of the Redis keys, as SPEC.md section 3 fixes them. */
    ck_assert_str_eq(sl_algorithm_find("fixed_window")->tag, "fw");
    ck_assert_str_eq(sl_algorithm_find("sliding_window")->tag, "sw");
    ck_assert_str_eq(sl_algorithm_find("sliding_window_counter")->tag, "swc");
    ck_assert_str_eq(sl_algorithm_find("token_bucket")->tag, "tb");
    ck_assert_str_eq(sl_algorithm_find("leaky_bucket")->tag, "lb");
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
    ck_assert_int_eq(command_int("ZCARD %s", "sluice:r1:l1:sw:a"), 3);
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
    struct sl_store *memory = sl_store_memory_new(100, UINT64_MAX, memory_clock);
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
    redisReply *ttl = redisCommand(c, "PTTL %s", "sluice:r1:l1:fw:10.0.0.1");
    ck_assert_int_eq(ttl->type, REDIS_REPLY_INTEGER);
    ck_assert_int_gt(ttl->integer, 0);
    ck_assert_int_le(ttl->integer, 60000);
    freeReplyObject(ttl);
    redisReply *e = redisCommand(c, "EXISTS %b", "sluice:r1:l1:fw:a b\0c", (size_t)21);
    ck_assert_int_eq(e->integer, 1);
    freeReplyObject(e);
    redisFree(c);
    sl_store_free(store);
}
END_TEST

/* The arguments of the last command Redis ran, as its slow log (set to log every command)
 * recorded them, into `args` (at most `max`); returns how many. */
static size_t last_command_args(redisContext *c, char (*args)[64], size_t max)
{
    redisReply *log = redisCommand(c, "SLOWLOG GET 1");
    ck_assert_int_eq(log->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(log->elements, 1);
    const redisReply *all = log->element[0]->element[3];
    size_t n = all->elements;
    ck_assert_uint_le(n, max);
    for (size_t i = 0; i < n; i++)
        snprintf(args[i], sizeof args[i], "%s", all->element[i]->str);
    freeReplyObject(log);
    return n;
}

/* Each script gets the arguments up to the last one it reads: N, P, need, take, burst, delay,
 * member (the prelude reads the first four), less those at the end that hold their default
 * (need 1, take = need, burst = N). */
START_TEST(test_arguments_up_to_the_last_read)
{
    static const struct sl_units one = {1, 1}, cost = {3, 3}, charge = {0, 7}, only = {1, 0};
    static const struct {
        const char *alg;
        uint64_t burst;
        const struct sl_units *units;
        size_t args;             /* EVALSHA sha 1 key, then ARGV */
        const char *last;        /* the last argument sent */
    } want[] = {{"fixed_window", 0, &one, 6, "60000000"},
                {"fixed_window", 0, &cost, 7, "3"},
                {"fixed_window", 0, &charge, 8, "7"},
                {"fixed_window", 0, &only, 8, "0"},
                {"sliding_window_counter", 0, &one, 6, "60000000"},
                {"token_bucket", 5, &one, 6, "60000000"},
                {"token_bucket", 5, &cost, 7, "3"},
                {"token_bucket", 2, &one, 9, "2"},
                {"leaky_bucket", 5, &one, 10, "0"},
                {"sliding_window", 0, &one, 11, NULL}};
    struct sl_store *store = store_new(1000, NULL);
    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    freeReplyObject(redisCommand(c, "CONFIG SET slowlog-log-slower-than 0"));
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        struct sl_limit lim = limit(want[i].alg, 5, 60 * S, want[i].burst, false);
        freeReplyObject(redisCommand(c, "SLOWLOG RESET"));
        struct result r = {0};
        /* One key value: the tag keeps the algorithms apart. */
        sl_store_decide_units(store, &lim, "k", 1, want[i].units, on_result, &r);
        ck_assert(run_until_called(&r.calls, 5 * S));
        ck_assert_int_eq(r.status, SL_STORE_OK);
        char args[16][64];
        size_t n = last_command_args(c, args, 16);
        ck_assert_msg(n == want[i].args, "case %zu: %zu arguments", i, n);
        ck_assert_str_eq(args[4], "5"); /* ARGV[1]: N */
        if (want[i].last)
            ck_assert_str_eq(args[n - 1], want[i].last);
        char key[64];
        snprintf(key, sizeof key, "sluice:r1:l1:%s:k", lim.alg->tag);
        ck_assert_int_eq(command_int("EXISTS %s", key), 1);
    }
    freeReplyObject(redisCommand(c, "CONFIG SET slowlog-log-slower-than 10000"));
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
    snprintf(key, sizeof key, "sluice:r1:l1:sw:%s", hex);
    ck_assert_int_eq(command_int("EXISTS %s", key), 1);
    /* 200 bytes is still used as is. */
    value[200] = '\0';
    decide_ok(store, &lim, value);
    char plain[400];
    snprintf(plain, sizeof plain, "sluice:r1:l1:sw:%s", value);
    ck_assert_int_eq(command_int("EXISTS %s", plain), 1);
    sl_store_free(store);
}
END_TEST

/* --- the over-limit cache ---------------------------------------------------------------- */

static struct sl_store *store_with_deny_cache(uint64_t timeout_ms)
{
    struct sl_redis_config cfg = config(timeout_ms, NULL);
    cfg.deny_cache = 100;
    struct sl_store *store = sl_store_redis_new(base, &cfg, 0, NULL);
    ck_assert_ptr_nonnull(store);
    ck_assert(run_until_connected(store, true, 5 * S));
    return store;
}

START_TEST(test_deny_cache_answers_without_redis)
{
    struct sl_store *store = store_with_deny_cache(1000);
    struct sl_limit lim = limit("fixed_window", 2, HOUR, 0, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    struct sl_decision first = decide_ok(store, &lim, "a");
    ck_assert(!first.allowed);
    long long before = evalsha_calls();
    uint64_t last = first.retry_after_us;
    for (int i = 0; i < 5; i++) {
        /* Answered inside decide(), with the same denial counted down. */
        struct result r = {0};
        sl_store_decide(store, &lim, "a", 1, on_result, &r);
        ck_assert_int_eq(r.calls, 1);
        ck_assert_int_eq(r.status, SL_STORE_OK);
        ck_assert(!r.d.allowed);
        ck_assert_uint_eq(r.d.limit, 2);
        ck_assert_uint_eq(r.d.remaining, 0);
        ck_assert_uint_le(r.d.retry_after_us, last);
        ck_assert_uint_gt(r.d.retry_after_us, 0);
        ck_assert_uint_le(r.d.reset_us, first.reset_us);
        last = r.d.retry_after_us;
    }
    ck_assert_int_eq(evalsha_calls(), before);
    /* Another key, and the same key under another rate, still go to Redis. */
    ck_assert(decide_ok(store, &lim, "b").allowed);
    struct sl_limit wider = limit("fixed_window", 5, HOUR, 0, false);
    ck_assert(decide_ok(store, &wider, "a").allowed);
    ck_assert_int_eq(evalsha_calls(), before + 2);
    sl_store_free(store);
}
END_TEST

START_TEST(test_deny_cache_frees_with_the_quota)
{
    /* One token per 300 ms: denied right after the first, admitted once the token is back. */
    struct sl_store *store = store_with_deny_cache(1000);
    struct sl_limit lim = limit("token_bucket", 1, 300 * MS, 1, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    struct sl_decision d = decide_ok(store, &lim, "a");
    ck_assert(!d.allowed);
    uint64_t asked = sl_clock_mono_us();
    ck_assert_uint_gt(d.retry_after_us, 0);
    for (;;) {
        struct result r = decide(store, &lim, "a");
        ck_assert_int_eq(r.status, SL_STORE_OK);
        if (r.d.allowed)
            break;
        ck_assert_uint_le(r.at_us - asked, 2 * S);
        struct timeval tv = {0, 2000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    /* Admitted no later than Redis frees the token, give or take scheduling. */
    ck_assert_uint_le(sl_clock_mono_us() - asked, d.retry_after_us + 200 * MS);
    sl_store_free(store);
}
END_TEST

START_TEST(test_deny_cache_ignores_late_denials)
{
    /* A denial that arrives after its decision timed out is not held: its limit may be gone
     * with a reload by then. */
    struct sl_store *store = store_with_deny_cache(50);
    struct sl_limit lim = limit("fixed_window", 1, HOUR, 0, false);
    ck_assert(decide_ok(store, &lim, "a").allowed);
    pause_server(300);
    ck_assert_int_eq(decide(store, &lim, "a").status, SL_STORE_ERR_TIMEOUT);
    struct timeval tv = {0, 600000}; /* the pause ends; the late denial is read */
    event_base_loopexit(base, &tv);
    event_base_dispatch(base);
    long long before = evalsha_calls();
    struct sl_decision d = decide_ok(store, &lim, "a");
    ck_assert(!d.allowed);
    ck_assert_int_eq(evalsha_calls(), before + 1);
    sl_store_free(store);
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
    tcase_add_test(tc, test_arguments_up_to_the_last_read);
    tcase_add_test(tc, test_long_key_digest);
    tcase_add_test(tc, test_deny_cache_answers_without_redis);
    tcase_add_test(tc, test_deny_cache_frees_with_the_quota);
    tcase_add_test(tc, test_deny_cache_ignores_late_denials);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
