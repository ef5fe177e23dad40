/* GET /dashboard.json from a registry, sketches and history driven by hand: every used
 * route (and no other) with the counts /metrics shows, its limits, its charts' growth and
 * steps; the top keys escaped, cut at a character, the limits that denied most first and
 * within their budget; the configuration's file and last reload; admin.top off; a hundred
 * routes at a full history within 64 KiB; the page's policy. */
#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_tree.h>

#include "../../src/admin/dashboard.h"
#include "../../src/admin/history.h"
#include "sluice/limit.h"
#include "support/metrics_fixture.h"
#include "support/run_suite.h"

#define T0_MS 5000000ull

struct fixture {
    struct sl_config *cfg;
    struct sl_metrics *metrics;
    struct sl_top *top;
    struct sl_dashboard *dash;
};

static void setup(struct fixture *f, const struct test_route *spec, size_t nroutes)
{
    f->cfg = make_cfg(spec, nroutes);
    f->cfg->admin_top = true;
    f->cfg->file = (char *)"/etc/sluice/sluice.yaml";
    for (size_t r = 0; r < nroutes; r++) {
        for (size_t l = 0; l < f->cfg->routes[r].nlimits; l++) {
            struct sl_limit *lim = &f->cfg->routes[r].limits[l];
            lim->alg = sl_algorithm_find("sliding_window_counter");
            lim->rate_text = (char *)"1000/1m";
            lim->burst = 1000;
        }
    }
    f->metrics = sl_metrics_new(2);
    ck_assert_ptr_nonnull(f->metrics);
    ck_assert_int_eq(sl_metrics_bind(f->metrics, f->cfg), 0);
    f->top = sl_top_new(2, T0_MS * 1000);
    ck_assert_ptr_nonnull(f->top);
    sl_top_bind(f->cfg);
    f->dash = sl_dashboard_new(f->metrics, f->top, T0_MS);
    ck_assert_ptr_nonnull(f->dash);
}

static void teardown(struct fixture *f)
{
    sl_dashboard_free(f->dash);
    sl_top_free(f->top);
    sl_metrics_free(f->metrics);
    free_cfg(f->cfg);
}

/* The answer as text and as a tree (freed by the caller). */
static yajl_val answer(struct fixture *f, uint64_t now_ms, size_t *len)
{
    struct evbuffer *out = evbuffer_new();
    char err[256];

    ck_assert_int_eq(sl_dashboard_render(f->dash, f->cfg, now_ms * 1000, 1700000000000ull, out), 0);
    size_t n = evbuffer_get_length(out);
    char *text = malloc(n + 1);
    evbuffer_remove(out, text, n);
    text[n] = '\0';
    evbuffer_free(out);
    if (len)
        *len = n;
    yajl_val tree = yajl_tree_parse(text, err, sizeof err);
    ck_assert_msg(tree != NULL, "not JSON (%s): %.300s", err, text);
    free(text);
    return tree;
}

static yajl_val get(yajl_val v, const char *a, const char *b)
{
    const char *path[] = {a, b, NULL};
    yajl_val got = yajl_tree_get(v, path, yajl_t_any);
    ck_assert_msg(got != NULL, "no %s.%s", a, b ? b : "");
    return got;
}

static const char *string(yajl_val v)
{
    ck_assert_msg(YAJL_IS_STRING(v), "not a string");
    return v->u.string;
}

static long long num(yajl_val v)
{
    ck_assert_msg(YAJL_IS_INTEGER(v), "not an integer");
    return YAJL_GET_INTEGER(v);
}

static yajl_val at(yajl_val array, size_t i)
{
    ck_assert(YAJL_IS_ARRAY(array));
    ck_assert_uint_lt(i, YAJL_GET_ARRAY(array)->len);
    return YAJL_GET_ARRAY(array)->values[i];
}

static size_t count(yajl_val array)
{
    ck_assert(YAJL_IS_ARRAY(array));
    return YAJL_GET_ARRAY(array)->len;
}

