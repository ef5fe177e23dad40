/* The process: workers, signals, reload and shutdown, on the main thread's event loop. */
#include <event2/thread.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "http.h"
#include "sluice/admin.h"
#include "sluice/clock.h"
#include "sluice/config_parse.h"
#include "sluice/config_watch.h"
#include "sluice/log.h"
#include "sluice/route_index.h"
#include "sluice/server.h"
#include "sluice/store_memory.h"
#include "sluice/store_redis.h"

#define DRAIN_SECONDS 10

static struct sl_config *server_config_ref(void *arg)
{
    struct sl_server *s = arg;
    pthread_mutex_lock(&s->lock);
    struct sl_config *cfg = sl_cfg_ref(s->cfg);
    pthread_mutex_unlock(&s->lock);
    return cfg;
}

/* Until a worker's first Redis connection attempt has finished its decisions wait for it,
 * so the instance is not ready before every worker's attempt is over. With failure_mode
 * closed a worker without its Redis connection answers every limited request 503, so the
 * instance is ready only when every worker is connected. The stores live from before the
 * admin listener starts until after it stops. */
static bool server_ready(void *arg)
{
    struct sl_server *s = arg;
    if (!atomic_load(&s->ready))
        return false;
    pthread_mutex_lock(&s->lock);
    bool need_redis = s->cfg->redis.enabled && s->cfg->failure_mode == SL_FAILURE_CLOSED;
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < s->nworkers; i++) {
        const struct sl_store *redis = s->workers[i].redis;
        if (redis && !sl_store_redis_started(redis))
            return false;
        if (need_redis && !sl_store_redis_connected(redis))
            return false;
    }
    return true;
}

static void log_lines(const char *errors)
{
    while (errors && *errors) {
        size_t n = strcspn(errors, "\n");
        sl_log_error("%.*s", (int)n, errors);
        errors += n + (errors[n] == '\n');
    }
}

/* The listeners are bound once; a TLS entry's certificates follow reloads (worker.c). */
static bool listeners_same(const struct sl_config *a, const struct sl_config *b)
{
    if (a->nlisteners != b->nlisteners)
        return false;
    for (size_t i = 0; i < a->nlisteners; i++)
        if (!sl_sockaddr_same(&a->listeners[i].addr, &b->listeners[i].addr) ||
            !a->listeners[i].tls != !b->listeners[i].tls)
            return false;
    return true;
}

