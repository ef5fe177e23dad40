/* One request and its response, in no protocol: what routing, limits, charges, the access
 * log and metrics see. A client codec makes it and fills the request side; the response
 * side is filled as the answer passes. README.md beside this file gives the states and who
 * owns each buffer. Worker thread only. */
#ifndef SLUICE_HTTP_EXCHANGE_H
#define SLUICE_HTTP_EXCHANGE_H

#include <stdbool.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/engine.h"
#include "sluice/request.h"
#include "sluice/text.h"

/* The protocol the request arrived in, as the access log names it. */
enum sl_proto { SL_PROTO_10, SL_PROTO_11, SL_PROTO_2 };

struct evbuffer;
struct sl_exchange;
struct sl_upstream;
struct sl_worker;

/* A response head as the upstream codec received it, for the client codec to write. */
struct sl_response_head {
    int status;
    const char *reason;
    size_t reason_len;
    const struct sl_header *headers; /* the upstream's, hop-by-hop ones included */
    size_t nheaders;
    bool chunked;       /* the body follows in HTTP/1.1 chunked framing */
    bool ends_by_close; /* the body ends when the upstream closes */
    bool no_content;    /* a status without content: 1xx, 204, 304 (RFC 9112 6.3) */
    bool bodiless;      /* no body follows: no_content, or the answer to HEAD */
    bool upgrade;       /* an allowed 101: raw bytes follow both ways */
    /* The body follows as bare data (an HTTP/2 upstream): the client codec frames it,
     * by Content-Length when `content_length` is not -1, and client->response_end follows
     * the last byte, with any trailers. */
    bool unframed;
    int64_t content_length;
};

/* What the exchange asks of the client codec that made it. The codec finds its connection
 * or stream from the exchange (embedded in it); every call is made on the worker thread. */
struct sl_client_ops {
    /* The engine answered (x->verdict is set, x->decision_pending cleared). The codec guards
     * its connection as any callback of its own, then calls sl_exchange_act(x). */
    void (*verdict)(struct sl_exchange *x);
    /* sluice answers the request itself: `status` with the verdict's header lines and body
     * (`headers`, `body`: may be empty). The codec writes it, deals with any request body
     * still to come, and finishes the exchange. */
    void (*reply)(struct sl_exchange *x, int status, const struct sl_textbuf *headers,
                  const struct sl_textbuf *body);
    /* Admitted, any delay served: the codec sends what it owes the client first (100
     * Continue) and hands the exchange to the upstream. */
    void (*forward)(struct sl_exchange *x);
    /* Held by a leaky bucket: call sl_exchange_hold(x) again in `left_us`. */
    void (*hold)(struct sl_exchange *x, uint64_t left_us);

    /* What the upstream side asks, once forwarded. enter and leave bracket each of its
     * callbacks: the client's connection outlives the bracket. */
    void (*enter)(struct sl_exchange *x);
    void (*leave)(struct sl_exchange *x);
    /* sluice's own error (502, 504, 400, 413): answered if no response head went out,
     * else the client's connection is cut. The upstream is released first. */
    void (*fail)(struct sl_exchange *x, int status);
    /* Cuts the client's connection (a response broken mid-way). */
    void (*kill)(struct sl_exchange *x);
    /* Writes the response head (the verdict's header lines added) and returns where the
     * body goes; `*decode` asks for the body without its chunked framing. */
    struct evbuffer *(*response_head)(struct sl_exchange *x, const struct sl_response_head *r,
                                      bool *decode);
    void (*response_flush)(struct sl_exchange *x); /* write what the body buffer holds */
    void (*done)(struct sl_exchange *x);           /* the response is complete */
    void (*request_body)(struct sl_exchange *x);   /* the upstream took what it had */
    void (*tunnel)(struct sl_exchange *x);         /* bytes or an end on the upstream side */
    /* An unframed body is complete: ends its framing, with the `n` trailers (which the
     * client codec copies if it keeps them), before done. */
    void (*response_end)(struct sl_exchange *x, const struct sl_header *trailers, size_t n);
};

/* What the client side asks of the upstream codec carrying an exchange (x->upstream, set
 * by sl_exchange_upstream). Every call is made on the worker thread. */
