/* The memory store: key identity, expiry, LRU eviction, gauges, and threads sharing it. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/store_memory.h"
#include "support/run_suite.h"

static _Atomic uint64_t fake_now;

static uint64_t fake_clock(void)
{
    return atomic_load(&fake_now);
}

struct result {
    int calls;
    enum sl_store_status status;
    struct sl_decision d;
};

static void on_decision(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    struct result *r = arg;
    r->calls++;
    r->status = status;
    if (status == SL_STORE_OK)
        r->d = *d;
}

static struct sl_decision decide(struct sl_store *store, const struct sl_limit *lim,
                                 const char *key, size_t key_len)
{
    struct result r = {0};
    sl_store_decide(store, lim, key, key_len, on_decision, &r);
    ck_assert_int_eq(r.calls, 1); /* before returning */
    ck_assert_int_eq(r.status, SL_STORE_OK);
    return r.d;
}

static bool allowed(struct sl_store *store, const struct sl_limit *lim, const char *key)
{
    return decide(store, lim, key, strlen(key)).allowed;
}

static struct sl_route route_api = {.name = "api"};

static struct sl_limit make_limit(const char *alg, uint64_t count, uint64_t period_us)
{
    struct sl_limit lim = {
        .name = "per_ip",
        .route = &route_api,
        .alg = sl_algorithm_find(alg),
        .count = count,
        .period_us = period_us,
        .burst = count,
        .delay = true,
    };
    ck_assert_ptr_nonnull(lim.alg);
    return lim;
}

static void setup(void)
{
    atomic_store(&fake_now, 1000000);
}

START_TEST(test_fresh_key_and_gauge)
{
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    ck_assert_ptr_nonnull(store);
    ck_assert_str_eq(store->ops->name, "memory");
    struct sl_limit lim = make_limit("fixed_window", 3, 1000000);
    ck_assert_uint_eq(sl_store_memory_keys(store), 0);
    struct sl_decision d = decide(store, &lim, "10.0.0.1", 8);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.limit, 3);
    ck_assert_uint_eq(d.remaining, 2);
    ck_assert_uint_eq(sl_store_memory_keys(store), 1);
    ck_assert_uint_eq(decide(store, &lim, "10.0.0.1", 8).remaining, 1);
    ck_assert_uint_eq(decide(store, &lim, "10.0.0.2", 8).remaining, 2);
    ck_assert_uint_eq(sl_store_memory_keys(store), 2);
    ck_assert_uint_eq(sl_store_memory_evictions(store), 0);
    sl_store_free(store);
}
END_TEST

START_TEST(test_expired_key_is_fresh_and_reclaimed)
{
    struct sl_store *store = sl_store_memory_new(10, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("token_bucket", 2, 1000000);
    ck_assert(allowed(store, &lim, "a"));
    ck_assert(allowed(store, &lim, "a"));
    ck_assert(!allowed(store, &lim, "a"));
    /* The bucket is full again 1 s after the last request: the key expired. */
    atomic_fetch_add(&fake_now, 1000000);
    struct sl_decision d = decide(store, &lim, "a", 1);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 1);
    /* Idle past expiry, then a new key arrives: the expired one is reclaimed, not evicted. */
    atomic_fetch_add(&fake_now, 5000000);
    ck_assert(allowed(store, &lim, "b"));
    ck_assert_uint_eq(sl_store_memory_keys(store), 1);
    ck_assert_uint_eq(sl_store_memory_evictions(store), 0);
    sl_store_free(store);
}
END_TEST

