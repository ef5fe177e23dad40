/* One ShouldRateLimit call from its request body to its answer: the gRPC framing
 * (grpc/doc/PROTOCOL-HTTP2.md, Length-Prefixed-Message), the message decoded by protobuf-c,
 * the decision (rls_decide.c) and the answer (rls_answer.c).
 *
 * A unary call's body is exactly one message. Anything else is the client's error and is
 * answered as grpc-go answers it: a message past SL_RLS_MAX_MESSAGE RESOURCE_EXHAUSTED, a
 * compressed one (no grpc-encoding is accepted) UNIMPLEMENTED, a body that is not one whole
 * message or bytes that are not a RateLimitRequest INVALID_ARGUMENT. protobuf-c checks the
 * wire format and skips unknown fields; a message it refuses is never decided. */
#include <event2/buffer.h>

#include "envoy/service/ratelimit/v3/rls.pb-c.h"
#include "sluice/rls.h"

int64_t sl_rls_announced(struct evbuffer *body)
{
    uint8_t h[5];
    if (evbuffer_copyout(body, h, 5) < 5)
        return -1;
    return (int64_t)((uint32_t)h[1] << 24 | (uint32_t)h[2] << 16 | (uint32_t)h[3] << 8 | h[4]);
}

static void fail(sl_rls_reply_cb cb, void *arg, int status, const char *message)
{
    struct sl_rls_reply reply = {status, message, NULL};
    cb(arg, &reply);
}

void sl_rls_serve(const struct sl_rls_env *env, const struct sl_config *cfg, struct evbuffer *body,
                  sl_rls_reply_cb cb, void *arg)
{
    size_t have = evbuffer_get_length(body);
    int64_t len = sl_rls_announced(body);
    uint8_t flags = 0;

    if (len < 0) {
        evbuffer_drain(body, have);
        fail(cb, arg, SL_RLS_GRPC_INVALID_ARGUMENT, "the request is not one gRPC message");
        return;
    }
    evbuffer_copyout(body, &flags, 1);
    if (len > SL_RLS_MAX_MESSAGE) {
        evbuffer_drain(body, have);
        fail(cb, arg, SL_RLS_GRPC_RESOURCE_EXHAUSTED,
             "the request message is larger than the 1 MiB the service takes");
        return;
    }
    if (flags != 0) {
        evbuffer_drain(body, have);
        fail(cb, arg, flags == 1 ? SL_RLS_GRPC_UNIMPLEMENTED : SL_RLS_GRPC_INVALID_ARGUMENT,
             flags == 1 ? "compressed messages are not accepted" : "bad message flags");
        return;
    }
    if ((uint64_t)len + 5 != have) {
        evbuffer_drain(body, have);
        fail(cb, arg, SL_RLS_GRPC_INVALID_ARGUMENT,
             "the request body is not exactly one gRPC message");
        return;
    }
    evbuffer_drain(body, 5);
    /* protobuf-c reads flat memory; a message is at most 1 MiB. */
    const uint8_t *msg = len ? evbuffer_pullup(body, len) : (const uint8_t *)"";
    Envoy__Service__Ratelimit__V3__RateLimitRequest *req =
        msg ? envoy__service__ratelimit__v3__rate_limit_request__unpack(NULL, (size_t)len, msg)
            : NULL;
    evbuffer_drain(body, (size_t)len);
    if (!req) {
        fail(cb, arg, msg ? SL_RLS_GRPC_INVALID_ARGUMENT : SL_RLS_GRPC_INTERNAL,
             msg ? "the request message is not a RateLimitRequest" : "out of memory");
        return;
    }
    int status;
    const char *message;
    if (sl_rls_decide(env, cfg, req, cb, arg, &status, &message) < 0)
        fail(cb, arg, status, message);
}
