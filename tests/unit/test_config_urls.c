/* sl_cfg_load() on the addresses written as URLs (src/config/url.c): upstream.url's
 * forms (http://, h2c://, host names looked up by the workers) and redis.url's, with
 * Cluster and Sentinel. */
#include <limits.h>

#include "support/config_fixture.h"

START_TEST(redis_url_forms)
{
    struct sl_config *cfg =
        load_ok(UPSTREAM "redis: {url: \"unix:/run/redis.sock?db=3\"}\nroutes: []\n");
    ck_assert_str_eq(cfg->redis.unix_path, "/run/redis.sock");
    ck_assert_ptr_null(cfg->redis.host);
    ck_assert_int_eq(cfg->redis.db, 3);
    ck_assert_uint_eq(cfg->redis.timeout_ms, 50);
    ck_assert_str_eq(cfg->redis.key_prefix, "sluice:");
    ck_assert_uint_eq(cfg->redis.deny_cache, 100000);
    sl_cfg_unref(cfg);

    cfg = load_ok(UPSTREAM "redis:\nroutes: []\n");
    ck_assert(cfg->redis.enabled);
    ck_assert_str_eq(cfg->redis.host, "127.0.0.1");
    ck_assert_int_eq(cfg->redis.port, 6379);
    ck_assert_int_eq(cfg->redis.db, 0);
    sl_cfg_unref(cfg);

    cfg = load_ok(UPSTREAM "redis: {url: \"redis://:pw@[::1]\"}\nroutes: []\n");
    ck_assert_str_eq(cfg->redis.host, "::1");
    ck_assert_int_eq(cfg->redis.port, 6379);
    ck_assert_ptr_null(cfg->redis.user);
    ck_assert_str_eq(cfg->redis.password, "pw");
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(redis_cluster_and_sentinel)
{
    struct sl_config *cfg =
        load_ok(UPSTREAM "redis:\n"
                         "  cluster: [\"10.0.0.1:7000\", \"redis://:pw@h2:7001\","
                         " \"[::1]:7002\"]\n"
                         "routes: []\n");
    ck_assert_int_eq(cfg->redis.mode, SL_REDIS_MODE_CLUSTER);
    ck_assert_uint_eq(cfg->redis.naddrs, 3);
    ck_assert_str_eq(cfg->redis.addrs[0].host, "10.0.0.1");
    ck_assert_int_eq(cfg->redis.addrs[0].port, 7000);
    ck_assert_str_eq(cfg->redis.addrs[1].host, "h2");
    ck_assert_str_eq(cfg->redis.addrs[2].host, "::1");
    ck_assert_int_eq(cfg->redis.addrs[2].port, 7002);
    /* Credentials on one seed are the cluster's. */
    ck_assert_str_eq(cfg->redis.password, "pw");
    ck_assert_ptr_null(cfg->redis.url);
    char *json = NULL;
    ck_assert_int_eq(sl_cfg_to_json(cfg, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"mode\":\"cluster\",\"url\":null,\"addresses\":[{"
                                       "\"host\":\"10.0.0.1\",\"port\":7000}"));
    ck_assert_ptr_null(strstr(json, "pw"));
    free(json);
    sl_cfg_unref(cfg);

    cfg = load_ok(UPSTREAM "redis:\n"
                           "  sentinel: {master: mymaster, addresses: [\"s1:26379\", "
                           "\"10.0.0.6:26380\"]}\n"
                           "routes: []\n");
    ck_assert_int_eq(cfg->redis.mode, SL_REDIS_MODE_SENTINEL);
    ck_assert_str_eq(cfg->redis.sentinel_master, "mymaster");
    ck_assert_uint_eq(cfg->redis.naddrs, 2);
    ck_assert_str_eq(cfg->redis.addrs[0].host, "s1");
    ck_assert_int_eq(cfg->redis.addrs[1].port, 26380);
    ck_assert_ptr_null(cfg->redis.password);
    sl_cfg_unref(cfg);
}
END_TEST

/* A self-signed certificate `name`.crt with its key `name`.key in the temporary directory;
 * their paths. */
static void make_cert(const char *name, char crt[PATH_MAX], char key[PATH_MAX])
{
    char cmd[3 * PATH_MAX];
    snprintf(crt, PATH_MAX, "%s/%s.crt", dir, name);
    snprintf(key, PATH_MAX, "%s/%s.key", dir, name);
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-subj /CN=%s -days 1 -keyout %s -out %s 2>/dev/null",
             name, key, crt);
    ck_assert_int_eq(system(cmd), 0);
}

