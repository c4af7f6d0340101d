/* Linux personality test (systests/tests/linux_threads.rs): threads and futexes through glibc's
 * pthreads. pthread_create/join with return values, distinct thread ids (gettid) in one process
 * (getpid), thread-local storage, a mutex-protected counter under contention, a condition
 * variable handing work between threads, a barrier, semaphores, pthread_cond_timedwait and
 * sem_timedwait timing out (ETIMEDOUT), a raw futex wait with a wrong value (EAGAIN) and with a
 * timeout, FUTEX_WAKE counts, pthread_kill to one chosen thread (its handler runs in that thread),
 * a thread blocked reading a pipe while another writes, pthread_exit from a thread and from main
 * (the process lives on until its last thread), and fork from a threaded process (the child has
 * one thread).
 *
 * Usage: threads. Prints only deterministic lines starting with "R " with write(2). Ends with
 * "R done" and status 0 (from the last thread, after main called pthread_exit). */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* From <linux/futex.h>, which musl-gcc does not see. */
#define FUTEX_WAIT_PRIVATE 128
#define FUTEX_WAKE_PRIVATE 129

#define THREADS 8
#define ROUNDS 2000

static void say(const char *fmt, ...) {
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n > (int)sizeof line - 1) n = sizeof line - 1;
    if (write(1, line, n) != n) _exit(99);
}

static pid_t gettid_raw(void) { return (pid_t)syscall(SYS_gettid); }

static long futex(uint32_t *addr, int op, uint32_t val, const struct timespec *timeout) {
    return syscall(SYS_futex, addr, op, val, timeout, NULL, 0);
}

/* ---- create, join, ids, thread-local storage, a contended mutex ---- */

static __thread int tls_value = 7;
static pthread_mutex_t counter_lock = PTHREAD_MUTEX_INITIALIZER;
static long counter;
static pid_t tids[THREADS];

static void *worker(void *arg) {
    long index = (long)arg;
    tids[index] = gettid_raw();
    if (tls_value != 7) return (void *)-1L;
    tls_value = 100 + (int)index;
    for (int i = 0; i < ROUNDS; i++) {
        pthread_mutex_lock(&counter_lock);
        long seen = counter;
        if (i % 64 == 0) sched_yield();
        counter = seen + 1;
        pthread_mutex_unlock(&counter_lock);
    }
    if (getpid() != getpid()) return (void *)-2L;
    return (void *)(long)(tls_value * 10);
}

static void create_and_join(void) {
    pthread_t threads[THREADS];
    for (long i = 0; i < THREADS; i++)
        if (pthread_create(&threads[i], NULL, worker, (void *)i) != 0) say("R create %ld failed\n", i);
    long sum = 0;
    for (int i = 0; i < THREADS; i++) {
        void *ret;
        pthread_join(threads[i], &ret);
        sum += (long)ret;
    }
    int distinct = 1;
    pid_t me = gettid_raw();
    for (int i = 0; i < THREADS; i++) {
        if (tids[i] == me || tids[i] <= 0) distinct = 0;
        for (int j = 0; j < i; j++)
            if (tids[i] == tids[j]) distinct = 0;
    }
    say("R join: counter %ld (of %d), return values sum %ld, main tls %d\n", counter, THREADS * ROUNDS, sum,
        tls_value);
    say("R ids: main tid is pid %d, thread ids distinct %d\n", me == getpid(), distinct);
}

/* ---- a condition variable: a queue between a producer and consumers ---- */

static pthread_mutex_t queue_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t queue_ready = PTHREAD_COND_INITIALIZER;
static int queue[64], queue_len, queue_closed;
static long consumed_sum;
static int consumed_count;

static void *consumer(void *arg) {
    (void)arg;
    for (;;) {
        pthread_mutex_lock(&queue_lock);
        while (queue_len == 0 && !queue_closed) pthread_cond_wait(&queue_ready, &queue_lock);
        if (queue_len == 0) {
            pthread_mutex_unlock(&queue_lock);
            return NULL;
        }
        int item = queue[--queue_len];
        consumed_sum += item;
        consumed_count++;
        pthread_mutex_unlock(&queue_lock);
    }
}

