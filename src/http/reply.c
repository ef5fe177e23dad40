/* Responses sluice makes itself: errors, and the engine's answers (429, 503). */
#include <stdio.h>
#include <string.h>

#include "http.h"

const char *sl_reason(int status)
{
    switch (status) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 408:
        return "Request Timeout";
    case 413:
        return "Content Too Large";
    case 429:
        return "Too Many Requests";
    case 431:
        return "Request Header Fields Too Large";
    case 500:
        return "Internal Server Error";
    case 502:
        return "Bad Gateway";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    case 505:
        return "HTTP Version Not Supported";
    default:
        return "Unknown";
    }
}

static const char *default_error(int status)
{
    switch (status) {
    case 400:
        return "bad_request";
    case 408:
        return "request_timeout";
    case 413:
        return "body_too_large";
    case 429:
        return "rate_limited";
    case 431:
        return "headers_too_large";
    case 502:
        return "bad_gateway";
    case 503:
        return "service_unavailable";
    case 504:
        return "gateway_timeout";
    case 505:
        return "http_version_not_supported";
    default:
        return "error";
    }
}

void sl_reply(struct sl_conn *c, int status, struct evbuffer *headers, struct evbuffer *body,
              bool close)
{
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char line[160];
    char dflt[96];
    size_t body_len = body ? evbuffer_get_length(body) : 0;
    int n;

    if (body_len == 0) {
        n = snprintf(dflt, sizeof dflt, "{\"error\":\"%s\"}\n", default_error(status));
        body_len = (size_t)n;
    }
    n = snprintf(line, sizeof line,
                 "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n",
                 status, sl_reason(status), body_len);
    size_t before = evbuffer_get_length(out);
    evbuffer_add(out, line, (size_t)n);
    if (headers)
        evbuffer_add_buffer(out, headers);
    if (close)
        evbuffer_add(out, "Connection: close\r\n\r\n", 21);
    else if (c->http_minor == 0)
        evbuffer_add(out, "Connection: keep-alive\r\n\r\n", 26);
    else
        evbuffer_add(out, "\r\n", 2);
    if (c->is_head) /* RFC 9110 9.3.2: same headers, no content */
        evbuffer_drain(body ? body : out, body ? evbuffer_get_length(body) : 0);
    else if (body && evbuffer_get_length(body))
        evbuffer_add_buffer(out, body);
    else
        evbuffer_add(out, dflt, strlen(dflt));
    c->bytes_out += evbuffer_get_length(out) - before;
    c->status = status;
    c->resp_head_sent = true;
    if (close)
        c->close_after = true;
    sl_conn_flush(c);
}
