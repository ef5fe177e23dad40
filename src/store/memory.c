/* The in-memory store: per-key limit state shared by every worker thread.
 *
 * Keys are spread by a seeded SipHash-1-3 over up to 256 stripes. A stripe is a mutex, a
 * chained hash table and an LRU list, so a decision takes exactly one lock and threads
 * working on different keys rarely meet. An entry is allocated once per new key with
 * the algorithm state and the key's identity inline; deciding on a known key allocates
 * nothing.
 *
 * A key's identity is (route name, limit name, algorithm, N, P, key bytes): a reload
 * that keeps those finds the same entries.
 *
 * A changed rate carries state over lazily, adding no byte to any entry: a reload gives
 * each limit the earlier rates of the limit with the same route, name and algorithm
 * (sl_limit.prev_rates, newest first, at most SL_LIMIT_PREV_RATES). When a key misses under
 * the current identity, each earlier identity is looked up once, in that order; an entry
 * found there is taken out, converted by the algorithm's rescale() into a new entry under
 * the current identity (a new entry because the state's size may change: sliding_window
 * holds N timestamps) and freed. So the old state is read exactly once, by the first
 * decision on the key after the change, and a key nobody asks for again costs nothing
 * until it expires or is evicted. The old entry may sit in another stripe: both locks are
 * then held at once, taken in address order when the other is busy. The price is a few
 * extra lookups on the first decision of each new key while a limit remembers earlier
 * rates, which lasts until state written under them must have expired (until_us).
 *
 * Expiry is lazy: an entry whose quota is fully restored (expires_at, from the
 * decision's reset_us) is as good as a zeroed state. It is zeroed when found, and
 * reclaimed when it reaches the cold end of its LRU list. */
#include "sluice/store_memory.h"

#include <pthread.h>
#include <stdalign.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "ident.h"
#include "sluice/clock.h"
#include "sluice/siphash.h"

#define MAX_STRIPES 256
/* Below this many keys per stripe, fewer stripes: a tiny max_keys keeps an LRU order
 * close to global instead of a stripe of one or two keys each. */
#define MIN_KEYS_PER_STRIPE 64
#define INITIAL_BUCKETS 8
/* Expired entries reclaimed from the cold end of the LRU list per new key: more than one,
 * so that the table shrinks back after a burst of keys that went quiet. */
#define RECLAIM_PER_INSERT 2

struct lru_link {
    struct lru_link *prev, *next;
};

struct entry {
    struct lru_link lru; /* first: an LRU link is its entry */
    struct entry *hnext;
    uint64_t hash;
    uint64_t expires_at;
    size_t state_size;
    size_t ident_len;
    uint64_t data[]; /* state_size bytes of state, then ident_len bytes of identity */
};

struct stripe {
    alignas(64) pthread_mutex_t lock; /* a cache line of its own: no false sharing */
    struct entry **buckets;
    size_t mask;                    /* buckets - 1, a power of two minus one */
    size_t count;                   /* entries held */
    size_t max;                     /* entries allowed */
    uint64_t last_now;              /* time never goes back within a stripe */
    struct lru_link lru;            /* lru.next is the most recently used */
    atomic_uint_fast64_t keys;      /* `count`, readable without the lock */
    atomic_uint_fast64_t evictions; /* entries evicted for room */
};

struct memory_store {
    struct sl_store base;
    uint64_t (*clock_us)(void);
    uint64_t k0, k1; /* hash key */
    size_t nstripes; /* a power of two */
    struct stripe *stripes;
};

/* Identities up to this size are laid out on the stack and hashed and compared in one
 * piece; longer ones (very long keys) are handled piecewise, still without allocating. */
#define FLAT_IDENT_MAX 256

/* The identity of one decision's key (ident.h: route and limit names, then the algorithm, N
 * and P), measured once per decision, and laid out flat when short enough. */
struct ident {
    struct sl_ident id;
    const unsigned char *flat; /* the whole identity, when id.len <= FLAT_IDENT_MAX */
};

static void ident_init(struct ident *id, const struct sl_limit *lim, struct sl_rate rate,
                       const char *key, size_t key_len, unsigned char flat[FLAT_IDENT_MAX])
{
    /* The algorithm is its ops: one static object per name for the life of the process,
     * so across reloads too. */
    uint64_t words[3] = {(uint64_t)(uintptr_t)lim->alg, rate.count, rate.period_us};
    sl_ident_init(&id->id, lim, words, 3, key, key_len);
    id->flat = NULL;
    if (id->id.len <= FLAT_IDENT_MAX) {
        sl_ident_lay_out(flat, &id->id);
        id->flat = flat;
    }
}

