/* The exchange's life in no protocol: asking the engine, acting on its verdict (answer,
 * hold, forward), and finishing (verdict released, metrics, access log). What is protocol
 * is asked of the client codec through its ops. */
#include "exchange.h"

#include <time.h>

#include "http.h"
#include "sluice/clock.h"

static void on_verdict(void *arg, struct sl_verdict *v)
{
    struct sl_exchange *x = arg;

    (void)v; /* x->verdict */
    x->decision_pending = false;
    x->client->verdict(x);
}

void sl_exchange_decide(struct sl_exchange *x)
{
    struct sl_verdict *v = &x->verdict;

    x->vheaders.len = x->vbody.len = 0;
    v->headers = &x->vheaders;
    v->body = &x->vbody;
    x->decision_pending = true;
    sl_engine_decide(x->w->engine, x->cfg, &x->req, v, on_verdict, x);
}

void sl_exchange_act(struct sl_exchange *x)
{
    struct sl_verdict *v = &x->verdict;

    x->has_verdict = !v->rejected; /* a 400 before any limit is no decision to count */
    if (v->status) {
        x->client->reply(x, v->status, v->headers, v->body);
        return;
    }
    if (x->grpc && !x->cfg->upstream.h2) {
        /* An HTTP/1.1 upstream cannot carry gRPC: its status travels in trailers. The call
         * has met its limits and is counted; answered at once, it takes no delay, which
         * only spaces what reaches the upstream. */
        static const char msg[] = "gRPC needs an h2c:// or h2:// upstream.url";
        const struct sl_textbuf why = {(char *)msg, sizeof msg - 1, 0};
        x->client->reply(x, 501, v->headers, &why);
        return;
    }
    if (v->delay_us) {
        /* Counted from now, at or after the decision, so never shorter than decided. */
        x->release_us = sl_clock_mono_us() + v->delay_us;
        sl_exchange_hold(x);
        return;
    }
    x->client->forward(x);
}

void sl_exchange_hold(struct sl_exchange *x)
{
    uint64_t now = sl_clock_mono_us();

    if (now >= x->release_us)
        x->client->forward(x);
    else
        x->client->hold(x, x->release_us - now);
}

void sl_exchange_upstream(struct sl_exchange *x)
{
    x->upstream = x->cfg->upstream.h2 ? &sl_h2_upstream_ops : &sl_h1_upstream_ops;
    x->upstream->forward(x);
}

void sl_exchange_finish(struct sl_exchange *x, uint64_t now_us)
{
    struct sl_worker *w = x->w;
    const struct sl_route *route = x->has_verdict ? x->verdict.route : NULL;

    x->duration_us = now_us - x->t_start;
    sl_engine_verdict_done(w->engine, &x->verdict);
    if (x->has_verdict)
        sl_metrics_request(w->metrics, route, x->verdict.outcome, x->duration_us);
    sl_metrics_response(w->metrics, route, x->status);
    if (x->cfg->access_log != SL_ACCESS_LOG_OFF)
        sl_access_log_request(w, x);
}