struct sl_upstream_ops {
    /* Sends the request head on a pooled or new connection; the body follows through
     * `body`. On failure client->fail has been called and x->up is NULL. */
    void (*forward)(struct sl_exchange *x);
    /* Where request body bytes go, and in `*room` how many it takes now. At 0 the client
     * side sets x->req_blocked and waits for client->request_body. */
    struct evbuffer *(*body)(struct sl_exchange *x, size_t *room);
    /* Bytes were added to the body buffer, or x->req_done was set: send them. */
    void (*body_sent)(struct sl_exchange *x);
    /* The client side has room again (x->resp_blocked was cleared): relay what the
     * upstream sent and read on. */
    void (*resume)(struct sl_exchange *x);
    /* At the end of a client callback: read from the upstream only while there is room. */
    void (*sync)(struct sl_exchange *x);
    /* Detaches the upstream from x and closes or resets what carried it. */
    void (*release)(struct sl_exchange *x);
    /* Bodies cross as bare data, without HTTP/1.1 chunked framing, both ways. */
    bool unframed;
};

struct sl_exchange {
    const struct sl_client_ops *client;
    const struct sl_upstream_ops *upstream; /* from the first forward on */
    struct sl_worker *w;
    void *up; /* while forwarded: what carries it upstream, the upstream codec's */

    /* The request, set by the client codec before the engine sees it. `req` points into
     * the codec's head storage; `cfg` and `peer_text` are the codec's too, kept alive by it
     * for as long as the exchange lives. */
    struct sl_request req;
    struct sl_config *cfg;
    const char *peer_text; /* the peer's address as text, "" for a unix-socket peer */
    size_t peer_text_len;
    enum sl_proto proto;
    bool has_body, chunked, expect_continue, upgrade, is_head, idempotent;
    bool tls; /* the client connection is TLS: forwarded with X-Forwarded-Proto https */
    /* A gRPC call (content-type application/grpc…): sluice's own answers to it are
     * trailers-only gRPC responses (grpc.h), known once its head is checked. */
    bool grpc;

    /* The decision. `vheaders` and `vbody` are the verdict's buffers, kept allocated from
     * one exchange to the next where the codec reuses the exchange. */
    struct sl_verdict verdict;
    struct sl_textbuf vheaders, vbody;
    bool decision_pending; /* the engine owes a callback: the exchange must live */
    bool has_verdict;      /* a decision to count (not a request refused before any limit) */

    /* Progress, both ways. */
    bool req_done, resp_head_sent, resp_done;
    bool req_blocked, resp_blocked; /* a side waits for the other to drain */
    bool retried;                   /* sent again on a new upstream connection once */
    bool gone; /* the client went away (set by its codec): whoever holds the exchange stops */
    int status;                     /* of the final response, 0 until there is one */

    /* Times (CLOCK_MONOTONIC, µs) and sizes for the log and metrics. */
    uint64_t t_start, t_upstream; /* head's first byte; forwarding (0: never forwarded) */
    uint64_t release_us;          /* held by a leaky bucket until then */
    uint64_t upstream_us, duration_us;
    uint64_t head_bytes, bytes_in, bytes_out;
};

/* Asks the engine about x->req under x->cfg. The answer comes through client->verdict, at
 * once or later; until then x->decision_pending holds and the exchange must live. */
void sl_exchange_decide(struct sl_exchange *x);

/* Acts on the verdict: client->reply for an answer of sluice's own (429, 503, 400, and 501
 * to a gRPC call that upstream.url cannot carry), a hold for a leaky bucket's delay, else
 * client->forward. */
void sl_exchange_act(struct sl_exchange *x);

/* Forwards once x->release_us has come, else asks the codec to wait for the rest: a timer
 * that fires early never releases the request early. */
void sl_exchange_hold(struct sl_exchange *x);

/* Hands an admitted exchange to the upstream codec upstream.url names. */
void sl_exchange_upstream(struct sl_exchange *x);

/* Detaches x from its upstream, if any: closes or resets what carried it. */
static inline void sl_exchange_release_upstream(struct sl_exchange *x)
{
    if (x->up)
        x->upstream->release(x);
}

/* The exchange is over both ways: releases the verdict, counts it, and writes its access
 * log line, exactly once. x->req must show what was received (the codec's part). */
void sl_exchange_finish(struct sl_exchange *x, uint64_t now_us);

#endif
