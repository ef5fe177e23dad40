/* Responses sluice makes itself on an HTTP/1 connection: errors, and the engine's answers
 * (429, 503), as JSON, or in gRPC's form to a gRPC call. */
#include <string.h>

#include "grpc.h"
#include "http.h"
#include "sluice/text.h"

void sl_reply(struct sl_conn *c, int status, const struct sl_textbuf *headers,
              const struct sl_textbuf *body, bool close)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    size_t body_len = body ? body->len : 0;
    const char *dflt = body_len ? NULL : sl_error_name(status);
    const char *reason = sl_reason(status);
    char code[] = {(char)('0' + status / 100 % 10), (char)('0' + status / 10 % 10),
                   (char)('0' + status % 10), ' '};
    struct sl_text t;

    size_t before = evbuffer_get_length(out);

    if (dflt) /* {"error":"<dflt>"}\n */
        body_len = strlen(dflt) + 13;
    sl_text_init(&t, out);
    if (c->x.grpc) {
        /* gRPC over HTTP/1.1 is rare; it gets the trailers-only answer's fields as the
         * head (grpc.h), with no content. */
        SL_TEXT_LIT(&t, "HTTP/1.1 200 OK\r\n");
        sl_grpc_answer(&t, &c->x, status, headers, body);
        SL_TEXT_LIT(&t, "Content-Length: 0\r\n");
        status = 200;
        dflt = NULL;
        body = NULL;
    } else {
        SL_TEXT_LIT(&t, "HTTP/1.1 ");
        sl_text_add(&t, code, sizeof code);
        sl_text_add(&t, reason, strlen(reason));
        SL_TEXT_LIT(&t, "\r\nContent-Type: application/json\r\nContent-Length: ");
        sl_text_u64(&t, body_len);
        SL_TEXT_LIT(&t, "\r\n");
        if (headers && headers->len)
            sl_text_add(&t, headers->data, headers->len);
    }
    if (close)
        SL_TEXT_LIT(&t, "Connection: close\r\n\r\n");
    else if (c->http_minor == 0)
        SL_TEXT_LIT(&t, "Connection: keep-alive\r\n\r\n");
    else
        SL_TEXT_LIT(&t, "\r\n");
    /* RFC 9110 9.3.2: a response to HEAD has the same headers and no content. */
    if (!c->x.is_head && dflt) {
        SL_TEXT_LIT(&t, "{\"error\":\"");
        sl_text_add(&t, dflt, strlen(dflt));
        SL_TEXT_LIT(&t, "\"}\n");
    } else if (!c->x.is_head && body) {
        sl_text_add(&t, body->data, body->len);
    }
    c->x.bytes_out += evbuffer_get_length(out) - before + t.len;
    c->x.status = status;
    c->x.resp_head_sent = true;
    if (close)
        c->close_after = true;
    sl_conn_send_text(c, &t);
}
