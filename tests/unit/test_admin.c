/* The admin listener over real sockets: every endpoint, status codes, hooks, stop; the
 * bearer token on /top, /config and (under metrics_auth) /metrics, never on the probes. */
#include <arpa/inet.h>
#include <check.h>
#include <errno.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "../../src/admin/dashboard.h"
#include "sluice/admin.h"
#include "support/run_suite.h"

struct hook_state {
    atomic_bool ready;
    atomic_int config_calls;
    struct sl_config *cfg;
};

static struct sl_config *hook_config_ref(void *arg)
{
    struct hook_state *h = arg;
    atomic_fetch_add(&h->config_calls, 1);
    return h->cfg ? sl_cfg_ref(h->cfg) : NULL;
}

static bool hook_ready(void *arg)
{
    struct hook_state *h = arg;
    return atomic_load(&h->ready);
}

static void loopback_v4(struct sl_sockaddr *addr, unsigned port)
{
    struct sockaddr_in *sin = (struct sockaddr_in *)&addr->ss;
    memset(addr, 0, sizeof *addr);
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr->len = sizeof *sin;
    addr->text = "127.0.0.1";
}

static void unix_addr(struct sl_sockaddr *addr, const char *path)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&addr->ss;
    memset(addr, 0, sizeof *addr);
    sun->sun_family = AF_UNIX;
    snprintf(sun->sun_path, sizeof sun->sun_path, "%s", path);
    addr->len = sizeof *sun;
    addr->text = "unix:test";
}

/* One request over a fresh connection; returns the whole response (malloc'd) or NULL. */
static char *exchange(const struct sl_sockaddr *addr, const char *request)
{
    int fd = socket(addr->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct timeval tv = {10, 0};
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);

    ck_assert_int_ge(fd, 0);
    /* A bound on a broken server, not a synchronisation: a healthy reply takes
     * milliseconds. */
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ck_assert_int_eq(connect(fd, (const struct sockaddr *)&addr->ss, addr->len), 0);
    ck_assert_int_eq(write(fd, request, strlen(request)), (ssize_t)strlen(request));
    for (;;) {
        if (len + 1 == cap)
            buf = realloc(buf, cap *= 2);
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n <= 0) {
            ck_assert_msg(n == 0, "read: %s", strerror(errno));
            break;
        }
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    return buf;
}

static char *get(const struct sl_sockaddr *addr, const char *method, const char *path)
{
    char req[256];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n", method,
             path);
    return exchange(addr, req);
}

/* `get` with extra header lines, each ending in CRLF. */
static char *get_with(const struct sl_sockaddr *addr, const char *method, const char *path,
                      const char *headers)
{
    char req[512];
    snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: admin\r\n%sConnection: close\r\n\r\n",
             method, path, headers);
    return exchange(addr, req);
}

static int status_of(const char *response)
{
    int status = 0;
    ck_assert_int_eq(sscanf(response, "HTTP/1.%*d %d", &status), 1);
    return status;
}

static const char *body_of(const char *response)
{
    const char *p = strstr(response, "\r\n\r\n");
    ck_assert_ptr_nonnull(p);
    return p + 4;
}

struct fixture {
    struct sl_metrics *metrics;
    struct hook_state hooks_state;
    struct sl_config cfg;
    struct sl_admin *admin;
    struct sl_sockaddr addr; /* where clients connect */
};

static void start(struct fixture *f, const struct sl_sockaddr *bind_addr)
{
    struct sl_admin_hooks hooks = {hook_config_ref, hook_ready, &f->hooks_state, NULL};
    char err[256] = "";

    memset(f, 0, sizeof *f);
    atomic_init(&f->cfg.refs, 1);
    f->hooks_state.cfg = &f->cfg;
    atomic_init(&f->hooks_state.ready, true);
    f->metrics = sl_metrics_new(1);
    ck_assert_ptr_nonnull(f->metrics);
    f->admin = sl_admin_start(bind_addr, f->metrics, &hooks, err, sizeof err);
    ck_assert_msg(f->admin != NULL, "start failed: %s", err);
    f->addr = *bind_addr;
    if (bind_addr->ss.ss_family == AF_INET) {
        ck_assert_uint_ne(sl_admin_port(f->admin), 0);
        ((struct sockaddr_in *)&f->addr.ss)->sin_port = htons((uint16_t)sl_admin_port(f->admin));
    }
}

