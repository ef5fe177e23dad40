/* Placeholder loader. */
#include <stdlib.h>
#include <string.h>

#include "sluice/config.h"

struct sl_config *sl_cfg_load(const char *path, char **errors)
{
    if (errors)
        *errors = strdup("configuration loader not built\n");
    return NULL;
}
struct sl_config *sl_cfg_ref(struct sl_config *cfg)
{
    atomic_fetch_add(&cfg->refs, 1);
    return cfg;
}
void sl_cfg_unref(struct sl_config *cfg)
{
    if (cfg && atomic_fetch_sub(&cfg->refs, 1) == 1)
        free(cfg);
}
int sl_cfg_to_json(const struct sl_config *cfg, char **out)
{
    *out = strdup("{}");
    return *out ? 0 : -1;
}
