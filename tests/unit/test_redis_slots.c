/* Redis Cluster's key space: CRC16 and hash slots as the Cluster specification defines them,
 * the CLUSTER SLOTS parser on replies captured from a real redis-server 7.0 cluster, and the
 * MOVED/ASK parser. */
#include <check.h>
#include <hiredis/hiredis.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/redis_slots.h"
#include "support/run_suite.h"

/* CLUSTER SLOTS of a fresh three-master cluster (redis-cli --cluster create, no replicas). */
static const char slots_fresh[] = "*3\r\n"
                                  "*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:48325\r\n$"
                                  "40\r\n35fc6d4c985e97c63f73b3ee13643fe18aed4ba0\r\n*0\r\n"
                                  "*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:50913\r\n$"
                                  "40\r\nacf4d3e3af850639f9ced9561c6289d5ca402378\r\n*0\r\n"
                                  "*3\r\n:10923\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:36983\r\n$"
                                  "40\r\ne15cfc446bffd77f5341ceabfaf608ce0fba040c\r\n*0\r\n";

/* The same after slot 12182 ("foo") moved from the third master to the first. */
static const char slots_moved[] = "*5\r\n"
                                  "*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:35229\r\n$"
                                  "40\r\n3af9a35008ee3e32a3cdb35764c444ce71e05344\r\n*0\r\n"
                                  "*3\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:39467\r\n$"
                                  "40\r\nee2752bdebeb0b27449ec169722d00dc72ab330c\r\n*0\r\n"
                                  "*3\r\n:10923\r\n:12181\r\n*4\r\n$9\r\n127.0.0.1\r\n:46621\r\n$"
                                  "40\r\n8c64970f54155476a01a237dfffaf9a2c2b7b93f\r\n*0\r\n"
                                  "*3\r\n:12182\r\n:12182\r\n*4\r\n$9\r\n127.0.0.1\r\n:35229\r\n$"
                                  "40\r\n3af9a35008ee3e32a3cdb35764c444ce71e05344\r\n*0\r\n"
                                  "*3\r\n:12183\r\n:16383\r\n*4\r\n$9\r\n127.0.0.1\r\n:46621\r\n$"
                                  "40\r\n8c64970f54155476a01a237dfffaf9a2c2b7b93f\r\n*0\r\n";

/* The reply hiredis reads from `raw`; free it with freeReplyObject. */
static redisReply *read_reply(const char *raw, size_t len)
{
    redisReader *r = redisReaderCreate();
    void *reply = NULL;
    ck_assert_int_eq(redisReaderFeed(r, raw, len), REDIS_OK);
    ck_assert_int_eq(redisReaderGetReply(r, &reply), REDIS_OK);
    ck_assert_ptr_nonnull(reply);
    redisReaderFree(r);
    return reply;
}

static size_t key_slot(const char *key)
{
    return sl_redis_key_slot(key, strlen(key));
}

START_TEST(crc16_test_vector)
{
    /* The Cluster specification's check value for its CRC16 (XMODEM). */
    ck_assert_uint_eq(sl_redis_crc16("123456789", 9), 0x31C3);
    ck_assert_uint_eq(sl_redis_crc16("", 0), 0);
    ck_assert_uint_eq(key_slot("123456789"), 0x31C3 & 16383);
}
END_TEST

START_TEST(slots_match_redis)
{
    /* Values from CLUSTER KEYSLOT on redis-server 7.0. */
    ck_assert_uint_eq(key_slot("foo"), 12182);
    ck_assert_uint_eq(key_slot("bar"), 5061);
    ck_assert_uint_eq(key_slot(""), 0);
    char bin[] = {'a', '\0', 'b'};
    ck_assert_uint_lt(sl_redis_key_slot(bin, sizeof bin), 16384);
}
END_TEST

START_TEST(hash_tags_follow_the_specification)
{
    /* Only the tag is hashed, so keys sharing a tag share a slot. */
    ck_assert_uint_eq(key_slot("{user1000}.following"), key_slot("user1000"));
    ck_assert_uint_eq(key_slot("{user1000}.followers"), key_slot("user1000"));
    /* The first "{" and the first "}" after it: "{bar" is hashed. */
    ck_assert_uint_eq(key_slot("foo{{bar}}zap"), key_slot("{bar"));
    /* Only the first tag counts. */
    ck_assert_uint_eq(key_slot("foo{bar}{zap}"), key_slot("bar"));
    /* "{}" is no tag: the whole key is hashed. */
    ck_assert_uint_eq(key_slot("foo{}{bar}"), sl_redis_crc16("foo{}{bar}", 10) & 16383);
    /* No closing brace: the whole key. */
    ck_assert_uint_eq(key_slot("foo{bar"), sl_redis_crc16("foo{bar", 7) & 16383);
    ck_assert_uint_eq(key_slot("sluice:{tenant}:x"), key_slot("tenant"));
}
END_TEST

START_TEST(parses_a_fresh_cluster)
{
    redisReply *r = read_reply(slots_fresh, sizeof slots_fresh - 1);
    struct sl_redis_slot_map map;
    ck_assert_int_eq(sl_redis_slot_map_parse(r, "127.0.0.1", &map), 0);
    ck_assert_uint_eq(map.nmasters, 3);
    ck_assert_str_eq(map.masters[0].host, "127.0.0.1");
    ck_assert_int_eq(map.masters[0].port, 48325);
    ck_assert_int_eq(map.masters[1].port, 50913);
    ck_assert_int_eq(map.masters[2].port, 36983);
    ck_assert_uint_eq(map.owner[0], 1);
    ck_assert_uint_eq(map.owner[5460], 1);
    ck_assert_uint_eq(map.owner[5461], 2);
    ck_assert_uint_eq(map.owner[10922], 2);
    ck_assert_uint_eq(map.owner[10923], 3);
    ck_assert_uint_eq(map.owner[16383], 3);
    sl_redis_slot_map_deinit(&map);
    ck_assert_uint_eq(map.nmasters, 0);
    freeReplyObject(r);
}
END_TEST

