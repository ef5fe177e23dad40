/* One connection to a Redis server (redis_link.c): a libevent bufferevent, plain or TLS, for
 * the bytes, hiredis's command formatter and reply reader for the protocol, and a queue of
 * the callbacks awaiting replies, answered in order. */
#ifndef SLUICE_STORE_REDIS_LINK_H
#define SLUICE_STORE_REDIS_LINK_H

#include <hiredis/read.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/socket.h>

struct event_base;
struct sl_redis_link;

/* A reply, or NULL when the link closed before it came. The reply is freed once the callback
 * returns. */
typedef void (*sl_redis_link_reply_cb)(struct sl_redis_link *l, void *reply, void *privdata);

/* The link failed (connection refused or lost, TLS handshake failed, protocol error): every
 * callback still waiting has been called with a NULL reply; `why` says what happened. The
 * link frees itself once this returns: forget it here. Not called after sl_redis_link_free. */
typedef void (*sl_redis_link_close_cb)(struct sl_redis_link *l, const char *why, void *data);

/* The most elements one array of a reply may announce. CLUSTER SLOTS is the largest reply
 * sluice reads: one entry per slot range, at most one per slot (16384) whatever the
 * cluster's size, each a few fields plus one entry for the master and one per replica (in a
 * 1000-node cluster at most 1003). A batch reply has one decision per request it carries, a
 * handful. hiredis 0.14 allocates the array a reply announces before a single element has
 * arrived: "*2147483647\r\n" would cost 16 GiB from a hostile or broken server. A reply
 * announcing more closes the link as a protocol error before anything is allocated for it.
 * (Nested arrays stop at hiredis's depth of 7, and a sibling array comes only after the
 * elements of the one before it: memory then grows with the bytes received.) */
#define SL_REDIS_LINK_MAX_ELEMENTS 16384

/* Connects to `addr` (TCP or AF_UNIX) on `base`; with `ssl` (ownership taken, freed with the
 * link, even on failure) the connection speaks TLS and the handshake starts once connected.
 * Commands may be queued at once: they are sent when the connection is up. `on_close` and
 * `data` are borrowed. NULL on failure (errno set, `ssl` freed). */
struct sl_redis_link *sl_redis_link_new(struct event_base *base, const struct sockaddr *addr,
                                        socklen_t addrlen, SSL *ssl,
                                        sl_redis_link_close_cb on_close, void *data);

/* Closes the connection: every callback still waiting is called with a NULL reply, and
 * on_close is not. Safe inside the link's own callbacks (the link is then freed once they
 * return). Accepts NULL. */
void sl_redis_link_free(struct sl_redis_link *l);

/* Queues a command, formatted as redisFormatCommand does, whose reply goes to `cb` (NULL:
 * ignored). Returns 0, or -1 when the link is closing or out of memory (nothing queued). */
int sl_redis_link_command(struct sl_redis_link *l, sl_redis_link_reply_cb cb, void *privdata,
                          const char *format, ...) __attribute__((format(printf, 4, 5)));

/* The same with arguments as counted strings (redisFormatCommandArgv). */
int sl_redis_link_command_argv(struct sl_redis_link *l, sl_redis_link_reply_cb cb, void *privdata,
                               int argc, const char **argv, const size_t *argvlen);

/* Queues SUBSCRIBE `channel`: its confirmation and every message pushed on the channel go
 * to `cb`, repeatedly, until the link closes (then once with NULL). A subscribed link takes
 * no other command. 0, or -1 as sl_redis_link_command. */
int sl_redis_link_subscribe(struct sl_redis_link *l, sl_redis_link_reply_cb cb, void *privdata,
                            const char *channel);

/* The `data` the link was made with. */
void *sl_redis_link_data(const struct sl_redis_link *l);

/* Whether the connection was established (for TLS: the handshake completed). */
bool sl_redis_link_connected(const struct sl_redis_link *l);

/* Callbacks waiting for a reply. */
size_t sl_redis_link_waiting(const struct sl_redis_link *l);

#endif
