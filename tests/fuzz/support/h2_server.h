/* The upstream as a strict HTTP/2 server sees what sluice sends on each of its h2c://
 * connections: the bytes go into a libnghttp2 server session, which checks the preface,
 * every frame, the request heads (:method, :scheme, :path, lower-case names, no
 * connection-specific field but "te: trailers") and DATA against its windows. A stream or
 * connection error that session would report, a request without :authority, a stream
 * opened after sluice's GOAWAY, or DATA past every window the upstream granted is a
 * finding (fz_fail).
 *
 * The first connection is scripted: the target plays raw bytes to sluice on it, and the
 * session only reads (sluice's SETTINGS, PING and GOAWAY answers to the script, its
 * WINDOW_UPDATEs and its resets of streams the script opened are checked here, not by the
 * session, which never saw the script). Every
 * later connection (a request sent again, a pool that grew) is answered honestly by the
 * session: 200 with "ok", or a bare 200 to HEAD. */
#ifndef SLUICE_FUZZ_H2_SERVER_H
#define SLUICE_FUZZ_H2_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proxy.h"

/* The proxy hooks that read and check. Every input starts with fz_h2_server_begin, given
 * the script (the windows it grants bound the DATA sluice may send on the first
 * connection; the bytes are borrowed until fz_h2_server_end), and ends with
 * fz_h2_server_end after fz_proxy_finish. */
extern const struct fz_hooks fz_h2_server_hooks;
void fz_h2_server_begin(const uint8_t *script, size_t len);
void fz_h2_server_end(void);

/* Sends the script's `len` bytes on sluice's first upstream connection, in pieces of
 * `piece` bytes (0: at once) with the loop run after each, then closes it when `close`.
 * Nothing is sent when sluice opened no connection. */
void fz_h2_server_play(struct fz_proxy *p, const uint8_t *bytes, size_t len, size_t piece,
                       bool close);

#endif
