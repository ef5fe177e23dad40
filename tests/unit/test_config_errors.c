/* sl_cfg_load() on bad input: one test per class of error, with its exact message and
 * its file:line:col position. */
#include "support/config_fixture.h"

START_TEST(error_unknown_key)
{
    ASSERT_ERRORS("upstream:\n  url: http://127.0.0.1:3000\n  timeuot: 5s\nroutes: []\n",
                  "t.yaml:3:3: upstream.timeuot: unknown key; expected one of url, "
                  "connect_timeout, timeout, keepalive, tls\n");
    ASSERT_ERRORS(UPSTREAM "shutdown:\n  drain_delay: soon\nroutes: []\n",
                  "t.yaml:4:16: shutdown.drain_delay: expected a duration such as \"250ms\", "
                  "\"2s\", \"5m\", \"1h\" or \"1d\", got \"soon\"\n");
    ASSERT_ERRORS(UPSTREAM "admin:\n  route_histograms: maybe\nroutes: []\n",
                  "t.yaml:4:21: admin.route_histograms: expected true or false, got \"maybe\"\n");
    ASSERT_ERRORS(UPSTREAM "admin:\n  top: off\nroutes: []\n",
                  "t.yaml:4:8: admin.top: expected true or false, got \"off\"\n");
    ASSERT_ERRORS(UPSTREAM "reload:\n  watch: yes please\nroutes: []\n",
                  "t.yaml:4:10: reload.watch: expected true or false, got \"yes please\"\n");
    ASSERT_ERRORS(UPSTREAM "reload:\n  wacth: true\nroutes: []\n",
                  "t.yaml:4:3: reload.wacth: unknown key; expected one of watch, debounce\n");
}
END_TEST

START_TEST(error_wrong_type)
{
    ASSERT_ERRORS("upstream: http://127.0.0.1:3000\nroutes: {}\n",
                  "t.yaml:1:11: upstream: expected a mapping, got \"http://127.0.0.1:3000\"\n"
                  "t.yaml:2:9: routes: expected a list, got a mapping\n");
}
END_TEST

START_TEST(error_duplicate_route_name)
{
    ASSERT_ERRORS(UPSTREAM "routes:\n  - name: api\n  - name: api\n",
                  "t.yaml:5:11: routes[1].name: duplicate route name \"api\"; routes[0] has it "
                  "already\n");
}
END_TEST

START_TEST(error_duplicate_limit_name)
{
    ASSERT_ERRORS(UPSTREAM "routes:\n"
                           "  - name: api\n"
                           "    limits:\n"
                           "      - {name: a, algorithm: fixed_window, rate: 1/s}\n"
                           "      - {name: a, algorithm: fixed_window, rate: 2/s}\n",
                  "t.yaml:7:16: routes[0].limits[1].name: duplicate limit name \"a\"; "
                  "routes[0].limits[0] has it already\n");
}
END_TEST

START_TEST(error_bad_duration)
{
    ASSERT_ERRORS("upstream:\n  url: http://127.0.0.1:3000\n  timeout: 10\nroutes: []\n",
                  "t.yaml:3:12: upstream.timeout: expected a duration such as \"250ms\", \"2s\", "
                  "\"5m\", \"1h\" or \"1d\", got \"10\"\n");
}
END_TEST

START_TEST(error_bad_size)
{
    ASSERT_ERRORS(UPSTREAM "client:\n  max_body_bytes: 1tb\nroutes: []\n",
                  "t.yaml:4:19: client.max_body_bytes: expected a size such as \"512\", \"16k\", "
                  "\"1m\" or \"1g\", got \"1tb\"\n");
    ASSERT_ERRORS(UPSTREAM "memory:\n  max_bytes: 16k\nroutes: []\n",
                  "t.yaml:4:14: memory.max_bytes: expected a size of at least 65536 bytes, "
                  "got \"16k\"\n");
}
END_TEST

START_TEST(error_bad_underscores_mode)
{
    ASSERT_ERRORS(UPSTREAM "client:\n  underscores_in_headers: ignore\nroutes: []\n",
                  "t.yaml:4:27: client.underscores_in_headers: expected one of drop, allow, "
                  "reject, got \"ignore\"\n");
}
END_TEST