static bool str_same(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The Redis stores copy their settings when the workers start. */
static bool tls_client_same(const struct sl_tls_client_config *a,
                            const struct sl_tls_client_config *b)
{
    return a->enabled == b->enabled && a->verify == b->verify && str_same(a->ca, b->ca) &&
           str_same(a->server_name, b->server_name) && str_same(a->cert, b->cert) &&
           str_same(a->key, b->key);
}

static bool redis_same(const struct sl_redis_config *a, const struct sl_redis_config *b)
{
    return a->enabled == b->enabled && str_same(a->url, b->url) && a->timeout_ms == b->timeout_ms &&
           str_same(a->key_prefix, b->key_prefix) && a->deny_cache == b->deny_cache &&
           tls_client_same(&a->tls, &b->tls);
}

/* What a reload cannot change without a restart; the rest applies at once. */
static void warn_restart_needed(const struct sl_config *old, const struct sl_config *new)
{
    if (!listeners_same(old, new))
        sl_log_warn("reload: listen changed; restart sluice to apply it");
    if (old->workers != new->workers)
        sl_log_warn("reload: workers changed; restart sluice to apply it");
    if (old->admin_enabled != new->admin_enabled ||
        (new->admin_enabled && !sl_sockaddr_same(&old->admin_listen, &new->admin_listen)))
        sl_log_warn("reload: admin.listen changed; restart sluice to apply it");
    if (old->rls.enabled != new->rls.enabled ||
        (new->rls.enabled && !sl_sockaddr_same(&old->rls.listen, &new->rls.listen)))
        sl_log_warn("reload: rls.listen changed; restart sluice to apply it");
    if (old->access_log != new->access_log ||
        (new->access_log ==
         SL_ACCESS_LOG_FILE &&strcmp(old->access_log_path, new->access_log_path) != 0))
        sl_log_warn("reload: access_log changed; restart sluice to apply it");
    if (old->memory_max_keys != new->memory_max_keys ||
        old->memory_max_bytes != new->memory_max_bytes)
        sl_log_warn("reload: memory changed; restart sluice to apply it");
    if (!redis_same(&old->redis, &new->redis))
        sl_log_warn("reload: redis changed; restart sluice to apply it");
}

static void watch_apply(struct sl_server *s);

/* Files reload.watch follows at most: the configuration file and up to 255 `rates` files. */
#define WATCH_MAX_FILES 256

static void reload(struct sl_server *s)
{
    char *errors = NULL;
    struct sl_config *cfg = sl_cfg_load(s->cfg->file, &errors);

    if (!cfg) {
        sl_log_error("reload failed; keeping the running configuration");
        log_lines(errors ? errors : "configuration could not be loaded");
        free(errors);
        sl_metrics_config_reload(s->metrics, false);
        return;
    }
    if (sl_metrics_bind(s->metrics, cfg) < 0) {
        sl_log_error("reload failed: too many route and limit names for the metrics");
        sl_cfg_unref(cfg);
        sl_metrics_config_reload(s->metrics, false);
        return;
    }
    /* The file may name fewer workers than run (that takes a restart): each running worker
     * needs its scratch space in the new route index. */
    if (sl_route_index_reserve(cfg->route_index, s->nworkers) < 0) {
        sl_log_error("reload failed: out of memory for the route index's scratch space");
        sl_cfg_unref(cfg);
        sl_metrics_config_reload(s->metrics, false);
        return;
    }
    sl_top_bind(cfg);
    warn_restart_needed(s->cfg, cfg);
    sl_cfg_inherit_rates(cfg, s->cfg, sl_clock_mono_us());
    sl_log_set_level(cfg->log_level);
    pthread_mutex_lock(&s->lock);
    struct sl_config *old = s->cfg;
    s->cfg = cfg;
    pthread_mutex_unlock(&s->lock);
    for (unsigned i = 0; i < s->nworkers; i++)
        sl_worker_publish(&s->workers[i], cfg);
    sl_cfg_unref(old);
    sl_metrics_config_reload(s->metrics, true);
    sl_log_info("configuration reloaded from %s", cfg->file);
    watch_apply(s);
}

static void watch_cb(void *arg)
{
    struct sl_server *s = arg;
    if (s->stopping)
        return;
    const char *path;
    const uint8_t *digest;
    if (sl_cfg_files(s->cfg, &path, &digest, 1) > 1)
        sl_log_info("%s or a rates or rls file it names changed on disk; reloading",
                    s->cfg->file);
    else
        sl_log_info("%s changed on disk; reloading", s->cfg->file);
    reload(s);
}

/* Starts or stops the watch as reload.watch says, and starts it again when the debounce or
 * the files changed. The watched paths are the files a reload reads: the configuration file
 * and the `rates` files it names. Only the main thread replaces s->cfg, so it reads it here
 * without the lock. */
static void watch_apply(struct sl_server *s)
{
    const struct sl_config *cfg = s->cfg;
    char err[PATH_MAX + 64];
    const char *paths[WATCH_MAX_FILES];
    const uint8_t *digests[WATCH_MAX_FILES];
    size_t npaths = sl_cfg_files(cfg, paths, digests, WATCH_MAX_FILES);

    if (npaths > WATCH_MAX_FILES)
        npaths = WATCH_MAX_FILES;
    if (s->watch &&
        (!cfg->reload_watch || sl_cfg_watch_debounce_ms(s->watch) != cfg->reload_debounce_ms ||
         !sl_cfg_watch_watches(s->watch, paths, npaths))) {
        sl_cfg_watch_free(s->watch);
        s->watch = NULL;
        if (!cfg->reload_watch)
            sl_log_info("reload.watch: no longer watching %s", cfg->file);
    }
    if (s->watch) {
        /* A SIGHUP may have loaded a change the watch has yet to check. */
        sl_cfg_watch_loaded(s->watch, digests);
        return;
    }
    if (!cfg->reload_watch)
        return;
    s->watch = sl_cfg_watch_new(s->base, paths, digests, npaths, cfg->reload_debounce_ms, watch_cb,
                                s, err, sizeof err);
    if (s->watch)
        sl_log_info("reload.watch: watching %s", cfg->file);
    else
        sl_log_error("reload.watch: %s; changes reload only on SIGHUP", err);
}

static void force_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_server *s = arg;
    sl_log_warn("in-flight requests still running after %d s; closing them", DRAIN_SECONDS);
    for (unsigned i = 0; i < s->nworkers; i++)
        event_active(s->workers[i].force_ev, EV_READ, 0);
}

static void drain_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_server *s = arg;
    sl_log_info("shutting down: finishing in-flight requests");
    for (unsigned i = 0; i < s->nworkers; i++)
        event_active(s->workers[i].stop_ev, EV_READ, 0);
    struct timeval tv = {DRAIN_SECONDS, 0};
    event_base_once(s->base, -1, EV_TIMEOUT, force_cb, s, &tv);
}

