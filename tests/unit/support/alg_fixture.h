/* Algorithm test fixture: one hand-built limit and one zeroed state, driven by an injected
 * clock, plus checks of the promises every algorithm makes (retry_after and reset exact). */
#ifndef SLUICE_TEST_ALG_FIXTURE_H
#define SLUICE_TEST_ALG_FIXTURE_H

#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "run_suite.h"
#include "sluice/limit.h"

#define US_PER_S 1000000ull
#define US_PER_DAY (86400ull * US_PER_S)

struct alg_fixture {
    struct sl_limit lim;
    void *state;
    size_t state_size;
    struct sl_units units; /* what each decision asks: {1, 1} unless a test sets it */
};

static inline void fx_init(struct alg_fixture *f, const char *alg, uint64_t count,
                           uint64_t period_us, uint64_t burst, bool delay)
{
    memset(f, 0, sizeof *f);
    f->lim.name = "test";
    f->lim.alg = sl_algorithm_find(alg);
    ck_assert_ptr_nonnull(f->lim.alg);
    f->lim.count = count;
    f->lim.period_us = period_us;
    f->lim.burst = burst;
    f->lim.delay = delay;
    struct sl_quota q = sl_limit_quota(&f->lim);
    f->state_size = f->lim.alg->state_size(&q);
    f->units = (struct sl_units){1, 1};
    f->state = calloc(1, f->state_size);
    ck_assert_ptr_nonnull(f->state);
}

static inline void fx_deinit(struct alg_fixture *f)
{
    free(f->state);
}

static inline struct sl_decision fx_decide(struct alg_fixture *f, uint64_t now)
{
    struct sl_decision d;
    memset(&d, 0xa5, sizeof d); /* every field must be written */
    struct sl_quota q = sl_limit_quota(&f->lim);
    f->lim.alg->decide(&f->lim, &q, f->state, now, &f->units, &d);
    /* Plain checks: ck_assert marks a point through a pipe on every call, too slow for
     * the million-request loops. */
    bool consistent = d.limit == f->lim.count &&
                      (d.allowed ? d.retry_after_us == 0
                                 : d.remaining == 0 && d.delay_us == 0 && d.retry_after_us > 0);
    if (!consistent)
        ck_abort_msg("inconsistent decision at %llu: allowed=%d limit=%llu remaining=%llu "
                     "retry_after=%llu delay=%llu",
                     (unsigned long long)now, d.allowed, (unsigned long long)d.limit,
                     (unsigned long long)d.remaining, (unsigned long long)d.retry_after_us,
                     (unsigned long long)d.delay_us);
    return d;
}

/* The limit moved to `count`/`period_us`, its state carried over by the algorithm's
 * rescale() into a state of rescaled_size bytes, as the memory store carries it. */
static inline void fx_change_rate(struct alg_fixture *f, uint64_t count, uint64_t period_us)
{
    const struct sl_algorithm_ops *alg = f->lim.alg;
    struct sl_rate from = {f->lim.count, f->lim.period_us};
    f->lim.count = count;
    f->lim.period_us = period_us;
    if (!alg->rescale)
        return;
    struct sl_quota q = sl_limit_quota(&f->lim);
    size_t size =
        alg->rescaled_size ? alg->rescaled_size(&q, &from, f->state) : alg->state_size(&q);
    void *state = calloc(1, size);
    ck_assert_ptr_nonnull(state);
    alg->rescale(&q, &from, f->state, state);
    free(f->state);
    f->state = state;
    f->state_size = size;
}

/* Requests admitted out of `attempts` made at one instant. */
static inline unsigned fx_admitted(struct alg_fixture *f, uint64_t now, unsigned attempts)
{
    unsigned n = 0;
    for (unsigned i = 0; i < attempts; i++)
        n += fx_decide(f, now).allowed;
    return n;
}

/* Decides at `now` on a copy of the state, leaving the fixture's state untouched. */
static inline struct sl_decision fx_probe(struct alg_fixture *f, const void *state, uint64_t now)
{
    void *copy = malloc(f->state_size);
    ck_assert_ptr_nonnull(copy);
    memcpy(copy, state, f->state_size);
    struct sl_decision d;
    struct sl_quota q = sl_limit_quota(&f->lim);
    f->lim.alg->decide(&f->lim, &q, copy, now, &f->units, &d);
    free(copy);
    return d;
}

/* After a denial at `now`: denied one µs before now + retry_after, admitted at it. */
static inline void fx_check_retry_exact(struct alg_fixture *f, uint64_t now,
                                        const struct sl_decision *d)
{
    ck_assert(!d->allowed);
    if (d->retry_after_us > 1)
        ck_assert(!fx_probe(f, f->state, now + d->retry_after_us - 1).allowed);
    ck_assert(fx_probe(f, f->state, now + d->retry_after_us).allowed);
}

/* At now + reset_us the state decides exactly as a zeroed one. */
static inline void fx_check_reset(struct alg_fixture *f, uint64_t now, const struct sl_decision *d)
{
    void *zero = calloc(1, f->state_size);
    ck_assert_ptr_nonnull(zero);
    uint64_t t = now + d->reset_us;
    struct sl_decision a = fx_probe(f, f->state, t), b = fx_probe(f, zero, t);
    free(zero);
    ck_assert_int_eq(a.allowed, b.allowed);
    ck_assert_uint_eq(a.remaining, b.remaining);
    ck_assert_uint_eq(a.reset_us, b.reset_us);
    ck_assert_uint_eq(a.delay_us, b.delay_us);
}

/* A random walk of requests checking both promises at every step. */
static inline void fx_random_walk(struct alg_fixture *f, uint64_t start, unsigned steps,
                                  uint64_t max_step_us, unsigned seed)
{
    uint64_t now = start;
    for (unsigned i = 0; i < steps; i++) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 3 != 0)
            now += ((uint64_t)(seed >> 8) * 2654435761u) % (max_step_us + 1);
        struct sl_decision d = fx_decide(f, now);
        if (!d.allowed)
            fx_check_retry_exact(f, now, &d);
        fx_check_reset(f, now, &d);
    }
}

/* The same walk with costs from 0 to `max_need` and, one step in seven, a charge of
 * 5·max_need units (debt): retry_after says when the request's own cost fits. */
static inline void fx_random_walk_units(struct alg_fixture *f, uint64_t start, unsigned steps,
                                        uint64_t max_step_us, unsigned seed, uint64_t max_need)
{
    uint64_t now = start;
    for (unsigned i = 0; i < steps; i++) {
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 3 != 0)
            now += ((uint64_t)(seed >> 8) * 2654435761u) % (max_step_us + 1);
        uint64_t need = (seed >> 4) % (max_need + 1);
        f->units = (seed >> 12) % 7 == 0 ? (struct sl_units){0, 5 * max_need}
                                         : (struct sl_units){need, need};
        struct sl_decision d = fx_decide(f, now);
        if (!d.allowed)
            fx_check_retry_exact(f, now, &d);
        fx_check_reset(f, now, &d);
    }
    f->units = (struct sl_units){1, 1};
}

#endif
