/* Costs, charges and debt on both stores: one table of steps per algorithm, run against the
 * memory store (the C algorithms) and the Lua scripts on a real redis-server, with the same
 * clock pinned on both (the scripts' test time argument, sl_store_redis_pin_clock). Every
 * decision must be identical, field by field, and the hand-computed ones are checked too. */
#include "support/redis_fixture.h"
#include "support/run_suite.h"

#define NONE UINT64_MAX
/* Step times: relative to the previous step, or to the previous decision's retry_after. */
#define AT_RETRY (UINT64_MAX - 1)
#define BEFORE_RETRY (UINT64_MAX - 2)

struct step {
    uint64_t dt; /* µs after the previous step, or AT_RETRY / BEFORE_RETRY */
    uint64_t need, take;
    int allowed;                            /* expected */
    uint64_t remaining, reset_us, retry_us; /* expected, or NONE */
};

struct scenario {
    const char *alg;
    uint64_t n, p, burst;
    uint64_t start; /* µs: where in the window the sequence begins */
    const struct step *steps;
    size_t nsteps;
};

#define W 60000000ull          /* P = 60 s */
#define BASE (28333333ull * W) /* an aligned window start, about today's clock */

/* fixed_window 10/60s, starting 1 s into a window. */
static const struct step fw_steps[] = {
    {0, 4, 4, 1, 6, 59 * S, 0},
    {0, 7, 7, 0, 0, 59 * S, 59 * S}, /* 4 + 7 > 10: the next window */
    {0, 6, 6, 1, 0, 59 * S, 0},      /* exactly fills it */
    {0, 0, 0, 1, 0, 59 * S, 0},      /* cost 0: a check, admitted */
    {0, 1, 1, 0, 0, 59 * S, 59 * S},
    {0, 0, 25, 1, 0, 59 * S + 3 * W, 0}, /* a charge: 35 taken, debt of 2.5 windows */
    {0, 1, 1, 0, 0, 59 * S + 3 * W, 59 * S + 2 * W},
    {BEFORE_RETRY, 1, 1, 0, 0, NONE, 1},
    {AT_RETRY, 1, 1, 1, 4, W, 0}, /* 35 − 30 = 5 left of the debt, + 1 */
    {0, 5, 5, 0, 0, W, W},
    {0, 4, 4, 1, 0, W, 0},
    {2 * W, 10, 10, 1, 0, W, 0}, /* two windows later: all repaid */
};

/* sliding_window_counter 10/60s, starting 30 s into a window. */
static const struct step swc_steps[] = {
    {0, 4, 4, 1, 6, 30 * S + W, 0},
    {0, 7, 7, 0, 0, 30 * S + W, NONE},
    {0, 6, 6, 1, 0, 30 * S + W, 0},
    {0, 0, 0, 1, 0, 30 * S + W, 0},
    {0, 1, 1, 0, 0, NONE, NONE},
    {BEFORE_RETRY, 1, 1, 0, 0, NONE, 1},
    {AT_RETRY, 1, 1, 1, NONE, NONE, 0},
    {0, 0, 30, 1, 0, NONE, 0}, /* a charge: curr 31, deep in debt */
    {0, 3, 3, 0, 0, NONE, NONE},
    {BEFORE_RETRY, 3, 3, 0, 0, NONE, 1},
    {AT_RETRY, 3, 3, 1, NONE, NONE, 0},
    {W / 7, 2, 2, -1, NONE, NONE, NONE},
    {0, 10, 10, 0, 0, NONE, NONE},
    {BEFORE_RETRY, 10, 10, 0, 0, NONE, 1},
    {AT_RETRY, 10, 10, 1, 0, NONE, 0},
};

/* token_bucket 10/60s (a token per 6 s), burst 20. */
static const struct step tb_steps[] = {
    {0, 15, 15, 1, 5, 90 * S, 0},
    {0, 6, 6, 0, 0, 90 * S, 6 * S}, /* one token short: 6 s */
    {0, 5, 5, 1, 0, 120 * S, 0},
    {0, 0, 0, 1, 0, 120 * S, 0},
    {3 * S, 1, 1, 0, 0, 117 * S, 3 * S},
    {0, 0, 40, 1, 0, 357 * S, 0},      /* a charge of 40 with 0.5 left: 39.5 of debt */
    {0, 1, 1, 0, 0, 357 * S, 243 * S}, /* 39.5 of debt + 1 token: 40.5 × 6 s */
    {BEFORE_RETRY, 1, 1, 0, 0, NONE, 1},
    {AT_RETRY, 1, 1, 1, 0, 120 * S, 0},
    {0, 20, 20, 0, 0, 120 * S, 120 * S}, /* the whole bucket: once it is full */
    {AT_RETRY, 20, 20, 1, 0, 120 * S, 0},
    {W, 7, 7, 1, 3, 102 * S, 0},
};

static const struct scenario scenarios[] = {
    {"fixed_window", 10, W, 0, BASE + S, fw_steps, sizeof fw_steps / sizeof fw_steps[0]},
    {"sliding_window_counter", 10, W, 0, BASE + 30 * S, swc_steps,
     sizeof swc_steps / sizeof swc_steps[0]},
    {"token_bucket", 10, W, 20, BASE, tb_steps, sizeof tb_steps / sizeof tb_steps[0]},
};

static uint64_t pinned;

static uint64_t pinned_clock(void)
{
    return pinned;
}