static void stop(struct fixture *f)
{
    sl_admin_stop(f->admin);
    /* Every reference the admin took was dropped. */
    ck_assert_int_eq(atomic_load(&f->cfg.refs), 1);
    sl_metrics_free(f->metrics);
}

START_TEST(test_healthz)
{
    struct fixture f;
    struct sl_sockaddr any;
    loopback_v4(&any, 0);
    start(&f, &any);

    char *r = get(&f.addr, "GET", "/healthz");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_str_eq(body_of(r), "ok\n");
    free(r);
    r = get(&f.addr, "GET", "/healthz?verbose=1");
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    r = get(&f.addr, "HEAD", "/healthz");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_ptr_nonnull(strstr(r, "\r\nContent-Length: 3\r\n"));
    ck_assert_str_eq(body_of(r), "");
    free(r);
    stop(&f);
}
END_TEST

START_TEST(test_metrics_endpoint)
{
    struct fixture f;
    struct sl_sockaddr any;
    loopback_v4(&any, 0);
    start(&f, &any);
    sl_metrics_request(sl_metrics_slot(f.metrics, 0), NULL, SL_OUTCOME_UNMATCHED, 10);
    sl_metrics_config_reload(f.metrics, false);

    char *r = get(&f.addr, "GET", "/metrics");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_ptr_nonnull(
        strstr(r, "\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"));
    ck_assert_ptr_nonnull(strstr(body_of(r), "# TYPE sluice_requests_total counter\n"));
    ck_assert_ptr_nonnull(
        strstr(body_of(r), "\nsluice_requests_total{route=\"\",decision=\"unmatched\"} 1\n"));
    ck_assert_ptr_nonnull(
        strstr(body_of(r), "\nsluice_config_reloads_total{result=\"failure\"} 1\n"));
    free(r);
    stop(&f);
}
END_TEST

START_TEST(test_readyz_follows_the_hook)
{
    struct fixture f;
    struct sl_sockaddr any;
    loopback_v4(&any, 0);
    start(&f, &any);

    char *r = get(&f.addr, "GET", "/readyz");
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    atomic_store(&f.hooks_state.ready, false);
    r = get(&f.addr, "GET", "/readyz");
    ck_assert_int_eq(status_of(r), 503);
    free(r);
    atomic_store(&f.hooks_state.ready, true);
    r = get(&f.addr, "GET", "/readyz");
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    stop(&f);
}
END_TEST

START_TEST(test_config_is_json_and_releases_its_reference)
{
    struct fixture f;
    struct sl_sockaddr any;
    loopback_v4(&any, 0);
    start(&f, &any);

    char *r = get(&f.addr, "GET", "/config");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_ptr_nonnull(strstr(r, "\r\nContent-Type: application/json\r\n"));
    ck_assert_int_eq(body_of(r)[0], '{');
    free(r);
    ck_assert_int_eq(atomic_load(&f.hooks_state.config_calls), 1);
    ck_assert_int_eq(atomic_load(&f.cfg.refs), 1);

    f.hooks_state.cfg = NULL; /* no configuration published */
    r = get(&f.addr, "GET", "/config");
    ck_assert_int_eq(status_of(r), 503);
    free(r);
    stop(&f);
}
END_TEST

START_TEST(test_unknown_paths_and_methods)
{
    struct fixture f;
    struct sl_sockaddr any;
    loopback_v4(&any, 0);
    start(&f, &any);

    char *r = get(&f.addr, "GET", "/nope");
    ck_assert_int_eq(status_of(r), 404);
    free(r);
    r = get(&f.addr, "GET", "/metrics/extra");
    ck_assert_int_eq(status_of(r), 404);
    free(r);
    r = get(&f.addr, "POST", "/metrics");
    ck_assert_int_eq(status_of(r), 405);
    ck_assert_ptr_nonnull(strstr(r, "\r\nAllow: GET, HEAD\r\n"));
    free(r);
    r = get(&f.addr, "DELETE", "/config");
    ck_assert_int_eq(status_of(r), 405);
    free(r);
    r = get(&f.addr, "PATCH", "/healthz");
    ck_assert_int_eq(status_of(r), 405);
    free(r);
    stop(&f);
}
END_TEST

