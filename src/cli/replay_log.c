/* Access log lines (SPEC.md section 9) read with yajl's event parser.
 *
 * One parser handle reads line after line (yajl_allow_multiple_values), so a line costs
 * no allocation; a line that is not one complete JSON object leaves the handle
 * mid-value, and it is then replaced. The members replay needs are copied into an arena
 * as large as the line (a decoded JSON string is never longer than its text), so that no
 * pointer moves while the line is read; the others are skipped. */
#include <stdalign.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include "replay.h"

enum member { M_OTHER, M_TS, M_CLIENT, M_METHOD, M_PATH, M_DECISION, M_KEY_FIELDS, M_BYTES_IN };

/* What one yajl handle allocates (the handle, its lexer, buffers and state stack: a few
 * hundred bytes, more only for long escaped strings) comes from a fixed arena, dropped as
 * a whole when the handle is replaced: a stopped or failed line then costs no malloc and
 * no free. Blocks that do not fit go to the heap. */
#define YAJL_ARENA 8192
#define BLOCK_HEADER 16 /* each block's size, keeping the blocks 16-byte aligned */

struct yajl_arena {
    size_t used;
    alignas(16) unsigned char mem[YAJL_ARENA];
};

struct sl_replay_parser {
    yajl_handle h;
    struct yajl_arena arenas[2]; /* the handle's, and the next one's */
    int current;
    struct sl_replay_record *rec;
    char *arena;
    size_t cap, used;
    int depth;
    enum member member; /* of the last key at depth 1 */
    bool in_fields;     /* inside "key_fields" (depth 2) */
    bool has_ts, done;
    bool stopped;                /* everything replay reads was read: the parse was stopped */
    const char *line, *line_end; /* the line being read */
    char ts_prefix[20];          /* "YYYY-MM-DDTHH:MM:SS" of the last "ts" read */
    uint64_t ts_prefix_us;
    struct sl_replay_field pending;                      /* key_fields: the member named last */
    struct sl_replay_field fields[SL_REPLAY_MAX_FIELDS]; /* the record's */
};

/* A string without escapes is handed over where it lies in the line, which outlives the
 * parse; a decoded one lies in yajl's buffer, reused for the next string, and is copied. */
static const char *copy(struct sl_replay_parser *p, const unsigned char *s, size_t n)
{
    if ((const char *)s >= p->line && (const char *)s + n <= p->line_end)
        return (const char *)s;
    char *d = p->arena + p->used;
    memcpy(d, s, n);
    p->used += n;
    return d;
}

static int on_start_map(void *ctx)
{
    struct sl_replay_parser *p = ctx;
    if (p->done)
        return 0; /* a second object on one line */
    p->depth++;
    if (p->depth == 2 && p->member == M_KEY_FIELDS) {
        p->in_fields = true;
        p->rec->has_key_fields = true;
    }
    return 1;
}

static int on_end_map(void *ctx)
{
    struct sl_replay_parser *p = ctx;
    if (--p->depth == 0)
        p->done = true;
    if (p->depth < 2)
        p->in_fields = false;
    return 1;
}

static int on_start_array(void *ctx)
{
    struct sl_replay_parser *p = ctx;
    if (p->depth == 0)
        return 0; /* a line is an object */
    p->depth++;
    return 1;
}

static int on_end_array(void *ctx)
{
    ((struct sl_replay_parser *)ctx)->depth--;
    return 1;
}

/* "host", "header:NAME" or "cookie:NAME"; anything else is not a field replay reads. */
static bool field_name(struct sl_replay_parser *p, const unsigned char *s, size_t n)
{
    static const struct {
        const char *prefix;
        enum sl_key_kind kind;
    } kinds[] = {{"header:", SL_KEY_HEADER}, {"cookie:", SL_KEY_COOKIE}};

    if (n == 4 && memcmp(s, "host", 4) == 0) {
        p->pending = (struct sl_replay_field){.kind = SL_KEY_HOST, .name = {"", 0}};
        return true;
    }
    for (size_t i = 0; i < 2; i++) {
        size_t k = strlen(kinds[i].prefix);
        if (n > k && memcmp(s, kinds[i].prefix, k) == 0) {
            p->pending.kind = kinds[i].kind;
            p->pending.name.s = copy(p, s + k, n - k);
            p->pending.name.n = n - k;
            return true;
        }
    }
    return false;
}

