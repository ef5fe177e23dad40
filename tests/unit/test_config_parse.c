/* Durations, sizes, rates, socket addresses and ${VAR} expansion. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "sluice/config_parse.h"
#include "support/run_suite.h"

START_TEST(duration_units)
{
    uint64_t ms;
    ck_assert_int_eq(sl_parse_duration_ms("250ms", &ms), 0);
    ck_assert_uint_eq(ms, 250);
    ck_assert_int_eq(sl_parse_duration_ms("2s", &ms), 0);
    ck_assert_uint_eq(ms, 2000);
    ck_assert_int_eq(sl_parse_duration_ms("5m", &ms), 0);
    ck_assert_uint_eq(ms, 300000);
    ck_assert_int_eq(sl_parse_duration_ms("1h", &ms), 0);
    ck_assert_uint_eq(ms, 3600000);
    ck_assert_int_eq(sl_parse_duration_ms("1d", &ms), 0);
    ck_assert_uint_eq(ms, 86400000);
    ck_assert_int_eq(sl_parse_duration_ms("0", &ms), 0);
    ck_assert_uint_eq(ms, 0);
}
END_TEST

START_TEST(duration_rejects)
{
    uint64_t ms = 7;
    const char *bad[] = {"",
                         "s",
                         "10",
                         "10x",
                         "1.5s",
                         "-1s",
                         " 1s",
                         "1s ",
                         "1 s",
                         "2S",
                         "99999999999999999999s",
                         "18446744073709551615d",
                         "1sm"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(sl_parse_duration_ms(bad[i], &ms) == -1, "accepted \"%s\"", bad[i]);
    ck_assert_uint_eq(ms, 7);
}
END_TEST

START_TEST(size_units)
{
    uint64_t n;
    ck_assert_int_eq(sl_parse_size("512", &n), 0);
    ck_assert_uint_eq(n, 512);
    ck_assert_int_eq(sl_parse_size("16k", &n), 0);
    ck_assert_uint_eq(n, 16384);
    ck_assert_int_eq(sl_parse_size("1m", &n), 0);
    ck_assert_uint_eq(n, 1048576);
    ck_assert_int_eq(sl_parse_size("1g", &n), 0);
    ck_assert_uint_eq(n, 1073741824);
    ck_assert_int_eq(sl_parse_size("2K", &n), 0);
    ck_assert_uint_eq(n, 2048);
    ck_assert_int_eq(sl_parse_size("0", &n), 0);
    ck_assert_uint_eq(n, 0);
}
END_TEST

START_TEST(size_rejects)
{
    uint64_t n = 3;
    const char *bad[] = {
        "", "k", "16kb", "1t", "-1", "1.5k", "16 k", "17179869184g", "18446744073709551616"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(sl_parse_size(bad[i], &n) == -1, "accepted \"%s\"", bad[i]);
    ck_assert_uint_eq(n, 3);
}
END_TEST

START_TEST(rate_forms)
{
    uint64_t count, period;
    ck_assert_int_eq(sl_parse_rate("100/s", &count, &period), 0);
    ck_assert_uint_eq(count, 100);
    ck_assert_uint_eq(period, 1000000);
    ck_assert_int_eq(sl_parse_rate("5/1m", &count, &period), 0);
    ck_assert_uint_eq(count, 5);
    ck_assert_uint_eq(period, 60000000);
    ck_assert_int_eq(sl_parse_rate("1000/h", &count, &period), 0);
    ck_assert_uint_eq(period, 3600000000ULL);
    ck_assert_int_eq(sl_parse_rate("20/10s", &count, &period), 0);
    ck_assert_uint_eq(count, 20);
    ck_assert_uint_eq(period, 10000000);
    ck_assert_int_eq(sl_parse_rate("10/250ms", &count, &period), 0);
    ck_assert_uint_eq(period, 250000);
    ck_assert_int_eq(sl_parse_rate("1/d", &count, &period), 0);
    ck_assert_uint_eq(period, 86400000000ULL);
}
END_TEST

START_TEST(rate_unit_words)
{
    uint64_t count, period;
    ck_assert_int_eq(sl_parse_rate("100/second", &count, &period), 0);
    ck_assert_uint_eq(count, 100);
    ck_assert_uint_eq(period, 1000000ULL);
    ck_assert_int_eq(sl_parse_rate("5/minute", &count, &period), 0);
    ck_assert_uint_eq(period, 60000000ULL);
    ck_assert_int_eq(sl_parse_rate("1000/hour", &count, &period), 0);
    ck_assert_uint_eq(period, 3600000000ULL);
    ck_assert_int_eq(sl_parse_rate("10/day", &count, &period), 0);
    ck_assert_uint_eq(period, 86400000000ULL);
    ck_assert_int_eq(sl_parse_rate("20/10seconds", &count, &period), 0);
    ck_assert_uint_eq(period, 10000000ULL);
    ck_assert_int_eq(sl_parse_rate("3/2days", &count, &period), 0);
    ck_assert_uint_eq(period, 2 * 86400000000ULL);
}
END_TEST

START_TEST(rate_rejects_zero_overflow_and_junk)
{
    uint64_t count = 1, period = 1;
    const char *bad[] = {"0/s",
                         "5/0s",
                         "5/0m",
                         "fast",
                         "5",
                         "5/",
                         "/s",
                         "5/x",
                         "5/1",
                         "5s",
                         "-1/s",
                         "5/ s",
                         "5/1.5s",
                         "18446744073709551616/s",
                         "1/999999999999d",
                         "5/s ",
                         "5/sec",
                         "5/minutes2",
                         "5/Minute",
                         "5/hourss",
                         "5/ minute"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(sl_parse_rate(bad[i], &count, &period) == -1, "accepted \"%s\"", bad[i]);
    ck_assert_uint_eq(count, 1);
    ck_assert_uint_eq(period, 1);
}
END_TEST

START_TEST(sockaddr_v4_localhost_and_wildcard)
{
    struct sl_sockaddr a;
    ck_assert_int_eq(sl_parse_sockaddr("127.0.0.1:8080", &a), 0);
    struct sockaddr_in *sin = (struct sockaddr_in *)&a.ss;
    ck_assert_int_eq(sin->sin_family, AF_INET);
    ck_assert_int_eq(ntohs(sin->sin_port), 8080);
    ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    ck_assert_int_eq(a.len, sizeof *sin);
    ck_assert_str_eq(a.text, "127.0.0.1:8080");
    sl_sockaddr_deinit(&a);
    ck_assert_ptr_null(a.text);

    ck_assert_int_eq(sl_parse_sockaddr("localhost:3000", &a), 0);
    ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    ck_assert_str_eq(a.text, "localhost:3000");
    sl_sockaddr_deinit(&a);

    ck_assert_int_eq(sl_parse_sockaddr("*:80", &a), 0);
    ck_assert_uint_eq(sin->sin_addr.s_addr, 0);
    ck_assert_int_eq(ntohs(sin->sin_port), 80);
    sl_sockaddr_deinit(&a);
}
END_TEST

START_TEST(sockaddr_v6)
{
    struct sl_sockaddr a;
    ck_assert_int_eq(sl_parse_sockaddr("[::1]:9901", &a), 0);
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a.ss;
    ck_assert_int_eq(sin6->sin6_family, AF_INET6);
    ck_assert_int_eq(ntohs(sin6->sin6_port), 9901);
    ck_assert(IN6_IS_ADDR_LOOPBACK(&sin6->sin6_addr));
    ck_assert_int_eq(a.len, sizeof *sin6);
    sl_sockaddr_deinit(&a);
}
END_TEST

START_TEST(sockaddr_unix)
{
    struct sl_sockaddr a;
    ck_assert_int_eq(sl_parse_sockaddr("unix:/run/app.sock", &a), 0);
    struct sockaddr_un *sun = (struct sockaddr_un *)&a.ss;
    ck_assert_int_eq(sun->sun_family, AF_UNIX);
    ck_assert_str_eq(sun->sun_path, "/run/app.sock");
    ck_assert_int_eq(a.len, offsetof(struct sockaddr_un, sun_path) + strlen("/run/app.sock") + 1);
    ck_assert_str_eq(a.text, "unix:/run/app.sock");
    sl_sockaddr_deinit(&a);

    char longpath[200] = "unix:/";
    memset(longpath + 6, 'x', 150);
    longpath[156] = '\0';
    ck_assert_int_eq(sl_parse_sockaddr(longpath, &a), -1);
    ck_assert_ptr_null(a.text);
}
END_TEST

START_TEST(sockaddr_rejects)
{
    struct sl_sockaddr a;
    const char *bad[] = {"",
                         "8080",
                         "127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:0",
                         "127.0.0.1:65536",
                         "example.com:80",
                         "::1:80",
                         "[::1]",
                         "[::1]80",
                         "[127.0.0.1]:80",
                         "1.2.3:80",
                         "unix:",
                         "127.0.0.1:80x",
                         "[::1:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(sl_parse_sockaddr(bad[i], &a) == -1, "accepted \"%s\"", bad[i]);
        ck_assert_ptr_null(a.text);
    }
}
END_TEST

START_TEST(expand_plain_and_set)
{
    char *out;
    setenv("SL_TEST_HOST", "10.1.2.3", 1);
    ck_assert_int_eq(sl_expand_env("no variables", &out), 0);
    ck_assert_str_eq(out, "no variables");
    free(out);
    ck_assert_int_eq(sl_expand_env("http://${SL_TEST_HOST}:80/${SL_TEST_HOST}", &out), 0);
    ck_assert_str_eq(out, "http://10.1.2.3:80/10.1.2.3");
    free(out);
    ck_assert_int_eq(sl_expand_env("", &out), 0);
    ck_assert_str_eq(out, "");
    free(out);
    ck_assert_int_eq(sl_expand_env("cost $5 and $$ and $${HOME}", &out), 0);
    ck_assert_str_eq(out, "cost $5 and $$ and ${HOME}");
    free(out);
}
END_TEST

START_TEST(expand_defaults)
{
    char *out;
    unsetenv("SL_TEST_UNSET");
    setenv("SL_TEST_EMPTY", "", 1);
    setenv("SL_TEST_SET", "x", 1);
    ck_assert_int_eq(sl_expand_env("${SL_TEST_UNSET:-127.0.0.1:8080}", &out), 0);
    ck_assert_str_eq(out, "127.0.0.1:8080");
    free(out);
    ck_assert_int_eq(sl_expand_env("[${SL_TEST_EMPTY:-dflt}]", &out), 0);
    ck_assert_str_eq(out, "[dflt]");
    free(out);
    ck_assert_int_eq(sl_expand_env("${SL_TEST_SET:-dflt}", &out), 0);
    ck_assert_str_eq(out, "x");
    free(out);
    ck_assert_int_eq(sl_expand_env("a${SL_TEST_UNSET:-}b", &out), 0);
    ck_assert_str_eq(out, "ab");
    free(out);
    ck_assert_int_eq(sl_expand_env("${SL_TEST_EMPTY}", &out), 0);
    ck_assert_str_eq(out, "");
    free(out);
}
END_TEST

START_TEST(expand_errors)
{
    char *out;
    unsetenv("SL_TEST_UNSET");
    ck_assert_int_eq(sl_expand_env("x${SL_TEST_UNSET}y", &out), -1);
    ck_assert_str_eq(out, "environment variable SL_TEST_UNSET is not set and has no default");
    free(out);
    ck_assert_int_eq(sl_expand_env("${SL_TEST_UNSET", &out), -1);
    ck_assert_str_eq(out, "unterminated \"${\" in \"${SL_TEST_UNSET\"; expected \"}\"");
    free(out);
    ck_assert_int_eq(sl_expand_env("${}", &out), -1);
    ck_assert_str_eq(out, "expected \"${NAME}\" or \"${NAME:-default}\" with NAME of letters, "
                          "digits and \"_\", got \"${}\"");
    free(out);
    ck_assert_int_eq(sl_expand_env("${1A}", &out), -1);
    free(out);
    ck_assert_int_eq(sl_expand_env("${A B}", &out), -1);
    free(out);
    ck_assert_int_eq(sl_expand_env("${A:+x}", &out), -1);
    free(out);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("config_parse");
    TCase *tc = tcase_create("parse");
    tcase_add_test(tc, duration_units);
    tcase_add_test(tc, duration_rejects);
    tcase_add_test(tc, size_units);
    tcase_add_test(tc, size_rejects);
    tcase_add_test(tc, rate_forms);
    tcase_add_test(tc, rate_unit_words);
    tcase_add_test(tc, rate_rejects_zero_overflow_and_junk);
    tcase_add_test(tc, sockaddr_v4_localhost_and_wildcard);
    tcase_add_test(tc, sockaddr_v6);
    tcase_add_test(tc, sockaddr_unix);
    tcase_add_test(tc, sockaddr_rejects);
    suite_add_tcase(s, tc);
    tc = tcase_create("expand");
    tcase_add_test(tc, expand_plain_and_set);
    tcase_add_test(tc, expand_defaults);
    tcase_add_test(tc, expand_errors);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(suite());
}
