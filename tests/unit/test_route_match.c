/* Route matching: file order, each path kind, methods, host and headers. */
#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/route.h"
#include "sluice/route_index.h"
#include "support/run_suite.h"

#define MAX_ROUTES 8

static struct sl_route routes[MAX_ROUTES];
static struct sl_config cfg;
static struct sl_route_index *ix; /* of the routes so far; rebuilt after add_route() */

static struct sl_route *add_route(const char *name, enum sl_path_match kind, const char *path)
{
    sl_route_index_free(ix);
    ix = NULL;
    struct sl_route *r = &routes[cfg.nroutes];
    memset(r, 0, sizeof *r);
    r->name = (char *)name;
    r->index = cfg.nroutes++;
    r->path_match = kind;
    r->path = (char *)path;
    if (kind == SL_MATCH_REGEX)
        ck_assert_int_eq(regcomp(&r->regex, path, REG_EXTENDED | REG_NOSUB), 0);
    return r;
}

static void setup(void)
{
    memset(&cfg, 0, sizeof cfg);
    cfg.routes = routes;
}

static void teardown(void)
{
    sl_route_index_free(ix);
    ix = NULL;
    for (size_t i = 0; i < cfg.nroutes; i++)
        if (routes[i].path_match == SL_MATCH_REGEX)
            regfree(&routes[i].regex);
}

/* The name of the route a request matches, or "-". The target is normalised first, as
 * the engine does. */
static const char *match_h(const char *method, const char *target, const struct sl_header *hs,
                           size_t nh)
{
    struct sl_request req = {method, strlen(method), target, strlen(target), hs, nh, NULL, NULL, 0};
    char path[256], host[256];
    ssize_t plen = sl_path_normalize(&cfg.paths, target, strlen(target), path, sizeof path);
    const char *a;
    size_t alen;
    ssize_t hlen = -1;
    if (sl_request_authority(&req, &a, &alen))
        hlen = sl_host_normalize(a, alen, host, sizeof host);
    const char *p = plen < 0 ? NULL : path, *h = hlen < 0 ? NULL : host;
    size_t pl = plen < 0 ? 0 : (size_t)plen, hl = hlen < 0 ? 0 : (size_t)hlen;
    const struct sl_route *r = sl_route_match(&cfg, 0, &req, p, pl, h, hl);
    /* The index, which configurations use, must give the same route as the walk. */
    if (!ix) {
        ix = sl_route_index_new(&cfg, SL_REGEX_MATCHER_BEST, NULL);
        ck_assert_ptr_nonnull(ix);
        ck_assert_int_eq(sl_route_index_reserve(ix, 1), 0);
    }
    ck_assert_ptr_eq(sl_route_index_match(ix, &cfg, 0, &req, p, pl, h, hl), r);
    return r ? r->name : "-";
}

static const char *match(const char *method, const char *target)
{
    return match_h(method, target, NULL, 0);
}

static struct sl_header hdr(const char *name, const char *value)
{
    return (struct sl_header){name, strlen(name), value, strlen(value)};
}

START_TEST(first_match_in_file_order)
{
    add_route("login", SL_MATCH_PATH, "/api/login");
    add_route("api", SL_MATCH_PREFIX, "/api");
    add_route("login_again", SL_MATCH_PATH, "/api/login");
    add_route("all", SL_MATCH_ANY, NULL);
    ck_assert_str_eq(match("POST", "/api/login"), "login");
    ck_assert_str_eq(match("POST", "/api/users"), "api");
    ck_assert_str_eq(match("GET", "/"), "all");
    ck_assert_str_eq(match("OPTIONS", "*"), "all");
}
END_TEST

START_TEST(exact_path)
{
    add_route("login", SL_MATCH_PATH, "/api/login");
    ck_assert_str_eq(match("POST", "/api/login"), "login");
    ck_assert_str_eq(match("POST", "/api//login"), "login");
    ck_assert_str_eq(match("POST", "/api/./login"), "login");
    ck_assert_str_eq(match("POST", "/api/x/../login"), "login");
    ck_assert_str_eq(match("POST", "/api/%6Cogin"), "login");
    ck_assert_str_eq(match("POST", "/api/login?next=/"), "login");
    ck_assert_str_eq(match("POST", "http://h/api/login"), "login");
    ck_assert_str_eq(match("POST", "/api/login/"), "-");
    ck_assert_str_eq(match("POST", "/api/logins"), "-");
    ck_assert_str_eq(match("POST", "/API/login"), "-");
    ck_assert_str_eq(match("POST", "*"), "-");
}
END_TEST