START_TEST(test_unix_socket)
{
    char path[108];
    struct sl_sockaddr addr;
    struct fixture f;
    struct stat st;

    snprintf(path, sizeof path, "/tmp/sluice-admin-test-%ld.sock", (long)getpid());
    unlink(path);
    unix_addr(&addr, path);
    start(&f, &addr);
    ck_assert_uint_eq(sl_admin_port(f.admin), 0);
    char *r = get(&f.addr, "GET", "/healthz");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_str_eq(body_of(r), "ok\n");
    free(r);
    stop(&f);
    ck_assert_int_eq(stat(path, &st), -1); /* the socket file is removed */

    /* A stale socket file left by a dead process does not prevent a restart. */
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr.ss, addr.len), 0);
    close(fd);
    ck_assert_int_eq(stat(path, &st), 0);
    start(&f, &addr);
    r = get(&f.addr, "GET", "/readyz");
    ck_assert_int_eq(status_of(r), 200);
    free(r);

    /* A live listener's socket is left alone: the second start fails. */
    char err[256] = "";
    struct sl_admin_hooks hooks = {NULL, NULL, NULL, NULL};
    ck_assert_ptr_null(sl_admin_start(&addr, f.metrics, &hooks, err, sizeof err));
    ck_assert_ptr_nonnull(strstr(err, "unix:test"));
    r = get(&f.addr, "GET", "/healthz");
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    stop(&f);
}
END_TEST

START_TEST(test_busy_port_is_an_error)
{
    struct fixture f;
    struct sl_sockaddr any;
    char err[256] = "";
    struct sl_admin_hooks hooks = {NULL, NULL, NULL, NULL};

    loopback_v4(&any, 0);
    start(&f, &any);
    ck_assert_ptr_null(sl_admin_start(&f.addr, f.metrics, &hooks, err, sizeof err));
    ck_assert_msg(strstr(err, "127.0.0.1") && strstr(err, "in use"), "message: %s", err);
    stop(&f);
    sl_admin_stop(NULL);
}
END_TEST

START_TEST(test_missing_hooks)
{
    struct sl_sockaddr any;
    char err[256] = "";
    struct sl_admin_hooks hooks = {NULL, NULL, NULL, NULL};
    struct sl_metrics *metrics = sl_metrics_new(1);

    loopback_v4(&any, 0);
    struct sl_admin *admin = sl_admin_start(&any, metrics, &hooks, err, sizeof err);
    ck_assert_ptr_nonnull(admin);
    ((struct sockaddr_in *)&any.ss)->sin_port = htons((uint16_t)sl_admin_port(admin));
    char *r = get(&any, "GET", "/readyz");
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    r = get(&any, "GET", "/config");
    ck_assert_int_eq(status_of(r), 503);
    free(r);
    sl_admin_stop(admin);
    sl_metrics_free(metrics);
}
END_TEST

START_TEST(test_ipv6_loopback)
{
    struct sl_sockaddr addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&addr.ss;
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 lo = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    bool have_v6 = probe >= 0 && bind(probe, (struct sockaddr *)&lo, sizeof lo) == 0;
    if (probe >= 0)
        close(probe);
    if (!have_v6) {
        printf("test_admin: no IPv6 loopback; skipped\n");
        return;
    }
    memset(&addr, 0, sizeof addr);
    *sin6 = lo;
    addr.len = sizeof lo;
    addr.text = "[::1]:0";

    struct fixture f;
    start(&f, &addr);
    unsigned port = sl_admin_port(f.admin);
    ck_assert_uint_ne(port, 0);
    sin6->sin6_port = htons((uint16_t)port);
    char *r = get(&addr, "GET", "/healthz");
    ck_assert_int_eq(status_of(r), 200);
    free(r);
    stop(&f);
}
END_TEST

/* The status of `method path` with `headers`, and the response's challenge (or "") in
 * `challenge`. */
static int ask(const struct fixture *f, const char *method, const char *path, const char *headers,
               char challenge[128])
{
    char *r = get_with(&f->addr, method, path, headers);
    int status = status_of(r);
    const char *h = strstr(r, "\r\nWWW-Authenticate: ");

    challenge[0] = '\0';
    if (h && h < strstr(r, "\r\n\r\n")) {
        h += strlen("\r\nWWW-Authenticate: ");
        snprintf(challenge, 128, "%.*s", (int)strcspn(h, "\r"), h);
    }
    free(r);
    return status;
}

#define BEARER_RIGHT "Authorization: Bearer s3cret-T0ken\r\n"
#define CHALLENGE "Bearer realm=\"sluice admin\""
#define CHALLENGE_INVALID "Bearer realm=\"sluice admin\", error=\"invalid_token\""

