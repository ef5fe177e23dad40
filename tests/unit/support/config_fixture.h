/* A temporary file for sl_cfg_load() to read, and the checks the configuration suites
 * share: a load that must succeed, and the exact error text of one that must fail (with
 * the temporary path shown as "t.yaml"). */
#ifndef SLUICE_TEST_CONFIG_FIXTURE_H
#define SLUICE_TEST_CONFIG_FIXTURE_H

#include <check.h>
#include <netinet/in.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "run_suite.h"
#include "sluice/config.h"
#include "sluice/limit.h"

static char dir[] = "/tmp/sluice-config-test-XXXXXX";
static char path[sizeof dir + 16];

static inline void write_file(const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fputs(text, f) >= 0, 1);
    ck_assert_int_eq(fclose(f), 0);
}

static inline struct sl_config *load_ok(const char *yaml)
{
    char *errors = NULL;
    write_file(yaml);
    struct sl_config *cfg = sl_cfg_load(path, &errors);
    ck_assert_msg(cfg != NULL, "load failed: %s", errors ? errors : "(no message)");
    ck_assert_ptr_null(errors);
    return cfg;
}

/* The error text of a failing load, with the temporary path shown as "t.yaml". */
static inline char *load_errors(const char *yaml)
{
    char *errors = NULL;
    write_file(yaml);
    struct sl_config *cfg = sl_cfg_load(path, &errors);
    ck_assert_ptr_null(cfg);
    ck_assert_ptr_nonnull(errors);
    char *out = calloc(1, strlen(errors) + 1);
    ck_assert_ptr_nonnull(out);
    size_t plen = strlen(path), o = 0;
    for (const char *p = errors; *p;) {
        if (strncmp(p, path, plen) == 0) {
            memcpy(out + o, "t.yaml", 6);
            o += 6;
            p += plen;
        } else {
            out[o++] = *p++;
        }
    }
    free(errors);
    return out;
}

#define ASSERT_ERRORS(yaml, expected)                                                              \
    do {                                                                                           \
        char *got_ = load_errors(yaml);                                                            \
        ck_assert_str_eq(got_, expected);                                                          \
        free(got_);                                                                                \
    } while (0)

#define UPSTREAM "upstream:\n  url: http://127.0.0.1:3000\n"

/* Runs `s` with the temporary directory in place, and removes it afterwards. */
static inline int run_config_suite(Suite *s)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    snprintf(path, sizeof path, "%s/t.yaml", dir);
    int rc = run_suite(s);
    unlink(path);
    rmdir(dir);
    return rc;
}

#endif
