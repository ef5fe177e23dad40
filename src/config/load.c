/* sl_cfg_load(): reads the file, parses it with libyaml, and builds a validated snapshot
 * from the top-level sections. */
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"
#include "sluice/config_parse.h"
#include "sluice/route_index.h"
#include "sluice/sha256.h"

/* A configuration is a few KiB; a bound keeps a wrong path (a log, a device) from being
 * read whole into memory. */
#define MAX_FILE_BYTES (16u << 20)

static int read_file(struct sl_loader *ld, char **out, size_t *out_len)
{
    struct stat st;
    char *data = NULL;
    size_t len = 0, cap = 0;
    int fd = open(ld->file, O_RDONLY | O_CLOEXEC);

    if (fd < 0) {
        sl_ld_report(ld, 0, 0, "cannot open: %s", strerror(errno));
        goto fail;
    }
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        sl_ld_report(ld, 0, 0, "cannot open: %s", strerror(EISDIR));
        goto fail;
    }
    for (;;) {
        if (len == cap) {
            cap = cap ? cap * 2 : 4096;
            if (cap > MAX_FILE_BYTES + 1)
                cap = MAX_FILE_BYTES + 1;
            char *bigger = len == cap ? NULL : realloc(data, cap);
            if (!bigger) {
                sl_ld_report(ld, 0, 0, "cannot read: %s",
                             len == cap ? "larger than 16 MiB" : strerror(ENOMEM));
                goto fail;
            }
            data = bigger;
        }
        ssize_t n = read(fd, data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            sl_ld_report(ld, 0, 0, "cannot read: %s", strerror(errno));
            goto fail;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    close(fd);
    *out = data;
    *out_len = len;
    return 0;

fail:
    if (fd >= 0)
        close(fd);
    free(data);
    return -1;
}

static void yaml_error(struct sl_loader *ld, const yaml_parser_t *parser, const char *text,
                       size_t len)
{
    size_t line = parser->problem_mark.line + 1, col = parser->problem_mark.column + 1;

    /* Reader errors (bad encoding) carry a byte offset instead of a mark. */
    if (parser->error == YAML_READER_ERROR) {
        line = col = 1;
        for (size_t i = 0; i < parser->problem_offset && i < len; i++, col++)
            if (text[i] == '\n') {
                line++;
                col = 0;
            }
    }
    char value[32] = "";
    if (parser->error == YAML_READER_ERROR && parser->problem_value >= 0)
        snprintf(value, sizeof value, " (#x%X)", (unsigned)parser->problem_value);
    sl_ld_report(ld, line, col, "%s%s%s%s", parser->problem ? parser->problem : "not YAML", value,
                 parser->context ? " " : "", parser->context ? parser->context : "");
}

/* Parses the first document into ld->doc; a second document is an error. */
static int parse_yaml(struct sl_loader *ld, const char *text, size_t len)
{
    yaml_parser_t parser;
    yaml_document_t extra;

    if (!yaml_parser_initialize(&parser)) {
        sl_ld_report(ld, 0, 0, "out of memory");
        return -1;
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &ld->doc)) {
        yaml_error(ld, &parser, text, len);
        yaml_parser_delete(&parser);
        return -1;
    }
    if (!yaml_parser_load(&parser, &extra)) {
        yaml_error(ld, &parser, text, len);
    } else {
        yaml_node_t *root = yaml_document_get_root_node(&extra);
        if (root) {
            sl_ld_report(ld, extra.start_mark.line + 1, extra.start_mark.column + 1,
                         "expected one YAML document, found a second one");
        }
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&parser);
    ld->nnodes = (size_t)(ld->doc.nodes.top - ld->doc.nodes.start);
    ld->expanded = calloc(ld->nnodes ? ld->nnodes : 1, sizeof *ld->expanded);
    ld->failed = calloc(ld->nnodes ? ld->nnodes : 1, 1);
    if (!ld->expanded || !ld->failed) {
        sl_ld_report(ld, 0, 0, "out of memory");
    }
    return 0;
}

static struct sl_config *new_defaults(void)
{
    struct sl_config *cfg = calloc(1, sizeof *cfg);

