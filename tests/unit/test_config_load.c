/* sl_cfg_load() on good input: a full configuration read field by field, the defaults,
 * normalised matches, redacted JSON (passwords, the admin token), reference counts, ${VAR}
 * expansion. The addresses written as URLs are test_config_urls.c's. */
#include "support/config_fixture.h"

static const char full[] =
    "listen: \"${SL_TEST_LISTEN:-127.0.0.1:8081}\"\n"
    "workers: 3\n"
    "admin:\n"
    "  listen: \"[::1]:9902\"\n"
    "upstream:\n"
    "  url: \"unix:/run/app.sock\"\n"
    "  connect_timeout: 250ms\n"
    "  timeout: 1m\n"
    "  keepalive: 0\n"
    "client:\n"
    "  header_timeout: 5s\n"
    "  idle_timeout: 1h\n"
    "  max_header_bytes: 32k\n"
    "  max_body_bytes: 1g\n"
    "  max_connections: 20\n"
    "  underscores_in_headers: reject\n"
    "  upgrades: [WebSocket, my-proto]\n"
    "  http2: false\n"
    "  http2_max_streams: 1000\n"
    "trusted_proxies: [10.0.0.0/8, \"::1\"]\n"
    "exempt:\n"
    "  - 192.168.0.0/16\n"
    "redis:\n"
    "  url: \"redis://app:s%40cret@10.0.0.5:6380/2\"\n"
    "  timeout: 20ms\n"
    "  key_prefix: \"rl:\"\n"
    "  deny_cache: 0\n"
    "failure_mode: local\n"
    "memory:\n"
    "  max_keys: 5000\n"
    "  max_bytes: 16m\n"
    "response:\n"
    "  status: 503\n"
    "  headers: draft\n"
    "  grpc_status: 14\n"
    "access_log: /var/log/sluice.log\n"
    "log_level: debug\n"
    "routes:\n"
    "  - name: login\n"
    "    match:\n"
    "      path: /api/login\n"
    "      methods: [post, Get]\n"
    "      host: API.Example.com:8443\n"
    "      headers:\n"
    "        X-Api-Version: \"2\"\n"
    "        X-Tenant: acme\n"
    "    shadow: true\n"
    "    limits:\n"
    "      - name: per_ip\n"
    "        algorithm: sliding_window\n"
    "        rate: 5/1m\n"
    "        key: client_ip\n"
    "        store: memory\n"
    "      - name: per_key\n"
    "        algorithm: token_bucket\n"
    "        rate: 100/s\n"
    "        key: [\"header:X-Api-Key\", method, \"query:k\", \"cookie:sid\", path, host, route]\n"
    "        shadow: true\n"
    "  - name: users\n"
    "    match:\n"
    "      path_regex: \"^/users/[0-9]+$\"\n"
    "    limits:\n"
    "      - name: smooth\n"
    "        algorithm: leaky_bucket\n"
    "        rate: 10/250ms\n"
    "        burst: 7\n"
    "        delay: false\n"
    "      - name: lb_default\n"
    "        algorithm: leaky_bucket\n"
    "        rate: 1/s\n"
    "  - name: rest\n"
    "    match:\n"
    "      path_prefix: /\n"
    "    limits: []\n"
    "  - name: any\n";

