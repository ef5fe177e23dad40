/* The upstream and redis sections, whose addresses are written as URLs. */
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tls/sessions.h"
#include "../tls/tls.h"
#include "loader.h"
#include "sluice/config_parse.h"

static const char default_redis_url[] = "redis://127.0.0.1:6379/0";

/* A DNS name (RFC 1123 labels): letters, digits and hyphens, dot-separated, 253 at most.
 * A last label of digits only is a mistyped address ("10.0.0.256"), not a name. */
static bool valid_dns_name(const char *s, size_t n)
{
    size_t label = 0;
    bool digits = true;
    if (n == 0 || n > 253)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
            digits = true;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                   (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
            digits = digits && c >= '0' && c <= '9';
        } else {
            return false;
        }
    }
    return s[n - 1] != '-' && s[n - 1] != '.' && !digits;
}

/* "name:port" that sl_parse_sockaddr() refused: a host name for the workers to look up. */
static int parse_upstream_name(const char *hostport, struct sl_upstream_config *up)
{
    const char *colon = strrchr(hostport, ':');
    char *end;
    if (!colon || !valid_dns_name(hostport, (size_t)(colon - hostport)))
        return -1;
    unsigned long port = strtoul(colon + 1, &end, 10);
    if (colon[1] < '0' || colon[1] > '9' || *end || port == 0 || port > 65535)
        return -1;
    memset(&up->addr, 0, sizeof up->addr);
    up->addr.ss.ss_family = AF_UNSPEC;
    up->addr.text = strdup(hostport);
    up->host = strndup(hostport, (size_t)(colon - hostport));
    up->port = (uint16_t)port;
    return up->addr.text && up->host ? 0 : -1;
}

int sl_ld_parse_upstream_url(const char *url, struct sl_upstream_config *up)
{
    struct sl_sockaddr *out = &up->addr;
    char hostport[300];

    static const struct {
        const char *scheme;
        bool h2, tls;
        const char *port;
    } schemes[] = {
        {"http://", false, false, ":80"},
        {"https://", false, true, ":443"},
        /* h2c:// is cleartext HTTP/2 with prior knowledge (RFC 9113 3.3); h2:// is HTTP/2
         * over TLS, agreed by ALPN. */
        {"h2c://", true, false, ":80"},
        {"h2://", true, true, ":443"},
    };
    size_t k = 0;

    if (strncmp(url, "unix:", 5) == 0)
        return sl_parse_sockaddr(url, out);
    while (k < sizeof schemes / sizeof schemes[0] &&
           strncmp(url, schemes[k].scheme, strlen(schemes[k].scheme)) != 0)
        k++;
    if (k == sizeof schemes / sizeof schemes[0])
        return -1;
    up->h2 = schemes[k].h2;
    up->tls.enabled = schemes[k].tls;
    const char *auth = url + strlen(schemes[k].scheme);
    size_t n = strcspn(auth, "/?#");
    /* The upstream receives the client's request target as it is: no path to prepend. */
    if (auth[n] != '\0' && strcmp(auth + n, "/") != 0)
        return -1;
    if (n == 0 || n + sizeof ":443" > sizeof hostport)
        return -1;
    memcpy(hostport, auth, n);
    hostport[n] = '\0';
    const char *bracket = strrchr(hostport, ']');
    const char *colon = strrchr(hostport, ':');
    if (!colon || (bracket && colon < bracket))
        strcat(hostport, schemes[k].port);
    if (sl_parse_sockaddr(hostport, out) == 0)
        return 0;
    return bracket ? -1 : parse_upstream_name(hostport, up);
}

/* upstream.tls applies to https:// and h2://; its files are read now, and the context the
 * workers share is made, so that `sluice -t` reports a bad one. */
static void load_upstream_tls(struct sl_loader *ld, const yaml_node_t *node,
                              struct sl_upstream_config *up)
{
    static const unsigned char h2[] = "\x02h2", http1[] = "\x08http/1.1";
    yaml_node_t *tls = sl_ld_get(ld, node, "tls");
    bool scheme_tls = up->tls.enabled;
    char err[512];

