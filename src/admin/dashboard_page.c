/* The page's Content-Security-Policy (dashboard.h). The page shows keys that clients chose
 * (/top's); were one to slip into the markup as script, the policy still runs only the
 * page's own inline style and script, named by their SHA-256 (CSP level 2 hash sources),
 * and lets it ask only the listener that served it. */
#include <stdio.h>
#include <string.h>

#include "dashboard.h"
#include "sluice/sha256.h"

/* The text between `open` and the next `close` in the page, or NULL. */
static const char *element(const char *open, const char *close, size_t *len)
{
    const char *page = sl_dashboard_html, *end = page + sl_dashboard_html_len;
    const char *start = memmem(page, sl_dashboard_html_len, open, strlen(open));
    if (!start)
        return NULL;
    start += strlen(open);
    const char *stop = memmem(start, (size_t)(end - start), close, strlen(close));
    if (!stop)
        return NULL;
    *len = (size_t)(stop - start);
    return start;
}

/* "sha256-" and the digest in base64 (RFC 4648 section 4), as CSP hash sources are. */
static void hash_source(const char *text, size_t len, char out[52])
{
    static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    struct sl_sha256 ctx;
    uint8_t d[SL_SHA256_LEN + 1] = {0};
    char *p = out + sprintf(out, "sha256-");

    sl_sha256_init(&ctx);
    sl_sha256_update(&ctx, text, len);
    sl_sha256_final(&ctx, d);
    /* 32 bytes: ten groups of three, then two bytes and one "=". */
    for (size_t i = 0; i < SL_SHA256_LEN; i += 3) {
        uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
        *p++ = b64[v >> 18 & 63];
        *p++ = b64[v >> 12 & 63];
        *p++ = b64[v >> 6 & 63];
        *p++ = i + 2 < SL_SHA256_LEN ? b64[v & 63] : '=';
    }
    *p = '\0';
}

int sl_dashboard_csp(char *buf, size_t len)
{
    size_t style_len, script_len;
    const char *style = element("<style>", "</style>", &style_len);
    const char *script = element("<script>", "</script>", &script_len);
    char style_hash[52], script_hash[52];

    if (!style || !script)
        return -1;
    hash_source(style, style_len, style_hash);
    hash_source(script, script_len, script_hash);
    int n = snprintf(buf, len,
                     "default-src 'none'; style-src '%s'; script-src '%s'; connect-src 'self'; "
                     "img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
                     style_hash, script_hash);
    return n < 0 || (size_t)n >= len ? -1 : 0;
}
