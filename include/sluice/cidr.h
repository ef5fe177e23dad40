/* CIDR blocks and IP address matching for trusted_proxies, exempt and X-Forwarded-For. */
#ifndef SLUICE_CIDR_H
#define SLUICE_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* An IPv4 or IPv6 address; IPv4-mapped IPv6 addresses are stored as IPv4. */
struct sl_ip {
    int family;       /* AF_INET or AF_INET6 */
    uint8_t addr[16]; /* network byte order; first 4 bytes used for AF_INET */
};

struct sl_cidr {
    struct sl_ip net; /* host bits cleared */
    unsigned prefix;  /* 0..32 or 0..128 */
};

struct sl_cidr_list {
    struct sl_cidr *items; /* owned */
    size_t count;
};

/* Parses "10.0.0.0/8", "::1/128" or a bare address (full-length prefix).
 * Returns 0, or -1 when `text` is not a CIDR. Host bits set beyond the prefix are an error. */
int sl_cidr_parse(const char *text, struct sl_cidr *out);

/* Parses an IPv4 or IPv6 address of `len` bytes (not NUL-terminated). Returns 0 or -1. */
int sl_ip_parse(const char *text, size_t len, struct sl_ip *out);

/* Fills `out` from an AF_INET/AF_INET6 socket address. Returns 0, or -1 for other families. */
int sl_ip_from_sockaddr(const struct sockaddr *sa, struct sl_ip *out);

/* Writes the canonical text form of `ip` into `buf` (at least 46 bytes). Returns its length. */
size_t sl_ip_format(const struct sl_ip *ip, char *buf, size_t size);

bool sl_cidr_contains(const struct sl_cidr *cidr, const struct sl_ip *ip);
bool sl_cidr_list_contains(const struct sl_cidr_list *list, const struct sl_ip *ip);

/* Releases the items of `list` (not `list` itself). */
void sl_cidr_list_deinit(struct sl_cidr_list *list);

#endif
