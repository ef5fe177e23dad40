/* The in-memory store: per-key limit state shared by every worker thread.
 *
 * Keys are spread by their digest over up to 256 stripes. A stripe is a mutex and a packed
 * table (memory_table.h: hash chains and an LRU list linked by 32-bit handles), so a
 * decision takes exactly one lock and threads working on different keys rarely meet.
 * Deciding on a known key allocates nothing.
 *
 * A key's identity is (route name, limit name, algorithm, N, P, key bytes): a reload that
 * keeps those finds the same entries. The table keeps the identity's 128-bit SipHash under a
 * secret per-process key rather than its bytes, so that a key costs the same whatever its
 * length: two identities share a digest with probability about 2^-128 per pair, and a client
 * that does not know the key cannot aim for it.
 *
 * Bounds: max_keys and max_bytes are split evenly over the stripes. A stripe counts the
 * bytes of its entries and its bucket array; a new key evicts the stripe's least recently
 * used keys until both bounds hold. Memory beyond the count is the tables' slack (at most
 * two chunks of 2 KiB per entry size per stripe) and the fixed stripe array.
 *
 * A changed rate carries state over lazily, adding no byte to any entry: a reload gives
 * each limit the earlier rates of the limit with the same route, name and algorithm
 * (sl_limit.prev_rates, newest first, at most SL_LIMIT_PREV_RATES). When a key misses under
 * the current identity, each earlier identity is looked up once, in that order; an entry
 * found there is taken out, converted by the algorithm's rescale() into a new entry under
 * the current identity (a new entry because the state's size may change: sliding_window's
 * log keeps every timestamp it holds, in at least N slots) and removed. So the old state is
 * read exactly once, by the first decision on the key after the change, and a key nobody
 * asks for again costs nothing until it expires or is evicted. The old entry may sit in
 * another stripe: both locks are then held at once, taken in address order when the other
 * is busy. The price is a few extra lookups on the first decision of each new key while a
 * limit remembers earlier rates, which lasts until state written under them must have
 * expired (until_us).
 *
 * Per-consumer rates (a limit with `rates:`, SPEC.md section 3) key each consumer's state as
 * if its rate were the limit's: the identity holds the limit's own N and P (and one more word,
 * so that the two layouts never meet), and the entry's state begins with the rate it was last
 * decided under (struct sl_rate, 16 bytes). A decision under another rate (the consumer moved
 * to another plan) carries the state over to it first, with the algorithm's rescale(), as a
 * change of the limit's rate does; a zeroed head is a fresh state, good for any rate.
 *
 * Expiry is lazy: an entry whose quota is fully restored (its expiry, from the decision's
 * reset_us, rounded up to a whole second) is as good as a zeroed state. It is zeroed when
 * found (replaced by a fresh entry when a carried-over state had made it another size), and
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
#include "memory_table.h"
#include "sluice/clock.h"

#define MAX_STRIPES 256
/* Below this many keys per stripe, fewer stripes: a tiny bound keeps an LRU order close to
 * global instead of a stripe of one or two keys each. */
#define MIN_KEYS_PER_STRIPE 64
/* What a small key costs, for counting the keys a max_bytes holds when choosing stripes. */
#define SMALL_KEY_BYTES 64
/* Below this share of max_bytes per stripe, fewer stripes: a key's state may take half a
 * share (sl_store_memory_max_state), and sliding_window's log, 8 bytes per request, may hold
 * 100 000 (800 KB). 16 stripes at the default 64m still keep threads apart. */
#define MIN_STRIPE_BYTES (4u << 20)
/* Expired entries reclaimed from the cold end of the LRU list per new key: more than one,
 * so that the table shrinks back after a burst of keys that went quiet. */
#define RECLAIM_PER_INSERT 2
#define US_PER_S 1000000u

struct stripe {
    alignas(64) pthread_mutex_t lock; /* a cache line of its own: no false sharing */
    struct sl_mtable table;
    uint64_t max_keys;              /* entries allowed, at most SL_MT_CLASS_MAX_ENTRIES - 1 */
    uint64_t max_bytes;             /* table bytes allowed */
    uint64_t last_now;              /* time never goes back within a stripe */
    atomic_uint_fast64_t keys;      /* table.count, readable without the lock */
    atomic_uint_fast64_t evictions; /* entries evicted for room */
};

struct memory_store {
    struct sl_store base;
    uint64_t (*clock_us)(void);
    uint64_t k0, k1; /* digest key */
    size_t nstripes; /* a power of two */
    struct stripe *stripes;
};

