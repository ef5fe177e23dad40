/* `sluice replay [-c FILE] [--virtual] [--json] ACCESS_LOG` (SPEC.md section 1): every
 * line of an access log run through the engine, as the proxy would run the request, on a
 * fresh memory store whose clock is the log's own "ts", and counted per route and limit.
 *
 * The engine is the proxy's: route matching, client address, keys, the algorithms and the
 * memory store are not copied here. A store in front of the memory store counts each
 * limit's decisions and the keys it denied. A line is a request as sluice saw it: the
 * logged client (already the address X-Forwarded-For gave, so no header is needed), the
 * method, the target with its query, and, when the log was written with
 * access_log_key_fields, the host, headers and cookies the routes and keys read. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>
#include <unistd.h>

#include "replay.h"
#include "sluice/cli.h"
#include "sluice/rates.h"
#include "sluice/store_memory.h"

#define COOKIE_MAX 8192

static const char usage[] =
    "usage: sluice replay [-c FILE] [--virtual] [--json] ACCESS_LOG\n"
    "\n"
    "Runs every request of an access log written by sluice through the configuration's\n"
    "routes and limits, on a fresh memory store whose clock is each line's \"ts\", and\n"
    "prints per route and limit how many requests would have been admitted, delayed and\n"
    "denied, and the ten keys denied most. Lines it cannot use are counted, never fatal.\n"
    "Limits whose key source the log does not record are reported as not evaluable\n"
    "(headers and cookies are recorded with access_log_key_fields: true).\n"
    "\n"
    "  -c FILE     configuration file (default: $SLUICE_CONFIG, else /etc/sluice/sluice.yaml)\n"
    "  --virtual   time from the log, as fast as possible (the default and only mode)\n"
    "  --json      one JSON object instead of text\n"
    "  ACCESS_LOG  the log file, or - for standard input\n"
    "\n"
    "Exit status: 0 replayed, 1 configuration error or unreadable log, 2 usage error.\n";

/* The virtual clock: the memory store reads it, replay sets it from each line. */
static uint64_t virtual_now;

static uint64_t virtual_clock(void)
{
    return virtual_now;
}

struct replay {
    const struct sl_config *cfg;
    struct sl_replay_stats stats;
    uint64_t *asked; /* per limit: the last line on which the engine asked its store */
    uint64_t line;
    bool oom;
};

/* ---- a store that counts, in front of the memory store ---- */

struct counting_store {
    struct sl_store base;
    struct sl_store *memory;
    struct replay *r;
};

struct counted_call {
    struct replay *r;
    const struct sl_limit *lim;
    const char *key;
    size_t key_len;
    sl_store_cb cb;
    void *arg;
};

static void on_counted(void *arg, const struct sl_decision *d, enum sl_store_status status)
{
    struct counted_call *c = arg;
    struct sl_replay_limit_stats *ls = &c->r->stats.limits[c->lim->index];

    ls->requests++;
    if (status == SL_STORE_OK) {
        if (!d->allowed) {
            ls->denied++;
            if (sl_replay_count_denied(ls, c->key, c->key_len) < 0)
                c->r->oom = true;
        } else if (d->delay_us) {
            ls->delayed++;
        } else {
            ls->admitted++;
        }
    }
    c->cb(c->arg, d, status);
}

/* The memory store answers before returning, so the call's record can live on the stack. */
static void counting_decide(struct sl_store *store, const struct sl_limit *lim,
                            const struct sl_quota *q, const char *key, size_t key_len,
                            const struct sl_units *u, sl_store_cb cb, void *arg)
{
    struct counting_store *cs = (struct counting_store *)store;
    struct counted_call c = {cs->r, lim, key, key_len, cb, arg};

    cs->r->asked[lim->index] = cs->r->line;
    sl_store_decide_quota(cs->memory, lim, q, key, key_len, u, on_counted, &c);
}

static void counting_free(struct sl_store *store)
{
}

static const struct sl_store_ops counting_ops = {"memory", counting_decide, counting_free};

/* ---- one line ---- */

