/* The proxy server: workers, listeners, reload and shutdown. */
#ifndef SLUICE_SERVER_H
#define SLUICE_SERVER_H

#include "sluice/config.h"

/* Runs sluice under `cfg` until SIGTERM or SIGINT, then drains in-flight requests for up
 * to 10 s. Takes ownership of the caller's reference to `cfg`. SIGHUP reloads cfg->file.
 * Returns the process exit status: 0 after a clean shutdown, 1 when start-up failed
 * (the reason is logged). Call once, from the main thread. */
int sl_server_run(struct sl_config *cfg);

#endif
