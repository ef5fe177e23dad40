/* Parsers for the scalar forms of the configuration. Each returns 0 on success and -1
 * when `text` has not the expected form; none allocates unless it says so. */
#ifndef SLUICE_CONFIG_PARSE_H
#define SLUICE_CONFIG_PARSE_H

#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"

/* "250ms", "2s", "5m", "1h", "1d" -> milliseconds. */
int sl_parse_duration_ms(const char *text, uint64_t *out_ms);

/* "512", "16k", "1m", "1g" (powers of 1024) -> bytes. */
int sl_parse_size(const char *text, uint64_t *out_bytes);

/* "100/s", "5/1m", "1000/h", "20/10s", "10/250ms", and the unit words "5/minute",
 * "100/second", "1000/hours", "10/2days" -> N > 0 and P > 0 in microseconds. */
int sl_parse_rate(const char *text, uint64_t *out_count, uint64_t *out_period_us);

/* A per-consumer rate (`rates:`): what sl_parse_rate takes, "unlimited" (count
 * SL_RATE_UNLIMITED, period 0) or "0/unit" (count 0: always denied). */
int sl_parse_plan_rate(const char *text, struct sl_rate *out);

/* Writes a rate as the file would: "unlimited", "100/s", "5/10m", "0/h". Returns the length
 * snprintf would (the text is cut to `size`). */
int sl_format_rate(uint64_t count, uint64_t period_us, char *buf, size_t size);

/* "host:port", "[v6]:port", "unix:/path" (numeric hosts and "localhost"). Fills `out`,
 * copying `text` into out->text (owned by `out`, released by sl_sockaddr_deinit). */
int sl_parse_sockaddr(const char *text, struct sl_sockaddr *out);
void sl_sockaddr_deinit(struct sl_sockaddr *addr);
/* Whether two parsed addresses are the same socket address (the text aside). */
bool sl_sockaddr_same(const struct sl_sockaddr *a, const struct sl_sockaddr *b);

/* Expands ${VAR} and ${VAR:-default} from the environment. On success `*out` is a new
 * malloc'd string. On failure returns -1 and `*out` is a malloc'd message naming the
 * problem (unset variable without default, unterminated ${). The caller frees `*out`. */
int sl_expand_env(const char *text, char **out);

#endif