static bool field_matches(const struct sl_replay_field *f, const struct sl_key_source *src)
{
    if (f->kind != src->kind)
        return false;
    if (src->kind == SL_KEY_HOST)
        return true;
    if (f->name.n != src->name_len)
        return false;
    return src->kind == SL_KEY_HEADER ? strncasecmp(f->name.s, src->name, src->name_len) == 0
                                      : memcmp(f->name.s, src->name, src->name_len) == 0;
}

/* Whether the line records every source of `lim`: the request itself carries the client,
 * method, path and query; host, headers and cookies only key_fields; a client
 * certificate's subject never. */
static bool recorded(const struct sl_replay_record *rec, const struct sl_limit *lim)
{
    for (size_t k = 0; k < lim->nkeys; k++) {
        const struct sl_key_source *src = &lim->keys[k];
        if (src->kind == SL_KEY_TLS_CLIENT_SUBJECT)
            return false;
        if (src->kind != SL_KEY_HOST && src->kind != SL_KEY_HEADER && src->kind != SL_KEY_COOKIE)
            continue;
        bool found = false;
        for (size_t i = 0; i < rec->nfields && !found; i++)
            found = field_matches(&rec->fields[i], src);
        if (!found)
            return false;
    }
    return true;
}

static bool recorded_field(const struct sl_replay_record *rec, enum sl_key_kind kind,
                           const char *name)
{
    struct sl_key_source src = {kind, (char *)name, name ? strlen(name) : 0};
    for (size_t i = 0; i < rec->nfields; i++)
        if (field_matches(&rec->fields[i], &src))
            return true;
    return false;
}

/* Whether the line records what the route's host and header conditions test: without it
 * the route cannot match, and the report must say so rather than count the line as
 * unmatched silently. */
static bool conditions_recorded(const struct sl_replay_record *rec, const struct sl_route *route)
{
    if (route->host && !recorded_field(rec, SL_KEY_HOST, NULL))
        return false;
    for (size_t i = 0; i < route->nheaders; i++)
        if (!recorded_field(rec, SL_KEY_HEADER, route->headers[i].name))
            return false;
    return true;
}

struct line_verdict {
    struct replay *r;
    const struct sl_replay_record *rec;
};

/* One decision of a limit with `rates:`, under the rate it applied. */
static void count_rate(struct sl_replay_limit_stats *ls, const struct sl_verdict_check *c)
{
    struct sl_replay_rate_stats *rs = &ls->rates[c->rate ? c->rate->rate + 1 : 0];
    rs->requests++;
    if (!c->decision.allowed)
        rs->denied++;
    else if (c->decision.delay_us)
        rs->delayed++;
    else
        rs->admitted++;
}

static void on_verdict(void *arg, struct sl_verdict *v)
{
    struct line_verdict *lv = arg;
    struct replay *r = lv->r;
    size_t tried = v->route ? v->route->index : r->cfg->nroutes;

    for (size_t i = 0; i < tried; i++) {
        const struct sl_route *route = &r->cfg->routes[i];
        if ((route->host || route->nheaders) && !conditions_recorded(lv->rec, route))
            r->stats.routes[i].untestable++;
    }
    if (!v->route) {
        r->stats.unmatched++;
        return;
    }
    struct sl_replay_route_stats *rs = &r->stats.routes[v->route->index];
    rs->requests++;
    switch (v->outcome) {
    case SL_OUTCOME_EXEMPT:
        rs->exempt++;
        return;
    case SL_OUTCOME_LIMITED:
        rs->denied++;
        break;
    case SL_OUTCOME_SHADOW_LIMITED:
        rs->shadow_limited++;
        break;
    case SL_OUTCOME_STORE_ERROR:
        rs->errors++;
        break;
    default:
        if (v->delay_us)
            rs->delayed++;
        else
            rs->admitted++;
    }
    for (size_t i = 0; i < v->route->nlimits; i++) {
        const struct sl_limit *lim = &v->route->limits[i];
        const struct sl_verdict_check *c = &v->priv.checks[i];
        if (lim->rates && c->applied && c->status == SL_STORE_OK)
            count_rate(&r->stats.limits[lim->index], c);
        if (r->asked[lim->index] == r->line)
            continue;
        if (c->applied && c->rate && (c->quota.count == 0 || c->quota.count == SL_RATE_UNLIMITED)) {
            /* Decided without a store: counted here, as the store would have counted it. */
            struct sl_replay_limit_stats *ls = &r->stats.limits[lim->index];
            ls->requests++;
            if (c->decision.allowed)
                ls->admitted++;
            else
                ls->denied++;
            continue;
        }
        if (recorded(lv->rec, lim))
            r->stats.limits[lim->index].absent++;
        else
            r->stats.limits[lim->index].not_recorded++;
    }
}

