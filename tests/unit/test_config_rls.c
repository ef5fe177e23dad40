/* The rls block of the configuration (SPEC.md sections 2 and 12): its defaults, the files
 * it names read relative to the configuration file, their problems reported at their own
 * file, line and column among the configuration's, and the block's own mistakes. */
#include "sluice/rls_config.h"
#include "support/config_fixture.h"

#include <sys/stat.h>

static char rl_dir[sizeof dir + 16], rl_file[sizeof dir + 32];

static void write_rls(const char *text)
{
    snprintf(rl_dir, sizeof rl_dir, "%s/rl", dir);
    snprintf(rl_file, sizeof rl_file, "%s/edge.yaml", rl_dir);
    mkdir(rl_dir, 0700);
    FILE *f = fopen(rl_file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

static void remove_rls(void)
{
    unlink(rl_file);
    rmdir(rl_dir);
}

START_TEST(defaults_and_relative_files)
{
    write_rls("domain: edge\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, "
              "requests_per_unit: 1}\n");
    struct sl_config *cfg = load_ok(UPSTREAM "rls:\n  config: rl\nroutes: []\n");
    ck_assert(cfg->rls.enabled);
    ck_assert_str_eq(cfg->rls.listen.text, "127.0.0.1:8081");
    ck_assert_str_eq(cfg->rls.config, rl_dir);
    ck_assert(!cfg->rls.response_headers);
    ck_assert(!cfg->rls.shadow_mode);
    ck_assert_ptr_nonnull(cfg->rls.files);
    ck_assert_uint_eq(sl_rls_config_ndomains(cfg->rls.files), 1);
    sl_cfg_unref(cfg);

    cfg = load_ok(UPSTREAM "rls:\n  listen: \"127.0.0.1:9100\"\n  config: rl\n"
                           "  response_headers: true\n  shadow_mode: true\nroutes: []\n");
    ck_assert_str_eq(cfg->rls.listen.text, "127.0.0.1:9100");
    ck_assert(cfg->rls.response_headers && cfg->rls.shadow_mode);
    sl_cfg_unref(cfg);

    cfg = load_ok(UPSTREAM "routes: []\n");
    ck_assert(!cfg->rls.enabled);
    ck_assert_ptr_null(cfg->rls.files);
    sl_cfg_unref(cfg);
    remove_rls();
}
END_TEST

/* A bad ratelimit file fails the configuration with the file's own position. */
START_TEST(file_problems_are_configuration_errors)
{
    write_rls("domain: edge\ndescriptors:\n  - key: a\n    rate_limit: {unit: fortnight, "
              "requests_per_unit: 1}\n");
    char *got = load_errors(UPSTREAM "rls:\n  config: rl\nroutes: []\n");
    char want[256];
    snprintf(want, sizeof want, "%s:4:24: descriptors[0].rate_limit.unit: invalid rate limit unit",
             rl_file);
    ck_assert_msg(strstr(got, want) != NULL, "%s", got);
    free(got);
    remove_rls();
}
END_TEST

START_TEST(block_mistakes)
{
    ASSERT_ERRORS(UPSTREAM "rls:\n  listen: \"127.0.0.1:9100\"\nroutes: []\n",
                  "t.yaml:4:3: rls.config: required key is missing; expected envoyproxy/"
                  "ratelimit's configuration files: a directory or one file, such as "
                  "/etc/ratelimit/config\n");
    char *got = load_errors(UPSTREAM "rls:\n  config: absent\n  colour: blue\nroutes: []\n");
    ck_assert_msg(strstr(got, "t.yaml:5:3: rls.colour: unknown key") != NULL, "%s", got);
    ck_assert_msg(strstr(got, "absent") != NULL, "%s", got);
    free(got);
    got = load_errors("listen: \"127.0.0.1:9100\"\n" UPSTREAM
                      "rls:\n  listen: \"127.0.0.1:9100\"\n  config: rl\nroutes: []\n");
    ck_assert_msg(strstr(got, "rls.listen: expected an address of its own") != NULL, "%s", got);
    free(got);
    got = load_errors(UPSTREAM "rls:\n  listen: unix:/tmp/rls.sock\n  config: rl\nroutes: []\n");
    ck_assert_msg(strstr(got, "rls.listen: expected host:port or [v6]:port") != NULL, "%s", got);
    free(got);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("config_rls");
    TCase *tc = tcase_create("rls");
    tcase_add_test(tc, defaults_and_relative_files);
    tcase_add_test(tc, file_problems_are_configuration_errors);
    tcase_add_test(tc, block_mistakes);
    suite_add_tcase(s, tc);
    return run_config_suite(s);
}
