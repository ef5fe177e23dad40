/* What an upstream answers: response heads and bodies (Content-Length, chunked with
 * trailers, close-delimited, 1xx before the final answer, 101 after an upgrade, responses
 * to HEAD, several in a row, cut short) through sluice's own connection code to a client.
 * The client parses what sluice relays as a strict HTTP/1.1 client would: a stream it
 * cannot parse, a hop-by-hop field, or a Connection or Transfer-Encoding sluice should not
 * send is a finding, as is any sanitizer report or an access log line that is not JSON.
 *
 * Input: byte 0 chooses the client's requests and when the upstream answers; byte 1 the
 * size of the upstream's writes; the rest is what the upstream sends for each request. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "support/proxy.h"

static const char config_yaml[] =
    "listen: 127.0.0.1:1\n"
    "upstream: {url: 'http://127.0.0.1:1'}\n"
    "access_log: /dev/null\n"
    "log_level: error\n"
    "memory: {max_keys: 64}\n"
    "routes:\n"
    "  - name: limited\n"
    "    match: {path_prefix: /limited}\n"
    "    limits:\n"
    "      - {name: ip, algorithm: token_bucket, rate: 100/1m, key: client_ip}\n"
    "  - name: rest\n"
    "    match: {path_prefix: /}\n"
    "    limits: []\n";

static struct sl_config *cfg;

/* The client's requests (bits 0-2 of byte 0); each is answered with the input. */
static const char *const requests[] = {
    "GET /limited/a HTTP/1.1\r\nHost: x\r\n\r\n",
    "HEAD /limited/a HTTP/1.1\r\nHost: x\r\n\r\n",
    "GET /a HTTP/1.0\r\n\r\n",
    "POST /limited/upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
    "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
    "GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    ("GET /limited/1 HTTP/1.1\r\nHost: x\r\n\r\nHEAD /2 HTTP/1.1\r\nHost: x\r\n\r\n"
     "GET /3 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"),
};

/* The requests in order, by method initial, lower-case for HTTP/1.0: a response to HEAD
 * has no body, and one to HTTP/1.0 no chunked framing. */
static const char *const methods[] = {"G", "H", "g", "P", "P", "G", "P", "GHg"};

struct run {
    const uint8_t *answer; /* what the upstream sends for every request */
    size_t answer_len;
    size_t piece;     /* write size, 0: at once */
    bool early;       /* answer at the end of the request head, before its body */
    bool close_after; /* the upstream closes after answering */
    const char *methods;
    size_t responses; /* final responses the client has parsed */
    bool in_head;
    char name[64];
    size_t name_len;
};

static bool name_is(const struct run *r, const char *lit)
{
    return r->name_len == strlen(lit) && strncasecmp(r->name, lit, r->name_len) == 0;
}

/* ---- the upstream: answers every request with the input ---- */

/* Answers owed and how far the one in progress got, per upstream connection. */
struct owed {
    unsigned answers;
    size_t sent;
};

static struct owed owed[FZ_MAX_UPSTREAMS];

static void owe(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    owed[up - up->proxy->up].answers++;
}

static int up_headers_complete(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    const struct run *r = up->proxy->data;
    up->requests++;
    if (r->early)
        owe(p);
    return 0;
}

static int up_message_complete(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    const struct run *r = up->proxy->data;
    if (!r->early)
        owe(p);
    return 0;
}

/* Sends the next piece of every answer owed; false when none is. */
static bool answer_some(struct fz_proxy *p, const struct run *r)
{
    bool any = false;
    for (size_t i = 0; i < p->nup; i++) {
        struct fz_upstream *up = &p->up[i];
        struct owed *o = &owed[i];
        /* A piece sluice has not read yet: it stopped reading, more would wait too. */
        if (o->answers == 0 || up->fd < 0 || up->closing || evbuffer_get_length(up->out) > 0)
            continue;
        size_t n = r->answer_len - o->sent;
        if (r->piece && n > r->piece)
            n = r->piece;
        fz_upstream_send(up, r->answer + o->sent, n);
        o->sent += n;
        if (o->sent == r->answer_len) {
            o->sent = 0;
            o->answers--;
            if (r->close_after)
                fz_upstream_close(up);
        }
        any = true;
    }
    return any;
}

static const llhttp_settings_t upstream_settings = {
    .on_headers_complete = up_headers_complete,
    .on_message_complete = up_message_complete,
};

static void upstream_data(struct fz_upstream *up, const char *bytes, size_t len)
{
    if (up->tunnel)
        return;
    llhttp_errno_t err = llhttp_execute(&up->parser, bytes, len);
    if (err == HPE_PAUSED_UPGRADE)
        up->tunnel = true; /* whatever follows is the upgraded protocol, or nothing */
    else if (err != HPE_OK)
        fz_fail("the upstream cannot parse what sluice forwarded: %s (%s)", llhttp_errno_name(err),
                llhttp_get_error_reason(&up->parser));
}

static const struct fz_hooks hooks = {upstream_data, &upstream_settings};

/* ---- the client: parses what sluice relays ---- */

static struct run *run_of(llhttp_t *p)
{
    return p->data;
}

static int cl_message_begin(llhttp_t *p)
{
    run_of(p)->in_head = true;
    return 0;
}

static int cl_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct run *r = run_of(p);
    size_t room = sizeof r->name - r->name_len;
    memcpy(r->name + r->name_len, at, len < room ? len : room);
    r->name_len += len < room ? len : room;
    return 0;
}

