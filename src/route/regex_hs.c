/* The Hyperscan matcher of path_regex routes (regex_hs.h).
 *
 * Flags, chosen so that a match means what regexec's does (see regex_dialect.c for the
 * patterns both read alike): HS_FLAG_SINGLEMATCH (a route is reported once; which match
 * does not matter), HS_FLAG_DOTALL ("." matches a newline, as without REG_NEWLINE),
 * HS_FLAG_ALLOWEMPTY ("^$" and "x*" are legal EREs), HS_FLAG_CASELESS for the patterns
 * compiled with REG_ICASE. Block mode: a path is scanned whole.
 *
 * A pattern's id is its number among the distinct patterns; `first[id]` heads the chain,
 * in file order through `next[route]`, of the routes that share it. A match walks its chain
 * while the routes could still beat the best so far; the scan stops once nothing could. */
#include <hs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "regex_hs.h"

#define NONE UINT32_MAX

struct sl_regex_hs {
    hs_database_t *db;
    hs_scratch_t **scratch; /* one per thread slot */
    unsigned nscratch;
    uint32_t *first; /* per pattern id: its first route */
    uint32_t *next;  /* per route: the next route with the same pattern */
    uint32_t lowest; /* the first path_regex route */
    size_t npatterns;
};

struct scan {
    const struct sl_regex_hs *set;
    uint32_t *best;
    sl_regex_hs_accept accept;
    void *arg;
};

void sl_regex_hs_free(struct sl_regex_hs *set)
{
    if (!set)
        return;
    for (unsigned i = 0; i < set->nscratch; i++)
        hs_free_scratch(set->scratch[i]);
    free(set->scratch);
    free(set->first);
    free(set->next);
    hs_free_database(set->db);
    free(set);
}

static uint64_t hash_text(const char *s)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001b3ull;
    return h;
}

/* Gives each distinct pattern an id and chains the routes of each; fills `patterns` with
 * one text per id. Returns 0 or -1 on ENOMEM. */
static int dedupe(struct sl_regex_hs *set, const struct sl_config *cfg, const char **patterns)
{
    size_t cap = 4;
    uint32_t *last = malloc((cfg->nroutes ? cfg->nroutes : 1) * sizeof *last);

    while (cap < 2 * cfg->nroutes)
        cap *= 2;
    uint32_t *slots = malloc(cap * sizeof *slots); /* pattern id, NONE = free */
    if (!last || !slots) {
        free(last);
        free(slots);
        return -1;
    }
    memset(slots, 0xff, cap * sizeof *slots);
    set->lowest = NONE;
    for (uint32_t i = 0; i < cfg->nroutes; i++) {
        const char *text = cfg->routes[i].path;
        set->next[i] = NONE;
        if (cfg->routes[i].path_match != SL_MATCH_REGEX)
            continue;
        if (set->lowest == NONE)
            set->lowest = i;
        size_t k = (size_t)hash_text(text) & (cap - 1);
        while (slots[k] != NONE && strcmp(patterns[slots[k]], text) != 0)
            k = (k + 1) & (cap - 1);
        if (slots[k] == NONE) {
            uint32_t id = (uint32_t)set->npatterns++;
            slots[k] = id;
            patterns[id] = text;
            set->first[id] = i;
        } else {
            set->next[last[slots[k]]] = i;
        }
        last[slots[k]] = i;
    }
    free(last);
    free(slots);
    return 0;
}

struct sl_regex_hs *sl_regex_hs_new(const struct sl_config *cfg, size_t *route, char *err,
                                    size_t errlen)
{
    struct sl_regex_hs *set = calloc(1, sizeof *set);
    size_t cap = cfg->nroutes ? cfg->nroutes : 1;
    const char **patterns = malloc(cap * sizeof *patterns);
    unsigned *flags = malloc(cap * sizeof *flags), *ids = malloc(cap * sizeof *ids);
    hs_compile_error_t *cerr = NULL;

    *route = SIZE_MAX;
    if (!set || !patterns || !flags || !ids || !(set->first = malloc(cap * sizeof *set->first)) ||
        !(set->next = malloc(cap * sizeof *set->next)) || dedupe(set, cfg, patterns) < 0) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    unsigned common = HS_FLAG_SINGLEMATCH | HS_FLAG_DOTALL | HS_FLAG_ALLOWEMPTY;
    unsigned caseless = cfg->paths.case_insensitive ? HS_FLAG_CASELESS : 0;
    for (size_t id = 0; id < set->npatterns; id++) {
        flags[id] = common | caseless;
        ids[id] = (unsigned)id;
    }
    /* Hyperscan refuses an empty database; a set without patterns simply never scans. */
    if (set->npatterns && hs_compile_multi(patterns, flags, ids, (unsigned)set->npatterns,
                                           HS_MODE_BLOCK, NULL, &set->db, &cerr) != HS_SUCCESS) {
        if (cerr && cerr->expression >= 0)
            *route = set->first[cerr->expression];
        snprintf(err, errlen, "%s", cerr ? cerr->message : "out of memory");
        hs_free_compile_error(cerr);
        goto fail;
    }
    free(patterns);
    free(flags);
    free(ids);
    return set;

fail:
    free(patterns);
    free(flags);
    free(ids);
    sl_regex_hs_free(set);
    return NULL;
}

int sl_regex_hs_reserve(struct sl_regex_hs *set, unsigned threads)
{
    if (!set->db || threads <= set->nscratch)
        return 0;
    hs_scratch_t **s = realloc(set->scratch, threads * sizeof *s);
    if (!s)
        return -1;
    set->scratch = s;
    while (set->nscratch < threads) {
        hs_scratch_t *one = NULL;
        hs_error_t rc =
            set->nscratch ? hs_clone_scratch(s[0], &one) : hs_alloc_scratch(set->db, &one);
        if (rc != HS_SUCCESS)
            return -1;
        s[set->nscratch++] = one;
    }
    return 0;
}

static int on_match(unsigned id, unsigned long long from, unsigned long long to, unsigned flags,
                    void *ctx)
{
    struct scan *s = ctx;
    const struct sl_regex_hs *set = s->set;

    for (uint32_t r = set->first[id]; r != NONE && r < *s->best; r = set->next[r])
        if (s->accept(s->arg, r)) {
            *s->best = r;
            break;
        }
    /* Non-zero stops the scan: no path_regex route comes before the best any more. */
    return *s->best <= set->lowest;
}

int sl_regex_hs_first(const struct sl_regex_hs *set, unsigned thread, const char *path, size_t len,
                      uint32_t *best, sl_regex_hs_accept accept, void *arg)
{
    struct scan s = {set, best, accept, arg};

    if (!set->db || *best <= set->lowest)
        return 0;
    if (thread >= set->nscratch || len > UINT32_MAX)
        return -1;
    hs_error_t rc = hs_scan(set->db, path, (unsigned)len, 0, set->scratch[thread], on_match, &s);
    return rc == HS_SUCCESS || rc == HS_SCAN_TERMINATED ? 0 : -1;
}

void sl_regex_hs_sizes(const struct sl_regex_hs *set, size_t *database, size_t *scratch,
                       unsigned *threads, size_t *patterns)
{
    *database = *scratch = 0;
    *patterns = set->npatterns;
    *threads = set->nscratch;
    if (set->db)
        hs_database_size(set->db, database);
    if (set->nscratch)
        hs_scratch_size(set->scratch[0], scratch);
}
