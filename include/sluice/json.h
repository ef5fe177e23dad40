/* JSON string escaping for text that comes from the network (access log, error bodies). */
#ifndef SLUICE_JSON_H
#define SLUICE_JSON_H

#include <stddef.h>

struct evbuffer;

/* Appends `s` (`len` bytes, not NUL-terminated, any bytes) to `out` as one quoted JSON
 * string. Quotes, backslashes and control characters are escaped; valid UTF-8 is kept;
 * every byte that is not part of valid UTF-8 becomes \u00XX, so the result is always valid
 * JSON whatever the input. Returns 0, or -1 on ENOMEM. */
int sl_json_append_string(struct evbuffer *out, const char *s, size_t len);

#endif
