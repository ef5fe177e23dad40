/* Internals of the proxy shared by the files of src/http/. Everything here runs on one
 * worker thread unless it says otherwise. */
#ifndef SLUICE_HTTP_INTERNAL_H
#define SLUICE_HTTP_INTERNAL_H

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/listener.h>
#include <llhttp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sluice/config.h"
#include "sluice/engine.h"
#include "sluice/metrics.h"
#include "sluice/top.h"
#include "sluice/request.h"
#include "sluice/rls.h"
#include "sluice/text.h"

#include "../tls/sessions.h"
#include "exchange.h"

/* Flow control: a side stops being read while the other side's output holds more than
 * HIGH_WATER bytes and resumes when it drains below LOW_WATER. Reads stop by themselves
 * when a side's own input holds INPUT_MAX bytes nobody has taken. */
#define SL_HIGH_WATER (256 * 1024)
#define SL_LOW_WATER (64 * 1024)
#define SL_INPUT_MAX (128 * 1024)

/* Lingering close (as nginx's lingering_close): after a response that ends the
 * connection, unread request bytes are drained for up to this long so that the kernel
 * does not answer them with a reset that destroys the response in flight. */
#define SL_LINGER_MS 2000

/* ---- head.c: collecting a request or response head from llhttp callbacks ---- */

struct sl_head_field {
    uint32_t name_off, name_len, value_off, value_len;
};

enum sl_head_token {
    SL_TOK_NONE,
    SL_TOK_METHOD,
    SL_TOK_URL,
    SL_TOK_STATUS,
    SL_TOK_NAME,
    SL_TOK_VALUE
};

/* One head, copied into a buffer owned by the connection and reused by every message. */
struct sl_head {
    char *buf;
    size_t len, cap, max; /* max: bytes of head text kept before `overflow` */
    uint32_t method_off, method_len, url_off, url_len, reason_off, reason_len;
    struct sl_head_field *fields;
    size_t nfields, fields_cap;
    struct sl_header *headers; /* built by sl_head_finish; points into buf */
    size_t headers_cap;
    enum sl_head_token tok;
    bool overflow;              /* the head is larger than `max` */
    bool obs_fold;              /* a line starting with whitespace was seen */
    bool head_done;             /* on_headers_complete ran: later header callbacks are trailers */
    bool msg_done;              /* on_message_complete ran */
    bool skip_body;             /* response to HEAD */
    bool interim;               /* the response head is a 1xx other than 101: skip it */
    uint64_t body_bytes;        /* decoded body bytes of the message so far */
    struct evbuffer *body_sink; /* non-NULL: decoded body bytes are copied here */
    /* non-NULL: shown each span of decoded body where it lies (a charge's scanner) */
    void (*body_tap)(void *arg, const char *at, size_t n);
    void *body_tap_arg;
    unsigned char prev_byte;    /* last head byte seen, for obs-fold detection */
};

void sl_head_init(struct sl_head *h, size_t max);
void sl_head_deinit(struct sl_head *h);
/* Forgets the previous message; keeps the allocations. */
void sl_head_reset(struct sl_head *h);
/* Builds h->headers (values trimmed). Returns 0, or -1 on ENOMEM. */
int sl_head_finish(struct sl_head *h);
/* Counts the fields whose name has a "_"; with `remove`, also takes them out of the head
 * (fields and headers stay in step). After sl_head_finish. */
size_t sl_head_underscored(struct sl_head *h, bool remove);

/* llhttp settings whose callbacks expect parser->data to be a struct sl_head. They pause
 * the parser after the head and after the message. */
extern const llhttp_settings_t sl_request_settings;
extern const llhttp_settings_t sl_response_settings;

/* Runs `p` over at most `limit` bytes at the start of `in` without draining them.
 * Returns the bytes the parser took (it stops at a pause), or -1 on a parse error.
 * `*err` receives HPE_OK, HPE_PAUSED or HPE_PAUSED_UPGRADE (or the error). While
 * `scan_head` is set the bytes are also checked for obsolete line folding. */
long sl_parse_run(llhttp_t *p, struct evbuffer *in, size_t limit, bool scan_head,
                  llhttp_errno_t *err);

