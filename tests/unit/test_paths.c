/* The paths rules: each fold on its own against the spellings applications fold, off by
 * default, and the orders that decide what combined spellings mean. */
#include <check.h>
#include <string.h>

#include "sluice/route.h"
#include "support/run_suite.h"

static const struct sl_path_rules none = {0};
static const struct sl_path_rules strip = {.strip_path_parameters = true};
static const struct sl_path_rules icase = {.case_insensitive = true};
static const struct sl_path_rules slash = {.decode_slash = true};
static const struct sl_path_rules trailing = {.ignore_trailing_slash = true};
static const struct sl_path_rules all = {true, true, true, true};

/* Normalises `target` under `rules`; "<none>" when there is no path. */
static const char *norm(const struct sl_path_rules *rules, const char *target)
{
    static char out[512];
    ssize_t n = sl_path_normalize(rules, target, strlen(target), out, sizeof out);
    if (n < 0)
        return "<none>";
    ck_assert_uint_eq(strlen(out), (size_t)n);
    return out;
}

/* The four spellings that reached an application as /api/login past a limit on it. */
static const char *const spellings[] = {"/api/login;x=1", "/API/login", "/api%2flogin",
                                        "/api/./login/."};

START_TEST(off_by_default_each_spelling_stays_apart)
{
    ck_assert_str_eq(norm(&none, spellings[0]), "/api/login;x=1");
    ck_assert_str_eq(norm(&none, spellings[1]), "/API/login");
    ck_assert_str_eq(norm(&none, spellings[2]), "/api%2Flogin");
    ck_assert_str_eq(norm(&none, spellings[3]), "/api/login/");
    /* A zeroed rule set is the same as none at all. */
    for (size_t i = 0; i < 4; i++) {
        char a[64];
        strcpy(a, norm(NULL, spellings[i]));
        ck_assert_str_eq(norm(&none, spellings[i]), a);
    }
}
END_TEST

START_TEST(each_rule_folds_its_spelling_and_only_it)
{
    const struct sl_path_rules *rule[] = {&strip, &icase, &slash, &trailing};
    for (size_t r = 0; r < 4; r++) {
        for (size_t s = 0; s < 4; s++) {
            char base[64];
            strcpy(base, norm(NULL, spellings[s]));
            const char *got = norm(rule[r], spellings[s]);
            if (r == s)
                ck_assert_msg(strcmp(got, "/api/login") == 0, "rule %zu: %s gave %s", r,
                              spellings[s], got);
            else
                ck_assert_msg(strcmp(got, base) == 0, "rule %zu changed %s to %s", r, spellings[s],
                              got);
        }
        ck_assert_str_eq(norm(rule[r], "/api/login"), "/api/login");
    }
}
END_TEST

START_TEST(path_parameters)
{
    ck_assert_str_eq(norm(&strip, "/api;v=2/login;jsessionid=AB12"), "/api/login");
    ck_assert_str_eq(norm(&strip, "/api/login;"), "/api/login");
    ck_assert_str_eq(norm(&strip, "/api/;x/login"), "/api/login"); /* empty segment merged */
    ck_assert_str_eq(norm(&strip, "/;x"), "/");
    ck_assert_str_eq(norm(&strip, "/api/login;a;b=c/"), "/api/login/");
    /* Before the dots: Tomcat reads "..;" as "..", so this names /admin. */
    ck_assert_str_eq(norm(&strip, "/api/..;/admin"), "/admin");
    ck_assert_str_eq(norm(&none, "/api/..;/admin"), "/api/..;/admin");
    ck_assert_str_eq(norm(&strip, "/api/.;x/login"), "/api/login");
    /* Only a literal ";" starts a parameter: "%3B" is data to these applications. */
    ck_assert_str_eq(norm(&strip, "/api/login%3bx=1"), "/api/login%3Bx=1");
    /* The query is gone before parameters are looked for. */
    ck_assert_str_eq(norm(&strip, "/api/login?a=1;b=2"), "/api/login");
}
END_TEST

START_TEST(case_folding)
{
    ck_assert_str_eq(norm(&icase, "/Api/LOGIN"), "/api/login");
    /* An encoded letter is decoded first, then folded like any other. */
    ck_assert_str_eq(norm(&icase, "/%41PI/login"), "/api/login");
    /* Escapes keep their upper-case hex digits: one spelling per byte. */
    ck_assert_str_eq(norm(&icase, "/caf%c3%a9"), "/caf%C3%A9");
    ck_assert_str_eq(norm(&icase, "/A%2fB"), "/a%2Fb");
    /* Letters beyond ASCII are bytes: "É" (%C3%89) is not folded to "é" (%C3%A9). */
    ck_assert_str_eq(norm(&icase, "/CAF%C3%89"), "/caf%C3%89");
    /* Not an escape: its characters are ordinary ones. */
    ck_assert_str_eq(norm(&icase, "/A%ZZ"), "/a%zz");
}
END_TEST

