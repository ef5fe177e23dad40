/* hiredis asks its event loop to watch for reads after every reply it has read and after
 * every write, and for writes after every command it queues. hiredis's own libevent adapter
 * passes each request on to libevent, whose bases are thread-aware in sluice: each takes the
 * base's lock and checks the event's state, about as much as a decision's own bookkeeping.
 * Here both events persist, and each request only changes what is watched: a decision costs
 * the write event's addition and removal, and nothing for reads. */
#include <stdbool.h>
#include <stdlib.h>

#include "redis_events.h"

struct redis_events {
    redisAsyncContext *ac;
    struct event *read, *write;
    bool reading, writing; /* whether `read` and `write` are added */
};

static void on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redisAsyncHandleRead(((struct redis_events *)arg)->ac);
}

static void on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redisAsyncHandleWrite(((struct redis_events *)arg)->ac);
}

static void add_read(void *arg)
{
    struct redis_events *e = arg;
    if (!e->reading)
        e->reading = event_add(e->read, NULL) == 0;
}

static void del_read(void *arg)
{
    struct redis_events *e = arg;
    if (e->reading)
        event_del(e->read);
    e->reading = false;
}

static void add_write(void *arg)
{
    struct redis_events *e = arg;
    if (!e->writing)
        e->writing = event_add(e->write, NULL) == 0;
}

static void del_write(void *arg)
{
    struct redis_events *e = arg;
    if (e->writing)
        event_del(e->write);
    e->writing = false;
}

static void cleanup(void *arg)
{
    struct redis_events *e = arg;
    if (e->read)
        event_free(e->read);
    if (e->write)
        event_free(e->write);
    free(e);
}

int sl_redis_events_attach(redisAsyncContext *ac, struct event_base *base)
{
    if (ac->ev.data)
        return REDIS_ERR;
    struct redis_events *e = calloc(1, sizeof *e);
    if (!e)
        return REDIS_ERR;
    e->ac = ac;
    e->read = event_new(base, ac->c.fd, EV_READ | EV_PERSIST, on_read, e);
    e->write = event_new(base, ac->c.fd, EV_WRITE | EV_PERSIST, on_write, e);
    if (!e->read || !e->write) {
        cleanup(e);
        return REDIS_ERR;
    }
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    ac->ev.data = e;
    return REDIS_OK;
}
