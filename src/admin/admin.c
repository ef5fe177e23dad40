/* The admin listener: libevent's evhttp on a thread and event loop of its own. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "dashboard.h"
#include "history.h"
#include "sluice/admin.h"
#include "sluice/clock.h"
#include "sluice/log.h"
#include "sluice/secret.h"

struct sl_admin {
    struct sl_metrics *metrics;
    struct sl_admin_hooks hooks;
    struct event_base *base;
    struct evhttp *http;
    struct event *wakeup;
    struct event *sample; /* the dashboard's history, every SL_HISTORY_INTERVAL_MS */
    struct sl_dashboard *dashboard;
    char csp[512];   /* the page's Content-Security-Policy */
    int wake_fds[2]; /* written by sl_admin_stop(), read on the admin thread */
    pthread_t thread;
    bool thread_started;
    char *unix_path; /* unlinked at stop */
    unsigned port;
};

/* Admin requests are a request line and a few headers, never a body; a client that sends
 * more, or stalls, is cut off. */
#define ADMIN_MAX_HEADERS 8192
#define ADMIN_TIMEOUT_S 10

static void reply(struct evhttp_request *req, int code, const char *reason,
                  const char *content_type, const char *body)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Type", content_type);
    evhttp_add_header(headers, "Cache-Control", "no-store");
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    if (body)
        evbuffer_add(out, body, strlen(body));
    /* evhttp would send the body of a HEAD response: announce its length, send none. */
    if (evhttp_request_get_command(req) == EVHTTP_REQ_HEAD) {
        char len[24];
        snprintf(len, sizeof len, "%zu", evbuffer_get_length(out));
        evhttp_add_header(headers, "Content-Length", len);
        evbuffer_drain(out, evbuffer_get_length(out));
    }
    evhttp_send_reply(req, code, reason, NULL);
}

