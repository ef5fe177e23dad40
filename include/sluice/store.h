/* Where limit state lives. A store completes each decision through a callback, so the
 * memory store (answers at once, inside decide()) and the Redis store (answers later on
 * the worker's event loop) look the same to the engine. */
#ifndef SLUICE_STORE_H
#define SLUICE_STORE_H

#include <stddef.h>

#include "sluice/limit.h"

enum sl_store_status {
    SL_STORE_OK,
    SL_STORE_ERR_TIMEOUT,
    SL_STORE_ERR_CONNECTION,
    SL_STORE_ERR_SCRIPT,
};

/* Called exactly once per decide() call. `d` is valid only when status is SL_STORE_OK and
 * only during the call. */
typedef void (*sl_store_cb)(void *arg, const struct sl_decision *d, enum sl_store_status status);

struct sl_store;

struct sl_store_ops {
    const char *name; /* "memory" or "redis": the `store` label of the metrics */
    /* Decides one request asking `u` (copied) of `lim` under quota `q` (copied) and `key`
     * (borrowed for the call only; binary-safe). A key's state does not depend on the quota
     * it was decided under: one of another quota reads it as a change of rate does. A charge
     * is a decision asking {0, amount}: always admitted. Calls `cb` exactly once: possibly
     * before returning, at most after the store's timeout. */
    void (*decide)(struct sl_store *store, const struct sl_limit *lim, const struct sl_quota *q,
                   const char *key, size_t key_len, const struct sl_units *u, sl_store_cb cb,
                   void *arg);
    void (*free)(struct sl_store *store);
};

struct sl_store {
    const struct sl_store_ops *ops;
};

/* A decision of one unit under the limit's own rate, as a request of the default cost asks. */
static inline void sl_store_decide(struct sl_store *store, const struct sl_limit *lim,
                                   const char *key, size_t key_len, sl_store_cb cb, void *arg)
{
    static const struct sl_units one = {1, 1};
    struct sl_quota q = sl_limit_quota(lim);
    store->ops->decide(store, lim, &q, key, key_len, &one, cb, arg);
}

/* A decision asking `u` under the limit's own rate. */
static inline void sl_store_decide_units(struct sl_store *store, const struct sl_limit *lim,
                                         const char *key, size_t key_len, const struct sl_units *u,
                                         sl_store_cb cb, void *arg)
{
    struct sl_quota q = sl_limit_quota(lim);
    store->ops->decide(store, lim, &q, key, key_len, u, cb, arg);
}

/* A decision asking `u` under quota `q`. */
static inline void sl_store_decide_quota(struct sl_store *store, const struct sl_limit *lim,
                                         const struct sl_quota *q, const char *key, size_t key_len,
                                         const struct sl_units *u, sl_store_cb cb, void *arg)
{
    store->ops->decide(store, lim, q, key, key_len, u, cb, arg);
}

/* Releases a store. Accepts NULL. */
static inline void sl_store_free(struct sl_store *store)
{
    if (store)
        store->ops->free(store);
}

#endif
