/* Path and host normalisation: one spelling per resource, so that a limit cannot be
 * side-stepped by writing the same path or host differently (SPEC.md section 2). */
#include <string.h>

#include "paths.h"
#include "sluice/route.h"

/* ASCII only, independent of the locale and of the signedness of char. */
static bool is_alpha(unsigned char c)
{
    return (c | 0x20) >= 'a' && (c | 0x20) <= 'z';
}

static bool is_digit(unsigned char c)
{
    return c >= '0' && c <= '9';
}

static int hex_value(unsigned char c)
{
    if (is_digit(c))
        return c - '0';
    if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        return (c | 0x20) - 'a' + 10;
    return -1;
}

static unsigned char to_upper(unsigned char c)
{
    return c >= 'a' && c <= 'z' ? c - 0x20 : c;
}

static unsigned char to_lower(unsigned char c)
{
    return c >= 'A' && c <= 'Z' ? c + 0x20 : c;
}

/* RFC 3986 2.3. */
static bool is_unreserved(unsigned char c)
{
    return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* Splits an absolute-form target "scheme://authority[path][?query]" (RFC 3986 3) into its
 * authority and what follows it. Returns false for any other form. */
static bool split_absolute(const char *t, size_t len, const char **auth, size_t *auth_len,
                           const char **rest, size_t *rest_len)
{
    size_t i = 0;

    if (len == 0 || !is_alpha((unsigned char)t[0]))
        return false;
    while (i < len && (is_alpha((unsigned char)t[i]) || is_digit((unsigned char)t[i]) ||
                       t[i] == '+' || t[i] == '-' || t[i] == '.'))
        i++;
    if (len - i < 3 || memcmp(t + i, "://", 3) != 0)
        return false;
    i += 3;
    size_t start = i;
    while (i < len && t[i] != '/' && t[i] != '?' && t[i] != '#')
        i++;
    *auth = t + start;
    *auth_len = i - start;
    *rest = t + i;
    *rest_len = len - i;
    return true;
}

/* Decodes %XX of unreserved characters and upper-cases the hex digits of the others, so
 * that "%6C" and "l", or "%2f" and "%2F", compare equal. Other bytes are copied; a '%'
 * not followed by two hex digits is kept as sent. `out` holds at least `n` bytes.
 * Returns the decoded length, or -1 on a NUL byte (it would cut the path short for
 * regexec while the upstream sees the whole target). */
static ssize_t decode_unreserved(const char *p, size_t n, char *out)
{
    size_t w = 0;

    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if (c == '\0')
            return -1;
        if (c == '%' && i + 2 < n) {
            int hi = hex_value((unsigned char)p[i + 1]);
            int lo = hex_value((unsigned char)p[i + 2]);
            if (hi >= 0 && lo >= 0) {
                unsigned char v = (unsigned char)(hi << 4 | lo);
                if (is_unreserved(v)) {
                    out[w++] = (char)v;
                } else {
                    out[w++] = '%';
                    out[w++] = (char)to_upper((unsigned char)p[i + 1]);
                    out[w++] = (char)to_upper((unsigned char)p[i + 2]);
                }
                i += 2;
                continue;
            }
        }
        out[w++] = (char)c;
    }
    return (ssize_t)w;
}

/* Rewrites the decoded path out[0..n) (starting with '/') in place, segment by segment:
 * empty segments are dropped (merged slashes), "." is dropped and ".." removes the
 * previous output segment, never going above the root. Slashes are merged before dots are
 * resolved, as nginx does, so "/a//../b" is "/b". A path whose last segment was empty, "."
 * or ".." keeps its trailing slash (RFC 3986 5.2.4). The output is never longer than the
 * input: each segment moves left or stays. Returns the new length. */
static size_t remove_dot_segments(char *out, size_t n)
{
    size_t r = 0, o = 0;
    bool trailing = false;

    while (r < n) {
        size_t s = ++r; /* skip the '/' */
        while (r < n && out[r] != '/')
            r++;
        size_t seg = r - s;
        trailing = true;
        if (seg == 0 || (seg == 1 && out[s] == '.'))
            continue;
        if (seg == 2 && out[s] == '.' && out[s + 1] == '.') {
            while (o > 0 && out[--o] != '/')
                ;
            continue;
        }
        trailing = false;
        out[o++] = '/';
        memmove(out + o, out + s, seg);
        o += seg;
    }
    if (o == 0 || trailing)
        out[o++] = '/';
    return o;
}

ssize_t sl_path_normalize(const struct sl_path_rules *rules, const char *target, size_t len,
                          char *out, size_t size)
{
    const char *p = target;
    size_t n = len;

    if (len == 0)
        return -1;
    if (target[0] != '/') {
        const char *auth;
        size_t auth_len;
        if (!split_absolute(target, len, &auth, &auth_len, &p, &n))
            return -1;
    }
    size_t end = 0;
    while (end < n && p[end] != '?' && p[end] != '#')
        end++;
    if (size < end + 2)
        return -1;
    if (end == 0) { /* "http://host" and "http://host?q" ask for "/" */
        out[0] = '/';
        out[1] = '\0';
        return 1;
    }
    ssize_t w = decode_unreserved(p, end, out);
    if (w < 0)
        return -1;
    size_t o = (size_t)w;
    if (rules)
        o = sl_path_rules_before_dots(rules, out, o);
    o = remove_dot_segments(out, o);
    if (rules)
        o = sl_path_rules_after_dots(rules, out, o);
    out[o] = '\0';
    return (ssize_t)o;
}

bool sl_request_authority(const struct sl_request *req, const char **host, size_t *len)
{
    const char *rest;
    size_t rest_len;

    /* RFC 9112 3.2.2: with an absolute-form target, its authority replaces Host. */
    if (req->target_len > 0 && req->target[0] != '/' &&
        split_absolute(req->target, req->target_len, host, len, &rest, &rest_len) && *len > 0)
        return true;
    const struct sl_header *h = sl_request_header(req, "host", 4);
    if (!h || h->value_len == 0)
        return false;
    *host = h->value;
    *len = h->value_len;
    return true;
}

ssize_t sl_host_normalize(const char *authority, size_t len, char *out, size_t size)
{
    const char *a = authority;
    const char *at = memrchr(a, '@', len);
    size_t hlen;

    if (at) {
        len -= (size_t)(at + 1 - a);
        a = at + 1;
    }
    if (len > 0 && a[0] == '[') {
        const char *close = memchr(a, ']', len);
        if (!close)
            return -1;
        hlen = (size_t)(close - a) + 1;
    } else {
        const char *colon = memchr(a, ':', len);
        hlen = colon ? (size_t)(colon - a) : len;
        /* "example.com." names the same host as "example.com". */
        if (hlen > 0 && a[hlen - 1] == '.')
            hlen--;
    }
    if (hlen == 0 || size < hlen + 1)
        return -1;
    for (size_t i = 0; i < hlen; i++)
        out[i] = (char)to_lower((unsigned char)a[i]);
    out[hlen] = '\0';
    return (ssize_t)hlen;
}
