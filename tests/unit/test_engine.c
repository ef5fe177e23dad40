/* The limiter engine: verdicts, response headers in every mode, the 429 body, shadow,
 * exempt and unmatched requests, store failures in each failure_mode, and decisions that
 * answer later or re-enter the engine. Stores are fakes scripted per limit. */
#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/engine.h"
#include "sluice/route.h"
#include "support/run_suite.h"

/* ---- a scripted store ---- */

#define MAX_CALLS 32

struct script {
    const char *limit; /* limit name, NULL = free slot */
    enum sl_store_status status;
    struct sl_decision d;
};

struct deferred {
    sl_store_cb cb;
    void *arg;
    enum sl_store_status status;
    struct sl_decision d;
};

struct fake_store {
    struct sl_store base;
    struct script script[8];
    bool async;           /* answer only on fake_flush() */
    bool flush_on_decide; /* answer earlier deferred calls inside decide() first */
    char keys[MAX_CALLS][128];
    const struct sl_limit *limits[MAX_CALLS];
    size_t ncalls;
    struct deferred deferred[MAX_CALLS];
    size_t ndeferred;
};

static void fake_flush(struct fake_store *f)
{
    while (f->ndeferred > 0) {
        struct deferred d = f->deferred[0];
        memmove(f->deferred, f->deferred + 1, --f->ndeferred * sizeof d);
        d.cb(d.arg, d.status == SL_STORE_OK ? &d.d : NULL, d.status);
    }
}

static void fake_decide(struct sl_store *store, const struct sl_limit *lim, const char *key,
                        size_t key_len, sl_store_cb cb, void *arg)
{
    struct fake_store *f = (struct fake_store *)store;
    struct deferred d = {cb,
                         arg,
                         SL_STORE_OK,
                         {.allowed = true,
                          .limit = lim->count,
                          .remaining = lim->count - 1,
                          .reset_us = lim->period_us}};

    ck_assert_uint_lt(f->ncalls, MAX_CALLS);
    ck_assert_uint_lt(key_len, sizeof f->keys[0]);
    memcpy(f->keys[f->ncalls], key, key_len);
    f->keys[f->ncalls][key_len] = '\0';
    f->limits[f->ncalls++] = lim;
    for (size_t i = 0; i < 8 && f->script[i].limit; i++)
        if (strcmp(f->script[i].limit, lim->name) == 0) {
            d.status = f->script[i].status;
            d.d = f->script[i].d;
        }
    if (f->flush_on_decide)
        fake_flush(f);
    if (f->async) {
        f->deferred[f->ndeferred++] = d;
        return;
    }
    cb(arg, d.status == SL_STORE_OK ? &d.d : NULL, d.status);
}

static void fake_free(struct sl_store *store)
{
}

static const struct sl_store_ops fake_ops = {"fake", fake_decide, fake_free};

static void script(struct fake_store *f, const char *limit, enum sl_store_status status,
                   struct sl_decision d)
{
    size_t i = 0;
    while (f->script[i].limit)
        i++;
    f->script[i] = (struct script){limit, status, d};
}

static struct sl_decision allow(uint64_t limit, uint64_t remaining, uint64_t reset_us)
{
    return (struct sl_decision){.allowed = true, limit, remaining, reset_us, 0, 0};
}

static struct sl_decision deny(uint64_t limit, uint64_t reset_us, uint64_t retry_us)
{
    return (struct sl_decision){.allowed = false, limit, 0, reset_us, retry_us, 0};
}

/* ---- configuration built by hand ---- */

static struct fake_store memory, redis;
static struct sl_config cfg;
static struct sl_route routes[4];
static struct sl_limit limits[4][4];
static struct sl_key_source client_ip_key = {SL_KEY_CLIENT_IP, NULL, 0};
static struct sl_cidr cidrs[4];
static struct sl_engine *engine;

static struct sl_route *add_route(const char *name, enum sl_path_match kind, const char *path)
{
    struct sl_route *r = &routes[cfg.nroutes];
    r->name = (char *)name;
    r->index = cfg.nroutes;
    r->path_match = kind;
    r->path = (char *)path;
    r->limits = limits[cfg.nroutes++];
    return r;
}

