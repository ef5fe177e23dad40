/* gRPC in sluice's own answers (grpc/doc/PROTOCOL-HTTP2.md): which requests are gRPC, the
 * grpc-status an answer of sluice's maps to, and the fields of a trailers-only response, the
 * form in which gRPC servers and Envoy answer a call without a message. A gRPC client reads
 * its status there and not in the HTTP status, which is 200. */
#ifndef SLUICE_HTTP_GRPC_H
#define SLUICE_HTTP_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sl_exchange;
struct sl_request;
struct sl_text;
struct sl_textbuf;

/* The gRPC status codes of sluice's answers (grpc/doc/statuscodes.md). */
enum sl_grpc_status {
    SL_GRPC_UNKNOWN = 2,
    SL_GRPC_DEADLINE_EXCEEDED = 4,
    SL_GRPC_RESOURCE_EXHAUSTED = 8,
    SL_GRPC_UNIMPLEMENTED = 12,
    SL_GRPC_INTERNAL = 13,
    SL_GRPC_UNAVAILABLE = 14,
};

/* True when a content-type field value names gRPC: "application/grpc" alone, with a
 * "+format" suffix ("+proto", "+json") or with parameters, in any case (RFC 9110 8.3.1). */
bool sl_grpc_content_type(const char *value, size_t len);

/* The grpc-status for sluice's own answer `http_status`, a limit's denial aside (that one
 * is response.grpc_status): 502 and 503 UNAVAILABLE; 504 and 408 DEADLINE_EXCEEDED; 413,
 * 431 and 429 RESOURCE_EXHAUSTED; 405 and 501 UNIMPLEMENTED; 400 INTERNAL; else UNKNOWN. */
int sl_grpc_status_of(int http_status);

/* Appends `n` bytes of `s` as a grpc-message value: bytes outside 0x20-0x7E, and '%', as
 * %XX with upper-case hex; the rest as they are. */
void sl_grpc_percent_encode(struct sl_text *t, const char *s, size_t n);

/* Appends the fields of sluice's trailers-only answer to the gRPC request of `x`, as
 * "name: value\r\n" lines: content-type, grpc-status, grpc-message, then `headers` (the
 * verdict's lines: RateLimit fields, Retry-After; may be NULL). `status` is the HTTP status
 * a request of another kind would get; the grpc-status is response.grpc_status when that
 * status is a limit's denial, else sl_grpc_status_of(). The message is `body`, the JSON
 * body other clients would get; NULL or empty: {"error":"<name of status>"}. */
void sl_grpc_answer(struct sl_text *t, const struct sl_exchange *x, int status,
                    const struct sl_textbuf *headers, const struct sl_textbuf *body);

/* The call's grpc-timeout (at most 8 digits and a unit, H M S m u n) in microseconds; 0 when
 * absent or malformed. The last field of the name counts, as for any repeated field. */
uint64_t sl_grpc_timeout_us(const struct sl_request *r);

#endif
