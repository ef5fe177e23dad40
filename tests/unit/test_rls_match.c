/* envoyproxy/ratelimit's configuration-level scenarios, ported: the same files (rewritten in
 * tests/unit/rls/), the same descriptors, the same limit found or none.
 *
 * Ported from envoyproxy/ratelimit, test/config/config_test.go (fixtures test/config/):
 *   basic_config              TestBasicConfig                  basic_config.yaml
 *   domain_merge              TestDomainMerge                  merge_domain_key{1,2}.yaml
 *   limit_override_domain     TestConfigLimitOverride (the     basic_config.yaml
 *                             unknown domain; the override
 *                             itself is the answer's, not the
 *                             configuration's)
 *   shadow_mode               TestShadowModeConfig             shadowmode_config.yaml
 *   wildcard                  TestWildcardConfig               wildcard.yaml
 *   share_threshold           TestShareThreshold               share_threshold.yaml
 *   metadata                  TestMetadata (limits only)       metadata.yaml
 * and from its README.md, "Examples":
 *   example3_precedence       Example 3 (key=value before key-only)
 *   example4_depth            Example 4 (a deeper request matches nothing)
 *   example5_unlimited        Example 5
 *   example7_replaces         Example 7
 * The stats-key cases (detailed_metric, value_to_metric) name ratelimit's statsd metrics,
 * which sluice does not emit; full_key is checked where they check FullKey. */
#include "support/rls_fixture.h"
#include "support/run_suite.h"

#define D "test-domain"

