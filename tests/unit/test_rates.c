/* Per-consumer rates: the table (inline values, a file, long values by digest, bad lines with
 * their line numbers, a million lines' load time), and decisions under a consumer's rate on
 * the memory store, a plan change keeping the state. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "sluice/config.h"
#include "sluice/rates.h"
#include "sluice/store_memory.h"
#include "support/run_suite.h"

static char dir[] = "/tmp/sluice-rates-test-XXXXXX";
static char yaml_path[sizeof dir + 16], tsv_path[sizeof dir + 16];

static void write_to(const char *p, const char *text)
{
    FILE *f = fopen(p, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_ge(fputs(text, f), 0);
    ck_assert_int_eq(fclose(f), 0);
}

static const char config_head[] = "upstream: {url: \"http://127.0.0.1:9\"}\n"
                                  "routes:\n"
                                  "  - name: api\n"
                                  "    limits:\n"
                                  "      - name: per_key\n"
                                  "        algorithm: token_bucket\n"
                                  "        rate: 10/m\n"
                                  "        key: \"header:X-Key\"\n"
                                  "        rates:\n"
                                  "          by: key\n";

static struct sl_config *load(const char *rates_yaml, const char *tsv, char **errors)
{
    char text[2048];
    snprintf(text, sizeof text, "%s%s", config_head, rates_yaml);
    write_to(yaml_path, text);
    if (tsv)
        write_to(tsv_path, tsv);
    return sl_cfg_load(yaml_path, errors);
}

static const struct sl_rates *rates_of(const struct sl_config *cfg)
{
    return cfg->routes[0].limits[0].rates;
}

static const struct sl_quota *find(const struct sl_rates *r, const char *value, size_t len)
{
    const struct sl_rates_entry *e = sl_rates_find(r, value, len);
    return e ? &r->quotas[e->rate] : NULL;
}

START_TEST(inline_and_file_values)
{
    char *errors = NULL;
    struct sl_config *cfg = load("          values: {pro: 100/m, vip: unlimited, off: 0/h}\n"
                                 "          file: c.tsv\n",
                                 "# comment\n\nacme\t5/s\r\nbeta\t5/s\nwith\ttab\t7/h\n", &errors);
    ck_assert_msg(cfg, "%s", errors ? errors : "");
    const struct sl_rates *r = rates_of(cfg);
    ck_assert_uint_eq(r->ninline, 3);
    ck_assert_uint_eq(r->nfile, 3);
    const struct sl_quota *q = find(r, "pro", 3);
    ck_assert_ptr_nonnull(q);
    ck_assert_uint_eq(q->count, 100);
    ck_assert_uint_eq(q->period_us, 60000000);
    ck_assert_uint_eq(q->burst, 100); /* token_bucket's default burst follows N */
    ck_assert_uint_eq(find(r, "vip", 3)->count, SL_RATE_UNLIMITED);
    ck_assert_uint_eq(find(r, "off", 3)->count, 0);
    ck_assert_uint_eq(find(r, "off", 3)->period_us, 3600000000ull);
    ck_assert_uint_eq(find(r, "acme", 4)->count, 5); /* CR LF read as LF */
    ck_assert_uint_eq(find(r, "with\ttab", 8)->count, 7);
    ck_assert_ptr_null(find(r, "acm", 3));
    ck_assert_ptr_null(find(r, "", 0));
    ck_assert_uint_eq(sl_rates_find(r, "beta", 4)->line, 4);
    ck_assert_uint_eq(sl_rates_find(r, "pro", 3)->line, 0);
    /* One quota per distinct rate seen in a run. */
    ck_assert_ptr_eq(find(r, "acme", 4), find(r, "beta", 4));
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(long_values_by_digest)
{
    char value[301], other[301], tsv[400];
    memset(value, 'k', 300);
    value[300] = '\0';
    memcpy(other, value, sizeof other);
    other[299] = 'j';
    snprintf(tsv, sizeof tsv, "%s\t3/h\n", value);
    char *errors = NULL;
    struct sl_config *cfg = load("          file: c.tsv\n", tsv, &errors);
    ck_assert_msg(cfg, "%s", errors ? errors : "");
    const struct sl_rates *r = rates_of(cfg);
    const struct sl_rates_entry *e = sl_rates_find(r, value, 300);
    ck_assert_ptr_nonnull(e);
    ck_assert_uint_eq(e->len, 300);
    ck_assert_ptr_null(sl_rates_entry_value(r, e)); /* held as its digest only */
    ck_assert_ptr_null(sl_rates_find(r, other, 300));
    ck_assert_ptr_null(sl_rates_find(r, value, 299));
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(bad_lines_name_file_line_and_column)
{
    char *errors = NULL;
    struct sl_config *cfg =
        load("          file: c.tsv\n", "a\t1/s\nb 2/s\nc\tsoon\n\t3/s\na\t4/s\nd\t2000000000/s\n",
             &errors);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(errors);
    char want[512];
    snprintf(want, sizeof want,
             "%s:2:1: routes[0].limits[0].rates.file: expected VALUE<TAB>RATE, got a line "
             "without a tab\n",
             tsv_path);
    ck_assert_msg(strstr(errors, want), "%s", errors);
    snprintf(want, sizeof want, "%s:3:3: routes[0].limits[0].rates.file: expected a rate",
             tsv_path);
    ck_assert_msg(strstr(errors, want), "%s", errors);
    snprintf(want, sizeof want, "%s:4:1: routes[0].limits[0].rates.file: expected a value",
             tsv_path);
    ck_assert_msg(strstr(errors, want), "%s", errors);
    snprintf(want, sizeof want,
             "%s:5:1: routes[0].limits[0].rates.file: value listed twice; line 1 has it already",
             tsv_path);
    ck_assert_msg(strstr(errors, want), "%s", errors);
    snprintf(want, sizeof want,
             "%s:6:3: routes[0].limits[0].rates.file: expected at most 1000000000 requests",
             tsv_path);
    ck_assert_msg(strstr(errors, want), "%s", errors);
    free(errors);
}
END_TEST

START_TEST(a_million_lines)
{
    FILE *f = fopen(tsv_path, "w");
    ck_assert_ptr_nonnull(f);
    static const char *const plans[] = {"100/h", "10000/h", "unlimited", "0/h", "5/s"};
    for (unsigned i = 0; i < 1000000; i++)
        fprintf(f, "key_%08u_%016x\t%s\n", i, i * 2654435761u, plans[i / 1000 % 5]);
    ck_assert_int_eq(fclose(f), 0);
    write_to(yaml_path, "upstream: {url: \"http://127.0.0.1:9\"}\n"
                        "routes:\n"
                        "  - name: api\n"
                        "    limits:\n"
                        "      - {name: per_key, algorithm: token_bucket, rate: 10/m,\n"
                        "         key: \"header:X-Key\", rates: {by: key, file: c.tsv}}\n");
    struct timespec a, b;
    char *errors = NULL;
    clock_gettime(CLOCK_MONOTONIC, &a);
    struct sl_config *cfg = sl_cfg_load(yaml_path, &errors);
    clock_gettime(CLOCK_MONOTONIC, &b);
    ck_assert_msg(cfg, "%s", errors ? errors : "");
    const struct sl_rates *r = rates_of(cfg);
    ck_assert_uint_eq(r->nfile, 1000000);
    printf("rates: 1000000-line file loaded in %.3f s, %zu bytes held (%.1f per entry)\n",
           (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9, sl_rates_bytes(r),
           (double)sl_rates_bytes(r) / 1000000);
    char key[64];
    snprintf(key, sizeof key, "key_%08u_%016x", 1456u, 1456u * 2654435761u);
    ck_assert_uint_eq(find(r, key, strlen(key))->count, 10000);
    ck_assert_uint_eq(sl_rates_find(r, key, strlen(key))->line, 1457);
    ck_assert_ptr_null(find(r, "key_99999999", 12));
    sl_cfg_unref(cfg);
}
END_TEST

/* ---- decisions under a consumer's rate, on the memory store ---- */

static uint64_t now_us = 1000000000;

static uint64_t fake_clock(void)
{
    return now_us;
}

static void on_decision(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    ck_assert_int_eq(status, SL_STORE_OK);
    *(struct sl_decision *)arg = *d;
}

static unsigned admitted(struct sl_store *s, const struct sl_limit *lim, const struct sl_quota *q,
                         const char *key, unsigned tries)
{
    static const struct sl_units one = {1, 1};
    unsigned n = 0;
    for (unsigned i = 0; i < tries; i++) {
        struct sl_decision d;
        sl_store_decide_quota(s, lim, q, key, strlen(key), &one, on_decision, &d);
        n += d.allowed;
    }
    return n;
}

static void plan_change_keeps_state(const char *alg)
{
    struct sl_route route = {.name = "api"};
    struct sl_rates *rates = sl_rates_new(); /* the layout is what matters, not the entries */
    ck_assert_ptr_nonnull(rates);
    struct sl_limit lim = {.name = "per_key",
                           .route = &route,
                           .alg = sl_algorithm_find(alg),
                           .count = 2,
                           .period_us = 3600000000ull,
                           .burst = 2,
                           .rates = rates};
    struct sl_quota free_plan = sl_limit_quota(&lim);
    struct sl_quota pro = {5, 3600000000ull, 5}, tiny = {1, 3600000000ull, 1};
    struct sl_store *s = sl_store_memory_new(1000, 64 << 20, fake_clock);

    ck_assert_uint_eq(admitted(s, &lim, &pro, "a", 3), 3);
    /* Moved down to 2/h with 3 taken: nothing left; and to 1/h likewise. */
    ck_assert_uint_eq(admitted(s, &lim, &free_plan, "a", 2), 0);
    ck_assert_uint_eq(admitted(s, &lim, &tiny, "a", 1), 0);
    /* Back on 5/h: the 3 taken are still there. */
    ck_assert_uint_eq(admitted(s, &lim, &pro, "a", 5), 2);
    /* Another key is fresh under any rate. */
    ck_assert_uint_eq(admitted(s, &lim, &tiny, "b", 2), 1);
    ck_assert_uint_eq(admitted(s, &lim, &pro, "c", 6), 5);
    /* An hour on, all is restored, under the rate asked. */
    now_us += 3600000000ull * 2;
    ck_assert_uint_eq(admitted(s, &lim, &free_plan, "a", 3), 2);
    sl_store_free(s);
    sl_rates_free(rates);
}

START_TEST(plan_change_keeps_state_each_algorithm)
{
    static const char *const algs[] = {"fixed_window", "sliding_window_counter", "token_bucket",
                                       "sliding_window"};
    plan_change_keeps_state(algs[_i]);
}
END_TEST

static void setup(void)
{
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(yaml_path, sizeof yaml_path, "%s/s.yaml", dir);
    snprintf(tsv_path, sizeof tsv_path, "%s/c.tsv", dir);
}

static void teardown(void)
{
    unlink(yaml_path);
    unlink(tsv_path);
    rmdir(dir);
    memcpy(dir + sizeof dir - 7, "XXXXXX", 6);
}

int main(void)
{
    Suite *s = suite_create("rates");
    TCase *tc = tcase_create("rates");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, inline_and_file_values);
    tcase_add_test(tc, long_values_by_digest);
    tcase_add_test(tc, bad_lines_name_file_line_and_column);
    tcase_add_test(tc, a_million_lines);
    tcase_add_loop_test(tc, plan_change_keeps_state_each_algorithm, 0, 4);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