static uint64_t ident_hash(const struct memory_store *ms, const struct ident *id)
{
    if (id->flat)
        return sl_siphash(ms->k0, ms->k1, 1, 3, id->flat, id->id.len);
    return sl_ident_hash(&id->id, ms->k0, ms->k1);
}

static unsigned char *entry_ident(struct entry *e)
{
    return (unsigned char *)e->data + e->state_size;
}

static bool ident_equal(struct entry *e, const struct ident *id)
{
    if (id->flat)
        return e->ident_len == id->id.len && memcmp(entry_ident(e), id->flat, id->id.len) == 0;
    return sl_ident_equal(entry_ident(e), e->ident_len, &id->id);
}

static void lru_unlink(struct lru_link *l)
{
    l->prev->next = l->next;
    l->next->prev = l->prev;
}

static void lru_push_front(struct stripe *s, struct lru_link *l)
{
    l->prev = &s->lru;
    l->next = s->lru.next;
    s->lru.next->prev = l;
    s->lru.next = l;
}

static struct entry *lookup(struct stripe *s, uint64_t hash, const struct ident *id)
{
    for (struct entry *e = s->buckets[hash & s->mask]; e; e = e->hnext)
        if (e->hash == hash && ident_equal(e, id))
            return e;
    return NULL;
}

/* Bytes allocated for an entry, or 0 when too large. Rounded up to a size class so that
 * an entry removed to make room can often carry the next key as is: keys such as client
 * addresses differ in length by a few bytes. */
static size_t entry_alloc_size(size_t state_size, size_t ident_len)
{
    size_t size = sizeof(struct entry);
    if (state_size > SIZE_MAX - 64 - size || ident_len > SIZE_MAX - 64 - size - state_size)
        return 0;
    size += state_size + ident_len;
    return (size + 31) & ~(size_t)31;
}

/* Takes `e` out of the table and the LRU list; the caller frees or reuses it. */
static void detach(struct stripe *s, struct entry *e)
{
    struct entry **pp = &s->buckets[e->hash & s->mask];
    while (*pp != e)
        pp = &(*pp)->hnext;
    *pp = e->hnext;
    lru_unlink(&e->lru);
    s->count--;
    atomic_store_explicit(&s->keys, s->count, memory_order_relaxed);
}

/* Doubles the bucket array once the chains average more than one entry. On ENOMEM the
 * table keeps working with longer chains. */
static void maybe_grow(struct stripe *s)
{
    size_t n = s->mask + 1;
    if (s->count < n || n > SIZE_MAX / 2 / sizeof *s->buckets)
        return;
    struct entry **nb = calloc(2 * n, sizeof *nb);
    if (!nb)
        return;
    size_t mask = 2 * n - 1;
    for (size_t i = 0; i < n; i++) {
        struct entry *e = s->buckets[i];
        while (e) {
            struct entry *next = e->hnext;
            e->hnext = nb[e->hash & mask];
            nb[e->hash & mask] = e;
            e = next;
        }
    }
    free(s->buckets);
    s->buckets = nb;
    s->mask = mask;
}

static struct entry *lru_coldest(struct stripe *s)
{
    return s->lru.prev == &s->lru ? NULL : (struct entry *)s->lru.prev;
}

/* Keeps one removed entry for reuse by the next insert, frees any other. */
static void keep_spare(struct entry **spare, struct entry *e)
{
    free(*spare);
    *spare = e;
}

/* Makes room for one more entry: expired entries at the cold end go first, free of
 * charge; if the stripe is still full, its least recently used entry is evicted. Returns
 * a removed entry whose memory the insert may reuse, or NULL. */
static struct entry *make_room(struct stripe *s, uint64_t now)
{
    struct entry *e, *spare = NULL;
    for (int i = 0; i < RECLAIM_PER_INSERT && (e = lru_coldest(s)) && now >= e->expires_at; i++) {
        detach(s, e);
        keep_spare(&spare, e);
    }
    if (s->count >= s->max && (e = lru_coldest(s))) {
        detach(s, e);
        keep_spare(&spare, e);
        atomic_fetch_add_explicit(&s->evictions, 1, memory_order_relaxed);
    }
    return spare;
}

