/* Charges made after the fact (SPEC.md section 3, Cost): when a response's head or body
 * reports what a request used, the number is taken from the key's budget of each charged
 * limit, on the store that admitted it, with the key kept since the decision. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "engine_internal.h"
#include "response.h"
#include "sluice/charge.h"
#include "sluice/metrics.h"
#include "sluice/usage_scan.h"

static void on_charged(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    /* A charge is never awaited: a store that fails it leaves the budget as it was. */
}

/* Takes `units` from check `i`'s key on the store that decided it. */
static void charge(struct sl_engine *e, struct sl_verdict *v, size_t i, uint64_t units)
{
    struct sl_verdict_check *c = &v->priv.checks[i];
    struct sl_key_block *b = v->priv.keys;
    struct sl_store *store = c->store == SL_STORE_REDIS && e->redis ? e->redis : e->memory;
    struct sl_units u = {0, units};

    if (e->metrics)
        sl_metrics_limit_units(e->metrics, c->limit, true, units);
    if (units > 0)
        sl_store_decide_quota(store, c->limit, &c->quota, b->data + b->off[i], b->klen[i], &u,
                              on_charged, NULL);
}

bool sl_engine_charge_pending(const struct sl_verdict *v)
{
    if (!v->priv.keys || !v->route)
        return false;
    for (size_t i = 0; i < sl_verdict_nchecks(v->route); i++)
        if (v->priv.checks[i].charge_due)
            return true;
    return false;
}

void sl_engine_charge_head(struct sl_engine *engine, struct sl_verdict *v,
                           const struct sl_header *hs, size_t nheaders)
{
    if (!v->priv.keys || !v->route)
        return;
    enum sl_usage_body kind = SL_USAGE_NONE;
    for (size_t i = 0; i < nheaders; i++)
        if (hs[i].name_len == 12 && strncasecmp(hs[i].name, "Content-Type", 12) == 0) {
            kind = sl_usage_body_kind(hs[i].value, hs[i].value_len);
            break;
        }
    for (size_t i = 0; i < sl_verdict_nchecks(v->route); i++) {
        struct sl_verdict_check *c = &v->priv.checks[i];
        if (!c->charge_due)
            continue;
        uint64_t units;
        bool ok;
        if (c->limit->charge_kind == SL_CHARGE_JSON) {
            if (kind != SL_USAGE_NONE &&
                (c->scan = sl_usage_scan_new(c->limit->charge_name, kind)) != NULL)
                continue; /* charged when the body ends */
            ok = false;
        } else {
            ok = sl_charge_header_units(c->limit, hs, nheaders, &units);
        }
        c->charge_due = false;
        if (ok)
            charge(engine, v, i, units);
        else if (engine->metrics)
            sl_metrics_charge_error(engine->metrics, c->limit);
    }
    if (!sl_engine_charge_pending(v))
        sl_engine_recycle_keys(engine, v);
}

void sl_engine_charge_body(struct sl_verdict *v, const char *data, size_t len)
{
    if (!v->priv.keys || !v->route)
        return;
    for (size_t i = 0; i < sl_verdict_nchecks(v->route); i++)
        if (v->priv.checks[i].scan)
            sl_usage_scan_feed(v->priv.checks[i].scan, data, len);
}

void sl_engine_charge_body_end(struct sl_engine *engine, struct sl_verdict *v)
{
    if (!v->priv.keys || !v->route)
        return;
    for (size_t i = 0; i < sl_verdict_nchecks(v->route); i++) {
        struct sl_verdict_check *c = &v->priv.checks[i];
        if (!c->scan)
            continue;
        uint64_t units;
        if (sl_usage_scan_finish(c->scan, &units))
            charge(engine, v, i, units);
        else if (engine->metrics)
            sl_metrics_charge_error(engine->metrics, c->limit);
        sl_usage_scan_free(c->scan);
        c->scan = NULL;
        c->charge_due = false;
    }
    sl_engine_recycle_keys(engine, v);
}