    if (!cfg)
        return NULL;
    atomic_init(&cfg->refs, 1);
    cfg->workers_auto = true;
    cfg->admin_enabled = true;
    cfg->admin_route_histograms = true;
    cfg->admin_top = true;
    cfg->upstream.connect_timeout_ms = 2000;
    cfg->upstream.timeout_ms = 60000;
    cfg->upstream.keepalive = 64;
    cfg->client.header_timeout_ms = 10000;
    cfg->client.idle_timeout_ms = 75000;
    cfg->client.max_header_bytes = 16 * 1024;
    cfg->client.max_body_bytes = 0;
    cfg->client.max_connections = 10000;
    cfg->client.underscores_in_headers = SL_UNDERSCORES_DROP;
    cfg->client.upgrades = calloc(1, sizeof *cfg->client.upgrades);
    if (cfg->client.upgrades && (cfg->client.upgrades[0] = strdup("websocket")))
        cfg->client.nupgrades = 1;
    cfg->client.http2 = true;
    cfg->client.http2_max_streams = 128;
    cfg->redis.timeout_ms = 50;
    cfg->redis.deny_cache = 100000;
    cfg->redis.tls.verify = true;
    cfg->upstream.tls.verify = true;
    cfg->failure_mode = SL_FAILURE_OPEN;
    cfg->memory_max_keys = 1000000;
    cfg->memory_max_bytes = 64ull << 20;
    cfg->reload_debounce_ms = 500;
    cfg->response_status = 429;
    cfg->response_headers = SL_HEADERS_BOTH;
    cfg->response_grpc_status = 8;
    cfg->access_log = SL_ACCESS_LOG_STDOUT;
    cfg->log_level = SL_LOG_INFO;
    cfg->redis.key_prefix = strdup("sluice:");
    if (!cfg->redis.key_prefix || !cfg->client.nupgrades ||
        !(cfg->listeners = calloc(1, sizeof *cfg->listeners)) ||
        (cfg->nlisteners = 1, sl_parse_sockaddr("0.0.0.0:8080", &cfg->listeners[0].addr) < 0) ||
        sl_parse_sockaddr("127.0.0.1:9901", &cfg->admin_listen) < 0) {
        sl_cfg_free(cfg);
        return NULL;
    }
    return cfg;
}

