/* `sluice replay`'s reading of access log lines and its counting of denied keys: the
 * timestamp, the members it reads, escaped strings, key_fields, unusable lines (and the
 * lines after them), and the order of the keys denied most; and its progress line, on a
 * pseudo-terminal and on a file. */
#include <check.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../src/cli/replay.h"
#include "support/run_suite.h"

static uint64_t ts(const char *text)
{
    uint64_t us = 0;
    ck_assert_int_eq(sl_replay_parse_ts(text, strlen(text), &us), 0);
    return us;
}

static int ts_bad(const char *text)
{
    uint64_t us;
    return sl_replay_parse_ts(text, strlen(text), &us);
}

START_TEST(timestamps)
{
    ck_assert_uint_eq(ts("1970-01-01T00:00:00Z"), 0);
    ck_assert_uint_eq(ts("1970-01-01T00:00:01.5Z"), 1500000);
    ck_assert_uint_eq(ts("2026-11-30T10:00:00.123Z"), 1796032800123000ull);
    ck_assert_uint_eq(ts("2000-03-01T00:00:00.000001Z"), 951868800000001ull);
    /* 2024 is a leap year; 2100 is not. */
    ck_assert_uint_eq(ts("2024-03-01T00:00:00Z") - ts("2024-02-28T00:00:00Z"), 2 * 86400000000ull);
    ck_assert_uint_eq(ts("2100-03-01T00:00:00Z") - ts("2100-02-28T00:00:00Z"), 86400000000ull);
    ck_assert_uint_eq(ts("2026-01-01T00:00:00.123456789Z"), ts("2026-01-01T00:00:00.123456Z"));
    ck_assert_int_eq(ts_bad("2026-11-30T10:00:00.123"), -1);
    ck_assert_int_eq(ts_bad("2026-11-30 10:00:00.123Z"), -1);
    ck_assert_int_eq(ts_bad("2026-13-30T10:00:00Z"), -1);
    ck_assert_int_eq(ts_bad("2026-11-30T24:00:00Z"), -1);
    ck_assert_int_eq(ts_bad("2026-11-30T10:00:00.Z"), -1);
    ck_assert_int_eq(ts_bad("2026-11-30T10:00:00.1234567890Z"), -1);
    ck_assert_int_eq(ts_bad("1969-12-31T23:59:59Z"), -1);
    ck_assert_int_eq(ts_bad(""), -1);
}
END_TEST

static struct sl_replay_parser *parser;
static struct sl_replay_record rec;

static int parse(const char *line)
{
    return sl_replay_parse_line(parser, line, strlen(line), &rec);
}

static bool text_is(struct sl_replay_text t, const char *want)
{
    return t.s && t.n == strlen(want) && memcmp(t.s, want, t.n) == 0;
}

static void setup(void)
{
    parser = sl_replay_parser_new();
    ck_assert_ptr_nonnull(parser);
}

static void teardown(void)
{
    sl_replay_parser_free(parser);
}

START_TEST(members_read_and_unescaped)
{
    ck_assert_int_eq(parse("{\"ts\":\"2026-11-30T10:00:00.250Z\",\"client\":\"192.0.2.1\","
                           "\"method\":\"GET\",\"path\":\"/a\\\"b?q=\\u00e9\",\"status\":200,"
                           "\"extra\":{\"path\":\"/not-this\"},\"list\":[1,\"x\"],"
                           "\"decision\":\"allowed\",\"bytes_in\":0}"),
                     0);
    ck_assert_uint_eq(rec.ts_us, ts("2026-11-30T10:00:00.250Z"));
    ck_assert(text_is(rec.client, "192.0.2.1"));
    ck_assert(text_is(rec.method, "GET"));
    ck_assert(text_is(rec.path, "/a\"b?q=\xc3\xa9"));
    ck_assert(text_is(rec.decision, "allowed"));
    ck_assert(!rec.has_key_fields);
    ck_assert_uint_eq(rec.nfields, 0);

    /* The same second again: the milliseconds alone change. */
    ck_assert_int_eq(parse("{\"ts\":\"2026-11-30T10:00:00.999Z\",\"client\":\"c\","
                           "\"method\":\"GET\",\"path\":\"/\"}"),
                     0);
    ck_assert_uint_eq(rec.ts_us, ts("2026-11-30T10:00:00.999Z"));
    ck_assert_ptr_null(rec.decision.s);
}
END_TEST

