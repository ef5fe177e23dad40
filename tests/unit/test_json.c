/* JSON string escaping of attacker-controlled text. */
#include <check.h>
#include <event2/buffer.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/json.h"
#include "support/run_suite.h"

static char *escape(const char *s, size_t len)
{
    struct evbuffer *b = evbuffer_new();
    ck_assert_int_eq(sl_json_append_string(b, s, len), 0);
    size_t n = evbuffer_get_length(b);
    char *out = malloc(n + 1);
    evbuffer_remove(b, out, n);
    out[n] = '\0';
    evbuffer_free(b);
    return out;
}

#define CHECK_ESCAPE(in, len, want)                                                                \
    do {                                                                                           \
        char *got = escape(in, len);                                                               \
        ck_assert_str_eq(got, want);                                                               \
        free(got);                                                                                 \
    } while (0)

START_TEST(plain_text_is_quoted)
{
    CHECK_ESCAPE("/api/login?x=1", 14, "\"/api/login?x=1\"");
    CHECK_ESCAPE("", 0, "\"\"");
}
END_TEST

START_TEST(quotes_and_backslashes)
{
    CHECK_ESCAPE("a\"b\\c", 5, "\"a\\\"b\\\\c\"");
}
END_TEST

START_TEST(control_characters)
{
    CHECK_ESCAPE("\n\r\t", 3, "\"\\n\\r\\t\"");
    CHECK_ESCAPE("\x01\x1f", 2, "\"\\u0001\\u001f\"");
    CHECK_ESCAPE("a\0b", 3, "\"a\\u0000b\"");
}
END_TEST

START_TEST(valid_utf8_kept)
{
    CHECK_ESCAPE("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14,
                 "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}
END_TEST

START_TEST(invalid_utf8_escaped)
{
    /* lone continuation byte, truncated sequence, overlong '/', surrogate, latin-1 */
    CHECK_ESCAPE("\x80", 1, "\"\\u0080\"");
    CHECK_ESCAPE("\xe2\x82", 2, "\"\\u00e2\\u0082\"");
    CHECK_ESCAPE("\xc0\xaf", 2, "\"\\u00c0\\u00af\"");
    CHECK_ESCAPE("\xed\xa0\x80", 3, "\"\\u00ed\\u00a0\\u0080\"");
    CHECK_ESCAPE("\xff", 1, "\"\\u00ff\"");
}
END_TEST

START_TEST(del_is_escaped)
{
    CHECK_ESCAPE("\x7f", 1, "\"\\u007f\"");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("json");
    TCase *tc = tcase_create("escape");
    tcase_add_test(tc, plain_text_is_quoted);
    tcase_add_test(tc, quotes_and_backslashes);
    tcase_add_test(tc, control_characters);
    tcase_add_test(tc, valid_utf8_kept);
    tcase_add_test(tc, invalid_utf8_escaped);
    tcase_add_test(tc, del_is_escaped);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
