/*
 * fsbench: the Linux side of Tutti's storage benchmark (`cargo xtask bench storage`).
 *
 * The same workload as Tutti's os/programs/src/bin/fsbench.rs, in the directory given as the
 * only argument (ext2 on a virtio-blk disk, mounted by the initramfs script):
 *
 *     seqwrite     8 MiB written to a new file in 64 KiB write()s, then fsync() (per MiB)
 *     seqread      the file read back in 64 KiB read()s, every byte summed and checked (per
 *                  MiB), after dropping the page cache (sync, then 3 > /proc/sys/vm/drop_caches)
 *     smallfiles   500 files of 1 KiB created and written, then all unlinked (per file)
 *
 * Each figure is timed with rdtsc (under `qemu -icount shift=0` the guest's time stamp counter
 * counts guest instructions) and with CLOCK_MONOTONIC, and printed as
 *
 *     bench <name> iterations=<n> instructions=<tsc> per_op=<tsc / n>
 *     benchtime <name> ns=<clock>
 *
 * or `bench <name> error=<why>` and exit status 1.
 *
 * Build: gcc -static -O2 -Wall -Wextra -o fsbench fsbench.c   (glibc's libc.a)
 */

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SEQ_BYTES (8 << 20)
#define CHUNK (64 * 1024)
#define SMALL_FILES 500
#define SMALL_BYTES 1024

static unsigned char chunk[CHUNK];
static unsigned char buf[CHUNK];

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (uint64_t)hi << 32 | lo;
}

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static void fail(const char *name, const char *what)
{
	printf("bench %s error=%s:%s\n", name, what, strerror(errno));
	exit(1);
}

static void report(const char *name, uint64_t iterations, uint64_t tsc, uint64_t ns)
{
	printf("bench %s iterations=%llu instructions=%llu per_op=%llu\n", name,
	       (unsigned long long)iterations, (unsigned long long)tsc,
	       (unsigned long long)(tsc / iterations));
	printf("benchtime %s ns=%llu\n", name, (unsigned long long)ns);
	fflush(stdout);
}

static void write_all(const char *name, int fd, const void *data, size_t len)
{
	const unsigned char *p = data;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n <= 0)
			fail(name, "write");
		p += n;
		len -= (size_t)n;
	}
}

static void drop_caches(void)
{
	int fd;

	sync();
	fd = open("/proc/sys/vm/drop_caches", O_WRONLY);
	if (fd < 0 || write(fd, "3\n", 2) != 2)
		fail("seqread", "drop_caches");
	close(fd);
}

int main(int argc, char **argv)
{
	char path[512];
	uint64_t tsc, ns, sum = 0, expected = 0;
	int fd, i;

	if (argc != 2) {
		fprintf(stderr, "usage: fsbench <directory>\n");
		return 2;
	}
	for (i = 0; i < CHUNK; i++)
		chunk[i] = (unsigned char)(i % 251);
	snprintf(path, sizeof path, "%s/seq.bin", argv[1]);

	tsc = rdtsc();
	ns = now_ns();
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		fail("seqwrite", "open");
	for (i = 0; i < SEQ_BYTES / CHUNK; i++)
		write_all("seqwrite", fd, chunk, CHUNK);
	if (fsync(fd) != 0 || close(fd) != 0)
		fail("seqwrite", "fsync");
	report("seqwrite", SEQ_BYTES >> 20, rdtsc() - tsc, now_ns() - ns);

	drop_caches();
	tsc = rdtsc();
	ns = now_ns();
	fd = open(path, O_RDONLY);
	if (fd < 0)
		fail("seqread", "open");
	for (i = 0; i < SEQ_BYTES / CHUNK; i++) {
		size_t filled = 0;

		while (filled < CHUNK) {
			ssize_t n = read(fd, buf + filled, CHUNK - filled);

			if (n <= 0)
				fail("seqread", "read");
			filled += (size_t)n;
		}
		for (size_t j = 0; j < CHUNK; j++) {
			sum += buf[j];
			expected += chunk[j];
		}
	}
	close(fd);
	if (sum != expected) {
		errno = EIO;
		fail("seqread", "content");
	}
	report("seqread", SEQ_BYTES >> 20, rdtsc() - tsc, now_ns() - ns);

	memset(buf, 0x5a, SMALL_BYTES);
	snprintf(path, sizeof path, "%s/small", argv[1]);
	if (mkdir(path, 0755) != 0 && errno != EEXIST)
		fail("smallfiles", "mkdir");
	tsc = rdtsc();
	ns = now_ns();
	for (i = 0; i < SMALL_FILES; i++) {
		snprintf(path, sizeof path, "%s/small/f%d", argv[1], i);
		fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
		if (fd < 0)
			fail("smallfiles", "open");
		write_all("smallfiles", fd, buf, SMALL_BYTES);
		close(fd);
	}
	for (i = 0; i < SMALL_FILES; i++) {
		snprintf(path, sizeof path, "%s/small/f%d", argv[1], i);
		if (unlink(path) != 0)
			fail("smallfiles", "unlink");
	}
	report("smallfiles", SMALL_FILES, rdtsc() - tsc, now_ns() - ns);
	return 0;
}
