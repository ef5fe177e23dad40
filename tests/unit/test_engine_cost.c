/* The engine with `cost` limits: a configuration loaded from YAML, the real memory store on
 * an injected clock. Costs from the request header, malformed headers (400, nothing spent),
 * costs that can never fit, and the units metric. */
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

static const char yaml[] = "upstream:\n"
                           "  url: \"http://127.0.0.1:3000\"\n"
                           "response: {headers: legacy}\n"
                           "routes:\n"
                           "  - name: bulk\n"
                           "    match: {path_prefix: /bulk}\n"
                           "    limits:\n"
                           "      - name: units\n"
                           "        algorithm: token_bucket\n"
                           "        rate: 10/1m\n"
                           "        burst: 20\n"
                           "        key: client_ip\n"
                           "        cost: header:X-Cost\n"
                           "      - name: trial\n"
                           "        algorithm: fixed_window\n"
                           "        rate: 5/1m\n"
                           "        key: client_ip\n"
                           "        cost: header:X-Trial-Cost\n"
                           "        shadow: true\n"
                           "  - name: fixed\n"
                           "    match: {path_prefix: /fixed}\n"
                           "    limits:\n"
                           "      - name: three\n"
                           "        algorithm: fixed_window\n"
                           "        rate: 10/1m\n"
                           "        key: client_ip\n"
                           "        cost: 3\n"
                           "  - name: llm\n"
                           "    match: {path_prefix: /llm}\n"
                           "    limits:\n"
                           "      - name: tokens\n"
                           "        algorithm: token_bucket\n"
                           "        rate: 100/1m\n"
                           "        key: client_ip\n"
                           "        charge: response_header:X-Tokens-Used\n";

static struct sl_config *cfg;
static struct sl_store *memory;
static struct sl_engine *engine;
static struct sl_metrics *metrics;

static void setup(void)
{
    now_us = 10 * 1000000ull;
    char path[] = "/tmp/sluice-engine-cost-XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    fputs(yaml, f);
    fclose(f);
    char *errors = NULL;
    cfg = sl_cfg_load(path, &errors);
    unlink(path);
    if (!cfg)
        ck_abort_msg("configuration rejected: %s", errors);
    memory = sl_store_memory_new(1000, UINT64_MAX, fake_clock);
    metrics = sl_metrics_new(1);
    ck_assert_int_eq(sl_metrics_bind(metrics, cfg), 0);
    engine = sl_engine_new(NULL, memory, NULL, sl_metrics_slot(metrics, 0));
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
    bool rejected;
    enum sl_outcome outcome;
    int status;
    char headers[512];
    char body[256];
};

static void on_verdict(void *arg, struct sl_verdict *v)
{
    struct result *r = arg;
    r->calls++;
    r->rejected = v->rejected;
    r->outcome = v->outcome;
    r->status = v->status;
    ck_assert_uint_lt(v->headers->len, sizeof r->headers);
    if (v->headers->len)
        memcpy(r->headers, v->headers->data, v->headers->len);
    r->headers[v->headers->len] = '\0';
    v->headers->len = 0;
    ck_assert_uint_lt(v->body->len, sizeof r->body);
    if (v->body->len)
        memcpy(r->body, v->body->data, v->body->len);
    r->body[v->body->len] = '\0';
    v->body->len = 0;
}

/* One request to `target` with the header `name: value` unless name is NULL. */
static struct result decide(const char *target, const char *name, const char *value)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    ck_assert_int_eq(inet_pton(AF_INET, "198.51.100.1", &sin.sin_addr), 1);
    struct sl_header hs[] = {{"Host", 4, "example.com", 11},
                             {name, name ? strlen(name) : 0, value, value ? strlen(value) : 0}};
    struct sl_request req = {
        "GET", 3, target, strlen(target), hs, name ? 2 : 1, (struct sockaddr *)&sin, NULL, 0};
    struct sl_textbuf headers = {0}, body = {0};
    struct sl_verdict v = {.headers = &headers, .body = &body};
    struct result r = {0};
    sl_engine_decide(engine, cfg, &req, &v, on_verdict, &r);
    ck_assert_int_eq(r.calls, 1);
    sl_engine_verdict_done(engine, &v);
    sl_textbuf_free(&headers);
    sl_textbuf_free(&body);
    return r;
}

/* One request to /llm whose response head carries `X-Tokens-Used: used` (NULL: the response
 * never arrives; "": the header is missing). */
static struct result charged(const char *used)
{
    struct sockaddr_in sin = {.sin_family = AF_INET};
    ck_assert_int_eq(inet_pton(AF_INET, "198.51.100.1", &sin.sin_addr), 1);
    struct sl_header hs[] = {{"Host", 4, "example.com", 11}};
    struct sl_request req = {"POST", 4, "/llm", 4, hs, 1, (struct sockaddr *)&sin, NULL, 0};
    struct sl_textbuf headers = {0}, body = {0};
    struct sl_verdict v = {.headers = &headers, .body = &body};
    struct result r = {0};
    sl_engine_decide(engine, cfg, &req, &v, on_verdict, &r);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(sl_engine_charge_pending(&v), r.status == 0);
    if (used) {
        struct sl_header resp[] = {{"Content-Type", 12, "application/json", 16},
                                   {"x-tokens-used", 13, used, strlen(used)}};
        sl_engine_charge_head(engine, &v, resp, *used ? 2 : 1);
        ck_assert(!sl_engine_charge_pending(&v));
    }
    sl_engine_verdict_done(engine, &v);
    sl_textbuf_free(&headers);
    sl_textbuf_free(&body);
    return r;
}

