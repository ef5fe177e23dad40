/* sluice_rls_requests_total{domain,code}: the rate limit service's calls by domain and overall
 * answer. Domains are named from the rls files when a configuration is bound, never from a
 * request: a call on any other domain counts under domain="", so the series stay bounded by
 * what the operator wrote. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "metrics_internal.h"
#include "sluice/rls_config.h"

#define MASK (2 * SL_METRICS_MAX_RLS_DOMAINS - 1)
#define OTHER SL_METRICS_MAX_RLS_DOMAINS

static uint32_t hash_name(const char *name)
{
    uint32_t h = 2166136261u;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 16777619u;
    return h;
}

/* The id of `name`, or OTHER when it was never bound. Any thread, no lock. */
static unsigned find(struct sl_metrics *m, const char *name)
{
    for (uint32_t i = hash_name(name) & MASK;; i = (i + 1) & MASK) {
        uint32_t id = atomic_load_explicit(&m->rls_index[i], memory_order_acquire);
        if (!id)
            return OTHER;
        if (strcmp(m->rls_domains[id - 1], name) == 0)
            return id - 1;
    }
}

/* Each limit of the files gets the ids of route "rls:DOMAIN" and its full key, as a route's
 * limits do: /top's sketches are kept by limit id. No series appear for them: the rate limit
 * service counts no route requests or limit checks. A registry too full to name them leaves
 * them without a sketch, never fails the configuration. */
static void bind_limit(struct sl_rls_limit *l, void *arg)
{
    struct sl_metrics *m = arg;
    unsigned route = sl_metrics_intern_route(m, l->lim.route->name);
    l->lim.metrics_id =
        route == UINT_MAX ? UINT_MAX : sl_metrics_intern_limit(m, route, l->full_key);
}

void sl_metrics_rls_bind(struct sl_metrics *m, const struct sl_config *cfg)
{
    sl_rls_config_each_limit(cfg->rls.files, bind_limit, m);
    const struct sl_rls_config *files = cfg->rls.files;
    size_t n = files ? sl_rls_config_ndomains(files) : 0;

    for (size_t d = 0; d < n; d++) {
        const char *name = sl_rls_domain_name(sl_rls_config_domain(files, d));
        unsigned count = atomic_load_explicit(&m->nrls_domains, memory_order_relaxed);
        uint32_t i = hash_name(name) & MASK;
        if (find(m, name) != OTHER || count == SL_METRICS_MAX_RLS_DOMAINS)
            continue;
        while (atomic_load_explicit(&m->rls_index[i], memory_order_relaxed))
            i = (i + 1) & MASK;
        if (!(m->rls_domains[count] = strdup(name)))
            continue;
        atomic_store_explicit(&m->nrls_domains, count + 1, memory_order_release);
        atomic_store_explicit(&m->rls_index[i], count + 1, memory_order_release);
    }
}

void sl_metrics_rls_free(struct sl_metrics *m)
{
    for (unsigned i = 0; i < atomic_load(&m->nrls_domains); i++)
        free(m->rls_domains[i]);
}

void sl_metrics_rls_request(struct sl_metrics_slot *s, const char *domain,
                            enum sl_rls_code_kind code)
{
    if (!s || (unsigned)code >= SL_RLS_CODE_COUNT)
        return;
    _Atomic uint64_t *c = &s->rls_requests[find(s->owner, domain)][code];
    /* Only this slot's worker writes it. */
    atomic_store_explicit(c, atomic_load_explicit(c, memory_order_relaxed) + 1,
                          memory_order_relaxed);
}

/* Domain names are the files' own: [^"\\\n] is all a label value needs escaped. */
static void emit_series(struct evbuffer *out, int *err, const char *domain, const char *code,
                        uint64_t value)
{
    if (evbuffer_add_printf(out, "sluice_rls_requests_total{domain=\"") < 0)
        *err = -1;
    for (const char *p = domain; *p; p++) {
        if ((*p == '"' || *p == '\\' || *p == '\n') && evbuffer_add(out, "\\", 1) < 0)
            *err = -1;
        if (evbuffer_add(out, *p == '\n' ? "n" : p, 1) < 0)
            *err = -1;
    }
    if (evbuffer_add_printf(out, "\",code=\"%s\"} %" PRIu64 "\n", code, value) < 0)
        *err = -1;
}

void sl_metrics_rls_emit(struct sl_metrics *m, struct evbuffer *out, int *err)
{
    static const char *const codes[SL_RLS_CODE_COUNT] = {"ok", "over_limit", "error"};
    unsigned n = atomic_load_explicit(&m->nrls_domains, memory_order_acquire);

    if (evbuffer_add_printf(out, "# HELP sluice_rls_requests_total Rate limit service calls "
                                 "(ShouldRateLimit) by domain and answer.\n"
                                 "# TYPE sluice_rls_requests_total counter\n") < 0)
        *err = -1;
    /* The domains bound, then "" (any other); a domain's series once it has calls. */
    for (unsigned d = 0; d <= n; d++) {
        unsigned id = d < n ? d : OTHER;
        uint64_t counts[SL_RLS_CODE_COUNT] = {0};
        uint64_t total = 0;
        for (unsigned i = 0; i < m->nslots; i++)
            for (size_t k = 0; k < SL_RLS_CODE_COUNT; k++)
                counts[k] += sl_metrics_load(&m->slots[i]->rls_requests[id][k]);
        for (size_t k = 0; k < SL_RLS_CODE_COUNT; k++)
            total += counts[k];
        if (total == 0)
            continue;
        for (size_t k = 0; k < SL_RLS_CODE_COUNT; k++)
            emit_series(out, err, d < n ? m->rls_domains[d] : "", codes[k], counts[k]);
    }
}
