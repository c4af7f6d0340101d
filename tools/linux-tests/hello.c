/* Linux personality test (systests/tests/linux.rs): printf, argv and environ, exit code 3. */
#include <stdio.h>
#include <stdlib.h>

extern char **environ;

int main(int argc, char **argv) {
    printf("hello from linux: argc=%d\n", argc);
    for (int i = 0; i < argc; i++)
        printf("argv[%d]=%s\n", i, argv[i]);
    for (char **e = environ; *e; e++)
        printf("env %s\n", *e);
    const char *home = getenv("HOME");
    printf("HOME is %s\n", home ? home : "(unset)");
    fflush(stdout);
    return 3;
}