static void condition_variable(void) {
    pthread_t consumers[3];
    for (int i = 0; i < 3; i++) pthread_create(&consumers[i], NULL, consumer, NULL);
    for (int item = 1; item <= 500; item++) {
        pthread_mutex_lock(&queue_lock);
        while (queue_len == 64) {
            pthread_mutex_unlock(&queue_lock);
            sched_yield();
            pthread_mutex_lock(&queue_lock);
        }
        queue[queue_len++] = item;
        pthread_cond_signal(&queue_ready);
        pthread_mutex_unlock(&queue_lock);
    }
    pthread_mutex_lock(&queue_lock);
    queue_closed = 1;
    pthread_cond_broadcast(&queue_ready);
    pthread_mutex_unlock(&queue_lock);
    for (int i = 0; i < 3; i++) pthread_join(consumers[i], NULL);
    say("R condvar: consumed %d items, sum %ld\n", consumed_count, consumed_sum);
}

/* ---- a barrier and semaphores ---- */

static pthread_barrier_t barrier;
static int arrived_before, serial_count;
static pthread_mutex_t arrive_lock = PTHREAD_MUTEX_INITIALIZER;

static void *at_barrier(void *arg) {
    (void)arg;
    pthread_mutex_lock(&arrive_lock);
    arrived_before++;
    pthread_mutex_unlock(&arrive_lock);
    int r = pthread_barrier_wait(&barrier);
    pthread_mutex_lock(&arrive_lock);
    if (r == PTHREAD_BARRIER_SERIAL_THREAD) serial_count++;
    int seen = arrived_before;
    pthread_mutex_unlock(&arrive_lock);
    return (void *)(long)seen;
}

static sem_t items, slots;
static int ring[4], ring_head, ring_tail;

static void *sem_producer(void *arg) {
    (void)arg;
    for (int i = 1; i <= 100; i++) {
        sem_wait(&slots);
        ring[ring_head++ % 4] = i;
        sem_post(&items);
    }
    return NULL;
}

static void barrier_and_semaphores(void) {
    pthread_t threads[4];
    pthread_barrier_init(&barrier, NULL, 5);
    for (int i = 0; i < 4; i++) pthread_create(&threads[i], NULL, at_barrier, NULL);
    int r = pthread_barrier_wait(&barrier);
    if (r == PTHREAD_BARRIER_SERIAL_THREAD) {
        pthread_mutex_lock(&arrive_lock);
        serial_count++;
        pthread_mutex_unlock(&arrive_lock);
    }
    long all_seen = 1;
    for (int i = 0; i < 4; i++) {
        void *seen;
        pthread_join(threads[i], &seen);
        if ((long)seen != 4) all_seen = 0;
    }
    say("R barrier: every thread saw all 4 arrive %ld, one serial thread %d\n", all_seen, serial_count == 1);

    sem_init(&items, 0, 0);
    sem_init(&slots, 0, 4);
    pthread_t producer;
    pthread_create(&producer, NULL, sem_producer, NULL);
    long sum = 0;
    for (int i = 0; i < 100; i++) {
        sem_wait(&items);
        sum += ring[ring_tail++ % 4];
        sem_post(&slots);
    }
    pthread_join(producer, NULL);
    say("R semaphores: 100 items through a ring of 4, sum %ld\n", sum);
}

/* ---- timeouts ---- */

