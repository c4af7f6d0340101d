/* Linux personality test (systests/tests/linux.rs): brk and mmap through malloc: many small
 * and some large (mmap'ed) blocks, realloc, calloc, free; a checksum of the contents; mremap
 * (grow with MREMAP_MAYMOVE, shrink, refused growth in place); /dev/zero and /dev/urandom. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

int main(void) {
    enum { N = 150 };
    static unsigned char *blocks[N];
    static size_t sizes[N];
    uint64_t sum = 0, seed = 12345;
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) {
            seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t size = (seed >> 33) % 1000 + 1;
            if (i % 75 == 0) size = 100000; /* above the mmap threshold */
            blocks[i] = malloc(size);
            if (!blocks[i]) { printf("malloc failed at %d\n", i); return 1; }
            sizes[i] = size;
            memset(blocks[i], (int)(i + round), size);
        }
        for (int i = 0; i < N; i += 3) {
            unsigned char *p = realloc(blocks[i], sizes[i] * 2);
            if (!p) { printf("realloc failed\n"); return 1; }
            memset(p + sizes[i], 7, sizes[i]);
            blocks[i] = p;
            sizes[i] *= 2;
        }
        for (int i = 0; i < N; i++) {
            for (size_t j = 0; j < sizes[i]; j += 97) sum += blocks[i][j];
            free(blocks[i]);
        }
    }
    unsigned char *z = calloc(10000, 3);
    for (int i = 0; i < 30000; i++) if (z[i]) { printf("calloc not zero\n"); return 1; }
    free(z);
    unsigned char *m = mmap(0, 1 << 18, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) { printf("mmap failed\n"); return 1; }
    for (int i = 0; i < (1 << 18); i += 4096) m[i] = 1;
    printf("munmap %d\n", munmap(m, 1 << 18));
    void *b0 = sbrk(0);
    sbrk(1 << 16);
    void *b1 = sbrk(0);
    printf("sbrk grew %ld\n", (long)((char *)b1 - (char *)b0));
    printf("malloc checksum %llu\n", (unsigned long long)sum);

    /* mremap: grow with MREMAP_MAYMOVE (contents kept), shrink in place, refuse to grow in place. */
    size_t small = 3 * 4096, big = 64 * 4096;
    unsigned char *r = mmap(0, small, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    for (size_t i = 0; i < small; i++) r[i] = (unsigned char)(i * 13);
    unsigned char *g = mremap(r, small, big, MREMAP_MAYMOVE);
    int kept = g != MAP_FAILED;
    for (size_t i = 0; kept && i < small; i++) kept = g[i] == (unsigned char)(i * 13);
    int tail_zero = g != MAP_FAILED;
    for (size_t i = small; tail_zero && i < big; i += 512) tail_zero = g[i] == 0;
    printf("mremap grow: moved ok %d, contents kept %d, new part zero %d\n", g != MAP_FAILED, kept, tail_zero);
    unsigned char *s2 = mremap(g, big, 4096, 0);
    printf("mremap shrink: same address %d, first byte %d\n", s2 == g, s2 != MAP_FAILED ? s2[1] : -1);
    printf("mremap without MAYMOVE past its end: %s\n", mremap(s2, 4096, 1 << 30, 0) == MAP_FAILED ? "refused" : "grew");
    munmap(s2, 4096);

    /* /dev/zero and /dev/urandom. */
    unsigned char buf[4096];
    memset(buf, 0xff, sizeof buf);
    int zfd = open("/dev/zero", O_RDONLY);
    ssize_t zn = read(zfd, buf, sizeof buf);
    int zeros = 1;
    for (size_t i = 0; i < sizeof buf; i++) zeros &= buf[i] == 0;
    printf("/dev/zero: read %zd, all zero %d, write %zd\n", zn, zeros, write(open("/dev/zero", O_WRONLY), buf, 10));
    int ufd = open("/dev/urandom", O_RDONLY);
    ssize_t un = read(ufd, buf, sizeof buf);
    int distinct = 0, seen[256] = {0};
    for (size_t i = 0; i < sizeof buf; i++) if (!seen[buf[i]]++) distinct++;
    printf("/dev/urandom: read %zd, more than 200 distinct byte values %d\n", un, distinct > 200);
    struct stat st;
    stat("/dev/zero", &st);
    printf("/dev/zero is a character device %d (1, 5): %d\n", S_ISCHR(st.st_mode), st.st_rdev == makedev(1, 5));
    return 0;
}
