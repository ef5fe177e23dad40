/* sliding_window_counter: prev·(P − elapsed)/P + curr < N, compared exactly. */
#include "support/alg_fixture.h"

#define P10 (10 * US_PER_S)

START_TEST(test_full_previous_window_blocks_first_instant)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 10, P10, 0, false);
    ck_assert_uint_eq(fx_admitted(&f, 0, 12), 10);
    struct sl_decision d = fx_decide(&f, P10 - 1);
    ck_assert(!d.allowed);
    /* This window is spent; at e = 1 µs of the next, 10·(P − 1)/P < 10. */
    ck_assert_uint_eq(d.retry_after_us, 2);
    /* At e = 0 of the next window the estimate is exactly 10. */
    d = fx_decide(&f, P10);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 1);
    ck_assert_uint_eq(d.reset_us, P10); /* curr = 0, prev = 10: until this window ends */
    d = fx_decide(&f, P10 + 1);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 0);
    ck_assert_uint_eq(d.reset_us, 2 * P10 - 1);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_weight_of_previous_window)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 10, P10, 0, false);
    ck_assert_uint_eq(fx_admitted(&f, 3 * US_PER_S, 10), 10);
    /* Halfway through the next window prev weighs 5: five more fit. */
    uint64_t t = P10 + P10 / 2;
    for (uint64_t i = 0; i < 5; i++) {
        struct sl_decision d = fx_decide(&f, t);
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.remaining, 4 - i);
    }
    struct sl_decision d = fx_decide(&f, t);
    ck_assert(!d.allowed);
    /* 10·(P − e) + 5·P < 10·P first holds at e = P/2 + 1 µs. */
    ck_assert_uint_eq(d.retry_after_us, 1);
    fx_check_retry_exact(&f, t, &d);
    ck_assert_uint_eq(d.reset_us, 2 * P10 - P10 / 2);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_remaining_with_fractional_weight)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 4, 3 * US_PER_S, 0, false);
    ck_assert_uint_eq(fx_admitted(&f, 0, 4), 4);
    /* 1 s into the next window prev weighs 4·2/3 = 2.67: admitted at curr = 0 and at
     * curr = 1 (3.67 < 4), not at curr = 2. */
    struct sl_decision d = fx_decide(&f, 4 * US_PER_S);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 1);
    d = fx_decide(&f, 4 * US_PER_S);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 0);
    d = fx_decide(&f, 4 * US_PER_S);
    ck_assert(!d.allowed);
    /* 4·(3 s − e) + 2·3 s < 12 s  ⇔  e > 1.5 s. */
    ck_assert_uint_eq(d.retry_after_us, US_PER_S / 2 + 1);
    fx_check_retry_exact(&f, 4 * US_PER_S, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_skipped_window_forgets)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 3, US_PER_S, 0, false);
    ck_assert_uint_eq(fx_admitted(&f, 5 * US_PER_S, 4), 3);
    ck_assert_uint_eq(fx_admitted(&f, 7 * US_PER_S, 4), 3);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_period_of_one_microsecond)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 1, 1, 0, false);
    ck_assert(fx_decide(&f, 100).allowed);
    struct sl_decision d = fx_decide(&f, 100);
    ck_assert_uint_eq(d.retry_after_us, 2);
    fx_check_retry_exact(&f, 100, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_large_count_and_period)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 1000000, US_PER_DAY, 0, false);
    uint64_t t = 9 * US_PER_DAY;
    ck_assert_uint_eq(fx_admitted(&f, t, 1000001), 1000000);
    struct sl_decision d = fx_decide(&f, t);
    ck_assert_uint_eq(d.retry_after_us, US_PER_DAY + 1);
    fx_check_retry_exact(&f, t, &d);
    /* Three quarters into the next day, a quarter of yesterday's million still counts. */
    ck_assert_uint_eq(fx_admitted(&f, t + US_PER_DAY + US_PER_DAY / 4 * 3, 800000), 750000);
    fx_deinit(&f);

    fx_init(&f, "sliding_window_counter", 1, 365 * US_PER_DAY, 0, false);
    ck_assert(fx_decide(&f, 0).allowed);
    d = fx_decide(&f, US_PER_DAY);
    /* This window is spent; in the next, 1·(P − e) < 1·P from e = 1 µs. */
    ck_assert_uint_eq(d.retry_after_us, 364 * US_PER_DAY + 1);
    fx_check_retry_exact(&f, US_PER_DAY, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_near_end_of_clock)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 1000, 365 * US_PER_DAY, 0, false);
    uint64_t t = (1ull << 63) - 1;
    ck_assert_uint_eq(fx_admitted(&f, t, 1001), 1000);
    struct sl_decision d = fx_decide(&f, t);
    fx_check_retry_exact(&f, t, &d);
    fx_check_reset(&f, t, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_random_walk_promises)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 9, 3 * US_PER_S, 0, false);
    fx_random_walk(&f, 5, 5000, 500000, 11);
    fx_deinit(&f);
    fx_init(&f, "sliding_window_counter", 3, 7, 0, false);
    fx_random_walk(&f, 5, 5000, 5, 12);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_random_walk_costs_and_debt)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window_counter", 7, 3 * US_PER_S, 0, false);
    fx_random_walk_units(&f, 9, 5000, 900000, 21, 7);
    fx_deinit(&f);
    fx_init(&f, "sliding_window_counter", 7, 3 * US_PER_S, 0, false);
    fx_random_walk_units(&f, 9, 5000, 40000, 22, 3);
    fx_deinit(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sliding_window_counter");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_full_previous_window_blocks_first_instant);
    tcase_add_test(tc, test_weight_of_previous_window);
    tcase_add_test(tc, test_remaining_with_fractional_weight);
    tcase_add_test(tc, test_skipped_window_forgets);
    tcase_add_test(tc, test_period_of_one_microsecond);
    tcase_add_test(tc, test_large_count_and_period);
    tcase_add_test(tc, test_near_end_of_clock);
    tcase_add_test(tc, test_random_walk_promises);
    tcase_add_test(tc, test_random_walk_costs_and_debt);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