static void timeouts(void) {
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    struct timespec start, end, deadline;
    clock_gettime(CLOCK_REALTIME, &start);
    deadline = start;
    deadline.tv_nsec += 30 * 1000 * 1000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    pthread_mutex_lock(&m);
    int r = pthread_cond_timedwait(&c, &m, &deadline);
    pthread_mutex_unlock(&m);
    clock_gettime(CLOCK_REALTIME, &end);
    long waited_ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
    say("R cond_timedwait: %s, waited at least 30 ms %d\n", r == ETIMEDOUT ? "ETIMEDOUT" : strerror(r),
        waited_ms >= 29);

    sem_t never;
    sem_init(&never, 0, 0);
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_nsec += 10 * 1000 * 1000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }
    r = sem_timedwait(&never, &deadline);
    say("R sem_timedwait: %d %s\n", r, r == -1 && errno == ETIMEDOUT ? "ETIMEDOUT" : strerror(errno));

    uint32_t word = 5;
    long f = futex(&word, FUTEX_WAIT_PRIVATE, 6, NULL);
    say("R futex wait on a changed value: %ld %s\n", f, f == -1 && errno == EAGAIN ? "EAGAIN" : strerror(errno));
    struct timespec rel = {0, 20 * 1000 * 1000};
    clock_gettime(CLOCK_MONOTONIC, &start);
    f = futex(&word, FUTEX_WAIT_PRIVATE, 5, &rel);
    clock_gettime(CLOCK_MONOTONIC, &end);
    waited_ms = (end.tv_sec - start.tv_sec) * 1000 + (end.tv_nsec - start.tv_nsec) / 1000000;
    say("R futex wait with a timeout: %ld %s, waited at least 20 ms %d\n", f,
        f == -1 && errno == ETIMEDOUT ? "ETIMEDOUT" : strerror(errno), waited_ms >= 19);
    f = futex(&word, FUTEX_WAKE_PRIVATE, 10, NULL);
    say("R futex wake with no waiter: %ld\n", f);
    f = futex((uint32_t *)((char *)&word + 1), FUTEX_WAKE_PRIVATE, 1, NULL);
    say("R futex on an unaligned word: %ld %s\n", f, f == -1 && errno == EINVAL ? "EINVAL" : strerror(errno));
    f = futex((uint32_t *)8, FUTEX_WAIT_PRIVATE, 0, NULL);
    say("R futex wait on a bad address: %ld %s\n", f, f == -1 && errno == EFAULT ? "EFAULT" : strerror(errno));
}

/* ---- futex wake counts ---- */

static uint32_t gate;
static int passed;
static pthread_mutex_t passed_lock = PTHREAD_MUTEX_INITIALIZER;

static void *gate_waiter(void *arg) {
    (void)arg;
    while (__atomic_load_n(&gate, __ATOMIC_SEQ_CST) == 0) futex(&gate, FUTEX_WAIT_PRIVATE, 0, NULL);
    pthread_mutex_lock(&passed_lock);
    passed++;
    pthread_mutex_unlock(&passed_lock);
    return NULL;
}

static void wake_counts(void) {
    pthread_t threads[3];
    for (int i = 0; i < 3; i++) pthread_create(&threads[i], NULL, gate_waiter, NULL);
    /* Let all three reach the wait (a thread that has not yet waited sees the gate open). */
    struct timespec pause = {0, 50 * 1000 * 1000};
    nanosleep(&pause, NULL);
    __atomic_store_n(&gate, 1, __ATOMIC_SEQ_CST);
    long woken = futex(&gate, FUTEX_WAKE_PRIVATE, 2, NULL);
    long more = futex(&gate, FUTEX_WAKE_PRIVATE, 10, NULL);
    for (int i = 0; i < 3; i++) pthread_join(threads[i], NULL);
    say("R futex wake: first woke %ld (asked 2), then %ld, all passed %d\n", woken, more, passed == 3);
}

/* ---- signals to one thread ---- */

static volatile pid_t handled_in;
static pthread_t target_thread;
static volatile int target_ready;
static uint32_t target_done;

static void on_usr1(int signal) {
    (void)signal;
    handled_in = gettid_raw();
}

static void *signal_target(void *arg) {
    pid_t *me = arg;
    *me = gettid_raw();
    target_ready = 1;
    while (__atomic_load_n(&target_done, __ATOMIC_SEQ_CST) == 0) futex(&target_done, FUTEX_WAIT_PRIVATE, 0, NULL);
    return NULL;
}

