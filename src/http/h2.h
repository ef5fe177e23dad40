/* The HTTP/2 client codec's internals, shared by its four files: h2_session.c (the
 * connection: libnghttp2's server session, socket I/O, timers, protections, GOAWAY),
 * h2_stream.c (a stream as an exchange: what the exchange asks of it, bodies both ways),
 * h2_data.c (the response body and trailers as nghttp2 frames them) and h2_head.c
 * (request heads collected from HPACK fields, response heads built for nghttp2). README.md beside this file gives the design. Worker thread only. */
#ifndef SLUICE_HTTP_H2_H
#define SLUICE_HTTP_H2_H

#include <nghttp2/nghttp2.h>

#include "http.h"

/* Each stream's receive window: request body bytes sluice holds for a stream that the
 * upstream has not taken yet. WINDOW_UPDATE follows only as bytes move upstream. */
#define SL_H2_STREAM_WINDOW (256 * 1024)
/* The connection's receive window: request body bytes held for all its streams. */
#define SL_H2_CONN_WINDOW (1024 * 1024)
/* Control frames a client may send in a burst (RST_STREAM, PING, SETTINGS, PRIORITY,
 * empty DATA), and how many a second it earns back. Beyond that it is flooding: GOAWAY
 * ENHANCE_YOUR_CALM. Below nghttp2's own reset limit, which sluice raises above this one,
 * so that the flood is answered with the code the protocol has for it. */
#define SL_H2_CALM_BURST 1000
#define SL_H2_CALM_RATE 100

struct sl_h2_stream;

struct sl_h2_conn {
    struct sl_worker *w;
    struct sl_h2_conn *prev, *next; /* the worker's list, for draining */
    struct bufferevent *bev;
    nghttp2_session *session;
    struct sl_config *cfg; /* settings of the session (a reference) */
    struct event rev;      /* readable socket, or a TLS connection's read timeout (io.c) */
    bool rev_active, rev_timeout_changed;
    bool tls;
    char *tls_subject; /* the verified client certificate's subject, or NULL; owned */
    size_t tls_subject_len;
    struct event timer; /* head, idle and stall deadlines */
    struct event flush; /* writes the output once this loop turn's callbacks are done */
    bool flush_pending;
    uint64_t timer_due_us;

    struct sockaddr_storage peer;
    socklen_t peer_len;
    char peer_text[48];
    size_t peer_text_len;

    struct sl_h2_stream *streams; /* every stream with an exchange, open or finishing */
    unsigned nstreams;
    /* Streams over but for a decision the engine still owes; its callback frees them. */
    struct sl_h2_stream *pending;
    unsigned npending;
    struct sl_h2_stream *dirty; /* streams touched in this callback, to sync at its end */


    double calm_tokens;
    uint64_t calm_us;        /* when calm_tokens was last refilled */
    uint64_t head_since_us;  /* a header block is open (CONTINUATION awaited) since; 0: none */
    uint64_t active_us;      /* the last stream ended, or the connection began */
    uint64_t progress_us;    /* the last HEADERS or DATA received or sent */
    enum sl_h2_goaway goaway_reason; /* what a GOAWAY with NO_ERROR is counted as */

    unsigned busy;   /* nesting of callbacks running on this connection */
    bool dying;      /* free at the outermost leave, once no decision is pending */
    bool goaway;     /* a GOAWAY went out or is queued: close once the streams end */
    bool client_eof;
    bool lingering;  /* shut for writing after the last frame; reads are dropped */
    bool first;      /* no stream yet: the header timeout runs from the accept */
    bool rls;        /* the rate limit service's: streams are its calls (h2_rls.c) */
    size_t rls_held; /* request bytes its calls hold while they arrive (h2_rls.c) */
};

struct sl_h2_stream {
    struct sl_exchange x;
    struct sl_h2_conn *c;
    struct sl_h2_stream *prev, *next;
    struct sl_h2_stream *dirty_next; /* on the connection's dirty list while `dirty` */
    bool dirty;
    int32_t id;

    /* The request head: names and values copied as HPACK gave them, then the
     * sl_header array for the engine (h2_head.c). */
    char *hbuf;
    size_t hlen, hcap, hsize; /* hsize: the header list size as RFC 9113 counts it */
    struct sl_h2_field { uint32_t name_off, name_len, value_off, value_len; } *fields;
    size_t nfields, fields_cap;
    struct sl_header *headers;
    size_t headers_cap;
    uint32_t method_off, method_len, path_off, path_len, authority_off, authority_len;
    int64_t content_length; /* -1: none given */
    int local_status;       /* an answer sluice owes before the engine sees it (431, 400) */

    struct evbuffer *body_in;  /* request body the upstream has not taken (copied once) */
    struct evbuffer *body_out; /* response body for DATA frames (moved, never copied) */
    nghttp2_nv *trailers;      /* to send after body_out; one allocation with their text */
    size_t ntrailers;
    struct event timer;        /* a leaky bucket's hold */
    bool timer_set;

    bool opened;      /* counted in the connection's streams */
    bool closed;      /* nghttp2 closed the stream */
    bool req_end;     /* END_STREAM received */
    bool local;       /* answered by sluice: request body bytes are dropped */
    bool submitted;   /* a response head went to nghttp2 */
    bool resp_eof;    /* the response body is all in body_out */
    bool deferred;    /* the data source waits for body_out */
    bool finished;    /* sl_exchange_finish ran */
    bool rls_call;    /* a ShouldRateLimit call collecting its message (h2_rls.c) */
};

