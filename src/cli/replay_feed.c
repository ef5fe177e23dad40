/* The access log read and parsed on a thread of its own, ahead of the engine.
 *
 * Parsing a line (yajl) and deciding it (routes, keys, store) cost about the same, and
 * only the deciding must happen in file order on one thread: the reader thread splits
 * and parses lines into a ring of NBATCH batches while the caller decides the previous
 * ones. Each batch reads its own stretch of the log into its `text`, so its records
 * point into it where yajl handed a string over in place; only decoded (escaped)
 * strings are copied, into `bytes`. A line cut at the end of a batch's text moves to the
 * next batch's.
 *
 * The ring: the reader fills batches[filled % NBATCH] while filled - consumed < NBATCH;
 * the caller holds batches[consumed % NBATCH] while consumed < filled. Both counters
 * only grow, under `lock`. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "replay.h"

#define NBATCH 4
/* Small enough that the ring stays in the cores' caches; a line longer than this gets a
 * batch of its own, grown to fit. */
#define TEXT_CAP (256u << 10)
#define LINES_CAP 1024

struct batch {
    struct sl_replay_batch pub;
    size_t lines_cap;
    char *text; /* the log from the batch's first line on */
    size_t text_len, text_cap;
    char *bytes; /* decoded strings, never longer than the text they came from: text_cap */
    size_t used;
    struct sl_replay_field *fields; /* the records', in order; pointed to at hand-over */
    size_t nfields, fields_cap;
};

struct sl_replay_feed {
    int fd;
    struct sl_replay_parser *parser;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t filled_cond, consumed_cond;
    struct batch batches[NBATCH];
    size_t filled, consumed;
    bool holding; /* the caller holds batches[consumed % NBATCH] */
    bool end;     /* the reader has handed over its last batch */
    bool stop;    /* the caller wants no more */
    int error;    /* errno of the reader's failure, or 0 */
};

/* ---- the reader's side ---- */

/* A batch to fill, waiting for one; NULL when the caller stopped. */
static struct batch *take_empty(struct sl_replay_feed *f)
{
    struct batch *b = NULL;

    pthread_mutex_lock(&f->lock);
    while (f->filled - f->consumed == NBATCH && !f->stop)
        pthread_cond_wait(&f->consumed_cond, &f->lock);
    if (!f->stop)
        b = &f->batches[f->filled % NBATCH];
    pthread_mutex_unlock(&f->lock);
    if (b) {
        b->pub.n = 0;
        b->text_len = 0;
        b->used = 0;
        b->nfields = 0;
    }
    return b;
}

/* The fields array may have moved while the batch grew: the records learn where theirs
 * are only now. */
static void hand_over(struct sl_replay_feed *f, struct batch *b)
{
    size_t at = 0;
    for (size_t i = 0; i < b->pub.n; i++) {
        struct sl_replay_line *l = &b->pub.lines[i];
        if (l->usable) {
            l->rec.fields = l->rec.nfields ? b->fields + at : NULL;
            at += l->rec.nfields;
        }
    }
    pthread_mutex_lock(&f->lock);
    f->filled++;
    pthread_cond_signal(&f->filled_cond);
    pthread_mutex_unlock(&f->lock);
}

static void keep_text(struct batch *b, struct sl_replay_text *t)
{
    if (!t->s || (t->s >= b->text && t->s + t->n <= b->text + b->text_len))
        return;
    char *d = b->bytes + b->used;
    memcpy(d, t->s, t->n);
    b->used += t->n;
    t->s = d;
}

/* Keeps what `rec` points to outside the batch's text (the parser's arena and fields). */
static int keep(struct batch *b, struct sl_replay_record *rec)
{
    keep_text(b, &rec->client);
    keep_text(b, &rec->method);
    keep_text(b, &rec->path);
    keep_text(b, &rec->decision);
    if (!rec->nfields)
        return 0;
    if (b->fields_cap - b->nfields < rec->nfields) {
        size_t cap = 2 * b->fields_cap + rec->nfields;
        struct sl_replay_field *fields = realloc(b->fields, cap * sizeof *fields);
        if (!fields)
            return -1;
        b->fields = fields;
        b->fields_cap = cap;
    }
    struct sl_replay_field *fields = b->fields + b->nfields;
    for (size_t i = 0; i < rec->nfields; i++) {
        fields[i] = rec->fields[i];
        keep_text(b, &fields[i].name);
        keep_text(b, &fields[i].value);
    }
    b->nfields += rec->nfields;
    return 0;
}

/* Parses one line of b's text into the batch. `offset` is where the line ends in the
 * log. Returns 0, or -1 on ENOMEM (f->error set). */
static int add_line(struct sl_replay_feed *f, struct batch *b, const char *line, size_t len,
                    uint64_t offset)
{
    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len == 0)
        return 0;
    if (b->pub.n == b->lines_cap) {
        size_t cap = 2 * b->lines_cap;
        struct sl_replay_line *lines = realloc(b->pub.lines, cap * sizeof *lines);
        if (!lines)
            goto oom;
        b->pub.lines = lines;
        b->lines_cap = cap;
    }
    struct sl_replay_line *l = &b->pub.lines[b->pub.n++];
    l->usable = sl_replay_parse_line(f->parser, line, len, &l->rec) == 0;
    if (l->usable && keep(b, &l->rec) < 0)
        goto oom;
    b->pub.offset = offset;
    return 0;
oom:
    f->error = ENOMEM;
    return -1;
}

