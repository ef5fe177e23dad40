/* Reading the heavy-hitter sketches: a consistent copy of each worker's summaries (the
 * reader side of the sequence counter in top_internal.h), then their merge.
 *
 * Merge. Summaries are merged by adding, per key, what each says (Agarwal et al.,
 * "Mergeable summaries", 2012). A summary that does not hold a key bounds its count there
 * by its least counter when it is full (a key counted more would hold a counter), and by 0
 * when it is not. So for each key: count = sum of the counts where present + sum of the
 * least counters of the full summaries where absent (an upper bound), and count - error =
 * sum of (count - err) where present (a lower bound). Each summary adds at most its N_i /
 * SL_TOP_K to the error, so the merged error is at most N / SL_TOP_K. */
#include <sched.h>
#include <stdlib.h>
#include <string.h>

#include "top_internal.h"

/* A copy that keeps losing the race against its writer is given up after this many tries
 * and the minute left out, rather than stall the admin thread. An entry changes key at
 * most once per request and a summary is emptied once a minute, so in practice the first
 * or second try succeeds. */
#define READ_TRIES 1000

struct snap_entry {
    uint64_t count, err;
    uint32_t len;
    uint64_t key[TOP_KEY_WORDS];
};

struct snap {
    uint64_t total, least;
    bool full;
    unsigned used;
    struct snap_entry e[SL_TOP_K];
};

static bool read_entry(struct top_entry *e, struct snap_entry *d)
{
    for (int tries = 0; tries < READ_TRIES; tries++) {
        /* The writer may have been preempted mid-change: let it run. */
        if (tries % 8 == 7)
            sched_yield();
        uint32_t seq = atomic_load_explicit(&e->seq, memory_order_acquire);
        if (seq & 1)
            continue;
        d->count = atomic_load_explicit(&e->count, memory_order_relaxed);
        d->err = atomic_load_explicit(&e->err, memory_order_relaxed);
        d->len = atomic_load_explicit(&e->len, memory_order_relaxed);
        if (d->len > SL_TOP_KEY_MAX)
            d->len = SL_TOP_KEY_MAX;
        for (size_t w = 0; w < (d->len + 7) / 8; w++)
            d->key[w] = atomic_load_explicit(&e->key[w], memory_order_relaxed);
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&e->seq, memory_order_relaxed) == seq)
            return true;
    }
    return false;
}

/* Copies summary `s` into `out` if it holds one of the minutes `first`..`last`. Returns
 * true when `out` holds a copy to merge. */
static bool snapshot(const struct top_summary *src, uint64_t first, uint64_t last, struct snap *out)
{
    /* C11's atomic loads take no const pointer: nothing is written through this one. */
    struct top_summary *s = (struct top_summary *)src;

    for (int tries = 0; tries < READ_TRIES; tries++) {
        if (tries % 8 == 7)
            sched_yield();
        uint32_t gen = atomic_load_explicit(&s->gen, memory_order_acquire);
        if (gen & 1)
            continue;
        uint64_t minute = atomic_load_explicit(&s->minute, memory_order_relaxed);
        if (minute == 0 || minute - 1 < first || minute - 1 > last)
            return false;
        unsigned used = atomic_load_explicit(&s->used, memory_order_acquire);
        out->total = atomic_load_explicit(&s->total, memory_order_relaxed);
        if (used > SL_TOP_K)
            used = SL_TOP_K;
        for (unsigned i = 0; i < used; i++)
            if (!read_entry(&s->e[i], &out->e[i]))
                return false;
        atomic_thread_fence(memory_order_acquire);
        if (atomic_load_explicit(&s->gen, memory_order_relaxed) != gen)
            continue;
        out->used = used;
        out->full = used == SL_TOP_K;
        out->least = used ? UINT64_MAX : 0;
        for (unsigned i = 0; i < used; i++)
            if (out->e[i].count < out->least)
                out->least = out->e[i].count;
        return true;
    }
    return false;
}

struct merged {
    const struct snap_entry *key; /* the first copy of the key met */
    uint64_t sum, lower, least_present;
};

static uint32_t hash_key(const struct snap_entry *e)
{
    uint32_t h = 2166136261u;
    const unsigned char *p = (const unsigned char *)e->key;
    for (uint32_t i = 0; i < e->len; i++)
        h = (h ^ p[i]) * 16777619u;
    return h;
}

static bool key_equal(const struct snap_entry *a, const struct snap_entry *b)
{
    return a->len == b->len && memcmp(a->key, b->key, a->len) == 0;
}