static yajl_val route_named(yajl_val tree, const char *name)
{
    yajl_val routes = get(tree, "routes", NULL);
    for (size_t i = 0; i < count(routes); i++)
        if (strcmp(string(get(at(routes, i), "name", NULL)), name) == 0)
            return at(routes, i);
    return NULL;
}

static void requests(struct fixture *f, unsigned slot, size_t route, enum sl_outcome outcome, int n)
{
    for (int i = 0; i < n; i++)
        sl_metrics_request(sl_metrics_slot(f->metrics, slot), &f->cfg->routes[route], outcome, 100);
}

static void checks(struct fixture *f, unsigned slot, size_t route, size_t limit,
                   enum sl_check_result result, int n)
{
    for (int i = 0; i < n; i++)
        sl_metrics_limit_check(sl_metrics_slot(f->metrics, slot),
                               &f->cfg->routes[route].limits[limit], result);
}

/* `series{labels} value` in the exposition, or -1. */
static long long exposed(struct sl_metrics *m, const char *series)
{
    char *text = render(m);
    const char *p = strstr(text, series);
    long long v = p ? strtoll(p + strlen(series) + 1, NULL, 10) : -1;
    free(text);
    return v;
}

START_TEST(test_used_routes_with_the_counts_of_metrics)
{
    static const struct test_route spec[] = {
        {"api", {"per_ip", "per_key"}}, {"idle", {"per_ip"}}, {"web", {0}}};
    struct fixture f;
    setup(&f, spec, 3);
    f.cfg->routes[0].limits[1].store = SL_STORE_REDIS;
    f.cfg->routes[0].limits[1].shadow = true;

    requests(&f, 0, 0, SL_OUTCOME_ALLOWED, 30);
    requests(&f, 1, 0, SL_OUTCOME_ALLOWED, 12);
    requests(&f, 1, 0, SL_OUTCOME_LIMITED, 8);
    requests(&f, 0, 0, SL_OUTCOME_SHADOW_LIMITED, 2);
    requests(&f, 0, 2, SL_OUTCOME_ALLOWED, 5);
    sl_metrics_request(sl_metrics_slot(f.metrics, 0), NULL, SL_OUTCOME_UNMATCHED, 100);
    checks(&f, 0, 0, 0, SL_CHECK_ALLOW, 42);
    checks(&f, 1, 0, 0, SL_CHECK_DENY, 8);
    checks(&f, 1, 0, 1, SL_CHECK_SHADOW_DENY, 2);
    ck_assert_int_eq(sl_dashboard_sample(f.dash, f.cfg, T0_MS + 2000), 0);
    /* The second interval: 10 more allowed on api, 4 s long. */
    requests(&f, 0, 0, SL_OUTCOME_ALLOWED, 10);
    ck_assert_int_eq(sl_dashboard_sample(f.dash, f.cfg, T0_MS + 6000), 0);

    yajl_val tree = answer(&f, T0_MS + 6000, NULL);
    ck_assert_int_eq(count(get(tree, "routes", NULL)), 2);
    ck_assert_ptr_null(route_named(tree, "idle"));
    yajl_val api = route_named(tree, "api");
    ck_assert_ptr_nonnull(api);
    yajl_val req = get(api, "requests", NULL);
    yajl_val names = get(tree, "decisions", NULL);
    ck_assert_int_eq(count(req), SL_OUTCOME_COUNT);
    for (size_t i = 0; i < SL_OUTCOME_COUNT; i++) {
        char series[128];
        snprintf(series, sizeof series, "sluice_requests_total{route=\"api\",decision=\"%s\"}",
                 string(at(names, i)));
        ck_assert_int_eq(num(at(req, i)), exposed(f.metrics, series));
    }
    ck_assert_int_eq(num(at(req, 0)), 52);
    ck_assert_int_eq(num(at(req, 1)), 8);
    ck_assert_int_eq(num(at(req, 2)), 2);

    /* Two intervals: 42 allowed and 8 limited in 2 s, then 10 allowed in 4 s. */
    ck_assert_int_eq(num(at(get(api, "window", NULL), 0)), 52);
    ck_assert_int_eq(num(at(get(api, "window", NULL), 1)), 8);
    ck_assert_double_eq_tol(YAJL_GET_DOUBLE(get(api, "peak", NULL)), 25.0, 1e-9);
    ck_assert_double_eq_tol(YAJL_GET_DOUBLE(at(get(api, "last", NULL), 0)), 2.5, 1e-9);
    /* Steps of 25/61: 21/s is 51.24 -> "P" (51), 4/s is 9.76 -> "a" (10), 2.5/s is 6.1 -> "6". */
    ck_assert_str_eq(string(get(api, "allowed", NULL)), "P6");
    ck_assert_str_eq(string(get(api, "limited", NULL)), "a0");

    yajl_val limits = get(api, "limits", NULL);
    ck_assert_int_eq(count(limits), 2);
    ck_assert_str_eq(string(get(at(limits, 0), "name", NULL)), "per_ip");
    ck_assert_str_eq(string(get(at(limits, 0), "algorithm", NULL)), "sliding_window_counter");
    ck_assert_str_eq(string(get(at(limits, 0), "rate", NULL)), "1000/1m");
    ck_assert_str_eq(string(get(at(limits, 0), "store", NULL)), "memory");
    ck_assert_str_eq(string(get(at(limits, 1), "store", NULL)), "redis");
    ck_assert(YAJL_IS_TRUE(get(at(limits, 1), "shadow", NULL)));
    yajl_val c0 = get(at(limits, 0), "checks", NULL);
    ck_assert_int_eq(num(at(c0, 0)), 42);
    ck_assert_int_eq(num(at(c0, 1)), 8);
    ck_assert_int_eq(
        num(at(c0, 1)),
        exposed(f.metrics,
                "sluice_limit_checks_total{route=\"api\",limit=\"per_ip\",result=\"deny\"}"));
    ck_assert_int_eq(num(at(get(at(limits, 1), "checks", NULL), 3)), 2);

    /* web was first used in the first interval too: counted from zero. */
    yajl_val web = route_named(tree, "web");
    ck_assert_str_eq(string(get(web, "allowed", NULL)), "Z0");
    ck_assert_int_eq(num(at(get(web, "window", NULL), 0)), 5);
    ck_assert_int_eq(count(get(web, "limits", NULL)), 0);

    ck_assert_int_eq(num(get(tree, "unmatched", NULL)), 1);
    ck_assert_int_eq(num(get(tree, "samples", NULL)), 2);
    ck_assert_int_eq(num(get(tree, "interval_ms", NULL)), SL_HISTORY_INTERVAL_MS);
    ck_assert_int_eq(num(get(tree, "now_ms", NULL)), 1700000000000ll);
    ck_assert_str_eq(string(get(tree, "config", "file")), "/etc/sluice/sluice.yaml");
    ck_assert_int_eq(num(get(tree, "config", "routes")), 3);
    ck_assert(YAJL_IS_NULL(get(tree, "config", "last_reload")));
    ck_assert(YAJL_IS_FALSE(get(tree, "redis", "configured")));
    ck_assert_int_eq(num(get(tree, "upstream_errors", "connect")), 0);
    yajl_tree_free(tree);

    sl_metrics_config_reload(f.metrics, false);
    sl_metrics_upstream_error(sl_metrics_slot(f.metrics, 1), SL_UPSTREAM_ERR_TIMEOUT);
    sl_metrics_store_error(sl_metrics_slot(f.metrics, 0), SL_STORE_REDIS, SL_STORE_ERR_TIMEOUT);
    sl_metrics_deny_cache_hit(sl_metrics_slot(f.metrics, 0));
    tree = answer(&f, T0_MS + 6000, NULL);
    ck_assert_str_eq(string(get(get(tree, "config", "last_reload"), "result", NULL)), "failure");
    ck_assert_int_eq(num(get(get(tree, "config", "reloads"), "failure", NULL)), 1);
    ck_assert_int_eq(num(get(tree, "upstream_errors", "timeout")), 1);
    ck_assert_int_eq(num(get(get(tree, "redis", "errors"), "timeout", NULL)), 1);
    ck_assert_int_eq(num(get(tree, "redis", "deny_cache_hits")), 1);
    yajl_tree_free(tree);
    teardown(&f);
}
END_TEST