/* The digest of `key` under `lim` at `rate` (ident.h: route and limit names, then the
 * algorithm, N and P, and a fourth word for states headed by their rate). The algorithm is its
 * ops: one static object per name for the life of the process, so across reloads too. */
static void digest_of(const struct memory_store *ms, const struct sl_limit *lim,
                      struct sl_rate rate, bool headed, const char *key, size_t key_len,
                      uint64_t out[2])
{
    uint64_t words[4] = {(uint64_t)(uintptr_t)lim->alg, rate.count, rate.period_us, 1};
    struct sl_ident id;
    sl_ident_init(&id, lim, words, headed ? 4 : 3, key, key_len);
    sl_ident_digest(&id, ms->k0, ms->k1, out);
}

/* Bytes before the algorithm's state in a headed entry: the rate it was decided under. */
#define HEAD_BYTES sizeof(struct sl_rate)

/* The entry's state size for an algorithm state of `n` bytes. */
static size_t with_head(const struct sl_limit *lim, size_t n)
{
    if (!lim->rates)
        return n;
    return n > SIZE_MAX - HEAD_BYTES ? SIZE_MAX : n + HEAD_BYTES;
}

/* The entry's state size for a decision of `lim` under `q`. */
static size_t entry_state_size(const struct sl_limit *lim, const struct sl_quota *q)
{
    return with_head(lim, lim->alg->state_size(q));
}

/* The same for the state `old`, written under `from`, carried over to `q`. */
static size_t carried_state_size(const struct sl_limit *lim, const struct sl_quota *q,
                                 const struct sl_rate *from, const void *old)
{
    if (!lim->alg->rescaled_size)
        return entry_state_size(lim, q);
    return with_head(lim, lim->alg->rescaled_size(q, from, old));
}

/* Writes into `state` (zeroed, of carried_state_size) the state `old` written under `from`,
 * carried over to `q`. */
static void carry(const struct sl_limit *lim, const struct sl_quota *q, const struct sl_rate *from,
                  const void *old, size_t old_size, void *state, size_t state_size)
{
    if (lim->alg->rescale)
        lim->alg->rescale(q, from, old, state);
    else
        memcpy(state, old, old_size < state_size ? old_size : state_size);
}

static struct stripe *stripe_of(const struct memory_store *ms, const uint64_t digest[2])
{
    /* The top bits pick the stripe, the low bits the bucket: independent of each other. */
    return &ms->stripes[(digest[0] >> 56) & (ms->nstripes - 1)];
}

static bool expired(const struct sl_mt_trailer *tr, uint64_t now)
{
    return now >= (uint64_t)tr->expires_s * US_PER_S;
}

/* The second from which a state decided at `now` with `reset_us` is as new. */
static uint32_t expiry_s(uint64_t now, uint64_t reset_us)
{
    uint64_t at = reset_us > UINT64_MAX - now ? UINT64_MAX : now + reset_us;
    uint64_t s = at / US_PER_S + (at % US_PER_S != 0);
    return s > UINT32_MAX ? UINT32_MAX : (uint32_t)s;
}

static void publish_count(struct stripe *s)
{
    atomic_store_explicit(&s->keys, s->table.count, memory_order_relaxed);
}

/* Makes room for a new entry costing `size` bytes: expired entries at the cold end go first, free
 * of charge; then the least recently used are evicted while either bound would be passed.
 * Returns false, evicting nothing, when the entry cannot fit even in an empty stripe. */
static bool make_room(struct stripe *s, uint64_t now, size_t size)
{
    struct sl_mtable *t = &s->table;
    size_t buckets = ((size_t)t->mask + 1) * sizeof *t->buckets;
    if (size > s->max_bytes || buckets > s->max_bytes - size)
        return false;
    for (int i = 0; i < RECLAIM_PER_INSERT && t->oldest != SL_MT_NONE &&
                    expired(sl_mtable_trailer(t, t->oldest), now);
         i++)
        sl_mtable_remove(t, t->oldest);
    while (t->oldest != SL_MT_NONE && (t->count >= s->max_keys || t->bytes + size > s->max_bytes)) {
        sl_mtable_remove(t, t->oldest);
        atomic_fetch_add_explicit(&s->evictions, 1, memory_order_relaxed);
    }
    return true;
}

