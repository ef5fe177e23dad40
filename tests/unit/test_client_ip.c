/* The client address: peer, trusted X-Forwarded-For hops, IPv6 and malformed entries. */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "sluice/route.h"
#include "support/run_suite.h"

static struct sl_cidr items[8];
static struct sl_cidr_list trusted = {items, 0};
static struct sockaddr_storage peer_ss;

static void trust(const char *cidr)
{
    ck_assert_int_eq(sl_cidr_parse(cidr, &items[trusted.count++]), 0);
}

static const struct sockaddr *peer(const char *addr)
{
    memset(&peer_ss, 0, sizeof peer_ss);
    if (strchr(addr, ':')) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&peer_ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(40000);
        ck_assert_int_eq(inet_pton(AF_INET6, addr, &s6->sin6_addr), 1);
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&peer_ss;
        s4->sin_family = AF_INET;
        s4->sin_port = htons(40000);
        ck_assert_int_eq(inet_pton(AF_INET, addr, &s4->sin_addr), 1);
    }
    return (const struct sockaddr *)&peer_ss;
}

static const struct sockaddr *unix_peer(void)
{
    memset(&peer_ss, 0, sizeof peer_ss);
    ((struct sockaddr_un *)&peer_ss)->sun_family = AF_UNIX;
    return (const struct sockaddr *)&peer_ss;
}

static struct sl_header xff(const char *value)
{
    return (struct sl_header){"X-Forwarded-For", 15, value, strlen(value)};
}

/* The client address as text, or "-" when there is none. */
static const char *client(const struct sockaddr *sa, const struct sl_header *hs, size_t nh)
{
    static char buf[64];
    struct sl_request req = {"GET", 3, "/", 1, hs, nh, sa, NULL, 0};
    struct sl_ip ip;
    if (sl_client_ip(&trusted, &req, &ip) < 0) {
        ck_assert_int_eq(ip.family, 0);
        return "-";
    }
    sl_ip_format(&ip, buf, sizeof buf);
    return buf;
}

static void setup(void)
{
    trusted.count = 0;
}

START_TEST(peer_without_trust)
{
    struct sl_header hs[] = {xff("203.0.113.9")};
    ck_assert_str_eq(client(peer("192.0.2.1"), NULL, 0), "192.0.2.1");
    /* An X-Forwarded-For from an untrusted peer is ignored. */
    ck_assert_str_eq(client(peer("192.0.2.1"), hs, 1), "192.0.2.1");
    trust("10.0.0.0/8");
    ck_assert_str_eq(client(peer("192.0.2.1"), hs, 1), "192.0.2.1");
}
END_TEST

START_TEST(trusted_peer_one_hop)
{
    trust("10.0.0.0/8");
    struct sl_header hs[] = {xff("203.0.113.9")};
    ck_assert_str_eq(client(peer("10.1.2.3"), hs, 1), "203.0.113.9");
    /* A trusted peer that forwarded nothing: the peer itself. */
    ck_assert_str_eq(client(peer("10.1.2.3"), NULL, 0), "10.1.2.3");
}
END_TEST

START_TEST(right_to_left_over_trusted_hops)
{
    trust("10.0.0.0/8");
    trust("192.168.0.0/16");
    /* The client made up "1.1.1.1"; the proxies appended the rest. */
    struct sl_header hs[] = {xff("1.1.1.1, 203.0.113.9, 192.168.1.1,10.0.0.5")};
    ck_assert_str_eq(client(peer("10.1.2.3"), hs, 1), "203.0.113.9");
}
END_TEST

START_TEST(several_headers_in_order)
{
    trust("10.0.0.0/8");
    struct sl_header hs[] = {xff("1.1.1.1"),
                             {"Accept", 6, "*/*", 3},
                             {"x-forwarded-for", 15, "198.51.100.4, 10.0.0.9", 22}};
    ck_assert_str_eq(client(peer("10.1.2.3"), hs, 3), "198.51.100.4");
    struct sl_header hs2[] = {xff("198.51.100.4"), xff("10.0.0.7, 10.0.0.9")};
    ck_assert_str_eq(client(peer("10.1.2.3"), hs2, 2), "198.51.100.4");
}
END_TEST

START_TEST(all_trusted_gives_leftmost)
{
    trust("10.0.0.0/8");
    struct sl_header hs[] = {xff("10.0.0.1, 10.0.0.2"), xff("10.0.0.3")};
    ck_assert_str_eq(client(peer("10.1.2.3"), hs, 2), "10.0.0.1");
}
END_TEST

START_TEST(empty_elements_skipped)
{
    trust("10.0.0.0/8");
    struct sl_header hs[] = {xff(" , 203.0.113.9 ,, 10.0.0.1 ,")};
    ck_assert_str_eq(client(peer("10.1.2.3"), hs, 1), "203.0.113.9");
}
END_TEST

START_TEST(malformed_entry_falls_back_to_peer)
{
    trust("10.0.0.0/8");
    struct sl_header bad[] = {xff("203.0.113.9, unknown")};
    ck_assert_str_eq(client(peer("10.1.2.3"), bad, 1), "10.1.2.3");
    struct sl_header bad2[] = {xff("203.0.113.9, 10.0.0.1, 300.1.1.1")};
    ck_assert_str_eq(client(peer("10.1.2.3"), bad2, 1), "10.1.2.3");
    /* Beyond the first untrusted address nothing is read, malformed or not. */
    struct sl_header left[] = {xff("garbage, 203.0.113.9")};
    ck_assert_str_eq(client(peer("10.1.2.3"), left, 1), "203.0.113.9");
    struct sl_header port[] = {xff("203.0.113.9:x")};
    ck_assert_str_eq(client(peer("10.1.2.3"), port, 1), "10.1.2.3");
}
END_TEST

