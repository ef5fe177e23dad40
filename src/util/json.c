#include "sluice/json.h"

#include <event2/buffer.h>
#include <stdbool.h>
#include <stdint.h>

/* Length of the valid UTF-8 sequence starting at `s`, or 0 (RFC 3629: no overlongs, no
 * surrogates, nothing past U+10FFFF). */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t cp;

    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (len < n)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    if ((n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n;
}

static bool plain(unsigned char c)
{
    return c >= 0x20 && c < 0x7f && c != '"' && c != '\\';
}

int sl_json_append_string(struct evbuffer *out, const char *s, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;

    if (evbuffer_add(out, "\"", 1) < 0)
        return -1;
    while (i < len) {
        size_t run = i;
        while (run < len && plain(p[run]))
            run++;
        if (run > i && evbuffer_add(out, p + i, run - i) < 0)
            return -1;
        i = run;
        if (i == len)
            break;

        unsigned char c = p[i];
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        size_t esc_len = 6;
        size_t seq = c >= 0x80 ? utf8_sequence(p + i, len - i) : 0;
        if (seq) {
            if (evbuffer_add(out, p + i, seq) < 0)
                return -1;
            i += seq;
            continue;
        }
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            esc_len = 2;
            break;
        case '\n':
            esc[1] = 'n';
            esc_len = 2;
            break;
        case '\r':
            esc[1] = 'r';
            esc_len = 2;
            break;
        case '\t':
            esc[1] = 't';
            esc_len = 2;
            break;
        default:
            break;
        }
        if (evbuffer_add(out, esc, esc_len) < 0)
            return -1;
        i++;
    }
    return evbuffer_add(out, "\"", 1);
}
