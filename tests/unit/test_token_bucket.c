/* token_bucket: capacity `burst`, continuous refill at N/P, exact at any rate. */
#include "support/alg_fixture.h"

START_TEST(test_burst_defaults_are_declared)
{
    const struct sl_algorithm_ops *alg = sl_algorithm_find("token_bucket");
    ck_assert_ptr_nonnull(alg);
    ck_assert(alg->has_burst);
    ck_assert(alg->burst_defaults_to_count);
    ck_assert(!alg->has_delay);
}
END_TEST

START_TEST(test_refills_one_token_per_tenth_of_second)
{
    struct alg_fixture f;
    fx_init(&f, "token_bucket", 10, US_PER_S, 10, false);
    ck_assert_uint_eq(fx_admitted(&f, 0, 11), 10);
    struct sl_decision d = fx_decide(&f, 0);
    ck_assert_uint_eq(d.retry_after_us, 100000);
    ck_assert_uint_eq(d.reset_us, US_PER_S);
    for (uint64_t k = 1; k <= 30; k++) {
        ck_assert_uint_eq(fx_admitted(&f, k * 100000 - 1, 1), 0);
        ck_assert_uint_eq(fx_admitted(&f, k * 100000, 2), 1);
    }
    fx_deinit(&f);
}
END_TEST

/* Walks from one admission to the next by retry_after: the admission times must be the
 * exact instants ceil(k·P/N) of the refill, with no drift however long it runs. */
START_TEST(test_fractional_rate_has_no_drift)
{
    struct alg_fixture f;
    const uint64_t p = 10 * US_PER_S;
    fx_init(&f, "token_bucket", 3, p, 3, false);
    ck_assert_uint_eq(fx_admitted(&f, 0, 3), 3);
    uint64_t now = 0;
    for (uint64_t k = 1; k <= 3000; k++) {
        struct sl_decision d = fx_decide(&f, now);
        ck_assert(!d.allowed);
        now += d.retry_after_us;
        uint64_t want = (k * p + 2) / 3;
        if (now != want)
            ck_abort_msg("token %llu at %llu, want %llu", (unsigned long long)k,
                         (unsigned long long)now, (unsigned long long)want);
        if (!fx_decide(&f, now).allowed)
            ck_abort_msg("token %llu not admitted at %llu", (unsigned long long)k,
                         (unsigned long long)now);
    }
    fx_deinit(&f);
}
END_TEST

START_TEST(test_remaining_and_reset)
{
    struct alg_fixture f;
    fx_init(&f, "token_bucket", 10, US_PER_S, 10, false);
    struct sl_decision d = fx_decide(&f, 0);
    ck_assert_uint_eq(d.remaining, 9);
    ck_assert_uint_eq(d.reset_us, 100000);
    fx_decide(&f, 0);
    d = fx_decide(&f, 0);
    ck_assert_uint_eq(d.remaining, 7);
    ck_assert_uint_eq(d.reset_us, 300000);
    /* 50 ms later half a token is back (7.5 held); taking one leaves 6.5. */
    d = fx_decide(&f, 50000);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 6);
    ck_assert_uint_eq(d.reset_us, 350000);
    fx_check_reset(&f, 50000, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_burst_larger_and_smaller_than_rate)
{
    struct alg_fixture f;
    fx_init(&f, "token_bucket", 5, US_PER_S, 20, false);
    ck_assert_uint_eq(fx_admitted(&f, 1000, 25), 20);
    fx_deinit(&f);

    fx_init(&f, "token_bucket", 10, US_PER_S, 1, false);
    ck_assert_uint_eq(fx_admitted(&f, 1000, 5), 1);
    /* A one-token bucket does not save up: an hour idle still buys one request. */
    ck_assert_uint_eq(fx_admitted(&f, 3600 * US_PER_S, 5), 1);
    ck_assert_uint_eq(fx_admitted(&f, 3600 * US_PER_S + 99999, 1), 0);
    ck_assert_uint_eq(fx_admitted(&f, 3600 * US_PER_S + 100000, 1), 1);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_burst_zero_admits_nothing)
{
    struct alg_fixture f;
    fx_init(&f, "token_bucket", 10, US_PER_S, 0, false);
    for (uint64_t t = 0; t < 10 * US_PER_S; t += 700000) {
        struct sl_decision d = fx_decide(&f, t);
        ck_assert(!d.allowed);
        ck_assert_uint_eq(d.retry_after_us, US_PER_S);
        ck_assert_uint_eq(d.reset_us, 0);
    }
    fx_deinit(&f);
}
END_TEST

START_TEST(test_large_count_and_period)
{
    struct alg_fixture f;
    fx_init(&f, "token_bucket", 1000000, US_PER_DAY, 1000000, false);
    uint64_t t = 2 * US_PER_DAY;
    ck_assert_uint_eq(fx_admitted(&f, t, 1000001), 1000000);
    struct sl_decision d = fx_decide(&f, t);
    ck_assert_uint_eq(d.retry_after_us, 86400); /* one token every 86.4 ms */
    ck_assert_uint_eq(d.reset_us, US_PER_DAY);
    fx_check_retry_exact(&f, t, &d);
    fx_deinit(&f);

    fx_init(&f, "token_bucket", 1, 365 * US_PER_DAY, 1, false);
    ck_assert(fx_decide(&f, 10).allowed);
    d = fx_decide(&f, 10 + US_PER_DAY);
    ck_assert_uint_eq(d.retry_after_us, 364 * US_PER_DAY);
    fx_check_retry_exact(&f, 10 + US_PER_DAY, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_near_end_of_clock)
{
    struct alg_fixture f;
    fx_init(&f, "token_bucket", 1000000, 365 * US_PER_DAY, 1000000, false);
    uint64_t t = (1ull << 63) - 1;
    ck_assert_uint_eq(fx_admitted(&f, t, 1000001), 1000000);
    struct sl_decision d = fx_decide(&f, t);
    ck_assert_uint_eq(d.retry_after_us, 31536000);
    fx_check_retry_exact(&f, t, &d);
    fx_check_reset(&f, t, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_random_walk_promises)
{
    struct alg_fixture f;
    fx_init(&f, "token_bucket", 7, 3 * US_PER_S, 4, false);
    fx_random_walk(&f, 9, 5000, 600000, 5);
    fx_deinit(&f);
    fx_init(&f, "token_bucket", 3, 10, 2, false);
    fx_random_walk(&f, 9, 5000, 6, 6);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_random_walk_costs_and_debt)
{
    struct alg_fixture f;
    fx_init(&f, "token_bucket", 7, 3 * US_PER_S, 12, false);
    fx_random_walk_units(&f, 9, 5000, 900000, 21, 7);
    fx_deinit(&f);
    fx_init(&f, "token_bucket", 7, 3 * US_PER_S, 12, false);
    fx_random_walk_units(&f, 9, 5000, 40000, 22, 3);
    fx_deinit(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("token_bucket");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_burst_defaults_are_declared);
    tcase_add_test(tc, test_refills_one_token_per_tenth_of_second);
    tcase_add_test(tc, test_fractional_rate_has_no_drift);
    tcase_add_test(tc, test_remaining_and_reset);
    tcase_add_test(tc, test_burst_larger_and_smaller_than_rate);
    tcase_add_test(tc, test_burst_zero_admits_nothing);
    tcase_add_test(tc, test_large_count_and_period);
    tcase_add_test(tc, test_near_end_of_clock);
    tcase_add_test(tc, test_random_walk_promises);
    tcase_add_test(tc, test_random_walk_costs_and_debt);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
