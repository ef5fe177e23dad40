/* The dashboard's per-route rings (history.h). The rings sit in an open-addressing table
 * by name, made anew at each sample from the routes sampled: a ring carried over keeps its
 * place in time, because every ring is indexed by the sample's number, not by its own. */
#include "history.h"

#include <stdlib.h>
#include <string.h>

struct ring {
    char *name;
    uint32_t hash;
    uint32_t len;                         /* samples held, up to SL_HISTORY_SAMPLES */
    uint64_t sample;                      /* the number of the last sample that carried it */
    uint64_t last[2];                     /* allowed, limited at that sample */
    uint64_t grew[SL_HISTORY_SAMPLES][2]; /* sample k at k % SL_HISTORY_SAMPLES */
};

_Static_assert(sizeof(struct ring) == SL_HISTORY_ROUTE_BYTES,
               "SL_HISTORY_ROUTE_BYTES states a ring's size");

struct sl_history {
    uint64_t taken;                  /* samples taken so far */
    uint64_t prev_ms;                /* when the last one was (or the history was made) */
    uint32_t ms[SL_HISTORY_SAMPLES]; /* interval lengths, indexed like the rings */
    struct ring **table;
    size_t cap; /* a power of two, at least twice the rings */
    size_t n;
    size_t name_bytes;
};

static uint32_t hash_name(const char *name)
{
    /* FNV-1a: route names come from the operator's file, not from clients. */
    uint32_t h = 2166136261u;
    for (const unsigned char *c = (const unsigned char *)name; *c; c++)
        h = (h ^ *c) * 16777619u;
    return h;
}

/* The slot holding `name`, or the empty slot where it would go. */
static struct ring **slot(struct ring **table, size_t cap, const char *name, uint32_t hash)
{
    size_t i = hash & (cap - 1);
    while (table[i] && (table[i]->hash != hash || strcmp(table[i]->name, name) != 0))
        i = (i + 1) & (cap - 1);
    return &table[i];
}

static void free_ring(struct ring *r)
{
    if (r) {
        free(r->name);
        free(r);
    }
}

struct sl_history *sl_history_new(uint64_t now_ms)
{
    struct sl_history *h = calloc(1, sizeof *h);
    if (!h)
        return NULL;
    h->prev_ms = now_ms;
    return h;
}

void sl_history_free(struct sl_history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->cap; i++)
        free_ring(h->table[i]);
    free(h->table);
    free(h);
}

static struct ring *new_ring(const struct sl_history_point *p, uint32_t hash)
{
    struct ring *r = calloc(1, sizeof *r);
    if (!r || !(r->name = strdup(p->route))) {
        free(r);
        return NULL;
    }
    r->hash = hash;
    /* Not fresh: what the counters hold was counted before this ring's time. */
    if (!p->fresh) {
        r->last[0] = p->allowed;
        r->last[1] = p->limited;
    }
    return r;
}

/* Counters only grow; a smaller value (never expected) records no growth. */
static uint64_t growth(uint64_t now, uint64_t before)
{
    return now > before ? now - before : 0;
}

int sl_history_sample(struct sl_history *h, const struct sl_history_point *points, size_t n,
                      uint64_t now_ms)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    struct ring **table = calloc(cap, sizeof *table);
    size_t count = 0, name_bytes = 0;
    int rc = 0;

    if (!table)
        return -1;
    const size_t k = h->taken % SL_HISTORY_SAMPLES;
    for (size_t i = 0; i < n; i++) {
        const struct sl_history_point *p = &points[i];
        uint32_t hash = hash_name(p->route);
        struct ring **to = slot(table, cap, p->route, hash);
        if (*to)
            continue;
        struct ring *r = h->table ? *slot(h->table, h->cap, p->route, hash) : NULL;
        bool carried = r != NULL;
        if (!r && !(r = new_ring(p, hash))) {
            rc = -1;
            continue;
        }
        /* A ring made now from values counted before has no interval to show yet. */
        if (carried || p->fresh) {
            r->grew[k][0] = growth(p->allowed, r->last[0]);
            r->grew[k][1] = growth(p->limited, r->last[1]);
            if (r->len < SL_HISTORY_SAMPLES)
                r->len++;
        }
        r->last[0] = p->allowed;
        r->last[1] = p->limited;
        r->sample = h->taken + 1;
        *to = r;
        count++;
        name_bytes += strlen(r->name) + 1;
    }
    /* The rings not carried over belong to routes no longer sampled. */
    for (size_t i = 0; i < h->cap; i++)
        if (h->table[i] && h->table[i]->sample != h->taken + 1)
            free_ring(h->table[i]);
    free(h->table);
    h->table = table;
    h->cap = cap;
    h->n = count;
    h->name_bytes = name_bytes;
    h->ms[k] = now_ms > h->prev_ms ? (uint32_t)(now_ms - h->prev_ms) : 0;
    h->prev_ms = now_ms;
    h->taken++;
    return rc;
}

size_t sl_history_len(const struct sl_history *h)
{
    return h->taken < SL_HISTORY_SAMPLES ? (size_t)h->taken : SL_HISTORY_SAMPLES;
}

size_t sl_history_intervals(const struct sl_history *h, uint32_t *ms)
{
    size_t len = sl_history_len(h);
    for (size_t j = 0; j < len; j++)
        ms[j] = h->ms[(h->taken - len + j) % SL_HISTORY_SAMPLES];
    return len;
}

size_t sl_history_read(const struct sl_history *h, const char *route, uint64_t *allowed,
                       uint64_t *limited)
{
    if (!h->table)
        return 0;
    const struct ring *r = *slot(h->table, h->cap, route, hash_name(route));
    if (!r)
        return 0;
    for (size_t j = 0; j < r->len; j++) {
        size_t k = (h->taken - r->len + j) % SL_HISTORY_SAMPLES;
        allowed[j] = r->grew[k][0];
        limited[j] = r->grew[k][1];
    }
    return r->len;
}

size_t sl_history_routes(const struct sl_history *h)
{
    return h->n;
}

size_t sl_history_bytes(const struct sl_history *h)
{
    return sizeof *h + h->cap * sizeof *h->table + h->n * sizeof(struct ring) + h->name_bytes;
}
