/* An upstream given by host name (`http://app:3000`, as compose and Kubernetes services
 * are reached). The name is looked up with evdns on the worker's own loop, never with
 * getaddrinfo(), which would block every connection of the worker for as long as DNS
 * takes. libevent's connect-by-hostname does the lookup and the connect; the address the
 * connection reached is then remembered for SL_UPSTREAM_NAME_TTL_MS, so that steady
 * traffic looks nothing up and pooled connections are matched to it, while an address
 * that stops answering, or a TTL that ran out, sends the next connection to DNS again. */
#include <event2/dns.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "sluice/clock.h"

/* Each attempt gets a third of the connect budget, so that a lost UDP answer is asked
 * again once and a failed lookup is reported as such before the connect timeout fires. */
static void set_dns_timeout(struct evdns_base *dns, uint64_t connect_timeout_ms)
{
    char text[32];
    uint64_t ms = connect_timeout_ms / 3 ? connect_timeout_ms / 3 : 1;
    snprintf(text, sizeof text, "%llu.%03llu", (unsigned long long)(ms / 1000),
             (unsigned long long)(ms % 1000));
    evdns_base_set_option(dns, "timeout:", text);
    evdns_base_set_option(dns, "attempts:", "2");
}

/* Makes `w->upname` about `u`'s name, forgetting what it knew of another one. */
static int follow(struct sl_worker *w, const struct sl_upstream_config *u)
{
    struct sl_upstream_name *n = &w->upname;
    if (n->host && n->port == u->port && strcmp(n->host, u->host) == 0)
        return 0;
    char *host = strdup(u->host);
    if (!host)
        return -1;
    free(n->host);
    n->host = host;
    n->port = u->port;
    n->addr_len = 0;
    return 0;
}

const struct sockaddr_storage *
sl_upstream_name_addr(struct sl_worker *w, const struct sl_upstream_config *u, socklen_t *len)
{
    struct sl_upstream_name *n = &w->upname;
    if (follow(w, u) < 0 || n->addr_len == 0 ||
        sl_clock_mono_us() - n->learnt_us >= SL_UPSTREAM_NAME_TTL_MS * 1000ULL)
        return NULL;
    *len = n->addr_len;
    return &n->addr;
}

int sl_upstream_name_connect(struct sl_worker *w, const struct sl_upstream_config *u,
                             struct bufferevent *bev)
{
    struct sl_upstream_name *n = &w->upname;
    if (follow(w, u) < 0)
        return -1;
    if (!n->dns) {
        n->dns = evdns_base_new(w->base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                             EVDNS_BASE_DISABLE_WHEN_INACTIVE);
        if (!n->dns)
            return -1;
    }
    set_dns_timeout(n->dns, u->connect_timeout_ms);
    return bufferevent_socket_connect_hostname(bev, n->dns, AF_UNSPEC, n->host, n->port);
}

void sl_upstream_name_learn(struct sl_worker *w, const struct sockaddr_storage *addr, socklen_t len)
{
    struct sl_upstream_name *n = &w->upname;
    memcpy(&n->addr, addr, len);
    n->addr_len = len;
    n->learnt_us = sl_clock_mono_us();
}

void sl_upstream_name_forget(struct sl_worker *w)
{
    w->upname.addr_len = 0;
}

void sl_upstream_name_deinit(struct sl_worker *w)
{
    struct sl_upstream_name *n = &w->upname;
    if (n->dns)
        evdns_base_free(n->dns, 1);
    free(n->host);
    memset(n, 0, sizeof *n);
}