/* Called for every member of every line: the length picks the one candidate. */
static enum member member_of(const unsigned char *s, size_t n)
{
    switch (n) {
    case 2:
        return memcmp(s, "ts", 2) == 0 ? M_TS : M_OTHER;
    case 4:
        return memcmp(s, "path", 4) == 0 ? M_PATH : M_OTHER;
    case 6:
        return memcmp(s, "client", 6) == 0   ? M_CLIENT
               : memcmp(s, "method", 6) == 0 ? M_METHOD
                                             : M_OTHER;
    case 8:
        return memcmp(s, "decision", 8) == 0   ? M_DECISION
               : memcmp(s, "bytes_in", 8) == 0 ? M_BYTES_IN
                                               : M_OTHER;
    case 10:
        return memcmp(s, "key_fields", 10) == 0 ? M_KEY_FIELDS : M_OTHER;
    }
    return M_OTHER;
}

static int on_map_key(void *ctx, const unsigned char *s, size_t n)
{
    struct sl_replay_parser *p = ctx;

    if (p->depth == 1) {
        p->member = member_of(s, n);
        /* sluice writes what replay reads first: past "bytes_in" come only sizes and
         * durations, a third of the line, which need not be lexed. */
        if (p->member == M_BYTES_IN && p->has_ts && p->rec->client.s && p->rec->method.s &&
            p->rec->path.s) {
            p->stopped = true;
            return 0;
        }
    } else if (p->in_fields && p->depth == 2) {
        p->pending.name.s = NULL;
        if (!field_name(p, s, n))
            p->pending.kind = SL_KEY_ROUTE; /* not a field: ignored */
    }
    return 1;
}

static void add_field(struct sl_replay_parser *p, const unsigned char *s, size_t n, bool null)
{
    struct sl_replay_record *r = p->rec;
    if (p->pending.kind == SL_KEY_ROUTE || r->nfields == SL_REPLAY_MAX_FIELDS)
        return;
    struct sl_replay_field *f = &r->fields[r->nfields++];
    *f = p->pending;
    f->value.s = null ? NULL : copy(p, s, n);
    f->value.n = null ? 0 : n;
}

static int parse_ts(struct sl_replay_parser *p, const char *s, size_t n, uint64_t *us);

static int on_string(void *ctx, const unsigned char *s, size_t n)
{
    struct sl_replay_parser *p = ctx;
    struct sl_replay_record *r = p->rec;
    struct sl_replay_text *t = NULL;

    if (p->in_fields && p->depth == 2) {
        add_field(p, s, n, false);
        return 1;
    }
    if (p->depth != 1)
        return 1;
    switch (p->member) {
    case M_TS:
        if (parse_ts(p, (const char *)s, n, &r->ts_us) < 0)
            return 0;
        p->has_ts = true;
        return 1;
    case M_CLIENT:
        t = &r->client;
        break;
    case M_METHOD:
        t = &r->method;
        break;
    case M_PATH:
        t = &r->path;
        break;
    case M_DECISION:
        t = &r->decision;
        break;
    default:
        return 1;
    }
    t->s = copy(p, s, n);
    t->n = n;
    return 1;
}

static int on_null(void *ctx)
{
    struct sl_replay_parser *p = ctx;
    if (p->in_fields && p->depth == 2)
        add_field(p, NULL, 0, true);
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end_map,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end_array,
};

static void *arena_malloc(void *ctx, size_t n)
{
    struct yajl_arena *a = ctx;
    size_t need = BLOCK_HEADER + ((n + 15) & ~(size_t)15);
    unsigned char *b;

    if (n <= YAJL_ARENA && need <= YAJL_ARENA - a->used) {
        b = a->mem + a->used;
        a->used += need;
    } else if (!(b = malloc(BLOCK_HEADER + n))) {
        return NULL;
    }
    memcpy(b, &n, sizeof n);
    return b + BLOCK_HEADER;
}

static bool in_arena(const struct yajl_arena *a, const void *ptr)
{
    uintptr_t p = (uintptr_t)ptr, start = (uintptr_t)a->mem;
    return p >= start && p < start + YAJL_ARENA;
}

static void arena_free(void *ctx, void *ptr)
{
    if (ptr && !in_arena(ctx, ptr))
        free((unsigned char *)ptr - BLOCK_HEADER);
}

static void *arena_realloc(void *ctx, void *ptr, size_t n)
{
    size_t old;

    if (!ptr)
        return arena_malloc(ctx, n);
    memcpy(&old, (unsigned char *)ptr - BLOCK_HEADER, sizeof old);
    if (n <= old)
        return ptr;
    void *q = arena_malloc(ctx, n);
    if (q) {
        memcpy(q, ptr, old);
        arena_free(ctx, ptr);
    }
    return q;
}

