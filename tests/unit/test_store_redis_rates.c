/* A change of rate on Redis, against a real redis-server: the same sequences as
 * test_rate_change give the same decisions as on the memory store (whose clock is set to
 * Redis's for the comparison), for every algorithm, with N up, N down, P up and P down; and a
 * key moved to a rate under which its state lasts longer (a longer period, a smaller N) and
 * then only denied outlives the expiry its last admission set, as the memory store's entry
 * does. */
#include "sluice/rates.h"
#include "support/rate_scenarios.h"
#include "support/redis_fixture.h"
#include "support/run_suite.h"

/* Redis's clock, read with TIME. */
static uint64_t redis_time(void)
{
    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "TIME");
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    uint64_t t =
        strtoull(r->element[0]->str, NULL, 10) * S + strtoull(r->element[1]->str, NULL, 10);
    freeReplyObject(r);
    redisFree(c);
    return t;
}

static uint64_t memory_now;

static uint64_t memory_clock(void)
{
    return memory_now;
}

/* Where the next decision's time comes from: Redis's clock, for both stores, unless a test
 * pins the Redis store to memory_clock and sets its own. */
static uint64_t (*now_source)(void) = redis_time;

static struct sl_limit limit_of(const char *alg, uint64_t n, uint64_t p, uint64_t burst)
{
    return limit(alg, n, p, burst, false);
}

/* One decision under quota `q` on both stores, compared; returns whether it was admitted. */
static bool decide_both_quota(struct sl_store *redis, struct sl_store *memory,
                              const struct sl_limit *lim, const struct sl_quota *q, const char *key,
                              const char *what)
{
    static const struct sl_units one = {1, 1};
    uint64_t t0 = sl_clock_mono_us();
    memory_now = now_source();
    struct result m = {0};
    sl_store_decide_quota(memory, lim, q, key, strlen(key), &one, on_result, &m);
    ck_assert_int_eq(m.status, SL_STORE_OK);
    struct result rr = {0};
    sl_store_decide_quota(redis, lim, q, key, strlen(key), &one, on_result, &rr);
    ck_assert_msg(run_until_called(&rr.calls, 5 * S), "no callback within 5 s");
    ck_assert_int_eq(rr.status, SL_STORE_OK);
    struct sl_decision r = rr.d;
    ck_assert_uint_eq(r.limit, q->count);
    ck_assert_uint_eq(m.d.limit, q->count);
    uint64_t apart = sl_clock_mono_us() - t0;
    ck_assert_msg(r.allowed == m.d.allowed, "%s: redis %d, memory %d", what, r.allowed,
                  m.d.allowed);
    ck_assert_msg(r.remaining == m.d.remaining, "%s: remaining redis %llu, memory %llu", what,
                  (unsigned long long)r.remaining, (unsigned long long)m.d.remaining);
    /* The two clocks are read apart, by at most the time the pair took, which a loaded
     * machine stretches past the second allowed otherwise. */
    uint64_t slack = S + apart;
    ck_assert_msg(r.retry_after_us + slack >= m.d.retry_after_us &&
                      m.d.retry_after_us + slack >= r.retry_after_us,
                  "%s: retry_after redis %llu, memory %llu", what,
                  (unsigned long long)r.retry_after_us, (unsigned long long)m.d.retry_after_us);
    ck_assert_msg(r.reset_us + slack >= m.d.reset_us && m.d.reset_us + slack >= r.reset_us,
                  "%s: reset redis %llu, memory %llu", what, (unsigned long long)r.reset_us,
                  (unsigned long long)m.d.reset_us);
    return r.allowed;
}

static bool decide_both(struct sl_store *redis, struct sl_store *memory, const struct sl_limit *lim,
                        const char *key, const char *what)
{
    struct sl_quota q = sl_limit_quota(lim);
    return decide_both_quota(redis, memory, lim, &q, key, what);
}

