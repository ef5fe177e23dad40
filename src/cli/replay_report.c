/* The replay report: per route, then per limit of the route, what the configuration would
 * have done to the log's requests. Keys come from the log (attacker-controlled request
 * data): they are written through the JSON string escaper in both forms. */
#include <event2/buffer.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "replay.h"
#include "sluice/config_parse.h"
#include "sluice/json.h"
#include "sluice/rates.h"

#define TOP_KEYS 10

static void quoted(struct evbuffer *b, const char *s, size_t n)
{
    sl_json_append_string(b, s, n);
}

static void quoted_str(struct evbuffer *b, const char *s)
{
    quoted(b, s, strlen(s));
}

static void add_ts(struct evbuffer *b, uint64_t us)
{
    time_t t = (time_t)(us / 1000000);
    struct tm tm;
    char text[40];

    gmtime_r(&t, &tm);
    strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%S", &tm);
    evbuffer_add_printf(b, "%s.%03uZ", text, (unsigned)(us / 1000 % 1000));
}

static bool recordable(const struct sl_key_source *src)
{
    return src->kind == SL_KEY_HOST || src->kind == SL_KEY_HEADER || src->kind == SL_KEY_COOKIE ||
           src->kind == SL_KEY_TLS_CLIENT_SUBJECT;
}

static void source_name(struct evbuffer *b, const struct sl_key_source *src, bool json)
{
    char text[300];
    snprintf(text, sizeof text, "%s%s",
             src->kind == SL_KEY_HOST                   ? "host"
             : src->kind == SL_KEY_HEADER               ? "header:"
             : src->kind == SL_KEY_TLS_CLIENT_SUBJECT ? "tls_client_subject"
                                                        : "cookie:",
             src->name ? src->name : "");
    if (json)
        quoted_str(b, text);
    else
        evbuffer_add_printf(b, "%s", text);
}

/* Not evaluable: no line of the route recorded the limit's key. */
static bool evaluable(const struct sl_replay_limit_stats *ls)
{
    return !(ls->not_recorded && ls->requests == 0 && ls->absent == 0);
}

/* A limit's rates, each with its decisions: row 0 is the limit's own rate, row 1 + i its
 * rates->quotas[i]. Rows of one rate (a file may repeat a rate) are added up into the first
 * one; rows nothing was decided under are left out. */
struct rate_row {
    char text[64];
    bool own;
    struct sl_replay_rate_stats n;
};

/* At most this many rate rows are listed, the busiest first; the rest are summed up. */
#define RATE_ROWS 20

static size_t rate_rows(const struct sl_limit *lim, const struct sl_replay_limit_stats *ls,
                        struct rate_row *rows, struct sl_replay_rate_stats *rest)
{
    size_t n = 0;
    memset(rest, 0, sizeof *rest);
    for (uint32_t i = 0; i <= lim->rates->nquotas; i++) {
        const struct sl_replay_rate_stats *s = &ls->rates[i];
        if (!s->requests)
            continue;
        struct rate_row row = {.own = i == 0, .n = *s};
        if (i == 0)
            snprintf(row.text, sizeof row.text, "%s", lim->rate_text);
        else
            sl_format_rate(lim->rates->quotas[i - 1].count, lim->rates->quotas[i - 1].period_us,
                           row.text, sizeof row.text);
        size_t k = 0;
        while (k < n && (rows[k].own || row.own || strcmp(rows[k].text, row.text) != 0))
            k++;
        if (k < n) {
            rows[k].n.requests += s->requests;
            rows[k].n.admitted += s->admitted;
            rows[k].n.delayed += s->delayed;
            rows[k].n.denied += s->denied;
            continue;
        }
        /* Keeps the RATE_ROWS busiest: a quieter row goes to the rest. */
        if (n == RATE_ROWS) {
            size_t low = 0;
            for (size_t j = 1; j < n; j++)
                if (rows[j].n.requests < rows[low].n.requests)
                    low = j;
            if (rows[low].n.requests >= row.n.requests) {
                low = n;
            } else {
                struct rate_row t = rows[low];
                rows[low] = row;
                row = t;
            }
            rest->requests += row.n.requests;
            rest->admitted += row.n.admitted;
            rest->delayed += row.n.delayed;
            rest->denied += row.n.denied;
            continue;
        }
        rows[n++] = row;
    }
    return n;
}