/* When sl_top_record() sees the keys recorded. */
static uint64_t record_us = T0_MS * 1000 + 1000;

static void record(struct fixture *f, unsigned slot, size_t route, size_t limit, const char *key,
                   size_t len, bool denied, int n)
{
    for (int i = 0; i < n; i++)
        sl_top_record(sl_top_slot(f->top, slot), &f->cfg->routes[route].limits[limit], key, len,
                      denied, record_us);
}

START_TEST(test_top_keys_escaped_cut_and_busiest_first)
{
    static const struct test_route spec[] = {{"api", {"per_ip"}}, {"login", {"per_user"}}};
    struct fixture f;
    setup(&f, spec, 2);

    /* api: many requests, one denial; login: fewer requests, more denials. */
    record(&f, 0, 0, 0, "10.0.0.1", 8, false, 50);
    record(&f, 1, 0, 0, "10.0.0.1", 8, true, 1);
    const char hostile[] = "\"</script><b>\n\x01\xff";
    record(&f, 0, 1, 0, hostile, sizeof hostile - 1, true, 9);
    /* 39 ASCII bytes, then "é" across byte 40: cut before it. */
    const char *long_key = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\xc3\xa9zzzzzzzzzz";
    record(&f, 1, 1, 0, long_key, strlen(long_key), false, 3);

    yajl_val tree = answer(&f, T0_MS + 2000, NULL);
    yajl_val limits = get(tree, "top", "limits");
    ck_assert_int_eq(count(limits), 2);
    ck_assert_int_eq(num(get(tree, "top", "omitted")), 0);
    ck_assert_int_eq(num(get(tree, "top", "keys")), SL_DASHBOARD_TOP_KEYS);
    yajl_val first = at(limits, 0);
    ck_assert_str_eq(string(get(first, "route", NULL)), "login");
    ck_assert_str_eq(string(get(first, "limit", NULL)), "per_user");
    yajl_val denials = get(first, "denials", NULL);
    ck_assert_int_eq(num(at(denials, 0)), 9);
    /* The bytes that are not UTF-8 come back as U+00XX; the rest as sent. */
    ck_assert_str_eq(string(at(at(at(denials, 1), 0), 0)), "\"</script><b>\n\x01\xc3\xbf");
    ck_assert_int_eq(num(at(at(at(denials, 1), 0), 1)), 9);
    yajl_val seen = get(first, "requests", NULL);
    ck_assert_int_eq(num(at(seen, 0)), 12);
    ck_assert_int_eq(count(at(seen, 1)), 2);
    ck_assert_str_eq(string(at(at(at(seen, 1), 1), 0)),
                     "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xe2\x80\xa6");
    ck_assert_int_eq(num(at(get(at(limits, 1), "requests", NULL), 0)), 51);
    yajl_tree_free(tree);

    f.cfg->admin_top = false;
    tree = answer(&f, T0_MS + 2000, NULL);
    ck_assert(YAJL_IS_NULL(get(tree, "top", NULL)));
    yajl_tree_free(tree);
    teardown(&f);
}
END_TEST