/* Adds a zeroed entry for `digest` within the stripe's bounds, or returns SL_MT_NONE. */
static uint32_t insert(struct stripe *s, const uint64_t digest[2], size_t state_size, uint64_t now)
{
    size_t size = sl_mtable_entry_cost(state_size);
    uint32_t h = SL_MT_NONE;
    if (size != 0 && make_room(s, now, size)) {
        h = sl_mtable_insert(&s->table, digest, state_size);
        if (h != SL_MT_NONE)
            sl_mtable_maybe_grow(&s->table, s->max_bytes);
    }
    publish_count(s);
    return h;
}

/* A copy of one key's state, taken out of the store. */
struct taken {
    void *state; /* owned; NULL when the key was absent or its state as new */
    size_t size;
    uint32_t expires_s;
};

/* Takes the entry of `old_digest` out of its stripe `o`, with `s` locked by the caller: `o`
 * is locked too, in address order when it is busy, so that two threads never wait on each
 * other. Sets `*raced` when s's lock was let go meanwhile. Returns whether the key was
 * there (its state copied into `out` unless expired or on ENOMEM). */
static bool take_out(struct stripe *s, struct stripe *o, const uint64_t old_digest[2],
                     uint64_t *now, bool *raced, struct taken *out)
{
    if (o != s && pthread_mutex_trylock(&o->lock) != 0) {
        pthread_mutex_unlock(&s->lock);
        pthread_mutex_lock(s < o ? &s->lock : &o->lock);
        pthread_mutex_lock(s < o ? &o->lock : &s->lock);
        *raced = true;
    }
    uint32_t h = sl_mtable_find(&o->table, old_digest);
    if (h != SL_MT_NONE) {
        if (o->last_now > *now)
            *now = o->last_now; /* the old state was decided up to o's time */
        const struct sl_mt_trailer *tr = sl_mtable_trailer(&o->table, h);
        if (!expired(tr, *now)) {
            out->size = sl_mtable_state_size(&o->table, h);
            out->expires_s = tr->expires_s;
            if ((out->state = malloc(out->size)))
                memcpy(out->state, sl_mtable_state(&o->table, h), out->size);
        }
        sl_mtable_remove(&o->table, h);
        publish_count(o);
    }
    if (o != s)
        pthread_mutex_unlock(&o->lock);
    return h != SL_MT_NONE;
}

/* On a miss for `digest`: the key's state under one of the limit's earlier rates, carried
 * over to `q` into a new entry in `s` (see the opening comment). Returns SL_MT_NONE when there
 * is none still in use (or no room). s's lock may be let go and taken again: an entry for
 * `digest` that another thread added meanwhile is then returned instead. */
static uint32_t carry_over(struct memory_store *ms, struct stripe *s, const uint64_t digest[2],
                           const struct sl_limit *lim, const struct sl_quota *q, const char *key,
                           size_t key_len, uint64_t *now)
{
    for (size_t i = 0; i < lim->nprev_rates; i++) {
        const struct sl_prev_rate *prev = &lim->prev_rates[i];
        if (*now >= prev->until_us)
            continue;
        uint64_t old_digest[2];
        digest_of(ms, lim, prev->rate, prev->headed, key, key_len, old_digest);
        bool raced = false;
        struct taken old = {0};
        bool found = take_out(s, stripe_of(ms, old_digest), old_digest, now, &raced, &old);
        if (*now > s->last_now)
            s->last_now = *now;
        uint32_t h = raced ? sl_mtable_find(&s->table, digest) : SL_MT_NONE;
        if (h != SL_MT_NONE || !old.state) {
            /* h: a decision on the new identity came first, and the old state is moot;
             * found without a state: it was as good as a zeroed one. */
            free(old.state);
            if (h != SL_MT_NONE || found)
                return h;
            continue;
        }
        /* A headed state says which rate wrote it; a plain one was written under prev's. */
        struct sl_rate from = prev->rate;
        const unsigned char *body = old.state;
        size_t body_size = old.size;
        if (prev->headed && old.size >= HEAD_BYTES) {
            memcpy(&from, old.state, HEAD_BYTES);
            body += HEAD_BYTES;
            body_size -= HEAD_BYTES;
        }
        size_t state_size = carried_state_size(lim, q, &from, body);
        h = from.count == 0 ? SL_MT_NONE : insert(s, digest, state_size, *now);
        if (h != SL_MT_NONE) {
            unsigned char *state = sl_mtable_state(&s->table, h);
            if (lim->rates) {
                memcpy(state, &(struct sl_rate){q->count, q->period_us}, HEAD_BYTES);
                state += HEAD_BYTES;
                state_size -= HEAD_BYTES;
            }
            carry(lim, q, &from, body, body_size, state, state_size);
            sl_mtable_trailer(&s->table, h)->expires_s = old.expires_s;
        }
        free(old.state);
        return h;
    }
    return SL_MT_NONE;
}