static void text_rates(struct evbuffer *b, const struct sl_limit *lim,
                       const struct sl_replay_limit_stats *ls)
{
    struct rate_row rows[RATE_ROWS];
    struct sl_replay_rate_stats rest;
    size_t n = rate_rows(lim, ls, rows, &rest);

    evbuffer_add_printf(b, "    by rate (rates by %s):\n", lim->rates->by_text);
    for (size_t i = 0; i < n; i++)
        evbuffer_add_printf(b,
                            "      %s%s: %" PRIu64 " requests: %" PRIu64 " admitted, %" PRIu64
                            " delayed, %" PRIu64 " denied\n",
                            rows[i].own ? "default " : "", rows[i].text, rows[i].n.requests,
                            rows[i].n.admitted, rows[i].n.delayed, rows[i].n.denied);
    if (rest.requests)
        evbuffer_add_printf(b,
                            "      other rates: %" PRIu64 " requests: %" PRIu64
                            " admitted, %" PRIu64 " delayed, %" PRIu64 " denied\n",
                            rest.requests, rest.admitted, rest.delayed, rest.denied);
}

static void json_rates(struct evbuffer *b, const struct sl_limit *lim,
                       const struct sl_replay_limit_stats *ls)
{
    struct rate_row rows[RATE_ROWS];
    struct sl_replay_rate_stats rest;
    size_t n = rate_rows(lim, ls, rows, &rest);

    evbuffer_add_printf(b, ",\"rates\":{\"by\":");
    quoted_str(b, lim->rates->by_text);
    evbuffer_add_printf(b, ",\"by_rate\":[");
    for (size_t i = 0; i < n; i++) {
        evbuffer_add_printf(b, "%s{\"rate\":", i ? "," : "");
        quoted_str(b, rows[i].text);
        evbuffer_add_printf(b,
                            ",\"default\":%s,\"requests\":%" PRIu64 ",\"admitted\":%" PRIu64
                            ",\"delayed\":%" PRIu64 ",\"denied\":%" PRIu64 "}",
                            rows[i].own ? "true" : "false", rows[i].n.requests, rows[i].n.admitted,
                            rows[i].n.delayed, rows[i].n.denied);
    }
    evbuffer_add_printf(b,
                        "],\"other_rates\":{\"requests\":%" PRIu64 ",\"admitted\":%" PRIu64
                        ",\"delayed\":%" PRIu64 ",\"denied\":%" PRIu64 "}}",
                        rest.requests, rest.admitted, rest.delayed, rest.denied);
}