/* ---- upstream_name.c: an upstream given by host name ---- */

struct evdns_base;
struct sl_worker;

/* One worker's view of an upstream host name: the address it last connected to, and when
 * that address was learnt. Looked up again when older than SL_UPSTREAM_NAME_TTL_MS or
 * after a failed connect, so that an application that moves is followed. */
#define SL_UPSTREAM_NAME_TTL_MS 30000
struct sl_upstream_name {
    char *host; /* the name this state is for; owned */
    uint16_t port;
    struct evdns_base *dns; /* made at the first lookup */
    struct sockaddr_storage addr;
    socklen_t addr_len; /* 0: none known */
    uint64_t learnt_us;
};

struct sl_upstream;

/* The address to connect to for `u` (a host-name upstream), or NULL when it must be looked
 * up: none known yet, older than the TTL, forgotten after a failure, or another name. */
const struct sockaddr_storage *
sl_upstream_name_addr(struct sl_worker *w, const struct sl_upstream_config *u, socklen_t *len);
/* Starts looking `u`'s name up and connecting `bev` to the first address found. Returns 0
 * or -1 (no resolver, out of memory). A lookup that fails reports a connect error on
 * `bev`, with bufferevent_socket_get_dns_error() set. */
int sl_upstream_name_connect(struct sl_worker *w, const struct sl_upstream_config *u,
                             struct bufferevent *bev);
/* A connection made by name succeeded to `addr`: later connections reuse it. */
void sl_upstream_name_learn(struct sl_worker *w, const struct sockaddr_storage *addr,
                            socklen_t len);
/* A connect by name failed: the next one looks the name up again. */
void sl_upstream_name_forget(struct sl_worker *w);
void sl_upstream_name_deinit(struct sl_worker *w);

/* ---- upstream_tls.c: the connection under either upstream codec ---- */

/* A bufferevent for a new connection to `u`, not yet connected: a socket one, or for
 * https:// and h2:// a TLS one whose handshake follows the connect (BEV_EVENT_CONNECTED
 * once it is done), with SNI and the name verified as upstream.tls says, resuming the
 * worker's last session with this upstream. NULL on failure (logged). */
struct bufferevent *sl_upstream_bev_new(struct sl_worker *w, const struct sl_upstream_config *u);

/* Frees an upstream connection's bufferevent, closing TLS so that its session can be
 * resumed by the next connection. */
void sl_upstream_bev_free(struct bufferevent *bev);

/* Whether a connection that failed before BEV_EVENT_CONNECTED failed in its TLS handshake
 * (chain, name, protocol); logs why, naming `target`. */
bool sl_upstream_tls_failed(struct bufferevent *bev, const char *target);

/* Whether the TLS connection `bev` agreed on ALPN protocol `proto`. */
bool sl_upstream_alpn_is(struct bufferevent *bev, const char *proto);

/* ---- worker.c ---- */

/* A worker's loop has two event priorities; libevent runs only the more urgent level
 * while it has events, and at most SL_LOW_PRIO_PER_TURN low-priority callbacks before it
 * polls again. The urgent level holds only upstream sockets awaiting a response head: a
 * response that arrives completes a request and hands its connection back to the pool
 * before any further client is read. Were every ready client read first, thousands of
 * keep-alive clients would start thousands of requests in one turn, each find the pool
 * empty and connect, and the pool would close most of those connections again a moment
 * later. Everything else (client sockets, streaming bodies, timers) is low priority; the
 * urgent level's work is finite (a response head each), so it cannot starve the rest. */
#define SL_PRIO_URGENT 0
#define SL_PRIO_NORMAL 1
#define SL_PRIO_LEVELS 2
#define SL_LOW_PRIO_PER_TURN 256

struct sl_server;
struct sl_conn;
struct sl_h2_conn;
struct sl_h2_stream;
struct sl_upstream;

/* One address a worker accepts on: listeners[index] of the snapshot the server bound at
 * start-up (sl_server.boot_cfg). */
struct sl_worker_listener {
    struct sl_worker *w;
    struct evconnlistener *ev;
    size_t index;
};

