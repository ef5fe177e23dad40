/* The limiter engine's test bench: stores that are fakes scripted per limit (answering
 * at once or later), a configuration built by hand, and requests run through the engine
 * with their verdicts kept for inspection. */
#ifndef SLUICE_TEST_ENGINE_FIXTURE_H
#define SLUICE_TEST_ENGINE_FIXTURE_H

#include <arpa/inet.h>
#include <check.h>
#include <event2/buffer.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "run_suite.h"
#include "sluice/engine.h"
#include "sluice/route.h"
#include "sluice/text.h"

/* ---- a scripted store ---- */

#define MAX_CALLS 32

struct script {
    const char *limit; /* limit name, NULL = free slot */
    enum sl_store_status status;
    struct sl_decision d;
};

struct deferred {
    sl_store_cb cb;
    void *arg;
    enum sl_store_status status;
    struct sl_decision d;
};

struct fake_store {
    struct sl_store base;
    struct script script[8];
    bool async;           /* answer only on fake_flush() */
    bool flush_on_decide; /* answer earlier deferred calls inside decide() first */
    char keys[MAX_CALLS][128];
    const struct sl_limit *limits[MAX_CALLS];
    struct sl_quota quotas[MAX_CALLS]; /* the quota each call was decided under */
    size_t ncalls;
    struct deferred deferred[MAX_CALLS];
    size_t ndeferred;
};

static inline void fake_flush(struct fake_store *f)
{
    while (f->ndeferred > 0) {
        struct deferred d = f->deferred[0];
        memmove(f->deferred, f->deferred + 1, --f->ndeferred * sizeof d);
        d.cb(d.arg, d.status == SL_STORE_OK ? &d.d : NULL, d.status);
    }
}

static inline void fake_decide(struct sl_store *store, const struct sl_limit *lim,
                               const struct sl_quota *q, const char *key, size_t key_len,
                               const struct sl_units *u, sl_store_cb cb, void *arg)
{
    struct fake_store *f = (struct fake_store *)store;
    struct deferred d = {
        cb,
        arg,
        SL_STORE_OK,
        {.allowed = true, .limit = q->count, .remaining = q->count - 1, .reset_us = q->period_us}};

    ck_assert_uint_lt(f->ncalls, MAX_CALLS);
    ck_assert_uint_lt(key_len, sizeof f->keys[0]);
    memcpy(f->keys[f->ncalls], key, key_len);
    f->keys[f->ncalls][key_len] = '\0';
    f->quotas[f->ncalls] = *q;
    f->limits[f->ncalls++] = lim;
    for (size_t i = 0; i < 8 && f->script[i].limit; i++)
        if (strcmp(f->script[i].limit, lim->name) == 0) {
            d.status = f->script[i].status;
            d.d = f->script[i].d;
        }
    if (f->flush_on_decide)
        fake_flush(f);
    if (f->async) {
        f->deferred[f->ndeferred++] = d;
        return;
    }
    cb(arg, d.status == SL_STORE_OK ? &d.d : NULL, d.status);
}

static inline void fake_free(struct sl_store *store)
{
}

static const struct sl_store_ops fake_ops = {"fake", fake_decide, fake_free};

static inline void script(struct fake_store *f, const char *limit, enum sl_store_status status,
                          struct sl_decision d)
{
    size_t i = 0;
    while (f->script[i].limit)
        i++;
    f->script[i] = (struct script){limit, status, d};
}

static inline struct sl_decision allow(uint64_t limit, uint64_t remaining, uint64_t reset_us)
{
    return (struct sl_decision){.allowed = true, limit, remaining, reset_us, 0, 0};
}

static inline struct sl_decision deny(uint64_t limit, uint64_t reset_us, uint64_t retry_us)
{
    return (struct sl_decision){.allowed = false, limit, 0, reset_us, retry_us, 0};
}

/* ---- configuration built by hand ---- */