START_TEST(header_cost_takes_units)
{
    struct result r = decide("/bulk", "X-Cost", "15");
    ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_ptr_nonnull(strstr(r.headers, "X-RateLimit-Remaining: 5\r\n"));
    /* Absent: one unit. */
    r = decide("/bulk", NULL, NULL);
    ck_assert_ptr_nonnull(strstr(r.headers, "X-RateLimit-Remaining: 4\r\n"));
    /* 5 do not fit in 4: denied, retry when one more token is back (6 s). */
    r = decide("/bulk", "x-cost", "5");
    ck_assert_int_eq(r.outcome, SL_OUTCOME_LIMITED);
    ck_assert_ptr_nonnull(strstr(r.headers, "Retry-After: 6\r\n"));
    /* 0 is a check: admitted, nothing taken. */
    r = decide("/bulk", "X-Cost", "0");
    ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_ptr_nonnull(strstr(r.headers, "X-RateLimit-Remaining: 4\r\n"));
    assert_metric("sluice_limit_units_total{route=\"bulk\",limit=\"units\",kind=\"cost\"} 16");
    assert_metric("sluice_limit_checks_total{route=\"bulk\",limit=\"units\",result=\"allow\"} 3");
}
END_TEST

START_TEST(malformed_cost_is_400_and_spends_nothing)
{
    static const char *const bad[] = {"-1", "1.5", "abc", "4294967297", "1 2", ""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct result r = decide("/bulk", "X-Cost", bad[i]);
        ck_assert_msg(r.status == 400, "X-Cost: \"%s\" gave %d", bad[i], r.status);
        ck_assert(r.rejected);
        ck_assert_str_eq(r.body, "{\"error\":\"bad_cost\",\"route\":\"bulk\",\"limit\":\"units\","
                                 "\"header\":\"X-Cost\"}");
    }
    /* 2^32 is the largest cost read; it exceeds this limit's capacity of 20. */
    struct result r = decide("/bulk", "X-Cost", "4294967296");
    ck_assert_int_eq(r.status, 429);
    /* Nothing was spent by any of them. */
    r = decide("/bulk", "X-Cost", "20");
    ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
    /* A shadow limit's malformed header is read as the default cost: never a 400. */
    now_us += 1000 * 1000000ull;
    r = decide("/bulk", "X-Trial-Cost", "junk");
    ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
}
END_TEST

START_TEST(cost_above_capacity_never_fits)
{
    struct result r = decide("/bulk", "X-Cost", "21");
    ck_assert_int_eq(r.outcome, SL_OUTCOME_LIMITED);
    ck_assert_int_eq(r.status, 429);
    ck_assert_str_eq(r.body, "{\"error\":\"cost_exceeds_capacity\",\"route\":\"bulk\",\"limit\":"
                             "\"units\",\"cost\":21,\"capacity\":20}");
    ck_assert_ptr_null(strstr(r.headers, "Retry-After"));
    assert_metric("sluice_limit_checks_total{route=\"bulk\",limit=\"units\",result=\"deny\"} 1");
    /* The whole bucket was left untouched. */
    r = decide("/bulk", "X-Cost", "20");
    ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
}
END_TEST

START_TEST(constant_cost)
{
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(decide("/fixed", NULL, NULL).outcome, SL_OUTCOME_ALLOWED);
    struct result r = decide("/fixed", NULL, NULL); /* 9 taken, 3 more do not fit */
    ck_assert_int_eq(r.outcome, SL_OUTCOME_LIMITED);
    ck_assert_ptr_nonnull(strstr(r.headers, "X-RateLimit-Remaining: 0\r\n"));
    assert_metric("sluice_limit_units_total{route=\"fixed\",limit=\"three\",kind=\"cost\"} 9");
}
END_TEST

/* A budget of 100 tokens a minute charged by the response: admitted while a token is left,
 * into debt by the charge, and denied until refill has repaid it. */
START_TEST(charge_by_response_header)
{
    ck_assert_int_eq(charged("70").outcome, SL_OUTCOME_ALLOWED);
    struct result r = charged("45"); /* 30 were left: admitted, 15 of debt */
    ck_assert_int_eq(r.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_ptr_nonnull(strstr(r.headers, "X-RateLimit-Remaining: 30\r\n"));
    r = charged("1");
    ck_assert_int_eq(r.outcome, SL_OUTCOME_LIMITED);
    /* 15 of debt and a unit to have: 16 tokens at 0.6 s each. */
    ck_assert_ptr_nonnull(strstr(r.headers, "Retry-After: 10\r\n"));
    now_us += 9600000 - 1;
    ck_assert_int_eq(charged(NULL).outcome, SL_OUTCOME_LIMITED);
    now_us += 1;
    ck_assert_int_eq(charged(NULL).outcome, SL_OUTCOME_ALLOWED);   /* never answered: no charge */
    ck_assert_int_eq(charged("").outcome, SL_OUTCOME_ALLOWED);     /* header missing */
    ck_assert_int_eq(charged("lots").outcome, SL_OUTCOME_ALLOWED); /* malformed */
    ck_assert_int_eq(charged("0").outcome, SL_OUTCOME_ALLOWED);
    assert_metric("sluice_limit_units_total{route=\"llm\",limit=\"tokens\",kind=\"charge\"} 115");
    assert_metric("sluice_limit_units_total{route=\"llm\",limit=\"tokens\",kind=\"cost\"} 0");
    assert_metric("sluice_charge_errors_total{route=\"llm\",limit=\"tokens\"} 2");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine_cost");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, header_cost_takes_units);
    tcase_add_test(tc, malformed_cost_is_400_and_spends_nothing);
    tcase_add_test(tc, cost_above_capacity_never_fits);
    tcase_add_test(tc, constant_cost);
    tcase_add_test(tc, charge_by_response_header);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
