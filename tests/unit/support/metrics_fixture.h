/* Shared by the metrics suites: hand-built configurations, rendering, line matching. */
#ifndef SLUICE_TEST_METRICS_FIXTURE_H
#define SLUICE_TEST_METRICS_FIXTURE_H

#include <check.h>
#include <event2/buffer.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/metrics.h"

/* A hand-built configuration: routes with limits, names borrowed from string literals. */
struct test_route {
    const char *name;
    const char *limits[SL_MAX_LIMITS_PER_ROUTE];
};

static inline struct sl_config *make_cfg(const struct test_route *spec, size_t nroutes)
{
    struct sl_config *cfg = calloc(1, sizeof *cfg);
    ck_assert_ptr_nonnull(cfg);
    atomic_init(&cfg->refs, 1);
    cfg->admin_route_histograms = true; /* the loader's default */
    cfg->routes = calloc(nroutes, sizeof *cfg->routes);
    cfg->nroutes = nroutes;
    for (size_t r = 0; r < nroutes; r++) {
        struct sl_route *route = &cfg->routes[r];
        route->name = (char *)spec[r].name;
        route->index = r;
        while (route->nlimits < SL_MAX_LIMITS_PER_ROUTE && spec[r].limits[route->nlimits])
            route->nlimits++;
        route->limits = calloc(route->nlimits ? route->nlimits : 1, sizeof *route->limits);
        for (size_t l = 0; l < route->nlimits; l++) {
            route->limits[l].name = (char *)spec[r].limits[l];
            route->limits[l].route = route;
            route->limits[l].index = cfg->nlimits++;
        }
    }
    return cfg;
}

static inline void free_cfg(struct sl_config *cfg)
{
    for (size_t r = 0; r < cfg->nroutes; r++)
        free(cfg->routes[r].limits);
    free(cfg->routes);
    free(cfg);
}

static inline char *render(struct sl_metrics *m)
{
    struct evbuffer *out = evbuffer_new();
    ck_assert_int_eq(sl_metrics_render(m, out), 0);
    size_t len = evbuffer_get_length(out);
    char *text = malloc(len + 1);
    evbuffer_remove(out, text, len);
    text[len] = '\0';
    evbuffer_free(out);
    return text;
}

/* True when `line` is one whole line of `text`. */
static inline bool has_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = strstr(text, line); p; p = strstr(p + 1, line))
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return true;
    return false;
}

/* Fails unless the exposition of `m` holds `line` as a whole line. */
static inline void assert_metric_line(struct sl_metrics *m, const char *line)
{
    char *text = render(m);
    bool found = has_line(text, line);
    free(text);
    if (!found)
        ck_abort_msg("metric line missing: %s", line);
}

/* True when some line of `text` starts with `prefix`. */
static inline bool has_line_prefix(const char *text, const char *prefix)
{
    for (const char *p = strstr(text, prefix); p; p = strstr(p + 1, prefix))
        if (p == text || p[-1] == '\n')
            return true;
    return false;
}

#define ck_assert_line(text, line)                                                                 \
    ck_assert_msg(has_line((text), (line)), "missing line: %s", (line))
#define ck_assert_no_line_prefix(text, prefix)                                                     \
    ck_assert_msg(!has_line_prefix((text), (prefix)), "unexpected line: %s...", (prefix))

/* Lines of `text` that are samples (not comments). */
static inline size_t count_series(const char *text)
{
    size_t n = 0;
    for (const char *p = text; *p;) {
        if (*p != '#' && *p != '\n')
            n++;
        const char *nl = strchr(p, '\n');
        if (!nl)
            break;
        p = nl + 1;
    }
    return n;
}

static const struct test_route login_search[] = {
    {"login", {"per_ip", "per_key"}},
    {"search", {"per_ip"}},
};

#endif
