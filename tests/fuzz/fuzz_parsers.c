/* The small parsers of untrusted text: the configuration's scalar forms (durations, sizes,
 * rates, addresses, URLs, ${VAR}), CIDRs and addresses (also from X-Forwarded-For), path
 * and host normalisation, and the JSON escaping of access-log fields. The first byte picks
 * the parser, the rest is its input. Each checks what its contract promises beyond not
 * crashing. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yajl/yajl_parse.h>

#include <event2/buffer.h>

#include "config/loader.h"
#include "sluice/cidr.h"
#include "sluice/config_parse.h"
#include "sluice/json.h"
#include "sluice/route.h"

enum parser {
    P_DURATION,
    P_SIZE,
    P_RATE,
    P_SOCKADDR,
    P_CIDR,
    P_IP,
    P_UPSTREAM_URL,
    P_REDIS_URL,
    P_EXPAND,
    P_JSON,
    P_PATH,
    P_HOST,
    P_COUNT
};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    /* Variables for ${VAR} to find; others are unset. */
    setenv("SLUICE_FUZZ_A", "127.0.0.1:8080", 1);
    setenv("SLUICE_FUZZ_EMPTY", "", 1);
    setenv("SLUICE_FUZZ_NESTED", "${SLUICE_FUZZ_A}", 1);
    return 0;
}

static void check(int ok, const char *what)
{
    if (!ok) {
        fprintf(stderr, "fuzz_parsers: %s\n", what);
        abort();
    }
}

static void fuzz_cidr(const char *s)
{
    struct sl_cidr c;
    if (sl_cidr_parse(s, &c) < 0)
        return;
    check(sl_cidr_contains(&c, &c.net), "a CIDR does not contain its own network");
    char text[64];
    size_t n = sl_ip_format(&c.net, text, sizeof text);
    check(n > 0, "a parsed CIDR network does not format");
    struct sl_ip again;
    check(sl_ip_parse(text, n, &again) == 0 && again.family == c.net.family &&
              memcmp(again.addr, c.net.addr, sizeof again.addr) == 0,
          "a formatted network does not parse back to itself");
}

static void fuzz_ip(const uint8_t *data, size_t size)
{
    struct sl_ip ip, again;
    if (sl_ip_parse((const char *)data, size, &ip) < 0)
        return;
    char text[64];
    size_t n = sl_ip_format(&ip, text, sizeof text);
    check(n > 0 && sl_ip_parse(text, n, &again) == 0 && again.family == ip.family &&
              memcmp(again.addr, ip.addr, sizeof ip.addr) == 0,
          "an address does not survive format and parse");
}

/* The escaped text must be one valid JSON string, whatever the input bytes. */
static void fuzz_json(const uint8_t *data, size_t size)
{
    struct evbuffer *out = evbuffer_new();
    check(out != NULL, "evbuffer_new");
    check(sl_json_append_string(out, (const char *)data, size) == 0, "json escaping failed");
    size_t len = evbuffer_get_length(out);
    const unsigned char *text = evbuffer_pullup(out, -1);
    check(len >= 2 && text[0] == '"' && text[len - 1] == '"', "escaped text is not quoted");

    yajl_handle y = yajl_alloc(NULL, NULL, NULL);
    check(y != NULL, "yajl_alloc");
    check(yajl_parse(y, text, len) == yajl_status_ok && yajl_complete_parse(y) == yajl_status_ok,
          "escaped text is not valid JSON");
    yajl_free(y);
    evbuffer_free(out);
}

/* `flags` picks the operator's path rules (paths: in the configuration). */
static void fuzz_path(unsigned flags, const uint8_t *data, size_t size)
{
    struct sl_path_rules rules = {
        .case_insensitive = flags & 1,
        .strip_path_parameters = flags & 2,
        .decode_slash = flags & 4,
        .ignore_trailing_slash = flags & 8,
    };
    size_t cap = size + 2; /* always enough, the header says */
    char *out = malloc(cap);
    check(out != NULL, "malloc");
    ssize_t n = sl_path_normalize(flags ? &rules : NULL, (const char *)data, size, out, cap);
    if (n >= 0) {
        check((size_t)n < cap && out[n] == '\0' && out[0] == '/',
              "a normalised path is not absolute or not terminated");
        check(memchr(out, '?', (size_t)n) == NULL, "a normalised path kept its query");
        if (!flags)
            check(strstr(out, "//") == NULL, "a normalised path kept repeated slashes");
    }
    free(out);
}

static void fuzz_host(const uint8_t *data, size_t size)
{
    char *out = malloc(size + 1);
    check(out != NULL, "malloc");
    ssize_t n = sl_host_normalize((const char *)data, size, out, size + 1);
    if (n >= 0)
        check(n > 0 && (size_t)n <= size && out[n] == '\0', "a normalised host is too long");
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum parser which = (enum parser)(data[0] % P_COUNT);
    unsigned flags = data[0] / P_COUNT; /* options of the parser, where it has any */
    data++;
    size--;
    /* The configuration parsers take NUL-terminated text. */
    char *s = malloc(size + 1);
    check(s != NULL, "malloc");
    memcpy(s, data, size);
    s[size] = '\0';

    uint64_t a, b;
    switch (which) {
    case P_DURATION:
        sl_parse_duration_ms(s, &a);
        break;
    case P_SIZE:
        sl_parse_size(s, &a);
        break;
    case P_RATE:
        if (sl_parse_rate(s, &a, &b) == 0)
            check(a > 0 && b > 0, "a rate with N or P of 0 was accepted");
        break;
    case P_SOCKADDR: {
        struct sl_sockaddr addr = {0};
        if (sl_parse_sockaddr(s, &addr) == 0) {
            check(addr.len > 0 && addr.len <= sizeof addr.ss, "sockaddr length");
            check(addr.text && strcmp(addr.text, s) == 0, "sockaddr text is not the input");
        }
        sl_sockaddr_deinit(&addr);
        break;
    }
    case P_CIDR:
        fuzz_cidr(s);
        break;
    case P_IP:
        fuzz_ip(data, size);
        break;
    case P_UPSTREAM_URL: {
        struct sl_upstream_config up = {0};
        if (sl_ld_parse_upstream_url(s, &up) == 0)
            check(up.host ? up.port > 0 && up.addr.text != NULL
                          : up.addr.len > 0 && up.addr.len <= sizeof up.addr.ss,
                  "upstream address");
        sl_sockaddr_deinit(&up.addr);
        free(up.host);
        break;
    }
    case P_REDIS_URL: {
        struct sl_redis_config r = {0};
        if (sl_ld_parse_redis_url(s, &r) == 0)
            check((r.host != NULL) != (r.unix_path != NULL), "redis URL: host or path, not both");
        else
            check(!r.host && !r.unix_path && !r.user && !r.password, "failed parse left fields");
        free(r.host);
        free(r.unix_path);
        free(r.user);
        free(r.password);
        break;
    }
    case P_EXPAND: {
        char *out = NULL;
        sl_expand_env(s, &out);
        check(out != NULL, "expansion gave no text and no message");
        free(out);
        break;
    }
    case P_JSON:
        fuzz_json(data, size);
        break;
    case P_PATH:
        fuzz_path(flags, data, size);
        break;
    case P_HOST:
        fuzz_host(data, size);
        break;
    case P_COUNT:
        break;
    }
    free(s);
    return 0;
}