START_TEST(error_bad_upgrades)
{
    ASSERT_ERRORS(UPSTREAM "client:\n  upgrades: [websocket, H2C, \"web socket\", tls/1.2]\n"
                           "routes: []\n",
                  "t.yaml:4:25: client.upgrades[1]: h2c is never tunnelled: its requests would "
                  "pass every limit (HTTP/2 clients are served by sluice itself)\n"
                  "t.yaml:4:30: client.upgrades[2]: expected a protocol name such as websocket, "
                  "got \"web socket\"\n"
                  "t.yaml:4:44: client.upgrades[3]: expected a protocol name such as websocket, "
                  "got \"tls/1.2\"\n");
    ASSERT_ERRORS(UPSTREAM "client:\n  upgrades: websocket\nroutes: []\n",
                  "t.yaml:4:13: client.upgrades: expected a list, got \"websocket\"\n");
}
END_TEST

START_TEST(error_bad_http2)
{
    ASSERT_ERRORS(UPSTREAM "client:\n  http2: maybe\n  http2_max_streams: 0\nroutes: []\n",
                  "t.yaml:4:10: client.http2: expected true or false, got \"maybe\"\n"
                  "t.yaml:5:22: client.http2_max_streams: expected an integer from 1 to 65535, "
                  "got \"0\"\n");
    ASSERT_ERRORS(UPSTREAM "client:\n  http2_max_streams: 65536\nroutes: []\n",
                  "t.yaml:4:22: client.http2_max_streams: expected an integer from 1 to 65535, "
                  "got \"65536\"\n");
    ASSERT_ERRORS(UPSTREAM "client:\n  http2_max_streams: 2147483648\nroutes: []\n",
                  "t.yaml:4:22: client.http2_max_streams: expected an integer from 1 to 65535, "
                  "got \"2147483648\"\n");
}
END_TEST

START_TEST(error_bad_rate)
{
    ASSERT_ERRORS(UPSTREAM "routes:\n"
                           "  - name: login\n"
                           "    limits:\n"
                           "      - name: per_ip\n"
                           "        algorithm: sliding_window\n"
                           "        rate: 5/1m\n"
                           "      - name: per_key\n"
                           "        algorithm: token_bucket\n"
                           "        rate: fast\n",
                  "t.yaml:11:15: routes[0].limits[1].rate: expected \"N/unit\" such as \"100/s\" "
                  "or \"5/10m\", got \"fast\"\n");
}
END_TEST

START_TEST(error_bad_cidr)
{
    ASSERT_ERRORS(UPSTREAM "trusted_proxies: [10.0.0.0/8, 10.0.0.1/8]\nroutes: []\n",
                  "t.yaml:3:31: trusted_proxies[1]: expected a CIDR such as \"10.0.0.0/8\", "
                  "\"2001:db8::/32\" or an address, with no host bits set beyond the prefix, got "
                  "\"10.0.0.1/8\"\n");
}
END_TEST

START_TEST(error_bad_regex)
{
    regex_t re;
    char why[256], expected[512];
    int rc = regcomp(&re, "^/users/([", REG_EXTENDED | REG_NOSUB);
    ck_assert_int_ne(rc, 0);
    regerror(rc, &re, why, sizeof why);
    snprintf(expected, sizeof expected,
             "t.yaml:6:19: routes[0].match.path_regex: expected a POSIX extended regular "
             "expression, got \"^/users/([\": %s\n",
             why);
    ASSERT_ERRORS(UPSTREAM "routes:\n"
                           "  - name: users\n"
                           "    match:\n"
                           "      path_regex: \"^/users/([\"\n",
                  expected);
}
END_TEST

START_TEST(error_regex_outside_the_shared_dialect)
{
    /* Valid POSIX ERE, but "\d" is a digit to Hyperscan and undefined to POSIX. */
    ASSERT_ERRORS(UPSTREAM "routes:\n"
                           "  - name: users\n"
                           "    match:\n"
                           "      path_regex: \"^/users/\\\\d+$\"\n",
                  "t.yaml:6:19: routes[0].match.path_regex: expected a POSIX extended regular "
                  "expression within the dialect both regex matchers share, got "
                  "\"^/users/\\d+$\": at offset 8, \"\\d\" is a Perl character class, not "
                  "POSIX ERE; write a bracket expression such as [0-9]\n");
}
END_TEST

#define URL_FORMS                                                                        \
    "\"http://host:port\", \"https://host:port\", \"h2c://host:port\" or \"h2://host:port\" "   \
    "(no path), or \"unix:/path\""

