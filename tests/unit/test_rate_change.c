/* A change of rate on the memory store: state survives and is read under the new rate for
 * what it records in time, for every algorithm, with N up, N down, P up and P down; the
 * earlier rate is looked up once, across stripes and threads. The same sequences against
 * Redis are in test_store_redis_rates. */
#include <check.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"
#include "sluice/limit.h"
#include "sluice/store_memory.h"
#include "support/rate_scenarios.h"
#include "support/run_suite.h"

static _Atomic uint64_t fake_now;

static uint64_t fake_clock(void)
{
    return atomic_load(&fake_now);
}

static struct sl_route route = {.name = "r"};

static struct sl_limit make_limit(const char *alg, uint64_t n, uint64_t p, uint64_t burst)
{
    struct sl_limit lim = {.name = "l",
                           .route = &route,
                           .alg = sl_algorithm_find(alg),
                           .count = n,
                           .period_us = p,
                           .burst = burst,
                           .delay = false};
    ck_assert_ptr_nonnull(lim.alg);
    return lim;
}

/* `lim` as a reload from `from` makes it: remembering from's rate. */
static struct sl_limit changed(struct sl_limit lim, const struct sl_limit *from)
{
    lim.prev_rates[0] = (struct sl_prev_rate){{from->count, from->period_us}, UINT64_MAX, false};
    lim.nprev_rates = 1;
    return lim;
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
    if (d)
        r->d = *d;
}

static struct sl_decision decide(struct sl_store *store, const struct sl_limit *lim,
                                 const char *key)
{
    struct result r = {0};
    sl_store_decide(store, lim, key, strlen(key), on_decision, &r);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.status, SL_STORE_OK);
    return r.d;
}

static unsigned admitted(struct sl_store *store, const struct sl_limit *lim, const char *key,
                         unsigned tries)
{
    unsigned n = 0;
    for (unsigned i = 0; i < tries; i++)
        n += decide(store, lim, key).allowed;
    return n;
}

START_TEST(test_state_survives_a_change_of_rate)
{
    const struct scenario *sc = &scenarios[_i];
    atomic_store(&fake_now, 1000 * HOUR + 10 * MIN);
    /* Enough stripes that the old and the new identity of a key often differ in stripe. */
    struct sl_store *store = sl_store_memory_new(100000, UINT64_MAX, fake_clock);
    struct sl_limit a = make_limit(sc->alg, sc->n, sc->p, sc->burst);
    struct sl_limit b = changed(make_limit(sc->alg, sc->n2, sc->p2, sc->burst2), &a);
    char key[16];
    for (int k = 0; k < 20; k++) {
        snprintf(key, sizeof key, "k%d", k);
        ck_assert_uint_eq(admitted(store, &a, key, sc->before), sc->before);
    }
    ck_assert_uint_eq(sl_store_memory_keys(store), 20);
    for (int k = 0; k < 20; k++) {
        snprintf(key, sizeof key, "k%d", k);
        ck_assert_msg(admitted(store, &b, key, 10) == sc->after, "%s %llu/%llu -> %llu/%llu",
                      sc->alg, (unsigned long long)sc->n, (unsigned long long)sc->p,
                      (unsigned long long)sc->n2, (unsigned long long)sc->p2);
    }
    /* Each old entry was carried over, not copied: the store holds one entry per key. */
    ck_assert_uint_eq(sl_store_memory_keys(store), 20);
    /* A key never seen before starts afresh under the new rate. */
    ck_assert(decide(store, &b, "new").allowed);
    sl_store_free(store);
}
END_TEST

/* The windows where the hour's window began in the previous 30-minute window. */
START_TEST(test_window_p_down_into_the_next_window)
{
    atomic_store(&fake_now, 1000 * HOUR + 40 * MIN);
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    struct sl_limit a = make_limit("fixed_window", 4, HOUR, 0);
    struct sl_limit b = changed(make_limit("fixed_window", 4, 30 * MIN, 0), &a);
    ck_assert_uint_eq(admitted(store, &a, "k", 3), 3);
    ck_assert_uint_eq(admitted(store, &b, "k", 10), 4); /* a new window */

    /* sliding_window_counter: curr becomes prev. 10 min into the 30-minute window, prev
     * weighs 3·20/30 = 2, so 2 more are admitted. */
    a = make_limit("sliding_window_counter", 4, HOUR, 0);
    b = changed(make_limit("sliding_window_counter", 4, 30 * MIN, 0), &a);
    ck_assert_uint_eq(admitted(store, &a, "k", 3), 3);
    ck_assert_uint_eq(admitted(store, &b, "k", 10), 2);
    sl_store_free(store);
}
END_TEST

