/* The dashboard's per-route rings: growth per interval from cumulative counters, a route
 * first used within an interval counted from zero, a route already counted starting from
 * its values, rings that keep their place across samples and reloads (by name), routes
 * that leave lose their ring, wrap-around after SL_HISTORY_SAMPLES, interval lengths, and
 * the memory the history states. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>

#include "../../src/admin/history.h"
#include "support/run_suite.h"

#define T0 1000000ull

static struct sl_history_point pt(const char *route, uint64_t allowed, uint64_t limited, bool fresh)
{
    return (struct sl_history_point){route, allowed, limited, fresh};
}

START_TEST(test_growth_per_interval)
{
    struct sl_history *h = sl_history_new(T0);
    uint64_t a[SL_HISTORY_SAMPLES], l[SL_HISTORY_SAMPLES];
    uint32_t ms[SL_HISTORY_SAMPLES];

    ck_assert_ptr_nonnull(h);
    ck_assert_uint_eq(sl_history_len(h), 0);
    ck_assert_uint_eq(sl_history_read(h, "api", a, l), 0);

    struct sl_history_point p = pt("api", 10, 2, true);
    ck_assert_int_eq(sl_history_sample(h, &p, 1, T0 + 2000), 0);
    p = pt("api", 25, 2, false);
    ck_assert_int_eq(sl_history_sample(h, &p, 1, T0 + 4100), 0);
    p = pt("api", 25, 9, false);
    ck_assert_int_eq(sl_history_sample(h, &p, 1, T0 + 6000), 0);

    ck_assert_uint_eq(sl_history_len(h), 3);
    ck_assert_uint_eq(sl_history_intervals(h, ms), 3);
    ck_assert_uint_eq(ms[0], 2000);
    ck_assert_uint_eq(ms[1], 2100);
    ck_assert_uint_eq(ms[2], 1900);
    ck_assert_uint_eq(sl_history_read(h, "api", a, l), 3);
    ck_assert_uint_eq(a[0], 10);
    ck_assert_uint_eq(l[0], 2);
    ck_assert_uint_eq(a[1], 15);
    ck_assert_uint_eq(l[1], 0);
    ck_assert_uint_eq(a[2], 0);
    ck_assert_uint_eq(l[2], 7);
    ck_assert_uint_eq(sl_history_read(h, "other", a, l), 0);
    sl_history_free(h);
}
END_TEST

/* A route whose counters already held values (re-added by a reload, or its ring could not
 * be made before) starts from them: its old counts are not one interval's. */
START_TEST(test_route_counted_before_starts_from_its_values)
{
    struct sl_history *h = sl_history_new(T0);
    uint64_t a[SL_HISTORY_SAMPLES], l[SL_HISTORY_SAMPLES];
    struct sl_history_point p[2] = {pt("api", 1, 0, true), pt("old", 5000, 300, false)};

    ck_assert_int_eq(sl_history_sample(h, p, 2, T0 + 2000), 0);
    ck_assert_uint_eq(sl_history_read(h, "api", a, l), 1);
    ck_assert_uint_eq(sl_history_read(h, "old", a, l), 0);
    ck_assert_uint_eq(sl_history_routes(h), 2);
    p[0] = pt("api", 1, 0, false);
    p[1] = pt("old", 5004, 301, false);
    ck_assert_int_eq(sl_history_sample(h, p, 2, T0 + 4000), 0);
    ck_assert_uint_eq(sl_history_read(h, "old", a, l), 1);
    ck_assert_uint_eq(a[0], 4);
    ck_assert_uint_eq(l[0], 1);
    /* The newest intervals: api has two, old one, aligned at the end. */
    ck_assert_uint_eq(sl_history_read(h, "api", a, l), 2);
    ck_assert_uint_eq(a[0], 1);
    ck_assert_uint_eq(a[1], 0);
    sl_history_free(h);
}
END_TEST

