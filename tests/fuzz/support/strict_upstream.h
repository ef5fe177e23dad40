/* The upstream as a strict HTTP/1.1 server sees what sluice forwards: every connection's
 * bytes are parsed with llhttp, and a stream it cannot parse, a hop-by-hop field, a
 * Transfer-Encoding other than chunked, a Connection other than upgrade, more than one Host
 * or X-Forwarded-For, or other than one X-Forwarded-Proto is a finding (a smuggling vector).
 * The target answers from the two calls it passes in; after a 101 it sets up->tunnel, and
 * the connection's bytes are no longer parsed. */
#ifndef SLUICE_FUZZ_STRICT_UPSTREAM_H
#define SLUICE_FUZZ_STRICT_UPSTREAM_H

#include <stdbool.h>

#include "proxy.h"

struct fz_strict_calls {
    /* A request head was parsed, before its body: `is_head` for HEAD, `upgrade` when it
     * asks for one. */
    void (*head)(struct fz_upstream *up, bool is_head, bool upgrade);
    /* The request's body was parsed to its end. */
    void (*end)(struct fz_upstream *up, bool is_head, bool upgrade);
};

/* The proxy hooks (proxy.h) that parse and check; every input starts with
 * fz_strict_begin, which forgets the last input's connections. */
extern const struct fz_hooks fz_strict_hooks;
void fz_strict_begin(const struct fz_strict_calls *calls);

#endif
