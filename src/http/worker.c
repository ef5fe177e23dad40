/* One worker thread: its event loop, its listener, its engine, upstream pool and access
 * log buffer. The main thread talks to it only through events made active from outside
 * (configuration, stop, force, resume) and the mailbox lock. */
#include <event2/thread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "h2.h"
#include "sluice/clock.h"
#include "sluice/config_parse.h"
#include "sluice/log.h"
#include "sluice/store_redis.h"

/* The certificates for listener `index`: the current snapshot's, so that a reload rotates
 * them, unless a reload moved that entry (applied only at a restart); then the ones it was
 * bound with. */
static const struct sl_tls_server *listener_tls(struct sl_worker *w, size_t index)
{
    const struct sl_listen_config *boot = &w->server->boot_cfg->listeners[index];
    const struct sl_listen_config *now =
        index < w->cfg->nlisteners ? &w->cfg->listeners[index] : NULL;

    if (!boot->tls)
        return NULL;
    if (now && now->tls && now->tls->server && sl_sockaddr_same(&now->addr, &boot->addr))
        return now->tls->server;
    return boot->tls->server;
}

static void accept_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa, int salen,
                      void *arg)
{
    struct sl_worker_listener *wl = arg;
    struct sl_worker *w = wl->w;

    sl_worker_adopt_config(w);
    sl_conn_accept(w, fd, sa, salen, listener_tls(w, wl->index));
}

static void listeners_free(struct sl_worker *w)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].ev)
            evconnlistener_free(w->listeners[i].ev);
    free(w->listeners);
    w->listeners = NULL;
    w->nlisteners = 0;
}

static void listeners_enable(struct sl_worker *w, bool on)
{
    for (size_t i = 0; i < w->nlisteners; i++)
        if (w->listeners[i].ev)
            (on ? evconnlistener_enable : evconnlistener_disable)(w->listeners[i].ev);
}

static void accept_rls_cb(struct evconnlistener *l, evutil_socket_t fd, struct sockaddr *sa,
                          int salen, void *arg)
{
    sl_conn_accept_rls(arg, fd, sa, salen);
}

static void accept_error_cb(struct evconnlistener *l, void *arg)
{
    /* EMFILE and friends: keep serving the open connections; accepting resumes when
     * libevent is next told the socket is readable. */
    sl_log_warn("accept: %s", evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
}

void sl_worker_adopt_config(struct sl_worker *w)
{
    if (!atomic_load_explicit(&w->cfg_waiting, memory_order_acquire))
        return;
    pthread_mutex_lock(&w->mailbox_lock);
    struct sl_config *next = w->next_cfg;
    w->next_cfg = NULL;
    atomic_store_explicit(&w->cfg_waiting, false, memory_order_relaxed);
    pthread_mutex_unlock(&w->mailbox_lock);
    if (next) {
        sl_cfg_unref(w->cfg);
        w->cfg = next;
    }
}

static void cfg_cb(evutil_socket_t fd, short what, void *arg)
{
    sl_worker_adopt_config(arg);
}

void sl_worker_maybe_done(struct sl_worker *w)
{
    if (w->draining && w->nconns == 0)
        event_base_loopbreak(w->base);
}

static void stop_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_worker *w = arg;
    w->draining = true;
    listeners_free(w);
    if (w->rls_listener) {
        evconnlistener_free(w->rls_listener);
        w->rls_listener = NULL;
    }
    atomic_store(&w->listener_paused, false);
    sl_pool_clear(w);
    sl_h2u_close_all(w, true);
    for (struct sl_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        sl_conn_shutdown(c, true);
    }
    for (struct sl_h2_conn *h = w->h2conns, *next; h; h = next) {
        next = h->next;
        sl_h2_shutdown(h, true);
    }
    sl_worker_maybe_done(w);
}

/* Closes every connection. One waiting for a store decision stays allocated until the
 * decision calls back (the engine promises it will), so the list is walked, not drained. */
static void close_all(struct sl_worker *w)
{
    for (struct sl_conn *c = w->conns, *next; c; c = next) {
        next = c->next;
        sl_conn_shutdown(c, false);
    }
    for (struct sl_h2_conn *h = w->h2conns, *next; h; h = next) {
        next = h->next;
        sl_h2_shutdown(h, false);
    }
}

