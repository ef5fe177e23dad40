/* The access log read and parsed on a thread of its own, ahead of the engine.
 *
 * Parsing a line (yajl) and deciding it (routes, keys, store) cost about the same, and
 * only the deciding must happen in file order on one thread: the reader thread splits
 * and parses lines into a ring of NBATCH batches while the caller decides the previous
 * ones. A batch owns copies of the strings and fields its records point to, so neither
 * the read buffer nor the parser's arena has to outlive the line.
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

/* Small enough that the ring and the read buffer stay in the cores' caches (1024 lines of
 * 200 bytes fill a quarter of a batch's bytes). */
#define NBATCH 4
#define BATCH_LINES 1024
/* Copies of a line's strings are never longer than the line; a line longer than this
 * gets a batch of its own, grown to fit. */
#define BATCH_BYTES (256u << 10)
#define BATCH_FIELDS (8 * SL_REPLAY_MAX_FIELDS)
#define READ_CHUNK (256u << 10)

struct batch {
    struct sl_replay_batch pub;
    char *bytes;
    size_t used, cap;
    struct sl_replay_field *fields;
    size_t nfields;
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
        b->used = 0;
        b->nfields = 0;
    }
    return b;
}

static void hand_over(struct sl_replay_feed *f)
{
    pthread_mutex_lock(&f->lock);
    f->filled++;
    pthread_cond_signal(&f->filled_cond);
    pthread_mutex_unlock(&f->lock);
}

static void keep_text(struct batch *b, struct sl_replay_text *t)
{
    if (!t->s)
        return;
    char *d = b->bytes + b->used;
    memcpy(d, t->s, t->n);
    b->used += t->n;
    t->s = d;
}

/* Copies what `rec` points to (the line, the parser's arena and fields) into the batch. */
static void keep(struct batch *b, struct sl_replay_record *rec)
{
    keep_text(b, &rec->client);
    keep_text(b, &rec->method);
    keep_text(b, &rec->path);
    keep_text(b, &rec->decision);
    struct sl_replay_field *fields = b->fields + b->nfields;
    for (size_t i = 0; i < rec->nfields; i++) {
        fields[i] = rec->fields[i];
        keep_text(b, &fields[i].name);
        keep_text(b, &fields[i].value);
    }
    rec->fields = fields;
    b->nfields += rec->nfields;
}

/* Parses one line into the batch being filled (*bp), handing it over first when the line
 * might not fit. `offset` is where the line ends in the log. Returns 0, or -1 when the
 * caller stopped or on ENOMEM (f->error set). */
static int add_line(struct sl_replay_feed *f, struct batch **bp, const char *line, size_t len,
                    uint64_t offset)
{
    struct batch *b = *bp;

    while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
        len--;
    if (len == 0)
        return 0;
    if (b && (b->pub.n == BATCH_LINES || b->cap - b->used < len ||
              BATCH_FIELDS - b->nfields < SL_REPLAY_MAX_FIELDS)) {
        hand_over(f);
        b = *bp = NULL;
    }
    if (!b && !(b = *bp = take_empty(f)))
        return -1;
    if (b->cap < len) {
        /* Empty, since the line did not fit: no record points into the bytes yet. */
        char *bytes = realloc(b->bytes, len);
        if (!bytes) {
            f->error = ENOMEM;
            return -1;
        }
        b->bytes = bytes;
        b->cap = len;
    }
    struct sl_replay_line *l = &b->pub.lines[b->pub.n++];
    l->usable = sl_replay_parse_line(f->parser, line, len, &l->rec) == 0;
    if (l->usable)
        keep(b, &l->rec);
    b->pub.offset = offset;
    return 0;
}

/* Reads the log in large chunks and parses each line; a last line without a newline
 * counts too. */
static void read_log(struct sl_replay_feed *f)
{
    size_t cap = READ_CHUNK, len = 0;
    uint64_t base = 0; /* offset in the log of buf[0] */
    char *buf = malloc(cap);
    struct batch *b = NULL;

    if (!buf) {
        f->error = ENOMEM;
        return;
    }
    for (;;) {
        if (cap - len < READ_CHUNK / 2) {
            char *bigger = realloc(buf, cap * 2);
            if (!bigger) {
                f->error = ENOMEM;
                goto done;
            }
            buf = bigger;
            cap *= 2;
        }
        ssize_t n = read(f->fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            f->error = errno;
            goto done;
        }
        if (n == 0)
            break;
        len += (size_t)n;
        size_t start = 0;
        for (;;) {
            char *nl = memchr(buf + start, '\n', len - start);
            if (!nl)
                break;
            size_t end = (size_t)(nl - buf);
            if (add_line(f, &b, buf + start, end - start, base + end + 1) < 0)
                goto done;
            start = end + 1;
        }
        memmove(buf, buf + start, len - start);
        len -= start;
        base += start;
    }
    if (len && add_line(f, &b, buf, len, base + len) < 0)
        goto done;
done:
    if (b && !f->error)
        hand_over(f);
    free(buf);
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
        b->pub.lines = malloc(BATCH_LINES * sizeof *b->pub.lines);
        b->bytes = malloc(BATCH_BYTES);
        b->fields = malloc(BATCH_FIELDS * sizeof *b->fields);
        if (!b->pub.lines || !b->bytes || !b->fields)
            goto fail;
        b->cap = BATCH_BYTES;
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
