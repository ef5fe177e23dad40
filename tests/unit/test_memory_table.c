/* The memory store's packed table: entries of several sizes inserted, found, touched and
 * removed at random against a plain model, with every link, the LRU order and the byte count
 * checked after each step. */
#include <check.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/store/memory_table.h"
#include "support/run_suite.h"

START_TEST(test_entry_sizes)
{
    ck_assert_uint_eq(sl_mtable_entry_size(0), 32);
    ck_assert_uint_eq(sl_mtable_entry_size(16), 48); /* token_bucket, fixed_window */
    ck_assert_uint_eq(sl_mtable_entry_size(17), 56);
    ck_assert_uint_eq(sl_mtable_entry_size(24), 56); /* sliding_window_counter */
    ck_assert_uint_eq(sl_mtable_entry_size(224), 256);
    ck_assert_uint_eq(sl_mtable_entry_size(225), 320); /* quarters of 256 */
    ck_assert_uint_eq(sl_mtable_entry_size(16 + 8 * 100), 896);
    ck_assert_uint_eq(sl_mtable_entry_size(16 + 8 * 1000), 8192);
    ck_assert_uint_eq(sl_mtable_entry_size(16 + 8 * 1100), 10240);
    ck_assert_uint_eq(sl_mtable_entry_size(SIZE_MAX), 0);
    /* 32 entries of 48 bytes to a chunk: one byte each of the chunk's 32 of overhead. */
    ck_assert_uint_eq(sl_mtable_entry_cost(16), 49);
    ck_assert_uint_eq(sl_mtable_entry_cost(16 + 8 * 1000), 8192 + 32);
    ck_assert_uint_eq(sl_mtable_entry_cost(SIZE_MAX), 0);
}
END_TEST

enum { KEYS = 600, STEPS = 20000 };

/* The model: which keys are in, and the LRU order as a list of keys, newest first. */
struct model {
    bool in[KEYS];
    size_t state_size[KEYS];
    int order[KEYS];
    int n;
};

static void digest_of(int key, uint64_t d[2])
{
    /* Low words collide on purpose, so that chains are long and the buckets few. */
    d[0] = (uint64_t)(key % 37);
    d[1] = (uint64_t)key * 0x9e3779b97f4a7c15ull + 1;
}

static void order_remove(struct model *m, int key)
{
    for (int i = 0; i < m->n; i++)
        if (m->order[i] == key) {
            memmove(&m->order[i], &m->order[i + 1], (size_t)(m->n - i - 1) * sizeof(int));
            m->n--;
            return;
        }
    ck_abort_msg("key %d not in the order", key);
}

static void order_push(struct model *m, int key)
{
    memmove(&m->order[1], &m->order[0], (size_t)m->n * sizeof(int));
    m->order[0] = key;
    m->n++;
}

/* Each state holds its key's number in every word, so a moved entry is checked whole. */
static void fill(void *state, size_t size, int key)
{
    uint64_t *w = state;
    for (size_t i = 0; i < size / 8; i++)
        w[i] = (uint64_t)key;
}

/* Check's assertions record a mark per call; the model's checks count faults instead and
 * assert once, so that a run of thousands of steps stays fast. */
static int table_faults(const struct sl_mtable *t, const struct model *m)
{
    int faults = 0;
    size_t bytes = ((size_t)t->mask + 1) * sizeof(uint32_t);
    faults += t->count != (uint32_t)m->n;
    for (int key = 0; key < KEYS; key++) {
        uint64_t d[2];
        digest_of(key, d);
        uint32_t h = sl_mtable_find(t, d);
        if (!m->in[key]) {
            faults += h != SL_MT_NONE;
            continue;
        }
        if (h == SL_MT_NONE) {
            faults++;
            continue;
        }
        bytes += sl_mtable_entry_cost(m->state_size[key]);
        faults += sl_mtable_state_size(t, h) < m->state_size[key];
        const uint64_t *w = sl_mtable_state(t, h);
        for (size_t i = 0; i < m->state_size[key] / 8; i++)
            faults += w[i] != (uint64_t)key;
    }
    faults += t->bytes != bytes;
    /* The LRU list, both ways. */
    uint32_t h = t->newest, prev = SL_MT_NONE;
    for (int i = 0; i < m->n && h != SL_MT_NONE; i++) {
        const struct sl_mt_trailer *tr = sl_mtable_trailer(t, h);
        uint64_t d[2];
        digest_of(m->order[i], d);
        faults += tr->digest[0] != d[0] || tr->digest[1] != d[1] || tr->newer != prev;
        prev = h;
        h = tr->older;
    }
    faults += h != SL_MT_NONE || t->oldest != prev;
    return faults;
}

