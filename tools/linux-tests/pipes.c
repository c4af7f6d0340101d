/* Linux personality test (systests/tests/linux_procs.rs): pipes. pipe and pipe2 (O_CLOEXEC,
 * O_NONBLOCK), short reads, end of file once every writer is closed (also a forked child's copy),
 * 1 MiB between a parent and a child with a checksum, atomic writes of at most PIPE_BUF bytes from
 * two writers, dup2 of a pipe onto a child's stdout before it execs this program in its "writer"
 * mode, EPIPE with SIGPIPE ignored and death by SIGPIPE by default, EAGAIN, and poll, ppoll,
 * select and pselect readiness (POLLIN, POLLOUT, POLLHUP, POLLERR, timeouts, a blocking poll
 * woken by a child).
 *
 * Usage: pipes. Prints only deterministic lines starting with "R " with write(2) (no stdio
 * buffer to duplicate at fork); only the parent prints. Ends with "R done" and status 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1) n = sizeof line - 1;
    if (write(1, line, n) != n) _exit(99);
}

static const char *status_text(int status) {
    static char texts[4][64];
    static int next;
    char *text = texts[next++ % 4];
    if (WIFEXITED(status))
        snprintf(text, sizeof texts[0], "exited %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(text, sizeof texts[0], "killed by %d", WTERMSIG(status));
    else
        snprintf(text, sizeof texts[0], "other %#x", status);
    return text;
}

static const char *reap(pid_t pid) {
    int status = 0;
    if (waitpid(pid, &status, 0) != pid) return "waitpid failed";
    return status_text(status);
}

/* poll's revents as flag names (in one of four buffers, so that a line can show several). */
static const char *events(short revents) {
    static char texts[4][64];
    static int next;
    char *text = texts[next++ % 4];
    text[0] = 0;
    if (revents & POLLIN) strcat(text, "IN|");
    if (revents & POLLOUT) strcat(text, "OUT|");
    if (revents & POLLHUP) strcat(text, "HUP|");
    if (revents & POLLERR) strcat(text, "ERR|");
    if (revents & POLLNVAL) strcat(text, "NVAL|");
    size_t n = strlen(text);
    if (n) text[n - 1] = 0;
    else strcpy(text, "none");
    return text;
}

/* Reads until end of file (or an error); returns the byte count. */
static long drain(int fd) {
    char buf[4096];
    long total = 0;
    ssize_t n;
    while ((n = read(fd, buf, sizeof buf)) > 0) total += n;
    return n < 0 ? -1 : total;
}

/* The bytes of the 1 MiB transfer: a simple generator, and FNV-1a over them. */
static uint8_t pattern(uint32_t i) { return (uint8_t)((i * 2654435761u) >> 13); }

static uint32_t fnv(uint32_t hash, const uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) hash = (hash ^ p[i]) * 16777619u;
    return hash;
}

enum { BIG = 1 << 20, RECORD = 64, RECORDS = 200 };

/* The "writer" mode, run with stdout on a pipe: stdio output, flushed at exit. */
static int writer(void) {
    printf("line one\n");
    printf("line two %d\n", 2);
    fprintf(stdout, "last line\n");
    return 6;
}