/* Adds a zeroed entry for `id`, in `spare` (taken over) when its size class fits. */
static struct entry *insert(struct stripe *s, uint64_t hash, const struct ident *id,
                            size_t state_size, struct entry *spare)
{
    size_t size = entry_alloc_size(state_size, id->id.len);
    struct entry *e = NULL;
    if (spare && size != 0 && entry_alloc_size(spare->state_size, spare->ident_len) == size) {
        e = spare;
        memset(e, 0, size);
    } else {
        free(spare);
        if (size != 0)
            e = calloc(1, size);
    }
    if (!e)
        return NULL;
    e->hash = hash;
    e->state_size = state_size;
    e->ident_len = id->id.len;
    if (id->flat)
        memcpy(entry_ident(e), id->flat, id->id.len);
    else
        sl_ident_lay_out(entry_ident(e), &id->id);
    e->hnext = s->buckets[hash & s->mask];
    s->buckets[hash & s->mask] = e;
    lru_push_front(s, &e->lru);
    s->count++;
    atomic_store_explicit(&s->keys, s->count, memory_order_relaxed);
    maybe_grow(s);
    return e;
}

static struct stripe *stripe_of(const struct memory_store *ms, uint64_t hash)
{
    /* The top bits pick the stripe, the low bits the bucket: independent of each other. */
    return &ms->stripes[(hash >> 56) & (ms->nstripes - 1)];
}

/* Takes the entry of `old_id` out of its stripe `o`, with `s` locked by the caller: `o` is
 * locked too, in address order when it is busy, so that two threads never wait on each
 * other. Sets `*raced` when s's lock was let go meanwhile. */
static struct entry *take_out(struct stripe *s, struct stripe *o, uint64_t old_hash,
                              const struct ident *old_id, uint64_t *now, bool *raced)
{
    if (o != s && pthread_mutex_trylock(&o->lock) != 0) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_lock(s < o ? &s->lock : &o->lock);
        pthread_mutex_lock(s < o ? &o->lock : &s->lock);
        *raced = true;
    }
    struct entry *e = lookup(o, old_hash, old_id);
    if (e) {
        detach(o, e);
        if (o->last_now > *now)
            *now = o->last_now; /* the old state was decided up to o's time */
    }
    if (o != s)
        pthread_mutex_unlock(&o->lock);
    return e;
}

/* On a miss for `id`: the key's state under one of the limit's earlier rates, carried over
 * into a new entry for `id` in `s` (see the opening comment). Returns NULL when there is
 * none still in use (or no memory). s's lock may be let go and taken again: an entry for
 * `id` that another thread added meanwhile is then returned instead. */
static struct entry *carry_over(struct memory_store *ms, struct stripe *s, uint64_t hash,
                                const struct ident *id, const struct sl_limit *lim, uint64_t *now)
{
    for (size_t i = 0; i < lim->nprev_rates; i++) {
        const struct sl_prev_rate *prev = &lim->prev_rates[i];
        if (*now >= prev->until_us)
            continue;
        unsigned char flat[FLAT_IDENT_MAX];
        struct ident old_id;
        ident_init(&old_id, lim, prev->rate, id->id.key, id->id.key_len, flat);
        uint64_t old_hash = ident_hash(ms, &old_id);
        bool raced = false;
        struct entry *old = take_out(s, stripe_of(ms, old_hash), old_hash, &old_id, now, &raced);
        if (*now > s->last_now)
            s->last_now = *now;
        struct entry *e = raced ? lookup(s, hash, id) : NULL;
        if (e || !old) {
            free(old); /* e: a decision on the new identity came first; the old state is moot */
            if (e)
                return e;
            continue;
        }
        if (*now >= old->expires_at) {
            free(old); /* as good as a zeroed state */
            return NULL;
        }
        e = insert(s, hash, id, lim->alg->state_size(lim), make_room(s, *now));
        if (e) {
            if (lim->alg->rescale)
                lim->alg->rescale(lim, &prev->rate, old->data, e->data);
            else
                memcpy(e->data, old->data,
                       old->state_size < e->state_size ? old->state_size : e->state_size);
            e->expires_at = old->expires_at;
        }
        free(old);
        return e;
    }
    return NULL;
}

static void memory_decide(struct sl_store *store, const struct sl_limit *lim, const char *key,
                          size_t key_len, const struct sl_units *u, sl_store_cb cb, void *arg)
{
    struct memory_store *ms = (struct memory_store *)store;
    unsigned char flat[FLAT_IDENT_MAX];
    struct ident id;
    ident_init(&id, lim, (struct sl_rate){lim->count, lim->period_us}, key, key_len, flat);
    uint64_t hash = ident_hash(ms, &id);
    struct stripe *s = stripe_of(ms, hash);
    uint64_t now = ms->clock_us();
    struct sl_decision d;

    pthread_mutex_lock(&s->lock);
    /* Clock reads race to the lock; keep the stripe's time monotonic so that a state is
     * never decided at an instant before one it has already seen. */
    if (now < s->last_now)
        now = s->last_now;
    s->last_now = now;

    struct entry *e = lookup(s, hash, &id);
    if (!e && lim->nprev_rates > 0)
        e = carry_over(ms, s, hash, &id, lim, &now);
    if (e) {
        if (now >= e->expires_at)
            memset(e->data, 0, e->state_size);
        if (s->lru.next != &e->lru) {
            lru_unlink(&e->lru);
            lru_push_front(s, &e->lru);
        }
    } else {
        struct entry *spare = make_room(s, now);
        e = insert(s, hash, &id, lim->alg->state_size(lim), spare);
        if (!e) {
            pthread_mutex_unlock(&s->lock);
            cb(arg, NULL, SL_STORE_ERR_CONNECTION);
            return;
        }
    }
    lim->alg->decide(lim, e->data, now, u, &d);
    e->expires_at = d.reset_us > UINT64_MAX - now ? UINT64_MAX : now + d.reset_us;
    pthread_mutex_unlock(&s->lock);

    cb(arg, &d, SL_STORE_OK);
}

