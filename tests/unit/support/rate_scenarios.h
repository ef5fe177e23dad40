/* The changes of rate both stores must carry out alike (test_rate_change on the memory
 * store, test_store_redis_rates on Redis and against the memory store). */
#ifndef SLUICE_TEST_RATE_SCENARIOS_H
#define SLUICE_TEST_RATE_SCENARIOS_H

#include <stdint.h>

#ifndef S
#define S 1000000ull
#endif
#define MIN (60 * S)
#ifndef HOUR
#define HOUR (3600 * S)
#endif

struct scenario {
    const char *alg;
    uint64_t n, p, burst;    /* before */
    unsigned before;         /* admitted before the change */
    uint64_t n2, p2, burst2; /* after */
    unsigned after;          /* admitted of 10 right after the change */
};

/* Before: 4/1h (leaky_bucket: 2 waiting places). At 1000 h + 10 min, so that the hour's
 * window began inside the current 30-minute window. What a restart would give instead is
 * in brackets. */
static const struct scenario scenarios[] = {
    /* fixed_window: the count of 3 carries over. */
    {"fixed_window", 4, HOUR, 0, 3, 6, HOUR, 0, 3},     /* N up [6] */
    {"fixed_window", 4, HOUR, 0, 3, 2, HOUR, 0, 0},     /* N down [2] */
    {"fixed_window", 4, HOUR, 0, 3, 4, 2 * HOUR, 0, 1}, /* P up [4] */
    {"fixed_window", 4, HOUR, 0, 3, 4, 30 * MIN, 0, 1}, /* P down [4] */
    {"sliding_window_counter", 4, HOUR, 0, 3, 6, HOUR, 0, 3},
    {"sliding_window_counter", 4, HOUR, 0, 3, 2, HOUR, 0, 0},
    {"sliding_window_counter", 4, HOUR, 0, 3, 4, 2 * HOUR, 0, 1},
    {"sliding_window_counter", 4, HOUR, 0, 3, 4, 30 * MIN, 0, 1},
    /* sliding_window: the log of 3 carries over. */
    {"sliding_window", 4, HOUR, 0, 3, 6, HOUR, 0, 3},
    {"sliding_window", 4, HOUR, 0, 3, 2, HOUR, 0, 0},
    {"sliding_window", 4, HOUR, 0, 3, 4, 2 * HOUR, 0, 1},
    {"sliding_window", 4, HOUR, 0, 3, 4, 30 * MIN, 0, 1},
    /* token_bucket: 3 tokens taken, the bucket lacks 45 min of refill, the same instant
     * under any rate. 8/1h burst 8: a token is 7.5 min, the capacity 60 min: 2 [8]. 2/1h
     * burst 2: 30 min a token, capacity 60 min: 0 [2]. 4/2h: 30 min, capacity 120 min: 2
     * [4]. 4/30m: lacks more than the new capacity of 30 min: 0 [4]. */
    {"token_bucket", 4, HOUR, 4, 3, 8, HOUR, 8, 2},
    {"token_bucket", 4, HOUR, 4, 3, 2, HOUR, 2, 0},
    {"token_bucket", 4, HOUR, 4, 3, 4, 2 * HOUR, 4, 2},
    {"token_bucket", 4, HOUR, 4, 3, 4, 30 * MIN, 4, 0},
    /* leaky_bucket: 2 admitted, the next departure 30 min away. 8/1h burst 2: a queue of
     * 15 min: 0 [3]. 2/1h: 60 min: 2 [3]. 4/2h: 60 min: 2 [3]. 4/30m: 15 min: 0 [3]. */
    {"leaky_bucket", 4, HOUR, 2, 2, 8, HOUR, 2, 0},
    {"leaky_bucket", 4, HOUR, 2, 2, 2, HOUR, 2, 2},
    {"leaky_bucket", 4, HOUR, 2, 2, 4, 2 * HOUR, 2, 2},
    {"leaky_bucket", 4, HOUR, 2, 2, 4, 30 * MIN, 2, 0},
};

#endif