    if (tls) {
        sl_ld_tls_client(ld, tls, "upstream.tls", &up->tls);
        if (!scheme_tls) {
            sl_ld_error(ld, tls, "upstream.tls",
                        "applies to https:// and h2:// upstreams only; upstream.url is %s",
                        up->url);
            return;
        }
    }
    if (!scheme_tls || ld->nerrors)
        return;
    up->tls.enabled = true;
    up->tls_ctx = sl_tls_client_ctx_new(&up->tls, err, sizeof err);
    if (!up->tls_ctx) {
        sl_ld_error(ld, tls ? tls : node, tls ? "upstream.tls" : "upstream.url", "%s", err);
        return;
    }
    if (up->h2)
        SSL_CTX_set_alpn_protos(up->tls_ctx, h2, sizeof h2 - 1);
    else
        SSL_CTX_set_alpn_protos(up->tls_ctx, http1, sizeof http1 - 1);
    sl_tls_client_keep_sessions(up->tls_ctx);
}

void sl_ld_upstream(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg)
{
    static const char *const keys[] = {"url",       "connect_timeout", "timeout",
                                       "keepalive", "tls",             NULL};
    static const char expected[] = "\"http://host:port\", \"https://host:port\", "
                                   "\"h2c://host:port\" or \"h2://host:port\" (no path), or "
                                   "\"unix:/path\"";
    struct sl_upstream_config *up = &cfg->upstream;
    char vpath[] = "upstream.url", got[96];
    uint64_t keepalive = up->keepalive;

    if (!sl_ld_mapping(ld, node, "upstream", keys))
        return;
    sl_ld_duration(ld, node, "upstream", "connect_timeout", 1, &up->connect_timeout_ms);
    sl_ld_duration(ld, node, "upstream", "timeout", 1, &up->timeout_ms);
    if (sl_ld_uint(ld, node, "upstream", "keepalive", 0, 100000, &keepalive))
        up->keepalive = (unsigned)keepalive;

    yaml_node_t *v = sl_ld_get(ld, node, "url");
    if (!v) {
        sl_ld_error(ld, node, vpath, "required key is missing; expected %s", expected);
        return;
    }
    const char *url = sl_ld_scalar(ld, v, vpath, expected);
    if (!url)
        return;
    if (sl_ld_parse_upstream_url(url, up) < 0) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(url, got, sizeof got));
        return;
    }
    up->url = strdup(url);
    if (!up->url)
        sl_ld_error(ld, v, vpath, "out of memory");
    load_upstream_tls(ld, node, up);
}

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the %XX escapes of a URL's user or password into a new string; NULL if
 * malformed. */
static char *percent_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    size_t o = 0;

    if (!out)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        int hi = i + 2 < n ? hex_value(s[i + 1]) : -1;
        int lo = i + 2 < n ? hex_value(s[i + 2]) : -1;
        if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
            free(out);
            return NULL;
        }
        out[o++] = (char)(hi * 16 + lo);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

static int parse_db(const char *s, int *out)
{
    long v = 0;

    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > INT_MAX / 10)
            return -1;
        v = v * 10 + (*s - '0');
    }
    if (v > INT_MAX)
        return -1;
    *out = (int)v;
    return 0;
}

static bool valid_host(const char *s, size_t n)
{
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '-' || c == '_' || c == ':'))
            return false;
    }
    return true;
}

static int parse_redis_unix(const char *rest, struct sl_redis_config *r)
{
    size_t n = strcspn(rest, "?");

    if (n == 0 || rest[0] != '/')
        return -1;
    if (rest[n] && (strncmp(rest + n, "?db=", 4) != 0 || parse_db(rest + n + 4, &r->db) < 0))
        return -1;
    r->unix_path = strndup(rest, n);
    return r->unix_path ? 0 : -1;
}

