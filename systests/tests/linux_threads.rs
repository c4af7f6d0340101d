//! The Linux personality's threads and futexes (docs/linux.md): `tools/linux-tests/threads.c`
//! (glibc pthreads: create/join, thread ids, thread-local storage, mutexes, condition variables,
//! barriers, semaphores, timed waits, raw futex calls, signals to one thread, blocking I/O in a
//! thread, fork from a threaded process, `pthread_exit` from main), built static by the host's
//! gcc, run on the host and through linuxd, its `R ` lines compared.

use std::process::Command;
use systests::linux::{boot, compile, disk, output, read, results};
use systests::shell_outputs;

#[test]
fn linux_threads_and_futexes_match_the_host() {
    let threads = compile("threads", &["-O2", "-pthread"]);
    let host = Command::new(&threads).output().expect("the test program runs on the host");
    assert!(host.status.success(), "on the host: {host:?}");
    let expected = results(&String::from_utf8_lossy(&host.stdout));
    assert!(expected.last().is_some_and(|l| l == "R done"), "{expected:?}");

    let img = disk("linux-threads", &[("threads", read(&threads))]);
    let command = "linux /disk/threads";
    let run = boot("linux-threads", &img, &[command, "linux-counts"]);
    let outputs = shell_outputs(&run);
    let (text, status) = output(&outputs, command);
    assert_eq!(status, 0, "`{command}`: {}", run.report(&text));
    systests::linux::assert_same_lines(&format!("`{command}`"), &results(&text), &expected, &run.report(&text));
}
