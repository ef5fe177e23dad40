/* The subcommands that answer an operator's questions without starting the proxy:
 * `sluice explain` (what would sluice do with this request, and why) and `sluice replay`
 * (what would these limits have done to the traffic of an access log). Both read the
 * configuration as -t does and reuse the proxy's own route, key and limit code. */
#ifndef SLUICE_CLI_H
#define SLUICE_CLI_H

#include "sluice/config.h"

#define SL_EXIT_CONFIG 1
#define SL_EXIT_USAGE 2

/* `sluice explain`: argv[0] is "explain". Prints to stdout; returns the exit status. */
int sl_cli_explain(int argc, char **argv);

/* `sluice replay`: argv[0] is "replay". Prints to stdout; returns the exit status. */
int sl_cli_replay(int argc, char **argv);

/* The configuration path when -c is not given: $SLUICE_CONFIG, else the system file. */
const char *sl_cli_default_config(void);

/* Prints the loader's problems (one per line) to stderr, each as "sluice: <problem>". */
void sl_cli_print_errors(const char *errors);

/* Loads `path` (NULL: the default) as -t does; on failure prints every error and returns
 * NULL. The caller drops the reference with sl_cfg_unref(). */
struct sl_config *sl_cli_load_config(const char *path);

#endif