START_TEST(test_random_operations_match_a_model)
{
    static const size_t sizes[] = {16, 24, 8, 400};
    struct sl_mtable t;
    ck_assert_int_eq(sl_mtable_init(&t), 0);
    static struct model m;
    memset(&m, 0, sizeof m);
    srand(7);
    for (int step = 0; step < STEPS; step++) {
        int key = rand() % KEYS;
        uint64_t d[2];
        digest_of(key, d);
        int op = rand() % 4;
        if (!m.in[key]) {
            size_t size = sizes[key % 4];
            uint32_t h = sl_mtable_insert(&t, d, size);
            ck_assert_uint_ne(h, SL_MT_NONE);
            const uint64_t *w = sl_mtable_state(&t, h);
            int dirty = 0;
            for (size_t i = 0; i < size / 8; i++)
                dirty += w[i] != 0;
            ck_assert_int_eq(dirty, 0); /* zeroed, even where a removed entry was */
            fill(sl_mtable_state(&t, h), size, key);
            m.in[key] = true;
            m.state_size[key] = size;
            order_push(&m, key);
            if (step % 3 == 0)
                sl_mtable_maybe_grow(&t, SIZE_MAX);
        } else if (op == 0 && m.n > 0) {
            /* Evict the oldest, as the store does. */
            uint32_t h = t.oldest;
            int victim = m.order[m.n - 1];
            sl_mtable_remove(&t, h);
            m.in[victim] = false;
            order_remove(&m, victim);
        } else if (op == 1) {
            sl_mtable_remove(&t, sl_mtable_find(&t, d));
            m.in[key] = false;
            order_remove(&m, key);
        } else {
            sl_mtable_touch(&t, sl_mtable_find(&t, d));
            order_remove(&m, key);
            order_push(&m, key);
        }
        if (step % 97 == 0 || step > STEPS - 50)
            ck_assert_int_eq(table_faults(&t, &m), 0);
    }
    /* Empty it: the classes shrink back to at most one spare chunk each. */
    while (t.oldest != SL_MT_NONE)
        sl_mtable_remove(&t, t.oldest);
    for (uint32_t i = 0; i < t.nclasses; i++)
        ck_assert_uint_le(t.classes[i].nchunks, 1);
    ck_assert_uint_eq(t.bytes, ((size_t)t.mask + 1) * sizeof(uint32_t));
    sl_mtable_free(&t);
}
END_TEST

START_TEST(test_classes_run_out_and_are_reused)
{
    struct sl_mtable t;
    ck_assert_int_eq(sl_mtable_init(&t), 0);
    /* 63 sizes, one entry each. */
    size_t state = 0;
    for (int i = 0; i < 63; i++) {
        uint64_t d[2] = {(uint64_t)i, 1};
        ck_assert_uint_ne(sl_mtable_insert(&t, d, state), SL_MT_NONE);
        size_t size = sl_mtable_entry_size(state);
        while (sl_mtable_entry_size(state) == size)
            state += 8;
    }
    ck_assert_uint_eq(t.nclasses, 63);
    uint64_t extra[2] = {100, 1};
    ck_assert_uint_eq(sl_mtable_insert(&t, extra, state), SL_MT_NONE);
    /* Once one size has no entry left, its class takes the new size. */
    uint64_t d5[2] = {5, 1};
    sl_mtable_remove(&t, sl_mtable_find(&t, d5));
    uint32_t h = sl_mtable_insert(&t, extra, state);
    ck_assert_uint_ne(h, SL_MT_NONE);
    ck_assert_uint_ge(sl_mtable_state_size(&t, h), state);
    ck_assert_uint_eq(sl_mtable_find(&t, extra), h);
    ck_assert_uint_eq(t.count, 63);
    sl_mtable_free(&t);
}
END_TEST

START_TEST(test_buckets_grow_within_the_bound)
{
    struct sl_mtable t;
    ck_assert_int_eq(sl_mtable_init(&t), 0);
    for (int key = 0; key < 100; key++) {
        uint64_t d[2] = {(uint64_t)key * 0x9e3779b97f4a7c15ull, (uint64_t)key};
        ck_assert_uint_ne(sl_mtable_insert(&t, d, 16), SL_MT_NONE);
        sl_mtable_maybe_grow(&t, 3600);
    }
    /* At 65 entries of 49 bytes, 128 buckets would take the table past 3600 bytes: the chains
     * grow longer instead. */
    ck_assert_uint_eq(t.mask + 1, 64);
    ck_assert_uint_eq(t.bytes, 100 * 49 + 64 * 4);
    for (int key = 0; key < 100; key++) {
        uint64_t d[2] = {(uint64_t)key * 0x9e3779b97f4a7c15ull, (uint64_t)key};
        ck_assert_uint_ne(sl_mtable_find(&t, d), SL_MT_NONE);
    }
    sl_mtable_free(&t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("memory_table");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_entry_sizes);
    tcase_add_test(tc, test_random_operations_match_a_model);
    tcase_add_test(tc, test_classes_run_out_and_are_reused);
    tcase_add_test(tc, test_buckets_grow_within_the_bound);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
