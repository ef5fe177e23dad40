/* The routes section: each route's match, and its limits. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loader.h"
#include "sluice/config_parse.h"
#include "sluice/limit.h"
#include "sluice/route.h"
#include "sluice/route_index.h"

/* RFC 9110 token: the form of methods and header field names. */
static bool valid_token(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && !strchr("!#$%&'*+-.^_`|~", *s))
            return false;
    return true;
}

static void load_path(struct sl_loader *ld, const yaml_node_t *match, const char *path,
                      const struct sl_config *cfg, struct sl_route *route)
{
    static const char *const kinds[] = {"path", "path_prefix", "path_regex"};
    static const enum sl_path_match modes[] = {SL_MATCH_PATH, SL_MATCH_PREFIX, SL_MATCH_REGEX};
    char vpath[SL_LD_PATH_MAX], got[96], err[256];
    const char *first = NULL;

    for (size_t i = 0; i < 3; i++) {
        yaml_node_t *v = sl_ld_get(ld, match, kinds[i]);
        if (!v)
            continue;
        sl_ld_path(vpath, path, kinds[i]);
        if (first) {
            sl_ld_error(ld, v, vpath,
                        "only one of path, path_prefix and path_regex may be given; %s is "
                        "already set",
                        first);
            continue;
        }
        first = kinds[i];
        bool regex = modes[i] == SL_MATCH_REGEX;
        const char *text =
            sl_ld_scalar(ld, v, vpath, regex ? "a POSIX extended regular expression" : "a path");
        if (!text)
            continue;
        if (!regex && text[0] != '/') {
            sl_ld_error(ld, v, vpath, "expected a path starting with \"/\", got %s",
                        sl_ld_quote(text, got, sizeof got));
            continue;
        }
        if (regex) {
            /* With case_insensitive the path arrives lower-cased: the pattern must ignore
             * case too, or a pattern with a capital letter would never match. */
            int flags = REG_EXTENDED | REG_NOSUB | (cfg->paths.case_insensitive ? REG_ICASE : 0);
            int rc = regcomp(&route->regex, text, flags);
            if (rc != 0) {
                regerror(rc, &route->regex, err, sizeof err);
                sl_ld_error(ld, v, vpath,
                            "expected a POSIX extended regular expression, got %s: %s",
                            sl_ld_quote(text, got, sizeof got), err);
                continue;
            }
            if (sl_regex_dialect_check(text, err, sizeof err) < 0) {
                regfree(&route->regex);
                sl_ld_error(ld, v, vpath,
                            "expected a POSIX extended regular expression within the dialect "
                            "both regex matchers share, got %s: %s",
                            sl_ld_quote(text, got, sizeof got), err);
                continue;
            }
        }
        /* Set first: a compiled regex is released by path_match, even if strdup fails. */
        route->path_match = modes[i];
        route->path = sl_ld_strdup(ld, v, text);
        /* Requests are matched on their normalised path, so the configured one is held in
         * the same form, folded by the same paths rules: "/api//login" or "/api/%6Cogin" in
         * the file still match. */
        if (!regex && route->path) {
            char *norm = malloc(strlen(text) + 2);
            if (norm &&
                sl_path_normalize(&cfg->paths, text, strlen(text), norm, strlen(text) + 2) >= 0)
                strcpy(route->path, norm); /* never longer than `text` for a "/" path */
            else
                sl_ld_error(ld, v, vpath, "expected a path, got %s",
                            sl_ld_quote(text, got, sizeof got));
            free(norm);
        }
    }
}

static void load_methods(struct sl_loader *ld, const yaml_node_t *match, const char *path,
                         struct sl_route *route)
{
    static const char expected[] = "an HTTP method such as GET or POST";
    char lpath[SL_LD_PATH_MAX], ipath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, match, "methods");

    if (!v)
        return;
    sl_ld_path(lpath, path, "methods");
    /* A single method may be written without the list brackets. */
    bool single = v->type == YAML_SCALAR_NODE && !sl_ld_is_null(v);
    long n = single ? 1 : sl_ld_sequence(ld, v, lpath);
    if (n <= 0)
        return;
    route->methods = calloc((size_t)n, sizeof *route->methods);
    if (!route->methods)
        return;
    for (size_t i = 0; i < (size_t)n; i++) {
        yaml_node_t *item = single ? v : sl_ld_item(ld, v, i);
        if (single)
            snprintf(ipath, sizeof ipath, "%s", lpath);
        else
            sl_ld_path_index(ipath, lpath, i);
        const char *text = sl_ld_scalar(ld, item, ipath, expected);
        if (!text)
            continue;
        if (!valid_token(text)) {
            sl_ld_error(ld, item, ipath, "expected %s, got %s", expected,
                        sl_ld_quote(text, got, sizeof got));
            continue;
        }
        char *m = sl_ld_strdup(ld, item, text);
        if (!m)
            continue;
        for (char *c = m; *c; c++)
            *c = (char)toupper((unsigned char)*c);
        route->methods[route->nmethods++] = m;
    }
}

