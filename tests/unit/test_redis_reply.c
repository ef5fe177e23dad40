/* A script's reply, as hiredis's reader gives it, read as a decision: with or without its
 * trailing zeros, and nothing of another shape trusted. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/redis_internal.h"
#include "support/run_suite.h"

/* `resp` read by hiredis's reader, then as a decision of a limit of 10. */
static int parse(const char *resp, struct sl_decision *d)
{
    redisReader *reader = redisReaderCreate();
    ck_assert_ptr_nonnull(reader);
    ck_assert_int_eq(redisReaderFeed(reader, resp, strlen(resp)), REDIS_OK);
    void *reply = NULL;
    ck_assert_int_eq(redisReaderGetReply(reader, &reply), REDIS_OK);
    ck_assert_ptr_nonnull(reply);
    int rc = sl_redis_parse_decision(reply, 10, d);
    freeReplyObject(reply);
    redisReaderFree(reader);
    return rc;
}

START_TEST(test_reply_without_trailing_zeros)
{
    struct sl_decision d;
    ck_assert_int_eq(parse("*3\r\n:1\r\n:4\r\n:7\r\n", &d), 0);
    ck_assert(d.allowed);
    ck_assert_uint_eq(d.limit, 10);
    ck_assert_uint_eq(d.remaining, 4);
    ck_assert_uint_eq(d.reset_us, 7);
    ck_assert_uint_eq(d.retry_after_us, 0);
    ck_assert_uint_eq(d.delay_us, 0);
    ck_assert_int_eq(parse("*4\r\n:0\r\n:0\r\n:7\r\n:3\r\n", &d), 0);
    ck_assert(!d.allowed);
    ck_assert_uint_eq(d.retry_after_us, 3);
    ck_assert_uint_eq(d.delay_us, 0);
    ck_assert_int_eq(parse("*5\r\n:1\r\n:2\r\n:7\r\n:0\r\n:9\r\n", &d), 0);
    ck_assert_uint_eq(d.remaining, 2);
    ck_assert_uint_eq(d.delay_us, 9);
}
END_TEST

START_TEST(test_reply_of_another_shape)
{
    struct sl_decision d = {.remaining = 42};
    ck_assert_int_eq(parse("*2\r\n:1\r\n:4\r\n", &d), -1);
    ck_assert_int_eq(parse("*6\r\n:1\r\n:4\r\n:7\r\n:0\r\n:0\r\n:0\r\n", &d), -1);
    ck_assert_int_eq(parse("*3\r\n:2\r\n:4\r\n:7\r\n", &d), -1);
    ck_assert_int_eq(parse("*3\r\n:1\r\n:-4\r\n:7\r\n", &d), -1);
    ck_assert_int_eq(parse("*3\r\n:1\r\n$1\r\n4\r\n:7\r\n", &d), -1);
    ck_assert_int_eq(parse(":1\r\n", &d), -1);
    ck_assert_uint_eq(d.remaining, 42); /* untouched */
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis_reply");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_reply_without_trailing_zeros);
    tcase_add_test(tc, test_reply_of_another_shape);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