static void text_limit(struct evbuffer *b, const struct sl_limit *lim,
                       const struct sl_replay_limit_stats *ls)
{
    struct sl_replay_top top[TOP_KEYS];

    evbuffer_add_printf(b, "  limit %s (%s %s", lim->name, lim->alg->name, lim->rate_text);
    if (lim->alg->has_burst)
        evbuffer_add_printf(b, ", burst %" PRIu64, lim->burst);
    evbuffer_add_printf(b, "%s): ", lim->shadow ? ", shadow" : "");
    if (!evaluable(ls)) {
        evbuffer_add_printf(b, "not evaluable: the log does not record");
        for (size_t k = 0, first = 1; k < lim->nkeys; k++)
            if (recordable(&lim->keys[k])) {
                evbuffer_add_printf(b, "%s ", first ? "" : ",");
                source_name(b, &lim->keys[k], false);
                first = 0;
            }
        evbuffer_add_printf(b, " (write it with access_log_key_fields: true)\n");
        return;
    }
    evbuffer_add_printf(b,
                        "%" PRIu64 " requests: %" PRIu64 " admitted, %" PRIu64 " delayed, %" PRIu64
                        " %s; %" PRIu64 " skipped (source absent)",
                        ls->requests, ls->admitted, ls->delayed, ls->denied,
                        lim->shadow ? "would have been denied (shadow)" : "denied", ls->absent);
    if (ls->not_recorded)
        evbuffer_add_printf(b, ", %" PRIu64 " not recorded in the log", ls->not_recorded);
    evbuffer_add_printf(b, "\n");
    if (lim->rates)
        text_rates(b, lim, ls);
    size_t n = sl_replay_top_denied(ls, top, TOP_KEYS);
    if (n)
        evbuffer_add_printf(b, "    denied most:\n");
    for (size_t i = 0; i < n; i++) {
        evbuffer_add_printf(b, "      %10" PRIu64 "  ", top[i].count);
        quoted(b, top[i].key, top[i].len);
        evbuffer_add_printf(b, "\n");
    }
}

static void write_text(struct evbuffer *b, const struct sl_replay_stats *st,
                       const struct sl_config *cfg, const char *log_name)
{
    evbuffer_add_printf(b,
                        "replay of %s: %" PRIu64 " lines, %" PRIu64 " replayed, %" PRIu64
                        " unusable, %" PRIu64 " answered before routing (not replayed)\n",
                        log_name, st->lines, st->replayed, st->unusable, st->undecided);
    if (st->replayed) {
        evbuffer_add_printf(b, "log time: ");
        add_ts(b, st->first_ts);
        evbuffer_add_printf(b, " to ");
        add_ts(b, st->last_ts);
        evbuffer_add_printf(b, "\n");
    }
    evbuffer_add_printf(b, "unmatched: %" PRIu64 " requests (forwarded with no limit)\n",
                        st->unmatched);
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route *route = &cfg->routes[i];
        const struct sl_replay_route_stats *rs = &st->routes[i];
        evbuffer_add_printf(b,
                            "route %s%s: %" PRIu64 " requests: %" PRIu64 " admitted, %" PRIu64
                            " delayed, %" PRIu64 " denied, %" PRIu64 " shadow_limited, %" PRIu64
                            " exempt\n",
                            route->name, route->shadow ? " (shadow)" : "", rs->requests,
                            rs->admitted, rs->delayed, rs->denied, rs->shadow_limited, rs->exempt);
        if (rs->untestable)
            evbuffer_add_printf(b,
                                "  %" PRIu64 " lines could not be tested against its host or "
                                "header conditions, which the log does not record (write "
                                "them with access_log_key_fields: true)\n",
                                rs->untestable);
        for (size_t l = 0; l < route->nlimits; l++)
            text_limit(b, &route->limits[l], &st->limits[route->limits[l].index]);
    }
}