START_TEST(parses_a_moved_slot)
{
    redisReply *r = read_reply(slots_moved, sizeof slots_moved - 1);
    struct sl_redis_slot_map map;
    ck_assert_int_eq(sl_redis_slot_map_parse(r, "127.0.0.1", &map), 0);
    /* Five ranges, three masters: the first master appears twice. */
    ck_assert_uint_eq(map.nmasters, 3);
    ck_assert_int_eq(map.masters[map.owner[12182] - 1].port, 35229);
    ck_assert_int_eq(map.masters[map.owner[12181] - 1].port, 46621);
    ck_assert_int_eq(map.masters[map.owner[12183] - 1].port, 46621);
    ck_assert_uint_eq(map.owner[12182], map.owner[0]);
    for (size_t s = 0; s < SL_REDIS_SLOTS; s++)
        ck_assert_uint_ne(map.owner[s], 0);
    sl_redis_slot_map_deinit(&map);
    freeReplyObject(r);
}
END_TEST

START_TEST(empty_host_is_the_asked_node)
{
    static const char raw[] = "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n$0\r\n\r\n:7000\r\n$1\r\nx\r\n";
    redisReply *r = read_reply(raw, sizeof raw - 1);
    struct sl_redis_slot_map map;
    ck_assert_int_eq(sl_redis_slot_map_parse(r, "10.0.0.9", &map), 0);
    ck_assert_uint_eq(map.nmasters, 1);
    ck_assert_str_eq(map.masters[0].host, "10.0.0.9");
    ck_assert_int_eq(map.masters[0].port, 7000);
    sl_redis_slot_map_deinit(&map);
    freeReplyObject(r);
}
END_TEST

START_TEST(refuses_malformed_maps)
{
    static const char *const bad[] = {
        "+OK\r\n",
        "*1\r\n:1\r\n",
        "*1\r\n*2\r\n:0\r\n:10\r\n",                           /* no master */
        "*1\r\n*3\r\n:10\r\n:5\r\n*2\r\n$1\r\na\r\n:1\r\n",    /* end < start */
        "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\na\r\n:1\r\n", /* past the last slot */
        "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\na\r\n:70000\r\n", /* bad port */
        "*1\r\n*3\r\n:0\r\n:1\r\n*1\r\n$1\r\na\r\n",           /* no port */
        "-CLUSTERDOWN The cluster is down\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        redisReply *r = read_reply(bad[i], strlen(bad[i]));
        struct sl_redis_slot_map map;
        ck_assert_msg(sl_redis_slot_map_parse(r, "h", &map) < 0, "accepted %zu", i);
        ck_assert_uint_eq(map.nmasters, 0);
        freeReplyObject(r);
    }
}
END_TEST

static enum sl_redis_redirect redirect(const char *err, unsigned *slot, char *host, int *port)
{
    return sl_redis_redirect_parse(err, strlen(err), slot, host, 64, port);
}

START_TEST(parses_redirections)
{
    unsigned slot;
    char host[64];
    int port;
    ck_assert_int_eq(redirect("MOVED 3999 127.0.0.1:6381", &slot, host, &port), SL_REDIS_MOVED);
    ck_assert_uint_eq(slot, 3999);
    ck_assert_str_eq(host, "127.0.0.1");
    ck_assert_int_eq(port, 6381);
    ck_assert_int_eq(redirect("ASK 12182 ::1:7002", &slot, host, &port), SL_REDIS_ASK);
    ck_assert_uint_eq(slot, 12182);
    ck_assert_str_eq(host, "::1");
    ck_assert_int_eq(port, 7002);
    ck_assert_int_eq(redirect("ASK 0 redis-1.internal:6379", &slot, host, &port), SL_REDIS_ASK);
    ck_assert_str_eq(host, "redis-1.internal");

    static const char *const bad[] = {
        "NOSCRIPT No matching script",
        "MOVED",
        "MOVED 16384 a:1",
        "MOVED x a:1",
        "MOVED 1 a",
        "MOVED 1 :1",
        "MOVED 1 a:",
        "MOVED 1 a:0",
        "MOVED 1 a:65536",
        "ASK 1 a:1x",
        "MOVED 1  a:1",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        ck_assert_msg(redirect(bad[i], &slot, host, &port) == SL_REDIS_NO_REDIRECT, "accepted %s",
                      bad[i]);
    /* A host longer than the buffer is refused, not cut. */
    ck_assert_int_eq(sl_redis_redirect_parse("MOVED 1 abcdef:1", 16, &slot, host, 4, &port),
                     SL_REDIS_NO_REDIRECT);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("redis_slots");
    TCase *tc = tcase_create("redis_slots");
    tcase_add_test(tc, crc16_test_vector);
    tcase_add_test(tc, slots_match_redis);
    tcase_add_test(tc, hash_tags_follow_the_specification);
    tcase_add_test(tc, parses_a_fresh_cluster);
    tcase_add_test(tc, parses_a_moved_slot);
    tcase_add_test(tc, empty_host_is_the_asked_node);
    tcase_add_test(tc, refuses_malformed_maps);
    tcase_add_test(tc, parses_redirections);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
