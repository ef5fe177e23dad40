/* CIDR parsing and matching, IPv4 and IPv6, with IPv4-mapped IPv6 folded to IPv4. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/cidr.h"
#include "support/run_suite.h"

static struct sl_ip ip(const char *text)
{
    struct sl_ip out;
    ck_assert_msg(sl_ip_parse(text, strlen(text), &out) == 0, "cannot parse %s", text);
    return out;
}

static struct sl_cidr cidr(const char *text)
{
    struct sl_cidr out;
    ck_assert_msg(sl_cidr_parse(text, &out) == 0, "cannot parse %s", text);
    return out;
}

START_TEST(parse_v4_and_v6)
{
    struct sl_cidr c = cidr("10.0.0.0/8");
    ck_assert_int_eq(c.net.family, AF_INET);
    ck_assert_uint_eq(c.prefix, 8);
    ck_assert_uint_eq(c.net.addr[0], 10);

    c = cidr("192.168.1.7");
    ck_assert_uint_eq(c.prefix, 32);

    c = cidr("2001:db8::/32");
    ck_assert_int_eq(c.net.family, AF_INET6);
    ck_assert_uint_eq(c.prefix, 32);

    c = cidr("::1");
    ck_assert_int_eq(c.net.family, AF_INET6);
    ck_assert_uint_eq(c.prefix, 128);

    c = cidr("0.0.0.0/0");
    ck_assert_uint_eq(c.prefix, 0);
}
END_TEST

START_TEST(parse_rejects)
{
    struct sl_cidr c;
    const char *bad[] = {"",
                         "10.0.0.1/8",
                         "10.0.0.0/33",
                         "::1/129",
                         "10.0.0.0/",
                         "10.0.0.0/a",
                         "10.0.0.0/08",
                         "10.0.0/8",
                         "fe80::1%eth0",
                         "1.2.3.4/-1",
                         "host.example",
                         "10.0.0.0/8/8",
                         "2001:db8::1/32",
                         " 10.0.0.0/8"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(sl_cidr_parse(bad[i], &c) == -1, "accepted \"%s\"", bad[i]);
}
END_TEST

START_TEST(contains_v4)
{
    struct sl_cidr c = cidr("10.1.0.0/16");
    ck_assert(sl_cidr_contains(&c, &(struct sl_ip){0}) == false);
    struct sl_ip in = ip("10.1.255.3"), out = ip("10.2.0.1");
    ck_assert(sl_cidr_contains(&c, &in));
    ck_assert(!sl_cidr_contains(&c, &out));

    c = cidr("192.168.1.128/25");
    in = ip("192.168.1.200");
    out = ip("192.168.1.127");
    ck_assert(sl_cidr_contains(&c, &in));
    ck_assert(!sl_cidr_contains(&c, &out));

    c = cidr("0.0.0.0/0");
    ck_assert(sl_cidr_contains(&c, &out));
    struct sl_ip v6 = ip("2001:db8::1");
    ck_assert(!sl_cidr_contains(&c, &v6));
}
END_TEST

START_TEST(contains_v6)
{
    struct sl_cidr c = cidr("2001:db8::/32");
    struct sl_ip in = ip("2001:db8:ffff::1"), out = ip("2001:db9::1");
    ck_assert(sl_cidr_contains(&c, &in));
    ck_assert(!sl_cidr_contains(&c, &out));
    struct sl_ip v4 = ip("32.1.13.184");
    ck_assert(!sl_cidr_contains(&c, &v4));

    c = cidr("::/0");
    ck_assert(sl_cidr_contains(&c, &out));
    ck_assert(sl_cidr_contains(&c, &v4)); /* ::/0 also holds the IPv4-mapped space */
}
END_TEST

START_TEST(mapped_v4)
{
    struct sl_ip m = ip("::ffff:10.1.2.3");
    ck_assert_int_eq(m.family, AF_INET);
    ck_assert_uint_eq(m.addr[0], 10);
    ck_assert_uint_eq(m.addr[3], 3);

    struct sl_cidr c = cidr("10.0.0.0/8");
    ck_assert(sl_cidr_contains(&c, &m));

    c = cidr("::ffff:10.0.0.0/104");
    ck_assert_int_eq(c.net.family, AF_INET);
    ck_assert_uint_eq(c.prefix, 8);
    struct sl_ip plain = ip("10.200.0.1");
    ck_assert(sl_cidr_contains(&c, &plain));

    struct sockaddr_in6 sin6 = {.sin6_family = AF_INET6};
    inet_pton(AF_INET6, "::ffff:192.0.2.1", &sin6.sin6_addr);
    struct sl_ip from;
    ck_assert_int_eq(sl_ip_from_sockaddr((struct sockaddr *)&sin6, &from), 0);
    ck_assert_int_eq(from.family, AF_INET);
    char buf[64];
    ck_assert_uint_eq(sl_ip_format(&from, buf, sizeof buf), strlen("192.0.2.1"));
    ck_assert_str_eq(buf, "192.0.2.1");
}
END_TEST

START_TEST(ip_parse_and_format)
{
    struct sl_ip a;
    char buf[64];
    ck_assert_int_eq(sl_ip_parse("10.0.0.1, 10.0.0.2", 8, &a), 0); /* length-bounded */
    ck_assert_uint_eq(sl_ip_format(&a, buf, sizeof buf), 8);
    ck_assert_str_eq(buf, "10.0.0.1");
    ck_assert_int_eq(sl_ip_parse("2001:DB8::1", 11, &a), 0);
    sl_ip_format(&a, buf, sizeof buf);
    ck_assert_str_eq(buf, "2001:db8::1");
    ck_assert_int_eq(sl_ip_parse("", 0, &a), -1);
    ck_assert_int_eq(sl_ip_parse("10.0.0.256", 10, &a), -1);
    ck_assert_int_eq(sl_ip_parse("unknown", 7, &a), -1);
    ck_assert_int_eq(sl_ip_parse("1.2.3.4\0", 8, &a), -1);

    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(0x7f000001)};
    ck_assert_int_eq(sl_ip_from_sockaddr((struct sockaddr *)&sin, &a), 0);
    ck_assert_int_eq(a.family, AF_INET);
    struct sockaddr sun = {.sa_family = AF_UNIX};
    ck_assert_int_eq(sl_ip_from_sockaddr(&sun, &a), -1);
}
END_TEST

START_TEST(list_contains_and_deinit)
{
    struct sl_cidr_list list = {calloc(2, sizeof(struct sl_cidr)), 2};
    list.items[0] = cidr("10.0.0.0/8");
    list.items[1] = cidr("::1");
    struct sl_ip a = ip("10.9.9.9"), b = ip("::1"), c = ip("11.0.0.1");
    ck_assert(sl_cidr_list_contains(&list, &a));
    ck_assert(sl_cidr_list_contains(&list, &b));
    ck_assert(!sl_cidr_list_contains(&list, &c));
    sl_cidr_list_deinit(&list);
    ck_assert_ptr_null(list.items);
    ck_assert_uint_eq(list.count, 0);
    ck_assert(!sl_cidr_list_contains(&list, &a));
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cidr");
    TCase *tc = tcase_create("cidr");
    tcase_add_test(tc, parse_v4_and_v6);
    tcase_add_test(tc, parse_rejects);
    tcase_add_test(tc, contains_v4);
    tcase_add_test(tc, contains_v6);
    tcase_add_test(tc, mapped_v4);
    tcase_add_test(tc, ip_parse_and_format);
    tcase_add_test(tc, list_contains_and_deinit);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    return run_suite(suite());
}
