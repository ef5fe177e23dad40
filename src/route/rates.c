/* A limit's `rates:` table (include/sluice/rates.h): linear probing over a power-of-two slot
 * array kept at most half full, so that a value that is not listed, the common case for a
 * plan header's unlisted values and for keys without a rate of their own, ends after two
 * probes on average. Slots hold entry indexes rather than entries, so that the table's
 * empty half costs 4 bytes a slot. */
#include "sluice/rates.h"

#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "sluice/clock.h"
#include "sluice/sha256.h"
#include "sluice/siphash.h"

#define INITIAL_SLOTS 16
/* Entries and values are addressed by 32-bit offsets. */
#define MAX_ENTRIES (UINT32_C(1) << 31)
#define MAX_ARENA UINT32_MAX

struct sl_rates *sl_rates_new(void)
{
    struct sl_rates *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->slots = calloc(INITIAL_SLOTS, sizeof *r->slots);
    if (!r->slots) {
        free(r);
        return NULL;
    }
    r->mask = INITIAL_SLOTS - 1;
    uint64_t k[2];
    if (getrandom(k, sizeof k, GRND_NONBLOCK) != (ssize_t)sizeof k) {
        k[0] = sl_clock_real_us() ^ (uint64_t)(uintptr_t)r;
        k[1] = sl_clock_mono_us() * 0x9e3779b97f4a7c15ull;
    }
    r->k0 = k[0];
    r->k1 = k[1];
    return r;
}

void sl_rates_free(struct sl_rates *r)
{
    if (!r)
        return;
    free(r->by.name);
    free(r->by_text);
    free(r->file);
    free(r->quotas);
    free(r->qslots);
    free(r->entries);
    free(r->slots);
    free(r->arena);
    free(r);
}

static bool same_quota(const struct sl_quota *a, const struct sl_quota *b)
{
    return a->count == b->count && a->period_us == b->period_us && a->burst == b->burst;
}

static uint32_t quota_hash(const struct sl_quota *q)
{
    uint64_t h = q->count * 0x9e3779b97f4a7c15ull ^ q->period_us * 0xc2b2ae3d27d4eb4full ^
                 q->burst * 0x165667b19e3779f9ull;
    return (uint32_t)(h ^ h >> 32);
}

/* Rehashes the quota index into twice the slots, kept at most half full. */
static int quota_slots_grow(struct sl_rates *r)
{
    uint32_t n = r->qmask ? 2 * (r->qmask + 1) : 16;
    uint32_t *slots = calloc(n, sizeof *slots);
    if (!slots)
        return -1;
    for (uint32_t i = 0; i < r->nquotas; i++) {
        uint32_t j = quota_hash(&r->quotas[i]) & (n - 1);
        while (slots[j])
            j = (j + 1) & (n - 1);
        slots[j] = i + 1;
    }
    free(r->qslots);
    r->qslots = slots;
    r->qmask = n - 1;
    return 0;
}

long sl_rates_quota_index(struct sl_rates *r, const struct sl_quota *q)
{
    /* A file may hold a rate per customer, few distinct or many: an index finds each. */
    if (2 * (r->nquotas + 1) > (r->qmask ? r->qmask + 1 : 0) && quota_slots_grow(r) < 0)
        return -1;
    uint32_t j = quota_hash(q) & r->qmask;
    for (; r->qslots[j]; j = (j + 1) & r->qmask)
        if (same_quota(&r->quotas[r->qslots[j] - 1], q))
            return r->qslots[j] - 1;
    if (r->nquotas == r->quotas_cap) {
        uint32_t cap = r->quotas_cap ? r->quotas_cap * 2 : 8;
        struct sl_quota *qs = realloc(r->quotas, cap * sizeof *qs);
        if (!qs)
            return -1;
        r->quotas = qs;
        r->quotas_cap = cap;
    }
    r->quotas[r->nquotas] = *q;
    r->qslots[j] = r->nquotas + 1;
    return r->nquotas++;
}

/* What a value is held and hashed as: its bytes, or its digest past the max. */
struct held {
    const char *bytes;
    size_t len;
    uint8_t digest[SL_SHA256_LEN];
};

static void held_of(const char *value, size_t len, struct held *h)
{
    if (len <= SL_RATES_VALUE_MAX) {
        h->bytes = value;
        h->len = len;
        return;
    }
    struct sl_sha256 ctx;
    sl_sha256_init(&ctx);
    sl_sha256_update(&ctx, value, len);
    sl_sha256_final(&ctx, h->digest);
    h->bytes = (const char *)h->digest;
    h->len = SL_SHA256_LEN;
}

static uint64_t hash_of(const struct sl_rates *r, const struct held *h)
{
    return sl_siphash(r->k0, r->k1, 1, 3, h->bytes, h->len);
}

static bool entry_is(const struct sl_rates *r, const struct sl_rates_entry *e, uint32_t hash,
                     size_t len, const struct held *h)
{
    return e->hash == hash && e->len == len && memcmp(r->arena + e->off, h->bytes, h->len) == 0;
}

/* The slot holding `h`'s entry, or the empty slot where it would go. */
static uint32_t probe(const struct sl_rates *r, uint64_t hv, size_t len, const struct held *h)
{
    uint32_t hash = (uint32_t)(hv >> 32);
    for (uint32_t i = (uint32_t)hv & r->mask;; i = (i + 1) & r->mask) {
        uint32_t s = r->slots[i];
        if (s == 0 || entry_is(r, &r->entries[s - 1], hash, len, h))
            return i;
    }
}

