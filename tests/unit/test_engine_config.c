/* The engine end to end below the proxy: a configuration loaded from YAML, the real memory
 * store and algorithms on an injected clock, and a Redis stand-in that always fails. */
#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/engine.h"
#include "sluice/metrics.h"
#include "sluice/store_memory.h"
#include "sluice/text.h"
#include "support/metrics_fixture.h"
#include "support/run_suite.h"

static uint64_t now_us;

static uint64_t fake_clock(void)
{
    return now_us;
}

/* A Redis store whose connection is down: every decision fails at once. */
static unsigned dead_calls;

static void dead_decide(struct sl_store *store, const struct sl_limit *lim,
                        const struct sl_quota *q, const char *key, size_t key_len,
                        const struct sl_units *u, sl_store_cb cb, void *arg)
{
    dead_calls++;
    cb(arg, NULL, SL_STORE_ERR_CONNECTION);
}

static void dead_free(struct sl_store *store)
{
}

static const struct sl_store_ops dead_ops = {"redis", dead_decide, dead_free};
static struct sl_store dead_redis = {&dead_ops};

static const char base_yaml[] = "upstream:\n"
                                "  url: \"http://127.0.0.1:3000\"\n"
                                "trusted_proxies: [\"10.0.0.0/8\"]\n"
                                "exempt: [\"192.0.2.200/32\"]\n"
                                "routes:\n"
                                "  - name: login\n"
                                "    match:\n"
                                "      path_prefix: /api/login\n"
                                "      methods: [POST]\n"
                                "    limits:\n"
                                "      - name: per_ip\n"
                                "        algorithm: fixed_window\n"
                                "        rate: 3/1m\n"
                                "        key: client_ip\n"
                                "  - name: queue\n"
                                "    match:\n"
                                "      path: /queue\n"
                                "    limits:\n"
                                "      - name: smooth\n"
                                "        algorithm: leaky_bucket\n"
                                "        rate: 10/s\n"
                                "        burst: 2\n"
                                "        key: route\n"
                                "  - name: shadowed\n"
                                "    match: {path_prefix: /shadow}\n"
                                "    shadow: true\n"
                                "    limits:\n"
                                "      - name: tiny\n"
                                "        algorithm: token_bucket\n"
                                "        rate: 1/1m\n"
                                "        key: client_ip\n";

static struct sl_config *cfg;
static struct sl_store *memory;
static struct sl_engine *engine;
static struct sl_metrics *metrics;

static struct sl_config *load(const char *extra)
{
    char path[] = "/tmp/sluice-engine-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(extra, f);
    fputs(base_yaml, f);
    fclose(f);
    char *errors = NULL;
    struct sl_config *c = sl_cfg_load(path, &errors);
    unlink(path);
    if (!c)
        ck_abort_msg("configuration rejected: %s", errors);
    return c;
}

static void start_engine(const char *extra, struct sl_store *redis)
{
    now_us = 10 * 1000000ull;
    cfg = load(extra);
    memory = sl_store_memory_new(1000, UINT64_MAX, fake_clock);
    ck_assert_ptr_nonnull(memory);
    metrics = sl_metrics_new(1);
    ck_assert_ptr_nonnull(metrics);
    ck_assert_int_eq(sl_metrics_bind(metrics, cfg), 0);
    engine = sl_engine_new(NULL, memory, redis, sl_metrics_slot(metrics, 0));
    ck_assert_ptr_nonnull(engine);
}

static void teardown(void)
{
    sl_engine_free(engine);
    sl_store_free(memory);
    sl_cfg_unref(cfg);
    sl_metrics_free(metrics);
}

static void assert_metric(const char *line)
{
    assert_metric_line(metrics, line);
}

struct result {
    int calls;
    enum sl_outcome outcome;
    int status;
    uint64_t delay_us;
    const char *route;
    char headers[512];
    char body[256];
};

static void on_verdict(void *arg, struct sl_verdict *v)
{
    struct result *r = arg;
    r->calls++;
    r->outcome = v->outcome;
    r->status = v->status;
    r->delay_us = v->delay_us;
    r->route = v->route ? v->route->name : "-";
    size_t n = v->headers->len;
    ck_assert_uint_lt(n, sizeof r->headers);
    if (n)
        memcpy(r->headers, v->headers->data, n);
    r->headers[n] = '\0';
    n = v->body->len;
    ck_assert_uint_lt(n, sizeof r->body);
    if (n)
        memcpy(r->body, v->body->data, n);
    r->body[n] = '\0';
}

/* Decides one request from `peer` (optionally forwarded for `xff`); every store here
 * answers at once, so the verdict is ready on return. */
