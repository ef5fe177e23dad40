/* The forwarded heads: hop-by-hop removal and X-Forwarded-* on fixed heads. */
#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/forward.h"
#include "sluice/text.h"
#include "support/run_suite.h"

#define H(n, v)                                                                                    \
    {                                                                                              \
        n, sizeof(n) - 1, v, sizeof(v) - 1                                                         \
    }

static char *drain(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *out = malloc(n + 1);
    evbuffer_remove(b, out, n);
    out[n] = '\0';
    return out;
}

static char *const websocket[] = {"websocket"};

static char *request_head(const struct sl_header *h, size_t n, struct sl_forward_request f)
{
    struct sl_request req = {"GET", 3, "/a/../b?q=%20", 13, h, n, NULL, NULL, 0};
    struct evbuffer *b = evbuffer_new();
    f.req = &req;
    ck_assert_int_eq(sl_forward_request_head(&f, b), 0);
    char *s = drain(b);
    evbuffer_free(b);
    return s;
}

START_TEST(request_line_as_received_and_forwarded_headers)
{
    const struct sl_header h[] = {H("Host", "example.com:8080"), H("Accept", "*/*")};
    char *s = request_head(
        h, 2, (struct sl_forward_request){.http_minor = 1, .peer = "10.1.2.3", .peer_len = 8});
    ck_assert_str_eq(s, "GET /a/../b?q=%20 HTTP/1.1\r\n"
                        "Host: example.com:8080\r\n"
                        "Accept: */*\r\n"
                        "X-Forwarded-For: 10.1.2.3\r\n"
                        "X-Forwarded-Proto: http\r\n"
                        "X-Forwarded-Host: example.com:8080\r\n"
                        "\r\n");
    free(s);
}
END_TEST

START_TEST(hop_by_hop_removed)
{
    const struct sl_header h[] = {
        H("Host", "h"),
        H("Connection", "keep-alive, X-Secret"),
        H("x-secret", "1"),
        H("Keep-Alive", "timeout=5"),
        H("Proxy-Connection", "keep-alive"),
        H("TE", "trailers"),
        H("Trailer", "X-T"),
        H("Transfer-Encoding", "chunked"),
        H("Upgrade", "websocket"),
        H("X-Kept", "yes"),
    };
    char *s = request_head(h, 10, (struct sl_forward_request){.http_minor = 1, .chunked = true});
    ck_assert_str_eq(s, "GET /a/../b?q=%20 HTTP/1.1\r\n"
                        "Host: h\r\n"
                        "X-Kept: yes\r\n"
                        "X-Forwarded-Proto: http\r\n"
                        "X-Forwarded-Host: h\r\n"
                        "Transfer-Encoding: chunked\r\n"
                        "\r\n");
    free(s);
}
END_TEST

START_TEST(upgrade_kept_when_upgrading)
{
    const struct sl_header h[] = {H("Host", "h"), H("Connection", "Upgrade"),
                                  H("Upgrade", "websocket")};
    char *s = request_head(h, 3,
                           (struct sl_forward_request){
                               .http_minor = 1, .upgrade = true, .upgrades = websocket, .nupgrades = 1});
    ck_assert_ptr_nonnull(strstr(s, "Upgrade: websocket\r\n"));
    ck_assert_ptr_nonnull(strstr(s, "Connection: upgrade\r\n"));
    free(s);
}
END_TEST

/* h2c smuggling: only the allowed protocols go up, h2c never, and HTTP2-Settings with it. */
START_TEST(upgrade_keeps_only_allowed_protocols)
{
    char *const both[] = {"websocket", "h2c"};
    const struct sl_header h[] = {H("Host", "h"),
                                  H("Connection", "Upgrade"),
                                  H("Upgrade", "WebSocket/13, h2c"),
                                  H("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA"),
                                  H("upgrade", " H2C/1 ,foo,websocket")};
    char *s = request_head(h, 5,
                           (struct sl_forward_request){
                               .http_minor = 1, .upgrade = true, .upgrades = both, .nupgrades = 2});
    ck_assert_str_eq(s, "GET /a/../b?q=%20 HTTP/1.1\r\n"
                        "Host: h\r\n"
                        "X-Forwarded-Proto: http\r\n"
                        "X-Forwarded-Host: h\r\n"
                        "Upgrade: WebSocket/13, websocket\r\n"
                        "Connection: upgrade\r\n"
                        "\r\n");
    free(s);
}
END_TEST