static int by_count(const void *pa, const void *pb)
{
    const struct sl_top_item *a = pa, *b = pb;
    if (a->count != b->count)
        return a->count > b->count ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = memcmp(a->key, b->key, n);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

/* Merges `nsnaps` summaries into the `n` keys counted most. */
static int merge(const struct snap *snaps, size_t nsnaps, size_t n, struct sl_top_list *out)
{
    size_t cap = 16, nkeys = 0;
    uint64_t least_full = 0;
    int rc = -1;

    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < nsnaps; i++) {
        cap += snaps[i].used;
        out->total += snaps[i].total;
        if (snaps[i].full)
            least_full += snaps[i].least;
    }
    size_t tsize = 1;
    while (tsize < 2 * cap)
        tsize <<= 1;
    struct merged *keys = calloc(cap, sizeof *keys);
    uint32_t *table = calloc(tsize, sizeof *table);
    struct sl_top_item *items = NULL;
    if (!keys || !table)
        goto out;
    for (size_t i = 0; i < nsnaps; i++) {
        for (unsigned j = 0; j < snaps[i].used; j++) {
            const struct snap_entry *e = &snaps[i].e[j];
            size_t t = hash_key(e) & (tsize - 1);
            while (table[t] && !key_equal(keys[table[t] - 1].key, e))
                t = (t + 1) & (tsize - 1);
            if (!table[t]) {
                keys[nkeys].key = e;
                table[t] = (uint32_t)++nkeys;
            }
            struct merged *m = &keys[table[t] - 1];
            m->sum += e->count;
            m->lower += e->count - e->err;
            if (snaps[i].full)
                m->least_present += snaps[i].least;
        }
    }
    items = calloc(nkeys ? nkeys : 1, sizeof *items);
    if (!items)
        goto out;
    for (size_t i = 0; i < nkeys; i++) {
        struct sl_top_item *it = &items[i];
        it->len = keys[i].key->len;
        memcpy(it->key, keys[i].key->key, it->len);
        it->key[it->len] = '\0';
        it->count = keys[i].sum + least_full - keys[i].least_present;
        it->error = it->count - keys[i].lower;
    }
    qsort(items, nkeys, sizeof *items, by_count);
    out->error_bound = least_full;
    for (size_t i = 0; i < nkeys; i++)
        if (items[i].error > out->error_bound)
            out->error_bound = items[i].error;
    out->n = nkeys < n ? nkeys : n;
    out->items = items;
    items = NULL;
    rc = 0;
out:
    free(items);
    free(keys);
    free(table);
    return rc;
}

/* The oldest minute merged at `now_us`: the window's SL_TOP_WINDOWS minutes end with the
 * current one. */
static uint64_t first_minute(uint64_t now_us)
{
    uint64_t last = now_us / SL_TOP_WINDOW_US;
    return last >= SL_TOP_WINDOWS - 1 ? last - (SL_TOP_WINDOWS - 1) : 0;
}

/* The minutes are counted on the monotonic clock, from the machine's boot: a process younger
 * than the window, or started soon after boot, has recorded only since its start. */
uint64_t sl_top_window_us(const struct sl_top *top, uint64_t now_us)
{
    uint64_t from = first_minute(now_us) * SL_TOP_WINDOW_US;

    if (top->born_us > from)
        from = top->born_us;
    return now_us > from ? now_us - from : 0;
}

int sl_top_read(struct sl_top *top, const struct sl_limit *lim, uint64_t now_us, size_t n,
                struct sl_top_report *out)
{
    uint64_t last = now_us / SL_TOP_WINDOW_US;
    uint64_t first = first_minute(now_us);
    size_t max = (size_t)top->nslots * SL_TOP_WINDOWS;
    struct snap *snaps[TOP_STREAMS] = {NULL, NULL};
    size_t nsnaps[TOP_STREAMS] = {0, 0};
    int rc = -1;

    memset(out, 0, sizeof *out);
    for (int st = 0; st < TOP_STREAMS; st++)
        if (!(snaps[st] = malloc((max ? max : 1) * sizeof *snaps[st])))
            goto out;
    for (unsigned w = 0; lim->metrics_id < SL_METRICS_MAX_LIMITS && w < top->nslots; w++) {
        struct sl_top_slot *slot = top->slots[w];
        struct top_chunk *chunk =
            atomic_load_explicit(&slot->chunks[lim->metrics_id / TOP_CHUNK], memory_order_acquire);
        struct top_sketch *sk =
            chunk ? atomic_load_explicit(&chunk->sketch[lim->metrics_id % TOP_CHUNK],
                                         memory_order_acquire)
                  : NULL;
        /* A worker that has not recorded the limit since its key sources changed still
         * holds the old keys: they are not this limit's. */
        if (!sk || atomic_load_explicit(&sk->tag, memory_order_acquire) != lim->top_tag)
            continue;
        for (int st = 0; st < TOP_STREAMS; st++)
            for (int i = 0; i < SL_TOP_WINDOWS; i++)
                if (snapshot(&sk->ring[st][i], first, last, &snaps[st][nsnaps[st]]))
                    nsnaps[st]++;
    }
    if (merge(snaps[TOP_SEEN], nsnaps[TOP_SEEN], n, &out->seen) < 0 ||
        merge(snaps[TOP_DENIED], nsnaps[TOP_DENIED], n, &out->denied) < 0)
        goto out;
    rc = 0;
out:
    for (int st = 0; st < TOP_STREAMS; st++)
        free(snaps[st]);
    if (rc < 0)
        sl_top_report_deinit(out);
    return rc;
}

void sl_top_report_deinit(struct sl_top_report *report)
{
    free(report->seen.items);
    free(report->denied.items);
    memset(report, 0, sizeof *report);
}