/* A handle on arena `a`, which is emptied first: the handle it served is gone. */
static yajl_handle handle_new(struct sl_replay_parser *p, struct yajl_arena *a)
{
    yajl_alloc_funcs funcs = {arena_malloc, arena_realloc, arena_free, a};

    a->used = 0;
    yajl_handle h = yajl_alloc(&callbacks, &funcs, p);
    if (h) {
        yajl_config(h, yajl_allow_multiple_values, 1);
        /* The log escapes every byte that is not UTF-8: validating again buys nothing. */
        yajl_config(h, yajl_dont_validate_strings, 1);
    }
    return h;
}

struct sl_replay_parser *sl_replay_parser_new(void)
{
    struct sl_replay_parser *p = calloc(1, sizeof *p);
    if (!p || !(p->h = handle_new(p, &p->arenas[0]))) {
        free(p);
        return NULL;
    }
    return p;
}

void sl_replay_parser_free(struct sl_replay_parser *p)
{
    if (!p)
        return;
    yajl_free(p->h);
    free(p->arena);
    free(p);
}

int sl_replay_parse_line(struct sl_replay_parser *p, const char *line, size_t len,
                         struct sl_replay_record *rec)
{
    if (len + 1 > p->cap) {
        size_t cap = len + 1 > 2 * p->cap ? len + 1 : 2 * p->cap;
        char *a = realloc(p->arena, cap);
        if (!a)
            return -1;
        p->arena = a;
        p->cap = cap;
    }
    p->used = 0;
    p->line = line;
    p->line_end = line + len;
    p->rec = rec;
    p->depth = 0;
    p->member = M_OTHER;
    p->in_fields = p->has_ts = p->done = p->stopped = false;
    rec->client.s = rec->method.s = rec->path.s = rec->decision.s = NULL;
    rec->has_key_fields = false;
    rec->fields = p->fields;
    rec->nfields = 0;

    yajl_status st = yajl_parse(p->h, (const unsigned char *)line, len);
    bool ok = p->stopped || (st == yajl_status_ok && p->done && p->has_ts && rec->client.s &&
                             rec->method.s && rec->path.s);
    if (st != yajl_status_ok || !p->done) {
        /* The handle stopped mid-value: the next line needs a fresh one. */
        yajl_handle h = handle_new(p, &p->arenas[!p->current]);
        if (h) {
            yajl_free(p->h);
            p->h = h;
            p->current = !p->current;
        }
    }
    return ok ? 0 : -1;
}

static int digits(const char *s, size_t n, unsigned *out)
{
    unsigned v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned)(s[i] - '0');
    }
    *out = v;
    return 0;
}

/* Days from 1970-01-01 to a date of the proleptic Gregorian calendar: March-based years
 * make the leap day the last of the year, so each month's offset is a linear formula. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int sl_replay_parse_ts(const char *s, size_t n, uint64_t *us)
{
    unsigned y, mo, d, h, mi, sec, frac = 0;

    if (n < 20 || s[4] != '-' || s[7] != '-' || s[10] != 'T' || s[13] != ':' || s[16] != ':' ||
        s[n - 1] != 'Z')
        return -1;
    if (digits(s, 4, &y) || digits(s + 5, 2, &mo) || digits(s + 8, 2, &d) ||
        digits(s + 11, 2, &h) || digits(s + 14, 2, &mi) || digits(s + 17, 2, &sec))
        return -1;
    if (y < 1970 || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    size_t fdigits = 0;
    if (n > 20) {
        fdigits = n - 21;
        if (s[19] != '.' || fdigits < 1 || fdigits > 9 || digits(s + 20, fdigits, &frac))
            return -1;
    }
    /* The fraction as microseconds: pad or cut to six digits. */
    for (size_t i = fdigits; i < 6; i++)
        frac *= 10;
    for (size_t i = 6; i < fdigits; i++)
        frac /= 10;
    int64_t days = days_from_civil(y, mo, d);
    *us = ((uint64_t)days * 86400 + h * 3600u + mi * 60u + sec) * 1000000u + frac;
    return 0;
}

/* Lines come in time order, many per second: the date and time up to the second are
 * converted once per second of log, only the milliseconds for the other lines. */
static int parse_ts(struct sl_replay_parser *p, const char *s, size_t n, uint64_t *us)
{
    const size_t k = sizeof p->ts_prefix - 1;
    unsigned ms;

    if (n == k + 5 && s[k] == '.' && s[n - 1] == 'Z' && memcmp(s, p->ts_prefix, k) == 0 &&
        digits(s + k + 1, 3, &ms) == 0) {
        *us = p->ts_prefix_us + ms * 1000u;
        return 0;
    }
    if (sl_replay_parse_ts(s, n, us) < 0)
        return -1;
    memcpy(p->ts_prefix, s, k);
    p->ts_prefix_us = *us / 1000000 * 1000000;
    return 0;
}
