/* One Redis connection: a bufferevent (bufferevent_openssl for TLS) carries the bytes;
 * hiredis only formats the commands and reads the replies. Commands are appended to the
 * bufferevent's output, which libevent writes on the loop's next turn: the commands queued in
 * one turn (a flush of the turn's batches, a handshake) leave in one write, as they did when
 * hiredis wrote them. Replies come back in the order the commands went, so a FIFO of
 * (callback, privdata) entries matches them; after SUBSCRIBE, replies nobody waits for are
 * the channel's messages.
 *
 * A plain connection is read by an event of its own, straight into a buffer on the stack
 * that the reader is fed from, as hiredis read: a bufferevent's read asks FIONREAD first and
 * moves the bytes through its input buffer, which cost a decision a few hundred
 * instructions more. TLS reads through the bufferevent, which decrypts.
 *
 * Teardown runs once, outside every callback of the link: a callback that frees the link,
 * or a failure met while callbacks run, only closes the bufferevent (no byte moves after it)
 * and marks the link dead; the outermost frame then calls every waiting callback with NULL,
 * then on_close (after a failure only), then frees. A dead link refuses commands, so that a
 * callback answering a caller cannot queue on it. */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "redis_link.h"

struct waiter {
    sl_redis_link_reply_cb cb;
    void *privdata;
    bool subscribe; /* its reply confirms a SUBSCRIBE: messages follow */
};

/* One read of a plain connection: replies are small, and a batch of them fits. */
#define READ_BUF 16384

struct sl_redis_link {
    struct bufferevent *bev; /* NULL once dead */
    struct event *rev;       /* plain connections: reads; NULL with TLS and once dead */
    redisReader *reader;
    /* The reader's object functions: hiredis's own, with createArray bounded. */
    redisReplyObjectFunctions fn;
    const redisReplyObjectFunctions *fn_default;
    char refused[96];    /* why the reader failed, when it was the bound */
    struct waiter *fifo; /* ring of `cap` entries, `n` from `head` */
    size_t cap, head, n;
    sl_redis_link_reply_cb sub_cb; /* after SUBSCRIBE: the channel's messages */
    void *sub_privdata;
    bool subscribed; /* SUBSCRIBE queued: no other command may follow */
    bool is_tls;
    bool connected;  /* the connection (and the TLS handshake) completed */
    bool tls_failed; /* a TLS error ended it: no close_notify, the session is not resumed */
    bool dead;
    unsigned depth; /* callbacks of this link running */
    sl_redis_link_close_cb on_close;
    void *data;
    char why[256];
};

static void finish(struct sl_redis_link *l);

/* Stops all I/O at once; the rest waits for the outermost callback frame. */
static void teardown(struct sl_redis_link *l)
{
    l->dead = true;
    if (l->rev) {
        event_free(l->rev);
        l->rev = NULL;
    }
    if (l->bev) {
        /* OpenSSL never resumes the session of a connection freed without a close_notify
         * sent: say goodbye (one non-blocking attempt) unless TLS itself failed. */
        SSL *ssl = l->is_tls ? bufferevent_openssl_get_ssl(l->bev) : NULL;
        if (ssl && l->connected && !l->tls_failed) {
            SSL_shutdown(ssl);
            ERR_clear_error();
        }
        bufferevent_free(l->bev);
        l->bev = NULL;
    }
    if (l->depth == 0)
        finish(l);
}

static void fail(struct sl_redis_link *l, const char *why)
{
    if (l->dead)
        return;
    snprintf(l->why, sizeof l->why, "%s", why);
    teardown(l);
}

static void finish(struct sl_redis_link *l)
{
    l->depth++; /* what the callbacks below do to the link waits for the free below */
    while (l->n > 0) {
        struct waiter w = l->fifo[l->head];
        l->head = (l->head + 1) % l->cap;
        l->n--;
        if (w.cb)
            w.cb(l, NULL, w.privdata);
    }
    sl_redis_link_reply_cb sub = l->sub_cb;
    l->sub_cb = NULL;
    if (sub)
        sub(l, NULL, l->sub_privdata);
    if (l->on_close)
        l->on_close(l, l->why, l->data);
    if (l->reader)
        redisReaderFree(l->reader);
    free(l->fifo);
    free(l);
}

/* --- replies ----------------------------------------------------------------------------- */

static void *create_array_bounded(const redisReadTask *task, int elements)
{
    struct sl_redis_link *l = task->privdata;
    if (elements > SL_REDIS_LINK_MAX_ELEMENTS) {
        snprintf(l->refused, sizeof l->refused, "protocol error: a reply of %d elements", elements);
        return NULL; /* the reader stops with an error, having allocated nothing for it */
    }
    return l->fn_default->createArray(task, elements);
}

