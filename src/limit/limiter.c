/* The algorithm registry: adding an algorithm is one file and one line here. */
#include <stddef.h>
#include <string.h>

#include "sluice/limit.h"

extern const struct sl_algorithm_ops sl_alg_fixed_window;
extern const struct sl_algorithm_ops sl_alg_sliding_window;
extern const struct sl_algorithm_ops sl_alg_sliding_window_counter;
extern const struct sl_algorithm_ops sl_alg_token_bucket;
extern const struct sl_algorithm_ops sl_alg_leaky_bucket;

static const struct sl_algorithm_ops *const algorithms[] = {
    &sl_alg_fixed_window, &sl_alg_sliding_window, &sl_alg_sliding_window_counter,
    &sl_alg_token_bucket, &sl_alg_leaky_bucket,   NULL,
};

const struct sl_algorithm_ops *sl_algorithm_find(const char *name)
{
    for (size_t i = 0; algorithms[i]; i++)
        if (strcmp(algorithms[i]->name, name) == 0)
            return algorithms[i];
    return NULL;
}

const struct sl_algorithm_ops *const *sl_algorithm_all(void)
{
    return algorithms;
}

const struct sl_algorithm_ops *const *sl_algorithm_stored(void)
{
    static const struct sl_algorithm_ops *const stored[] = {
        &sl_alg_fixed_window, &sl_alg_sliding_window, &sl_alg_sliding_window_counter,
        &sl_alg_token_bucket, &sl_alg_leaky_bucket,   &sl_alg_rls_fixed_window,
        NULL,
    };
    return stored;
}

uint64_t sl_limit_capacity(const struct sl_limit *lim)
{
    return lim->alg->has_burst ? lim->burst : lim->count;
}

uint64_t sl_quota_capacity(const struct sl_limit *lim, const struct sl_quota *q)
{
    return lim->alg->has_burst ? q->burst : q->count;
}