static void serve_metrics(struct sl_admin *admin, struct evhttp_request *req,
                          const struct sl_config *cfg)
{
    if (sl_metrics_render(admin->metrics, evhttp_request_get_output_buffer(req)) < 0) {
        evbuffer_drain(evhttp_request_get_output_buffer(req), (size_t)-1);
        reply(req, 500, "Internal Server Error", "text/plain; charset=utf-8", "out of memory\n");
        return;
    }
    reply(req, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", NULL);
}

static void serve_healthz(struct sl_admin *admin, struct evhttp_request *req,
                          const struct sl_config *cfg)
{
    reply(req, 200, "OK", "text/plain; charset=utf-8", "ok\n");
}

static void serve_readyz(struct sl_admin *admin, struct evhttp_request *req,
                         const struct sl_config *cfg)
{
    bool ready = !admin->hooks.ready || admin->hooks.ready(admin->hooks.arg);
    if (ready)
        reply(req, 200, "OK", "text/plain; charset=utf-8", "ready\n");
    else
        reply(req, 503, "Service Unavailable", "text/plain; charset=utf-8", "not ready\n");
}

static void serve_config(struct sl_admin *admin, struct evhttp_request *req,
                         const struct sl_config *cfg)
{
    char *json = NULL;
    int rc = cfg ? sl_cfg_to_json(cfg, &json) : -1;

    if (!cfg) {
        reply(req, 503, "Service Unavailable", "text/plain; charset=utf-8", "no configuration\n");
        return;
    }
    if (rc < 0) {
        reply(req, 500, "Internal Server Error", "text/plain; charset=utf-8", "out of memory\n");
        return;
    }
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    evbuffer_add(out, json, strlen(json));
    evbuffer_add(out, "\n", 1);
    free(json);
    reply(req, 200, "OK", "application/json", NULL);
}

/* Keys may be personal data: without the sketches, or with admin.top off in the running
 * configuration, the endpoint does not exist. */
static void serve_top(struct sl_admin *admin, struct evhttp_request *req,
                      const struct sl_config *cfg)
{
    if (!cfg || !admin->hooks.top || !cfg->admin_top) {
        reply(req, 404, "Not Found", "text/plain; charset=utf-8", "not found\n");
        return;
    }
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    struct evbuffer *out = evhttp_request_get_output_buffer(req);
    int status = sl_top_render(admin->hooks.top, cfg, uri ? evhttp_uri_get_query(uri) : NULL,
                               sl_clock_mono_us(), out);
    switch (status) {
    case 200:
        reply(req, 200, "OK", "application/json", NULL);
        break;
    case 400:
        reply(req, 400, "Bad Request", "application/json", NULL);
        break;
    case 404:
        reply(req, 404, "Not Found", "application/json", NULL);
        break;
    default:
        evbuffer_drain(out, evbuffer_get_length(out));
        reply(req, 500, "Internal Server Error", "text/plain; charset=utf-8", "out of memory\n");
    }
}

/* The page asks for nothing from elsewhere and shows what clients chose (keys): its policy
 * says so to the browser, and no other site may frame it. */
static void serve_page(struct sl_admin *admin, struct evhttp_request *req,
                       const struct sl_config *cfg)
{
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Content-Security-Policy", admin->csp);
    evhttp_add_header(headers, "X-Content-Type-Options", "nosniff");
    evhttp_add_header(headers, "Referrer-Policy", "no-referrer");
    if (evbuffer_add(evhttp_request_get_output_buffer(req), sl_dashboard_html,
                     sl_dashboard_html_len) < 0) {
        reply(req, 500, "Internal Server Error", "text/plain; charset=utf-8", "out of memory\n");
        return;
    }
    reply(req, 200, "OK", "text/html; charset=utf-8", NULL);
}

static void serve_dashboard_json(struct sl_admin *admin, struct evhttp_request *req,
                                 const struct sl_config *cfg)
{
    struct evbuffer *out = evhttp_request_get_output_buffer(req);

    if (!cfg) {
        reply(req, 503, "Service Unavailable", "text/plain; charset=utf-8", "no configuration\n");
        return;
    }
    if (sl_dashboard_render(admin->dashboard, cfg, sl_clock_mono_us(), sl_clock_real_us() / 1000,
                            out) < 0) {
        evbuffer_drain(out, evbuffer_get_length(out));
        reply(req, 500, "Internal Server Error", "text/plain; charset=utf-8", "out of memory\n");
        return;
    }
    reply(req, 200, "OK", "application/json", NULL);
}

/* Who may ask: anyone (probes must keep working whatever the token), or only a client that
 * presents admin.token; /metrics too under admin.metrics_auth. */
enum access { ACCESS_OPEN, ACCESS_TOKEN, ACCESS_METRICS };

static bool token_required(enum access access, const struct sl_config *cfg)
{
    if (!cfg || !cfg->admin_token)
        return false;
    return access == ACCESS_TOKEN || (access == ACCESS_METRICS && cfg->admin_metrics_auth);
}

enum credentials { CREDENTIALS_NONE, CREDENTIALS_WRONG, CREDENTIALS_RIGHT };

/* RFC 6750 section 2.1: "Authorization: Bearer TOKEN", the scheme in any case (RFC 9110
 * section 11.1) and one or more spaces before the token. Another scheme is no credentials
 * at all, as RFC 6750 section 3.1 counts it. */
static enum credentials bearer(struct evhttp_request *req, const char *token)
{
    const char *value = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");

    if (!value || strncasecmp(value, "Bearer ", 7) != 0)
        return CREDENTIALS_NONE;
    const char *given = value + 7;
    while (*given == ' ')
        given++;
    return sl_secret_equal(given, strlen(given), token, strlen(token)) ? CREDENTIALS_RIGHT
                                                                       : CREDENTIALS_WRONG;
}

/* RFC 6750 section 3: the challenge names the scheme; error="invalid_token" only when a
 * token was presented. */
static void reply_unauthorized(struct evhttp_request *req, enum credentials given)
{
    evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate",
                      given == CREDENTIALS_WRONG
                          ? "Bearer realm=\"sluice admin\", error=\"invalid_token\""
                          : "Bearer realm=\"sluice admin\"");
    reply(req, 401, "Unauthorized", "text/plain; charset=utf-8",
          "unauthorized: send the admin token as \"Authorization: Bearer TOKEN\"\n");
}

static void handle(struct evhttp_request *req, void *arg)
{
    static const struct {
        const char *path;
        enum access access;
        void (*serve)(struct sl_admin *, struct evhttp_request *, const struct sl_config *);
    } routes[] = {
        {"/metrics", ACCESS_METRICS, serve_metrics},
        {"/readyz", ACCESS_OPEN, serve_readyz},
        {"/config", ACCESS_TOKEN, serve_config},
        {"/top", ACCESS_TOKEN, serve_top},
        {"/healthz", ACCESS_OPEN, serve_healthz},
        {"/", ACCESS_OPEN, serve_page},
        {"/dashboard.json", ACCESS_TOKEN, serve_dashboard_json},
    };
    struct sl_admin *admin = arg;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    enum evhttp_cmd_type method = evhttp_request_get_command(req);

    for (size_t i = 0; path && i < sizeof routes / sizeof routes[0]; i++) {
        if (strcmp(path, routes[i].path) != 0)
            continue;
        if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
            evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", "GET, HEAD");
            reply(req, 405, "Method Not Allowed", "text/plain; charset=utf-8",
                  "method not allowed\n");
            return;
        }
        /* The snapshot of this request: a reload's new token applies to the next one. */
        struct sl_config *cfg =
            admin->hooks.config_ref ? admin->hooks.config_ref(admin->hooks.arg) : NULL;
        enum credentials given = token_required(routes[i].access, cfg)
                                     ? bearer(req, cfg->admin_token)
                                     : CREDENTIALS_RIGHT;
        if (given == CREDENTIALS_RIGHT)
            routes[i].serve(admin, req, cfg);
        else
            reply_unauthorized(req, given);
        sl_cfg_unref(cfg);
        return;
    }
    reply(req, 404, "Not Found", "text/plain; charset=utf-8", "not found\n");
}

