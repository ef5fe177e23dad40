/* The in-memory store: one per process, shared by every worker thread. Keys live in a
 * hash table split into lock stripes, each with its own LRU list, so that no decision
 * takes a global lock. A key's state expires once its quota is fully restored, and at
 * most `max_keys` keys in at most `max_bytes` bytes are held: past either, the least
 * recently used keys of the stripe are evicted. A key costs its algorithm's state plus 32
 * bytes, rounded up to 8 (to a power of two past 256), plus its share of a bucket array
 * (4 to 8 bytes), whatever the key's length. State is keyed by route name, limit name, algorithm
 * and rate, so that a reload that keeps those keeps the state; one that changes the rate carries it
 * over to the new rate (sl_limit.prev_rates, sl_algorithm_ops.rescale). Thread-safe. */
#ifndef SLUICE_STORE_MEMORY_H
#define SLUICE_STORE_MEMORY_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/store.h"

/* Returns a new store (free with sl_store_free) or NULL on ENOMEM. `clock_us` reads a
 * monotonic clock in microseconds; NULL means sl_clock_mono_us. `max_keys` below 1 counts
 * as 1; UINT64_MAX bytes is no byte bound. Past what the keys count, the store holds at most
 * two chunks of 2 KiB per state size for each of its up to 256 stripes. decide() always
 * calls back before returning: SL_STORE_OK, or SL_STORE_ERR_CONNECTION when the state of a
 * new key cannot be allocated or is larger than sl_store_memory_max_state allows. Free it only once
 * no thread uses it any more. */
struct sl_store *sl_store_memory_new(uint64_t max_keys, uint64_t max_bytes,
                                     uint64_t (*clock_us)(void));

/* The largest per-key state (sl_algorithm_ops.state_size) a store made with these bounds
 * always has room for: half of one stripe's share of max_bytes, less the entry's overhead. */
size_t sl_store_memory_max_state(uint64_t max_keys, uint64_t max_bytes);

/* Keys held (expired keys included until reclaimed): the sluice_memory_keys gauge. Any
 * thread, no lock taken. */
uint64_t sl_store_memory_keys(const struct sl_store *store);

/* Keys evicted to stay within max_keys or max_bytes (expired keys reclaimed do not count): the
 * sluice_memory_evictions_total counter. Any thread, no lock taken. */
uint64_t sl_store_memory_evictions(const struct sl_store *store);

#endif
