/* The metrics exposition as Prometheus reads it: promtool accepts it, and a route's series
 * appear once the route is used. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/metrics.h"
#include "sluice/store_memory.h"
#include "support/metrics_fixture.h"
#include "support/run_suite.h"

/* `promtool check metrics` (Debian package prometheus) on an exposition where every family
 * has series; skipped with a note when promtool is not installed. */
START_TEST(test_promtool_accepts_the_exposition)
{
    if (system("command -v promtool >/dev/null 2>&1") != 0) {
        printf("test_metrics: promtool not found (apt-get install prometheus); skipped\n");
        return;
    }
    struct sl_metrics *m = sl_metrics_new(2);
    struct sl_config *cfg = make_cfg(login_search, 2);
    cfg->redis.enabled = true;
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    struct sl_metrics_slot *a = sl_metrics_slot(m, 0);
    struct sl_store *memory = sl_store_memory_new(100, UINT64_MAX, NULL);
    sl_metrics_set_memory_store(m, memory);
    sl_metrics_request(a, &cfg->routes[0], SL_OUTCOME_LIMITED, 1234);
    sl_metrics_request(a, NULL, SL_OUTCOME_UNMATCHED, 99);
    sl_metrics_limit_check(a, &cfg->routes[0].limits[0], SL_CHECK_DENY);
    sl_metrics_response(a, &cfg->routes[0], 429);
    sl_metrics_response(a, NULL, 200);
    sl_metrics_store_duration(a, SL_STORE_REDIS, 800);
    sl_metrics_store_duration(a, SL_STORE_MEMORY, 5);
    sl_metrics_store_error(a, SL_STORE_REDIS, SL_STORE_ERR_TIMEOUT);
    sl_metrics_upstream_error(a, SL_UPSTREAM_ERR_RESET);
    sl_metrics_headers_underscore(a, SL_UNDERSCORES_DROP, 1);
    sl_metrics_connection_opened(a);
    sl_metrics_http2_stream(a);
    sl_metrics_http2_goaway(a, SL_H2_GOAWAY_CALM);
    sl_metrics_redis_connected(a, true);
    sl_metrics_config_reload(m, true);

    char path[] = "/tmp/sluice-metrics-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    char *text = render(m);
    ck_assert_int_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "promtool check metrics < %s", path);
    int rc = system(cmd);
    unlink(path);
    ck_assert_msg(rc == 0, "promtool check metrics failed (status %d)", rc);
    free(text);
    free_cfg(cfg);
    sl_store_free(memory);
    sl_metrics_free(m);
}
END_TEST

/* A thousand routes of which one was used expose the used one's series only; with
 * admin.route_histograms off there is one duration histogram, with no route label. */
START_TEST(test_series_appear_with_use_and_one_histogram_on_request)
{
    enum { NROUTES = 1000 };
    static char names[NROUTES][16];
    static struct test_route spec[NROUTES];
    for (size_t r = 0; r < NROUTES; r++) {
        snprintf(names[r], sizeof names[r], "r%zu", r);
        spec[r] = (struct test_route){names[r], {"per_ip"}};
    }
    struct sl_metrics *m = sl_metrics_new(2);
    struct sl_config *cfg = make_cfg(spec, NROUTES);
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    char *idle = render(m);
    size_t base = count_series(idle);
    ck_assert_no_line_prefix(idle, "sluice_requests_total{");
    ck_assert_no_line_prefix(idle, "sluice_limit_checks_total{");
    ck_assert_no_line_prefix(idle, "sluice_request_duration_seconds_bucket{");
    free(idle);

    const struct sl_route *used = &cfg->routes[NROUTES - 1];
    sl_metrics_limit_check(sl_metrics_slot(m, 1), &used->limits[0], SL_CHECK_ALLOW);
    sl_metrics_request(sl_metrics_slot(m, 1), used, SL_OUTCOME_ALLOWED, 300);
    sl_metrics_response(sl_metrics_slot(m, 1), used, 200);
    char *text = render(m);
    /* 6 decisions, 4 check results, 1 code, 17 buckets + sum + count. */
    ck_assert_uint_eq(count_series(text), base + 6 + 4 + 1 + 19);
    ck_assert_line(text, "sluice_requests_total{route=\"r999\",decision=\"allowed\"} 1");
    ck_assert_line(text, "sluice_request_duration_seconds_count{route=\"r999\"} 1");
    ck_assert_no_line_prefix(text, "sluice_requests_total{route=\"r0\"");
    free(text);

    cfg->admin_route_histograms = false;
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    sl_metrics_request(sl_metrics_slot(m, 0), &cfg->routes[0], SL_OUTCOME_ALLOWED, 50);
    text = render(m);
    ck_assert_no_line_prefix(text, "sluice_request_duration_seconds_bucket{route=");
    ck_assert_line(text, "sluice_request_duration_seconds_bucket{le=\"0.0001\"} 1");
    ck_assert_line(text, "sluice_request_duration_seconds_bucket{le=\"+Inf\"} 2");
    ck_assert_line(text, "sluice_request_duration_seconds_sum 0.000350");
    ck_assert_line(text, "sluice_request_duration_seconds_count 2");
    ck_assert_line(text, "sluice_requests_total{route=\"r0\",decision=\"allowed\"} 1");
    free(text);
    free_cfg(cfg);
    sl_metrics_free(m);
}
END_TEST

static Suite *exposition_suite(void)
{
    Suite *s = suite_create("metrics_exposition");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_promtool_accepts_the_exposition);
    tcase_add_test(tc, test_series_appear_with_use_and_one_histogram_on_request);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(exposition_suite());
}