static void load_host(struct sl_loader *ld, const yaml_node_t *match, const char *path,
                      struct sl_route *route)
{
    static const char expected[] = "a host name such as \"api.example.com\"";
    char vpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, match, "host");

    if (!v)
        return;
    sl_ld_path(vpath, path, "host");
    const char *text = sl_ld_scalar(ld, v, vpath, expected);
    if (!text)
        return;
    /* The port is ignored when matching, so it is dropped here: "[v6]:port" keeps "[v6]". */
    size_t n = text[0] == '[' ? strcspn(text, "]") + 1 : strcspn(text, ":");
    if (n == 0 || n > strlen(text) || strpbrk(text, " \t/@")) {
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
        return;
    }
    route->host = sl_ld_strdup(ld, v, text);
    /* The same normalisation as a request's Host (port, trailing dot, case), so the two
     * compare byte for byte. */
    if (route->host && sl_host_normalize(text, strlen(text), route->host, strlen(text) + 1) < 0)
        sl_ld_error(ld, v, vpath, "expected %s, got %s", expected,
                    sl_ld_quote(text, got, sizeof got));
}

static void load_headers(struct sl_loader *ld, const yaml_node_t *match, const char *path,
                         struct sl_route *route)
{
    char mpath[SL_LD_PATH_MAX], hpath[SL_LD_PATH_MAX], got[96];
    yaml_node_t *v = sl_ld_get(ld, match, "headers");

    if (!v)
        return;
    sl_ld_path(mpath, path, "headers");
    if (sl_ld_is_null(v))
        return;
    if (v->type != YAML_MAPPING_NODE) {
        sl_ld_error(ld, v, mpath, "expected a mapping of header names to values, got %s",
                    sl_ld_describe(ld, v, got, sizeof got));
        return;
    }
    size_t n = (size_t)(v->data.mapping.pairs.top - v->data.mapping.pairs.start);
    route->headers = calloc(n ? n : 1, sizeof *route->headers);
    if (!route->headers)
        return;
    for (size_t i = 0; i < n; i++) {
        yaml_node_pair_t *pair = &v->data.mapping.pairs.start[i];
        yaml_node_t *k = sl_ld_node(ld, pair->key), *val = sl_ld_node(ld, pair->value);
        const char *name = sl_ld_scalar(ld, k, mpath, "a header name");
        if (!name)
            continue;
        sl_ld_path(hpath, mpath, name);
        if (!valid_token(name)) {
            sl_ld_error(ld, k, hpath, "expected a header name, got %s",
                        sl_ld_quote(name, got, sizeof got));
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < route->nheaders && !dup; j++)
            dup = strcasecmp(route->headers[j].name, name) == 0;
        if (dup) {
            sl_ld_error(ld, k, hpath, "header given twice (names are case-insensitive)");
            continue;
        }
        const char *value = sl_ld_scalar(ld, val, hpath, "a header value");
        if (!value)
            continue;
        struct sl_header_match *h = &route->headers[route->nheaders];
        h->name = sl_ld_strdup(ld, k, name);
        h->value = sl_ld_strdup(ld, val, value);
        route->nheaders++;
    }
}

static void load_match(struct sl_loader *ld, const yaml_node_t *route_node, const char *path,
                       const struct sl_config *cfg, struct sl_route *route)
{
    static const char *const keys[] = {"path", "path_prefix", "path_regex", "methods",
                                       "host", "headers",     NULL};
    char mpath[SL_LD_PATH_MAX];
    yaml_node_t *match = sl_ld_get(ld, route_node, "match");

    if (!match)
        return;
    sl_ld_path(mpath, path, "match");
    if (!sl_ld_mapping(ld, match, mpath, keys))
        return;
    load_path(ld, match, mpath, cfg, route);
    load_methods(ld, match, mpath, route);
    load_host(ld, match, mpath, route);
    load_headers(ld, match, mpath, route);
}

static void load_route(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                       struct sl_config *cfg, size_t i)
{
    static const char *const keys[] = {"name", "match", "shadow", "limits", NULL};
    struct sl_route *route = &cfg->routes[i];
    char got[96];

    route->index = i;
    if (node->type != YAML_MAPPING_NODE) {
        sl_ld_error(ld, node, path, "expected a route (a mapping with name, match, limits), got %s",
                    sl_ld_describe(ld, node, got, sizeof got));
        return;
    }
    sl_ld_mapping(ld, node, path, keys);
    if (sl_ld_name(ld, node, path, &route->name)) {
        for (size_t j = 0; j < i; j++) {
            if (cfg->routes[j].name && strcmp(cfg->routes[j].name, route->name) == 0) {
                char npath[SL_LD_PATH_MAX];
                sl_ld_path(npath, path, "name");
                sl_ld_error(ld, sl_ld_get(ld, node, "name"), npath,
                            "duplicate route name \"%s\"; routes[%zu] has it already", route->name,
                            j);
                break;
            }
        }
    }
    load_match(ld, node, path, cfg, route);
    sl_ld_bool(ld, node, path, "shadow", &route->shadow);
    sl_ld_limits(ld, node, path, cfg, route);
}

void sl_ld_routes(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg)
{
    char rpath[SL_LD_PATH_MAX];
    long n = sl_ld_sequence(ld, node, "routes");

    if (n <= 0)
        return;
    cfg->routes = calloc((size_t)n, sizeof *cfg->routes);
    if (!cfg->routes) {
        sl_ld_error(ld, node, "routes", "out of memory");
        return;
    }
    cfg->nroutes = (size_t)n;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        sl_ld_path_index(rpath, "routes", i);
        load_route(ld, sl_ld_item(ld, node, i), rpath, cfg, i);
    }
}
