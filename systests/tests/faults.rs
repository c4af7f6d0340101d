//! Kernel faults are caught and reported (vector, error code, registers, backtrace), the
//! machine stops with a distinct status, and the harness turns that into a failure that shows
//! the report with a symbolised backtrace.

use abi::exit::ExitCode;
use systests::tutti;

/// Boots with `crash=<kind>` and checks the report.
fn crash(kind: &str, status: ExitCode, headline: &str, detail: Option<&str>) -> harness::Run {
    let run = tutti(&format!("crash={kind} on_ready=exit")).run().unwrap();
    run.assert_exit(status);
    let report = run.crash().unwrap_or_else(|| panic!("{}", run.report("no crash report")));
    assert!(report.headline.contains(headline), "{}", run.report(&format!("headline should contain {headline:?}")));
    if let Some(detail) = detail {
        assert!(report.details.iter().any(|d| d.contains(detail)), "{}", run.report(&format!("no detail {detail:?}")));
    }
    if status == ExitCode::KernelFault {
        assert!(report.details.iter().any(|d| d.starts_with("rip 0xffffffff8")), "{}", run.report("no registers"));
    }
    // The backtrace is symbolised and passes through the crash code (except when the fault is
    // the fetch from data itself: the calling frame's return address is then on the stack but
    // not on the frame-pointer chain); unless the stack overflowed (deeper than the
    // backtrace's 64 frames), it reaches back to kernel_main.
    let frames = run.symbolized_backtrace().join("\n");
    if kind != "exec_data" {
        assert!(frames.contains("kernel::crash::"), "{}", run.report("backtrace misses the crash code"));
    }
    if kind != "stack_overflow" {
        assert!(frames.contains("kernel_main"), "{}", run.report("backtrace does not reach kernel_main"));
    }
    assert!(!run.printed(abi::console::READY));
    run
}

#[test]
fn panic_is_reported_with_message_and_backtrace() {
    let run = crash("panic", ExitCode::Panic, "KERNEL PANIC at kernel/src/crash.rs", None);
    assert!(run.crash().unwrap().headline.ends_with("deliberate panic (crash=panic)"));
    assert!(run.symbolized_backtrace().iter().any(|f| f.contains("kernel::crash::crash+0x")));
}

#[test]
fn harness_turns_a_kernel_panic_into_a_failure_with_the_report() {
    let run = tutti("crash=panic on_ready=exit").run().unwrap();
    let failure = run.check(ExitCode::Success).expect_err("a panicking kernel must fail the check");
    assert!(failure.contains("expected kernel exit Success, got: kernel exit Panic"), "{failure}");
    assert!(failure.contains("KERNEL PANIC at kernel/src/crash.rs"), "{failure}");
    assert!(failure.contains("deliberate panic (crash=panic)"), "{failure}");
    assert!(failure.contains("kernel::crash::crash+0x"), "backtrace not symbolised:\n{failure}");
    let caught = std::panic::catch_unwind(|| {
        run.assert_exit(ExitCode::Success);
    });
    assert!(caught.is_err(), "assert_exit must fail the test");
}

#[test]
fn page_fault_on_unmapped_memory() {
    crash(
        "page_fault",
        ExitCode::KernelFault,
        "#PF page fault (vector 14), error code 0x0",
        Some("page fault at 0xdeadb000: not-present page on read access from kernel mode"),
    );
}

#[test]
fn kernel_text_is_read_only() {
    crash(
        "write_text",
        ExitCode::KernelFault,
        "#PF page fault (vector 14), error code 0x3",
        Some("protection violation on write access"),
    );
}

#[test]
fn kernel_data_is_not_executable() {
    crash(
        "exec_data",
        ExitCode::KernelFault,
        "#PF page fault (vector 14), error code 0x11",
        Some("protection violation on instruction-fetch access"),
    );
}

#[test]
fn invalid_opcode() {
    crash("invalid_opcode", ExitCode::KernelFault, "#UD invalid opcode (vector 6)", None);
}

#[test]
fn breakpoint() {
    crash("breakpoint", ExitCode::KernelFault, "#BP breakpoint (vector 3)", None);
}

#[test]
fn stack_overflow_hits_the_guard_page_and_double_faults_onto_its_own_stack() {
    let run = crash("stack_overflow", ExitCode::KernelFault, "#DF double fault (vector 8)", None);
    assert!(run.symbolized_backtrace().iter().any(|f| f.contains("kernel::crash::recurse")));
}
