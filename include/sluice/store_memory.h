/* The in-memory store: one per process, shared by every worker thread. Keys live in a
 * hash table split into lock stripes, each with its own LRU list, so that no decision
 * takes a global lock. A key's state expires once its quota is fully restored, and at
 * most `max_keys` keys are held: past that the least recently used key of the stripe is
 * evicted. State is keyed by route name, limit name, algorithm and rate, so that a reload
 * that keeps those keeps the state. Thread-safe. */
#ifndef SLUICE_STORE_MEMORY_H
#define SLUICE_STORE_MEMORY_H

#include <stdint.h>

#include "sluice/store.h"

/* Returns a new store (free with sl_store_free) or NULL on ENOMEM. `clock_us` reads a
 * monotonic clock in microseconds; NULL means sl_clock_mono_us. */
struct sl_store *sl_store_memory_new(uint64_t max_keys, uint64_t (*clock_us)(void));

uint64_t sl_store_memory_keys(const struct sl_store *store);
uint64_t sl_store_memory_evictions(const struct sl_store *store);

#endif