static void force_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_worker *w = arg;
    w->draining = true;
    close_all(w);
    event_base_loopbreak(w->base);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
    struct sl_worker *w = arg;
    if (w->nlisteners && atomic_load(&w->listener_paused) &&
        atomic_load(&w->server->conns) < w->cfg->client.max_connections) {
        atomic_store(&w->listener_paused, false);
        listeners_enable(w, true);
    }
}

void sl_worker_conn_added(struct sl_worker *w)
{
    unsigned n = atomic_fetch_add(&w->server->conns, 1) + 1;
    /* Past max_connections further clients wait in the kernel's accept queue. */
    if (n >= w->cfg->client.max_connections && w->nlisteners) {
        atomic_store(&w->listener_paused, true);
        listeners_enable(w, false);
    }
}

void sl_worker_conn_gone(struct sl_worker *w)
{
    w->nconns--;
    sl_metrics_connection_closed(w->metrics);
    sl_worker_conn_removed(w);
    sl_worker_maybe_done(w);
}

void sl_worker_conn_removed(struct sl_worker *w)
{
    struct sl_server *s = w->server;
    unsigned n = atomic_fetch_sub(&s->conns, 1) - 1;
    if (n >= w->cfg->client.max_connections || w->draining)
        return;
    for (unsigned i = 0; i < s->nworkers; i++) {
        struct sl_worker *o = &s->workers[i];
        if (!atomic_load(&o->listener_paused))
            continue;
        if (o == w)
            resume_cb(-1, 0, w);
        else
            event_active(o->resume_ev, EV_READ, 0);
    }
}

int sl_worker_init(struct sl_worker *w, struct sl_server *s, unsigned index, char *err,
                   size_t errlen)
{
    struct event_config *ec = event_config_new();

    memset(w, 0, sizeof *w);
    w->server = s;
    w->index = index;
    pthread_mutex_init(&w->mailbox_lock, NULL);
    w->cfg = sl_cfg_ref(s->cfg);
    if (!ec)
        goto nomem;
    /* The changelist folds an add and a delete of the same event within one loop turn
     * into nothing, saving epoll_ctl calls on the hot path. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    /* Timeouts on CLOCK_MONOTONIC, the clock the limits decide on: libevent otherwise uses
     * CLOCK_MONOTONIC_COARSE, a tick behind, and a leaky-bucket delay would end up to one
     * tick early, which is a rate overrun. */
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    event_config_set_max_dispatch_interval(ec, NULL, SL_LOW_PRIO_PER_TURN, SL_PRIO_NORMAL);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    /* Events made from here on default to SL_PRIO_NORMAL (libevent: levels / 2). */
    if (!w->base || event_base_priority_init(w->base, SL_PRIO_LEVELS) < 0)
        goto nomem;
    w->metrics = sl_metrics_slot(s->metrics, index);
    if (s->cfg->redis.enabled) {
        /* redis.deny_cache bounds the instance: each worker holds its share, rounded up, in
         * a cache of its own, so the hot path takes no lock. The settings are copied. */
        struct sl_redis_config rc = s->cfg->redis;
        rc.deny_cache = (rc.deny_cache + s->nworkers - 1) / s->nworkers;
        w->redis = sl_store_redis_new(w->base, &rc, index, w->metrics);
        if (!w->redis)
            goto nomem;
    }
    w->engine = sl_engine_new(w->base, s->memory, w->redis, w->metrics);
    if (w->engine) {
        sl_engine_set_top(w->engine, sl_top_slot(s->top, index));
        sl_engine_set_thread(w->engine, w->index);
    }
    w->cfg_ev = event_new(w->base, -1, 0, cfg_cb, w);
    w->stop_ev = event_new(w->base, -1, 0, stop_cb, w);
    w->force_ev = event_new(w->base, -1, 0, force_cb, w);
    w->resume_ev = event_new(w->base, -1, 0, resume_cb, w);
    if (!w->engine || !w->cfg_ev || !w->stop_ev || !w->force_ev || !w->resume_ev ||
        sl_access_log_init(w) < 0)
        goto nomem;
    return 0;

nomem:
    snprintf(err, errlen, "out of memory starting worker %u", w->index);
    return -1;
}

