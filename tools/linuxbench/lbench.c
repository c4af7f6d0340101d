/*
 * lbench: the workloads of `cargo xtask bench linux`, Tutti's Linux personality (linuxd) beside
 * native Linux. The same static binary runs on both systems, in the same QEMU with the same
 * flags: on Tutti through the native shell's `linux` command, on Linux from the baseline's
 * initramfs script (xtask/src/bench/linux.rs).
 *
 *     lbench getppid [n]                    n getppid() system calls (the null system call)
 *     lbench forkexec [n]                   n times: fork, execve of lbench itself (`noop`),
 *                                           waitpid; argv[0] must be lbench's path
 *     lbench noop                           exits at once with status 0
 *     lbench pipe [mib]                     mib MiB from a child to its parent through a pipe,
 *                                           64 KiB per write() and read()
 *     lbench files <dir> [n]                n files in <dir>: create, write 4 KiB, close; open,
 *                                           read back and compare, close; unlink; in batches
 *                                           of BATCH files
 *     lbench script <busybox> <script> <dir> [n]
 *                                           n runs of `<busybox> sh <script> <busybox> <dir>`
 *                                           with standard output to <dir>/out and standard
 *                                           error to <dir>/errors; then prints the last run's
 *                                           output, each line as `script| <line>`
 *
 * Each runs a warm-up (a tenth of n, at least one operation) and then n timed operations,
 * timed with rdtsc. Under `qemu -icount shift=0` the guest's time stamp counter advances by one
 * for each guest instruction, user and kernel (or personality server) alike, so the figures
 * are guest instructions. Each workload prints one line,
 *
 *     bench <name> iterations=<n> instructions=<total> per_op=<total / n>
 *
 * or on failure `bench <name> error=<why>` and exits with status 1. Children are started with
 * a fixed environment (FIXED_ENV) so that both systems run exactly the same programs.
 *
 * Build: gcc -static -O2 -Wall -Wextra -o lbench lbench.c   (glibc's libc.a)
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_ITERATIONS 1000000000UL
/* One write() or read() of the pipe workload, the largest linuxd moves in one call. */
#define PIPE_CHUNK (64 * 1024)
/* One file of the files workload. */
#define FILE_SIZE 4096
/* Files that exist at once: Tutti's tmpfs at / holds 256 KiB, so 25 files of 4 KiB at a time. */
#define BATCH 25
/* The longest path the files and script workloads build. */
#define PATH_MAX_LEN 512

static char *const FIXED_ENV[] = { "PATH=/bin", "HOME=/", "LANG=C", NULL };

/* The workload being run, for the output line. */
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
	return n / 10 > 0 ? n / 10 : 1;
}

/* argv[i] as an iteration count, or `fallback` if there is no argv[i]. */
static unsigned long count_arg(int argc, char **argv, int i, unsigned long fallback)
{
	char *end;
	unsigned long n;

	if (i >= argc)
		return fallback;
	errno = 0;
	n = strtoul(argv[i], &end, 10);
	if (errno || *end || argv[i][0] < '0' || argv[i][0] > '9' || n == 0 || n > MAX_ITERATIONS)
		fail("the count must be a number from 1 to 1000000000", 0);
	return n;
}

/* Waits for `child` and fails unless it exited with status 0. */
static void reap(pid_t child, const char *what)
{
	int status;

	if (waitpid(child, &status, 0) != child)
		fail("waitpid", errno);
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		char why[128];

		if (WIFEXITED(status))
			snprintf(why, sizeof why, "%s exited with status %d", what, WEXITSTATUS(status));
		else
			snprintf(why, sizeof why, "%s was killed by signal %d", what, WIFSIGNALED(status) ? WTERMSIG(status) : -1);
		fail(why, 0);
	}
}

/* --- getppid: the null system call ----------------------------------------------------------- */

/* One getppid(), without glibc's wrapper, so that only the loop's few instructions are added. */
static inline long raw_getppid(void)
{
	long ret;

	__asm__ volatile("syscall" : "=a"(ret) : "a"((long)SYS_getppid) : "rcx", "r11", "memory");
	return ret;
}

static void getppid_loop(unsigned long n)
{
	for (unsigned long i = 0; i < n; i++)
		if (raw_getppid() < 0)
			fail("getppid", 0);
}

static void bench_getppid(unsigned long n)
{
	uint64_t start;

	getppid_loop(warmup_for(n));
	start = rdtsc();
	getppid_loop(n);
	report(n, rdtsc() - start);
}

