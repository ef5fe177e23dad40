/* The metrics registry: slot summing, stable ids across configurations, the exposition. */
#include <check.h>
#include <event2/buffer.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/metrics.h"
#include "sluice/store_memory.h"
#include "support/metrics_fixture.h"
#include "support/run_suite.h"

START_TEST(test_slots_are_summed)
{
    struct sl_metrics *m = sl_metrics_new(2);
    struct sl_config *cfg = make_cfg(login_search, 2);
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    struct sl_metrics_slot *a = sl_metrics_slot(m, 0), *b = sl_metrics_slot(m, 1);
    const struct sl_route *login = &cfg->routes[0];

    ck_assert_ptr_nonnull(a);
    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_ne(a, b);
    ck_assert_ptr_null(sl_metrics_slot(m, 2));
    for (int i = 0; i < 2; i++)
        sl_metrics_request(a, login, SL_OUTCOME_ALLOWED, 100);
    for (int i = 0; i < 3; i++)
        sl_metrics_request(b, login, SL_OUTCOME_ALLOWED, 100);
    sl_metrics_request(b, login, SL_OUTCOME_LIMITED, 100);
    sl_metrics_request(a, NULL, SL_OUTCOME_UNMATCHED, 100);
    sl_metrics_limit_check(a, &login->limits[0], SL_CHECK_ALLOW);
    sl_metrics_limit_check(b, &login->limits[0], SL_CHECK_DENY);
    sl_metrics_limit_check(b, &login->limits[0], SL_CHECK_DENY);
    sl_metrics_limit_check(b, &cfg->routes[1].limits[0], SL_CHECK_ERROR);
    sl_metrics_limit_check(a, &login->limits[1], SL_CHECK_SHADOW_DENY);
    sl_metrics_response(a, login, 200);
    sl_metrics_response(b, login, 200);
    sl_metrics_response(b, login, 429);
    sl_metrics_response(a, NULL, 502);
    sl_metrics_response(a, login, 99);                      /* out of range: ignored */
    sl_metrics_response(a, login, 600);                     /* out of range: ignored */
    sl_metrics_request(NULL, login, SL_OUTCOME_ALLOWED, 1); /* no slot: ignored */

    char *text = render(m);
    ck_assert_line(text, "sluice_requests_total{route=\"login\",decision=\"allowed\"} 5");
    ck_assert_line(text, "sluice_requests_total{route=\"login\",decision=\"limited\"} 1");
    ck_assert_line(text, "sluice_requests_total{route=\"login\",decision=\"shadow_limited\"} 0");
    ck_assert_line(text, "sluice_requests_total{route=\"\",decision=\"unmatched\"} 1");
    /* search saw no request, only one of its limits a check: that limit appears, the
     * route's request series do not. */
    ck_assert_no_line_prefix(text, "sluice_requests_total{route=\"search\"");
    ck_assert_no_line_prefix(text, "sluice_request_duration_seconds_bucket{route=\"search\"");
    ck_assert_line(
        text, "sluice_limit_checks_total{route=\"login\",limit=\"per_ip\",result=\"allow\"} 1");
    ck_assert_line(text,
                   "sluice_limit_checks_total{route=\"login\",limit=\"per_ip\",result=\"deny\"} 2");
    ck_assert_line(
        text, "sluice_limit_checks_total{route=\"login\",limit=\"per_key\",result=\"allow\"} 0");
    ck_assert_line(
        text, "sluice_limit_checks_total{route=\"search\",limit=\"per_ip\",result=\"error\"} 1");
    ck_assert_line(text, "sluice_limit_checks_total{route=\"login\",limit=\"per_key\","
                         "result=\"shadow_deny\"} 1");
    ck_assert_line(text, "sluice_limit_checks_total{route=\"login\",limit=\"per_ip\","
                         "result=\"shadow_deny\"} 0");
    ck_assert_line(text, "sluice_responses_total{route=\"login\",code=\"200\"} 2");
    ck_assert_line(text, "sluice_responses_total{route=\"login\",code=\"429\"} 1");
    ck_assert_line(text, "sluice_responses_total{route=\"\",code=\"502\"} 1");
    ck_assert_ptr_null(strstr(text, "code=\"600\""));
    ck_assert_ptr_null(strstr(text, "code=\"99\""));
    ck_assert_line(text, "sluice_request_duration_seconds_count{route=\"login\"} 6");
    free(text);
    free_cfg(cfg);
    sl_metrics_free(m);
}
END_TEST

