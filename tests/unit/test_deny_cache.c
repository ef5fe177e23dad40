/* The local over-limit cache on an injected clock: a denial is held exactly until
 * sent + retry_after and counts down meanwhile, under the limit's full identity only, and the
 * entry count never passes the bound (least recently used first out). */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "sluice/deny_cache.h"
#include "support/run_suite.h"

/* The limit's own rate, as the Redis store passes it. */
#define QUOTA(lim) (&(struct sl_quota){(lim)->count, (lim)->period_us, (lim)->burst})

#define MS 1000ull
#define S 1000000ull

static struct sl_route route = {.name = (char *)"r1"};

static struct sl_limit limit(const char *alg, uint64_t n, uint64_t p)
{
    struct sl_limit l = {.name = (char *)"l1",
                         .route = &route,
                         .alg = sl_algorithm_find(alg),
                         .count = n,
                         .period_us = p,
                         .burst = n,
                         .store = SL_STORE_REDIS};
    ck_assert_ptr_nonnull(l.alg);
    return l;
}

static struct sl_decision denial(uint64_t retry_us, uint64_t reset_us)
{
    return (struct sl_decision){.allowed = false,
                                .limit = 5,
                                .remaining = 0,
                                .reset_us = reset_us,
                                .retry_after_us = retry_us};
}

/* Whether a live denial is held, filling `out` as the cache answers it. */
static bool held_need(struct sl_deny_cache *c, const struct sl_limit *lim, const char *key,
                      size_t len, uint64_t need, uint64_t now, struct sl_decision *out)
{
    void *probe = NULL;
    return sl_deny_cache_find(c, lim, QUOTA(lim), key, len, need, now, out, &probe) == SL_DENY_HELD;
}

static bool held_out(struct sl_deny_cache *c, const struct sl_limit *lim, const char *key,
                     size_t len, uint64_t now, struct sl_decision *out)
{
    return held_need(c, lim, key, len, 1, now, out);
}

static bool held(struct sl_deny_cache *c, const struct sl_limit *lim, const char *key, uint64_t now)
{
    struct sl_decision d;
    return held_out(c, lim, key, strlen(key), now, &d);
}

static enum sl_deny_state state_of(struct sl_deny_cache *c, const struct sl_limit *lim,
                                   const char *key, uint64_t now, void **probe)
{
    struct sl_decision d;
    *probe = NULL;
    return sl_deny_cache_find(c, lim, QUOTA(lim), key, strlen(key), 1, now, &d, probe);
}

