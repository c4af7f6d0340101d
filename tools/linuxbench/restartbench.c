/*
 * The Linux baseline of `cargo xtask bench restart` (xtask/src/bench/restart.rs): time from a
 * service's crash to the service restored, as Tutti's restartbench measures it.
 *
 * For each of N rounds: a supervisor process starts an echo server (this program, `server
 * <path>`, fork + exec) listening on a Unix socket and restarts it at once whenever it dies by
 * a signal. The client pings it three times; the fourth ping makes the server dereference a
 * null pointer (SIGSEGV). The clock starts before that ping and stops when a new connection to
 * the restarted server gets an answer. Then the client asks the server to exit cleanly, which
 * ends the supervisor too. Times are CLOCK_MONOTONIC nanoseconds, which under QEMU's
 * `-icount shift=0` are guest instructions.
 *
 * Prints `bench restart iterations=<n> instructions=<total ns> per_op=<mean>` and the
 * `restart_max` / `restart_min` lines, as Tutti's program does.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ROUNDS 8
#define GIVE_UP_NS 5000000000ULL
#define RETRY_NS 20000L

static unsigned long long now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (unsigned long long)t.tv_sec * 1000000000ULL + (unsigned long long)t.tv_nsec;
}

static void fail(const char *why)
{
	printf("bench restart error=%s: %s\n", why, strerror(errno));
	fflush(stdout);
	exit(1);
}

static struct sockaddr_un address(const char *path)
{
	struct sockaddr_un a;

	memset(&a, 0, sizeof a);
	a.sun_family = AF_UNIX;
	strncpy(a.sun_path, path, sizeof a.sun_path - 1);
	return a;
}

/* The echo server: answers each 8-byte ping with the count served so far; faults on the
 * fourth; exits cleanly on the value UINT64_MAX. */
static int server(const char *path)
{
	struct sockaddr_un a = address(path);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);
	uint64_t served = 0;

	if (s < 0)
		fail("socket");
	unlink(path);
	if (bind(s, (struct sockaddr *)&a, sizeof a) < 0 || listen(s, 8) < 0)
		fail("bind");
	for (;;) {
		int c = accept(s, NULL, NULL);
		uint64_t ping;

		if (c < 0)
			continue;
		while (read(c, &ping, sizeof ping) == sizeof ping) {
			if (ping == UINT64_MAX)
				return 0;
			if (served == 3)
				*(volatile int *)0 = 1; /* the crash */
			served++;
			if (write(c, &served, sizeof served) != sizeof served)
				break;
		}
		close(c);
	}
}

/* Restarts the server whenever it dies by a signal; ends when it exits. */
static void supervise(const char *self, const char *path)
{
	for (;;) {
		pid_t pid = fork();
		int status;

		if (pid < 0)
			fail("fork");
		if (pid == 0) {
			execl(self, self, "server", path, (char *)NULL);
			fail("exec");
		}
		if (waitpid(pid, &status, 0) < 0)
			fail("waitpid");
		if (WIFEXITED(status))
			exit(0);
	}
}

/* Connects and sends one ping; the answer, or 0 if there was none. */
static int connect_to(const char *path)
{
	struct sockaddr_un a = address(path);
	int s = socket(AF_UNIX, SOCK_STREAM, 0);

	if (s < 0)
		fail("socket");
	if (connect(s, (struct sockaddr *)&a, sizeof a) < 0) {
		close(s);
		return -1;
	}
	return s;
}

static uint64_t ping(int s, uint64_t value)
{
	uint64_t answer = 0;

	if (write(s, &value, sizeof value) != sizeof value)
		return 0;
	if (read(s, &answer, sizeof answer) != sizeof answer)
		return 0;
	return answer;
}

static unsigned long long round_trip(const char *self, int round)
{
	char path[64];
	unsigned long long start, end = 0;
	pid_t supervisor;
	int s;

	snprintf(path, sizeof path, "/tmp/restartbench.%d", round);
	supervisor = fork();
	if (supervisor < 0)
		fail("fork");
	if (supervisor == 0)
		supervise(self, path);
	start = now_ns();
	while ((s = connect_to(path)) < 0) {
		if (now_ns() - start > GIVE_UP_NS)
			fail("the first server never listened");
		usleep(1000);
	}
	for (uint64_t n = 0; n < 3; n++)
		if (ping(s, n) != n + 1)
			fail("a ping before the crash was not answered");
	start = now_ns();
	if (ping(s, 3) != 0)
		fail("the fourth ping was answered; the server did not crash");
	close(s);
	for (;;) {
		struct timespec pause = { 0, RETRY_NS };

		if (now_ns() - start > GIVE_UP_NS)
			fail("not restored within 5 s");
		s = connect_to(path);
		if (s >= 0) {
			uint64_t answer = ping(s, 0);

			if (answer == 1) {
				end = now_ns();
				ping(s, UINT64_MAX);
				close(s);
				break;
			}
			close(s);
		}
		nanosleep(&pause, NULL);
	}
	waitpid(supervisor, NULL, 0);
	return end - start;
}

int main(int argc, char **argv)
{
	unsigned long long total = 0, max = 0, min = ~0ULL;

	if (argc == 3 && strcmp(argv[1], "server") == 0)
		return server(argv[2]);
	signal(SIGPIPE, SIG_IGN);
	for (int round = 0; round < ROUNDS; round++) {
		unsigned long long ns = round_trip(argv[0], round);

		printf("restartbench: restored %llu us after the crash\n", ns / 1000);
		total += ns;
		if (ns > max)
			max = ns;
		if (ns < min)
			min = ns;
	}
	printf("bench restart iterations=%d instructions=%llu per_op=%llu\n", ROUNDS, total, total / ROUNDS);
	printf("bench restart_max iterations=1 instructions=%llu per_op=%llu\n", max, max);
	printf("bench restart_min iterations=1 instructions=%llu per_op=%llu\n", min, min);
	fflush(stdout);
	return 0;
}
