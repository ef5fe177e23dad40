/* The JSON usage scanner (see include/sluice/usage_scan.h for what it promises).
 *
 * Path matching follows the nesting: `on` counts the open containers, from the outermost,
 * that lie on the path (each a map entered through the path's next key); a map key at depth
 * d hits when all d − 1 containers around it are on the path and it equals segment d; a
 * number right after a hit on the last segment is the value. Arrays are never on a dot path.
 *
 * SSE is split into lines here (a line may straddle two feeds: only the "data:" prefix test
 * needs bytes of the line kept, at most five); each event's data lines go to a fresh yajl
 * handle, completed at the blank line that ends the event. */
#include "sluice/usage_scan.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yajl/yajl_parse.h>

#include "sluice/charge.h"

#define MAX_SEGMENTS 16

struct sl_usage_scan {
    enum sl_usage_body kind;
    const char *segs[MAX_SEGMENTS];
    size_t seg_len[MAX_SEGMENTS];
    size_t nsegs;

    /* The document in progress. */
    yajl_handle yajl;
    unsigned depth, on;
    bool hit;       /* the last map key hit the path at this depth */
    bool doc_found; /* the document holds a number at the path */
    bool doc_bad;   /* it holds something else there */
    uint64_t doc_value;
    bool failed; /* JSON body: not well formed (the rest is ignored) */

    /* The result so far: the last document carrying the field. */
    bool found;
    uint64_t value;

    /* SSE line state. */
    char prefix[5];
    size_t prefix_len;
    bool line_data;   /* the line is a data line: its bytes go to the parser */
    bool line_skip;   /* the line is anything else */
    bool skip_space;  /* just after "data:": one space is not part of the data */
    bool line_any;    /* a byte of this line was seen (a line without is blank) */
    bool line_fed;    /* this data line gave the parser bytes */
    bool prev_cr;     /* the last byte ended a line with CR: an LF next is the same end */
    bool event_lines; /* the event has data lines */
    bool event_bad;   /* the event's data is not JSON */
};

static int on_start_map(void *ctx)
{
    struct sl_usage_scan *s = ctx;
    if (s->on == s->depth && (s->depth == 0 || s->hit))
        s->on = s->depth + 1;
    s->depth++;
    s->hit = false;
    return 1;
}

static int on_start_array(void *ctx)
{
    struct sl_usage_scan *s = ctx;
    s->depth++;
    s->hit = false;
    return 1;
}

static int on_end(void *ctx)
{
    struct sl_usage_scan *s = ctx;
    if (s->on == s->depth)
        s->on--;
    s->depth--;
    s->hit = false;
    return 1;
}

static int on_map_key(void *ctx, const unsigned char *key, size_t len)
{
    struct sl_usage_scan *s = ctx;
    size_t d = s->depth;
    s->hit = s->on == d && d >= 1 && d <= s->nsegs && len == s->seg_len[d - 1] &&
             memcmp(key, s->segs[d - 1], len) == 0;
    return 1;
}

/* A scalar: the value when it comes right after a hit on the last segment. */
static void scalar(struct sl_usage_scan *s, const char *number, size_t len)
{
    if (!s->hit || s->depth != s->nsegs)
        return;
    s->hit = false;
    uint64_t v;
    if (number && sl_units_parse(number, len, &v)) {
        s->doc_found = true;
        s->doc_bad = false;
        s->doc_value = v;
    } else {
        s->doc_found = false;
        s->doc_bad = true;
    }
}

static int on_number(void *ctx, const char *number, size_t len)
{
    scalar(ctx, number, len);
    return 1;
}

static int on_null(void *ctx)
{
    scalar(ctx, NULL, 0);
    return 1;
}

static int on_bool(void *ctx, int v)
{
    scalar(ctx, NULL, 0);
    return 1;
}

static int on_string(void *ctx, const unsigned char *v, size_t len)
{
    scalar(ctx, NULL, 0);
    return 1;
}

static const yajl_callbacks callbacks = {
    .yajl_null = on_null,
    .yajl_boolean = on_bool,
    .yajl_number = on_number,
    .yajl_string = on_string,
    .yajl_start_map = on_start_map,
    .yajl_map_key = on_map_key,
    .yajl_end_map = on_end,
    .yajl_start_array = on_start_array,
    .yajl_end_array = on_end,
};

enum sl_usage_body sl_usage_body_kind(const char *value, size_t len)
{
    size_t n = 0;
    while (n < len && value[n] != ';' && value[n] != ' ' && value[n] != '\t')
        n++;
    if (n == 16 && strncasecmp(value, "application/json", 16) == 0)
        return SL_USAGE_JSON;
    if (n > 5 && strncasecmp(value + n - 5, "+json", 5) == 0 && memchr(value, '/', n))
        return SL_USAGE_JSON;
    if (n == 17 && strncasecmp(value, "text/event-stream", 17) == 0)
        return SL_USAGE_SSE;
    return SL_USAGE_NONE;
}

