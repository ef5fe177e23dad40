/* The local over-limit cache: a chained hash table of denials and an LRU list through the
 * same entries (see include/sluice/deny_cache.h for what is held and why it is safe).
 *
 * An entry holds the denial's identity inline: route and limit names (NUL-terminated), a
 * fixed-width block (algorithm, N, P, burst, delay), then the key. Entries are allocated
 * once per new key and reused when the LRU end makes room; the table doubles as the count
 * grows, up to the bound, so a cache that sees few denials stays small. */
#include "sluice/deny_cache.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ident.h"
#include "sluice/clock.h"
#include "sluice/siphash.h"

#define INITIAL_BUCKETS 64
/* Entries already expired taken off the cold end per new entry: more than one, so that the
 * table shrinks back after a flood of keys that went quiet. */
#define RECLAIM_PER_ADD 2

struct entry {
    struct entry *prev, *next; /* LRU: cache->head is the most recently used */
    struct entry *hnext;
    uint64_t hash;
    uint64_t expires_us;  /* sent + retry_after: from then on Redis is asked again */
    uint64_t reset_at_us; /* sent + reset */
    uint64_t limit;
    void *probe;   /* the request asking Redis again once run out (sl_deny_cache_probe) */
    uint64_t need; /* units the denied request asked: a smaller need may still fit */
    size_t ident_len, cap;
    unsigned char ident[];
};

struct sl_deny_cache {
    struct entry **buckets;
    size_t mask; /* buckets - 1, a power of two minus one */
    size_t count, max;
    struct entry *head, *tail;
    uint64_t k0, k1;
};

/* A denial's identity: route and limit names, then its algorithm, N, P, burst and delay
 * (ident.h). The algorithm is its ops: one static object per name for the life of the
 * process. */
static void ident_init(struct sl_ident *id, const struct sl_limit *lim, const struct sl_quota *q,
                       const char *key, size_t key_len)
{
    uint64_t words[5] = {(uint64_t)(uintptr_t)lim->alg, q->count, q->period_us, q->burst,
                         lim->delay};
    sl_ident_init(id, lim, words, 5, key, key_len);
}

struct sl_deny_cache *sl_deny_cache_new(size_t max_entries)
{
    struct sl_deny_cache *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->max = max_entries ? max_entries : 1;
    c->buckets = calloc(INITIAL_BUCKETS, sizeof *c->buckets);
    if (!c->buckets) {
        free(c);
        return NULL;
    }
    c->mask = INITIAL_BUCKETS - 1;
    uint64_t key[2];
    if (getrandom(key, sizeof key, GRND_NONBLOCK) != sizeof key) {
        key[0] = sl_clock_real_us() ^ (uint64_t)(uintptr_t)c;
        key[1] = sl_clock_mono_us() * 0x9e3779b97f4a7c15ull;
    }
    c->k0 = key[0];
    c->k1 = key[1];
    return c;
}

void sl_deny_cache_free(struct sl_deny_cache *c)
{
    if (!c)
        return;
    while (c->head) {
        struct entry *e = c->head;
        c->head = e->next;
        free(e);
    }
    free(c->buckets);
    free(c);
}

size_t sl_deny_cache_count(const struct sl_deny_cache *c)
{
    return c->count;
}

