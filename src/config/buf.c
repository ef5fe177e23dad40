/* The configuration module's growable text buffer. */
#include "buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool reserve(struct sl_cfg_buf *buf, size_t extra)
{
    if (buf->failed)
        return false;
    if (buf->len + extra + 1 <= buf->cap)
        return true;
    size_t cap = buf->cap ? buf->cap : 64;
    while (cap < buf->len + extra + 1)
        cap *= 2;
    char *data = realloc(buf->data, cap);
    if (!data) {
        buf->failed = true;
        return false;
    }
    buf->data = data;
    buf->cap = cap;
    return true;
}

void sl_cfg_buf_add(struct sl_cfg_buf *buf, const char *s, size_t n)
{
    if (!reserve(buf, n))
        return;
    memcpy(buf->data + buf->len, s, n);
    buf->len += n;
    buf->data[buf->len] = '\0';
}

void sl_cfg_buf_adds(struct sl_cfg_buf *buf, const char *s)
{
    sl_cfg_buf_add(buf, s, strlen(s));
}

void sl_cfg_buf_addf(struct sl_cfg_buf *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || !reserve(buf, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(buf->data + buf->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    buf->len += (size_t)n;
}

void sl_cfg_buf_json(struct sl_cfg_buf *buf, const char *s)
{
    if (!s) {
        sl_cfg_buf_add(buf, "null", 4);
        return;
    }
    sl_cfg_buf_add(buf, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            sl_cfg_buf_add(buf, "\\\"", 2);
            break;
        case '\\':
            sl_cfg_buf_add(buf, "\\\\", 2);
            break;
        case '\n':
            sl_cfg_buf_add(buf, "\\n", 2);
            break;
        case '\r':
            sl_cfg_buf_add(buf, "\\r", 2);
            break;
        case '\t':
            sl_cfg_buf_add(buf, "\\t", 2);
            break;
        default:
            if (*p < 0x20 || *p == 0x7f)
                sl_cfg_buf_addf(buf, "\\u%04x", *p);
            else
                sl_cfg_buf_add(buf, (const char *)p, 1);
        }
    }
    sl_cfg_buf_add(buf, "\"", 1);
}

char *sl_cfg_buf_take(struct sl_cfg_buf *buf)
{
    if (buf->failed || !reserve(buf, 0)) {
        sl_cfg_buf_deinit(buf);
        return NULL;
    }
    char *data = buf->data;
    data[buf->len] = '\0';
    *buf = (struct sl_cfg_buf){0};
    return data;
}

void sl_cfg_buf_deinit(struct sl_cfg_buf *buf)
{
    free(buf->data);
    *buf = (struct sl_cfg_buf){0};
}
