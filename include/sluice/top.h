/* Heavy hitters: per limit, the keys seen most and the keys denied most over the last few
 * minutes (SPEC.md section 8, GET /top), in memory that does not grow with the number of
 * keys.
 *
 * Each worker holds, per limit it has recorded, two rings of SL_TOP_WINDOWS Space-Saving
 * summaries of SL_TOP_K counters, one summary per minute: one ring counts every decided
 * request, the other only denials. The worker writes its own sketches without a lock; the
 * admin thread reads them through sequence counters (per counter and per summary, see
 * src/admin/top_internal.h) and merges the workers' summaries of the last SL_TOP_WINDOWS
 * minutes when /top is asked.
 *
 * Accuracy. Over a window holding N requests (or N denials) of a limit, every reported
 * `count` is an upper bound of the key's true count and `count - error` a lower bound, with
 * error <= N / SL_TOP_K; every key whose true count exceeds N / SL_TOP_K is reported (when
 * the answer's `n` has room for it).
 *
 * Memory. Per limit and worker, at most SL_TOP_SKETCH_BYTES, allocated by the worker the
 * first time it records that limit, whatever the number of keys; plus, per worker, a table
 * of 256 pointers (2 KiB) and one block of 64 pointers (512 bytes) per 64 limit ids used. */
#ifndef SLUICE_TOP_H
#define SLUICE_TOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"

struct evbuffer;
struct sl_top;
struct sl_top_slot;

#define SL_TOP_K 64                  /* counters per summary */
#define SL_TOP_WINDOWS 5             /* one-minute summaries merged: the last 4 to 5 minutes */
#define SL_TOP_WINDOW_US 60000000ull /* one summary's span */
#define SL_TOP_KEY_MAX                                                                             \
    200                             /* longer keys are held as their SHA-256 in hex, as the        \
                                     * Redis store holds them */
#define SL_TOP_SKETCH_BYTES 153600u /* 150 KiB: the bound per limit per worker */
#define SL_TOP_DEFAULT_N 20

/* A registry for `nslots` workers, holding no sketch yet, created at `now_us`
 * (sl_clock_mono_us): nothing is recorded before it, so /top's window never reaches further
 * back. NULL on ENOMEM. */
struct sl_top *sl_top_new(unsigned nslots, uint64_t now_us);
/* Frees the registry and every sketch. Accepts NULL. Call after the workers stopped. */
void sl_top_free(struct sl_top *top);

/* Slot `i` (0 <= i < nslots), for worker i only; NULL past the end or for a NULL `top`. */
struct sl_top_slot *sl_top_slot(struct sl_top *top, unsigned i);

/* Fingerprints each limit's key sources (sl_limit.top_tag). Call on every snapshot before
 * publishing it, after sl_metrics_bind() (sketches are found by metrics id). A limit that
 * keeps its route name, limit name and key sources across a reload keeps its sketches;
 * one whose key sources changed starts empty, since its old keys mean something else. */
void sl_top_bind(struct sl_config *cfg);

/* Hot path: counts one decided request of `lim` for `key` (`len` bytes, the value the
 * store was asked about) at `now_us` (sl_clock_mono_us), and one denial when `denied`.
 * Called only by the slot's worker; no lock; allocates only the first time the worker
 * records `lim`. A NULL `slot`, or a limit without a metrics id, records nothing. */
void sl_top_record(struct sl_top_slot *slot, const struct sl_limit *lim, const char *key,
                   size_t len, bool denied, uint64_t now_us);

/* One key of a merged answer. The true count lies in [count - error, count]. */
struct sl_top_item {
    char key[SL_TOP_KEY_MAX + 1]; /* NUL-terminated; `len` bytes of any value */
    size_t len;
    uint64_t count;
    uint64_t error;
};

struct sl_top_list {
    uint64_t total;            /* requests (or denials) recorded in the window */
    uint64_t error_bound;      /* no item's error exceeds it; <= total / SL_TOP_K */
    struct sl_top_item *items; /* most first, at most the `n` asked; owned */
    size_t n;
};

struct sl_top_report {
    struct sl_top_list seen;
    struct sl_top_list denied;
};

/* Merges every worker's summaries of `lim` whose minute is among the SL_TOP_WINDOWS ending
 * at `now_us`, keeping the `n` keys counted most of each list (ties by key). Thread-safe
 * against the recording workers; `lim` must belong to a bound snapshot. Returns 0, or -1 on
 * ENOMEM; release `out` with sl_top_report_deinit(). */
int sl_top_read(struct sl_top *top, const struct sl_limit *lim, uint64_t now_us, size_t n,
                struct sl_top_report *out);
void sl_top_report_deinit(struct sl_top_report *report);

/* The microseconds an answer at `now_us` covers: from the start of the oldest minute merged
 * (4 to 5 minutes back), or from the registry's creation when that is later. Thread-safe. */
uint64_t sl_top_window_us(const struct sl_top *top, uint64_t now_us);

/* GET /top: appends to `out` the JSON answer for the URI query `query` (NULL: none) under
 * `cfg`: `limit=ROUTE/LIMIT` picks one limit (default: every limit of `cfg`, in file order)
 * and `n` (1..SL_TOP_K, default SL_TOP_DEFAULT_N) the keys listed per list. Returns the
 * HTTP status: 200, 400 (bad query) or 404 (unknown limit), each with a JSON body; or -1
 * on ENOMEM. Thread-safe; `cfg` must have been bound (sl_top_bind). */
int sl_top_render(struct sl_top *top, const struct sl_config *cfg, const char *query,
                  uint64_t now_us, struct evbuffer *out);

/* Bytes held by every sketch of every worker. Thread-safe. */
size_t sl_top_memory(const struct sl_top *top);

#endif
