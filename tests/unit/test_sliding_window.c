/* sliding_window: an exact log of admitted requests in (now − P, now]. */
#include "support/alg_fixture.h"

START_TEST(test_state_size_is_linear_in_n)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window", 100, US_PER_S, 0, false);
    ck_assert_uint_eq(f.state_size, 16 + 8 * 100);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_oldest_ages_out_exactly)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window", 3, 10 * US_PER_S, 0, false);
    ck_assert(fx_decide(&f, 0).allowed);
    ck_assert(fx_decide(&f, 1 * US_PER_S).allowed);
    ck_assert(fx_decide(&f, 2 * US_PER_S).allowed);
    struct sl_decision d = fx_decide(&f, 3 * US_PER_S);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 7 * US_PER_S);
    ck_assert_uint_eq(d.reset_us, 9 * US_PER_S);
    /* The request at 0 is inside (now − P, now] until now = P. */
    d = fx_decide(&f, 10 * US_PER_S - 1);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 1);
    d = fx_decide(&f, 10 * US_PER_S);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 0);
    ck_assert_uint_eq(d.reset_us, 10 * US_PER_S);
    /* Next to leave: the request at 1 s. */
    d = fx_decide(&f, 10 * US_PER_S);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 1 * US_PER_S);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_hammer_then_resume)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window", 50, 60 * US_PER_S, 0, false);
    uint64_t t0 = 123456789;
    ck_assert_uint_eq(fx_admitted(&f, t0, 80), 50);
    /* Denied requests are not recorded: knocking all along does not push the window. */
    for (uint64_t t = t0 + 1; t < t0 + 60 * US_PER_S; t += 997 * 1000)
        ck_assert_uint_eq(fx_admitted(&f, t, 3), 0);
    ck_assert_uint_eq(fx_admitted(&f, t0 + 60 * US_PER_S - 1, 5), 0);
    ck_assert_uint_eq(fx_admitted(&f, t0 + 60 * US_PER_S, 80), 50);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_remaining_counts_requests_in_window)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window", 4, 10 * US_PER_S, 0, false);
    ck_assert_uint_eq(fx_decide(&f, 0).remaining, 3);
    ck_assert_uint_eq(fx_decide(&f, 4 * US_PER_S).remaining, 2);
    ck_assert_uint_eq(fx_decide(&f, 8 * US_PER_S).remaining, 1);
    /* At 12 s the request at 0 has left: 4 s and 8 s remain, plus this one. */
    struct sl_decision d = fx_decide(&f, 12 * US_PER_S);
    ck_assert_uint_eq(d.remaining, 1);
    ck_assert_uint_eq(d.reset_us, 10 * US_PER_S);
    fx_check_reset(&f, 12 * US_PER_S, &d);
    fx_deinit(&f);
}
END_TEST

/* The ring buffer against a plain list of every admitted timestamp. */
START_TEST(test_matches_naive_log)
{
    enum { N = 5, STEPS = 20000 };
    const uint64_t p = 1000;
    static uint64_t log[STEPS];
    size_t nlog = 0;
    struct alg_fixture f;
    fx_init(&f, "sliding_window", N, p, 0, false);
    uint64_t now = 5;
    unsigned seed = 7;
    for (int i = 0; i < STEPS; i++) {
        seed = seed * 1103515245u + 12345u;
        now += (seed >> 16) % 300;
        unsigned in_window = 0;
        for (size_t j = 0; j < nlog; j++)
            in_window += now - log[j] < p;
        bool want = in_window < N;
        struct sl_decision d = fx_decide(&f, now);
        if (d.allowed != want)
            ck_abort_msg("step %d at %llu: allowed=%d, want %d", i, (unsigned long long)now,
                         d.allowed, want);
        if (want)
            log[nlog++] = now;
    }
    fx_deinit(&f);
}
END_TEST

START_TEST(test_large_count_and_period)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window", 1000000, US_PER_DAY, 0, false);
    uint64_t t = 3 * US_PER_DAY + 17;
    ck_assert_uint_eq(fx_admitted(&f, t, 1000001), 1000000);
    struct sl_decision d = fx_decide(&f, t + 5);
    ck_assert_uint_eq(d.retry_after_us, US_PER_DAY - 5);
    ck_assert_uint_eq(fx_admitted(&f, t + US_PER_DAY - 1, 1), 0);
    ck_assert_uint_eq(fx_admitted(&f, t + US_PER_DAY, 1000001), 1000000);
    fx_deinit(&f);

    fx_init(&f, "sliding_window", 1, 365 * US_PER_DAY, 0, false);
    ck_assert(fx_decide(&f, 42).allowed);
    d = fx_decide(&f, 42 + 100 * US_PER_DAY);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 265 * US_PER_DAY);
    fx_check_retry_exact(&f, 42 + 100 * US_PER_DAY, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_near_end_of_clock)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window", 2, 365 * US_PER_DAY, 0, false);
    uint64_t t = (1ull << 63) - 3;
    ck_assert_uint_eq(fx_admitted(&f, t, 3), 2);
    struct sl_decision d = fx_decide(&f, t + 2);
    ck_assert_uint_eq(d.retry_after_us, 365 * US_PER_DAY - 2);
    fx_check_retry_exact(&f, t + 2, &d);
    fx_deinit(&f);
}
END_TEST

START_TEST(test_random_walk_promises)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window", 6, 2 * US_PER_S, 0, false);
    fx_random_walk(&f, 77, 5000, 300000, 3);
    fx_deinit(&f);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sliding_window");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_state_size_is_linear_in_n);
    tcase_add_test(tc, test_oldest_ages_out_exactly);
    tcase_add_test(tc, test_hammer_then_resume);
    tcase_add_test(tc, test_remaining_counts_requests_in_window);
    tcase_add_test(tc, test_matches_naive_log);
    tcase_add_test(tc, test_large_count_and_period);
    tcase_add_test(tc, test_near_end_of_clock);
    tcase_add_test(tc, test_random_walk_promises);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
