/* The rate limit service's answers, decided on the memory store at an injected epoch clock:
 * ratelimit's fixed window (windows aligned to the epoch by the unit, duration_until_reset
 * to the window's end, every hit counted), replaces, shadow mode (per limit and global),
 * unlimited, hits_addend at both levels, the descriptor's override, unknown domains, a
 * deeper descriptor, response headers, sluice's other algorithms; then the message: the
 * answer as protobuf-c reads it back, and malformed requests refused. */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envoy/service/ratelimit/v3/rls.pb-c.h"
#include "sluice/rls.h"
#include "sluice/store_memory.h"
#include "support/run_suite.h"

typedef Envoy__Service__Ratelimit__V3__RateLimitRequest Request;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor Descriptor;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor__Entry Entry;
typedef Envoy__Extensions__Common__Ratelimit__V3__RateLimitDescriptor__RateLimitOverride Override;
typedef Envoy__Service__Ratelimit__V3__RateLimitResponse Response;

static uint64_t now_us;
static uint64_t test_clock(void)
{
    return now_us;
}

static const char FILES[] =
    "domain: edge\n"
    "descriptors:\n"
    "  - key: per_minute\n"
    "    rate_limit: {unit: minute, requests_per_unit: 3}\n"
    "  - key: per_hour\n"
    "    rate_limit: {unit: hour, requests_per_unit: 2}\n"
    "  - key: shadow\n"
    "    shadow_mode: true\n"
    "    rate_limit: {unit: minute, requests_per_unit: 1}\n"
    "  - key: free\n"
    "    rate_limit: {unlimited: true}\n"
    "  - key: blocked\n"
    "    rate_limit: {unit: second, requests_per_unit: 0}\n"
    "  - key: bucket\n"
    "    rate_limit: {unit: second, requests_per_unit: 10, algorithm: token_bucket, burst: 2}\n"
    "  - key: nested\n"
    "    descriptors:\n"
    "      - key: leaf\n"
    "        rate_limit: {unit: day, requests_per_unit: 5}\n"
    "  - key: q1\n"
    "    quota_mode: true\n"
    "    rate_limit: {unit: minute, requests_per_unit: 1, name: q1}\n"
    "  - key: q2\n"
    "    quota_mode: true\n"
    "    rate_limit: {unit: minute, requests_per_unit: 1}\n"
    "  - key: q3\n"
    "    rate_limit: {unit: minute, requests_per_unit: 9, replaces: [{name: q1}]}\n"
    "  - key: category\n"
    "    value: account\n"
    "    rate_limit: {unit: minute, requests_per_unit: 5, name: account}\n"
    "  - key: category\n"
    "    value: account_special\n"
    "    rate_limit:\n"
    "      unit: minute\n"
    "      requests_per_unit: 10\n"
    "      replaces: [{name: account}]\n";

static struct sl_config cfg;
static struct sl_store *store;
static struct sl_rls_env env;
static char dir[64];

