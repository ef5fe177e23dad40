/* Path and host normalisation: every spelling of a path reaches the same route. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/route.h"
#include "support/run_suite.h"

/* Normalises `target` and returns the result, or "<none>" when there is no path. */
static const char *norm(const char *target)
{
    static char out[512];
    ssize_t n = sl_path_normalize(NULL, target, strlen(target), out, sizeof out);
    if (n < 0)
        return "<none>";
    ck_assert_uint_eq(strlen(out), (size_t)n);
    return out;
}

START_TEST(bypass_spellings_collapse)
{
    ck_assert_str_eq(norm("/api/login"), "/api/login");
    ck_assert_str_eq(norm("/api//login"), "/api/login");
    ck_assert_str_eq(norm("/api/./login"), "/api/login");
    ck_assert_str_eq(norm("/api/x/../login"), "/api/login");
    ck_assert_str_eq(norm("/api/%6Cogin"), "/api/login");
    ck_assert_str_eq(norm("/api/%6cogin"), "/api/login");
    ck_assert_str_eq(norm("//api///./x/y/../../login"), "/api/login");
    ck_assert_str_eq(norm("/api/%2E%2E/api/login"), "/api/login");
    ck_assert_str_eq(norm("/%61%70%69/login"), "/api/login");
}
END_TEST

START_TEST(reserved_encodings_kept)
{
    /* %2F is data, not a separator: decoding it would change which resource is named. */
    ck_assert_str_eq(norm("/api%2Flogin"), "/api%2Flogin");
    ck_assert_str_eq(norm("/api%2flogin"), "/api%2Flogin");
    ck_assert_str_eq(norm("/a%3fb"), "/a%3Fb");
    ck_assert_str_eq(norm("/a%20b"), "/a%20b");
    ck_assert_str_eq(norm("/a%00b"), "/a%00b");
    /* Not an escape: kept as sent. */
    ck_assert_str_eq(norm("/a%zzb"), "/a%zzb");
    ck_assert_str_eq(norm("/a%4"), "/a%4");
    ck_assert_str_eq(norm("/a%"), "/a%");
}
END_TEST

START_TEST(unreserved_decoded)
{
    ck_assert_str_eq(norm("/%41%5a%30%39%2D%2E%5F%7E"), "/AZ09-._~");
    ck_assert_str_eq(norm("/caf%C3%A9"), "/caf%C3%A9");
    ck_assert_str_eq(norm("/caf%c3%a9"), "/caf%C3%A9");
}
END_TEST

START_TEST(dots_never_above_root)
{
    ck_assert_str_eq(norm("/../../login"), "/login");
    ck_assert_str_eq(norm("/.."), "/");
    ck_assert_str_eq(norm("/a/../.."), "/");
    ck_assert_str_eq(norm("/."), "/");
    ck_assert_str_eq(norm("/a/b/.."), "/a/");
    ck_assert_str_eq(norm("/a/b/."), "/a/b/");
    ck_assert_str_eq(norm("/a/..b/c"), "/a/..b/c");
    ck_assert_str_eq(norm("/a/.b"), "/a/.b");
    ck_assert_str_eq(norm("/a//../b"), "/b");
}
END_TEST

START_TEST(trailing_slash_and_root)
{
    ck_assert_str_eq(norm("/"), "/");
    ck_assert_str_eq(norm("//"), "/");
    ck_assert_str_eq(norm("/api/"), "/api/");
    ck_assert_str_eq(norm("/api//"), "/api/");
}
END_TEST

START_TEST(query_and_fragment_dropped)
{
    ck_assert_str_eq(norm("/api/login?user=a/../b"), "/api/login");
    ck_assert_str_eq(norm("/api/login?"), "/api/login");
    ck_assert_str_eq(norm("/?x"), "/");
    ck_assert_str_eq(norm("/a#frag"), "/a");
}
END_TEST

START_TEST(absolute_form)
{
    ck_assert_str_eq(norm("http://example.com/api//login?x=1"), "/api/login");
    ck_assert_str_eq(norm("http://example.com"), "/");
    ck_assert_str_eq(norm("https://example.com?x"), "/");
    ck_assert_str_eq(norm("HTTP://user@h:8080/a"), "/a");
}
END_TEST

START_TEST(not_a_path)
{
    ck_assert_str_eq(norm("*"), "<none>");
    ck_assert_str_eq(norm(""), "<none>");
    ck_assert_str_eq(norm("example.com:443"), "<none>");
    ck_assert_str_eq(norm("api/login"), "<none>");
    ck_assert_int_eq(sl_path_normalize(NULL, "/a\0b", 4, (char[16]){0}, 16), -1);
}
END_TEST

START_TEST(small_buffer_refused)
{
    char out[16];
    const char *t = "/0123456789abcdef";
    ck_assert_int_eq(sl_path_normalize(NULL, t, strlen(t), out, sizeof out), -1);
    ck_assert_int_eq(sl_path_normalize(NULL, t, 15, out, sizeof out), -1);
    ck_assert_int_eq(sl_path_normalize(NULL, t, 14, out, sizeof out), 14);
}
END_TEST

static const char *host(const char *authority)
{
    static char out[256];
    ssize_t n = sl_host_normalize(authority, strlen(authority), out, sizeof out);
    return n < 0 ? "<none>" : out;
}

START_TEST(hosts)
{
    ck_assert_str_eq(host("API.Example.COM"), "api.example.com");
    ck_assert_str_eq(host("api.example.com:8080"), "api.example.com");
    ck_assert_str_eq(host("api.example.com."), "api.example.com");
    ck_assert_str_eq(host("[::1]:8080"), "[::1]");
    ck_assert_str_eq(host("[2001:DB8::1]"), "[2001:db8::1]");
    ck_assert_str_eq(host("user:pw@Host:1"), "host");
    ck_assert_str_eq(host(":8080"), "<none>");
    ck_assert_str_eq(host("[::1"), "<none>");
}
END_TEST

START_TEST(authority_source)
{
    struct sl_header hs[] = {{"Host", 4, "b.example", 9}};
    struct sl_request req = {"GET", 3, "/x", 2, hs, 1, NULL, NULL, 0};
    const char *a;
    size_t n;

    ck_assert(sl_request_authority(&req, &a, &n));
    ck_assert_int_eq((int)n, 9);
    ck_assert(memcmp(a, "b.example", 9) == 0);
    /* RFC 9112 3.2.2: an absolute-form target's authority wins over Host. */
    req.target = "http://a.example:81/x";
    req.target_len = strlen(req.target);
    ck_assert(sl_request_authority(&req, &a, &n));
    ck_assert(n == 12 && memcmp(a, "a.example:81", 12) == 0);
    req.target = "/x";
    req.target_len = 2;
    req.nheaders = 0;
    ck_assert(!sl_request_authority(&req, &a, &n));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("normalize");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, bypass_spellings_collapse);
    tcase_add_test(tc, reserved_encodings_kept);
    tcase_add_test(tc, unreserved_decoded);
    tcase_add_test(tc, dots_never_above_root);
    tcase_add_test(tc, trailing_slash_and_root);
    tcase_add_test(tc, query_and_fragment_dropped);
    tcase_add_test(tc, absolute_form);
    tcase_add_test(tc, not_a_path);
    tcase_add_test(tc, small_buffer_refused);
    tcase_add_test(tc, hosts);
    tcase_add_test(tc, authority_source);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
