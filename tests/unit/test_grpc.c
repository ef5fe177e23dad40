/* gRPC in sluice's own answers: the content types that make a request gRPC, the status
 * mapping, grpc-message's percent-encoding and the trailers-only fields. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/http/exchange.h"
#include "../../src/http/grpc.h"
#include "sluice/text.h"
#include "support/run_suite.h"

static bool ctype(const char *v)
{
    return sl_grpc_content_type(v, strlen(v));
}

START_TEST(content_types)
{
    ck_assert(ctype("application/grpc"));
    ck_assert(ctype("application/grpc+proto"));
    ck_assert(ctype("application/grpc+json"));
    ck_assert(ctype("application/grpc;charset=utf-8"));
    ck_assert(ctype("application/grpc ; x=1"));
    ck_assert(ctype("Application/GRPC+Proto"));
    ck_assert(ctype("APPLICATION/GRPC"));

    ck_assert(!ctype("application/grpc-web"));
    ck_assert(!ctype("application/grpc-web+proto"));
    ck_assert(!ctype("application/grpc-web-text"));
    ck_assert(!ctype("application/grpcx"));
    ck_assert(!ctype("application/grpc +proto"));
    ck_assert(!ctype("application/json"));
    ck_assert(!ctype("application/grp"));
    ck_assert(!ctype(""));
    ck_assert(!ctype(" application/grpc"));
}
END_TEST

START_TEST(status_mapping)
{
    ck_assert_int_eq(sl_grpc_status_of(502), 14);
    ck_assert_int_eq(sl_grpc_status_of(503), 14);
    ck_assert_int_eq(sl_grpc_status_of(504), 4);
    ck_assert_int_eq(sl_grpc_status_of(408), 4);
    ck_assert_int_eq(sl_grpc_status_of(413), 8);
    ck_assert_int_eq(sl_grpc_status_of(431), 8);
    ck_assert_int_eq(sl_grpc_status_of(429), 8);
    ck_assert_int_eq(sl_grpc_status_of(405), 12);
    ck_assert_int_eq(sl_grpc_status_of(501), 12);
    ck_assert_int_eq(sl_grpc_status_of(400), 13);
    ck_assert_int_eq(sl_grpc_status_of(418), 2);
    ck_assert_int_eq(sl_grpc_status_of(505), 2);
}
END_TEST

/* What `tb` holds as a NUL-terminated string the caller frees (tb.data has no NUL of its
 * own for a string copy to stop at); frees `tb`. */
static char *take_string(struct sl_textbuf *tb)
{
    char *out = malloc(tb->len + 1);
    ck_assert_ptr_nonnull(out);
    if (tb->len)
        memcpy(out, tb->data, tb->len);
    out[tb->len] = '\0';
    sl_textbuf_free(tb);
    return out;
}

/* `s` encoded, as a NUL-terminated string the caller frees. */
static char *encoded(const char *s, size_t n)
{
    struct sl_textbuf tb = {0};
    struct sl_text t;

    sl_text_init_textbuf(&t, &tb);
    sl_grpc_percent_encode(&t, s, n);
    sl_text_flush(&t);
    return take_string(&tb);
}

START_TEST(percent_encoding)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"", ""},
        {"plain words, \"quoted\" {json}: ~!", "plain words, \"quoted\" {json}: ~!"},
        {"100%", "100%25"},
        {"%%", "%25%25"},
        {"caf\xc3\xa9", "caf%C3%A9"},
        {"a\tb\r\nc", "a%09b%0D%0Ac"},
        {"\x7f\x1f ", "%7F%1F "},
        {"\xff", "%FF"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = encoded(cases[i].in, strlen(cases[i].in));
        ck_assert_str_eq(got, cases[i].out);
        free(got);
    }
    /* A NUL byte is a byte like another. */
    char *got = encoded("a\0b", 3);
    ck_assert_str_eq(got, "a%00b");
    free(got);

    /* Longer than the text's room: every byte kept, in order. */
    size_t n = 3 * SL_TEXT_ROOM;
    char *big = malloc(n);
    for (size_t i = 0; i < n; i++)
        big[i] = i % 3 == 2 ? '\n' : 'x';
    got = encoded(big, n);
    ck_assert_uint_eq(strlen(got), n / 3 * 5);
    ck_assert_int_eq(memcmp(got, "xx%0Axx%0A", 10), 0);
    ck_assert_int_eq(memcmp(got + strlen(got) - 5, "xx%0A", 5), 0);
    free(big);
    free(got);
}
END_TEST

