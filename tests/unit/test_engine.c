/* The limiter engine's verdicts: response headers in every mode, the 429 body, shadow,
 * exempt and unmatched requests, absent key sources, and the store each limit uses. */
#include "sluice/rates.h"
#include "support/engine_fixture.h"

START_TEST(outcome_names)
{
    ck_assert_str_eq(sl_outcome_name(SL_OUTCOME_ALLOWED), "allowed");
    ck_assert_str_eq(sl_outcome_name(SL_OUTCOME_LIMITED), "limited");
    ck_assert_str_eq(sl_outcome_name(SL_OUTCOME_SHADOW_LIMITED), "shadow_limited");
    ck_assert_str_eq(sl_outcome_name(SL_OUTCOME_EXEMPT), "exempt");
    ck_assert_str_eq(sl_outcome_name(SL_OUTCOME_UNMATCHED), "unmatched");
    ck_assert_str_eq(sl_outcome_name(SL_OUTCOME_STORE_ERROR), "store_error");
}
END_TEST

START_TEST(unmatched_forwarded_without_headers)
{
    add_limit(add_route("login", SL_MATCH_PATH, "/api/login"), "per_ip", 5, 60, SL_STORE_MEMORY);
    struct result *r = decide("GET", "/other");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_UNMATCHED);
    ck_assert_ptr_null(r->v.route);
    ck_assert_int_eq(r->v.status, 0);
    ck_assert_str_eq(r->headers, "");
    ck_assert_uint_eq(memory.ncalls, 0);
    ck_assert_int_eq(r->v.client.family, AF_INET);
}
END_TEST

START_TEST(exempt_client_never_asks_a_store)
{
    add_limit(add_route("login", SL_MATCH_PATH, "/api/login"), "per_ip", 5, 60, SL_STORE_MEMORY);
    ck_assert_int_eq(sl_cidr_parse("192.0.2.0/24", &cidrs[0]), 0);
    cfg.exempt.count = 1;
    struct result *r = decide("POST", "/api/login");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_EXEMPT);
    ck_assert_str_eq(r->v.route->name, "login");
    ck_assert_int_eq(r->v.status, 0);
    ck_assert_str_eq(r->headers, "");
    ck_assert_uint_eq(memory.ncalls, 0);
}
END_TEST

START_TEST(allowed_headers_in_every_mode)
{
    add_limit(add_route("login", SL_MATCH_PREFIX, "/api/login"), "per_ip", 5, 60, SL_STORE_MEMORY);
    script(&memory, "per_ip", SL_STORE_OK, allow(5, 3, 41200000));
    static const char draft[] = "RateLimit-Policy: \"per_ip\";q=5;w=60\r\n"
                                "RateLimit: \"per_ip\";r=3;t=42\r\n";
    static const char legacy[] = "X-RateLimit-Limit: 5\r\n"
                                 "X-RateLimit-Remaining: 3\r\n"
                                 "X-RateLimit-Reset: 42\r\n";
    char both[256];
    snprintf(both, sizeof both, "%s%s", draft, legacy);

    struct result *r = decide("POST", "/api//login");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_int_eq(r->v.status, 0);
    ck_assert_str_eq(r->headers, both);
    ck_assert_str_eq(r->body, "");
    cfg.response_headers = SL_HEADERS_DRAFT;
    ck_assert_str_eq(decide("POST", "/api/login")->headers, draft);
    cfg.response_headers = SL_HEADERS_LEGACY;
    ck_assert_str_eq(decide("POST", "/api/login")->headers, legacy);
    cfg.response_headers = SL_HEADERS_NONE;
    ck_assert_str_eq(decide("POST", "/api/login")->headers, "");
    ck_assert_str_eq(memory.keys[0], "192.0.2.1");
    ck_assert_uint_eq(memory.ncalls, 4);
}
END_TEST

/* client_ip keys carry the address as inet_ntop writes it, whatever its digits. */
START_TEST(client_ip_key_text)
{
    static const char *const addrs[] = {"0.0.0.0", "255.255.255.255", "10.0.100.9", "1.20.255.0",
                                        "192.168.1.10"};
    add_limit(add_route("all", SL_MATCH_PREFIX, "/"), "per_ip", 5, 60, SL_STORE_MEMORY);
    for (size_t i = 0; i < sizeof addrs / sizeof addrs[0]; i++) {
        struct result r;
        peer_addr.sin_family = AF_INET;
        inet_pton(AF_INET, addrs[i], &peer_addr.sin_addr);
        start(&r, "GET", "/", NULL, 0);
        ck_assert_int_eq(r.calls, 1);
        ck_assert_str_eq(memory.keys[i], addrs[i]);
        done(&r);
    }

    struct sockaddr_in6 peer6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "2001:db8::7", &peer6.sin6_addr);
    struct sl_request req = {"GET", 3, "/", 1, NULL, 0, (const struct sockaddr *)&peer6, NULL, 0};
    struct result r6;
    memset(&r6, 0, sizeof r6);
    r6.v.headers = &r6.vheaders;
    r6.v.body = &r6.vbody;
    sl_engine_decide(engine, &cfg, &req, &r6.v, on_verdict, &r6);
    ck_assert_int_eq(r6.calls, 1);
    ck_assert_str_eq(memory.keys[5], "2001:db8::7");
    done(&r6);
}
END_TEST

