/* The path_regex dialect boundary: what sl_regex_dialect_check() accepts (anchors, classes,
 * alternation, repetition bounds, escaped specials) matches exactly as regexec does through
 * every matcher the build has; each construct it refuses is refused with its name. */
#include <check.h>
#include <stdio.h>
#include <string.h>

#include "sluice/route.h"
#include "sluice/route_index.h"
#include "support/run_suite.h"

static const char *const accepted[] = {
    /* anchors */
    "^/a$",
    "^/a|^/b$",
    "(^/a|^/b)/c$",
    "^(/a|/b)$",
    "/a$|^/b",
    "^^/a$$",
    "(/a$)",
    "a",
    /* bracket expressions and classes */
    "^/[[:alpha:]]+$",
    "^/[[:digit:][:upper:]]",
    "^/[^/]+$",
    "^/[]a]$",
    "^/[^]a]$",
    "^/[a-]$",
    "^/[-a]$",
    "^/[a-z0-9_-]+$",
    "^/[[]$",
    "^/[.]$",
    "^/[:a]$",
    "^/[=]$",
    "^/[.*+?(){}|^$]$",
    "^/[[:alnum:][:punct:]]{2}$",
    "^/[[:space:][:blank:][:cntrl:]]",
    "^/[[:lower:]][[:xdigit:]][[:graph:]][[:print:]]$",
    /* alternation and groups */
    "^/(a|b|c)/x$",
    "^/((a|b)(c|d))+$",
    "a|b",
    /* repetition */
    "^/a{2}$",
    "^/a{2,}$",
    "^/a{0,2}$",
    "^/(ab){1,3}$",
    "^/a*b+c?$",
    "^/(a{3}){85}$",
    "^/.{0,255}$",
    /* escaped specials; a lone "]" or "}" is an ordinary character */
    "^/a\\.b\\+c\\{\\}\\(\\)\\[\\]\\|\\*\\?\\^\\$\\\\$",
    "^/a}]$",
};

static const struct {
    const char *pattern;
    const char *message; /* a part of the error */
} refused[] = {
    {"^/\\d+$", "at offset 2, \"\\d\" is a Perl character class"},
    {"^/\\w", "Perl character class"},
    {"^/\\s", "Perl character class"},
    {"^/a\\b", "\"\\b\" is an assertion"},
    {"^/\\<a", "assertion"},
    {"^/(a)\\1$", "\"\\1\" is a back-reference"},
    {"^\\/a", "\"\\/\" is an escape POSIX ERE does not define"},
    {"^/a\\", "a trailing \\ escapes nothing"},
    {"^/[\\d]", "a backslash inside brackets"},
    {"^/[a\\]]", "a backslash inside brackets"},
    {"^/[[.a.]]", "\"[.\" (a collating element"},
    {"^/[[=a=]]", "\"[=\" (a collating element"},
    {"^/[:alpha:]", "\"[:...:]\" outside a bracket expression"},
    {"^/[.a.]", "\"[.....]\" outside a bracket expression"},
    {"^/[^x][=a=]", "\"[=...=]\" outside a bracket expression"},
    {"^/[[:word:]]", "\"[:word:]\" is not a character class"},
    {"^/[z-a]", "the range \"z-a\""},
    {"^/[A-z]", "the range \"A-z\""},
    {"^/[!-/]", "the range \"!-/\""},
    {"^/[a-c-e]", "a range cannot start where another ends"},
    {"^/[[:alpha:]-z]", "a character class cannot end a range"},
    {"^/[a-b", "an unterminated bracket expression"},
    {"^/a{,3}", "\"{,n}\" is not POSIX ERE"},
    {"^/a{", "a \"{\" that starts no repetition bound"},
    {"^/a{x}", "a \"{\" that starts no repetition bound"},
    {"^/a{1", "an unterminated or malformed repetition bound"},
    {"^/a{256}", "a repetition bound above 255"},
    {"^/a{1,99999999999999999999}", "a repetition bound above 255"},
    {"^/a{3,2}", "maximum is below its minimum"},
    {"^/a{0}", "a repetition of zero times"},
    {"^/a{0,0}", "a repetition of zero times"},
    {"^/(a{16}){16}", "nested repetition bounds multiplying past 255"},
    {"*a", "nothing to repeat"},
    {"^*a", "nothing to repeat"},
    {"^/a**", "nothing to repeat"},
    {"^/a+?", "nothing to repeat"},
    {"^/a*{2}", "nothing to repeat"},
    {"^/(*a)", "nothing to repeat"},
    {"^/a|*b", "nothing to repeat"},
    {"^/a$*", "nothing to repeat"},
    {"^/(?=a)", "\"(?\" (lookaround"},
    {"^/(?:a)", "\"(?\" (lookaround"},
    {"/a^b", "a \"^\" other than at the start"},
    {"^/(a|^b)", "a \"^\" other than at the start"},
    {"/a(^b)", "a \"^\" other than at the start"},
    {"(^/a)*", "a repeated group holding an anchor"},
    {"(/a$)+", "a repeated group holding an anchor"},
    {"^/a$b", "a \"$\" other than at the end"},
    {"^(/a$)b", "a \"$\" other than at the end"},
    {"^(/a$|/b)c", "a \"$\" other than at the end"},
    {"/a$^", "a \"^\" other than at the start"},
    {"^/a|", "an empty alternative"},
    {"|^/a", "an empty alternative"},
    {"^/a||b", "an empty alternative"},
    {"^/()", "an empty group or alternative"},
    {"^/(a|)", "an empty group or alternative"},
    {"^/a)", "an unmatched \")\""},
    {"^/(a", "an unclosed \"(\""},
    {"", "an empty pattern"},
    {"^/caf\xc3\xa9", "a byte outside printable ASCII"},
    {"^/a\tb", "a byte outside printable ASCII"},
    {"^/[a\x01]", "a byte outside printable ASCII"},
};

