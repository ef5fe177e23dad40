/* What engine.c and engine_charge.c share: the engine's own state and the kept keys of a
 * request. Private to src/route/. */
#ifndef SLUICE_ROUTE_ENGINE_INTERNAL_H
#define SLUICE_ROUTE_ENGINE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/engine.h"

/* Per-worker buffers for what a request head yields, sized by the largest head seen. */
struct scratch {
    char *path;
    size_t path_cap;
    char *host;
    size_t host_cap;
    char *key;
    size_t key_cap;
    char *by; /* the value a `rates:` by source names */
    size_t by_cap;
};

/* The keys of one request, kept past sl_store_decide() for a failure_mode local retry.
 * Blocks are recycled through the engine, so steady traffic allocates nothing. */
struct sl_key_block {
    struct sl_key_block *next;
    size_t cap, len;
    size_t off[SL_MAX_LIMITS_PER_ROUTE];
    size_t klen[SL_MAX_LIMITS_PER_ROUTE];
    bool kept[SL_MAX_LIMITS_PER_ROUTE];
    char data[];
};

struct sl_engine {
    struct event_base *base;
    struct sl_store *memory;
    struct sl_store *redis;
    struct sl_metrics_slot *metrics;
    struct sl_top_slot *top; /* NULL: no heavy-hitter sketches */
    /* The check being asked in issue() and its key in the scratch buffer: an answer given
     * inside sl_store_decide() finds its key there, with no copy. */
    const struct sl_verdict_check *asking;
    const char *asking_key;
    size_t asking_len;
    struct scratch scratch;
    bool scratch_busy; /* a decision is being issued: a nested call needs its own */
    struct sl_key_block *free_blocks;
    unsigned thread; /* the route index's thread slot */
};

/* Returns the verdict's kept keys (if any) to the engine's free blocks, for the next
 * request; the verdict holds none afterwards. */
void sl_engine_recycle_keys(struct sl_engine *e, struct sl_verdict *v);

#endif