struct sl_worker {
    struct sl_server *server;
    unsigned index;
    pthread_t thread;
    struct event_base *base;
    struct sl_worker_listener *listeners; /* boot_cfg->nlisteners of them */
    size_t nlisteners;
    struct sl_engine *engine;
    struct sl_store *redis; /* this worker's Redis store, or NULL without redis */
    struct sl_metrics_slot *metrics;
    struct sl_config *cfg; /* this worker's reference to the current snapshot */

    pthread_mutex_t mailbox_lock; /* guards next_cfg, set by the main thread */
    struct sl_config *next_cfg;
    atomic_bool cfg_waiting; /* next_cfg is set: adopt it before the next request */
    struct event *cfg_ev, *stop_ev, *force_ev, *resume_ev;

    struct sl_conn *conns;       /* every HTTP/1 client connection, for draining */
    struct sl_h2_conn *h2conns;  /* every HTTP/2 one */
    struct sl_h2_stream *h2_spares; /* h2_stream.c: freed streams kept for reuse */
    unsigned h2_nspares;
    char *h2_scratch; /* h2_session.c: room for the response head being submitted */
    size_t h2_scratch_cap;
    unsigned nconns;
    atomic_bool listener_paused; /* read by other workers resuming it */
    bool draining;

    struct sl_upstream *idle; /* pool.c: idle keep-alive upstream connections */
    struct sl_h2u_conn *h2u;  /* h2u_conn.c: HTTP/2 upstream connections */
    unsigned nidle;
    struct sl_upstream_name upname; /* upstream_name.c */
    struct sl_tls_session_slot upstream_session; /* upstream_tls.c: the last TLS session */

    /* The rate limit service (SPEC.md section 12): its own listener, whose connections are
     * HTTP/2 only and never reach routes or the upstream, and where its calls decide. */
    struct evconnlistener *rls_listener;
    struct sl_rls_env rls_env;

    struct evbuffer *log_buf; /* access_log.c */
    struct event *log_timer;
    int64_t log_sec; /* second of log_ts */
    char log_ts[24]; /* "2026-01-02T03:04:05." */
};

/* Adopts a snapshot published by sl_worker_publish(), if one is waiting. Worker thread only;
 * one relaxed-cost atomic load when none is. */
void sl_worker_adopt_config(struct sl_worker *w);

/* Sets up worker `index` of `s`; nothing runs yet. Returns 0, or -1 with a message in
 * `err`. sl_worker_deinit releases what init and listen made, even on failure. */
int sl_worker_init(struct sl_worker *w, struct sl_server *s, unsigned index, char *err,
                   size_t errlen);
/* Binds the worker's listeners (a unix socket shared through s->unix_fds, else its own
 * SO_REUSEPORT socket each). Returns
 * 0, or -1 with a message in `err`. */
int sl_worker_listen(struct sl_worker *w, char *err, size_t errlen);
/* Binds the worker's rate limit service listener (its own SO_REUSEPORT socket on
 * rls.listen) and readies its stores. Returns 0, or -1 with a message in `err`. */
int sl_worker_listen_rls(struct sl_worker *w, char *err, size_t errlen);
void sl_worker_deinit(struct sl_worker *w);
int sl_worker_start(struct sl_worker *w);
/* From the main thread: hands `cfg` (a new reference is taken) to the worker. */
void sl_worker_publish(struct sl_worker *w, struct sl_config *cfg);

/* The connection count changed: pause or resume accepting (max_connections). */
void sl_worker_conn_added(struct sl_worker *w);
void sl_worker_conn_removed(struct sl_worker *w);
/* A client connection (either protocol) was freed: counted, accepting resumed, and a
 * draining worker done once it was the last. */
void sl_worker_conn_gone(struct sl_worker *w);
/* Called when the last connection of a draining worker is gone. */
void sl_worker_maybe_done(struct sl_worker *w);

/* ---- server.c: process-wide state shared by workers (read-mostly) ---- */