static void lru_unlink(struct sl_deny_cache *c, struct entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        c->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        c->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push_front(struct sl_deny_cache *c, struct entry *e)
{
    e->prev = NULL;
    e->next = c->head;
    if (c->head)
        c->head->prev = e;
    else
        c->tail = e;
    c->head = e;
}

static struct entry **bucket_of(struct sl_deny_cache *c, uint64_t hash)
{
    return &c->buckets[hash & c->mask];
}

/* Takes `e` out of the table and the LRU list; the caller frees or reuses it. */
static void detach(struct sl_deny_cache *c, struct entry *e)
{
    struct entry **pp = bucket_of(c, e->hash);
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    e->hnext = NULL;
    lru_unlink(c, e);
    c->count--;
}

static struct entry *lookup(struct sl_deny_cache *c, const struct sl_ident *id, uint64_t hash)
{
    for (struct entry *e = *bucket_of(c, hash); e; e = e->hnext)
        if (e->hash == hash && sl_ident_equal(e->ident, e->ident_len, id))
            return e;
    return NULL;
}

/* The entry held for `key` under `lim`, or NULL. */
static struct entry *find_entry(struct sl_deny_cache *c, const struct sl_limit *lim,
                                const struct sl_quota *q, const char *key, size_t key_len)
{
    if (c->count == 0)
        return NULL;
    struct sl_ident id;
    ident_init(&id, lim, q, key, key_len);
    return lookup(c, &id, sl_ident_hash(&id, c->k0, c->k1));
}

enum sl_deny_state sl_deny_cache_find(struct sl_deny_cache *c, const struct sl_limit *lim,
                                      const struct sl_quota *q, const char *key, size_t key_len,
                                      uint64_t need, uint64_t now_us, struct sl_decision *out,
                                      void **probe)
{
    struct entry *e = find_entry(c, lim, q, key, key_len);
    if (!e)
        return SL_DENY_UNKNOWN;
    if (need < e->need)
        return SL_DENY_UNKNOWN; /* Redis may admit fewer units; the entry stays for larger asks */
    lru_unlink(c, e);
    lru_push_front(c, e);
    if (now_us >= e->expires_us) {
        *probe = e->probe;
        return e->probe ? SL_DENY_PROBING : SL_DENY_EXPIRED;
    }
    *out = (struct sl_decision){.allowed = false,
                                .limit = e->limit,
                                .remaining = 0,
                                .reset_us = e->reset_at_us > now_us ? e->reset_at_us - now_us : 0,
                                .retry_after_us = e->expires_us - now_us};
    return SL_DENY_HELD;
}

void sl_deny_cache_probe(struct sl_deny_cache *c, const struct sl_limit *lim,
                         const struct sl_quota *q, const char *key, size_t key_len, void *token)
{
    struct entry *e = find_entry(c, lim, q, key, key_len);
    if (e)
        e->probe = token;
}

void sl_deny_cache_forget(struct sl_deny_cache *c, const struct sl_limit *lim,
                          const struct sl_quota *q, const char *key, size_t key_len)
{
    struct entry *e = find_entry(c, lim, q, key, key_len);
    if (e) {
        detach(c, e);
        free(e);
    }
}

/* Doubles the table while it holds more entries than buckets (never past the bound's
 * size: a full cache keeps its table). Without memory the chains just grow longer. */
static void maybe_grow(struct sl_deny_cache *c)
{
    size_t n = c->mask + 1;
    if (c->count < n || n >= c->max)
        return;
    struct entry **nb = calloc(2 * n, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i < n; i++) {
        struct entry *e = c->buckets[i];
        while (e) {
            struct entry *next = e->hnext;
            struct entry **pp = &nb[e->hash & (2 * n - 1)];
            e->hnext = *pp;
            *pp = e;
            e = next;
        }
    }
    free(c->buckets);
    c->buckets = nb;
    c->mask = 2 * n - 1;
}

/* Takes `e` off and keeps it as the spare when none is kept yet and it is big enough for
 * `len` identity bytes; frees it otherwise. Returns the spare. */
static struct entry *drop(struct sl_deny_cache *c, struct entry *e, struct entry *spare, size_t len)
{
    detach(c, e);
    if (!spare && e->cap >= len)
        return e;
    free(e);
    return spare;
}

/* Room for one more entry: expired entries at the cold end go, then, if still full, the
 * least recently used. Returns one of them to reuse for `len` identity bytes, or NULL. */
static struct entry *make_room(struct sl_deny_cache *c, size_t len, uint64_t now_us)
{
    struct entry *spare = NULL;
    for (int i = 0; i < RECLAIM_PER_ADD && c->tail && now_us >= c->tail->expires_us; i++)
        spare = drop(c, c->tail, spare, len);
    if (c->count >= c->max)
        spare = drop(c, c->tail, spare, len);
    return spare;
}

void sl_deny_cache_add(struct sl_deny_cache *c, const struct sl_limit *lim,
                       const struct sl_quota *q, const char *key, size_t key_len, uint64_t need,
                       uint64_t sent_us, const struct sl_decision *d)
{
    if (d->allowed || d->retry_after_us == 0)
        return;
    struct sl_ident id;
    ident_init(&id, lim, q, key, key_len);
    uint64_t hash = sl_ident_hash(&id, c->k0, c->k1);
    uint64_t expires = sent_us + d->retry_after_us;
    uint64_t reset_at =
        sent_us + (d->reset_us > d->retry_after_us ? d->reset_us : d->retry_after_us);

    struct entry *e = lookup(c, &id, hash);
    if (e) {
        /* Two denials of one key, each true of its own need until its own end: the held one
         * stands while it says as much (a need no larger, an end no earlier), else the new. */
        if (e->need > need || e->expires_us < expires) {
            e->expires_us = expires;
            e->reset_at_us = reset_at;
            e->need = need;
        }
        e->probe = NULL;
        lru_unlink(c, e);
        lru_push_front(c, e);
        return;
    }
    e = make_room(c, id.len, sent_us);
    if (!e) {
        e = malloc(sizeof *e + id.len);
        if (!e)
            return;
        e->cap = id.len;
    }
    e->hash = hash;
    e->expires_us = expires;
    e->reset_at_us = reset_at;
    e->limit = q->count;
    e->probe = NULL;
    e->need = need;
    e->ident_len = id.len;
    sl_ident_lay_out(e->ident, &id);
    struct entry **pp = bucket_of(c, hash);
    e->hnext = *pp;
    *pp = e;
    lru_push_front(c, e);
    c->count++;
    maybe_grow(c);
}
