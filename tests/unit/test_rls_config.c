/* Loading envoyproxy/ratelimit configuration files: the files ratelimit refuses are refused
 * here with the same meaning, each problem at its file:line:col and key path; directories,
 * domains across files, and sluice's algorithm and burst.
 *
 * Ported from envoyproxy/ratelimit, test/config/config_test.go (fixtures test/config/):
 *   empty_domain             TestEmptyDomain                  empty_domain.yaml
 *   duplicate_domain         TestDuplicateDomain              basic_config.yaml,
 *                                                             duplicate_domain.yaml
 *   empty_key                TestEmptyKey                     empty_key.yaml
 *   duplicate_key            TestDuplicateKey                 duplicate_key.yaml
 *   duplicate_key_merged     TestDuplicateKeyDomainMerge      merge_domain_key1.yaml twice
 *   bad_limit_unit           TestBadLimitUnit                 bad_limit_unit.yaml
 *   replaces_self            TestReplacesSelf                 replaces_self.yaml
 *   replaces_empty           TestReplacesEmpty                replaces_empty.yaml
 *   bad_yaml                 TestBadYaml                      bad_yaml.yaml
 *   misspelled_key           TestMisspelledKey                misspelled_key.yaml,
 *                                                             misspelled_key2.yaml
 *   non_string_key           TestNonStringKey                 non_string_key.yaml
 *   non_map_list             TestNonMapList                   non_map_list.yaml
 *   unlimited_with_unit      TestUnlimitedWithRateLimitUnit   unlimited_with_unit.yaml
 * and from src/config/config_impl.go's share_threshold check:
 *   share_threshold_plain    (loadDescriptors)                inline */
#include <sys/stat.h>

#include "sluice/limit.h"

#include "support/rls_fixture.h"
#include "support/run_suite.h"

/* Asserts that fixture `name` fails to load with exactly `fmt`, where %1$s is its path. */
static void expect_errors(const char *name, const char *fmt)
{
    char path[512], expected[4096];

    snprintf(path, sizeof path, "%s/%s", RLS_DIR, name);
    snprintf(expected, sizeof expected, fmt, path);
    char *got = rls_errors(path, false);
    ck_assert_str_eq(got, expected);
    free(got);
}