START_TEST(prefix_is_segment_aware)
{
    add_route("api", SL_MATCH_PREFIX, "/api");
    add_route("static", SL_MATCH_PREFIX, "/static/");
    ck_assert_str_eq(match("GET", "/api"), "api");
    ck_assert_str_eq(match("GET", "/api/"), "api");
    ck_assert_str_eq(match("GET", "/api/x/y"), "api");
    ck_assert_str_eq(match("GET", "/apix"), "-");
    ck_assert_str_eq(match("GET", "/ap"), "-");
    ck_assert_str_eq(match("GET", "/static/app.js"), "static");
    ck_assert_str_eq(match("GET", "/static/"), "static");
    ck_assert_str_eq(match("GET", "/static"), "-");
    ck_assert_str_eq(match("GET", "/staticx/a"), "-");
}
END_TEST

START_TEST(root_prefix_matches_everything_with_a_path)
{
    add_route("root", SL_MATCH_PREFIX, "/");
    ck_assert_str_eq(match("GET", "/"), "root");
    ck_assert_str_eq(match("GET", "/anything/at/all"), "root");
    ck_assert_str_eq(match("OPTIONS", "*"), "-");
}
END_TEST

START_TEST(regex_on_normalised_path)
{
    add_route("user", SL_MATCH_REGEX, "^/users/[0-9]+$");
    ck_assert_str_eq(match("GET", "/users/42"), "user");
    ck_assert_str_eq(match("GET", "/users//42"), "user");
    ck_assert_str_eq(match("GET", "/users/42?x=1"), "user");
    ck_assert_str_eq(match("GET", "/users/%34%32"), "user");
    ck_assert_str_eq(match("GET", "/users/42/x"), "-");
    ck_assert_str_eq(match("GET", "/users/abc"), "-");
}
END_TEST

START_TEST(methods_case_sensitive)
{
    static char *methods[] = {"POST", "PUT"};
    struct sl_route *r = add_route("write", SL_MATCH_ANY, NULL);
    r->methods = methods;
    r->nmethods = 2;
    add_route("other", SL_MATCH_ANY, NULL);
    ck_assert_str_eq(match("POST", "/x"), "write");
    ck_assert_str_eq(match("PUT", "/x"), "write");
    ck_assert_str_eq(match("GET", "/x"), "other");
    ck_assert_str_eq(match("post", "/x"), "other");
    ck_assert_str_eq(match("POS", "/x"), "other");
    ck_assert_str_eq(match("POSTX", "/x"), "other");
}
END_TEST

START_TEST(host_case_and_port_ignored)
{
    struct sl_route *r = add_route("api", SL_MATCH_ANY, NULL);
    r->host = "api.example.com";
    add_route("other", SL_MATCH_ANY, NULL);
    struct sl_header h1[] = {hdr("Host", "API.Example.com:8080")};
    struct sl_header h2[] = {hdr("host", "api.example.com")};
    struct sl_header h3[] = {hdr("Host", "www.example.com")};
    struct sl_header h4[] = {hdr("Host", "api.example.com.")};
    ck_assert_str_eq(match_h("GET", "/", h1, 1), "api");
    ck_assert_str_eq(match_h("GET", "/", h2, 1), "api");
    ck_assert_str_eq(match_h("GET", "/", h3, 1), "other");
    ck_assert_str_eq(match_h("GET", "/", h4, 1), "api");
    ck_assert_str_eq(match("GET", "/"), "other");
    ck_assert_str_eq(match_h("GET", "http://api.example.com:81/", h3, 1), "api");
}
END_TEST

START_TEST(host_ipv6_literal)
{
    struct sl_route *r = add_route("v6", SL_MATCH_ANY, NULL);
    r->host = "[::1]";
    struct sl_header h1[] = {hdr("Host", "[::1]:8080")};
    struct sl_header h2[] = {hdr("Host", "[::2]:8080")};
    ck_assert_str_eq(match_h("GET", "/", h1, 1), "v6");
    ck_assert_str_eq(match_h("GET", "/", h2, 1), "-");
}
END_TEST