/* SIGTERM/SIGINT. With shutdown.drain_delay, /readyz fails at once and sluice goes on
 * accepting and serving for the delay, with every response closing its connection: the
 * load balancer or Kubernetes endpoints controller sees the instance leave before its
 * listeners close, and no keep-alive client is cut off between two requests. */
static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
    struct sl_server *s = arg;

    if (sig == SIGHUP) {
        if (!s->stopping)
            reload(s);
        return;
    }
    if (s->stopping)
        return;
    s->stopping = true;
    sl_cfg_watch_free(s->watch);
    s->watch = NULL;
    atomic_store(&s->ready, false);
    pthread_mutex_lock(&s->lock);
    uint64_t delay_ms = s->cfg->shutdown_drain_delay_ms;
    pthread_mutex_unlock(&s->lock);
    if (delay_ms == 0) {
        drain_cb(-1, 0, s);
        return;
    }
    atomic_store(&s->closing, true);
    sl_log_info("shutting down in %llu ms: not ready, closing every connection after its "
                "response",
                (unsigned long long)delay_ms);
    struct timeval tv = {(time_t)(delay_ms / 1000), (suseconds_t)(delay_ms % 1000) * 1000};
    event_base_once(s->base, -1, EV_TIMEOUT, drain_cb, s, &tv);
}

static void worker_done_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_server *s = arg;
    if (atomic_load(&s->workers_done) == s->nworkers)
        event_base_loopbreak(s->base);
}

/* A unix socket is made once and shared by the workers; a TCP address is checked to be
 * free, and each worker then binds its own SO_REUSEPORT socket to it. */
static int open_listeners(struct sl_server *s, char *err, size_t errlen)
{
    const struct sl_config *cfg = s->boot_cfg;

    s->unix_fds = malloc(cfg->nlisteners * sizeof *s->unix_fds);
    if (!s->unix_fds) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        s->unix_fds[i] = -1;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        const struct sl_sockaddr *addr = &cfg->listeners[i].addr;
        if (addr->ss.ss_family == AF_UNIX) {
            s->unix_fds[i] = sl_listen_socket(addr, err, errlen);
            if (s->unix_fds[i] < 0)
                return -1;
        } else if (sl_listen_probe(addr, err, errlen) < 0) {
            return -1;
        }
    }
    return 0;
}

static void close_listeners(struct sl_server *s)
{
    for (size_t i = 0; s->unix_fds && i < s->boot_cfg->nlisteners; i++) {
        if (s->unix_fds[i] < 0)
            continue;
        close(s->unix_fds[i]);
        unlink(((const struct sockaddr_un *)&s->boot_cfg->listeners[i].addr.ss)->sun_path);
    }
    free(s->unix_fds);
    s->unix_fds = NULL;
}