struct sl_server {
    struct sl_config *cfg; /* current snapshot; guarded by lock */
    pthread_mutex_t lock;
    struct sl_metrics *metrics;
    struct sl_top *top; /* heavy-hitter sketches; NULL without the admin listener */
    struct sl_store *memory;
    struct sl_store *rls_memory; /* the rate limit service's state, on the epoch clock */
    struct sl_worker *workers;
    unsigned nworkers;
    atomic_uint conns; /* client connections of all workers */
    atomic_uint workers_done;
    atomic_bool ready;
    /* SIGTERM with shutdown.drain_delay: every response from now on closes its connection,
     * so keep-alive clients move to other instances before the listeners close. */
    atomic_bool closing;
    struct event_base *base; /* the main thread's loop */
    struct event *worker_done_ev;
    struct sl_cfg_watch *watch; /* reload.watch; NULL when off */
    bool stopping;              /* SIGTERM/SIGINT seen: no more reloads */
    int access_fd;      /* -1: access log off */
    /* The snapshot whose listeners the workers bound: a reload cannot move them, and it
     * holds the certificates of a TLS listener whose entry a reload changed. */
    struct sl_config *boot_cfg;
    int *unix_fds; /* per listener: a unix:/path socket the workers share, else -1 */
};

/* ---- io.c ---- */

/* Whether `bev` is a TLS bufferevent (bufferevent_openssl), which does its own I/O. */
static inline bool sl_bev_tls(struct bufferevent *bev)
{
    return bufferevent_openssl_get_ssl(bev) != NULL;
}

/* Writes what `bev`'s output holds (its first chains, at least) to its socket now.
 * Returns the bytes written, 0 when there was nothing to write, or -1 with errno set. */
int sl_write_now(struct bufferevent *bev);

/* Writes `bev`'s output now if writing is not already the bufferevent's (saving two
 * epoll_ctl calls and a loop turn per response), and leaves the rest to it when the
 * socket is full. */
/* sl_flush for a TLS bufferevent: it writes by itself once writing is enabled. */
void sl_tls_flush(struct bufferevent *bev);

static inline void sl_flush(struct bufferevent *bev)
{
    struct evbuffer *out = bufferevent_get_output(bev);
    if (evbuffer_get_length(out) == 0)
        return;
    if (sl_bev_tls(bev)) {
        sl_tls_flush(bev);
        return;
    }
    if (!(bufferevent_get_enabled(bev) & EV_WRITE)) {
        sl_write_now(bev);
        if (evbuffer_get_length(out) == 0)
            return;
    }
    bufferevent_enable(bev, EV_WRITE);
}

#define SL_READ_EOF 0
#define SL_READ_AGAIN (-1)
#define SL_READ_ERROR (-2)
/* Reads once from `bev`'s socket `fd` into its input, keeping at most SL_INPUT_MAX buffered.
 * Returns the bytes read, SL_READ_EOF, SL_READ_AGAIN (nothing now, or input full) or
 * SL_READ_ERROR (errno set). */
int sl_read_socket(struct bufferevent *bev, evutil_socket_t fd);

/* A connection's reader: for a plain socket, `rev` is its own read event (EV_PERSIST, read
 * with sl_read_socket); for a TLS bufferevent, which reads and decrypts by itself, `rev` is
 * a timer for the read timeout alone, and the connection's bufferevent read callback calls
 * sl_reader_touch and then `cb(-1, EV_READ, arg)`, for which sl_read_socket reports the
 * bytes already in the input. Either way `cb` gets EV_TIMEOUT when the timeout passes. */
void sl_reader_assign(struct event *rev, struct event_base *base, struct bufferevent *bev,
                      event_callback_fn cb, void *arg);

/* Adds (`want`) or removes the reader `rev` of `bev`, tracking it in `*active`; re-adds it
 * when `*timeout_changed` so that a new `timeout` (NULL: none) applies. */
void sl_reader_set(struct bufferevent *bev, struct event *rev, bool *active, bool want,
                   const struct timeval *timeout, bool *timeout_changed);

struct sl_tls_server;

/* A TLS connection accepted on `fd` (owned by the bufferevent from now on, or still the
 * caller's on NULL), its handshake under way with a certificate of `tls`. */
struct bufferevent *sl_tls_accept(struct event_base *base, evutil_socket_t fd,
                                  const struct sl_tls_server *tls);

/* A TLS client connection's event `what`: the handshake's end is counted once, as ok or
 * resumed (BEV_EVENT_CONNECTED, for which it returns true: the event is handled) or as
 * failed (any error or close before it). `*done` tracks whether it ended. */