START_TEST(headers_all_present_exact_values)
{
    static struct sl_header_match want[] = {{"X-Api-Version", "2"}, {"X-Tier", "free"}};
    struct sl_route *r = add_route("v2", SL_MATCH_ANY, NULL);
    r->headers = want;
    r->nheaders = 2;
    add_route("other", SL_MATCH_ANY, NULL);
    struct sl_header both[] = {hdr("x-api-version", "2"), hdr("X-TIER", "free")};
    struct sl_header one[] = {hdr("X-Api-Version", "2")};
    struct sl_header wrong[] = {hdr("X-Api-Version", "2"), hdr("X-Tier", "Free")};
    struct sl_header longer[] = {hdr("X-Api-Version", "22"), hdr("X-Tier", "free")};
    struct sl_header repeated[] = {hdr("X-Tier", "paid"), hdr("X-Api-Version", "2"),
                                   hdr("X-Tier", "free")};
    ck_assert_str_eq(match_h("GET", "/", both, 2), "v2");
    ck_assert_str_eq(match_h("GET", "/", one, 1), "other");
    ck_assert_str_eq(match_h("GET", "/", wrong, 2), "other");
    ck_assert_str_eq(match_h("GET", "/", longer, 2), "other");
    ck_assert_str_eq(match_h("GET", "/", repeated, 3), "v2");
}
END_TEST

START_TEST(all_conditions_together)
{
    static char *methods[] = {"POST"};
    static struct sl_header_match want[] = {{"X-Api-Version", "2"}};
    struct sl_route *r = add_route("login", SL_MATCH_PREFIX, "/api/login");
    r->methods = methods;
    r->nmethods = 1;
    r->host = "api.example.com";
    r->headers = want;
    r->nheaders = 1;
    struct sl_header ok[] = {hdr("Host", "api.example.com"), hdr("X-Api-Version", "2")};
    struct sl_header nohdr[] = {hdr("Host", "api.example.com")};
    ck_assert_str_eq(match_h("POST", "/api/login", ok, 2), "login");
    ck_assert_str_eq(match_h("GET", "/api/login", ok, 2), "-");
    ck_assert_str_eq(match_h("POST", "/api/other", ok, 2), "-");
    ck_assert_str_eq(match_h("POST", "/api/login", nohdr, 1), "-");
}
END_TEST

/* The predicate names the first condition not met, in the order the matcher tests them. */
START_TEST(route_test_names_the_first_condition_not_met)
{
    static char *methods[] = {"POST"};
    static struct sl_header_match want[] = {{"X-Tenant", "a"}, {"X-Api-Version", "2"}};
    struct sl_route *r = add_route("login", SL_MATCH_PREFIX, "/api/login");
    r->methods = methods;
    r->nmethods = 1;
    r->host = "api.example.com";
    r->headers = want;
    r->nheaders = 2;
    struct sl_header hs[] = {hdr("X-Tenant", "a"), hdr("X-Api-Version", "3")};
    struct sl_request post = {"POST", 4, "/api/login", 10, hs, 2, NULL, NULL, 0};
    struct sl_request get = {"GET", 3, "/api/login", 10, hs, 2, NULL, NULL, 0};
    const char *host = "api.example.com";
    size_t missing = 99;

    ck_assert_int_eq(sl_route_test(r, &get, "/x", 2, "other", 5, NULL), SL_ROUTE_MISS_PATH);
    ck_assert_int_eq(sl_route_test(r, &post, NULL, 0, host, 15, NULL), SL_ROUTE_MISS_PATH);
    ck_assert_int_eq(sl_route_test(r, &get, "/api/login", 10, "other", 5, NULL),
                     SL_ROUTE_MISS_METHOD);
    ck_assert_int_eq(sl_route_test(r, &post, "/api/login", 10, "other", 5, NULL),
                     SL_ROUTE_MISS_HOST);
    ck_assert_int_eq(sl_route_test(r, &post, "/api/login", 10, NULL, 0, NULL), SL_ROUTE_MISS_HOST);
    ck_assert_int_eq(sl_route_test(r, &post, "/api/login", 10, host, 15, &missing),
                     SL_ROUTE_MISS_HEADER);
    ck_assert_uint_eq(missing, 1);
    hs[1] = hdr("X-Api-Version", "2");
    ck_assert_int_eq(sl_route_test(r, &post, "/api/login/x", 12, host, 15, &missing),
                     SL_ROUTE_MATCHES);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("route_match");
    TCase *tc = tcase_create("core");
    /* Compiling a Hyperscan database for the index takes a while on a loaded machine. */
    tcase_set_timeout(tc, 60);
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_add_test(tc, first_match_in_file_order);
    tcase_add_test(tc, exact_path);
    tcase_add_test(tc, prefix_is_segment_aware);
    tcase_add_test(tc, root_prefix_matches_everything_with_a_path);
    tcase_add_test(tc, regex_on_normalised_path);
    tcase_add_test(tc, methods_case_sensitive);
    tcase_add_test(tc, host_case_and_port_ignored);
    tcase_add_test(tc, host_ipv6_literal);
    tcase_add_test(tc, headers_all_present_exact_values);
    tcase_add_test(tc, all_conditions_together);
    tcase_add_test(tc, route_test_names_the_first_condition_not_met);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
