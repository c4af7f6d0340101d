/* Linux personality test (systests/tests/linux_sockets.rs): AF_INET sockets through linuxd and
 * the network service, against peers the test runs on the host (reached through QEMU's user
 * networking: the host is 10.0.2.2).
 *
 * Usage: sockets <host> <tcp-echo-port> <udp-echo-port> <closed-port> <listen-port>
 *   - TCP: connect, send 200 KiB in pieces (length-prefixed: the host's echo server sends back
 *     exactly that many bytes), receive them back with poll and read, compare; getsockname,
 *     getpeername; a non-blocking connect (EINPROGRESS, poll POLLOUT, SO_ERROR 0).
 *   - UDP: sendto the host's echo, recvfrom the answer and its sender; connect + send + recv.
 *   - Errors: a refused connection (ECONNREFUSED), recv on an unconnected TCP socket
 *     (ENOTCONN), a bad address pointer (EFAULT), a short address (EINVAL), a bad descriptor.
 * The output is the same on the host (against 127.0.0.1) and on Tutti (against 10.0.2.2).
 *   - Server: listen on <listen-port>, print "R listening", accept one connection (the host
 *     connects through a forwarded port), read a line, answer "hello <line>", close.
 * Prints "R " lines, ends with "R done" and status 0. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1) n = sizeof line - 1;
    if (write(1, line, n) != n) _exit(99);
}

static const char *err(void) { return strerrorname_np(errno) ? strerrorname_np(errno) : "?"; }

static struct sockaddr_in addr_of(const char *host, int port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    return a;
}

static int write_all(int fd, const unsigned char *p, size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w <= 0) return -1;
        p += w;
        n -= w;
    }
    return 0;
}

static void tcp(const char *host, int port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = addr_of(host, port);
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) {
        say("R tcp connect failed %s\n", err());
        return;
    }
    struct sockaddr_in me, peer;
    socklen_t len = sizeof me;
    getsockname(s, (struct sockaddr *)&me, &len);
    len = sizeof peer;
    getpeername(s, (struct sockaddr *)&peer, &len);
    char peer_text[32];
    inet_ntop(AF_INET, &peer.sin_addr, peer_text, sizeof peer_text);
    say("R tcp connected: local family %d, peer is the host %d, port %d\n", me.sin_family, strcmp(peer_text, host) == 0,
        ntohs(peer.sin_port) == port);
    enum { TOTAL = 200 * 1024 };
    static unsigned char out[TOTAL], back[TOTAL];
    for (int i = 0; i < TOTAL; i++) out[i] = (unsigned char)(i * 31 + 7);
    uint32_t header = htonl(TOTAL);
    if (write_all(s, (unsigned char *)&header, 4) != 0 || write_all(s, out, TOTAL) != 0) {
        say("R tcp send failed %s\n", err());
        return;
    }
    size_t got = 0;
    int polls = 0;
    while (got < TOTAL) {
        struct pollfd p = {s, POLLIN, 0};
        if (poll(&p, 1, 20000) != 1 || !(p.revents & POLLIN)) {
            say("R tcp poll failed\n");
            return;
        }
        polls++;
        ssize_t r = read(s, back + got, TOTAL - got);
        if (r <= 0) {
            say("R tcp read ended early at %zu: %s\n", got, r == 0 ? "EOF" : err());
            return;
        }
        got += r;
    }
    say("R tcp echo: %zu bytes back, equal %d, polled %d\n", got, memcmp(out, back, TOTAL) == 0, polls > 0);
    char c;
    ssize_t r = read(s, &c, 1);
    say("R tcp end of stream after the host closed: %zd\n", r);
    close(s);

    /* Non-blocking connect. */
    s = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int rc = connect(s, (struct sockaddr *)&a, sizeof a);
    say("R nonblocking connect: %s\n", rc == 0 || errno == EINPROGRESS ? "started" : err());
    struct pollfd p = {s, POLLOUT, 0};
    int ready = poll(&p, 1, 20000);
    int error = -1;
    len = sizeof error;
    getsockopt(s, SOL_SOCKET, SO_ERROR, &error, &len);
    say("R nonblocking connect: poll %d POLLOUT %d, SO_ERROR %d\n", ready, !!(p.revents & POLLOUT), error);
    char buf[8];
    r = recv(s, buf, sizeof buf, MSG_DONTWAIT);
    say("R recv with nothing there: %zd %s\n", r, r < 0 ? err() : "");
    close(s);
}

