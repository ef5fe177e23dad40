#include "sluice/text.h"

#include <event2/buffer.h>

int sl_text_flush(struct sl_text *t)
{
    int rc = 0;
    if (t->len)
        rc = evbuffer_add(t->out, t->buf, t->len);
    t->len = 0;
    return rc;
}

void sl_text_add_long(struct sl_text *t, const char *s, size_t n)
{
    sl_text_flush(t);
    if (n > sizeof t->buf) {
        evbuffer_add(t->out, s, n);
        return;
    }
    memcpy(t->buf, s, n);
    t->len = n;
}

void sl_text_u64(struct sl_text *t, uint64_t v)
{
    char digits[20];
    size_t i = sizeof digits;

    do {
        digits[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    sl_text_add(t, digits + i, sizeof digits - i);
}

void sl_text_move(struct sl_text *t, struct evbuffer *src)
{
    size_t n = evbuffer_get_length(src);

    if (n <= sizeof t->buf - t->len) {
        evbuffer_remove(src, t->buf + t->len, n);
        t->len += n;
        return;
    }
    sl_text_flush(t);
    evbuffer_add_buffer(t->out, src);
}
