/* The limit a request descriptor matches, as envoyproxy/ratelimit's GetLimit finds it.
 *
 * Entry i of the request is looked up among the children of the node entry i - 1 matched
 * (the domain's root for the first), in this order:
 *   1. the child whose composite key is "key_value", byte for byte;
 *   2. the first child, in file order, whose composite key holds a '*' and matches
 *      "key_value" with each '*' standing for any run of bytes, the literal parts in order;
 *   3. the child whose composite key is "key" (the key-only entry).
 * The composite keys are compared as whole strings, as ratelimit's map keys are: the
 * request's "a" = "b_c" and "a_b" = "c" are the same "a_b_c". No match at some level, or a
 * request with fewer or more entries than the path to a rate_limit, matches nothing: the
 * limit is the one on the node the last entry matched, if it has one.
 *
 * The request's composite keys are never built: they are read in place as key, '_', value. */
#include <string.h>

#include "rls_internal.h"

/* "key_value" (sep) or "key" without copying either. */
struct composite {
    const char *key, *value;
    size_t key_len, value_len, len;
    bool sep;
};

static char at(const struct composite *c, size_t i)
{
    if (i < c->key_len)
        return c->key[i];
    return i == c->key_len ? '_' : c->value[i - c->key_len - 1];
}

static uint32_t hash(const struct composite *c)
{
    uint32_t h = sl_rls_hash(SL_RLS_HASH_INIT, c->key, c->key_len);
    if (!c->sep)
        return h;
    return sl_rls_hash(sl_rls_hash(h, "_", 1), c->value, c->value_len);
}

static bool equal(const struct sl_rls_node *kid, const struct composite *c)
{
    if (kid->composite_len != c->len || memcmp(kid->composite, c->key, c->key_len) != 0)
        return false;
    if (!c->sep)
        return true;
    return kid->composite[c->key_len] == '_' &&
           memcmp(kid->composite + c->key_len + 1, c->value, c->value_len) == 0;
}

static const struct sl_rls_node *lookup(const struct sl_rls_node *node, const struct composite *c)
{
    if (!node->table)
        return NULL;
    for (size_t s = hash(c) & node->table_mask; node->table[s]; s = (s + 1) & node->table_mask) {
        const struct sl_rls_node *kid = node->kids[node->table[s] - 1];
        if (equal(kid, c))
            return kid;
    }
    return NULL;
}

/* Whether c[from, from + len) equals `lit`. */
static bool same(const struct composite *c, size_t from, const char *lit, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (at(c, from + i) != lit[i])
            return false;
    return true;
}

/* The first position ≥ from where `lit` starts and ends before `end`, or SIZE_MAX. */
static size_t find(const struct composite *c, size_t from, size_t end, const char *lit, size_t len)
{
    for (size_t p = from; p + len <= end; p++)
        if (same(c, p, lit, len))
            return p;
    return SIZE_MAX;
}

/* The pattern's literal parts, between its '*'s: the first must start the string, the last
 * end it, and the others appear in order, each after the one before, between them. */
static bool wild_match(const struct sl_rls_node *w, const struct composite *c)
{
    const char *pat = w->composite;
    size_t first = w->cuts[0], last_at = w->cuts[w->ncuts - 1] + 1;
    size_t last = w->composite_len - last_at, fixed = w->composite_len - w->ncuts;

    if (c->len < fixed || !same(c, 0, pat, first) || !same(c, c->len - last, pat + last_at, last))
        return false;
    size_t pos = first, end = c->len - last;
    for (size_t k = 0; k + 1 < w->ncuts; k++) {
        size_t from = w->cuts[k] + 1, len = w->cuts[k + 1] - from;
        size_t hit = find(c, pos, end, pat + from, len);
        if (hit == SIZE_MAX)
            return false;
        pos = hit + len;
    }
    return true;
}

