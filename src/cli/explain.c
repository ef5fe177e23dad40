/* `sluice explain [-c FILE] [--peer ADDR] [-H 'Name: value']... [--json] METHOD TARGET`
 * (SPEC.md section 1): one request described on the command line, run through the same
 * functions the engine runs (normalisation, route tests, client address, key builder), and
 * never through a store. */
#include "explain.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "sluice/cli.h"
#include "sluice/rates.h"
#include "store_key.h"

#define MAX_HEADERS 64

static const char usage[] =
    "usage: sluice explain [-c FILE] [--peer ADDR] [-H 'Name: value']... [--json] METHOD TARGET\n"
    "       sluice explain [-c FILE] --rls DOMAIN key=value[,key=value]...\n"
    "\n"
    "Prints what sluice would do with one request under the configuration, and why: the\n"
    "normalised path, each route tried and why it did or did not match, the client address\n"
    "and which X-Forwarded-For entry gave it, and for each limit of the matched route its key\n"
    "as the store holds it, store, algorithm, rate, burst and shadow. No store is touched.\n"
    "\n"
    "  -c FILE           configuration file (default: $SLUICE_CONFIG, else\n"
    "                    /etc/sluice/sluice.yaml)\n"
    "  --peer ADDR       the address the request comes from: an IPv4 or IPv6 address, or\n"
    "                    \"unix\" for a unix-socket client (default 127.0.0.1)\n"
    "  -H 'Name: value'  a request header; repeat for more (Host, X-Forwarded-For, Cookie...)\n"
    "  --json            one JSON object instead of text\n"
    "  METHOD TARGET     the request line: GET /api/login?x=1 (or an absolute-form target)\n"
    "  --rls DOMAIN      instead, one descriptor of Envoy's rate limit service: which limit of\n"
    "                    the rls files it matches and why, and the key its counter is held under\n"
    "\n"
    "Exit status: 0 explained, 1 configuration error, 2 usage error.\n";

struct options {
    const char *config;
    const char *peer;
    bool json;
    struct sl_header headers[MAX_HEADERS];
    size_t nheaders;
    const char *method, *target;
    const char *rls; /* --rls DOMAIN */
};

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "sluice explain: %s%s\n%s", what, arg ? arg : "", usage);
    return SL_EXIT_USAGE;
}

static bool is_token(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && !(c && strchr("!#$%&'*+-.^_`|~", c)))
            return false;
    }
    return true;
}

/* "Name: value" as a header line would carry it: a token, a colon, optional whitespace. */
static int add_header(struct options *o, const char *arg)
{
    const char *colon = strchr(arg, ':');

    if (!colon || !is_token(arg, (size_t)(colon - arg)) || o->nheaders == MAX_HEADERS)
        return -1;
    const char *v = colon + 1, *end = arg + strlen(arg);
    while (*v == ' ' || *v == '\t')
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    o->headers[o->nheaders++] =
        (struct sl_header){arg, (size_t)(colon - arg), v, (size_t)(end - v)};
    return 0;
}

/* Returns -1 to go on, else the exit status. */
static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option long_options[] = {
        {"peer", required_argument, NULL, 'p'},
        {"json", no_argument, NULL, 'j'},
        {"rls", required_argument, NULL, 'r'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    o->peer = "127.0.0.1";
    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":c:H:h", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o->config = optarg;
            break;
        case 'p':
            o->peer = optarg;
            break;
        case 'j':
            o->json = true;
            break;
        case 'r':
            o->rls = optarg;
            break;
        case 'H':
            if (add_header(o, optarg) < 0)
                return usage_error("expected -H 'Name: value' (at most 64), got ", optarg);
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case ':':
            return usage_error("an option needs an argument: ", argv[optind - 1]);
        default:
            return usage_error("unknown option ", argv[optind - 1]);
        }
    }
    if (o->rls) {
        if (argc - optind != 1)
            return usage_error("expected one descriptor key=value,... after --rls DOMAIN", NULL);
        o->target = argv[optind];
        return -1;
    }
    if (argc - optind != 2)
        return usage_error("expected METHOD and TARGET", NULL);
    o->method = argv[optind];
    o->target = argv[optind + 1];
    if (!is_token(o->method, strlen(o->method)))
        return usage_error("expected a method such as GET, got ", o->method);
    if (!*o->target)
        return usage_error("expected a request target such as /api/login, got an empty one", NULL);
    return -1;
}