/* sliding_window with P down: the log is read under the new P. */
START_TEST(test_sliding_window_p_down_drops_what_left_the_window)
{
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    struct sl_limit a = make_limit("sliding_window", 4, HOUR, 0);
    struct sl_limit b = changed(make_limit("sliding_window", 4, 15 * MIN, 0), &a);
    for (int i = 0; i < 3; i++) {
        atomic_store(&fake_now, 1000 * HOUR + (uint64_t)i * 10 * MIN);
        ck_assert(decide(store, &a, "k").allowed);
    }
    /* At +25 min only the entry of +20 min is within 15 min. */
    atomic_store(&fake_now, 1000 * HOUR + 25 * MIN);
    ck_assert_uint_eq(admitted(store, &b, "k", 10), 3);
    sl_store_free(store);
}
END_TEST

/* N down on the log: every entry still counts, and a place frees when the (len − N + 1)-th
 * oldest leaves. */
START_TEST(test_sliding_window_n_down_counts_every_entry)
{
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    struct sl_limit a = make_limit("sliding_window", 4, HOUR, 0);
    struct sl_limit b = changed(make_limit("sliding_window", 2, HOUR, 0), &a);
    for (int i = 0; i < 4; i++) {
        atomic_store(&fake_now, 1000 * HOUR + (uint64_t)i * MIN);
        ck_assert(decide(store, &a, "k").allowed);
    }
    atomic_store(&fake_now, 1000 * HOUR + 5 * MIN);
    struct sl_decision d = decide(store, &b, "k");
    ck_assert(!d.allowed);
    /* The 3rd oldest (+2 min) leaves at +62 min; the newest (+3 min) at +63 min. */
    ck_assert_uint_eq(d.retry_after_us, 57 * MIN);
    ck_assert_uint_eq(d.reset_us, 58 * MIN);
    atomic_store(&fake_now, 1000 * HOUR + 62 * MIN);
    ck_assert_uint_eq(admitted(store, &b, "k", 3), 1);
    sl_store_free(store);
}
END_TEST

/* 10/1m, moved by two reloads to 3/1m and back to 10/1m within the minute: the ten admitted
 * under the first rate are all still on record under the third. */
START_TEST(test_sliding_window_n_down_and_back_up)
{
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    struct sl_limit a = make_limit("sliding_window", 10, MIN, 0);
    struct sl_limit b = changed(make_limit("sliding_window", 3, MIN, 0), &a);
    struct sl_limit c = changed(make_limit("sliding_window", 10, MIN, 0), &b);
    c.prev_rates[1] = b.prev_rates[0];
    c.nprev_rates = 2;
    for (int i = 0; i < 10; i++) {
        atomic_store(&fake_now, 1000 * HOUR + (uint64_t)i * S);
        ck_assert(decide(store, &a, "k").allowed);
    }
    atomic_store(&fake_now, 1000 * HOUR + 10 * S);
    ck_assert_uint_eq(admitted(store, &b, "k", 3), 0);
    atomic_store(&fake_now, 1000 * HOUR + 11 * S);
    struct sl_decision d = decide(store, &c, "k");
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 49 * S);
    ck_assert_uint_eq(admitted(store, &c, "k", 9), 0);
    ck_assert_uint_eq(sl_store_memory_keys(store), 1);
    /* The first leaves at +60 s. */
    atomic_store(&fake_now, 1000 * HOUR + MIN);
    ck_assert_uint_eq(admitted(store, &c, "k", 3), 1);

    /* The log carried to 3/1m keeps its ten places until the key expires, then starts afresh
     * in a state sized for 3. */
    for (int i = 0; i < 10; i++)
        ck_assert(decide(store, &a, "e").allowed);
    ck_assert_uint_eq(admitted(store, &b, "e", 3), 0);
    atomic_store(&fake_now, 1000 * HOUR + 3 * MIN);
    ck_assert_uint_eq(admitted(store, &b, "e", 5), 3);
    atomic_store(&fake_now, 1000 * HOUR + 3 * MIN + 30 * S);
    ck_assert_uint_eq(admitted(store, &b, "e", 5), 0);
    sl_store_free(store);
}
END_TEST