START_TEST(key_fields)
{
    ck_assert_int_eq(parse("{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\","
                           "\"path\":\"/\",\"key_fields\":{\"host\":\"h.example\","
                           "\"header:X-Api-Key\":\"k\\n1\",\"cookie:sid\":null,\"other\":\"x\","
                           "\"header:Y\":5}}"),
                     0);
    ck_assert(rec.has_key_fields);
    ck_assert_uint_eq(rec.nfields, 3);
    ck_assert_int_eq(rec.fields[0].kind, SL_KEY_HOST);
    ck_assert(text_is(rec.fields[0].value, "h.example"));
    ck_assert_int_eq(rec.fields[1].kind, SL_KEY_HEADER);
    ck_assert(text_is(rec.fields[1].name, "X-Api-Key"));
    ck_assert(text_is(rec.fields[1].value, "k\n1"));
    ck_assert_int_eq(rec.fields[2].kind, SL_KEY_COOKIE);
    ck_assert(text_is(rec.fields[2].name, "sid"));
    ck_assert_ptr_null(rec.fields[2].value.s);
}
END_TEST

START_TEST(unusable_lines_leave_the_next_one_readable)
{
    static const char good[] =
        "{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":\"/ok\"}";
    static const char *const bad[] = {
        "",
        "not json",
        "{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\"",
        "{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\"}",
        "{\"ts\":\"soon\",\"client\":\"c\",\"method\":\"GET\",\"path\":\"/\"}",
        "{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":[]}",
        "[\"ts\"]",
        "{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":\"/\"}{}",
        "{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":\"/\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ck_assert_msg(parse(bad[i]) == -1, "accepted: %s", bad[i]);
        ck_assert_int_eq(parse(good), 0);
        ck_assert(text_is(rec.path, "/ok"));
    }
}
END_TEST

/* Nothing replay reads follows bytes_in: the rest of the line is not read. */
START_TEST(reading_stops_at_bytes_in)
{
    ck_assert_int_eq(parse("{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\","
                           "\"path\":\"/x\",\"bytes_in\":0,\"bytes_out\":"),
                     0);
    ck_assert(text_is(rec.path, "/x"));
    /* Before the members replay needs, bytes_in stops nothing. */
    ck_assert_int_eq(parse("{\"bytes_in\":0,\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\","
                           "\"method\":\"GET\",\"path\":\"/y\"}"),
                     0);
    ck_assert(text_is(rec.path, "/y"));
}
END_TEST

/* Reading stops at bytes_in only where it is a member of the line's object and every
 * member replay needs came before it; anywhere else it changes nothing, and the next line
 * reads normally whichever way the line ended. */
START_TEST(bytes_in_elsewhere_changes_nothing)
{
    static const char good[] =
        "{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":\"/ok\","
        "\"bytes_in\":0}";
    static const struct {
        const char *line;
        int rc;
        const char *path;
    } cases[] = {
        /* Inside a nested object. */
        {"{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"x\":{\"a\":1,"
         "\"bytes_in\":0},\"path\":\"/nested\"}",
         0, "/nested"},
        /* The members replay needs after bytes_in. */
        {"{\"method\":\"GET\",\"bytes_in\":0,\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\","
         "\"path\":\"/after\"}",
         0, "/after"},
        /* Two bytes_in: reading stops at the first. */
        {"{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":\"/two\","
         "\"bytes_in\":0,\"bytes_in\":1}",
         0, "/two"},
        /* Inside a string, escaped: not a member. */
        {"{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\","
         "\"path\":\"/s,\\\"bytes_in\\\":\"}",
         0, "/s,\"bytes_in\":"},
        /* A second object before the cut, or a broken one. */
        {"{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":\"/\"}{"
         "\"a\":1,\"bytes_in\":0}",
         -1, NULL},
        {"{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":\"/\","
         "\"bytes_in\":0,\"bytes_out\":}}",
         0, "/"},
        {"{\"ts\":\"2026-11-30T10:00:00Z\",\"client\":\"c\",\"method\":\"GET\",\"path\":[,"
         "\"bytes_in\":0}",
         -1, NULL},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        ck_assert_msg(parse(cases[i].line) == cases[i].rc, "line %zu", i);
        if (cases[i].path)
            ck_assert_msg(text_is(rec.path, cases[i].path), "line %zu", i);
        ck_assert_int_eq(parse(good), 0);
        ck_assert(text_is(rec.path, "/ok"));
    }
}
END_TEST

