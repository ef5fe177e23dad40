/* One loop turn's decisions against a real redis-server: those on one limit, on one key or on
 * many, go as one call of the batch script, with the decisions and the state one by one would
 * have given; a lone decision goes at once. */
#include "../../src/store/redis_internal.h"
#include "sluice/lua_scripts.h"
#include "support/redis_fixture.h"
#include "support/run_suite.h"

/* --- one loop turn's decisions on one key, in one call -------------------------------------- */

#define TURN 8

/* Decisions on `key` made one after another, each waited for. */
static void decide_one_by_one(struct sl_store *store, const struct sl_limit *lim, const char *key,
                              struct sl_decision *out)
{
    for (int i = 0; i < TURN; i++)
        out[i] = decide_ok(store, lim, key);
}

START_TEST(test_one_turn_on_one_key_is_one_call)
{
    static const struct {
        const char *alg;
        uint64_t burst;
        unsigned admitted;
    } cases[] = {{"fixed_window", 0, 5},
                 {"sliding_window", 0, 5},
                 {"sliding_window_counter", 0, 5},
                 {"token_bucket", 5, 5},
                 {"leaky_bucket", 2, 3}};
    struct sl_store *store = store_new(1000, NULL);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        struct sl_limit lim = limit(cases[c].alg, 5, HOUR, cases[c].burst, false);
        struct sl_decision apart[TURN];
        decide_one_by_one(store, &lim, "apart", apart);

        /* TURN decisions on one key and one on another, all before the loop runs: the
         * first goes at once (the connection is idle), the others wait for the turn's end
         * and go as one call, "other" among them. */
        struct result together[TURN] = {{0}}, other = {0};
        long long before = evalsha_calls();
        for (int i = 0; i < TURN; i++) {
            sl_store_decide(store, &lim, "together", 8, on_result, &together[i]);
            if (i == 3)
                sl_store_decide(store, &lim, "other", 5, on_result, &other);
        }
        ck_assert(run_until_called(&together[TURN - 1].calls, 5 * S));
        ck_assert(run_until_called(&other.calls, 5 * S));
        ck_assert_int_eq(evalsha_calls() - before, 2);
        ck_assert_int_eq(other.status, SL_STORE_OK);
        ck_assert(other.d.allowed);

        /* In order, exactly as one by one. */
        unsigned admitted = 0;
        for (int i = 0; i < TURN; i++) {
            ck_assert_int_eq(together[i].calls, 1);
            ck_assert_int_eq(together[i].status, SL_STORE_OK);
            ck_assert_msg(together[i].d.allowed == apart[i].allowed, "%s: decision %d differs",
                          cases[c].alg, i);
            ck_assert_uint_eq(together[i].d.remaining, apart[i].remaining);
            ck_assert_uint_eq(together[i].d.limit, 5);
            admitted += together[i].d.allowed;
            if (!together[i].d.allowed)
                ck_assert_uint_gt(together[i].d.retry_after_us, 0);
        }
        ck_assert_uint_eq(admitted, cases[c].admitted);
    }
    /* Each admission in a batch is its own member of the sliding log. */
    ck_assert_int_eq(command_int("ZCARD %s", "sluice:r1:l1:sw:together"), 5);
    /* The state written once at the end of the batch is the one written one by one. */
    redisContext *rc = client();
    redisReply *a = redisCommand(rc, "GET sluice:r1:l1:fw:apart");
    redisReply *t = redisCommand(rc, "GET sluice:r1:l1:fw:together");
    ck_assert_int_eq(a->type, REDIS_REPLY_STRING);
    ck_assert_int_eq(t->type, REDIS_REPLY_STRING);
    double fa[3], ft[3];
    ck_assert(state_of(a->str, a->len, 3, fa));
    ck_assert(state_of(t->str, t->len, 3, ft));
    ck_assert(ft[1] == 5); /* start, count, the window's end */
    ck_assert(ft[0] == fa[0] && ft[1] == fa[1] && ft[2] == fa[2]);
    freeReplyObject(a);
    freeReplyObject(t);
    redisFree(rc);
    long long ttl = command_int("PTTL %s", "sluice:r1:l1:tb:together");
    ck_assert_int_gt(ttl, 0);
    ck_assert_int_le(ttl, (long long)(HOUR / MS));
    sl_store_free(store);
}
END_TEST

