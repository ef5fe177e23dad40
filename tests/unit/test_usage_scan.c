/* The JSON usage scanner: a number at a dot path in JSON and server-sent-events bodies, fed
 * in pieces of every size. */
#include <check.h>
#include <string.h>

#include "sluice/usage_scan.h"
#include "support/run_suite.h"

/* Scans `body` fed `step` bytes at a time (0: at once). */
static bool scan(const char *path, enum sl_usage_body kind, const char *body, size_t step,
                 uint64_t *out)
{
    struct sl_usage_scan *s = sl_usage_scan_new(path, kind);
    ck_assert_ptr_nonnull(s);
    size_t len = strlen(body);
    for (size_t i = 0; i < len;) {
        size_t n = step && step < len - i ? step : len - i;
        sl_usage_scan_feed(s, body + i, n);
        i += n;
    }
    bool found = sl_usage_scan_finish(s, out);
    sl_usage_scan_free(s);
    return found;
}

/* The same answer whatever the pieces. */
static void expect(const char *path, enum sl_usage_body kind, const char *body, bool found,
                   uint64_t value)
{
    for (size_t step = 0; step <= 7; step++) {
        uint64_t v = 0;
        bool f = scan(path, kind, body, step, &v);
        ck_assert_msg(f == found, "%s in %s (step %zu): found %d", path, body, step, f);
        if (found)
            ck_assert_uint_eq(v, value);
    }
}

START_TEST(json_paths)
{
    const char *openai = "{\"id\":\"x\",\"choices\":[{\"usage\":{\"total_tokens\":1}}],"
                         "\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":12,"
                         "\"total_tokens\":21},\"total_tokens\":5}";
    expect("usage.total_tokens", SL_USAGE_JSON, openai, true, 21);
    expect("total_tokens", SL_USAGE_JSON, openai, true, 5);
    expect("usage.missing", SL_USAGE_JSON, openai, false, 0);
    expect("usage", SL_USAGE_JSON, openai, false, 0);
    expect("usage.total_tokens", SL_USAGE_JSON, "{\"usage\":{\"total_tokens\":1.5}}", false, 0);
    expect("usage.total_tokens", SL_USAGE_JSON, "{\"usage\":{\"total_tokens\":\"7\"}}", false, 0);
    expect("usage.total_tokens", SL_USAGE_JSON, "{\"usage\":{\"total_tokens\":-1}}", false, 0);
    expect("usage.total_tokens", SL_USAGE_JSON, "{\"usage\":{\"total_tokens\":7}", false, 0);
    expect("usage.total_tokens", SL_USAGE_JSON, "not json at all", false, 0);
    expect("a", SL_USAGE_JSON, "  {\"a\" : 4294967296 }\n", true, 4294967296ull);
    expect("a", SL_USAGE_JSON, "{\"a\":4294967297}", false, 0);
    expect("a", SL_USAGE_NONE, "{\"a\":3}", false, 0);
}
END_TEST

START_TEST(sse_last_event_wins)
{
    const char *stream = "event: chunk\r\n"
                         "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\r\n"
                         "\r\n"
                         ": a comment\n"
                         "data: {\"usage\":{\"total_tokens\":\n"
                         "data: 30}}\n"
                         "\n"
                         "data:{\"usage\":{\"total_tokens\":42}}\n"
                         "\n"
                         "data: [DONE]\n"
                         "\n";
    expect("usage.total_tokens", SL_USAGE_SSE, stream, true, 42);
    /* A last event carrying the field but no number: nothing to charge. */
    expect(
        "usage.total_tokens", SL_USAGE_SSE,
        "data: {\"usage\":{\"total_tokens\":3}}\n\ndata: {\"usage\":{\"total_tokens\":null}}\n\n",
        false, 0);
    /* The final event may end with the body rather than a blank line. */
    expect("usage.total_tokens", SL_USAGE_SSE, "data: {\"usage\":{\"total_tokens\":8}}", true, 8);
    expect("usage.total_tokens", SL_USAGE_SSE, "data: [DONE]\n\n", false, 0);
    /* "data" must open the line: "xdata:" and "dat:" are other fields. */
    expect("a", SL_USAGE_SSE, "xdata: {\"a\":1}\n\ndat: {\"a\":2}\n\n", false, 0);
}
END_TEST

START_TEST(content_types)
{
    ck_assert_int_eq(sl_usage_body_kind("application/json", 16), SL_USAGE_JSON);
    ck_assert_int_eq(sl_usage_body_kind("Application/JSON; charset=utf-8", 31), SL_USAGE_JSON);
    ck_assert_int_eq(sl_usage_body_kind("application/problem+json", 24), SL_USAGE_JSON);
    ck_assert_int_eq(sl_usage_body_kind("text/event-stream", 17), SL_USAGE_SSE);
    ck_assert_int_eq(sl_usage_body_kind("text/plain", 10), SL_USAGE_NONE);
    ck_assert_int_eq(sl_usage_body_kind("+json", 5), SL_USAGE_NONE);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("usage_scan");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, json_paths);
    tcase_add_test(tc, sse_last_event_wins);
    tcase_add_test(tc, content_types);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