int sl_worker_listen(struct sl_worker *w, char *err, size_t errlen)
{
    struct sl_server *s = w->server;
    const struct sl_config *boot = s->boot_cfg;

    w->listeners = calloc(boot->nlisteners, sizeof *w->listeners);
    if (!w->listeners)
        goto nomem;
    w->nlisteners = boot->nlisteners;
    for (size_t i = 0; i < boot->nlisteners; i++) {
        struct sl_worker_listener *wl = &w->listeners[i];
        int fd = s->unix_fds[i] >= 0 ? dup(s->unix_fds[i])
                                     : sl_listen_socket(&boot->listeners[i].addr, err, errlen);
        if (fd < 0)
            return -1;
        *wl = (struct sl_worker_listener){.w = w, .index = i};
        wl->ev = evconnlistener_new(w->base, accept_cb, wl,
                                    LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
        if (!wl->ev) {
            close(fd);
            goto nomem;
        }
        evconnlistener_set_error_cb(wl->ev, accept_error_cb);
    }
    return 0;

nomem:
    snprintf(err, errlen, "out of memory starting worker %u", w->index);
    return -1;
}

int sl_worker_listen_rls(struct sl_worker *w, char *err, size_t errlen)
{
    struct sl_server *s = w->server;

    /* Redis when configured (keys under its key_prefix, "rls:" and the domain), else the
     * service's own memory store, whose clock is the epoch's as ratelimit's windows are. */
    w->rls_env = (struct sl_rls_env){.store = w->redis ? w->redis : s->rls_memory,
                                     .local = s->rls_memory,
                                     .store_kind = w->redis ? SL_STORE_REDIS : SL_STORE_MEMORY,
                                     .clock_us = sl_clock_real_us,
                                     .metrics = w->metrics,
                                     .top = s->top ? sl_top_slot(s->top, w->index) : NULL,
                                     .thread = w->index};
    int fd = sl_listen_socket(&s->cfg->rls.listen, err, errlen);
    if (fd < 0)
        return -1;
    w->rls_listener = evconnlistener_new(w->base, accept_rls_cb, w,
                                         LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC, 0, fd);
    if (!w->rls_listener) {
        close(fd);
        snprintf(err, errlen, "out of memory starting worker %u", w->index);
        return -1;
    }
    evconnlistener_set_error_cb(w->rls_listener, accept_error_cb);
    return 0;
}

void sl_worker_deinit(struct sl_worker *w)
{
    w->draining = true;
    close_all(w);
    /* Completes the decisions still pending, which frees the connections waiting on them;
     * the engine is not used after this. */
    sl_store_free(w->redis);
    w->redis = NULL;
    sl_pool_clear(w);
    listeners_free(w);
    if (w->rls_listener)
        evconnlistener_free(w->rls_listener);
    /* Freeing the engine answers the decisions it still owes; what remains after that
     * has nobody left to call it back. */
    sl_engine_free(w->engine);
    w->engine = NULL;
    while (w->conns) {
        w->conns->x.decision_pending = false;
        sl_conn_shutdown(w->conns, false);
    }
    while (w->h2conns)
        sl_h2_abandon(w->h2conns);
    sl_h2u_close_all(w, false);
    sl_h2_spares_free(w);
    sl_access_log_deinit(w);
    sl_upstream_name_deinit(w); /* after every connection that could be looking up */
    sl_tls_session_slot_clear(&w->upstream_session);
    if (w->cfg_ev)
        event_free(w->cfg_ev);
    if (w->stop_ev)
        event_free(w->stop_ev);
    if (w->force_ev)
        event_free(w->force_ev);
    if (w->resume_ev)
        event_free(w->resume_ev);
    if (w->base)
        event_base_free(w->base);
    sl_cfg_unref(w->next_cfg);
    sl_cfg_unref(w->cfg);
    pthread_mutex_destroy(&w->mailbox_lock);
}

static void *worker_main(void *arg)
{
    struct sl_worker *w = arg;
    event_base_dispatch(w->base);
    sl_access_log_flush(w);
    atomic_fetch_add(&w->server->workers_done, 1);
    event_active(w->server->worker_done_ev, EV_READ, 0);
    return NULL;
}

int sl_worker_start(struct sl_worker *w)
{
    return pthread_create(&w->thread, NULL, worker_main, w) == 0 ? 0 : -1;
}

void sl_worker_publish(struct sl_worker *w, struct sl_config *cfg)
{
    pthread_mutex_lock(&w->mailbox_lock);
    sl_cfg_unref(w->next_cfg);
    w->next_cfg = sl_cfg_ref(cfg);
    /* Checked by the worker at the start of every request head, so that a request begun
     * after the reload was reported never runs under the old snapshot. */
    atomic_store_explicit(&w->cfg_waiting, true, memory_order_release);
    pthread_mutex_unlock(&w->mailbox_lock);
    event_active(w->cfg_ev, EV_READ, 0);
}