START_TEST(encoded_slashes)
{
    ck_assert_str_eq(norm(&slash, "/api%2Flogin"), "/api/login");
    /* A decoded %2F is merged and resolved like a literal slash. */
    ck_assert_str_eq(norm(&slash, "/api%2F%2Flogin"), "/api/login");
    ck_assert_str_eq(norm(&slash, "/api%2f..%2fadmin"), "/admin");
    ck_assert_str_eq(norm(&slash, "/api%2f%2e%2e%2fadmin"), "/admin");
    ck_assert_str_eq(norm(&none, "/api%2f..%2fadmin"), "/api%2F..%2Fadmin");
    ck_assert_str_eq(norm(&slash, "/%2F%2E%2E%2F%2E%2E%2Fetc"), "/etc");
    /* Decoded once only, as the application does: %252F is "%2F" there, not "/". */
    ck_assert_str_eq(norm(&slash, "/api%252flogin"), "/api%252flogin");
    ck_assert_str_eq(norm(&slash, "/api%2"), "/api%2");
}
END_TEST

START_TEST(trailing_slash)
{
    ck_assert_str_eq(norm(&trailing, "/api/login/"), "/api/login");
    ck_assert_str_eq(norm(&trailing, "/api/login//"), "/api/login");
    ck_assert_str_eq(norm(&trailing, "/api/login/.."), "/api");
    /* The root is a path of its own, never empty. */
    ck_assert_str_eq(norm(&trailing, "/"), "/");
    ck_assert_str_eq(norm(&trailing, "//"), "/");
    ck_assert_str_eq(norm(&trailing, "/.."), "/");
    ck_assert_str_eq(norm(&trailing, "http://example.com"), "/");
    ck_assert_str_eq(norm(&trailing, "/?x=/"), "/");
}
END_TEST

START_TEST(rules_combine_in_order)
{
    ck_assert_str_eq(norm(&all, "/API%2F.;x/LOGIN;jsessionid=1/"), "/api/login");
    /* Parameters are cut from the raw path, as Tomcat, Jetty and Spring do, before %2F is
     * decoded: what follows ";" up to a literal "/" is gone, %2F and dots included. */
    const struct sl_path_rules strip_slash = {.strip_path_parameters = true, .decode_slash = true};
    ck_assert_str_eq(norm(&strip_slash, "/api/login;%2F..%2F"), "/api/login");
    ck_assert_str_eq(norm(&slash, "/api/login;%2F..%2F"), "/api/");
    ck_assert_str_eq(norm(&strip_slash, "/api/x;%2F..%2Flogin"), "/api/x");
    /* A trailing slash made by a decoded %2F goes too. */
    const struct sl_path_rules slash_trailing = {.decode_slash = true,
                                                 .ignore_trailing_slash = true};
    ck_assert_str_eq(norm(&slash_trailing, "/api/login%2F"), "/api/login");
    ck_assert_str_eq(norm(&slash_trailing, "/%2F"), "/");
    ck_assert_str_eq(norm(&all, "/;x/%2F/.;y/"), "/");
}
END_TEST

START_TEST(never_longer_than_the_base)
{
    /* The len + 2 bound of the header still holds with every rule on. */
    char out[32];
    const char *t = "/0123456789abcde";
    ck_assert_int_eq(sl_path_normalize(&all, t, strlen(t), out, strlen(t) + 2), 16);
    ck_assert_int_eq(sl_path_normalize(&all, t, strlen(t), out, strlen(t) + 1), -1);
    ck_assert_int_eq(sl_path_normalize(&all, "/a\0b", 4, out, sizeof out), -1);
    ck_assert_int_eq(sl_path_normalize(&all, "*", 1, out, sizeof out), -1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("paths");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, off_by_default_each_spelling_stays_apart);
    tcase_add_test(tc, each_rule_folds_its_spelling_and_only_it);
    tcase_add_test(tc, path_parameters);
    tcase_add_test(tc, case_folding);
    tcase_add_test(tc, encoded_slashes);
    tcase_add_test(tc, trailing_slash);
    tcase_add_test(tc, rules_combine_in_order);
    tcase_add_test(tc, never_longer_than_the_base);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