START_TEST(test_same_decisions_as_memory)
{
    const struct scenario *sc = &scenarios[_i];
    struct sl_store *redis = store_new(1000, NULL);
    struct sl_store *memory = sl_store_memory_new(1000, UINT64_MAX, memory_clock);
    struct sl_limit a = limit_of(sc->alg, sc->n, sc->p, sc->burst);
    struct sl_limit b = limit_of(sc->alg, sc->n2, sc->p2, sc->burst2);
    b.prev_rates[0] = (struct sl_prev_rate){{a.count, a.period_us}, UINT64_MAX, false};
    b.nprev_rates = 1;
    char what[128];
    snprintf(what, sizeof what, "%s %llu/%llus -> %llu/%llus", sc->alg, (unsigned long long)a.count,
             (unsigned long long)(a.period_us / S), (unsigned long long)b.count,
             (unsigned long long)(b.period_us / S));
    uint64_t start = redis_time();
    unsigned before = 0, after = 0;
    for (unsigned i = 0; i < sc->before; i++)
        before += decide_both(redis, memory, &a, "k", what);
    for (unsigned i = 0; i < 10; i++)
        after += decide_both(redis, memory, &b, "k", what);
    ck_assert_uint_eq(before, sc->before);
    /* Where an aligned window began depends on the clock for a window's P down; the
     * scenario's count holds when the hour's window began in the current shorter one. */
    bool aligned =
        strcmp(sc->alg, "fixed_window") == 0 || strcmp(sc->alg, "sliding_window_counter") == 0;
    if (!aligned || sc->p2 >= sc->p || start % sc->p < sc->p2)
        ck_assert_msg(after == sc->after, "%s: %u admitted after the change", what, after);
    sl_store_free(memory);
    sl_store_free(redis);
}
END_TEST

/* A consumer moved from one rate to another (`rates:`, the limit's own rate unchanged): the
 * same sequences give the same decisions on both stores, the memory store keying the state by
 * the limit's rate and carrying it over as a reload's change of rate does. */
START_TEST(test_consumer_plan_change_same_decisions)
{
    const struct scenario *sc = &scenarios[_i];
    struct sl_store *redis = store_new(1000, NULL);
    struct sl_store *memory = sl_store_memory_new(1000, UINT64_MAX, memory_clock);
    struct sl_limit lim = limit_of(sc->alg, 7, 30 * S, 7);
    lim.rates = sl_rates_new();
    ck_assert_ptr_nonnull(lim.rates);
    struct sl_quota a = {sc->n, sc->p, sc->burst}, b = {sc->n2, sc->p2, sc->burst2};
    char what[128];
    snprintf(what, sizeof what, "plan %s %llu/%llus -> %llu/%llus", sc->alg,
             (unsigned long long)a.count, (unsigned long long)(a.period_us / S),
             (unsigned long long)b.count, (unsigned long long)(b.period_us / S));
    uint64_t start = redis_time();
    unsigned before = 0, after = 0;
    for (unsigned i = 0; i < sc->before; i++)
        before += decide_both_quota(redis, memory, &lim, &a, "c", what);
    for (unsigned i = 0; i < 10; i++)
        after += decide_both_quota(redis, memory, &lim, &b, "c", what);
    ck_assert_uint_eq(before, sc->before);
    bool aligned =
        strcmp(sc->alg, "fixed_window") == 0 || strcmp(sc->alg, "sliding_window_counter") == 0;
    if (!aligned || sc->p2 >= sc->p || start % sc->p < sc->p2)
        ck_assert_msg(after == sc->after, "%s: %u admitted after the change", what, after);
    sl_rates_free(lim.rates);
    sl_store_free(memory);
    sl_store_free(redis);
}
END_TEST

/* A log written under a larger N: a place frees when the (count − N + 1)-th oldest entry
 * leaves, not the oldest. */
