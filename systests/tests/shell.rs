//! The native shell (docs/shell.md), run non-interactively as `cargo xtask run --cmd` does:
//! each command's output and status, the service commands through init, memory use from the
//! kernel's task accounting, the kernel log, and the machine's end with the shell's status.

use abi::exit::ExitCode;
use systests::{shell, shell_outputs, shell_with};

/// The output of the command `name` in `outputs`.
fn output<'a>(outputs: &'a [(String, String, i32)], command: &str) -> (&'a str, i32) {
    let found = outputs.iter().find(|(c, _, _)| c == command);
    let (_, text, status) = found.unwrap_or_else(|| panic!("no output of `{command}` in {outputs:#?}"));
    (text, *status)
}

#[test]
fn commands_print_their_output_and_the_machine_ends_with_the_last_status() {
    let run = shell("shell-basic.cpio", &["echo hello 'big world'", "nosuch", "services", "mem", "dmesg", "exit 3"])
        .run()
        .unwrap();
    // init ends with the shell's status; the kernel reports it and stops with InitFailed.
    run.assert_exit(ExitCode::InitFailed).assert_printed("task init exited with status 3");
    let outputs = shell_outputs(&run);
    assert_eq!(output(&outputs, "echo hello 'big world'"), ("hello big world\n", 0));
    let (text, status) = output(&outputs, "nosuch");
    assert_eq!(status, 1);
    assert!(text.contains("unknown command"), "{text}");

    let (text, status) = output(&outputs, "services");
    assert_eq!(status, 0);
    for service in ["names", "console", "shell"] {
        assert!(
            text.lines().any(|l| l.starts_with(service) && l.contains("running")),
            "`{service}` running in:\n{text}"
        );
    }

    // Every service's quota use, from TaskInfo through init: more than nothing, within quota.
    let (text, status) = output(&outputs, "mem");
    assert_eq!(status, 0);
    for service in ["names", "console", "shell", "total"] {
        let line = text.lines().find(|l| l.starts_with(service)).unwrap_or_else(|| panic!("{service} in:\n{text}"));
        let numbers: Vec<u64> = line.split_whitespace().skip(1).map(|n| n.parse().unwrap()).collect();
        assert!(numbers[0] > 0 && numbers[0] <= numbers[1] && numbers[2] > 0, "{line}");
    }

    // The kernel log ring holds the boot messages and what tasks printed.
    let (text, status) = output(&outputs, "dmesg");
    assert_eq!(status, 0);
    assert!(text.contains("Tutti ready") && text.contains("init: started service shell"), "{text}");
    assert_eq!(output(&outputs, "exit 3").1, 3);
}

#[test]
fn kill_and_restart_go_through_init_and_the_services_come_back() {
    let run = shell(
        "shell-kill.cpio",
        &["kill console", "sleep 200", "restart names", "sleep 200", "services", "kill nosuch"],
    )
    .run()
    .unwrap();
    run.assert_exit(ExitCode::InitFailed)
        .assert_printed("init: killing service console (asked by shell)")
        .assert_printed("init: service names ended without reporting (panic or killed); restarting now (asked)");
    let outputs = shell_outputs(&run);
    let (text, _) = output(&outputs, "services");
    for service in ["names", "console"] {
        let line = text.lines().find(|l| l.starts_with(service)).unwrap_or_else(|| panic!("{service} in:\n{text}"));
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert_eq!((fields[1], fields[2]), ("running", "1"), "{line}");
    }
    let (text, status) = output(&outputs, "kill nosuch");
    assert_eq!(status, 1);
    assert!(text.contains("no service named nosuch"), "{text}");
}

#[test]
fn boots_to_the_shell_with_every_service_in_16_mib_files_and_programs_by_path() {
    let commands = [
        "services",
        "mem",
        "df",
        "echo kept in tmpfs > /note",
        "cat /note",
        "ls /boot/bin",
        "run /boot/bin/rt_log",
        "/boot/bin/user_fault",
        "cat /nothing/here",
        "exit",
    ];
    // The base system: the soft bus needs more (docs/softbus/tutti.md, "Footprint").
    let run = shell_with("shell-16m.cpio", &systests::base_manifest(), &commands).memory("16M").run().unwrap();
    // `exit` without a status: the last command's (the failed cat).
    run.assert_exit(ExitCode::InitFailed).assert_printed("task init exited with status 1");
    let outputs = shell_outputs(&run);
    let (text, _) = output(&outputs, "services");
    for service in ["names", "console", "shell", "fs"] {
        let running = text.lines().any(|l| l.starts_with(&format!("{service} ")) && l.contains("running"));
        assert!(running, "{service} runs in 16 MiB:\n{text}");
    }
    assert!(!text.contains("fault") && !text.contains("vanished") && !text.contains("failed"), "{text}");
    let (text, _) = output(&outputs, "mem");
    assert!(text.lines().any(|l| l.starts_with("fs ")), "{text}");
    let (text, _) = output(&outputs, "df");
    assert!(text.contains("/boot      bootfs  ro") && text.contains("/          tmpfs   rw"), "{text}");
    assert_eq!(output(&outputs, "cat /note"), ("kept in tmpfs\n", 0));
    let (text, _) = output(&outputs, "ls /boot/bin");
    assert!(text.lines().any(|l| l == "shell") && text.lines().any(|l| l == "init"), "{text}");
    // A program run by path prints through the kernel console; a fault ends it, not the shell.
    assert_eq!(output(&outputs, "run /boot/bin/rt_log").1, 0);
    run.assert_printed("rt_log: ok");
    let (text, status) = output(&outputs, "/boot/bin/user_fault");
    assert_eq!(status, 1);
    assert!(text.contains("fault vector 14"), "{text}");
    let (text, status) = output(&outputs, "cat /nothing/here");
    assert_eq!(status, 1);
    assert!(text.contains("/nothing/here"), "{text}");
}