START_TEST(error_bad_url)
{
    ASSERT_ERRORS("upstream:\n  url: http://127.0.0.1:3000/api\nroutes: []\n",
                  "t.yaml:2:8: upstream.url: expected " URL_FORMS
                  ", got \"http://127.0.0.1:3000/api\"\n");
    static const char *const bad_hosts[] = {
        "http://10.0.0.256:80", "http://app_1:3000", "http://-app:3000", "http://app.:3000",
        "http://app:0",         "http://app:65536",  "http://app:x",      "h2c://app:3000/x",
        "h3://app:3000",        "h2c://",            "https://app/x",     "h2://"};
    for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
        char yaml[128], want[256];
        snprintf(yaml, sizeof yaml, "upstream:\n  url: %s\nroutes: []\n", bad_hosts[i]);
        snprintf(want, sizeof want,
                 "t.yaml:2:8: upstream.url: expected " URL_FORMS ", got \"%s\"\n",
                 bad_hosts[i]);
        ASSERT_ERRORS(yaml, want);
    }
    ASSERT_ERRORS(UPSTREAM "redis:\n  url: redis://127.0.0.1:6379/zero\nroutes: []\n",
                  "t.yaml:4:8: redis.url: expected \"redis://[user:password@]host:port/db\", "
                  "\"rediss://...\" (TLS) or \"unix:/path\" (optionally \"?db=N\"), got "
                  "\"redis://127.0.0.1:6379/zero\"\n");
    /* A URL with credentials is not echoed back. */
    ASSERT_ERRORS(UPSTREAM "redis:\n  deny_cache: lots\nroutes: []\n",
                  "t.yaml:4:15: redis.deny_cache: expected an integer from 0 to 4294967295, "
                  "got \"lots\"\n");
    ASSERT_ERRORS(UPSTREAM "redis:\n  url: redis://u:topsecret@host:99999\nroutes: []\n",
                  "t.yaml:4:8: redis.url: expected \"redis://[user:password@]host:port/db\", "
                  "\"rediss://...\" (TLS) or \"unix:/path\" (optionally \"?db=N\"), got a URL that does not parse (not "
                  "shown: it holds credentials)\n");
}
END_TEST

START_TEST(error_out_of_range)
{
    ASSERT_ERRORS(UPSTREAM "response:\n  status: 200\nroutes: []\n",
                  "t.yaml:4:11: response.status: expected an integer from 400 to 599, got "
                  "\"200\"\n");
    ASSERT_ERRORS(UPSTREAM "response:\n  grpc_status: 5\nroutes: []\n",
                  "t.yaml:4:16: response.grpc_status: expected one of 8, 14, got \"5\"\n");
    ASSERT_ERRORS(UPSTREAM "response:\n  status: 429\n  grpc_status: UNAVAILABLE\nroutes: []\n",
                  "t.yaml:5:16: response.grpc_status: expected one of 8, 14, got "
                  "\"UNAVAILABLE\"\n");
    ASSERT_ERRORS(UPSTREAM "workers: 0\nroutes: []\n",
                  "t.yaml:3:10: workers: expected \"auto\" or an integer from 1 to 1024, got "
                  "\"0\"\n");
}
END_TEST

static const char limit_head[] = UPSTREAM "routes:\n"
                                          "  - name: api\n"
                                          "    limits:\n"
                                          "      - name: a\n";

static void assert_limit_error(const char *limit_body, const char *expected)
{
    char yaml[1024];
    snprintf(yaml, sizeof yaml, "%s%s", limit_head, limit_body);
    ASSERT_ERRORS(yaml, expected);
}

START_TEST(error_rate_beyond_exact_bounds)
{
    assert_limit_error("        algorithm: sliding_window\n"
                       "        rate: 200000/s\n",
                       "t.yaml:8:15: routes[0].limits[0].rate: expected at most 100000 requests "
                       "for sliding_window (it logs each one; use sliding_window_counter for "
                       "more), got \"200000/s\"\n");
    /* 60000 timestamps are 480 KB: more than half of max_bytes 1m, one stripe. The default
     * 64m has room for the longest log, 100000. */
    ASSERT_ERRORS(UPSTREAM "memory:\n  max_bytes: 1m\n"
                           "routes:\n  - name: api\n    limits:\n      - name: a\n"
                           "        algorithm: sliding_window\n        rate: 60000/s\n",
                  "t.yaml:10:15: routes[0].limits[0].rate: expected a per-key state the memory "
                  "store has room for (sliding_window: 480016 bytes, at most 458720 with "
                  "memory.max_bytes 1048576; raise memory.max_bytes), got \"60000/s\"\n");
    assert_limit_error("        algorithm: fixed_window\n"
                       "        rate: 2000000000/s\n",
                       "t.yaml:8:15: routes[0].limits[0].rate: expected at most 1000000000 "
                       "requests per at most 366d, got \"2000000000/s\"\n");
}
END_TEST