/* Writes `text` as `name` in a new directory under /tmp and returns the file's path. */
static const char *write_file(char dir[64], const char *name, const char *text)
{
    static char path[128];

    strcpy(dir, "/tmp/sluice-rls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
    return path;
}

/* Asserts that the file holding `text` fails with exactly `fmt` (%1$s: its path). */
static void expect_text_errors(const char *text, const char *fmt)
{
    char dir[64], expected[4096];
    const char *path = write_file(dir, "t.yaml", text);

    snprintf(expected, sizeof expected, fmt, path);
    char *got = rls_errors(path, false);
    ck_assert_str_eq(got, expected);
    free(got);
    unlink(path);
    rmdir(dir);
}

START_TEST(empty_domain)
{
    expect_errors("empty_domain.yaml", "%1$s:1:1: domain: config file cannot have empty domain\n");
}
END_TEST

START_TEST(duplicate_domain)
{
    static const char *const links[] = {"a.yaml", "b.yaml", NULL};
    static const char *const files[] = {"basic_config.yaml", "duplicate_domain.yaml"};
    char dir[64], expected[512];

    rls_dir_make(dir, links, files);
    char *got = rls_errors(dir, false);
    snprintf(expected, sizeof expected,
             "%1$s/b.yaml:1:9: domain: duplicate domain \"test-domain\" in config file; "
             "%1$s/a.yaml has it already\n",
             dir);
    ck_assert_str_eq(got, expected);
    free(got);
    /* Merged, the second file adds nothing. */
    struct sl_rls_config *cfg = rls_load(dir, true);
    ck_assert_uint_eq(sl_rls_config_ndomains(cfg), 1);
    rls_expect(rls_get(cfg, "test-domain", "key2=value2", NULL), 30, SL_RLS_UNIT_MINUTE);
    sl_rls_config_free(cfg);
    rls_dir_remove(dir, links);
}
END_TEST

START_TEST(empty_key)
{
    expect_errors("empty_key.yaml", "%1$s:3:5: descriptors[0].key: descriptor has empty key\n");
}
END_TEST

START_TEST(duplicate_key)
{
    expect_errors("duplicate_key.yaml",
                  "%1$s:6:10: descriptors[1]: duplicate descriptor composite key "
                  "\"test-domain.key1_value1\"; first given at line 3\n");
}
END_TEST

START_TEST(duplicate_key_merged)
{
    static const char *const links[] = {"a.yaml", "b.yaml", NULL};
    static const char *const files[] = {"merge_domain_key1.yaml", "merge_domain_key1.yaml"};
    char dir[64], expected[512];

    rls_dir_make(dir, links, files);
    char *got = rls_errors(dir, true);
    snprintf(expected, sizeof expected,
             "%1$s/b.yaml:4:10: descriptors[0]: duplicate descriptor composite key "
             "\"test-domain.key1_value1\"; first given at %1$s/a.yaml:4\n",
             dir);
    ck_assert_str_eq(got, expected);
    free(got);
    rls_dir_remove(dir, links);
}
END_TEST

START_TEST(bad_limit_unit)
{
    expect_errors("bad_limit_unit.yaml",
                  "%1$s:6:13: descriptors[0].rate_limit.unit: invalid rate limit unit \"foo\"; "
                  "expected second, minute, hour, day, week, month or year\n");
}
END_TEST

START_TEST(replaces_self)
{
    expect_errors("replaces_self.yaml",
                  "%1$s:10:21: descriptors[0].descriptors[0].rate_limit.replaces[0].name: "
                  "replaces should not contain name of same descriptor (\"self\")\n");
}
END_TEST

START_TEST(replaces_empty)
{
    expect_errors("replaces_empty.yaml",
                  "%1$s:10:20: descriptors[0].descriptors[0].rate_limit.replaces[0].name: "
                  "should not have an empty replaces entry\n");
}
END_TEST

START_TEST(bad_yaml)
{
    expect_errors("bad_yaml.yaml", "%1$s:2:1: error loading config file: found unexpected end of "
                                   "stream while scanning a quoted scalar\n");
}
END_TEST

#define KNOWN                                                                                      \
    "domain, key, value, descriptors, rate_limit, unit, requests_per_unit, unlimited, "            \
    "shadow_mode, quota_mode, name, replaces, detailed_metric, value_to_metric, "                  \
    "share_threshold, metadata\n"

START_TEST(misspelled_key)
{
    expect_errors("misspelled_key.yaml", "%1$s:5:5: descriptors[0].ratelimit: unknown key "
                                         "\"ratelimit\"; expected one of " KNOWN);
    expect_errors("misspelled_key2.yaml",
                  "%1$s:7:7: descriptors[0].rate_limit.requestsperunit: unknown key "
                  "\"requestsperunit\"; expected one of algorithm, burst, " KNOWN);
}
END_TEST

START_TEST(non_string_key)
{
    expect_errors("non_string_key.yaml",
                  "%1$s:1:1: key is not of type string: \"0.25\"\n"
                  "%1$s:1:1: domain: config file cannot have empty domain\n");
    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    yes: 1\n",
                       "%1$s:4:5: descriptors[0]: key is not of type string: \"yes\"\n");
}
END_TEST

START_TEST(non_map_list)
{
    expect_errors("non_map_list.yaml",
                  "%1$s:3:5: descriptors[0]: expected a mapping (lists hold mappings only), got "
                  "\"a\"\n"
                  "%1$s:4:5: descriptors[1]: expected a mapping (lists hold mappings only), got "
                  "\"b\"\n"
                  "%1$s:5:5: descriptors[2]: expected a mapping (lists hold mappings only), got "
                  "\"c\"\n");
}
END_TEST

START_TEST(unlimited_with_unit)
{
    expect_errors("unlimited_with_unit.yaml",
                  "%1$s:6:13: descriptors[0].rate_limit.unit: should not specify rate limit unit "
                  "when unlimited\n");
}
END_TEST

START_TEST(share_threshold_plain)
{
    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    value: v\n"
                       "    share_threshold: true\n",
                       "%1$s:5:22: descriptors[0]: share_threshold can only be used with "
                       "wildcard values (containing '*'), but found key \"k_v\"\n");
}
END_TEST