START_TEST(several_limits_in_configuration_order)
{
    struct sl_route *rt = add_route("api", SL_MATCH_PREFIX, "/api");
    add_limit(rt, "per_ip", 100, 60, SL_STORE_MEMORY);
    add_limit(rt, "burst", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "daily", 1000, 86400, SL_STORE_MEMORY);
    script(&memory, "per_ip", SL_STORE_OK, allow(100, 40, 30000000));
    script(&memory, "burst", SL_STORE_OK, allow(10, 7, 300000));
    script(&memory, "daily", SL_STORE_OK, allow(1000, 7, 86399000001));
    struct result *r = decide("GET", "/api/x");
    ck_assert_str_eq(r->headers, "RateLimit-Policy: \"per_ip\";q=100;w=60, \"burst\";q=10;w=1, "
                                 "\"daily\";q=1000;w=86400\r\n"
                                 "RateLimit: \"per_ip\";r=40;t=30, \"burst\";r=7;t=1, "
                                 "\"daily\";r=7;t=86400\r\n"
                                 /* lowest remaining; "burst" comes first of the two at 7 */
                                 "X-RateLimit-Limit: 10\r\n"
                                 "X-RateLimit-Remaining: 7\r\n"
                                 "X-RateLimit-Reset: 1\r\n");
}
END_TEST

START_TEST(denied_answer)
{
    struct sl_route *rt = add_route("login", SL_MATCH_PREFIX, "/api/login");
    add_limit(rt, "per_user", 50, 3600, SL_STORE_MEMORY);
    add_limit(rt, "per_ip", 5, 60, SL_STORE_MEMORY);
    add_limit(rt, "per_net", 20, 60, SL_STORE_MEMORY);
    script(&memory, "per_user", SL_STORE_OK, allow(50, 12, 1000000));
    script(&memory, "per_ip", SL_STORE_OK, deny(5, 2100000, 2100000));
    script(&memory, "per_net", SL_STORE_OK, deny(20, 500000, 300000));
    cfg.response_headers = SL_HEADERS_LEGACY;
    struct result *r = decide("POST", "/api/login");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_int_eq(r->v.status, 429);
    ck_assert_uint_eq(r->v.delay_us, 0);
    ck_assert_str_eq(r->headers, "X-RateLimit-Limit: 5\r\n"
                                 "X-RateLimit-Remaining: 0\r\n"
                                 "X-RateLimit-Reset: 3\r\n"
                                 "Retry-After: 3\r\n");
    ck_assert_str_eq(r->body,
                     "{\"error\":\"rate_limited\",\"route\":\"login\",\"limit\":\"per_ip\","
                     "\"retry_after\":3}");
    /* Every limit counted: denial by one does not skip the others. */
    ck_assert_uint_eq(memory.ncalls, 3);
}
END_TEST

START_TEST(denied_status_and_minimum_retry_after)
{
    add_limit(add_route("all", SL_MATCH_ANY, NULL), "per_ip", 1, 1, SL_STORE_MEMORY);
    script(&memory, "per_ip", SL_STORE_OK, deny(1, 0, 0));
    cfg.response_status = 503;
    cfg.response_headers = SL_HEADERS_NONE;
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.status, 503);
    ck_assert_str_eq(r->headers, "Retry-After: 1\r\n");
    ck_assert_str_eq(r->body, "{\"error\":\"rate_limited\",\"route\":\"all\",\"limit\":\"per_ip\","
                              "\"retry_after\":1}");
}
END_TEST

START_TEST(delay_is_the_largest)
{
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    add_limit(rt, "a", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "b", 10, 1, SL_STORE_MEMORY);
    struct sl_decision a = allow(10, 0, 1000000), b = allow(10, 0, 1000000);
    a.delay_us = 100000;
    b.delay_us = 250000;
    script(&memory, "a", SL_STORE_OK, a);
    script(&memory, "b", SL_STORE_OK, b);
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_uint_eq(r->v.delay_us, 250000);
    ck_assert_int_eq(r->v.status, 0);
}
END_TEST

