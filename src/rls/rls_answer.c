/* A call's decisions as the RateLimitResponse message gRPC carries: the 5-byte prefix
 * (uncompressed, then the length, big-endian) and the message protobuf-c packs, written
 * straight into the stream's buffer. The message's parts are built on the stack, or in one
 * allocation for a call with many descriptors, and point into the result: nothing is
 * copied but by the packing. */
#include <event2/buffer.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envoy/service/ratelimit/v3/rls.pb-c.h"
#include "sluice/rls.h"

typedef Envoy__Service__Ratelimit__V3__RateLimitResponse Response;
typedef Envoy__Service__Ratelimit__V3__RateLimitResponse__DescriptorStatus Status;
typedef Envoy__Service__Ratelimit__V3__RateLimitResponse__RateLimit RateLimit;
typedef Envoy__Config__Core__V3__HeaderValue HeaderValue;
typedef Google__Protobuf__Duration Duration;

/* Statuses answered from the stack; more take one allocation. */
#define STACK_STATUSES 16

/* The parts of one status. */
struct part {
    Status status;
    RateLimit limit;
    Duration reset;
    Status *ptr;
};

static void fill(struct part *p, const struct sl_rls_status *s)
{
    p->status = (Status)ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__DESCRIPTOR_STATUS__INIT;
    p->status.code = (Envoy__Service__Ratelimit__V3__RateLimitResponse__Code)s->code;
    p->status.limit_remaining = s->limit_remaining;
    p->ptr = &p->status;
    if (!s->has_limit)
        return;
    p->limit = (RateLimit)ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__RATE_LIMIT__INIT;
    p->limit.requests_per_unit = s->requests_per_unit;
    p->limit.unit = (Envoy__Service__Ratelimit__V3__RateLimitResponse__RateLimit__Unit)s->unit;
    p->limit.name = (char *)(s->name ? s->name : "");
    p->reset = (Duration)GOOGLE__PROTOBUF__DURATION__INIT;
    if (s->whole_seconds) {
        p->reset.seconds = (int64_t)((s->reset_us + 999999) / 1000000);
    } else {
        p->reset.seconds = (int64_t)(s->reset_us / 1000000);
        p->reset.nanos = (int32_t)(s->reset_us % 1000000 * 1000);
    }
    p->status.current_limit = &p->limit;
    p->status.duration_until_reset = &p->reset;
}

int sl_rls_answer(const struct sl_rls_result *r, struct evbuffer *out)
{
    struct part stack[STACK_STATUSES], *parts = stack;
    Status *stack_ptrs[STACK_STATUSES], **ptrs = stack_ptrs;
    Response resp = ENVOY__SERVICE__RATELIMIT__V3__RATE_LIMIT_RESPONSE__INIT;
    HeaderValue h[3], *hp[3] = {&h[0], &h[1], &h[2]};
    char values[3][24];
    int rc = -1;

    if (r->nstatuses > STACK_STATUSES) {
        parts = calloc(r->nstatuses, sizeof *parts);
        ptrs = calloc(r->nstatuses, sizeof *ptrs);
        if (!parts || !ptrs)
            goto out;
    }
    for (size_t i = 0; i < r->nstatuses; i++) {
        fill(&parts[i], &r->statuses[i]);
        ptrs[i] = parts[i].ptr;
    }
    resp.overall_code = (Envoy__Service__Ratelimit__V3__RateLimitResponse__Code)r->overall;
    resp.n_statuses = r->nstatuses;
    resp.statuses = ptrs;
    if (r->headers) {
        static const char *const names[3] = {"x-ratelimit-limit", "x-ratelimit-remaining",
                                             "x-ratelimit-reset"};
        snprintf(values[0], sizeof values[0], "%u", r->header_limit);
        snprintf(values[1], sizeof values[1], "%u", r->header_remaining);
        snprintf(values[2], sizeof values[2], "%llu", (unsigned long long)r->header_reset_s);
        for (size_t i = 0; i < 3; i++) {
            h[i] = (HeaderValue)ENVOY__CONFIG__CORE__V3__HEADER_VALUE__INIT;
            h[i].key = (char *)names[i];
            h[i].value = values[i];
        }
        resp.n_response_headers_to_add = 3;
        resp.response_headers_to_add = hp;
    }

    size_t len = envoy__service__ratelimit__v3__rate_limit_response__get_packed_size(&resp);
    struct evbuffer_iovec v;
    if (len > UINT32_MAX || evbuffer_reserve_space(out, 5 + len, &v, 1) < 1)
        goto out;
    uint8_t *p = v.iov_base;
    p[0] = 0; /* not compressed */
    p[1] = (uint8_t)(len >> 24);
    p[2] = (uint8_t)(len >> 16);
    p[3] = (uint8_t)(len >> 8);
    p[4] = (uint8_t)len;
    envoy__service__ratelimit__v3__rate_limit_response__pack(&resp, p + 5);
    v.iov_len = 5 + len;
    rc = evbuffer_commit_space(out, &v, 1);

out:
    if (parts != stack)
        free(parts);
    if (ptrs != stack_ptrs)
        free(ptrs);
    return rc;
}