static void memory_free(struct sl_store *store)
{
    struct memory_store *ms = (struct memory_store *)store;
    for (size_t i = 0; i < ms->nstripes; i++) {
        struct stripe *s = &ms->stripes[i];
        struct lru_link *l = s->lru.next;
        while (l != &s->lru) {
            struct lru_link *next = l->next;
            free(l);
            l = next;
        }
        free(s->buckets);
        pthread_mutex_destroy(&s->lock);
    }
    free(ms->stripes);
    free(ms);
}

static const struct sl_store_ops memory_ops = {
    .name = "memory",
    .decide = memory_decide,
    .free = memory_free,
};

/* A secret hash key, so that clients cannot choose keys that land in one stripe or one
 * chain. getrandom() only fails on kernels without it; the clock and an address are a
 * weak but still per-process fallback. */
static void seed(struct memory_store *ms)
{
    uint64_t k[2];
    if (getrandom(k, sizeof k, 0) != (ssize_t)sizeof k) {
        k[0] = sl_clock_real_us() ^ (uint64_t)(uintptr_t)ms;
        k[1] = sl_clock_mono_us() * 0x9e3779b97f4a7c15ull;
    }
    ms->k0 = k[0];
    ms->k1 = k[1];
}

struct sl_store *sl_store_memory_new(uint64_t max_keys, uint64_t (*clock_us)(void))
{
    struct memory_store *ms = calloc(1, sizeof *ms);
    if (!ms)
        return NULL;
    ms->base.ops = &memory_ops;
    ms->clock_us = clock_us ? clock_us : sl_clock_mono_us;
    seed(ms);

    /* A decision needs a state to work on, so even max_keys 0 holds one key. */
    if (max_keys == 0)
        max_keys = 1;
    ms->nstripes = 1;
    while (ms->nstripes < MAX_STRIPES && max_keys / (2 * ms->nstripes) >= MIN_KEYS_PER_STRIPE)
        ms->nstripes *= 2;
    ms->stripes = aligned_alloc(alignof(struct stripe), ms->nstripes * sizeof *ms->stripes);
    if (!ms->stripes)
        goto fail;

    size_t ready = 0;
    for (; ready < ms->nstripes; ready++) {
        struct stripe *s = &ms->stripes[ready];
        memset(s, 0, sizeof *s);
        /* max_keys split exactly: the first (max_keys mod stripes) stripes take one more. */
        s->max = max_keys / ms->nstripes + (ready < max_keys % ms->nstripes);
        s->lru.prev = s->lru.next = &s->lru;
        s->mask = INITIAL_BUCKETS - 1;
        s->buckets = calloc(INITIAL_BUCKETS, sizeof *s->buckets);
        if (!s->buckets)
            goto fail_stripes;
        if (pthread_mutex_init(&s->lock, NULL) != 0) {
            free(s->buckets);
            goto fail_stripes;
        }
    }
    return &ms->base;

fail_stripes:
    while (ready-- > 0) {
        free(ms->stripes[ready].buckets);
        pthread_mutex_destroy(&ms->stripes[ready].lock);
    }
    free(ms->stripes);
fail:
    free(ms);
    return NULL;
}

uint64_t sl_store_memory_keys(const struct sl_store *store)
{
    const struct memory_store *ms = (const struct memory_store *)store;
    uint64_t n = 0;
    for (size_t i = 0; i < ms->nstripes; i++)
        n += atomic_load_explicit(&ms->stripes[i].keys, memory_order_relaxed);
    return n;
}

uint64_t sl_store_memory_evictions(const struct sl_store *store)
{
    const struct memory_store *ms = (const struct memory_store *)store;
    uint64_t n = 0;
    for (size_t i = 0; i < ms->nstripes; i++)
        n += atomic_load_explicit(&ms->stripes[i].evictions, memory_order_relaxed);
    return n;
}
