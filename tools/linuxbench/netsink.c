/*
 * netsink: the Linux side of Tutti's network benchmark (`cargo xtask bench net`).
 *
 * The same protocol as Tutti's os/programs/src/bin/net_sink.rs: listens on the TCP port given
 * as the only argument and, for each connection, counts the bytes until the peer closes its
 * side and hashes them (64-bit FNV-1a), then answers one line `<bytes> <fnv1a as 16 hex
 * digits>\n` on the same connection, prints `netsink: received <bytes> bytes, fnv1a <hex>`
 * and closes. Prints `netsink: listening on port <n>` once it listens.
 *
 * Build: gcc -static -O2 -Wall -Wextra -o netsink netsink.c   (glibc's libc.a)
 */

#include <inttypes.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static int fail(const char *what) {
    perror(what);
    return 1;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: netsink <port>\n");
        return 2;
    }
    int port = atoi(argv[1]);
    int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (listener < 0)
        return fail("socket");
    int one = 1;
    setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_ANY);
    if (bind(listener, (struct sockaddr *)&addr, sizeof addr) < 0)
        return fail("bind");
    if (listen(listener, 1) < 0)
        return fail("listen");
    printf("netsink: listening on port %d\n", port);
    fflush(stdout);
    static unsigned char buffer[64 * 1024];
    for (;;) {
        int c = accept(listener, NULL, NULL);
        if (c < 0)
            return fail("accept");
        uint64_t total = 0, hash = 0xcbf29ce484222325ull;
        for (;;) {
            ssize_t n = read(c, buffer, sizeof buffer);
            if (n < 0) {
                perror("read");
                break;
            }
            if (n == 0)
                break;
            for (ssize_t i = 0; i < n; i++)
                hash = (hash ^ buffer[i]) * 0x100000001b3ull;
            total += (uint64_t)n;
        }
        char report[64];
        int len = snprintf(report, sizeof report, "%" PRIu64 " %016" PRIx64 "\n", total, hash);
        if (write(c, report, (size_t)len) != len)
            perror("write");
        printf("netsink: received %" PRIu64 " bytes, fnv1a %016" PRIx64 "\n", total, hash);
        fflush(stdout);
        close(c);
    }
}