int main(int argc, char **argv) {
    if (argc >= 2 && strcmp(argv[1], "writer") == 0) return writer();
    int p[2], q[2];
    char buf[256];

    /* pipe and pipe2 flags */
    say("R pipe %d\n", pipe(p));
    say("R pipe fd flags %d %d access modes %d %d\n", fcntl(p[0], F_GETFD), fcntl(p[1], F_GETFD),
        fcntl(p[0], F_GETFL) & O_ACCMODE, fcntl(p[1], F_GETFL) & O_ACCMODE);
    say("R pipe2 O_CLOEXEC %d\n", pipe2(q, O_CLOEXEC));
    say("R pipe2 fd flags %d %d\n", fcntl(q[0], F_GETFD), fcntl(q[1], F_GETFD));
    close(q[0]);
    close(q[1]);
    errno = 0;
    int r = pipe2(q, 0x10); /* not a pipe2 flag */
    say("R pipe2 bad flags %d errno %d\n", r, errno);

    /* write, read, short reads, end of file */
    say("R write %ld\n", (long)write(p[1], "hello", 5));
    say("R write %ld\n", (long)write(p[1], " world", 6));
    memset(buf, 0, sizeof buf);
    say("R read 3: %ld '%s'\n", (long)read(p[0], buf, 3), buf);
    memset(buf, 0, sizeof buf);
    say("R read the rest: %ld '%s'\n", (long)read(p[0], buf, sizeof buf), buf);
    say("R write after reading %ld\n", (long)write(p[1], "x", 1));
    close(p[1]);
    long r1 = read(p[0], buf, sizeof buf), r2 = read(p[0], buf, sizeof buf);
    long r3 = read(p[0], buf, sizeof buf);
    say("R read then EOF: %ld %ld %ld\n", r1, r2, r3);
    close(p[0]);
    errno = 0;
    r = write(p[1], "x", 1);
    say("R write to a closed fd %d errno %d\n", r, errno);
    pipe(p);
    errno = 0;
    r = write(p[0], "x", 1);
    say("R write to the read end %d errno %d\n", r, errno);
    errno = 0;
    r = read(p[1], buf, 1);
    say("R read from the write end %d errno %d\n", r, errno);
    errno = 0;
    r = lseek(p[0], 0, SEEK_SET);
    say("R lseek on a pipe %d errno %d\n", r, errno);
    close(p[0]);
    close(p[1]);

    /* end of file only when the child's copy of the write end is closed too */
    pipe(p);
    pipe(q);
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        close(q[1]);
        char go;
        read(q[0], &go, 1); /* wait until the parent has closed its write end */
        write(p[1], "from child", 10);
        _exit(0);
    }
    close(p[1]);
    close(q[0]);
    write(q[1], "g", 1);
    long total = drain(p[0]);
    say("R child's bytes then EOF %ld, child %s\n", total, reap(pid));
    close(p[0]);
    close(q[1]);

    /* 1 MiB from a child, written and read in odd sizes, with checksums both ways */
    pipe(p);
    pipe(q);
    pid = fork();
    if (pid == 0) {
        close(p[0]);
        close(q[0]);
        static uint8_t data[BIG];
        for (uint32_t i = 0; i < BIG; i++) data[i] = pattern(i);
        uint32_t sum = fnv(2166136261u, data, BIG);
        size_t done = 0, chunk = 1;
        while (done < BIG) {
            size_t n = chunk < BIG - done ? chunk : BIG - done;
            ssize_t w = write(p[1], data + done, n);
            if (w <= 0) _exit(3);
            done += w;
            chunk = chunk * 3 + 7;
            if (chunk > 100000) chunk = 13;
        }
        close(p[1]);
        write(q[1], &sum, sizeof sum);
        _exit(0);
    }
    close(p[1]);
    close(q[1]);
    uint32_t sum = 2166136261u, theirs = 0;
    long got = 0;
    int in_order = 1;
    size_t want = 1;
    for (;;) {
        static uint8_t chunk[70000];
        ssize_t n = read(p[0], chunk, want);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) in_order &= chunk[i] == pattern((uint32_t)(got + i));
        sum = fnv(sum, chunk, n);
        got += n;
        want = want * 5 + 3;
        if (want > sizeof chunk) want = 1;
    }
    read(q[0], &theirs, sizeof theirs);
    say("R 1 MiB: %ld bytes, in order %d, sum %08x, sums match %d, child %s\n", got, in_order, sum,
        sum == theirs, reap(pid));
    close(p[0]);
    close(q[0]);

    /* two writers of 64-byte records: each write is atomic (at most PIPE_BUF) */
    pipe(p);
    pid_t writers[2];
    for (int w = 0; w < 2; w++) {
        writers[w] = fork();
        if (writers[w] == 0) {
            close(p[0]);
            char record[RECORD];
            memset(record, 'A' + w, sizeof record);
            for (int i = 0; i < RECORDS; i++)
                if (write(p[1], record, sizeof record) != sizeof record) _exit(1);
            _exit(0);
        }
    }
    close(p[1]);
    int counts[2] = {0, 0}, mixed = 0;
    for (;;) {
        char record[RECORD];
        size_t have = 0;
        while (have < sizeof record) {
            ssize_t n = read(p[0], record + have, sizeof record - have);
            if (n <= 0) break;
            have += n;
        }
        if (have < sizeof record) break;
        int c = record[0] - 'A';
        for (size_t i = 1; i < sizeof record; i++) mixed |= record[i] != record[0];
        if (c == 0 || c == 1) counts[c]++;
    }
    const char *first = reap(writers[0]);
    say("R atomic records: A %d B %d mixed %d, PIPE_BUF >= 512 %d, writers %s, %s\n", counts[0], counts[1],
        mixed, PIPE_BUF >= 512, first, reap(writers[1]));
    close(p[0]);

    /* dup2 onto stdout in a child that execs this program as a writer */
    pipe2(p, O_CLOEXEC);
    pid = fork();
    if (pid == 0) {
        if (dup2(p[1], 1) != 1) _exit(90);
        char *args[] = {argv[0], "writer", NULL};
        execve(argv[0], args, environ);
        _exit(91);
    }
    close(p[1]);
    char out[256] = {0};
    size_t have = 0;
    ssize_t n;
    while (have < sizeof out - 1 && (n = read(p[0], out + have, sizeof out - 1 - have)) > 0) have += n;
    close(p[0]);
    const char *writer_status = reap(pid);
    for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) say("R writer said: %s\n", line);
    say("R writer %s\n", writer_status);
    pipe(p);
    say("R dup2 onto itself %d\n", dup2(p[0], p[0]) == p[0]);
    int copy = dup2(p[1], 20);
    write(copy, "via copy", 8);
    close(copy);
    close(p[1]);
    memset(buf, 0, sizeof buf);
    r1 = read(p[0], buf, sizeof buf);
    r2 = read(p[0], buf + 100, sizeof buf - 100);
    say("R read what the dup2 copy wrote %ld '%s' then EOF %ld\n", r1, buf, r2);
    close(p[0]);

    /* EPIPE with SIGPIPE ignored, death by SIGPIPE by default */
    signal(SIGPIPE, SIG_IGN);
    pipe(p);
    close(p[0]);
    errno = 0;
    r = write(p[1], "x", 1);
    say("R write without readers, SIGPIPE ignored: %d errno %d\n", r, errno);
    signal(SIGPIPE, SIG_DFL);
    pid = fork();
    if (pid == 0) {
        write(p[1], "x", 1);
        _exit(0);
    }
    say("R write without readers, SIGPIPE default: child %s\n", reap(pid));
    close(p[1]);

    /* EAGAIN */
    pipe2(p, O_NONBLOCK);
    say("R pipe2 O_NONBLOCK status flag %d\n", (fcntl(p[0], F_GETFL) & O_NONBLOCK) != 0);
    errno = 0;
    r = read(p[0], buf, sizeof buf);
    say("R nonblocking read of an empty pipe %d errno %d\n", r, errno);
    long filled = 0;
    for (;;) {
        static char block[4096];
        ssize_t w = write(p[1], block, sizeof block);
        if (w <= 0) {
            say("R nonblocking writes fill the pipe then %ld errno %d, capacity >= 4096 %d\n", (long)w, errno,
                filled >= 4096);
            break;
        }
        filled += w;
        if (filled > (64L << 20)) {
            say("R the pipe never filled\n");
            break;
        }
    }
    say("R drained all %d\n", drain(p[0]) == -1 && errno == EAGAIN);
    close(p[0]);
    close(p[1]);
    pipe(p);
    fcntl(p[0], F_SETFL, fcntl(p[0], F_GETFL) | O_NONBLOCK);
    errno = 0;
    r = read(p[0], buf, 1);
    say("R F_SETFL O_NONBLOCK read %d errno %d\n", r, errno);
    close(p[1]);
    say("R nonblocking read at EOF %ld\n", (long)read(p[0], buf, 1));
    close(p[0]);

    /* poll */
    pipe(p);
    struct pollfd fds[2] = {{.fd = p[0], .events = POLLIN}, {.fd = p[1], .events = POLLOUT}};
    r = poll(fds, 1, 0);
    say("R poll empty, timeout 0: %d %s\n", r, events(fds[0].revents));
    r = poll(fds, 1, 30);
    say("R poll empty, timeout 30 ms: %d %s\n", r, events(fds[0].revents));
    r = poll(fds + 1, 1, 0);
    say("R poll write end: %d %s\n", r, events(fds[1].revents));
    write(p[1], "abc", 3);
    r = poll(fds, 2, -1);
    say("R poll after a write: %d %s / %s\n", r, events(fds[0].revents), events(fds[1].revents));
    close(p[1]);
    r = poll(fds, 1, -1);
    say("R poll data and no writers: %d %s\n", r, events(fds[0].revents));
    read(p[0], buf, sizeof buf);
    r = poll(fds, 1, -1);
    say("R poll no writers: %d %s\n", r, events(fds[0].revents));
    fds[0].events = 0;
    r = poll(fds, 1, 0);
    say("R poll no events asked: %d %s\n", r, events(fds[0].revents));
    close(p[0]);
    struct pollfd bad[2] = {{.fd = p[0], .events = POLLIN}, {.fd = -1, .events = POLLIN}};
    r = poll(bad, 2, 0);
    say("R poll closed fd and fd -1: %d %s / %s\n", r, events(bad[0].revents), events(bad[1].revents));
    pipe(p);
    close(p[0]);
    fds[1].fd = p[1];
    r = poll(fds + 1, 1, 0);
    say("R poll write end without readers: %d %s\n", r, events(fds[1].revents));
    close(p[1]);
    /* a blocking poll woken by a child's write */
    pipe(p);
    pipe(q);
    pid = fork();
    if (pid == 0) {
        close(p[0]);
        close(q[1]);
        char go;
        read(q[0], &go, 1);
        write(p[1], "late", 4);
        read(q[0], &go, 1);
        _exit(0);
    }
    close(p[1]);
    close(q[0]);
    write(q[1], "g", 1);
    fds[0] = (struct pollfd){.fd = p[0], .events = POLLIN};
    r = poll(fds, 1, -1);
    say("R blocking poll woken by a child: %d %s\n", r, events(fds[0].revents));
    close(q[1]);
    say("R child %s\n", reap(pid));
    struct timespec zero = {0, 0};
    r = ppoll(fds, 1, &zero, NULL);
    say("R ppoll data and no writers: %d %s\n", r, events(fds[0].revents));
    close(p[0]);

    /* select and pselect */
    pipe(p);
    fd_set rd, wr;
    struct timeval tv = {0, 0};
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    r = select(p[0] + 1, &rd, NULL, NULL, &tv);
    say("R select empty, timeout 0: %d %d\n", r, FD_ISSET(p[0], &rd));
    tv = (struct timeval){0, 30000};
    FD_SET(p[0], &rd);
    r = select(p[0] + 1, &rd, NULL, NULL, &tv);
    say("R select empty, timeout 30 ms: %d %d\n", r, FD_ISSET(p[0], &rd));
    FD_ZERO(&wr);
    FD_SET(p[1], &wr);
    r = select(p[1] + 1, NULL, &wr, NULL, NULL);
    say("R select write end: %d %d\n", r, FD_ISSET(p[1], &wr));
    write(p[1], "z", 1);
    FD_SET(p[0], &rd);
    FD_SET(p[1], &wr);
    int maxfd = p[0] > p[1] ? p[0] : p[1];
    r = select(maxfd + 1, &rd, &wr, NULL, NULL);
    say("R select both after a write: %d %d %d\n", r, FD_ISSET(p[0], &rd), FD_ISSET(p[1], &wr));
    read(p[0], buf, 1);
    close(p[1]);
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    struct timespec ts = {5, 0};
    r = pselect(p[0] + 1, &rd, NULL, NULL, &ts, NULL);
    say("R pselect no writers (EOF is readable): %d %d\n", r, FD_ISSET(p[0], &rd));
    int closed = p[0];
    close(p[0]);
    FD_ZERO(&rd);
    FD_SET(closed, &rd);
    tv = (struct timeval){0, 0};
    errno = 0;
    r = select(closed + 1, &rd, NULL, NULL, &tv);
    say("R select on a closed fd %d errno %d\n", r, errno);

    say("R done\n");
    return 0;
}
