/*
 * ipcbench: the Linux side of Tutti's microkernel benchmark (`cargo xtask bench ipc`).
 *
 * Tutti's figures (IPC call + reply, null system call, notification signal-to-wake, page fault
 * to the supervisor and back) are compared with what Linux needs for the nearest equivalent, in
 * the same QEMU with the same flags. The harness packs this program into the Linux baseline's
 * initramfs (harness/src/linux.rs) and runs each subcommand from a busybox script:
 *
 *     ipcbench getppid [n]   n getppid() system calls (a null system call)
 *     ipcbench pipe [n]      n round trips of one byte between two processes over two pipes
 *     ipcbench futex [n]     n round trips between two processes waking each other with
 *                            FUTEX_WAKE / FUTEX_WAIT on two words of a shared anonymous mapping
 *     ipcbench unix [n]      n round trips of one byte over a unix stream socket pair
 *     ipcbench fault [n]     n faults on a protected page, each handled by a SIGSEGV handler that
 *                            makes the page accessible again with mprotect() and returns
 *
 * Each runs a warm-up (a tenth of n, at least 100 operations) and then n timed operations, timed
 * with rdtsc. Under `qemu -icount shift=0` the guest's time stamp counter advances by one for
 * each guest instruction, user and kernel alike, so the figures are guest instructions. Each
 * subcommand prints exactly one line on standard output,
 *
 *     bench <name> iterations=<n> instructions=<total> per_op=<total / n>
 *
 * (the format the harness parses, and that Tutti's own benchmark program prints too), or on
 * failure `bench <name> error=<why>` and exits with status 1. A round trip is one operation:
 * the first process sends, the second receives and answers, the first receives the answer.
 * Nothing is pinned: the guest has one CPU, so every round trip includes two context switches.
 *
 * Build: gcc -static -O2 -Wall -Wextra -o ipcbench ipcbench.c   (glibc's libc.a)
 */

#define _GNU_SOURCE
#include <errno.h>
#include <linux/futex.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_ROUND_TRIPS 10000
#define DEFAULT_SYSCALLS 100000
#define MIN_WARMUP 100
#define MAX_ITERATIONS 1000000000UL

/* The subcommand being run, for the output line. */
static const char *bench_name = "?";

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

/* Prints `bench <name> error=<why>[: <errno text>]` and exits with status 1. */
static __attribute__((noreturn)) void fail(const char *why, int err)
{
	if (err)
		printf("bench %s error=%s: %s\n", bench_name, why, strerror(err));
	else
		printf("bench %s error=%s\n", bench_name, why);
	fflush(stdout);
	exit(1);
}

/* Prints the one result line. */
static void report(unsigned long n, uint64_t total)
{
	printf("bench %s iterations=%lu instructions=%llu per_op=%llu\n", bench_name, n,
	       (unsigned long long)total, (unsigned long long)(total / n));
	fflush(stdout);
}

static unsigned long warmup_for(unsigned long n)
{
	return n / 10 > MIN_WARMUP ? n / 10 : MIN_WARMUP;
}

/*
 * SIGCHLD interrupts a parent blocked in FUTEX_WAIT (the handler is installed without
 * SA_RESTART), so a child that dies early is noticed instead of leaving the parent waiting
 * forever. The handler itself does nothing. (The byte ping-pongs notice it as end of file.)
 */
static void on_sigchld(int sig)
{
	(void)sig;
}

static void catch_sigchld(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_sigchld;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGCHLD, &sa, NULL) != 0)
		fail("sigaction(SIGCHLD)", errno);
}

/* Whether `child` has ended, without reaping it. */
static int child_ended(pid_t child)
{
	siginfo_t info;

	memset(&info, 0, sizeof info);
	return waitid(P_PID, child, &info, WEXITED | WNOHANG | WNOWAIT) == 0 && info.si_pid == child;
}

/* Waits for `child` and fails unless it exited with status 0. */
static void reap(pid_t child)
{
	int status;

	if (waitpid(child, &status, 0) != child)
		fail("waitpid", errno);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
		fail("the child process failed", 0);
}

/* --- getppid: the null system call ------------------------------------------------------- */

/* One getppid(), without glibc's wrapper, so that only the loop's few instructions are added. */
static inline long raw_getppid(void)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_getppid) : "rcx", "r11", "memory");
	return ret;
}

static void bench_getppid(unsigned long n)
{
	uint64_t start, end;
	long parent = 0;

	for (unsigned long i = warmup_for(n); i > 0; i--)
		parent = raw_getppid();
	start = rdtsc();
	for (unsigned long i = n; i > 0; i--)
		raw_getppid();
	end = rdtsc();
	if (parent <= 0)
		fail("getppid returned no parent", 0);
	report(n, end - start);
}

/* --- pipe and unix: one byte there and back ---------------------------------------------- */

