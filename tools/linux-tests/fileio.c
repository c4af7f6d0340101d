/* Linux personality test (systests/tests/linux.rs): file I/O under the directory argv[1].
 * Prints only path-independent results, each line starting with "R ", so the output on Tutti
 * can be compared with the same binary's output on the host. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char path[1024];
static const char *at(const char *base, const char *name) {
    snprintf(path, sizeof path, "%s/%s", base, name);
    return path;
}

static int cmp(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    const char *base = argv[1];
    char buf[256];
    printf("R mkdir %d\n", mkdir(at(base, "dir"), 0755));
    int fd = open(at(base, "dir/a.txt"), O_CREAT | O_WRONLY | O_TRUNC, 0644);
    printf("R open-create %d\n", fd >= 0);
    long total = 0;
    for (int i = 0; i < 100; i++) total += write(fd, "hello world\n", 12);
    printf("R wrote %ld\n", total);
    printf("R close %d\n", close(fd));
    fd = open(at(base, "dir/a.txt"), O_RDONLY);
    printf("R lseek-set %ld\n", (long)lseek(fd, 6, SEEK_SET));
    memset(buf, 0, sizeof buf);
    long got = read(fd, buf, 5);
    printf("R read %ld '%s'\n", got, buf);
    printf("R lseek-cur %ld\n", (long)lseek(fd, 0, SEEK_CUR));
    printf("R lseek-end %ld\n", (long)lseek(fd, 0, SEEK_END));
    memset(buf, 0, sizeof buf);
    got = pread(fd, buf, 4, 24);
    printf("R pread %ld '%s'\n", got, buf);
    printf("R read-at-end %ld\n", (long)read(fd, buf, 10));
    int copy = dup(fd);
    printf("R dup-shares-offset %ld\n", (long)lseek(copy, 0, SEEK_CUR));
    printf("R fcntl-getfd %d\n", fcntl(copy, F_GETFD));
    fcntl(copy, F_SETFD, FD_CLOEXEC);
    printf("R fcntl-cloexec %d\n", fcntl(copy, F_GETFD));
    close(copy);
    close(fd);
    struct stat st;
    int rc = stat(at(base, "dir/a.txt"), &st);
    printf("R stat %d size %ld reg %d\n", rc, (long)st.st_size, S_ISREG(st.st_mode));
    fd = open(at(base, "dir/a.txt"), O_WRONLY | O_APPEND);
    write(fd, "tail\n", 5);
    fstat(fd, &st);
    printf("R append size %ld\n", (long)st.st_size);
    printf("R ftruncate %d\n", ftruncate(fd, 1000));
    fstat(fd, &st);
    printf("R truncated size %ld\n", (long)st.st_size);
    close(fd);
    FILE *f = fopen(at(base, "dir/b.txt"), "w");
    fprintf(f, "second file %d\n", 42);
    fclose(f);
    f = fopen(at(base, "dir/b.txt"), "r");
    memset(buf, 0, sizeof buf);
    fgets(buf, sizeof buf, f);
    fclose(f);
    printf("R fgets %s", buf);
    printf("R mkdir-sub %d\n", mkdir(at(base, "dir/sub"), 0700));
    DIR *d = opendir(at(base, "dir"));
    char *names[16];
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 16) names[n++] = strdup(e->d_name);
    if (d) closedir(d);
    qsort(names, n, sizeof names[0], cmp);
    printf("R entries %d:", n);
    for (int i = 0; i < n; i++) printf(" %s", names[i]);
    printf("\n");
    char from[1024];
    snprintf(from, sizeof from, "%s", at(base, "dir/a.txt"));
    printf("R rename %d\n", rename(from, at(base, "dir/c.txt")));
    rc = stat(from, &st);
    printf("R stat-old %d errno %d\n", rc, errno);
    rc = stat(at(base, "dir/c.txt"), &st);
    printf("R stat-new %d size %ld\n", rc, (long)st.st_size);
    rc = open(at(base, "dir/missing"), O_RDONLY);
    printf("R open-missing %d errno %d\n", rc, errno);
    rc = mkdir(at(base, "dir"), 0755);
    printf("R mkdir-exists %d errno %d\n", rc, errno);
    rc = rmdir(at(base, "dir"));
    printf("R rmdir-nonempty %d errno %d\n", rc, errno);
    printf("R chdir %d\n", chdir(at(base, "dir")));
    printf("R relative-stat %d\n", stat("b.txt", &st));
    char cwd[1024];
    printf("R getcwd-ends-with-dir %d\n", getcwd(cwd, sizeof cwd) && strcmp(cwd + strlen(cwd) - 4, "/dir") == 0);
    printf("R access %d\n", access("c.txt", F_OK));
    printf("R unlinkat %d\n", unlinkat(AT_FDCWD, "sub", AT_REMOVEDIR));
    printf("R unlink %d %d\n", unlink("c.txt"), unlink("b.txt"));
    printf("R chdir-back %d\n", chdir(base));
    printf("R rmdir %d\n", rmdir("dir"));
    rc = stat(at(base, "dir"), &st);
    printf("R stat-gone %d errno %d\n", rc, errno);
    printf("R done\n");
    return 0;
}
