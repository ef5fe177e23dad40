/* Diagnostics to stderr, one line each: "sluice: <level>: message". Thread-safe. */
#ifndef SLUICE_LOG_H
#define SLUICE_LOG_H

#include "sluice/config.h"

/* Messages above `level` are dropped. Default SL_LOG_INFO. */
void sl_log_set_level(enum sl_log_level level);

void sl_log(enum sl_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sl_log_error(...) sl_log(SL_LOG_ERROR, __VA_ARGS__)
#define sl_log_warn(...) sl_log(SL_LOG_WARN, __VA_ARGS__)
#define sl_log_info(...) sl_log(SL_LOG_INFO, __VA_ARGS__)
#define sl_log_debug(...) sl_log(SL_LOG_DEBUG, __VA_ARGS__)

#endif