/* h2_session.c */
void sl_h2_enter(struct sl_h2_conn *c);
void sl_h2_leave(struct sl_h2_conn *c);
/* Queues GOAWAY: graceful (NO_ERROR, open streams finish, counted as `reason`) or an
 * error `code` that ends the connection once written. */
void sl_h2_goaway(struct sl_h2_conn *c, uint32_t code, enum sl_h2_goaway reason);
/* Spends one token of the connection's control-frame allowance; false when there was
 * none left, after queueing GOAWAY ENHANCE_YOUR_CALM. */
bool sl_h2_calm(struct sl_h2_conn *c);
/* Scratch room of at least `n` bytes, kept by the worker for one use at a time (the
 * name-value pairs of a head being submitted); NULL on ENOMEM. */
char *sl_h2_scratch(struct sl_worker *w, size_t n);

/* h2_stream.c */
extern const struct sl_client_ops sl_h2_client_ops;
struct sl_h2_stream *sl_h2_stream_new(struct sl_h2_conn *c, int32_t id);
/* The head is complete: checks it and hands the exchange to the engine. */
void sl_h2_stream_start(struct sl_h2_stream *st, bool end_stream);
/* Request body bytes arrived (`n`, at `data`). */
void sl_h2_stream_data(struct sl_h2_stream *st, const uint8_t *data, size_t n);
/* END_STREAM arrived: the request is complete once its body has gone up. */
void sl_h2_stream_end(struct sl_h2_stream *st);
/* nghttp2 closed the stream (`error`: the RST_STREAM code, or 0). */
void sl_h2_stream_closed(struct sl_h2_stream *st, uint32_t error);
/* The response went out with END_STREAM. */
void sl_h2_stream_sent(struct sl_h2_stream *st);
/* Puts the stream on its connection's list for sl_h2_stream_sync at the callback's end. */
void sl_h2_stream_touch(struct sl_h2_stream *st);
/* At the end of a callback that touched it: a response that may go on, an upstream to
 * read again. */
void sl_h2_stream_sync(struct sl_h2_stream *st);
/* The client owes the stream something: a window for its response, or request body. */
bool sl_h2_stream_owes(const struct sl_h2_stream *st);

/* Frees the stream, or leaves it to the engine's callback while a decision is owed. */
void sl_h2_stream_release(struct sl_h2_stream *st);
/* A decision owed to the stream has come: true when the stream is still open; false after
 * freeing it, when it was released meanwhile. */
bool sl_h2_stream_settle(struct sl_h2_stream *st);
/* Frees a stream left to the engine that will never call back (the worker is ending). */
void sl_h2_stream_abandon(struct sl_h2_stream *st);
/* h2_data.c */
ssize_t sl_h2_stream_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                          uint32_t *flags, nghttp2_data_source *src, void *arg);
int sl_h2_stream_send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                           size_t len, nghttp2_data_source *src, void *arg);
/* client ops response_end: keeps the trailers (names lower case, as an HTTP/2 upstream
 * sent them) for sl_h2_stream_read, which submits them once body_out is all framed. */
void sl_h2_stream_trailers(struct sl_exchange *x, const struct sl_header *t, size_t n);

/* h2_rls.c: a stream of the rate limit service's connection, as one ShouldRateLimit call
 * (anything else is answered UNIMPLEMENTED): its head checked, its message collected
 * (bounded), decided by src/rls/ and answered with a gRPC message and trailers. */
void sl_h2_rls_start(struct sl_h2_stream *st);
void sl_h2_rls_data(struct sl_h2_stream *st, const uint8_t *data, size_t n);
void sl_h2_rls_end(struct sl_h2_stream *st);
/* The stream closed: what its call held is let go. */
void sl_h2_rls_closed(struct sl_h2_stream *st);

/* h2_head.c */
/* Adds one field of the request head; returns 0, or -1 when the stream must be reset. */
int sl_h2_head_field(struct sl_h2_stream *st, const uint8_t *name, size_t name_len,
                     const uint8_t *value, size_t value_len);
/* Makes x.req from the fields: method, target, and the headers with the :authority as
 * Host and cookies joined (RFC 9113 8.2.3). Returns 0, or -1 on ENOMEM. */
int sl_h2_head_finish(struct sl_h2_stream *st);
/* Sets the exchange's method flags and returns the status sluice answers the finished
 * head with itself (431, 400 for a method HTTP/1.1 has not, 405 for CONNECT, 413), or 0. */
int sl_h2_head_check(struct sl_h2_stream *st);
void sl_h2_head_free(struct sl_h2_stream *st);
/* Submits a response head on the stream: `status`, `headers` (an upstream's, hop-by-hop
 * fields left out, names lower-cased), the verdict's lines `extra` (may be NULL), and a
 * body from body_out unless `bodiless`. Returns 0 or -1. */
int sl_h2_head_submit(struct sl_h2_stream *st, int status, const struct sl_header *headers,
                      size_t nheaders, const struct sl_textbuf *extra, bool bodiless);

#endif