/* The child of `node` that entry `e` matches, in ratelimit's order, or NULL. */
static const struct sl_rls_node *step(const struct sl_rls_node *node, const struct sl_rls_entry *e)
{
    struct composite full = {
        e->key, e->value, e->key_len, e->value_len, e->key_len + 1 + e->value_len, true};
    const struct sl_rls_node *kid = lookup(node, &full);

    for (size_t w = 0; !kid && w < node->nwild; w++)
        if (wild_match(node->wild[w], &full))
            kid = node->wild[w];
    if (!kid) {
        struct composite key_only = {e->key, NULL, e->key_len, 0, e->key_len, false};
        kid = lookup(node, &key_only);
    }
    return kid;
}

size_t sl_rls_walk(const struct sl_rls_domain *dom, const struct sl_rls_entry *entries, size_t n,
                   const struct sl_rls_node **path)
{
    const struct sl_rls_node *node = &dom->root;

    for (size_t i = 0; i < n; i++) {
        if (!(node = step(node, &entries[i])))
            return i;
        path[i] = node;
    }
    return n;
}

static size_t put(char *buf, size_t size, size_t at, const char *s, size_t n)
{
    if (at < size)
        memcpy(buf + at, s, n < size - at ? n : size - at);
    return at + n;
}

size_t sl_rls_key_value(const struct sl_rls_entry *entries, size_t n,
                        const struct sl_rls_node *const *path, char *buf, size_t size)
{
    size_t at = 0;
    for (size_t i = 0; i < n; i++) {
        const char *v = entries[i].value;
        size_t vlen = entries[i].value_len;
        if (path && path[i] && path[i]->share_threshold) {
            v = path[i]->value;
            vlen = strlen(v);
        }
        if (i)
            at = put(buf, size, at, "_", 1);
        at = put(buf, size, at, entries[i].key, entries[i].key_len);
        at = put(buf, size, at, "_", 1);
        at = put(buf, size, at, v, vlen);
    }
    return at;
}

const struct sl_rls_limit *sl_rls_node_limit(const struct sl_rls_node *node)
{
    return node->limit;
}

const struct sl_rls_limit *sl_rls_match(const struct sl_rls_domain *dom,
                                        const struct sl_rls_entry *entries, size_t n,
                                        const struct sl_rls_node **path)
{
    const struct sl_rls_node *node;

    if (!dom || n == 0)
        return NULL;
    node = &dom->root;
    for (size_t i = 0; i < n; i++) {
        if (!(node = step(node, &entries[i])))
            return NULL;
        if (path)
            path[i] = node;
    }
    return node->limit;
}

void sl_rls_replaced(const struct sl_rls_limit *const *limits, size_t n, bool *replaced)
{
    for (size_t i = 0; i < n; i++) {
        const struct sl_rls_limit *lim = limits[i];
        replaced[i] = false;
        if (!lim || lim->unlimited || lim->name_id < 0)
            continue;
        for (size_t j = 0; j < n && !replaced[i]; j++)
            for (size_t r = 0; limits[j] && r < limits[j]->nreplaces; r++)
                if (limits[j]->replaces[r] == lim->name_id) {
                    replaced[i] = true;
                    break;
                }
    }
}

uint64_t sl_rls_unit_seconds(enum sl_rls_unit unit)
{
    switch (unit) {
    case SL_RLS_UNIT_SECOND:
        return 1;
    case SL_RLS_UNIT_MINUTE:
        return 60;
    case SL_RLS_UNIT_HOUR:
        return 3600;
    case SL_RLS_UNIT_DAY:
        return 86400;
    case SL_RLS_UNIT_WEEK:
        return 7 * 86400;
    case SL_RLS_UNIT_MONTH:
        return 30 * 86400;
    case SL_RLS_UNIT_YEAR:
        return 365 * 86400;
    case SL_RLS_UNIT_UNKNOWN:
        break;
    }
    return 0;
}

const char *sl_rls_unit_name(enum sl_rls_unit unit)
{
    static const char *const names[] = {"unknown", "second", "minute", "hour",
                                        "day",     "month",  "year",   "week"};

    return (unsigned)unit < sizeof names / sizeof *names ? names[unit] : "unknown";
}
