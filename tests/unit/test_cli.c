/* The sluice command line: -t, -c, $SLUICE_CONFIG, -h, --version and usage errors. Every
 * run that reads a configuration uses -t, so no proxy is ever started. */
#include <check.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/sluice-cli-test-XXXXXX";

struct result {
    int status; /* exit status, or -1 when the process did not exit normally */
    char out[16384];
    char err[16384];
};

static void slurp(const char *file, char *buf, size_t size)
{
    FILE *f = fopen(file, "r");
    ck_assert_ptr_nonnull(f);
    size_t n = fread(buf, 1, size - 1, f);
    buf[n] = '\0';
    fclose(f);
}

/* Runs sluice with `args` (NULL-terminated), SLUICE_CONFIG set to `config_env` or unset. */
static void run(const char *const *args, const char *config_env, struct result *r)
{
    char out[64], err[64];
    snprintf(out, sizeof out, "%s/out", dir);
    snprintf(err, sizeof err, "%s/err", dir);
    const char *argv[16] = {SLUICE_BINARY};
    for (size_t i = 0; args[i] && i < 14; i++)
        argv[i + 1] = args[i];

    pid_t pid = fork();
    ck_assert_int_ne(pid, -1);
    if (pid == 0) {
        int fo = open(out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        int fe = open(err, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fo < 0 || fe < 0 || dup2(fo, 1) < 0 || dup2(fe, 2) < 0)
            _exit(127);
        if (config_env)
            setenv("SLUICE_CONFIG", config_env, 1);
        else
            unsetenv("SLUICE_CONFIG");
        /* The shipped files take these from the environment: use their defaults. */
        unsetenv("SLUICE_LISTEN");
        unsetenv("SLUICE_ADMIN");
        unsetenv("UPSTREAM_URL");
        unsetenv("REDIS_URL");
        execv(SLUICE_BINARY, (char *const *)argv);
        _exit(127);
    }
    int status;
    ck_assert_int_eq(waitpid(pid, &status, 0), pid);
    r->status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    slurp(out, r->out, sizeof r->out);
    slurp(err, r->err, sizeof r->err);
}

static const char *write_bad_config(void)
{
    static char path[64];
    snprintf(path, sizeof path, "%s/bad.yaml", dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("upstream:\n  url: http://127.0.0.1:3000\n  timeout: soon\nroutes: []\n", f);
    fclose(f);
    return path;
}

/* True when `out` is the route index line of -t with these counts, the regex matcher's line
 * for `regex_routes` routes, any rates tables' lines, then "configuration ok". Sizes in bytes
 * depend on the platform and the matcher on the build, so they are only checked for their form. */
static bool checked_ok(const char *out, const char *counts, unsigned regex_routes)
{
    size_t n = strlen(counts);
    char *end, regex[64];

    if (strncmp(out, counts, n) != 0 || strncmp(out + n, "; index ", 8) != 0)
        return false;
    unsigned long bytes = strtoul(out + n + 8, &end, 10);
    if (bytes == 0 || strncmp(end, " bytes\n", 7) != 0)
        return false;
    const char *line = end + 7, *eol = strchr(line, '\n');
    snprintf(regex, sizeof regex, "regex: %u routes, ", regex_routes);
    if (!eol || strncmp(line, regex, strlen(regex)) != 0)
        return false;
    line += strlen(regex);
    bool hs = strncmp(line, "hyperscan matcher: ", 19) == 0 &&
              strstr(line, " bytes per worker (") && strstr(line, " workers)") < eol;
    bool fallback = strncmp(line, "fallback matcher (", 18) == 0;
    /* Then a line for each limit with per-consumer rates. */
    while (eol && strncmp(eol + 1, "rates: ", 7) == 0)
        eol = strchr(eol + 1, '\n');
    /* Then the rate limit service's, with an rls block. */
    if (eol && strncmp(eol + 1, "rls: ", 5) == 0)
        eol = strchr(eol + 1, '\n');
    return (hs || fallback) && eol && strcmp(eol, "\nconfiguration ok\n") == 0;
}

START_TEST(check_shipped_config)
{
    struct result r;
    run((const char *[]){"-t", "-c", SLUICE_SOURCE_DIR "/conf/sluice.yaml", NULL}, NULL, &r);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(
        checked_ok(r.out, "routes: 1 path, 4 path_prefix, 1 path_regex, 1 without a path", 1), "%s",
        r.out);
    ck_assert_str_eq(r.err, "");

    run((const char *[]){"-t", "-c", SLUICE_SOURCE_DIR "/examples/demo.yaml", NULL}, NULL, &r);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(
        checked_ok(r.out, "routes: 0 path, 1 path_prefix, 0 path_regex, 0 without a path", 0), "%s",
        r.out);
}
END_TEST

START_TEST(check_bad_config)
{
    struct result r;
    const char *bad = write_bad_config();
    char expected[512];
    snprintf(expected, sizeof expected,
             "sluice: %s:3:12: upstream.timeout: expected a duration such as \"250ms\", \"2s\", "
             "\"5m\", \"1h\" or \"1d\", got \"soon\"\n",
             bad);
    run((const char *[]){"-t", "-c", bad, NULL}, NULL, &r);
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.out, "");
    ck_assert_str_eq(r.err, expected);
}
END_TEST

START_TEST(check_missing_file)
{
    struct result r;
    run((const char *[]){"-t", "-c", "/nonexistent/sluice.yaml", NULL}, NULL, &r);
    ck_assert_int_eq(r.status, 1);
    ck_assert_str_eq(r.err,
                     "sluice: /nonexistent/sluice.yaml: cannot open: No such file or directory\n");
}
END_TEST

START_TEST(help)
{
    struct result r;
    run((const char *[]){"-h", NULL}, NULL, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_msg(strncmp(r.out, "usage: sluice [-c FILE] [-t] [-h] [--version]\n", 46) == 0, "%s",
                  r.out);
    ck_assert_str_eq(r.err, "");
}
END_TEST

START_TEST(version)
{
    struct result r;
    run((const char *[]){"--version", NULL}, NULL, &r);
    ck_assert_int_eq(r.status, 0);
    ck_assert_str_eq(r.out, "sluice " SLUICE_VERSION "\n");
}
END_TEST

START_TEST(unknown_option)
{
    struct result r;
    run((const char *[]){"-x", NULL}, NULL, &r);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strncmp(r.err, "sluice: unknown option -x\nusage:", 32) == 0, "%s", r.err);
    ck_assert_str_eq(r.out, "");

    run((const char *[]){"--bogus", NULL}, NULL, &r);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strncmp(r.err, "sluice: unknown option --bogus\n", 31) == 0, "%s", r.err);
}
END_TEST

