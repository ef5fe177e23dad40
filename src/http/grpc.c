/* gRPC in sluice's own answers: recognising a gRPC request by its content-type, mapping
 * sluice's statuses to gRPC's, the fields of a trailers-only response, and a call's
 * grpc-timeout. */
#include "grpc.h"

#include <string.h>
#include <strings.h>

#include "exchange.h"
#include "http.h"
#include "sluice/text.h"

bool sl_grpc_content_type(const char *value, size_t len)
{
    static const char type[] = "application/grpc";
    size_t n = sizeof type - 1;

    if (len < n || strncasecmp(value, type, n) != 0)
        return false;
    /* "application/grpc-web" and the like are other protocols: what follows the subtype
     * must end it. */
    while (n < len && (value[n] == ' ' || value[n] == '\t'))
        n++;
    return n == len || value[n] == ';' || (value[n] == '+' && n == sizeof type - 1);
}

int sl_grpc_status_of(int http_status)
{
    switch (http_status) {
    case 502:
    case 503:
        return SL_GRPC_UNAVAILABLE;
    case 408:
    case 504:
        return SL_GRPC_DEADLINE_EXCEEDED;
    /* gRPC's own servers answer a message or metadata over their limits so. */
    case 413:
    case 429:
    case 431:
        return SL_GRPC_RESOURCE_EXHAUSTED;
    case 405:
    case 501:
        return SL_GRPC_UNIMPLEMENTED;
    case 400:
        return SL_GRPC_INTERNAL;
    default:
        return SL_GRPC_UNKNOWN;
    }
}

void sl_grpc_percent_encode(struct sl_text *t, const char *s, size_t n)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t i = 0;

    while (i < n) {
        size_t plain = i;
        while (plain < n && s[plain] >= 0x20 && s[plain] <= 0x7e && s[plain] != '%')
            plain++;
        sl_text_add(t, s + i, plain - i);
        if (plain == n)
            break;
        unsigned char c = (unsigned char)s[plain];
        char esc[3] = {'%', hex[c >> 4], hex[c & 15]};
        sl_text_add(t, esc, 3);
        i = plain + 1;
    }
}

/* A limit's denial is answered with the configured code; the same HTTP status from
 * elsewhere (a 503 of failure_mode closed under response.status 503) is not a denial. */
static int status_for(const struct sl_exchange *x, int status)
{
    if (x->has_verdict && x->verdict.outcome == SL_OUTCOME_LIMITED && status == x->verdict.status)
        return x->cfg->response_grpc_status;
    return sl_grpc_status_of(status);
}

void sl_grpc_answer(struct sl_text *t, const struct sl_exchange *x, int status,
                    const struct sl_textbuf *headers, const struct sl_textbuf *body)
{
    SL_TEXT_LIT(t, "content-type: application/grpc\r\ngrpc-status: ");
    sl_text_u64(t, (uint64_t)status_for(x, status));
    SL_TEXT_LIT(t, "\r\ngrpc-message: ");
    if (body && body->len) {
        sl_grpc_percent_encode(t, body->data, body->len);
    } else {
        const char *name = sl_error_name(status);
        SL_TEXT_LIT(t, "{\"error\":\"");
        sl_text_add(t, name, strlen(name));
        SL_TEXT_LIT(t, "\"}");
    }
    SL_TEXT_LIT(t, "\r\n");
    if (headers && headers->len)
        sl_text_add(t, headers->data, headers->len);
}

/* grpc-timeout (gRPC over HTTP/2): at most 8 digits and a unit; 0 when absent or bad. */
uint64_t sl_grpc_timeout_us(const struct sl_request *r)
{
    const char *v = NULL;
    size_t n = 0;
    for (size_t i = 0; i < r->nheaders; i++) {
        if (r->headers[i].name_len == 12 &&
            strncasecmp(r->headers[i].name, "grpc-timeout", 12) == 0) {
            v = r->headers[i].value;
            n = r->headers[i].value_len;
        }
    }
    if (!v || n < 2 || n > 9)
        return 0;
    uint64_t num = 0;
    for (size_t i = 0; i + 1 < n; i++) {
        if (v[i] < '0' || v[i] > '9')
            return 0;
        num = num * 10 + (uint64_t)(v[i] - '0');
    }
    switch (v[n - 1]) {
    case 'H':
        return num * 3600000000ULL;
    case 'M':
        return num * 60000000ULL;
    case 'S':
        return num * 1000000ULL;
    case 'm':
        return num * 1000ULL;
    case 'u':
        return num;
    case 'n':
        return (num + 999) / 1000;
    default:
        return 0;
    }
}