START_TEST(accepted_patterns)
{
    char err[256];
    for (size_t i = 0; i < sizeof accepted / sizeof *accepted; i++) {
        regex_t re;
        ck_assert_msg(sl_regex_dialect_check(accepted[i], err, sizeof err) == 0, "%s: %s",
                      accepted[i], err);
        ck_assert_msg(regcomp(&re, accepted[i], REG_EXTENDED | REG_NOSUB) == 0, "%s", accepted[i]);
        regfree(&re);
    }
}
END_TEST

START_TEST(refused_constructs_are_named)
{
    char err[256];
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        ck_assert_msg(sl_regex_dialect_check(refused[i].pattern, err, sizeof err) < 0,
                      "%s was accepted", refused[i].pattern);
        ck_assert_msg(strstr(err, refused[i].message), "%s: \"%s\" does not say \"%s\"",
                      refused[i].pattern, err, refused[i].message);
    }
}
END_TEST

/* Paths that touch every accepted pattern's edges: anchors, bounds, classes, escapes. */
static const char *const subjects[] = {
    "",
    "/",
    "/a",
    "/b",
    "/a/c",
    "/b/c",
    "/ab",
    "/aa",
    "/aaa",
    "/aaaa",
    "/A",
    "/B/x",
    "/c/x",
    "/ac",
    "/bd",
    "/acbd",
    "/abab",
    "/ababab",
    "/abababab",
    "/abc",
    "/bc",
    "/c",
    "/a-",
    "/-a",
    "/-",
    "/]",
    "/[",
    "/.",
    "/]a",
    "/a}]",
    "/z",
    "/Z9",
    "/9",
    "/ 1",
    "/a1!~",
    "/x",
    "/x/y",
    "/users/1",
    "/b/a",
    "xa",
    "/a.b+c{}()[]|*?^$\\",
    "/a.b+c{}()[]|*?^$\\x",
    "/aaaaaaaaa",
    "/ab/",
    "/a$",
    "/^a",
};

static void expect_same(enum sl_regex_matcher m, bool icase)
{
    static struct sl_route route;
    static char name[] = "r";
    struct sl_config cfg = {0};
    struct sl_request req = {"GET", 3, "/", 1, NULL, 0, NULL, NULL, 0};

    cfg.routes = &route;
    cfg.nroutes = 1;
    cfg.paths.case_insensitive = icase;
    for (size_t i = 0; i < sizeof accepted / sizeof *accepted; i++) {
        memset(&route, 0, sizeof route);
        route.name = name;
        route.path_match = SL_MATCH_REGEX;
        route.path = (char *)accepted[i];
        ck_assert_int_eq(
            regcomp(&route.regex, route.path, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0)),
            0);
        struct sl_route_index_error err;
        struct sl_route_index *ix = sl_route_index_new(&cfg, m, &err);
        ck_assert_msg(ix != NULL, "%s: %s", route.path, err.message);
        ck_assert_int_eq(sl_route_index_reserve(ix, 1), 0);
        for (size_t j = 0; j < sizeof subjects / sizeof *subjects; j++) {
            const char *s = subjects[j];
            bool want = regexec(&route.regex, s, 0, NULL, 0) == 0;
            bool got = sl_route_index_match(ix, &cfg, 0, &req, s, strlen(s), NULL, 0) != NULL;
            ck_assert_msg(got == want, "%s on \"%s\": regexec %d, index %d", route.path, s, want,
                          got);
        }
        sl_route_index_free(ix);
        regfree(&route.regex);
    }
}

