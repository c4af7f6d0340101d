//! The user runtime (os/rt) under QEMU: the heap, logging and the typed IPC layer.

use abi::exit::ExitCode;
use systests::tutti;

#[test]
fn rt_heap_grows_across_memory_objects_and_fails_cleanly_over_quota() {
    let run = tutti("init=/bin/rt_heap").run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("rt_heap: collections ok; heap ")
        .assert_printed("rt_heap: big and aligned blocks ok")
        .assert_printed("rt_heap: threads ok")
        .assert_printed("rt_heap_child: 64 MiB: true, last error Some(QuotaExceeded)")
        .assert_printed("rt_heap_child: now an infallible allocation over the quota")
        .assert_printed("memory allocation of 67108864 bytes failed")
        .assert_printed("task rt_heap_child exited with status 101")
        .assert_printed("rt_heap: ok");
    assert!(!run.printed("UNREACHABLE"), "{}", run.report("the infallible allocation must not succeed"));
}

#[test]
fn rt_log_prints_levels_and_prefixes() {
    let run = tutti("init=/bin/rt_log").run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("[INFO] no prefix yet")
        .assert_printed("[INFO] rt_log: the answer is 42")
        .assert_printed("[WARN] rt_log: a warning")
        .assert_printed("[ERROR] rt_log: an error")
        .assert_printed("[DEBUG] rt_log: debug shown after init(Debug)")
        .assert_printed("[WARN] rt_log: only warnings and errors now")
        .assert_printed("rt_log: ok");
    assert!(!run.printed("HIDDEN"), "{}", run.report("records below the level must not print"));
    let long = format!("[INFO] rt_log: long {} end", "x".repeat(1000));
    assert!(run.lines.iter().any(|l| l.text == long), "{}", run.report("a long record prints whole"));
}

#[test]
fn rt_ipc_typed_client_and_server_survive_hostile_messages() {
    let run = tutti("init=/bin/rt_ipc").run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("[INFO] rt_ipc_server: serving")
        .assert_printed("[INFO] rt_ipc: put and get ok")
        .assert_printed("[INFO] rt_ipc: shared buffer sum ok")
        .assert_printed("[INFO] rt_ipc: store and load ok")
        .assert_printed("[INFO] rt_ipc: malformed messages rejected")
        .assert_printed("[INFO] rt_ipc: 2000 random messages: ")
        .assert_printed("rt_ipc: the server still serves after 2005 hostile messages")
        .assert_printed("rt_ipc: after the server's death: ")
        .assert_printed("rt_ipc: ok");
    assert!(!run.printed("panic"), "{}", run.report("no task may panic"));
}