static void json_limit(struct evbuffer *b, const struct sl_limit *lim,
                       const struct sl_replay_limit_stats *ls)
{
    struct sl_replay_top top[TOP_KEYS];

    evbuffer_add_printf(b, "{\"name\":");
    quoted_str(b, lim->name);
    evbuffer_add_printf(b, ",\"algorithm\":");
    quoted_str(b, lim->alg->name);
    evbuffer_add_printf(b, ",\"rate\":");
    quoted_str(b, lim->rate_text);
    evbuffer_add_printf(
        b,
        ",\"shadow\":%s,\"evaluable\":%s,\"requests\":%" PRIu64 ",\"admitted\":%" PRIu64
        ",\"delayed\":%" PRIu64 ",\"denied\":%" PRIu64 ",\"absent\":%" PRIu64
        ",\"not_recorded\":%" PRIu64 ",\"unrecorded_sources\":[",
        lim->shadow ? "true" : "false", evaluable(ls) ? "true" : "false", ls->requests,
        ls->admitted, ls->delayed, ls->denied, ls->absent, ls->not_recorded);
    bool first = true;
    for (size_t k = 0; ls->not_recorded && k < lim->nkeys; k++)
        if (recordable(&lim->keys[k])) {
            evbuffer_add_printf(b, "%s", first ? "" : ",");
            source_name(b, &lim->keys[k], true);
            first = false;
        }
    evbuffer_add_printf(b, "]");
    if (lim->rates)
        json_rates(b, lim, ls);
    evbuffer_add_printf(b, ",\"denied_most\":[");
    size_t n = sl_replay_top_denied(ls, top, TOP_KEYS);
    for (size_t i = 0; i < n; i++) {
        evbuffer_add_printf(b, "%s{\"key\":", i ? "," : "");
        quoted(b, top[i].key, top[i].len);
        evbuffer_add_printf(b, ",\"denied\":%" PRIu64 "}", top[i].count);
    }
    evbuffer_add_printf(b, "]}");
}

static void write_json(struct evbuffer *b, const struct sl_replay_stats *st,
                       const struct sl_config *cfg, const char *log_name)
{
    evbuffer_add_printf(b, "{\"log\":");
    quoted_str(b, log_name);
    evbuffer_add_printf(b,
                        ",\"lines\":%" PRIu64 ",\"replayed\":%" PRIu64 ",\"unusable\":%" PRIu64
                        ",\"undecided\":%" PRIu64 ",\"unmatched\":%" PRIu64 ",\"first_ts\":",
                        st->lines, st->replayed, st->unusable, st->undecided, st->unmatched);
    if (st->replayed) {
        evbuffer_add_printf(b, "\"");
        add_ts(b, st->first_ts);
        evbuffer_add_printf(b, "\",\"last_ts\":\"");
        add_ts(b, st->last_ts);
        evbuffer_add_printf(b, "\"");
    } else {
        evbuffer_add_printf(b, "null,\"last_ts\":null");
    }
    evbuffer_add_printf(b, ",\"routes\":[");
    for (size_t i = 0; i < cfg->nroutes; i++) {
        const struct sl_route *route = &cfg->routes[i];
        const struct sl_replay_route_stats *rs = &st->routes[i];
        evbuffer_add_printf(b, "%s{\"name\":", i ? "," : "");
        quoted_str(b, route->name);
        evbuffer_add_printf(
            b,
            ",\"shadow\":%s,\"requests\":%" PRIu64 ",\"admitted\":%" PRIu64 ",\"delayed\":%" PRIu64
            ",\"denied\":%" PRIu64 ",\"shadow_limited\":%" PRIu64 ",\"exempt\":%" PRIu64
            ",\"store_errors\":%" PRIu64 ",\"untestable\":%" PRIu64 ",\"limits\":[",
            route->shadow ? "true" : "false", rs->requests, rs->admitted, rs->delayed, rs->denied,
            rs->shadow_limited, rs->exempt, rs->errors, rs->untestable);
        for (size_t l = 0; l < route->nlimits; l++) {
            evbuffer_add_printf(b, "%s", l ? "," : "");
            json_limit(b, &route->limits[l], &st->limits[route->limits[l].index]);
        }
        evbuffer_add_printf(b, "]}");
    }
    evbuffer_add_printf(b, "]}\n");
}

int sl_replay_report(const struct sl_replay_stats *st, const struct sl_config *cfg,
                     const char *log_name, bool json)
{
    struct evbuffer *b = evbuffer_new();
    int rc = -1;

    if (!b)
        return -1;
    if (json)
        write_json(b, st, cfg, log_name);
    else
        write_text(b, st, cfg, log_name);
    while (evbuffer_get_length(b) > 0)
        if (evbuffer_write(b, STDOUT_FILENO) < 0)
            goto done;
    rc = 0;
done:
    evbuffer_free(b);
    return rc;
}