/* A headed entry `h` (the limit has `rates:`) made ready for a decision under `q`: a state
 * last decided under another rate is carried over to q's, in place when its size class stays,
 * else into a new entry for the same digest. Returns the entry's handle, or SL_MT_NONE when
 * memory runs out (the key's state is then lost). */
static uint32_t replan(struct stripe *s, uint32_t h, const uint64_t digest[2],
                       const struct sl_limit *lim, const struct sl_quota *q, uint64_t now)
{
    struct sl_mtable *t = &s->table;
    struct sl_rate from;
    memcpy(&from, sl_mtable_state(t, h), HEAD_BYTES);
    if (from.count == q->count && from.period_us == q->period_us)
        return h;
    size_t old_size = sl_mtable_state_size(t, h), size = entry_state_size(lim, q);
    bool fresh = from.count == 0;
    void *old = NULL;
    if (!fresh && !(old = malloc(old_size - HEAD_BYTES)))
        return SL_MT_NONE;
    if (old) {
        memcpy(old, (unsigned char *)sl_mtable_state(t, h) + HEAD_BYTES, old_size - HEAD_BYTES);
        size = carried_state_size(lim, q, &from, old);
    }
    uint32_t expires_s = sl_mtable_trailer(t, h)->expires_s;
    if (sl_mtable_entry_size(size) == sl_mtable_entry_size(old_size)) {
        memset(sl_mtable_state(t, h), 0, old_size);
        size = old_size;
    } else {
        sl_mtable_remove(t, h);
        h = insert(s, digest, size, now);
    }
    if (h != SL_MT_NONE) {
        unsigned char *state = sl_mtable_state(t, h);
        memcpy(state, &(struct sl_rate){q->count, q->period_us}, HEAD_BYTES);
        if (old)
            carry(lim, q, &from, old, old_size - HEAD_BYTES, state + HEAD_BYTES, size - HEAD_BYTES);
        sl_mtable_trailer(t, h)->expires_s = expires_s;
    }
    free(old);
    return h;
}

/* An expired entry `h` made as good as new: zeroed, in a new entry of `state_size` bytes when
 * it has another size (a state carried over from another rate may be larger than a fresh one,
 * and gives the room back). Returns its handle, or SL_MT_NONE when memory runs out. */
static uint32_t renew(struct stripe *s, uint32_t h, const uint64_t digest[2], size_t state_size,
                      uint64_t now)
{
    struct sl_mtable *t = &s->table;
    size_t size = sl_mtable_state_size(t, h);
    if (sl_mtable_entry_size(size) == sl_mtable_entry_size(state_size)) {
        memset(sl_mtable_state(t, h), 0, size);
        return h;
    }
    sl_mtable_remove(t, h);
    return insert(s, digest, state_size, now);
}

static void memory_decide(struct sl_store *store, const struct sl_limit *lim,
                          const struct sl_quota *q, const char *key, size_t key_len,
                          const struct sl_units *u, sl_store_cb cb, void *arg)
{
    struct memory_store *ms = (struct memory_store *)store;
    uint64_t digest[2];
    digest_of(ms, lim, (struct sl_rate){lim->count, lim->period_us}, lim->rates != NULL, key,
              key_len, digest);
    struct stripe *s = stripe_of(ms, digest);
    struct sl_mtable *t = &s->table;
    uint64_t now = ms->clock_us();
    struct sl_decision d;

    pthread_mutex_lock(&s->lock);
    /* Clock reads race to the lock; keep the stripe's time monotonic so that a state is
     * never decided at an instant before one it has already seen. */
    if (now < s->last_now)
        now = s->last_now;
    s->last_now = now;

    uint32_t h = sl_mtable_find(t, digest);
    if (h == SL_MT_NONE && lim->nprev_rates > 0)
        h = carry_over(ms, s, digest, lim, q, key, key_len, &now);
    if (h != SL_MT_NONE && expired(sl_mtable_trailer(t, h), now))
        h = renew(s, h, digest, entry_state_size(lim, q), now);
    if (h != SL_MT_NONE)
        sl_mtable_touch(t, h);
    else
        h = insert(s, digest, entry_state_size(lim, q), now);
    if (h != SL_MT_NONE && lim->rates)
        h = replan(s, h, digest, lim, q, now);
    if (h == SL_MT_NONE) {
        pthread_mutex_unlock(&s->lock);
        cb(arg, NULL, SL_STORE_ERR_CONNECTION);
        return;
    }
    unsigned char *state = sl_mtable_state(t, h);
    lim->alg->decide(lim, q, lim->rates ? state + HEAD_BYTES : state, now, u, &d);
    sl_mtable_trailer(t, h)->expires_s = expiry_s(now, d.reset_us);
    pthread_mutex_unlock(&s->lock);

    cb(arg, &d, SL_STORE_OK);
}

