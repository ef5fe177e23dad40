/* A TLS client's mapping, {ca, verify, server_name, cert, key} (redis.tls, upstream.tls),
 * and the files it names, read once here so that `sluice -t` and a reload report a missing
 * or unreadable file, a file holding no PEM certificate or key, or a certificate that is not
 * its key's, naming the file. The connections read them again into their SSL_CTX
 * (src/tls/client.c). An empty string is the same as the key left out. */
#include <errno.h>
#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loader.h"

void sl_tls_client_config_deinit(struct sl_tls_client_config *c)
{
    free(c->ca);
    free(c->server_name);
    free(c->cert);
    free(c->key);
    *c = (struct sl_tls_client_config){.verify = true};
}

static int copy_str(char **dst, const char *src)
{
    *dst = NULL;
    return src && !(*dst = strdup(src)) ? -1 : 0;
}

int sl_tls_client_config_copy(struct sl_tls_client_config *dst,
                              const struct sl_tls_client_config *src)
{
    *dst = (struct sl_tls_client_config){.enabled = src->enabled, .verify = src->verify};
    if (copy_str(&dst->ca, src->ca) || copy_str(&dst->server_name, src->server_name) ||
        copy_str(&dst->cert, src->cert) || copy_str(&dst->key, src->key)) {
        sl_tls_client_config_deinit(dst);
        return -1;
    }
    return 0;
}

/* `path`.`key` as a string, NULL when left out or empty; with `file`, resolved against the
 * configuration file's directory (sl_ld_resolve). */
static void load_path(struct sl_loader *ld, const yaml_node_t *map, const char *path,
                      const char *key, char **out, bool file)
{
    if (!sl_ld_string(ld, map, path, key, out))
        return;
    char *kept = NULL;
    if (**out && file) {
        kept = sl_ld_resolve(ld, *out);
        if (!kept)
            sl_ld_error(ld, map, path, "out of memory");
    } else if (**out) {
        return;
    }
    free(*out);
    *out = kept;
}

/* PEM files past this are not certificates or keys (a system CA bundle is about 200 KiB). */
#define PEM_MAX (16u << 20)

/* Opens `file` for `vpath`, or reports why it cannot be read. Only a regular file of a
 * sane size: OpenSSL's PEM reader would read /dev/zero or a FIFO for ever. */
static FILE *open_pem(struct sl_loader *ld, const yaml_node_t *v, const char *vpath,
                      const char *file)
{
    struct stat st;
    /* O_NONBLOCK: opening a FIFO would wait for a writer. */
    int fd = open(file, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        sl_ld_error(ld, v, vpath, "cannot read %s: %s", file, strerror(errno));
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > PEM_MAX) {
        sl_ld_error(ld, v, vpath, "expected %s to be a PEM file of at most 16 MiB, got %s", file,
                    S_ISREG(st.st_mode) ? "a larger file" : "something else than a file");
        close(fd);
        return NULL;
    }
    FILE *f = fdopen(fd, "r");
    if (!f) {
        sl_ld_error(ld, v, vpath, "cannot read %s: %s", file, strerror(errno));
        close(fd);
    }
    return f;
}

static void check_ca(struct sl_loader *ld, const yaml_node_t *v, const char *vpath,
                     const char *file)
{
    FILE *f = open_pem(ld, v, vpath, file);
    if (!f)
        return;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    if (!x)
        sl_ld_error(ld, v, vpath, "expected PEM certificates in %s, found none", file);
    X509_free(x);
    fclose(f);
    ERR_clear_error();
}

/* The client certificate and its key: both or neither, readable, and a pair. */
static void check_pair(struct sl_loader *ld, const yaml_node_t *map, const char *path,
                       const struct sl_tls_client_config *c)
{
    char cpath[SL_LD_PATH_MAX], kpath[SL_LD_PATH_MAX];
    const yaml_node_t *cv = sl_ld_get(ld, map, "cert"), *kv = sl_ld_get(ld, map, "key");
    sl_ld_path(cpath, path, "cert");
    sl_ld_path(kpath, path, "key");
    if (!c->cert != !c->key) {
        sl_ld_error(ld,
                    c->cert ? kv ? kv : map
                    : cv    ? cv
                            : map,
                    c->cert ? kpath : cpath,
                    "expected the client certificate's key with the certificate, got %s",
                    c->cert ? "a certificate without a key" : "a key without a certificate");
        return;
    }
    if (!c->cert)
        return;
    X509 *x = NULL;
    EVP_PKEY *k = NULL;
    FILE *f = open_pem(ld, cv, cpath, c->cert);
    if (f) {
        if (!(x = PEM_read_X509(f, NULL, NULL, NULL)))
            sl_ld_error(ld, cv, cpath, "expected a PEM certificate in %s, found none", c->cert);
        fclose(f);
    }
    if ((f = open_pem(ld, kv, kpath, c->key))) {
        if (!(k = PEM_read_PrivateKey(f, NULL, NULL, NULL)))
            sl_ld_error(ld, kv, kpath,
                        "expected a PEM private key (not encrypted) in %s, found "
                        "none",
                        c->key);
        fclose(f);
    }
    if (x && k && X509_check_private_key(x, k) != 1)
        sl_ld_error(ld, kv, kpath, "%s is not the key of the certificate in %s", c->key, c->cert);
    X509_free(x);
    EVP_PKEY_free(k);
    ERR_clear_error();
}

void sl_ld_tls_client(struct sl_loader *ld, const yaml_node_t *node, const char *path,
                      struct sl_tls_client_config *c)
{
    static const char *const keys[] = {"ca", "verify", "server_name", "cert", "key", NULL};
    char vpath[SL_LD_PATH_MAX];

    c->enabled = true;
    if (sl_ld_is_null(node))
        return; /* `tls:` alone: on, with the defaults */
    if (!sl_ld_mapping(ld, node, path, keys))
        return;
    load_path(ld, node, path, "ca", &c->ca, true);
    sl_ld_bool(ld, node, path, "verify", &c->verify);
    load_path(ld, node, path, "server_name", &c->server_name, false);
    load_path(ld, node, path, "cert", &c->cert, true);
    load_path(ld, node, path, "key", &c->key, true);
    if (c->ca) {
        sl_ld_path(vpath, path, "ca");
        check_ca(ld, sl_ld_get(ld, node, "ca"), vpath, c->ca);
    }
    check_pair(ld, node, path, c);
}
