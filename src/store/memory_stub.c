/* Placeholder memory store: decides with a fresh state every time. */
#include <stdlib.h>

#include "sluice/store_memory.h"

static void stub_decide(struct sl_store *store, const struct sl_limit *lim, const char *key,
                        size_t key_len, sl_store_cb cb, void *arg)
{
    struct sl_decision d = {.allowed = true, .limit = lim->count, .remaining = lim->count};
    cb(arg, &d, SL_STORE_OK);
}

static void stub_free(struct sl_store *store)
{
    free(store);
}

static const struct sl_store_ops stub_ops = {"memory", stub_decide, stub_free};

struct sl_store *sl_store_memory_new(uint64_t max_keys, uint64_t (*clock_us)(void))
{
    struct sl_store *s = malloc(sizeof *s);
    if (s)
        s->ops = &stub_ops;
    return s;
}
uint64_t sl_store_memory_keys(const struct sl_store *store)
{
    return 0;
}
uint64_t sl_store_memory_evictions(const struct sl_store *store)
{
    return 0;
}
