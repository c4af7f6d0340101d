/* Linux personality test (systests/tests/linux.rs): random system calls with hostile arguments.
 * Children each make a few hundred calls chosen from every number up to 460 (but those that
 * would end the fuzzing itself: exit, exit_group, execve, process creation, kill, and calls that
 * may wait without a bound) with arguments mixed from small numbers, descriptors, valid and
 * invalid pointers, huge values and -1. The parent kills a child that has not ended after 300 ms
 * and starts the next. linuxd must answer every call (an errno is fine), kill only the offending
 * child when it faults, and stay up: the test then runs another program.
 *
 * Usage: sysfuzz <seed> <children> <calls-per-child>. Prints "R children <n> done" and status 0. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static uint64_t state;

static uint64_t next(void) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/* Calls left out: they end or replace the process, create processes, signal others, or can
 * wait without a bound (the parent's watchdog would end those, but they waste the run). */
static int skipped(long nr) {
    switch (nr) {
    case SYS_exit: case SYS_exit_group: case SYS_execve: case SYS_execveat:
    case SYS_fork: case SYS_vfork: case SYS_clone: case SYS_clone3:
    case SYS_kill: case SYS_tkill: case SYS_tgkill: case SYS_rt_sigqueueinfo: case SYS_rt_tgsigqueueinfo:
    case SYS_pause: case SYS_rt_sigsuspend: case SYS_nanosleep: case SYS_clock_nanosleep:
    case SYS_wait4: case SYS_waitid: case SYS_poll: case SYS_ppoll: case SYS_select: case SYS_pselect6:
    case SYS_futex: case SYS_accept: case SYS_accept4: case SYS_read: case SYS_readv: case SYS_recvfrom:
    case SYS_recvmsg: case SYS_connect: case SYS_rt_sigreturn: case SYS_sched_yield: case SYS_munmap:
    case SYS_mprotect: case SYS_brk: case SYS_mremap: case SYS_arch_prctl: case SYS_setsid: case SYS_setpgid:
    case SYS_rt_sigaction: case SYS_rt_sigprocmask: case SYS_sigaltstack: case SYS_close: case SYS_dup2: case SYS_dup3:
        return 1;
    }
    return 0;
}

static char *scratch;

static uint64_t argument(void) {
    switch (next() % 10) {
    case 0: return 0;
    case 1: return next() % 8;                       /* small numbers, descriptors */
    case 2: return (uint64_t)-1;
    case 3: return next();                            /* anything */
    case 4: return 0xffff800000000000ull + next() % 4096; /* the kernel half */
    case 5: return (uint64_t)scratch + next() % 8192; /* valid memory */
    case 6: return (uint64_t)"/tmp";                   /* a valid string */
    case 7: return 0x1000 + next() % 0x10000;         /* unmapped low memory */
    case 8: return (uint64_t)scratch + 8192 - next() % 16; /* the end of a mapping */
    default: return next() % 65536;
    }
}

static void child(int calls) {
    scratch = mmap(0, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (int i = 0; i < calls; i++) {
        long nr = next() % 460;
        if (skipped(nr)) continue;
        uint64_t a[6];
        for (int j = 0; j < 6; j++) a[j] = argument();
        /* Writes to the console would flood it: keep them to /dev/null's fd or bad fds. */
        if (nr == SYS_write || nr == SYS_writev || nr == SYS_pwrite64 || nr == SYS_sendto || nr == SYS_sendfile)
            a[0] = 100 + next() % 8;
        syscall(nr, a[0], a[1], a[2], a[3], a[4], a[5]);
    }
    _exit(0);
}

int main(int argc, char **argv) {
    if (argc != 4) return 2;
    /* Random calls with valid strings can rename a real machine, change its clock or unmount
     * its file systems: this runs only on Tutti's Linux personality. */
    struct utsname u;
    if (uname(&u) != 0 || !strstr(u.release, "tutti")) {
        fprintf(stderr, "sysfuzz: not on Tutti (uname release %s): refusing to run\n", u.release);
        return 3;
    }
    state = strtoull(argv[1], 0, 10) | 1;
    int children = atoi(argv[2]), calls = atoi(argv[3]);
    int ended = 0, killed = 0, faulted = 0;
    for (int c = 0; c < children; c++) {
        next();
        pid_t pid = fork();
        if (pid == 0) child(calls);
        if (pid < 0) {
            printf("R fork failed\n");
            return 1;
        }
        int status = 0;
        for (int waited = 0;; waited += 10) {
            if (waitpid(pid, &status, WNOHANG) == pid) break;
            if (waited >= 300) {
                kill(pid, SIGKILL);
                waitpid(pid, &status, 0);
                killed++;
                break;
            }
            struct timespec t = {0, 10 * 1000 * 1000};
            nanosleep(&t, 0);
        }
        if (WIFSIGNALED(status) && WTERMSIG(status) != SIGKILL) faulted++;
        ended++;
    }
    /* Not compared with anything: how the children ended depends on the calls. */
    fprintf(stderr, "sysfuzz: %d children, %d stopped by the watchdog, %d ended by a signal\n", ended, killed, faulted);
    printf("R children %d done\n", ended);
    return 0;
}