static struct sl_decision decide_units(struct sl_store *store, const struct sl_limit *lim,
                                       uint64_t need, uint64_t take)
{
    struct result r = {0};
    struct sl_units u = {need, take};
    sl_store_decide_units(store, lim, "k", 1, &u, on_result, &r);
    ck_assert(run_until_called(&r.calls, 5 * S));
    ck_assert_int_eq(r.status, SL_STORE_OK);
    return r.d;
}

static void check_field(const char *alg, size_t i, const char *what, uint64_t got, uint64_t want)
{
    ck_assert_msg(want == NONE || got == want, "%s step %zu: %s %llu, expected %llu", alg, i, what,
                  (unsigned long long)got, (unsigned long long)want);
}

START_TEST(test_same_decisions)
{
    const struct scenario *sc = &scenarios[_i];
    struct sl_store *redis = store_new(1000, NULL);
    sl_store_redis_pin_clock(redis, pinned_clock);
    struct sl_store *memory = sl_store_memory_new(100, UINT64_MAX, pinned_clock);
    struct sl_limit lim = limit(sc->alg, sc->n, sc->p, sc->burst, false);
    struct sl_decision last = {0};

    pinned = sc->start;
    for (size_t i = 0; i < sc->nsteps; i++) {
        const struct step *st = &sc->steps[i];
        if (st->dt == AT_RETRY)
            pinned += last.retry_after_us;
        else if (st->dt == BEFORE_RETRY)
            pinned += last.retry_after_us - 1;
        else
            pinned += st->dt;
        struct sl_decision m = decide_units(memory, &lim, st->need, st->take);
        struct sl_decision r = decide_units(redis, &lim, st->need, st->take);
        ck_assert_msg(m.allowed == r.allowed && m.remaining == r.remaining &&
                          m.reset_us == r.reset_us && m.retry_after_us == r.retry_after_us,
                      "%s step %zu: memory {%d %llu %llu %llu}, redis {%d %llu %llu %llu}", sc->alg,
                      i, m.allowed, (unsigned long long)m.remaining, (unsigned long long)m.reset_us,
                      (unsigned long long)m.retry_after_us, r.allowed,
                      (unsigned long long)r.remaining, (unsigned long long)r.reset_us,
                      (unsigned long long)r.retry_after_us);
        ck_assert_msg(st->allowed < 0 || m.allowed == (st->allowed == 1), "%s step %zu: allowed %d",
                      sc->alg, i, m.allowed);
        check_field(sc->alg, i, "remaining", m.remaining, st->remaining);
        check_field(sc->alg, i, "reset", m.reset_us, st->reset_us);
        /* BEFORE_RETRY rows give 1 for "some retry_after": it must then be exactly 1 µs. */
        check_field(sc->alg, i, "retry_after", m.retry_after_us, st->retry_us);
        if (st->dt != BEFORE_RETRY)
            last = m;
        else
            pinned -= last.retry_after_us - 1; /* the next AT_RETRY counts from the decision */
    }
    sl_store_free(memory);
    sl_store_free(redis);
}
END_TEST

/* A need above what the limit can ever hold is denied by both, never admitted, and spends
 * nothing. */
START_TEST(test_never_fits)
{
    static const struct {
        const char *alg;
        uint64_t burst;
    } algs[] = {{"fixed_window", 0}, {"sliding_window_counter", 0}, {"token_bucket", 5}};
    struct sl_store *redis = store_new(1000, NULL);
    sl_store_redis_pin_clock(redis, pinned_clock);
    struct sl_store *memory = sl_store_memory_new(100, UINT64_MAX, pinned_clock);
    pinned = BASE + S;
    for (size_t i = 0; i < sizeof algs / sizeof algs[0]; i++) {
        struct sl_limit lim = limit(algs[i].alg, 5, W, algs[i].burst, false);
        for (int k = 0; k < 2; k++) {
            struct sl_store *store = k ? redis : memory;
            struct sl_decision d = decide_units(store, &lim, 6, 6);
            ck_assert(!d.allowed);
            ck_assert_uint_eq(d.retry_after_us, SL_TIME_MAX);
            d = decide_units(store, &lim, 5, 5);
            ck_assert_msg(d.allowed, "%s: the full capacity still fits", algs[i].alg);
        }
    }
    sl_store_free(memory);
    sl_store_free(redis);
}
END_TEST

/* Without a pinned clock the scripts read Redis's TIME: the store is unchanged for production. */
START_TEST(test_unpinned_reads_redis_time)
{
    struct sl_store *redis = store_new(1000, NULL);
    struct sl_limit lim = limit("fixed_window", 10, W, 0, false);
    struct sl_decision d = decide_units(redis, &lim, 3, 3);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.remaining, 7);
    ck_assert_uint_le(d.reset_us, W);
    sl_store_redis_pin_clock(redis, pinned_clock);
    pinned = (sl_clock_real_us() / W + 100) * W + S; /* a later window: nothing taken yet */
    d = decide_units(redis, &lim, 1, 1);
    ck_assert_uint_eq(d.remaining, 9);
    ck_assert_uint_eq(d.reset_us, 59 * S);
    sl_store_free(redis);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("cost_stores");
    TCase *tc = tcase_create("both");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_same_decisions, 0, (int)(sizeof scenarios / sizeof scenarios[0]));
    tcase_add_test(tc, test_never_fits);
    tcase_add_test(tc, test_unpinned_reads_redis_time);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
