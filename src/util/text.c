#include "sluice/text.h"

#include <event2/buffer.h>
#include <stdint.h>
#include <stdlib.h>

int sl_textbuf_add(struct sl_textbuf *b, const char *s, size_t n)
{
    if (n > b->cap - b->len) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap - b->len < n) {
            if (cap > SIZE_MAX / 2)
                return -1;
            cap *= 2;
        }
        char *data = realloc(b->data, cap);
        if (!data)
            return -1;
        b->data = data;
        b->cap = cap;
    }
    if (n)
        memcpy(b->data + b->len, s, n);
    b->len += n;
    return 0;
}

void sl_textbuf_free(struct sl_textbuf *b)
{
    free(b->data);
    *b = (struct sl_textbuf){0};
}

/* Appends to the text's destination, past the room. */
static int sink(struct sl_text *t, const char *s, size_t n)
{
    return t->tb ? sl_textbuf_add(t->tb, s, n) : evbuffer_add(t->out, s, n);
}

int sl_text_flush(struct sl_text *t)
{
    int rc = 0;
    if (t->len)
        rc = sink(t, t->buf, t->len);
    t->len = 0;
    return rc;
}

void sl_text_add_long(struct sl_text *t, const char *s, size_t n)
{
    sl_text_flush(t);
    if (n > sizeof t->buf) {
        sink(t, s, n);
        return;
    }
    memcpy(t->buf, s, n);
    t->len = n;
}

static unsigned u64_digits(uint64_t v)
{
    if (v < 10000) /* limits, seconds and lengths mostly */
        return v < 100 ? 1 + (v >= 10) : 3 + (v >= 1000);
    unsigned n = 5;
    for (uint64_t p = 100000; n < SL_U64_DIGITS && v >= p; p *= 10)
        n++;
    return n;
}

/* Two digits per division, written in place from the end: rate-limit fields put four
 * numbers on every response. */
size_t sl_u64_format(char *buf, uint64_t v)
{
    static const char pairs[] = "000102030405060708091011121314151617181920212223242526272829"
                                "303132333435363738394041424344454647484950515253545556575859"
                                "606162636465666768697071727374757677787980818283848586878889"
                                "90919293949596979899";
    size_t n = u64_digits(v);
    char *p = buf + n;

    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        p -= 2;
        memcpy(p, pairs + 2 * r, 2);
    }
    if (v >= 10)
        memcpy(p - 2, pairs + 2 * v, 2);
    else
        p[-1] = (char)('0' + v);
    return n;
}

void sl_text_u64_long(struct sl_text *t, uint64_t v)
{
    if (sizeof t->buf - t->len < SL_U64_DIGITS)
        sl_text_flush(t);
    t->len += sl_u64_format(t->buf + t->len, v);
}