START_TEST(test_token_guards_top_and_config)
{
    struct fixture f;
    struct sl_sockaddr any;
    char ch[128];
    static const char *const wrong[] = {
        "Authorization: Bearer s3cret-T0ke\r\n",   /* a prefix */
        "Authorization: Bearer s3cret-T0ken0\r\n", /* one more byte */
        "Authorization: Bearer S3cret-T0ken\r\n",  /* case counts in the token */
    };

    loopback_v4(&any, 0);
    start(&f, &any);
    f.cfg.admin_token = (char *)"s3cret-T0ken";
    f.cfg.admin_top = true;

    /* No credentials, or another scheme: the challenge without an error (RFC 6750, 3.1). */
    ck_assert_int_eq(ask(&f, "GET", "/config", "", ch), 401);
    ck_assert_str_eq(ch, CHALLENGE);
    ck_assert_int_eq(ask(&f, "HEAD", "/config", "", ch), 401);
    ck_assert_int_eq(ask(&f, "GET", "/config", "Authorization: Basic czNjcmV0LVQwa2Vu\r\n", ch),
                     401);
    ck_assert_str_eq(ch, CHALLENGE);
    ck_assert_int_eq(ask(&f, "GET", "/config", "Authorization: Bearers3cret-T0ken\r\n", ch), 401);
    ck_assert_str_eq(ch, CHALLENGE);
    ck_assert_int_eq(ask(&f, "GET", "/config", "Authorization: Bearer \r\n", ch), 401);
    ck_assert_str_eq(ch, CHALLENGE);
    ck_assert_int_eq(ask(&f, "GET", "/top", "", ch), 401);
    for (size_t i = 0; i < sizeof wrong / sizeof wrong[0]; i++) {
        ck_assert_int_eq(ask(&f, "GET", "/config", wrong[i], ch), 401);
        ck_assert_str_eq(ch, CHALLENGE_INVALID);
        ck_assert_int_eq(ask(&f, "GET", "/top", wrong[i], ch), 401);
    }

    /* The right token, the scheme in any case, spaces before the token. */
    char *r = get_with(&f.addr, "GET", "/config", BEARER_RIGHT);
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_ptr_nonnull(strstr(body_of(r), "\"token\":\"***\""));
    ck_assert_ptr_null(strstr(body_of(r), "s3cret"));
    free(r);
    ck_assert_int_eq(ask(&f, "GET", "/config", "authorization: bEARER   s3cret-T0ken\r\n", ch),
                     200);
    ck_assert_int_eq(ask(&f, "HEAD", "/config", BEARER_RIGHT, ch), 200);
    /* Past the token, /top says what it would have said: no sketches here. */
    ck_assert_int_eq(ask(&f, "GET", "/top", BEARER_RIGHT, ch), 404);

    /* Probes, /metrics (without metrics_auth) and unknown paths never ask. */
    ck_assert_int_eq(ask(&f, "GET", "/healthz", "", ch), 200);
    ck_assert_int_eq(ask(&f, "GET", "/readyz", "", ch), 200);
    ck_assert_int_eq(ask(&f, "GET", "/metrics", "", ch), 200);
    ck_assert_int_eq(ask(&f, "GET", "/nope", "", ch), 404);
    ck_assert_int_eq(ask(&f, "POST", "/config", "", ch), 405);
    stop(&f);
}
END_TEST

/* The dashboard's page loads without the token (it holds no data, and asks for the token
 * itself); its JSON asks like /top, and HEAD of the page announces its whole length. */
START_TEST(test_token_guards_the_dashboard_json_not_the_page)
{
    struct fixture f;
    struct sl_sockaddr any;
    char ch[128];

    loopback_v4(&any, 0);
    start(&f, &any);
    f.cfg.admin_token = (char *)"s3cret-T0ken";

    char *r = get(&f.addr, "GET", "/");
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_ptr_nonnull(strstr(r, "\r\nContent-Type: text/html; charset=utf-8\r\n"));
    ck_assert_ptr_nonnull(strstr(r, "\r\nContent-Security-Policy: default-src 'none'; "));
    ck_assert_ptr_nonnull(strstr(body_of(r), "<!DOCTYPE html>"));
    ck_assert_uint_eq(strlen(body_of(r)), sl_dashboard_html_len);
    free(r);
    r = get(&f.addr, "HEAD", "/");
    char length[64];
    snprintf(length, sizeof length, "\r\nContent-Length: %zu\r\n", sl_dashboard_html_len);
    ck_assert_ptr_nonnull(strstr(r, length));
    ck_assert_str_eq(body_of(r), "");
    free(r);

    ck_assert_int_eq(ask(&f, "GET", "/dashboard.json", "", ch), 401);
    ck_assert_str_eq(ch, CHALLENGE);
    ck_assert_int_eq(ask(&f, "GET", "/dashboard.json", "Authorization: Bearer nope\r\n", ch), 401);
    ck_assert_str_eq(ch, CHALLENGE_INVALID);
    r = get_with(&f.addr, "GET", "/dashboard.json", BEARER_RIGHT);
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_ptr_nonnull(strstr(r, "\r\nContent-Type: application/json\r\n"));
    ck_assert_ptr_nonnull(strstr(body_of(r), "\"routes\":["));
    ck_assert_ptr_null(strstr(body_of(r), "s3cret"));
    free(r);
    ck_assert_int_eq(ask(&f, "POST", "/dashboard.json", BEARER_RIGHT, ch), 405);
    ck_assert_int_eq(ask(&f, "GET", "/index.html", "", ch), 404);
    stop(&f);
}
END_TEST

