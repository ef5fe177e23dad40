/* A growable text buffer for the configuration module: error lists, expansions, JSON.
 * An allocation failure is sticky: later appends do nothing and take() returns NULL. */
#ifndef SLUICE_CONFIG_BUF_H
#define SLUICE_CONFIG_BUF_H

#include <stdbool.h>
#include <stddef.h>

struct sl_cfg_buf {
    char *data;
    size_t len, cap;
    bool failed;
};

void sl_cfg_buf_add(struct sl_cfg_buf *buf, const char *s, size_t n);
void sl_cfg_buf_adds(struct sl_cfg_buf *buf, const char *s);
void sl_cfg_buf_addf(struct sl_cfg_buf *buf, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Appends `s` as a JSON string, quotes included, or null when `s` is NULL. */
void sl_cfg_buf_json(struct sl_cfg_buf *buf, const char *s);

/* Returns the text (NUL-terminated, "" when empty; the caller frees it) and empties `buf`.
 * Returns NULL when an allocation failed. */
char *sl_cfg_buf_take(struct sl_cfg_buf *buf);

void sl_cfg_buf_deinit(struct sl_cfg_buf *buf);

#endif
