/* The Redis store's own cost per decision, for instruction counts under callgrind (wall
 * time on a shared machine says little). Connects one store to a redis-server on
 * 127.0.0.1:PORT and makes DECISIONS decisions, BATCH in flight at a time, then prints how
 * many were allowed. The limit is a token_bucket at a rate nothing reaches (`allow`, the
 * default), or with `deny` one a minute, so that all but the first are denied; DENY_CACHE
 * entries (0: off) hold those denials in the store. The decisions are on one key, or with
 * KEYS > 1 on KEYS keys visited in a scattered order, so that no two decisions in flight
 * share one, as under many clients (those asked in one loop turn still share a call):
 *
 *     store_redis_bench PORT DECISIONS [BATCH [allow|deny [DENY_CACHE [KEYS]]]]
 *
 * Instructions per decision are the difference between two runs over their difference in
 * DECISIONS, which cancels start-up and connection set-up:
 *
 *     valgrind --tool=callgrind --callgrind-out-file=a.out store_redis_bench 6379 20000
 *     valgrind --tool=callgrind --callgrind-out-file=b.out store_redis_bench 6379 10000
 *     (Ir(a) - Ir(b)) / 10000 */
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/limit.h"
#include "sluice/store_redis.h"

struct run {
    long asked, answered, allowed, failed, total, batch, keys;
    struct sl_store *store;
    const struct sl_limit *lim;
    struct event_base *base;
};

static void ask_more(struct run *r);

static void on_decision(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    struct run *r = arg;
    r->answered++;
    if (status != SL_STORE_OK)
        r->failed++;
    else if (d->allowed)
        r->allowed++;
    if (r->answered == r->total)
        event_base_loopbreak(r->base);
    else if (r->answered % r->batch == 0)
        ask_more(r);
}

static void ask_more(struct run *r)
{
    static const char one[] = "10.1.2.3";
    char key[24];
    for (long i = 0; i < r->batch && r->asked < r->total; i++) {
        /* 7919 is prime, so with KEYS not its multiple the walk visits every key in turn. */
        int len = r->keys > 1 ? snprintf(key, sizeof key, "%ld", r->asked * 7919 % r->keys + 1)
                              : (int)sizeof one - 1;
        r->asked++;
        sl_store_decide(r->store, r->lim, r->keys > 1 ? key : one, (size_t)len, on_decision, r);
    }
}

static void on_start(evutil_socket_t fd, short what, void *arg)
{
    struct run *r = arg;
    if (!sl_store_redis_connected(r->store)) {
        struct timeval tv = {0, 10000};
        event_base_once(r->base, -1, EV_TIMEOUT, on_start, r, &tv);
        return;
    }
    ask_more(r);
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(
            stderr,
            "usage: store_redis_bench PORT DECISIONS [BATCH [allow|deny [DENY_CACHE [KEYS]]]]\n");
        return 2;
    }
    struct sl_route route = {.name = (char *)"bench"};
    struct sl_limit lim = {.name = (char *)"per_ip",
                           .route = &route,
                           .alg = sl_algorithm_find("token_bucket"),
                           .count = 1000000000,
                           .period_us = 1000000,
                           .burst = 1000000000,
                           .store = SL_STORE_REDIS};
    struct sl_redis_config cfg = {.enabled = true,
                                  .host = (char *)"127.0.0.1",
                                  .port = atoi(argv[1]),
                                  .timeout_ms = 5000,
                                  .key_prefix = (char *)"bench:"};
    if (argc > 4 && strcmp(argv[4], "deny") == 0) {
        lim.count = lim.burst = 1;
        lim.period_us = 60000000;
    }
    cfg.deny_cache = argc > 5 ? strtoull(argv[5], NULL, 10) : 0;
    struct run r = {.total = atol(argv[2]),
                    .batch = argc > 3 ? atol(argv[3]) : 64,
                    .keys = argc > 6 ? atol(argv[6]) : 1,
                    .lim = &lim};
    r.base = event_base_new();
    r.store = r.base ? sl_store_redis_new(r.base, &cfg, 0, NULL) : NULL;
    if (!r.store || r.total <= 0 || r.batch <= 0) {
        fprintf(stderr, "store_redis_bench: cannot start\n");
        return 1;
    }
    struct timeval now = {0, 0};
    event_base_once(r.base, -1, EV_TIMEOUT, on_start, &r, &now);
    event_base_dispatch(r.base);
    printf("%ld decisions, %ld allowed, %ld failed\n", r.answered, r.allowed, r.failed);
    sl_store_free(r.store);
    event_base_free(r.base);
    return r.failed ? 1 : 0;
}
