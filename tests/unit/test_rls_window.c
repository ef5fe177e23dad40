/* envoyproxy/ratelimit's fixed window (src/limit/rls_fixed_window.c and its Lua twin) on an
 * injected clock: every hit counted, over the limit when the count after the hits exceeds N,
 * a check alone (no hits) over only while the count exceeds N, a new window from zero, the
 * reset at the window's end; and the script on a real redis-server, at the same pinned
 * instants, giving exactly the C decisions. */
#include "support/redis_fixture.h"
#include "support/run_suite.h"

static const struct sl_algorithm_ops *alg = &sl_alg_rls_fixed_window;

static struct sl_decision step(void *state, uint64_t n, uint64_t p, uint64_t now, uint64_t hits)
{
    struct sl_limit lim = {.name = (char *)"l", .alg = alg, .count = n, .period_us = p};
    struct sl_quota q = sl_limit_quota(&lim);
    struct sl_units u = {hits, hits};
    struct sl_decision d;
    alg->decide(&lim, &q, state, now, &u, &d);
    return d;
}

START_TEST(counts_every_hit)
{
    uint64_t state[4] = {0};
    uint64_t p = 60 * S, now = 1000 * p + 10 * S;

    ck_assert_uint_eq(alg->state_size(NULL), 16);
    struct sl_decision d = step(state, 3, p, now, 1);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 2);
    ck_assert_uint_eq(d.reset_us, 50 * S);
    ck_assert_uint_eq(d.retry_after_us, 0);
    d = step(state, 3, p, now, 2);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 0);
    d = step(state, 3, p, now + S, 0); /* a check at the limit: not over it */
    ck_assert(d.allowed);
    d = step(state, 3, p, now + S, 1);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.remaining, 0);
    ck_assert_uint_eq(d.reset_us, 49 * S);
    ck_assert_uint_eq(d.retry_after_us, 49 * S);
    d = step(state, 3, p, now + S, 0); /* counted while over: a check is over too */
    ck_assert(!d.allowed);
    d = step(state, 3, p, now + 50 * S, 1); /* the next window, from zero */
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 2);
    ck_assert_uint_eq(d.reset_us, 60 * S);
    d = step(state, 3, p, now + 50 * S, 4); /* more hits than N at once: over, counted */
    ck_assert(!d.allowed);
    d = step(state, 3, p, now + 50 * S, 0);
    ck_assert(!d.allowed);
    d = step(state, 3, p, now + 49 * S, 0); /* the clock stepped back: the newer window */
    ck_assert(!d.allowed);
}
END_TEST

START_TEST(saturates)
{
    uint64_t state[4] = {0};
    uint64_t p = S;
    struct sl_decision d = step(state, 1, p, 5 * S, UINT64_MAX);
    ck_assert(!d.allowed);
    for (int i = 0; i < 3; i++)
        d = step(state, 1, p, 5 * S, SL_UNITS_MAX);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.reset_us, S);
}
END_TEST

static uint64_t pinned_now;
static uint64_t pinned(void)
{
    return pinned_now;
}

START_TEST(redis_same_as_c)
{
    struct sl_store *store = store_new(1000, NULL);
    struct sl_store *memory = sl_store_memory_new(100, UINT64_MAX, pinned);
    struct sl_limit lim = {.name = (char *)"l1",
                           .route = &route,
                           .alg = alg,
                           .count = 4,
                           .period_us = 60 * S,
                           .store = SL_STORE_REDIS};
    static const struct {
        uint64_t at_s, hits;
    } seq[] = {{10, 1}, {10, 2}, {11, 0}, {12, 1}, {12, 1},  {13, 0},
               {59, 3}, {60, 1}, {61, 0}, {61, 4}, {119, 2}, {125, 0}};

    ck_assert_ptr_nonnull(memory);
    sl_store_redis_pin_clock(store, pinned);
    for (size_t i = 0; i < sizeof seq / sizeof *seq; i++) {
        pinned_now = 1700000000 * S + seq[i].at_s * S + 250 * MS;
        struct sl_units u = {seq[i].hits, seq[i].hits};
        struct result c = {0}, r = {0};
        sl_store_decide_units(memory, &lim, "k", 1, &u, on_result, &c);
        ck_assert_int_eq(c.calls, 1);
        sl_store_decide_units(store, &lim, "k", 1, &u, on_result, &r);
        ck_assert(run_until_called(&r.calls, 5 * S));
        ck_assert_int_eq(r.status, SL_STORE_OK);
        ck_assert_msg(r.d.allowed == c.d.allowed, "step %zu: redis %d, C %d", i, r.d.allowed,
                      c.d.allowed);
        ck_assert_uint_eq(r.d.remaining, c.d.remaining);
        ck_assert_uint_eq(r.d.reset_us, c.d.reset_us);
        ck_assert_uint_eq(r.d.retry_after_us, c.d.retry_after_us);
    }
    /* The key is the algorithm's own, under the route and limit. */
    ck_assert_int_eq(command_int("EXISTS %s", "sluice:r1:l1:rfw:k"), 1);
    sl_store_free(memory);
    sl_store_free(store);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rls_window");
    TCase *c = tcase_create("c");
    tcase_add_test(c, counts_every_hit);
    tcase_add_test(c, saturates);
    suite_add_tcase(s, c);
    TCase *r = tcase_create("redis");
    tcase_add_checked_fixture(r, setup, teardown);
    tcase_set_timeout(r, 60);
    tcase_add_test(r, redis_same_as_c);
    suite_add_tcase(s, r);
    return run_suite(s);
}