START_TEST(test_unlabelled_and_fixed_series)
{
    struct sl_metrics *m = sl_metrics_new(2);
    struct sl_metrics_slot *a = sl_metrics_slot(m, 0), *b = sl_metrics_slot(m, 1);
    struct sl_store *memory = sl_store_memory_new(100, UINT64_MAX, NULL);

    sl_metrics_set_memory_store(m, memory);
    sl_metrics_connection_opened(a);
    sl_metrics_connection_opened(a);
    sl_metrics_connection_opened(b);
    sl_metrics_connection_closed(b);
    sl_metrics_upstream_error(b, SL_UPSTREAM_ERR_TIMEOUT);
    sl_metrics_upstream_error(a, SL_UPSTREAM_ERR_TIMEOUT);
    sl_metrics_store_error(a, SL_STORE_REDIS, SL_STORE_ERR_SCRIPT);
    sl_metrics_store_error(a, SL_STORE_REDIS, SL_STORE_OK); /* not an error: ignored */
    sl_metrics_deny_cache_hit(a);
    sl_metrics_deny_cache_hit(b);
    sl_metrics_deny_cache_hit(NULL);
    sl_metrics_headers_underscore(a, SL_UNDERSCORES_DROP, 2);
    sl_metrics_headers_underscore(b, SL_UNDERSCORES_DROP, 1);
    sl_metrics_headers_underscore(b, SL_UNDERSCORES_REJECT, 1);
    sl_metrics_config_reload(m, true);
    sl_metrics_config_reload(m, true);
    sl_metrics_config_reload(m, false);
    sl_metrics_redis_redirection(a, true);
    sl_metrics_redis_redirection(b, true);
    sl_metrics_redis_redirection(b, false);
    sl_metrics_redis_topology_refresh(a);
    sl_metrics_redis_topology_refresh(b);
    sl_metrics_redis_topology_refresh(b);

    char *text = render(m);
    ck_assert_line(text, "sluice_redis_redirections_total{kind=\"moved\"} 2");
    ck_assert_line(text, "sluice_redis_redirections_total{kind=\"ask\"} 1");
    ck_assert_line(text, "sluice_redis_topology_refreshes_total 3");
    ck_assert_line(text, "sluice_connections_active 2");
    ck_assert_line(text, "sluice_connections_accepted_total 3");
    ck_assert_line(text, "sluice_upstream_errors_total{kind=\"connect\"} 0");
    ck_assert_line(text, "sluice_upstream_errors_total{kind=\"timeout\"} 2");
    ck_assert_line(text, "sluice_upstream_errors_total{kind=\"reset\"} 0");
    ck_assert_line(text, "sluice_store_errors_total{store=\"redis\",kind=\"script\"} 1");
    ck_assert_line(text, "sluice_store_errors_total{store=\"redis\",kind=\"timeout\"} 0");
    ck_assert_line(text, "sluice_store_errors_total{store=\"redis\",kind=\"connection\"} 0");
    ck_assert_line(text, "sluice_deny_cache_hits_total 2");
    ck_assert_line(text, "sluice_headers_underscore_total{action=\"drop\"} 3");
    ck_assert_line(text, "sluice_headers_underscore_total{action=\"allow\"} 0");
    ck_assert_line(text, "sluice_headers_underscore_total{action=\"reject\"} 1");
    ck_assert_line(text, "sluice_config_reloads_total{result=\"success\"} 2");
    ck_assert_line(text, "sluice_config_reloads_total{result=\"failure\"} 1");
    ck_assert_line(text, "sluice_build_info{version=\"" SLUICE_VERSION "\"} 1");
    ck_assert_line(text, "sluice_memory_keys 0");
    ck_assert_line(text, "sluice_memory_evictions_total 0");
    ck_assert_line(text, "sluice_redis_connected 0");
    /* A route no request reached, unmatched included, exports no series yet. */
    ck_assert_no_line_prefix(text, "sluice_requests_total{route=\"\"");
    free(text);
    sl_metrics_free(m);
    sl_store_free(memory);
}
END_TEST

