/* One stripe's packed table of limit states: size classes of chunked entries, hash chains
 * and an LRU list linked by 32-bit handles (memory_table.h). */
#include "memory_table.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define INDEX_BITS SL_MT_INDEX_BITS
#define INDEX_MASK (SL_MT_CLASS_MAX_ENTRIES - 1)
/* Classes a table can have at once: the handle's remaining bits, less one so that no handle
 * is SL_MT_NONE. Sizes step by 8 bytes up to SMALL_MAX and by quarters of a power of two
 * above (so at most a fifth is padding); a class left empty is reused for another size. */
#define MAX_CLASSES 63
#define SMALL_MAX 256
#define CHUNK_BYTES 2048
/* What a chunk costs beyond its entries: malloc's 16-byte header, and its slot in the class's
 * chunk array, which grows by doubling. */
#define CHUNK_OVERHEAD 32
#define INITIAL_BUCKETS 8
#define TRAILER_SIZE sizeof(struct sl_mt_trailer)

_Static_assert(sizeof(struct sl_mt_trailer) == 32, "the trailer is 32 bytes");

static uint32_t handle_of(uint32_t cls, uint32_t index)
{
    return cls << INDEX_BITS | index;
}

size_t sl_mtable_entry_size(size_t state_size)
{
    if (state_size > (UINT32_C(1) << 31) - TRAILER_SIZE)
        return 0;
    size_t size = ((state_size + 7) & ~(size_t)7) + TRAILER_SIZE;
    if (size <= SMALL_MAX)
        return size;
    size_t pow2 = SMALL_MAX;
    while (2 * pow2 < size)
        pow2 *= 2;
    size_t step = pow2 / 4;
    return (size + step - 1) / step * step;
}

/* log2 of the entries of `entry_size` bytes in one chunk. */
static uint32_t chunk_shift(size_t entry_size)
{
    uint32_t shift = 0;
    while ((entry_size << (shift + 1)) <= CHUNK_BYTES)
        shift++;
    return shift;
}

size_t sl_mtable_entry_cost(size_t state_size)
{
    size_t size = sl_mtable_entry_size(state_size);
    return size == 0 ? 0 : size + (CHUNK_OVERHEAD >> chunk_shift(size));
}

size_t sl_mtable_state_size(const struct sl_mtable *t, uint32_t h)
{
    return t->classes[h >> INDEX_BITS].entry_size - TRAILER_SIZE;
}

int sl_mtable_init(struct sl_mtable *t)
{
    memset(t, 0, sizeof *t);
    t->buckets = malloc(INITIAL_BUCKETS * sizeof *t->buckets);
    if (!t->buckets)
        return -1;
    memset(t->buckets, 0xff, INITIAL_BUCKETS * sizeof *t->buckets); /* SL_MT_NONE */
    t->mask = INITIAL_BUCKETS - 1;
    t->newest = t->oldest = SL_MT_NONE;
    t->bytes = INITIAL_BUCKETS * sizeof *t->buckets;
    return 0;
}

void sl_mtable_free(struct sl_mtable *t)
{
    for (uint32_t i = 0; i < t->nclasses; i++) {
        for (uint32_t k = 0; k < t->classes[i].nchunks; k++)
            free(t->classes[i].chunks[k]);
        free(t->classes[i].chunks);
    }
    free(t->classes);
    free(t->buckets);
    memset(t, 0, sizeof *t);
}

uint32_t sl_mtable_find(const struct sl_mtable *t, const uint64_t digest[2])
{
    uint32_t h = t->buckets[digest[0] & t->mask];
    while (h != SL_MT_NONE) {
        const struct sl_mt_trailer *tr = sl_mtable_trailer(t, h);
        if (tr->digest[0] == digest[0] && tr->digest[1] == digest[1])
            return h;
        h = tr->hnext;
    }
    return SL_MT_NONE;
}

static void lru_unlink(struct sl_mtable *t, const struct sl_mt_trailer *tr)
{
    if (tr->newer != SL_MT_NONE)
        sl_mtable_trailer(t, tr->newer)->older = tr->older;
    else
        t->newest = tr->older;
    if (tr->older != SL_MT_NONE)
        sl_mtable_trailer(t, tr->older)->newer = tr->newer;
    else
        t->oldest = tr->newer;
}

static void lru_push_newest(struct sl_mtable *t, uint32_t h, struct sl_mt_trailer *tr)
{
    tr->newer = SL_MT_NONE;
    tr->older = t->newest;
    if (t->newest != SL_MT_NONE)
        sl_mtable_trailer(t, t->newest)->newer = h;
    else
        t->oldest = h;
    t->newest = h;
}

void sl_mtable_touch(struct sl_mtable *t, uint32_t h)
{
    if (t->newest == h)
        return;
    struct sl_mt_trailer *tr = sl_mtable_trailer(t, h);
    lru_unlink(t, tr);
    lru_push_newest(t, h, tr);
}

static void class_set_size(struct sl_mt_class *c, size_t entry_size)
{
    c->entry_size = (uint32_t)entry_size;
    c->shift = chunk_shift(entry_size);
    c->cost = (uint32_t)(entry_size + (CHUNK_OVERHEAD >> c->shift));
}

/* The class of entries of `entry_size` bytes: the existing one, an empty one given the new
 * size, or a new one; MAX_CLASSES when none can be had. */