/* Reads exactly one byte; 0 on success, otherwise the errno (EPIPE for end of file). */
static int read_byte(int fd, char *c)
{
	ssize_t got = read(fd, c, 1);

	if (got == 1)
		return 0;
	return got == 0 ? EPIPE : errno;
}

static int write_byte(int fd, char c)
{
	ssize_t put = write(fd, &c, 1);

	return put == 1 ? 0 : (put < 0 ? errno : EIO);
}

/*
 * The child's side of a byte ping-pong: reads a byte and writes it back, `rounds` times, then
 * waits for end of file (the parent closing its end once it has stopped the clock), so that
 * the child's exit is not counted in the last round.
 */
static __attribute__((noreturn)) void echo(int in, int out, unsigned long rounds)
{
	char c;

	for (unsigned long i = 0; i < rounds; i++)
		if (read_byte(in, &c) != 0 || write_byte(out, c) != 0)
			_exit(1);
	_exit(read_byte(in, &c) == EPIPE ? 0 : 1);
}

/* Sends one byte and waits for it to come back. */
static void round_trip(int out, int in, char byte)
{
	char c;
	int err;

	if ((err = write_byte(out, byte)) != 0)
		fail("write", err);
	if ((err = read_byte(in, &c)) == EPIPE)
		fail("the child process ended early", 0);
	if (err != 0)
		fail("read", err);
	if (c != byte)
		fail("the byte came back changed", 0);
}

/*
 * Runs a byte ping-pong: the parent writes `there[1]` and reads `back[0]`, the child reads
 * `there[0]` and writes `back[1]`. The four may be two pipes, or the two ends of one socket
 * pair (there[0] == back[1] and there[1] == back[0]). Each process closes the ends it does not
 * use, so that either sees end of file when the other ends.
 */
static void byte_ping_pong(unsigned long n, int there[2], int back[2])
{
	unsigned long warmup = warmup_for(n);
	uint64_t start, end;
	pid_t child;

	child = fork();
	if (child < 0)
		fail("fork", errno);
	if (child == 0) {
		close(there[1]);
		if (back[0] != there[1])
			close(back[0]);
		echo(there[0], back[1], warmup + n);
	}
	close(there[0]);
	if (back[1] != there[0])
		close(back[1]);
	for (unsigned long i = 0; i < warmup; i++)
		round_trip(there[1], back[0], (char)i);
	start = rdtsc();
	for (unsigned long i = 0; i < n; i++)
		round_trip(there[1], back[0], (char)i);
	end = rdtsc();
	close(there[1]);
	if (back[0] != there[1])
		close(back[0]);
	reap(child);
	report(n, end - start);
}

static void bench_pipe(unsigned long n)
{
	int there[2], back[2];

	if (pipe(there) != 0 || pipe(back) != 0)
		fail("pipe", errno);
	byte_ping_pong(n, there, back);
}

static void bench_unix(unsigned long n)
{
	int pair[2];

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0)
		fail("socketpair", errno);
	/* The parent uses pair[1] both ways, the child pair[0]. */
	int there[2] = { pair[0], pair[1] };
	int back[2] = { pair[1], pair[0] };

	byte_ping_pong(n, there, back);
}

/* --- futex: two processes waking each other ---------------------------------------------- */

/*
 * Two words in a page shared by both processes (MAP_SHARED, so the futexes are the shared
 * kind, keyed by the page rather than by one address space). Round i: the parent stores i in
 * `ping` and wakes the child; the child, waiting until ping == i, stores i in `pong` and wakes
 * the parent, which was waiting until pong == i.
 */
struct words {
	uint32_t ping;
	uint32_t pong;
};

static long futex(uint32_t *word, int op, uint32_t value)
{
	return syscall(SYS_futex, word, op, value, NULL, NULL, 0);
}

/*
 * Waits until *word == want; 0, or the errno of a failed wait. In the parent (`child` not 0), a
 * wait interrupted by SIGCHLD fails if the child has ended without storing `want`.
 */
static int wait_for(uint32_t *word, uint32_t want, pid_t child)
{
	uint32_t seen;

	while ((seen = __atomic_load_n(word, __ATOMIC_ACQUIRE)) != want) {
		if (futex(word, FUTEX_WAIT, seen) == 0 || errno == EAGAIN)
			continue; /* woken, or the word changed before the kernel looked */
		if (errno != EINTR)
			return errno;
		if (child != 0 && child_ended(child) && __atomic_load_n(word, __ATOMIC_ACQUIRE) != want)
			fail("the child process ended early", 0);
	}
	return 0;
}

static int post(uint32_t *word, uint32_t value)
{
	__atomic_store_n(word, value, __ATOMIC_RELEASE);
	return futex(word, FUTEX_WAKE, 1) < 0 ? errno : 0;
}