static void on_wakeup(evutil_socket_t fd, short what, void *arg)
{
    struct sl_admin *admin = arg;
    event_base_loopbreak(admin->base);
}

static void on_sample(evutil_socket_t fd, short what, void *arg)
{
    struct sl_admin *admin = arg;
    struct sl_config *cfg =
        admin->hooks.config_ref ? admin->hooks.config_ref(admin->hooks.arg) : NULL;
    sl_dashboard_sample(admin->dashboard, cfg, sl_clock_mono_us() / 1000);
    sl_cfg_unref(cfg);
}

static void *run(void *arg)
{
    struct sl_admin *admin = arg;
    event_base_dispatch(admin->base);
    return NULL;
}

/* A socket file left by a previous run would make bind() fail. It is removed only when
 * nothing answers on it: a live server's socket, or anything that is not a socket, stays
 * and bind() reports the conflict. */
static void remove_stale_socket(const struct sl_sockaddr *addr)
{
    const char *path = ((const struct sockaddr_un *)&addr->ss)->sun_path;
    struct stat st;
    int fd;

    if (lstat(path, &st) < 0 || !S_ISSOCK(st.st_mode))
        return;
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return;
    if (connect(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 && errno == ECONNREFUSED)
        unlink(path);
    close(fd);
}

/* A listening, non-blocking socket bound to `addr`, or -1 with `err` filled. */
static int listen_on(struct sl_admin *admin, const struct sl_sockaddr *addr, char *err,
                     size_t errlen)
{
    const char *text = addr->text ? addr->text : "(admin address)";
    int family = addr->ss.ss_family;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;

    if (fd < 0)
        goto fail;
    if (family == AF_UNIX) {
        const struct sockaddr_un *sun = (const struct sockaddr_un *)&addr->ss;
        remove_stale_socket(addr);
        admin->unix_path = strdup(sun->sun_path);
        if (!admin->unix_path)
            goto fail;
    } else if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
        goto fail;
    }
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, 128) < 0)
        goto fail;
    if (family != AF_UNIX) {
        struct sockaddr_storage local;
        socklen_t len = sizeof local;
        if (getsockname(fd, (struct sockaddr *)&local, &len) == 0)
            admin->port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&local)->sin6_port
                                                   : ((struct sockaddr_in *)&local)->sin_port);
    }
    return fd;
fail:
    snprintf(err, errlen, "admin.listen: cannot listen on %s: %s", text, strerror(errno));
    if (fd >= 0)
        close(fd);
    free(admin->unix_path);
    admin->unix_path = NULL;
    return -1;
}

/* Reachable from this machine only: 127.0.0.0/8, ::1 (::ffff:127.0.0.0/104 too) and unix
 * sockets. */
static bool is_local(const struct sl_sockaddr *addr)
{
    const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&addr->ss)->sin6_addr;

    switch (addr->ss.ss_family) {
    case AF_UNIX:
        return true;
    case AF_INET:
        return ntohl(((const struct sockaddr_in *)&addr->ss)->sin_addr.s_addr) >> 24 == 127;
    case AF_INET6:
        return IN6_IS_ADDR_LOOPBACK(a6) || (IN6_IS_ADDR_V4MAPPED(a6) && a6->s6_addr[12] == 127);
    default:
        return false;
    }
}

/* /top lists the keys limits count (client addresses, API keys): on an address other
 * machines reach, without a token, the operator should hear of it once. */
