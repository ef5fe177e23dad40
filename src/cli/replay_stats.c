/* Replay counters per route and limit, and per limit every key it denied with its count,
 * so that the keys denied most are exact (a replay reads a finite log; the proxy's live
 * view of heavy hitters is a bounded sketch instead). Keys live in one growing arena and
 * an open-addressing table of (hash, offset, length, count). */
#include <stdlib.h>
#include <string.h>

#include "replay.h"
#include "sluice/rates.h"
#include "sluice/siphash.h"

struct slot {
    uint64_t hash;
    size_t off, len;
    uint64_t count; /* 0: empty */
};

struct sl_replay_keys {
    struct slot *slots;
    size_t mask, used;
    char *arena;
    size_t arena_len, arena_cap;
};

static uint64_t key_hash(const char *key, size_t len)
{
    struct sl_siphash h;
    /* A fixed key: a replay reads a file the operator chose, not live attacker input. */
    sl_siphash_init(&h, 0x736c7569636521ull, 0x7265706c6179ull, 1, 3);
    sl_siphash_update(&h, key, len);
    return sl_siphash_final(&h);
}

static int grow(struct sl_replay_keys *k)
{
    size_t n = k->slots ? (k->mask + 1) * 2 : 64;
    struct slot *s = calloc(n, sizeof *s);
    if (!s)
        return -1;
    for (size_t i = 0; k->slots && i <= k->mask; i++) {
        if (!k->slots[i].count)
            continue;
        size_t j = k->slots[i].hash & (n - 1);
        while (s[j].count)
            j = (j + 1) & (n - 1);
        s[j] = k->slots[i];
    }
    free(k->slots);
    k->slots = s;
    k->mask = n - 1;
    return 0;
}

int sl_replay_count_denied(struct sl_replay_limit_stats *ls, const char *key, size_t len)
{
    struct sl_replay_keys *k = ls->keys;
    if (!k && !(k = ls->keys = calloc(1, sizeof *k)))
        return -1;
    if ((k->used + 1) * 2 > (k->slots ? k->mask + 1 : 0) && grow(k) < 0)
        return -1;
    uint64_t hash = key_hash(key, len);
    size_t i = hash & k->mask;
    for (; k->slots[i].count; i = (i + 1) & k->mask) {
        struct slot *s = &k->slots[i];
        if (s->hash == hash && s->len == len && memcmp(k->arena + s->off, key, len) == 0) {
            s->count++;
            return 0;
        }
    }
    if (k->arena_cap - k->arena_len < len) {
        size_t cap = k->arena_cap * 2 > k->arena_len + len ? k->arena_cap * 2 : k->arena_len + len;
        char *a = realloc(k->arena, cap < 4096 ? 4096 : cap);
        if (!a)
            return -1;
        k->arena = a;
        k->arena_cap = cap < 4096 ? 4096 : cap;
    }
    memcpy(k->arena + k->arena_len, key, len);
    k->slots[i] = (struct slot){hash, k->arena_len, len, 1};
    k->arena_len += len;
    k->used++;
    return 0;
}

/* More denials first; equal counts in key order, so the report is deterministic. */
static bool before(const struct sl_replay_top *a, const struct sl_replay_top *b)
{
    if (a->count != b->count)
        return a->count > b->count;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, n);
    return c < 0 || (c == 0 && a->len < b->len);
}

size_t sl_replay_top_denied(const struct sl_replay_limit_stats *ls, struct sl_replay_top *top,
                            size_t n)
{
    const struct sl_replay_keys *k = ls->keys;
    size_t have = 0;

    for (size_t i = 0; k && n && i <= k->mask; i++) {
        const struct slot *s = &k->slots[i];
        if (!s->count)
            continue;
        struct sl_replay_top t = {k->arena + s->off, s->len, s->count};
        if (have == n && !before(&t, &top[n - 1]))
            continue;
        size_t j = have < n ? have++ : n - 1;
        while (j > 0 && before(&t, &top[j - 1])) {
            top[j] = top[j - 1];
            j--;
        }
        top[j] = t;
    }
    return have;
}

int sl_replay_stats_init(struct sl_replay_stats *st, const struct sl_config *cfg)
{
    memset(st, 0, sizeof *st);
    st->routes = calloc(cfg->nroutes ? cfg->nroutes : 1, sizeof *st->routes);
    st->limits = calloc(cfg->nlimits ? cfg->nlimits : 1, sizeof *st->limits);
    if (!st->routes || !st->limits)
        return -1;
    for (size_t i = 0; i < cfg->nroutes; i++)
        for (size_t j = 0; j < cfg->routes[i].nlimits; j++) {
            const struct sl_limit *lim = &cfg->routes[i].limits[j];
            if (lim->rates && !(st->limits[lim->index].rates = calloc(
                                    lim->rates->nquotas + 1, sizeof(struct sl_replay_rate_stats))))
                return -1;
        }
    return 0;
}

void sl_replay_stats_deinit(struct sl_replay_stats *st, const struct sl_config *cfg)
{
    for (size_t i = 0; st->limits && i < cfg->nlimits; i++) {
        free(st->limits[i].rates);
        struct sl_replay_keys *k = st->limits[i].keys;
        if (k) {
            free(k->slots);
            free(k->arena);
            free(k);
        }
    }
    free(st->routes);
    free(st->limits);
}
