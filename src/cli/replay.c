/* `sluice replay`: not yet built. */
#include <stdio.h>

#include "sluice/cli.h"

int sl_cli_replay(int argc, char **argv)
{
    fprintf(stderr, "sluice replay: not available\n");
    return SL_EXIT_USAGE;
}
