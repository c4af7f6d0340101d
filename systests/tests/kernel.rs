//! The microkernel core under QEMU: IPC, scheduling, FPU state, and a system-call storm.

use abi::exit::ExitCode;
use std::time::Duration;
use systests::tutti;

#[test]
fn ipc_ping_pong_with_badges_and_capability_transfer() {
    tutti("init=/bin/ipc_pingpong")
        .run()
        .unwrap()
        .assert_exit(ExitCode::Success)
        .assert_printed("ipc_pingpong: first round trip ok (label, words, badge)")
        .assert_printed("ipc_pingpong: 10000 round trips ok");
}

#[test]
fn a_busy_low_priority_thread_cannot_delay_a_high_priority_one() {
    tutti("init=/bin/preempt").run().unwrap().assert_exit(ExitCode::Success).assert_printed("preempt: ok");
}

#[test]
fn vector_registers_survive_yields_preemption_and_system_calls() {
    tutti("init=/bin/xmm").run().unwrap().assert_exit(ExitCode::Success).assert_printed("xmm: 0 of 60 checks failed");
}

#[test]
fn a_million_random_system_calls_do_not_break_the_kernel() {
    let run = tutti("init=/bin/syscall_fuzz").deadline(Duration::from_secs(240)).run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("syscall_fuzz: seed 0x747574746921, 1000000 calls")
        .assert_printed("syscall_fuzz: ok, the other threads still work");
    assert!(run.crash().is_none());
}