START_TEST(test_sliding_window_n_down_retry_after)
{
    struct sl_store *redis = store_new(1000, NULL);
    uint64_t now = redis_time();
    redisContext *c = client();
    for (int i = 0; i < 4; i++) {
        char score[32], member[8];
        snprintf(score, sizeof score, "%llu", (unsigned long long)(now - (uint64_t)(10 - i) * MIN));
        snprintf(member, sizeof member, "m%d", i);
        freeReplyObject(redisCommand(c, "ZADD sluice:r1:l1:sw:k %s %s", score, member));
    }
    redisFree(c);
    struct sl_limit b = limit_of("sliding_window", 2, HOUR, 0);
    struct sl_decision d = decide_ok(redis, &b, "k");
    ck_assert(!d.allowed);
    /* Entries at −10, −9, −8 and −7 min: the 3rd oldest leaves in 52 min, the newest in 53. */
    ck_assert_uint_le(d.retry_after_us, 52 * MIN);
    ck_assert_uint_gt(d.retry_after_us, 52 * MIN - S);
    ck_assert_uint_le(d.reset_us, 53 * MIN);
    ck_assert_uint_gt(d.reset_us, 53 * MIN - S);
    sl_store_free(redis);
}
END_TEST

/* sliding_window moved to a smaller N and back up within the window, as a consumer's plan and
 * by reloads: both stores count every request admitted in the window, so that across the
 * moves exactly N are admitted, and every decision, retry_after and reset agree. */
START_TEST(test_sliding_window_down_and_back_up)
{
    struct sl_store *redis = store_new(1000, NULL);
    struct sl_store *memory = sl_store_memory_new(1000, UINT64_MAX, memory_clock);

    struct sl_limit lim = limit_of("sliding_window", 7, 30 * S, 0);
    lim.rates = sl_rates_new();
    ck_assert_ptr_nonnull(lim.rates);
    const struct sl_quota ten = {10, MIN, 0}, three = {3, MIN, 0}, one = {1, MIN, 0};
    const struct sl_quota *plans[] = {&ten, &three, &ten, &one, &ten, &three, &ten};
    unsigned admitted = 0;
    for (size_t i = 0; i < sizeof plans / sizeof plans[0]; i++)
        for (int k = 0; k < 4; k++)
            admitted += decide_both_quota(redis, memory, &lim, plans[i], "c", "plan moves");
    ck_assert_uint_eq(admitted, 10);
    sl_rates_free(lim.rates);

    struct sl_limit a = limit_of("sliding_window", 10, MIN, 0);
    struct sl_limit b = limit_of("sliding_window", 3, MIN, 0);
    struct sl_limit c = limit_of("sliding_window", 10, MIN, 0);
    b.prev_rates[0] = (struct sl_prev_rate){{a.count, a.period_us}, UINT64_MAX, false};
    b.nprev_rates = 1;
    c.prev_rates[0] = (struct sl_prev_rate){{b.count, b.period_us}, UINT64_MAX, false};
    c.prev_rates[1] = b.prev_rates[0];
    c.nprev_rates = 2;
    admitted = 0;
    for (int k = 0; k < 6; k++)
        admitted += decide_both(redis, memory, &a, "k", "reload 10/1m");
    for (int k = 0; k < 3; k++)
        admitted += decide_both(redis, memory, &b, "k", "reload 3/1m");
    for (int k = 0; k < 6; k++)
        admitted += decide_both(redis, memory, &c, "k", "reload back to 10/1m");
    ck_assert_uint_eq(admitted, 10);
    sl_store_free(memory);
    sl_store_free(redis);
}
END_TEST

/* A key's expiry in Redis runs on Redis's own clock, whatever time the scripts are given: the
 * expiry tests really wait, with short periods, and pin both stores to a clock that runs with
 * real time from an instant chosen so that every window begins where the test needs it. */
#define SHORT (300 * MS)
#define LONG (1200 * MS)
/* 1000 h is a multiple of both periods: windows of either begin there. */
#define EXPIRY_T0 (1000 * HOUR + 10 * MS)

