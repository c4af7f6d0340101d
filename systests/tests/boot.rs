//! Kernel bring-up on a good machine: banner, memory, boot archive, timer, ready line.

use abi::exit::ExitCode;
use systests::tutti;

#[test]
fn boots_to_ready_and_shuts_down_cleanly() {
    let run = tutti("on_ready=exit").run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("Tutti 0.1.0 (x86_64) booting")
        .assert_printed("memory: ")
        .assert_printed("boot archive: ")
        .assert_printed(abi::console::READY);
    // The timer really ticks: the kernel waits for three ticks before it exits.
    run.assert_printed("timer: 3 ticks, shutting down");
    assert!(!run.printed("[debug]"), "debug lines at the default level:\n{}", run.console());
}

#[test]
fn debug_level_lists_memory_map_and_archive_files() {
    let run = tutti("log=debug on_ready=exit").run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("[debug] command line: \"log=debug on_ready=exit\"")
        .assert_printed("[debug] RAM 0x0000100000-")
        .assert_printed(" etc/motd")
        .assert_printed(" etc/version");
    // Listed with their sizes: etc/version holds "0.1.0\n".
    let version = run.find(" etc/version").unwrap();
    assert!(version.text.contains("100644        6 etc/version"), "{}", version.text);
}

#[test]
fn error_level_prints_only_the_essentials() {
    let run = tutti("log=error on_ready=exit").run().unwrap();
    run.assert_exit(ExitCode::Success).assert_printed(abi::console::READY);
    assert!(!run.printed("[info ]"), "info lines at level error:\n{}", run.console());
}

#[test]
fn reports_memory_with_page_tables_of_its_own() {
    let run = tutti("on_ready=exit").memory("64M").run().unwrap();
    run.assert_exit(ExitCode::Success);
    let line = &run.find("memory: ").unwrap().text;
    // 64 MiB minus the firmware's holes.
    let ram_kib: u64 = line.split("memory: ").nth(1).unwrap().split(' ').next().unwrap().parse().unwrap();
    assert!((60_000..=65_536).contains(&ram_kib), "{line}");
    assert!(line.contains("page-table frames"), "{line}");
}

#[test]
fn stays_up_when_not_asked_to_exit() {
    // Idling after bring-up: the harness must stop it at the deadline.
    let run = tutti("on_ready=idle").deadline(std::time::Duration::from_secs(3)).run().unwrap();
    assert_eq!(run.ending, harness::Ending::TimedOut, "{}", run.report("expected the machine to stay up"));
    run.assert_printed(abi::console::READY);
}