static struct sl_limit *add_limit(struct sl_route *r, const char *name, uint64_t count,
                                  uint64_t period_s, enum sl_store_kind store)
{
    struct sl_limit *l = &r->limits[r->nlimits++];
    l->name = (char *)name;
    l->route = r;
    l->count = count;
    l->period_us = period_s * 1000000u;
    l->keys = &client_ip_key;
    l->nkeys = 1;
    l->store = store;
    l->index = cfg.nlimits++;
    return l;
}

static void setup(void)
{
    memset(&memory, 0, sizeof memory);
    memset(&redis, 0, sizeof redis);
    memory.base.ops = &fake_ops;
    redis.base.ops = &fake_ops;
    memset(&cfg, 0, sizeof cfg);
    memset(routes, 0, sizeof routes);
    memset(limits, 0, sizeof limits);
    cfg.routes = routes;
    cfg.response_status = 429;
    cfg.response_headers = SL_HEADERS_BOTH;
    cfg.failure_mode = SL_FAILURE_OPEN;
    cfg.exempt.items = cidrs;
    engine = sl_engine_new(NULL, &memory.base, &redis.base, NULL);
    ck_assert_ptr_nonnull(engine);
}

static void teardown(void)
{
    sl_engine_free(engine);
}

/* ---- requests and verdicts ---- */

struct result {
    struct sl_verdict v;
    int calls;
    char headers[1024];
    char body[256];
};

static void on_verdict(void *arg, struct sl_verdict *v)
{
    struct result *r = arg;
    ck_assert_ptr_eq(v, &r->v);
    r->calls++;
    size_t n = evbuffer_get_length(v->headers);
    ck_assert_uint_lt(n, sizeof r->headers);
    evbuffer_remove(v->headers, r->headers, n);
    r->headers[n] = '\0';
    n = evbuffer_get_length(v->body);
    ck_assert_uint_lt(n, sizeof r->body);
    evbuffer_remove(v->body, r->body, n);
    r->body[n] = '\0';
}

static struct sockaddr_in peer_addr;

static void start(struct result *r, const char *method, const char *target,
                  const struct sl_header *hs, size_t nh)
{
    struct sl_request req = {method,
                             strlen(method),
                             target,
                             strlen(target),
                             hs,
                             nh,
                             (const struct sockaddr *)&peer_addr};
    memset(r, 0, sizeof *r);
    r->v.headers = evbuffer_new();
    r->v.body = evbuffer_new();
    sl_engine_decide(engine, &cfg, &req, &r->v, on_verdict, r);
}

static void done(struct result *r)
{
    evbuffer_free(r->v.headers);
    evbuffer_free(r->v.body);
}

/* Decides one request from 192.0.2.1 that every store answers at once. */
static struct result *decide(const char *method, const char *target)
{
    static struct result r;
    static bool used;
    if (used)
        done(&r);
    used = true;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    peer_addr.sin_family = AF_INET;
    start(&r, method, target, NULL, 0);
    ck_assert_int_eq(r.calls, 1);
    return &r;
}

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
    struct sl_request req = {"GET", 3, "/", 1, NULL, 0, (const struct sockaddr *)&peer6};
    struct result r6;
    memset(&r6, 0, sizeof r6);
    r6.v.headers = evbuffer_new();
    r6.v.body = evbuffer_new();
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

static void two_limits_one_failing(void)
{
    struct sl_route *rt = add_route("login", SL_MATCH_ANY, NULL);
    add_limit(rt, "local", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "global", 100, 60, SL_STORE_REDIS);
    script(&redis, "global", SL_STORE_ERR_TIMEOUT, allow(0, 0, 0));
    cfg.response_headers = SL_HEADERS_DRAFT;
}

START_TEST(failure_open_admits)
{
    two_limits_one_failing();
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_STORE_ERROR);
    ck_assert_int_eq(r->v.status, 0);
    /* Only limits that answered are described. */
    ck_assert_str_eq(r->headers, "RateLimit-Policy: \"local\";q=10;w=1\r\n"
                                 "RateLimit: \"local\";r=9;t=1\r\n");
}
END_TEST

