/* sl_rls_config_load(): the files of `rls.config` (one, or a directory of them) read into
 * one configuration, its lookup tables built, its domains sorted for lookup by name. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "rls_internal.h"

void sl_rls_error(struct sl_rls_errors *errors, const char *file, size_t line, size_t col,
                  const char *fmt, ...)
{
    char msg[1024], head[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line)
        snprintf(head, sizeof head, "%s:%zu:%zu: ", file, line, col);
    else
        snprintf(head, sizeof head, "%s: ", file);
    /* The files' own text is quoted in messages: a line break in it must not split one
     * problem over two lines or forge another. */
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20 || *c == 0x7f)
            *c = '?';
    size_t need = strlen(head) + strlen(msg) + 2;
    errors->count++;
    if (errors->len + need > errors->cap) {
        size_t cap = errors->cap ? errors->cap * 2 : 1024;
        while (cap < errors->len + need)
            cap *= 2;
        char *bigger = realloc(errors->text, cap);
        if (!bigger) {
            errors->oom = true;
            return;
        }
        errors->text = bigger;
        errors->cap = cap;
    }
    errors->len += (size_t)sprintf(errors->text + errors->len, "%s%s\n", head, msg);
}

static int add_file(struct sl_rls_config *cfg, const char *name)
{
    char **files = realloc(cfg->files, (cfg->nfiles + 1) * sizeof *files);

    if (!files)
        return -1;
    cfg->files = files;
    if (!(files[cfg->nfiles] = strdup(name)))
        return -1;
    cfg->nfiles++;
    return 0;
}

/* ratelimit reads RUNTIME_ROOT/.../config/ *.yaml; .yml is taken too. Dot files are left:
 * a Kubernetes ConfigMap volume keeps its own entries (..data) there. */
static int wanted(const struct dirent *e)
{
    size_t len = strlen(e->d_name);

    if (e->d_name[0] == '.')
        return 0;
    return (len > 5 && strcmp(e->d_name + len - 5, ".yaml") == 0) ||
           (len > 4 && strcmp(e->d_name + len - 4, ".yml") == 0);
}

static int list_directory(struct sl_rls_config *cfg, const char *dir, struct sl_rls_errors *errors)
{
    struct dirent **names = NULL;
    int n = scandir(dir, &names, wanted, alphasort), rc = 0;

    if (n < 0) {
        sl_rls_error(errors, dir, 0, 0, "cannot read the directory: %s", strerror(errno));
        return -1;
    }
    for (int i = 0; i < n; i++) {
        char *path = NULL;
        struct stat st;
        if (rc == 0 && asprintf(&path, "%s/%s", dir, names[i]->d_name) < 0) {
            path = NULL; /* asprintf() leaves it undefined */
            rc = -1;
        }
        /* stat() follows the links a ConfigMap's files are. */
        if (rc == 0 && stat(path, &st) == 0 && S_ISREG(st.st_mode) && add_file(cfg, path) < 0)
            rc = -1;
        free(path);
        free(names[i]);
    }
    free(names);
    if (rc < 0)
        sl_rls_error(errors, dir, 0, 0, "out of memory");
    return rc;
}

static int by_name(const void *a, const void *b)
{
    const struct sl_rls_domain *x = *(const struct sl_rls_domain *const *)a;
    const struct sl_rls_domain *y = *(const struct sl_rls_domain *const *)b;

    return strcmp(x->root.key, y->root.key);
}

struct sl_rls_config *sl_rls_config_load(const char *path, bool merge_domains, char **errors)
{
    struct sl_rls_errors errs = {0};
    struct sl_rls_config *cfg = calloc(1, sizeof *cfg);
    struct stat st;

    *errors = NULL;
    if (!cfg) {
        sl_rls_error(&errs, path, 0, 0, "out of memory");
        goto done;
    }
    if (stat(path, &st) < 0) {
        sl_rls_error(&errs, path, 0, 0, "cannot open: %s", strerror(errno));
        goto done;
    }
    if (S_ISDIR(st.st_mode) ? list_directory(cfg, path, &errs) < 0 : add_file(cfg, path) < 0) {
        if (!errs.count)
            sl_rls_error(&errs, path, 0, 0, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < cfg->nfiles; i++)
        sl_rls_load_file(cfg, cfg->files[i], merge_domains, &errs);
    if (errs.count)
        goto done;
    for (size_t i = 0; i < cfg->ndomains; i++)
        if (sl_rls_node_index(&cfg->domains[i]->root) < 0) {
            sl_rls_error(&errs, path, 0, 0, "out of memory");
            goto done;
        }
    qsort(cfg->domains, cfg->ndomains, sizeof *cfg->domains, by_name);

done:
    if (!errs.count)
        return cfg;
    sl_rls_config_free(cfg);
    *errors = errs.oom ? NULL : errs.text;
    if (errs.oom)
        free(errs.text);
    return NULL;
}

void sl_rls_config_free(struct sl_rls_config *cfg)
{
    if (!cfg)
        return;
    for (size_t i = 0; i < cfg->ndomains; i++)
        sl_rls_domain_free(cfg->domains[i]);
    free(cfg->domains);
    for (size_t i = 0; i < cfg->nfiles; i++)
        free(cfg->files[i]);
    free(cfg->files);
    free(cfg);
}

size_t sl_rls_config_nfiles(const struct sl_rls_config *cfg)
{
    return cfg->nfiles;
}

const char *sl_rls_config_file(const struct sl_rls_config *cfg, size_t i)
{
    return cfg->files[i];
}

size_t sl_rls_config_ndomains(const struct sl_rls_config *cfg)
{
    return cfg->ndomains;
}

const struct sl_rls_domain *sl_rls_config_domain(const struct sl_rls_config *cfg, size_t i)
{
    return i < cfg->ndomains ? cfg->domains[i] : NULL;
}

const char *sl_rls_domain_name(const struct sl_rls_domain *dom)
{
    return dom->root.key;
}

const struct sl_rls_domain *sl_rls_domain_find(const struct sl_rls_config *cfg, const char *name,
                                               size_t len)
{
    size_t lo = 0, hi = cfg->ndomains;

    /* Sorted by strcmp; a name holding a NUL matches none. */
    if (memchr(name, '\0', len))
        return NULL;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        const char *key = cfg->domains[mid]->root.key;
        int c = strncmp(key, name, len);
        if (c == 0)
            c = key[len] != '\0';
        if (c == 0)
            return cfg->domains[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}