/* Doubles the slots and places every entry again, by its stored hash's position bits, which
 * are not stored: the value is hashed again. */
static int grow(struct sl_rates *r)
{
    uint32_t nslots = (r->mask + 1) * 2;
    uint32_t *slots = calloc(nslots, sizeof *slots);
    if (!slots)
        return -1;
    uint32_t mask = nslots - 1;
    for (uint32_t k = 0; k < r->nentries; k++) {
        const struct sl_rates_entry *e = &r->entries[k];
        struct held h = {.bytes = r->arena + e->off,
                         .len = e->len > SL_RATES_VALUE_MAX ? SL_SHA256_LEN : e->len};
        uint32_t i = (uint32_t)hash_of(r, &h) & mask;
        while (slots[i])
            i = (i + 1) & mask;
        slots[i] = k + 1;
    }
    free(r->slots);
    r->slots = slots;
    r->mask = mask;
    return 0;
}

static int reserve_arena(struct sl_rates *r, size_t more)
{
    if (r->arena_cap - r->arena_len >= more)
        return 0;
    if (more > MAX_ARENA - r->arena_len)
        return -1;
    size_t cap = r->arena_cap ? r->arena_cap : 4096;
    while (cap - r->arena_len < more)
        cap = cap > MAX_ARENA / 2 ? MAX_ARENA : cap * 2;
    char *a = realloc(r->arena, cap);
    if (!a)
        return -1;
    r->arena = a;
    r->arena_cap = cap;
    return 0;
}

int sl_rates_add(struct sl_rates *r, const char *value, size_t len, uint32_t rate, uint32_t line,
                 const struct sl_rates_entry **earlier)
{
    struct held h;
    if (len > UINT32_MAX || r->nentries >= MAX_ENTRIES)
        return -1;
    held_of(value, len, &h);
    uint64_t hv = hash_of(r, &h);
    uint32_t at = probe(r, hv, len, &h);
    if (r->slots[at]) {
        *earlier = &r->entries[r->slots[at] - 1];
        return 1;
    }
    if (r->nentries == r->entries_cap) {
        uint32_t cap = r->entries_cap ? r->entries_cap * 2 : 16;
        struct sl_rates_entry *es = realloc(r->entries, (size_t)cap * sizeof *es);
        if (!es)
            return -1;
        r->entries = es;
        r->entries_cap = cap;
    }
    if (reserve_arena(r, h.len) < 0)
        return -1;
    struct sl_rates_entry *e = &r->entries[r->nentries];
    *e = (struct sl_rates_entry){(uint32_t)(hv >> 32), (uint32_t)r->arena_len, (uint32_t)len, rate,
                                 line};
    memcpy(r->arena + r->arena_len, h.bytes, h.len);
    r->arena_len += h.len;
    r->slots[at] = ++r->nentries;
    /* At most half full: a miss probes two slots on average. */
    if (r->nentries > (r->mask + 1) / 2 && grow(r) < 0) {
        r->slots[at] = 0;
        r->nentries--;
        r->arena_len -= h.len;
        return -1;
    }
    return 0;
}

int sl_rates_reserve(struct sl_rates *r, size_t entries, size_t bytes)
{
    if (entries > MAX_ENTRIES || bytes > MAX_ARENA)
        return -1;
    if (entries > r->entries_cap) {
        struct sl_rates_entry *es = realloc(r->entries, entries * sizeof *es);
        if (!es)
            return -1;
        r->entries = es;
        r->entries_cap = (uint32_t)entries;
    }
    if (reserve_arena(r, bytes) < 0)
        return -1;
    while ((size_t)r->mask + 1 < 2 * (r->nentries + entries))
        if (grow(r) < 0)
            return -1;
    return 0;
}

void sl_rates_trim(struct sl_rates *r)
{
    /* realloc to a smaller size keeps the block on failure: nothing to undo. */
    if (r->nentries && r->nentries < r->entries_cap) {
        struct sl_rates_entry *es = realloc(r->entries, r->nentries * sizeof *es);
        if (es) {
            r->entries = es;
            r->entries_cap = r->nentries;
        }
    }
    if (r->arena_len && r->arena_len < r->arena_cap) {
        char *a = realloc(r->arena, r->arena_len);
        if (a) {
            r->arena = a;
            r->arena_cap = r->arena_len;
        }
    }
}

const struct sl_rates_entry *sl_rates_find(const struct sl_rates *r, const char *value, size_t len)
{
    struct held h;
    held_of(value, len, &h);
    uint64_t hv = hash_of(r, &h);
    uint32_t s = r->slots[probe(r, hv, len, &h)];
    return s ? &r->entries[s - 1] : NULL;
}

size_t sl_rates_bytes(const struct sl_rates *r)
{
    return sizeof *r + (size_t)r->entries_cap * sizeof *r->entries +
           ((size_t)r->mask + 1) * sizeof *r->slots + r->arena_cap +
           (size_t)r->quotas_cap * sizeof *r->quotas;
}

const char *sl_rates_entry_value(const struct sl_rates *r, const struct sl_rates_entry *e)
{
    return e->len > SL_RATES_VALUE_MAX ? NULL : r->arena + e->off;
}
