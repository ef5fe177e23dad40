/* The HTTP/2 upstream codec's internals, shared by its three files: h2u_conn.c (a pooled
 * connection to the upstream: socket, libnghttp2 client session, choosing a connection
 * with a free stream, GOAWAY), h2u_stream.c (an exchange carried as one stream: the
 * request body up, the response head, body and trailers down, retries and deadlines;
 * sl_h2_upstream_ops) and h2u_head.c (the request head as HPACK fields, the response's
 * fields collected, grpc-timeout). README.md beside this file gives the design. Worker
 * thread only. */
#ifndef SLUICE_HTTP_H2U_H
#define SLUICE_HTTP_H2U_H

#include <nghttp2/nghttp2.h>

#include "http.h"

/* Each response stream's receive window: response body bytes the upstream may send ahead
 * of the client taking them. The connection's window holds that for all its streams. */
#define SL_H2U_STREAM_WINDOW (256 * 1024)
#define SL_H2U_CONN_WINDOW (4 * 1024 * 1024)
/* Streams sluice opens on one connection, whatever larger number the upstream allows:
 * past it another connection spreads the load over more of the upstream's threads. */
#define SL_H2U_MAX_STREAMS 100

struct sl_h2u_stream;

struct sl_h2u_conn {
    struct sl_worker *w;
    struct sl_h2u_conn *prev, *next; /* the worker's list */
    struct bufferevent *bev;
    nghttp2_session *session;
    char *target;                 /* upstream.url's host and port: exchanges match it */
    const struct ssl_ctx_st *tls_ctx; /* upstream.tls's context (identity only), or NULL */
    struct sl_h2u_stream *streams; /* open on it */

    struct event flush;  /* writes the output once this loop turn's callbacks are done */
    bool flush_pending;
    unsigned nstreams; /* streams open on it */
    unsigned busy;     /* nesting of callbacks running on this connection */
    bool connected;
    bool by_name; /* connecting by host name: learn the address once connected */
    bool goaway;  /* GOAWAY received or sent: no new streams */
    bool dying;   /* freed at the outermost leave */
    bool settled; /* the upstream's SETTINGS arrived: its stream limit is known */
};

struct sl_h2u_stream {
    struct sl_h2u_conn *c;
    struct sl_h2u_stream *prev, *next; /* the connection's streams */
    struct sl_exchange *x;
    int32_t id;
    struct evbuffer *body;   /* request body bytes not yet framed (moved, never copied) */
    struct evbuffer *out;    /* where the response body goes: the client codec's */
    struct event timer;      /* upstream.timeout, or the gRPC deadline if sooner */
    uint64_t deadline_us;    /* grpc-timeout's, absolute; 0: none */

    /* The response head or trailers as nghttp2 gives them: names and values copied once,
     * then an sl_header array over them. */
    char *hbuf;
    size_t hlen, hcap;
    struct sl_header *fields;
    size_t nfields, fields_cap;
    int status;
    int64_t content_length;

    size_t unconsumed;    /* response bytes the client has not taken: window held shut */
    uint64_t body_sent;   /* request body bytes framed: after one, no retry */
    bool deferred;        /* the request body's data source waits for bytes */
    bool head_sent;       /* the final response head went to the client */
    bool got_response;    /* a response HEADERS frame arrived */
    bool tap;             /* a response_json charge reads the body as it passes */
    bool wake;            /* the request body drained: the client may send more */
    bool closed;          /* nghttp2 closed the stream */
    bool grpc;            /* the response is gRPC's: a deadline ends it with a status */
};

/* h2u_conn.c */
/* A connection to x's upstream with room for one more stream, connecting a new one when
 * none has; NULL when none can be made. */
struct sl_h2u_conn *sl_h2u_conn_pick(struct sl_worker *w, const struct sl_upstream_config *u);
void sl_h2u_enter(struct sl_h2u_conn *c);
/* Sends what the session has queued; frees the connection when it is dying. */
void sl_h2u_leave(struct sl_h2u_conn *c);
/* A stream ended on `c`: an idle connection beyond the first is closed. */
void sl_h2u_conn_stream_gone(struct sl_h2u_conn *c);
/* Closes every connection of the worker (draining: only those with no stream). */
void sl_h2u_close_all(struct sl_worker *w, bool idle_only);

/* h2u_head.c */
/* Submits the request head of s->x on s->c, its body to follow from s->body when it has
 * one; sets s->id. Returns 0, or -1 (ENOMEM, or nghttp2 refused it). */
int sl_h2u_head_submit(struct sl_h2u_stream *s);
/* Collects one field of a response head or of its trailers; nghttp2 has checked it. */
int sl_h2u_on_header(struct sl_h2u_stream *s, const nghttp2_frame *f, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen);

/* h2u_stream.c: what the session's callbacks hand on to a stream */
/* A HEADERS or DATA frame for the stream is complete (END_STREAM ends the response). */
int sl_h2u_on_frame(struct sl_h2u_stream *s, const nghttp2_frame *f);
void sl_h2u_on_data(struct sl_h2u_stream *s, const uint8_t *data, size_t len);
/* The stream closed with `error` (0: NO_ERROR after both ends; `refused`: never processed
 * by the upstream, so it may go again). */
void sl_h2u_on_close(struct sl_h2u_stream *s, uint32_t error, bool refused);
/* The connection failed under the stream before it closed: connect (`connected` false)
 * or reset. */
void sl_h2u_on_conn_failed(struct sl_h2u_stream *s, enum sl_upstream_error kind);
/* Frees a stream nghttp2 no longer holds, taking it off its connection. */
void sl_h2u_stream_unlink_free(struct sl_h2u_stream *s);
/* Calls the client side of each stream whose request body drained (`wake`). */
void sl_h2u_wake(struct sl_h2u_conn *c);
ssize_t sl_h2u_body_read(nghttp2_session *ss, int32_t id, uint8_t *buf, size_t len,
                         uint32_t *flags, nghttp2_data_source *src, void *arg);
int sl_h2u_send_data(nghttp2_session *ss, nghttp2_frame *frame, const uint8_t *framehd,
                     size_t len, nghttp2_data_source *src, void *arg);

#endif