static void setup(void)
{
    char path[128];
    strcpy(dir, "/tmp/sluice-rls-decide-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    snprintf(path, sizeof path, "%s/edge.yaml", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(FILES, f);
    fclose(f);
    char *errors = NULL;
    memset(&cfg, 0, sizeof cfg);
    cfg.rls.enabled = true;
    cfg.rls.files = sl_rls_config_load(dir, false, &errors);
    ck_assert_msg(cfg.rls.files != NULL, "%s", errors ? errors : "");
    unlink(path);
    rmdir(dir);
    /* An epoch time inside a minute: 1 699 999 990.25 s is 10.25 s past a minute and 790.25 s past
     * an hour. */
    now_us = 1699999990250000ull;
    store = sl_store_memory_new(1000, 1 << 20, test_clock);
    env = (struct sl_rls_env){.store = store, .local = store, .clock_us = test_clock};
}

static void teardown(void)
{
    sl_store_free(store);
    sl_rls_config_free(cfg.rls.files);
}

/* ---- building requests ---- */

struct req_desc {
    const char *entries; /* "k=v,k=v" */
    int64_t hits;        /* -1: no descriptor hits_addend */
    uint32_t override_rpu;
    int override_unit; /* 0: no override */
};

/* The request packed and unpacked again: sl_rls_decide() takes protobuf-c's allocation. */
static Request *make(const char *domain, uint32_t hits, const struct req_desc *ds, size_t n)
{
    Request req = ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_REQUEST__INIT;
    Descriptor d[8], *dp[8];
    Entry e[8][8], *ep[8][8];
    char text[8][128];
    Google__Protobuf__UInt64Value addend[8];
    Override ovr[8];

    req.domain = (char *)domain;
    req.hits_addend = hits;
    req.n_descriptors = n;
    req.descriptors = dp;
    for (size_t i = 0; i < n; i++) {
        d[i] = (Descriptor)ENVOY__EXTENSIONS__COMMON__RATELIMIT__V3__RATE_LIMIT_DESCRIPTOR__INIT;
        dp[i] = &d[i];
        snprintf(text[i], sizeof text[i], "%s", ds[i].entries);
        size_t k = 0;
        for (char *tok = strtok(text[i], ","); tok; tok = strtok(NULL, ",")) {
            e[i][k] =
                (Entry)ENVOY__EXTENSIONS__COMMON__RATELIMIT__V3__RATE_LIMIT_DESCRIPTOR__ENTRY__INIT;
            char *eq = strchr(tok, '=');
            if (eq)
                *eq = '\0';
            e[i][k].key = tok;
            e[i][k].value = eq ? eq + 1 : "";
            ep[i][k] = &e[i][k];
            k++;
        }
        d[i].n_entries = k;
        d[i].entries = ep[i];
        if (ds[i].hits >= 0) {
            addend[i] = (Google__Protobuf__UInt64Value)GOOGLE__PROTOBUF__UINT64_VALUE__INIT;
            addend[i].value = (uint64_t)ds[i].hits;
            d[i].hits_addend = &addend[i];
        }
        if (ds[i].override_unit >= 0 && (ds[i].override_unit || ds[i].override_rpu)) {
            ovr[i] = (Override)
                ENVOY__EXTENSIONS__COMMON__RATELIMIT__V3__RATE_LIMIT_DESCRIPTOR__RATE_LIMIT_OVERRIDE__INIT;
            ovr[i].requests_per_unit = ds[i].override_rpu;
            ovr[i].unit = (Envoy__Type__V3__RateLimitUnit)ds[i].override_unit;
            d[i].limit = &ovr[i];
        }
    }
    size_t len = envoy__service__ratelimit__v3__rate_limit_request__get_packed_size(&req);
    uint8_t *buf = malloc(len + 1);
    ck_assert_ptr_nonnull(buf);
    envoy__service__ratelimit__v3__rate_limit_request__pack(&req, buf);
    Request *out = envoy__service__ratelimit__v3__rate_limit_request__unpack(NULL, len, buf);
    free(buf);
    ck_assert_ptr_nonnull(out);
    return out;
}

/* ---- deciding ---- */

static struct sl_rls_status got[8];
static struct sl_rls_result result;
static int called;

static void decided(void *arg, const struct sl_rls_reply *reply)
{
    const struct sl_rls_result *r = reply->result;
    (void)arg;
    called++;
    ck_assert_int_eq(reply->grpc_status, 0);
    result = *r;
    ck_assert_uint_le(r->nstatuses, 8);
    memcpy(got, r->statuses, r->nstatuses * sizeof *got);
    result.statuses = got;
}

static const struct sl_rls_result *decide_req(Request *req)
{
    int grpc;
    const char *message;
    called = 0;
    ck_assert_int_eq(sl_rls_decide(&env, &cfg, req, decided, NULL, &grpc, &message), 0);
    ck_assert_int_eq(called, 1); /* the memory store answers at once */
    return &result;
}

/* One descriptor, request hits_addend 0 (one hit). */
static const struct sl_rls_status *one(const char *entries)
{
    struct req_desc d = {entries, -1, 0, 0};
    return &decide_req(make("edge", 0, &d, 1))->statuses[0];
}

static void expect(const struct sl_rls_status *s, enum sl_rls_code code, uint32_t limit,
                   uint32_t remaining, uint64_t reset_s)
{
    ck_assert_int_eq(s->code, code);
    ck_assert(s->has_limit);
    ck_assert_uint_eq(s->requests_per_unit, limit);
    ck_assert_uint_eq(s->limit_remaining, remaining);
    ck_assert_uint_eq((s->reset_us + 999999) / 1000000, reset_s);
}

/* Windows aligned to the epoch by the unit (ratelimit: now / divider * divider); the reset is
 * the window's end in whole seconds (divider - now % divider). */
START_TEST(fixed_window_epoch_alignment)
{
    expect(one("per_minute=a"), SL_RLS_OK, 3, 2, 50);
    ck_assert(got[0].whole_seconds);
    ck_assert_int_eq(got[0].unit, SL_RLS_UNIT_MINUTE);
    now_us += 49 * 1000000ull; /* 59.25 s past the minute: the same window */
    expect(one("per_minute=a"), SL_RLS_OK, 3, 1, 1);
    now_us += 750000; /* the next minute starts: a new window from zero */
    expect(one("per_minute=a"), SL_RLS_OK, 3, 2, 60);
    /* An hour window, 840 s into its hour now. */
    expect(one("per_hour=a"), SL_RLS_OK, 2, 1, 2760);
}
END_TEST

/* ratelimit counts every hit with INCRBY: over the limit stays over until the window ends,
 * whatever is asked, and a check alone (hits 0) is over while the count exceeds N. */
START_TEST(hits_keep_counting_over_the_limit)
{
    expect(one("per_hour=b"), SL_RLS_OK, 2, 1, 2810);
    expect(one("per_hour=b"), SL_RLS_OK, 2, 0, 2810);
    expect(one("per_hour=b"), SL_RLS_OVER_LIMIT, 2, 0, 2810);
    ck_assert_int_eq(result.overall, SL_RLS_OVER_LIMIT);
    struct req_desc check = {"per_hour=b", 0, 0, 0};
    decide_req(make("edge", 0, &check, 1));
    expect(&got[0], SL_RLS_OVER_LIMIT, 2, 0, 2810);
    /* Another value is another counter. */
    expect(one("per_hour=c"), SL_RLS_OK, 2, 1, 2810);
    now_us += 2810 * 1000000ull;
    expect(one("per_hour=b"), SL_RLS_OK, 2, 1, 3600);
}
END_TEST

/* A descriptor's hits_addend when present (0: check only), else the request's, 0 meaning 1. */
START_TEST(hits_addend_both_levels)
{
    struct req_desc d = {"per_minute=h", -1, 0, 0};
    decide_req(make("edge", 2, &d, 1));
    expect(&got[0], SL_RLS_OK, 3, 1, 50);
    d.hits = 0;
    decide_req(make("edge", 2, &d, 1));
    expect(&got[0], SL_RLS_OK, 3, 1, 50);
    d.hits = 5; /* the descriptor's wins over the request's */
    decide_req(make("edge", 1, &d, 1));
    expect(&got[0], SL_RLS_OVER_LIMIT, 3, 0, 50);
    /* A cost past N on a fresh key is over at once, and still counted. */
    struct req_desc big = {"per_minute=i", 4, 0, 0};
    decide_req(make("edge", 0, &big, 1));
    expect(&got[0], SL_RLS_OVER_LIMIT, 3, 0, 50);
    big.hits = 0;
    decide_req(make("edge", 0, &big, 1));
    expect(&got[0], SL_RLS_OVER_LIMIT, 3, 0, 50);
}
END_TEST

/* A named limit that another matched limit replaces is neither checked nor counted. */
START_TEST(replaces)
{
    struct req_desc two[2] = {{"category=account", -1, 0, 0},
                              {"category=account_special", -1, 0, 0}};
    for (int i = 0; i < 7; i++)
        decide_req(make("edge", 0, two, 2));
    ck_assert_int_eq(got[0].code, SL_RLS_OK);
    ck_assert(!got[0].has_limit); /* not checked: no limit reported */
    expect(&got[1], SL_RLS_OK, 10, 3, 50);
    /* The replaced limit alone: its counter never moved. */
    expect(one("category=account"), SL_RLS_OK, 5, 4, 50);
}
END_TEST

/* shadow_mode: over the limit is answered OK, yet counted; rls.shadow_mode answers every
 * OVER_LIMIT overall OK and keeps the descriptors' codes (ratelimit's SHADOW_MODE). */
START_TEST(shadow_modes)
{
    expect(one("shadow=x"), SL_RLS_OK, 1, 0, 50);
    expect(one("shadow=x"), SL_RLS_OK, 1, 0, 50);
    ck_assert_int_eq(result.overall, SL_RLS_OK);
    cfg.rls.shadow_mode = true;
    one("per_hour=g");
    one("per_hour=g");
    expect(one("per_hour=g"), SL_RLS_OVER_LIMIT, 2, 0, 2810);
    ck_assert_int_eq(result.overall, SL_RLS_OK);
    cfg.rls.shadow_mode = false;
}
END_TEST

START_TEST(unlimited_unknown_and_deeper)
{
    const struct sl_rls_status *s = one("free=x");
    ck_assert_int_eq(s->code, SL_RLS_OK);
    ck_assert(!s->has_limit);
    ck_assert_uint_eq(s->limit_remaining, 4294967295u);
    s = one("nested=a,leaf=b,deeper=c"); /* deeper than the configuration: nothing */
    ck_assert_int_eq(s->code, SL_RLS_OK);
    ck_assert(!s->has_limit);
    ck_assert_uint_eq(s->limit_remaining, 0);
    expect(one("nested=a,leaf=b"), SL_RLS_OK, 5, 4, 86400 - 1699999990 % 86400);
    struct req_desc d = {"per_minute=a", -1, 0, 0};
    decide_req(make("elsewhere", 0, &d, 1));
    ck_assert_int_eq(result.overall, SL_RLS_OK);
    ck_assert(!got[0].has_limit);
    ck_assert_str_eq(result.domain, "");
}
END_TEST

/* Quota mode counts the checked limits only: a replaced quota-mode limit is not among the
 * quota-mode descriptors, so the one left over its limit makes the call OVER_LIMIT. */
START_TEST(quota_mode_counts_checked_limits)
{
    struct req_desc three[3] = {{"q1=x", -1, 0, 0}, {"q2=x", -1, 0, 0}, {"q3=x", -1, 0, 0}};
    decide_req(make("edge", 0, three, 3));
    ck_assert_int_eq(result.overall, SL_RLS_OK);
    decide_req(make("edge", 0, three, 3));
    ck_assert(!got[0].has_limit);
    ck_assert_int_eq(got[1].code, SL_RLS_OVER_LIMIT);
    ck_assert_int_eq(got[2].code, SL_RLS_OK);
    ck_assert_int_eq(result.overall, SL_RLS_OVER_LIMIT);
}
END_TEST

/* requests_per_unit 0 blocks every hit; a check alone is not over it. */
START_TEST(zero_blocks)
{
    expect(one("blocked=1.2.3.4"), SL_RLS_OVER_LIMIT, 0, 0, 1);
    struct req_desc d = {"blocked=1.2.3.4", 0, 0, 0};
    decide_req(make("edge", 0, &d, 1));
    ck_assert_int_eq(got[0].code, SL_RLS_OK);
}
END_TEST

/* The descriptor's own limit, as ratelimit applies it: whatever the entries, on a known
 * domain, decided by the fixed window; an unknown domain has no limits at all. */
START_TEST(override)
{
    struct req_desc d = {"anything=at_all", -1, 2, SL_RLS_UNIT_SECOND};
    decide_req(make("edge", 0, &d, 1));
    expect(&got[0], SL_RLS_OK, 2, 1, 1);
    ck_assert_int_eq(got[0].unit, SL_RLS_UNIT_SECOND);
    decide_req(make("edge", 0, &d, 1));
    decide_req(make("edge", 0, &d, 1));
    expect(&got[0], SL_RLS_OVER_LIMIT, 2, 0, 1);
    decide_req(make("other", 0, &d, 1));
    ck_assert(!got[0].has_limit);
    /* 7 is WEEK, as ratelimit reads the override's unit. */
    struct req_desc week = {"weekly=1", -1, 5, SL_RLS_UNIT_WEEK};
    decide_req(make("edge", 0, &week, 1));
    expect(&got[0], SL_RLS_OK, 5, 4, 604800 - 1699999990 % 604800);
    ck_assert_int_eq(got[0].unit, SL_RLS_UNIT_WEEK);
    /* A unit the API does not define. */
    d.override_unit = 9;
    int grpc;
    const char *message;
    ck_assert_int_eq(
        sl_rls_decide(&env, &cfg, make("edge", 0, &d, 1), decided, NULL, &grpc, &message), -1);
    ck_assert_int_eq(grpc, SL_RLS_GRPC_INVALID_ARGUMENT);
}
END_TEST

START_TEST(empty_domain_or_descriptors)
{
    int grpc;
    const char *message;
    struct req_desc d = {"per_minute=a", -1, 0, 0};
    ck_assert_int_eq(sl_rls_decide(&env, &cfg, make("", 0, &d, 1), decided, NULL, &grpc, &message),
                     -1);
    ck_assert_int_eq(grpc, SL_RLS_GRPC_UNKNOWN);
    ck_assert_str_eq(message, "rate limit domain must not be empty");
    ck_assert_int_eq(
        sl_rls_decide(&env, &cfg, make("edge", 0, &d, 0), decided, NULL, &grpc, &message), -1);
    ck_assert_str_eq(message, "rate limit descriptor list must not be empty");
}
END_TEST

/* response_headers: the descriptor with the least remaining, or the last over its limit. */
START_TEST(response_headers)
{
    cfg.rls.response_headers = true;
    struct req_desc two[2] = {{"per_minute=r", -1, 0, 0}, {"per_hour=r", -1, 0, 0}};
    decide_req(make("edge", 0, two, 2));
    ck_assert(result.headers);
    ck_assert_uint_eq(result.header_limit, 2);
    ck_assert_uint_eq(result.header_remaining, 1);
    ck_assert_uint_eq(result.header_reset_s, 2810);
    decide_req(make("edge", 0, two, 2));
    decide_req(make("edge", 0, two, 2));
    ck_assert_int_eq(result.overall, SL_RLS_OVER_LIMIT);
    ck_assert_uint_eq(result.header_limit, 2);
    ck_assert_uint_eq(result.header_remaining, 0);
    cfg.rls.response_headers = false;
}
END_TEST

/* sluice's algorithms through their own ops: a token bucket of burst 2 at 10/s. */
START_TEST(other_algorithm)
{
    const struct sl_rls_status *s = one("bucket=k");
    ck_assert_int_eq(s->code, SL_RLS_OK);
    ck_assert(!s->whole_seconds);
    ck_assert_uint_eq(s->limit_remaining, 1);
    one("bucket=k");
    ck_assert_int_eq(one("bucket=k")->code, SL_RLS_OVER_LIMIT);
    now_us += 100000; /* one token back */
    ck_assert_int_eq(one("bucket=k")->code, SL_RLS_OK);
}
END_TEST

/* ---- the message ---- */

static struct sl_rls_reply reply;
static struct evbuffer *reply_body;

static void replied(void *arg, const struct sl_rls_reply *r)
{
    (void)arg;
    called++;
    reply = *r;
    if (r->result)
        ck_assert_int_eq(sl_rls_answer(r->result, reply_body), 0);
}

static void serve(const void *data, size_t len)
{
    struct evbuffer *in = evbuffer_new();
    evbuffer_add(in, data, len);
    called = 0;
    evbuffer_drain(reply_body, evbuffer_get_length(reply_body));
    sl_rls_serve(&env, &cfg, in, replied, NULL);
    ck_assert_int_eq(called, 1);
    evbuffer_free(in);
}

START_TEST(answer_round_trip)
{
    reply_body = evbuffer_new();
    cfg.rls.response_headers = true;
    Request *req = make("edge", 0, (struct req_desc[]){{"per_minute=m", -1, 0, 0}}, 1);
    size_t len = envoy__service__ratelimit__v3__rate_limit_request__get_packed_size(req);
    uint8_t buf[512];
    buf[0] = 0;
    buf[1] = buf[2] = buf[3] = 0;
    buf[4] = (uint8_t)len;
    envoy__service__ratelimit__v3__rate_limit_request__pack(req, buf + 5);
    envoy__service__ratelimit__v3__rate_limit_request__free_unpacked(req, NULL);
    serve(buf, 5 + len);
    ck_assert_int_eq(reply.grpc_status, 0);
    size_t out_len = evbuffer_get_length(reply_body);
    uint8_t *out = evbuffer_pullup(reply_body, -1);
    ck_assert_uint_ge(out_len, 5);
    ck_assert_uint_eq(out[0], 0);
    ck_assert_uint_eq((size_t)out[4] | (size_t)out[3] << 8, out_len - 5);
    Response *resp =
        envoy__service__ratelimit__v3__rate_limit_response__unpack(NULL, out_len - 5, out + 5);
    ck_assert_ptr_nonnull(resp);
    ck_assert_int_eq(resp->overall_code, 1);
    ck_assert_uint_eq(resp->n_statuses, 1);
    ck_assert_uint_eq(resp->statuses[0]->limit_remaining, 2);
    ck_assert_uint_eq(resp->statuses[0]->current_limit->requests_per_unit, 3);
    ck_assert_int_eq(resp->statuses[0]->current_limit->unit, 2);
    ck_assert_int_eq(resp->statuses[0]->duration_until_reset->seconds, 50);
    ck_assert_uint_eq(resp->n_response_headers_to_add, 3);
    ck_assert_str_eq(resp->response_headers_to_add[0]->key, "x-ratelimit-limit");
    ck_assert_str_eq(resp->response_headers_to_add[0]->value, "3");
    ck_assert_str_eq(resp->response_headers_to_add[1]->value, "2");
    ck_assert_str_eq(resp->response_headers_to_add[2]->value, "50");
    envoy__service__ratelimit__v3__rate_limit_response__free_unpacked(resp, NULL);

    /* Malformed: short prefix, lengths that disagree, bytes that are no message, too big. */
    serve("\0\0\0", 3);
    ck_assert_int_eq(reply.grpc_status, SL_RLS_GRPC_INVALID_ARGUMENT);
    serve("\0\0\0\0\x09\x0a", 6);
    ck_assert_int_eq(reply.grpc_status, SL_RLS_GRPC_INVALID_ARGUMENT);
    serve("\0\0\0\0\x02\xff\xff", 7);
    ck_assert_int_eq(reply.grpc_status, SL_RLS_GRPC_INVALID_ARGUMENT);
    serve("\0\0\x20\0\0", 5);
    ck_assert_int_eq(reply.grpc_status, SL_RLS_GRPC_RESOURCE_EXHAUSTED);
    serve("\x01\0\0\0\0", 5);
    ck_assert_int_eq(reply.grpc_status, SL_RLS_GRPC_UNIMPLEMENTED);
    cfg.rls.response_headers = false;
    evbuffer_free(reply_body);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("rls_decide");
    TCase *tc = tcase_create("decide");

    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, fixed_window_epoch_alignment);
    tcase_add_test(tc, hits_keep_counting_over_the_limit);
    tcase_add_test(tc, hits_addend_both_levels);
    tcase_add_test(tc, replaces);
    tcase_add_test(tc, shadow_modes);
    tcase_add_test(tc, unlimited_unknown_and_deeper);
    tcase_add_test(tc, zero_blocks);
    tcase_add_test(tc, quota_mode_counts_checked_limits);
    tcase_add_test(tc, override);
    tcase_add_test(tc, empty_domain_or_descriptors);
    tcase_add_test(tc, response_headers);
    tcase_add_test(tc, other_algorithm);
    tcase_add_test(tc, answer_round_trip);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(suite());
}
