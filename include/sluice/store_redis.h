/* The Redis store: one per worker thread, on the worker's own event loop, with one
 * connection per server it needs (a bufferevent, TLS with rediss:// or redis.tls, speaking
 * the protocol through hiredis's formatter and reader): the server of redis.url, each master
 * of a Redis Cluster (redis.cluster), or the master the sentinels name (redis.sentinel).
 * Each decision is one EVALSHA of the limit's algorithm script on one key, key_prefix +
 * route + ":" + limit + ":" + tag + ":" + key value, where tag is the algorithm's
 * (sl_algorithm_ops.tag: fw, sw, swc, tb, lb) and values over 200 bytes become their SHA-256
 * in hex, sent to the master owning the key's slot. The tag keeps an algorithm from ever
 * reading another's state, or a key written before tags existed, when a limit changes its
 * algorithm. Decisions are pipelined on the connections.
 *
 * Every decision completes within redis.timeout (plus timer slack), redirections included:
 * with the script's answer, or with SL_STORE_ERR_TIMEOUT, SL_STORE_ERR_CONNECTION (not
 * connected after the first attempt, connection lost, cluster down, store freed) or
 * SL_STORE_ERR_SCRIPT (error or malformed reply). After any failure the store reconnects in
 * the background, waiting 100 ms, doubling to 5 s. Nothing blocks: host names are looked up
 * with evdns.
 *
 * With redis.deny_cache, a key Redis denied is denied by the store itself, inside decide()
 * and before any node is picked, until the denial's retry_after has passed counted from
 * when it was sent (deny_cache.h), and counted in sluice_deny_cache_hits_total. */
#ifndef SLUICE_STORE_REDIS_H
#define SLUICE_STORE_REDIS_H

#include <stdbool.h>

#include "sluice/config.h"
#include "sluice/store.h"

struct event_base;
struct sl_metrics_slot;

/* Creates the store of worker `worker_id` on `base` and starts connecting. The settings of
 * `cfg` are copied (cfg->deny_cache is this store's own bound); `base` and `metrics` (this
 * worker's slot, may be NULL) are borrowed and must outlive the store. Connection state goes
 * to sl_metrics_redis_connected; failed decisions are counted by whoever receives their
 * status (the engine), not here. Returns NULL on ENOMEM. Use the store (decide, free) only
 * from the thread running `base`, and never free it from inside one of its callbacks.
 * Freeing completes the decisions still pending with SL_STORE_ERR_CONNECTION. */
struct sl_store *sl_store_redis_new(struct event_base *base, const struct sl_redis_config *cfg,
                                    unsigned worker_id, struct sl_metrics_slot *metrics);

/* True while a connection to every master the store needs is up, authenticated and has its
 * scripts loaded. Callable from any thread (for /readyz). */
bool sl_store_redis_connected(const struct sl_store *store);

/* True once the store's first connection attempt has finished, connected or failed: with
 * redis.cluster, the first slot map read (or its failure) and the first attempt of every
 * master it names; with redis.sentinel, the first master lookup (or its failure) and the
 * master's first attempt. Until then a decision whose node is not up waits for it, within
 * redis.timeout from when it was asked, instead of failing at once. Callable from any
 * thread (for /readyz). */
bool sl_store_redis_started(const struct sl_store *store);

/* Tests only: every script of `store` (a Redis store) decides at `clock_us()` (µs, any epoch)
 * instead of Redis's TIME, sent as the scripts' ARGV[8], so that a sequence decides exactly as
 * on the memory store with the same clock. NULL restores TIME. Nothing in the configuration
 * or the binary calls it: production scripts always read TIME. */
void sl_store_redis_pin_clock(struct sl_store *store, uint64_t (*clock_us)(void));

#endif