/* rediss:// and redis.tls: TLS on for the URL's server, or for every node of a cluster or of
 * a sentinel setup; the files are read at load time, and each problem names its file. */
START_TEST(redis_tls)
{
    struct sl_config *cfg =
        load_ok(UPSTREAM "redis: {url: \"rediss://:pw@cache.example:6380/2\"}\nroutes: []\n");
    ck_assert(cfg->redis.tls.enabled);
    ck_assert(cfg->redis.tls.verify);
    ck_assert_ptr_null(cfg->redis.tls.ca);
    ck_assert_str_eq(cfg->redis.host, "cache.example");
    ck_assert_int_eq(cfg->redis.port, 6380);
    ck_assert_int_eq(cfg->redis.db, 2);
    sl_cfg_unref(cfg);

    cfg = load_ok(UPSTREAM "redis: {url: \"redis://h:6379\"}\nroutes: []\n");
    ck_assert(!cfg->redis.tls.enabled);
    ck_assert(cfg->redis.tls.verify);
    sl_cfg_unref(cfg);

    char ca[PATH_MAX], ca_key[PATH_MAX], other[PATH_MAX], other_key[PATH_MAX], yaml[4 * PATH_MAX];
    make_cert("ca", ca, ca_key);
    make_cert("other", other, other_key);
    snprintf(yaml, sizeof yaml,
             UPSTREAM
             "redis:\n  cluster: [\"10.0.0.1:7000\"]\n"
             "  tls: {ca: \"%s\", verify: false, server_name: redis.internal, cert: \"\"}\n"
             "routes: []\n",
             ca);
    cfg = load_ok(yaml);
    ck_assert(cfg->redis.tls.enabled);
    ck_assert(!cfg->redis.tls.verify);
    ck_assert_str_eq(cfg->redis.tls.ca, ca);
    ck_assert_str_eq(cfg->redis.tls.server_name, "redis.internal");
    ck_assert_ptr_null(cfg->redis.tls.cert);
    char *json = NULL;
    ck_assert_int_eq(sl_cfg_to_json(cfg, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"verify\":false,\"server_name\":\"redis.internal\""));
    free(json);
    sl_cfg_unref(cfg);

    ASSERT_ERRORS(UPSTREAM "redis:\n  tls: {ca: /nonexistent/ca.pem}\nroutes: []\n",
                  "t.yaml:4:13: redis.tls.ca: cannot read /nonexistent/ca.pem: No such file or "
                  "directory\n");
    /* /dev/zero would keep OpenSSL's PEM reader reading for ever. */
    ASSERT_ERRORS(UPSTREAM "redis:\n  tls: {ca: /dev/zero}\nroutes: []\n",
                  "t.yaml:4:13: redis.tls.ca: expected /dev/zero to be a PEM file of at most 16 "
                  "MiB, got something else than a file\n");
    snprintf(yaml, sizeof yaml, UPSTREAM "redis:\n  tls: {ca: \"%s\"}\nroutes: []\n", ca_key);
    char *got = load_errors(yaml);
    ck_assert_ptr_nonnull(strstr(got, "redis.tls.ca: expected PEM certificates in "));
    free(got);
    ASSERT_ERRORS(UPSTREAM "redis:\n  tls: {cert: /nonexistent/c.pem}\nroutes: []\n",
                  "t.yaml:4:8: redis.tls.key: expected the client certificate's key with the "
                  "certificate, got a certificate without a key\n");
    snprintf(yaml, sizeof yaml, UPSTREAM "redis:\n  tls: {cert: \"%s\", key: \"%s\"}\nroutes: []\n",
             ca, "/nonexistent/k.pem");
    got = load_errors(yaml);
    ck_assert_ptr_nonnull(strstr(got, "redis.tls.key: cannot read /nonexistent/k.pem"));
    free(got);
    /* A certificate with another's key. */
    snprintf(yaml, sizeof yaml, UPSTREAM "redis:\n  tls: {cert: \"%s\", key: \"%s\"}\nroutes: []\n",
             ca, other_key);
    got = load_errors(yaml);
    char want[3 * PATH_MAX];
    snprintf(want, sizeof want, "redis.tls.key: %s is not the key of the certificate in %s",
             other_key, ca);
    ck_assert_msg(strstr(got, want), "%s", got);
    free(got);
    snprintf(yaml, sizeof yaml,
             UPSTREAM "redis:\n  url: rediss://127.0.0.1:6380\n  tls: {ca: \"%s\", cert: \"%s\", "
                      "key: \"%s\"}\nroutes: []\n",
             ca, ca, other_key);
    got = load_errors(yaml);
    ck_assert_ptr_nonnull(strstr(got, "is not the key of the certificate"));
    free(got);
    ASSERT_ERRORS(UPSTREAM "redis:\n  url: unix:/run/redis.sock\n  tls: {}\nroutes: []\n",
                  "t.yaml:5:8: redis.tls: expected a TCP address with TLS, got a unix socket\n");
    ASSERT_ERRORS(UPSTREAM "redis:\n  tls: {verify: maybe}\nroutes: []\n",
                  "t.yaml:4:17: redis.tls.verify: expected true or false, got \"maybe\"\n");
    unlink(ca);
    unlink(ca_key);
    unlink(other);
    unlink(other_key);
}
END_TEST