START_TEST(upgrades_counted)
{
    const struct sl_header h[] = {H("Upgrade", "h2c"), H("X", "websocket"),
                                  H("UPGRADE", ", WEBSOCKET/13 , , TLS/1.2,")};
    size_t allowed;

    ck_assert_uint_eq(sl_forward_upgrades(h, 3, websocket, 1, &allowed), 3);
    ck_assert_uint_eq(allowed, 1);
    ck_assert_uint_eq(sl_forward_upgrades(h, 1, websocket, 1, &allowed), 1);
    ck_assert_uint_eq(allowed, 0);
    ck_assert_uint_eq(sl_forward_upgrades(h + 1, 1, websocket, 1, &allowed), 0);
    ck_assert_uint_eq(sl_forward_upgrades(h + 2, 1, NULL, 0, &allowed), 2);
    ck_assert_uint_eq(allowed, 0);
}
END_TEST

START_TEST(x_forwarded_for_merged_and_appended)
{
    const struct sl_header h[] = {H("X-Forwarded-For", "1.1.1.1, 2.2.2.2"), H("Host", "h"),
                                  H("X-Forwarded-For", "3.3.3.3"), H("X-Forwarded-Proto", "https"),
                                  H("X-Forwarded-Host", "evil")};
    char *s = request_head(
        h, 5, (struct sl_forward_request){.http_minor = 0, .peer = "::1", .peer_len = 3});
    ck_assert_str_eq(s, "GET /a/../b?q=%20 HTTP/1.0\r\n"
                        "Host: h\r\n"
                        "X-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, ::1\r\n"
                        "X-Forwarded-Proto: http\r\n"
                        "X-Forwarded-Host: h\r\n"
                        "\r\n");
    free(s);
}
END_TEST

START_TEST(expect_stripped_only_when_answered_locally)
{
    const struct sl_header h[] = {H("Host", "h"), H("Expect", "100-continue")};
    char *s =
        request_head(h, 2, (struct sl_forward_request){.http_minor = 1, .strip_expect = true});
    ck_assert_ptr_null(strstr(s, "Expect"));
    free(s);
    s = request_head(h, 2, (struct sl_forward_request){.http_minor = 1});
    ck_assert_ptr_nonnull(strstr(s, "Expect: 100-continue\r\n"));
    free(s);
}
END_TEST

START_TEST(response_head_filtered)
{
    const struct sl_header h[] = {H("Content-Type", "text/plain"),
                                  H("Connection", "close, X-Internal"), H("X-Internal", "1"),
                                  H("Keep-Alive", "timeout=5"), H("Transfer-Encoding", "chunked")};
    static const char lines[] = "RateLimit: \"a\";r=1;t=2\r\n";
    struct sl_textbuf extra = {0};
    ck_assert_int_eq(sl_textbuf_add(&extra, lines, sizeof lines - 1), 0);
    struct sl_forward_response f = {.status = 200,
                                    .reason = "OK",
                                    .reason_len = 2,
                                    .headers = h,
                                    .nheaders = 5,
                                    .keep_transfer_encoding = true,
                                    .connection = SL_CONN_KEEP_ALIVE,
                                    .extra = &extra};
    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(sl_forward_response_head(&f, b), 0);
    char *s = drain(b);
    ck_assert_str_eq(s, "HTTP/1.1 200 OK\r\n"
                        "Content-Type: text/plain\r\n"
                        "Transfer-Encoding: chunked\r\n"
                        "RateLimit: \"a\";r=1;t=2\r\n"
                        "Connection: keep-alive\r\n"
                        "\r\n");
    ck_assert_uint_eq(extra.len, sizeof lines - 1); /* left for the caller to reuse */
    free(s);
    f.keep_transfer_encoding = false;
    f.connection = SL_CONN_CLOSE;
    sl_forward_response_head(&f, b);
    s = drain(b);
    ck_assert_ptr_null(strstr(s, "Transfer-Encoding"));
    ck_assert_ptr_nonnull(strstr(s, "Connection: close\r\n"));
    free(s);
    evbuffer_free(b);
    sl_textbuf_free(&extra);
}
END_TEST