/* Doubles the text of a batch that has no lines yet, and its bytes with it. */
static int grow(struct batch *b)
{
    size_t cap = 2 * b->text_cap;
    char *text = realloc(b->text, cap);
    if (!text)
        return -1;
    b->text = text;
    char *bytes = realloc(b->bytes, cap);
    if (!bytes)
        return -1;
    b->bytes = bytes;
    b->text_cap = cap;
    return 0;
}

/* Makes room in a batch whose text is full. A batch with lines is handed over and the
 * line it ends in the middle of moves to the next; one without (a line longer than its
 * text) grows, for nothing points into it yet. Returns the batch to read into, or NULL
 * when the caller stopped or on ENOMEM. */
static struct batch *make_room(struct sl_replay_feed *f, struct batch *b, size_t *start,
                               uint64_t *base)
{
    if (b->pub.n) {
        hand_over(f, b);
        struct batch *next = take_empty(f);
        if (!next)
            return NULL;
        size_t rest = b->text_len - *start;
        while (next->text_cap < rest)
            if (grow(next) < 0)
                goto oom;
        /* The caller reads only records, never the text past the last line. */
        memcpy(next->text, b->text + *start, rest);
        next->text_len = rest;
        *base += *start;
        *start = 0;
        b = next;
        if (b->text_len < b->text_cap)
            return b;
    }
    if (grow(b) == 0)
        return b;
oom:
    f->error = ENOMEM;
    return NULL;
}

/* Reads the log into batch after batch and parses each line; a last line without a
 * newline counts too. */
static void read_log(struct sl_replay_feed *f)
{
    struct batch *b = take_empty(f);
    uint64_t base = 0; /* offset in the log of b->text[0] */
    size_t start = 0;  /* where b's text not yet split into lines begins */

    if (!b)
        return;
    for (;;) {
        if (b->text_len == b->text_cap && !(b = make_room(f, b, &start, &base)))
            return;
        ssize_t n = read(f->fd, b->text + b->text_len, b->text_cap - b->text_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            f->error = errno;
            return;
        }
        if (n == 0)
            break;
        b->text_len += (size_t)n;
        for (;;) {
            char *nl = memchr(b->text + start, '\n', b->text_len - start);
            if (!nl)
                break;
            size_t end = (size_t)(nl - b->text);
            if (add_line(f, b, b->text + start, end - start, base + end + 1) < 0)
                return;
            start = end + 1;
        }
    }
    if (start < b->text_len &&
        add_line(f, b, b->text + start, b->text_len - start, base + b->text_len) < 0)
        return;
    if (b->pub.n)
        hand_over(f, b);
}

static void *reader_main(void *arg)
{
    struct sl_replay_feed *f = arg;

    read_log(f);
    pthread_mutex_lock(&f->lock);
    f->end = true;
    pthread_cond_signal(&f->filled_cond);
    pthread_mutex_unlock(&f->lock);
    return NULL;
}

/* ---- the caller's side ---- */

static void feed_free(struct sl_replay_feed *f)
{
    for (size_t i = 0; i < NBATCH; i++) {
        free(f->batches[i].pub.lines);
        free(f->batches[i].text);
        free(f->batches[i].bytes);
        free(f->batches[i].fields);
    }
    sl_replay_parser_free(f->parser);
    pthread_cond_destroy(&f->filled_cond);
    pthread_cond_destroy(&f->consumed_cond);
    pthread_mutex_destroy(&f->lock);
    free(f);
}

struct sl_replay_feed *sl_replay_feed_start(int fd)
{
    struct sl_replay_feed *f = calloc(1, sizeof *f);

    if (!f)
        return NULL;
    f->fd = fd;
    pthread_mutex_init(&f->lock, NULL);
    pthread_cond_init(&f->filled_cond, NULL);
    pthread_cond_init(&f->consumed_cond, NULL);
    if (!(f->parser = sl_replay_parser_new()))
        goto fail;
    for (size_t i = 0; i < NBATCH; i++) {
        struct batch *b = &f->batches[i];
        b->pub.lines = malloc(LINES_CAP * sizeof *b->pub.lines);
        b->text = malloc(TEXT_CAP);
        b->bytes = malloc(TEXT_CAP);
        if (!b->pub.lines || !b->text || !b->bytes)
            goto fail;
        b->lines_cap = LINES_CAP;
        b->text_cap = TEXT_CAP;
    }
    if (pthread_create(&f->thread, NULL, reader_main, f) != 0)
        goto fail;
    return f;
fail:
    feed_free(f);
    return NULL;
}

const struct sl_replay_batch *sl_replay_feed_next(struct sl_replay_feed *f)
{
    const struct sl_replay_batch *b = NULL;

    pthread_mutex_lock(&f->lock);
    if (f->holding) {
        f->holding = false;
        f->consumed++;
        pthread_cond_signal(&f->consumed_cond);
    }
    while (f->consumed == f->filled && !f->end)
        pthread_cond_wait(&f->filled_cond, &f->lock);
    if (f->consumed < f->filled) {
        f->holding = true;
        b = &f->batches[f->consumed % NBATCH].pub;
    }
    pthread_mutex_unlock(&f->lock);
    return b;
}

int sl_replay_feed_finish(struct sl_replay_feed *f)
{
    pthread_mutex_lock(&f->lock);
    f->stop = true;
    pthread_cond_signal(&f->consumed_cond);
    pthread_mutex_unlock(&f->lock);
    pthread_join(f->thread, NULL);
    int error = f->error;
    feed_free(f);
    if (error) {
        errno = error;
        return -1;
    }
    return 0;
}
