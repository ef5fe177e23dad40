/* The heavy-hitter sketches on an injected clock: the true top 10 of a Zipf stream found
 * with counts inside the stated error, split over workers or not; minutes leaving the
 * window take their keys along; memory fixed whatever the number of keys; denials counted
 * apart; long keys shown as the store holds them; key-source changes forget old keys; a
 * reader racing the writer only ever sees consistent summaries; the window an answer covers,
 * for a young process and on a machine booted recently; the /top answer. */
#include <check.h>
#include <event2/buffer.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/sha256.h"
#include "sluice/top.h"
#include "support/run_suite.h"

#define MIN_US 60000000ull
/* A clock far from 0, in the middle of a minute. */
#define T0 (1000 * MIN_US + MIN_US / 2)

static struct sl_route route = {.name = (char *)"api"};

static struct sl_limit limit_with(const char *name, unsigned id, uint32_t tag)
{
    return (struct sl_limit){
        .name = (char *)name, .route = &route, .metrics_id = id, .top_tag = tag};
}

static void rec(struct sl_top *top, unsigned worker, const struct sl_limit *lim, const char *key,
                bool denied, uint64_t now)
{
    sl_top_record(sl_top_slot(top, worker), lim, key, strlen(key), denied, now);
}

static const struct sl_top_item *find(const struct sl_top_list *l, const char *key)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->items[i].len == strlen(key) && memcmp(l->items[i].key, key, l->items[i].len) == 0)
            return &l->items[i];
    return NULL;
}

/* ---- Zipf(1.1) over 100 000 keys, fixed seed ---- */

