/* Linux personality test (systests/tests/linux.rs): brk and mmap through malloc: many small
 * and some large (mmap'ed) blocks, realloc, calloc, free; a checksum of the contents. */
#define _DEFAULT_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
    return 0;
}