/* A turn's decisions on one limit over several keys, interleaved, go as one call and decide
 * each key as one by one would: 3 of each key's 4. */
START_TEST(test_one_turn_on_many_keys_is_one_call)
{
    static const char *const algs[] = {"fixed_window", "sliding_window",
                                       "sliding_window_counter", "token_bucket", "leaky_bucket"};
    enum { KEYS = 3, EACH = 4 };
    struct sl_store *store = store_new(1000, NULL);
    for (size_t c = 0; c < sizeof algs / sizeof algs[0]; c++) {
        struct sl_limit lim = limit(algs[c], 3, HOUR, 2, false);
        struct sl_decision apart[EACH];
        for (int i = 0; i < EACH; i++)
            apart[i] = decide_ok(store, &lim, "apart");
        /* The first goes at once on the idle connection; the rest wait for the turn. */
        struct result warm = {0}, r[KEYS * EACH] = {{0}};
        long long before = evalsha_calls();
        sl_store_decide(store, &lim, "warm", 4, on_result, &warm);
        static const char *const keys[KEYS] = {"ka", "kb", "kc"};
        for (int i = 0; i < KEYS * EACH; i++)
            sl_store_decide(store, &lim, keys[i % KEYS], 2, on_result, &r[i]);
        ck_assert(run_until_called(&r[KEYS * EACH - 1].calls, 5 * S));
        ck_assert_int_eq(evalsha_calls() - before, 2);
        ck_assert_int_eq(warm.status, SL_STORE_OK);
        for (int i = 0; i < KEYS * EACH; i++) {
            const struct sl_decision *want = &apart[i / KEYS];
            ck_assert_int_eq(r[i].calls, 1);
            ck_assert_int_eq(r[i].status, SL_STORE_OK);
            ck_assert_msg(r[i].d.allowed == want->allowed, "%s: decision %d differs", algs[c], i);
            ck_assert_uint_eq(r[i].d.remaining, want->remaining);
            ck_assert_uint_eq(r[i].d.limit, 3);
        }
    }
    /* Each key's sliding log holds its own admissions, each its own member. */
    ck_assert_int_eq(command_int("ZCARD %s", "sluice:r1:l1:sw:kb"), 3);
    sl_store_free(store);
}
END_TEST

/* A key of the wrong type fails its own decision in a batch; the others stand. */
START_TEST(test_a_wrong_key_fails_only_its_decision)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("fixed_window", 5, HOUR, 0, false);
    ck_assert_int_eq(command_int("LPUSH %s x", "sluice:r1:l1:fw:bad"), 1);
    struct result r[4] = {{0}};
    static const char *const keys[] = {"warm", "x", "bad", "y"};
    long long before = evalsha_calls();
    for (int i = 0; i < 4; i++)
        sl_store_decide(store, &lim, keys[i], strlen(keys[i]), on_result, &r[i]);
    ck_assert(run_until_called(&r[3].calls, 5 * S));
    ck_assert_int_eq(evalsha_calls() - before, 2);
    for (int i = 0; i < 4; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, i == 2 ? SL_STORE_ERR_SCRIPT : SL_STORE_OK);
        if (i != 2) {
            ck_assert(r[i].d.allowed);
            ck_assert_uint_eq(r[i].d.remaining, 4);
        }
    }
    ck_assert_int_eq(command_int("LLEN %s", "sluice:r1:l1:fw:bad"), 1);
    sl_store_free(store);
}
END_TEST

/* The scripts and the batch script (which writes the last decision's state) leave the same
 * layout: the algorithm's fields as whole numbers, N as sluice sent it, and the instant the
 * key was set to live until (the window algorithms' last field). */