/* Every GOAWAY reason has its series from the start, at 0; both counters sum the slots. */
START_TEST(test_http2_streams_and_goaways)
{
    struct sl_metrics *m = sl_metrics_new(2);
    struct sl_metrics_slot *a = sl_metrics_slot(m, 0), *b = sl_metrics_slot(m, 1);

    char *text = render(m);
    ck_assert_line(text, "sluice_http2_streams_total 0");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"shutdown\"} 0");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"idle\"} 0");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"stalled\"} 0");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"enhance_your_calm\"} 0");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"protocol_error\"} 0");
    free(text);

    sl_metrics_http2_stream(a);
    sl_metrics_http2_stream(a);
    sl_metrics_http2_stream(b);
    sl_metrics_http2_stream(NULL);
    sl_metrics_http2_goaway(a, SL_H2_GOAWAY_CALM);
    sl_metrics_http2_goaway(b, SL_H2_GOAWAY_CALM);
    sl_metrics_http2_goaway(b, SL_H2_GOAWAY_SHUTDOWN);
    sl_metrics_http2_goaway(a, SL_H2_GOAWAY_PROTOCOL);
    sl_metrics_http2_goaway(a, SL_H2_GOAWAY_KINDS); /* not a reason: ignored */
    sl_metrics_http2_goaway(NULL, SL_H2_GOAWAY_IDLE);
    text = render(m);
    ck_assert_line(text, "sluice_http2_streams_total 3");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"shutdown\"} 1");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"idle\"} 0");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"stalled\"} 0");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"enhance_your_calm\"} 2");
    ck_assert_line(text, "sluice_http2_goaways_total{reason=\"protocol_error\"} 1");
    free(text);
    sl_metrics_free(m);
}
END_TEST

START_TEST(test_label_values_are_escaped)
{
    static const struct test_route odd[] = {{"a\"b\\c\nd", {"x\"y"}}};
    struct sl_metrics *m = sl_metrics_new(1);
    struct sl_config *cfg = make_cfg(odd, 1);
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    sl_metrics_limit_check(sl_metrics_slot(m, 0), &cfg->routes[0].limits[0], SL_CHECK_DENY);
    sl_metrics_response(sl_metrics_slot(m, 0), &cfg->routes[0], 429);

    char *text = render(m);
    ck_assert_line(text, "sluice_requests_total{route=\"a\\\"b\\\\c\\nd\",decision=\"allowed\"} 0");
    ck_assert_line(
        text,
        "sluice_limit_checks_total{route=\"a\\\"b\\\\c\\nd\",limit=\"x\\\"y\",result=\"deny\"} 1");
    free(text);
    free_cfg(cfg);
    sl_metrics_free(m);
}
END_TEST