static uint64_t frozen_at, frozen_mono; /* frozen_mono 0: the clock stands at frozen_at */

static uint64_t running_clock(void)
{
    return frozen_mono ? frozen_at + (sl_clock_mono_us() - frozen_mono) : frozen_at;
}

/* Waits until running_clock() reaches `t`. */
static void wait_until_clock(uint64_t t)
{
    for (uint64_t now = running_clock(); now < t; now = running_clock())
        usleep((useconds_t)(t - now < 20 * MS ? t - now : 20 * MS));
}

static const struct expiry_case {
    const char *alg;
    struct sl_quota before, after; /* `before.count` admitted at EXPIRY_T0, then moved */
    uint64_t decided_until;        /* decisions every 25 ms after the move until then */
    uint64_t free_at;              /* admitted again (both stores) from then on */
    bool kept;                     /* every decision until decided_until denied */
} expiry_cases[] = {
    /* P up. 3 taken in a 300 ms window that began with the 1.2 s one: 3 of 3 until it ends. */
    {"fixed_window", {3, SHORT, 0}, {3, LONG, 0}, 5 * SHORT / 2, LONG + 50 * MS, true},
    {"sliding_window_counter", {3, SHORT, 0}, {3, LONG, 0}, 5 * SHORT / 2, LONG + 50 * MS, true},
    /* 3 in the log, denied until they leave the 1.2 s window. */
    {"sliding_window", {3, SHORT, 0}, {3, LONG, 0}, 5 * SHORT / 2, LONG + 50 * MS, true},
    /* Full again 300 ms after the 3, the same instant under any rate: with burst 1 under
     * 3/1.2s denied until then, and the key expires then on both stores. */
    {"token_bucket", {3, SHORT, 3}, {3, LONG, 1}, 5 * SHORT / 2, LONG + 50 * MS, false},
    {"leaky_bucket", {3, SHORT, 2}, {3, LONG, 0}, 5 * SHORT / 2, LONG + 50 * MS, false},
    /* N down. 4 taken under N = 2 take two windows to repay: denied in the next one too. */
    {"fixed_window", {4, SHORT, 0}, {2, SHORT, 0}, 2 * SHORT - 50 * MS, 2 * SHORT + 50 * MS, true},
    {"sliding_window_counter",
     {4, SHORT, 0},
     {2, SHORT, 0},
     2 * SHORT - 50 * MS,
     2 * SHORT + 50 * MS,
     true},
};

/* A key moved to another rate, by its consumer's plan (even _i) or by a reload (odd), under
 * which its state lasts longer than the expiry its last admission set (a longer period, or a
 * smaller N with more taken than it repays in a window), and from then on only denied past
 * that expiry: every decision is the memory store's, so the key stays denied (Redis kept it
 * alive) until the new rate lets it in, on every algorithm. */
