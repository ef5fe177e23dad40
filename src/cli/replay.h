/* `sluice replay`: an access log read line by line (replay_log.c), run through the
 * engine on a fresh memory store with the log's own clock (replay.c), and counted per
 * route and limit (replay_stats.c). */
#ifndef SLUICE_CLI_REPLAY_H
#define SLUICE_CLI_REPLAY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/engine.h"
#include "sluice/limit.h"

/* ---- one line of the access log ---- */

/* Headers and cookies a line's "key_fields" records (access_log_key_fields). */
#define SL_REPLAY_MAX_FIELDS 64

struct sl_replay_text {
    const char *s; /* NULL when the line has no such member */
    size_t n;
};

/* One member of "key_fields": "host", "header:NAME" or "cookie:NAME"; `value.s` is NULL
 * when the request had none (the member is null). */
struct sl_replay_field {
    enum sl_key_kind kind;      /* SL_KEY_HOST, SL_KEY_HEADER or SL_KEY_COOKIE */
    struct sl_replay_text name; /* NAME; empty for host */
    struct sl_replay_text value;
};

struct sl_replay_record {
    uint64_t ts_us; /* "ts" as microseconds since the Unix epoch */
    struct sl_replay_text client, method, path, decision;
    bool has_key_fields;
    struct sl_replay_field *fields; /* nfields of them, at most SL_REPLAY_MAX_FIELDS */
    size_t nfields;
};

struct sl_replay_parser;

/* NULL on ENOMEM. */
struct sl_replay_parser *sl_replay_parser_new(void);
void sl_replay_parser_free(struct sl_replay_parser *p);

/* Parses one line (without its newline) into `rec`, whose strings and fields stay valid
 * until the next call. Returns 0, or -1 when the line is not one JSON object with a valid "ts" and
 * string "client", "method" and "path" members (or on ENOMEM). */
int sl_replay_parse_line(struct sl_replay_parser *p, const char *line, size_t len,
                         struct sl_replay_record *rec);

/* "YYYY-MM-DDTHH:MM:SS.mmmZ" (as the access log writes it; the fraction may have 0 to 9
 * digits) as microseconds since the epoch. Returns 0 or -1. */
int sl_replay_parse_ts(const char *s, size_t n, uint64_t *us);

/* ---- the log, read and parsed on a thread of its own ---- */

/* One non-empty line of the log; `rec` is meaningful only when `usable`. */
struct sl_replay_line {
    bool usable;
    struct sl_replay_record rec;
};

/* Consecutive lines, in file order, with the strings and fields they point to. */
struct sl_replay_batch {
    struct sl_replay_line *lines;
    size_t n;
    uint64_t offset; /* bytes of the log up to the end of the last line */
};

struct sl_replay_feed;

/* Starts a thread that reads `fd` (borrowed) to its end, parses each line and hands the
 * lines over in batches, a few batches ahead of the caller. NULL on ENOMEM or when no
 * thread can be started. */
struct sl_replay_feed *sl_replay_feed_start(int fd);

/* The next batch, waiting for it, valid until the next call; NULL at the end of the log,
 * or when reading failed (sl_replay_feed_finish says). Called from one thread only. */
const struct sl_replay_batch *sl_replay_feed_next(struct sl_replay_feed *f);

/* Stops the thread, at the end of the log or before it, and frees the feed. Returns 0, or
 * -1 with errno set when reading failed or memory ran out. */
int sl_replay_feed_finish(struct sl_replay_feed *f);

/* ---- progress on a terminal ---- */

/* A line on stderr, rewritten in place a few times a second: lines done, lines per second
 * and the time left (from the bytes read and the log's size). Off unless stderr is a
 * terminal, so pipes, files and tests see nothing. */
struct sl_replay_progress {
    bool on;
    uint64_t size;     /* bytes of the log still to read at the start; 0 when unknown */
    uint64_t start_ns; /* CLOCK_MONOTONIC */
    uint64_t next_ns;  /* the next time the line may be written */
    size_t shown;      /* characters of the line on the terminal */
};

/* `log_fd` is the log about to be read from its current offset. */
void sl_replay_progress_init(struct sl_replay_progress *pg, int log_fd);

/* After `lines` lines, `offset` bytes into the log: rewrites the line when its time has
 * come. Costs a clock read otherwise; call it every few thousand lines. */
void sl_replay_progress_update(struct sl_replay_progress *pg, uint64_t lines, uint64_t offset);

/* Erases the line, if one was written, before the report. */
void sl_replay_progress_clear(struct sl_replay_progress *pg);

/* ---- counting ---- */

/* The keys one limit denied, and how often, to report the ones denied most. */
struct sl_replay_keys;

/* A limit's decisions under one of its rates (`rates:`). */
struct sl_replay_rate_stats {
    uint64_t requests, admitted, delayed, denied;
};

struct sl_replay_limit_stats {
    uint64_t requests;     /* the limit was asked */
    uint64_t admitted;     /* admitted at once */
    uint64_t delayed;      /* admitted after a delay (leaky_bucket) */
    uint64_t denied;       /* denied (shadow limits: would have denied) */
    uint64_t not_recorded; /* a key source the line does not record */
    uint64_t absent;       /* a key source the request did not have */
    struct sl_replay_keys *keys;
    /* With `rates:`: [0] the limit's own rate, [1 + i] its rates->quotas[i]; owned. */
    struct sl_replay_rate_stats *rates;
};

struct sl_replay_route_stats {
    uint64_t requests, admitted, delayed, denied, shadow_limited, exempt, errors;
    uint64_t untestable; /* lines tried against the route whose host or header condition
                            the line does not record */
};

struct sl_replay_stats {
    uint64_t lines;     /* non-empty lines read */
    uint64_t unusable;  /* not an access log line */
    uint64_t undecided; /* answered by sluice before a route was chosen */
    uint64_t replayed;  /* run through the engine */
    uint64_t unmatched; /* of those, matching no route */
    uint64_t first_ts, last_ts;
    struct sl_replay_route_stats *routes; /* cfg->nroutes; owned */
    struct sl_replay_limit_stats *limits; /* cfg->nlimits, by sl_limit.index; owned */
};

int sl_replay_stats_init(struct sl_replay_stats *st, const struct sl_config *cfg);
void sl_replay_stats_deinit(struct sl_replay_stats *st, const struct sl_config *cfg);

/* Counts one denial of `key` by limit `ls`. Returns 0, or -1 on ENOMEM. */
int sl_replay_count_denied(struct sl_replay_limit_stats *ls, const char *key, size_t len);

struct sl_replay_top {
    const char *key;
    size_t len;
    uint64_t count;
};

/* Prints the report on stdout: text, or one JSON object when `json`. 0, or -1 on ENOMEM or
 * a write error. */
int sl_replay_report(const struct sl_replay_stats *st, const struct sl_config *cfg,
                     const char *log_name, bool json);

/* The `n` keys denied most, most first (ties by key), into `top`. Returns how many. */
size_t sl_replay_top_denied(const struct sl_replay_limit_stats *ls, struct sl_replay_top *top,
                            size_t n);

#endif
