/* A ShouldRateLimit call's request body, as a client sends it on the rate limit service's
 * listener: the bytes go whole to sl_rls_serve() (the 5-byte gRPC prefix, protobuf-c's
 * decoding, the lookup in the files, the decisions on a memory store, the answer's
 * encoding). Whatever the bytes, exactly one answer comes back, before the call returns
 * (the memory store answers at once): an error status with a message and no body, or
 * status 0 with one gRPC message that protobuf-c reads back as a RateLimitResponse with a
 * code for each descriptor of the request. The first byte of the input, taken off, chooses
 * response_headers and rls.shadow_mode, so both paths of the answer are reached. */
#include <event2/buffer.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "envoy/service/ratelimit/v3/rls.pb-c.h"
#include "sluice/rls.h"
#include "sluice/store_memory.h"

/* Every kind of entry the lookup has: key and value, key alone, wildcards (shared and not),
 * nested levels, unlimited, shadow, zero, names and replaces, and sluice's algorithms. */
static const char FILES[] =
    "domain: d\n"
    "descriptors:\n"
    "  - key: a\n"
    "    rate_limit: {unit: second, requests_per_unit: 3, name: n1}\n"
    "  - key: a\n"
    "    value: v\n"
    "    rate_limit: {unit: minute, requests_per_unit: 2, replaces: [{name: n1}]}\n"
    "  - key: w\n"
    "    value: x*y\n"
    "    share_threshold: true\n"
    "    rate_limit: {unit: hour, requests_per_unit: 5}\n"
    "  - key: p\n"
    "    value: pre*\n"
    "    rate_limit: {unit: day, requests_per_unit: 1, algorithm: sliding_window}\n"
    "  - key: n\n"
    "    descriptors:\n"
    "      - key: m\n"
    "        shadow_mode: true\n"
    "        rate_limit: {unit: week, requests_per_unit: 1}\n"
    "      - key: q\n"
    "        quota_mode: true\n"
    "        rate_limit: {unit: month, requests_per_unit: 2, algorithm: token_bucket, burst: 3}\n"
    "  - key: u\n"
    "    rate_limit: {unlimited: true}\n"
    "  - key: z\n"
    "    rate_limit: {unit: year, requests_per_unit: 0}\n"
    "  - key: l\n"
    "    rate_limit: {unit: second, requests_per_unit: 4, algorithm: leaky_bucket, burst: 1}\n"
    "  - key: c\n"
    "    rate_limit: {unit: minute, requests_per_unit: 9, algorithm: sliding_window_counter}\n";

static struct sl_config cfg;
static struct sl_store *store;
static struct sl_rls_env env;
static uint64_t now_us = 1700000000000000ull;
static int answers;

static uint64_t clock_us(void)
{
    return now_us;
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_rls: %s\n", what);
        abort();
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    char dir[] = "/tmp/fuzz-rls-XXXXXX", path[64], *errors = NULL;

    (void)argc, (void)argv;
    check(mkdtemp(dir) != NULL, "mkdtemp");
    snprintf(path, sizeof path, "%s/d.yaml", dir);
    FILE *f = fopen(path, "w");
    check(f && fputs(FILES, f) >= 0 && fclose(f) == 0, "writing the files");
    cfg.rls.enabled = true;
    cfg.rls.files = sl_rls_config_load(dir, false, &errors);
    check(cfg.rls.files != NULL, errors ? errors : "loading the files");
    unlink(path);
    rmdir(dir);
    /* Small bounds: keys come and go as the fuzzer invents them. */
    store = sl_store_memory_new(4096, 1 << 20, clock_us);
    check(store != NULL, "the store");
    env = (struct sl_rls_env){.store = store, .local = store, .clock_us = clock_us};
    return 0;
}

/* The descriptors of the request the body carries, or -1 when it carries none. */
static long descriptors_of(const uint8_t *data, size_t size)
{
    if (size < 5 || data[0] != 0)
        return -1;
    size_t len = (size_t)data[1] << 24 | (size_t)data[2] << 16 | (size_t)data[3] << 8 | data[4];
    if (len != size - 5)
        return -1;
    Envoy__Service__Ratelimit__V3__RateLimitRequest *req =
        envoy__service__ratelimit__v3__rate_limit_request__unpack(NULL, len, data + 5);
    if (!req)
        return -1;
    long n = (long)req->n_descriptors;
    envoy__service__ratelimit__v3__rate_limit_request__free_unpacked(req, NULL);
    return n;
}

static long expected;

static void replied(void *arg, const struct sl_rls_reply *reply)
{
    (void)arg;
    answers++;
    if (reply->grpc_status != SL_RLS_GRPC_OK) {
        check(reply->result == NULL, "an error with decisions");
        check(reply->grpc_message && *reply->grpc_message, "an error without a message");
        return;
    }
    check(reply->result != NULL, "an answer without decisions");
    struct evbuffer *body = evbuffer_new();
    check(body && sl_rls_answer(reply->result, body) == 0, "the answer's message");
    size_t len = evbuffer_get_length(body);
    uint8_t *p = evbuffer_pullup(body, -1);
    check(len >= 5 && p[0] == 0, "an answer without its gRPC prefix");
    size_t announced = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
    check(announced == len - 5, "an answer whose prefix disagrees with its length");
    Envoy__Service__Ratelimit__V3__RateLimitResponse *resp =
        envoy__service__ratelimit__v3__rate_limit_response__unpack(NULL, len - 5, p + 5);
    check(resp != NULL, "an answer protobuf-c cannot read");
    check(expected >= 0 && resp->n_statuses == (size_t)expected, "a status per descriptor");
    check(resp->overall_code == 1 || resp->overall_code == 2, "an overall code");
    for (size_t i = 0; i < resp->n_statuses; i++)
        check(resp->statuses[i]->code == 1 || resp->statuses[i]->code == 2, "a status code");
    check(resp->n_response_headers_to_add == 0 || resp->n_response_headers_to_add == 3,
          "the x-ratelimit headers");
    envoy__service__ratelimit__v3__rate_limit_response__free_unpacked(resp, NULL);
    evbuffer_free(body);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    cfg.rls.response_headers = data[0] & 1;
    cfg.rls.shadow_mode = data[0] & 2;
    now_us += (uint64_t)(data[0] >> 2) * 250000; /* windows begin and end as inputs go by */
    data++, size--;

    struct evbuffer *body = evbuffer_new();
    check(body && evbuffer_add(body, data, size) == 0, "the body");
    expected = descriptors_of(data, size);
    answers = 0;
    sl_rls_serve(&env, &cfg, body, replied, NULL);
    check(answers == 1, "not exactly one answer");
    evbuffer_free(body);
    return 0;
}
