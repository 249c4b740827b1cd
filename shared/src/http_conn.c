/* http_conn.c: the client connection under a request, for handlers that
 * wait (a waiting read, ?wait=S): they must notice when the client goes
 * away, so that they stop before claiming messages nobody would receive.
 *
 * civetweb does not hand out a connection's socket, so this finds it: the
 * one socket of this process whose peer is the request's remote address
 * and port and whose local port is the request's server port — a TCP
 * connection is unique by those. Linux only (/proc/self/fd); -1 when not
 * found, and the caller then waits without that check. Only poll(2) is
 * ever done on the socket, never a read or a write. */
#define _GNU_SOURCE
#include "snap/http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <civetweb.h>

/* 1 when sa is addr:port (addr as civetweb writes it). */
static int same_endpoint(const struct sockaddr_storage *sa, const char *addr, int port)
{
    char text[INET6_ADDRSTRLEN];

    if (sa->ss_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        return ntohs(in->sin_port) == port &&
               inet_ntop(AF_INET, &in->sin_addr, text, sizeof text) != NULL &&
               strcmp(text, addr) == 0;
    }
    if (sa->ss_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        return ntohs(in6->sin6_port) == port &&
               inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text) != NULL &&
               strcmp(text, addr) == 0;
    }
    return 0;
}

static int local_port(const struct sockaddr_storage *sa)
{
    if (sa->ss_family == AF_INET) return ntohs(((const struct sockaddr_in *)sa)->sin_port);
    if (sa->ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
    return -1;
}

int http_client_fd(const struct http_req *r)
{
    const struct mg_request_info *ri = r->ri;
    DIR *d;
    struct dirent *e;
    int found = -1;

    if (ri == NULL || (d = opendir("/proc/self/fd")) == NULL) return -1;
    while (found < 0 && (e = readdir(d)) != NULL) {
        char *end;
        long fd = strtol(e->d_name, &end, 10);
        struct stat st;
        struct sockaddr_storage peer, self;
        socklen_t plen = sizeof peer, slen = sizeof self;

        if (*end != '\0' || fd < 0 || fd == dirfd(d)) continue;
        if (fstat((int)fd, &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
        if (getpeername((int)fd, (struct sockaddr *)&peer, &plen) != 0 ||
            getsockname((int)fd, (struct sockaddr *)&self, &slen) != 0)
            continue;
        if (same_endpoint(&peer, ri->remote_addr, ri->remote_port) &&
            local_port(&self) == ri->server_port)
            found = (int)fd;
    }
    closedir(d);
    return found;
}

int http_client_gone(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLRDHUP};

    if (fd < 0 || poll(&p, 1, 0) != 1) return 0;
    return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}
