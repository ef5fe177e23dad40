/* What a key costs the memory store, as the process's resident memory sees it. Build with
 * -DSLUICE_BENCH=ON on a Release build:
 *
 *     store_memory_footprint [keys] [key-length]      (defaults 1000000 and 32)
 *
 * For each algorithm, in a fresh child process: resident memory (/proc/self/statm) before the
 * store is made and after `keys` distinct keys of `key-length` bytes were decided on with no
 * bound in the way, divided by the keys; then, for max_bytes of 16, 64 and 256 MiB, the keys a
 * flood of four times as many distinct keys as fit leaves held, and how far resident memory
 * grew past the bound (negative: it stayed below). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sluice/limit.h"
#include "sluice/store_memory.h"

static long rss_bytes(void)
{
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f)
        return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2)
        resident = -1;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

static void on_decision(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    (void)d;
    *(int *)arg += status != SL_STORE_OK;
}

/* Decides once on each of `n` distinct keys of `len` bytes; returns the failed decisions. */
static int flood(struct sl_store *store, const struct sl_limit *lim, long n, int len)
{
    char key[256];
    int failed = 0;
    for (long i = 0; i < n; i++) {
        snprintf(key, sizeof key, "%0*ld", len, i);
        sl_store_decide(store, lim, key, (size_t)len, on_decision, &failed);
    }
    return failed;
}

static struct sl_route route = {.name = "api"};

static struct sl_limit limit_of(const char *alg, uint64_t count)
{
    return (struct sl_limit){
        .name = "per_key",
        .route = &route,
        .alg = sl_algorithm_find(alg),
        .count = count,
        .period_us = 3600000000u,
        .burst = count,
    };
}

/* Resident growth per key with no bound in the way. */
static void per_key(const struct sl_limit *lim, long keys, int len)
{
    long before = rss_bytes();
    struct sl_store *store = sl_store_memory_new((uint64_t)keys * 2, UINT64_MAX, NULL);
    int failed = flood(store, lim, keys, len);
    long after = rss_bytes();
    printf("%-24s N=%-5llu %7.1f bytes/key at %ld keys%s\n", lim->alg->name,
           (unsigned long long)lim->count, (double)(after - before) / (double)keys, keys,
           failed ? " (decisions failed)" : "");
}

/* Keys held and resident growth under max_bytes `mib` MiB, after four times as many keys. */
static void bounded(const struct sl_limit *lim, long mib, int len)
{
    uint64_t bound = (uint64_t)mib << 20;
    long before = rss_bytes();
    struct sl_store *store = sl_store_memory_new(UINT64_MAX, bound, NULL);
    struct sl_quota q = sl_limit_quota(lim);
    long n = (long)(4 * bound / (lim->alg->state_size(&q) + 32));
    int failed = flood(store, lim, n, len);
    long after = rss_bytes();
    printf("    max_bytes %4ldm: %9llu keys held after %ld, resident growth %.2f MiB "
           "(%+.2f past the bound)%s\n",
           mib, (unsigned long long)sl_store_memory_keys(store), n,
           (double)(after - before) / 1048576.0, (double)(after - before - (long)bound) / 1048576.0,
           failed ? " (failed)" : "");
}

/* Runs one measurement in a fresh child, so that each starts from the same resident set. */
static int in_child(const struct sl_limit *lim, long mib, long keys, int len)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        if (mib == 0)
            per_key(lim, keys, len);
        else
            bounded(lim, mib, len);
        fflush(stdout);
        _exit(0);
    }
    int status;
    return pid > 0 && waitpid(pid, &status, 0) == pid && WIFEXITED(status) &&
                   WEXITSTATUS(status) == 0
               ? 0
               : -1;
}

int main(int argc, char **argv)
{
    long keys = argc > 1 ? atol(argv[1]) : 1000000;
    int len = argc > 2 ? atoi(argv[2]) : 32;
    if (keys < 1 || len < 1 || len > 200) {
        fprintf(stderr, "usage: store_memory_footprint [keys] [key-length <= 200]\n");
        return 2;
    }
    static const struct {
        const char *alg;
        uint64_t count;
    } runs[] = {
        {"token_bucket", 100},           {"leaky_bucket", 100},  {"fixed_window", 100},
        {"sliding_window_counter", 100}, {"sliding_window", 10}, {"sliding_window", 100},
    };
    static const long mib[] = {0, 16, 64, 256};
    for (size_t i = 0; i < sizeof runs / sizeof *runs; i++) {
        struct sl_limit lim = limit_of(runs[i].alg, runs[i].count);
        for (size_t m = 0; m < sizeof mib / sizeof *mib; m++)
            if (in_child(&lim, mib[m], keys, len) != 0)
                return 1;
    }
    return 0;
}