static void deliver(struct sl_redis_link *l, void *reply)
{
    if (l->n > 0) {
        struct waiter w = l->fifo[l->head];
        l->head = (l->head + 1) % l->cap;
        l->n--;
        if (w.subscribe) {
            l->sub_cb = w.cb;
            l->sub_privdata = w.privdata;
        }
        if (w.cb)
            w.cb(l, reply, w.privdata);
    } else if (l->sub_cb) {
        l->sub_cb(l, reply, l->sub_privdata);
    } else {
        fail(l, "protocol error: a reply to no command");
    }
}

/* Hands each complete reply the reader holds to its callback, until none is left or the
 * link dies in a callback. */
static void deliver_all(struct sl_redis_link *l)
{
    while (!l->dead) {
        void *reply = NULL;
        if (redisReaderGetReply(l->reader, &reply) != REDIS_OK) {
            fail(l, l->refused[0] ? l->refused : l->reader->errstr);
            return;
        }
        if (!reply)
            return;
        deliver(l, reply);
        freeReplyObject(reply);
    }
}

static void feed(struct sl_redis_link *l, const char *buf, size_t len)
{
    if (redisReaderFeed(l->reader, buf, len) != REDIS_OK)
        fail(l, "out of memory reading a reply");
    else
        deliver_all(l);
}

/* TLS: the bufferevent's input, each contiguous piece in turn. */
static void on_read(struct bufferevent *bev, void *arg)
{
    struct sl_redis_link *l = arg;
    struct evbuffer *in = bufferevent_get_input(bev);
    l->depth++;
    while (!l->dead && evbuffer_get_length(in) > 0) {
        struct evbuffer_iovec v;
        if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
            break;
        feed(l, v.iov_base, v.iov_len);
        evbuffer_drain(in, v.iov_len);
    }
    l->depth--;
    if (l->dead && l->depth == 0)
        finish(l);
}

/* Plain: one read from the socket per readable event. */
static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    struct sl_redis_link *l = arg;
    char buf[READ_BUF];
    (void)what;
    l->depth++;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0)
        feed(l, buf, (size_t)n);
    else if (n == 0)
        fail(l, "closed by the server");
    else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
        fail(l, strerror(errno));
    l->depth--;
    if (l->dead && l->depth == 0)
        finish(l);
}

/* --- the connection ---------------------------------------------------------------------- */

static void tls_error(struct sl_redis_link *l, struct bufferevent *bev, char *buf, size_t len)
{
    SSL *ssl = bufferevent_openssl_get_ssl(bev);
    long verify = ssl ? SSL_get_verify_result(ssl) : X509_V_OK;
    unsigned long e = bufferevent_get_openssl_error(bev);
    (void)l;
    if (verify != X509_V_OK) {
        snprintf(buf, len, "TLS: certificate verify failed: %s",
                 X509_verify_cert_error_string(verify));
    } else if (e) {
        char reason[200];
        ERR_error_string_n(e, reason, sizeof reason);
        snprintf(buf, len, "TLS: %s", reason);
    } else {
        snprintf(buf, len, "TLS: %s", errno ? strerror(errno) : "handshake or connection failed");
    }
    while (bufferevent_get_openssl_error(bev))
        ; /* the rest of the queue: it belongs to this connection only */
}

static void on_event(struct bufferevent *bev, short what, void *arg)
{
    struct sl_redis_link *l = arg;
    char why[256];
    if (what & BEV_EVENT_CONNECTED) {
        l->connected = true;
        /* As hiredis did: a command is a few bytes and must not wait for Nagle. */
        int one = 1;
        evutil_socket_t fd = bufferevent_getfd(bev);
        if (fd >= 0)
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); /* fails on unix: fine */
        return;
    }
    if (!(what & (BEV_EVENT_EOF | BEV_EVENT_ERROR)))
        return;
    if (l->is_tls && (what & BEV_EVENT_ERROR)) {
        l->tls_failed = true;
        tls_error(l, bev, why, sizeof why);
    } else if (what & BEV_EVENT_EOF)
        snprintf(why, sizeof why, "closed by the server");
    else
        snprintf(why, sizeof why, "%s", errno ? strerror(errno) : "connection failed");
    fail(l, why);
}

