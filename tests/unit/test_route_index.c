/* The route index: the same route as the walk over the table, for hand-picked cases and for
 * thousands of random tables and requests (fixed seed), through each regex matcher the
 * build has (POSIX always, Hyperscan when built with it); the regex literal prefixes; the
 * statistics sluice -t prints. */
#include <check.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/route.h"
#include "sluice/route_index.h"
#include "support/run_suite.h"

#define MAX_ROUTES 48

static struct sl_route routes[MAX_ROUTES];
static char route_paths[MAX_ROUTES][64];
static char route_names[MAX_ROUTES][8];
static struct sl_config cfg;
static enum sl_regex_matcher matcher; /* the one the current test case runs through */

/* Every table here is one a configuration could hold: patterns pass the dialect check and
 * follow the paths section's case_insensitive, as the loader compiles them. */
static struct sl_route *add_route(enum sl_path_match kind, const char *path)
{
    bool icase = cfg.paths.case_insensitive;
    size_t i = cfg.nroutes++;
    struct sl_route *r = &routes[i];
    memset(r, 0, sizeof *r);
    snprintf(route_names[i], sizeof route_names[i], "r%zu", i);
    r->name = route_names[i];
    r->index = i;
    r->path_match = kind;
    if (path) {
        snprintf(route_paths[i], sizeof route_paths[i], "%s", path);
        r->path = route_paths[i];
    }
    if (kind == SL_MATCH_REGEX) {
        char err[256];
        ck_assert_msg(sl_regex_dialect_check(path, err, sizeof err) == 0, "%s: %s", path, err);
        ck_assert_int_eq(
            regcomp(&r->regex, path, REG_EXTENDED | REG_NOSUB | (icase ? REG_ICASE : 0)), 0);
    }
    return r;
}

/* The index of `cfg` through the current matcher, with scratch for thread slot 0. */
static struct sl_route_index *new_index(void)
{
    struct sl_route_index_error err;
    struct sl_route_index *ix = sl_route_index_new(&cfg, matcher, &err);
    ck_assert_msg(ix != NULL, "route %zu: %s", err.route, err.message);
    ck_assert_int_eq(sl_route_index_reserve(ix, 1), 0);
    return ix;
}

static void clear_routes(void)
{
    for (size_t i = 0; i < cfg.nroutes; i++)
        if (routes[i].path_match == SL_MATCH_REGEX)
            regfree(&routes[i].regex);
    memset(&cfg, 0, sizeof cfg);
    cfg.routes = routes;
}

static void setup(void)
{
    memset(&cfg, 0, sizeof cfg);
    cfg.routes = routes;
}

static void setup_posix(void)
{
    setup();
    matcher = SL_REGEX_MATCHER_POSIX;
}

static void setup_hyperscan(void)
{
    setup();
    matcher = SL_REGEX_MATCHER_HYPERSCAN;
}

/* Matches one request both ways, asserts they agree, and returns the route's number or -1.
 * `path` is used as given (already normalised), NULL for a target without one. */
static int both(const char *method, const char *path, const char *host, const struct sl_header *hs,
                size_t nh)
{
    struct sl_request req = {
        method, strlen(method), path ? path : "*", path ? strlen(path) : 1, hs, nh, NULL, NULL, 0};
    size_t plen = path ? strlen(path) : 0, hlen = host ? strlen(host) : 0;

    cfg.route_index = NULL;
    const struct sl_route *walked = sl_route_match(&cfg, 0, &req, path, plen, host, hlen);
    struct sl_route_index *ix = new_index();
    cfg.route_index = ix;
    const struct sl_route *indexed = sl_route_match(&cfg, 0, &req, path, plen, host, hlen);
    cfg.route_index = NULL;
    sl_route_index_free(ix);
    ck_assert_msg(walked == indexed, "%s %s: walk gives %s, index gives %s", method,
                  path ? path : "(none)", walked ? walked->name : "-",
                  indexed ? indexed->name : "-");
    return walked ? (int)walked->index : -1;
}

static int route_of(const char *path)
{
    return both("GET", path, NULL, NULL, 0);
}

START_TEST(overlapping_prefixes_first_in_file_order)
{
    add_route(SL_MATCH_PREFIX, "/api/v1");
    add_route(SL_MATCH_PREFIX, "/api/");
    add_route(SL_MATCH_PREFIX, "/api");
    add_route(SL_MATCH_PATH, "/api/v1/users");
    add_route(SL_MATCH_PREFIX, "/");
    ck_assert_int_eq(route_of("/api/v1/users"), 0);
    ck_assert_int_eq(route_of("/api/v1"), 0);
    ck_assert_int_eq(route_of("/api/v10"), 1);
    ck_assert_int_eq(route_of("/api/"), 1);
    ck_assert_int_eq(route_of("/api"), 2);
    ck_assert_int_eq(route_of("/apix"), 4);
    ck_assert_int_eq(route_of("/"), 4);
    ck_assert_int_eq(route_of(NULL), -1);
}
END_TEST

