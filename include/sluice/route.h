/* What the engine reads from a request head: the normalised path and host, the matching
 * route, the client address and each limit's key (SPEC.md sections 2 and 4).
 *
 * Every function here is pure: no allocation, no locking, safe from any thread. Outputs go
 * to caller buffers whose required size each function states. */
#ifndef SLUICE_ROUTE_H
#define SLUICE_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "sluice/cidr.h"
#include "sluice/config.h"
#include "sluice/request.h"

/* Normalises the path of a request-target (`len` bytes, not NUL-terminated) into `out` and
 * NUL-terminates it: the query is dropped, %XX of unreserved characters (ALPHA DIGIT - . _
 * ~) decoded and other %XX upper-cased, repeated slashes merged, then "." and ".."
 * segments resolved (RFC 3986 5.2.4, never above the root). Takes the path of an
 * absolute-form target ("http://host/p"; an empty path is "/"). `rules` (NULL = none) adds
 * the application's own folds, in the order given in src/route/paths.c.
 * Returns the length, or -1 when the target has no path ("*", authority-form, empty, a
 * NUL byte) or `size` is too small; `size` = len + 2 always suffices. */
ssize_t sl_path_normalize(const struct sl_path_rules *rules, const char *target, size_t len,
                          char *out, size_t size);

/* The request's authority: that of an absolute-form target (RFC 9112 3.2.2), else the
 * first Host header. Sets `*host` (borrowed from `req`) and `*len`; returns false when the
 * request names none (or an empty one). */
bool sl_request_authority(const struct sl_request *req, const char **host, size_t *len);

/* Normalises an authority for matching and keys: userinfo and port removed, one trailing
 * dot removed, lower-cased; an IPv6 literal keeps its brackets ("[::1]"). Writes at most
 * `len` + 1 bytes to `out` (NUL-terminated). Returns the length, or -1 when `size` is too
 * small or nothing remains. */
ssize_t sl_host_normalize(const char *authority, size_t len, char *out, size_t size);

/* The first route of `cfg`, in file order, matching the request. `path` is the normalised
 * path (NUL-terminated) or NULL when the target has none (then only routes without a path
 * condition match); `host` is the normalised host or NULL. Path prefixes are
 * segment-aware: "/api" matches "/api" and "/api/x" but not "/apix"; a prefix ending in
 * "/" matches every path that starts with it. Returns NULL when no route matches. Looks up
 * cfg->route_index when the snapshot has one (route_index.h), else walks the routes.
 * `thread` is the caller's thread slot in the index (a worker's number; 0 for a program
 * with one thread): the one exception to "pure" above, no two threads may pass the same
 * one at once. */
const struct sl_route *sl_route_match(const struct sl_config *cfg, unsigned thread,
                                      const struct sl_request *req, const char *path,
                                      size_t path_len, const char *host, size_t host_len);

/* Why a route does not match a request: its first condition not met, in the order
 * sl_route_match() tests them. */
enum sl_route_miss {
    SL_ROUTE_MATCHES,
    SL_ROUTE_MISS_PATH,   /* path, path_prefix or path_regex (or the target has no path) */
    SL_ROUTE_MISS_METHOD, /* not one of methods */
    SL_ROUTE_MISS_HOST,   /* another host, or none */
    SL_ROUTE_MISS_HEADER, /* a header condition not met: `*header` is its index */
};

/* Tests route `r` alone, exactly as sl_route_match() does (same arguments). Sets `*header`
 * (when not NULL) to the index of the first header condition not met on
 * SL_ROUTE_MISS_HEADER. For `sluice explain`; the proxy calls sl_route_match(). */
enum sl_route_miss sl_route_test(const struct sl_route *r, const struct sl_request *req,
                                 const char *path, size_t path_len, const char *host,
                                 size_t host_len, size_t *header);