START_TEST(ports_and_brackets_accepted)
{
    trust("10.0.0.0/8");
    struct sl_header v4[] = {xff("203.0.113.9:4711")};
    ck_assert_str_eq(client(peer("10.1.2.3"), v4, 1), "203.0.113.9");
    struct sl_header v6[] = {xff("[2001:db8::1]:4711")};
    ck_assert_str_eq(client(peer("10.1.2.3"), v6, 1), "2001:db8::1");
    struct sl_header v6b[] = {xff("[2001:db8::2]")};
    ck_assert_str_eq(client(peer("10.1.2.3"), v6b, 1), "2001:db8::2");
}
END_TEST

START_TEST(ipv6)
{
    trust("fd00::/8");
    struct sl_header hs[] = {xff("2001:DB8:0:0::7, fd00::1")};
    ck_assert_str_eq(client(peer("fd00::5"), hs, 1), "2001:db8::7");
    ck_assert_str_eq(client(peer("2001:db8::99"), hs, 1), "2001:db8::99");
    /* An IPv4-mapped peer is its IPv4 address, trusted as such. */
    trust("10.0.0.0/8");
    struct sl_header v4[] = {xff("198.51.100.4")};
    ck_assert_str_eq(client(peer("::ffff:10.0.0.1"), v4, 1), "198.51.100.4");
}
END_TEST

START_TEST(unix_socket_peer)
{
    struct sl_header hs[] = {xff("203.0.113.9")};
    ck_assert_str_eq(client(unix_peer(), NULL, 0), "-");
    ck_assert_str_eq(client(NULL, NULL, 0), "-");
    ck_assert_str_eq(client(unix_peer(), hs, 1), "-");
    /* Trusting loopback trusts local sockets too. */
    trust("127.0.0.1/32");
    ck_assert_str_eq(client(unix_peer(), hs, 1), "203.0.113.9");
    ck_assert_str_eq(client(unix_peer(), NULL, 0), "-");
}
END_TEST

/* The trace names the rule that chose and the hop, 1 being the rightmost entry. */
static struct sl_client_trace trace_of(const struct sockaddr *sa, const struct sl_header *hs,
                                       size_t nh)
{
    struct sl_request req = {"GET", 3, "/", 1, hs, nh, sa, NULL, 0};
    struct sl_client_trace t = {0};
    struct sl_ip ip, plain;
    int rc = sl_client_ip_trace(&trusted, &req, &ip, &t);
    ck_assert_int_eq(rc, sl_client_ip(&trusted, &req, &plain));
    ck_assert_mem_eq(&ip, &plain, sizeof ip);
    return t;
}

START_TEST(trace_says_why)
{
    struct sl_header h[2] = {xff("198.51.100.1, 203.0.113.9, 10.0.0.2"), xff("10.0.0.3")};
    struct sl_client_trace t = trace_of(peer("10.0.0.1"), h, 2);
    ck_assert_int_eq(t.why, SL_CLIENT_NO_TRUSTED_PROXIES);
    ck_assert_uint_eq(t.hop, 0);

    trust("10.0.0.0/8");
    t = trace_of(peer("192.0.2.1"), h, 2);
    ck_assert_int_eq(t.why, SL_CLIENT_PEER_UNTRUSTED);
    t = trace_of(peer("10.0.0.1"), NULL, 0);
    ck_assert_int_eq(t.why, SL_CLIENT_PEER_NO_XFF);
    ck_assert_uint_eq(t.hop, 0);
    /* 10.0.0.3 (hop 1), 10.0.0.2 (hop 2), then 203.0.113.9: hop 3. */
    t = trace_of(peer("10.0.0.1"), h, 2);
    ck_assert_int_eq(t.why, SL_CLIENT_XFF_UNTRUSTED_HOP);
    ck_assert_uint_eq(t.hop, 3);

    struct sl_header all[1] = {xff("10.0.0.9, , 10.0.0.8")};
    t = trace_of(peer("10.0.0.1"), all, 1);
    ck_assert_int_eq(t.why, SL_CLIENT_XFF_ALL_TRUSTED);
    ck_assert_uint_eq(t.hop, 2);

    struct sl_header bad[1] = {xff("198.51.100.1, bogus, 10.0.0.8")};
    t = trace_of(peer("10.0.0.1"), bad, 1);
    ck_assert_int_eq(t.why, SL_CLIENT_XFF_MALFORMED);
    ck_assert_uint_eq(t.hop, 2);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("client_ip");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, NULL);
    tcase_add_test(tc, peer_without_trust);
    tcase_add_test(tc, trusted_peer_one_hop);
    tcase_add_test(tc, right_to_left_over_trusted_hops);
    tcase_add_test(tc, several_headers_in_order);
    tcase_add_test(tc, all_trusted_gives_leftmost);
    tcase_add_test(tc, empty_elements_skipped);
    tcase_add_test(tc, malformed_entry_falls_back_to_peer);
    tcase_add_test(tc, ports_and_brackets_accepted);
    tcase_add_test(tc, ipv6);
    tcase_add_test(tc, unix_socket_peer);
    tcase_add_test(tc, trace_says_why);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
