/* The `listen` key: one address, or a list of addresses each cleartext or with `tls:`
 * (SPEC section 11), and the TLS block's certificates loaded and checked here, so that a
 * bad file is a configuration error before anything serves with it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../tls/tls_server.h"
#include "loader.h"
#include "sluice/config_parse.h"

void sl_listen_config_deinit(struct sl_listen_config *l)
{
    sl_sockaddr_deinit(&l->addr);
    if (!l->tls)
        return;
    for (size_t i = 0; i < l->tls->ncerts; i++) {
        free(l->tls->certs[i].cert);
        free(l->tls->certs[i].key);
    }
    free(l->tls->certs);
    free(l->tls->client_ca);
    sl_tls_server_free(l->tls->server);
    free(l->tls);
    l->tls = NULL;
}

/* A file the configuration names, resolved as the others are (sl_ld_resolve). */
static void resolve_in_place(struct sl_loader *ld, const yaml_node_t *at, char **path)
{
    char *resolved = sl_ld_resolve(ld, *path);
    if (!resolved) {
        sl_ld_error(ld, at, "", "out of memory");
        return;
    }
    free(*path);
    *path = resolved;
}

static void load_certificates(struct sl_loader *ld, const yaml_node_t *tls, const char *path,
                              struct sl_tls_server_config *t)
{
    static const char *const keys[] = {"cert", "key", NULL};
    char lpath[SL_LD_PATH_MAX], ipath[SL_LD_PATH_MAX];
    yaml_node_t *list = sl_ld_get(ld, tls, "certificates");

    sl_ld_path(lpath, path, "certificates");
    long n = list ? sl_ld_sequence(ld, list, lpath) : 0;
    if (n == 0) {
        sl_ld_error(ld, list ? list : tls, list ? lpath : path,
                    "expected at least one certificate, as {cert: FILE, key: FILE}");
        return;
    }
    if (n < 0 || !(t->certs = calloc((size_t)n, sizeof *t->certs)))
        return;
    for (size_t i = 0; i < (size_t)n; i++) {
        yaml_node_t *item = sl_ld_item(ld, list, i);
        struct sl_tls_certificate *c = &t->certs[t->ncerts];
        sl_ld_path_index(ipath, lpath, i);
        if (!sl_ld_mapping(ld, item, ipath, keys))
            continue;
        bool have_cert = sl_ld_string(ld, item, ipath, "cert", &c->cert);
        bool have_key = sl_ld_string(ld, item, ipath, "key", &c->key);
        if (!have_cert || !have_key || !*c->cert || !*c->key) {
            sl_ld_error(ld, item, ipath, "expected both cert and key, each a PEM file");
            free(c->cert);
            free(c->key);
            *c = (struct sl_tls_certificate){0};
            continue;
        }
        resolve_in_place(ld, item, &c->cert);
        resolve_in_place(ld, item, &c->key);
        t->ncerts++;
    }
}

static struct sl_tls_server_config *load_tls(struct sl_loader *ld, const yaml_node_t *node,
                                             const char *path)
{
    static const char *const keys[] = {"certificates", "min_version", "client_ca", NULL};
    static const char *const versions[] = {"1.2", "1.3", NULL};

    if (!sl_ld_mapping(ld, node, path, keys))
        return NULL;
    struct sl_tls_server_config *t = calloc(1, sizeof *t);
    if (!t) {
        sl_ld_error(ld, node, path, "out of memory");
        return NULL;
    }
    t->min_version = 12;
    load_certificates(ld, node, path, t);
    int v = 0;
    if (sl_ld_enum(ld, node, path, "min_version", versions, &v))
        t->min_version = v == 0 ? 12 : 13;
    if (sl_ld_string(ld, node, path, "client_ca", &t->client_ca) && !*t->client_ca) {
        free(t->client_ca);
        t->client_ca = NULL;
    }
    if (t->client_ca)
        resolve_in_place(ld, node, &t->client_ca);
    return t;
}

/* A list entry: "host:port", or {address, tls}. */
static void load_entry(struct sl_loader *ld, const yaml_node_t *item, const char *ipath,
                       struct sl_listen_config *out)
{
    static const char *const keys[] = {"address", "tls", NULL};
    char tpath[SL_LD_PATH_MAX];