/* The peer as the listener would report it: an IP address or a unix socket. */
static int parse_peer(const char *text, struct sockaddr_storage *ss)
{
    memset(ss, 0, sizeof *ss);
    if (strcmp(text, "unix") == 0) {
        ss->ss_family = AF_UNIX;
        return 0;
    }
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1) {
        in4->sin_family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        return 0;
    }
    return -1;
}

const char *sl_explain_source_name(const struct sl_key_source *src, char *buf, size_t size)
{
    static const char *const names[] = {
        [SL_KEY_CLIENT_IP] = "client_ip", [SL_KEY_HEADER] = "header:", [SL_KEY_QUERY] = "query:",
        [SL_KEY_COOKIE] = "cookie:",      [SL_KEY_METHOD] = "method",  [SL_KEY_PATH] = "path",
        [SL_KEY_HOST] = "host",           [SL_KEY_ROUTE] = "route",
        [SL_KEY_TLS_CLIENT_SUBJECT] = "tls_client_subject",
    };
    snprintf(buf, size, "%s%s", names[src->kind], src->name ? src->name : "");
    return buf;
}

/* The key of one limit, exactly as the engine builds it; a limit that does not apply
 * names its first absent source, found by asking the key builder one source at a time. */
static int explain_limit(struct sl_explain *x, const struct sl_key_ctx *ctx,
                         const struct sl_limit *lim, struct sl_explain_limit *out)
{
    out->limit = lim;
    ssize_t n = sl_key_build(lim, ctx, NULL, 0);
    if (n < 0) {
        for (size_t i = 0; i < lim->nkeys; i++) {
            struct sl_limit one = *lim;
            one.keys = &lim->keys[i];
            one.nkeys = 1;
            if (sl_key_build(&one, ctx, NULL, 0) < 0) {
                out->missing = i;
                break;
            }
        }
        return 0;
    }
    out->applies = true;
    out->value = malloc((size_t)n + 1);
    if (!out->value)
        return -1;
    sl_key_build(lim, ctx, out->value, (size_t)n);
    out->value[n] = '\0';
    out->value_len = (size_t)n;
    if (lim->store == SL_STORE_REDIS) {
        out->redis_key = sl_cli_redis_key(x->cfg, lim, out->value, out->value_len,
                                          &out->redis_key_len, &out->digest);
        if (!out->redis_key)
            return -1;
    }
    if (lim->rates) {
        /* The engine's choice, with the value it was made on kept for the explanation. */
        char *buf = NULL;
        size_t cap = 0;
        bool absent;
        out->rate = sl_rates_pick(lim, ctx, out->value, out->value_len, &buf, &cap, &absent);
        const char *v = lim->rates->by_key ? out->value : buf;
        size_t len = lim->rates->by_key
                         ? out->value_len
                         : (size_t)sl_key_source_build(&lim->rates->by, ctx, NULL, 0);
        if (!absent && (out->by_value = malloc(len + 1))) {
            memcpy(out->by_value, v, len);
            out->by_value[len] = '\0';
            out->by_value_len = len;
        }
        free(buf);
        if (!absent && !out->by_value)
            return -1;
    }
    return 0;
}

/* What the engine reads from the head (engine.c read_head), then every route in order
 * until one matches, then the keys of its limits. */
