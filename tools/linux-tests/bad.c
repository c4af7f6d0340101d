/* Linux personality test (systests/tests/linux.rs): bad pointers get EFAULT; `segv` faults. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/syscall.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "segv") == 0) {
        printf("about to fault\n");
        fflush(stdout);
        volatile int *null = (volatile int *)(long)(argc - 2 + 16);
        *null = 1;
        return 0;
    }
    errno = 0;
    long r = syscall(SYS_write, 1, (void *)1, 10);
    printf("write bad pointer: %ld errno %d\n", r, errno);
    errno = 0;
    r = syscall(SYS_write, 1, (void *)0x7fffffffe000000, 10);
    printf("write kernel-half pointer: %ld errno %d\n", r, errno);
    int fd = open(argv[0], O_RDONLY);
    errno = 0;
    r = syscall(SYS_read, fd, (void *)8, 100);
    printf("read bad pointer: %ld errno %d\n", r, errno);
    errno = 0;
    r = syscall(SYS_read, fd, (void *)main, 100);
    printf("read into code: %ld errno %d\n", r, errno);
    errno = 0;
    r = syscall(SYS_open, (void *)24, O_RDONLY);
    printf("open bad path: %ld errno %d\n", r, errno);
    errno = 0;
    r = syscall(1000, 1, 2, 3);
    printf("unknown call: %ld errno %d\n", r, errno);
    return 0;
}
