/* SHA-256 against the test vectors of FIPS 180-4's examples (NIST CSRC) and split input. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sluice/sha256.h"
#include "support/run_suite.h"

static void check_hex(const char *msg, size_t len, const char *want)
{
    char hex[65];
    sl_sha256_hex(msg, len, hex);
    ck_assert_str_eq(hex, want);
}

START_TEST(test_vectors)
{
    check_hex("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    check_hex("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    check_hex(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *four = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmn"
                       "hijklmnoijklmnopjklmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    check_hex(four, strlen(four),
              "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}
END_TEST

START_TEST(test_million_a)
{
    /* Fed in uneven pieces so that block boundaries fall inside update() calls. */
    char chunk[997];
    memset(chunk, 'a', sizeof chunk);
    struct sl_sha256 ctx;
    sl_sha256_init(&ctx);
    size_t left = 1000000;
    while (left > 0) {
        size_t n = left < sizeof chunk ? left : sizeof chunk;
        sl_sha256_update(&ctx, chunk, n);
        left -= n;
    }
    uint8_t md[SL_SHA256_LEN];
    sl_sha256_final(&ctx, md);
    static const uint8_t want[SL_SHA256_LEN] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92,
                                                0x81, 0xa1, 0xc7, 0xe2, 0x84, 0xd7, 0x3e, 0x67,
                                                0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97, 0x20, 0x0e,
                                                0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    ck_assert_mem_eq(md, want, sizeof want);
}
END_TEST

START_TEST(test_padding_edges)
{
    /* 55, 56 and 64 bytes: the length fits, just does not fit, and a whole block. */
    char buf[64];
    memset(buf, 'x', sizeof buf);
    char one[65], split[65];
    for (size_t len = 55; len <= 64; len++) {
        sl_sha256_hex(buf, len, one);
        struct sl_sha256 ctx;
        uint8_t md[SL_SHA256_LEN];
        sl_sha256_init(&ctx);
        for (size_t i = 0; i < len; i++)
            sl_sha256_update(&ctx, buf + i, 1);
        sl_sha256_final(&ctx, md);
        for (int i = 0; i < SL_SHA256_LEN; i++)
            snprintf(split + 2 * i, 3, "%02x", md[i]);
        ck_assert_str_eq(one, split);
    }
    sl_sha256_hex(buf, 56, one);
    ck_assert_str_eq(one, "04c26261370ee7541549d16dee320c723e3fd14671e66a099afe0a377c16888e");
}
END_TEST

int main(void)
{
    Suite *s = suite_create("sha256");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_vectors);
    tcase_add_test(tc, test_million_a);
    tcase_add_test(tc, test_padding_edges);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