START_TEST(hop_by_hop_names)
{
    ck_assert(sl_forward_is_hop_by_hop("te", 2));
    ck_assert(sl_forward_is_hop_by_hop("CONNECTION", 10));
    ck_assert(sl_forward_is_hop_by_hop("transfer-encoding", 17));
    ck_assert(sl_forward_is_hop_by_hop("http2-settings", 14));
    ck_assert(!sl_forward_is_hop_by_hop("Content-Length", 14));
    ck_assert(!sl_forward_is_hop_by_hop("Host", 4));
}
END_TEST

START_TEST(content_length_dropped_on_demand)
{
    const struct sl_header h[] = {H("Content-Length", "10"), H("ETag", "\"x\"")};
    struct sl_forward_response f = {.status = 204,
                                    .reason = "No Content",
                                    .reason_len = 10,
                                    .headers = h,
                                    .nheaders = 2,
                                    .drop_content_length = true};
    struct evbuffer *b = evbuffer_new();
    sl_forward_response_head(&f, b);
    char *s = drain(b);
    ck_assert_str_eq(s, "HTTP/1.1 204 No Content\r\nETag: \"x\"\r\n\r\n");
    free(s);
    f.drop_content_length = false;
    sl_forward_response_head(&f, b);
    s = drain(b);
    ck_assert_ptr_nonnull(strstr(s, "Content-Length: 10\r\n"));
    free(s);
    evbuffer_free(b);
}
END_TEST

START_TEST(bodiless_statuses)
{
    ck_assert(sl_forward_status_bodiless(100));
    ck_assert(sl_forward_status_bodiless(101));
    ck_assert(sl_forward_status_bodiless(103));
    ck_assert(sl_forward_status_bodiless(199));
    ck_assert(sl_forward_status_bodiless(204));
    ck_assert(sl_forward_status_bodiless(304));
    ck_assert(!sl_forward_status_bodiless(200));
    ck_assert(!sl_forward_status_bodiless(205));
    ck_assert(!sl_forward_status_bodiless(404));
}
END_TEST

START_TEST(response_framing_checked)
{
    const struct sl_header chunked[] = {H("Transfer-Encoding", "Chunked")};
    const struct sl_header gzip[] = {H("Transfer-Encoding", "gzip, chunked")};
    const struct sl_header twice[] = {H("Transfer-Encoding", "chunked"),
                                      H("transfer-encoding", "chunked")};
    const struct sl_header cl[] = {H("Content-Length", "5")};

    ck_assert_ptr_null(sl_forward_check_response(1, 1, 200, false, cl, 1));
    ck_assert_ptr_null(sl_forward_check_response(1, 1, 200, false, chunked, 1));
    ck_assert_ptr_null(sl_forward_check_response(1, 0, 200, false, cl, 1));
    ck_assert_ptr_nonnull(sl_forward_check_response(1, 0, 200, false, chunked, 1));
    ck_assert_ptr_nonnull(sl_forward_check_response(1, 1, 200, false, gzip, 1));
    ck_assert_ptr_nonnull(sl_forward_check_response(1, 1, 200, false, twice, 2));
    ck_assert_ptr_nonnull(sl_forward_check_response(2, 0, 200, false, cl, 1));
    ck_assert_ptr_nonnull(sl_forward_check_response(1, 1, 99, false, cl, 1));
    ck_assert_ptr_nonnull(sl_forward_check_response(1, 1, 600, false, cl, 1));
    /* Without content the length headers frame nothing: relayed (and cleaned up). */
    ck_assert_ptr_null(sl_forward_check_response(1, 1, 304, true, gzip, 1));
    ck_assert_ptr_null(sl_forward_check_response(1, 0, 204, true, chunked, 1));
    ck_assert_ptr_nonnull(sl_forward_check_response(1, 1, 600, true, cl, 1));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("forward");
    TCase *tc = tcase_create("heads");
    tcase_add_test(tc, request_line_as_received_and_forwarded_headers);
    tcase_add_test(tc, hop_by_hop_removed);
    tcase_add_test(tc, upgrade_kept_when_upgrading);
    tcase_add_test(tc, upgrade_keeps_only_allowed_protocols);
    tcase_add_test(tc, upgrades_counted);
    tcase_add_test(tc, x_forwarded_for_merged_and_appended);
    tcase_add_test(tc, expect_stripped_only_when_answered_locally);
    tcase_add_test(tc, response_head_filtered);
    tcase_add_test(tc, hop_by_hop_names);
    tcase_add_test(tc, content_length_dropped_on_demand);
    tcase_add_test(tc, bodiless_statuses);
    tcase_add_test(tc, response_framing_checked);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