START_TEST(test_held_until_retry_after_exactly)
{
    struct sl_deny_cache *c = sl_deny_cache_new(16);
    struct sl_limit lim = limit("fixed_window", 5, 60 * S);
    struct sl_decision d = denial(500 * MS, 800 * MS);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 10 * S, &d);
    ck_assert_uint_eq(sl_deny_cache_count(c), 1);

    struct sl_decision out;
    ck_assert(held_out(c, &lim, "a", 1, 10 * S, &out));
    ck_assert(!out.allowed);
    ck_assert_uint_eq(out.limit, 5);
    ck_assert_uint_eq(out.remaining, 0);
    ck_assert_uint_eq(out.retry_after_us, 500 * MS);
    ck_assert_uint_eq(out.reset_us, 800 * MS);
    ck_assert_uint_eq(out.delay_us, 0);

    /* Counted down from the send, to the last microsecond. */
    ck_assert(held_out(c, &lim, "a", 1, 10 * S + 500 * MS - 1, &out));
    ck_assert_uint_eq(out.retry_after_us, 1);
    ck_assert_uint_eq(out.reset_us, 300 * MS + 1);
    ck_assert(!held_out(c, &lim, "a", 1, 10 * S + 500 * MS, &out));
    /* Run out, it stays until an answer replaces it, so that one request asks Redis. */
    void *probe;
    ck_assert_int_eq(state_of(c, &lim, "a", 10 * S + 500 * MS, &probe), SL_DENY_EXPIRED);
    ck_assert_uint_eq(sl_deny_cache_count(c), 1);
    sl_deny_cache_forget(c, &lim, QUOTA(&lim), "a", 1);
    ck_assert_uint_eq(sl_deny_cache_count(c), 0);
    ck_assert_int_eq(state_of(c, &lim, "a", 10 * S + 500 * MS, &probe), SL_DENY_UNKNOWN);
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_only_denials_with_a_retry_after)
{
    struct sl_deny_cache *c = sl_deny_cache_new(16);
    struct sl_limit lim = limit("token_bucket", 5, S);
    struct sl_decision allowed = {.allowed = true, .limit = 5, .remaining = 2, .reset_us = S};
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 0, &allowed);
    struct sl_decision none = denial(0, S);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "b", 1, 1, 0, &none);
    ck_assert_uint_eq(sl_deny_cache_count(c), 0);
    ck_assert(!held(c, &lim, "a", 0));
    ck_assert(!held(c, &lim, "b", 0));
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_identity_is_the_whole_limit)
{
    struct sl_deny_cache *c = sl_deny_cache_new(64);
    struct sl_limit lim = limit("sliding_window", 5, 60 * S);
    struct sl_decision d = denial(30 * S, 60 * S);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 0, &d);

    /* The same limit reloaded into a new configuration: equal by value, still held. */
    struct sl_route route2 = {.name = (char *)"r1"};
    struct sl_limit same = lim;
    same.route = &route2;
    same.name = (char *)"l1";
    ck_assert(held(c, &same, "a", S));

    /* Any change a reload could make to the limit asks Redis again. */
    struct sl_limit other = lim;
    other.count = 6;
    ck_assert(!held(c, &other, "a", S));
    other = lim;
    other.period_us = 30 * S;
    ck_assert(!held(c, &other, "a", S));
    other = lim;
    other.burst = 9;
    ck_assert(!held(c, &other, "a", S));
    other = lim;
    other.delay = true;
    ck_assert(!held(c, &other, "a", S));
    other = lim;
    other.alg = sl_algorithm_find("sliding_window_counter");
    ck_assert(!held(c, &other, "a", S));
    other = lim;
    other.name = (char *)"l2";
    ck_assert(!held(c, &other, "a", S));
    struct sl_route route3 = {.name = (char *)"r2"};
    other = lim;
    other.route = &route3;
    ck_assert(!held(c, &other, "a", S));
    /* Names and key cannot run into each other. */
    struct sl_route route4 = {.name = (char *)"r1l"};
    other = lim;
    other.route = &route4;
    other.name = (char *)"1";
    ck_assert(!held(c, &other, "a", S));

    ck_assert(!held(c, &lim, "b", S));
    ck_assert(!held(c, &lim, "", S));
    ck_assert(held(c, &lim, "a", S));
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_binary_keys)
{
    struct sl_deny_cache *c = sl_deny_cache_new(16);
    struct sl_limit lim = limit("fixed_window", 5, 60 * S);
    struct sl_decision d = denial(S, S);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a\0b", 3, 1, 0, &d);
    struct sl_decision out;
    ck_assert(held_out(c, &lim, "a\0b", 3, 1, &out));
    ck_assert(!held_out(c, &lim, "a\0c", 3, 1, &out));
    ck_assert(!held_out(c, &lim, "a", 1, 1, &out));
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_later_end_stands)
{
    struct sl_deny_cache *c = sl_deny_cache_new(16);
    struct sl_limit lim = limit("token_bucket", 5, S);
    struct sl_decision d = denial(500 * MS, 500 * MS);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 0, &d);
    d = denial(100 * MS, 100 * MS);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 10 * MS, &d); /* ends at 110 ms: earlier */
    ck_assert(held(c, &lim, "a", 499 * MS));
    d = denial(600 * MS, 600 * MS);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 100 * MS, &d); /* ends at 700 ms: later */
    ck_assert(held(c, &lim, "a", 699 * MS));
    ck_assert(!held(c, &lim, "a", 700 * MS));
    ck_assert_uint_eq(sl_deny_cache_count(c), 1); /* run out, kept for one request to ask */
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_one_probe_per_run_out_denial)
{
    struct sl_deny_cache *c = sl_deny_cache_new(16);
    struct sl_limit lim = limit("token_bucket", 10, S);
    struct sl_decision d = denial(100 * MS, 100 * MS);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 0, &d);
    int token1, token2;
    void *probe;

    /* Live: held, and a probe cannot be registered for it in a way that shows. */
    ck_assert_int_eq(state_of(c, &lim, "a", 99 * MS, &probe), SL_DENY_HELD);
    /* Run out: the first finder asks and registers; the next ones see it asking. */
    ck_assert_int_eq(state_of(c, &lim, "a", 100 * MS, &probe), SL_DENY_EXPIRED);
    sl_deny_cache_probe(c, &lim, QUOTA(&lim), "a", 1, &token1);
    ck_assert_int_eq(state_of(c, &lim, "a", 101 * MS, &probe), SL_DENY_PROBING);
    ck_assert_ptr_eq(probe, &token1);
    /* Another key, and the same key under another limit, are not waiting on it. */
    ck_assert_int_eq(state_of(c, &lim, "b", 101 * MS, &probe), SL_DENY_UNKNOWN);
    struct sl_limit other = limit("token_bucket", 11, S);
    ck_assert_int_eq(state_of(c, &other, "a", 101 * MS, &probe), SL_DENY_UNKNOWN);

    /* Denied again: the new denial is held and the mark is gone. */
    struct sl_decision again = denial(100 * MS, 100 * MS);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 100 * MS, &again);
    ck_assert_int_eq(state_of(c, &lim, "a", 150 * MS, &probe), SL_DENY_HELD);
    ck_assert_int_eq(state_of(c, &lim, "a", 200 * MS, &probe), SL_DENY_EXPIRED);
    ck_assert_ptr_null(probe);

    /* Admitted (or failed): the entry goes, every request asks Redis again. */
    sl_deny_cache_probe(c, &lim, QUOTA(&lim), "a", 1, &token2);
    ck_assert_int_eq(state_of(c, &lim, "a", 201 * MS, &probe), SL_DENY_PROBING);
    ck_assert_ptr_eq(probe, &token2);
    sl_deny_cache_forget(c, &lim, QUOTA(&lim), "a", 1);
    ck_assert_int_eq(state_of(c, &lim, "a", 202 * MS, &probe), SL_DENY_UNKNOWN);
    ck_assert_uint_eq(sl_deny_cache_count(c), 0);
    /* Registering for a key with nothing held does nothing. */
    sl_deny_cache_probe(c, &lim, QUOTA(&lim), "a", 1, &token1);
    ck_assert_int_eq(state_of(c, &lim, "a", 203 * MS, &probe), SL_DENY_UNKNOWN);
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_reused_entry_carries_no_probe)
{
    struct sl_deny_cache *c = sl_deny_cache_new(1);
    struct sl_limit lim = limit("fixed_window", 5, S);
    struct sl_decision d = denial(10 * MS, S);
    int token;
    void *probe;
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 0, &d);
    ck_assert_int_eq(state_of(c, &lim, "a", 10 * MS, &probe), SL_DENY_EXPIRED);
    sl_deny_cache_probe(c, &lim, QUOTA(&lim), "a", 1, &token);
    /* A full cache makes room with that entry: the new key must not inherit the mark. */
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "b", 1, 1, 10 * MS, &d);
    ck_assert_int_eq(state_of(c, &lim, "a", 11 * MS, &probe), SL_DENY_UNKNOWN);
    ck_assert_int_eq(state_of(c, &lim, "b", 20 * MS, &probe), SL_DENY_EXPIRED);
    ck_assert_ptr_null(probe);
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_need_of_the_denial)
{
    struct sl_deny_cache *c = sl_deny_cache_new(16);
    struct sl_limit lim = limit("token_bucket", 5, S);
    struct sl_decision d = denial(500 * MS, 500 * MS), out;
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 5, 0, &d);
    ck_assert(!held_need(c, &lim, "a", 1, 4, 10 * MS, &out));
    ck_assert(!held_need(c, &lim, "a", 1, 0, 10 * MS, &out));
    ck_assert_uint_eq(sl_deny_cache_count(c), 1); /* kept for larger asks */
    ck_assert(held_need(c, &lim, "a", 1, 5, 10 * MS, &out));
    ck_assert(held_need(c, &lim, "a", 1, 9, 10 * MS, &out));
    ck_assert_uint_eq(out.retry_after_us, 490 * MS);
    /* A smaller need denied until earlier replaces it: both facts hold, the new one is
     * about more requests. */
    d = denial(100 * MS, 100 * MS);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 2, 20 * MS, &d);
    ck_assert(held_need(c, &lim, "a", 1, 2, 30 * MS, &out));
    ck_assert_uint_eq(out.retry_after_us, 90 * MS);
    /* A larger need ending no later says less: the held one stands. */
    d = denial(50 * MS, 50 * MS);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 7, 30 * MS, &d);
    ck_assert(held_need(c, &lim, "a", 1, 2, 40 * MS, &out));
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_lru_bound)
{
    struct sl_deny_cache *c = sl_deny_cache_new(3);
    struct sl_limit lim = limit("fixed_window", 5, 60 * S);
    struct sl_decision d = denial(60 * S, 60 * S);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "a", 1, 1, 0, &d);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "b", 1, 1, 0, &d);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "c", 1, 1, 0, &d);
    ck_assert(held(c, &lim, "a", 1)); /* a is now the most recently used; b the least */
    sl_deny_cache_add(c, &lim, QUOTA(&lim), "d", 1, 1, 2, &d);
    ck_assert_uint_eq(sl_deny_cache_count(c), 3);
    ck_assert(!held(c, &lim, "b", 3));
    ck_assert(held(c, &lim, "a", 3));
    ck_assert(held(c, &lim, "c", 3));
    ck_assert(held(c, &lim, "d", 3));
    /* A key longer than the entry it replaces. */
    char longkey[200];
    memset(longkey, 'k', sizeof longkey);
    sl_deny_cache_add(c, &lim, QUOTA(&lim), longkey, sizeof longkey, 1, 4, &d);
    ck_assert_uint_eq(sl_deny_cache_count(c), 3);
    ck_assert(!held(c, &lim, "a", 5));
    struct sl_decision out;
    ck_assert(held_out(c, &lim, longkey, sizeof longkey, 5, &out));
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_many_keys_within_the_bound)
{
    enum { MAX = 1000 };
    struct sl_deny_cache *c = sl_deny_cache_new(MAX);
    struct sl_limit lim = limit("fixed_window", 5, 60 * S);
    struct sl_decision d = denial(60 * S, 60 * S);
    char key[32];
    for (int i = 0; i < 3 * MAX; i++) {
        int n = snprintf(key, sizeof key, "client-%d", i);
        sl_deny_cache_add(c, &lim, QUOTA(&lim), key, (size_t)n, 1, (uint64_t)i, &d);
        ck_assert_uint_le(sl_deny_cache_count(c), MAX);
    }
    ck_assert_uint_eq(sl_deny_cache_count(c), MAX);
    for (int i = 0; i < 3 * MAX; i++) {
        snprintf(key, sizeof key, "client-%d", i);
        ck_assert_msg(held(c, &lim, key, 3 * MAX) == (i >= 2 * MAX), "key %d", i);
    }
    sl_deny_cache_free(c);
}
END_TEST