START_TEST(regex_before_a_prefix_that_also_matches)
{
    add_route(SL_MATCH_REGEX, "^/api/[0-9]+$");
    add_route(SL_MATCH_PREFIX, "/api");
    add_route(SL_MATCH_REGEX, "^/api/x");
    add_route(SL_MATCH_REGEX, "/y$"); /* no literal prefix: always tried */
    add_route(SL_MATCH_ANY, NULL);
    ck_assert_int_eq(route_of("/api/42"), 0);
    ck_assert_int_eq(route_of("/api/x"), 1);
    ck_assert_int_eq(route_of("/b/y"), 3);
    ck_assert_int_eq(route_of("/b/z"), 4);
    ck_assert_int_eq(route_of(NULL), 4);
}
END_TEST

START_TEST(conditions_disqualify_the_first_candidates)
{
    static char *post[] = {"POST"};
    static struct sl_header_match v2[] = {{"X-V", "2"}};
    struct sl_route *r = add_route(SL_MATCH_PREFIX, "/api");
    r->methods = post;
    r->nmethods = 1;
    add_route(SL_MATCH_REGEX, "^/api/")->host = "h1";
    add_route(SL_MATCH_PATH, "/api/x")->headers = v2;
    routes[2].nheaders = 1;
    add_route(SL_MATCH_PREFIX, "/api/");
    struct sl_header hv2 = {"x-v", 3, "2", 1};
    ck_assert_int_eq(both("POST", "/api/x", NULL, NULL, 0), 0);
    ck_assert_int_eq(both("GET", "/api/x", "h1", NULL, 0), 1);
    ck_assert_int_eq(both("GET", "/api/x", "h2", &hv2, 1), 2);
    ck_assert_int_eq(both("GET", "/api/x", "h2", NULL, 0), 3);
    ck_assert_int_eq(both("GET", "/api", "h1", NULL, 0), -1);
}
END_TEST

START_TEST(empty_and_absent_paths)
{
    /* Configurations never hold these, but the index must agree with the walk anyway. */
    add_route(SL_MATCH_PREFIX, "");
    add_route(SL_MATCH_PATH, "");
    add_route(SL_MATCH_REGEX, "^$");
    add_route(SL_MATCH_ANY, NULL)->host = "h";
    ck_assert_int_eq(route_of(""), 1);
    ck_assert_int_eq(route_of("/"), -1);
    ck_assert_int_eq(both("GET", NULL, "h", NULL, 0), 3);
    ck_assert_int_eq(route_of(NULL), -1);
}
END_TEST

START_TEST(case_insensitive_patterns)
{
    cfg.paths.case_insensitive = true;
    add_route(SL_MATCH_REGEX, "^/Users/[0-9]+$");
    add_route(SL_MATCH_REGEX, "^/A[[:upper:]]/");
    ck_assert_int_eq(route_of("/users/1"), 0);
    ck_assert_int_eq(route_of("/USERS/1"), 0);
    ck_assert_int_eq(route_of("/ab/"), 1);
    clear_routes();
    add_route(SL_MATCH_REGEX, "^/Users/");
    ck_assert_int_eq(route_of("/Users/x"), 0);
    ck_assert_int_eq(route_of("/users/x"), -1);
}
END_TEST

static const char *prefix(const char *pattern)
{
    static char out[64];
    regex_t re;
    /* Every pattern here is one sluice would accept. */
    ck_assert_int_eq(regcomp(&re, pattern, REG_EXTENDED | REG_NOSUB), 0);
    regfree(&re);
    size_t n = sl_regex_literal_prefix(pattern, out, sizeof out);
    ck_assert_uint_eq(n, strlen(out));
    return out;
}