static void warn_if_exposed(struct sl_admin *admin, const struct sl_sockaddr *addr)
{
    if (is_local(addr))
        return;
    struct sl_config *cfg =
        admin->hooks.config_ref ? admin->hooks.config_ref(admin->hooks.arg) : NULL;
    if (!cfg || !cfg->admin_token)
        sl_log_warn("admin.listen %s is not a loopback address and admin.token is not set: "
                    "whoever reaches it can read %s/config (the configuration), /metrics and "
                    "the dashboard; "
                    "set admin.token, e.g. to \"${SLUICE_ADMIN_TOKEN}\"",
                    addr->text ? addr->text : "(admin address)",
                    cfg && !cfg->admin_top
                        ? ""
                        : "/top (the keys limits count, such as client addresses and API keys), ");
    sl_cfg_unref(cfg);
}

struct sl_admin *sl_admin_start(const struct sl_sockaddr *addr, struct sl_metrics *metrics,
                                const struct sl_admin_hooks *hooks, char *err, size_t errlen)
{
    struct sl_admin *admin = calloc(1, sizeof *admin);
    int fd = -1;

    if (!admin) {
        snprintf(err, errlen, "admin: out of memory");
        return NULL;
    }
    admin->metrics = metrics;
    if (hooks)
        admin->hooks = *hooks;
    admin->wake_fds[0] = admin->wake_fds[1] = -1;

    fd = listen_on(admin, addr, err, errlen);
    if (fd < 0)
        goto fail;
    /* A pipe rather than a cross-thread loopbreak: stopping then works whether or not the
     * process enabled libevent's thread support before this base was made. */
    if (pipe2(admin->wake_fds, O_CLOEXEC | O_NONBLOCK) < 0)
        goto fail_errno;
    admin->base = event_base_new();
    admin->http = admin->base ? evhttp_new(admin->base) : NULL;
    if (!admin->http)
        goto fail_errno;
    admin->wakeup = event_new(admin->base, admin->wake_fds[0], EV_READ, on_wakeup, admin);
    if (!admin->wakeup || event_add(admin->wakeup, NULL) < 0)
        goto fail_errno;
    admin->dashboard = sl_dashboard_new(metrics, admin->hooks.top, sl_clock_mono_us() / 1000);
    admin->sample = event_new(admin->base, -1, EV_PERSIST, on_sample, admin);
    const struct timeval every = {SL_HISTORY_INTERVAL_MS / 1000,
                                  SL_HISTORY_INTERVAL_MS % 1000 * 1000};
    if (!admin->dashboard || !admin->sample || event_add(admin->sample, &every) < 0)
        goto fail_errno;
    if (sl_dashboard_csp(admin->csp, sizeof admin->csp) < 0) {
        snprintf(err, errlen, "admin: the dashboard page has no <style> or <script> element");
        goto fail;
    }
    evhttp_set_allowed_methods(admin->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                                EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                                EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                                EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    evhttp_set_max_headers_size(admin->http, ADMIN_MAX_HEADERS);
    evhttp_set_max_body_size(admin->http, 0);
    evhttp_set_timeout(admin->http, ADMIN_TIMEOUT_S);
    evhttp_set_gencb(admin->http, handle, admin);
    /* The socket is evhttp's from here on: on failure (ENOMEM only) it may already be
     * closed, so it is not closed again. */
    if (!evhttp_accept_socket_with_handle(admin->http, fd)) {
        fd = -1;
        goto fail_errno;
    }
    fd = -1;
    /* Before the first request can be answered: whoever sees the listener up sees this. */
    warn_if_exposed(admin, addr);
    if ((errno = pthread_create(&admin->thread, NULL, run, admin)) != 0)
        goto fail_errno;
    admin->thread_started = true;
    return admin;

fail_errno:
    snprintf(err, errlen, "admin: cannot start: %s", strerror(errno ? errno : ENOMEM));
fail:
    if (fd >= 0)
        close(fd);
    sl_admin_stop(admin);
    return NULL;
}

unsigned sl_admin_port(const struct sl_admin *admin)
{
    return admin->port;
}

void sl_admin_stop(struct sl_admin *admin)
{
    if (!admin)
        return;
    if (admin->thread_started) {
        ssize_t n;
        do
            n = write(admin->wake_fds[1], "x", 1);
        while (n < 0 && errno == EINTR);
        pthread_join(admin->thread, NULL);
    }
    if (admin->wakeup)
        event_free(admin->wakeup);
    if (admin->sample)
        event_free(admin->sample);
    sl_dashboard_free(admin->dashboard);
    if (admin->http)
        evhttp_free(admin->http);
    if (admin->base)
        event_base_free(admin->base);
    for (int i = 0; i < 2; i++)
        if (admin->wake_fds[i] >= 0)
            close(admin->wake_fds[i]);
    if (admin->unix_path) {
        unlink(admin->unix_path);
        free(admin->unix_path);
    }
    free(admin);
}
