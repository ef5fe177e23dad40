/* Text assembled on the stack and handed to an evbuffer in one piece. */
#include <check.h>
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/text.h"
#include "support/run_suite.h"

/* Empties `b` into a NUL-terminated string the caller frees. */
static char *drain(struct evbuffer *b)
{
    size_t n = evbuffer_get_length(b);
    char *s = malloc(n + 1);
    evbuffer_remove(b, s, n);
    s[n] = '\0';
    return s;
}

/* Counts the evbuffer_add()s `b` sees. */
static void count_adds(struct evbuffer *b, const struct evbuffer_cb_info *info, void *arg)
{
    (void)b;
    if (info->n_added)
        ++*(int *)arg;
}

START_TEST(nothing_reaches_the_buffer_before_flush)
{
    struct evbuffer *b = evbuffer_new();
    int adds = 0;
    evbuffer_add_cb(b, count_adds, &adds);
    struct sl_text t;

    sl_text_init(&t, b);
    SL_TEXT_LIT(&t, "HTTP/1.1 ");
    sl_text_u64(&t, 200);
    sl_text_add(&t, " OK\r\n", 5);
    ck_assert_uint_eq(evbuffer_get_length(b), 0);
    ck_assert_int_eq(sl_text_flush(&t), 0);
    ck_assert_int_eq(adds, 1);
    char *s = drain(b);
    ck_assert_str_eq(s, "HTTP/1.1 200 OK\r\n");
    free(s);
    ck_assert_int_eq(sl_text_flush(&t), 0); /* empty: nothing more */
    ck_assert_int_eq(adds, 1);
    evbuffer_free(b);
}
END_TEST

START_TEST(numbers_in_decimal)
{
    struct evbuffer *b = evbuffer_new();
    struct sl_text t;

    sl_text_init(&t, b);
    sl_text_u64(&t, 0);
    SL_TEXT_LIT(&t, " ");
    sl_text_u64(&t, 9);
    SL_TEXT_LIT(&t, " ");
    sl_text_u64(&t, 1000000);
    SL_TEXT_LIT(&t, " ");
    sl_text_u64(&t, UINT64_MAX);
    sl_text_flush(&t);
    char *s = drain(b);
    ck_assert_str_eq(s, "0 9 1000000 18446744073709551615");
    free(s);
    evbuffer_free(b);
}
END_TEST

/* Each length is counted right: both sides of every power of ten. */
START_TEST(numbers_at_every_length)
{
    char got[SL_U64_DIGITS], want[32];
    uint64_t p = 1;

    for (int k = 0; k < 20; k++, p *= 10) {
        uint64_t vs[] = {p - 1, p, p + 1};
        for (size_t i = 0; i < 3; i++) {
            size_t n = sl_u64_format(got, vs[i]);
            int m = snprintf(want, sizeof want, "%llu", (unsigned long long)vs[i]);
            ck_assert_uint_eq(n, (size_t)m);
            ck_assert_int_eq(memcmp(got, want, n), 0);
        }
    }
    ck_assert_uint_eq(sl_u64_format(got, UINT64_MAX), 20);
    ck_assert_int_eq(memcmp(got, "18446744073709551615", 20), 0);
}
END_TEST

/* Text longer than the room arrives whole and in order, however it is cut. */
START_TEST(long_text_keeps_its_order)
{
    struct evbuffer *b = evbuffer_new();
    size_t total = 3 * SL_TEXT_ROOM + 17;
    char *want = malloc(total);
    for (size_t i = 0; i < total; i++)
        want[i] = (char)('a' + i % 26);
    struct sl_text t;

    sl_text_init(&t, b);
    size_t at = 0, step = 1;
    while (at < total) {
        size_t n = step < total - at ? step : total - at;
        sl_text_add(&t, want + at, n);
        at += n;
        step = step * 3 + 1; /* 1, 4, 13, ... up past the room */
    }
    sl_text_flush(&t);
    ck_assert_uint_eq(evbuffer_get_length(b), total);
    char *got = drain(b);
    ck_assert_int_eq(memcmp(got, want, total), 0);
    free(got);
    free(want);
    evbuffer_free(b);
}
END_TEST

START_TEST(textbuf_holds_any_length_and_is_reused)
{
    struct sl_textbuf tb = {0};
    struct sl_text t;
    char *big = malloc(2 * SL_TEXT_ROOM);
    memset(big, 'z', 2 * SL_TEXT_ROOM);

    sl_text_init_textbuf(&t, &tb);
    SL_TEXT_LIT(&t, "<X-A: ");
    sl_text_u64(&t, 1);
    sl_text_add(&t, big, 2 * SL_TEXT_ROOM);
    SL_TEXT_LIT(&t, ">");
    ck_assert_uint_eq(tb.len, 7 + 2 * SL_TEXT_ROOM); /* the long piece went straight in */
    ck_assert_int_eq(sl_text_flush(&t), 0);
    ck_assert_uint_eq(tb.len, 7 + 2 * SL_TEXT_ROOM + 1);
    ck_assert_int_eq(memcmp(tb.data, "<X-A: 1zz", 9), 0);
    ck_assert_int_eq(tb.data[tb.len - 1], '>');

    /* Emptied for the next request, the block is kept and written from the start. */
    const char *block = tb.data;
    tb.len = 0;
    ck_assert_int_eq(sl_textbuf_add(&tb, "ab", 2), 0);
    ck_assert_ptr_eq(tb.data, block);
    ck_assert_int_eq(memcmp(tb.data, "ab", 2), 0);
    ck_assert_uint_eq(tb.len, 2);
    sl_textbuf_free(&tb);
    ck_assert_ptr_null(tb.data);
    ck_assert_uint_eq(tb.len + tb.cap, 0);
    free(big);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("text");
    TCase *tc = tcase_create("text");
    tcase_add_test(tc, nothing_reaches_the_buffer_before_flush);
    tcase_add_test(tc, numbers_in_decimal);
    tcase_add_test(tc, numbers_at_every_length);
    tcase_add_test(tc, long_text_keeps_its_order);
    tcase_add_test(tc, textbuf_holds_any_length_and_is_reused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
