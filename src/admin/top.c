/* The heavy-hitter sketches: registry and recording (the hot path). Reading and merging
 * live in top_read.c; the layout and its concurrency rule in top_internal.h.
 *
 * Why Space-Saving (Metwally, Agrawal, El Abbadi, 2005) rather than count-min plus a heap:
 * it answers the question asked, "which keys, and how often", from the same K counters
 * that hold the keys, with a deterministic bound (each count over by at most N/K, where N
 * is the events of the summary, and every key above N/K present), and a summary is
 * mergeable by adding counts. Count-min needs the candidate keys held in a heap beside its
 * counter matrix, its bound is only probabilistic, and it errs for every key of a heavy
 * stream. On skewed traffic (the case that matters: a few keys doing most of the requests)
 * Space-Saving's counts for the heaviest keys are exact or nearly so.
 *
 * The min counter is found through a binary min-heap: a heavy key's counter sits near the
 * leaves, so incrementing it rarely moves anything. Keys are found through a small open-
 * addressing table with linear probing, at most half full, so a lookup is bounded by
 * SL_TOP_K probes whatever keys a client chooses.
 *
 * Sliding window: one summary per minute per stream, in a ring of SL_TOP_WINDOWS. A
 * summary whose minute is past is reset when the worker next records into its ring slot
 * (rotation is lazy, on the hot path, by the clock); the reader merges the summaries whose
 * minute lies in the window and ignores older ones. */
#include <stdlib.h>
#include <string.h>

#include "sluice/rls_config.h"
#include "sluice/sha256.h"
#include "top_internal.h"

struct sl_top *sl_top_new(unsigned nslots, uint64_t now_us)
{
    struct sl_top *top = calloc(1, sizeof *top);

    if (!top)
        return NULL;
    top->born_us = now_us;
    top->slots = calloc(nslots ? nslots : 1, sizeof *top->slots);
    if (!top->slots)
        goto fail;
    top->nslots = nslots;
    for (unsigned i = 0; i < nslots; i++) {
        top->slots[i] = aligned_alloc(64, sizeof *top->slots[i]);
        if (!top->slots[i])
            goto fail;
        memset(top->slots[i], 0, sizeof *top->slots[i]);
        top->slots[i]->top = top;
    }
    return top;
fail:
    sl_top_free(top);
    return NULL;
}

void sl_top_free(struct sl_top *top)
{
    if (!top)
        return;
    for (unsigned i = 0; top->slots && i < top->nslots; i++) {
        struct sl_top_slot *s = top->slots[i];
        for (size_t c = 0; s && c < TOP_CHUNKS; c++) {
            struct top_chunk *chunk = atomic_load_explicit(&s->chunks[c], memory_order_relaxed);
            for (size_t j = 0; chunk && j < TOP_CHUNK; j++)
                free(atomic_load_explicit(&chunk->sketch[j], memory_order_relaxed));
            free(chunk);
        }
        free(s);
    }
    free(top->slots);
    free(top);
}

struct sl_top_slot *sl_top_slot(struct sl_top *top, unsigned i)
{
    return top && i < top->nslots ? top->slots[i] : NULL;
}

size_t sl_top_memory(const struct sl_top *top)
{
    return top ? atomic_load_explicit(&top->bytes, memory_order_relaxed) : 0;
}