START_TEST(failure_closed_answers_503)
{
    two_limits_one_failing();
    cfg.failure_mode = SL_FAILURE_CLOSED;
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_STORE_ERROR);
    ck_assert_int_eq(r->v.status, 503);
    ck_assert_str_eq(r->headers, "Retry-After: 1\r\n");
    ck_assert_str_eq(r->body, "{\"error\":\"store_unavailable\"}");

    /* A denial stands: the answer is 429, whatever the other store did. */
    memory.script[0] = (struct script){"local", SL_STORE_OK, deny(10, 1000000, 1000000)};
    r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_int_eq(r->v.status, 429);
}
END_TEST

START_TEST(failure_local_asks_memory)
{
    two_limits_one_failing();
    cfg.failure_mode = SL_FAILURE_LOCAL;
    script(&memory, "global", SL_STORE_OK, allow(100, 42, 60000000));
    struct result *r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_int_eq(r->v.status, 0);
    ck_assert_uint_eq(redis.ncalls, 1);
    ck_assert_uint_eq(memory.ncalls, 2);
    ck_assert_str_eq(memory.limits[1]->name, "global");
    ck_assert_str_eq(memory.keys[1], redis.keys[0]);
    ck_assert_str_eq(r->headers, "RateLimit-Policy: \"local\";q=10;w=1, \"global\";q=100;w=60\r\n"
                                 "RateLimit: \"local\";r=9;t=1, \"global\";r=42;t=60\r\n");

    memory.script[0].d = deny(100, 60000000, 5000000);
    r = decide("GET", "/");
    ck_assert_int_eq(r->v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_str_eq(r->body, "{\"error\":\"rate_limited\",\"route\":\"login\",\"limit\":"
                              "\"global\",\"retry_after\":5}");
}
END_TEST

START_TEST(failure_local_after_a_late_answer)
{
    two_limits_one_failing();
    cfg.failure_mode = SL_FAILURE_LOCAL;
    redis.async = true;
    struct result r1, r2;
    peer_addr.sin_family = AF_INET;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    start(&r1, "GET", "/", NULL, 0);
    /* A second request overwrites the engine's buffers before the first is answered. */
    inet_pton(AF_INET, "198.51.100.7", &peer_addr.sin_addr);
    start(&r2, "GET", "/", NULL, 0);
    ck_assert_int_eq(r1.calls + r2.calls, 0);
    fake_flush(&redis);
    ck_assert_int_eq(r1.calls, 1);
    ck_assert_int_eq(r2.calls, 1);
    ck_assert_int_eq(r1.v.outcome, SL_OUTCOME_ALLOWED);
    ck_assert_uint_eq(memory.ncalls, 4);
    ck_assert_str_eq(memory.limits[2]->name, "global");
    ck_assert_str_eq(memory.keys[2], "192.0.2.1");
    ck_assert_str_eq(memory.keys[3], "198.51.100.7");
    done(&r1);
    done(&r2);
}
END_TEST

START_TEST(late_answers_finish_once)
{
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    add_limit(rt, "a", 10, 1, SL_STORE_REDIS);
    add_limit(rt, "b", 10, 1, SL_STORE_MEMORY);
    add_limit(rt, "c", 10, 1, SL_STORE_REDIS);
    script(&redis, "c", SL_STORE_OK, deny(10, 1000000, 1000000));
    redis.async = true;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    peer_addr.sin_family = AF_INET;
    struct result r;
    start(&r, "GET", "/", NULL, 0);
    ck_assert_int_eq(r.calls, 0);
    ck_assert_uint_eq(redis.ndeferred, 2);
    fake_flush(&redis);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_int_eq(r.v.outcome, SL_OUTCOME_LIMITED);
    ck_assert_str_eq(r.body, "{\"error\":\"rate_limited\",\"route\":\"all\",\"limit\":\"c\","
                             "\"retry_after\":1}");
    done(&r);
}
END_TEST

/* A verdict callback that starts the next request, as a pipelining connection does. */
static struct result nested_result;
static int nested_started;

static void start_next(void *arg, struct sl_verdict *v)
{
    on_verdict(arg, v);
    if (nested_started++ == 0)
        start(&nested_result, "GET", "/b/nested", NULL, 0);
}

START_TEST(reentrant_decisions)
{
    static struct sl_key_source path_key = {SL_KEY_PATH, NULL, 0};
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    struct sl_limit *l = add_limit(rt, "per_path", 10, 1, SL_STORE_REDIS);
    l->keys = &path_key;
    l = add_limit(rt, "per_path_too", 10, 1, SL_STORE_REDIS);
    l->keys = &path_key;
    redis.async = true;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    peer_addr.sin_family = AF_INET;

    /* Request A waits on Redis. */
    struct result a;
    struct sl_request req = {"GET", 3, "/a/first", 8, NULL, 0, (struct sockaddr *)&peer_addr};
    memset(&a, 0, sizeof a);
    a.v.headers = evbuffer_new();
    a.v.body = evbuffer_new();
    sl_engine_decide(engine, &cfg, &req, &a.v, start_next, &a);
    ck_assert_int_eq(a.calls, 0);

    /* Request B's first decision flushes A, whose callback starts a nested request while B
     * still has a limit to issue: B's second key must still be B's path. */
    redis.flush_on_decide = true;
    struct result b;
    start(&b, "GET", "/a/second", NULL, 0);
    ck_assert_int_eq(a.calls, 1);
    ck_assert_int_eq(nested_started, 1);
    ck_assert_uint_eq(redis.ncalls, 6);
    ck_assert_str_eq(redis.keys[0], "/a/first");
    ck_assert_str_eq(redis.keys[1], "/a/first");
    ck_assert_str_eq(redis.keys[2], "/a/second");
    ck_assert_str_eq(redis.keys[3], "/b/nested");
    ck_assert_str_eq(redis.keys[4], "/b/nested");
    ck_assert_str_eq(redis.keys[5], "/a/second");
    redis.flush_on_decide = false;
    fake_flush(&redis);
    ck_assert_int_eq(b.calls, 1);
    ck_assert_int_eq(nested_result.calls, 1);
    ck_assert_int_eq(b.v.outcome, SL_OUTCOME_ALLOWED);
    done(&a);
    done(&b);
    done(&nested_result);
}
END_TEST

START_TEST(long_keys_grow_the_buffers)
{
    static struct sl_key_source hkey = {SL_KEY_HEADER, "X-Big", 5};
    struct sl_route *rt = add_route("all", SL_MATCH_ANY, NULL);
    struct sl_limit *l = add_limit(rt, "big", 10, 1, SL_STORE_MEMORY);
    l->keys = &hkey;
    char big[100];
    memset(big, 'k', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    struct sl_header hs[] = {{"X-Big", 5, big, strlen(big)}};
    char target[2000] = "/";
    memset(target + 1, 'p', sizeof target - 2);
    target[sizeof target - 1] = '\0';
    struct result r;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    peer_addr.sin_family = AF_INET;
    start(&r, "GET", target, hs, 1);
    ck_assert_int_eq(r.calls, 1);
    ck_assert_str_eq(memory.keys[0], big);
    done(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("engine");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, outcome_names);
    tcase_add_test(tc, unmatched_forwarded_without_headers);
    tcase_add_test(tc, exempt_client_never_asks_a_store);
    tcase_add_test(tc, allowed_headers_in_every_mode);
    tcase_add_test(tc, client_ip_key_text);
    tcase_add_test(tc, several_limits_in_configuration_order);
    tcase_add_test(tc, denied_answer);
    tcase_add_test(tc, denied_status_and_minimum_retry_after);
    tcase_add_test(tc, delay_is_the_largest);
    tcase_add_test(tc, shadow_never_rejects_nor_delays);
    tcase_add_test(tc, absent_source_skips_the_limit);
    tcase_add_test(tc, stores_chosen_per_limit);
    tcase_add_test(tc, failure_open_admits);
    tcase_add_test(tc, failure_closed_answers_503);
    tcase_add_test(tc, failure_local_asks_memory);
    tcase_add_test(tc, failure_local_after_a_late_answer);
    tcase_add_test(tc, late_answers_finish_once);
    tcase_add_test(tc, reentrant_decisions);
    tcase_add_test(tc, long_keys_grow_the_buffers);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