/* The peer as the listener reported it; a client that is no IP address was a unix-socket
 * peer without a believed X-Forwarded-For. */
static void client_peer(const struct sl_replay_text *client, struct sockaddr_storage *ss)
{
    char text[64];
    struct sockaddr_in *in4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)ss;

    memset(ss, 0, sizeof(struct sockaddr_in6));
    ss->ss_family = AF_UNIX;
    if (client->n >= sizeof text)
        return;
    memcpy(text, client->s, client->n);
    text[client->n] = '\0';
    if (inet_pton(AF_INET, text, &in4->sin_addr) == 1)
        ss->ss_family = AF_INET;
    else if (inet_pton(AF_INET6, text, &in6->sin6_addr) == 1)
        ss->ss_family = AF_INET6;
}

static void replay_record(struct replay *r, struct sl_engine *engine,
                          const struct sl_replay_record *rec)
{
    struct sl_header headers[SL_REPLAY_MAX_FIELDS + 1];
    size_t nh = 0;
    char cookie[COOKIE_MAX];
    size_t clen = 0;

    for (size_t i = 0; i < rec->nfields; i++) {
        const struct sl_replay_field *f = &rec->fields[i];
        if (!f->value.s)
            continue;
        if (f->kind == SL_KEY_HOST) {
            headers[nh++] = (struct sl_header){"Host", 4, f->value.s, f->value.n};
        } else if (f->kind == SL_KEY_HEADER) {
            headers[nh++] = (struct sl_header){f->name.s, f->name.n, f->value.s, f->value.n};
        } else if (clen + f->name.n + f->value.n + 3 <= sizeof cookie) {
            /* The recorded cookies as one Cookie header, as a browser sends them. */
            int n = snprintf(cookie + clen, sizeof cookie - clen, "%s%.*s=%.*s", clen ? "; " : "",
                             (int)f->name.n, f->name.s, (int)f->value.n, f->value.s);
            clen += n > 0 ? (size_t)n : 0;
        }
    }
    if (clen)
        headers[nh++] = (struct sl_header){"Cookie", 6, cookie, clen};

    struct sockaddr_storage peer;
    client_peer(&rec->client, &peer);
    struct sl_request req = {.method = rec->method.s,
                             .method_len = rec->method.n,
                             .target = rec->path.s,
                             .target_len = rec->path.n,
                             .headers = headers,
                             .nheaders = nh,
                             .peer = (const struct sockaddr *)&peer};
    /* The engine sets every field it reads; no headers or body are wanted. */
    struct sl_verdict v;
    v.headers = NULL;
    v.body = NULL;
    struct line_verdict lv = {r, rec};
    virtual_now = rec->ts_us;
    sl_engine_decide(engine, r->cfg, &req, &v, on_verdict, &lv);
}

static void replay_line(struct replay *r, struct sl_engine *engine, const struct sl_replay_line *l)
{
    const struct sl_replay_record *rec = &l->rec;
    struct sl_replay_stats *st = &r->stats;

    st->lines++;
    r->line = st->lines;
    if (!l->usable) {
        st->unusable++;
        return;
    }
    /* sluice answered these itself before a route was chosen (malformed or timed-out
     * heads): the engine never saw them. */
    if (rec->decision.s && rec->decision.n == 0) {
        st->undecided++;
        return;
    }
    if (st->replayed++ == 0 || rec->ts_us < st->first_ts)
        st->first_ts = rec->ts_us;
    if (rec->ts_us > st->last_ts)
        st->last_ts = rec->ts_us;
    replay_record(r, engine, rec);
}

/* Decides every line of `fd`, read and parsed by the feed's thread. Returns 0, or -1 on
 * a read error or ENOMEM (r->oom when the engine's side ran out). */
