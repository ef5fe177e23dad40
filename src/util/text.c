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

/* Two digits per division: rate-limit fields put four numbers on every response. */
size_t sl_u64_format(char *buf, uint64_t v)
{
    static const char pairs[] = "000102030405060708091011121314151617181920212223242526272829"
                                "303132333435363738394041424344454647484950515253545556575859"
                                "606162636465666768697071727374757677787980818283848586878889"
                                "90919293949596979899";
    char digits[SL_U64_DIGITS];
    char *p = digits + sizeof digits;

    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, pairs + 2 * r, 2);
    }
    if (v >= 10) {
        p -= 2;
        memcpy(p, pairs + 2 * v, 2);
    } else {
        *--p = (char)('0' + v);
    }
    size_t n = (size_t)(digits + sizeof digits - p);
    memcpy(buf, p, n);
    return n;
}

void sl_text_u64(struct sl_text *t, uint64_t v)
{
    char digits[SL_U64_DIGITS];
    sl_text_add(t, digits, sl_u64_format(digits, v));
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