bool sl_tls_handshake_event(struct sl_metrics_slot *m, struct bufferevent *bev, short what,
                            bool *done);

/* The verified client certificate's subject on TLS connection `bev` (RFC 2253, malloc'd,
 * its length in `*len`), or NULL when the client presented none. */
char *sl_tls_peer_subject(struct bufferevent *bev, size_t *len);

/* TLS: bytes arrived, so the read timeout starts again (a plain read event does this by
 * itself). */
void sl_reader_touch(struct event *rev, const struct timeval *timeout);

/* Sets `bev`'s write timeout to `ms` (0: none) unless `*cur_ms` says it already is, and
 * records it there: bufferevent_set_timeouts() re-adds pending events on every call. */
void sl_write_timeout_set(struct bufferevent *bev, uint64_t *cur_ms, uint64_t ms);

/* ---- listener.c ---- */

/* Fails, with a message in `err`, when another socket already listens on the TCP
 * address `addr`: workers bind with SO_REUSEPORT, which would otherwise let a second
 * process share the port silently and split the traffic (and the limits) with it. */
int sl_listen_probe(const struct sl_sockaddr *addr, char *err, size_t errlen);

/* A listening socket for `addr`: SO_REUSEPORT for TCP so each worker binds its own; a
 * unix socket left by a previous run is replaced, one still served is not.
 * Returns the fd, or -1 with a message in `err`. */
int sl_listen_socket(const struct sl_sockaddr *addr, char *err, size_t errlen);

/* ---- client.c ---- */

enum sl_conn_state {
    SL_C_HEAD,    /* reading a request head */
    SL_C_DECIDE,  /* waiting for the engine */
    SL_C_DELAY,   /* admitted, held by the leaky bucket */
    SL_C_PROXY,   /* forwarded: streaming the body up and the response down */
    SL_C_DISCARD, /* answered by sluice; skipping the rest of the request body */
    SL_C_TUNNEL,  /* after 101: raw bytes both ways */
    SL_C_LINGER,  /* closing: draining unread bytes after the last response */
};

struct sl_conn {
    struct sl_worker *w;
    struct sl_conn *prev, *next;
    struct bufferevent *bev;
    enum sl_conn_state state;
    llhttp_t parser;
    struct sl_head head;
    struct sl_config *cfg;  /* snapshot of the request in flight (or the last one) */
    struct event timer;     /* header, idle, delay and linger deadlines */
    uint64_t timer_due_us;  /* when `timer` fires if armed by sl_conn_arm_timer, else 0 */
    uint64_t idle_until_us; /* the idle deadline, which may lie past timer_due_us */
    struct event rev;       /* readable client socket (io.c) */
    bool rev_active, rev_timeout_changed, read_timeout_on;
    bool tls_done; /* TLS: the handshake's end was counted */
    char *tls_subject; /* the verified client certificate's subject, or NULL; owned */
    size_t tls_subject_len;
    struct timeval read_timeout;
    uint64_t write_timeout_ms; /* bev's, 0: none */

    struct sockaddr_storage peer;
    socklen_t peer_len;
    char peer_text[48];
    size_t peer_text_len;

    struct sl_exchange x; /* the request in flight, or the last one; one at a time */
    unsigned busy;        /* nesting of callbacks running on this connection */
    bool dying;           /* free when busy reaches 0 and no decision is pending */
    bool in_process;      /* sl_conn_process is on the stack: it loops, no recursion */
    bool lingering;

    unsigned http_minor; /* of the request in flight */
    bool head_started;   /* a byte of the current request head arrived */
    bool header_timer;   /* the timer holds this head's header_timeout */
    bool first_request;
    bool handed_over; /* the socket went to an HTTP/2 connection (h2_session.c) */
    bool close_after; /* close once the current response is written */
    bool chunk_out;   /* the response body is framed in chunks here (chunk_stage) */
    struct evbuffer *chunk_stage; /* the body before its chunk framing; owned, kept */
    bool client_eof;
    bool rls; /* accepted by the rate limit service's listener: HTTP/2 only */
};

