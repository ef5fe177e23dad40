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

/* The Redis script's sorted set as a plain array: every admitted timestamp, each dropped for
 * good once it has left the window of the rate a decision is made under. */
struct full_log {
    uint64_t ts[64];
    uint64_t len;
};

static struct sl_decision full_log_decide(struct full_log *l, uint64_t n, uint64_t p, uint64_t now)
{
    uint64_t kept = 0;
    for (uint64_t i = 0; i < l->len; i++)
        if (l->ts[i] > now || now - l->ts[i] < p)
            l->ts[kept++] = l->ts[i];
    l->len = kept;
    struct sl_decision d = {.limit = n};
    if (l->len < n) {
        ck_assert_uint_lt(l->len, sizeof l->ts / sizeof l->ts[0]);
        l->ts[l->len++] = now;
        d.allowed = true;
        d.remaining = n - l->len;
        d.reset_us = p;
    } else {
        d.retry_after_us = l->ts[l->len - n] + p - now;
        d.reset_us = l->ts[l->len - 1] + p - now;
    }
    return d;
}

/* One decision at `now` on the fixture and on the full log: the same in every field. */
static struct sl_decision decide_both(struct alg_fixture *f, struct full_log *l, uint64_t now)
{
    struct sl_decision d = fx_decide(f, now);
    struct sl_decision want = full_log_decide(l, f->lim.count, f->lim.period_us, now);
    if (d.allowed != want.allowed || d.remaining != want.remaining || d.reset_us != want.reset_us ||
        d.retry_after_us != want.retry_after_us)
        ck_abort_msg("%llu/%llu at %llu: allowed %d remaining %llu reset %llu retry_after %llu; "
                     "a full log: %d %llu %llu %llu",
                     (unsigned long long)f->lim.count, (unsigned long long)f->lim.period_us,
                     (unsigned long long)now, d.allowed, (unsigned long long)d.remaining,
                     (unsigned long long)d.reset_us, (unsigned long long)d.retry_after_us,
                     want.allowed, (unsigned long long)want.remaining,
                     (unsigned long long)want.reset_us, (unsigned long long)want.retry_after_us);
    return d;
}

/* 10/1m, ten admitted at 0..9 s, moved to 3/1m and back to 10/1m within the minute: the ten
 * are still on record, so nothing more is admitted until the first leaves. */
START_TEST(test_moved_down_and_back_up_counts_every_request)
{
    struct alg_fixture f;
    fx_init(&f, "sliding_window", 10, 60 * US_PER_S, 0, false);
    for (uint64_t i = 0; i < 10; i++)
        ck_assert(fx_decide(&f, i * US_PER_S).allowed);
    fx_change_rate(&f, 3, 60 * US_PER_S);
    struct sl_decision d = fx_decide(&f, 10 * US_PER_S);
    ck_assert(!d.allowed);
    /* Fewer than 3 are left once the 8th oldest (7 s) leaves, at 67 s. */
    ck_assert_uint_eq(d.retry_after_us, 57 * US_PER_S);
    ck_assert_uint_eq(d.reset_us, 59 * US_PER_S);
    fx_check_retry_exact(&f, 10 * US_PER_S, &d);
    fx_change_rate(&f, 10, 60 * US_PER_S);
    d = fx_decide(&f, 11 * US_PER_S);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 49 * US_PER_S);
    ck_assert_uint_eq(d.reset_us, 58 * US_PER_S);
    fx_check_retry_exact(&f, 11 * US_PER_S, &d);
    ck_assert_uint_eq(fx_admitted(&f, 30 * US_PER_S, 10), 0);
    /* At 60 s the request at 0 leaves: one place, then the next at 61 s. */
    ck_assert_uint_eq(fx_admitted(&f, 60 * US_PER_S, 3), 1);
    d = fx_decide(&f, 60 * US_PER_S);
    ck_assert_uint_eq(d.retry_after_us, 1 * US_PER_S);
    fx_deinit(&f);
}
END_TEST

/* Down to 1/1m with five on record: a place frees only when the newest leaves; back up to
 * 5/1m at once, all five still count; and later, what was admitted meanwhile counts too. */