START_TEST(basic_config)
{
    struct sl_rls_config *cfg = rls_load_fixture("basic_config.yaml");

    ck_assert_uint_eq(sl_rls_config_ndomains(cfg), 1);
    ck_assert_ptr_null(rls_get(cfg, "foo_domain", "", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "key1=something", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "key1=value1", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "key2=value2,subkey=subvalue", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "key5=value5,subkey5=subvalue", NULL));

    const struct sl_rls_limit *l;
    l = rls_expect(rls_get(cfg, D, "key1=value1,subkey1=something", NULL), 5, SL_RLS_UNIT_SECOND);
    ck_assert_str_eq(l->full_key, "test-domain.key1_value1.subkey1");
    l = rls_expect(rls_get(cfg, D, "key1=value1,subkey1=subvalue1", NULL), 10, SL_RLS_UNIT_SECOND);
    ck_assert_str_eq(l->full_key, "test-domain.key1_value1.subkey1_subvalue1");
    l = rls_expect(rls_get(cfg, D, "key2=something", NULL), 20, SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(l->full_key, "test-domain.key2");
    l = rls_expect(rls_get(cfg, D, "key2=value2", NULL), 30, SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(l->full_key, "test-domain.key2_value2");
    ck_assert_ptr_null(rls_get(cfg, D, "key2=value3", NULL));
    l = rls_expect(rls_get(cfg, D, "key3=foo", NULL), 1, SL_RLS_UNIT_HOUR);
    ck_assert_str_eq(l->name, "");
    ck_assert_int_eq(l->name_id, -1);
    l = rls_expect(rls_get(cfg, D, "key4=foo", NULL), 1, SL_RLS_UNIT_DAY);
    ck_assert_str_eq(l->name, "key4_rate_limit");
    ck_assert_int_ge(l->name_id, 0);
    l = rls_get(cfg, D, "key6=foo", NULL);
    ck_assert_ptr_nonnull(l);
    ck_assert(l->unlimited);
    ck_assert_ptr_null(l->lim.alg);
    l = rls_expect(rls_get(cfg, D, "key7=unspecified_value", NULL), 70, SL_RLS_UNIT_MINUTE);
    ck_assert(l->detailed_metric);
    ck_assert_ptr_eq(rls_get(cfg, D, "key7=another_value", NULL), l);
    /* key5=value5 has a limit and children: the one entry matches the limit. */
    rls_expect(rls_get(cfg, D, "key5=value5", NULL), 15, SL_RLS_UNIT_DAY);
    rls_expect(rls_get(cfg, D, "key5=value5,subkey5=subvalue5", NULL), 25, SL_RLS_UNIT_DAY);
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(domain_merge)
{
    static const char *const links[] = {"merge_domain_key1.yaml", "merge_domain_key2.yaml", NULL};
    char dir[64];

    rls_dir_make(dir, links, links);
    struct sl_rls_config *cfg = rls_load(dir, true);
    ck_assert_uint_eq(sl_rls_config_ndomains(cfg), 1);
    ck_assert_ptr_null(rls_get(cfg, "foo_domain", "", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "", NULL));
    rls_expect(rls_get(cfg, D, "key1=value1", NULL), 10, SL_RLS_UNIT_MINUTE);
    rls_expect(rls_get(cfg, D, "key2=value2", NULL), 20, SL_RLS_UNIT_MINUTE);
    sl_rls_config_free(cfg);
    rls_dir_remove(dir, links);
}
END_TEST

START_TEST(limit_override_domain)
{
    struct sl_rls_config *cfg = rls_load_fixture("basic_config.yaml");

    /* An override applies to a known domain only. */
    ck_assert_ptr_null(sl_rls_domain_find(cfg, "foo_domain", 10));
    ck_assert_ptr_nonnull(sl_rls_domain_find(cfg, D, strlen(D)));
    ck_assert_ptr_null(sl_rls_domain_find(cfg, D, strlen(D) - 1));
    ck_assert_ptr_null(sl_rls_domain_find(cfg, "test-domainx", strlen(D) + 1));
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(shadow_mode)
{
    struct sl_rls_config *cfg = rls_load_fixture("shadowmode_config.yaml");
    const struct sl_rls_limit *l;

    l = rls_expect(rls_get(cfg, D, "key1=value1,subkey1=something", NULL), 5, SL_RLS_UNIT_SECOND);
    ck_assert(!l->shadow_mode);
    l = rls_expect(rls_get(cfg, D, "key1=value1,subkey1=subvalue1", NULL), 10, SL_RLS_UNIT_SECOND);
    ck_assert(l->shadow_mode);
    ck_assert(l->lim.shadow);
    l = rls_expect(rls_get(cfg, D, "key2=something", NULL), 20, SL_RLS_UNIT_MINUTE);
    ck_assert(l->shadow_mode);
    l = rls_expect(rls_get(cfg, D, "key2=value2", NULL), 30, SL_RLS_UNIT_MINUTE);
    ck_assert(!l->shadow_mode);
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(wildcard)
{
    struct sl_rls_config *cfg = rls_load_fixture("wildcard.yaml");
    const struct sl_rls_limit *a, *b;

    a = rls_expect(rls_get(cfg, D, "noVal=foo1", NULL), 20, SL_RLS_UNIT_MINUTE);
    ck_assert_ptr_eq(rls_get(cfg, D, "noVal=foo2", NULL), a);
    ck_assert_str_eq(a->full_key, "test-domain.noVal");

    a = rls_expect(rls_get(cfg, D, "wild=foo1", NULL), 20, SL_RLS_UNIT_MINUTE);
    ck_assert_ptr_eq(rls_get(cfg, D, "wild=foo2", NULL), a);
    ck_assert_str_eq(a->full_key, "test-domain.wild_foo*");
    b = rls_expect(rls_get(cfg, D, "nestedWild=val1,wild=goo2", NULL), 20, SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(b->full_key, "test-domain.nestedWild_val1.wild_goo*");
    ck_assert_ptr_null(rls_get(cfg, D, "wild=bar", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "noWild=foo1", NULL));

    a = rls_expect(rls_get(cfg, D, "midWild=barab", NULL), 20, SL_RLS_UNIT_MINUTE);
    ck_assert_ptr_eq(rls_get(cfg, D, "midWild=bar123b", NULL), a);
    ck_assert_str_eq(a->full_key, "test-domain.midWild_bar*b");
    ck_assert_ptr_eq(rls_get(cfg, D, "midWild=barb", NULL), a);
    ck_assert_ptr_null(rls_get(cfg, D, "midWild=bara", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "midWild=xbarb", NULL));

    a = rls_expect(rls_get(cfg, D, "multiWild=foo123bar456baz", NULL), 10, SL_RLS_UNIT_MINUTE);
    ck_assert_ptr_eq(rls_get(cfg, D, "multiWild=foobarbaz", NULL), a);
    ck_assert_str_eq(a->full_key, "test-domain.multiWild_foo*bar*baz");
    ck_assert_ptr_null(rls_get(cfg, D, "multiWild=foo123baz", NULL));
    ck_assert_ptr_null(rls_get(cfg, D, "multiWild=bar456baz", NULL));
    sl_rls_config_free(cfg);
}
END_TEST

/* The shared value of entry i of the last match: the wildcard, when its node shares. */
static const char *shared(const struct sl_rls_node *const *path, size_t i)
{
    return sl_rls_node_shares(path[i]) ? sl_rls_node_value(path[i]) : "";
}

START_TEST(share_threshold)
{
    struct sl_rls_config *cfg = rls_load_fixture("share_threshold.yaml");
    const struct sl_rls_node *path[RLS_MAX_ENTRIES];
    const struct sl_rls_limit *l;
    static const char *const files[] = {"files=files/a.pdf", "files=files/b.csv",
                                        "files=files/c.txt"};

    for (size_t i = 0; i < 3; i++) {
        rls_expect(rls_get(cfg, D, files[i], path), 100, SL_RLS_UNIT_MINUTE);
        ck_assert_str_eq(shared(path, 0), "files/*");
    }
    rls_expect(rls_get(cfg, D, "route=api/v1,method=GET", path), 60, SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(shared(path, 0), "api/*");
    ck_assert_str_eq(shared(path, 1), "");
    l = rls_expect(rls_get(cfg, D, "service=svc/user,endpoint=get", path), 80, SL_RLS_UNIT_MINUTE);
    ck_assert(l->detailed_metric);
    ck_assert_str_eq(shared(path, 0), "svc/*");
    rls_expect(rls_get(cfg, D, "nested=parent,files=nested/file1.txt", path), 200,
               SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(shared(path, 1), "nested/*");
    rls_expect(rls_get(cfg, D, "files=top/file1.txt,files=nested/file1.txt", path), 300,
               SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(shared(path, 0), "top/*");
    ck_assert_str_eq(shared(path, 1), "nested/*");
    rls_expect(rls_get(cfg, D, "path=path/foo,file=file/doc1,type=pdf", path), 120,
               SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(shared(path, 0), "path/*");
    ck_assert_str_eq(shared(path, 1), "");
    rls_expect(rls_get(cfg, D, "user=user/alice,resource=res/file1,action=read", path), 150,
               SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(shared(path, 0), "user/*");
    ck_assert_str_eq(shared(path, 1), "res/*");
    /* The exact value first: its own limit, not shared. */
    l = rls_expect(rls_get(cfg, D, "file=test1", path), 50, SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(shared(path, 0), "");
    ck_assert_str_eq(l->full_key, "test-domain.file_test1");
    static const char *const tests[] = {"file=test2", "file=test123", "file=testABC"};
    for (size_t i = 0; i < 3; i++) {
        rls_expect(rls_get(cfg, D, tests[i], path), 100, SL_RLS_UNIT_MINUTE);
        ck_assert_str_eq(shared(path, 0), "test*");
    }
    static const char *const mids[] = {"midpath=/api/v1", "midpath=/api-beta-v1", "midpath=/apiv1"};
    for (size_t i = 0; i < 3; i++) {
        rls_expect(rls_get(cfg, D, mids[i], path), 100, SL_RLS_UNIT_MINUTE);
        ck_assert_str_eq(shared(path, 0), "/api*v1");
    }
    ck_assert_ptr_null(rls_get(cfg, D, "midpath=/api/v2", NULL));
    static const char *const multi[] = {"multiroute=svcAepBrpc", "multiroute=svc1ep2rpc",
                                        "multiroute=svceprpc"};
    for (size_t i = 0; i < 3; i++) {
        rls_expect(rls_get(cfg, D, multi[i], path), 50, SL_RLS_UNIT_MINUTE);
        ck_assert_str_eq(shared(path, 0), "svc*ep*rpc");
    }
    ck_assert_ptr_null(rls_get(cfg, D, "multiroute=svcABCrpc", NULL));
    rls_expect(rls_get(cfg, D, "midroute=/api/v2", path), 80, SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(shared(path, 0), "/api*v2");
    rls_expect(rls_get(cfg, D, "midroute=/api-beta-v2", path), 80, SL_RLS_UNIT_MINUTE);
    rls_expect(rls_get(cfg, D, "tenant=t1prod,resource=resAv2", path), 60, SL_RLS_UNIT_MINUTE);
    ck_assert_str_eq(shared(path, 0), "t*prod");
    ck_assert_str_eq(shared(path, 1), "res*v2");
    rls_expect(rls_get(cfg, D, "tenant=t99prod,resource=resBBBv2", path), 60, SL_RLS_UNIT_MINUTE);
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(metadata)
{
    struct sl_rls_config *cfg = rls_load_fixture("metadata.yaml");

    ck_assert_ptr_null(rls_get(cfg, D, "", NULL));
    rls_expect(rls_get(cfg, D, "key1=value1,subkey1=something", NULL), 5, SL_RLS_UNIT_SECOND);
    rls_expect(rls_get(cfg, D, "key2=something", NULL), 20, SL_RLS_UNIT_MINUTE);
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(example3_precedence)
{
    struct sl_rls_config *cfg = rls_load(RLS_DIR "/readme", false);

    rls_expect(rls_get(cfg, "edge_proxy_per_ip", "remote_address=50.0.0.1", NULL), 10,
               SL_RLS_UNIT_SECOND);
    rls_expect(rls_get(cfg, "edge_proxy_per_ip", "remote_address=50.0.0.5", NULL), 0,
               SL_RLS_UNIT_SECOND);
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(example4_depth)
{
    struct sl_rls_config *cfg = rls_load(RLS_DIR "/readme", false);

    ck_assert_ptr_null(rls_get(cfg, "example4", "key=value,subkey=subvalue", NULL));
    rls_expect(rls_get(cfg, "example4", "key=value", NULL), 300, SL_RLS_UNIT_SECOND);
    rls_expect(rls_get(cfg, "example4b", "key=value,subkey=subvalue", NULL), 300,
               SL_RLS_UNIT_SECOND);
    ck_assert_ptr_null(rls_get(cfg, "example4b", "key=value", NULL));
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(example5_unlimited)
{
    struct sl_rls_config *cfg = rls_load(RLS_DIR "/readme", false);
    const struct sl_rls_limit *l = rls_get(cfg, "internal", "ldap=x", NULL);

    ck_assert_ptr_nonnull(l);
    ck_assert(l->unlimited);
    rls_expect(rls_get(cfg, "internal", "azure=x", NULL), 100, SL_RLS_UNIT_MINUTE);
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(example7_replaces)
{
    struct sl_rls_config *cfg = rls_load(RLS_DIR "/readme", false);
    const struct sl_rls_limit *lims[3];
    bool replaced[3];

    lims[0] = rls_expect(rls_get(cfg, "example7", "key_1=value_1,user=bkthomps", NULL), 5,
                         SL_RLS_UNIT_SECOND);
    lims[1] = rls_expect(rls_get(cfg, "example7", "key_2=value_2,user=bkthomps", NULL), 10,
                         SL_RLS_UNIT_SECOND);
    lims[2] = NULL;
    sl_rls_replaced(lims, 3, replaced);
    ck_assert(replaced[0]);
    ck_assert(!replaced[1]);
    ck_assert(!replaced[2]);
    /* Alone, the named limit applies. */
    sl_rls_replaced(lims, 1, replaced);
    ck_assert(!replaced[0]);
    /* An unlimited limit is never replaced, but replaces. */
    lims[1] = rls_get(cfg, "example7", "unlimited=x", NULL);
    ck_assert(lims[1]->unlimited);
    sl_rls_replaced(lims, 2, replaced);
    ck_assert(replaced[0]);
    lims[0] = lims[1];
    lims[1] = rls_get(cfg, "example7", "replaces_unlimited=x", NULL);
    sl_rls_replaced(lims, 2, replaced);
    ck_assert(!replaced[0]);
    sl_rls_config_free(cfg);
}
END_TEST

/* Beyond ratelimit's own tests: what its lookup does in the corners (tests/unit/rls/corners). */
START_TEST(composite_keys)
{
    struct sl_rls_config *cfg = rls_load(RLS_DIR "/corners", false);
    const struct sl_rls_limit *l = rls_get(cfg, "corners", "a=b_c", NULL);

    rls_expect(l, 1, SL_RLS_UNIT_SECOND);
    ck_assert_ptr_eq(rls_get(cfg, "corners", "a_b=c", NULL), l);
    ck_assert_ptr_null(rls_get(cfg, "corners", "a=b", NULL));
    rls_expect(rls_get(cfg, "corners", "starry=x", NULL), 2, SL_RLS_UNIT_SECOND);
    rls_expect(rls_get(cfg, "corners", "star=", NULL), 2, SL_RLS_UNIT_SECOND);
    rls_expect(rls_get(cfg, "corners", "k=", NULL), 3, SL_RLS_UNIT_SECOND);
    rls_expect(rls_get(cfg, "corners", "k", NULL), 3, SL_RLS_UNIT_SECOND);
    sl_rls_config_free(cfg);
}
END_TEST

START_TEST(wildcard_order)
{
    struct sl_rls_config *cfg = rls_load(RLS_DIR "/corners", false);

    rls_expect(rls_get(cfg, "corners", "w=abcd", NULL), 4, SL_RLS_UNIT_SECOND);
    rls_expect(rls_get(cfg, "corners", "w=ab", NULL), 4, SL_RLS_UNIT_SECOND);
    rls_expect(rls_get(cfg, "corners", "w=a", NULL), 6, SL_RLS_UNIT_SECOND);
    ck_assert_ptr_null(rls_get(cfg, "corners", "parent=x", NULL));
    rls_expect(rls_get(cfg, "corners", "parent=x,child=y", NULL), 7, SL_RLS_UNIT_SECOND);
    ck_assert_ptr_null(rls_get(cfg, "corners", "parent=x,child=y,more=z", NULL));
    ck_assert_ptr_null(sl_rls_match(NULL, NULL, 0, NULL));
    sl_rls_config_free(cfg);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("rls_match");
    TCase *tc = tcase_create("ratelimit");

    tcase_add_test(tc, basic_config);
    tcase_add_test(tc, domain_merge);
    tcase_add_test(tc, limit_override_domain);
    tcase_add_test(tc, shadow_mode);
    tcase_add_test(tc, wildcard);
    tcase_add_test(tc, share_threshold);
    tcase_add_test(tc, metadata);
    tcase_add_test(tc, example3_precedence);
    tcase_add_test(tc, example4_depth);
    tcase_add_test(tc, example5_unlimited);
    tcase_add_test(tc, example7_replaces);
    suite_add_tcase(s, tc);
    tc = tcase_create("corners");
    tcase_add_test(tc, composite_keys);
    tcase_add_test(tc, wildcard_order);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
