/* Placeholder engine: forwards every request unlimited. */
#include <stdlib.h>

#include "sluice/engine.h"

struct sl_engine {
    int unused;
};

const char *sl_outcome_name(enum sl_outcome outcome)
{
    static const char *const names[] = {"allowed",    "limited",   "shadow_limited",
                                        "exempt",     "unmatched", "store_error"};
    return names[outcome];
}

struct sl_engine *sl_engine_new(struct event_base *base, struct sl_store *memory,
                                struct sl_store *redis, struct sl_metrics_slot *metrics)
{
    return calloc(1, sizeof(struct sl_engine));
}

void sl_engine_free(struct sl_engine *engine)
{
    free(engine);
}

void sl_engine_decide(struct sl_engine *engine, const struct sl_config *cfg,
                      const struct sl_request *req, struct sl_verdict *v, sl_verdict_cb cb,
                      void *arg)
{
    v->route = NULL;
    v->outcome = SL_OUTCOME_UNMATCHED;
    v->status = 0;
    v->delay_us = 0;
    v->client.family = 0;
    cb(arg, v);
}