START_TEST(test_moved_down_to_one)
{
    struct alg_fixture f;
    struct full_log l = {0};
    fx_init(&f, "sliding_window", 5, 60 * US_PER_S, 0, false);
    for (uint64_t i = 0; i < 5; i++)
        ck_assert(decide_both(&f, &l, i * US_PER_S).allowed);
    fx_change_rate(&f, 1, 60 * US_PER_S);
    struct sl_decision d = decide_both(&f, &l, 5 * US_PER_S);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 59 * US_PER_S);
    fx_change_rate(&f, 5, 60 * US_PER_S);
    d = decide_both(&f, &l, 6 * US_PER_S);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 54 * US_PER_S);
    fx_change_rate(&f, 1, 60 * US_PER_S);
    d = decide_both(&f, &l, 60 * US_PER_S);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 4 * US_PER_S);
    ck_assert(!decide_both(&f, &l, 64 * US_PER_S - 1).allowed);
    ck_assert(decide_both(&f, &l, 64 * US_PER_S).allowed);
    ck_assert(!decide_both(&f, &l, 64 * US_PER_S).allowed);
    fx_change_rate(&f, 5, 60 * US_PER_S);
    for (int i = 0; i < 4; i++)
        ck_assert(decide_both(&f, &l, 65 * US_PER_S).allowed);
    d = decide_both(&f, &l, 65 * US_PER_S);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 59 * US_PER_S);
    fx_deinit(&f);
}
END_TEST

/* A shorter P drops what left its window for good (as ZREMRANGEBYSCORE does); a longer P
 * again does not bring it back. */
START_TEST(test_period_moves)
{
    struct alg_fixture f;
    struct full_log l = {0};
    fx_init(&f, "sliding_window", 3, 10 * US_PER_S, 0, false);
    for (uint64_t i = 0; i < 3; i++)
        ck_assert(decide_both(&f, &l, i * US_PER_S).allowed);
    fx_change_rate(&f, 3, 2 * US_PER_S);
    /* Within 2 s of 3 s: only the request at 2 s. */
    ck_assert(decide_both(&f, &l, 3 * US_PER_S).allowed);
    ck_assert(decide_both(&f, &l, 3 * US_PER_S).allowed);
    struct sl_decision d = decide_both(&f, &l, 3 * US_PER_S);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 1 * US_PER_S);
    fx_change_rate(&f, 3, 10 * US_PER_S);
    d = decide_both(&f, &l, 3 * US_PER_S + US_PER_S / 2);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 8 * US_PER_S + US_PER_S / 2);
    fx_change_rate(&f, 6, 10 * US_PER_S);
    ck_assert_uint_eq(fx_admitted(&f, 4 * US_PER_S, 5), 3);
    fx_deinit(&f);
}
END_TEST

/* Rates moving at random, N up and down between 1 and 13 and P between 0.7 and 2.5 ms: every
 * decision, remaining, reset and retry_after as a full log gives them. */
START_TEST(test_rate_moves_match_a_full_log)
{
    static const uint64_t counts[] = {1, 2, 3, 5, 8, 13}, periods[] = {700, 1000, 2500};
    struct alg_fixture f;
    struct full_log l = {0};
    fx_init(&f, "sliding_window", 5, 1000, 0, false);
    uint64_t now = 3;
    unsigned seed = 11, moves = 0;
    for (int i = 0; i < 20000; i++) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 8 == 0) {
            fx_change_rate(&f, counts[(seed >> 8) % 6], periods[(seed >> 20) % 3]);
            moves++;
        }
        now += (seed >> 4) % 120;
        struct sl_decision d = decide_both(&f, &l, now);
        if (!d.allowed)
            fx_check_retry_exact(&f, now, &d);
        fx_check_reset(&f, now, &d);
    }
    ck_assert_uint_gt(moves, 1000);
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
    tcase_add_test(tc, test_moved_down_and_back_up_counts_every_request);
    tcase_add_test(tc, test_moved_down_to_one);
    tcase_add_test(tc, test_period_moves);
    tcase_add_test(tc, test_rate_moves_match_a_full_log);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
