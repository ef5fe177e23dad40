/* One lock stripe's table of limit states for the memory store (memory.c), packed so that a
 * key costs little more than its state. Private to src/store/. Not thread-safe: the stripe's
 * lock serialises every call.
 *
 * An entry is the algorithm's state followed by a 32-byte trailer: the key's identity as a
 * 128-bit keyed digest (memory.c), its expiry in whole seconds, and three 32-bit links, one
 * for its hash chain and two for the LRU list. Links are handles, not pointers: a handle
 * names an entry by its size class and its index in that class.
 *
 * Entries of one size form a class, held in chunks of about 2 KiB (or one entry, if larger)
 * that are allocated as the class grows. Sizes are rounded up to 8 bytes, and past 256 to a
 * quarter of a power of two. A table holds at most 63 sizes at once: an insert of a 64th
 * fails until a class empties. A removed entry's place is taken by the class's last entry, so a
 * class stays dense, and its trailing chunk is freed once a whole spare chunk is empty behind it:
 * memory follows the live count, with at most two chunks of slack per class. */
#ifndef SLUICE_STORE_MEMORY_TABLE_H
#define SLUICE_STORE_MEMORY_TABLE_H

#include <stddef.h>
#include <stdint.h>

#define SL_MT_NONE UINT32_MAX

/* A handle is a class number above SL_MT_INDEX_BITS bits of index in the class. */
#define SL_MT_INDEX_BITS 26
/* Entries one class can hold. */
#define SL_MT_CLASS_MAX_ENTRIES (UINT32_C(1) << SL_MT_INDEX_BITS)

struct sl_mt_trailer {
    uint64_t digest[2];
    uint32_t expires_s; /* the state is as new from this second on (rounded up) */
    uint32_t hnext;     /* next entry in the hash chain */
    uint32_t newer;     /* LRU neighbours */
    uint32_t older;
};

struct sl_mt_class {
    uint32_t entry_size; /* state and trailer, a multiple of 8 */
    uint32_t cost;       /* sl_mtable_entry_cost */
    uint32_t shift;      /* log2 of the entries per chunk */
    uint32_t count;      /* entries, at indexes 0 .. count-1 */
    uint32_t nchunks;
    uint32_t chunks_cap;
    unsigned char **chunks; /* owned, each owned */
};

struct sl_mtable {
    uint32_t *buckets; /* owned; chain heads */
    uint32_t mask;     /* buckets - 1, a power of two minus one */
    uint32_t count;    /* entries held */
    uint32_t newest, oldest;
    uint32_t nclasses;
    struct sl_mt_class *classes; /* owned */
    size_t bytes;                /* the entries' costs and the bucket array */
};

/* Bytes an entry whose state is `state_size` bytes takes, or 0 when no class can hold it. */
size_t sl_mtable_entry_size(size_t state_size);

/* What such an entry costs in `bytes`: its size and its share of its chunk's allocation
 * (the allocator's header and the chunk's slot in its class), or 0 as above. */
size_t sl_mtable_entry_cost(size_t state_size);

/* An empty table. Returns 0, or -1 on ENOMEM. */
int sl_mtable_init(struct sl_mtable *t);

/* Frees everything the table holds. */
void sl_mtable_free(struct sl_mtable *t);

/* The entry whose digest is `digest`, or SL_MT_NONE. */
uint32_t sl_mtable_find(const struct sl_mtable *t, const uint64_t digest[2]);

/* An entry's state (8-byte aligned) and trailer. Valid until the next insert or remove:
 * a remove moves another entry into the removed one's place. Inline: every lookup step and
 * every link followed takes one. */
static inline void *sl_mtable_state(const struct sl_mtable *t, uint32_t h)
{
    const struct sl_mt_class *c = &t->classes[h >> SL_MT_INDEX_BITS];
    uint32_t i = h & (SL_MT_CLASS_MAX_ENTRIES - 1);
    return c->chunks[i >> c->shift] + (size_t)(i & ((UINT32_C(1) << c->shift) - 1)) * c->entry_size;
}

static inline struct sl_mt_trailer *sl_mtable_trailer(const struct sl_mtable *t, uint32_t h)
{
    return (struct sl_mt_trailer *)((unsigned char *)sl_mtable_state(t, h) +
                                    t->classes[h >> SL_MT_INDEX_BITS].entry_size -
                                    sizeof(struct sl_mt_trailer));
}

/* Bytes of `h`'s state (its class's, so possibly more than was asked for). */
size_t sl_mtable_state_size(const struct sl_mtable *t, uint32_t h);

/* Makes `h` the most recently used entry. */
void sl_mtable_touch(struct sl_mtable *t, uint32_t h);

/* Adds an entry for `digest` (not present) with a zeroed state of at least `state_size`
 * bytes and expiry 0, as the most recently used. Returns its handle, or SL_MT_NONE on ENOMEM
 * or when the size is too large. Invalidates state and trailer pointers. */
uint32_t sl_mtable_insert(struct sl_mtable *t, const uint64_t digest[2], size_t state_size);

/* Removes `h`. Invalidates every handle held apart from the table's own links. */
void sl_mtable_remove(struct sl_mtable *t, uint32_t h);

/* Doubles the bucket array when the chains average more than one entry and the table's
 * bytes stay within `max_bytes`; otherwise (or on ENOMEM) the chains grow longer. */
void sl_mtable_maybe_grow(struct sl_mtable *t, size_t max_bytes);

#endif