static const struct sl_textbuf *headers;

static char *answer(const struct sl_exchange *x, int status, const char *msg)
{
    struct sl_textbuf tb = {0};
    struct sl_text t;

    sl_text_init_textbuf(&t, &tb);
    struct sl_textbuf body = {(char *)msg, msg ? strlen(msg) : 0, 0};
    sl_grpc_answer(&t, x, status, headers, msg ? &body : NULL);
    sl_text_flush(&t);
    return take_string(&tb);
}

START_TEST(trailers_only_fields)
{
    struct sl_config cfg = {.response_status = 429, .response_grpc_status = 8};
    struct sl_exchange x = {.cfg = &cfg};
    char *got;

    /* A limit's denial: response.grpc_status, the JSON body as the message, the verdict's
     * lines after. */
    static const char lines[] = "RateLimit: \"l\";r=0;t=3\r\nRetry-After: 3\r\n";
    const struct sl_textbuf verdict_lines = {(char *)lines, sizeof lines - 1, 0};
    x.has_verdict = true;
    x.verdict.outcome = SL_OUTCOME_LIMITED;
    x.verdict.status = 429;
    headers = &verdict_lines;
    got = answer(&x, 429, "{\"error\":\"rate_limited\",\"route\":\"a b\"}");
    ck_assert_str_eq(got, "content-type: application/grpc\r\n"
                          "grpc-status: 8\r\n"
                          "grpc-message: {\"error\":\"rate_limited\",\"route\":\"a b\"}\r\n"
                          "RateLimit: \"l\";r=0;t=3\r\nRetry-After: 3\r\n");
    free(got);
    headers = NULL;
    cfg.response_grpc_status = 14;
    got = answer(&x, 429, "{}");
    ck_assert_ptr_nonnull(strstr(got, "grpc-status: 14\r\n"));
    free(got);

    /* response.status 503 for denials: a denial still, not the store's 503. */
    x.verdict.status = 503;
    got = answer(&x, 503, NULL);
    ck_assert_ptr_nonnull(strstr(got, "grpc-status: 14\r\n"));
    cfg.response_grpc_status = 8;
    free(got);
    got = answer(&x, 503, NULL);
    ck_assert_ptr_nonnull(strstr(got, "grpc-status: 8\r\n"));
    free(got);

    /* failure_mode closed: UNAVAILABLE whatever response.grpc_status says. */
    x.verdict.outcome = SL_OUTCOME_STORE_ERROR;
    got = answer(&x, 503, "{\"error\":\"store_unavailable\"}");
    ck_assert_str_eq(got, "content-type: application/grpc\r\n"
                          "grpc-status: 14\r\n"
                          "grpc-message: {\"error\":\"store_unavailable\"}\r\n");
    free(got);

    /* An admitted request's own errors, and one refused before any limit. */
    x.verdict.outcome = SL_OUTCOME_ALLOWED;
    x.verdict.status = 0;
    got = answer(&x, 504, NULL);
    ck_assert_str_eq(got, "content-type: application/grpc\r\n"
                          "grpc-status: 4\r\n"
                          "grpc-message: {\"error\":\"gateway_timeout\"}\r\n");
    free(got);
    x.has_verdict = false;
    got = answer(&x, 431, "");
    ck_assert_str_eq(got, "content-type: application/grpc\r\n"
                          "grpc-status: 8\r\n"
                          "grpc-message: {\"error\":\"headers_too_large\"}\r\n");
    free(got);
    got = answer(&x, 501, "gRPC needs 100% h2c\n");
    ck_assert_str_eq(got, "content-type: application/grpc\r\n"
                          "grpc-status: 12\r\n"
                          "grpc-message: gRPC needs 100%25 h2c%0A\r\n");
    free(got);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("grpc");
    TCase *tc = tcase_create("grpc");
    tcase_add_test(tc, content_types);
    tcase_add_test(tc, status_mapping);
    tcase_add_test(tc, percent_encoding);
    tcase_add_test(tc, trailers_only_fields);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
