/* The client address behind trusted proxies (SPEC.md section 4). */
#include <string.h>
#include <strings.h>

#include "sluice/route.h"

static const char xff_name[] = "X-Forwarded-For";

static bool is_space(char c)
{
    return c == ' ' || c == '\t';
}

static bool all_digits(const char *s, size_t n)
{
    if (n == 0 || n > 5)
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

/* One X-Forwarded-For entry: an address, optionally with a port as some proxies write
 * it ("192.0.2.1:4711", "[2001:db8::1]:4711"), or a bracketed IPv6 address. */
static int parse_entry(const char *s, size_t n, struct sl_ip *out)
{
    if (n > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', n);
        if (!close)
            return -1;
        size_t inner = (size_t)(close - s) - 1;
        size_t after = n - inner - 2;
        if (after > 0 && (close[1] != ':' || !all_digits(close + 2, after - 1)))
            return -1;
        struct sl_ip ip;
        if (sl_ip_parse(s + 1, inner, &ip) < 0 || ip.family != AF_INET6)
            return -1;
        *out = ip;
        return 0;
    }
    const char *colon = memchr(s, ':', n);
    if (colon && !memchr(colon + 1, ':', n - (size_t)(colon - s) - 1)) {
        size_t host = (size_t)(colon - s);
        if (!all_digits(colon + 1, n - host - 1))
            return -1;
        n = host;
    }
    return sl_ip_parse(s, n, out);
}

static int peer_address(const struct sl_request *req, struct sl_ip *out)
{
    if (req->peer && sl_ip_from_sockaddr(req->peer, out) == 0)
        return 0;
    memset(out, 0, sizeof *out);
    return -1;
}

/* A unix-socket peer is a process on this host: as trusted as a loopback peer. */
static bool peer_trusted(const struct sl_cidr_list *trusted, const struct sl_request *req)
{
    struct sl_ip ip;

    if (trusted->count == 0)
        return false;
    if (peer_address(req, &ip) < 0) {
        memset(&ip, 0, sizeof ip);
        ip.family = AF_INET;
        ip.addr[0] = 127;
        ip.addr[3] = 1;
    }
    return sl_cidr_list_contains(trusted, &ip);
}

/* Records how the address was chosen when the caller asks. */
static void note(struct sl_client_trace *trace, enum sl_client_why why, size_t hop)
{
    if (trace) {
        trace->why = why;
        trace->hop = hop;
    }
}

int sl_client_ip(const struct sl_cidr_list *trusted, const struct sl_request *req,
                 struct sl_ip *out)
{
    return sl_client_ip_trace(trusted, req, out, NULL);
}

int sl_client_ip_trace(const struct sl_cidr_list *trusted, const struct sl_request *req,
                       struct sl_ip *out, struct sl_client_trace *trace)
{
    struct sl_ip leftmost = {0};
    bool have_leftmost = false;
    size_t hop = 0;

    if (!peer_trusted(trusted, req)) {
        note(trace, trusted->count ? SL_CLIENT_PEER_UNTRUSTED : SL_CLIENT_NO_TRUSTED_PROXIES, 0);
        return peer_address(req, out);
    }

    /* Each proxy appends what it saw, so the entries are read from the right: the first
     * address a trusted proxy did not vouch for is the client. Entries to its left were
     * written by the client itself and prove nothing. */
    for (size_t h = req->nheaders; h-- > 0;) {
        const struct sl_header *hdr = &req->headers[h];
        if (hdr->name_len != sizeof xff_name - 1 ||
            strncasecmp(hdr->name, xff_name, hdr->name_len) != 0)
            continue;
        size_t end = hdr->value_len;
        for (;;) {
            size_t start = end;
            while (start > 0 && hdr->value[start - 1] != ',')
                start--;
            const char *e = hdr->value + start;
            size_t n = end - start;
            while (n > 0 && is_space(e[0]))
                e++, n--;
            while (n > 0 && is_space(e[n - 1]))
                n--;
            if (n > 0) { /* empty list elements are allowed (RFC 9110 5.6.1) */
                struct sl_ip ip;
                hop++;
                /* A malformed entry means the chain cannot be followed past it: fall back
                 * to the peer rather than guess which neighbour to believe. */
                if (parse_entry(e, n, &ip) < 0) {
                    note(trace, SL_CLIENT_XFF_MALFORMED, hop);
                    return peer_address(req, out);
                }
                if (!sl_cidr_list_contains(trusted, &ip)) {
                    note(trace, SL_CLIENT_XFF_UNTRUSTED_HOP, hop);
                    *out = ip;
                    return 0;
                }
                leftmost = ip;
                have_leftmost = true;
            }
            if (start == 0)
                break;
            end = start - 1;
        }
    }
    if (have_leftmost) {
        note(trace, SL_CLIENT_XFF_ALL_TRUSTED, hop);
        *out = leftmost;
        return 0;
    }
    note(trace, SL_CLIENT_PEER_NO_XFF, 0);
    return peer_address(req, out);
}
