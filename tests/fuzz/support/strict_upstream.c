/* The strict HTTP/1.1 upstream of the proxy targets (strict_upstream.h). */
#include "strict_upstream.h"

#include <string.h>
#include <strings.h>

struct upstream_state {
    bool in_head;
    bool is_head;
    bool upgrade;
    unsigned hosts, xffs, xfps;
    size_t name_len;
    char name_buf[64];
};

static struct upstream_state states[FZ_MAX_UPSTREAMS];
static const struct fz_strict_calls *strict_calls;

void fz_strict_begin(const struct fz_strict_calls *calls)
{
    memset(states, 0, sizeof states);
    strict_calls = calls;
}

static struct upstream_state *state_of(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    return up->data;
}

static bool name_is(const struct upstream_state *s, const char *lit)
{
    return s->name_len == strlen(lit) && strncasecmp(s->name_buf, lit, s->name_len) == 0;
}

static int on_message_begin(llhttp_t *p)
{
    struct upstream_state *s = state_of(p);
    memset(s, 0, sizeof *s);
    s->in_head = true;
    return 0;
}

static int on_header_field(llhttp_t *p, const char *at, size_t len)
{
    struct upstream_state *s = state_of(p);
    size_t room = sizeof s->name_buf - s->name_len;
    memcpy(s->name_buf + s->name_len, at, len < room ? len : room);
    s->name_len += len < room ? len : room;
    return 0;
}

static int on_header_value(llhttp_t *p, const char *at, size_t len)
{
    struct upstream_state *s = state_of(p);
    if (!s->in_head)
        return 0; /* a trailer, relayed inside the chunked body */
    if (name_is(s, "Transfer-Encoding") && (len != 7 || strncasecmp(at, "chunked", 7) != 0))
        fz_fail("sluice forwarded Transfer-Encoding: %.*s", (int)len, at);
    if (name_is(s, "Connection") && (len != 7 || strncasecmp(at, "upgrade", 7) != 0))
        fz_fail("sluice forwarded Connection: %.*s", (int)len, at);
    return 0;
}

static int on_header_value_complete(llhttp_t *p)
{
    struct upstream_state *s = state_of(p);
    if (s->in_head) {
        if (fz_hop_by_hop(s->name_buf, s->name_len))
            fz_fail("sluice forwarded the hop-by-hop field %.*s", (int)s->name_len, s->name_buf);
        s->hosts += name_is(s, "Host");
        s->xffs += name_is(s, "X-Forwarded-For");
        s->xfps += name_is(s, "X-Forwarded-Proto");
    }
    s->name_len = 0;
    return 0;
}

static int on_headers_complete(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    struct upstream_state *s = up->data;

    s->in_head = false;
    s->is_head = llhttp_get_method(p) == HTTP_HEAD;
    s->upgrade = llhttp_get_upgrade(p);
    up->requests++;
    if (s->hosts > 1)
        fz_fail("sluice forwarded %u Host fields", s->hosts);
    if (s->xffs > 1 || s->xfps != 1)
        fz_fail("sluice forwarded %u X-Forwarded-For and %u X-Forwarded-Proto fields", s->xffs,
                s->xfps);
    strict_calls->head(up, s->is_head, s->upgrade);
    return 0;
}

static int on_message_complete(llhttp_t *p)
{
    struct fz_upstream *up = p->data;
    struct upstream_state *s = up->data;
    strict_calls->end(up, s->is_head, s->upgrade);
    return 0;
}

static const llhttp_settings_t strict_settings = {
    .on_message_begin = on_message_begin,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_header_value_complete = on_header_value_complete,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

static void strict_data(struct fz_upstream *up, const char *bytes, size_t len)
{
    if (!up->data)
        up->data = &states[up - up->proxy->up];
    while (!up->tunnel && len > 0) {
        llhttp_errno_t err = llhttp_execute(&up->parser, bytes, len);
        if (err == HPE_OK)
            return;
        if (err != HPE_PAUSED_UPGRADE)
            fz_fail("the upstream cannot parse what sluice forwarded: %s (%s) in:\n%s",
                    llhttp_errno_name(err), llhttp_get_error_reason(&up->parser),
                    fz_printable(bytes, len));
        /* The rest is the upgraded protocol, or, when the upgrade was declined, the next
         * request. */
        const char *pos = llhttp_get_error_pos(&up->parser);
        len -= (size_t)(pos - bytes);
        bytes = pos;
        llhttp_init(&up->parser, HTTP_REQUEST, &strict_settings);
        up->parser.data = up;
    }
}

const struct fz_hooks fz_strict_hooks = {strict_data, &strict_settings};
