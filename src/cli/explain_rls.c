/* `sluice explain [-c FILE] --rls DOMAIN key=value,...`: which limit of the rate limit
 * service's files one descriptor matches, and why, by the lookup the service runs
 * (sl_rls_walk, the steps of sl_rls_match): each entry's match (key and value, a wildcard,
 * the key alone) or the first that matched nothing, then the limit with where it is written,
 * its rate, algorithm, modes and replaces, and the key its counter is held under. No store is
 * touched. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "explain.h"
#include "sluice/cli.h"
#include "sluice/limit.h"
#include "sluice/rls_config.h"
#include "store_key.h"

#define MAX_ENTRIES 64

/* "k=v,k=v" into entries pointing into `text` (modified); -1 when malformed. */
static long split(char *text, struct sl_rls_entry *entries)
{
    long n = 0;
    for (char *tok = strtok(text, ","); tok; tok = strtok(NULL, ",")) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || n == MAX_ENTRIES)
            return -1;
        *eq = '\0';
        entries[n++] = (struct sl_rls_entry){tok, strlen(tok), eq + 1, strlen(eq + 1)};
    }
    return n;
}

static const char *how(const struct sl_rls_node *node)
{
    const char *v = sl_rls_node_value(node);
    if (!*v)
        return "the key alone (no entry has this value)";
    if (strchr(v, '*'))
        return sl_rls_node_shares(node) ? "a wildcard value, sharing one counter (share_threshold)"
                                        : "a wildcard value";
    return "key and value";
}

static void print_limit(const struct sl_config *cfg, const struct sl_rls_limit *l,
                        const struct sl_rls_entry *entries, size_t n,
                        const struct sl_rls_node *const *path)
{
    printf("limit: %s\n", l->full_key);
    printf("  written at %s:%zu:%zu\n", l->file, l->line, l->column);
    if (l->name[0])
        printf("  name: %s\n", l->name);
    if (l->unlimited) {
        printf("  unlimited: answered OK with limit_remaining 4294967295, never counted\n");
        return;
    }
    printf("  rate: %u a %s, %s", l->requests_per_unit, sl_rls_unit_name(l->unit),
           l->lim.alg->name);
    if (l->lim.alg->has_burst)
        printf(", burst %llu", (unsigned long long)l->lim.burst);
    printf("\n");
    if (l->shadow_mode)
        printf("  shadow_mode: counted, always answered OK\n");
    if (l->quota_mode)
        printf("  quota_mode: OVER_LIMIT overall only when every quota descriptor is\n");
    if (l->nreplaces)
        printf("  replaces %zu limit%s: a matched limit it names is neither checked nor "
               "counted\n",
               l->nreplaces, l->nreplaces == 1 ? "" : "s");
    if (l->requests_per_unit == 0)
        printf("  requests_per_unit 0: every hit is over the limit\n");

    size_t len = sl_rls_key_value(entries, n, path, NULL, 0);
    char *value = malloc(len + 1);
    if (!value)
        return;
    sl_rls_key_value(entries, n, path, value, len);
    value[len] = '\0';
    if (cfg->redis.enabled) {
        size_t klen;
        bool digest;
        char *key = sl_cli_redis_key(cfg, &l->lim, value, len, &klen, &digest);
        if (key)
            printf("  store: redis, key %s%s\n", key, digest ? " (the value's SHA-256)" : "");
        free(key);
    } else {
        printf("  store: memory, key %s / %s / %s\n", l->lim.route->name, l->full_key, value);
    }
    free(value);
}

int sl_cli_explain_rls(const char *config, const char *domain, const char *descriptor)
{
    struct sl_rls_entry entries[MAX_ENTRIES];
    const struct sl_rls_node *path[MAX_ENTRIES];
    char *text = strdup(descriptor);
    long n = text ? split(text, entries) : -1;

    if (n <= 0) {
        fprintf(stderr,
                "sluice explain: expected a descriptor key=value,key=value (at most %d "
                "entries), got \"%s\"\n",
                MAX_ENTRIES, descriptor);
        free(text);
        return SL_EXIT_USAGE;
    }
    struct sl_config *cfg = sl_cli_load_config(config);
    if (!cfg) {
        free(text);
        return SL_EXIT_CONFIG;
    }
    const struct sl_rls_config *files = cfg->rls.files;
    const struct sl_rls_domain *dom =
        files ? sl_rls_domain_find(files, domain, strlen(domain)) : NULL;
    printf("domain: %s\n", domain);
    if (!cfg->rls.enabled) {
        printf("  the configuration has no rls block: the service is off\n");
        goto done;
    }
    if (!dom) {
        printf("  not in %s: every descriptor is answered OK with no limit\n", cfg->rls.config);
        goto done;
    }
    size_t matched = sl_rls_walk(dom, entries, (size_t)n, path);
    for (size_t i = 0; i < (size_t)n; i++) {
        printf("entry %zu: %.*s=%.*s: ", i + 1, (int)entries[i].key_len, entries[i].key,
               (int)entries[i].value_len, entries[i].value);
        if (i < matched)
            printf("matched by %s\n", how(path[i]));
        else if (i == matched)
            printf("no entry at this depth has key %.*s with this value, a wildcard matching "
                   "it, or the key alone\n",
                   (int)entries[i].key_len, entries[i].key);
        else
            printf("not reached\n");
    }
    const struct sl_rls_limit *l = matched == (size_t)n ? sl_rls_node_limit(path[n - 1]) : NULL;
    if (matched < (size_t)n)
        printf("no limit: the descriptor goes deeper than the files, or differs at entry %zu; "
               "answered OK with no limit\n",
               matched + 1);
    else if (!l)
        printf("no limit: the entry matched has no rate_limit (a descriptor must end where one "
               "is written); answered OK with no limit\n");
    else
        print_limit(cfg, l, entries, (size_t)n, path);
done:
    fflush(stdout);
    sl_cfg_unref(cfg);
    free(text);
    return 0;
}