/* --- forkexec: fork + execve + waitpid -------------------------------------------------------- */

static void forkexec_loop(const char *self, unsigned long n)
{
	char *const args[] = { (char *)self, "noop", NULL };

	for (unsigned long i = 0; i < n; i++) {
		pid_t child = fork();

		if (child < 0)
			fail("fork", errno);
		if (child == 0) {
			execve(self, args, FIXED_ENV);
			_exit(127);
		}
		reap(child, "the exec'd child (127: execve failed)");
	}
}

static void bench_forkexec(const char *self, unsigned long n)
{
	uint64_t start;

	if (self[0] != '/')
		fail("run lbench by its absolute path (argv[0] is exec'd)", 0);
	forkexec_loop(self, warmup_for(n));
	start = rdtsc();
	forkexec_loop(self, n);
	report(n, rdtsc() - start);
}

/* --- pipe: throughput from a child to its parent ---------------------------------------------- */

static unsigned char pipe_buffer[PIPE_CHUNK];

/* The child: waits for the go byte, then writes `bytes` bytes in PIPE_CHUNK writes. */
static __attribute__((noreturn)) void pipe_writer(int go, int out, uint64_t bytes)
{
	char byte;

	memset(pipe_buffer, 0x5a, sizeof pipe_buffer);
	if (read(go, &byte, 1) != 1)
		_exit(2);
	while (bytes > 0) {
		size_t want = bytes < PIPE_CHUNK ? bytes : PIPE_CHUNK;
		ssize_t done = write(out, pipe_buffer, want);

		if (done <= 0)
			_exit(3);
		bytes -= (uint64_t)done;
	}
	_exit(0);
}

/* Moves `mib` MiB through a new pipe; returns the instructions from the go byte to end of file. */
static uint64_t pipe_transfer(unsigned long mib)
{
	uint64_t bytes = (uint64_t)mib << 20, got = 0, start, end;
	int data[2], go[2];
	pid_t child;

	if (pipe(data) != 0 || pipe(go) != 0)
		fail("pipe", errno);
	child = fork();
	if (child < 0)
		fail("fork", errno);
	if (child == 0) {
		close(data[0]);
		close(go[1]);
		pipe_writer(go[0], data[1], bytes);
	}
	close(data[1]);
	close(go[0]);
	start = rdtsc();
	if (write(go[1], "g", 1) != 1)
		fail("write of the go byte", errno);
	for (;;) {
		ssize_t done = read(data[0], pipe_buffer, sizeof pipe_buffer);

		if (done < 0)
			fail("read", errno);
		if (done == 0)
			break;
		if (pipe_buffer[0] != 0x5a || pipe_buffer[done - 1] != 0x5a)
			fail("the bytes read are not the bytes written", 0);
		got += (uint64_t)done;
	}
	end = rdtsc();
	close(data[0]);
	close(go[1]);
	reap(child, "the writer");
	if (got != bytes)
		fail("end of file before every byte arrived", 0);
	return end - start;
}

static void bench_pipe(unsigned long mib)
{
	pipe_transfer(warmup_for(mib));
	report(mib, pipe_transfer(mib));
}

/* --- files: create, write, read back, delete -------------------------------------------------- */

static unsigned char file_data[FILE_SIZE], file_back[FILE_SIZE];

static void file_path(char *path, const char *dir, unsigned long i)
{
	if (snprintf(path, PATH_MAX_LEN, "%s/f%lu", dir, i) >= PATH_MAX_LEN)
		fail("the directory's path is too long", 0);
}

/* Files first..first+count-1 of `dir`: create and write each, read each back, delete each. */
static void files_batch(const char *dir, unsigned long first, unsigned long count)
{
	char path[PATH_MAX_LEN];

	for (unsigned long i = first; i < first + count; i++) {
		int fd;

		file_path(path, dir, i);
		fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
		if (fd < 0)
			fail("open (create)", errno);
		file_data[0] = (unsigned char)i;
		if (write(fd, file_data, FILE_SIZE) != FILE_SIZE)
			fail("write", errno);
		if (close(fd) != 0)
			fail("close", errno);
	}
	for (unsigned long i = first; i < first + count; i++) {
		int fd;

		file_path(path, dir, i);
		fd = open(path, O_RDONLY);
		if (fd < 0)
			fail("open (read)", errno);
		if (read(fd, file_back, FILE_SIZE) != FILE_SIZE)
			fail("read", errno);
		file_data[0] = (unsigned char)i;
		if (memcmp(file_back, file_data, FILE_SIZE) != 0)
			fail("a file read back differs from what was written", 0);
		if (close(fd) != 0)
			fail("close", errno);
	}
	for (unsigned long i = first; i < first + count; i++) {
		file_path(path, dir, i);
		if (unlink(path) != 0)
			fail("unlink", errno);
	}
}