static int replay_fd(struct replay *r, struct sl_engine *engine, int fd)
{
    struct sl_replay_progress progress;
    const struct sl_replay_batch *b;
    int rc = 0;

    sl_replay_progress_init(&progress, fd);
    struct sl_replay_feed *feed = sl_replay_feed_start(fd);
    if (!feed) {
        r->oom = true;
        return -1;
    }
    while (!r->oom && (b = sl_replay_feed_next(feed))) {
        for (size_t i = 0; i < b->n; i++)
            replay_line(r, engine, &b->lines[i]);
        sl_replay_progress_update(&progress, r->stats.lines, b->offset);
    }
    if (sl_replay_feed_finish(feed) < 0 || r->oom)
        rc = -1;
    sl_replay_progress_clear(&progress);
    return rc;
}

/* ---- the command ---- */

struct options {
    const char *config, *log;
    bool json;
};

static int usage_error(const char *what, const char *arg)
{
    fprintf(stderr, "sluice replay: %s%s\n%s", what, arg ? arg : "", usage);
    return SL_EXIT_USAGE;
}

static int parse_args(int argc, char **argv, struct options *o)
{
    static const struct option long_options[] = {
        {"virtual", no_argument, NULL, 'v'},
        {"speed", required_argument, NULL, 's'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    opterr = 0;
    optind = 1;
    while ((opt = getopt_long(argc, argv, ":c:h", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            o->config = optarg;
            break;
        case 'v':
            break;
        case 's':
            return usage_error("--speed is not supported; replay runs on the log's own clock, "
                               "as fast as possible (--virtual)",
                               NULL);
        case 'j':
            o->json = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case ':':
            return usage_error("an option needs an argument: ", argv[optind - 1]);
        default:
            return usage_error("unknown option ", argv[optind - 1]);
        }
    }
    if (argc - optind != 1)
        return usage_error("expected one ACCESS_LOG", NULL);
    o->log = argv[optind];
    return -1;
}

int sl_cli_replay(int argc, char **argv)
{
    struct options o = {0};
    int rc = parse_args(argc, argv, &o);
    if (rc >= 0)
        return rc;

    struct sl_config *cfg = sl_cli_load_config(o.config);
    if (!cfg)
        return SL_EXIT_CONFIG;
    int fd = strcmp(o.log, "-") == 0 ? STDIN_FILENO : open(o.log, O_RDONLY | O_CLOEXEC);
    struct replay r = {.cfg = cfg};
    struct sl_store *memory = NULL;
    struct counting_store counting = {{&counting_ops}, NULL, &r};
    struct sl_engine *engine = NULL;

    rc = SL_EXIT_CONFIG;
    if (fd < 0) {
        fprintf(stderr, "sluice replay: %s: %s\n", o.log, strerror(errno));
        goto done;
    }
    if (sl_replay_stats_init(&r.stats, cfg) < 0 ||
        !(r.asked = calloc(cfg->nlimits ? cfg->nlimits : 1, sizeof *r.asked)) ||
        !(memory = sl_store_memory_new(cfg->memory_max_keys, cfg->memory_max_bytes, virtual_clock)))
        goto oom;
    counting.memory = memory;
    /* No Redis store: limits on redis are decided by the memory store, as failure_mode
     * local would; the decisions are the same (SPEC.md section 3). */
    if (!(engine = sl_engine_new(NULL, &counting.base, NULL, NULL)))
        goto oom;
    if (replay_fd(&r, engine, fd) < 0) {
        if (r.oom)
            goto oom;
        fprintf(stderr, "sluice replay: %s: %s\n", o.log, strerror(errno));
        goto done;
    }
    if (sl_replay_report(&r.stats, cfg, o.log, o.json) < 0)
        goto oom;
    rc = 0;
    goto done;
oom:
    fprintf(stderr, "sluice replay: out of memory\n");
done:
    if (fd > STDIN_FILENO)
        close(fd);
    sl_engine_free(engine);
    sl_store_free(memory);
    free(r.asked);
    sl_replay_stats_deinit(&r.stats, cfg);
    sl_cfg_unref(cfg);
    return rc;
}