void sl_conn_accept(struct sl_worker *w, evutil_socket_t fd, const struct sockaddr *sa, int salen,
                    const struct sl_tls_server *tls);
/* The same for the rate limit service's listener: the connection must open with the HTTP/2
 * preface, and its streams are gRPC calls of the service (h2_rls.c), never requests. */
void sl_conn_accept_rls(struct sl_worker *w, evutil_socket_t fd, const struct sockaddr *sa,
                        int salen);
/* Gives the connection's bufferevent (its socket, and the bytes read) to the caller and
 * lets the connection go without closing it or counting it closed. From inside its own
 * callback only. */
struct bufferevent *sl_conn_hand_over(struct sl_conn *c);
/* Closes the connection; with `graceful`, only if it is idle between requests. */
void sl_conn_shutdown(struct sl_conn *c, bool graceful);

/* Callback nesting: the connection is freed only by the outermost sl_conn_leave. */
void sl_conn_enter(struct sl_conn *c);
void sl_conn_leave(struct sl_conn *c);
/* Marks the connection for closing (freed at the outermost leave). */
void sl_conn_kill(struct sl_conn *c);

/* Moves the request on: parses, streams, or starts the next pipelined request. */
void sl_conn_process(struct sl_conn *c);
/* Writes what the client output holds now, without waiting for the loop. */
void sl_conn_flush(struct sl_conn *c);
/* Writes `t` (text bound for the client output, empty afterwards) and flushes: straight
 * from `t` to the socket when nothing is queued before it, which spares the output
 * buffer's allocation, callbacks and drain on sluice's own answers. */
void sl_conn_send_text(struct sl_conn *c, struct sl_text *t);
/* The request has a final response and both directions are done: log, count, go on. */
void sl_conn_request_done(struct sl_conn *c);
/* Bounds the wait for request body bytes by idle_timeout (`on`), or lifts it. */
void sl_conn_set_read_timeout(struct sl_conn *c, bool on);
void sl_conn_arm_timer(struct sl_conn *c, uint64_t ms);
/* Between requests: the connection may stay idle for client.idle_timeout from `now_us`
 * (CLOCK_MONOTONIC). */
void sl_conn_arm_idle(struct sl_conn *c, uint64_t now_us);
/* After the last response: half-close, drain what the client still sends, then close. */
void sl_conn_linger_start(struct sl_conn *c);

/* ---- request.c ---- */

/* Points c->x.req at the head as parsed so far (its fields only when `complete`). */
void sl_request_expose_head(struct sl_conn *c, bool complete);

/* Parses the request head in the input; returns true when the state moved on. */
bool sl_request_read_head(struct sl_conn *c);
/* Skips the body of a request sluice answered itself; true when the state moved on. */
bool sl_request_discard_body(struct sl_conn *c);
/* The exchange's requests of an HTTP/1 connection (request.c). */
extern const struct sl_client_ops sl_h1_client_ops;

/* Answers `status` and closes; after the response head went out, just closes. */
void sl_conn_fail(struct sl_conn *c, int status);

/* ---- reply.c: responses sluice makes itself ---- */

/* Answers `status` with a JSON body (the default for the status when `body` is NULL or
 * empty) and `headers` lines (may be NULL). `close` adds "Connection: close" and closes
 * after the write. */
void sl_reply(struct sl_conn *c, int status, const struct sl_textbuf *headers,
              const struct sl_textbuf *body, bool close);
const char *sl_reason(int status);
/* The "error" of sluice's default JSON body for `status`: "rate_limited", "bad_gateway". */
const char *sl_error_name(int status);

/* ---- upstream.c ---- */

struct sl_upstream {
    struct sl_worker *w;
    struct sl_upstream *prev, *next; /* pool list while idle */
    struct bufferevent *bev;
    struct sl_exchange *x; /* the exchange it carries; NULL while idle in the pool */
    struct evbuffer *out;  /* where the response body goes, the client codec's */
    llhttp_t parser;
    struct sl_head head;
    struct sockaddr_storage addr; /* where it is connected, to match on reuse */
    socklen_t addr_len;           /* 0 while a connect by name is under way */
    bool by_name;                 /* connecting by host name: learn the address once connected */
    struct event rev;             /* readable upstream socket (io.c) */
    bool rev_active, rev_timeout_changed, read_timeout_on;
    struct timeval read_timeout;
    uint64_t write_timeout_ms; /* bev's, 0: none */
    bool connected, reused, got_bytes, eof;
    bool head_sent; /* the response head went to the client */
    bool tunnel;
    /* The upstream.tls context it was made with (NULL: cleartext), compared by identity
     * only: a pooled connection serves the configuration it was made for. */
    const struct ssl_ctx_st *tls_ctx;
};