START_TEST(test_state_is_the_fields_as_doubles)
{
    static const struct {
        const char *alg;
        int fields;
        bool has_n; /* the last field is the N it was written under, else the expiry */
    } cases[] = {{"fixed_window", 3, false},
                 {"sliding_window_counter", 4, false},
                 {"token_bucket", 3, true},
                 {"leaky_bucket", 3, true}};
    struct sl_store *store = store_new(1000, NULL);
    redisContext *rc = client();
    ck_assert_ptr_nonnull(rc);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        /* 7 per 3 seconds: a fraction of a microsecond per unit, so that f is not 0. */
        struct sl_limit lim = limit(cases[c].alg, 7, 3 * S, 5, false);
        decide_ok(store, &lim, "alone");
        struct result r[3] = {{0}};
        for (int i = 0; i < 3; i++)
            sl_store_decide(store, &lim, "batch", 5, on_result, &r[i]);
        ck_assert(run_until_called(&r[2].calls, 5 * S));
        for (int v = 0; v < 2; v++) {
            redisReply *h = redisCommand(rc, "GET sluice:r1:l1:%s:%s", lim.alg->tag,
                                         v ? "batch" : "alone");
            ck_assert_int_eq(h->type, REDIS_REPLY_STRING);
            double f[4];
            ck_assert_msg(state_of(h->str, h->len, cases[c].fields, f), "%s: %zu bytes",
                          cases[c].alg, h->len);
            ck_assert(f[0] > 0); /* an instant or a window's start, in µs */
            if (cases[c].has_n)
                ck_assert(f[2] == 7);
            else /* the window's end, or the next one's when the counters stop weighing */
                ck_assert(f[cases[c].fields - 1] == f[0] + 3 * S * (cases[c].fields - 2));
            freeReplyObject(h);
        }
    }
    redisFree(rc);
    sl_store_free(store);
}
END_TEST

/* A decision on an idle connection is sent at once, not at the turn's end; one made while
 * another is in flight waits for the turn's batch, and the answers keep the order asked.
 * After a turn with a burst on one key, the first decision of a turn waits too. */
START_TEST(test_a_lone_decision_goes_at_once)
{
    struct sl_store *store = store_new(1000, NULL);
    const struct sl_redis_store *s = (const struct sl_redis_store *)store;
    struct sl_limit lim = limit("token_bucket", 5, HOUR, 5, false);
    long long before = evalsha_calls();
    struct result r[3] = {{0}};
    sl_store_decide(store, &lim, "lone", 4, on_result, &r[0]);
    ck_assert_ptr_null(s->turn_head);
    ck_assert(!s->flush_scheduled);
    sl_store_decide(store, &lim, "lone", 4, on_result, &r[1]);
    sl_store_decide(store, &lim, "lone", 4, on_result, &r[2]);
    ck_assert_ptr_nonnull(s->turn_head);
    ck_assert(s->flush_scheduled);
    ck_assert(run_until_called(&r[2].calls, 5 * S));
    ck_assert_int_eq(evalsha_calls() - before, 2); /* the lone one, then the batch */
    for (int i = 0; i < 3; i++) {
        ck_assert_int_eq(r[i].calls, 1);
        ck_assert_int_eq(r[i].status, SL_STORE_OK);
        ck_assert(r[i].d.allowed);
        ck_assert_uint_eq(r[i].d.remaining, 4 - (uint64_t)i);
    }
    /* That was a burst: the first decision of the next turn waits too, so that a key asked
     * in bursts costs one call a turn. */
    before = evalsha_calls();
    struct result burst[2] = {{0}};
    sl_store_decide(store, &lim, "lone", 4, on_result, &burst[0]);
    ck_assert_ptr_nonnull(s->turn_head);
    sl_store_decide(store, &lim, "lone", 4, on_result, &burst[1]);
    ck_assert(run_until_called(&burst[1].calls, 5 * S));
    ck_assert_int_eq(evalsha_calls() - before, 1);
    ck_assert_uint_eq(burst[0].d.remaining, 1);
    ck_assert_uint_eq(burst[1].d.remaining, 0);
    /* A turn with a lone decision ends the bursts: the next one goes at once again. */
    struct result lone = {0}, next = {0};
    sl_store_decide(store, &lim, "other", 5, on_result, &lone);
    ck_assert(run_until_called(&lone.calls, 5 * S));
    sl_store_decide(store, &lim, "other", 5, on_result, &next);
    ck_assert_ptr_null(s->turn_head);
    ck_assert(run_until_called(&next.calls, 5 * S));
    ck_assert_int_eq(next.status, SL_STORE_OK);
    ck_assert_uint_eq(next.d.remaining, 3);
    sl_store_free(store);
}
END_TEST