START_TEST(shadow_never_rejects_nor_delays)
{
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    rt->shadow = true;
    add_limit(rt, "a", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "b", 10, 1, SL_STORE_MEMORY);
    struct sl_decision a = allow(10, 0, 1000000);
    a.delay_us = 100000;
    script(&memory, "a", SL_STORE_OK, a);
    script(&memory, "b", SL_STORE_OK, deny(10, 1000000, 1000000));
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_SHADOW_LIMITED);
    ck_assert_int_eq(r->v.status, 0);
    ck_assert_uint_eq(r->v.delay_us, 0);
    ck_assert_str_eq(r->headers, "");
    ck_assert_str_eq(r->body, "");
    ck_assert_uint_eq(memory.ncalls, 2);

    memory.script[1].d = allow(10, 5, 1000000);
    r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_uint_eq(r->v.delay_us, 0);
}
END_TEST

/* A shadow limit on an enforced route: asked, but it neither denies, nor delays, nor shows
 * in the headers; the enforced limit beside it still decides. */
START_TEST(shadow_limit_is_invisible_to_clients)
{
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    add_limit(rt, "enforced", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "candidate", 2, 1, SL_STORE_MEMORY)->shadow = true;
    struct sl_decision held = deny(2, 1000000, 500000);
    held.delay_us = 300000;
    script(&memory, "candidate", SL_STORE_OK, held);
    struct result *r = decide("GET", "/");
    ck_assert_uint_eq(memory.ncalls, 2);
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_SHADOW_LIMITED);
    ck_assert_int_eq(r->v.status, 0);
    ck_assert_uint_eq(r->v.delay_us, 0);
    ck_assert_str_eq(r->headers, "RateLimit-Policy: \"enforced\";q=10;w=1\r\n"
                                 "RateLimit: \"enforced\";r=9;t=1\r\n"
                                 "X-RateLimit-Limit: 10\r\n"
                                 "X-RateLimit-Remaining: 9\r\n"
                                 "X-RateLimit-Reset: 1\r\n");

    /* A shadow allowance that asks for a delay delays nothing either. */
    memory.script[0].d = allow(2, 1, 1000000);
    memory.script[0].d.delay_us = 300000;
    r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_uint_eq(r->v.delay_us, 0);

    /* The enforced limit denies: the answer names it, never the shadow one. */
    script(&memory, "enforced", SL_STORE_OK, deny(10, 1000000, 2000000));
    memory.script[0].d = deny(2, 1000000, 9000000);
    r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_int_eq(r->v.status, 429);
    ck_assert_str_eq(r->body,
                     "{\"error\":\"rate_limited\",\"route\":\"all\",\"limit\":\"enforced\","
                     "\"retry_after\":2}");
    ck_assert_ptr_null(strstr(r->headers, "candidate"));
}
END_TEST

/* A shadow limit whose store fails does not turn failure_mode closed into a 503. */
START_TEST(shadow_limit_store_error_changes_nothing)
{
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    add_limit(rt, "enforced", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "candidate", 2, 1, SL_STORE_REDIS)->shadow = true;
    cfg.failure_mode = SL_FAILURE_CLOSED;
    script(&redis, "candidate", SL_STORE_ERR_TIMEOUT, allow(0, 0, 0));
    struct result *r = decide("GET", "/");
    ck_assert_uint_eq(redis.ncalls, 1);
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_int_eq(r->v.status, 0);
}
END_TEST

START_TEST(absent_source_skips_the_limit)
{
    static struct sl_key_source by_key = {SL_KEY_HEADER, "X-Api-Key", 9};
    static struct sl_key_source composite[] = {{SL_KEY_METHOD, NULL, 0}, {SL_KEY_PATH, NULL, 0}};
    struct sl_route *rt = add_route("api", SL_MATCH_PREFIX, "/api");
    struct sl_limit *l = add_limit(rt, "per_key", 10, 1, SL_STORE_MEMORY);
    l->keys = &by_key;
    struct result *r = decide("GET", "/api/x");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_str_eq(r->headers, "");
    ck_assert_uint_eq(memory.ncalls, 0);

    l = add_limit(rt, "per_path", 10, 1, SL_STORE_MEMORY);
    l->keys = composite;
    l->nkeys = 2;
    r = decide("GET", "/api/./x?y");
    ck_assert_uint_eq(memory.ncalls, 1);
    ck_assert_str_eq(memory.keys[0], "3:GET,6:/api/x");
    ck_assert_str_eq(r->headers, "RateLimit-Policy: \"per_path\";q=10;w=1\r\n"
                                 "RateLimit: \"per_path\";r=9;t=1\r\n"
                                 "X-RateLimit-Limit: 10\r\n"
                                 "X-RateLimit-Remaining: 9\r\n"
                                 "X-RateLimit-Reset: 1\r\n");
}
END_TEST

