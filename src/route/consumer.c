/* Which rate a request gets from a limit's `rates:` (SPEC.md section 3, Per-consumer rates):
 * the value `by` names, looked up in the limit's table. Shared by the engine, `explain` and
 * `replay`, so that all three choose alike. */
#include <stdlib.h>

#include "sluice/rates.h"
#include "sluice/route.h"

const struct sl_rates_entry *sl_rates_pick(const struct sl_limit *lim, const struct sl_key_ctx *ctx,
                                           const char *key, size_t key_len, char **buf, size_t *cap,
                                           bool *absent)
{
    const struct sl_rates *r = lim->rates;

    *absent = false;
    if (r->by_key)
        return sl_rates_find(r, key, key_len);
    ssize_t n = sl_key_source_build(&r->by, ctx, *buf, *cap);
    if (n < 0) {
        *absent = true;
        return NULL;
    }
    if ((size_t)n > *cap) {
        size_t want = (size_t)n < 256 ? 256 : (size_t)n;
        char *bigger = realloc(*buf, want);
        if (!bigger)
            return NULL;
        *buf = bigger;
        *cap = want;
        sl_key_source_build(&r->by, ctx, *buf, *cap);
    }
    return sl_rates_find(r, *buf, (size_t)n);
}