static int gather(struct sl_explain *x)
{
    const struct sl_request *req = x->req;
    const struct sl_config *cfg = x->cfg;

    sl_client_ip_trace(&cfg->trusted_proxies, req, &x->client, &x->trace);
    if (x->client.family) {
        sl_ip_format(&x->client, x->client_text, sizeof x->client_text);
        x->exempt = sl_cidr_list_contains(&cfg->exempt, &x->client);
    } else {
        snprintf(x->client_text, sizeof x->client_text, "%s", SL_KEY_UNIX_CLIENT);
    }

    x->path = malloc(req->target_len + 2);
    if (!x->path)
        return -1;
    ssize_t n =
        sl_path_normalize(&cfg->paths, req->target, req->target_len, x->path, req->target_len + 2);
    if (n < 0) {
        free(x->path);
        x->path = NULL;
    } else {
        x->path_len = (size_t)n;
    }

    const char *authority;
    size_t alen;
    if (sl_request_authority(req, &authority, &alen)) {
        if (!(x->host = malloc(alen + 1)))
            return -1;
        n = sl_host_normalize(authority, alen, x->host, alen + 1);
        x->has_host = n >= 0;
        x->host_len = n >= 0 ? (size_t)n : 0;
    }
    const char *host = x->has_host ? x->host : NULL;

    x->tried = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof *x->tried);
    if (!x->tried)
        return -1;
    for (size_t i = 0; i < cfg->nroutes && !x->route; i++) {
        struct sl_explain_route *t = &x->tried[x->ntried++];
        t->route = &cfg->routes[i];
        t->miss = sl_route_test(t->route, req, x->path, x->path_len, host, x->host_len, &t->header);
        if (t->miss == SL_ROUTE_MATCHES)
            x->route = t->route;
    }
    if (!x->route)
        return 0;

    struct sl_key_ctx ctx = {req,     x->route,    x->client_text, strlen(x->client_text),
                             x->path, x->path_len, host,           x->host_len};
    for (size_t i = 0; i < x->route->nlimits && i < SL_MAX_LIMITS_PER_ROUTE; i++) {
        if (explain_limit(x, &ctx, &x->route->limits[i], &x->limits[i]) < 0)
            return -1;
        x->nlimits++;
    }
    return 0;
}

static void explain_deinit(struct sl_explain *x)
{
    for (size_t i = 0; i < x->nlimits; i++) {
        free(x->limits[i].value);
        free(x->limits[i].redis_key);
        free(x->limits[i].by_value);
    }
    free(x->tried);
    free(x->path);
    free(x->host);
}

int sl_cli_explain(int argc, char **argv)
{
    struct options o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;
    if (o.rls)
        return sl_cli_explain_rls(o.config, o.rls, o.target);
    struct sockaddr_storage peer;
    if (parse_peer(o.peer, &peer) < 0)
        return usage_error("expected --peer an IPv4 or IPv6 address or \"unix\", got ", o.peer);

    struct sl_config *cfg = sl_cli_load_config(o.config);
    if (!cfg)
        return SL_EXIT_CONFIG;
    struct sl_request req = {.method = o.method,
                             .method_len = strlen(o.method),
                             .target = o.target,
                             .target_len = strlen(o.target),
                             .headers = o.headers,
                             .nheaders = o.nheaders,
                             .peer = (const struct sockaddr *)&peer};
    struct sl_explain x = {.cfg = cfg, .req = &req, .peer = o.peer};
    struct evbuffer *out = evbuffer_new();

    rc = 1;
    if (!out || gather(&x) < 0 ||
        (o.json ? sl_explain_write_json(&x, out) : sl_explain_write_text(&x, out)) < 0) {
        fprintf(stderr, "sluice explain: out of memory\n");
        goto done;
    }
    while (evbuffer_get_length(out) > 0)
        if (evbuffer_write(out, STDOUT_FILENO) < 0) {
            perror("sluice explain: stdout");
            goto done;
        }
    rc = 0;
done:
    if (out)
        evbuffer_free(out);
    explain_deinit(&x);
    sl_cfg_unref(cfg);
    return rc;
}
