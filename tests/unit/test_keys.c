/* Key extraction: each source, absent sources, and composite keys that never collide. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/route.h"
#include "support/run_suite.h"

static struct sl_route route = {.name = "login"};

static struct sl_key_source src(enum sl_key_kind kind, const char *name)
{
    return (struct sl_key_source){kind, (char *)name, name ? strlen(name) : 0};
}

static struct sl_header hdr(const char *name, const char *value)
{
    return (struct sl_header){name, strlen(name), value, strlen(value)};
}

static struct sl_request request(const char *method, const char *target, const struct sl_header *hs,
                                 size_t nh)
{
    return (struct sl_request){method, strlen(method), target, strlen(target), hs, nh, NULL, NULL, 0};
}

static struct sl_key_ctx context(const struct sl_request *req)
{
    return (struct sl_key_ctx){.req = req,
                               .route = &route,
                               .client = "192.0.2.7",
                               .client_len = 9,
                               .path = "/api/login",
                               .path_len = 10,
                               .host = "api.example.com",
                               .host_len = 15};
}

/* The key of a limit with sources `keys`, as a string, or "<absent>". */
static const char *key_of(const struct sl_key_ctx *ctx, struct sl_key_source *keys, size_t n)
{
    static char buf[512];
    struct sl_limit lim = {.name = "l", .keys = keys, .nkeys = n, .route = &route};
    ssize_t len = sl_key_build(&lim, ctx, buf, sizeof buf - 1);
    if (len < 0)
        return "<absent>";
    ck_assert_uint_lt((size_t)len, sizeof buf);
    buf[len] = '\0';
    return buf;
}

static const char *key1(const struct sl_key_ctx *ctx, enum sl_key_kind kind, const char *name)
{
    struct sl_key_source k = src(kind, name);
    return key_of(ctx, &k, 1);
}

START_TEST(simple_sources)
{
    struct sl_request req = request("POST", "/api//login?x=1", NULL, 0);
    struct sl_key_ctx ctx = context(&req);
    ck_assert_str_eq(key1(&ctx, SL_KEY_CLIENT_IP, NULL), "192.0.2.7");
    ck_assert_str_eq(key1(&ctx, SL_KEY_METHOD, NULL), "POST");
    ck_assert_str_eq(key1(&ctx, SL_KEY_PATH, NULL), "/api/login");
    ck_assert_str_eq(key1(&ctx, SL_KEY_HOST, NULL), "api.example.com");
    ck_assert_str_eq(key1(&ctx, SL_KEY_ROUTE, NULL), "login");
}
END_TEST

START_TEST(tls_client_subject)
{
    struct sl_request req = request("GET", "/", NULL, 0);
    struct sl_key_ctx ctx = context(&req);
    ck_assert_str_eq(key1(&ctx, SL_KEY_TLS_CLIENT_SUBJECT, NULL), "<absent>");
    req.tls_subject = "CN=client one,O=Example";
    req.tls_subject_len = strlen(req.tls_subject);
    ck_assert_str_eq(key1(&ctx, SL_KEY_TLS_CLIENT_SUBJECT, NULL), "CN=client one,O=Example");
}
END_TEST

START_TEST(header_first_case_insensitive)
{
    struct sl_header hs[] = {hdr("Accept", "*/*"), hdr("x-api-key", "k1"), hdr("X-API-KEY", "k2"),
                             hdr("X-Empty", "")};
    struct sl_request req = request("GET", "/", hs, 4);
    struct sl_key_ctx ctx = context(&req);
    ck_assert_str_eq(key1(&ctx, SL_KEY_HEADER, "X-Api-Key"), "k1");
    ck_assert_str_eq(key1(&ctx, SL_KEY_HEADER, "X-Empty"), "");
    ck_assert_str_eq(key1(&ctx, SL_KEY_HEADER, "X-Missing"), "<absent>");
    ck_assert_str_eq(key1(&ctx, SL_KEY_HEADER, "X-Api-Ke"), "<absent>");
}
END_TEST

START_TEST(query_parameters)
{
    struct sl_request req =
        request("GET", "/p?a=1&key=abc&key=second&flag&e=&x%5Fy=z#frag=no", NULL, 0);
    struct sl_key_ctx ctx = context(&req);
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "key"), "abc");
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "a"), "1");
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "flag"), "");
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "e"), "");
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "x_y"), "z");
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "frag"), "<absent>");
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "ke"), "<absent>");
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "missing"), "<absent>");

    struct sl_request noq = request("GET", "/p", NULL, 0);
    ctx = context(&noq);
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "key"), "<absent>");
    struct sl_request emptyq = request("GET", "/p?", NULL, 0);
    ctx = context(&emptyq);
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "key"), "<absent>");
}
END_TEST

START_TEST(query_values_decoded_as_the_application_sees_them)
{
    /* "abc", "%61bc" and "a%62c" are one API key to the application: one bucket here. */
    const char *targets[] = {"/p?key=abc", "/p?key=%61bc", "/p?k%65y=a%62c", "/p?x=1&key=ab%63"};
    for (size_t i = 0; i < 4; i++) {
        struct sl_request req = request("GET", targets[i], NULL, 0);
        struct sl_key_ctx ctx = context(&req);
        ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "key"), "abc");
    }
    struct sl_request req = request("GET", "/p?q=a+b%2Bc%zz", NULL, 0);
    struct sl_key_ctx ctx = context(&req);
    ck_assert_str_eq(key1(&ctx, SL_KEY_QUERY, "q"), "a b+c%zz");
}
END_TEST