START_TEST(error_burst_on_fixed_window)
{
    assert_limit_error("        algorithm: fixed_window\n"
                       "        rate: 5/s\n"
                       "        burst: 10\n",
                       "t.yaml:9:16: routes[0].limits[0].burst: burst is not supported by "
                       "fixed_window (only by token_bucket, leaky_bucket)\n");
}
END_TEST

START_TEST(error_cost_on_sliding_window)
{
    assert_limit_error("        algorithm: sliding_window\n"
                       "        rate: 5/s\n"
                       "        cost: 2\n",
                       "t.yaml:9:15: routes[0].limits[0].cost: cost is not supported by "
                       "sliding_window: it admits whole requests (only fixed_window, "
                       "sliding_window_counter, token_bucket count units)\n");
}
END_TEST

START_TEST(error_bad_cost)
{
    assert_limit_error("        algorithm: fixed_window\n"
                       "        rate: 5/s\n"
                       "        cost: \"header:\"\n",
                       "t.yaml:9:15: routes[0].limits[0].cost: expected a number of units from 0 "
                       "to 4294967296, or \"header:NAME\", got \"header:\"\n");
    assert_limit_error("        algorithm: token_bucket\n"
                       "        rate: 5/s\n"
                       "        cost: 6\n",
                       "t.yaml:9:15: routes[0].limits[0].cost: expected at most the limit's "
                       "capacity (burst 5), got 6: such a request could never be admitted\n");
}
END_TEST

START_TEST(error_bad_charge)
{
    assert_limit_error("        algorithm: token_bucket\n"
                       "        rate: 5/s\n"
                       "        charge: \"response_json:usage..total\"\n",
                       "t.yaml:9:17: routes[0].limits[0].charge: expected "
                       "\"response_header:NAME\" or \"response_json:PATH\" (a dot path of at "
                       "most 16 keys such as usage.total_tokens), got "
                       "\"response_json:usage..total\"\n");
    assert_limit_error("        algorithm: leaky_bucket\n"
                       "        rate: 5/s\n"
                       "        charge: \"response_header:X-Used\"\n",
                       "t.yaml:9:17: routes[0].limits[0].charge: charge is not supported by "
                       "leaky_bucket: it admits whole requests (only fixed_window, "
                       "sliding_window_counter, token_bucket count units)\n");
}
END_TEST

START_TEST(error_delay_on_token_bucket)
{
    assert_limit_error("        algorithm: token_bucket\n"
                       "        rate: 5/s\n"
                       "        delay: false\n",
                       "t.yaml:9:16: routes[0].limits[0].delay: delay is not supported by "
                       "token_bucket (only by leaky_bucket)\n");
}
END_TEST

START_TEST(error_missing_upstream)
{
    ASSERT_ERRORS("routes: []\n", "t.yaml:1:1: upstream: required key is missing; expected a "
                                  "mapping with url such as \"http://127.0.0.1:3000\"\n");
}
END_TEST

START_TEST(error_missing_routes)
{
    ASSERT_ERRORS(UPSTREAM,
                  "t.yaml:1:1: routes: required key is missing; expected a list of routes\n");
}
END_TEST

START_TEST(error_not_yaml)
{
    ASSERT_ERRORS("upstream: [a, b\nroutes: x\n",
                  "t.yaml:2:7: did not find expected ',' or ']' while parsing a flow sequence\n");
    ASSERT_ERRORS("just some text\n", "t.yaml:1:1: expected a mapping with upstream and routes, "
                                      "got \"just some text\"\n");
}
END_TEST

START_TEST(error_unreadable_file)
{
    char *errors = NULL;
    ck_assert_ptr_null(sl_cfg_load("/nonexistent/sluice.yaml", &errors));
    ck_assert_str_eq(errors, "/nonexistent/sluice.yaml: cannot open: No such file or directory\n");
    free(errors);
}
END_TEST