/* A hundred used routes of one limit each, at a full history of varied rates and large
 * counts, every limit with long keys requested and denied: within 64 KiB, and the top keys
 * within their budget. */
START_TEST(test_hundred_routes_fit_in_64k)
{
    enum { ROUTES = 100 };
    static char names[ROUTES][16];
    static struct test_route spec[ROUTES];
    struct fixture f;

    for (int r = 0; r < ROUTES; r++) {
        snprintf(names[r], sizeof names[r], "route-%03d", r);
        spec[r] = (struct test_route){names[r], {"per_client"}};
    }
    setup(&f, spec, ROUTES);
    /* Large totals first: ten-digit counters. */
    for (int r = 0; r < ROUTES; r++) {
        for (int i = 0; i < 3; i++)
            requests(&f, 0, (size_t)r, SL_OUTCOME_ALLOWED, 1 + r % 7);
        checks(&f, 0, (size_t)r, 0, SL_CHECK_DENY, 1);
    }
    for (int s = 0; s < SL_HISTORY_SAMPLES + 5; s++) {
        for (int r = 0; r < ROUTES; r++) {
            requests(&f, (unsigned)(s & 1), (size_t)r, SL_OUTCOME_ALLOWED, (s * 7 + r) % 23);
            requests(&f, (unsigned)(r & 1), (size_t)r, SL_OUTCOME_LIMITED, (s + r) % 5);
        }
        ck_assert_int_eq(sl_dashboard_sample(f.dash, f.cfg, T0_MS + 2000 * (uint64_t)(s + 1)), 0);
    }
    record_us = (T0_MS + 2000 * (SL_HISTORY_SAMPLES + 5)) * 1000 - 1000;
    for (int r = 0; r < ROUTES; r++) {
        for (int k = 0; k < 5; k++) {
            char key[64];
            int n =
                snprintf(key, sizeof key, "api-key-%02d-%d-0123456789abcdef0123456789abcdef", r, k);
            record(&f, 0, (size_t)r, 0, key, (size_t)n, k < 3, 1 + k);
        }
    }
    size_t len;
    yajl_val tree = answer(&f, T0_MS + 2000 * (SL_HISTORY_SAMPLES + 5), &len);
    ck_assert_int_eq(count(get(tree, "routes", NULL)), ROUTES);
    yajl_val r0 = route_named(tree, "route-000");
    ck_assert_uint_eq(strlen(string(get(r0, "allowed", NULL))), SL_HISTORY_SAMPLES);
    yajl_val limits = get(tree, "top", "limits");
    ck_assert_uint_gt(count(limits), 5);
    ck_assert_int_eq((long long)count(limits) + num(get(tree, "top", "omitted")), ROUTES);
    printf("dashboard.json for %d routes at a full history: %zu bytes, top keys of %zu limits\n",
           ROUTES, len, count(limits));
    ck_assert_uint_le(len, 65536);
    yajl_tree_free(tree);
    teardown(&f);
}
END_TEST