static int parse_redis_tcp(const char *rest, struct sl_redis_config *r)
{
    size_t n = strcspn(rest, "/");
    const char *at = memrchr(rest, '@', n);
    const char *host = rest;

    if (at) {
        const char *colon = memchr(rest, ':', (size_t)(at - rest));
        size_t ulen = colon ? (size_t)(colon - rest) : (size_t)(at - rest);
        if (ulen > 0 && !(r->user = percent_decode(rest, ulen)))
            return -1;
        if (colon && !(r->password = percent_decode(colon + 1, (size_t)(at - colon - 1))))
            return -1;
        host = at + 1;
    }
    size_t hlen = (size_t)(rest + n - host);
    const char *port = NULL;
    if (hlen > 0 && host[0] == '[') {
        const char *end = memchr(host, ']', hlen);
        if (!end)
            return -1;
        if (end + 1 < rest + n) {
            if (end[1] != ':')
                return -1;
            port = end + 2;
        }
        r->host = strndup(host + 1, (size_t)(end - host - 1));
    } else {
        const char *colon = memchr(host, ':', hlen);
        if (colon)
            port = colon + 1;
        size_t len = colon ? (size_t)(colon - host) : hlen;
        if (!valid_host(host, len) || memchr(host, ':', len))
            return -1;
        r->host = strndup(host, len);
    }
    if (!r->host || !valid_host(r->host, strlen(r->host)))
        return -1;
    r->port = 6379;
    if (port) {
        int p;
        char buf[8];
        size_t plen = (size_t)(rest + n - port);
        if (plen == 0 || plen >= sizeof buf)
            return -1;
        memcpy(buf, port, plen);
        buf[plen] = '\0';
        if (parse_db(buf, &p) < 0 || p < 1 || p > 65535)
            return -1;
        r->port = p;
    }
    if (rest[n] == '/' && rest[n + 1] && parse_db(rest + n + 1, &r->db) < 0)
        return -1;
    return 0;
}

static void clear_redis_address(struct sl_redis_config *r)
{
    free(r->host);
    free(r->unix_path);
    free(r->user);
    free(r->password);
    r->host = r->unix_path = r->user = r->password = NULL;
    r->port = 0;
    r->db = 0;
}

int sl_ld_parse_redis_url(const char *url, struct sl_redis_config *r)
{
    int rc = -1;

    clear_redis_address(r);
    if (strncmp(url, "unix:", 5) == 0)
        rc = parse_redis_unix(url + 5, r);
    else if (strncmp(url, "redis://", 8) == 0)
        rc = parse_redis_tcp(url + 8, r);
    else if (strncmp(url, "rediss://", 9) == 0 && (rc = parse_redis_tcp(url + 9, r)) == 0)
        r->tls.enabled = true;
    if (rc < 0)
        clear_redis_address(r);
    return rc;
}

/* One cluster seed or sentinel: "host:port", "[v6]:port" or
 * "redis://[user:password@]host:port[/db]". The first entry that carries credentials (or a
 * database) gives them to every connection of the topology. */
static void load_addr(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      struct sl_redis_config *r, struct sl_redis_addr *out)
{
    static const char expected[] = "\"host:port\" or \"redis://[user:password@]host:port\"";
    char buf[512], got[96];
    const char *text = sl_ld_scalar(ld, node, path, expected);
    struct sl_redis_config parsed = {0};

    if (!text)
        return;
    bool scheme = strncmp(text, "redis://", 8) == 0;
    if (snprintf(buf, sizeof buf, "%s%s", scheme ? "" : "redis://", text) >= (int)sizeof buf ||
        parse_redis_tcp(buf + 8, &parsed) < 0 || !strchr(text + (scheme ? 8 : 0), ':')) {
        sl_ld_error(ld, node, path, "expected %s, got %s", expected,
                    strchr(text, '@') ? "an address that does not parse (not shown: it holds "
                                        "credentials)"
                                      : sl_ld_quote(text, got, sizeof got));
        goto done;
    }
    if (r->mode == SL_REDIS_MODE_CLUSTER && parsed.db != 0) {
        sl_ld_error(ld, node, path, "expected no database number (Redis Cluster has only "
                                    "database 0), got %d", parsed.db);
        goto done;
    }
    out->host = parsed.host;
    out->port = parsed.port;
    parsed.host = NULL;
    if (!r->password && parsed.password) {
        r->user = parsed.user;
        r->password = parsed.password;
        parsed.user = parsed.password = NULL;
    }
    if (r->db == 0)
        r->db = parsed.db;
done:
    clear_redis_address(&parsed);
}

static void load_addrs(struct sl_loader *ld, const yaml_node_t *list, const char *path,
                       struct sl_redis_config *r)
{
    long n = sl_ld_sequence(ld, list, path);
    char ipath[SL_LD_PATH_MAX];

