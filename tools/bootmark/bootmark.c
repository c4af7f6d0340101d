/*
 * bootmark: the /init of the Linux baseline's initramfs (packed by harness/src/linux.rs).
 *
 * Every Tutti benchmark also boots Debian's Linux kernel in the same QEMU with the same flags, so
 * each Tutti figure comes with a Linux figure from the same run. This is the first program that
 * Linux runs: it reads the time stamp counter before anything else and prints one line,
 * `bootmark tsc=<decimal>`, on fd 1 (/dev/console), telling the harness when Linux reached user
 * space. Then it does what the kernel command-line word `bootmark=<mode>` asks (Linux passes
 * unknown key=value words to init as environment variables):
 *
 *     bootmark=exit        end the machine: QEMU's isa-debug-exit makes QEMU exit with status 33
 *     bootmark=run:<path>  run `busybox sh <path>`; the script ends with /bin/bootmark-exit
 *     (no bootmark=)       an interactive busybox shell
 *
 * Run as /bin/bootmark-exit (the same program), it only ends the machine, silently. When it
 * cannot do what it was asked, it prints `bootmark: <why>` and QEMU exits with status 37.
 * No libc: raw system calls and an assembly `_start`. Build with
 *     gcc -static -nostdlib -O2 -fno-stack-protector -fno-pie -no-pie -o bootmark bootmark.c
 */

typedef unsigned long u64;

#define SYS_write 1
#define SYS_ioctl 16
#define SYS_execve 59
#define SYS_exit 60
#define SYS_reboot 169
#define SYS_ioperm 173

#define TCSBRK 0x5409 /* with argument 1: wait until the output has been sent (tcdrain) */
#define LINUX_REBOOT_MAGIC1 0xfee1deadL
#define LINUX_REBOOT_MAGIC2 672274793L
#define LINUX_REBOOT_CMD_POWER_OFF 0x4321fedcL

#define DEBUG_EXIT_PORT 0xf4 /* QEMU: -device isa-debug-exit,iobase=0xf4,iosize=0x04 */
#define DEBUG_EXIT_SUCCESS 0x10 /* QEMU exits with (0x10 << 1) | 1 = 33 */
#define DEBUG_EXIT_FAILURE 0x12 /* 37: bootmark could not do what it was asked */

static long sys(long n, long a, long b, long c, long d)
{
	register long r10 __asm__("r10") = d;
	long ret;

	__asm__ volatile("syscall"
			 : "=a"(ret)
			 : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10)
			 : "rcx", "r11", "memory");
	return ret;
}

static u64 rdtsc(void)
{
	unsigned int lo, hi;

	__asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return (u64)hi << 32 | lo;
}

/* One line of output, written with a single write(2) so it cannot be split. */
static char out[256];
static unsigned int outlen;

static void put(const char *s)
{
	while (*s && outlen < sizeof(out))
		out[outlen++] = *s++;
}

static void put_u64(u64 n)
{
	char digits[20];
	int i = 0;

	do
		digits[i++] = (char)('0' + n % 10);
	while ((n /= 10) != 0);
	while (i > 0 && outlen < sizeof(out))
		out[outlen++] = digits[--i];
}

static void flush(void)
{
	sys(SYS_write, 1, (long)out, outlen, 0);
	outlen = 0;
}

/* If `s` starts with `prefix`, the rest of `s`; otherwise 0. */
static const char *after(const char *s, const char *prefix)
{
	while (*prefix)
		if (*s++ != *prefix++)
			return 0;
	return s;
}

static int same(const char *a, const char *b)
{
	return after(a, b) && *after(a, b) == 0;
}

/* Ends the machine: QEMU's debug-exit port, or a power-off where there is no such device. */
static __attribute__((noreturn)) void end_machine(int value)
{
	sys(SYS_ioctl, 1, TCSBRK, 1, 0); /* let the serial port send what was printed */
	if (sys(SYS_ioperm, DEBUG_EXIT_PORT, 4, 1, 0) == 0)
		__asm__ volatile("outl %0, %w1" : : "a"(value), "Nd"(DEBUG_EXIT_PORT));
	sys(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_POWER_OFF, 0);
	for (;;)
		sys(SYS_exit, 1, 0, 0, 0);
}

static __attribute__((noreturn)) void fail(const char *what, const char *detail, long err)
{
	put("bootmark: ");
	put(what);
	put(detail);
	if (err < 0) {
		put(" (errno ");
		put_u64((u64)-err);
		put(")");
	}
	put("; stopping\n");
	flush();
	end_machine(DEBUG_EXIT_FAILURE);
}

static __attribute__((noreturn)) void exec_busybox(char **argv, char **envp)
{
	long err = sys(SYS_execve, (long)"/bin/busybox", (long)argv, (long)envp, 0);

	fail("cannot execute /bin/busybox", "", err);
}

/* Called by _start with the initial stack: argc, argv[argc + 1], envp[..., 0]. */
__attribute__((noreturn, used)) void bootmark_main(long *sp)
{
	u64 tsc = rdtsc();
	long argc = sp[0];
	char **argv = (char **)(sp + 1);
	char **envp = argv + argc + 1;
	const char *name = argc > 0 ? argv[0] : "";
	const char *mode = 0;

	for (const char *p = name; *p; p++)
		if (*p == '/')
			name = p + 1;
	if (same(name, "bootmark-exit"))
		end_machine(DEBUG_EXIT_SUCCESS);

	put("bootmark tsc=");
	put_u64(tsc);
	put("\n");
	flush();

	for (char **e = envp; *e; e++)
		if (after(*e, "bootmark="))
			mode = after(*e, "bootmark=");

	if (mode == 0) {
		char *shell[] = { "sh", 0 };
		exec_busybox(shell, envp);
	}
	if (same(mode, "exit"))
		end_machine(DEBUG_EXIT_SUCCESS);
	if (after(mode, "run:")) {
		char *script[] = { "sh", (char *)after(mode, "run:"), 0 };
		exec_busybox(script, envp);
	}
	fail("unknown mode bootmark=", mode, 0);
}

__asm__(".text\n"
	".global _start\n"
	"_start:\n"
	"	xor %ebp, %ebp\n"      /* the outermost frame */
	"	mov %rsp, %rdi\n"      /* the initial stack, for bootmark_main */
	"	and $-16, %rsp\n"      /* the ABI's alignment at a call */
	"	call bootmark_main\n"
	"	ud2\n");
