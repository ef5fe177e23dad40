/* The scalar forms of the configuration: durations, sizes, rates and socket addresses. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>

#include "sluice/config_parse.h"

/* Reads the decimal digits at *p; fails when there are none or the value overflows. */
static int parse_u64(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t v = 0;

    if (*s < '0' || *s > '9')
        return -1;
    for (; *s >= '0' && *s <= '9'; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (v > (UINT64_MAX - d) / 10)
            return -1;
        v = v * 10 + d;
    }
    *p = s;
    *out = v;
    return 0;
}

static int mul_u64(uint64_t a, uint64_t b, uint64_t *out)
{
    if (b != 0 && a > UINT64_MAX / b)
        return -1;
    *out = a * b;
    return 0;
}

/* Microseconds in one `unit`, or 0 when `unit` is not a time unit. */
static uint64_t unit_us(const char *unit)
{
    static const struct {
        const char *name;
        uint64_t us;
    } units[] = {
        {"ms", 1000ULL},      {"s", 1000000ULL},     {"m", 60000000ULL},
        {"h", 3600000000ULL}, {"d", 86400000000ULL},
    };
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
        if (strcmp(unit, units[i].name) == 0)
            return units[i].us;
    return 0;
}

int sl_parse_duration_ms(const char *text, uint64_t *out_ms)
{
    const char *p = text;
    uint64_t n, ms;

    if (parse_u64(&p, &n) < 0)
        return -1;
    /* A bare number has no unit to read it in, except zero, which needs none. */
    if (*p == '\0') {
        if (n != 0)
            return -1;
        *out_ms = 0;
        return 0;
    }
    uint64_t us = unit_us(p);
    if (us == 0 || mul_u64(n, us / 1000, &ms) < 0)
        return -1;
    *out_ms = ms;
    return 0;
}

int sl_parse_size(const char *text, uint64_t *out_bytes)
{
    const char *p = text;
    uint64_t n, shift = 0;

    if (parse_u64(&p, &n) < 0)
        return -1;
    switch (*p) {
    case '\0':
        break;
    case 'k':
    case 'K':
        shift = 10;
        break;
    case 'm':
    case 'M':
        shift = 20;
        break;
    case 'g':
    case 'G':
        shift = 30;
        break;
    default:
        return -1;
    }
    if (*p != '\0' && p[1] != '\0')
        return -1;
    return mul_u64(n, 1ULL << shift, out_bytes);
}

/* Microseconds in one unit word ("minute", "hours"), or 0. Rates only: operators coming
 * from Envoy or Kong write "5/minute" from habit, and a duration never reads that way. */
static uint64_t unit_word_us(const char *word)
{
    static const struct {
        const char *name;
        uint64_t us;
    } words[] = {
        {"second", 1000000ULL},
        {"minute", 60000000ULL},
        {"hour", 3600000000ULL},
        {"day", 86400000000ULL},
    };
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++) {
        size_t n = strlen(words[i].name);
        if (strncmp(word, words[i].name, n) == 0 &&
            (word[n] == '\0' || (word[n] == 's' && word[n + 1] == '\0')))
            return words[i].us;
    }
    return 0;
}

int sl_parse_rate(const char *text, uint64_t *out_count, uint64_t *out_period_us)
{
    const char *p = text;
    uint64_t count, mult = 1, period;

    if (parse_u64(&p, &count) < 0 || count == 0 || *p++ != '/')
        return -1;
    if (*p >= '0' && *p <= '9' && parse_u64(&p, &mult) < 0)
        return -1;
    uint64_t us = unit_us(p);
    if (us == 0)
        us = unit_word_us(p);
    if (us == 0 || mult == 0 || mul_u64(mult, us, &period) < 0)
        return -1;
    *out_count = count;
    *out_period_us = period;
    return 0;
}

int sl_format_rate(uint64_t count, uint64_t period_us, char *buf, size_t size)
{
    static const struct {
        const char *unit;
        uint64_t us;
    } units[] = {{"d", 86400000000ULL}, {"h", 3600000000ULL}, {"m", 60000000ULL},
                 {"s", 1000000ULL},     {"ms", 1000ULL},      {"us", 1ULL}};
    if (count == UINT64_MAX)
        return snprintf(buf, size, "unlimited");
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (period_us == 0 || period_us % units[i].us != 0)
            continue;
        uint64_t mult = period_us / units[i].us;
        if (mult == 1)
            return snprintf(buf, size, "%llu/%s", (unsigned long long)count, units[i].unit);
        return snprintf(buf, size, "%llu/%llu%s", (unsigned long long)count,
                        (unsigned long long)mult, units[i].unit);
    }
    return snprintf(buf, size, "%llu/%lluus", (unsigned long long)count,
                    (unsigned long long)period_us);
}

static int parse_port(const char *text, in_port_t *out)
{
    const char *p = text;
    uint64_t port;

    if (parse_u64(&p, &port) < 0 || *p != '\0' || port == 0 || port > 65535)
        return -1;
    *out = htons((in_port_t)port);
    return 0;
}

static int parse_unix(const char *path, struct sl_sockaddr *out)
{
    struct sockaddr_un *sun = (struct sockaddr_un *)&out->ss;
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof sun->sun_path)
        return -1;
    sun->sun_family = AF_UNIX;
    memcpy(sun->sun_path, path, n + 1);
    out->len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    return 0;
}

static int parse_inet(const char *text, struct sl_sockaddr *out)
{
    char host[INET6_ADDRSTRLEN];
    const char *port;
    size_t n;
    bool bracketed = text[0] == '[';

    if (bracketed) {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':')
            return -1;
        n = (size_t)(end - text - 1);
        port = end + 2;
        text++;
    } else {
        const char *colon = strchr(text, ':');
        /* A second colon means an IPv6 address without brackets: ambiguous with the port. */
        if (!colon || strchr(colon + 1, ':'))
            return -1;
        n = (size_t)(colon - text);
        port = colon + 1;
    }
    if (n >= sizeof host)
        return -1;
    memcpy(host, text, n);
    host[n] = '\0';

    struct sockaddr_in *sin = (struct sockaddr_in *)&out->ss;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&out->ss;
    if (strchr(host, ':')) {
        if (!bracketed || inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
            return -1;
        sin6->sin6_family = AF_INET6;
        out->len = sizeof *sin6;
        return parse_port(port, &sin6->sin6_port);
    }
    if (bracketed)
        return -1;
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    else if (strcmp(host, "*") == 0)
        strcpy(host, "0.0.0.0");
    if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
        return -1;
    sin->sin_family = AF_INET;
    out->len = sizeof *sin;
    return parse_port(port, &sin->sin_port);
}

int sl_parse_sockaddr(const char *text, struct sl_sockaddr *out)
{
    memset(out, 0, sizeof *out);
    int rc = strncmp(text, "unix:", 5) == 0 ? parse_unix(text + 5, out) : parse_inet(text, out);
    if (rc == 0)
        out->text = strdup(text);
    if (rc < 0 || !out->text) {
        memset(out, 0, sizeof *out);
        return -1;
    }
    return 0;
}

void sl_sockaddr_deinit(struct sl_sockaddr *addr)
{
    free(addr->text);
    memset(addr, 0, sizeof *addr);
}

bool sl_sockaddr_same(const struct sl_sockaddr *a, const struct sl_sockaddr *b)
{
    return a->len && a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}
