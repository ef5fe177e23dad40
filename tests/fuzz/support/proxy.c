/* The proxy harness of the request and response targets (proxy.h). */
#include "proxy.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <unistd.h>
#include <yajl/yajl_parse.h>

#include "http/embed.h"
#include "sluice/log.h"
#include "sluice/metrics.h"

/* Loop turns in a row with nothing moved before the proxy counts as idle; bounds the turns
 * of one run, so that a proxy that never settles is reported as a hang by libFuzzer. */
#define QUIET_TURNS 3
#define MAX_TURNS 100000

static int listen_fd = -1;         /* the upstream's listening socket, for the whole process */
static int access_fd = -1;         /* the access log, a memfd emptied by every start */
static struct sl_metrics *metrics; /* one registry for the process: it is costly to make */

void fz_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs("fuzz: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    abort();
}

const char *fz_printable(const void *bytes, size_t len)
{
    static char out[4 * 2048 + 1];
    const unsigned char *b = bytes;
    size_t n = 0;
    for (size_t i = 0; i < len && i < 2048; i++) {
        if (b[i] == '\n')
            n += (size_t)sprintf(out + n, "\\n\n");
        else if (b[i] >= 0x20 && b[i] < 0x7f && b[i] != '\\')
            out[n++] = (char)b[i];
        else
            n += (size_t)sprintf(out + n, "\\x%02x", b[i]);
    }
    out[n] = '\0';
    return out;
}

static bool name_is(const char *name, size_t len, const char *lit)
{
    return len == strlen(lit) && strncasecmp(name, lit, len) == 0;
}

bool fz_hop_by_hop(const char *name, size_t len)
{
    return name_is(name, len, "Keep-Alive") || name_is(name, len, "Proxy-Connection") ||
           name_is(name, len, "TE") || name_is(name, len, "Trailer");
}

struct sl_config *fz_proxy_setup(const char *yaml)
{
    int fd = memfd_create("sluice-fuzz-config", MFD_CLOEXEC);
    char path[64], *errors = NULL;
    size_t len = strlen(yaml);

    if (fd < 0 || write(fd, yaml, len) != (ssize_t)len)
        fz_fail("cannot write the configuration: %s", strerror(errno));
    snprintf(path, sizeof path, "/proc/self/fd/%d", fd);
    struct sl_config *cfg = sl_cfg_load(path, &errors);
    if (!cfg)
        fz_fail("the target's configuration does not load:\n%s", errors ? errors : "?");
    close(fd);
    sl_log_set_level(cfg->log_level);

    /* An abstract unix socket: nothing on disk, unique to this process. */
    struct sockaddr_un *sun = (struct sockaddr_un *)&cfg->upstream.addr.ss;
    memset(&cfg->upstream.addr.ss, 0, sizeof cfg->upstream.addr.ss);
    sun->sun_family = AF_UNIX;
    int n = snprintf(sun->sun_path + 1, sizeof sun->sun_path - 1, "sluice-fuzz-%d", (int)getpid());
    cfg->upstream.addr.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);

    signal(SIGPIPE, SIG_IGN); /* as sl_server_run: a peer gone is an error return */
    listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (listen_fd < 0 ||
        bind(listen_fd, (struct sockaddr *)&cfg->upstream.addr.ss, cfg->upstream.addr.len) < 0 ||
        listen(listen_fd, 64) < 0)
        fz_fail("cannot listen for the upstream: %s", strerror(errno));
    metrics = sl_metrics_new(1);
    if (!metrics || sl_metrics_bind(metrics, cfg) < 0)
        fz_fail("cannot make the metrics registry");
    access_fd = memfd_create("sluice-fuzz-access-log", MFD_CLOEXEC);
    if (access_fd < 0)
        fz_fail("memfd_create: %s", strerror(errno));
    return cfg;
}

void fz_proxy_start(struct fz_proxy *p, struct sl_config *cfg, const struct fz_hooks *hooks,
                    const struct sockaddr *peer, socklen_t peer_len)
{
    int sv[2];

    memset(p, 0, sizeof *p);
    p->hooks = hooks;
    if (ftruncate(access_fd, 0) < 0 || lseek(access_fd, 0, SEEK_SET) < 0)
        fz_fail("cannot empty the access log");
    p->embed = sl_embed_new(cfg, metrics, access_fd);
    p->to_client = evbuffer_new();
    if (!p->embed || !p->to_client)
        fz_fail("out of memory starting the proxy");
    p->base = sl_embed_base(p->embed);
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv) < 0)
        fz_fail("socketpair: %s", strerror(errno));
    p->client = sv[0];
    sl_embed_adopt(p->embed, sv[1], peer, peer_len);
}

static void upstream_accepted(struct fz_proxy *p, int fd)
{
    if (p->nup == FZ_MAX_UPSTREAMS) {
        close(fd); /* sluice sees a reset, as from an upstream at its limit */
        return;
    }
    struct fz_upstream *up = &p->up[p->nup++];
    memset(up, 0, sizeof *up);
    up->proxy = p;
    up->fd = fd;
    up->out = evbuffer_new();
    if (!up->out)
        fz_fail("out of memory");
    llhttp_init(&up->parser, HTTP_REQUEST, p->hooks->upstream_settings);
    up->parser.data = up;
}