/* token_bucket: a change of N converts tat exactly, rounding toward later. */
START_TEST(test_bucket_rescale_rounds_later)
{
    atomic_store(&fake_now, 1000 * HOUR);
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    /* 3/10s: one token every 3 333 333⅓ µs. */
    struct sl_limit a = make_limit("token_bucket", 3, 10 * S, 1);
    struct sl_limit b = changed(make_limit("token_bucket", 2, 10 * S, 1), &a);
    ck_assert(decide(store, &a, "k").allowed);
    /* tat = now + 3 333 333⅓ µs; under N = 2 that is now + 3 333 333.5 µs, at least: the
     * bucket is full again 3 333 334 µs from now. */
    struct sl_decision d = decide(store, &b, "k");
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.reset_us, 3333334);
    ck_assert_uint_eq(d.retry_after_us, 3333334);
    atomic_store(&fake_now, 1000 * HOUR + 3333333);
    ck_assert(!decide(store, &b, "k").allowed);
    atomic_store(&fake_now, 1000 * HOUR + 3333334);
    ck_assert(decide(store, &b, "k").allowed);
    sl_store_free(store);
}
END_TEST

/* An earlier rate is looked up only while state written under it may still be in use, and
 * an expired old entry is a fresh start. */
START_TEST(test_expired_or_forgotten_earlier_state)
{
    atomic_store(&fake_now, 1000 * HOUR);
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    struct sl_limit a = make_limit("fixed_window", 2, MIN, 0);
    struct sl_limit b = changed(make_limit("fixed_window", 3, MIN, 0), &a);
    ck_assert_uint_eq(admitted(store, &a, "x", 2), 2);
    ck_assert_uint_eq(admitted(store, &a, "y", 2), 2);
    b.prev_rates[0].until_us = 1000 * HOUR + 1;
    ck_assert_uint_eq(admitted(store, &b, "x", 5), 1);
    atomic_store(&fake_now, 1000 * HOUR + 1);
    ck_assert_uint_eq(admitted(store, &b, "y", 5), 3); /* forgotten */

    /* An old entry whose window has ended is gone, not carried. */
    ck_assert_uint_eq(admitted(store, &a, "z", 2), 2);
    atomic_store(&fake_now, 1000 * HOUR + 2 * MIN);
    b.prev_rates[0].until_us = UINT64_MAX;
    ck_assert_uint_eq(admitted(store, &b, "z", 5), 3);
    sl_store_free(store);
}
END_TEST

/* Two reloads in a row: state written under the first rate is still found. */
START_TEST(test_two_changes_in_a_row)
{
    atomic_store(&fake_now, 1000 * HOUR);
    struct sl_store *store = sl_store_memory_new(100, UINT64_MAX, fake_clock);
    struct sl_limit a = make_limit("fixed_window", 4, HOUR, 0);
    struct sl_limit b = changed(make_limit("fixed_window", 5, HOUR, 0), &a);
    struct sl_limit c = changed(make_limit("fixed_window", 6, HOUR, 0), &b);
    c.prev_rates[1] = b.prev_rates[0];
    c.nprev_rates = 2;
    ck_assert_uint_eq(admitted(store, &a, "k", 4), 4);
    ck_assert_uint_eq(admitted(store, &c, "k", 10), 2);
    sl_store_free(store);
}
END_TEST

/* Threads racing on one key right after the change admit exactly what is left. */
struct race {
    struct sl_store *store;
    const struct sl_limit *lim;
    atomic_uint admitted;
};

static void *race_thread(void *arg)
{
    struct race *r = arg;
    for (int i = 0; i < 20; i++) {
        struct result res = {0};
        sl_store_decide(r->store, r->lim, "k", 1, on_decision, &res);
        if (res.status == SL_STORE_OK && res.d.allowed)
            atomic_fetch_add(&r->admitted, 1);
    }
    return NULL;
}