/* Types and values yaml.v2 refuses to decode into ratelimit's structure. */
START_TEST(wrong_types)
{
    expect_text_errors("domain: d\ndescriptors:\n  - key: [a]\n",
                       "%1$s:3:10: descriptors[0].key: "
                       "expected a string, got a list\n");
    expect_text_errors("domain: d\ndescriptors: {}\n",
                       "%1$s:2:14: descriptors: expected a list, got a mapping\n");
    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    shadow_mode: \"true\"\n",
                       "%1$s:4:18: descriptors[0].shadow_mode: expected true or false, got "
                       "\"true\"\n");
    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    rate_limit: 5\n",
                       "%1$s:4:17: descriptors[0].rate_limit: expected a mapping with unit and "
                       "requests_per_unit, got \"5\"\n");
    expect_text_errors(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, "
        "requests_per_unit: 4294967296}\n",
        "%1$s:4:51: descriptors[0].rate_limit.requests_per_unit: expected an integer from 0 to "
        "4294967295, got \"4294967296\"\n");
    expect_text_errors("domain: d\ndomain: e\n",
                       "%1$s:2:1: domain: duplicate key; first given at line 1\n");
    expect_text_errors(
        "domain: d\ndescriptors:\n  - key: k\n    rate_limit: {requests_per_unit: 1}\n",
        "%1$s:4:17: descriptors[0].rate_limit.unit: invalid rate limit unit \"\"; "
        "expected second, minute, hour, day, week, month or year\n");
    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    metadata: [1]\n",
                       "%1$s:4:15: descriptors[0].metadata: expected a mapping, got a list\n");
    expect_text_errors("- domain: d\n",
                       "%1$s:1:1: expected a mapping with domain and descriptors, got a list\n");
}
END_TEST

/* What ratelimit accepts is accepted: YAML 1.1 booleans, units in any case, a unit-less
 * unlimited limit, a key of its set where it means nothing, any scalar as a string. */
START_TEST(accepted_as_ratelimit_accepts)
{
    char dir[64];
    const char *path = write_file(dir, "t.yaml",
                                  "domain: d\n"
                                  "descriptors:\n"
                                  "  - key: k\n"
                                  "    value: 123\n"
                                  "    shadow_mode: yes\n"
                                  "    unit: ignored\n"
                                  "    rate_limit: {unit: Week, requests_per_unit: 7}\n"
                                  "  - key: u\n"
                                  "    rate_limit: {unlimited: on, requests_per_unit: 3}\n");
    struct sl_rls_config *cfg = rls_load(path, false);
    const struct sl_rls_limit *l =
        rls_expect(rls_get(cfg, "d", "k=123", NULL), 7, SL_RLS_UNIT_WEEK);
    ck_assert(l->shadow_mode);
    ck_assert_uint_eq(l->lim.period_us, 7 * 86400 * 1000000ull);
    l = rls_get(cfg, "d", "u=x", NULL);
    ck_assert(l && l->unlimited && l->unit == SL_RLS_UNIT_UNKNOWN);
    sl_rls_config_free(cfg);
    unlink(path);
    rmdir(dir);
}
END_TEST

#define ALGS "fixed_window, sliding_window, sliding_window_counter, token_bucket, leaky_bucket"