/* Reads what is there on `fd`; returns the bytes read, 0 at EOF, -1 when nothing. */
static ssize_t read_some(int fd, char *buf, size_t size)
{
    ssize_t n = recv(fd, buf, size, 0);
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        return 0; /* a reset counts as the end */
    return n;
}

/* Writes what the upstream end holds; true when anything was written. */
static bool upstream_flush(struct fz_upstream *up)
{
    bool moved = false;
    while (up->fd >= 0 && evbuffer_get_length(up->out) > 0) {
        ssize_t n = evbuffer_write(up->out, up->fd);
        if (n <= 0) {
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                return moved;
            evbuffer_drain(up->out, evbuffer_get_length(up->out)); /* sluice closed it */
            break;
        }
        moved = true;
    }
    if (up->closing && up->fd >= 0 && evbuffer_get_length(up->out) == 0) {
        close(up->fd);
        up->fd = -1;
        moved = true;
    }
    return moved;
}

/* Moves bytes at the fuzzer's ends; true when anything moved. */
static bool pump(struct fz_proxy *p)
{
    char buf[16384];
    bool moved = false;
    int fd;

    while ((fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        upstream_accepted(p, fd);
        moved = true;
    }
    while (p->client >= 0 && !p->client_eof) {
        ssize_t n = read_some(p->client, buf, sizeof buf);
        if (n < 0)
            break;
        moved = true;
        if (n == 0) {
            p->client_eof = true;
            break;
        }
        evbuffer_add(p->to_client, buf, (size_t)n);
    }
    for (size_t i = 0; i < p->nup; i++) {
        struct fz_upstream *up = &p->up[i];
        while (up->fd >= 0 && !up->eof) {
            ssize_t n = read_some(up->fd, buf, sizeof buf);
            if (n < 0)
                break;
            moved = true;
            if (n == 0) {
                up->eof = true;
                break;
            }
            p->hooks->upstream_data(up, buf, (size_t)n);
        }
        moved |= upstream_flush(up);
    }
    return moved;
}

void fz_proxy_run(struct fz_proxy *p)
{
    int quiet = 0;
    for (int turn = 0; turn < MAX_TURNS && quiet < QUIET_TURNS; turn++) {
        event_base_loop(p->base, EVLOOP_NONBLOCK);
        bool moved = pump(p);
        if (moved || event_base_get_num_events(p->base, EVENT_BASE_COUNT_ACTIVE) > 0)
            quiet = 0;
        else
            quiet++;
    }
}

/* The client's writes: when the socket is full, sluice is let read. */
static void send_all(struct fz_proxy *p, int fd, const char *bytes, size_t len)
{
    while (len > 0 && fd >= 0) {
        ssize_t n = send(fd, bytes, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* The socket is full: let sluice read; if it will not, the rest is dropped. */
            size_t before = evbuffer_get_length(p->to_client);
            fz_proxy_run(p);
            n = send(fd, bytes, len, MSG_NOSIGNAL);
            if (n < 0 && evbuffer_get_length(p->to_client) == before)
                return;
            if (n < 0)
                continue;
        }
        if (n <= 0)
            return; /* sluice closed the connection */
        bytes += n;
        len -= (size_t)n;
    }
}

void fz_client_send(struct fz_proxy *p, const void *bytes, size_t len, size_t piece)
{
    const char *b = bytes;
    if (piece == 0)
        piece = len;
    while (len > 0) {
        size_t n = len < piece ? len : piece;
        send_all(p, p->client, b, n);
        fz_proxy_run(p);
        b += n;
        len -= n;
    }
}

void fz_client_shutdown(struct fz_proxy *p)
{
    if (p->client >= 0)
        shutdown(p->client, SHUT_WR);
}

void fz_upstream_send(struct fz_upstream *up, const void *bytes, size_t len)
{
    if (up->fd >= 0 && !up->closing)
        evbuffer_add(up->out, bytes, len);
    upstream_flush(up);
}

void fz_upstream_close(struct fz_upstream *up)
{
    up->closing = true;
    upstream_flush(up);
}

static void check_access_log(void)
{
    off_t size = lseek(access_fd, 0, SEEK_END);
    if (size <= 0)
        return;
    char *text = malloc((size_t)size);
    if (!text || pread(access_fd, text, (size_t)size, 0) != size)
        fz_fail("cannot read the access log");
    if (text[size - 1] != '\n')
        fz_fail("the access log ends in the middle of a line");
    for (char *line = text, *end = text + size; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        yajl_handle y = yajl_alloc(NULL, NULL, NULL);
        if (!y)
            fz_fail("yajl_alloc");
        if (line[0] != '{' || nl[-1] != '}' ||
            yajl_parse(y, (const unsigned char *)line, (size_t)(nl - line)) != yajl_status_ok ||
            yajl_complete_parse(y) != yajl_status_ok)
            fz_fail("an access log line is not one JSON object: %.*s", (int)(nl - line), line);
        yajl_free(y);
        line = nl + 1;
    }
    free(text);
}

void fz_proxy_finish(struct fz_proxy *p)
{
    int fd;

    sl_embed_free(p->embed);
    p->embed = NULL;
    if (p->client >= 0)
        close(p->client);
    for (size_t i = 0; i < p->nup; i++) {
        if (p->up[i].fd >= 0)
            close(p->up[i].fd);
        evbuffer_free(p->up[i].out);
    }
    /* Connections sluice made that were never accepted would greet the next input. */
    while ((fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
        close(fd);
    evbuffer_free(p->to_client);
    check_access_log();
}