START_TEST(test_expired_entries_make_room)
{
    struct sl_deny_cache *c = sl_deny_cache_new(100);
    struct sl_limit lim = limit("fixed_window", 5, 60 * S);
    struct sl_decision brief = denial(S, S);
    char key[32];
    for (int i = 0; i < 10; i++) {
        int n = snprintf(key, sizeof key, "old-%d", i);
        sl_deny_cache_add(c, &lim, QUOTA(&lim), key, (size_t)n, 1, 0, &brief);
    }
    /* Past their end, each new denial takes expired ones off the cold end. */
    for (int i = 0; i < 5; i++) {
        int n = snprintf(key, sizeof key, "new-%d", i);
        sl_deny_cache_add(c, &lim, QUOTA(&lim), key, (size_t)n, 1, 2 * S, &brief);
    }
    ck_assert_uint_eq(sl_deny_cache_count(c), 5);
    ck_assert(held(c, &lim, "new-0", 2 * S));
    sl_deny_cache_free(c);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("deny_cache");
    TCase *tc = tcase_create("deny_cache");
    tcase_add_test(tc, test_held_until_retry_after_exactly);
    tcase_add_test(tc, test_only_denials_with_a_retry_after);
    tcase_add_test(tc, test_identity_is_the_whole_limit);
    tcase_add_test(tc, test_binary_keys);
    tcase_add_test(tc, test_later_end_stands);
    tcase_add_test(tc, test_need_of_the_denial);
    tcase_add_test(tc, test_one_probe_per_run_out_denial);
    tcase_add_test(tc, test_reused_entry_carries_no_probe);
    tcase_add_test(tc, test_lru_bound);
    tcase_add_test(tc, test_many_keys_within_the_bound);
    tcase_add_test(tc, test_expired_entries_make_room);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
