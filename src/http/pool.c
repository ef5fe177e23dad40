/* The per-worker pool of idle keep-alive upstream connections. Most recently used first,
 * so the connections kept warm are the ones in use and the rest age out at the upstream. */
#include <string.h>

#include "http.h"

static void unlink_idle(struct sl_worker *w, struct sl_upstream *up)
{
    if (up->prev)
        up->prev->next = up->next;
    else
        w->idle = up->next;
    if (up->next)
        up->next->prev = up->prev;
    up->prev = up->next = NULL;
    w->nidle--;
}

/* An idle connection has nothing to say: data or a close from the upstream ends it. */
void sl_pool_drop(struct sl_upstream *up)
{
    unlink_idle(up->w, up);
    sl_upstream_free(up);
}

static void idle_eventcb(struct bufferevent *bev, short what, void *arg)
{
    sl_pool_drop(arg);
}

static bool same_addr(const struct sl_upstream *up, const struct sockaddr_storage *addr,
                      socklen_t len)
{
    return up->addr_len == len && memcmp(&up->addr, addr, len) == 0;
}

struct sl_upstream *sl_pool_take(struct sl_worker *w, const struct sockaddr_storage *addr,
                                 socklen_t len, const struct ssl_ctx_st *tls_ctx)
{
    struct sl_upstream *up = w->idle;
    while (up) {
        struct sl_upstream *next = up->next;
        unlink_idle(w, up);
        if (same_addr(up, addr, len) && up->tls_ctx == tls_ctx)
            return up;
        sl_upstream_free(up); /* to an address a reload replaced, or a name moved from */
        up = next;
    }
    return NULL;
}

void sl_pool_put(struct sl_worker *w, struct sl_upstream *up, unsigned keepalive)
{
    if (w->nidle >= keepalive || w->draining) {
        sl_upstream_free(up);
        return;
    }
    bufferevent_setcb(up->bev, sl_bev_tls(up->bev) ? sl_upstream_tls_readcb : NULL, NULL,
                      idle_eventcb, up);
    /* The write timeout may stay as it is: it cannot fire while writing is off. */
    bufferevent_disable(up->bev, EV_WRITE);
    if (up->read_timeout_on) {
        up->read_timeout_on = false;
        up->rev_timeout_changed = true;
    }
    sl_upstream_sync_read(up);
    up->next = w->idle;
    up->prev = NULL;
    if (w->idle)
        w->idle->prev = up;
    w->idle = up;
    w->nidle++;
}

void sl_pool_clear(struct sl_worker *w)
{
    while (w->idle) {
        struct sl_upstream *up = w->idle;
        unlink_idle(w, up);
        sl_upstream_free(up);
    }
}
