/* The route index (include/sluice/route_index.h).
 *
 * Layout: two open-addressing hash tables keyed by configured text, and chains of route
 * numbers, each chain in file order, linked through next[route]:
 * - `paths`: every path and path_prefix value; a slot heads two chains, the exact routes
 *   and the prefix routes with that text.
 * - `regexes`: every path_regex's literal prefix, lower-cased; a slot heads one chain. A
 *   pattern compiled with REG_ICASE matches either case, so the prefilter ignores case for
 *   all patterns: a few more regexec calls, never a missed match.
 * - the `any` chain (no path condition) and the `regex_any` chain (patterns without a
 *   literal prefix, always tried).
 *
 * Lookup: a pass over the path computes FNV-1a of each prefix path[0..k); the paths table
 * is probed where k can end a prefix match (k = len, path[k] == '/' or path[k-1] == '/',
 * as prefix_matches() in match.c has it) and the regexes table at every k up to its
 * longest key. Each chain found is walked while its routes come before the best route so
 * far; the first whose conditions (and pattern) hold becomes the best. Path chains go
 * first, so that a regex is run only when it could still win. The answer is the first
 * route in file order among all that match, which is what the walk over the table returns.
 *
 * A client cannot lengthen a probe sequence: the tables hold only configured text, and
 * nothing is inserted after building. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "match.h"
#include "sluice/route_index.h"

#define NONE UINT32_MAX
#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull

enum { CHAIN_EXACT = 0, CHAIN_REGEX = 0, CHAIN_PREFIX = 1 };

struct chain {
    uint32_t head, tail;
};

struct slot {
    uint64_t hash;
    const char *key; /* NULL: the slot is free */
    size_t len;
    struct chain chains[2];
};

struct table {
    struct slot *slots;
    size_t mask; /* capacity - 1; capacity is a power of two, at least twice the keys */
    size_t longest;
};

struct sl_route_index {
    struct table paths, regexes;
    uint32_t *next;
    struct chain any, regex_any;
    char *prefixes; /* the literal prefixes, NUL-separated */
    struct sl_route_index_stats stats;
};

/* ASCII only, as the paths rules fold case: independent of the locale. */
static unsigned char lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 0x20 : c;
}

static bool same_ignoring_case(const char *a, const char *b, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return false;
    return true;
}

static uint64_t fnv_step(uint64_t h, unsigned char c)
{
    return (h ^ c) * FNV_PRIME;
}

static size_t slot_of(const struct table *t, uint64_t h)
{
    return (size_t)(h ^ (h >> 29) ^ (h >> 47)) & t->mask;
}

static int table_init(struct table *t, size_t keys, size_t *bytes)
{
    size_t cap = 4;

    if (keys == 0)
        return 0;
    while (cap < 2 * keys)
        cap *= 2;
    t->slots = calloc(cap, sizeof *t->slots);
    if (!t->slots)
        return -1;
    t->mask = cap - 1;
    *bytes += cap * sizeof *t->slots;
    return 0;
}

static const struct slot *find(const struct table *t, uint64_t h, const char *s, size_t len,
                               bool icase)
{
    if (!t->slots || len > t->longest)
        return NULL;
    for (size_t i = slot_of(t, h);; i = (i + 1) & t->mask) {
        const struct slot *sl = &t->slots[i];
        if (!sl->key)
            return NULL;
        if (sl->hash == h && sl->len == len &&
            (icase ? same_ignoring_case(sl->key, s, len) : memcmp(sl->key, s, len) == 0))
            return sl;
    }
}

/* The slot of `key`, added when new. The table has room: its capacity exceeds the keys. */
static struct slot *table_add(struct table *t, const char *key, size_t len)
{
    uint64_t h = FNV_OFFSET;

    for (size_t i = 0; i < len; i++)
        h = fnv_step(h, (unsigned char)key[i]);
    size_t i = slot_of(t, h);
    while (t->slots[i].key &&
           !(t->slots[i].hash == h && t->slots[i].len == len && !memcmp(t->slots[i].key, key, len)))
        i = (i + 1) & t->mask;
    struct slot *sl = &t->slots[i];
    if (!sl->key) {
        sl->hash = h;
        sl->key = key;
        sl->len = len;
        sl->chains[0] = sl->chains[1] = (struct chain){NONE, NONE};
        if (len > t->longest)
            t->longest = len;
    }
    return sl;
}

static void chain_add(struct sl_route_index *ix, struct chain *c, uint32_t route)
{
    if (c->head == NONE)
        c->head = route;
    else
        ix->next[c->tail] = route;
    c->tail = route;
}

void sl_route_index_free(struct sl_route_index *ix)
{
    if (!ix)
        return;
    free(ix->paths.slots);
    free(ix->regexes.slots);
    free(ix->next);
    free(ix->prefixes);
    free(ix);
}

/* Fills the regexes' literal prefixes into ix->prefixes, one per regex route at offsets
 * `off[i]`, and counts the routes of each kind. */