    if (n < 0)
        return;
    if (n == 0) {
        sl_ld_error(ld, list, path, "expected at least one \"host:port\", got an empty list");
        return;
    }
    r->addrs = calloc((size_t)n, sizeof *r->addrs);
    if (!r->addrs) {
        sl_ld_error(ld, list, path, "out of memory");
        return;
    }
    r->naddrs = (size_t)n;
    for (size_t i = 0; i < r->naddrs; i++) {
        sl_ld_path_index(ipath, path, i);
        load_addr(ld, sl_ld_item(ld, list, i), ipath, r, &r->addrs[i]);
    }
}

static void load_sentinel(struct sl_loader *ld, const yaml_node_t *node, struct sl_redis_config *r)
{
    static const char *const keys[] = {"master", "addresses", NULL};
    if (!sl_ld_mapping(ld, node, "redis.sentinel", keys))
        return;
    if (!sl_ld_string(ld, node, "redis.sentinel", "master", &r->sentinel_master) &&
        !sl_ld_get(ld, node, "master"))
        sl_ld_error(ld, node, "redis.sentinel.master",
                    "expected the master's name as the sentinels know it, got nothing");
    const yaml_node_t *list = sl_ld_get(ld, node, "addresses");
    if (list)
        load_addrs(ld, list, "redis.sentinel.addresses", r);
    else
        sl_ld_error(ld, node, "redis.sentinel.addresses",
                    "expected a list of sentinel \"host:port\", got nothing");
}

/* redis.cluster or redis.sentinel in place of redis.url: at most one of the three. */
static bool load_topology(struct sl_loader *ld, const yaml_node_t *node, struct sl_redis_config *r)
{
    static const char *const names[] = {"url", "cluster", "sentinel"};
    yaml_node_t *v[3];
    int first = -1;

    for (int i = 0; i < 3; i++) {
        v[i] = sl_ld_get(ld, node, names[i]);
        if (!v[i])
            continue;
        if (first >= 0) {
            char path[SL_LD_PATH_MAX];
            sl_ld_path(path, "redis", names[i]);
            sl_ld_error(ld, v[i], path, "expected only one of url, cluster and sentinel, got %s "
                        "as well", names[first]);
            return true;
        }
        first = i;
    }
    if (first == 1) {
        r->mode = SL_REDIS_MODE_CLUSTER;
        load_addrs(ld, v[1], "redis.cluster", r);
    } else if (first == 2) {
        r->mode = SL_REDIS_MODE_SENTINEL;
        load_sentinel(ld, v[2], r);
    }
    return first > 0;
}

void sl_ld_redis(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg)
{
    static const char *const keys[] = {"url",        "cluster",    "sentinel", "timeout",
                                       "key_prefix", "deny_cache", "tls",      NULL};
    static const char expected[] = "\"redis://[user:password@]host:port/db\", \"rediss://...\" "
                                   "(TLS) or \"unix:/path\" (optionally \"?db=N\")";
    struct sl_redis_config *r = &cfg->redis;
    char vpath[] = "redis.url", got[96];

    r->enabled = true;
    if (!sl_ld_mapping(ld, node, "redis", keys))
        return;
    sl_ld_duration(ld, node, "redis", "timeout", 1, &r->timeout_ms);
    sl_ld_string(ld, node, "redis", "key_prefix", &r->key_prefix);
    sl_ld_uint(ld, node, "redis", "deny_cache", 0, UINT32_MAX, &r->deny_cache);
    yaml_node_t *tls = sl_ld_get(ld, node, "tls");
    if (tls)
        sl_ld_tls_client(ld, tls, "redis.tls", &r->tls);
    if (load_topology(ld, node, r))
        return;

    yaml_node_t *v = sl_ld_get(ld, node, "url");
    const char *url = v ? sl_ld_scalar(ld, v, vpath, expected) : default_redis_url;
    if (!url)
        return;
    if (sl_ld_parse_redis_url(url, r) < 0) {
        /* The password is part of the URL: never echo it back. */
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    strchr(url, '@') ? "a URL that does not parse (not shown: it holds credentials)"
                                     : sl_ld_quote(url, got, sizeof got));
        return;
    }
    if (r->tls.enabled && r->unix_path) {
        sl_ld_error(ld, tls ? tls : v, tls ? "redis.tls" : vpath,
                    "expected a TCP address with TLS, got a unix socket");
        return;
    }
    r->url = strdup(url);
    if (!r->url)
        sl_ld_error(ld, v, vpath, "out of memory");
}
