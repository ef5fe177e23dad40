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

/* Room for any ordinary head; longer text is flushed to `out` as it grows, so any length
 * works. */
#define SL_TEXT_ROOM 2048

struct sl_text {
    struct evbuffer *out; /* borrowed: receives the text at sl_text_flush() */
    size_t len;
    char buf[SL_TEXT_ROOM];
};

/* Starts empty text bound for `out`. Nothing reaches `out` before sl_text_flush(). */
static inline void sl_text_init(struct sl_text *t, struct evbuffer *out)
{
    t->out = out;
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

/* Appends `v` in decimal. */
void sl_text_u64(struct sl_text *t, uint64_t v);

/* Moves all of `src` to the end of the text, leaving `src` empty: small contents are
 * copied into the room, large ones are moved as evbuffer chains after a flush. */
void sl_text_move(struct sl_text *t, struct evbuffer *src);

/* Hands the text to `out` in one evbuffer_add() and empties it. Returns 0, or -1 on
 * ENOMEM (the text is dropped either way). */
int sl_text_flush(struct sl_text *t);

#endif