static struct result decide(const char *method, const char *target, const char *peer,
                            const char *xff)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    ck_assert_int_eq(inet_pton(AF_INET, peer, &sin.sin_addr), 1);
    struct sl_header hs[] = {{"Host", 4, "example.com", 11},
                             {"X-Forwarded-For", 15, xff, xff ? strlen(xff) : 0}};
    struct sl_request req = {method,      strlen(method),         target, strlen(target), hs,
                             xff ? 2 : 1, (struct sockaddr *)&sin, NULL, 0};
    struct sl_textbuf headers = {0}, body = {0};
    struct sl_verdict v = {.headers = &headers, .body = &body};
    struct result r = {0};
    sl_engine_decide(engine, cfg, &req, &v, on_verdict, &r);
    ck_assert_int_eq(r.calls, 1);
    sl_textbuf_free(&headers);
    sl_textbuf_free(&body);
    return r;
}

START_TEST(fixed_window_through_every_spelling)
{
    start_engine("", NULL);
    const char *spellings[] = {"/api/login", "/api//login", "/api/x/../login"};
    for (int i = 0; i < 3; i++) {
        struct result r = decide("POST", spellings[i], "198.51.100.1", NULL);
        ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
        char want[256];
        snprintf(want, sizeof want,
                 "RateLimit-Policy: \"per_ip\";q=3;w=60\r\n"
                 "RateLimit: \"per_ip\";r=%d;t=50\r\n"
                 "X-RateLimit-Limit: 3\r\n"
                 "X-RateLimit-Remaining: %d\r\n"
                 "X-RateLimit-Reset: 50\r\n",
                 2 - i, 2 - i);
        ck_assert_str_eq(r.headers, want);
    }
    now_us += 500000; /* 10.5 s: 49.5 s left in the window, announced as 50 */
    struct result r = decide("POST", "/api/%6Cogin", "198.51.100.1", NULL);
    ck_assert_int_eq(r.outcome, SL_OUTCOME_LIMITED);
    ck_assert_int_eq(r.status, 429);
    assert_metric("sluice_limit_checks_total{route=\"login\",limit=\"per_ip\",result=\"deny\"} 1");
    assert_metric("sluice_store_duration_seconds_count{store=\"memory\"} 4");
    ck_assert_str_eq(r.headers, "RateLimit-Policy: \"per_ip\";q=3;w=60\r\n"
                                "RateLimit: \"per_ip\";r=0;t=50\r\n"
                                "X-RateLimit-Limit: 3\r\n"
                                "X-RateLimit-Remaining: 0\r\n"
                                "X-RateLimit-Reset: 50\r\n"
                                "Retry-After: 50\r\n");
    ck_assert_str_eq(r.body, "{\"error\":\"rate_limited\",\"route\":\"login\",\"limit\":"
                             "\"per_ip\",\"retry_after\":50}");

    /* Another client, and the same client after the window, are admitted. */
    ck_assert_int_eq(decide("POST", "/api/login", "198.51.100.2", NULL).outcome,
                     SL_OUTCOME_ALLOWED);
    /* Methods other than POST are not this route. */
    ck_assert_int_eq(decide("GET", "/api/login", "198.51.100.1", NULL).outcome,
                     SL_OUTCOME_UNMATCHED);
    now_us = 60 * 1000000ull;
    ck_assert_int_eq(decide("POST", "/api/login", "198.51.100.1", NULL).outcome,
                     SL_OUTCOME_ALLOWED);
}
END_TEST

START_TEST(forwarded_clients_counted_apart)
{
    start_engine("", NULL);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(decide("POST", "/api/login", "10.0.0.1", "203.0.113.5").outcome,
                         SL_OUTCOME_ALLOWED);
    ck_assert_int_eq(decide("POST", "/api/login", "10.0.0.1", "203.0.113.5").outcome,
                     SL_OUTCOME_LIMITED);
    /* A client cannot pick a fresh address by writing it into the header itself. */
    ck_assert_int_eq(decide("POST", "/api/login", "10.0.0.1", "1.2.3.4, 203.0.113.5").outcome,
                     SL_OUTCOME_LIMITED);
    ck_assert_int_eq(decide("POST", "/api/login", "10.0.0.1", "203.0.113.6").outcome,
                     SL_OUTCOME_ALLOWED);
    /* An untrusted peer's header is ignored: the peer is the client. */
    ck_assert_int_eq(decide("POST", "/api/login", "198.51.100.9", "203.0.113.5").outcome,
                     SL_OUTCOME_ALLOWED);
}
END_TEST