/* "proto" (SPEC.md section 9) ends a line sluice writes; logs written before it have none.
 * Either way the line is read, whether reading stops at bytes_in or goes on to the end. */
START_TEST(proto_2_and_no_proto)
{
    static const char *const lines[] = {
        "{\"ts\":\"2026-11-30T10:00:00.250Z\",\"client\":\"192.0.2.1\",\"method\":\"GET\","
        "\"path\":\"/h2\",\"status\":200,\"route\":\"api\",\"decision\":\"allowed\","
        "\"bytes_in\":0,\"bytes_out\":2,\"duration_ms\":0.1,\"upstream_ms\":0.1,\"proto\":\"2\"}",
        "{\"ts\":\"2026-11-30T10:00:00.250Z\",\"client\":\"192.0.2.1\",\"method\":\"GET\","
        "\"path\":\"/h2\",\"status\":200,\"route\":\"api\",\"decision\":\"allowed\","
        "\"bytes_in\":0,\"bytes_out\":2,\"duration_ms\":0.1,\"upstream_ms\":null}",
        "{\"ts\":\"2026-11-30T10:00:00.250Z\",\"client\":\"192.0.2.1\",\"method\":\"GET\","
        "\"path\":\"/h2\",\"decision\":\"allowed\",\"proto\":\"2\"}",
        "{\"proto\":\"2\",\"ts\":\"2026-11-30T10:00:00.250Z\",\"client\":\"192.0.2.1\","
        "\"method\":\"GET\",\"path\":\"/h2\",\"decision\":\"allowed\"}",
        "{\"ts\":\"2026-11-30T10:00:00.250Z\",\"client\":\"192.0.2.1\",\"method\":\"GET\","
        "\"path\":\"/h2\",\"decision\":\"allowed\"}",
    };
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++) {
        ck_assert_msg(parse(lines[i]) == 0, "refused: %s", lines[i]);
        ck_assert_uint_eq(rec.ts_us, ts("2026-11-30T10:00:00.250Z"));
        ck_assert(text_is(rec.client, "192.0.2.1"));
        ck_assert(text_is(rec.method, "GET"));
        ck_assert(text_is(rec.path, "/h2"));
        ck_assert(text_is(rec.decision, "allowed"));
    }
}
END_TEST

START_TEST(keys_denied_most)
{
    struct sl_config cfg = {.nlimits = 1};
    struct sl_replay_stats st;
    ck_assert_int_eq(sl_replay_stats_init(&st, &cfg), 0);
    struct sl_replay_limit_stats *ls = &st.limits[0];
    struct sl_replay_top top[3];
    const char *keys[] = {"b", "a", "c", "a", "d", "b", "a", "long-key-value"};

    ck_assert_uint_eq(sl_replay_top_denied(ls, top, 3), 0);
    for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
        ck_assert_int_eq(sl_replay_count_denied(ls, keys[i], strlen(keys[i])), 0);
    /* Enough distinct keys to grow the table several times. */
    for (int i = 0; i < 1000; i++) {
        char k[16];
        int n = snprintf(k, sizeof k, "k%d", i);
        ck_assert_int_eq(sl_replay_count_denied(ls, k, (size_t)n), 0);
    }
    ck_assert_uint_eq(sl_replay_top_denied(ls, top, 3), 3);
    ck_assert_uint_eq(top[0].count, 3);
    ck_assert_mem_eq(top[0].key, "a", 1);
    ck_assert_uint_eq(top[1].count, 2);
    ck_assert_mem_eq(top[1].key, "b", 1);
    /* Ties in key order: "c" before "d", "k0"..., "long-key-value". */
    ck_assert_uint_eq(top[2].count, 1);
    ck_assert_uint_eq(top[2].len, 1);
    ck_assert_mem_eq(top[2].key, "c", 1);
    sl_replay_stats_deinit(&st, &cfg);
}
END_TEST