static uint32_t class_for(struct sl_mtable *t, size_t entry_size)
{
    uint32_t empty = MAX_CLASSES;
    for (uint32_t i = 0; i < t->nclasses; i++) {
        if (t->classes[i].entry_size == entry_size)
            return i;
        if (t->classes[i].count == 0 && empty == MAX_CLASSES)
            empty = i;
    }
    if (empty != MAX_CLASSES) {
        struct sl_mt_class *c = &t->classes[empty];
        while (c->nchunks > 0)
            free(c->chunks[--c->nchunks]);
        class_set_size(c, entry_size);
        return empty;
    }
    if (t->nclasses == MAX_CLASSES)
        return MAX_CLASSES;
    struct sl_mt_class *classes = realloc(t->classes, (t->nclasses + 1) * sizeof *classes);
    if (!classes)
        return MAX_CLASSES;
    t->classes = classes;
    memset(&classes[t->nclasses], 0, sizeof *classes);
    class_set_size(&classes[t->nclasses], entry_size);
    return t->nclasses++;
}

/* Room for one more entry at index c->count: a new chunk when the last one is full. */
static bool class_reserve(struct sl_mt_class *c)
{
    if (c->count >= INDEX_MASK)
        return false;
    if ((c->count >> c->shift) < c->nchunks)
        return true;
    if (c->nchunks == c->chunks_cap) {
        uint32_t cap = c->chunks_cap ? 2 * c->chunks_cap : 4;
        unsigned char **chunks = realloc(c->chunks, cap * sizeof *chunks);
        if (!chunks)
            return false;
        c->chunks = chunks;
        c->chunks_cap = cap;
    }
    unsigned char *chunk = malloc((size_t)c->entry_size << c->shift);
    if (!chunk)
        return false;
    c->chunks[c->nchunks++] = chunk;
    return true;
}

uint32_t sl_mtable_insert(struct sl_mtable *t, const uint64_t digest[2], size_t state_size)
{
    size_t size = sl_mtable_entry_size(state_size);
    if (size == 0)
        return SL_MT_NONE;
    uint32_t cls = class_for(t, size);
    if (cls == MAX_CLASSES || !class_reserve(&t->classes[cls]))
        return SL_MT_NONE;
    struct sl_mt_class *c = &t->classes[cls];
    uint32_t h = handle_of(cls, c->count++);
    unsigned char *e = (unsigned char *)sl_mtable_state(t, h);
    memset(e, 0, size);
    struct sl_mt_trailer *tr = (struct sl_mt_trailer *)(e + size - TRAILER_SIZE);
    tr->digest[0] = digest[0];
    tr->digest[1] = digest[1];
    uint32_t *head = &t->buckets[digest[0] & t->mask];
    tr->hnext = *head;
    *head = h;
    lru_push_newest(t, h, tr);
    t->count++;
    t->bytes += c->cost;
    return h;
}

/* The link that points at `h` in its hash chain. */
static uint32_t *chain_link(struct sl_mtable *t, uint32_t h, uint64_t digest0)
{
    uint32_t *pp = &t->buckets[digest0 & t->mask];
    while (*pp != h)
        pp = &sl_mtable_trailer(t, *pp)->hnext;
    return pp;
}

void sl_mtable_remove(struct sl_mtable *t, uint32_t h)
{
    uint32_t cls = h >> INDEX_BITS;
    struct sl_mt_class *c = &t->classes[cls];
    struct sl_mt_trailer *tr = sl_mtable_trailer(t, h);
    *chain_link(t, h, tr->digest[0]) = tr->hnext;
    lru_unlink(t, tr);

    /* The class's last entry moves into the hole; whoever linked to it is told. */
    uint32_t last = handle_of(cls, c->count - 1);
    if (last != h) {
        memcpy(sl_mtable_state(t, h), sl_mtable_state(t, last), c->entry_size);
        *chain_link(t, last, tr->digest[0]) = h;
        if (tr->newer != SL_MT_NONE)
            sl_mtable_trailer(t, tr->newer)->older = h;
        else
            t->newest = h;
        if (tr->older != SL_MT_NONE)
            sl_mtable_trailer(t, tr->older)->newer = h;
        else
            t->oldest = h;
    }
    c->count--;
    t->count--;
    t->bytes -= c->cost;
    /* One empty chunk is kept, so that a class at a chunk boundary does not allocate and
     * free a chunk per key. */
    if (c->nchunks >= 2 && c->count <= (c->nchunks - 2) << c->shift)
        free(c->chunks[--c->nchunks]);
}

void sl_mtable_maybe_grow(struct sl_mtable *t, size_t max_bytes)
{
    size_t n = (size_t)t->mask + 1;
    if (t->count <= n || n > UINT32_MAX / 2 || t->bytes + n * sizeof *t->buckets > max_bytes)
        return;
    uint32_t *buckets = malloc(2 * n * sizeof *buckets);
    if (!buckets)
        return;
    memset(buckets, 0xff, 2 * n * sizeof *buckets);
    uint32_t mask = (uint32_t)(2 * n - 1);
    for (uint32_t cls = 0; cls < t->nclasses; cls++) {
        for (uint32_t i = 0; i < t->classes[cls].count; i++) {
            uint32_t h = handle_of(cls, i);
            struct sl_mt_trailer *tr = sl_mtable_trailer(t, h);
            tr->hnext = buckets[tr->digest[0] & mask];
            buckets[tr->digest[0] & mask] = h;
        }
    }
    free(t->buckets);
    t->buckets = buckets;
    t->mask = mask;
    t->bytes += n * sizeof *buckets;
}