static void files_loop(const char *dir, unsigned long n)
{
	for (unsigned long first = 0; first < n; first += BATCH)
		files_batch(dir, first, n - first < BATCH ? n - first : BATCH);
}

static void bench_files(const char *dir, unsigned long n)
{
	uint64_t start;

	for (size_t i = 0; i < FILE_SIZE; i++)
		file_data[i] = (unsigned char)(i * 7 + 1);
	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		fail("mkdir", errno);
	files_loop(dir, warmup_for(n));
	start = rdtsc();
	files_loop(dir, n);
	report(n, rdtsc() - start);
}

/* --- script: busybox sh spawning text-processing pipelines ------------------------------------ */

/* Opens `dir`/`name` for writing (created, truncated) as descriptor `target`; in a child. */
static void redirect(const char *dir, const char *name, int target)
{
	char path[PATH_MAX_LEN];
	int fd;

	if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
		_exit(125);
	fd = open(path, O_CREAT | O_WRONLY | O_TRUNC, 0644);
	if (fd < 0 || dup2(fd, target) != target)
		_exit(126);
	close(fd);
}

/* Prints every line of `dir`/`name` as `<prefix><line>`. */
static void print_file(const char *dir, const char *name, const char *prefix)
{
	char path[PATH_MAX_LEN], line[1024];
	FILE *f;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return;
	while (fgets(line, sizeof line, f)) {
		size_t len = strlen(line);

		if (len > 0 && line[len - 1] == '\n')
			line[len - 1] = '\0';
		printf("%s%s\n", prefix, line);
	}
	fclose(f);
}

static void script_loop(char *busybox, char *script, char *dir, unsigned long n)
{
	char *const args[] = { busybox, "sh", script, busybox, dir, NULL };

	for (unsigned long i = 0; i < n; i++) {
		pid_t child = fork();

		if (child < 0)
			fail("fork", errno);
		if (child == 0) {
			redirect(dir, "out", 1);
			redirect(dir, "errors", 2);
			execve(busybox, args, FIXED_ENV);
			_exit(127);
		}
		{
			int status;

			if (waitpid(child, &status, 0) != child)
				fail("waitpid", errno);
			if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
				printf("script: status %d; its standard error:\n", status);
				print_file(dir, "errors", "script! ");
				fail("the script failed (status above)", 0);
			}
		}
	}
}

static void bench_script(char *busybox, char *script, char *dir, unsigned long n)
{
	uint64_t start, total;

	if (mkdir(dir, 0755) != 0 && errno != EEXIST)
		fail("mkdir", errno);
	script_loop(busybox, script, dir, warmup_for(n));
	start = rdtsc();
	script_loop(busybox, script, dir, n);
	total = rdtsc() - start;
	print_file(dir, "out", "script| ");
	report(n, total);
}

/* --- main ------------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
	const char *usage = "usage: lbench getppid [n] | forkexec [n] | noop | pipe [mib] | files <dir> [n] | "
			    "script <busybox> <script> <dir> [n]";

	if (argc < 2) {
		printf("bench ? error=%s\n", usage);
		return 1;
	}
	bench_name = argv[1];
	if (strcmp(argv[1], "noop") == 0)
		return 0;
	if (strcmp(argv[1], "getppid") == 0 && argc <= 3)
		bench_getppid(count_arg(argc, argv, 2, 100000));
	else if (strcmp(argv[1], "forkexec") == 0 && argc <= 3)
		bench_forkexec(argv[0], count_arg(argc, argv, 2, 200));
	else if (strcmp(argv[1], "pipe") == 0 && argc <= 3)
		bench_pipe(count_arg(argc, argv, 2, 16));
	else if (strcmp(argv[1], "files") == 0 && argc >= 3 && argc <= 4)
		bench_files(argv[2], count_arg(argc, argv, 3, 500));
	else if (strcmp(argv[1], "script") == 0 && argc >= 5 && argc <= 6)
		bench_script(argv[2], argv[3], argv[4], count_arg(argc, argv, 5, 1));
	else
		fail(usage, 0);
	return 0;
}