#define UNIVERSE 100000
#define DRAWS 100000

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng(void)
{
    /* xorshift64*: fixed seed, the same stream on every machine. */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static double *zipf_cdf(double s)
{
    double *cdf = malloc(UNIVERSE * sizeof *cdf);
    double sum = 0;
    for (int i = 0; i < UNIVERSE; i++)
        cdf[i] = sum += pow(i + 1, -s);
    for (int i = 0; i < UNIVERSE; i++)
        cdf[i] /= sum;
    return cdf;
}

static int zipf_draw(const double *cdf)
{
    double u = (double)(rng() >> 11) / (double)(1ull << 53);
    int lo = 0, hi = UNIVERSE - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

static int by_true_count(const void *a, const void *b, void *counts)
{
    const unsigned *c = counts;
    int x = *(const int *)a, y = *(const int *)b;
    return c[x] != c[y] ? (c[x] > c[y] ? -1 : 1) : x - y;
}

static void check_zipf_top10(unsigned workers)
{
    double *cdf = zipf_cdf(1.1);
    unsigned *truth = calloc(UNIVERSE, sizeof *truth);
    int *order = malloc(UNIVERSE * sizeof *order);
    struct sl_top *top = sl_top_new(workers, 0);
    struct sl_limit lim = limit_with("per_key", 3, 7);
    char key[32];

    rng_state = 0x9e3779b97f4a7c15ull;
    for (int i = 0; i < DRAWS; i++) {
        int k = zipf_draw(cdf);
        truth[k]++;
        snprintf(key, sizeof key, "key-%d", k);
        /* Spread over two minutes, so the merge crosses summaries in time too. */
        rec(top, (unsigned)i % workers, &lim, key, false, T0 + (uint64_t)i * 600);
    }
    for (int i = 0; i < UNIVERSE; i++)
        order[i] = i;
    qsort_r(order, UNIVERSE, sizeof *order, by_true_count, truth);
    /* The seed gives a strict 10th place, so "the top 10" is one set. */
    ck_assert_uint_gt(truth[order[9]], truth[order[10]]);

    struct sl_top_report r;
    ck_assert_int_eq(sl_top_read(top, &lim, T0 + DRAWS * 600ull, 10, &r), 0);
    ck_assert_uint_eq(r.seen.total, DRAWS);
    ck_assert_uint_le(r.seen.error_bound, DRAWS / SL_TOP_K);
    ck_assert_uint_eq(r.seen.n, 10);
    for (int i = 0; i < 10; i++) {
        snprintf(key, sizeof key, "key-%d", order[i]);
        const struct sl_top_item *it = find(&r.seen, key);
        ck_assert_msg(it != NULL, "true top-10 key %s (%u) missing", key, truth[order[i]]);
        ck_assert_uint_ge(it->count, truth[order[i]]);
        ck_assert_uint_le(it->count - it->error, truth[order[i]]);
        ck_assert_uint_le(it->error, r.seen.error_bound);
    }
    ck_assert_uint_eq(r.denied.total, 0);
    ck_assert_uint_eq(r.denied.n, 0);
    sl_top_report_deinit(&r);
    sl_top_free(top);
    free(order);
    free(truth);
    free(cdf);
}

START_TEST(test_zipf_top10_one_worker)
{
    check_zipf_top10(1);
}
END_TEST

START_TEST(test_zipf_top10_four_workers)
{
    check_zipf_top10(4);
}
END_TEST

START_TEST(test_counts_exact_below_capacity)
{
    struct sl_top *top = sl_top_new(2, 0);
    struct sl_limit lim = limit_with("l", 0, 1);
    for (int i = 0; i < 30; i++)
        rec(top, i % 2, &lim, "a", i % 3 == 0, T0);
    for (int i = 0; i < 10; i++)
        rec(top, 0, &lim, "b", true, T0);
    struct sl_top_report r;
    ck_assert_int_eq(sl_top_read(top, &lim, T0, 5, &r), 0);
    ck_assert_uint_eq(r.seen.total, 40);
    ck_assert_uint_eq(r.seen.n, 2);
    ck_assert_str_eq(r.seen.items[0].key, "a");
    ck_assert_uint_eq(r.seen.items[0].count, 30);
    ck_assert_uint_eq(r.seen.items[0].error, 0);
    ck_assert_uint_eq(r.seen.items[1].count, 10);
    /* Denials: 10 of "a" (i % 3 == 0), 10 of "b"; ties listed by key. */
    ck_assert_uint_eq(r.denied.total, 20);
    ck_assert_uint_eq(r.denied.n, 2);
    ck_assert_str_eq(r.denied.items[0].key, "a");
    ck_assert_uint_eq(r.denied.items[0].count, 10);
    ck_assert_str_eq(r.denied.items[1].key, "b");
    ck_assert_uint_eq(r.denied.items[1].count, 10);
    sl_top_report_deinit(&r);
    sl_top_free(top);
}
END_TEST

START_TEST(test_window_expiry)
{
    struct sl_top *top = sl_top_new(1, 0);
    struct sl_limit lim = limit_with("l", 0, 1);
    struct sl_top_report r;

    for (int i = 0; i < 5; i++)
        rec(top, 0, &lim, "old", true, T0);
    rec(top, 0, &lim, "new", false, T0 + 3 * MIN_US);
    /* Four minutes on, "old"'s minute is the oldest of the five still merged. */
    ck_assert_int_eq(sl_top_read(top, &lim, T0 + 4 * MIN_US, 10, &r), 0);
    ck_assert_ptr_nonnull(find(&r.seen, "old"));
    ck_assert_uint_eq(r.denied.total, 5);
    sl_top_report_deinit(&r);
    /* Five minutes on it has left the window, even though nothing overwrote it. */
    ck_assert_int_eq(sl_top_read(top, &lim, T0 + 5 * MIN_US, 10, &r), 0);
    ck_assert_ptr_null(find(&r.seen, "old"));
    ck_assert_ptr_nonnull(find(&r.seen, "new"));
    ck_assert_uint_eq(r.seen.total, 1);
    ck_assert_uint_eq(r.denied.total, 0);
    sl_top_report_deinit(&r);
    /* Recording into the ring slot "old" used resets it before counting. */
    rec(top, 0, &lim, "later", false, T0 + 5 * MIN_US);
    ck_assert_int_eq(sl_top_read(top, &lim, T0 + 5 * MIN_US, 10, &r), 0);
    ck_assert_uint_eq(r.seen.total, 2);
    ck_assert_ptr_null(find(&r.seen, "old"));
    sl_top_report_deinit(&r);
    /* Ten minutes on, nothing. */
    ck_assert_int_eq(sl_top_read(top, &lim, T0 + 11 * MIN_US, 10, &r), 0);
    ck_assert_uint_eq(r.seen.total, 0);
    ck_assert_uint_eq(r.seen.n, 0);
    sl_top_report_deinit(&r);
    sl_top_free(top);
}
END_TEST

START_TEST(test_memory_bound_after_a_million_keys)
{
    struct sl_top *top = sl_top_new(2, 0);
    struct sl_limit a = limit_with("a", 0, 1), b = limit_with("b", 700, 1);
    char key[32];

    ck_assert_uint_eq(sl_top_memory(top), 0);
    rec(top, 0, &a, "first", false, T0);
    size_t one = sl_top_memory(top);
    ck_assert_uint_gt(one, 0);
    ck_assert_uint_le(one, SL_TOP_SKETCH_BYTES + 512);
    for (int i = 0; i < 1000000; i++) {
        snprintf(key, sizeof key, "distinct-%d", i);
        rec(top, 0, &a, key, i % 2, T0 + (uint64_t)i * 100);
    }
    ck_assert_uint_eq(sl_top_memory(top), one);
    /* Another limit on another worker: one more sketch and one more chunk, no more. */
    rec(top, 1, &b, "x", false, T0);
    ck_assert_uint_le(sl_top_memory(top), 2 * (SL_TOP_SKETCH_BYTES + 512));
    struct sl_top_report r;
    ck_assert_int_eq(sl_top_read(top, &a, T0 + 1000000ull * 100, 64, &r), 0);
    ck_assert_uint_le(r.seen.n, 64);
    ck_assert_uint_le(r.seen.error_bound, r.seen.total / SL_TOP_K);
    sl_top_report_deinit(&r);
    sl_top_free(top);
}
END_TEST

START_TEST(test_long_keys_as_the_store_holds_them)
{
    struct sl_top *top = sl_top_new(1, 0);
    struct sl_limit lim = limit_with("l", 0, 1);
    char longkey[301], exact[SL_TOP_KEY_MAX + 1], hex[2 * SL_SHA256_LEN + 1];

    memset(longkey, 'k', 300);
    longkey[300] = '\0';
    memset(exact, 'e', SL_TOP_KEY_MAX);
    exact[SL_TOP_KEY_MAX] = '\0';
    rec(top, 0, &lim, longkey, false, T0);
    rec(top, 0, &lim, longkey, false, T0);
    rec(top, 0, &lim, exact, false, T0);
    sl_sha256_hex(longkey, 300, hex);
    struct sl_top_report r;
    ck_assert_int_eq(sl_top_read(top, &lim, T0, 10, &r), 0);
    ck_assert_uint_eq(r.seen.n, 2);
    ck_assert_str_eq(r.seen.items[0].key, hex);
    ck_assert_uint_eq(r.seen.items[0].count, 2);
    ck_assert_str_eq(r.seen.items[1].key, exact);
    sl_top_report_deinit(&r);
    sl_top_free(top);
}
END_TEST

START_TEST(test_binary_keys_and_prefixes_are_distinct)
{
    struct sl_top *top = sl_top_new(1, 0);
    struct sl_limit lim = limit_with("l", 0, 1);
    sl_top_record(sl_top_slot(top, 0), &lim, "ab\0c", 4, false, T0);
    sl_top_record(sl_top_slot(top, 0), &lim, "ab", 2, false, T0);
    sl_top_record(sl_top_slot(top, 0), &lim, "ab\0c", 4, false, T0);
    sl_top_record(sl_top_slot(top, 0), &lim, "", 0, false, T0);
    struct sl_top_report r;
    ck_assert_int_eq(sl_top_read(top, &lim, T0, 10, &r), 0);
    ck_assert_uint_eq(r.seen.n, 3);
    ck_assert_uint_eq(r.seen.items[0].len, 4);
    ck_assert_uint_eq(r.seen.items[0].count, 2);
    ck_assert_int_eq(memcmp(r.seen.items[0].key, "ab\0c", 4), 0);
    sl_top_report_deinit(&r);
    sl_top_free(top);
}
END_TEST

START_TEST(test_key_source_change_forgets)
{
    struct sl_top *top = sl_top_new(2, 0);
    struct sl_limit before = limit_with("l", 5, 11), same = limit_with("l", 5, 11),
                    changed = limit_with("l", 5, 13);
    struct sl_top_report r;

    rec(top, 0, &before, "1.2.3.4", false, T0);
    rec(top, 1, &before, "1.2.3.4", false, T0);
    /* Same key sources after a reload: kept. */
    rec(top, 0, &same, "1.2.3.4", false, T0);
    ck_assert_int_eq(sl_top_read(top, &same, T0, 10, &r), 0);
    ck_assert_uint_eq(r.seen.items[0].count, 3);
    sl_top_report_deinit(&r);
    /* Changed: worker 1 has not recorded since, so its old keys are not shown either. */
    ck_assert_int_eq(sl_top_read(top, &changed, T0, 10, &r), 0);
    ck_assert_uint_eq(r.seen.total, 0);
    sl_top_report_deinit(&r);
    rec(top, 0, &changed, "api-key-9", false, T0);
    ck_assert_int_eq(sl_top_read(top, &changed, T0, 10, &r), 0);
    ck_assert_uint_eq(r.seen.total, 1);
    ck_assert_str_eq(r.seen.items[0].key, "api-key-9");
    sl_top_report_deinit(&r);
    sl_top_free(top);
}
END_TEST

START_TEST(test_bind_fingerprints_key_sources)
{
    struct sl_key_source ip = {.kind = SL_KEY_CLIENT_IP};
    struct sl_key_source hx = {.kind = SL_KEY_HEADER, .name = (char *)"X-Key", .name_len = 5};
    struct sl_key_source hy = {.kind = SL_KEY_HEADER, .name = (char *)"X-Other", .name_len = 7};
    struct sl_limit lims[3] = {{.name = (char *)"a", .keys = &ip, .nkeys = 1},
                               {.name = (char *)"b", .keys = &hx, .nkeys = 1},
                               {.name = (char *)"c", .keys = &hy, .nkeys = 1}};
    struct sl_route r = {.name = (char *)"r", .limits = lims, .nlimits = 3};
    struct sl_config cfg = {.routes = &r, .nroutes = 1};

    sl_top_bind(&cfg);
    ck_assert_uint_ne(lims[0].top_tag, 0);
    ck_assert_uint_ne(lims[0].top_tag, lims[1].top_tag);
    ck_assert_uint_ne(lims[1].top_tag, lims[2].top_tag);
    uint32_t t = lims[1].top_tag;
    sl_top_bind(&cfg);
    ck_assert_uint_eq(lims[1].top_tag, t);
}
END_TEST

/* ---- a reader racing the writer ---- */

struct race {
    struct sl_top *top;
    struct sl_limit lim;
    _Atomic bool stop;
};

/* Key i % 100 is one byte value repeated as many times as the value says, so a copy torn
 * between two keys shows. 100 keys for 64 counters: counters change keys all the time. */
static size_t race_key(unsigned i, char *key)
{
    size_t len = 1 + i % 100;
    memset(key, (char)(32 + len), len);
    return len;
}

static void *writer(void *arg)
{
    struct race *rc = arg;
    char key[128];
    for (unsigned i = 0; !atomic_load(&rc->stop); i++) {
        /* Skewed: every other record is one of ten keys, so some counters stay put. */
        unsigned k = i % 2 ? i % 10 : i * 7919u;
        size_t len = race_key(k, key);
        sl_top_record(sl_top_slot(rc->top, 0), &rc->lim, key, len, i % 3 == 0, T0);
    }
    return NULL;
}

START_TEST(test_reader_sees_consistent_entries)
{
    struct race rc = {.top = sl_top_new(1, 0), .lim = limit_with("l", 0, 1)};
    pthread_t t;
    uint64_t last = 0;
    int torn = 0, backwards = 0, failed = 0;

    /* Check records every passing assertion: the loop counts, and asserts once. */
    sl_top_record(sl_top_slot(rc.top, 0), &rc.lim, "!", 1, false, T0);
    ck_assert_int_eq(pthread_create(&t, NULL, writer, &rc), 0);
    for (int i = 0; i < 1000; i++) {
        struct sl_top_report r;
        if (sl_top_read(rc.top, &rc.lim, T0, SL_TOP_K, &r) < 0) {
            failed++;
            continue;
        }
        for (size_t j = 0; j < r.seen.n; j++) {
            const struct sl_top_item *it = &r.seen.items[j];
            bool ok =
                it->len >= 1 && (unsigned char)it->key[0] == 32 + it->len && it->error <= it->count;
            for (size_t b = 1; ok && b < it->len; b++)
                ok = it->key[b] == it->key[0];
            torn += !ok;
        }
        /* Never a minute left out because the writer kept the reader from a copy. */
        backwards += r.seen.total < last || r.seen.total == 0;
        last = r.seen.total;
        sl_top_report_deinit(&r);
    }
    ck_assert_int_eq(failed, 0);
    ck_assert_int_eq(torn, 0);
    ck_assert_int_eq(backwards, 0);
    atomic_store(&rc.stop, true);
    pthread_join(t, NULL);
    ck_assert_uint_gt(last, 0);
    sl_top_free(rc.top);
}
END_TEST

/* ---- the span an answer covers ---- */

#define S_US 1000000ull

static uint64_t window_s(uint64_t born_us, uint64_t now_us)
{
    struct sl_top *top = sl_top_new(1, born_us);
    uint64_t us = sl_top_window_us(top, now_us);
    sl_top_free(top);
    return us / S_US;
}

START_TEST(test_window_is_the_sketch_age_when_younger)
{
    /* An old process on a machine up for long: the five minutes ending with the current
     * one, T0 being half-way through its minute. */
    ck_assert_uint_eq(window_s(T0 - 60 * MIN_US, T0), 270);
    ck_assert_uint_eq(window_s(0, T0), 270);
    /* A process started 90 s ago has seen 90 s, whatever the clock reads. */
    ck_assert_uint_eq(window_s(T0 - 90 * S_US, T0), 90);
    ck_assert_uint_eq(window_s(T0, T0), 0);
    /* Older than the oldest minute merged: the whole window, not the age. */
    ck_assert_uint_eq(window_s(T0 - 271 * S_US, T0), 270);
    ck_assert_uint_eq(window_s(T0 - 269 * S_US, T0), 269);
}
END_TEST

START_TEST(test_window_on_a_machine_booted_recently)
{
    /* The monotonic clock starts near zero at boot. 214 s after boot, a process started at
     * 200 s has seen 14 s, not the machine's 214. */
    ck_assert_uint_eq(window_s(200 * S_US, 214 * S_US), 14);
    /* One started with the machine has seen the 213 s since its start. */
    ck_assert_uint_eq(window_s(1 * S_US, 214 * S_US), 213);
    ck_assert_uint_eq(window_s(29 * S_US, 30 * S_US), 1);
    /* Ten minutes after boot a process started at 2 s covers the full window: minutes 6
     * to 10. */
    ck_assert_uint_eq(window_s(2 * S_US, 10 * MIN_US), 240);
}
END_TEST

START_TEST(test_render_states_a_young_sketch_window)
{
    struct sl_limit lim = limit_with("per_key", 0, 1);
    struct sl_route r = {.name = (char *)"api", .limits = &lim, .nlimits = 1};
    struct sl_config cfg = {.routes = &r, .nroutes = 1};
    struct sl_top *top = sl_top_new(1, T0 - 42 * S_US);
    struct evbuffer *out = evbuffer_new();

    lim.route = &r;
    rec(top, 0, &lim, "k", false, T0 - 1 * S_US);
    ck_assert_int_eq(sl_top_render(top, &cfg, NULL, T0, out), 200);
    evbuffer_add(out, "", 1);
    const char *body = (const char *)evbuffer_pullup(out, -1);
    static const char head[] = "{\"window_seconds\":42,";
    ck_assert_msg(strncmp(body, head, strlen(head)) == 0, "%s", body);
    ck_assert_ptr_nonnull(strstr(body, "\"top\":[{\"key\":\"k\",\"count\":1,"));
    evbuffer_free(out);
    sl_top_free(top);
}
END_TEST

/* ---- GET /top ---- */

static char *render(struct sl_top *top, const struct sl_config *cfg, const char *query, int *status)
{
    struct evbuffer *out = evbuffer_new();
    *status = sl_top_render(top, cfg, query, T0, out);
    size_t n = evbuffer_get_length(out);
    char *s = malloc(n + 1);
    evbuffer_remove(out, s, n);
    s[n] = '\0';
    evbuffer_free(out);
    return s;
}

START_TEST(test_render)
{
    struct sl_limit lims[2] = {limit_with("per_ip", 0, 1), limit_with("per_key", 1, 1)};
    struct sl_route r = {.name = (char *)"api", .limits = lims, .nlimits = 2};
    struct sl_config cfg = {.routes = &r, .nroutes = 1};
    struct sl_top *top = sl_top_new(1, 0);
    int status;
    char *body;

    lims[0].route = lims[1].route = &r;
    rec(top, 0, &lims[1], "k\"1", true, T0);
    rec(top, 0, &lims[1], "k\"1", false, T0);
    rec(top, 0, &lims[1], "k2", false, T0);

    body = render(top, &cfg, "limit=api/per_key&n=1", &status);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(body, "\"limits\":[{\"route\":\"api\",\"limit\":\"per_key\","
                                       "\"requests\":{\"total\":3,\"error_bound\":0,\"top\":"
                                       "[{\"key\":\"k\\\"1\",\"count\":2,\"error\":0}]},"
                                       "\"denials\":{\"total\":1,\"error_bound\":0,\"top\":"
                                       "[{\"key\":\"k\\\"1\",\"count\":1,\"error\":0}]}}]}"));
    ck_assert_ptr_nonnull(strstr(body, "\"window_seconds\":270,"));
    free(body);

    body = render(top, &cfg, NULL, &status);
    ck_assert_int_eq(status, 200);
    ck_assert_ptr_nonnull(strstr(body, "\"limit\":\"per_ip\",\"requests\":{\"total\":0,"));
    ck_assert_ptr_nonnull(strstr(body, "\"limit\":\"per_key\""));
    free(body);

    body = render(top, &cfg, "limit=api/nope", &status);
    ck_assert_int_eq(status, 404);
    ck_assert_ptr_nonnull(strstr(body, "\"error\":\"unknown_limit\""));
    free(body);
    body = render(top, &cfg, "limit=api", &status);
    ck_assert_int_eq(status, 404);
    free(body);
    static const char *const bad_n[] = {"n=0", "n=65", "n=x", "n=", "n=99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_n / sizeof bad_n[0]; i++) {
        body = render(top, &cfg, bad_n[i], &status);
        ck_assert_int_eq(status, 400);
        ck_assert_ptr_nonnull(strstr(body, "n: expected an integer from 1 to 64"));
        free(body);
    }
    sl_top_free(top);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("top");
    TCase *tc = tcase_create("top");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_zipf_top10_one_worker);
    tcase_add_test(tc, test_zipf_top10_four_workers);
    tcase_add_test(tc, test_counts_exact_below_capacity);
    tcase_add_test(tc, test_window_expiry);
    tcase_add_test(tc, test_memory_bound_after_a_million_keys);
    tcase_add_test(tc, test_long_keys_as_the_store_holds_them);
    tcase_add_test(tc, test_binary_keys_and_prefixes_are_distinct);
    tcase_add_test(tc, test_key_source_change_forgets);
    tcase_add_test(tc, test_bind_fingerprints_key_sources);
    tcase_add_test(tc, test_reader_sees_consistent_entries);
    tcase_add_test(tc, test_render);
    tcase_add_test(tc, test_window_is_the_sketch_age_when_younger);
    tcase_add_test(tc, test_window_on_a_machine_booted_recently);
    tcase_add_test(tc, test_render_states_a_young_sketch_window);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
