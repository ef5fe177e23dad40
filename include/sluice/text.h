/* Text assembled on the stack and handed to an evbuffer in one piece.
 *
 * Every evbuffer_add() to a buffer a bufferevent watches runs that buffer's callbacks
 * (and re-arms its write event); a response head written field by field paid for that
 * twenty times. Heads and sluice's own answers are built here instead and added once. */
#ifndef SLUICE_TEXT_H
#define SLUICE_TEXT_H

#include <stdint.h>
#include <string.h>

struct evbuffer;

/* Text kept in one block that grows as needed and is kept for reuse: a verdict's header
 * lines and body, written on every limited request, without an allocation per request
 * once the block is large enough. Zero-initialised is empty. */
struct sl_textbuf {
    char *data; /* owned */
    size_t len, cap;
};

/* Appends `n` bytes of `s`. Returns 0, or -1 on ENOMEM (nothing appended). */
int sl_textbuf_add(struct sl_textbuf *b, const char *s, size_t n);
/* Frees the block; `b` is empty afterwards. */
void sl_textbuf_free(struct sl_textbuf *b);

/* Room for any ordinary head; longer text is flushed to `out` as it grows, so any length
 * works. */
#define SL_TEXT_ROOM 2048

struct sl_text {
    struct evbuffer *out;  /* borrowed: receives the text at sl_text_flush(), or */
    struct sl_textbuf *tb; /* borrowed: receives it instead when set */
    size_t len;
    char buf[SL_TEXT_ROOM];
};

/* Starts empty text bound for `out`. Nothing reaches `out` before sl_text_flush(). */
static inline void sl_text_init(struct sl_text *t, struct evbuffer *out)
{
    t->out = out;
    t->tb = NULL;
    t->len = 0;
}

/* Starts empty text bound for the end of `tb`. */
static inline void sl_text_init_textbuf(struct sl_text *t, struct sl_textbuf *tb)
{
    t->out = NULL;
    t->tb = tb;
    t->len = 0;
}

/* Appends what does not fit in the room left; used by sl_text_add(). */
void sl_text_add_long(struct sl_text *t, const char *s, size_t n);

/* Appends `n` bytes of `s`. */
static inline void sl_text_add(struct sl_text *t, const char *s, size_t n)
{
    if (n > sizeof t->buf - t->len) {
        sl_text_add_long(t, s, n);
        return;
    }
    memcpy(t->buf + t->len, s, n);
    t->len += n;
}

#define SL_TEXT_LIT(t, lit) sl_text_add((t), (lit), sizeof(lit) - 1)

/* The most digits a uint64_t takes in decimal. */
#define SL_U64_DIGITS 20

/* Writes `v` in decimal to `buf` (room for SL_U64_DIGITS, no NUL) and returns the length:
 * printf-style formatting costs more than a rate-limit decision. */
size_t sl_u64_format(char *buf, uint64_t v);

/* Appends `v` of more than one digit; used by sl_text_u64(). */
void sl_text_u64_long(struct sl_text *t, uint64_t v);

/* Appends `v` in decimal. Rate-limit fields are mostly small numbers. */
static inline void sl_text_u64(struct sl_text *t, uint64_t v)
{
    if (v < 10 && t->len < sizeof t->buf) {
        t->buf[t->len++] = (char)('0' + v);
        return;
    }
    sl_text_u64_long(t, v);
}

/* Hands the text to `out` in one evbuffer_add() (or to `tb`) and empties it. Returns 0,
 * or -1 on ENOMEM (the text is dropped either way). */
int sl_text_flush(struct sl_text *t);

#endif
