/* The descriptor tree of a domain: nodes as the files are read, then one lookup table per
 * node once every file is in (a merged domain gets children from several files), and the
 * domain's numbered limit names. */
#include <stdlib.h>
#include <string.h>

#include "rls_internal.h"

uint32_t sl_rls_hash(uint32_t h, const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

int sl_rls_node_add(struct sl_rls_node *parent, struct sl_rls_node *kid)
{
    if (parent->nkids == parent->kids_cap) {
        size_t cap = parent->kids_cap ? parent->kids_cap * 2 : 4;
        struct sl_rls_node **kids = realloc(parent->kids, cap * sizeof *kids);
        if (!kids)
            return -1;
        parent->kids = kids;
        parent->kids_cap = cap;
    }
    parent->kids[parent->nkids++] = kid;
    return 0;
}

struct sl_rls_node *sl_rls_node_kid(const struct sl_rls_node *parent, const char *composite)
{
    for (size_t i = 0; i < parent->nkids; i++)
        if (strcmp(parent->kids[i]->composite, composite) == 0)
            return parent->kids[i];
    return NULL;
}

/* Cuts a wildcard kid's composite key at each '*'. */
static int cut(struct sl_rls_node *kid)
{
    size_t n = 0;

    for (size_t i = 0; i < kid->composite_len; i++)
        n += kid->composite[i] == '*';
    kid->cuts = malloc(n * sizeof *kid->cuts);
    if (!kid->cuts)
        return -1;
    for (size_t i = 0; i < kid->composite_len; i++)
        if (kid->composite[i] == '*')
            kid->cuts[kid->ncuts++] = i;
    return 0;
}

static int index_one(struct sl_rls_node *node)
{
    size_t slots = 4, nwild = 0;

    if (!node->nkids)
        return 0;
    /* At most half full: a miss ends within a few probes. */
    while (slots < node->nkids * 2)
        slots *= 2;
    node->table = calloc(slots, sizeof *node->table);
    node->wild = malloc(node->nkids * sizeof *node->wild);
    if (!node->table || !node->wild)
        return -1;
    node->table_mask = slots - 1;
    for (size_t i = 0; i < node->nkids; i++) {
        struct sl_rls_node *kid = node->kids[i];
        size_t s =
            sl_rls_hash(SL_RLS_HASH_INIT, kid->composite, kid->composite_len) & node->table_mask;
        while (node->table[s])
            s = (s + 1) & node->table_mask;
        node->table[s] = (uint32_t)i + 1;
        if (memchr(kid->composite, '*', kid->composite_len)) {
            if (!kid->cuts && cut(kid) < 0)
                return -1;
            node->wild[nwild++] = kid;
        }
    }
    node->nwild = nwild;
    return 0;
}

int sl_rls_node_index(struct sl_rls_node *node)
{
    free(node->table);
    free(node->wild);
    node->table = NULL;
    node->wild = NULL;
    node->nwild = 0;
    if (index_one(node) < 0)
        return -1;
    for (size_t i = 0; i < node->nkids; i++)
        if (sl_rls_node_index(node->kids[i]) < 0)
            return -1;
    return 0;
}

static void limit_free(struct sl_rls_limit *lim)
{
    if (!lim)
        return;
    free((char *)lim->name);
    free((int *)lim->replaces);
    free((char *)lim->full_key);
    free(lim);
}

void sl_rls_node_deinit(struct sl_rls_node *node)
{
    for (size_t i = 0; i < node->nkids; i++) {
        sl_rls_node_deinit(node->kids[i]);
        free(node->kids[i]);
    }
    free(node->kids);
    free(node->table);
    free(node->wild);
    free(node->cuts);
    free(node->key);
    free(node->value);
    free(node->composite);
    limit_free(node->limit);
}

int sl_rls_domain_intern(struct sl_rls_domain *dom, const char *name)
{
    for (size_t i = 0; i < dom->nnames; i++)
        if (strcmp(dom->names[i], name) == 0)
            return (int)i;
    if (dom->nnames == dom->names_cap) {
        size_t cap = dom->names_cap ? dom->names_cap * 2 : 8;
        char **names = realloc(dom->names, cap * sizeof *names);
        if (!names)
            return -1;
        dom->names = names;
        dom->names_cap = cap;
    }
    if (!(dom->names[dom->nnames] = strdup(name)))
        return -1;
    return (int)dom->nnames++;
}

void sl_rls_domain_free(struct sl_rls_domain *dom)
{
    if (!dom)
        return;
    sl_rls_node_deinit(&dom->root);
    free(dom->route.name);
    for (size_t i = 0; i < dom->nnames; i++)
        free(dom->names[i]);
    free(dom->names);
    free(dom);
}

static void each(struct sl_rls_node *node, void (*fn)(struct sl_rls_limit *, void *), void *arg)
{
    if (node->limit)
        fn(node->limit, arg);
    for (size_t i = 0; i < node->nkids; i++)
        each(node->kids[i], fn, arg);
}

void sl_rls_config_each_limit(struct sl_rls_config *cfg,
                              void (*fn)(struct sl_rls_limit *lim, void *arg), void *arg)
{
    for (size_t i = 0; cfg && i < cfg->ndomains; i++)
        each(&cfg->domains[i]->root, fn, arg);
}

const char *sl_rls_node_value(const struct sl_rls_node *node)
{
    return node->value;
}

bool sl_rls_node_shares(const struct sl_rls_node *node)
{
    return node->share_threshold;
}