START_TEST(exempt_and_unmatched)
{
    start_engine("", NULL);
    for (int i = 0; i < 5; i++) {
        struct result r = decide("POST", "/api/login", "192.0.2.200", NULL);
        ck_assert_int_eq(r.outcome, SL_OUTCOME_EXEMPT);
        ck_assert_str_eq(r.route, "login");
        ck_assert_str_eq(r.headers, "");
    }
    struct result r = decide("GET", "/elsewhere", "198.51.100.1", NULL);
    ck_assert_int_eq(r.outcome, SL_OUTCOME_UNMATCHED);
    ck_assert_str_eq(r.route, "-");
    ck_assert_uint_eq(sl_store_memory_keys(memory), 0);
}
END_TEST

START_TEST(leaky_bucket_delays_then_denies)
{
    start_engine("response:\n  headers: none\n", NULL);
    const uint64_t delays[] = {0, 100000, 200000};
    for (int i = 0; i < 3; i++) {
        struct result r = decide("GET", "/queue", "198.51.100.1", NULL);
        ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
        ck_assert_uint_eq(r.delay_us, delays[i]);
        ck_assert_str_eq(r.headers, "");
    }
    struct result r = decide("GET", "/queue", "198.51.100.2", NULL); /* key: route */
    ck_assert_int_eq(r.outcome, SL_OUTCOME_LIMITED);
    ck_assert_uint_eq(r.delay_us, 0);
    ck_assert_str_eq(r.headers, "Retry-After: 1\r\n");
}
END_TEST

START_TEST(shadow_counts_without_enforcing)
{
    start_engine("", NULL);
    struct result r = decide("GET", "/shadow/x", "198.51.100.1", NULL);
    ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
    r = decide("GET", "/shadow/x", "198.51.100.1", NULL);
    ck_assert_int_eq(r.outcome, SL_OUTCOME_SHADOW_LIMITED);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.headers, "");
    ck_assert_str_eq(r.body, "");
}
END_TEST

START_TEST(redis_down_local_mode_limits_in_memory)
{
    start_engine("redis:\n  url: \"redis://127.0.0.1:1/0\"\nfailure_mode: local\n", &dead_redis);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(decide("POST", "/api/login", "198.51.100.1", NULL).outcome,
                         SL_OUTCOME_ALLOWED);
    struct result r = decide("POST", "/api/login", "198.51.100.1", NULL);
    ck_assert_int_eq(r.outcome, SL_OUTCOME_LIMITED);
    ck_assert_int_eq(r.status, 429);
    ck_assert_uint_eq(dead_calls, 4);
    /* The limit counts the memory store's answers; Redis's failures are store errors. */
    assert_metric("sluice_limit_checks_total{route=\"login\",limit=\"per_ip\",result=\"allow\"} 3");
    assert_metric("sluice_limit_checks_total{route=\"login\",limit=\"per_ip\",result=\"deny\"} 1");
    assert_metric("sluice_limit_checks_total{route=\"login\",limit=\"per_ip\",result=\"error\"} 0");
    assert_metric("sluice_store_errors_total{store=\"redis\",kind=\"connection\"} 4");
    assert_metric("sluice_store_duration_seconds_count{store=\"redis\"} 4");
    assert_metric("sluice_store_duration_seconds_count{store=\"memory\"} 4");
}
END_TEST

START_TEST(redis_down_open_and_closed)
{
    start_engine("redis:\n  url: \"redis://127.0.0.1:1/0\"\nfailure_mode: open\n", &dead_redis);
    for (int i = 0; i < 5; i++) {
        struct result r = decide("POST", "/api/login", "198.51.100.1", NULL);
        ck_assert_int_eq(r.outcome, SL_OUTCOME_STORE_ERROR);
        ck_assert_int_eq(r.status, 0);
        ck_assert_str_eq(r.headers, "");
    }
    assert_metric("sluice_limit_checks_total{route=\"login\",limit=\"per_ip\",result=\"error\"} 5");
    assert_metric("sluice_store_errors_total{store=\"redis\",kind=\"connection\"} 5");
    teardown();
    start_engine("redis:\n  url: \"redis://127.0.0.1:1/0\"\nfailure_mode: closed\n", &dead_redis);
    struct result r = decide("POST", "/api/login", "198.51.100.1", NULL);
    ck_assert_int_eq(r.outcome, SL_OUTCOME_STORE_ERROR);
    ck_assert_int_eq(r.status, 503);
    ck_assert_str_eq(r.headers, "Retry-After: 1\r\n");
    ck_assert_str_eq(r.body, "{\"error\":\"store_unavailable\"}");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine_config");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, NULL, teardown);
    tcase_add_test(tc, fixed_window_through_every_spelling);
    tcase_add_test(tc, forwarded_clients_counted_apart);
    tcase_add_test(tc, exempt_and_unmatched);
    tcase_add_test(tc, leaky_bucket_delays_then_denies);
    tcase_add_test(tc, shadow_counts_without_enforcing);
    tcase_add_test(tc, redis_down_local_mode_limits_in_memory);
    tcase_add_test(tc, redis_down_open_and_closed);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