/* The client address (SPEC.md section 4): the peer, unless the peer is in `trusted`; then
 * the X-Forwarded-For entries (every such header, in order, comma lists) are read from
 * right to left and the first address not in `trusted` is the client, or the leftmost one
 * when all are trusted. A malformed entry ends the walk and the peer is the client. A
 * unix-socket peer counts as a loopback address (127.0.0.1) for the trust check.
 * Returns 0, or -1 when no IP address results (a unix-socket peer without a believed
 * X-Forwarded-For); then out->family is 0. */
int sl_client_ip(const struct sl_cidr_list *trusted, const struct sl_request *req,
                 struct sl_ip *out);

/* How sl_client_ip() chose the client, for `sluice explain`. */
enum sl_client_why {
    SL_CLIENT_NO_TRUSTED_PROXIES, /* trusted_proxies is empty: the peer */
    SL_CLIENT_PEER_UNTRUSTED,     /* the peer is no trusted proxy: its X-Forwarded-For ignored */
    SL_CLIENT_PEER_NO_XFF,        /* a trusted peer sent no X-Forwarded-For address: the peer */
    SL_CLIENT_XFF_UNTRUSTED_HOP,  /* the first X-Forwarded-For address not in trusted_proxies */
    SL_CLIENT_XFF_ALL_TRUSTED,    /* every X-Forwarded-For address trusted: the leftmost */
    SL_CLIENT_XFF_MALFORMED,      /* a malformed X-Forwarded-For entry ended the walk: the peer */
};

struct sl_client_trace {
    enum sl_client_why why;
    size_t hop; /* the X-Forwarded-For entry chosen (or malformed), 1 = rightmost; 0 = none */
};

/* sl_client_ip(), also saying in `*trace` (when not NULL) how the address was chosen. */
int sl_client_ip_trace(const struct sl_cidr_list *trusted, const struct sl_request *req,
                       struct sl_ip *out, struct sl_client_trace *trace);

/* What a key is built from: the request and the values the engine already computed. */
struct sl_key_ctx {
    const struct sl_request *req;
    const struct sl_route *route;
    const char *client; /* canonical client address text, or SL_KEY_UNIX_CLIENT */
    size_t client_len;
    const char *path; /* normalised path, NULL when the target has none */
    size_t path_len;
    const char *host; /* normalised host, NULL when the request names none */
    size_t host_len;
};

/* The client_ip key of unix-socket clients without a believed X-Forwarded-For: they share
 * one key, as clients behind one untrusted proxy share its address. */
#define SL_KEY_UNIX_CLIENT "unix"

/* Builds `lim`'s key into `buf`. One source gives its value as is; a list gives each
 * value as "<length>:<value>", joined with ",", so that different tuples never give the
 * same key. query:NAME values are percent-decoded ('+' is a space), as the application
 * will see them, so that one value cannot be spread over many keys by re-encoding it.
 * Returns the key length; when that exceeds `size`, the key is incomplete and the call
 * must be repeated with a buffer that large. Returns -1 when a source is absent from the
 * request: the limit does not apply. */
ssize_t sl_key_build(const struct sl_limit *lim, const struct sl_key_ctx *ctx, char *buf,
                     size_t size);

/* The value of one source, as sl_key_build gives a key of that source alone. */
ssize_t sl_key_source_build(const struct sl_key_source *src, const struct sl_key_ctx *ctx,
                            char *buf, size_t size);

struct sl_rates_entry;

/* The entry of lim->rates (not NULL) that applies to the request of `ctx`, whose key for `lim`
 * is `key` (`key_len` bytes), or NULL when the limit's own rate applies: the value found is
 * not listed, or the `by` source is absent from the request (`*absent` is then true).
 * `*buf` and `*cap` are the caller's scratch buffer for the source's value (NULL and 0 at
 * first; grown with realloc; the caller frees it). Out of memory: NULL. Allocates nothing once
 * the buffer holds the longest value seen. */
const struct sl_rates_entry *sl_rates_pick(const struct sl_limit *lim, const struct sl_key_ctx *ctx,
                                           const char *key, size_t key_len, char **buf, size_t *cap,
                                           bool *absent);

#endif