static void load_workers(struct sl_loader *ld, const yaml_node_t *root, struct sl_config *cfg)
{
    static const char expected[] = "\"auto\" or an integer from 1 to 1024";
    char got[96];
    yaml_node_t *v = sl_ld_get(ld, root, "workers");
    const char *text = v ? sl_ld_scalar(ld, v, "workers", expected) : NULL;
    unsigned long n = 0;

    if (!text || strcmp(text, "auto") == 0)
        return;
    for (const char *p = text; *p && n <= 1024; p++)
        n = (*p >= '0' && *p <= '9') ? n * 10 + (unsigned long)(*p - '0') : 9999;
    if (n < 1 || n > 1024) {
        sl_ld_error(ld, v, "workers", "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return;
    }
    cfg->workers_auto = false;
    cfg->workers = (unsigned)n;
}

/* What makes `text` unusable as a bearer token, with its position in `*at`, or NULL. The token
 * travels in a header field ("Authorization: Bearer TOKEN") and is compared byte for byte: a
 * space or a control character in it could never be sent and matched. */
static const char *token_problem(const char *text, size_t *at)
{
    for (size_t i = 0; text[i]; i++) {
        unsigned char c = (unsigned char)text[i];
        *at = i + 1;
        if (c == ' ')
            return "a space";
        if (c < ' ' || c == 0x7f)
            return "a control character";
        if (c > 0x7f)
            return "a non-ASCII byte";
    }
    return NULL;
}

/* The token is a secret: no message shows it. */
static void load_admin_token(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg)
{
    yaml_node_t *v = sl_ld_get(ld, node, "token");
    const char *text = v ? sl_ld_scalar(ld, v, "admin.token", "a string") : NULL;
    const char *problem = NULL;
    size_t at = 0;

    if (text && (problem = token_problem(text, &at)))
        sl_ld_error(ld, v, "admin.token",
                    "expected visible ASCII characters only (a bearer token), got %s at "
                    "character %zu",
                    problem, at);
    else if (text && *text)
        cfg->admin_token = sl_ld_strdup(ld, v, text);
    /* metrics_auth without a token would leave /metrics open while the file says it is not:
     * refused rather than guessed. */
    bool reported = v && (!text || problem);
    if (sl_ld_bool(ld, node, "admin", "metrics_auth", &cfg->admin_metrics_auth) &&
        cfg->admin_metrics_auth && !cfg->admin_token && !reported)
        sl_ld_error(ld, sl_ld_get(ld, node, "metrics_auth"), "admin.metrics_auth",
                    "true needs admin.token, the token /metrics would ask for; got %s",
                    v ? "an empty token" : "no token");
}

static void load_admin(struct sl_loader *ld, const yaml_node_t *root, struct sl_config *cfg)
{
    static const char *const keys[] = {"listen", "route_histograms", "top",
                                       "token",  "metrics_auth",     NULL};
    yaml_node_t *node = sl_ld_get(ld, root, "admin");
    char got[96];

    if (!node || !sl_ld_mapping(ld, node, "admin", keys))
        return;
    sl_ld_bool(ld, node, "admin", "route_histograms", &cfg->admin_route_histograms);
    sl_ld_bool(ld, node, "admin", "top", &cfg->admin_top);
    load_admin_token(ld, node, cfg);
    yaml_node_t *v = sl_ld_get(ld, node, "listen");
    if (!v)
        return;
    const char *text = sl_ld_scalar(ld, v, "admin.listen", "an address or \"off\"");
    if (text && strcmp(text, "off") == 0) {
        cfg->admin_enabled = false;
        sl_sockaddr_deinit(&cfg->admin_listen);
        return;
    }
    if (!sl_ld_sockaddr(ld, node, "admin", "listen", &cfg->admin_listen))
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (sl_sockaddr_same(&cfg->admin_listen, &cfg->listeners[i].addr))
            sl_ld_error(ld, v, "admin.listen", "expected an address other than listen's, got %s",
                        sl_ld_quote(cfg->admin_listen.text, got, sizeof got));
}

/* RFC 9110 5.6.2: the characters of a token, which an Upgrade protocol name is. */
static bool is_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              strchr("!#$%&'*+-.^_`|~", *s)))
            return false;
    return true;
}

/* client.upgrades: protocol names, compared without case, so kept in lower case. */
static void load_upgrades(struct sl_loader *ld, const yaml_node_t *client, struct sl_config *cfg)
{
    struct sl_client_config *c = &cfg->client;
    yaml_node_t *v = sl_ld_get(ld, client, "upgrades");
    char path[SL_LD_PATH_MAX], got[96];
    long n = v ? sl_ld_sequence(ld, v, "client.upgrades") : -1;

    if (n < 0)
        return;
    for (size_t i = 0; i < c->nupgrades; i++)
        free(c->upgrades[i]);
    c->nupgrades = 0;
    char **names = realloc(c->upgrades, (size_t)(n ? n : 1) * sizeof *names);
    if (!names) {
        sl_ld_error(ld, v, "client.upgrades", "out of memory");
        return;
    }
    c->upgrades = names;
    for (size_t i = 0; i < (size_t)n; i++) {
        yaml_node_t *item = sl_ld_item(ld, v, i);
        sl_ld_path_index(path, "client.upgrades", i);
        const char *text = sl_ld_scalar(ld, item, path, "a protocol name such as websocket");
        if (!text)
            continue;
        if (!is_token(text) || strchr(text, '/')) {
            sl_ld_error(ld, item, path, "expected a protocol name such as websocket, got %s",
                        sl_ld_quote(text, got, sizeof got));
            continue;
        }
        if (strcasecmp(text, "h2c") == 0) {
            /* An application that speaks HTTP/2 after the 101 would take any number of
             * requests through the tunnel, none of them seen by a limit. */
            sl_ld_error(ld, item, path,
                        "h2c is never tunnelled: its requests would pass every limit "
                        "(HTTP/2 clients are served by sluice itself)");
            continue;
        }
        char *name = sl_ld_strdup(ld, item, text);
        if (!name)
            continue;
        for (char *p = name; *p; p++)
            *p = (char)tolower((unsigned char)*p);
        c->upgrades[c->nupgrades++] = name;
    }
}