START_TEST(test_changed_rate_then_denials_keep_the_key)
{
    const struct expiry_case *ec = &expiry_cases[_i / 2];
    bool reload = _i % 2 == 1;
    struct sl_store *redis = store_new(1000, NULL);
    struct sl_store *memory = sl_store_memory_new(1000, UINT64_MAX, memory_clock);
    sl_store_redis_pin_clock(redis, memory_clock);
    now_source = running_clock;
    frozen_at = EXPIRY_T0;
    frozen_mono = 0;

    struct sl_limit plan = limit_of(ec->alg, 7, 30 * S, 7);
    plan.rates = sl_rates_new();
    ck_assert_ptr_nonnull(plan.rates);
    struct sl_limit a = limit_of(ec->alg, ec->before.count, ec->before.period_us, ec->before.burst);
    struct sl_limit b = limit_of(ec->alg, ec->after.count, ec->after.period_us, ec->after.burst);
    b.prev_rates[0] = (struct sl_prev_rate){{a.count, a.period_us}, UINT64_MAX, false};
    b.nprev_rates = 1;
    char what[96];
    snprintf(what, sizeof what, "%s, %s %llu/%llums -> %llu/%llums", ec->alg,
             reload ? "reload" : "plan", (unsigned long long)a.count,
             (unsigned long long)(a.period_us / MS), (unsigned long long)b.count,
             (unsigned long long)(b.period_us / MS));
    const char *key = reload ? "k" : "c";
    char redis_key[64];
    snprintf(redis_key, sizeof redis_key, "sluice:r1:l1:%s:%s", a.alg->tag, key);

    /* Those before at one instant, however long the machine takes; then the clock runs as if
     * from before the first, so that it never lags the real time in which Redis expires what
     * they wrote. */
    uint64_t started = sl_clock_mono_us();
    for (uint64_t i = 0; i < ec->before.count; i++)
        ck_assert(reload ? decide_both(redis, memory, &a, key, what)
                         : decide_both_quota(redis, memory, &plan, &ec->before, key, what));
    frozen_mono = started;

    /* Judged by the instant both stores decided at (memory_now), which a busy machine may
     * put later than the loop's own reading. */
    unsigned denied = 0, late = 0;
    for (;;) {
        bool allowed = reload ? decide_both(redis, memory, &b, key, what)
                              : decide_both_quota(redis, memory, &plan, &ec->after, key, what);
        uint64_t at = memory_now - EXPIRY_T0;
        if (at >= ec->decided_until)
            break;
        denied += !allowed;
        if (ec->kept)
            ck_assert_msg(!allowed, "%s: admitted %llu ms after the first", what,
                          (unsigned long long)(at / MS));
        if (ec->kept && !allowed && at > ec->before.period_us + 50 * MS && late++ == 0) {
            /* Denied past the expiry the admissions set, the key still there to say so. */
            long long ttl = command_int("PTTL %s", redis_key);
            ck_assert_msg(ttl > 0, "%s: PTTL %lld", what, ttl);
        }
        usleep(25 * MS);
    }
    ck_assert_uint_gt(denied, 0);
    if (ec->kept)
        ck_assert_uint_gt(late, 0);
    wait_until_clock(EXPIRY_T0 + ec->free_at);
    ck_assert(reload ? decide_both(redis, memory, &b, key, what)
                     : decide_both_quota(redis, memory, &plan, &ec->after, key, what));

    now_source = redis_time;
    sl_rates_free(plan.rates);
    sl_store_free(memory);
    sl_store_free(redis);
}
END_TEST

/* Commands that write a key the server has run since it started (scripts' included). */
static long long writes(void)
{
    static const char *const names[] = {"set", "zadd", "zrem", "pexpire", "del"};
    redisContext *c = client();
    ck_assert_ptr_nonnull(c);
    redisReply *r = redisCommand(c, "INFO commandstats");
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    long long n = 0;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        char field[32];
        snprintf(field, sizeof field, "cmdstat_%s:calls=", names[i]);
        const char *at = strstr(r->str, field);
        n += at ? atoll(at + strlen(field)) : 0;
    }
    freeReplyObject(r);
    redisFree(c);
    return n;
}

/* Under the rate that last wrote a key, a denial writes nothing (what keeps a key alive
 * across a change of rate costs the usual denial nothing), later in the window too, and in
 * the next window while sliding_window_counter's previous count still denies. A
 * sliding_window member begins with the key's time to live past it, in ms. */
