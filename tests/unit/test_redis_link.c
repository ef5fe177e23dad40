/* The Redis link against a fake server on a unix socket, whose every byte the test writes:
 * replies matched to commands in order, however the bytes are cut; a close failing every
 * command still waiting, then telling the owner; a free from inside a callback; SUBSCRIBE's
 * pushed messages; a reply nobody asked for; and replies announcing more elements than
 * sluice ever reads, refused before hiredis allocates them. */
#include <check.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/store/redis_link.h"
#include "support/run_suite.h"

static struct event_base *base;
static int listener = -1, peer = -1;
static struct sockaddr_un addr;

/* What the callbacks saw, in order: "type:value" per reply, "null" for a NULL one, and
 * "close:why" for on_close. */
static char seen[4096];
static bool free_in_callback;
static struct sl_redis_link *current;

static void note(const char *fmt, const char *s)
{
    size_t len = strlen(seen);
    snprintf(seen + len, sizeof seen - len, fmt, s);
}

static void on_reply(struct sl_redis_link *l, void *r, void *privdata)
{
    const redisReply *reply = r;
    char buf[64];
    ck_assert_ptr_eq(l, current);
    if (!reply)
        snprintf(buf, sizeof buf, "null");
    else if (reply->type == REDIS_REPLY_INTEGER)
        snprintf(buf, sizeof buf, "int:%lld", reply->integer);
    else if (reply->type == REDIS_REPLY_ARRAY)
        snprintf(buf, sizeof buf, "array:%zu", reply->elements);
    else
        snprintf(buf, sizeof buf, "str:%s", reply->str);
    note("%s ", buf);
    ck_assert_ptr_eq(privdata, &seen);
    if (reply && free_in_callback) {
        free_in_callback = false;
        sl_redis_link_free(l);
    }
}

static void on_close(struct sl_redis_link *l, const char *why, void *data)
{
    ck_assert_ptr_eq(l, current);
    ck_assert_ptr_eq(data, &addr);
    note("close:%s", why);
    current = NULL;
}

static void setup(void)
{
    signal(SIGPIPE, SIG_IGN);
    base = event_base_new();
    ck_assert_ptr_nonnull(base);
    addr = (struct sockaddr_un){.sun_family = AF_UNIX};
    snprintf(addr.sun_path, sizeof addr.sun_path, "/tmp/sluice-link-%d.sock", (int)getpid());
    unlink(addr.sun_path);
    listener = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_ge(listener, 0);
    ck_assert_int_eq(bind(listener, (struct sockaddr *)&addr, sizeof addr), 0);
    ck_assert_int_eq(listen(listener, 4), 0);
    seen[0] = '\0';
    free_in_callback = false;
}

static void teardown(void)
{
    if (peer >= 0)
        close(peer);
    peer = -1;
    close(listener);
    unlink(addr.sun_path);
    event_base_free(base);
}

static void run_loop(void)
{
    for (int i = 0; i < 5; i++) {
        struct timeval tv = {0, 5000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
}

/* A link to the fake server, which has accepted it. */
static struct sl_redis_link *connect_link(void)
{
    current = sl_redis_link_new(base, (struct sockaddr *)&addr, sizeof addr, NULL, on_close, &addr);
    ck_assert_ptr_nonnull(current);
    run_loop();
    peer = accept(listener, NULL, NULL);
    ck_assert_int_ge(peer, 0);
    return current;
}

/* Everything the link has written so far, as one string. */
static const char *received(void)
{
    static char buf[4096];
    size_t len = 0;
    struct pollfd p = {.fd = peer, .events = POLLIN};
    while (poll(&p, 1, 50) == 1 && len < sizeof buf - 1) {
        ssize_t n = read(peer, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    return buf;
}

static void server_says(const char *bytes)
{
    ck_assert_int_eq(write(peer, bytes, strlen(bytes)), (ssize_t)strlen(bytes));
    run_loop();
}

START_TEST(test_replies_in_order_however_cut)
{
    struct sl_redis_link *l = connect_link();
    ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "PING"), 0);
    ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "INCR %s", "k"), 0);
    const char *argv[] = {"GET", "k"};
    const size_t argvlen[] = {3, 1};
    ck_assert_int_eq(sl_redis_link_command_argv(l, on_reply, &seen, 2, argv, argvlen), 0);
    ck_assert_uint_eq(sl_redis_link_waiting(l), 3);
    run_loop();
    ck_assert_str_eq(received(), "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINCR\r\n$1\r\nk\r\n"
                                 "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    server_says("+PO");
    ck_assert_str_eq(seen, "");
    server_says("NG\r\n:7\r\n$1");
    ck_assert_str_eq(seen, "str:PONG int:7 ");
    server_says("\r\n7\r\n");
    ck_assert_str_eq(seen, "str:PONG int:7 str:7 ");
    ck_assert_uint_eq(sl_redis_link_waiting(l), 0);
    sl_redis_link_free(l);
    ck_assert_str_eq(seen, "str:PONG int:7 str:7 "); /* no on_close after a free */
}
END_TEST

START_TEST(test_close_fails_the_waiting_then_tells_the_owner)
{
    struct sl_redis_link *l = connect_link();
    ck_assert(sl_redis_link_connected(l));
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "PING"), 0);
    run_loop();
    received(); /* a close with unread bytes would be a reset */
    ck_assert_int_eq(write(peer, "+PONG\r\n", 7), 7);
    close(peer);
    peer = -1;
    run_loop();
    ck_assert_str_eq(seen, "str:PONG null null close:closed by the server");
    ck_assert_ptr_null(current);
}
END_TEST