START_TEST(cookies)
{
    struct sl_header hs[] = {hdr("Cookie", "theme=dark; session=s1;lang=en"),
                             hdr("cookie", "session=s2; sid=x ; quoted=\"v\"")};
    struct sl_request req = request("GET", "/", hs, 2);
    struct sl_key_ctx ctx = context(&req);
    ck_assert_str_eq(key1(&ctx, SL_KEY_COOKIE, "session"), "s1");
    ck_assert_str_eq(key1(&ctx, SL_KEY_COOKIE, "lang"), "en");
    ck_assert_str_eq(key1(&ctx, SL_KEY_COOKIE, "sid"), "x");
    ck_assert_str_eq(key1(&ctx, SL_KEY_COOKIE, "quoted"), "\"v\"");
    ck_assert_str_eq(key1(&ctx, SL_KEY_COOKIE, "Session"), "<absent>");
    ck_assert_str_eq(key1(&ctx, SL_KEY_COOKIE, "sess"), "<absent>");
    ck_assert_str_eq(key1(&ctx, SL_KEY_COOKIE, "dark"), "<absent>");
}
END_TEST

START_TEST(absent_path_and_host)
{
    struct sl_request req = request("OPTIONS", "*", NULL, 0);
    struct sl_key_ctx ctx = context(&req);
    ctx.path = NULL;
    ctx.host = NULL;
    ck_assert_str_eq(key1(&ctx, SL_KEY_PATH, NULL), "<absent>");
    ck_assert_str_eq(key1(&ctx, SL_KEY_HOST, NULL), "<absent>");
}
END_TEST

START_TEST(composite_keys)
{
    struct sl_header hs[] = {hdr("X-Api-Key", "k1")};
    struct sl_request req = request("POST", "/", hs, 1);
    struct sl_key_ctx ctx = context(&req);
    struct sl_key_source keys[] = {src(SL_KEY_HEADER, "X-Api-Key"), src(SL_KEY_METHOD, NULL)};
    ck_assert_str_eq(key_of(&ctx, keys, 2), "2:k1,4:POST");

    /* One absent source and the whole limit does not apply. */
    struct sl_key_source with_cookie[] = {src(SL_KEY_CLIENT_IP, NULL), src(SL_KEY_COOKIE, "s")};
    ck_assert_str_eq(key_of(&ctx, with_cookie, 2), "<absent>");
}
END_TEST

START_TEST(composite_keys_never_collide)
{
    struct sl_key_source keys[] = {src(SL_KEY_HEADER, "A"), src(SL_KEY_HEADER, "B")};
    const char *pairs[][2] = {{"a|b", "c"}, {"a", "b|c"},    {"a,b", "c"},    {"a", "b,c"},
                              {"1:a", "b"}, {"1:a,1:b", ""}, {"", "1:a,1:b"}, {"a,1:b", ""}};
    char seen[8][64];
    for (size_t i = 0; i < 8; i++) {
        struct sl_header hs[] = {hdr("A", pairs[i][0]), hdr("B", pairs[i][1])};
        struct sl_request req = request("GET", "/", hs, 2);
        struct sl_key_ctx ctx = context(&req);
        strcpy(seen[i], key_of(&ctx, keys, 2));
        for (size_t j = 0; j < i; j++)
            ck_assert_str_ne(seen[i], seen[j]);
    }
}
END_TEST

START_TEST(small_buffer_reports_needed_size)
{
    struct sl_header hs[] = {hdr("X-Long", "0123456789abcdefghij")};
    struct sl_request req = request("GET", "/", hs, 1);
    struct sl_key_ctx ctx = context(&req);
    struct sl_key_source keys[] = {src(SL_KEY_HEADER, "X-Long"), src(SL_KEY_QUERY, "q")};
    struct sl_limit lim = {.name = "l", .keys = keys, .nkeys = 1, .route = &route};
    char buf[8] = {0};
    ck_assert_int_eq(sl_key_build(&lim, &ctx, buf, sizeof buf), 20);
    ck_assert(memcmp(buf, "01234567", 8) == 0);
    ck_assert_int_eq(sl_key_build(&lim, &ctx, NULL, 0), 20);
    lim.nkeys = 2; /* the absent query wins over the short buffer */
    ck_assert_int_eq(sl_key_build(&lim, &ctx, buf, sizeof buf), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, simple_sources);
    tcase_add_test(tc, tls_client_subject);
    tcase_add_test(tc, header_first_case_insensitive);
    tcase_add_test(tc, query_parameters);
    tcase_add_test(tc, query_values_decoded_as_the_application_sees_them);
    tcase_add_test(tc, cookies);
    tcase_add_test(tc, absent_path_and_host);
    tcase_add_test(tc, composite_keys);
    tcase_add_test(tc, composite_keys_never_collide);
    tcase_add_test(tc, small_buffer_reports_needed_size);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