START_TEST(test_same_rate_denials_write_nothing)
{
    static const struct {
        const char *alg;
        uint64_t burst;
        uint64_t later; /* a second denial, this long after the first */
    } cases[] = {{"fixed_window", 0, 30 * MIN},
                 {"sliding_window_counter", 0, HOUR - 10 * MS}, /* the next window's start */
                 {"sliding_window", 0, 30 * MIN},
                 {"token_bucket", 3, 5 * MIN},
                 {"leaky_bucket", 2, 5 * MIN}};
    struct sl_store *redis = store_new(1000, NULL);
    sl_store_redis_pin_clock(redis, memory_clock);
    now_source = running_clock;
    frozen_mono = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        /* A store of its own: each case starts at the same instant again, and a memory
         * store never goes back in time. */
        struct sl_store *memory = sl_store_memory_new(1000, UINT64_MAX, memory_clock);
        struct sl_limit lim = limit_of(cases[i].alg, 3, HOUR, cases[i].burst);
        frozen_at = EXPIRY_T0;
        for (int k = 0; k < 3; k++)
            ck_assert(decide_both(redis, memory, &lim, "k", cases[i].alg));
        long long before = writes();
        ck_assert(!decide_both(redis, memory, &lim, "k", cases[i].alg));
        frozen_at = EXPIRY_T0 + cases[i].later;
        ck_assert(!decide_both(redis, memory, &lim, "k", cases[i].alg));
        ck_assert_msg(writes() == before, "%s: a denial wrote", cases[i].alg);
        sl_store_free(memory);
    }
    redisContext *c = client();
    redisReply *r = redisCommand(c, "ZRANGE sluice:r1:l1:sw:k 0 -1");
    ck_assert_int_eq(r->type, REDIS_REPLY_ARRAY);
    ck_assert_uint_eq(r->elements, 3);
    for (size_t k = 0; k < r->elements; k++)
        ck_assert(strncmp(r->element[k]->str, "3600000/", 8) == 0);
    freeReplyObject(r);
    redisFree(c);
    now_source = redis_time;
    sl_store_free(redis);
}
END_TEST

/* A bucket written under another N keeps the N in the key and converts exactly, rounding
 * toward later: 1 µs and 1/3 under N = 3 is 1 µs and 1/2, rounded up, under N = 2. */
START_TEST(test_bucket_rescale_rounds_later)
{
    struct sl_store *redis = store_new(1000, NULL);
    struct sl_limit a = limit_of("token_bucket", 3, 10 * S, 1);
    ck_assert(decide_ok(redis, &a, "k").allowed);
    redisContext *c = client();
    redisReply *r = redisCommand(c, "GET sluice:r1:l1:tb:k");
    ck_assert_int_eq(r->type, REDIS_REPLY_STRING);
    double f[3];
    ck_assert(state_of(r->str, r->len, 3, f));
    ck_assert(f[2] == 3); /* {u, f, n} */
    freeReplyObject(r);
    /* tat a whole hour ahead plus 1/3 µs: u = now + 1 h, f = 1 under N = 3. */
    double state[3] = {(double)(redis_time() + HOUR), 1, 3};
    set_state(c, "sluice:r1:l1:tb:k", 3, state);
    struct sl_limit b = limit_of("token_bucket", 2, 10 * S, 1);
    ck_assert(!decide_ok(redis, &b, "k").allowed);
    /* A denial writes nothing: the conversion is made again on every read. */
    r = redisCommand(c, "GET sluice:r1:l1:tb:k");
    ck_assert(state_of(r->str, r->len, 3, f));
    ck_assert(f[0] == state[0] && f[1] == 1 && f[2] == 3);
    freeReplyObject(r);
    state[1] = 2;
    set_state(c, "sluice:r1:l1:tb:k", 3, state);
    struct sl_decision d = decide_ok(redis, &b, "k");
    ck_assert(!d.allowed);
    /* ceil(2·2/3) = 2 = N: one whole µs later, f = 0. */
    ck_assert_uint_le(d.reset_us, HOUR + 1);
    ck_assert_uint_gt(d.reset_us, HOUR - S);
    redisFree(c);
    sl_store_free(redis);
}
END_TEST

/* A key an earlier sluice wrote as a hash is read from it: a quota used up there is denied
 * (a denial leaves a bucket's hash as it was, and writes a window's state again as a string,
 * since the hash does not say until when it was set to live), one unit left there is
 * admitted, and the key is one string from that write on. Each algorithm, N = 5: the hash
 * says 5 of 5 used, then 4. */