START_TEST(c_without_argument)
{
    struct result r;
    run((const char *[]){"-t", "-c", NULL}, NULL, &r);
    ck_assert_int_eq(r.status, 2);
    ck_assert_msg(strncmp(r.err, "sluice: option -c needs an argument\n", 36) == 0, "%s", r.err);
}
END_TEST

START_TEST(config_from_environment)
{
    struct result r;
    const char *bad = write_bad_config();
    run((const char *[]){"-t", NULL}, bad, &r);
    ck_assert_int_eq(r.status, 1);
    ck_assert_msg(strstr(r.err, bad) && strstr(r.err, ":3:12: upstream.timeout:"), "%s", r.err);

    run((const char *[]){"-t", NULL}, SLUICE_SOURCE_DIR "/conf/sluice.yaml", &r);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(strstr(r.out, "\nconfiguration ok\n"), "%s", r.out);

    /* -c wins over the environment. */
    run((const char *[]){"-t", "-c", SLUICE_SOURCE_DIR "/conf/sluice.yaml", NULL}, bad, &r);
    ck_assert_int_eq(r.status, 0);
}
END_TEST

/* -t reads the rls files too, and says what they hold. */
START_TEST(check_rls_files)
{
    char conf[96], rl[96];
    snprintf(rl, sizeof rl, "%s/edge.yaml", dir);
    FILE *f = fopen(rl, "w");
    ck_assert_ptr_nonnull(f);
    fputs("domain: edge\ndescriptors:\n  - key: a\n    rate_limit: {unit: second, "
          "requests_per_unit: 1}\n  - key: b\n    rate_limit: {unlimited: true}\n",
          f);
    fclose(f);
    snprintf(conf, sizeof conf, "%s/rls.yaml", dir);
    f = fopen(conf, "w");
    ck_assert_ptr_nonnull(f);
    fputs("upstream:\n  url: http://127.0.0.1:3000\nrls:\n  config: edge.yaml\nroutes:\n"
          "  - name: r\n    match: {path: /}\n",
          f);
    fclose(f);
    struct result r;
    run((const char *[]){"-t", "-c", conf, NULL}, NULL, &r);
    ck_assert_msg(r.status == 0, "exit %d: %s", r.status, r.err);
    ck_assert_msg(
        checked_ok(r.out, "routes: 1 path, 0 path_prefix, 0 path_regex, 0 without a path", 0), "%s",
        r.out);
    char line[256];
    snprintf(line, sizeof line, "\nrls: 127.0.0.1:8081, 1 domain and 2 limits in 1 file from %s\n",
             rl);
    ck_assert_msg(strstr(r.out, line), "%s", r.out);
    unlink(rl);
    unlink(conf);
}
END_TEST

static Suite *suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, check_shipped_config);
    tcase_add_test(tc, check_bad_config);
    tcase_add_test(tc, check_missing_file);
    tcase_add_test(tc, help);
    tcase_add_test(tc, version);
    tcase_add_test(tc, unknown_option);
    tcase_add_test(tc, c_without_argument);
    tcase_add_test(tc, config_from_environment);
    tcase_add_test(tc, check_rls_files);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return EXIT_FAILURE;
    }
    SRunner *sr = srunner_create(suite());
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    char file[64];
    const char *names[] = {"out", "err", "bad.yaml"};
    for (size_t i = 0; i < 3; i++) {
        snprintf(file, sizeof file, "%s/%s", dir, names[i]);
        unlink(file);
    }
    rmdir(dir);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