/* client.http2_max_streams: SETTINGS_MAX_CONCURRENT_STREAMS is a 32-bit value, but each
 * open stream holds a request's state, so a stray digit must not let one connection hold
 * millions of them. Servers advertise 100 to 128 (nginx 128, h2o and HAProxy 100); 65535
 * leaves room for any real client. */
#define HTTP2_MAX_STREAMS 65535

static void load_client(struct sl_loader *ld, const yaml_node_t *root, struct sl_config *cfg)
{
    static const char *const keys[] = {"header_timeout",
                                       "idle_timeout",
                                       "max_header_bytes",
                                       "max_body_bytes",
                                       "max_connections",
                                       "underscores_in_headers",
                                       "upgrades",
                                       "http2",
                                       "http2_max_streams",
                                       NULL};
    static const char *const underscores[] = {"drop", "allow", "reject", NULL};
    struct sl_client_config *c = &cfg->client;
    yaml_node_t *node = sl_ld_get(ld, root, "client");
    uint64_t max_conns = c->max_connections, max_streams = c->http2_max_streams;
    int choice;

    if (!node || !sl_ld_mapping(ld, node, "client", keys))
        return;
    sl_ld_duration(ld, node, "client", "header_timeout", 1, &c->header_timeout_ms);
    sl_ld_duration(ld, node, "client", "idle_timeout", 1, &c->idle_timeout_ms);
    sl_ld_size(ld, node, "client", "max_header_bytes", 1, &c->max_header_bytes);
    sl_ld_size(ld, node, "client", "max_body_bytes", 0, &c->max_body_bytes);
    if (sl_ld_uint(ld, node, "client", "max_connections", 1, 10000000, &max_conns))
        c->max_connections = (unsigned)max_conns;
    if (sl_ld_enum(ld, node, "client", "underscores_in_headers", underscores, &choice))
        c->underscores_in_headers = (enum sl_underscores)choice;
    load_upgrades(ld, node, cfg);
    sl_ld_bool(ld, node, "client", "http2", &c->http2);
    if (sl_ld_uint(ld, node, "client", "http2_max_streams", 1, HTTP2_MAX_STREAMS, &max_streams))
        c->http2_max_streams = (uint32_t)max_streams;
}

static void load_paths(struct sl_loader *ld, const yaml_node_t *root, struct sl_config *cfg)
{
    static const char *const keys[] = {"case_insensitive", "strip_path_parameters", "decode_slash",
                                       "ignore_trailing_slash", NULL};
    struct sl_path_rules *p = &cfg->paths;
    yaml_node_t *node = sl_ld_get(ld, root, "paths");

    if (!node || !sl_ld_mapping(ld, node, "paths", keys))
        return;
    sl_ld_bool(ld, node, "paths", "case_insensitive", &p->case_insensitive);
    sl_ld_bool(ld, node, "paths", "strip_path_parameters", &p->strip_path_parameters);
    sl_ld_bool(ld, node, "paths", "decode_slash", &p->decode_slash);
    sl_ld_bool(ld, node, "paths", "ignore_trailing_slash", &p->ignore_trailing_slash);
}

static void load_small_sections(struct sl_loader *ld, const yaml_node_t *root,
                                struct sl_config *cfg)
{
    static const char *const memory_keys[] = {"max_keys", "max_bytes", NULL};
    static const char *const shutdown_keys[] = {"drain_delay", NULL};
    static const char *const reload_keys[] = {"watch", "debounce", NULL};
    static const char *const response_keys[] = {"status", "headers", "grpc_status", NULL};
    static const char *const failure_modes[] = {"open", "closed", "local", NULL};
    static const char *const header_modes[] = {"both", "draft", "legacy", "none", NULL};
    static const char *const grpc_codes[] = {"8", "14", NULL};
    static const char *const log_levels[] = {"error", "warn", "info", "debug", NULL};
    yaml_node_t *node;
    uint64_t status = (uint64_t)cfg->response_status;
    int choice;