START_TEST(literal_prefixes)
{
    ck_assert_str_eq(prefix("^/users/[0-9]+$"), "/users/");
    ck_assert_str_eq(prefix("^/api$"), "/api");
    ck_assert_str_eq(prefix("/api"), "");     /* not anchored */
    ck_assert_str_eq(prefix("^/ab*c"), "/a"); /* "b" may be absent */
    ck_assert_str_eq(prefix("^/ab?c"), "/a");
    ck_assert_str_eq(prefix("^/ab{0,2}c"), "/a");
    ck_assert_str_eq(prefix("^/ab+c"), "/ab");   /* one "b" at least, then unknown */
    ck_assert_str_eq(prefix("^/a\\.b"), "/a.b"); /* an escaped operator is a literal */
    ck_assert_str_eq(prefix("^/a.b"), "/a");
    ck_assert_str_eq(prefix("^/a\\b"), "/a"); /* "\b" is no literal */
    ck_assert_str_eq(prefix("^/a|^/b"), "");  /* alternatives */
    ck_assert_str_eq(prefix("^/a|/b"), "");
    ck_assert_str_eq(prefix("^/(a|b)/c"), "/"); /* alternatives inside a group */
    ck_assert_str_eq(prefix("^/x[|]y"), "/x");  /* "|" inside brackets is a member */
    ck_assert_str_eq(prefix("^/x[]|]y"), "/x");
    ck_assert_str_eq(prefix("^/x[[:alpha:]|]|^/z"), "");
    ck_assert_str_eq(prefix("^(/a)"), "");
    ck_assert_str_eq(prefix("^$"), "");
    ck_assert_str_eq(prefix(".*"), "");
    char small[4];
    ck_assert_uint_eq(sl_regex_literal_prefix("^/abcdef", small, sizeof small), 3);
    ck_assert_str_eq(small, "/ab");
}
END_TEST

START_TEST(statistics)
{
    add_route(SL_MATCH_PATH, "/a");
    add_route(SL_MATCH_PATH, "/a");
    add_route(SL_MATCH_PREFIX, "/a");
    add_route(SL_MATCH_REGEX, "^/b/[0-9]+$");
    add_route(SL_MATCH_REGEX, "[0-9]$");
    add_route(SL_MATCH_ANY, NULL);
    struct sl_route_index *ix = new_index();
    struct sl_route_index_stats st;
    sl_route_index_stats(ix, &st);
    ck_assert_uint_eq(st.exact, 2);
    ck_assert_uint_eq(st.prefix, 1);
    ck_assert_uint_eq(st.regex_prefixed, 1);
    ck_assert_uint_eq(st.regex_any, 1);
    ck_assert_uint_eq(st.any, 1);
    ck_assert_uint_gt(st.bytes, 6 * sizeof(uint32_t));
    ck_assert_int_eq(st.matcher, matcher);
    if (matcher == SL_REGEX_MATCHER_HYPERSCAN) {
        ck_assert_uint_gt(st.database_bytes, 0);
        ck_assert_uint_gt(st.scratch_bytes, 0);
        ck_assert_uint_eq(st.threads, 1);
        ck_assert_int_eq(sl_route_index_reserve(ix, 3), 0);
        sl_route_index_stats(ix, &st);
        ck_assert_uint_eq(st.threads, 3);
    } else {
        ck_assert_uint_eq(st.database_bytes, 0);
    }
    sl_route_index_free(ix);
    sl_route_index_free(NULL);
}
END_TEST

/* xorshift64*: a fixed sequence, so that a failure reproduces. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;

static unsigned pick(unsigned n)
{
    rng ^= rng >> 12;
    rng ^= rng << 25;
    rng ^= rng >> 27;
    return (unsigned)((rng * 0x2545f4914f6cdd1dull) >> 33) % n;
}

/* Few distinct segments, so that routes overlap each other and the requests often. */
static const char *const segments[] = {"a", "b", "ab", "A", "users", "42", "x1", "a.b", "api"};
#define NSEGMENTS (sizeof segments / sizeof *segments)

static void random_path(char *out, size_t size, unsigned max_segments)
{
    size_t n = 0;
    unsigned k = pick(max_segments + 1);
    out[0] = '\0';
    for (unsigned i = 0; i < k; i++)
        n += (size_t)snprintf(out + n, size - n, "/%s", segments[pick(NSEGMENTS)]);
    if (k == 0 || pick(4) == 0)
        snprintf(out + n, size - n, "/");
}

static const char *const patterns[] = {
    "^/a",
    "^/a/",
    "^/a$",
    "^/a/[0-9]+$",
    "^/ab*",
    "^/a?b",
    "^/a{2}",
    "^/a+/b",
    "^/users/[0-9]+$",
    "^/A/b",
    "^(/a|/b)/x1",
    "a|^/b",
    "^/a|^/b",
    "/b",
    "^/a\\.b",
    "^/a.b",
    "^$",
    ".*",
    "^/[ab]/42",
    "^/[]a]",
    "^/x1(/.*)?$",
    "^/a(b|x1)$",
    "^/(a|b)+$",
    "^/a{1,2}/",
    "^/[^/]+/42$",
    "^/[[:digit:]]+",
    "(^/a|/b$)",
    "b$|^/x1",
    "^/[a-c]{2}",
    "^/x1/(a\\.b|users)/[0-9]{2,}",
    "^/api/users/",
    "^/API",
    "42$",
    "^/a[[:alpha:]]",
    "^/api/[a-z]+/[0-9]+$",
};
#define NPATTERNS (sizeof patterns / sizeof *patterns)