/* A host name is kept for the workers to look up; numeric hosts and localhost are resolved
 * at load time as before. */
START_TEST(upstream_tls_schemes)
{
    struct sl_config *cfg = load_ok("upstream: {url: \"https://api.example.com\"}\nroutes: []\n");
    ck_assert(cfg->upstream.tls.enabled && cfg->upstream.tls.verify && !cfg->upstream.h2);
    ck_assert_str_eq(cfg->upstream.host, "api.example.com");
    ck_assert_uint_eq(cfg->upstream.port, 443);
    ck_assert_ptr_nonnull(cfg->upstream.tls_ctx);
    sl_cfg_unref(cfg);

    cfg = load_ok("upstream: {url: \"h2://127.0.0.1:8443\", tls: {verify: false}}\n"
                  "routes: []\n");
    ck_assert(cfg->upstream.tls.enabled && !cfg->upstream.tls.verify && cfg->upstream.h2);
    ck_assert_str_eq(cfg->upstream.addr.text, "127.0.0.1:8443");
    sl_cfg_unref(cfg);

    cfg = load_ok("upstream: {url: \"h2c://127.0.0.1\"}\nroutes: []\n");
    ck_assert(!cfg->upstream.tls.enabled && cfg->upstream.h2);
    ck_assert_ptr_null(cfg->upstream.tls_ctx);
    ck_assert_str_eq(cfg->upstream.addr.text, "127.0.0.1:80");
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(upstream_host_names)
{
    struct sl_config *cfg = load_ok("upstream:\n  url: http://app:3000\nroutes: []\n");
    ck_assert_str_eq(cfg->upstream.host, "app");
    ck_assert_uint_eq(cfg->upstream.port, 3000);
    ck_assert_int_eq(cfg->upstream.addr.ss.ss_family, AF_UNSPEC);
    ck_assert_str_eq(cfg->upstream.addr.text, "app:3000");
    sl_cfg_unref(cfg);

    cfg = load_ok("upstream:\n  url: http://api.svc.cluster.local/\nroutes: []\n");
    ck_assert_str_eq(cfg->upstream.host, "api.svc.cluster.local");
    ck_assert_uint_eq(cfg->upstream.port, 80);
    sl_cfg_unref(cfg);

    cfg = load_ok("upstream:\n  url: http://localhost:3000\nroutes: []\n");
    ck_assert_ptr_null(cfg->upstream.host);
    ck_assert_int_eq(cfg->upstream.addr.ss.ss_family, AF_INET);
    sl_cfg_unref(cfg);

    /* h2c:// follows the same address rules; only the protocol differs. */
    cfg = load_ok("upstream:\n  url: h2c://127.0.0.1:50051\nroutes: []\n");
    ck_assert(cfg->upstream.h2);
    ck_assert_ptr_null(cfg->upstream.host);
    ck_assert_int_eq(cfg->upstream.addr.ss.ss_family, AF_INET);
    sl_cfg_unref(cfg);
    cfg = load_ok("upstream:\n  url: h2c://grpc.svc\nroutes: []\n");
    ck_assert(cfg->upstream.h2);
    ck_assert_str_eq(cfg->upstream.host, "grpc.svc");
    ck_assert_uint_eq(cfg->upstream.port, 80);
    sl_cfg_unref(cfg);
    cfg = load_ok("upstream:\n  url: http://localhost:3000\nroutes: []\n");
    ck_assert(!cfg->upstream.h2);
    sl_cfg_unref(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config_urls");
    TCase *tc = tcase_create("urls");
    tcase_add_test(tc, upstream_host_names);
    tcase_add_test(tc, upstream_tls_schemes);
    tcase_add_test(tc, redis_url_forms);
    tcase_add_test(tc, redis_cluster_and_sentinel);
    tcase_add_test(tc, redis_tls);
    suite_add_tcase(s, tc);
    return run_config_suite(s);
}