/* The last element of the list (RFC 9110 5.6.1: comma-separated, OWS trimmed) is
 * "chunked", as llhttp decides it; "x chunked" is one unknown coding. */
static bool last_coding_is_chunked(const char *v, size_t len)
{
    while (len && (v[len - 1] == ' ' || v[len - 1] == '\t'))
        len--;
    size_t start = len;
    while (start && v[start - 1] != ',')
        start--;
    while (start < len && (v[start] == ' ' || v[start] == '\t'))
        start++;
    return len - start == 7 && strncasecmp(v + start, "chunked", 7) == 0;
}

static int cl_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct run *r = run_of(p);
    if (!r->in_head)
        return 0; /* a trailer, relayed inside the chunked body */
    if (name_is(r, "Connection") && !(len == 5 && strncasecmp(at, "close", 5) == 0) &&
        !(len == 10 && strncasecmp(at, "keep-alive", 10) == 0) &&
        !(len == 7 && strncasecmp(at, "upgrade", 7) == 0))
        fz_fail("sluice sent the client Connection: %.*s", (int)len, at);
    /* Chunked framing is for HTTP/1.1 only; other codings are relayed as they are, in a
     * body that ends with the connection. */
    if (name_is(r, "Transfer-Encoding") && r->responses < strlen(r->methods) &&
        r->methods[r->responses] == 'g' && last_coding_is_chunked(at, len))
        fz_fail("sluice sent an HTTP/1.0 client Transfer-Encoding: %.*s", (int)len, at);
    return 0;
}

static int cl_header_value_complete(llhttp_t *p)
{
    struct run *r = run_of(p);
    if (r->in_head && fz_hop_by_hop(r->name, r->name_len))
        fz_fail("sluice relayed the hop-by-hop field %.*s", (int)r->name_len, r->name);
    r->name_len = 0;
    return 0;
}

static int cl_headers_complete(llhttp_t *p)
{
    struct run *r = run_of(p);
    r->in_head = false;
    if (p->status_code < 100 || p->status_code > 599)
        fz_fail("sluice sent the client status %d", p->status_code);
    if (p->status_code == 101)
        return 0; /* the tunnel follows */
    /* RFC 9112 6.3, rule 1: every other 1xx, 204 and 304 ends with its head whatever
     * Content-Length says; llhttp leaves that rule to its embedder, here the client. */
    if (p->status_code < 200 || p->status_code == 204 || p->status_code == 304)
        return 1;
    size_t i = r->responses;
    /* A response to HEAD has no body whatever its head says. */
    return i < strlen(r->methods) && r->methods[i] == 'H' ? 1 : 0;
}

static int cl_message_complete(llhttp_t *p)
{
    struct run *r = run_of(p);
    if (p->status_code >= 200 || p->status_code == 101)
        r->responses++;
    return 0;
}

static const llhttp_settings_t client_settings = {
    .on_message_begin = cl_message_begin,
    .on_header_field = cl_header_field,
    .on_header_value = cl_header_value,
    .on_header_value_complete = cl_header_value_complete,
    .on_headers_complete = cl_headers_complete,
    .on_message_complete = cl_message_complete,
};

static void check_client(struct fz_proxy *p, struct run *r)
{
    llhttp_t parser;
    struct evbuffer_iovec v[64];
    int n = evbuffer_peek(p->to_client, -1, NULL, v, 64);

    llhttp_init(&parser, HTTP_RESPONSE, &client_settings);
    parser.data = r;
    for (int i = 0; i < n && i < 64; i++) {
        llhttp_errno_t err = llhttp_execute(&parser, v[i].iov_base, v[i].iov_len);
        if (err == HPE_PAUSED_UPGRADE)
            return; /* the tunnel: raw bytes from here */
        if (err != HPE_OK) {
            size_t at = (size_t)(llhttp_get_error_pos(&parser) - (const char *)v[i].iov_base);
            fz_fail(
                "the client cannot parse what sluice relayed: %s (%s) at byte %zu of:\n%s",
                llhttp_errno_name(err), llhttp_get_error_reason(&parser), at,
                fz_printable(evbuffer_pullup(p->to_client, -1), evbuffer_get_length(p->to_client)));
        }
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    cfg = fz_proxy_setup(config_yaml);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    unsigned which = data[0] & 7;
    struct run r = {
        .answer = data + 2,
        .answer_len = size - 2,
        .piece = data[1] & 0x80 ? 0 : (size_t)data[1] + 1,
        .early = (data[0] & 0x08) != 0,
        .close_after = (data[0] & 0x10) != 0,
        .methods = methods[which],
    };
    struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000)};
    struct fz_proxy p;

    inet_pton(AF_INET, "198.51.100.7", &peer.sin_addr);
    fz_proxy_start(&p, cfg, &hooks, (struct sockaddr *)&peer, sizeof peer);
    p.data = &r;
    memset(owed, 0, sizeof owed);
    fz_client_send(&p, requests[which], strlen(requests[which]), 0);
    for (int round = 0; round < 4096 && answer_some(&p, &r); round++)
        fz_proxy_run(&p);
    if (data[0] & 0x20) {
        fz_client_shutdown(&p);
        fz_proxy_run(&p);
    }
    check_client(&p, &r);
    fz_proxy_finish(&p);
    return 0;
}
