/* The readers of io.c: sl_reader_set's timeout follows the last call, so that a connection
 * resting in the upstream pool keeps no timeout of the request it carried before. */
#include <check.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../src/http/http.h"
#include "support/run_suite.h"

struct reader {
    struct event_base *base;
    struct event rev;
    bool active, changed;
    int fds[2];
    int timeouts;
};

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    struct reader *r = arg;
    (void)fd;
    if (what & EV_TIMEOUT)
        r->timeouts++;
}

static void reader_init(struct reader *r)
{
    *r = (struct reader){0};
    r->base = event_base_new();
    ck_assert_ptr_nonnull(r->base);
    ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, r->fds), 0);
    event_assign(&r->rev, r->base, r->fds[0], EV_READ | EV_PERSIST, on_read, r);
}

/* Runs the loop for `ms` milliseconds of nothing to read. */
static void run_for(struct reader *r, long ms)
{
    struct timeval tv = {0, ms * 1000};
    event_base_loopexit(r->base, &tv);
    event_base_dispatch(r->base);
}

static void reader_deinit(struct reader *r)
{
    event_del(&r->rev);
    event_base_free(r->base);
    close(r->fds[0]);
    close(r->fds[1]);
}

START_TEST(timeout_fires_while_set)
{
    struct reader r;
    struct timeval tv = {0, 20 * 1000};
    reader_init(&r);
    r.changed = true;
    sl_reader_set(NULL, &r.rev, &r.active, true, &tv, &r.changed);
    run_for(&r, 100);
    ck_assert_int_ge(r.timeouts, 1);
    reader_deinit(&r);
}
END_TEST

START_TEST(timeout_lifted_when_none_is_asked)
{
    struct reader r;
    struct timeval tv = {0, 20 * 1000};
    reader_init(&r);
    r.changed = true;
    sl_reader_set(NULL, &r.rev, &r.active, true, &tv, &r.changed);
    /* Back in the pool: still reading (the upstream may close), with no deadline. */
    r.changed = true;
    sl_reader_set(NULL, &r.rev, &r.active, true, NULL, &r.changed);
    ck_assert(r.active && !r.changed);
    run_for(&r, 100);
    ck_assert_int_eq(r.timeouts, 0);
    reader_deinit(&r);
}
END_TEST

START_TEST(not_wanted_is_not_read)
{
    struct reader r;
    reader_init(&r);
    sl_reader_set(NULL, &r.rev, &r.active, true, NULL, &r.changed);
    ck_assert(r.active);
    sl_reader_set(NULL, &r.rev, &r.active, false, NULL, &r.changed);
    ck_assert(!r.active && !event_pending(&r.rev, EV_READ, NULL));
    reader_deinit(&r);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("io");
    TCase *tc = tcase_create("reader");
    tcase_add_test(tc, timeout_fires_while_set);
    tcase_add_test(tc, timeout_lifted_when_none_is_asked);
    tcase_add_test(tc, not_wanted_is_not_read);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
