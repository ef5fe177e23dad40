#include "sluice/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

static atomic_int log_level = SL_LOG_INFO;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

void sl_log_set_level(enum sl_log_level level)
{
    atomic_store(&log_level, (int)level);
}

void sl_log(enum sl_log_level level, const char *fmt, ...)
{
    if ((int)level > atomic_load_explicit(&log_level, memory_order_relaxed))
        return;
    /* One fprintf per line: stdio locks the stream, so lines of threads never interleave. */
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    fprintf(stderr, "sluice: %s: %s\n", level_names[level], line);
}
