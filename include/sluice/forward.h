/* Building the heads sluice forwards: the request head sent upstream and the response
 * head sent to the client. Pure functions of their inputs (no I/O), so they are tested on
 * fixed heads. */
#ifndef SLUICE_FORWARD_H
#define SLUICE_FORWARD_H

#include <stdbool.h>
#include <stddef.h>

#include "sluice/request.h"

struct evbuffer;
struct sl_textbuf;

struct sl_forward_request {
    const struct sl_request *req;
    unsigned http_minor; /* HTTP/1.<minor>, as received */
    const char *peer;    /* client address appended to X-Forwarded-For; NULL: none */
    size_t peer_len;
    bool upgrade;      /* send Upgrade's allowed elements and "Connection: upgrade" */
    char *const *upgrades; /* client.upgrades: the protocol names allowed, lower case */
    size_t nupgrades;
    bool chunked;      /* the body follows in chunked framing */
    bool strip_expect; /* sluice answers "Expect: 100-continue" itself */
    bool https;        /* the client came over TLS: X-Forwarded-Proto says "https" */
};

/* Appends the request head for the upstream to `out`: the request line as received, the
 * headers minus hop-by-hop ones (Connection and every header it names, Keep-Alive,
 * Proxy-Connection, TE, Trailer, Transfer-Encoding, HTTP2-Settings, Upgrade unless
 * upgrading, and then only the protocols in `upgrades`, never h2c), the peer
 * appended to X-Forwarded-For, X-Forwarded-Proto "http" or "https", X-Forwarded-Host from Host.
 * Returns 0, or -1 on ENOMEM. */
int sl_forward_request_head(const struct sl_forward_request *f, struct evbuffer *out);

typedef void sl_forward_field_fn(void *arg, const char *name, size_t name_len, const char *value,
                                 size_t value_len);

/* The request's fields for an HTTP/2 upstream, under sl_forward_request_head's rules, each
 * passed to `field` (names as received): Host left out for the caller's :authority, TE
 * only as "te: trailers" when the client asked for trailers, X-Forwarded-For (merged,
 * its value built in `scratch`, valid until scratch changes), -Proto and -Host last.
 * `upgrade` and `chunked` are ignored. Returns 0, or -1 on ENOMEM. */
int sl_forward_request_fields(const struct sl_forward_request *f, struct sl_textbuf *scratch,
                              sl_forward_field_fn *field, void *arg);

enum sl_conn_header { SL_CONN_NONE, SL_CONN_CLOSE, SL_CONN_KEEP_ALIVE, SL_CONN_UPGRADE };

struct sl_forward_response {
    int status;
    const char *reason;
    size_t reason_len;
    const struct sl_header *headers; /* the upstream's, in arrival order */
    size_t nheaders;
    bool keep_transfer_encoding; /* the body is relayed in the upstream's own framing */
    bool drop_content_length;    /* 1xx and 204 must not carry one (RFC 9110 8.6) */
    bool add_chunked;            /* sluice frames the body in chunks itself */
    enum sl_conn_header connection;
    const struct sl_textbuf *extra; /* "Name: value\r\n" lines to add; may be NULL */
};

/* Appends "HTTP/1.1 <status> <reason>" and the upstream's headers minus hop-by-hop ones,
 * then `extra` and the Connection header chosen by the caller. Returns 0, or -1 on ENOMEM. */
int sl_forward_response_head(const struct sl_forward_response *f, struct evbuffer *out);

/* True for the statuses whose responses end with their head whatever their headers say
 * (RFC 9112 6.3, rule 1): every 1xx, 204 and 304. */
bool sl_forward_status_bodiless(int status);

/* Checks the framing rules RFC 9112 leaves to a proxy on an upstream response head the
 * parser accepted: HTTP/1.x, a status of 100..599 and, when the response has content
 * (`bodiless` false), at most one Transfer-Encoding, exactly "chunked", never in HTTP/1.0.
 * Returns NULL when sluice can relay the response, else the reason to log (answer 502). */
const char *sl_forward_check_response(unsigned http_major, unsigned http_minor, int status,
                                      bool bodiless, const struct sl_header *headers, size_t n);

/* Counts the elements of the Upgrade fields among `h` (`n` fields); `*allowed` receives
 * how many name a protocol in `names` (lower case), compared without case and ignoring
 * any "/version". h2c is never allowed. Returns the count of all elements. */
size_t sl_forward_upgrades(const struct sl_header *h, size_t n, char *const *names,
                           size_t nnames, size_t *allowed);

/* True when `name` (`len` bytes) is one of the fixed hop-by-hop header names. */
bool sl_forward_is_hop_by_hop(const char *name, size_t len);

#endif