    if (item->type == YAML_SCALAR_NODE) {
        /* sl_ld_sockaddr reads a mapping's key; a bare item is parsed here. */
        const char *text = sl_ld_scalar(ld, item, ipath, "an address");
        if (text && sl_parse_sockaddr(text, &out->addr) < 0)
            sl_ld_error(ld, item, ipath,
                        "expected \"host:port\", \"[ipv6]:port\" or \"unix:/path\", got \"%s\"",
                        text);
        return;
    }
    if (!sl_ld_mapping(ld, item, ipath, keys))
        return;
    if (!sl_ld_sockaddr(ld, item, ipath, "address", &out->addr) && !sl_ld_get(ld, item, "address"))
        sl_ld_error(ld, item, ipath, "required key address is missing");
    yaml_node_t *tls = sl_ld_get(ld, item, "tls");
    sl_ld_path(tpath, ipath, "tls");
    if (tls && !sl_ld_is_null(tls))
        out->tls = load_tls(ld, tls, tpath);
}

/* The SHA-256 of the file's bytes, for reload.watch; all zero when it cannot be read (the
 * certificate check then reports the file). */
static void digest_file(const char *path, uint8_t out[SL_SHA256_LEN])
{
    FILE *f = fopen(path, "rb");
    struct sl_sha256 ctx;
    char buf[4096];
    size_t n;

    memset(out, 0, SL_SHA256_LEN);
    if (!f)
        return;
    sl_sha256_init(&ctx);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        sl_sha256_update(&ctx, buf, n);
    if (!ferror(f))
        sl_sha256_final(&ctx, out);
    fclose(f);
}

/* Every certificate is read now: an expired one, or a key that is not its certificate's,
 * is refused by `sluice -t` and by a reload, naming the file. */
static void build_tls(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      struct sl_tls_server_config *t, bool h2)
{
    char err[512];

    if (t->ncerts == 0)
        return;
    for (size_t i = 0; i < t->ncerts; i++) {
        digest_file(t->certs[i].cert, t->certs[i].cert_digest);
        digest_file(t->certs[i].key, t->certs[i].key_digest);
    }
    if (t->client_ca)
        digest_file(t->client_ca, t->client_ca_digest);
    t->server = sl_tls_server_new(t, h2, err, sizeof err);
    if (!t->server)
        sl_ld_error(ld, node, path, "%s", err);
}

void sl_ld_listen(struct sl_loader *ld, const yaml_node_t *root, struct sl_config *cfg)
{
    char ipath[SL_LD_PATH_MAX];
    yaml_node_t *v = sl_ld_get(ld, root, "listen");

    if (!v || v->type == YAML_SCALAR_NODE) {
        /* The default, or one address: the defaults hold one listener already. */
        if (v)
            sl_ld_sockaddr(ld, root, "", "listen", &cfg->listeners[0].addr);
        return;
    }
    long n = sl_ld_sequence(ld, v, "listen");
    if (n < 0)
        return;
    if (n == 0) {
        sl_ld_error(ld, v, "listen", "expected at least one address");
        return;
    }
    struct sl_listen_config *list = calloc((size_t)n, sizeof *list);
    if (!list) {
        sl_ld_error(ld, v, "listen", "out of memory");
        return;
    }
    for (size_t i = 0; i < cfg->nlisteners; i++)
        sl_listen_config_deinit(&cfg->listeners[i]);
    free(cfg->listeners);
    cfg->listeners = list;
    cfg->nlisteners = (size_t)n;
    for (size_t i = 0; i < (size_t)n; i++) {
        yaml_node_t *item = sl_ld_item(ld, v, i);
        sl_ld_path_index(ipath, "listen", i);
        load_entry(ld, item, ipath, &list[i]);
        for (size_t k = 0; k < i; k++)
            if (sl_sockaddr_same(&list[k].addr, &list[i].addr))
                sl_ld_error(ld, item, ipath, "%s is already listen[%zu]'s address",
                            list[i].addr.text, k);
    }
}

void sl_ld_listen_tls(struct sl_loader *ld, const yaml_node_t *root, struct sl_config *cfg)
{
    char tpath[SL_LD_PATH_MAX], ipath[SL_LD_PATH_MAX];
    yaml_node_t *v = sl_ld_get(ld, root, "listen");

    /* Only a file otherwise sound: a typo elsewhere need not cost a certificate check. */
    if (ld->nerrors || !v || v->type != YAML_SEQUENCE_NODE)
        return;
    for (size_t i = 0; i < cfg->nlisteners; i++) {
        if (!cfg->listeners[i].tls)
            continue;
        sl_ld_path_index(ipath, "listen", i);
        sl_ld_path(tpath, ipath, "tls");
        build_tls(ld, sl_ld_get(ld, sl_ld_item(ld, v, i), "tls"), tpath, cfg->listeners[i].tls,
                  cfg->client.http2);
    }
}
