//! User mode: init loaded from the boot archive runs in ring 3 with its own address space;
//! hostile system-call arguments get error codes; a faulting task is killed, not the kernel.

use abi::exit::ExitCode;
use systests::tutti;

#[test]
fn init_runs_in_user_mode_and_exits() {
    // init now starts the services of the standard /etc/services and supervises them, so the
    // machine stays up (the harness stops it); services.rs covers init ending on its own.
    let run = tutti("").deadline(std::time::Duration::from_secs(8)).run().unwrap();
    run.assert_printed("starting /bin/init")
        .assert_printed("init: hello from user space")
        .assert_printed("init: started service names")
        .assert_printed("init: the name service is ready")
        .assert_printed("init: started service console")
        .assert_printed("[INFO] console: serving COM at 0x3f8, interrupt line 4");
    assert_eq!(run.ending, harness::Ending::TimedOut, "{}", run.report("init ended"));
    assert!(!run.printed("task init exited"), "{}", run.report("init ended"));
}

#[test]
fn hostile_system_call_arguments_get_error_codes() {
    let run = tutti("init=/bin/syscall_check").run().unwrap();
    run.assert_exit(ExitCode::Success).assert_printed("syscall_check: all ok");
    assert!(!run.printed("WRONG"), "{}", run.report("a hostile argument was not rejected"));
}

#[test]
fn a_faulting_task_is_killed_and_the_kernel_survives() {
    let run = tutti("init=/bin/user_fault").run().unwrap();
    run.assert_exit(ExitCode::InitFailed)
        .assert_printed("user_fault: reading unmapped memory")
        .assert_printed("task user_fault: #PF page fault at rip 0x4")
        .assert_printed("address 0x1000, error code 0x4")
        .assert_printed("task user_fault exited with status -15");
    assert!(run.crash().is_none(), "{}", run.report("the kernel crashed"));
    assert!(!run.printed("survived"));
}

#[test]
fn init_that_is_missing_or_not_a_program_is_refused() {
    tutti("init=/bin/nothing")
        .run()
        .unwrap()
        .assert_exit(ExitCode::BadConfig)
        .assert_printed("error: init: /bin/nothing is not a file in the boot archive");
    tutti("init=/etc/motd")
        .run()
        .unwrap()
        .assert_exit(ExitCode::BadConfig)
        .assert_printed("error: init: /etc/motd: not an ELF file");
}
