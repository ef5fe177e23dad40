/* The layout of the heavy-hitter sketches, shared by the recording side (top.c) and the
 * reader that merges them (top_read.c). Nothing outside src/admin/ includes this file.
 *
 * Concurrency. A summary's published fields are written only by its worker and read by
 * the admin thread; every one is an atomic accessed relaxed (plain moves on x86), so there
 * is no data race, and no lock. What must be read together is guarded by a sequence
 * counter, the C11 seqlock of Boehm, "Can seqlocks get along with programming language
 * memory models?" (2012): the writer makes the counter odd, writes, makes it even again
 * (release); the reader keeps its copy only if it saw the same even value before and after
 * (acquire fence between). There are two levels, so that a busy writer cannot starve the
 * reader: each counter's key, length, count and error change together only when a new key
 * takes the counter (the entry's `seq`); a summary is emptied for a new minute once a
 * minute (the summary's `gen`). An increment, nearly every record, is two relaxed stores
 * (count, total) and no counter at all: a reader copies each entry consistently, while the
 * counts of different entries may be a few increments apart, which the error bound does
 * not notice. */
#ifndef SLUICE_TOP_INTERNAL_H
#define SLUICE_TOP_INTERNAL_H

#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>

#include "sluice/metrics.h"
#include "sluice/top.h"

#define TOP_KEY_WORDS ((SL_TOP_KEY_MAX + 7) / 8)
#define TOP_TABLE (2 * SL_TOP_K) /* open addressing at most half full */

struct top_entry {
    _Atomic uint32_t seq;
    _Atomic uint32_t len;
    _Atomic uint64_t count;              /* Space-Saving's estimate: an upper bound */
    _Atomic uint64_t err;                /* the count the key inherited when it took this counter */
    _Atomic uint64_t key[TOP_KEY_WORDS]; /* zero-padded past `len` */
};

/* One minute of one stream (requests, or denials) of one limit on one worker. */
struct top_summary {
    _Atomic uint32_t gen;
    _Atomic uint32_t used;   /* counters in use, 0..SL_TOP_K; release after the entry */
    _Atomic uint64_t minute; /* minute number + 1; 0 = holds nothing */
    _Atomic uint64_t total;  /* events counted */
    struct top_entry e[SL_TOP_K];
    /* Worker-private: the min-heap by count and the key index over `e`. */
    uint32_t hash[SL_TOP_K];
    uint8_t heap[SL_TOP_K];   /* entry indexes, least count first */
    uint8_t pos[SL_TOP_K];    /* entry index -> heap position */
    uint8_t table[TOP_TABLE]; /* entry index + 1; 0 = empty slot */
};

enum { TOP_SEEN, TOP_DENIED, TOP_STREAMS };

struct top_sketch {
    _Atomic uint32_t tag; /* sl_limit.top_tag of the limit recorded last */
    struct top_summary ring[TOP_STREAMS][SL_TOP_WINDOWS];
};

_Static_assert(sizeof(struct top_sketch) <= SL_TOP_SKETCH_BYTES,
               "SL_TOP_SKETCH_BYTES states the bound per limit per worker");
_Static_assert(SL_TOP_K <= 255, "entry indexes are bytes");

#define TOP_CHUNK 64
#define TOP_CHUNKS (SL_METRICS_MAX_LIMITS / TOP_CHUNK)

struct top_chunk {
    _Atomic(struct top_sketch *) sketch[TOP_CHUNK];
};

/* Pointers are published with release stores after the zeroed block they point to. */
struct sl_top_slot {
    alignas(64) _Atomic(struct top_chunk *) chunks[TOP_CHUNKS];
    struct sl_top *top;
};

struct sl_top {
    unsigned nslots;
    uint64_t born_us; /* sl_clock_mono_us at creation; read-only after */
    struct sl_top_slot **slots;
    _Atomic size_t bytes; /* held by sketches and chunks */
};

#endif
