/* The rls block (SPEC.md section 12): where Envoy's rate limit service API listens, and
 * envoyproxy/ratelimit's configuration files, read here so that a file ratelimit would
 * refuse fails `sluice -t` and a reload like any other error of the configuration. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "loader.h"
#include "sluice/config_parse.h"
#include "sluice/rls_config.h"

#define DEFAULT_LISTEN "127.0.0.1:8081"

static bool taken_by_listen(const struct sl_config *cfg, const struct sl_sockaddr *addr)
{
    for (size_t i = 0; i < cfg->nlisteners; i++)
        if (sl_sockaddr_same(addr, &cfg->listeners[i].addr))
            return true;
    return false;
}

/* Length of the "file" of a "file:line:col: message" line, and its line and column; 0 when
 * the line has no position. The file name may hold ':', so the position is the first
 * ":digits:digits: " from the left. */
static size_t split_position(const char *s, size_t *line, size_t *col)
{
    for (const char *p = strchr(s, ':'); p; p = strchr(p + 1, ':')) {
        char *end;
        unsigned long l = strtoul(p + 1, &end, 10);
        if (end == p + 1 || *end != ':')
            continue;
        const char *c0 = end + 1;
        unsigned long c = strtoul(c0, &end, 10);
        if (end == c0 || end[0] != ':' || end[1] != ' ')
            continue;
        *line = l;
        *col = c;
        return (size_t)(p - s);
    }
    return 0;
}

/* Reports each "file:line:col: path: message" line of the loader of the files as a problem
 * of that file, sorted at the rls.config key of the configuration file. */
static void report_files(struct sl_loader *ld, const yaml_node_t *at, char *errors)
{
    for (char *line = errors, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        size_t l = 0, c = 0, flen = split_position(line, &l, &c);
        if (flen == 0) {
            sl_ld_error(ld, at, "rls.config", "%s", line);
            continue;
        }
        line[flen] = '\0';
        /* The message follows "file:line:col: ". */
        const char *msg = strchr(line + flen + 1, ' ');
        sl_ld_report_in(ld, line, l, c, at, "%s", msg ? msg + 1 : "");
    }
}

void sl_ld_rls(struct sl_loader *ld, const yaml_node_t *node, struct sl_config *cfg)
{
    static const char *const keys[] = {"listen", "config", "response_headers", "shadow_mode", NULL};
    struct sl_rls_settings *rls = &cfg->rls;
    char *written = NULL;

    if (!sl_ld_mapping(ld, node, "rls", keys))
        return;
    rls->enabled = true;
    if (!sl_ld_sockaddr(ld, node, "rls", "listen", &rls->listen)) {
        yaml_node_t *given = sl_ld_get(ld, node, "listen");
        if (!given && sl_parse_sockaddr(DEFAULT_LISTEN, &rls->listen) < 0)
            sl_ld_error(ld, node, "rls.listen", "out of memory");
    }
    /* Each worker binds its own SO_REUSEPORT socket, which a unix socket cannot share. */
    if (rls->listen.text && rls->listen.ss.ss_family == AF_UNIX)
        sl_ld_error(ld, sl_ld_get(ld, node, "listen"), "rls.listen",
                    "expected host:port or [v6]:port, got %s: a unix socket is not served",
                    rls->listen.text);
    else if (rls->listen.text &&
             (taken_by_listen(cfg, &rls->listen) ||
              (cfg->admin_enabled && sl_sockaddr_same(&rls->listen, &cfg->admin_listen))))
        sl_ld_error(ld, sl_ld_get(ld, node, "listen"), "rls.listen",
                    "expected an address of its own, got %s, which listen or admin.listen has",
                    rls->listen.text);
    sl_ld_bool(ld, node, "rls", "response_headers", &rls->response_headers);
    sl_ld_bool(ld, node, "rls", "shadow_mode", &rls->shadow_mode);
    yaml_node_t *at = sl_ld_get(ld, node, "config");
    if (!sl_ld_string(ld, node, "rls", "config", &written)) {
        if (!at)
            sl_ld_error(ld, node, "rls.config",
                        "required key is missing; expected envoyproxy/ratelimit's configuration "
                        "files: a directory or one file, such as /etc/ratelimit/config");
        return;
    }
    rls->config = sl_ld_resolve(ld, written);
    free(written);
    if (!rls->config) {
        sl_ld_error(ld, at, "rls.config", "out of memory");
        return;
    }
    char *errors = NULL;
    rls->files = sl_rls_config_load(rls->config, false, &errors);
    if (!rls->files)
        report_files(ld, at, errors);
    free(errors);
}