static int collect(struct sl_route_index *ix, const struct sl_config *cfg, size_t *off)
{
    size_t total = 0;

    for (size_t i = 0; i < cfg->nroutes; i++)
        if (cfg->routes[i].path_match == SL_MATCH_REGEX)
            total += strlen(cfg->routes[i].path) + 1;
    ix->prefixes = malloc(total ? total : 1);
    if (!ix->prefixes)
        return -1;
    ix->stats.bytes += total;
    size_t used = 0;
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route *r = &cfg->routes[i];
        switch (r->path_match) {
        case SL_MATCH_ANY:
            ix->stats.any++;
            break;
        case SL_MATCH_PATH:
            ix->stats.exact++;
            break;
        case SL_MATCH_PREFIX:
            ix->stats.prefix++;
            break;
        case SL_MATCH_REGEX: {
            char *p = ix->prefixes + used;
            size_t n = sl_regex_literal_prefix(r->path, p, strlen(r->path) + 1);
            for (size_t j = 0; j < n; j++)
                p[j] = (char)lower((unsigned char)p[j]);
            off[i] = used;
            used += n + 1;
            if (n)
                ix->stats.regex_prefixed++;
            else
                ix->stats.regex_any++;
            break;
        }
        }
    }
    return 0;
}

struct sl_route_index *sl_route_index_new(const struct sl_config *cfg)
{
    struct sl_route_index *ix = NULL;
    size_t *off = NULL;

    if (cfg->nroutes >= NONE)
        return NULL;
    ix = calloc(1, sizeof *ix);
    off = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof *off);
    if (!ix || !off)
        goto fail;
    ix->stats.bytes = sizeof *ix;
    ix->any = ix->regex_any = (struct chain){NONE, NONE};
    ix->next = malloc((cfg->nroutes ? cfg->nroutes : 1) * sizeof *ix->next);
    if (!ix->next || collect(ix, cfg, off) < 0)
        goto fail;
    ix->stats.bytes += cfg->nroutes * sizeof *ix->next;
    if (table_init(&ix->paths, ix->stats.exact + ix->stats.prefix, &ix->stats.bytes) < 0 ||
        table_init(&ix->regexes, ix->stats.regex_prefixed, &ix->stats.bytes) < 0)
        goto fail;
    for (uint32_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route *r = &cfg->routes[i];
        ix->next[i] = NONE;
        switch (r->path_match) {
        case SL_MATCH_ANY:
            chain_add(ix, &ix->any, i);
            break;
        case SL_MATCH_PATH:
            chain_add(ix, &table_add(&ix->paths, r->path, strlen(r->path))->chains[CHAIN_EXACT], i);
            break;
        case SL_MATCH_PREFIX:
            /* An empty prefix matches nothing (see prefix_matches() in match.c). */
            if (r->path[0])
                chain_add(
                    ix, &table_add(&ix->paths, r->path, strlen(r->path))->chains[CHAIN_PREFIX], i);
            break;
        case SL_MATCH_REGEX: {
            const char *p = ix->prefixes + off[i];
            if (*p)
                chain_add(ix, &table_add(&ix->regexes, p, strlen(p))->chains[CHAIN_REGEX], i);
            else
                chain_add(ix, &ix->regex_any, i);
            break;
        }
        }
    }
    free(off);
    return ix;

fail:
    free(off);
    sl_route_index_free(ix);
    return NULL;
}

struct lookup {
    const struct sl_config *cfg;
    const uint32_t *next;
    const struct sl_request *req;
    const char *path;
    const char *host;
    size_t host_len;
    uint32_t best;
};

/* Walks a chain while its routes could still beat the best so far. Conditions are checked
 * before the pattern: they are cheaper than regexec. */
static void walk(struct lookup *q, uint32_t i, bool regex)
{
    for (; i != NONE && i < q->best; i = q->next[i]) {
        const struct sl_route *r = &q->cfg->routes[i];
        if (!sl_route_conditions_hold(r, q->req, q->host, q->host_len))
            continue;
        if (regex && regexec(&r->regex, q->path, 0, NULL, 0) != 0)
            continue;
        q->best = i;
        return;
    }
}

static void walk_paths(const struct sl_route_index *ix, struct lookup *q, const char *path,
                       size_t len)
{
    uint64_t h = FNV_OFFSET;
    size_t end = len < ix->paths.longest ? len : ix->paths.longest;

    for (size_t k = 0; k <= end; k++) {
        if (k == len || path[k] == '/' || (k > 0 && path[k - 1] == '/')) {
            const struct slot *sl = find(&ix->paths, h, path, k, false);
            if (sl && k == len)
                walk(q, sl->chains[CHAIN_EXACT].head, false);
            if (sl)
                walk(q, sl->chains[CHAIN_PREFIX].head, false);
        }
        if (k < len)
            h = fnv_step(h, (unsigned char)path[k]);
    }
}

static void walk_regexes(const struct sl_route_index *ix, struct lookup *q, const char *path,
                         size_t len)
{
    uint64_t h = FNV_OFFSET;
    size_t end = len < ix->regexes.longest ? len : ix->regexes.longest;

    for (size_t k = 1; k <= end; k++) {
        h = fnv_step(h, lower((unsigned char)path[k - 1]));
        const struct slot *sl = find(&ix->regexes, h, path, k, true);
        if (sl)
            walk(q, sl->chains[CHAIN_REGEX].head, true);
    }
    walk(q, ix->regex_any.head, true);
}

const struct sl_route *sl_route_index_match(const struct sl_route_index *ix,
                                            const struct sl_config *cfg,
                                            const struct sl_request *req, const char *path,
                                            size_t path_len, const char *host, size_t host_len)
{
    struct lookup q = {cfg, ix->next, req, path, host, host_len, NONE};

    walk(&q, ix->any.head, false);
    if (path) {
        walk_paths(ix, &q, path, path_len);
        walk_regexes(ix, &q, path, path_len);
    }
    return q.best == NONE ? NULL : &cfg->routes[q.best];
}

void sl_route_index_stats(const struct sl_route_index *ix, struct sl_route_index_stats *out)
{
    *out = ix->stats;
}
