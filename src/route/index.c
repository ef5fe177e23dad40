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
 * With Hyperscan the `regexes` table is not built: every path_regex is in one database
 * (regex_hs.c), scanned once per request, and the conditions of each route it reports are
 * checked as it reports them. `regex_all` chains every path_regex route, for a thread slot
 * without scratch space and for a path holding a newline (Hyperscan's "$" would match
 * before a final one, regexec's does not).
 *
 * Lookup (POSIX matcher): a pass over the path computes FNV-1a of each prefix path[0..k); the paths
 * table is probed where k can end a prefix match (k = len, path[k] == '/' or path[k-1] == '/', as
 * prefix_matches() in match.c has it) and the regexes table at every k up to its longest key. Each
 * chain found is walked while its routes come before the best route so far; the first whose
 * conditions (and pattern) hold becomes the best. Path chains go first, so that a regex is run only
 * when it could still win. The answer is the first route in file order among all that match, which
 * is what the walk over the table returns.
 *
 * A client cannot lengthen a probe sequence: the tables hold only configured text, and
 * nothing is inserted after building. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "match.h"
#include "sluice/route_index.h"
#if SLUICE_HAVE_HYPERSCAN
#include "regex_hs.h"
#endif

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
    uint32_t *next;     /* the path and prefix chains, `any` and `regex_any` */
    uint32_t *next_all; /* `regex_all` */
    struct chain any, regex_any, regex_all;
    char *prefixes; /* the literal prefixes, NUL-separated */
#if SLUICE_HAVE_HYPERSCAN
    struct sl_regex_hs *hs; /* NULL: the POSIX matcher */
#endif
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

static void chain_add(uint32_t *next, struct chain *c, uint32_t route)
{
    if (c->head == NONE)
        c->head = route;
    else
        next[c->tail] = route;
    c->tail = route;
}

void sl_route_index_free(struct sl_route_index *ix)
{
    if (!ix)
        return;
    free(ix->paths.slots);
    free(ix->regexes.slots);
    free(ix->next);
    free(ix->next_all);
    free(ix->prefixes);
#if SLUICE_HAVE_HYPERSCAN
    sl_regex_hs_free(ix->hs);
#endif
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

bool sl_regex_matcher_available(enum sl_regex_matcher m)
{
    return m != SL_REGEX_MATCHER_HYPERSCAN || SLUICE_HAVE_HYPERSCAN;
}

static void set_error(struct sl_route_index_error *err, size_t route, const char *message)
{
    if (err) {
        err->route = route;
        snprintf(err->message, sizeof err->message, "%s", message);
    }
}

/* Compiles the Hyperscan database when `m` asks for it. Returns 0 or -1 (reported). */
static int build_matcher(struct sl_route_index *ix, const struct sl_config *cfg,
                         enum sl_regex_matcher m, struct sl_route_index_error *err)
{
    if (m == SL_REGEX_MATCHER_BEST)
        m = SLUICE_HAVE_HYPERSCAN ? SL_REGEX_MATCHER_HYPERSCAN : SL_REGEX_MATCHER_POSIX;
    ix->stats.matcher = m;
    if (m == SL_REGEX_MATCHER_POSIX)
        return 0;
#if SLUICE_HAVE_HYPERSCAN
    char message[sizeof err->message];
    size_t route;
    ix->hs = sl_regex_hs_new(cfg, &route, message, sizeof message);
    if (!ix->hs) {
        set_error(err, route, message);
        return -1;
    }
    return 0;
#else
    set_error(err, SIZE_MAX, "sluice was built without Hyperscan");
    return -1;
#endif
}

struct sl_route_index *sl_route_index_new(const struct sl_config *cfg, enum sl_regex_matcher m,
                                          struct sl_route_index_error *err)
{
    struct sl_route_index *ix = NULL;
    size_t *off = NULL, n = cfg->nroutes ? cfg->nroutes : 1;

    set_error(err, SIZE_MAX, "out of memory");
    if (cfg->nroutes >= NONE)
        return NULL;
    ix = calloc(1, sizeof *ix);
    off = calloc(n, sizeof *off);
    if (!ix || !off)
        goto fail;
    ix->stats.bytes = sizeof *ix;
    ix->any = ix->regex_any = ix->regex_all = (struct chain){NONE, NONE};
    ix->next = malloc(n * sizeof *ix->next);
    ix->next_all = malloc(n * sizeof *ix->next_all);
    if (!ix->next || !ix->next_all || collect(ix, cfg, off) < 0)
        goto fail;
    ix->stats.bytes += 2 * cfg->nroutes * sizeof *ix->next;
    if (build_matcher(ix, cfg, m, err) < 0)
        goto fail;
    bool prefilter = ix->stats.matcher == SL_REGEX_MATCHER_POSIX;
    if (table_init(&ix->paths, ix->stats.exact + ix->stats.prefix, &ix->stats.bytes) < 0 ||
        (prefilter && table_init(&ix->regexes, ix->stats.regex_prefixed, &ix->stats.bytes) < 0))
        goto fail;
    for (uint32_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route *r = &cfg->routes[i];
        ix->next[i] = ix->next_all[i] = NONE;
        switch (r->path_match) {
        case SL_MATCH_ANY:
            chain_add(ix->next, &ix->any, i);
            break;
        case SL_MATCH_PATH:
            chain_add(ix->next,
                      &table_add(&ix->paths, r->path, strlen(r->path))->chains[CHAIN_EXACT], i);
            break;
        case SL_MATCH_PREFIX:
            /* An empty prefix matches nothing (see prefix_matches() in match.c). */
            if (r->path[0])
                chain_add(ix->next,
                          &table_add(&ix->paths, r->path, strlen(r->path))->chains[CHAIN_PREFIX],
                          i);
            break;
        case SL_MATCH_REGEX: {
            const char *p = ix->prefixes + off[i];
            chain_add(ix->next_all, &ix->regex_all, i);
            if (!prefilter)
                break;
            if (*p)
                chain_add(ix->next, &table_add(&ix->regexes, p, strlen(p))->chains[CHAIN_REGEX], i);
            else
                chain_add(ix->next, &ix->regex_any, i);
            break;
        }
        }
    }
    free(off);
    set_error(err, SIZE_MAX, "");
    return ix;

fail:
    free(off);
    sl_route_index_free(ix);
    return NULL;
}

int sl_route_index_reserve(struct sl_route_index *ix, unsigned threads)
{
#if SLUICE_HAVE_HYPERSCAN
    if (ix->hs)
        return sl_regex_hs_reserve(ix->hs, threads);
#endif
    return 0;
}

struct lookup {
    const struct sl_config *cfg;
    const struct sl_request *req;
    const char *path;
    const char *host;
    size_t host_len;
    uint32_t best;
};

/* Walks a chain (linked through `next`) while its routes could still beat the best so far.
 * Conditions are checked before the pattern: they are cheaper than regexec. */
static void walk(struct lookup *q, const uint32_t *next, uint32_t i, bool regex)
{
    for (; i != NONE && i < q->best; i = next[i]) {
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
                walk(q, ix->next, sl->chains[CHAIN_EXACT].head, false);
            if (sl)
                walk(q, ix->next, sl->chains[CHAIN_PREFIX].head, false);
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
            walk(q, ix->next, sl->chains[CHAIN_REGEX].head, true);
    }
    walk(q, ix->next, ix->regex_any.head, true);
}

#if SLUICE_HAVE_HYPERSCAN
/* A route whose pattern matched: taken when its other conditions hold. */
static bool conditions_hold(void *arg, uint32_t route)
{
    const struct lookup *q = arg;
    return sl_route_conditions_hold(&q->cfg->routes[route], q->req, q->host, q->host_len);
}

static void scan_regexes(const struct sl_route_index *ix, struct lookup *q, unsigned thread,
                         const char *path, size_t len)
{
    if (memchr(path, '\n', len) ||
        sl_regex_hs_first(ix->hs, thread, path, len, &q->best, conditions_hold, q) < 0)
        walk(q, ix->next_all, ix->regex_all.head, true);
}
#endif

const struct sl_route *sl_route_index_match(const struct sl_route_index *ix,
                                            const struct sl_config *cfg, unsigned thread,
                                            const struct sl_request *req, const char *path,
                                            size_t path_len, const char *host, size_t host_len)
{
    struct lookup q = {cfg, req, path, host, host_len, NONE};

    walk(&q, ix->next, ix->any.head, false);
    if (path) {
        walk_paths(ix, &q, path, path_len);
#if SLUICE_HAVE_HYPERSCAN
        if (ix->hs) {
            scan_regexes(ix, &q, thread, path, path_len);
            return q.best == NONE ? NULL : &cfg->routes[q.best];
        }
#endif
        walk_regexes(ix, &q, path, path_len);
    }
    return q.best == NONE ? NULL : &cfg->routes[q.best];
}

void sl_route_index_stats(const struct sl_route_index *ix, struct sl_route_index_stats *out)
{
    *out = ix->stats;
#if SLUICE_HAVE_HYPERSCAN
    if (ix->hs)
        sl_regex_hs_sizes(ix->hs, &out->database_bytes, &out->scratch_bytes, &out->threads,
                          &out->patterns);
#endif
}
