/* A worker without thread or listener (embed.h): the process-wide part of sl_server_run
 * reduced to what one worker reads, and the worker set up exactly as the server does. */
#include "embed.h"

#include <stdlib.h>

#include "http.h"
#include "sluice/store_memory.h"

struct sl_embed {
    struct sl_server server;
    struct sl_worker worker;
    bool worker_inited;
};

struct sl_embed *sl_embed_new(struct sl_config *cfg, struct sl_metrics *metrics, int access_fd)
{
    struct sl_embed *e = calloc(1, sizeof *e);
    char err[256];

    if (!e)
        return NULL;
    struct sl_server *s = &e->server;
    s->cfg = sl_cfg_ref(cfg);
    s->access_fd = access_fd;
    pthread_mutex_init(&s->lock, NULL);
    s->nworkers = 1;
    s->workers = &e->worker;
    s->metrics = metrics;
    s->memory = sl_store_memory_new(cfg->memory_max_keys, cfg->memory_max_bytes, NULL);
    if (!s->memory)
        goto fail;
    e->worker_inited = true;
    if (sl_worker_init(&e->worker, s, 0, err, sizeof err) < 0)
        goto fail;
    atomic_store(&s->ready, true);
    return e;

fail:
    sl_embed_free(e);
    return NULL;
}

struct event_base *sl_embed_base(struct sl_embed *e)
{
    return e->worker.base;
}

void sl_embed_adopt(struct sl_embed *e, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    sl_conn_accept(&e->worker, fd, peer, (int)peer_len, NULL);
}

unsigned sl_embed_connections(const struct sl_embed *e)
{
    return e->worker.nconns;
}

void sl_embed_free(struct sl_embed *e)
{
    if (!e)
        return;
    struct sl_server *s = &e->server;
    if (e->worker_inited)
        sl_worker_deinit(&e->worker);
    sl_store_free(s->memory);
    sl_cfg_unref(s->cfg);
    pthread_mutex_destroy(&s->lock);
    free(e);
}
