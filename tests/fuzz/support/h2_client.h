/* The client as a strict HTTP/2 client sees what sluice sends it: whole frames of known
 * types on the right streams, header blocks that HPACK decodes into a response head
 * (":status" first, lower-case names, no connection-specific field), no DATA before the
 * head or after the end, and a body as long as its Content-Length. Any of these broken is
 * a finding (fz_fail). */
#ifndef SLUICE_FUZZ_H2_CLIENT_H
#define SLUICE_FUZZ_H2_CLIENT_H

#include <event2/buffer.h>

#include "proxy.h"

/* Checks every frame of `from_sluice`, all sluice sent on one connection that opened with
 * the client's preface; the last frame may be cut short by the end of the connection. */
void fz_h2_client_check(struct evbuffer *from_sluice);

#endif