/* sluice's extension: algorithm (default fixed_window) and burst, as a route's limits. */
START_TEST(algorithm_and_burst)
{
    char dir[64];
    const char *path = write_file(dir, "t.yaml",
                                  "domain: d\n"
                                  "descriptors:\n"
                                  "  - key: a\n"
                                  "    rate_limit: {unit: minute, requests_per_unit: 60}\n"
                                  "  - key: b\n"
                                  "    rate_limit: {unit: second, requests_per_unit: 10,\n"
                                  "                 algorithm: token_bucket, burst: 25}\n"
                                  "  - key: c\n"
                                  "    rate_limit: {unit: hour, requests_per_unit: 5,\n"
                                  "                 algorithm: sliding_window}\n");
    struct sl_rls_config *cfg = rls_load(path, false);
    const struct sl_rls_limit *l = rls_get(cfg, "d", "a=1", NULL);
    ck_assert_str_eq(l->lim.alg->name, "fixed_window");
    ck_assert_uint_eq(l->lim.count, 60);
    ck_assert_uint_eq(l->lim.period_us, 60000000);
    ck_assert_str_eq(l->lim.name, "d.a");
    l = rls_get(cfg, "d", "b=1", NULL);
    ck_assert_str_eq(l->lim.alg->name, "token_bucket");
    ck_assert_uint_eq(l->lim.burst, 25);
    l = rls_get(cfg, "d", "c=1", NULL);
    ck_assert_str_eq(l->lim.alg->name, "sliding_window");
    ck_assert_uint_eq(l->lim.period_us, 3600000000ull);
    sl_rls_config_free(cfg);
    unlink(path);
    rmdir(dir);

    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: second, "
                       "requests_per_unit: 1, burst: 5}\n",
                       "%1$s:4:61: descriptors[0].rate_limit.burst: burst is not supported by "
                       "fixed_window\n");
    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unlimited: true, "
                       "algorithm: token_bucket}\n",
                       "%1$s:4:46: descriptors[0].rate_limit.algorithm: an unlimited rate_limit "
                       "is never counted: it takes no algorithm\n");
    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, "
                       "requests_per_unit: 100001, algorithm: sliding_window}\n",
                       "%1$s:4:49: descriptors[0].rate_limit.requests_per_unit: expected at most "
                       "100000 requests for sliding_window (it logs each one; use "
                       "sliding_window_counter for more), got 100001\n");
    expect_text_errors("domain: d\ndescriptors:\n  - key: k\n    rate_limit: {unit: hour, "
                       "requests_per_unit: 1, algorithm: gcra}\n",
                       "%1$s:4:63: descriptors[0].rate_limit.algorithm: expected one of " ALGS
                       ", got \"gcra\"\n");
    expect_text_errors(
        "domain: d\ndescriptors:\n  - key: k\n    burst: 5\n",
        "%1$s:4:5: descriptors[0].burst: unknown key \"burst\"; expected one of " KNOWN);
}
END_TEST

/* A directory: its *.yaml and *.yml files in name order, dot files and others left. */
START_TEST(directory)
{
    char dir[64], path[128];
    const char *first = write_file(dir, "one.yaml", "domain: one\n");
    static const struct {
        const char *name, *text;
    } more[] = {
        {"two.yml", "domain: two\n"},
        {".hidden.yaml", "domain: hidden\n"},
        {"notes.txt", "not: [yaml\n"},
    };

    (void)first;
    for (size_t i = 0; i < sizeof more / sizeof *more; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, more[i].name);
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fputs(more[i].text, f);
        fclose(f);
    }
    struct sl_rls_config *cfg = rls_load(dir, false);
    ck_assert_uint_eq(sl_rls_config_ndomains(cfg), 2);
    ck_assert_str_eq(sl_rls_domain_name(sl_rls_config_domain(cfg, 0)), "one");
    ck_assert_str_eq(sl_rls_domain_name(sl_rls_config_domain(cfg, 1)), "two");
    ck_assert_ptr_null(sl_rls_domain_find(cfg, "hidden", 6));
    sl_rls_config_free(cfg);
    snprintf(path, sizeof path, "%s/one.yaml", dir);
    unlink(path);
    for (size_t i = 0; i < sizeof more / sizeof *more; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, more[i].name);
        unlink(path);
    }
    rmdir(dir);

    char *got = rls_errors("/nonexistent/rls", false);
    ck_assert_str_eq(got, "/nonexistent/rls: cannot open: No such file or directory\n");
    free(got);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rls_config");
    TCase *tc = tcase_create("ratelimit");

    tcase_add_test(tc, empty_domain);
    tcase_add_test(tc, duplicate_domain);
    tcase_add_test(tc, empty_key);
    tcase_add_test(tc, duplicate_key);
    tcase_add_test(tc, duplicate_key_merged);
    tcase_add_test(tc, bad_limit_unit);
    tcase_add_test(tc, replaces_self);
    tcase_add_test(tc, replaces_empty);
    tcase_add_test(tc, bad_yaml);
    tcase_add_test(tc, misspelled_key);
    tcase_add_test(tc, non_string_key);
    tcase_add_test(tc, non_map_list);
    tcase_add_test(tc, unlimited_with_unit);
    tcase_add_test(tc, share_threshold_plain);
    suite_add_tcase(s, tc);
    tc = tcase_create("sluice");
    tcase_add_test(tc, wrong_types);
    tcase_add_test(tc, accepted_as_ratelimit_accepts);
    tcase_add_test(tc, algorithm_and_burst);
    tcase_add_test(tc, directory);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
