/* sl_secret_equal(): equal values match, whatever their bytes (NULs, several SHA-256
 * blocks); any difference in one byte, in length, or a prefix either way does not. */
#include <check.h>
#include <string.h>

#include "sluice/secret.h"
#include "support/run_suite.h"

static bool eq(const char *a, const char *b)
{
    return sl_secret_equal(a, strlen(a), b, strlen(b));
}

START_TEST(test_equal_values_match)
{
    ck_assert(eq("s3cret-token", "s3cret-token"));
    ck_assert(eq("", ""));
    ck_assert(sl_secret_equal("a\0b", 3, "a\0b", 3));
    /* A NULL pointer with no bytes is the empty value. */
    ck_assert(sl_secret_equal(NULL, 0, "", 0));
}
END_TEST

START_TEST(test_one_byte_differs)
{
    ck_assert(!eq("s3cret-token", "S3cret-token"));
    ck_assert(!eq("s3cret-token", "s3cret-tokeN"));
    ck_assert(!eq("s3cret-token", "s3cret_token"));
    ck_assert(!sl_secret_equal("a\0b", 3, "a\0c", 3));
}
END_TEST

START_TEST(test_lengths_differ)
{
    /* Prefixes either way, the empty value, and a trailing NUL. */
    ck_assert(!eq("s3cret", "s3cret-token"));
    ck_assert(!eq("s3cret-token", "s3cret"));
    ck_assert(!eq("", "s3cret-token"));
    ck_assert(!eq("s3cret-token", ""));
    ck_assert(!sl_secret_equal("abc", 4, "abc", 3));
}
END_TEST

START_TEST(test_values_longer_than_a_block)
{
    char a[200], b[200];

    memset(a, 'x', sizeof a);
    memcpy(b, a, sizeof b);
    ck_assert(sl_secret_equal(a, sizeof a, b, sizeof b));
    b[sizeof b - 1] = 'y';
    ck_assert(!sl_secret_equal(a, sizeof a, b, sizeof b));
    b[sizeof b - 1] = 'x';
    b[70] = 'y'; /* in the second 64-byte block */
    ck_assert(!sl_secret_equal(a, sizeof a, b, sizeof b));
    ck_assert(!sl_secret_equal(a, sizeof a, a, sizeof a - 1));
}
END_TEST

int main(void)
{
    Suite *s = suite_create("secret");
    TCase *tc = tcase_create("secret");
    tcase_add_test(tc, test_equal_values_match);
    tcase_add_test(tc, test_one_byte_differs);
    tcase_add_test(tc, test_lengths_differ);
    tcase_add_test(tc, test_values_longer_than_a_block);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
