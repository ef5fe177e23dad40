/* The dashboard's charts: per route, the requests allowed and limited in each of the last
 * SL_HISTORY_SAMPLES intervals, kept by the admin thread from the cumulative counters the
 * metrics registry already holds. Nothing on the request path writes here.
 *
 * One sample is taken for every route at once; the history keeps the sampling times, and
 * each route a ring of what its counters grew by since the sample before. Routes are found
 * by name, so a reload that keeps a route keeps its ring; a route left out of a sample
 * (gone from the configuration) loses its ring.
 *
 * Memory: SL_HISTORY_ROUTE_BYTES (2,440) per route sampled, 2,400 of them the samples
 * (SL_HISTORY_SAMPLES x 2 counters x 8 bytes), plus its name and at most four table
 * pointers; and 0.6 KiB for the sampling times. Not thread-safe: one thread samples and
 * reads. */
#ifndef SLUICE_ADMIN_HISTORY_H
#define SLUICE_ADMIN_HISTORY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SL_HISTORY_INTERVAL_MS 2000 /* the page refreshes every 2 s: one new point each time */
#define SL_HISTORY_SAMPLES 150      /* 5 minutes of 2 s */
#define SL_HISTORY_ROUTE_BYTES 2440 /* sizeof of one route's ring, name not counted */

struct sl_history;

/* A history with no sample yet, counting from `now_ms` (a monotonic clock): the first
 * interval runs from here to the first sample. NULL on ENOMEM. */
struct sl_history *sl_history_new(uint64_t now_ms);
void sl_history_free(struct sl_history *h);

/* One route's cumulative counters at a sample. `fresh`: its counters were all zero at the
 * sample before (first used since), so a new ring counts everything from zero; otherwise a
 * new ring takes these values as its starting point and the next sample shows growth. */
struct sl_history_point {
    const char *route; /* borrowed; copied when the ring is made */
    uint64_t allowed;
    uint64_t limited;
    bool fresh;
};

/* Takes one sample at `now_ms` (monotonic, not before the last): each point's ring records
 * what its counters grew by since the last sample; routes not among `points` lose their
 * rings. A name given twice counts once. Returns 0, or -1 on ENOMEM (the routes whose ring
 * could not be made are left out; with no memory for the table, nothing is recorded). */
int sl_history_sample(struct sl_history *h, const struct sl_history_point *points, size_t n,
                      uint64_t now_ms);

/* Samples taken, capped at SL_HISTORY_SAMPLES. */
size_t sl_history_len(const struct sl_history *h);

/* Copies the lengths of the last sl_history_len() intervals in ms, oldest first, to
 * `ms` (room for SL_HISTORY_SAMPLES); returns how many. */
size_t sl_history_intervals(const struct sl_history *h, uint32_t *ms);

/* Copies `route`'s growth in the intervals it was sampled in, oldest first, to `allowed`
 * and `limited` (room for SL_HISTORY_SAMPLES each); they are the newest of those
 * sl_history_intervals() gives. Returns how many; 0 for a route without a ring. */
size_t sl_history_read(const struct sl_history *h, const char *route, uint64_t *allowed,
                       uint64_t *limited);

/* Routes with a ring, and the bytes the history holds (rings, names, table, times). */
size_t sl_history_routes(const struct sl_history *h);
size_t sl_history_bytes(const struct sl_history *h);

#endif
