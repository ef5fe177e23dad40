/* Loading envoyproxy/ratelimit configuration files from tests/unit/rls/ and looking up
 * descriptors written as "key=value,key=value" (a key with no '=' has an empty value). */
#ifndef SLUICE_TEST_RLS_FIXTURE_H
#define SLUICE_TEST_RLS_FIXTURE_H

#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sluice/rls_config.h"

#define RLS_DIR SLUICE_SOURCE_DIR "/tests/unit/rls"

static inline struct sl_rls_config *rls_load(const char *path, bool merge)
{
    char *errors = NULL;
    struct sl_rls_config *cfg = sl_rls_config_load(path, merge, &errors);

    ck_assert_msg(cfg != NULL, "%s did not load:\n%s", path, errors ? errors : "(no text)");
    free(errors);
    return cfg;
}

static inline struct sl_rls_config *rls_load_fixture(const char *name)
{
    char path[512];

    snprintf(path, sizeof path, "%s/%s", RLS_DIR, name);
    return rls_load(path, false);
}

/* The errors loading `path` gives; fails if it loads. The caller frees them. */
static inline char *rls_errors(const char *path, bool merge)
{
    char *errors = NULL;
    struct sl_rls_config *cfg = sl_rls_config_load(path, merge, &errors);

    if (cfg)
        sl_rls_config_free(cfg);
    ck_assert_msg(cfg == NULL, "%s loaded", path);
    ck_assert_ptr_nonnull(errors);
    return errors;
}

/* Asserts that fixture `name` fails to load with exactly `expected`, where every line is
 * "<name>:..." and <name> stands for the fixture's path. */
#define ASSERT_RLS_ERRORS(name, expected)                                                          \
    do {                                                                                           \
        char *got_ = rls_errors(RLS_DIR "/" name, false);                                          \
        ck_assert_str_eq(got_, expected);                                                          \
        free(got_);                                                                                \
    } while (0)

/* A directory under /tmp holding links named links[i] to the fixtures files[i]; the caller
 * removes it with rls_dir_remove(). */
static inline void rls_dir_make(char dir[64], const char *const *links, const char *const *files)
{
    char from[512], to[512];

    strcpy(dir, "/tmp/sluice-rls-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(dir));
    for (size_t i = 0; links[i]; i++) {
        snprintf(to, sizeof to, "%s/%s", RLS_DIR, files[i]);
        snprintf(from, sizeof from, "%s/%s", dir, links[i]);
        ck_assert_int_eq(symlink(to, from), 0);
    }
}

static inline void rls_dir_remove(const char *dir, const char *const *links)
{
    char path[512];

    for (size_t i = 0; links[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, links[i]);
        unlink(path);
    }
    rmdir(dir);
}

#define RLS_MAX_ENTRIES 8

/* The limit "k=v,k=v" matches in `domain` of `cfg`, or NULL; `path`, when not NULL, gets
 * the matched nodes. */
static inline const struct sl_rls_limit *rls_get(const struct sl_rls_config *cfg,
                                                 const char *domain, const char *desc,
                                                 const struct sl_rls_node **path)
{
    static char buf[512];
    struct sl_rls_entry entries[RLS_MAX_ENTRIES];
    size_t n = 0;

    snprintf(buf, sizeof buf, "%s", desc);
    for (char *save = NULL, *tok = strtok_r(buf, ",", &save); tok && n < RLS_MAX_ENTRIES;
         tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '=');
        const char *value = eq ? eq + 1 : "";
        if (eq)
            *eq = '\0';
        entries[n++] = (struct sl_rls_entry){tok, strlen(tok), value, strlen(value)};
    }
    return sl_rls_match(sl_rls_domain_find(cfg, domain, strlen(domain)), entries, n, path);
}

/* Asserts the limit has `rpu` per `unit`, and returns it. */
static inline const struct sl_rls_limit *rls_expect(const struct sl_rls_limit *lim, uint32_t rpu,
                                                    enum sl_rls_unit unit)
{
    ck_assert_ptr_nonnull(lim);
    ck_assert_uint_eq(lim->requests_per_unit, rpu);
    ck_assert_int_eq(lim->unit, unit);
    return lim;
}

#endif
