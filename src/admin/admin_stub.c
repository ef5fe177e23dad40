/* Placeholder metrics and admin listener: count nothing, serve nothing. */
#include <stdlib.h>

#include "sluice/admin.h"
#include "sluice/metrics.h"

struct sl_metrics {
    int unused;
};

struct sl_metrics *sl_metrics_new(unsigned nslots)
{
    return calloc(1, sizeof(struct sl_metrics));
}
void sl_metrics_free(struct sl_metrics *metrics)
{
    free(metrics);
}
struct sl_metrics_slot *sl_metrics_slot(struct sl_metrics *metrics, unsigned i)
{
    return NULL;
}
int sl_metrics_bind(struct sl_metrics *metrics, struct sl_config *cfg)
{
    return 0;
}
void sl_metrics_set_memory_store(struct sl_metrics *metrics, const struct sl_store *memory)
{
}
void sl_metrics_request(struct sl_metrics_slot *s, const struct sl_route *route,
                        enum sl_outcome outcome, uint64_t duration_us)
{
}
void sl_metrics_limit_check(struct sl_metrics_slot *s, const struct sl_limit *limit,
                            enum sl_check_result result)
{
}
void sl_metrics_response(struct sl_metrics_slot *s, const struct sl_route *route, int status)
{
}
void sl_metrics_store_duration(struct sl_metrics_slot *s, enum sl_store_kind store,
                               uint64_t duration_us)
{
}
void sl_metrics_store_error(struct sl_metrics_slot *s, enum sl_store_kind store,
                            enum sl_store_status kind)
{
}
void sl_metrics_upstream_error(struct sl_metrics_slot *s, enum sl_upstream_error kind)
{
}
void sl_metrics_connection_opened(struct sl_metrics_slot *s)
{
}
void sl_metrics_connection_closed(struct sl_metrics_slot *s)
{
}
void sl_metrics_redis_connected(struct sl_metrics_slot *s, bool connected)
{
}
void sl_metrics_config_reload(struct sl_metrics *metrics, bool success)
{
}
int sl_metrics_render(struct sl_metrics *metrics, struct evbuffer *out)
{
    return 0;
}
struct sl_admin *sl_admin_start(const struct sl_sockaddr *addr, struct sl_metrics *metrics,
                                const struct sl_admin_hooks *hooks, char *err, size_t errlen)
{
    return (struct sl_admin *)calloc(1, 1);
}
void sl_admin_stop(struct sl_admin *admin)
{
    free(admin);
}
