/* Envoy's rate limit service, answered (SPEC.md section 12; src/rls/README.md): one
 * ShouldRateLimit call from its gRPC request message to its gRPC answer.
 *
 *   sl_rls_serve()   the call's body (5-byte gRPC prefix + RateLimitRequest) in, the answer
 *                    out: rls_serve.c
 *   sl_rls_decide()  each descriptor's limit found and decided on a store: rls_decide.c
 *   sl_rls_answer()  the decisions as a RateLimitResponse: rls_answer.c
 *
 * Nothing here knows HTTP/2: the codec (src/http/h2_rls.c) hands over the body and writes
 * the answer. Worker thread only, but for what the stores allow. */
#ifndef SLUICE_RLS_H
#define SLUICE_RLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/rls_config.h"
#include "sluice/store.h"

struct evbuffer;
struct sl_metrics_slot;

/* The gRPC path of the one method served, and the largest request message taken. */
#define SL_RLS_PATH "/envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit"
#define SL_RLS_MAX_MESSAGE (1024 * 1024)

/* gRPC status codes of the service's own answers (grpc/doc/statuscodes.md). */
enum sl_rls_grpc {
    SL_RLS_GRPC_OK = 0,
    SL_RLS_GRPC_UNKNOWN = 2,
    SL_RLS_GRPC_INVALID_ARGUMENT = 3,
    SL_RLS_GRPC_RESOURCE_EXHAUSTED = 8,
    SL_RLS_GRPC_UNIMPLEMENTED = 12,
    SL_RLS_GRPC_INTERNAL = 13,
};

/* Where decisions are made: borrowed, and living as long as any call on them. */
struct sl_rls_env {
    struct sl_store *store;          /* the worker's Redis store, or the service's memory store */
    struct sl_store *local;          /* failure_mode local: the service's memory store */
    enum sl_store_kind store_kind;   /* of `store`, for the metrics */
    uint64_t (*clock_us)(void);      /* epoch µs (CLOCK_REALTIME), for limits no store decides */
    struct sl_metrics_slot *metrics; /* may be NULL */
    struct sl_top_slot *top;         /* may be NULL */
    unsigned thread;                 /* the worker's index, for the top sketches */
};

/* RateLimitResponse.Code. */
enum sl_rls_code { SL_RLS_UNKNOWN = 0, SL_RLS_OK = 1, SL_RLS_OVER_LIMIT = 2 };

/* One descriptor's answer, DescriptorStatus. */
struct sl_rls_status {
    enum sl_rls_code code;
    bool has_limit;             /* current_limit and duration_until_reset are set */
    uint32_t requests_per_unit; /* current_limit */
    enum sl_rls_unit unit;
    const char *name; /* current_limit.name; borrowed from the configuration */
    uint32_t limit_remaining;
    uint64_t reset_us;  /* duration_until_reset */
    bool whole_seconds; /* reset as ratelimit gives it: seconds only */
    bool quota_mode;
};

/* A call's decisions, all made: filled by sl_rls_decide() and read by its callback. */
struct sl_rls_result {
    enum sl_rls_code overall;
    bool store_error;               /* some decision's store failed (failure_mode applied) */
    struct sl_rls_status *statuses; /* one per request descriptor; owned by the call */
    size_t nstatuses;
    bool headers; /* response_headers: the three below are set */
    uint32_t header_limit, header_remaining;
    uint64_t header_reset_s;
    const char *domain; /* the metrics' label: a domain of the files, or "" */
};

/* The answer of one call: grpc_status 0 with the decisions in `result` (valid during the
 * callback only; sl_rls_answer() writes them as the response message), or an error status
 * and its message (a static string) with `result` NULL. */
struct sl_rls_reply {
    int grpc_status;
    const char *grpc_message;
    const struct sl_rls_result *result;
};

typedef void (*sl_rls_reply_cb)(void *arg, const struct sl_rls_reply *reply);

/* Decides `req` (a RateLimitRequest as protobuf-c unpacked it; ownership taken: freed once
 * decided) under `cfg` (its rls files, failure_mode, admin.top; borrowed until the callback:
 * the caller holds a reference). Returns 0 and calls `cb` exactly once with status 0 and the
 * result, possibly before returning; or -1 with `*grpc`/`*message` the error the call is
 * answered with (the request freed, `cb` never called): an empty domain or no descriptors
 * (UNKNOWN, as ratelimit), an override with a unit the API does not define
 * (INVALID_ARGUMENT), ENOMEM (INTERNAL). One allocation per call, besides protobuf-c's and
 * each decided descriptor's key. */
int sl_rls_decide(const struct sl_rls_env *env, const struct sl_config *cfg, void *req,
                  sl_rls_reply_cb cb, void *arg, int *grpc, const char **message);

/* Appends the 5-byte gRPC prefix and the RateLimitResponse of `r` to `out`. Returns 0, or -1
 * on ENOMEM. */
int sl_rls_answer(const struct sl_rls_result *r, struct evbuffer *out);

/* Serves one ShouldRateLimit call: `body` holds its whole request body as the client sent
 * it (drained here). A body that is not one gRPC message of at most SL_RLS_MAX_MESSAGE
 * bytes, uncompressed, holding a RateLimitRequest is answered INVALID_ARGUMENT (or
 * RESOURCE_EXHAUSTED past the bound), never decided. Calls `cb` exactly once, possibly
 * before returning. `cfg` as for sl_rls_decide. */
void sl_rls_serve(const struct sl_rls_env *env, const struct sl_config *cfg, struct evbuffer *body,
                  sl_rls_reply_cb cb, void *arg);

/* What a gRPC prefix at the start of `body` announces, for a codec collecting a body: the
 * message length when its 5 bytes have come, else -1. */
int64_t sl_rls_announced(struct evbuffer *body);

#endif
