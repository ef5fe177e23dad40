/* Progress of `sluice replay` on a terminal (replay.h). The line goes to stderr with a
 * carriage return and no newline, so each update overwrites the last; write(2) rather
 * than stdio, so that nothing of it waits in a buffer behind the report. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "replay.h"

/* Often enough to look alive, rarely enough that the terminal costs nothing. */
#define INTERVAL_NS 250000000u

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void sl_replay_progress_init(struct sl_replay_progress *pg, int log_fd)
{
    struct stat st;

    memset(pg, 0, sizeof *pg);
    pg->on = isatty(STDERR_FILENO) == 1;
    if (!pg->on)
        return;
    if (fstat(log_fd, &st) == 0 && S_ISREG(st.st_mode)) {
        off_t at = lseek(log_fd, 0, SEEK_CUR);
        if (at >= 0 && at < st.st_size)
            pg->size = (uint64_t)(st.st_size - at);
    }
    pg->start_ns = now_ns();
    pg->next_ns = pg->start_ns + INTERVAL_NS;
}

static void put(struct sl_replay_progress *pg, const char *text, size_t n)
{
    while (n) {
        ssize_t w = write(STDERR_FILENO, text, n);
        if (w <= 0) {
            pg->on = false; /* a terminal that cannot be written to is left alone */
            return;
        }
        text += w;
        n -= (size_t)w;
    }
}

/* "42s" or "3m07s" or "2h05m". */
static void format_left(char *out, size_t cap, uint64_t s)
{
    if (s < 60)
        snprintf(out, cap, "%" PRIu64 "s", s);
    else if (s < 3600)
        snprintf(out, cap, "%" PRIu64 "m%02" PRIu64 "s", s / 60, s % 60);
    else
        snprintf(out, cap, "%" PRIu64 "h%02" PRIu64 "m", s / 3600, s / 60 % 60);
}

void sl_replay_progress_update(struct sl_replay_progress *pg, uint64_t lines, uint64_t offset)
{
    if (!pg->on)
        return;
    uint64_t now = now_ns();
    if (now < pg->next_ns)
        return;
    pg->next_ns = now + INTERVAL_NS;

    double elapsed = (double)(now - pg->start_ns) / 1e9;
    char left[32] = "unknown";
    if (pg->size && offset && offset <= pg->size)
        format_left(left, sizeof left,
                    (uint64_t)(elapsed * (double)(pg->size - offset) / (double)offset + 0.5));
    char line[160];
    int n = snprintf(line, sizeof line, "\rreplay: %" PRIu64 " lines, %.0f lines/s, %s left", lines,
                     (double)lines / elapsed, left);
    if (n <= 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    /* Blanks over what a longer line before left on the terminal. */
    size_t pad = pg->shown + 1 > len ? pg->shown + 1 - len : 0;
    if (pad > sizeof line - 1 - len)
        pad = sizeof line - 1 - len;
    memset(line + len, ' ', pad);
    len += pad;
    put(pg, line, len);
    pg->shown = len - 1;
}

void sl_replay_progress_clear(struct sl_replay_progress *pg)
{
    char blank[160];

    if (!pg->on || pg->shown == 0)
        return;
    size_t n = pg->shown < sizeof blank - 2 ? pg->shown : sizeof blank - 2;
    blank[0] = '\r';
    memset(blank + 1, ' ', n);
    blank[n + 1] = '\r';
    put(pg, blank, n + 2);
    pg->shown = 0;
}