START_TEST(test_bind_is_stable_by_name)
{
    static const struct test_route second[] = {
        {"search", {"per_ip"}},
        {"fresh", {"per_ip"}},
        {"login", {"per_key", "per_ip"}},
    };
    struct sl_metrics *m = sl_metrics_new(1);
    struct sl_config *one = make_cfg(login_search, 2);
    struct sl_config *two = make_cfg(second, 3);
    ck_assert_int_eq(sl_metrics_bind(m, one), 0);
    ck_assert_int_eq(sl_metrics_bind(m, two), 0);

    const struct sl_route *login1 = &one->routes[0], *search1 = &one->routes[1];
    const struct sl_route *search2 = &two->routes[0], *fresh2 = &two->routes[1];
    const struct sl_route *login2 = &two->routes[2];
    ck_assert_uint_eq(login1->metrics_id, login2->metrics_id);
    ck_assert_uint_eq(search1->metrics_id, search2->metrics_id);
    ck_assert_uint_ne(login1->metrics_id, search1->metrics_id);
    ck_assert_uint_ne(fresh2->metrics_id, login1->metrics_id);
    ck_assert_uint_ne(fresh2->metrics_id, search1->metrics_id);
    ck_assert_uint_ne(login1->metrics_id, 0); /* 0 is the unmatched route */
    ck_assert_uint_ne(search1->metrics_id, 0);

    /* (route, limit) pairs: same pair same id, same limit name on another route differs. */
    ck_assert_uint_eq(login1->limits[0].metrics_id, login2->limits[1].metrics_id); /* per_ip */
    ck_assert_uint_eq(login1->limits[1].metrics_id, login2->limits[0].metrics_id); /* per_key */
    ck_assert_uint_ne(login1->limits[0].metrics_id, login1->limits[1].metrics_id);
    ck_assert_uint_ne(login1->limits[0].metrics_id, search1->limits[0].metrics_id);
    ck_assert_uint_eq(search1->limits[0].metrics_id, search2->limits[0].metrics_id);
    ck_assert_uint_ne(fresh2->limits[0].metrics_id, search2->limits[0].metrics_id);

    /* Counters continue across the two configurations. */
    sl_metrics_request(sl_metrics_slot(m, 0), login1, SL_OUTCOME_ALLOWED, 10);
    sl_metrics_request(sl_metrics_slot(m, 0), login2, SL_OUTCOME_ALLOWED, 10);
    sl_metrics_limit_check(sl_metrics_slot(m, 0), &login1->limits[0], SL_CHECK_ALLOW);
    sl_metrics_limit_check(sl_metrics_slot(m, 0), &login2->limits[1], SL_CHECK_ALLOW);
    char *text = render(m);
    ck_assert_line(text, "sluice_requests_total{route=\"login\",decision=\"allowed\"} 2");
    ck_assert_line(
        text, "sluice_limit_checks_total{route=\"login\",limit=\"per_ip\",result=\"allow\"} 2");
    ck_assert_no_line_prefix(text, "sluice_requests_total{route=\"fresh\"");
    free(text);
    free_cfg(one);
    free_cfg(two);
    sl_metrics_free(m);
}
END_TEST

START_TEST(test_bind_reports_a_full_registry)
{
    size_t n = SL_METRICS_MAX_ROUTES + 2;
    struct test_route *spec = calloc(n, sizeof *spec);
    char(*names)[16] = calloc(n, sizeof *names);
    for (size_t i = 0; i < n; i++) {
        snprintf(names[i], sizeof names[i], "r%zu", i);
        spec[i].name = names[i];
        spec[i].limits[0] = "l";
    }
    struct sl_metrics *m = sl_metrics_new(1);
    struct sl_config *cfg = make_cfg(spec, n);

    ck_assert_int_eq(sl_metrics_bind(m, cfg), -1);
    /* The unmatched route holds one id: every other id went to the first routes. */
    ck_assert_uint_eq(cfg->routes[SL_METRICS_MAX_ROUTES - 2].metrics_id, SL_METRICS_MAX_ROUTES - 1);
    ck_assert_uint_ge(cfg->routes[n - 1].metrics_id, SL_METRICS_MAX_ROUTES);
    ck_assert_uint_ge(cfg->routes[n - 1].limits[0].metrics_id, SL_METRICS_MAX_LIMITS);
    /* Routes past the capacity are not counted, and recording them is harmless. */
    sl_metrics_request(sl_metrics_slot(m, 0), &cfg->routes[n - 1], SL_OUTCOME_ALLOWED, 1);
    sl_metrics_limit_check(sl_metrics_slot(m, 0), &cfg->routes[n - 1].limits[0], SL_CHECK_DENY);
    sl_metrics_request(sl_metrics_slot(m, 0), &cfg->routes[0], SL_OUTCOME_ALLOWED, 1);
    char *text = render(m);
    ck_assert_line(text, "sluice_requests_total{route=\"r0\",decision=\"allowed\"} 1");
    ck_assert_ptr_null(strstr(text, "route=\"r4097\""));
    free(text);
    free_cfg(cfg);
    sl_metrics_free(m);
    free(spec);
    free(names);
}
END_TEST