START_TEST(test_routes_come_and_go_by_name)
{
    struct sl_history *h = sl_history_new(T0);
    uint64_t a[SL_HISTORY_SAMPLES], l[SL_HISTORY_SAMPLES];
    struct sl_history_point p[3] = {pt("a", 1, 1, true), pt("b", 2, 2, true), pt("c", 3, 3, true)};

    ck_assert_int_eq(sl_history_sample(h, p, 3, T0 + 2000), 0);
    ck_assert_uint_eq(sl_history_routes(h), 3);
    /* A reload drops b and reorders the rest: c and a keep their rings. */
    struct sl_history_point q[2] = {pt("c", 4, 3, false), pt("a", 1, 5, false)};
    ck_assert_int_eq(sl_history_sample(h, q, 2, T0 + 4000), 0);
    ck_assert_uint_eq(sl_history_routes(h), 2);
    ck_assert_uint_eq(sl_history_read(h, "b", a, l), 0);
    ck_assert_uint_eq(sl_history_read(h, "c", a, l), 2);
    ck_assert_uint_eq(a[0], 3);
    ck_assert_uint_eq(a[1], 1);
    ck_assert_uint_eq(sl_history_read(h, "a", a, l), 2);
    ck_assert_uint_eq(l[1], 4);
    /* b back, counters continued meanwhile: it starts from them. */
    struct sl_history_point r[3] = {pt("a", 1, 5, false), pt("b", 9, 9, false),
                                    pt("a", 100, 100, false)};
    ck_assert_int_eq(sl_history_sample(h, r, 3, T0 + 6000), 0);
    ck_assert_uint_eq(sl_history_routes(h), 2);
    ck_assert_uint_eq(sl_history_read(h, "b", a, l), 0);
    ck_assert_uint_eq(sl_history_read(h, "c", a, l), 0);
    /* The name given twice counted once: the first. */
    ck_assert_uint_eq(sl_history_read(h, "a", a, l), 3);
    ck_assert_uint_eq(a[2], 0);
    ck_assert_uint_eq(l[2], 0);
    /* An empty sample drops every ring but keeps time. */
    ck_assert_int_eq(sl_history_sample(h, NULL, 0, T0 + 8000), 0);
    ck_assert_uint_eq(sl_history_routes(h), 0);
    ck_assert_uint_eq(sl_history_len(h), 4);
    sl_history_free(h);
}
END_TEST

START_TEST(test_ring_wraps_after_five_minutes)
{
    struct sl_history *h = sl_history_new(T0);
    uint64_t a[SL_HISTORY_SAMPLES], l[SL_HISTORY_SAMPLES];
    uint32_t ms[SL_HISTORY_SAMPLES];
    const size_t total = 2 * SL_HISTORY_SAMPLES + 7;

    /* Sample i: allowed grows by i, limited by 2i; intervals of 2000 + i % 3 ms. */
    uint64_t now = T0, allowed = 0, limited = 0;
    for (size_t i = 1; i <= total; i++) {
        allowed += i;
        limited += 2 * i;
        now += 2000 + i % 3;
        struct sl_history_point p = pt("api", allowed, limited, i == 1);
        ck_assert_int_eq(sl_history_sample(h, &p, 1, now), 0);
    }
    ck_assert_uint_eq(sl_history_len(h), SL_HISTORY_SAMPLES);
    ck_assert_uint_eq(sl_history_read(h, "api", a, l), SL_HISTORY_SAMPLES);
    ck_assert_uint_eq(sl_history_intervals(h, ms), SL_HISTORY_SAMPLES);
    for (size_t j = 0; j < SL_HISTORY_SAMPLES; j++) {
        size_t i = total - SL_HISTORY_SAMPLES + 1 + j;
        ck_assert_uint_eq(a[j], i);
        ck_assert_uint_eq(l[j], 2 * i);
        ck_assert_uint_eq(ms[j], 2000 + i % 3);
    }
    sl_history_free(h);
}
END_TEST

/* The bound the header states: a ring per route sampled, whatever the time run. */
START_TEST(test_memory_is_per_route_sampled)
{
    struct sl_history *h = sl_history_new(T0);
    static char names[100][16];
    struct sl_history_point p[100];

    ck_assert_uint_le(sl_history_bytes(h), 2048);
    for (int i = 0; i < 100; i++) {
        snprintf(names[i], sizeof names[i], "route-%03d", i);
        p[i] = pt(names[i], 0, 0, true);
    }
    for (int s = 0; s < 2 * SL_HISTORY_SAMPLES; s++)
        ck_assert_int_eq(sl_history_sample(h, p, 100, T0 + 2000 * (uint64_t)(s + 1)), 0);
    size_t bytes = sl_history_bytes(h);
    ck_assert_uint_ge(bytes, 100 * (size_t)SL_HISTORY_ROUTE_BYTES);
    ck_assert_uint_le(bytes,
                      100 * ((size_t)SL_HISTORY_ROUTE_BYTES + 10 + 4 * sizeof(void *)) + 2048);
    ck_assert_uint_le(bytes, 256 * 1024);
    ck_assert_int_eq(sl_history_sample(h, p, 10, T0 + 2000 * 400), 0);
    ck_assert_uint_le(sl_history_bytes(h), 10 * ((size_t)SL_HISTORY_ROUTE_BYTES + 10 + 32) + 2048);
    sl_history_free(h);
}
END_TEST

static Suite *history_suite(void)
{
    Suite *s = suite_create("history");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_growth_per_interval);
    tcase_add_test(tc, test_route_counted_before_starts_from_its_values);
    tcase_add_test(tc, test_routes_come_and_go_by_name);
    tcase_add_test(tc, test_ring_wraps_after_five_minutes);
    tcase_add_test(tc, test_memory_is_per_route_sampled);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(history_suite());
}