START_TEST(test_page_policy)
{
    char csp[512];
    ck_assert_uint_le(sl_dashboard_html_len, 65536);
    ck_assert_uint_eq(strlen(sl_dashboard_html), sl_dashboard_html_len);
    ck_assert_int_eq(sl_dashboard_csp(csp, sizeof csp), 0);
    ck_assert_ptr_nonnull(strstr(csp, "default-src 'none'"));
    ck_assert_ptr_nonnull(strstr(csp, "connect-src 'self'"));
    /* Two digests of 44 base64 characters, the last one "=". */
    const char *s = strstr(csp, "style-src 'sha256-"), *j = strstr(csp, "script-src 'sha256-");
    ck_assert_ptr_nonnull(s);
    ck_assert_ptr_nonnull(j);
    ck_assert_int_eq(strcspn(s + 18, "'"), 44);
    ck_assert_int_eq(s[18 + 43], '=');
    ck_assert_int_eq(strcspn(j + 19, "'"), 44);
    ck_assert_int_eq(sl_dashboard_csp(csp, 64), -1);
}
END_TEST

static Suite *dashboard_suite(void)
{
    Suite *s = suite_create("dashboard");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_used_routes_with_the_counts_of_metrics);
    tcase_add_test(tc, test_top_keys_escaped_cut_and_busiest_first);
    tcase_add_test(tc, test_hundred_routes_fit_in_64k);
    tcase_add_test(tc, test_page_policy);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(dashboard_suite());
}
