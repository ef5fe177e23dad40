/* Median nanoseconds per memory-store decision, on the real clock, for one and two
 * threads on one key or on many. Build with -DSLUICE_BENCH=ON on a Release build:
 *
 *     store_memory_bench [rounds] [decisions-per-round] [algorithm] [scenario-number]
 *
 * Each round times a run of decisions; the median over rounds (and over threads) is
 * printed, so that a round descheduled on a busy machine does not skew the figure. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sluice/store_memory.h"

#define MAX_THREADS 2
#define KEY_LEN 40

struct scenario {
    const char *name;
    int threads;
    size_t keys; /* per thread */
    bool shared; /* every thread on the same keys */
};

struct bench {
    struct sl_store *store;
    const struct sl_limit *lim;
    const struct scenario *sc;
    int rounds;
    long per_round;
    pthread_barrier_t barrier;
};

struct thread {
    pthread_t tid;
    struct bench *b;
    int id;
    char (*keys)[KEY_LEN];
    size_t *key_lens;
    double *ns; /* per round */
    unsigned long allowed;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void on_decision(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    *(unsigned long *)arg += status == SL_STORE_OK && d->allowed;
}

static void *run(void *arg)
{
    struct thread *t = arg;
    struct bench *b = t->b;
    size_t nkeys = b->sc->keys;

    /* Insert every key once before timing: the rounds measure the steady state. */
    for (size_t k = 0; k < nkeys; k++)
        sl_store_decide(b->store, b->lim, t->keys[k], t->key_lens[k], on_decision, &t->allowed);
    size_t k = 0; /* carries over between rounds, so that every key takes its turn */
    for (int r = 0; r < b->rounds; r++) {
        pthread_barrier_wait(&b->barrier);
        uint64_t start = now_ns();
        for (long i = 0; i < b->per_round; i++) {
            sl_store_decide(b->store, b->lim, t->keys[k], t->key_lens[k], on_decision, &t->allowed);
            if (++k == nkeys)
                k = 0;
        }
        t->ns[r] = (double)(now_ns() - start) / (double)b->per_round;
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int run_scenario(const struct scenario *sc, const struct sl_limit *lim, int rounds,
                        long per_round)
{
    struct bench b = {.lim = lim, .sc = sc, .rounds = rounds, .per_round = per_round};
    struct thread th[MAX_THREADS] = {0};
    double *all = calloc((size_t)(rounds * sc->threads), sizeof *all);
    int rc = -1;

    b.store = sl_store_memory_new(1000000, UINT64_MAX, NULL);
    if (!b.store || !all)
        goto done;
    pthread_barrier_init(&b.barrier, NULL, (unsigned)sc->threads);
    for (int i = 0; i < sc->threads; i++) {
        th[i].b = &b;
        th[i].id = i;
        th[i].keys = calloc(sc->keys, KEY_LEN);
        th[i].key_lens = calloc(sc->keys, sizeof *th[i].key_lens);
        th[i].ns = all + i * rounds;
        if (!th[i].keys || !th[i].key_lens)
            goto done;
        /* Keys shaped like client addresses. */
        for (size_t k = 0; k < sc->keys; k++)
            th[i].key_lens[k] = (size_t)snprintf(th[i].keys[k], KEY_LEN, "10.%d.%zu.%zu",
                                                 sc->shared ? 0 : i, k / 256, k % 256);
    }
    for (int i = 0; i < sc->threads; i++)
        pthread_create(&th[i].tid, NULL, run, &th[i]);
    for (int i = 0; i < sc->threads; i++)
        pthread_join(th[i].tid, NULL);
    pthread_barrier_destroy(&b.barrier);

    size_t n = (size_t)(rounds * sc->threads);
    qsort(all, n, sizeof *all, cmp_double);
    printf("  %-34s median %6.1f ns   min %6.1f   max %6.1f   (keys %llu)\n", sc->name, all[n / 2],
           all[0], all[n - 1], (unsigned long long)sl_store_memory_keys(b.store));
    rc = 0;
done:
    for (int i = 0; i < sc->threads; i++) {
        free(th[i].keys);
        free(th[i].key_lens);
    }
    free(all);
    sl_store_free(b.store);
    return rc;
}

int main(int argc, char **argv)
{
    /* Short rounds, many of them: on a shared machine most rounds then run without being
     * descheduled, and the median is theirs. */
    int rounds = argc > 1 ? atoi(argv[1]) : 301;
    long per_round = argc > 2 ? atol(argv[2]) : 20000;
    static const struct scenario scenarios[] = {
        {"1 thread, one key", 1, 1, false},
        {"1 thread, 100000 keys", 1, 100000, false},
        {"2 threads, one shared key", 2, 1, true},
        {"2 threads, one key each", 2, 1, false},
        {"2 threads, 100000 distinct keys each", 2, 100000, false},
    };
    static const char *const algorithms[] = {"fixed_window", "token_bucket", "sliding_window",
                                             "leaky_bucket", "sliding_window_counter"};
    struct sl_route route = {.name = "bench"};

    const char *only_alg = argc > 3 ? argv[3] : NULL;
    int only_scenario = argc > 4 ? atoi(argv[4]) : 0;
    if (rounds < 1 || per_round < 1) {
        fprintf(stderr, "usage: %s [rounds] [decisions-per-round] [algorithm] [scenario]\n",
                argv[0]);
        return 2;
    }
    printf("memory store: median ns per decision over %d rounds of %ld\n", rounds, per_round);
    for (size_t a = 0; a < sizeof algorithms / sizeof *algorithms; a++) {
        if (only_alg && strcmp(only_alg, algorithms[a]) != 0)
            continue;
        struct sl_limit lim = {
            .name = "per_client",
            .route = &route,
            .alg = sl_algorithm_find(algorithms[a]),
            .count = 100,
            .period_us = 1000000,
            .burst = 100,
            .delay = true,
        };
        printf("%s 100/s\n", algorithms[a]);
        for (size_t s = 0; s < sizeof scenarios / sizeof *scenarios; s++)
            if ((only_scenario == 0 || (size_t)only_scenario == s + 1) &&
                run_scenario(&scenarios[s], &lim, rounds, per_round) != 0) {
                fprintf(stderr, "out of memory\n");
                return 1;
            }
    }
    return 0;
}
