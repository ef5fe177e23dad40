/* The proxy under a fuzzer: one sluice worker (src/http/embed.h) on its own loop, a client
 * that is the other end of a socketpair, and an upstream that accepts sluice's connections
 * on an abstract unix socket. No network, no threads; the loop is run until nothing moves.
 * The targets script both ends and check what each end receives. */
#ifndef SLUICE_FUZZ_PROXY_H
#define SLUICE_FUZZ_PROXY_H

#include <event2/buffer.h>
#include <llhttp.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#include "sluice/config.h"

#define FZ_MAX_UPSTREAMS 16

struct fz_proxy;

/* One connection sluice opened to the upstream; the fuzzer's end of it. */
struct fz_upstream {
    struct fz_proxy *proxy;
    int fd;               /* -1 once closed */
    bool eof;             /* sluice closed its end */
    bool closing;         /* close once `out` is written */
    struct evbuffer *out; /* bytes for sluice not yet written */
    llhttp_t parser;      /* what sluice forwards, parsed as a strict upstream would */
    bool tunnel;          /* after 101: raw bytes */
    unsigned requests;    /* request heads seen */
    void *data;           /* the target's */
};

struct fz_hooks {
    /* The upstream received bytes (also parsed by up->parser with the settings below). */
    void (*upstream_data)(struct fz_upstream *up, const char *bytes, size_t len);
    const llhttp_settings_t *upstream_settings;
};

struct fz_proxy {
    struct sl_embed *embed;
    struct event_base *base;
    int client;                 /* the client's end, -1 once closed */
    bool client_eof;            /* sluice closed the client connection */
    struct evbuffer *to_client; /* everything the client received */
    struct fz_upstream up[FZ_MAX_UPSTREAMS];
    size_t nup;
    const struct fz_hooks *hooks;
    void *data; /* the target's */
};

/* Loads the configuration `yaml` once per process, pointed at this process's upstream
 * socket, and opens that socket and the access log. Aborts on failure. */
struct sl_config *fz_proxy_setup(const char *yaml);

/* A fresh worker under `cfg` with one client connection from `peer`. */
void fz_proxy_start(struct fz_proxy *p, struct sl_config *cfg, const struct fz_hooks *hooks,
                    const struct sockaddr *peer, socklen_t peer_len);

/* Runs the loop, moving bytes at both ends, until a few turns pass with nothing to do. */
void fz_proxy_run(struct fz_proxy *p);

/* The client sends `len` bytes, in pieces of `piece` bytes (0: at once) with the loop run
 * after each. */
void fz_client_send(struct fz_proxy *p, const void *bytes, size_t len, size_t piece);
/* The client half-closes: it sends nothing more and still reads. */
void fz_client_shutdown(struct fz_proxy *p);

/* The upstream sends `len` bytes (written as sluice reads them) and closes after them.
 * Both are safe inside the upstream_data hook: neither runs the loop. */
void fz_upstream_send(struct fz_upstream *up, const void *bytes, size_t len);
void fz_upstream_close(struct fz_upstream *up);

/* Frees the worker (closing every connection) and both ends, then checks that every line
 * the access log received is one valid JSON object. */
void fz_proxy_finish(struct fz_proxy *p);

/* Reports a broken invariant and aborts, so that libFuzzer keeps the input. */
void fz_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

/* `len` bytes as C-escaped text, in a static buffer (the first 2 KiB), for messages. */
const char *fz_printable(const void *bytes, size_t len);

/* True when a header named `name` (case-insensitive, `len` bytes) is one sluice never
 * forwards in either direction (RFC 9110 7.6.1). */
bool fz_hop_by_hop(const char *name, size_t len);

#endif