static void udp(const char *host, int port) {
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct sockaddr_in a = addr_of(host, port);
    const char msg[] = "datagram one";
    ssize_t n = sendto(s, msg, sizeof msg - 1, 0, (struct sockaddr *)&a, sizeof a);
    char buf[128];
    struct sockaddr_in from;
    socklen_t len = sizeof from;
    struct pollfd p = {s, POLLIN, 0};
    int ready = poll(&p, 1, 20000);
    ssize_t r = recvfrom(s, buf, sizeof buf - 1, 0, (struct sockaddr *)&from, &len);
    buf[r > 0 ? r : 0] = 0;
    say("R udp sendto %zd, poll %d, recvfrom %zd \"%s\" from the host %d\n", n, ready, r, buf,
        from.sin_addr.s_addr == a.sin_addr.s_addr && from.sin_port == a.sin_port);
    if (connect(s, (struct sockaddr *)&a, sizeof a) != 0) say("R udp connect failed %s\n", err());
    n = send(s, "two", 3, 0);
    p.revents = 0;
    poll(&p, 1, 20000);
    r = recv(s, buf, sizeof buf - 1, 0);
    buf[r > 0 ? r : 0] = 0;
    say("R udp connected send %zd recv \"%s\"\n", n, buf);
    close(s);
}

static void errors(const char *host, int closed_port) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = addr_of(host, closed_port);
    int rc = connect(s, (struct sockaddr *)&a, sizeof a);
    say("R connect to a closed port: %d %s\n", rc, rc ? err() : "");
    close(s);
    s = socket(AF_INET, SOCK_STREAM, 0);
    char c;
    ssize_t r = recv(s, &c, 1, 0);
    say("R recv on an unconnected TCP socket: %zd %s\n", r, r < 0 ? err() : "");
    rc = connect(s, (struct sockaddr *)8, sizeof a);
    say("R connect with a bad address: %d %s\n", rc, rc ? err() : "");
    rc = bind(s, (struct sockaddr *)&a, 4);
    say("R bind with a short address: %d %s\n", rc, rc ? err() : "");
    close(s);
    rc = close(12345);
    say("R close of a bad descriptor: %d %s\n", rc, rc ? err() : "");
}

static void server(int port) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = addr_of("0.0.0.0", port);
    if (bind(s, (struct sockaddr *)&a, sizeof a) != 0 || listen(s, 4) != 0) {
        say("R listen failed %s\n", err());
        return;
    }
    int listening = 0;
    socklen_t len = sizeof listening;
    getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len);
    say("R listening %d\n", listening);
    struct sockaddr_in peer;
    len = sizeof peer;
    int c = accept4(s, (struct sockaddr *)&peer, &len, SOCK_CLOEXEC);
    if (c < 0) {
        say("R accept failed %s\n", err());
        return;
    }
    say("R accepted a connection: family %d, address length %u\n", peer.sin_family, len);
    char line[128];
    size_t got = 0;
    while (got < sizeof line - 1) {
        ssize_t r = read(c, line + got, 1);
        if (r <= 0 || line[got] == '\n') break;
        got++;
    }
    line[got] = 0;
    char answer[160];
    int n = snprintf(answer, sizeof answer, "hello %s\n", line);
    write_all(c, (unsigned char *)answer, n);
    say("R served \"%s\"\n", line);
    close(c);
    close(s);
}

int main(int argc, char **argv) {
    if (argc != 6) {
        say("usage: sockets <host> <tcp-echo-port> <udp-echo-port> <closed-port> <listen-port>\n");
        return 2;
    }
    const char *host = argv[1];
    tcp(host, atoi(argv[2]));
    udp(host, atoi(argv[3]));
    errors(host, atoi(argv[4]));
    server(atoi(argv[5]));
    say("R done\n");
    return 0;
}