static struct fake_store memory, redis;
static struct sl_config cfg;
static struct sl_route routes[4];
static struct sl_limit limits[4][4];
static struct sl_key_source client_ip_key = {SL_KEY_CLIENT_IP, NULL, 0};
static struct sl_cidr cidrs[4];
static struct sl_engine *engine;

static inline struct sl_route *add_route(const char *name, enum sl_path_match kind,
                                         const char *path)
{
    struct sl_route *r = &routes[cfg.nroutes];
    r->name = (char *)name;
    r->index = cfg.nroutes;
    r->path_match = kind;
    r->path = (char *)path;
    r->limits = limits[cfg.nroutes++];
    return r;
}

static inline struct sl_limit *add_limit(struct sl_route *r, const char *name, uint64_t count,
                                         uint64_t period_s, enum sl_store_kind store)
{
    struct sl_limit *l = &r->limits[r->nlimits++];
    l->name = (char *)name;
    l->route = r;
    l->count = count;
    l->period_us = period_s * 1000000u;
    l->keys = &client_ip_key;
    l->nkeys = 1;
    l->store = store;
    l->index = cfg.nlimits++;
    return l;
}

static inline void setup(void)
{
    memset(&memory, 0, sizeof memory);
    memset(&redis, 0, sizeof redis);
    memory.base.ops = &fake_ops;
    redis.base.ops = &fake_ops;
    memset(&cfg, 0, sizeof cfg);
    memset(routes, 0, sizeof routes);
    memset(limits, 0, sizeof limits);
    cfg.routes = routes;
    cfg.response_status = 429;
    cfg.response_headers = SL_HEADERS_BOTH;
    cfg.failure_mode = SL_FAILURE_OPEN;
    cfg.exempt.items = cidrs;
    engine = sl_engine_new(NULL, &memory.base, &redis.base, NULL);
    ck_assert_ptr_nonnull(engine);
}

static inline void teardown(void)
{
    sl_engine_free(engine);
}

/* ---- requests and verdicts ---- */

struct result {
    struct sl_verdict v;
    struct sl_textbuf vheaders, vbody;
    int calls;
    char headers[1024];
    char body[256];
};

static inline void on_verdict(void *arg, struct sl_verdict *v)
{
    struct result *r = arg;
    ck_assert_ptr_eq(v, &r->v);
    r->calls++;
    size_t n = v->headers->len;
    ck_assert_uint_lt(n, sizeof r->headers);
    if (n)
        memcpy(r->headers, v->headers->data, n);
    r->headers[n] = '\0';
    n = v->body->len;
    ck_assert_uint_lt(n, sizeof r->body);
    if (n)
        memcpy(r->body, v->body->data, n);
    r->body[n] = '\0';
}

static struct sockaddr_in peer_addr;

static inline void start(struct result *r, const char *method, const char *target,
                         const struct sl_header *hs, size_t nh)
{
    struct sl_request req = {method,
                             strlen(method),
                             target,
                             strlen(target),
                             hs,
                             nh,
                             (const struct sockaddr *)&peer_addr,
                             NULL,
                             0};
    memset(r, 0, sizeof *r);
    r->v.headers = &r->vheaders;
    r->v.body = &r->vbody;
    sl_engine_decide(engine, &cfg, &req, &r->v, on_verdict, r);
}

static inline void done(struct result *r)
{
    sl_textbuf_free(&r->vheaders);
    sl_textbuf_free(&r->vbody);
}

/* Decides one request from 192.0.2.1 that every store answers at once. */
static inline struct result *decide(const char *method, const char *target)
{
    static struct result r;
    static bool used;
    if (used)
        done(&r);
    used = true;
    inet_pton(AF_INET, "192.0.2.1", &peer_addr.sin_addr);
    peer_addr.sin_family = AF_INET;
    start(&r, method, target, NULL, 0);
    ck_assert_int_eq(r.calls, 1);
    return &r;
}

#endif