START_TEST(test_histograms_are_cumulative)
{
    struct sl_metrics *m = sl_metrics_new(2);
    struct sl_config *cfg = make_cfg(login_search, 2);
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    struct sl_metrics_slot *a = sl_metrics_slot(m, 0), *b = sl_metrics_slot(m, 1);
    const struct sl_route *login = &cfg->routes[0];

    sl_metrics_request(a, login, SL_OUTCOME_ALLOWED, 50);
    sl_metrics_request(b, login, SL_OUTCOME_ALLOWED, 100); /* on the bound: le is inclusive */
    sl_metrics_request(a, login, SL_OUTCOME_ALLOWED, 300);
    sl_metrics_request(b, login, SL_OUTCOME_LIMITED, 2000000);
    sl_metrics_request(a, login, SL_OUTCOME_ALLOWED, 20000000);
    sl_metrics_store_duration(a, SL_STORE_REDIS, 700);
    sl_metrics_store_duration(b, SL_STORE_REDIS, 1500);
    sl_metrics_store_duration(b, SL_STORE_MEMORY, 3);

    char *text = render(m);
    const char *p = "sluice_request_duration_seconds";
    char line[256];
    static const struct {
        const char *le;
        int count;
    } want[] = {{"0.0001", 2}, {"0.00025", 2}, {"0.0005", 3}, {"0.001", 3}, {"1", 3},
                {"2.5", 4},    {"5", 4},       {"10", 4},     {"+Inf", 5}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        snprintf(line, sizeof line, "%s_bucket{route=\"login\",le=\"%s\"} %d", p, want[i].le,
                 want[i].count);
        ck_assert_line(text, line);
    }
    ck_assert_line(text, "sluice_request_duration_seconds_sum{route=\"login\"} 22.000450");
    ck_assert_line(text, "sluice_request_duration_seconds_count{route=\"login\"} 5");
    ck_assert_no_line_prefix(text, "sluice_request_duration_seconds_count{route=\"search\"}");
    ck_assert_line(text, "sluice_store_duration_seconds_bucket{store=\"redis\",le=\"0.0005\"} 0");
    ck_assert_line(text, "sluice_store_duration_seconds_bucket{store=\"redis\",le=\"0.001\"} 1");
    ck_assert_line(text, "sluice_store_duration_seconds_bucket{store=\"redis\",le=\"0.0025\"} 2");
    ck_assert_line(text, "sluice_store_duration_seconds_sum{store=\"redis\"} 0.002200");
    ck_assert_line(text, "sluice_store_duration_seconds_count{store=\"memory\"} 1");
    ck_assert_line(text, "sluice_store_duration_seconds_bucket{store=\"memory\",le=\"0.0001\"} 1");
    free(text);
    free_cfg(cfg);
    sl_metrics_free(m);
}
END_TEST

static const struct {
    const char *name, *type;
} families[] = {
    {"sluice_requests_total", "counter"},
    {"sluice_limit_checks_total", "counter"},
    {"sluice_limit_units_total", "counter"},
    {"sluice_charge_errors_total", "counter"},
    {"sluice_responses_total", "counter"},
    {"sluice_request_duration_seconds", "histogram"},
    {"sluice_store_duration_seconds", "histogram"},
    {"sluice_store_errors_total", "counter"},
    {"sluice_deny_cache_hits_total", "counter"},
    {"sluice_redis_connected", "gauge"},
    {"sluice_redis_redirections_total", "counter"},
    {"sluice_redis_topology_refreshes_total", "counter"},
    {"sluice_upstream_errors_total", "counter"},
    {"sluice_headers_underscore_total", "counter"},
    {"sluice_connections_active", "gauge"},
    {"sluice_connections_accepted_total", "counter"},
    {"sluice_http2_streams_total", "counter"},
    {"sluice_http2_goaways_total", "counter"},
    {"sluice_tls_handshakes_total", "counter"},
    {"sluice_memory_keys", "gauge"},
    {"sluice_memory_evictions_total", "counter"},
    {"sluice_config_reloads_total", "counter"},
    {"sluice_build_info", "gauge"},
    {"sluice_rls_requests_total", "counter"},
};