static uint32_t fnv1a(uint32_t h, const void *data, size_t len)
{
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

/* The rate limit service's keys are its descriptors' entries, whatever the limit: one tag. */
static void bind_rls(struct sl_rls_limit *l, void *arg)
{
    (void)arg;
    l->lim.top_tag = fnv1a(2166136261u, "rls", 4) | 1;
}

void sl_top_bind(struct sl_config *cfg)
{
    sl_rls_config_each_limit(cfg->rls.files, bind_rls, NULL);
    for (size_t r = 0; r < cfg->nroutes; r++) {
        for (size_t l = 0; l < cfg->routes[r].nlimits; l++) {
            struct sl_limit *lim = &cfg->routes[r].limits[l];
            uint32_t h = 2166136261u;
            for (size_t k = 0; k < lim->nkeys; k++) {
                unsigned kind = (unsigned)lim->keys[k].kind;
                h = fnv1a(h, &kind, sizeof kind);
                if (lim->keys[k].name)
                    h = fnv1a(h, lim->keys[k].name, lim->keys[k].name_len + 1);
            }
            lim->top_tag = h | 1; /* never 0, the tag of a sketch not yet written */
        }
    }
}

/* A word at a time: keys are mostly short (addresses, API keys) and this runs per request.
 * A client choosing colliding keys only lengthens probes, bounded by SL_TOP_K. */
static uint32_t hash_words(const uint64_t *w, size_t n, size_t len)
{
    uint64_t h = (uint64_t)len * 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < n; i++) {
        h = (h ^ w[i]) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return (uint32_t)h;
}

static inline uint64_t load(const _Atomic uint64_t *v)
{
    return atomic_load_explicit(v, memory_order_relaxed);
}

static inline void store(_Atomic uint64_t *v, uint64_t x)
{
    atomic_store_explicit(v, x, memory_order_relaxed);
}

static void write_begin(_Atomic uint32_t *seq)
{
    atomic_store_explicit(seq, atomic_load_explicit(seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void write_end(_Atomic uint32_t *seq)
{
    atomic_store_explicit(seq, atomic_load_explicit(seq, memory_order_relaxed) + 1,
                          memory_order_release);
}

static void reset(struct top_summary *s, uint64_t minute_tag)
{
    write_begin(&s->gen);
    atomic_store_explicit(&s->used, 0, memory_order_relaxed);
    store(&s->total, 0);
    store(&s->minute, minute_tag);
    write_end(&s->gen);
    memset(s->table, 0, sizeof s->table);
}

/* Heap order by count, least first. */
static inline uint64_t heap_count(const struct top_summary *s, unsigned p)
{
    return load(&s->e[s->heap[p]].count);
}

static void heap_swap(struct top_summary *s, unsigned a, unsigned b)
{
    uint8_t t = s->heap[a];
    s->heap[a] = s->heap[b];
    s->heap[b] = t;
    s->pos[s->heap[a]] = (uint8_t)a;
    s->pos[s->heap[b]] = (uint8_t)b;
}

static void sift_down(struct top_summary *s, unsigned p, unsigned used)
{
    for (;;) {
        unsigned c = 2 * p + 1;
        if (c >= used)
            return;
        if (c + 1 < used && heap_count(s, c + 1) < heap_count(s, c))
            c++;
        if (heap_count(s, c) >= heap_count(s, p))
            return;
        heap_swap(s, c, p);
        p = c;
    }
}

static void sift_up(struct top_summary *s, unsigned p)
{
    while (p > 0) {
        unsigned parent = (p - 1) / 2;
        if (heap_count(s, parent) <= heap_count(s, p))
            return;
        heap_swap(s, parent, p);
        p = parent;
    }
}

static bool same_key(const struct top_entry *e, const uint64_t *words, uint32_t len)
{
    if (atomic_load_explicit(&e->len, memory_order_relaxed) != len)
        return false;
    for (size_t i = 0; i < (len + 7) / 8; i++)
        if (load(&e->key[i]) != words[i])
            return false;
    return true;
}

/* The table slot holding entry `idx`, which is present. */
static unsigned slot_of(const struct top_summary *s, unsigned idx)
{
    unsigned i = s->hash[idx] & (TOP_TABLE - 1);
    while (s->table[i] != idx + 1)
        i = (i + 1) & (TOP_TABLE - 1);
    return i;
}

/* Removes entry `idx` from the table, moving later members of its probe run back so that
 * no lookup stops early at the hole (deletion without tombstones). */
static void table_remove(struct top_summary *s, unsigned idx)
{
    const unsigned mask = TOP_TABLE - 1;
    unsigned hole = slot_of(s, idx);

    for (unsigned j = (hole + 1) & mask; s->table[j]; j = (j + 1) & mask) {
        unsigned home = s->hash[s->table[j] - 1] & mask;
        /* The member at j may move to the hole unless its home lies cyclically in
         * (hole, j]. */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            s->table[hole] = s->table[j];
            hole = j;
        }
    }
    s->table[hole] = 0;
}

static void table_insert(struct top_summary *s, unsigned idx)
{
    unsigned i = s->hash[idx] & (TOP_TABLE - 1);
    while (s->table[i])
        i = (i + 1) & (TOP_TABLE - 1);
    s->table[i] = (uint8_t)(idx + 1);
}

/* Gives counter `e` to a key, with its count and error, as one change for the reader. */
static void take_counter(struct top_entry *e, const uint64_t *words, uint32_t len, uint64_t count,
                         uint64_t err)
{
    uint32_t old_len = atomic_load_explicit(&e->len, memory_order_relaxed);
    size_t n = (len + 7) / 8, old = (old_len + 7) / 8;

    write_begin(&e->seq);
    for (size_t i = 0; i < n; i++)
        store(&e->key[i], words[i]);
    for (size_t i = n; i < old; i++)
        store(&e->key[i], 0);
    atomic_store_explicit(&e->len, len, memory_order_relaxed);
    store(&e->count, count);
    store(&e->err, err);
    write_end(&e->seq);
}

/* Space-Saving's update: the key's counter goes up by one; an unmonitored key takes the
 * least counter, inheriting its count as its error. */
static void summary_add(struct top_summary *s, const uint64_t *words, uint32_t len, uint32_t h)
{
    unsigned used = atomic_load_explicit(&s->used, memory_order_relaxed);
    unsigned i = h & (TOP_TABLE - 1), idx;

    store(&s->total, load(&s->total) + 1);
    for (; s->table[i]; i = (i + 1) & (TOP_TABLE - 1)) {
        idx = s->table[i] - 1u;
        if (s->hash[idx] == h && same_key(&s->e[idx], words, len)) {
            store(&s->e[idx].count, load(&s->e[idx].count) + 1);
            sift_down(s, s->pos[idx], used);
            return;
        }
    }
    if (used < SL_TOP_K) {
        idx = used;
        take_counter(&s->e[idx], words, len, 1, 0);
        /* Release: a reader that counts this entry sees it written. */
        atomic_store_explicit(&s->used, used + 1, memory_order_release);
        s->hash[idx] = h;
        s->heap[used] = (uint8_t)idx;
        s->pos[idx] = (uint8_t)used;
        table_insert(s, idx);
        sift_up(s, used);
        return;
    }
    idx = s->heap[0];
    uint64_t min = load(&s->e[idx].count);
    table_remove(s, idx);
    take_counter(&s->e[idx], words, len, min + 1, min);
    s->hash[idx] = h;
    table_insert(s, idx);
    sift_down(s, 0, used);
}

static struct top_sketch *sketch_for(struct sl_top_slot *slot, unsigned id)
{
    struct top_chunk *chunk =
        atomic_load_explicit(&slot->chunks[id / TOP_CHUNK], memory_order_relaxed);
    if (!chunk) {
        chunk = calloc(1, sizeof *chunk);
        if (!chunk)
            return NULL;
        atomic_fetch_add_explicit(&slot->top->bytes, sizeof *chunk, memory_order_relaxed);
        atomic_store_explicit(&slot->chunks[id / TOP_CHUNK], chunk, memory_order_release);
    }
    struct top_sketch *sk =
        atomic_load_explicit(&chunk->sketch[id % TOP_CHUNK], memory_order_relaxed);
    if (!sk) {
        /* Zeroed: every summary holds nothing (minute 0) and the tag matches no limit. */
        sk = calloc(1, sizeof *sk);
        if (!sk)
            return NULL;
        atomic_fetch_add_explicit(&slot->top->bytes, sizeof *sk, memory_order_relaxed);
        atomic_store_explicit(&chunk->sketch[id % TOP_CHUNK], sk, memory_order_release);
    }
    return sk;
}

/* The summary of `stream` for `minute`, reset first when its ring slot holds an older one. */
static struct top_summary *summary_now(struct top_sketch *sk, int stream, uint64_t minute)
{
    struct top_summary *s = &sk->ring[stream][minute % SL_TOP_WINDOWS];
    if (load(&s->minute) != minute + 1)
        reset(s, minute + 1);
    return s;
}

void sl_top_record(struct sl_top_slot *slot, const struct sl_limit *lim, const char *key,
                   size_t len, bool denied, uint64_t now_us)
{
    uint64_t words[TOP_KEY_WORDS];
    char hex[2 * SL_SHA256_LEN + 1];
    struct top_sketch *sk;

    if (!slot || lim->metrics_id >= SL_METRICS_MAX_LIMITS ||
        !(sk = sketch_for(slot, lim->metrics_id)))
        return;
    if (atomic_load_explicit(&sk->tag, memory_order_relaxed) != lim->top_tag) {
        /* New key sources: the old keys are forgotten before the new tag is published,
         * so a reader that sees the tag sees the emptied summaries. */
        for (int st = 0; st < TOP_STREAMS; st++)
            for (int w = 0; w < SL_TOP_WINDOWS; w++)
                reset(&sk->ring[st][w], 0);
        atomic_store_explicit(&sk->tag, lim->top_tag, memory_order_release);
    }
    if (len > SL_TOP_KEY_MAX) {
        sl_sha256_hex(key, len, hex);
        key = hex;
        len = 2 * SL_SHA256_LEN;
    }
    size_t nwords = (len + 7) / 8;
    if (nwords)
        words[nwords - 1] = 0;
    memcpy(words, key, len);
    uint32_t h = hash_words(words, nwords, len);
    uint64_t minute = now_us / SL_TOP_WINDOW_US;

    summary_add(summary_now(sk, TOP_SEEN, minute), words, (uint32_t)len, h);
    if (denied)
        summary_add(summary_now(sk, TOP_DENIED, minute), words, (uint32_t)len, h);
}
