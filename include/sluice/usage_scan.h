/* The JSON usage scanner: finds the number at a dot path (such as usage.total_tokens) in a
 * response body as it streams through, for `charge: "response_json:PATH"`.
 *
 * The body is fed in the spans the proxy moves anyway (llhttp's decoded body, pointing into
 * the evbuffer's own chains): the scanner copies nothing and holds no body. JSON is parsed
 * by yajl's streaming parser (libyajl-dev, already linked for the fuzz targets' checks): it
 * keeps only its nesting state and the token it is in between calls, so memory stays bounded
 * whatever the body's size, and it reports map keys and numbers as callbacks, which is all a
 * dot path needs. A server-sent-events body (text/event-stream) is read event by event: each
 * event's `data:` lines are one JSON document, and the last event carrying the field wins
 * (OpenAI-style streams report usage in their final event); events that are not JSON, such
 * as "[DONE]", are skipped. */
#ifndef SLUICE_USAGE_SCAN_H
#define SLUICE_USAGE_SCAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_usage_scan;

enum sl_usage_body {
    SL_USAGE_JSON, /* application/json (or any +json type) */
    SL_USAGE_SSE,  /* text/event-stream */
    SL_USAGE_NONE, /* anything else: never yields a number */
};

/* The kind of body a Content-Type value announces (`value` not NUL-terminated). */
enum sl_usage_body sl_usage_body_kind(const char *value, size_t len);

/* A scanner for the number at `path` (dot-separated map keys; borrowed, must outlive the
 * scanner) in a body of `kind`. NULL on ENOMEM. */
struct sl_usage_scan *sl_usage_scan_new(const char *path, enum sl_usage_body kind);

/* Feeds the next `len` bytes of the body. Never fails: a body that stops being valid is
 * remembered as such and the rest ignored. */
void sl_usage_scan_feed(struct sl_usage_scan *scan, const char *data, size_t len);

/* The body ended: true with `*out` the number found (a non-negative integer of at most
 * SL_UNITS_MAX at the path; for SSE, in the last event carrying it), false when the body was
 * not of that kind, not well formed, or lacked the field. */
bool sl_usage_scan_finish(struct sl_usage_scan *scan, uint64_t *out);

/* Accepts NULL. */
void sl_usage_scan_free(struct sl_usage_scan *scan);

#endif