START_TEST(full_config_round_trips)
{
    unsetenv("SL_TEST_LISTEN");
    struct sl_config *cfg = load_ok(full);

    ck_assert_str_eq(cfg->file, path);
    ck_assert_int_eq(atomic_load(&cfg->refs), 1);
    ck_assert_str_eq(cfg->listeners[0].addr.text, "127.0.0.1:8081");
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->listeners[0].addr.ss;
    ck_assert_int_eq(sin->sin_family, AF_INET);
    ck_assert_int_eq(ntohs(sin->sin_port), 8081);
    ck_assert_uint_eq(cfg->workers, 3);
    ck_assert(!cfg->workers_auto);
    ck_assert(cfg->admin_enabled);
    ck_assert_int_eq(cfg->admin_listen.ss.ss_family, AF_INET6);
    ck_assert_str_eq(cfg->admin_listen.text, "[::1]:9902");

    ck_assert_str_eq(cfg->upstream.url, "unix:/run/app.sock");
    ck_assert_int_eq(cfg->upstream.addr.ss.ss_family, AF_UNIX);
    ck_assert_str_eq(((struct sockaddr_un *)&cfg->upstream.addr.ss)->sun_path, "/run/app.sock");
    ck_assert_uint_eq(cfg->upstream.connect_timeout_ms, 250);
    ck_assert_uint_eq(cfg->upstream.timeout_ms, 60000);
    ck_assert_uint_eq(cfg->upstream.keepalive, 0);

    ck_assert_uint_eq(cfg->client.header_timeout_ms, 5000);
    ck_assert_uint_eq(cfg->client.idle_timeout_ms, 3600000);
    ck_assert_uint_eq(cfg->client.max_header_bytes, 32768);
    ck_assert_uint_eq(cfg->client.max_body_bytes, 1ULL << 30);
    ck_assert_uint_eq(cfg->client.max_connections, 20);
    ck_assert_int_eq(cfg->client.underscores_in_headers, SL_UNDERSCORES_REJECT);
    ck_assert_uint_eq(cfg->client.nupgrades, 2);
    ck_assert_str_eq(cfg->client.upgrades[0], "websocket");
    ck_assert_str_eq(cfg->client.upgrades[1], "my-proto");
    ck_assert(!cfg->client.http2);
    ck_assert_uint_eq(cfg->client.http2_max_streams, 1000);

    ck_assert_uint_eq(cfg->trusted_proxies.count, 2);
    ck_assert_uint_eq(cfg->trusted_proxies.items[0].prefix, 8);
    ck_assert_int_eq(cfg->trusted_proxies.items[1].net.family, AF_INET6);
    ck_assert_uint_eq(cfg->exempt.count, 1);
    ck_assert_uint_eq(cfg->exempt.items[0].prefix, 16);

    ck_assert(cfg->redis.enabled);
    ck_assert_str_eq(cfg->redis.url, "redis://app:s%40cret@10.0.0.5:6380/2");
    ck_assert_str_eq(cfg->redis.host, "10.0.0.5");
    ck_assert_int_eq(cfg->redis.port, 6380);
    ck_assert_ptr_null(cfg->redis.unix_path);
    ck_assert_str_eq(cfg->redis.user, "app");
    ck_assert_str_eq(cfg->redis.password, "s@cret");
    ck_assert_int_eq(cfg->redis.db, 2);
    ck_assert_uint_eq(cfg->redis.timeout_ms, 20);
    ck_assert_str_eq(cfg->redis.key_prefix, "rl:");
    ck_assert_uint_eq(cfg->redis.deny_cache, 0);

    ck_assert_int_eq(cfg->failure_mode, SL_FAILURE_LOCAL);
    ck_assert_uint_eq(cfg->memory_max_keys, 5000);
    ck_assert_uint_eq(cfg->memory_max_bytes, 16u << 20);
    ck_assert_int_eq(cfg->response_status, 503);
    ck_assert_int_eq(cfg->response_headers, SL_HEADERS_DRAFT);
    ck_assert_int_eq(cfg->response_grpc_status, 14);
    ck_assert_int_eq(cfg->access_log, SL_ACCESS_LOG_FILE);
    ck_assert_str_eq(cfg->access_log_path, "/var/log/sluice.log");
    ck_assert_int_eq(cfg->log_level, SL_LOG_DEBUG);

    ck_assert_uint_eq(cfg->nroutes, 4);
    ck_assert_uint_eq(cfg->nlimits, 4);

    const struct sl_route *r = &cfg->routes[0];
    ck_assert_str_eq(r->name, "login");
    ck_assert_uint_eq(r->index, 0);
    ck_assert_int_eq(r->path_match, SL_MATCH_PATH);
    ck_assert_str_eq(r->path, "/api/login");
    ck_assert_uint_eq(r->nmethods, 2);
    ck_assert_str_eq(r->methods[0], "POST");
    ck_assert_str_eq(r->methods[1], "GET");
    ck_assert_str_eq(r->host, "api.example.com");
    ck_assert_uint_eq(r->nheaders, 2);
    ck_assert_str_eq(r->headers[0].name, "X-Api-Version");
    ck_assert_str_eq(r->headers[0].value, "2");
    ck_assert_str_eq(r->headers[1].name, "X-Tenant");
    ck_assert_str_eq(r->headers[1].value, "acme");
    ck_assert(r->shadow);
    ck_assert_uint_eq(r->nlimits, 2);

    const struct sl_limit *l = &r->limits[0];
    ck_assert_str_eq(l->name, "per_ip");
    ck_assert_ptr_eq(l->route, r);
    ck_assert_ptr_eq(l->alg, sl_algorithm_find("sliding_window"));
    ck_assert_uint_eq(l->count, 5);
    ck_assert_uint_eq(l->period_us, 60000000);
    ck_assert_str_eq(l->rate_text, "5/1m");
    ck_assert_uint_eq(l->nkeys, 1);
    ck_assert_int_eq(l->keys[0].kind, SL_KEY_CLIENT_IP);
    ck_assert_ptr_null(l->keys[0].name);
    ck_assert_int_eq(l->store, SL_STORE_MEMORY);
    ck_assert_uint_eq(l->burst, 0);
    ck_assert_uint_eq(l->index, 0);
    ck_assert(!l->shadow);

    l = &r->limits[1];
    ck_assert_str_eq(l->name, "per_key");
    ck_assert_ptr_eq(l->alg, sl_algorithm_find("token_bucket"));
    ck_assert_uint_eq(l->burst, 100); /* token_bucket: burst defaults to N */
    ck_assert(l->shadow);
    ck_assert_int_eq(l->store, SL_STORE_REDIS); /* the default when redis is configured */
    ck_assert_uint_eq(l->index, 1);
    ck_assert_uint_eq(l->nkeys, 7);
    ck_assert_int_eq(l->keys[0].kind, SL_KEY_HEADER);
    ck_assert_str_eq(l->keys[0].name, "X-Api-Key");
    ck_assert_uint_eq(l->keys[0].name_len, 9);
    ck_assert_int_eq(l->keys[1].kind, SL_KEY_METHOD);
    ck_assert_int_eq(l->keys[2].kind, SL_KEY_QUERY);
    ck_assert_str_eq(l->keys[2].name, "k");
    ck_assert_int_eq(l->keys[3].kind, SL_KEY_COOKIE);
    ck_assert_str_eq(l->keys[3].name, "sid");
    ck_assert_int_eq(l->keys[4].kind, SL_KEY_PATH);
    ck_assert_int_eq(l->keys[5].kind, SL_KEY_HOST);
    ck_assert_int_eq(l->keys[6].kind, SL_KEY_ROUTE);

    r = &cfg->routes[1];
    ck_assert_uint_eq(r->index, 1);
    ck_assert_int_eq(r->path_match, SL_MATCH_REGEX);
    ck_assert_str_eq(r->path, "^/users/[0-9]+$");
    ck_assert_int_eq(regexec(&r->regex, "/users/42", 0, NULL, 0), 0);
    ck_assert_int_eq(regexec(&r->regex, "/users/x", 0, NULL, 0), REG_NOMATCH);
    ck_assert_uint_eq(r->nmethods, 0);
    ck_assert_ptr_null(r->host);
    ck_assert(!r->shadow);
    l = &r->limits[0];
    ck_assert_uint_eq(l->count, 10);
    ck_assert_uint_eq(l->period_us, 250000);
    ck_assert_uint_eq(l->burst, 7);
    ck_assert(!l->delay);
    ck_assert_uint_eq(l->index, 2);
    ck_assert_int_eq(l->keys[0].kind, SL_KEY_CLIENT_IP); /* the default key */
    l = &r->limits[1];
    ck_assert_uint_eq(l->burst, 0); /* leaky_bucket: burst defaults to 0 */
    ck_assert(l->delay);
    ck_assert_uint_eq(l->index, 3);

    ck_assert_int_eq(cfg->routes[2].path_match, SL_MATCH_PREFIX);
    ck_assert_str_eq(cfg->routes[2].path, "/");
    ck_assert_uint_eq(cfg->routes[2].nlimits, 0);
    ck_assert_int_eq(cfg->routes[3].path_match, SL_MATCH_ANY);
    ck_assert_ptr_null(cfg->routes[3].path);

    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(defaults)
{
    struct sl_config *cfg = load_ok(UPSTREAM "routes: []\n");

    ck_assert_str_eq(cfg->listeners[0].addr.text, "0.0.0.0:8080");
    ck_assert(cfg->workers_auto);
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    ck_assert_uint_eq(cfg->workers, cpus > 0 ? (unsigned)cpus : 1);
    ck_assert(cfg->admin_enabled);
    ck_assert_str_eq(cfg->admin_listen.text, "127.0.0.1:9901");
    ck_assert(cfg->admin_top);
    ck_assert_ptr_null(cfg->admin_token);
    ck_assert(!cfg->admin_metrics_auth);
    ck_assert_str_eq(cfg->upstream.url, "http://127.0.0.1:3000");
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->upstream.addr.ss;
    ck_assert_int_eq(ntohs(sin->sin_port), 3000);
    ck_assert_uint_eq(cfg->upstream.connect_timeout_ms, 2000);
    ck_assert_uint_eq(cfg->upstream.timeout_ms, 60000);
    ck_assert_uint_eq(cfg->upstream.keepalive, 64);
    ck_assert_uint_eq(cfg->client.header_timeout_ms, 10000);
    ck_assert_uint_eq(cfg->client.idle_timeout_ms, 75000);
    ck_assert_uint_eq(cfg->client.max_header_bytes, 16384);
    ck_assert_uint_eq(cfg->client.max_body_bytes, 0);
    ck_assert_uint_eq(cfg->client.max_connections, 10000);
    ck_assert_int_eq(cfg->client.underscores_in_headers, SL_UNDERSCORES_DROP);
    ck_assert_uint_eq(cfg->client.nupgrades, 1);
    ck_assert_str_eq(cfg->client.upgrades[0], "websocket");
    ck_assert(cfg->client.http2);
    ck_assert_uint_eq(cfg->client.http2_max_streams, 128);
    ck_assert_uint_eq(cfg->trusted_proxies.count, 0);
    ck_assert_uint_eq(cfg->exempt.count, 0);
    ck_assert(!cfg->redis.enabled);
    ck_assert_int_eq(cfg->failure_mode, SL_FAILURE_OPEN);
    ck_assert_uint_eq(cfg->memory_max_keys, 1000000);
    ck_assert_uint_eq(cfg->memory_max_bytes, 64u << 20);
    ck_assert_int_eq(cfg->response_status, 429);
    ck_assert_int_eq(cfg->response_headers, SL_HEADERS_BOTH);
    ck_assert_int_eq(cfg->response_grpc_status, 8);
    ck_assert_int_eq(cfg->access_log, SL_ACCESS_LOG_STDOUT);
    ck_assert_int_eq(cfg->log_level, SL_LOG_INFO);
    ck_assert_uint_eq(cfg->nroutes, 0);
    ck_assert_uint_eq(cfg->nlimits, 0);
    ck_assert(!cfg->paths.case_insensitive && !cfg->paths.strip_path_parameters);
    ck_assert(!cfg->paths.decode_slash && !cfg->paths.ignore_trailing_slash);
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(admin_off_localhost_and_memory_store)
{
    struct sl_config *cfg =
        load_ok("admin: {listen: \"off\", top: false}\n"
                "upstream: {url: \"http://localhost:3000/\"}\n"
                "access_log: \"off\"\n"
                "routes:\n"
                "  - name: a\n"
                "    limits: [{name: x, algorithm: fixed_window, rate: 1/s}]\n");
    ck_assert(!cfg->admin_enabled);
    ck_assert(!cfg->admin_top);
    ck_assert_int_eq(cfg->access_log, SL_ACCESS_LOG_OFF);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&cfg->upstream.addr.ss;
    ck_assert_uint_eq(ntohl(sin->sin_addr.s_addr), 0x7f000001);
    ck_assert_int_eq(cfg->routes[0].limits[0].store, SL_STORE_MEMORY);
    ck_assert_uint_eq(cfg->routes[0].limits[0].burst, 0);
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(match_path_and_host_held_normalised)
{
    /* Requests are compared in normalised form, so the file's spelling must not matter. */
    struct sl_config *cfg =
        load_ok("upstream: {url: \"http://127.0.0.1:3000\"}\n"
                "routes:\n"
                "  - name: a\n"
                "    match: {path: \"/api//x/../%6Cogin\", host: \"API.Example.com.:8080\"}\n"
                "  - name: b\n"
                "    match: {path_prefix: \"/v1/./users\"}\n");
    ck_assert_str_eq(cfg->routes[0].path, "/api/login");
    ck_assert_str_eq(cfg->routes[0].host, "api.example.com");
    ck_assert_str_eq(cfg->routes[1].path, "/v1/users");
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(paths_rules_fold_the_configured_matches)
{
    /* The file's paths are folded by the same rules as requests, whatever their spelling. */
    struct sl_config *cfg = load_ok(UPSTREAM "paths:\n"
                                             "  case_insensitive: true\n"
                                             "  strip_path_parameters: true\n"
                                             "  decode_slash: true\n"
                                             "  ignore_trailing_slash: true\n"
                                             "routes:\n"
                                             "  - name: a\n"
                                             "    match: {path: \"/API%2FLogin;v=1/\"}\n"
                                             "  - name: b\n"
                                             "    match: {path_prefix: \"/V1/\"}\n"
                                             "  - name: c\n"
                                             "    match: {path_regex: \"^/Users/[0-9]+$\"}\n"
                                             "  - name: root\n"
                                             "    match: {path_prefix: /}\n");
    ck_assert(cfg->paths.case_insensitive && cfg->paths.strip_path_parameters);
    ck_assert(cfg->paths.decode_slash && cfg->paths.ignore_trailing_slash);
    ck_assert_str_eq(cfg->routes[0].path, "/api/login");
    ck_assert_str_eq(cfg->routes[1].path, "/v1");
    ck_assert_str_eq(cfg->routes[3].path, "/");
    /* Requests arrive lower-cased, so the pattern ignores case. */
    ck_assert_int_eq(regexec(&cfg->routes[2].regex, "/users/42", 0, NULL, 0), 0);
    char *json = NULL;
    ck_assert_int_eq(sl_cfg_to_json(cfg, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"paths\":{\"case_insensitive\":true,"
                                       "\"strip_path_parameters\":true,\"decode_slash\":true,"
                                       "\"ignore_trailing_slash\":true}"));
    free(json);
    sl_cfg_unref(cfg);

    /* Without the rules, case counts and the file's spelling is only normalised. */
    cfg = load_ok(UPSTREAM "routes:\n"
                           "  - name: a\n"
                           "    match: {path: \"/API%2FLogin;v=1/\"}\n"
                           "  - name: c\n"
                           "    match: {path_regex: \"^/Users/[0-9]+$\"}\n");
    ck_assert_str_eq(cfg->routes[0].path, "/API%2FLogin;v=1/");
    ck_assert_int_ne(regexec(&cfg->routes[1].regex, "/users/42", 0, NULL, 0), 0);
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(json_redacts_passwords)
{
    struct sl_config *cfg = load_ok(full);
    char *json = NULL;
    ck_assert_int_eq(sl_cfg_to_json(cfg, &json), 0);
    ck_assert_ptr_null(strstr(json, "cret"));
    ck_assert_ptr_nonnull(strstr(json, "\"url\":\"redis://app:***@10.0.0.5:6380/2\""));
    ck_assert_ptr_nonnull(strstr(json, "\"password\":\"***\""));
    ck_assert_ptr_nonnull(strstr(json, "\"path_regex\":\"^/users/[0-9]+$\""));
    ck_assert_ptr_nonnull(
        strstr(json, "\"key\":[\"header:X-Api-Key\",\"method\",\"query:k\",\"cookie:sid\""));
    ck_assert_ptr_nonnull(strstr(json, "\"trusted_proxies\":[\"10.0.0.0/8\",\"::1/128\"]"));
    ck_assert_ptr_nonnull(
        strstr(json, "\"max_connections\":20,\"underscores_in_headers\":\"reject\","
                     "\"upgrades\":[\"websocket\",\"my-proto\"],\"http2\":false,"
                     "\"http2_max_streams\":1000}"));
    ck_assert_ptr_nonnull(
        strstr(json, "\"response\":{\"status\":503,\"headers\":\"draft\",\"grpc_status\":14}"));
    ck_assert_int_eq(json[0], '{');
    ck_assert_int_eq(json[strlen(json) - 1], '}');
    free(json);
    sl_cfg_unref(cfg);
}
END_TEST

/* The token comes from the environment as any scalar does, and never appears in /config. */
START_TEST(admin_token_from_the_environment_redacted_in_json)
{
    char *json = NULL;

    setenv("SL_TEST_ADMIN_TOKEN", "t0k-en_~+/=", 1);
    struct sl_config *cfg = load_ok("admin:\n  token: \"${SL_TEST_ADMIN_TOKEN}\"\n"
                                    "  metrics_auth: true\n" UPSTREAM "routes: []\n");
    ck_assert_str_eq(cfg->admin_token, "t0k-en_~+/=");
    ck_assert(cfg->admin_metrics_auth);
    ck_assert_int_eq(sl_cfg_to_json(cfg, &json), 0);
    ck_assert_ptr_null(strstr(json, "t0k"));
    ck_assert_ptr_nonnull(strstr(json, "\"top\":true,\"token\":\"***\",\"metrics_auth\":true}"));
    free(json);
    sl_cfg_unref(cfg);

    /* Set but empty: no token, as when the key is absent. */
    setenv("SL_TEST_ADMIN_TOKEN", "", 1);
    cfg = load_ok("admin: {token: \"${SL_TEST_ADMIN_TOKEN}\"}\n" UPSTREAM "routes: []\n");
    ck_assert_ptr_null(cfg->admin_token);
    ck_assert_int_eq(sl_cfg_to_json(cfg, &json), 0);
    ck_assert_ptr_nonnull(strstr(json, "\"token\":null,\"metrics_auth\":false}"));
    free(json);
    sl_cfg_unref(cfg);
    unsetenv("SL_TEST_ADMIN_TOKEN");
}
END_TEST

START_TEST(refcount)
{
    struct sl_config *cfg = load_ok(UPSTREAM "routes: []\n");
    ck_assert_ptr_eq(sl_cfg_ref(cfg), cfg);
    ck_assert_int_eq(atomic_load(&cfg->refs), 2);
    sl_cfg_unref(cfg);
    ck_assert_int_eq(atomic_load(&cfg->refs), 1);
    sl_cfg_unref(cfg);
    sl_cfg_unref(NULL);
}
END_TEST

START_TEST(env_default_and_set)
{
    setenv("SL_TEST_LISTEN", "127.0.0.1:7000", 1);
    struct sl_config *cfg =
        load_ok("listen: ${SL_TEST_LISTEN:-127.0.0.1:8081}\n" UPSTREAM "routes: []\n");
    ck_assert_str_eq(cfg->listeners[0].addr.text, "127.0.0.1:7000");
    sl_cfg_unref(cfg);
    unsetenv("SL_TEST_LISTEN");
}
END_TEST

START_TEST(shutdown_drain_delay)
{
    struct sl_config *cfg = load_ok(UPSTREAM "routes: []\n");
    ck_assert_uint_eq(cfg->shutdown_drain_delay_ms, 0);
    sl_cfg_unref(cfg);
    cfg = load_ok(UPSTREAM "shutdown:\n  drain_delay: 5s\nroutes: []\n");
    ck_assert_uint_eq(cfg->shutdown_drain_delay_ms, 5000);
    sl_cfg_unref(cfg);
}
END_TEST

START_TEST(reload_watch)
{
    struct sl_config *cfg = load_ok(UPSTREAM "routes: []\n");
    ck_assert(!cfg->reload_watch);
    ck_assert_uint_eq(cfg->reload_debounce_ms, 500);
    sl_cfg_unref(cfg);
    const char *text = UPSTREAM "reload:\n  watch: true\n  debounce: 200ms\nroutes: []\n";
    cfg = load_ok(text);
    ck_assert(cfg->reload_watch);
    ck_assert_uint_eq(cfg->reload_debounce_ms, 200);
    /* What the watch compares the file on disk with: the bytes read, before ${VAR}. */
    uint8_t digest[SL_SHA256_LEN];
    struct sl_sha256 ctx;
    sl_sha256_init(&ctx);
    sl_sha256_update(&ctx, text, strlen(text));
    sl_sha256_final(&ctx, digest);
    ck_assert_mem_eq(cfg->file_digest, digest, SL_SHA256_LEN);
    sl_cfg_unref(cfg);
}
END_TEST

/* The image sets SLUICE_ADMIN_LISTEN so that probes reach the admin listener from outside
 * the container; without it the shipped file keeps the admin listener on loopback. */
START_TEST(shipped_admin_listen_follows_the_environment)
{
    char *errors = NULL;
    unsetenv("SLUICE_ADMIN_LISTEN");
    struct sl_config *cfg = sl_cfg_load(SLUICE_SOURCE_DIR "/conf/sluice.yaml", &errors);
    ck_assert_msg(cfg != NULL, "%s", errors ? errors : "");
    ck_assert_str_eq(cfg->admin_listen.text, "127.0.0.1:9901");
    sl_cfg_unref(cfg);

    setenv("SLUICE_ADMIN_LISTEN", "0.0.0.0:9901", 1);
    cfg = sl_cfg_load(SLUICE_SOURCE_DIR "/conf/sluice.yaml", &errors);
    unsetenv("SLUICE_ADMIN_LISTEN");
    ck_assert_msg(cfg != NULL, "%s", errors ? errors : "");
    ck_assert_str_eq(cfg->admin_listen.text, "0.0.0.0:9901");
    sl_cfg_unref(cfg);
}
END_TEST

/* The image's admin listener is protected as soon as the container gets SLUICE_ADMIN_TOKEN;
 * without it the shipped file has no token. */
START_TEST(shipped_admin_token_follows_the_environment)
{
    char *errors = NULL;
    unsetenv("SLUICE_ADMIN_TOKEN");
    struct sl_config *cfg = sl_cfg_load(SLUICE_SOURCE_DIR "/conf/sluice.yaml", &errors);
    ck_assert_msg(cfg != NULL, "%s", errors ? errors : "");
    ck_assert_ptr_null(cfg->admin_token);
    ck_assert(!cfg->admin_metrics_auth);
    sl_cfg_unref(cfg);

    setenv("SLUICE_ADMIN_TOKEN", "0123456789abcdef", 1);
    cfg = sl_cfg_load(SLUICE_SOURCE_DIR "/conf/sluice.yaml", &errors);
    unsetenv("SLUICE_ADMIN_TOKEN");
    ck_assert_msg(cfg != NULL, "%s", errors ? errors : "");
    ck_assert_str_eq(cfg->admin_token, "0123456789abcdef");
    sl_cfg_unref(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config_load");
    TCase *tc = tcase_create("load");
    tcase_add_test(tc, full_config_round_trips);
    tcase_add_test(tc, defaults);
    tcase_add_test(tc, shipped_admin_listen_follows_the_environment);
    tcase_add_test(tc, shipped_admin_token_follows_the_environment);
    tcase_add_test(tc, shutdown_drain_delay);
    tcase_add_test(tc, reload_watch);
    tcase_add_test(tc, admin_off_localhost_and_memory_store);
    tcase_add_test(tc, match_path_and_host_held_normalised);
    tcase_add_test(tc, paths_rules_fold_the_configured_matches);
    tcase_add_test(tc, json_redacts_passwords);
    tcase_add_test(tc, admin_token_from_the_environment_redacted_in_json);
    tcase_add_test(tc, refcount);
    tcase_add_test(tc, env_default_and_set);
    suite_add_tcase(s, tc);
    return run_config_suite(s);
}
