/* Per-consumer rates (SPEC.md section 3): a limit's `rates:` table, which maps a value of the
 * request (one key source, or the limit's own key) to a rate of its own.
 *
 * The table is built once, by the configuration loader, and is read-only afterwards: any number
 * of threads may look values up at once. It is one open-addressing hash table over an array of
 * entries, with the values' bytes in one arena, all owned by the table and freed with it (and
 * the table with its limit, by the configuration snapshot). A lookup hashes the value once
 * (SipHash-1-3 under a per-process random key, so that clients cannot aim at a chain) and
 * allocates nothing. Values longer than SL_RATES_VALUE_MAX bytes are held and compared as their
 * SHA-256 digest, as long key values are in Redis keys.
 *
 * Memory: 20 bytes an entry, 4 bytes a slot (2 to 4 slots an entry: the table is at most half
 * full), the value's bytes (32 past SL_RATES_VALUE_MAX), and 24 bytes a rate. */
#ifndef SLUICE_RATES_H
#define SLUICE_RATES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/limit.h"

/* Values longer than this are held as their digest. */
#define SL_RATES_VALUE_MAX 200

/* The quota count of an `unlimited` rate: admitted without asking any store. A count of 0
 * ("0/P") denies without asking any store. */
#define SL_RATE_UNLIMITED UINT64_MAX

/* One listed value. */
struct sl_rates_entry {
    uint32_t hash; /* the value's hash's upper half: most probes end on it */
    uint32_t off;  /* in the arena: the value's bytes, or its digest when longer than the max */
    uint32_t len;  /* the value's length */
    uint32_t rate; /* index in `quotas` */
    uint32_t line; /* the file's line; 0 for an inline value */
};

struct sl_rates {
    bool by_key;             /* `by: key`: the limit's own key value */
    struct sl_key_source by; /* else the source read (by.name owned) */
    char *by_text;           /* as written; owned */
    char *file;              /* the file's path as written, or NULL; owned */
    uint8_t file_digest[32]; /* of the file's bytes as read (reload.watch compares) */
    size_t ninline, nfile;   /* entries from `values` and from the file */
    struct sl_quota *quotas; /* distinct rates, burst resolved for the limit; owned */
    uint32_t nquotas, quotas_cap;
    uint32_t *qslots; /* quota index + 1 by the quota's hash, 0 for empty; owned */
    uint32_t qmask;   /* qslots - 1 (0: none yet) */
    struct sl_rates_entry *entries; /* owned */
    uint32_t nentries, entries_cap;
    uint32_t *slots; /* entry index + 1, 0 for an empty slot; owned */
    uint32_t mask;   /* slots - 1, a power of two minus one */
    char *arena;     /* owned */
    size_t arena_len, arena_cap;
    uint64_t k0, k1; /* the hash key */
};

/* An empty table; NULL on ENOMEM. Free with sl_rates_free(). */
struct sl_rates *sl_rates_new(void);

/* Releases the table and everything it owns. Accepts NULL. */
void sl_rates_free(struct sl_rates *r);

/* The index of quota `q` among the table's rates, added if new: each distinct rate is held
 * once. -1 on ENOMEM. */
long sl_rates_quota_index(struct sl_rates *r, const struct sl_quota *q);

/* Lists `value` (`len` bytes, copied) with the rate at `rate` (from sl_rates_quota_index), from
 * file line `line` (0: inline). Returns 0; 1 when the value is listed already (`*earlier` is
 * then that entry, left as it was); -1 on ENOMEM or past 2^31 entries or 4 GiB of values. */
int sl_rates_add(struct sl_rates *r, const char *value, size_t len, uint32_t rate, uint32_t line,
                 const struct sl_rates_entry **earlier);

/* Makes room for `entries` more values of `bytes` in all, so that adding them moves and
 * rehashes nothing. Returns 0, or -1 on ENOMEM or past the bounds. */
int sl_rates_reserve(struct sl_rates *r, size_t entries, size_t bytes);

/* Gives back the room the table grew into while it was built. Call once, after the last add. */
void sl_rates_trim(struct sl_rates *r);

/* The entry listing `value` (`len` bytes, borrowed), or NULL when it is not listed. */
const struct sl_rates_entry *sl_rates_find(const struct sl_rates *r, const char *value, size_t len);

/* Bytes the table holds (for /config and the README's figure). */
size_t sl_rates_bytes(const struct sl_rates *r);

/* The value an entry lists, for messages: its e->len bytes (not NUL-terminated), or NULL for
 * a digested value. */
const char *sl_rates_entry_value(const struct sl_rates *r, const struct sl_rates_entry *e);

#endif
