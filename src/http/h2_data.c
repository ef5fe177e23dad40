/* An HTTP/2 stream's response body as nghttp2 frames it: the data source reading body_out,
 * DATA frames written from it with their chains moved, never copied, and the trailers
 * that end the stream after the last DATA. */
#include <stdlib.h>
#include <string.h>

#include "h2.h"
#include "sluice/clock.h"

ssize_t sl_h2_stream_read(nghttp2_session *s, int32_t id, uint8_t *buf, size_t len,
                          uint32_t *flags, nghttp2_data_source *src, void *arg)
{
    struct sl_h2_stream *st = src->ptr;
    size_t avail = evbuffer_get_length(st->body_out);

    (void)buf, (void)arg;
    if (avail == 0 && !st->resp_eof) {
        st->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    if (len > avail)
        len = avail;
    /* The bytes are written from body_out by sl_h2_stream_send_data. */
    *flags |= NGHTTP2_DATA_FLAG_NO_COPY;
    if (st->resp_eof && len == avail) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        /* Trailers end the stream in their own HEADERS frame, after this DATA. */
        if (st->trailers && nghttp2_submit_trailer(s, id, st->trailers, st->ntrailers) == 0)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        free(st->trailers);
        st->trailers = NULL;
    }
    return (ssize_t)len;
}

int sl_h2_stream_send_data(nghttp2_session *s, nghttp2_frame *frame, const uint8_t *framehd,
                           size_t len, nghttp2_data_source *src, void *arg)
{
    struct sl_h2_stream *st = src->ptr;
    struct sl_h2_conn *c = arg;
    struct evbuffer *out = bufferevent_get_output(c->bev);

    (void)s, (void)frame;
    if (evbuffer_get_length(out) >= SL_HIGH_WATER)
        return NGHTTP2_ERR_WOULDBLOCK;
    evbuffer_add(out, framehd, 9);
    evbuffer_remove_buffer(st->body_out, out, len);
    st->x.bytes_out += 9 + len;
    sl_h2_stream_touch(st); /* room in body_out: the upstream may be read again */
    c->progress_us = sl_clock_mono_us();
    return 0;
}

/* Keeps the trailers (names lower case, as an HTTP/2 upstream sent them) for the read
 * callback, which submits them once body_out is all framed. */
void sl_h2_stream_trailers(struct sl_exchange *x, const struct sl_header *t, size_t n)
{
    struct sl_h2_stream *st = (struct sl_h2_stream *)x; /* the stream's first member */
    size_t text = 0;

    if (n == 0 || !st->submitted)
        return;
    for (size_t i = 0; i < n; i++)
        text += t[i].name_len + t[i].value_len;
    nghttp2_nv *nv = malloc(n * sizeof *nv + text);
    if (!nv)
        return; /* the stream ends without them */
    char *d = (char *)(nv + n);
    for (size_t i = 0; i < n; i++) {
        memcpy(d, t[i].name, t[i].name_len);
        memcpy(d + t[i].name_len, t[i].value, t[i].value_len);
        nv[i] = (nghttp2_nv){(uint8_t *)d, (uint8_t *)d + t[i].name_len, t[i].name_len,
                             t[i].value_len, NGHTTP2_NV_FLAG_NONE};
        d += t[i].name_len + t[i].value_len;
    }
    free(st->trailers);
    st->trailers = nv;
    st->ntrailers = n;
}