/* The parent's side of round `i`. */
static void futex_round(struct words *w, uint32_t i, pid_t child)
{
	int err;

	if ((err = post(&w->ping, i)) != 0)
		fail("FUTEX_WAKE", err);
	if ((err = wait_for(&w->pong, i, child)) != 0)
		fail("FUTEX_WAIT", err);
}

static void bench_futex(unsigned long n)
{
	uint32_t warmup = warmup_for(n), rounds = warmup + n;
	uint64_t start, end;
	struct words *w;
	pid_t child;
	int err;

	w = mmap(NULL, sizeof *w, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (w == MAP_FAILED)
		fail("mmap", errno);
	w->ping = w->pong = 0;
	catch_sigchld();
	child = fork();
	if (child < 0)
		fail("fork", errno);
	if (child == 0) {
		/* Answers every round, then waits for round `rounds + 1`, which means "exit". */
		for (uint32_t i = 1; i <= rounds; i++)
			if (wait_for(&w->ping, i, 0) != 0 || post(&w->pong, i) != 0)
				_exit(1);
		_exit(wait_for(&w->ping, rounds + 1, 0) != 0);
	}
	for (uint32_t i = 1; i <= warmup; i++)
		futex_round(w, i, child);
	start = rdtsc();
	for (uint32_t i = warmup + 1; i <= rounds; i++)
		futex_round(w, i, child);
	end = rdtsc();
	if ((err = post(&w->ping, rounds + 1)) != 0)
		fail("FUTEX_WAKE", err);
	reap(child);
	report(n, end - start);
}

/* --- fault: a page fault handled in user space ------------------------------------------- */

static volatile char *fault_page;
static long page_size;

/* Makes the faulting page accessible again; returning retries the faulting instruction. */
static void on_sigsegv(int sig, siginfo_t *info, void *context)
{
	(void)sig;
	(void)context;
	/* Not our fault, or it cannot be fixed: the retry dies of it rather than looping. */
	if (info->si_addr != (void *)fault_page ||
	    mprotect((void *)fault_page, page_size, PROT_READ | PROT_WRITE) != 0)
		signal(SIGSEGV, SIG_DFL);
}

static void bench_fault(unsigned long n)
{
	unsigned long warmup = warmup_for(n);
	uint64_t total = 0, start;
	struct sigaction sa;

	page_size = sysconf(_SC_PAGESIZE);
	fault_page = mmap(NULL, page_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fault_page == MAP_FAILED)
		fail("mmap", errno);
	fault_page[0] = 0; /* populated, so each fault is a protection fault, not a missing page */
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = on_sigsegv;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGSEGV, &sa, NULL) != 0)
		fail("sigaction(SIGSEGV)", errno);

	for (unsigned long i = 0; i < warmup + n; i++) {
		if (mprotect((void *)fault_page, page_size, PROT_NONE) != 0)
			fail("mprotect", errno);
		/*
		 * Only the faulting store is timed: fault, signal delivery, the handler's mprotect(),
		 * sigreturn and the store's retry. Protecting the page again above is not counted.
		 */
		start = rdtsc();
		fault_page[0] = (char)i;
		if (i >= warmup)
			total += rdtsc() - start;
	}
	if (fault_page[0] != (char)(warmup + n - 1))
		fail("the faulting store was lost", 0);
	report(n, total);
}

/* --- main -------------------------------------------------------------------------------- */

static const struct {
	const char *name;
	void (*run)(unsigned long n);
	unsigned long default_n;
} benches[] = {
	{ "getppid", bench_getppid, DEFAULT_SYSCALLS },
	{ "pipe", bench_pipe, DEFAULT_ROUND_TRIPS },
	{ "futex", bench_futex, DEFAULT_ROUND_TRIPS },
	{ "unix", bench_unix, DEFAULT_ROUND_TRIPS },
	{ "fault", bench_fault, DEFAULT_ROUND_TRIPS },
};

int main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		printf("bench ? error=usage: ipcbench getppid|pipe|futex|unix|fault [iterations]\n");
		return 1;
	}
	for (size_t b = 0; b < sizeof benches / sizeof benches[0]; b++) {
		if (strcmp(argv[1], benches[b].name) != 0)
			continue;
		bench_name = benches[b].name;
		unsigned long n = benches[b].default_n;
		if (argc == 3) {
			char *end;

			errno = 0;
			n = strtoul(argv[2], &end, 10);
			/* At most MAX_ITERATIONS: the futex rounds count in 32-bit words. */
			if (errno || *end || argv[2][0] < '0' || argv[2][0] > '9' || n == 0 || n > MAX_ITERATIONS)
				fail("the iteration count must be a number from 1 to 1000000000", 0);
		}
		benches[b].run(n);
		return 0;
	}
	bench_name = argv[1];
	fail("unknown benchmark; choose getppid, pipe, futex, unix or fault", 0);
}