START_TEST(test_every_family_has_help_and_type)
{
    struct sl_metrics *m = sl_metrics_new(1);
    char *text = render(m);
    char line[128];
    size_t ntype = 0;

    for (size_t i = 0; i < sizeof families / sizeof families[0]; i++) {
        snprintf(line, sizeof line, "# TYPE %s %s", families[i].name, families[i].type);
        ck_assert_line(text, line);
        snprintf(line, sizeof line, "# HELP %s ", families[i].name);
        ck_assert_msg(has_line_prefix(text, line), "no HELP for %s", families[i].name);
    }
    for (const char *p = strstr(text, "# TYPE "); p; p = strstr(p + 1, "# TYPE "))
        ntype++;
    ck_assert_uint_eq(ntype, sizeof families / sizeof families[0]);
    free(text);
    sl_metrics_free(m);
}
END_TEST

START_TEST(test_redis_connected_needs_every_worker)
{
    struct sl_metrics *m = sl_metrics_new(2);
    struct sl_config *cfg = make_cfg(login_search, 2);
    char *text;

    sl_metrics_redis_connected(sl_metrics_slot(m, 0), true);
    sl_metrics_redis_connected(sl_metrics_slot(m, 1), true);
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0); /* no redis block */
    text = render(m);
    ck_assert_line(text, "sluice_redis_connected 0");
    free(text);

    cfg->redis.enabled = true;
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    text = render(m);
    ck_assert_line(text, "sluice_redis_connected 1");
    free(text);

    sl_metrics_redis_connected(sl_metrics_slot(m, 1), false);
    text = render(m);
    ck_assert_line(text, "sluice_redis_connected 0");
    free(text);
    free_cfg(cfg);
    sl_metrics_free(m);

    /* A worker that has not reported yet counts as disconnected. */
    m = sl_metrics_new(2);
    cfg = make_cfg(login_search, 2);
    cfg->redis.enabled = true;
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    sl_metrics_redis_connected(sl_metrics_slot(m, 0), true);
    text = render(m);
    ck_assert_line(text, "sluice_redis_connected 0");
    free(text);
    free_cfg(cfg);
    sl_metrics_free(m);
}
END_TEST

#define PER_THREAD 200000

struct writer {
    struct sl_metrics_slot *slot;
    const struct sl_route *route;
};

static void *write_counts(void *arg)
{
    struct writer *w = arg;
    for (int i = 0; i < PER_THREAD; i++) {
        sl_metrics_request(w->slot, w->route, SL_OUTCOME_ALLOWED, (uint64_t)i % 3000);
        sl_metrics_connection_opened(w->slot);
    }
    return NULL;
}

/* Workers write while the scraper reads: the totals after the writers stop are exact. */
START_TEST(test_concurrent_writers_and_scraper)
{
    struct sl_metrics *m = sl_metrics_new(2);
    struct sl_config *cfg = make_cfg(login_search, 2);
    ck_assert_int_eq(sl_metrics_bind(m, cfg), 0);
    struct writer w[2] = {{sl_metrics_slot(m, 0), &cfg->routes[0]},
                          {sl_metrics_slot(m, 1), &cfg->routes[0]}};
    pthread_t t[2];

    for (int i = 0; i < 2; i++)
        ck_assert_int_eq(pthread_create(&t[i], NULL, write_counts, &w[i]), 0);
    for (int i = 0; i < 20; i++)
        free(render(m));
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    char *text = render(m);
    ck_assert_line(text, "sluice_requests_total{route=\"login\",decision=\"allowed\"} 400000");
    ck_assert_line(text, "sluice_request_duration_seconds_count{route=\"login\"} 400000");
    ck_assert_line(text, "sluice_connections_accepted_total 400000");
    free(text);
    free_cfg(cfg);
    sl_metrics_free(m);
}
END_TEST

static Suite *metrics_suite(void)
{
    Suite *s = suite_create("metrics");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_slots_are_summed);
    tcase_add_test(tc, test_unlabelled_and_fixed_series);
    tcase_add_test(tc, test_http2_streams_and_goaways);
    tcase_add_test(tc, test_label_values_are_escaped);
    tcase_add_test(tc, test_bind_is_stable_by_name);
    tcase_add_test(tc, test_bind_reports_a_full_registry);
    tcase_add_test(tc, test_histograms_are_cumulative);
    tcase_add_test(tc, test_every_family_has_help_and_type);
    tcase_add_test(tc, test_redis_connected_needs_every_worker);
    tcase_add_test(tc, test_concurrent_writers_and_scraper);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(metrics_suite());
}
