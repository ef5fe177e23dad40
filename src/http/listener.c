/* Listening sockets: host:port, [v6]:port, unix:/path. */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "http.h"

#define BACKLOG 511

int sl_listen_socket(const struct sl_sockaddr *addr, char *err, size_t errlen)
{
    int family = addr->ss.ss_family;
    int one = 1;
    int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        goto fail;
    if (family == AF_UNIX) {
        /* A socket file left by a previous run would make bind fail; anything else at the
         * path is not ours to remove. */
        const char *path = ((const struct sockaddr_un *)&addr->ss)->sun_path;
        struct stat st;
        if (stat(path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(path);
    } else {
        /* SO_REUSEPORT: every worker binds its own socket and the kernel spreads
         * connections across them, with no shared accept lock. */
        if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
            setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
            goto fail;
        if (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one) < 0)
            goto fail;
    }
    if (bind(fd, (const struct sockaddr *)&addr->ss, addr->len) < 0 || listen(fd, BACKLOG) < 0)
        goto fail;
    return fd;

fail:
    snprintf(err, errlen, "listen %s: %s", addr->text, strerror(errno));
    if (fd >= 0)
        close(fd);
    return -1;
}
