/* What every subcommand shares with the proxy's own start-up: where the configuration is
 * and how its errors are printed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/cli.h"

const char *sl_cli_default_config(void)
{
    const char *env = getenv("SLUICE_CONFIG");
    return env && *env ? env : "/etc/sluice/sluice.yaml";
}

void sl_cli_print_errors(const char *errors)
{
    while (*errors) {
        size_t n = strcspn(errors, "\n");
        fprintf(stderr, "sluice: %.*s\n", (int)n, errors);
        errors += n + (errors[n] == '\n');
    }
}

struct sl_config *sl_cli_load_config(const char *path)
{
    char *errors = NULL;
    struct sl_config *cfg = sl_cfg_load(path ? path : sl_cli_default_config(), &errors);

    if (!cfg)
        sl_cli_print_errors(errors ? errors : "configuration could not be loaded\n");
    free(errors);
    return cfg;
}
