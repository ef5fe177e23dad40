/* Placeholder until the proxy exists. */
#include "sluice/log.h"
#include "sluice/server.h"

int sl_server_run(struct sl_config *cfg)
{
    sl_log_error("the proxy is not built in this tree");
    sl_cfg_unref(cfg);
    return 1;
}