static int open_access_log(struct sl_server *s)
{
    switch (s->cfg->access_log) {
    case SL_ACCESS_LOG_OFF:
        s->access_fd = -1;
        return 0;
    case SL_ACCESS_LOG_STDOUT:
        s->access_fd = STDOUT_FILENO;
        return 0;
    case SL_ACCESS_LOG_FILE:
        s->access_fd =
            open(s->cfg->access_log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
        if (s->access_fd < 0) {
            sl_log_error("access_log %s: %m", s->cfg->access_log_path);
            return -1;
        }
        return 0;
    }
    return 0;
}

int sl_server_run(struct sl_config *cfg)
{
    struct sl_server server = {.cfg = cfg, .boot_cfg = sl_cfg_ref(cfg), .access_fd = -1};
    struct sl_server *s = &server;
    struct sl_admin *admin = NULL;
    struct event *sig[3] = {NULL, NULL, NULL};
    const int signums[3] = {SIGHUP, SIGTERM, SIGINT};
    unsigned started = 0, inited = 0;
    char err[256] = "";
    int rc = 1;
    sigset_t block, old_mask;

    sigemptyset(&block);
    for (int i = 0; i < 3; i++)
        sigaddset(&block, signums[i]);
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);
    pthread_mutex_init(&s->lock, NULL);
    s->nworkers = cfg->workers ? cfg->workers : 1;
    s->metrics = sl_metrics_new(s->nworkers);
    /* The sketches are read only through the admin listener: without it, none is kept. */
    if (cfg->admin_enabled && !(s->top = sl_top_new(s->nworkers, sl_clock_mono_us()))) {
        sl_log_error("out of memory starting sluice");
        goto out;
    }
    s->memory = sl_store_memory_new(cfg->memory_max_keys, cfg->memory_max_bytes, NULL);
    if (cfg->rls.enabled && !(s->rls_memory = sl_store_memory_new(
                                  cfg->memory_max_keys, cfg->memory_max_bytes, sl_clock_real_us))) {
        sl_log_error("out of memory starting sluice");
        goto out;
    }
    s->workers = calloc(s->nworkers, sizeof *s->workers);
    s->base = event_base_new();
    if (!s->metrics || !s->memory || !s->workers || !s->base) {
        sl_log_error("out of memory starting sluice");
        goto out;
    }
    sl_metrics_set_memory_store(s->metrics, s->memory);
    if (sl_metrics_bind(s->metrics, cfg) < 0) {
        sl_log_error("too many route and limit names for the metrics registry");
        goto out;
    }
    if (sl_route_index_reserve(cfg->route_index, s->nworkers) < 0) {
        sl_log_error("out of memory for the route index's scratch space");
        goto out;
    }
    sl_top_bind(cfg);
    if (open_access_log(s) < 0)
        goto out;
    s->worker_done_ev = event_new(s->base, -1, 0, worker_done_cb, s);
    for (int i = 0; i < 3; i++) {
        sig[i] = evsignal_new(s->base, signums[i], signal_cb, s);
        if (!sig[i] || evsignal_add(sig[i], NULL) < 0) {
            sl_log_error("cannot install signal handlers");
            goto out;
        }
    }
    if (open_listeners(s, err, sizeof err) < 0) {
        sl_log_error("%s", err);
        goto out;
    }
    for (; inited < s->nworkers; inited++) {
        if (sl_worker_init(&s->workers[inited], s, inited, err, sizeof err) < 0 ||
            sl_worker_listen(&s->workers[inited], err, sizeof err) < 0 ||
            (cfg->rls.enabled && sl_worker_listen_rls(&s->workers[inited], err, sizeof err) < 0)) {
            inited++;
            sl_log_error("%s", err);
            goto out;
        }
    }
    if (cfg->admin_enabled) {
        struct sl_admin_hooks hooks = {server_config_ref, server_ready, s, s->top};
        admin = sl_admin_start(&cfg->admin_listen, s->metrics, &hooks, err, sizeof err);
        if (!admin) {
            sl_log_error("%s", err);
            goto out;
        }
    }

    /* Workers never take process signals: they arrive on the main loop only. */
    pthread_sigmask(SIG_BLOCK, &block, &old_mask);
    for (; started < s->nworkers; started++)
        if (sl_worker_start(&s->workers[started]) < 0)
            break;
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    if (started < s->nworkers) {
        sl_log_error("cannot start worker threads");
        for (unsigned i = 0; i < started; i++)
            event_active(s->workers[i].force_ev, EV_READ, 0);
        goto out;
    }
    watch_apply(s);
    atomic_store(&s->ready, true);
    for (size_t i = 0; i < cfg->nlisteners; i++)
        sl_log_info("listening on %s%s with %u worker%s, upstream %s", cfg->listeners[i].addr.text,
                    cfg->listeners[i].tls ? " (TLS)" : "", s->nworkers,
                    s->nworkers == 1 ? "" : "s", cfg->upstream.url);
    if (cfg->rls.enabled)
        sl_log_info("rate limit service (gRPC) on %s, %zu domain%s", cfg->rls.listen.text,
                    cfg->rls.files ? sl_rls_config_ndomains(cfg->rls.files) : (size_t)0,
                    cfg->rls.files && sl_rls_config_ndomains(cfg->rls.files) == 1 ? "" : "s");
    event_base_dispatch(s->base);
    rc = 0;

out:
    /* Freeing the signal events restores the default actions: a second SIGTERM during
     * teardown would kill the process instead of letting it exit 0. */
    pthread_sigmask(SIG_BLOCK, &block, NULL);
    for (unsigned i = 0; i < started; i++)
        pthread_join(s->workers[i].thread, NULL);
    sl_admin_stop(admin);
    for (unsigned i = 0; i < inited; i++)
        sl_worker_deinit(&s->workers[i]);
    for (int i = 0; i < 3; i++)
        if (sig[i])
            event_free(sig[i]);
    sl_cfg_watch_free(s->watch);
    if (s->worker_done_ev)
        event_free(s->worker_done_ev);
    if (s->base)
        event_base_free(s->base);
    close_listeners(s);
    if (s->access_fd > STDOUT_FILENO)
        close(s->access_fd);
    free(s->workers);
    sl_store_free(s->memory);
    sl_store_free(s->rls_memory);
    sl_metrics_free(s->metrics);
    sl_top_free(s->top);
    sl_cfg_unref(s->cfg);
    sl_cfg_unref(s->boot_cfg);
    pthread_mutex_destroy(&s->lock);
    if (rc == 0)
        sl_log_info("stopped");
    return rc;
}