START_TEST(test_time_never_goes_back)
{
    struct sl_store *store = sl_store_memory_new(10, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("fixed_window", 1, 1000000);
    atomic_store(&fake_now, 5000000);
    ck_assert(allowed(store, &lim, "a"));
    /* A clock read from before the last decision must not reopen the previous window. */
    atomic_store(&fake_now, 4999999);
    ck_assert(!allowed(store, &lim, "a"));
    sl_store_free(store);
}
END_TEST

START_TEST(test_identity_kept_across_equal_limits)
{
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("fixed_window", 2, 60000000);
    ck_assert(allowed(store, &lim, "k"));
    ck_assert(allowed(store, &lim, "k"));

    /* A reloaded configuration: equal names and rate in new memory share the state. */
    char route_name[] = "api", limit_name[] = "per_ip";
    struct sl_route reloaded_route = {.name = route_name};
    struct sl_limit reloaded = lim;
    reloaded.route = &reloaded_route;
    reloaded.name = limit_name;
    reloaded.rate_text = "2/1m";
    ck_assert(!allowed(store, &reloaded, "k"));

    /* Any change to the rate (unless the limit remembers the earlier one: test_rate_change),
     * algorithm, names or key starts afresh. */
    struct sl_limit other = lim;
    other.count = 3;
    ck_assert(allowed(store, &other, "k"));
    other = lim;
    other.period_us = 60000001;
    ck_assert(allowed(store, &other, "k"));
    other = lim;
    other.alg = sl_algorithm_find("sliding_window");
    ck_assert(allowed(store, &other, "k"));
    other = lim;
    other.name = "per_user";
    ck_assert(allowed(store, &other, "k"));
    struct sl_route login = {.name = "login"};
    other = lim;
    other.route = &login;
    ck_assert(allowed(store, &other, "k"));
    /* Names and key are not run together: ("api", "per_ipk") differs from ("api", "per_ip") + "k".
     */
    other = lim;
    other.name = "per_ipk";
    ck_assert(allowed(store, &other, ""));
    ck_assert_uint_eq(sl_store_memory_keys(store), 7);
    sl_store_free(store);
}
END_TEST

START_TEST(test_keys_are_binary)
{
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("fixed_window", 1, 60000000);
    ck_assert(decide(store, &lim, "a\0b", 3).allowed);
    ck_assert(decide(store, &lim, "a\0c", 3).allowed);
    ck_assert(decide(store, &lim, "a", 1).allowed);
    ck_assert(!decide(store, &lim, "a\0b", 3).allowed);
    sl_store_free(store);
}
END_TEST

START_TEST(test_long_keys)
{
    /* Long keys are held by their digest, like short ones. */
    struct sl_store *store = sl_store_memory_new(2, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("fixed_window", 1, 60000000);
    static char a[5000], b[5000];
    memset(a, 'x', sizeof a);
    memcpy(b, a, sizeof b);
    b[sizeof b - 1] = 'y';
    ck_assert(decide(store, &lim, a, sizeof a).allowed);
    ck_assert(decide(store, &lim, b, sizeof b).allowed);
    ck_assert(!decide(store, &lim, a, sizeof a).allowed);
    ck_assert(!decide(store, &lim, b, sizeof b).allowed);
    ck_assert(decide(store, &lim, a, sizeof a - 1).allowed); /* a prefix is another key */
    ck_assert_uint_eq(sl_store_memory_evictions(store), 1);
    /* A short key in a full store evicts a long one. */
    ck_assert(allowed(store, &lim, "short"));
    ck_assert_uint_eq(sl_store_memory_keys(store), 2);
    ck_assert_uint_eq(sl_store_memory_evictions(store), 2);
    sl_store_free(store);
}
END_TEST

START_TEST(test_lru_eviction_keeps_recently_used)
{
    /* A small max_keys keeps one stripe, so the LRU order is global. */
    struct sl_store *store = sl_store_memory_new(4, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("fixed_window", 1, 3600000000);
    const char *keys[] = {"k0", "k1", "k2", "k3"};
    for (int i = 0; i < 4; i++)
        ck_assert(allowed(store, &lim, keys[i]));
    ck_assert(!allowed(store, &lim, "k0")); /* k0 is now the most recently used */
    ck_assert(allowed(store, &lim, "k4"));  /* evicts k1, the least recently used */
    ck_assert_uint_eq(sl_store_memory_keys(store), 4);
    ck_assert_uint_eq(sl_store_memory_evictions(store), 1);
    /* The survivors kept their spent quota (and are touched in this order: k2 coldest). */
    ck_assert(!allowed(store, &lim, "k2"));
    ck_assert(!allowed(store, &lim, "k0"));
    ck_assert(!allowed(store, &lim, "k3"));
    ck_assert(!allowed(store, &lim, "k4"));
    ck_assert_uint_eq(sl_store_memory_evictions(store), 1);
    /* k1 was forgotten: fresh again, at the cost of the now coldest, k2. */
    ck_assert(allowed(store, &lim, "k1"));
    ck_assert_uint_eq(sl_store_memory_evictions(store), 2);
    ck_assert(allowed(store, &lim, "k2"));
    ck_assert_uint_eq(sl_store_memory_evictions(store), 3);
    ck_assert(!allowed(store, &lim, "k4"));
    ck_assert_uint_eq(sl_store_memory_keys(store), 4);
    sl_store_free(store);
}
END_TEST

START_TEST(test_max_keys_bounds_many_stripes)
{
    struct sl_store *store = sl_store_memory_new(1000, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("sliding_window", 2, 3600000000);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int n = snprintf(key, sizeof key, "client-%d", i);
        ck_assert(decide(store, &lim, key, (size_t)n).allowed);
    }
    uint64_t keys = sl_store_memory_keys(store);
    ck_assert_uint_eq(keys, 1000);
    ck_assert_uint_eq(sl_store_memory_evictions(store), 5000 - keys);
    sl_store_free(store);
}
END_TEST

START_TEST(test_max_bytes_bounds_the_store)
{
    /* 64 KiB in one stripe: token_bucket keys of 49 bytes, whatever their length. */
    struct sl_store *store = sl_store_memory_new(1000000, 65536, fake_clock);
    struct sl_limit lim = make_limit("token_bucket", 5, 3600000000);
    char key[64];
    for (int i = 0; i < 20000; i++) {
        int n = snprintf(key, sizeof key, "client-%d-%.*s", i, i % 40,
                         "padding-padding-padding-padding-padding-");
        ck_assert(decide(store, &lim, key, (size_t)n).allowed);
    }
    uint64_t keys = sl_store_memory_keys(store);
    ck_assert_uint_le(keys * 49, 65536);
    ck_assert_uint_ge(keys, 65536 / 48 * 3 / 4); /* buckets and uneven stripes aside */
    ck_assert_uint_eq(sl_store_memory_evictions(store), 20000 - keys);
    /* The most recent keys are still there, with their quota spent. */
    int n = snprintf(key, sizeof key, "client-%d-%.*s", 19999, 19999 % 40,
                     "padding-padding-padding-padding-padding-");
    ck_assert_uint_eq(decide(store, &lim, key, (size_t)n).remaining, 3);
    sl_store_free(store);
}
END_TEST

START_TEST(test_state_larger_than_a_stripe_fails_cleanly)
{
    /* sliding_window 10000/1s holds 80 KB per key: more than 64 KiB can take. */
    struct sl_store *store = sl_store_memory_new(1000, 65536, fake_clock);
    struct sl_limit big = make_limit("sliding_window", 10000, 1000000);
    struct sl_limit small = make_limit("token_bucket", 1, 1000000);
    ck_assert(allowed(store, &small, "a"));
    struct result r = {0};
    sl_store_decide(store, &big, "a", 1, on_decision, &r);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, SL_STORE_ERR_CONNECTION);
    /* Nothing was evicted for it. */
    ck_assert_uint_eq(sl_store_memory_keys(store), 1);
    ck_assert_uint_eq(sl_store_memory_evictions(store), 0);
    ck_assert(!allowed(store, &small, "a"));
    sl_store_free(store);
}
END_TEST

START_TEST(test_state_too_large_fails_cleanly)
{
    struct sl_store *store = sl_store_memory_new(10, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("sliding_window", UINT64_MAX / 4, 1000000);
    struct result r = {0};
    sl_store_decide(store, &lim, "a", 1, on_decision, &r);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, SL_STORE_ERR_CONNECTION);
    ck_assert_uint_eq(sl_store_memory_keys(store), 0);
    sl_store_free(store);
}
END_TEST

enum { THREADS = 4, PER_THREAD = 20000, KEYS_PER_THREAD = 200 };

struct worker {
    pthread_t tid;
    struct sl_store *store;
    const struct sl_limit *lim;
    int id;
    bool distinct; /* each thread its own keys, else all on one key */
    unsigned admitted;
    unsigned admitted_per_key[KEYS_PER_THREAD];
};

static void count_admitted(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    *(bool *)arg = status == SL_STORE_OK && d->allowed;
}

static void *hammer(void *arg)
{
    struct worker *w = arg;
    char key[32];
    for (int i = 0; i < PER_THREAD; i++) {
        int k = i % KEYS_PER_THREAD;
        int n = w->distinct ? snprintf(key, sizeof key, "t%d-k%d", w->id, k)
                            : snprintf(key, sizeof key, "shared");
        bool ok = false;
        sl_store_decide(w->store, w->lim, key, (size_t)n, count_admitted, &ok);
        w->admitted += ok;
        w->admitted_per_key[k] += ok;
    }
    return NULL;
}

static void run_workers(struct worker *w, struct sl_store *store, const struct sl_limit *lim,
                        bool distinct)
{
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct worker){.store = store, .lim = lim, .id = i, .distinct = distinct};
        ck_assert_int_eq(pthread_create(&w[i].tid, NULL, hammer, &w[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        ck_assert_int_eq(pthread_join(w[i].tid, NULL), 0);
}

START_TEST(test_threads_on_one_key_admit_exactly_n)
{
    struct sl_store *store = sl_store_memory_new(1000000, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("fixed_window", 5000, 3600000000);
    static struct worker w[THREADS];
    run_workers(w, store, &lim, false);
    unsigned total = 0;
    for (int i = 0; i < THREADS; i++)
        total += w[i].admitted;
    ck_assert_uint_eq(total, 5000);
    ck_assert_uint_eq(sl_store_memory_keys(store), 1);
    sl_store_free(store);
}
END_TEST

START_TEST(test_threads_on_distinct_keys)
{
    struct sl_store *store = sl_store_memory_new(1000000, UINT64_MAX, fake_clock);
    struct sl_limit lim = make_limit("sliding_window", 30, 3600000000);
    static struct worker w[THREADS];
    run_workers(w, store, &lim, true);
    for (int i = 0; i < THREADS; i++)
        for (int k = 0; k < KEYS_PER_THREAD; k++)
            ck_assert_uint_eq(w[i].admitted_per_key[k], 30);
    ck_assert_uint_eq(sl_store_memory_keys(store), THREADS * KEYS_PER_THREAD);
    ck_assert_uint_eq(sl_store_memory_evictions(store), 0);
    sl_store_free(store);
}
END_TEST

START_TEST(test_free_accepts_null)
{
    sl_store_free(NULL);
    struct sl_store *store =
        sl_store_memory_new(0, UINT64_MAX, NULL); /* the real clock; max_keys 1 */
    ck_assert_ptr_nonnull(store);
    struct sl_limit lim = make_limit("leaky_bucket", 1, 3600000000);
    ck_assert(allowed(store, &lim, "a"));
    ck_assert(allowed(store, &lim, "b"));
    ck_assert_uint_eq(sl_store_memory_keys(store), 1);
    ck_assert_uint_eq(sl_store_memory_evictions(store), 1);
    sl_store_free(store);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store_memory");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, test_fresh_key_and_gauge);
    tcase_add_test(tc, test_expired_key_is_fresh_and_reclaimed);
    tcase_add_test(tc, test_time_never_goes_back);
    tcase_add_test(tc, test_identity_kept_across_equal_limits);
    tcase_add_test(tc, test_keys_are_binary);
    tcase_add_test(tc, test_long_keys);
    tcase_add_test(tc, test_lru_eviction_keeps_recently_used);
    tcase_add_test(tc, test_max_keys_bounds_many_stripes);
    tcase_add_test(tc, test_max_bytes_bounds_the_store);
    tcase_add_test(tc, test_state_larger_than_a_stripe_fails_cleanly);
    tcase_add_test(tc, test_state_too_large_fails_cleanly);
    tcase_add_test(tc, test_threads_on_one_key_admit_exactly_n);
    tcase_add_test(tc, test_threads_on_distinct_keys);
    tcase_add_test(tc, test_free_accepts_null);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