    if (sl_ld_enum(ld, root, "", "failure_mode", failure_modes, &choice))
        cfg->failure_mode = (enum sl_failure_mode)choice;
    if ((node = sl_ld_get(ld, root, "memory")) && sl_ld_mapping(ld, node, "memory", memory_keys)) {
        sl_ld_uint(ld, node, "memory", "max_keys", 1, UINT64_MAX, &cfg->memory_max_keys);
        sl_ld_size(ld, node, "memory", "max_bytes", SL_MEMORY_MIN_BYTES, &cfg->memory_max_bytes);
    }
    if ((node = sl_ld_get(ld, root, "shutdown")) &&
        sl_ld_mapping(ld, node, "shutdown", shutdown_keys))
        sl_ld_duration(ld, node, "shutdown", "drain_delay", 0, &cfg->shutdown_drain_delay_ms);
    if ((node = sl_ld_get(ld, root, "reload")) && sl_ld_mapping(ld, node, "reload", reload_keys)) {
        sl_ld_bool(ld, node, "reload", "watch", &cfg->reload_watch);
        sl_ld_duration(ld, node, "reload", "debounce", 0, &cfg->reload_debounce_ms);
    }
    if ((node = sl_ld_get(ld, root, "response")) &&
        sl_ld_mapping(ld, node, "response", response_keys)) {
        if (sl_ld_uint(ld, node, "response", "status", 400, 599, &status))
            cfg->response_status = (int)status;
        if (sl_ld_enum(ld, node, "response", "headers", header_modes, &choice))
            cfg->response_headers = (enum sl_header_mode)choice;
        /* The two codes a gRPC client takes for "come back later": gRPC servers answer
         * RESOURCE_EXHAUSTED, Envoy UNAVAILABLE. */
        if (sl_ld_enum(ld, node, "response", "grpc_status", grpc_codes, &choice))
            cfg->response_grpc_status = atoi(grpc_codes[choice]);
    }
    if (sl_ld_enum(ld, root, "", "log_level", log_levels, &choice))
        cfg->log_level = (enum sl_log_level)choice;
    sl_ld_bool(ld, root, "", "access_log_key_fields", &cfg->access_log_key_fields);

    node = sl_ld_get(ld, root, "access_log");
    const char *text =
        node ? sl_ld_scalar(ld, node, "access_log", "\"stdout\", \"off\" or a file path") : NULL;
    if (!text)
        return;
    if (strcmp(text, "stdout") == 0) {
        cfg->access_log = SL_ACCESS_LOG_STDOUT;
    } else if (strcmp(text, "off") == 0) {
        cfg->access_log = SL_ACCESS_LOG_OFF;
    } else if (!*text) {
        sl_ld_error(ld, node, "access_log",
                    "expected \"stdout\", \"off\" or a file path, got \"\"");
    } else {
        cfg->access_log = SL_ACCESS_LOG_FILE;
        cfg->access_log_path = sl_ld_strdup(ld, node, text);
    }
}

static void load_root(struct sl_loader *ld, struct sl_config *cfg)
{
    static const char *const keys[] = {
        "listen",
        "workers",
        "admin",
        "upstream",
        "client",
        "paths",
        "trusted_proxies",
        "exempt",
        "redis",
        "failure_mode",
        "memory",
        "response",
        "access_log",
        "log_level",
        "routes",
        "shutdown",
        "reload",
        "access_log_key_fields",
        "rls",
        NULL,
    };
    yaml_node_t *root = yaml_document_get_root_node(&ld->doc);
    yaml_node_t *node;
    char got[96];

    if (!root) {
        sl_ld_report(ld, 1, 1, "expected a mapping with upstream and routes, got an empty file");
        return;
    }
    if (root->type != YAML_MAPPING_NODE) {
        sl_ld_error(ld, root, "", "expected a mapping with upstream and routes, got %s",
                    sl_ld_describe(ld, root, got, sizeof got));
        return;
    }
    sl_ld_mapping(ld, root, "", keys);
    sl_ld_listen(ld, root, cfg);
    load_workers(ld, root, cfg);
    load_admin(ld, root, cfg);
    if ((node = sl_ld_get(ld, root, "upstream")))
        sl_ld_upstream(ld, node, cfg);
    else
        sl_ld_error(ld, root, "upstream",
                    "required key is missing; expected a mapping with url such as "
                    "\"http://127.0.0.1:3000\"");
    load_client(ld, root, cfg);
    sl_ld_listen_tls(ld, root, cfg);
    /* Before routes: their paths are held folded by these rules. */
    load_paths(ld, root, cfg);
    sl_ld_cidrs(ld, root, "", "trusted_proxies", &cfg->trusted_proxies);
    sl_ld_cidrs(ld, root, "", "exempt", &cfg->exempt);
    /* Before routes: a limit's default store depends on whether redis is configured. */
    if ((node = sl_ld_get(ld, root, "redis")))
        sl_ld_redis(ld, node, cfg);
    load_small_sections(ld, root, cfg);
    if ((node = sl_ld_get(ld, root, "rls")))
        sl_ld_rls(ld, node, cfg);
    if ((node = sl_ld_get(ld, root, "routes")))
        sl_ld_routes(ld, node, cfg);
    else
        sl_ld_error(ld, root, "routes", "required key is missing; expected a list of routes");
}