static void memory_free(struct sl_store *store)
{
    struct memory_store *ms = (struct memory_store *)store;
    for (size_t i = 0; i < ms->nstripes; i++) {
        sl_mtable_free(&ms->stripes[i].table);
        pthread_mutex_destroy(&ms->stripes[i].lock);
    }
    free(ms->stripes);
    free(ms);
}

static const struct sl_store_ops memory_ops = {
    .name = "memory",
    .decide = memory_decide,
    .free = memory_free,
};

/* A secret digest key, so that clients cannot choose keys that land in one stripe or one
 * chain, or share a digest. getrandom() only fails on kernels without it; the clock and an
 * address are a weak but still per-process fallback. */
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

/* `total` split over `n` parts exactly: the first (total mod n) parts take one more. */
static uint64_t share(uint64_t total, size_t n, size_t i)
{
    return total / n + (i < total % n);
}

/* Stripes for these bounds: as many as keep MIN_KEYS_PER_STRIPE small keys and
 * MIN_STRIPE_BYTES each, at most MAX_STRIPES. */
static size_t stripes_for(uint64_t max_keys, uint64_t max_bytes)
{
    uint64_t keys = max_bytes / SMALL_KEY_BYTES < max_keys ? max_bytes / SMALL_KEY_BYTES : max_keys;
    size_t n = 1;
    while (n < MAX_STRIPES && keys / (2 * n) >= MIN_KEYS_PER_STRIPE &&
           max_bytes / (2 * n) >= MIN_STRIPE_BYTES)
        n *= 2;
    return n;
}

size_t sl_store_memory_max_state(uint64_t max_keys, uint64_t max_bytes)
{
    if (max_keys == 0)
        max_keys = 1;
    /* Half the smallest stripe's share: the bucket array never takes the other half, so the
     * entry fits once older keys are evicted. */
    uint64_t half = max_bytes / stripes_for(max_keys, max_bytes) / 2;
    size_t lo = 0, hi = half > SIZE_MAX ? SIZE_MAX : (size_t)half;
    if (sl_mtable_entry_cost(0) > half)
        return 0;
    while (lo < hi) {
        size_t mid = lo + (hi - lo + 1) / 2;
        size_t cost = sl_mtable_entry_cost(mid);
        if (cost != 0 && cost <= half)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

struct sl_store *sl_store_memory_new(uint64_t max_keys, uint64_t max_bytes,
                                     uint64_t (*clock_us)(void))
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
    ms->nstripes = stripes_for(max_keys, max_bytes);
    ms->stripes = aligned_alloc(alignof(struct stripe), ms->nstripes * sizeof *ms->stripes);
    if (!ms->stripes)
        goto fail;

    size_t ready = 0;
    for (; ready < ms->nstripes; ready++) {
        struct stripe *s = &ms->stripes[ready];
        memset(s, 0, sizeof *s);
        s->max_keys = share(max_keys, ms->nstripes, ready);
        if (s->max_keys == 0)
            s->max_keys = 1;
        if (s->max_keys >= SL_MT_CLASS_MAX_ENTRIES)
            s->max_keys = SL_MT_CLASS_MAX_ENTRIES - 1;
        s->max_bytes = share(max_bytes, ms->nstripes, ready);
        if (sl_mtable_init(&s->table) != 0)
            goto fail_stripes;
        if (pthread_mutex_init(&s->lock, NULL) != 0) {
            sl_mtable_free(&s->table);
            goto fail_stripes;
        }
    }
    return &ms->base;

fail_stripes:
    while (ready-- > 0) {
        sl_mtable_free(&ms->stripes[ready].table);
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