/* Starts a document: a fresh parser, nothing found yet. Returns -1 on ENOMEM. */
static int doc_start(struct sl_usage_scan *s)
{
    if (s->yajl)
        yajl_free(s->yajl);
    s->yajl = yajl_alloc(&callbacks, NULL, s);
    if (!s->yajl)
        return -1;
    /* Only keys and numbers are read: checking strings' UTF-8 would be work for nothing. */
    yajl_config(s->yajl, yajl_dont_validate_strings, 1);
    s->depth = s->on = 0;
    s->hit = s->doc_found = s->doc_bad = false;
    return 0;
}

/* Ends the document: what it found becomes the result when it is well formed. */
static void doc_end(struct sl_usage_scan *s, bool ok)
{
    if (ok && s->yajl && yajl_complete_parse(s->yajl) == yajl_status_ok && s->doc_found) {
        s->found = true;
        s->value = s->doc_value;
    } else if (ok && s->doc_bad) {
        s->found = false; /* the last event carrying the field carries no number */
    }
}

struct sl_usage_scan *sl_usage_scan_new(const char *path, enum sl_usage_body kind)
{
    struct sl_usage_scan *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->kind = kind;
    for (const char *p = path; *p && s->nsegs < MAX_SEGMENTS;) {
        const char *dot = strchr(p, '.');
        size_t len = dot ? (size_t)(dot - p) : strlen(p);
        s->segs[s->nsegs] = p;
        s->seg_len[s->nsegs++] = len;
        p += len + (dot != NULL);
    }
    if (kind == SL_USAGE_JSON && doc_start(s) < 0) {
        free(s);
        return NULL;
    }
    return s;
}

static void feed_json(struct sl_usage_scan *s, const char *data, size_t len)
{
    if (s->failed || !s->yajl)
        return;
    if (yajl_parse(s->yajl, (const unsigned char *)data, len) != yajl_status_ok)
        s->failed = true;
}

/* A data line's bytes, to the event's document. */
static void event_data(struct sl_usage_scan *s, const char *data, size_t len)
{
    if (s->event_bad || len == 0)
        return;
    if (!s->event_lines) {
        s->event_lines = true;
        if (doc_start(s) < 0) {
            s->event_bad = true;
            return;
        }
    } else if (!s->line_fed) {
        /* Consecutive data lines join with a line feed: whitespace to JSON. */
        if (yajl_parse(s->yajl, (const unsigned char *)"\n", 1) != yajl_status_ok)
            s->event_bad = true;
    }
    if (!s->event_bad && yajl_parse(s->yajl, (const unsigned char *)data, len) != yajl_status_ok)
        s->event_bad = true;
    s->line_fed = true;
}

static void end_line(struct sl_usage_scan *s)
{
    if (!s->line_any) { /* a blank line ends the event */
        if (s->event_lines)
            doc_end(s, !s->event_bad);
        s->event_lines = s->event_bad = false;
    }
    s->prefix_len = 0;
    s->line_data = s->line_skip = s->skip_space = s->line_any = s->line_fed = false;
}

static void feed_sse(struct sl_usage_scan *s, const char *data, size_t len)
{
    size_t i = 0;
    while (i < len) {
        char c = data[i];
        if (c == '\n' || c == '\r') {
            if (!(c == '\n' && s->prev_cr))
                end_line(s);
            s->prev_cr = c == '\r';
            i++;
            continue;
        }
        s->prev_cr = false;
        s->line_any = true;
        if (s->line_data) {
            if (s->skip_space) {
                s->skip_space = false;
                if (c == ' ') {
                    i++;
                    continue;
                }
            }
            size_t end = i;
            while (end < len && data[end] != '\n' && data[end] != '\r')
                end++;
            event_data(s, data + i, end - i);
            i = end;
            continue;
        }
        if (s->line_skip) {
            while (i < len && data[i] != '\n' && data[i] != '\r')
                i++;
            continue;
        }
        /* The start of a line: is it "data:"? */
        s->prefix[s->prefix_len++] = c;
        i++;
        if (memcmp(s->prefix, "data:", s->prefix_len) != 0)
            s->line_skip = true;
        else if (s->prefix_len == 5)
            s->line_data = s->skip_space = true;
    }
}

void sl_usage_scan_feed(struct sl_usage_scan *s, const char *data, size_t len)
{
    if (s->kind == SL_USAGE_JSON)
        feed_json(s, data, len);
    else if (s->kind == SL_USAGE_SSE)
        feed_sse(s, data, len);
}

bool sl_usage_scan_finish(struct sl_usage_scan *s, uint64_t *out)
{
    if (s->kind == SL_USAGE_JSON)
        doc_end(s, !s->failed);
    else if (s->kind == SL_USAGE_SSE && s->event_lines)
        doc_end(s, !s->event_bad); /* a last event without its blank line */
    if (s->found)
        *out = s->value;
    return s->found;
}

void sl_usage_scan_free(struct sl_usage_scan *s)
{
    if (!s)
        return;
    if (s->yajl)
        yajl_free(s->yajl);
    free(s);
}