START_TEST(test_hash_written_before_is_read)
{
    static const struct {
        const char *alg, *tag;
        uint64_t period, burst;
        bool bucket;
    } cases[] = {{"fixed_window", "fw", 24 * HOUR, 0, false},
                 {"sliding_window_counter", "swc", 24 * HOUR, 0, false},
                 {"token_bucket", "tb", HOUR, 5, true},
                 {"leaky_bucket", "lb", HOUR, 4, true}};
    struct sl_store *redis = store_new(1000, NULL);
    redisContext *c = client();
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct sl_limit lim = limit_of(cases[i].alg, 5, cases[i].period, cases[i].burst);
        char key[64];
        snprintf(key, sizeof key, "sluice:r1:l1:%s:old", cases[i].tag);
        for (int used = 5; used >= 4; used--) {
            uint64_t now = redis_time();
            freeReplyObject(redisCommand(c, "DEL %s", key));
            if (cases[i].bucket) {
                /* tat `used` units of P/N (12 min) ahead of now; the script's own now, a
                 * little later, takes from it less than a unit. */
                unsigned long long tat = now + (uint64_t)used * 12 * MIN;
                freeReplyObject(redisCommand(c, "HSET %s u %llu f 0 n 5", key, tat));
            } else {
                /* The current window's start and its count (a day long: a window ending
                 * within the test is unlikely, and refused). */
                unsigned long long start = now - now % cases[i].period;
                ck_assert_msg(now - start < cases[i].period - 10 * S, "at a window's end: rerun");
                freeReplyObject(redisCommand(c, "HSET %s s %llu c %d p 0", key, start, used));
            }
            ck_assert_int_eq(command_int("EXPIRE %s 3600", key), 1);
            struct sl_decision d = decide_ok(redis, &lim, "old");
            redisReply *t = redisCommand(c, "TYPE %s", key);
            if (used == 5) {
                ck_assert_msg(!d.allowed, "%s: admitted past a used-up hash", cases[i].alg);
                ck_assert_str_eq(t->str, cases[i].bucket ? "hash" : "string");
                if (!cases[i].bucket) {
                    /* The same start and count, and until when the key now lives: the
                     * window's end (fixed_window), or the next one's, when the count has
                     * stopped weighing (sliding_window_counter). */
                    redisReply *v = redisCommand(c, "GET %s", key);
                    double f[4];
                    int fields = strcmp(cases[i].tag, "fw") == 0 ? 3 : 4;
                    ck_assert(state_of(v->str, v->len, fields, f));
                    ck_assert(f[0] == (double)(now - now % cases[i].period) && f[1] == 5);
                    ck_assert(f[fields - 1] == f[0] + (fields - 2) * (double)cases[i].period);
                    freeReplyObject(v);
                }
            } else {
                ck_assert_msg(d.allowed, "%s: denied with a unit left", cases[i].alg);
                ck_assert_uint_eq(d.remaining, 0);
                ck_assert_str_eq(t->str, "string");
            }
            freeReplyObject(t);
        }
    }
    redisFree(c);
    sl_store_free(redis);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("store_redis_rates");
    TCase *tc = tcase_create("redis");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_loop_test(tc, test_same_decisions_as_memory, 0,
                        (int)(sizeof scenarios / sizeof scenarios[0]));
    tcase_add_loop_test(tc, test_consumer_plan_change_same_decisions, 0,
                        (int)(sizeof scenarios / sizeof scenarios[0]));
    tcase_add_test(tc, test_sliding_window_n_down_retry_after);
    tcase_add_test(tc, test_sliding_window_down_and_back_up);
    tcase_add_test(tc, test_same_rate_denials_write_nothing);
    tcase_add_loop_test(tc, test_changed_rate_then_denials_keep_the_key, 0,
                        (int)(2 * sizeof expiry_cases / sizeof expiry_cases[0]));
    tcase_add_test(tc, test_bucket_rescale_rounds_later);
    tcase_add_test(tc, test_hash_written_before_is_read);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
