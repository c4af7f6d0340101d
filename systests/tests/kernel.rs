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
    // Under -icount the guest's clock advances with its own instructions, so a loaded host (the
    // other tests run in parallel) cannot make wake-ups look late.
    tutti("init=/bin/preempt").icount(true).run().unwrap().assert_exit(ExitCode::Success).assert_printed("preempt: ok");
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

#[test]
fn reading_another_tasks_memory_faults_and_the_supervisor_is_told() {
    let run = tutti("init=/bin/isolation").run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("isolation: supervisor told: vector 14 error 0x4 address 0x300000000000")
        .assert_printed("isolation: ok");
    assert!(!run.printed("ISOLATION BROKEN"));
}

#[test]
fn clients_of_a_killed_server_get_an_error_not_a_hang() {
    let run = tutti("init=/bin/server_death").run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("death_server: took a call (label 7) and will not answer")
        .assert_printed("server_death: killing the server")
        .assert_printed("server_death: done");
    let died = run.lines.iter().filter(|l| l.text == "death_client: call ended with PeerDied").count();
    assert_eq!(died, 2, "{}", run.report("both clients (the one served and the one queued) must get PeerDied"));
}

#[test]
fn a_task_that_exhausts_its_quota_gets_an_error_and_the_system_runs_on() {
    tutti("init=/bin/quota")
        .run()
        .unwrap()
        .assert_exit(ExitCode::Success)
        .assert_printed("then QuotaExceeded")
        .assert_printed("quota_hog: 64 MiB of memory: Some(QuotaExceeded)")
        .assert_printed("quota: ok, the system runs on");
}

#[test]
fn programs_spawned_from_user_space_fault_to_their_supervisor_and_resume() {
    // ipcbench spawns tasks from the boot archive, calls across address spaces, and handles a
    // thousand page faults of a child as its supervisor.
    let run = tutti("init=/bin/ipcbench").deadline(Duration::from_secs(120)).run().unwrap();
    run.assert_exit(ExitCode::Success);
    for name in ["call", "null", "notify", "fault"] {
        run.assert_printed(&format!("bench {name} iterations="));
    }
}

#[test]
fn drivers_get_interrupts_ports_and_device_memory_through_capabilities() {
    tutti("init=/bin/devices")
        .run()
        .unwrap()
        .assert_exit(ExitCode::Success)
        .assert_printed("devices: 5 RTC interrupts through the notification")
        .assert_printed("framebuffer page written and read back: true")
        .assert_printed("devices: ok");
}

/// Parses `timer_check: sleep <ms> ms took <a> to <b> us, median <m> us`: (a, m).
fn sleep_range(run: &harness::Run, ms: u64) -> (u64, u64) {
    let prefix = format!("timer_check: sleep {ms} ms took ");
    let line = run.find(&prefix).unwrap_or_else(|| panic!("{}", run.report("the sleep line")));
    let rest = &line.text[line.text.find(&prefix).unwrap() + prefix.len()..];
    let numbers: Vec<u64> =
        rest.split(|c: char| !c.is_ascii_digit()).filter(|w| !w.is_empty()).map(|w| w.parse().unwrap()).collect();
    (numbers[0], numbers[2])
}

#[test]
fn sleeps_and_timeouts_last_what_was_asked_not_a_tick() {
    // Deterministic time: under -icount the guest clock follows instructions, not host load.
    let run = tutti("init=/bin/timer_check").icount(true).run().unwrap();
    run.assert_exit(ExitCode::Success).assert_printed("timer_check: ok").assert_printed("readings advance: true");
    for ms in [1, 2, 5] {
        let (shortest, median) = sleep_range(&run, ms);
        assert!(shortest >= ms * 1000, "sleep {ms} ms: {shortest} us");
        // With the old periodic 100 Hz tick a sleep ended at the next tick, anywhere up to 10 ms
        // later. (Only the median is bounded: while the guest idles, QEMU's virtual clock follows
        // the host's, so a loaded host can stretch single samples.)
        assert!(median < ms * 1000 + 1000, "sleep {ms} ms took {median} us (median)");
    }
}