START_TEST(test_threads_racing_on_the_change)
{
    atomic_store(&fake_now, 1000 * HOUR);
    struct sl_store *store = sl_store_memory_new(100000, UINT64_MAX, fake_clock);
    struct sl_limit a = make_limit("sliding_window", 100, HOUR, 0);
    struct sl_limit b = changed(make_limit("sliding_window", 120, HOUR, 0), &a);
    ck_assert_uint_eq(admitted(store, &a, "k", 60), 60);
    struct race r = {.store = store, .lim = &b};
    pthread_t t[8];
    for (int i = 0; i < 8; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, race_thread, &r), 0);
    for (int i = 0; i < 8; i++)
        pthread_join(t[i], NULL);
    ck_assert_uint_eq(atomic_load(&r.admitted), 60);
    ck_assert_uint_eq(sl_store_memory_keys(store), 1);
    sl_store_free(store);
}
END_TEST

/* sl_cfg_inherit_rates: what a reload remembers. */
START_TEST(test_inherit_rates)
{
    struct sl_route r_old = {.name = "r"}, r_new = {.name = "r"};
    struct sl_limit old_lims[2] = {make_limit("fixed_window", 4, HOUR, 0),
                                   make_limit("token_bucket", 4, HOUR, 4)};
    old_lims[1].name = "t";
    old_lims[0].route = old_lims[1].route = &r_old;
    r_old.limits = old_lims;
    r_old.nlimits = 2;
    struct sl_limit new_lims[2] = {make_limit("fixed_window", 6, HOUR, 0),
                                   make_limit("leaky_bucket", 4, MIN, 0)};
    new_lims[1].name = "t";
    new_lims[0].route = new_lims[1].route = &r_new;
    r_new.limits = new_lims;
    r_new.nlimits = 2;
    struct sl_config old_cfg = {.routes = &r_old, .nroutes = 1};
    struct sl_config new_cfg = {.routes = &r_new, .nroutes = 1};

    sl_cfg_inherit_rates(&new_cfg, &old_cfg, 5 * S);
    ck_assert_uint_eq(new_lims[0].nprev_rates, 1);
    ck_assert_uint_eq(new_lims[0].prev_rates[0].rate.count, 4);
    ck_assert_uint_eq(new_lims[0].prev_rates[0].rate.period_us, HOUR);
    /* (burst + 2)·P after now, plus 10 s. */
    ck_assert_uint_eq(new_lims[0].prev_rates[0].until_us, 5 * S + 2 * HOUR + 10 * S);
    ck_assert_uint_eq(new_lims[1].nprev_rates, 0); /* another algorithm: nothing to carry */

    /* A reload back to the first rate remembers the second, never its own. */
    old_lims[0] = new_lims[0];
    old_lims[0].route = &r_old;
    new_lims[0] = make_limit("fixed_window", 4, HOUR, 0);
    new_lims[0].route = &r_new;
    sl_cfg_inherit_rates(&new_cfg, &old_cfg, 6 * S);
    ck_assert_uint_eq(new_lims[0].nprev_rates, 1);
    ck_assert_uint_eq(new_lims[0].prev_rates[0].rate.count, 6);
    /* Past until_us, an earlier rate is dropped. */
    old_lims[0] = new_lims[0];
    old_lims[0].route = &r_old;
    new_lims[0] = make_limit("fixed_window", 5, HOUR, 0);
    new_lims[0].route = &r_new;
    sl_cfg_inherit_rates(&new_cfg, &old_cfg, 3 * HOUR);
    ck_assert_uint_eq(new_lims[0].nprev_rates, 1);
    ck_assert_uint_eq(new_lims[0].prev_rates[0].rate.count, 4);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rate_change");
    TCase *tc = tcase_create("memory");
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_state_survives_a_change_of_rate, 0,
                        (int)(sizeof scenarios / sizeof scenarios[0]));
    tcase_add_test(tc, test_window_p_down_into_the_next_window);
    tcase_add_test(tc, test_sliding_window_p_down_drops_what_left_the_window);
    tcase_add_test(tc, test_sliding_window_n_down_counts_every_entry);
    tcase_add_test(tc, test_sliding_window_n_down_and_back_up);
    tcase_add_test(tc, test_bucket_rescale_rounds_later);
    tcase_add_test(tc, test_expired_or_forgotten_earlier_state);
    tcase_add_test(tc, test_two_changes_in_a_row);
    tcase_add_test(tc, test_threads_racing_on_the_change);
    tcase_add_test(tc, test_inherit_rates);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