START_TEST(matchers_agree_with_regexec)
{
    enum sl_regex_matcher m = _i ? SL_REGEX_MATCHER_HYPERSCAN : SL_REGEX_MATCHER_POSIX;
    if (!sl_regex_matcher_available(m))
        return;
    expect_same(m, false);
    expect_same(m, true);
}
END_TEST

/* Hyperscan's "$" matches before a final newline and regexec's does not: a path holding
 * one (no request can carry it, but the index must not depend on that) goes to regexec. */
START_TEST(newline_in_the_path)
{
    enum sl_regex_matcher m = _i ? SL_REGEX_MATCHER_HYPERSCAN : SL_REGEX_MATCHER_POSIX;
    static struct sl_route routes[2];
    static char n0[] = "r0", n1[] = "r1", p0[] = "^/a$", p1[] = "^/a.b$";
    struct sl_config cfg = {.routes = routes, .nroutes = 2};
    struct sl_request req = {"GET", 3, "/", 1, NULL, 0, NULL, NULL, 0};

    if (!sl_regex_matcher_available(m))
        return;
    routes[0] = (struct sl_route){.name = n0, .path_match = SL_MATCH_REGEX, .path = p0};
    routes[1] = (struct sl_route){.name = n1, .index = 1, .path_match = SL_MATCH_REGEX, .path = p1};
    ck_assert_int_eq(regcomp(&routes[0].regex, p0, REG_EXTENDED | REG_NOSUB), 0);
    ck_assert_int_eq(regcomp(&routes[1].regex, p1, REG_EXTENDED | REG_NOSUB), 0);
    struct sl_route_index *ix = sl_route_index_new(&cfg, m, NULL);
    ck_assert_ptr_nonnull(ix);
    ck_assert_int_eq(sl_route_index_reserve(ix, 1), 0);
    ck_assert_ptr_null(sl_route_index_match(ix, &cfg, 0, &req, "/a\n", 3, NULL, 0));
    ck_assert_ptr_eq(sl_route_index_match(ix, &cfg, 0, &req, "/a\nb", 4, NULL, 0), &routes[1]);
    ck_assert_ptr_eq(sl_route_index_match(ix, &cfg, 0, &req, "/a", 2, NULL, 0), &routes[0]);
    /* A thread slot without scratch space still gets the right route. */
    ck_assert_ptr_eq(sl_route_index_match(ix, &cfg, 7, &req, "/a", 2, NULL, 0), &routes[0]);
    ck_assert_ptr_eq(sl_route_index_match(ix, &cfg, 7, &req, "/a-b", 4, NULL, 0), &routes[1]);
    sl_route_index_free(ix);
    regfree(&routes[0].regex);
    regfree(&routes[1].regex);
}
END_TEST

/* A normalised path cannot hold a newline: the request line cannot, and "%0A" stays an
 * escape, so Hyperscan's "$" never meets one on the proxy's path. */
START_TEST(normalised_paths_keep_newlines_encoded)
{
    char out[64];
    struct sl_path_rules rules = {.decode_slash = true, .case_insensitive = true};
    ssize_t n = sl_path_normalize(&rules, "/a%0a/%0D%0A", 12, out, sizeof out);
    ck_assert_int_gt(n, 0);
    ck_assert_ptr_null(memchr(out, '\n', (size_t)n));
    ck_assert_str_eq(out, "/a%0A/%0D%0A");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("regex_dialect");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, accepted_patterns);
    tcase_add_test(tc, refused_constructs_are_named);
    tcase_add_loop_test(tc, matchers_agree_with_regexec, 0, 2);
    tcase_add_loop_test(tc, newline_in_the_path, 0, 2);
    tcase_add_test(tc, normalised_paths_keep_newlines_encoded);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