static char *const method_names[] = {"GET", "POST"};
static struct sl_header_match header_values[] = {{"X-T", "1"}, {"X-T", "2"}};

static void random_table(void)
{
    clear_routes();
    cfg.paths.case_insensitive = pick(3) == 0;
    unsigned n = 1 + pick(MAX_ROUTES);
    for (unsigned i = 0; i < n; i++) {
        char path[64];
        unsigned kind = pick(10);
        struct sl_route *r;
        if (kind == 0) {
            r = add_route(SL_MATCH_ANY, NULL);
        } else if (kind <= 6) {
            random_path(path, sizeof path, 3);
            if (pick(30) == 0)
                path[0] = '\0';
            r = add_route(kind <= 3 ? SL_MATCH_PATH : SL_MATCH_PREFIX, path);
        } else {
            r = add_route(SL_MATCH_REGEX, patterns[pick(NPATTERNS)]);
        }
        if (pick(4) == 0) {
            r->methods = (char **)&method_names[pick(2)];
            r->nmethods = 1;
        }
        if (pick(4) == 0)
            r->host = pick(2) ? "h1" : "h2";
        if (pick(5) == 0) {
            r->headers = &header_values[pick(2)];
            r->nheaders = 1;
        }
    }
}

START_TEST(random_tables_agree_with_the_walk)
{
    static const char *const hosts[] = {NULL, "h1", "h2"};
    static const struct sl_header hs[][1] = {{{"X-T", 3, "1", 1}}, {{"x-t", 3, "2", 1}}};
    unsigned matched = 0, unmatched = 0;
    /* 200 000 requests either way; Hyperscan's compiler is slow (milliseconds a table, far
     * more under the sanitizers on a loaded machine), so it gets fewer tables and more
     * requests per table. */
    unsigned tables = matcher == SL_REGEX_MATCHER_HYPERSCAN ? 100 : 2000;
    unsigned requests = 200000 / tables;

    for (unsigned t = 0; t < tables; t++) {
        random_table();
        struct sl_route_index *ix = new_index();
        for (unsigned q = 0; q < requests; q++) {
            char path[128];
            const char *p = path;
            random_path(path, sizeof path, 5);
            unsigned shape = pick(40);
            if (shape == 0)
                p = NULL;
            else if (shape == 1)
                path[0] = '\0';
            const char *method = pick(3) ? "GET" : "POST";
            const char *host = hosts[pick(3)];
            unsigned hsel = pick(3);
            struct sl_request req = {method,
                                     strlen(method),
                                     p ? p : "*",
                                     p ? strlen(p) : 1,
                                     hsel ? hs[hsel - 1] : NULL,
                                     hsel ? 1 : 0,
                                     NULL, NULL, 0};
            size_t plen = p ? strlen(p) : 0, hlen = host ? strlen(host) : 0;
            cfg.route_index = NULL;
            const struct sl_route *walked = sl_route_match(&cfg, 0, &req, p, plen, host, hlen);
            const struct sl_route *indexed =
                sl_route_index_match(ix, &cfg, 0, &req, p, plen, host, hlen);
            ck_assert_msg(walked == indexed, "table %u, %s %s host %s: walk %s, index %s", t,
                          method, p ? p : "(none)", host ? host : "-", walked ? walked->name : "-",
                          indexed ? indexed->name : "-");
            if (walked)
                matched++;
            else
                unmatched++;
        }
        sl_route_index_free(ix);
    }
    clear_routes();
    /* The tables are varied enough to exercise both outcomes often. */
    ck_assert_uint_gt(matched, 100000);
    ck_assert_uint_gt(unmatched, 10000);
}
END_TEST

static void teardown(void)
{
    clear_routes();
}

/* One test case per matcher, each running every test. */
static void add_tests(Suite *s, const char *name, void (*setup_fn)(void))
{
    TCase *tc = tcase_create(name);
    tcase_add_checked_fixture(tc, setup_fn, teardown);
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, overlapping_prefixes_first_in_file_order);
    tcase_add_test(tc, regex_before_a_prefix_that_also_matches);
    tcase_add_test(tc, conditions_disqualify_the_first_candidates);
    tcase_add_test(tc, empty_and_absent_paths);
    tcase_add_test(tc, case_insensitive_patterns);
    tcase_add_test(tc, literal_prefixes);
    tcase_add_test(tc, statistics);
    tcase_add_test(tc, random_tables_agree_with_the_walk);
    suite_add_tcase(s, tc);
}

int main(void)
{
    Suite *s = suite_create("route_index");
    add_tests(s, "posix", setup_posix);
    if (sl_regex_matcher_available(SL_REGEX_MATCHER_HYPERSCAN))
        add_tests(s, "hyperscan", setup_hyperscan);
    return run_suite(s);
}