START_TEST(test_free_inside_a_callback)
{
    struct sl_redis_link *l = connect_link();
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "PING"), 0);
    run_loop();
    free_in_callback = true;
    /* The second reply is in the same read: it is not delivered after the free. */
    server_says("+A\r\n+B\r\n");
    ck_assert_str_eq(seen, "str:A null null ");
    ck_assert_ptr_nonnull(current); /* freed by its owner: no on_close */
}
END_TEST

START_TEST(test_refused_connection)
{
    /* A unix socket that is not there fails at once; a TCP port nobody listens on, later. */
    struct sockaddr_un nowhere = {.sun_family = AF_UNIX, .sun_path = "/nonexistent/sluice.sock"};
    ck_assert_ptr_null(sl_redis_link_new(base, (struct sockaddr *)&nowhere, sizeof nowhere, NULL,
                                         on_close, &addr));
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sin;
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sin, &len), 0);
    close(fd);
    current = sl_redis_link_new(base, (struct sockaddr *)&sin, sizeof sin, NULL, on_close, &addr);
    ck_assert_ptr_nonnull(current);
    ck_assert_int_eq(sl_redis_link_command(current, on_reply, &seen, "PING"), 0);
    run_loop();
    ck_assert_ptr_null(current);
    ck_assert_str_eq(seen, "null close:Connection refused");
}
END_TEST

START_TEST(test_subscribe_delivers_every_message)
{
    struct sl_redis_link *l = connect_link();
    ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "PING"), 0);
    ck_assert_int_eq(sl_redis_link_subscribe(l, on_reply, &seen, "+switch-master"), 0);
    ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "PING"), -1); /* subscribed */
    run_loop();
    server_says("+PONG\r\n*3\r\n$9\r\nsubscribe\r\n$14\r\n+switch-master\r\n:1\r\n");
    server_says("*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$1\r\na\r\n"
                "*3\r\n$7\r\nmessage\r\n$14\r\n+switch-master\r\n$1\r\nb\r\n");
    ck_assert_str_eq(seen, "str:PONG array:3 array:3 array:3 ");
    received();
    close(peer);
    peer = -1;
    run_loop();
    ck_assert_str_eq(seen, "str:PONG array:3 array:3 array:3 null close:closed by the server");
}
END_TEST

START_TEST(test_reply_to_no_command)
{
    connect_link();
    server_says("+SURPRISE\r\n");
    ck_assert_str_eq(seen, "close:protocol error: a reply to no command");
}
END_TEST

START_TEST(test_huge_array_refused_before_allocation)
{
    /* Under AddressSanitizer, allocating 16 GiB aborts the test. */
    struct sl_redis_link *l = connect_link();
    ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "CLUSTER SLOTS"), 0);
    ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "PING"), 0);
    run_loop();
    server_says("*2147483647\r\n");
    ck_assert_str_eq(seen, "null null close:protocol error: a reply of 2147483647 elements");
}
END_TEST

START_TEST(test_array_at_the_bound_accepted)
{
    struct sl_redis_link *l = connect_link();
    ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "CLUSTER SLOTS"), 0);
    run_loop();
    size_t size = 16 + 4 * SL_REDIS_LINK_MAX_ELEMENTS, len, off = 0;
    char *bytes = malloc(size);
    len = (size_t)snprintf(bytes, size, "*%d\r\n", SL_REDIS_LINK_MAX_ELEMENTS);
    for (int i = 0; i < SL_REDIS_LINK_MAX_ELEMENTS; i++, len += 4)
        memcpy(bytes + len, ":1\r\n", 4);
    while (off < len) { /* the socket holds less than the reply: the link reads as it comes */
        ssize_t n = send(peer, bytes + off, len - off, MSG_DONTWAIT);
        if (n > 0)
            off += (size_t)n;
        run_loop();
    }
    free(bytes);
    char head[32];
    snprintf(head, sizeof head, "array:%d ", SL_REDIS_LINK_MAX_ELEMENTS);
    ck_assert_str_eq(seen, head);
    sl_redis_link_free(l);
}
END_TEST

START_TEST(test_nested_array_refused)
{
    struct sl_redis_link *l = connect_link();
    ck_assert_int_eq(sl_redis_link_command(l, on_reply, &seen, "CLUSTER SLOTS"), 0);
    run_loop();
    server_says("*1\r\n*16385\r\n");
    ck_assert_str_eq(seen, "null close:protocol error: a reply of 16385 elements");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis_link");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, test_replies_in_order_however_cut);
    tcase_add_test(tc, test_close_fails_the_waiting_then_tells_the_owner);
    tcase_add_test(tc, test_free_inside_a_callback);
    tcase_add_test(tc, test_refused_connection);
    tcase_add_test(tc, test_subscribe_delivers_every_message);
    tcase_add_test(tc, test_reply_to_no_command);
    tcase_add_test(tc, test_huge_array_refused_before_allocation);
    tcase_add_test(tc, test_array_at_the_bound_accepted);
    tcase_add_test(tc, test_nested_array_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
