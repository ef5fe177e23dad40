/* fixed_window: aligned windows, exact edges, decision fields, large values. */
#include "support/alg_fixture.h"

START_TEST(test_admits_n_per_window)
{
    struct alg_fixture f;
    fx_init(&f, "fixed_window", 5, US_PER_S, 0, false);
    ck_assert_uint_eq(fx_admitted(&f, 3 * US_PER_S, 8), 5);
    ck_assert_uint_eq(fx_admitted(&f, 3 * US_PER_S + 999999, 3), 0);
    ck_assert_uint_eq(fx_admitted(&f, 4 * US_PER_S, 8), 5);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_window_edges)
{
    struct alg_fixture f;
    fx_init(&f, "fixed_window", 5, US_PER_S, 0, false);
    /* The last µs of window 1 and the first of window 2 are different windows. */
    ck_assert_uint_eq(fx_admitted(&f, 2 * US_PER_S - 1, 6), 5);
    struct sl_decision d = fx_decide(&f, 2 * US_PER_S - 1);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 1);
    ck_assert_uint_eq(d.reset_us, 1);
    ck_assert_uint_eq(fx_admitted(&f, 2 * US_PER_S, 6), 5);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_decision_fields)
{
    struct alg_fixture f;
    fx_init(&f, "fixed_window", 3, 10 * US_PER_S, 0, false);
    uint64_t t = 20 * US_PER_S + 2500000; /* 2.5 s into a window */
    for (uint64_t i = 0; i < 3; i++) {
        struct sl_decision d = fx_decide(&f, t);
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.limit, 3);
        ck_assert_uint_eq(d.remaining, 2 - i);
        ck_assert_uint_eq(d.reset_us, 7500000);
        ck_assert_uint_eq(d.delay_us, 0);
    }
    struct sl_decision d = fx_decide(&f, t + 1000000);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.remaining, 0);
    ck_assert_uint_eq(d.retry_after_us, 6500000);
    ck_assert_uint_eq(d.reset_us, 6500000);
    fx_check_retry_exact(&f, t + 1000000, &d);
    fx_check_reset(&f, t + 1000000, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_fresh_state_at_time_zero)
{
    struct alg_fixture f;
    fx_init(&f, "fixed_window", 2, US_PER_S, 0, false);
    ck_assert_uint_eq(fx_admitted(&f, 0, 3), 2);
    struct sl_decision d = fx_decide(&f, 0);
    ck_assert_uint_eq(d.retry_after_us, US_PER_S);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_large_count_and_period)
{
    struct alg_fixture f;
    fx_init(&f, "fixed_window", 1000000, US_PER_DAY, 0, false);
    uint64_t t = 5 * US_PER_DAY + 12345;
    ck_assert_uint_eq(fx_admitted(&f, t, 1000001), 1000000);
    struct sl_decision d = fx_decide(&f, t);
    ck_assert_uint_eq(d.retry_after_us, US_PER_DAY - 12345);
    fx_deinit(&f);

    fx_init(&f, "fixed_window", 1, 365 * US_PER_DAY, 0, false);
    d = fx_decide(&f, 1000);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.reset_us, 365 * US_PER_DAY - 1000);
    d = fx_decide(&f, US_PER_DAY);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 364 * US_PER_DAY);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_near_end_of_clock)
{
    struct alg_fixture f;
    fx_init(&f, "fixed_window", 3, US_PER_S, 0, false);
    uint64_t t = (1ull << 63) - 1;
    ck_assert_uint_eq(fx_admitted(&f, t, 4), 3);
    struct sl_decision d = fx_decide(&f, t);
    ck_assert_uint_eq(d.retry_after_us, US_PER_S - t % US_PER_S);
    fx_check_retry_exact(&f, t, &d);
    /* The window holding UINT64_MAX ends past 2^64; the arithmetic must not wrap. */
    t = UINT64_MAX - 10;
    d = fx_decide(&f, t);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.reset_us, US_PER_S - t % US_PER_S);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_random_walk_promises)
{
    struct alg_fixture f;
    fx_init(&f, "fixed_window", 7, 3 * US_PER_S, 0, false);
    fx_random_walk(&f, 1000, 5000, 400000, 1);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_random_walk_costs_and_debt)
{
    struct alg_fixture f;
    fx_init(&f, "fixed_window", 7, 3 * US_PER_S, 0, false);
    fx_random_walk_units(&f, 9, 5000, 900000, 21, 7);
    fx_deinit(&f);
    fx_init(&f, "fixed_window", 7, 3 * US_PER_S, 0, false);
    fx_random_walk_units(&f, 9, 5000, 40000, 22, 3);
    fx_deinit(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fixed_window");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_admits_n_per_window);
    tcase_add_test(tc, test_window_edges);
    tcase_add_test(tc, test_decision_fields);
    tcase_add_test(tc, test_fresh_state_at_time_zero);
    tcase_add_test(tc, test_large_count_and_period);
    tcase_add_test(tc, test_near_end_of_clock);
    tcase_add_test(tc, test_random_walk_promises);
    tcase_add_test(tc, test_random_walk_costs_and_debt);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