/* Starts forwarding `x` on a pooled or new connection: writes the head; a body follows as
 * the client side pumps it (sl_upstream_flush after each part). */
void sl_upstream_forward(struct sl_exchange *x);
/* Parses and relays what the upstream sent. */
void sl_upstream_process(struct sl_exchange *x);
/* The request was all sent (or the connection is up): the response wait starts. */
void sl_upstream_set_timeouts(struct sl_exchange *x);
/* Detaches the upstream from `x`: back to the pool when `reuse`, else closed. */
void sl_upstream_release(struct sl_exchange *x, bool reuse);
void sl_upstream_flush(struct sl_upstream *up);
void sl_upstream_free(struct sl_upstream *up);
/* A TLS upstream connection's read callback, in use and idle in the pool alike. */
void sl_upstream_tls_readcb(struct bufferevent *bev, void *arg);
/* Reads from the upstream socket only while its input has room and it is wanted. */
void sl_upstream_sync_read(struct sl_upstream *up);

/* ---- client_exchange.c ---- */

/* Streams request body bytes from the client to the upstream, as far as it takes them. */
void sl_conn_pump_body(struct sl_conn *c);
/* Tunnel: moves bytes between the client and the upstream under flow control, and ends
 * the exchange when either side is done. */
void sl_tunnel_pump(struct sl_conn *c);

/* ---- h2_session.c: HTTP/2 client connections ---- */

/* 1 when `in` starts with the HTTP/2 client preface, 0 when with a part of it (more is
 * needed to tell), -1 when not. */
int sl_h2_preface(struct evbuffer *in);
/* Serves `c`, whose input starts with the preface, as HTTP/2 from now on. */
void sl_h2_take_over(struct sl_conn *c);
/* GOAWAY and close once the open streams end (`graceful`), or close now. */
void sl_h2_shutdown(struct sl_h2_conn *c, bool graceful);
/* Closes now and frees what waits for decisions the engine will never give. */
void sl_h2_abandon(struct sl_h2_conn *c);
/* h2_stream.c: frees what the worker keeps for HTTP/2 (spare streams, scratch). */
void sl_h2_spares_free(struct sl_worker *w);

/* ---- upstream.c, h2u_stream.c: the upstream codecs ---- */

extern const struct sl_upstream_ops sl_h1_upstream_ops;
extern const struct sl_upstream_ops sl_h2_upstream_ops;
/* h2u_conn.c: closes the worker's HTTP/2 upstream connections (only the idle ones when
 * `idle_only`: streams still open finish first). */
void sl_h2u_close_all(struct sl_worker *w, bool idle_only);

/* ---- pool.c ---- */

/* An idle connection to `addr` made with `tls_ctx` (NULL: cleartext), taken out of the
 * pool, or NULL. */
struct sl_upstream *sl_pool_take(struct sl_worker *w, const struct sockaddr_storage *addr,
                                 socklen_t len, const struct ssl_ctx_st *tls_ctx);
/* Keeps `up` idle for reuse, or frees it when the pool holds `keepalive` already. */
void sl_pool_put(struct sl_worker *w, struct sl_upstream *up, unsigned keepalive);
void sl_pool_clear(struct sl_worker *w);
/* Called when an idle connection becomes readable: the upstream closed it (or broke the
 * protocol); it leaves the pool and is freed. */
void sl_pool_drop(struct sl_upstream *up);

/* ---- access_log.c ---- */

int sl_access_log_init(struct sl_worker *w);
void sl_access_log_deinit(struct sl_worker *w);
void sl_access_log_request(struct sl_worker *w, const struct sl_exchange *x);
void sl_access_log_flush(struct sl_worker *w);

#endif
