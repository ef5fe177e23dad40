/* IPv4 and IPv6 addresses and CIDR blocks. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d)
 * are folded to IPv4, so a client is matched the same way whichever socket family
 * accepted it. */
#include "sluice/cidr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t v4_mapped_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

static void set_v6(struct sl_ip *out, const uint8_t addr[16])
{
    memset(out, 0, sizeof *out);
    if (memcmp(addr, v4_mapped_prefix, sizeof v4_mapped_prefix) == 0) {
        out->family = AF_INET;
        memcpy(out->addr, addr + 12, 4);
    } else {
        out->family = AF_INET6;
        memcpy(out->addr, addr, 16);
    }
}

int sl_ip_parse(const char *text, size_t len, struct sl_ip *out)
{
    char buf[INET6_ADDRSTRLEN];
    uint8_t addr[16];

    if (len == 0 || len >= sizeof buf || memchr(text, '\0', len))
        return -1;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (inet_pton(AF_INET, buf, addr) == 1) {
        memset(out, 0, sizeof *out);
        out->family = AF_INET;
        memcpy(out->addr, addr, 4);
        return 0;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        set_v6(out, addr);
        return 0;
    }
    return -1;
}

int sl_ip_from_sockaddr(const struct sockaddr *sa, struct sl_ip *out)
{
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;
        memset(out, 0, sizeof *out);
        out->family = AF_INET;
        memcpy(out->addr, &sin->sin_addr, 4);
        return 0;
    }
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)sa;
        set_v6(out, sin6->sin6_addr.s6_addr);
        return 0;
    }
    return -1;
}

size_t sl_ip_format(const struct sl_ip *ip, char *buf, size_t size)
{
    if (size == 0)
        return 0;
    if (!inet_ntop(ip->family, ip->addr, buf, (socklen_t)size)) {
        buf[0] = '\0';
        return 0;
    }
    return strlen(buf);
}

static unsigned bits_of(int family)
{
    return family == AF_INET ? 32 : 128;
}

/* True when the bits of `addr` past `prefix` are all zero. */
static bool host_bits_clear(const uint8_t *addr, unsigned prefix, unsigned bits)
{
    for (unsigned i = prefix; i < bits; i++)
        if (addr[i / 8] & (0x80 >> (i % 8)))
            return false;
    return true;
}

static bool prefix_equal(const uint8_t *a, const uint8_t *b, unsigned prefix)
{
    unsigned whole = prefix / 8, rest = prefix % 8;

    if (memcmp(a, b, whole) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (a[whole] & mask) == (b[whole] & mask);
}

int sl_cidr_parse(const char *text, struct sl_cidr *out)
{
    const char *slash = strchr(text, '/');
    size_t len = slash ? (size_t)(slash - text) : strlen(text);
    struct sl_cidr c;
    uint8_t v6[16];
    bool mapped = false;

    if (sl_ip_parse(text, len, &c.net) < 0)
        return -1;
    /* A mapped block written in IPv6 form keeps its v6 prefix length until we know it. */
    if (c.net.family == AF_INET && memchr(text, ':', len)) {
        mapped = true;
        memcpy(v6, v4_mapped_prefix, 12);
        memcpy(v6 + 12, c.net.addr, 4);
    }
    unsigned bits = mapped ? 128 : bits_of(c.net.family);
    c.prefix = bits;
    if (slash) {
        const char *p = slash + 1;
        unsigned v = 0;
        if (*p < '0' || *p > '9' || (p[0] == '0' && p[1] != '\0'))
            return -1;
        for (; *p >= '0' && *p <= '9'; p++) {
            v = v * 10 + (unsigned)(*p - '0');
            if (v > bits)
                return -1;
        }
        if (*p != '\0')
            return -1;
        c.prefix = v;
    }
    if (mapped) {
        if (c.prefix >= 96) {
            c.prefix -= 96;
        } else {
            /* Wider than ::ffff:0:0/96: the block holds more than mapped addresses. */
            c.net.family = AF_INET6;
            memcpy(c.net.addr, v6, 16);
        }
    }
    if (!host_bits_clear(c.net.addr, c.prefix, bits_of(c.net.family)))
        return -1;
    *out = c;
    return 0;
}

bool sl_cidr_contains(const struct sl_cidr *cidr, const struct sl_ip *ip)
{
    if (cidr->net.family == ip->family)
        return prefix_equal(cidr->net.addr, ip->addr, cidr->prefix);
    if (cidr->net.family == AF_INET6 && ip->family == AF_INET) {
        /* An IPv6 block such as ::/0 also covers the IPv4 addresses it maps. */
        uint8_t v6[16];
        memcpy(v6, v4_mapped_prefix, 12);
        memcpy(v6 + 12, ip->addr, 4);
        return prefix_equal(cidr->net.addr, v6, cidr->prefix);
    }
    return false;
}

bool sl_cidr_list_contains(const struct sl_cidr_list *list, const struct sl_ip *ip)
{
    for (size_t i = 0; i < list->count; i++)
        if (sl_cidr_contains(&list->items[i], ip))
            return true;
    return false;
}

void sl_cidr_list_deinit(struct sl_cidr_list *list)
{
    free(list->items);
    list->items = NULL;
    list->count = 0;
}
