/* Linux personality test (systests/tests/linux_procs.rs): processes. fork and wait4/waitpid
 * statuses (exit codes, deaths by SIGKILL, SIGTERM and abort, a kill from the parent), the
 * getpid/getppid relations, execve of this same program (argv[0]) with arguments, an
 * environment and close-on-exec descriptors, execve of a missing file (ENOENT) and of a text file
 * (ENOEXEC), vfork + _exit and vfork + execve, WNOHANG, ECHILD, several children reaped in any
 * order, and process groups and sessions.
 *
 * Usage: procs [scratch-dir] (default /tmp; a file "procs-text" is written there).
 * Prints only deterministic lines starting with "R " (relations, never pids), through write(2)
 * so that no stdio buffer is duplicated by fork; only the parent prints, except the exec'd child,
 * which prints while the parent waits for it. Ends with "R done" and status 0. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* printf to fd 1 with one write(2), unbuffered. */
static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1) n = sizeof line - 1;
    if (write(1, line, n) != n) _exit(99);
}

/* A status as text: "exited N", "killed by N" or "other 0x..". */
static const char *status_text(int status) {
    static char text[64];
    if (WIFEXITED(status))
        snprintf(text, sizeof text, "exited %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(text, sizeof text, "killed by %d", WTERMSIG(status));
    else
        snprintf(text, sizeof text, "other %#x", status);
    return text;
}

/* Forks a child that runs `body` and ends with its return value; returns the child's pid. */
static pid_t spawn(int (*body)(void *), void *arg) {
    pid_t pid = fork();
    if (pid < 0) {
        say("R fork failed errno %d\n", errno);
        exit(1);
    }
    if (pid == 0) _exit(body(arg));
    return pid;
}

/* Waits for `pid`; prints "R <what> <status> same-pid <0|1>". */
static int reap(const char *what, pid_t pid) {
    int status = 0;
    pid_t got = waitpid(pid, &status, 0);
    say("R %s %s same-pid %d\n", what, status_text(status), got == pid);
    return status;
}

static int exit_7(void *arg) {
    (void)arg;
    return 7;
}

static int exit_big(void *arg) {
    (void)arg;
    return 256 + 3; /* only the low 8 bits reach the parent */
}

static int via_exit(void *arg) {
    (void)arg;
    exit(12); /* exit(3) rather than _exit(2): atexit handlers and stdio flushing run */
}

static int raise_signal(void *arg) {
    raise((int)(long)arg);
    return 50;
}

static int kill_self(void *arg) {
    kill(getpid(), (int)(long)arg);
    return 51;
}

static int call_abort(void *arg) {
    (void)arg;
    abort();
}

/* The child's view of its parent and itself, sent through a pipe. */
struct ids {
    pid_t pid, ppid, parent_expected;
};

static int report_ids(void *arg) {
    int *fds = arg;
    struct ids ids = {getpid(), getppid(), 0};
    close(fds[0]);
    return write(fds[1], &ids, sizeof ids) == sizeof ids ? 0 : 1;
}

/* Blocks until a byte (or end of file) arrives on the pipe, then exits with that byte. */
static int wait_for_byte(void *arg) {
    int *fds = arg;
    char c = 0;
    close(fds[1]);
    ssize_t n = read(fds[0], &c, 1);
    return n == 1 ? c : 40 + (int)n;
}

static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The mode of the program when it execs itself: "exec-child <pid> <cloexec-fd> <kept-fd> word". */
static int exec_child(int argc, char **argv) {
    say("R exec child argc %d argv1 %s argv0 is the path %d\n", argc, argv[1], strstr(argv[0], "procs") != NULL);
    int envc = 0;
    for (char **e = environ; *e; e++) envc++;
    const char *value = getenv("TUTTI_TEST");
    say("R exec child envc %d TUTTI_TEST=%s\n", envc, value ? value : "(unset)");
    say("R exec child keeps pid %d\n", getpid() == (pid_t)atol(argv[2]));
    int cloexec_fd = atoi(argv[3]), kept_fd = atoi(argv[4]);
    errno = 0;
    int r = fcntl(cloexec_fd, F_GETFD);
    say("R exec child cloexec fd closed %d errno %d\n", r == -1, errno);
    say("R exec child plain fd open %d\n", fcntl(kept_fd, F_GETFD) == 0);
    /* The parent's signal dispositions: ignored stays ignored, handled becomes default. */
    struct sigaction sa;
    sigaction(SIGUSR2, NULL, &sa);
    say("R exec child SIGUSR2 still ignored %d\n", sa.sa_handler == SIG_IGN);
    sigaction(SIGUSR1, NULL, &sa);
    say("R exec child SIGUSR1 back to default %d\n", sa.sa_handler == SIG_DFL);
    return 5;
}

static void on_usr1(int sig) {
    (void)sig;
}

/* A big writable mapping (shared copy-on-write by linuxd's fork): the child sees the memory as
 * it was at the fork (not the parent's later write), its writes, partial unmap and mprotect are
 * its own, and the parent's memory stays intact and writable. */
static void fork_big_memory(void) {
    enum { BIG = 1 << 20 };
    unsigned char *m = mmap(0, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    long expected = 0;
    for (int i = 0; i < BIG; i++) {
        m[i] = (unsigned char)(i * 7);
        expected += m[i];
    }
    int fds[2];
    if (pipe(fds) != 0) return;
    pid_t pid = fork();
    if (pid == 0) {
        close(fds[1]);
        unsigned char go;
        if (read(fds[0], &go, 1) != 1) _exit(9);
        long sum = 0;
        for (int i = 0; i < BIG; i++) sum += m[i];
        for (int i = 0; i < BIG; i += 4096) m[i] = 1;
        munmap(m + 4096, 8192);
        mprotect(m + BIG / 2, 4096, PROT_READ);
        _exit(sum == expected ? 20 : 30);
    }
    close(fds[0]);
    m[100] = 0xab; /* after the fork: the child must not see it */
    if (write(fds[1], "g", 1) != 1) return;
    int status = 0;
    waitpid(pid, &status, 0);
    int intact = 1;
    for (int i = 0; i < BIG; i++) {
        unsigned char want = i == 100 ? 0xab : (unsigned char)(i * 7);
        if (m[i] != want) intact = 0;
    }
    m[BIG / 2] = 5;
    say("R fork with 1 MiB: child %s (20: it saw the memory of the fork), parent's memory intact %d, still writable %d\n",
        status_text(status), intact, m[BIG / 2] == 5);
    munmap(m, BIG);
    close(fds[1]);
}

int main(int argc, char **argv) {
    if (argc >= 5 && strcmp(argv[1], "exec-child") == 0) return exec_child(argc, argv);
    if (argc >= 3 && strcmp(argv[1], "exit-with") == 0) return atoi(argv[2]);
    const char *dir = argc >= 2 ? argv[1] : "/tmp";
    const char *self = argv[0];

    /* fork and exit statuses */
    pid_t pid = spawn(exit_7, NULL);
    say("R fork returned a child pid %d\n", pid > 0 && pid != getpid());
    reap("exit 7", pid);
    reap("exit 259", spawn(exit_big, NULL));
    reap("exit() 12", spawn(via_exit, NULL));
    pid = spawn(exit_7, NULL);
    int status = 0;
    struct rusage usage;
    pid_t got = wait4(pid, &status, 0, &usage);
    say("R wait4 %s same-pid %d\n", status_text(status), got == pid);
    pid = spawn(exit_7, NULL);
    got = wait4(-1, &status, 0, NULL);
    say("R wait4 any %s same-pid %d\n", status_text(status), got == pid);
    pid = spawn(exit_7, NULL);
    siginfo_t info;
    memset(&info, 0, sizeof info);
    int r = waitid(P_PID, pid, &info, WEXITED);
    say("R waitid %d code %d status %d same-pid %d\n", r, info.si_code == CLD_EXITED, info.si_status,
        info.si_pid == pid);

    fork_big_memory();

    /* deaths by signals */
    reap("raise SIGKILL", spawn(raise_signal, (void *)(long)SIGKILL));
    reap("raise SIGTERM", spawn(raise_signal, (void *)(long)SIGTERM));
    reap("kill self SIGTERM", spawn(kill_self, (void *)(long)SIGTERM));
    reap("abort", spawn(call_abort, NULL));
    int fds[2];
    pipe(fds);
    pid = spawn(wait_for_byte, fds);
    close(fds[0]);
    say("R kill child %d\n", kill(pid, SIGTERM));
    reap("killed by parent", pid);
    close(fds[1]);

    /* pid relations */
    pipe(fds);
    pid = spawn(report_ids, fds);
    close(fds[1]);
    struct ids ids = {0, 0, 0};
    ssize_t n = read(fds[0], &ids, sizeof ids);
    close(fds[0]);
    reap("report ids", pid);
    say("R child read %d getpid matches fork %d getppid matches parent %d\n", n == sizeof ids,
        ids.pid == pid, ids.ppid == getpid());
    say("R parent pid differs from child %d\n", getpid() != pid);

    /* ECHILD with no children */
    errno = 0;
    r = waitpid(-1, &status, 0);
    say("R waitpid no children %d errno %d\n", r, errno);
    errno = 0;
    r = waitpid(-1, &status, WNOHANG);
    say("R waitpid WNOHANG no children %d errno %d\n", r, errno);
    errno = 0;
    r = waitpid(pid, &status, 0);
    say("R waitpid reaped pid %d errno %d\n", r, errno);

    /* WNOHANG with a running child, released through a pipe */
    pipe(fds);
    pid = spawn(wait_for_byte, fds);
    close(fds[0]);
    r = waitpid(pid, &status, WNOHANG);
    say("R WNOHANG running child %d\n", r);
    write(fds[1], "\x04", 1);
    close(fds[1]);
    reap("released child", pid);

    /* waiting for one child while another runs */
    pipe(fds);
    pid_t slow = spawn(wait_for_byte, fds);
    close(fds[0]);
    pid = spawn(exit_7, NULL);
    reap("specific child while another runs", pid);
    r = waitpid(slow, &status, WNOHANG);
    say("R the other still running %d\n", r);
    close(fds[1]); /* end of file: it exits with 40 */
    reap("other after EOF", slow);

    /* several children reaped in any order */
    enum { N = 5 };
    pid_t kids[N];
    for (int i = 0; i < N; i++) {
        kids[i] = fork();
        if (kids[i] == 0) _exit(20 + i);
    }
    int codes[N], matched = 0;
    for (int i = 0; i < N; i++) {
        got = wait(&status);
        codes[i] = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
        for (int j = 0; j < N; j++)
            if (kids[j] == got) {
                matched += codes[i] == 20 + j;
                kids[j] = -1;
            }
    }
    qsort(codes, N, sizeof codes[0], cmp_int);
    say("R reaped %d %d %d %d %d each from its own child %d\n", codes[0], codes[1], codes[2], codes[3],
        codes[4], matched == N);
    errno = 0;
    r = wait(&status);
    say("R then no more children %d errno %d\n", r, errno);

    /* execve of a missing file and of a text file: the call returns */
    char *noargs[] = {"x", NULL};
    errno = 0;
    r = execve("/no/such/program", noargs, environ);
    say("R execve missing %d errno %d\n", r, errno);
    char text_path[512];
    snprintf(text_path, sizeof text_path, "%s/procs-text", dir);
    int fd = open(text_path, O_CREAT | O_WRONLY | O_TRUNC, 0755);
    write(fd, "just some text, not a program\n", 30);
    close(fd);
    chmod(text_path, 0755);
    errno = 0;
    r = execve(text_path, noargs, environ);
    say("R execve text file %d errno %d\n", r, errno);
    unlink(text_path);

    /* execve of this program: arguments, environment, pid, close-on-exec, dispositions */
    int keep[2], cloexec[2];
    pipe(keep);
    pipe2(cloexec, O_CLOEXEC);
    signal(SIGUSR2, SIG_IGN);
    signal(SIGUSR1, on_usr1);
    pid = fork();
    if (pid == 0) {
        char pidtext[32], cloexec_text[16], keep_text[16];
        snprintf(pidtext, sizeof pidtext, "%ld", (long)getpid());
        snprintf(cloexec_text, sizeof cloexec_text, "%d", cloexec[0]);
        snprintf(keep_text, sizeof keep_text, "%d", keep[0]);
        char *args[] = {(char *)self, "exec-child", pidtext, cloexec_text, keep_text, NULL};
        char *env[] = {"TUTTI_TEST=42", "OTHER=x", NULL};
        execve(self, args, env);
        _exit(98);
    }
    reap("exec child", pid);
    signal(SIGUSR2, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    close(keep[0]);
    close(keep[1]);
    close(cloexec[0]);
    close(cloexec[1]);

    /* vfork */
    pid = vfork();
    if (pid == 0) _exit(3);
    reap("vfork _exit 3", pid);
    pid = vfork();
    if (pid == 0) {
        char *args[] = {(char *)self, "exit-with", "9", NULL};
        execve(self, args, environ);
        _exit(97);
    }
    reap("vfork execve exit 9", pid);

    /* process groups and sessions */
    pid_t pgrp = getpgrp();
    say("R getpgid(0) is getpgrp %d\n", getpgid(0) == pgrp);
    pipe(fds);
    int report[2];
    pipe(report);
    pid = fork();
    if (pid == 0) {
        close(fds[1]);
        close(report[0]);
        char same = getpgrp() == pgrp ? '1' : '0';
        write(report[1], &same, 1); /* before the parent moves us to a group of our own */
        int set = setpgid(0, 0);
        int own = getpgrp() == getpid();
        char c;
        read(fds[0], &c, 1); /* the parent looks at our group meanwhile */
        pid_t sid = setsid(); /* EPERM: a group leader */
        int sid_errno = errno;
        char line[128];
        int len = snprintf(line, sizeof line, " %d %d %d %d", set, own, sid == -1, sid_errno == EPERM);
        write(report[1], line, len);
        _exit(0);
    }
    close(fds[0]);
    close(report[1]);
    char line[128] = {0};
    read(report[0], line, 1);
    /* The child may not have called setpgid yet: the parent sets it too (as shells do). */
    r = setpgid(pid, pid);
    say("R parent setpgid child %d\n", r == 0 || errno == EACCES);
    say("R getpgid(child) is child %d\n", getpgid(pid) == pid);
    write(fds[1], "x", 1);
    close(fds[1]);
    for (size_t done = 1; done < sizeof line - 1;) {
        n = read(report[0], line + done, sizeof line - 1 - done);
        if (n <= 0) break;
        done += n;
    }
    close(report[0]);
    say("R child inherited group, setpgid, leads, setsid refused, errno EPERM: %s\n", line);
    reap("group child", pid);

    pipe(report);
    pid = fork();
    if (pid == 0) {
        close(report[0]);
        pid_t sid = setsid();
        char line[128];
        int len = snprintf(line, sizeof line, "%d %d %d %d", sid == getpid(), getsid(0) == getpid(),
                           getpgrp() == getpid(), getpgid(0) == getpid());
        write(report[1], line, len);
        _exit(0);
    }
    close(report[1]);
    memset(line, 0, sizeof line);
    read(report[0], line, sizeof line - 1);
    close(report[0]);
    say("R setsid in a child: new session, getsid, new group, getpgid: %s\n", line);
    reap("session child", pid);
    errno = 0;
    r = setpgid(0, 424242); /* no such group in our session */
    say("R setpgid to a missing group %d errno %d\n", r, errno);

    say("R done\n");
    return 0;
}