START_TEST(test_metrics_auth)
{
    struct fixture f;
    struct sl_sockaddr any;
    char ch[128];

    loopback_v4(&any, 0);
    start(&f, &any);
    f.cfg.admin_token = (char *)"s3cret-T0ken";
    f.cfg.admin_metrics_auth = true;
    ck_assert_int_eq(ask(&f, "GET", "/metrics", "", ch), 401);
    ck_assert_str_eq(ch, CHALLENGE);
    ck_assert_int_eq(ask(&f, "GET", "/metrics", "Authorization: Bearer nope\r\n", ch), 401);
    ck_assert_str_eq(ch, CHALLENGE_INVALID);
    char *r = get_with(&f.addr, "GET", "/metrics", BEARER_RIGHT);
    ck_assert_int_eq(status_of(r), 200);
    ck_assert_ptr_nonnull(strstr(body_of(r), "# TYPE sluice_requests_total counter\n"));
    free(r);
    ck_assert_int_eq(ask(&f, "GET", "/healthz", "", ch), 200);
    ck_assert_int_eq(ask(&f, "GET", "/readyz", "", ch), 200);
    stop(&f);
}
END_TEST

/* The token is read from the configuration of each request: a reload's token applies to
 * the next request, and a configuration without one asks for nothing. */
START_TEST(test_token_follows_the_configuration)
{
    struct fixture f;
    struct sl_sockaddr any;
    struct sl_config next = {.admin_token = (char *)"n3xt"};
    char ch[128];

    atomic_init(&next.refs, 1);
    loopback_v4(&any, 0);
    start(&f, &any);
    ck_assert_int_eq(ask(&f, "GET", "/config", "", ch), 200);
    f.cfg.admin_token = (char *)"s3cret-T0ken";
    ck_assert_int_eq(ask(&f, "GET", "/config", "", ch), 401);
    ck_assert_int_eq(ask(&f, "GET", "/config", BEARER_RIGHT, ch), 200);

    f.hooks_state.cfg = &next;
    ck_assert_int_eq(ask(&f, "GET", "/config", BEARER_RIGHT, ch), 401);
    ck_assert_int_eq(ask(&f, "GET", "/config", "Authorization: Bearer n3xt\r\n", ch), 200);
    ck_assert_int_eq(atomic_load(&next.refs), 1);
    f.hooks_state.cfg = &f.cfg;
    stop(&f);
}
END_TEST

static Suite *admin_suite(void)
{
    Suite *s = suite_create("admin");
    TCase *tc = tcase_create("endpoints");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_healthz);
    tcase_add_test(tc, test_metrics_endpoint);
    tcase_add_test(tc, test_readyz_follows_the_hook);
    tcase_add_test(tc, test_config_is_json_and_releases_its_reference);
    tcase_add_test(tc, test_unknown_paths_and_methods);
    tcase_add_test(tc, test_unix_socket);
    tcase_add_test(tc, test_busy_port_is_an_error);
    tcase_add_test(tc, test_missing_hooks);
    tcase_add_test(tc, test_ipv6_loopback);
    tcase_add_test(tc, test_token_guards_top_and_config);
    tcase_add_test(tc, test_token_guards_the_dashboard_json_not_the_page);
    tcase_add_test(tc, test_metrics_auth);
    tcase_add_test(tc, test_token_follows_the_configuration);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* What the server does once at start-up. */
    evthread_use_pthreads();
    signal(SIGPIPE, SIG_IGN);

    return run_suite(admin_suite());
}