START_TEST(error_unset_env_var)
{
    unsetenv("SL_TEST_UPSTREAM");
    ASSERT_ERRORS("upstream:\n  url: ${SL_TEST_UPSTREAM}\nroutes: []\n",
                  "t.yaml:2:8: upstream.url: environment variable SL_TEST_UPSTREAM is not set "
                  "and has no default\n");
}
END_TEST

/* The token is a secret: messages place it and say what is wrong, never what it is. */
START_TEST(error_admin_token)
{
    ASSERT_ERRORS(UPSTREAM "admin:\n  metrics_auth: true\nroutes: []\n",
                  "t.yaml:4:17: admin.metrics_auth: true needs admin.token, the token /metrics "
                  "would ask for; got no token\n");
    setenv("SL_TEST_ADMIN_TOKEN", "", 1);
    ASSERT_ERRORS(UPSTREAM "admin:\n  token: \"${SL_TEST_ADMIN_TOKEN}\"\n  metrics_auth: true\n"
                           "routes: []\n",
                  "t.yaml:5:17: admin.metrics_auth: true needs admin.token, the token /metrics "
                  "would ask for; got an empty token\n");
    unsetenv("SL_TEST_ADMIN_TOKEN");
    /* An unset variable is reported once, at the token. */
    ASSERT_ERRORS(UPSTREAM "admin:\n  token: \"${SL_TEST_ADMIN_TOKEN}\"\n  metrics_auth: true\n"
                           "routes: []\n",
                  "t.yaml:4:10: admin.token: environment variable SL_TEST_ADMIN_TOKEN is not set "
                  "and has no default\n");
    ASSERT_ERRORS(UPSTREAM "admin:\n  token: \"s3cret token\"\nroutes: []\n",
                  "t.yaml:4:10: admin.token: expected visible ASCII characters only (a bearer "
                  "token), got a space at character 7\n");
    ASSERT_ERRORS(UPSTREAM "admin:\n  token: \"s3cret\\ttoken\"\n  metrics_auth: true\n"
                           "routes: []\n",
                  "t.yaml:4:10: admin.token: expected visible ASCII characters only (a bearer "
                  "token), got a control character at character 7\n");
    ASSERT_ERRORS(UPSTREAM "admin:\n  token: \"s3cr\u00e9t\"\nroutes: []\n",
                  "t.yaml:4:10: admin.token: expected visible ASCII characters only (a bearer "
                  "token), got a non-ASCII byte at character 5\n");
    ASSERT_ERRORS(UPSTREAM "admin:\n  token: abc\n  metrics_auth: yes\nroutes: []\n",
                  "t.yaml:5:17: admin.metrics_auth: expected true or false, got \"yes\"\n");
}
END_TEST

START_TEST(error_unknown_algorithm)
{
    assert_limit_error("        algorithm: gcra\n"
                       "        rate: 5/s\n",
                       "t.yaml:7:20: routes[0].limits[0].algorithm: expected one of fixed_window, "
                       "sliding_window, sliding_window_counter, token_bucket, leaky_bucket, got "
                       "\"gcra\"\n");
}
END_TEST

START_TEST(error_bad_key_source)
{
    assert_limit_error("        algorithm: fixed_window\n"
                       "        rate: 5/s\n"
                       "        key: [client_ip, \"header:\"]\n",
                       "t.yaml:9:26: routes[0].limits[0].key[1]: expected a key source "
                       "(client_ip, header:NAME, query:NAME, cookie:NAME, method, path, host or "
                       "route), got \"header:\"\n");
}
END_TEST

START_TEST(error_redis_topology)
{
    ASSERT_ERRORS(UPSTREAM "redis:\n  url: redis://h:1\n  cluster: [\"h:2\"]\nroutes: []\n",
                  "t.yaml:5:12: redis.cluster: expected only one of url, cluster and sentinel, "
                  "got url as well\n");
    ASSERT_ERRORS(UPSTREAM "redis:\n  cluster: []\nroutes: []\n",
                  "t.yaml:4:12: redis.cluster: expected at least one \"host:port\", got an empty "
                  "list\n");
    ASSERT_ERRORS(UPSTREAM "redis:\n  cluster: [\"h\", \"redis://h:1/2\"]\nroutes: []\n",
                  "t.yaml:4:13: redis.cluster[0]: expected \"host:port\" or "
                  "\"redis://[user:password@]host:port\", got \"h\"\n"
                  "t.yaml:4:18: redis.cluster[1]: expected no database number (Redis Cluster has "
                  "only database 0), got 2\n");
    ASSERT_ERRORS(UPSTREAM "redis:\n  sentinel: {addresses: [\"s:1\"]}\nroutes: []\n",
                  "t.yaml:4:13: redis.sentinel.master: expected the master's name as the "
                  "sentinels know it, got nothing\n");
    ASSERT_ERRORS(UPSTREAM "redis:\n  sentinel: {master: m}\nroutes: []\n",
                  "t.yaml:4:13: redis.sentinel.addresses: expected a list of sentinel "
                  "\"host:port\", got nothing\n");
}
END_TEST

