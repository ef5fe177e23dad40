/* leaky_bucket: GCRA spacing of one request every P/N, a queue of `burst` places, and
 * nginx-style nodelay. */
#include "support/alg_fixture.h"

START_TEST(test_flags_are_declared)
{
    const struct sl_algorithm_ops *alg = sl_algorithm_find("leaky_bucket");
    ck_assert_ptr_nonnull(alg);
    ck_assert(alg->has_burst);
    ck_assert(!alg->burst_defaults_to_count);
    ck_assert(alg->has_delay);
}
END_TEST

START_TEST(test_spacing_without_queue)
{
    struct alg_fixture f;
    fx_init(&f, "leaky_bucket", 10, US_PER_S, 0, true);
    struct sl_decision d = fx_decide(&f, 0);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.delay_us, 0);
    ck_assert_uint_eq(d.remaining, 0);
    ck_assert_uint_eq(d.reset_us, 100000);
    d = fx_decide(&f, 0);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 100000);
    d = fx_decide(&f, 50000);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 50000);
    ck_assert_uint_eq(fx_admitted(&f, 99999, 1), 0);
    d = fx_decide(&f, 100000);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.delay_us, 0);
    /* Evenly spaced arrivals at exactly the rate all pass. */
    for (uint64_t k = 2; k < 100; k++)
        ck_assert_uint_eq(fx_admitted(&f, k * 100000, 2), 1);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_queue_delays_and_overflows)
{
    struct alg_fixture f;
    fx_init(&f, "leaky_bucket", 10, US_PER_S, 3, true);
    /* One leaves at once and three wait, 100 ms apart; the fifth finds the queue full. */
    for (uint64_t i = 0; i < 4; i++) {
        struct sl_decision d = fx_decide(&f, 0);
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.delay_us, i * 100000);
        ck_assert_uint_eq(d.remaining, 3 - i);
        ck_assert_uint_eq(d.reset_us, (i + 1) * 100000);
    }
    struct sl_decision d = fx_decide(&f, 0);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 100000);
    ck_assert_uint_eq(d.reset_us, 400000);
    fx_check_retry_exact(&f, 0, &d);
    fx_check_reset(&f, 0, &d);
    /* At 150 ms the queue holds the requests leaving at 200 and 300 ms: one place free. */
    d = fx_decide(&f, 150000);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.delay_us, 250000);
    ck_assert_uint_eq(d.remaining, 0);
    d = fx_decide(&f, 150000);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 50000);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_nodelay_admits_at_once_but_takes_slots)
{
    struct alg_fixture f;
    fx_init(&f, "leaky_bucket", 10, US_PER_S, 3, false);
    for (int i = 0; i < 4; i++) {
        struct sl_decision d = fx_decide(&f, 0);
        ck_assert(d.allowed);
        ck_assert_uint_eq(d.delay_us, 0);
    }
    struct sl_decision d = fx_decide(&f, 0);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 100000);
    /* The long-run rate stays N/P: one per 100 ms, from 100 ms to 10 s. */
    unsigned admitted = 0;
    for (uint64_t t = 1000; t <= 10 * US_PER_S; t += 1000)
        admitted += fx_admitted(&f, t, 1);
    ck_assert_uint_eq(admitted, 100);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_fractional_spacing)
{
    struct alg_fixture f;
    fx_init(&f, "leaky_bucket", 3, 10 * US_PER_S, 2, true);
    /* T = 3 333 333⅓ µs; delays are rounded up to the next µs. */
    ck_assert_uint_eq(fx_decide(&f, 0).delay_us, 0);
    ck_assert_uint_eq(fx_decide(&f, 0).delay_us, 3333334);
    ck_assert_uint_eq(fx_decide(&f, 0).delay_us, 6666667);
    struct sl_decision d = fx_decide(&f, 0);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 3333334);
    /* Departures over a long run stay on the exact grid ceil(k·P/N). */
    uint64_t now = 0;
    for (uint64_t k = 3; k < 3000; k++) {
        d = fx_decide(&f, now);
        now += d.retry_after_us;
        d = fx_decide(&f, now);
        uint64_t want = (k * 10 * US_PER_S + 2) / 3;
        if (!d.allowed || now + d.delay_us != want)
            ck_abort_msg("request %llu leaves at %llu, want %llu", (unsigned long long)k,
                         (unsigned long long)(now + d.delay_us), (unsigned long long)want);
    }
    fx_deinit(&f);
}
END_TEST

START_TEST(test_large_count_and_period)
{
    struct alg_fixture f;
    fx_init(&f, "leaky_bucket", 1000000, US_PER_DAY, 0, true);
    uint64_t t = 4 * US_PER_DAY;
    ck_assert_uint_eq(fx_admitted(&f, t, 2), 1);
    struct sl_decision d = fx_decide(&f, t);
    ck_assert_uint_eq(d.retry_after_us, 86400);
    fx_deinit(&f);

    fx_init(&f, "leaky_bucket", 1, 365 * US_PER_DAY, 1, true);
    ck_assert_uint_eq(fx_decide(&f, 0).delay_us, 0);
    d = fx_decide(&f, US_PER_DAY);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.delay_us, 364 * US_PER_DAY);
    d = fx_decide(&f, US_PER_DAY);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 364 * US_PER_DAY);
    fx_check_retry_exact(&f, US_PER_DAY, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_near_end_of_clock)
{
    struct alg_fixture f;
    fx_init(&f, "leaky_bucket", 1000000, 365 * US_PER_DAY, 1000, true);
    uint64_t t = (1ull << 63) - 1;
    ck_assert_uint_eq(fx_admitted(&f, t, 1002), 1001);
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
    fx_init(&f, "leaky_bucket", 7, 3 * US_PER_S, 4, true);
    fx_random_walk(&f, 9, 5000, 600000, 8);
    fx_deinit(&f);
    fx_init(&f, "leaky_bucket", 3, 10, 0, false);
    fx_random_walk(&f, 9, 5000, 6, 9);
    fx_deinit(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("leaky_bucket");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_flags_are_declared);
    tcase_add_test(tc, test_spacing_without_queue);
    tcase_add_test(tc, test_queue_delays_and_overflows);
    tcase_add_test(tc, test_nodelay_admits_at_once_but_takes_slots);
    tcase_add_test(tc, test_fractional_spacing);
    tcase_add_test(tc, test_large_count_and_period);
    tcase_add_test(tc, test_near_end_of_clock);
    tcase_add_test(tc, test_random_walk_promises);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