static void signals_to_threads(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    pid_t target_tid = 0;
    pthread_create(&target_thread, NULL, signal_target, &target_tid);
    while (!target_ready) sched_yield();
    pthread_kill(target_thread, SIGUSR1);
    for (int i = 0; i < 1000 && handled_in == 0; i++) sched_yield();
    say("R pthread_kill: handled in the target thread %d, not main %d\n", handled_in == target_tid,
        handled_in != gettid_raw());
    __atomic_store_n(&target_done, 1, __ATOMIC_SEQ_CST);
    futex(&target_done, FUTEX_WAKE_PRIVATE, 1, NULL);
    pthread_join(target_thread, NULL);
    /* A signal blocked in main but not in a waiting thread goes to that thread. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    handled_in = 0;
    target_ready = 0;
    target_done = 0;
    pthread_create(&target_thread, NULL, signal_target, &target_tid);
    while (!target_ready) sched_yield();
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    kill(getpid(), SIGUSR1);
    for (int i = 0; i < 1000 && handled_in == 0; i++) sched_yield();
    say("R kill to the process with main blocking: handled in the other thread %d\n", handled_in == target_tid);
    __atomic_store_n(&target_done, 1, __ATOMIC_SEQ_CST);
    futex(&target_done, FUTEX_WAKE_PRIVATE, 1, NULL);
    pthread_join(target_thread, NULL);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

/* ---- a thread blocked in read while another writes ---- */

static int pipe_fds[2];

static void *pipe_reader(void *arg) {
    (void)arg;
    char buf[64];
    long total = 0;
    ssize_t n;
    while ((n = read(pipe_fds[0], buf, sizeof buf)) > 0) total += n;
    return (void *)total;
}

static void blocking_io(void) {
    if (pipe(pipe_fds) != 0) say("R pipe failed\n");
    pthread_t reader;
    pthread_create(&reader, NULL, pipe_reader, NULL);
    struct timespec pause = {0, 10 * 1000 * 1000};
    nanosleep(&pause, NULL);
    char block[1000];
    memset(block, 'x', sizeof block);
    for (int i = 0; i < 10; i++)
        if (write(pipe_fds[1], block, sizeof block) != sizeof block) say("R short write\n");
    close(pipe_fds[1]);
    void *total;
    pthread_join(reader, &total);
    close(pipe_fds[0]);
    say("R pipe between threads: %ld bytes\n", (long)total);
}

/* ---- fork from a threaded process ---- */

static void *sleeper(void *arg) {
    (void)arg;
    struct timespec pause = {0, 200 * 1000 * 1000};
    nanosleep(&pause, NULL);
    return NULL;
}

static void fork_with_threads(void) {
    pthread_t t;
    pthread_create(&t, NULL, sleeper, NULL);
    pid_t child = fork();
    if (child == 0) {
        /* One thread here: creating and joining one more works. */
        pthread_t u;
        if (pthread_create(&u, NULL, worker, (void *)0) != 0) _exit(3);
        pthread_join(u, NULL);
        _exit(gettid_raw() == getpid() ? 0 : 4);
    }
    int status;
    waitpid(child, &status, 0);
    pthread_join(t, NULL);
    say("R fork with threads: child %s\n", WIFEXITED(status) && WEXITSTATUS(status) == 0 ? "exited 0" : "failed");
}

/* ---- main's pthread_exit: the last thread ends the process ---- */

static void *last_thread(void *arg) {
    pthread_t main_thread = *(pthread_t *)arg;
    pthread_join(main_thread, NULL);
    say("R done\n");
    return NULL;
}

int main(void) {
    create_and_join();
    condition_variable();
    barrier_and_semaphores();
    timeouts();
    wake_counts();
    signals_to_threads();
    blocking_io();
    fork_with_threads();
    static pthread_t main_thread;
    main_thread = pthread_self();
    pthread_t last;
    pthread_create(&last, NULL, last_thread, &main_thread);
    pthread_exit(NULL);
}