START_TEST(test_a_batch_after_the_script_cache_is_flushed)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("fixed_window", 3, HOUR, 0, false);
    ck_assert(decide_ok(store, &lim, "warm").allowed);
    redisContext *c = client();
    freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
    redisFree(c);
    struct result r[5] = {{0}};
    for (int i = 0; i < 5; i++)
        sl_store_decide(store, &lim, "k", 1, on_result, &r[i]);
    ck_assert(run_until_called(&r[4].calls, 5 * S));
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(r[i].status, SL_STORE_OK);
        ck_assert(r[i].d.allowed == (i < 3));
    }
    sl_store_free(store);
}
END_TEST

/* A batch on a key an earlier sluice wrote as a hash reads the hash once and writes the
 * string once: a fixed_window hash with 3 of 5 used this day admits 2 of a turn's 4. */
START_TEST(test_a_batch_on_a_hash_written_before)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_limit lim = limit("fixed_window", 5, 24 * HOUR, 0, false);
    redisContext *c = client();
    redisReply *t = redisCommand(c, "TIME");
    unsigned long long now = strtoull(t->element[0]->str, NULL, 10) * S;
    freeReplyObject(t);
    unsigned long long start = now - now % (24 * HOUR);
    ck_assert_msg(now - start < 24 * HOUR - 10 * S, "at a window's end: rerun");
    freeReplyObject(redisCommand(c, "HSET sluice:r1:l1:fw:old s %llu c 3", start));
    /* One decision first, so that the connection is busy and the next four go together. */
    struct result r[5] = {{0}};
    long long before = evalsha_calls();
    for (int i = 0; i < 5; i++)
        sl_store_decide(store, &lim, i ? "old" : "other", i ? 3 : 5, on_result, &r[i]);
    ck_assert(run_until_called(&r[4].calls, 5 * S));
    ck_assert_int_eq(evalsha_calls() - before, 2);
    for (int i = 1; i < 5; i++) {
        ck_assert_int_eq(r[i].status, SL_STORE_OK);
        ck_assert_msg(r[i].d.allowed == (i <= 2), "decision %d", i);
    }
    t = redisCommand(c, "GET sluice:r1:l1:fw:old");
    ck_assert_int_eq(t->type, REDIS_REPLY_STRING);
    double f[3];
    ck_assert(state_of(t->str, t->len, 3, f));
    ck_assert(f[0] == (double)start && f[1] == 5 && f[2] == (double)(start + 24 * HOUR));
    freeReplyObject(t);
    redisFree(c);
    sl_store_free(store);
}
END_TEST

/* A batch runs the prelude once and the algorithm's own part as its decide(); a script
 * without the prelude has no batch. */
START_TEST(test_batch_body_wraps_the_algorithm_after_the_prelude)
{
    const char *body = sl_lua_script_find("token_bucket");
    ck_assert_ptr_nonnull(body);
    char *batch = sl_redis_batch_body(body);
    ck_assert_ptr_nonnull(batch);
    ck_assert_int_eq(memcmp(batch, body, sl_lua_prelude_len), 0);
    const char *decide = batch + sl_lua_prelude_len;
    ck_assert_int_eq(strncmp(decide, "local function decide()\n", 24), 0);
    ck_assert_ptr_nonnull(strstr(decide, body + sl_lua_prelude_len));
    free(batch);
    ck_assert_ptr_null(sl_redis_batch_body("return {1, 0, 0}"));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store_redis_batches");
    TCase *tc = tcase_create("batches");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_one_turn_on_one_key_is_one_call);
    tcase_add_test(tc, test_one_turn_on_many_keys_is_one_call);
    tcase_add_test(tc, test_a_wrong_key_fails_only_its_decision);
    tcase_add_test(tc, test_batch_body_wraps_the_algorithm_after_the_prelude);
    tcase_add_test(tc, test_state_is_the_fields_as_doubles);
    tcase_add_test(tc, test_a_lone_decision_goes_at_once);
    tcase_add_test(tc, test_a_batch_after_the_script_cache_is_flushed);
    tcase_add_test(tc, test_a_batch_on_a_hash_written_before);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