START_TEST(error_store_redis_without_redis)
{
    assert_limit_error("        algorithm: fixed_window\n"
                       "        rate: 5/s\n"
                       "        store: redis\n",
                       "t.yaml:9:16: routes[0].limits[0].store: expected memory, got \"redis\", "
                       "which needs a top-level redis block\n");
}
END_TEST

START_TEST(error_paths_section)
{
    ASSERT_ERRORS(UPSTREAM "paths:\n"
                           "  case_sensitive: false\n"
                           "  decode_slash: yes\n"
                           "routes: []\n",
                  "t.yaml:4:3: paths.case_sensitive: unknown key; expected one of "
                  "case_insensitive, strip_path_parameters, decode_slash, ignore_trailing_slash\n"
                  "t.yaml:5:17: paths.decode_slash: expected true or false, got \"yes\"\n");
    ASSERT_ERRORS(UPSTREAM "paths: [case_insensitive]\nroutes: []\n",
                  "t.yaml:3:8: paths: expected a mapping, got a list\n");
}
END_TEST

START_TEST(error_several_in_file_order)
{
    ASSERT_ERRORS("listen: nowhere\n"
                  "workers: 0\n"
                  "upstream:\n"
                  "  keepalive: lots\n"
                  "  url: http://127.0.0.1:3000\n",
                  "t.yaml:1:1: routes: required key is missing; expected a list of routes\n"
                  "t.yaml:1:9: listen: expected \"host:port\", \"[ipv6]:port\" or \"unix:/path\" "
                  "with a numeric host or localhost, got \"nowhere\"\n"
                  "t.yaml:2:10: workers: expected \"auto\" or an integer from 1 to 1024, got "
                  "\"0\"\n"
                  "t.yaml:4:14: upstream.keepalive: expected an integer from 0 to 100000, got "
                  "\"lots\"\n");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config_errors");
    TCase *tc = tcase_create("errors");
    tcase_add_test(tc, error_unknown_key);
    tcase_add_test(tc, error_wrong_type);
    tcase_add_test(tc, error_duplicate_route_name);
    tcase_add_test(tc, error_duplicate_limit_name);
    tcase_add_test(tc, error_bad_duration);
    tcase_add_test(tc, error_bad_size);
    tcase_add_test(tc, error_bad_underscores_mode);
    tcase_add_test(tc, error_bad_upgrades);
    tcase_add_test(tc, error_bad_http2);
    tcase_add_test(tc, error_bad_rate);
    tcase_add_test(tc, error_bad_cidr);
    tcase_add_test(tc, error_bad_regex);
    tcase_add_test(tc, error_regex_outside_the_shared_dialect);
    tcase_add_test(tc, error_bad_url);
    tcase_add_test(tc, error_out_of_range);
    tcase_add_test(tc, error_rate_beyond_exact_bounds);
    tcase_add_test(tc, error_burst_on_fixed_window);
    tcase_add_test(tc, error_delay_on_token_bucket);
    tcase_add_test(tc, error_missing_upstream);
    tcase_add_test(tc, error_missing_routes);
    tcase_add_test(tc, error_not_yaml);
    tcase_add_test(tc, error_unreadable_file);
    tcase_add_test(tc, error_unset_env_var);
    tcase_add_test(tc, error_admin_token);
    tcase_add_test(tc, error_unknown_algorithm);
    tcase_add_test(tc, error_bad_key_source);
    tcase_add_test(tc, error_store_redis_without_redis);
    tcase_add_test(tc, error_redis_topology);
    tcase_add_test(tc, error_paths_section);
    tcase_add_test(tc, error_several_in_file_order);
    tcase_add_test(tc, error_cost_on_sliding_window);
    tcase_add_test(tc, error_bad_cost);
    tcase_add_test(tc, error_bad_charge);
    suite_add_tcase(s, tc);
    return run_config_suite(s);
}
