/* sluice: argument parsing and start-up only. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/cli.h"
#include "sluice/config.h"
#include "sluice/log.h"
#include "sluice/rates.h"
#include "sluice/rls_config.h"
#include "sluice/route_index.h"
#include "sluice/server.h"

#define EXIT_CONFIG SL_EXIT_CONFIG
#define EXIT_USAGE SL_EXIT_USAGE

static const char usage[] =
    "usage: sluice [-c FILE] [-t] [-h] [--version]\n"
    "       sluice explain [-c FILE] [--peer ADDR] [-H 'Name: value']... [--json] METHOD TARGET\n"
    "       sluice explain [-c FILE] --rls DOMAIN key=value[,key=value]...\n"
    "       sluice replay [-c FILE] [--virtual] [--json] ACCESS_LOG\n"
    "\n"
    "A rate-limiting reverse proxy.\n"
    "\n"
    "  -c FILE    configuration file (default: $SLUICE_CONFIG, else /etc/sluice/sluice.yaml)\n"
    "  -t         check the configuration and the rls files it names, print the route index\n"
    "             and \"configuration ok\", or every error, and exit\n"
    "  -h         print this help and exit\n"
    "  --version  print the version and exit\n"
    "\n"
    "  explain    print what sluice would do with one request and why: the normalised path,\n"
    "             each route tried, the client address, and each limit's key as its store\n"
    "             holds it and the rate that applies; no store is touched (sluice explain -h);\n"
    "             with --rls, which limit of the rls files one descriptor matches and why\n"
    "  replay     run an access log written by sluice through the file's routes and limits\n"
    "             on a fresh memory store, on the log's own clock, and print what each limit\n"
    "             would have admitted, delayed and denied (sluice replay -h)\n"
    "\n"
    "Signals: SIGHUP reloads the configuration and the rates files, TLS certificates and\n"
    "rls files it names (so does a change of one on disk, with reload.watch: true);\n"
    "SIGTERM and SIGINT drain and exit.\n"
    "Exit status: 0 ok, 1 configuration or start-up error, 2 usage error.\n";

/* sluice -t: what the route index holds and what its regex matcher takes. */
static void print_index(const struct sl_route_index *ix)
{
    struct sl_route_index_stats st;

    sl_route_index_stats(ix, &st);
    printf("routes: %zu path, %zu path_prefix, %zu path_regex, %zu without a path; "
           "index %zu bytes\n",
           st.exact, st.prefix, st.regex_prefixed + st.regex_any, st.any, st.bytes);
    if (st.matcher == SL_REGEX_MATCHER_HYPERSCAN)
        printf("regex: %zu routes, hyperscan matcher: %zu patterns, database %zu bytes, "
               "scratch %zu bytes per worker (%u workers)\n",
               st.regex_prefixed + st.regex_any, st.patterns, st.database_bytes, st.scratch_bytes,
               st.threads);
    else
        printf("regex: %zu routes, fallback matcher (%zu with a literal prefix, tried only "
               "when the path starts with it)\n",
               st.regex_prefixed + st.regex_any, st.regex_prefixed);
}

/* sluice -t: each limit's per-consumer rates, what they hold and where they came from. */
static void print_rates(const struct sl_config *cfg)
{
    for (size_t i = 0; i < cfg->nroutes; i++)
        for (size_t j = 0; j < cfg->routes[i].nlimits; j++) {
            const struct sl_limit *lim = &cfg->routes[i].limits[j];
            const struct sl_rates *r = lim->rates;
            if (!r)
                continue;
            printf("rates: %s.%s by %s: %zu inline values", cfg->routes[i].name, lim->name,
                   r->by_text, r->ninline);
            if (r->file)
                printf(", %zu from %s", r->nfile, r->file);
            printf("; table %zu bytes\n", sl_rates_bytes(r));
        }
}

static void count_limit(struct sl_rls_limit *lim, void *arg)
{
    (void)lim;
    ++*(size_t *)arg;
}

/* The rate limit service's line: where it listens and what its files hold. */
static void print_rls(const struct sl_config *cfg)
{
    size_t nlimits = 0;
    if (!cfg->rls.enabled)
        return;
    sl_rls_config_each_limit(cfg->rls.files, count_limit, &nlimits);
    size_t nfiles = sl_rls_config_nfiles(cfg->rls.files);
    size_t ndomains = sl_rls_config_ndomains(cfg->rls.files);
    printf("rls: %s, %zu domain%s and %zu limit%s in %zu file%s from %s\n", cfg->rls.listen.text,
           ndomains, ndomains == 1 ? "" : "s", nlimits, nlimits == 1 ? "" : "s", nfiles,
           nfiles == 1 ? "" : "s", cfg->rls.config);
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "explain") == 0)
        return sl_cli_explain(argc - 1, argv + 1);
    if (argc > 1 && strcmp(argv[1], "replay") == 0)
        return sl_cli_replay(argc - 1, argv + 1);

    static const struct option long_options[] = {
        {"version", no_argument, NULL, 'V'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int test_only = 0;
    int opt;

    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":c:th", long_options, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 't':
            test_only = 1;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        case 'V':
            printf("sluice %s\n", SLUICE_VERSION);
            return 0;
        case ':':
            fprintf(stderr, "sluice: option -%c needs an argument\n%s", optopt, usage);
            return EXIT_USAGE;
        default:
            if (optopt)
                fprintf(stderr, "sluice: unknown option -%c\n%s", optopt, usage);
            else
                fprintf(stderr, "sluice: unknown option %s\n%s", argv[optind - 1], usage);
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "sluice: unexpected argument %s\n%s", argv[optind], usage);
        return EXIT_USAGE;
    }
    struct sl_config *cfg = sl_cli_load_config(path);
    if (!cfg)
        return EXIT_CONFIG;
    if (test_only) {
        print_index(cfg->route_index);
        print_rates(cfg);
        print_rls(cfg);
        printf("configuration ok\n");
        sl_cfg_unref(cfg);
        return 0;
    }
    sl_log_set_level(cfg->log_level);
    return sl_server_run(cfg);
}
