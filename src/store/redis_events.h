/* A hiredis asynchronous connection driven by a libevent base (redis_events.c). */
#ifndef SLUICE_STORE_REDIS_EVENTS_H
#define SLUICE_STORE_REDIS_EVENTS_H

#include <event2/event.h>
#include <hiredis/async.h>

/* Lets `base` run `ac`'s reads and writes, as hiredis's adapters/libevent.h would; the events
 * are freed with `ac`. REDIS_OK, or REDIS_ERR (ENOMEM, or `ac` already attached). */
int sl_redis_events_attach(redisAsyncContext *ac, struct event_base *base);

#endif
