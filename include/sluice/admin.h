/* The admin listener: /metrics, /healthz, /readyz, /config, /top and the dashboard (/ and
 * /dashboard.json) on their own thread and event loop, so that a slow scrape never delays
 * proxied traffic. */
#ifndef SLUICE_ADMIN_H
#define SLUICE_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/config.h"
#include "sluice/metrics.h"
#include "sluice/top.h"

struct sl_admin_hooks {
    /* The current configuration with one reference the admin drops. Thread-safe. */
    struct sl_config *(*config_ref)(void *arg);
    /* True when listeners are up and, with failure_mode closed, Redis is connected. */
    bool (*ready)(void *arg);
    void *arg;
    /* The workers' heavy-hitter sketches, or NULL: /top answers 404 without them, and
     * while the configuration has admin.top off. */
    struct sl_top *top;
};

/* Binds `addr` and serves on a new thread. Returns NULL and writes a message to `err`
 * when the address cannot be bound. `metrics` (not NULL) and `hooks->arg` are borrowed and
 * must outlive sl_admin_stop(); `*hooks` is copied. A NULL `ready` hook means always
 * ready; a NULL `config_ref` (or one returning NULL) makes /config and /dashboard.json
 * answer 503. The process must ignore SIGPIPE (a scraper may hang up mid-response). Paths
 * other than the seven answer 404; methods other than GET and HEAD answer 405. A stale unix
 * socket file (nothing listening) is replaced; the file is removed at stop. The thread
 * samples the routes' counters every 2 s for the dashboard's charts (src/admin/history.h).
 *
 * Each request reads the configuration through `config_ref`, so a reload's token applies
 * to the next request. With admin.token set, /top, /config and /dashboard.json (and
 * /metrics under admin.metrics_auth) answer 401 with "WWW-Authenticate: Bearer" unless the
 * request carries "Authorization: Bearer TOKEN" (compared in constant time); /healthz,
 * /readyz and the page at / never ask. Logs a warning when `addr` is not loopback or a unix
 * socket and there is no token. */
struct sl_admin *sl_admin_start(const struct sl_sockaddr *addr, struct sl_metrics *metrics,
                                const struct sl_admin_hooks *hooks, char *err, size_t errlen);

/* The TCP port the listener is bound to (useful with port 0); 0 for a unix socket. */
unsigned sl_admin_port(const struct sl_admin *admin);

/* Stops the thread and releases everything. Accepts NULL. */
void sl_admin_stop(struct sl_admin *admin);

#endif