/* A log of 1000 bytes, at its start. */
static int log_of_1000_bytes(void)
{
    char path[] = "/tmp/sluice-test-replay-XXXXXX";
    char text[1000];
    int fd = mkstemp(path);

    ck_assert_int_ge(fd, 0);
    unlink(path);
    memset(text, 'x', sizeof text);
    ck_assert_int_eq(write(fd, text, sizeof text), (int)sizeof text);
    ck_assert_int_eq(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

/* Runs the progress line with stderr on `err`: 40000 lines and a quarter of the log in
 * 20 s. What stderr received is read from `from` into `out`. */
static size_t progress_on(int err, int from, char *out, size_t cap, bool *on)
{
    int log = log_of_1000_bytes(), saved = dup(STDERR_FILENO);
    struct sl_replay_progress pg;

    ck_assert_int_ge(dup2(err, STDERR_FILENO), 0);
    sl_replay_progress_init(&pg, log);
    *on = pg.on;
    pg.start_ns -= 20000000000u;
    pg.next_ns = 0;
    sl_replay_progress_update(&pg, 40000, 250);
    sl_replay_progress_clear(&pg);
    dup2(saved, STDERR_FILENO);
    close(saved);
    close(log);
    /* The line and its erasure are two writes: a terminal may hand them over apart. */
    size_t n = 0;
    struct pollfd pfd = {.fd = from, .events = POLLIN};
    while (n < cap - 1 && poll(&pfd, 1, 200) == 1) {
        ssize_t got = read(from, out + n, cap - 1 - n);
        if (got <= 0)
            break;
        n += (size_t)got;
    }
    out[n] = '\0';
    return n;
}

START_TEST(progress_on_a_terminal_only)
{
    char out[512];
    bool on;
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    ck_assert_int_ge(master, 0);
    ck_assert_int_eq(grantpt(master), 0);
    ck_assert_int_eq(unlockpt(master), 0);
    int slave = open(ptsname(master), O_RDWR | O_NOCTTY);
    ck_assert_int_ge(slave, 0);

    size_t n = progress_on(slave, master, out, sizeof out, &on);
    ck_assert(on);
    unsigned long lines, rate;
    char left[16];
    ck_assert_msg(sscanf(out, "\rreplay: %lu lines, %lu lines/s, %15s left", &lines, &rate, left) ==
                      3,
                  "%s", out);
    ck_assert_uint_eq(lines, 40000);
    ck_assert_msg(rate > 1900 && rate <= 2000, "%lu lines/s", rate);
    ck_assert_str_eq(left, "1m00s"); /* three quarters left at a quarter per 20 s */
    /* Erased: blanks over the whole line, and the cursor back at its start. */
    const char *erase = strchr(out + 1, '\r');
    ck_assert_ptr_nonnull(erase);
    size_t shown = (size_t)(erase - out) - 1;
    ck_assert_uint_eq(n, 2 * shown + 3);
    ck_assert_uint_eq(strspn(erase + 1, " "), shown);
    ck_assert_str_eq(erase + 1 + shown, "\r");
    close(slave);
    close(master);

    /* A file: nothing. */
    char path[] = "/tmp/sluice-test-replay-XXXXXX";
    int file = mkstemp(path);
    ck_assert_int_ge(file, 0);
    unlink(path);
    ck_assert_uint_eq(progress_on(file, file, out, sizeof out, &on), 0);
    ck_assert(!on);
    ck_assert_int_eq(lseek(file, 0, SEEK_END), 0);
    close(file);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("replay");
    TCase *tc = tcase_create("core");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, timestamps);
    tcase_add_test(tc, members_read_and_unescaped);
    tcase_add_test(tc, key_fields);
    tcase_add_test(tc, unusable_lines_leave_the_next_one_readable);
    tcase_add_test(tc, reading_stops_at_bytes_in);
    tcase_add_test(tc, bytes_in_elsewhere_changes_nothing);
    tcase_add_test(tc, proto_2_and_no_proto);
    tcase_add_test(tc, keys_denied_most);
    tcase_add_test(tc, progress_on_a_terminal_only);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
