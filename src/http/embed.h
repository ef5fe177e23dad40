/* One worker run by its caller instead of a thread and a listener: it lives on its own
 * event loop, which the caller runs, and serves the connected sockets the caller hands it
 * (one end of a socketpair). The connection, engine, store and upstream code are the
 * program's own; only accepting and the thread are left out. For fuzzing and tests that
 * drive the proxy without a network. Single-threaded: every call from one thread. */
#ifndef SLUICE_HTTP_EMBED_H
#define SLUICE_HTTP_EMBED_H

#include <sys/socket.h>

#include "sluice/config.h"

struct event_base;
struct sl_embed;
struct sl_metrics;

/* A worker under `cfg` (a reference is taken) with a fresh memory store, counting into
 * slot 0 of `metrics` (borrowed; the caller made it with one slot at least and bound it to
 * `cfg`: a registry is costly to make, a worker is not). The access log, unless `cfg` turns
 * it off, is written to `access_fd` (borrowed; -1: dropped). Redis, when configured, is
 * connected as sluice would. NULL on ENOMEM. */
struct sl_embed *sl_embed_new(struct sl_config *cfg, struct sl_metrics *metrics, int access_fd);

/* The loop to run (event_base_loop) for the worker to make progress. */
struct event_base *sl_embed_base(struct sl_embed *e);

/* Serves the connected stream socket `fd` (takes ownership) as a client connection from
 * `peer` (copied; AF_INET, AF_INET6 or AF_UNIX). */
void sl_embed_adopt(struct sl_embed *e, int fd, const struct sockaddr *peer, socklen_t peer_len);

/* Client connections still open. */
unsigned sl_embed_connections(const struct sl_embed *e);

/* Closes every connection and releases the worker. Accepts NULL. */
void sl_embed_free(struct sl_embed *e);

#endif