/* A limit with `rates:` by a query parameter: the consumer's rate reaches the store, the
 * headers show it, and unlimited and 0/P are decided without any store. */
START_TEST(consumer_rates_pick_the_quota_and_skip_the_store)
{
    static struct sl_key_source plan = {SL_KEY_QUERY, "plan", 4};
    struct sl_route *rt = add_route("api", SL_MATCH_PREFIX, "/api");
    struct sl_limit *l = add_limit(rt, "per_ip", 10, 1, SL_STORE_MEMORY);
    struct sl_rates *rates = sl_rates_new();
    ck_assert_ptr_nonnull(rates);
    rates->by = plan;
    const struct sl_quota pro = {100, 60000000, 100}, vip = {SL_RATE_UNLIMITED, 0, 0},
                          off = {0, 3600000000ull, 0};
    const struct sl_rates_entry *earlier;
    ck_assert_int_eq(
        sl_rates_add(rates, "pro", 3, (uint32_t)sl_rates_quota_index(rates, &pro), 0, &earlier), 0);
    ck_assert_int_eq(
        sl_rates_add(rates, "vip", 3, (uint32_t)sl_rates_quota_index(rates, &vip), 0, &earlier), 0);
    ck_assert_int_eq(
        sl_rates_add(rates, "off", 3, (uint32_t)sl_rates_quota_index(rates, &off), 5, &earlier), 0);
    l->rates = rates;

    struct result *r = decide("GET", "/api/x?plan=pro");
    ck_assert_uint_eq(memory.ncalls, 1);
    ck_assert_uint_eq(memory.quotas[0].count, 100);
    ck_assert_uint_eq(memory.quotas[0].period_us, 60000000);
    ck_assert_ptr_nonnull(strstr(r->headers, "RateLimit-Policy: \"per_ip\";q=100;w=60\r\n"));

    /* Not listed, and absent: the limit's own rate. */
    decide("GET", "/api/x?plan=gold");
    decide("GET", "/api/x");
    ck_assert_uint_eq(memory.ncalls, 3);
    ck_assert_uint_eq(memory.quotas[1].count, 10);
    ck_assert_uint_eq(memory.quotas[2].count, 10);

    r = decide("GET", "/api/x?plan=vip");
    ck_assert_uint_eq(memory.ncalls, 3);
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_str_eq(r->headers, "");

    r = decide("GET", "/api/x?plan=off");
    ck_assert_uint_eq(memory.ncalls, 3);
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_int_eq(r->v.status, 429);
    ck_assert_ptr_nonnull(strstr(r->headers, "Retry-After: 3600\r\n"));
    ck_assert_ptr_nonnull(strstr(r->headers, "RateLimit-Policy: \"per_ip\";q=0;w=3600\r\n"));
    rates->by = (struct sl_key_source){0};
    sl_rates_free(rates);
    l->rates = NULL;
}
END_TEST

START_TEST(stores_chosen_per_limit)
{
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    add_limit(rt, "local", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "global", 10, 1, SL_STORE_REDIS);
    decide("GET", "/");
    ck_assert_uint_eq(memory.ncalls, 1);
    ck_assert_uint_eq(redis.ncalls, 1);
    ck_assert_str_eq(redis.limits[0]->name, "global");

    /* Without a Redis store every limit lives in memory. */
    sl_engine_free(engine);
    engine = sl_engine_new(NULL, &memory.base, NULL, NULL);
    decide("GET", "/");
    ck_assert_uint_eq(memory.ncalls, 3);
    ck_assert_uint_eq(redis.ncalls, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, outcome_names);
    tcase_add_test(tc, consumer_rates_pick_the_quota_and_skip_the_store);
    tcase_add_test(tc, unmatched_forwarded_without_headers);
    tcase_add_test(tc, exempt_client_never_asks_a_store);
    tcase_add_test(tc, allowed_headers_in_every_mode);
    tcase_add_test(tc, client_ip_key_text);
    tcase_add_test(tc, several_limits_in_configuration_order);
    tcase_add_test(tc, denied_answer);
    tcase_add_test(tc, denied_status_and_minimum_retry_after);
    tcase_add_test(tc, delay_is_the_largest);
    tcase_add_test(tc, shadow_never_rejects_nor_delays);
    tcase_add_test(tc, shadow_limit_is_invisible_to_clients);
    tcase_add_test(tc, shadow_limit_store_error_changes_nothing);
    tcase_add_test(tc, absent_source_skips_the_limit);
    tcase_add_test(tc, stores_chosen_per_limit);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