/* A pattern the regex matcher refused although it passed the dialect check (a resource
 * limit), at its path_regex; else what failed. */
static void report_index_error(struct sl_loader *ld, const struct sl_route_index_error *err)
{
    char path[SL_LD_PATH_MAX];
    const yaml_node_t *routes = sl_ld_get(ld, yaml_document_get_root_node(&ld->doc), "routes");
    const yaml_node_t *route = NULL;

    if (routes && routes->type == YAML_SEQUENCE_NODE &&
        err->route < (size_t)(routes->data.sequence.items.top - routes->data.sequence.items.start))
        route = sl_ld_item(ld, routes, err->route);
    const yaml_node_t *match = route ? sl_ld_get(ld, route, "match") : NULL;
    const yaml_node_t *regex = match ? sl_ld_get(ld, match, "path_regex") : NULL;

    if (!regex) {
        sl_ld_report(ld, 0, 0, "building the route index: %s", err->message);
        return;
    }
    snprintf(path, sizeof path, "routes[%zu].match.path_regex", err->route);
    sl_ld_error(ld, regex, path, "the regex matcher refused the pattern: %s", err->message);
}

static void finish(struct sl_loader *ld, struct sl_config *cfg)
{
    if (cfg->workers_auto) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        cfg->workers = cpus > 0 ? (unsigned)cpus : 1;
    }
    for (size_t r = 0; r < cfg->nroutes; r++)
        for (size_t l = 0; l < cfg->routes[r].nlimits; l++)
            cfg->routes[r].limits[l].index = cfg->nlimits++;
    /* Here, once per snapshot, so that reloads build it off the workers' hot path. */
    struct sl_route_index_error err;
    cfg->route_index = sl_route_index_new(cfg, SL_REGEX_MATCHER_BEST, &err);
    if (!cfg->route_index)
        report_index_error(ld, &err);
    else if (sl_route_index_reserve(cfg->route_index, cfg->workers) < 0)
        sl_ld_report(ld, 0, 0, "out of memory for the route index's scratch space");
}

struct sl_config *sl_cfg_load(const char *path, char **errors)
{
    struct sl_loader ld = {.file = path};
    struct sl_config *cfg = NULL;
    struct sl_sha256 digest;
    char *text = NULL;
    size_t len = 0;
    bool parsed = false;

    if (errors)
        *errors = NULL;
    if (read_file(&ld, &text, &len) < 0)
        goto done;
    parsed = parse_yaml(&ld, text, len) == 0;
    if (!parsed || ld.nerrors)
        goto done;
    cfg = new_defaults();
    if (!cfg || !(cfg->file = strdup(path))) {
        sl_ld_report(&ld, 0, 0, "out of memory");
        goto done;
    }
    sl_sha256_init(&digest);
    sl_sha256_update(&digest, text, len);
    sl_sha256_final(&digest, cfg->file_digest);
    load_root(&ld, cfg);
    if (ld.nerrors == 0)
        finish(&ld, cfg);

done:
    if (ld.nerrors && cfg) {
        sl_cfg_free(cfg);
        cfg = NULL;
    }
    if (!cfg && errors)
        *errors = sl_ld_take_errors(&ld);
    sl_cfg_buf_deinit(&ld.errors);
    free(ld.problems);
    for (size_t i = 0; ld.expanded && i < ld.nnodes; i++)
        free(ld.expanded[i]);
    free(ld.expanded);
    free(ld.failed);
    if (parsed)
        yaml_document_delete(&ld.doc);
    free(text);
    return cfg;
}