struct sl_redis_link *sl_redis_link_new(struct event_base *base, const struct sockaddr *addr,
                                        socklen_t addrlen, SSL *ssl,
                                        sl_redis_link_close_cb on_close, void *data)
{
    struct sl_redis_link *l = calloc(1, sizeof *l);
    if (!l)
        goto fail;
    l->on_close = on_close;
    l->data = data;
    l->reader = redisReaderCreate();
    if (!l->reader)
        goto fail;
    l->fn_default = l->reader->fn;
    l->fn = *l->reader->fn;
    l->fn.createArray = create_array_bounded;
    l->reader->fn = &l->fn;
    l->reader->privdata = l;
    if (ssl) {
        l->is_tls = true;
        l->bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_CONNECTING,
                                                BEV_OPT_CLOSE_ON_FREE);
        ssl = NULL; /* the bufferevent has it, or freed it failing */
        if (l->bev)
            bufferevent_openssl_set_allow_dirty_shutdown(l->bev, 1);
    } else {
        l->bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    }
    if (!l->bev)
        goto fail;
    bufferevent_setcb(l->bev, l->is_tls ? on_read : NULL, NULL, on_event, l);
    if ((l->is_tls && bufferevent_enable(l->bev, EV_READ) != 0) ||
        bufferevent_socket_connect(l->bev, addr, (int)addrlen) != 0)
        goto fail;
    if (!l->is_tls) {
        /* Until connected, a readable socket is a failed connect: recv() says why. */
        l->rev = event_new(base, bufferevent_getfd(l->bev), EV_READ | EV_PERSIST, on_readable, l);
        if (!l->rev || event_add(l->rev, NULL) != 0)
            goto fail;
    }
    return l;
fail:
    if (ssl)
        SSL_free(ssl);
    if (l) {
        int saved = errno;
        if (l->rev)
            event_free(l->rev);
        if (l->bev)
            bufferevent_free(l->bev);
        if (l->reader)
            redisReaderFree(l->reader);
        free(l);
        errno = saved ? saved : ENOMEM;
    }
    return NULL;
}

void sl_redis_link_free(struct sl_redis_link *l)
{
    if (!l)
        return;
    l->on_close = NULL;
    if (!l->dead)
        teardown(l);
}

void *sl_redis_link_data(const struct sl_redis_link *l)
{
    return l->data;
}

bool sl_redis_link_connected(const struct sl_redis_link *l)
{
    return l->connected;
}

size_t sl_redis_link_waiting(const struct sl_redis_link *l)
{
    return l->n;
}

/* --- commands ---------------------------------------------------------------------------- */

static int push_waiter(struct sl_redis_link *l, sl_redis_link_reply_cb cb, void *privdata,
                       bool subscribe)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        struct waiter *grown = malloc(cap * sizeof *grown);
        if (!grown)
            return -1;
        for (size_t i = 0; i < l->n; i++)
            grown[i] = l->fifo[(l->head + i) % l->cap];
        free(l->fifo);
        l->fifo = grown;
        l->cap = cap;
        l->head = 0;
    }
    l->fifo[(l->head + l->n) % l->cap] = (struct waiter){cb, privdata, subscribe};
    l->n++;
    return 0;
}

/* Queues `cmd` (`len` bytes, or a negative length from the formatter); borrowed. */
static int send_formatted(struct sl_redis_link *l, sl_redis_link_reply_cb cb, void *privdata,
                          const char *cmd, int len, bool subscribe)
{
    if (len < 0 || !cmd || l->dead || l->subscribed)
        return -1;
    if (push_waiter(l, cb, privdata, subscribe) != 0)
        return -1;
    if (evbuffer_add(bufferevent_get_output(l->bev), cmd, (size_t)len) != 0) {
        l->n--; /* the entry just pushed */
        return -1;
    }
    l->subscribed = subscribe;
    return 0;
}

int sl_redis_link_command(struct sl_redis_link *l, sl_redis_link_reply_cb cb, void *privdata,
                          const char *format, ...)
{
    char *cmd = NULL;
    va_list ap;
    va_start(ap, format);
    int len = redisvFormatCommand(&cmd, format, ap);
    va_end(ap);
    int rc = send_formatted(l, cb, privdata, cmd, len, false);
    redisFreeCommand(cmd);
    return rc;
}

int sl_redis_link_command_argv(struct sl_redis_link *l, sl_redis_link_reply_cb cb, void *privdata,
                               int argc, const char **argv, const size_t *argvlen)
{
    /* The sds formatter, as hiredis's own async API uses: redisFormatCommandArgv prints each
     * length with snprintf, which costs a decision some 500 instructions more. */
    sds cmd = NULL;
    int len = redisFormatSdsCommandArgv(&cmd, argc, argv, argvlen);
    int rc = send_formatted(l, cb, privdata, cmd, len, false);
    redisFreeSdsCommand(cmd);
    return rc;
}

int sl_redis_link_subscribe(struct sl_redis_link *l, sl_redis_link_reply_cb cb, void *privdata,
                            const char *channel)
{
    char *cmd = NULL;
    int len = redisFormatCommand(&cmd, "SUBSCRIBE %s", channel);
    int rc = send_formatted(l, cb, privdata, cmd, len, true);
    redisFreeCommand(cmd);
    return rc;
}
