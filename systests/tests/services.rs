//! System services (docs/services.md, docs/manifest.md): init starts the services of
//! `/etc/services` with their capabilities, supervises and restarts them with backoff, the
//! name service resolves (also after a restart), and the console driver edits lines that come
//! in through the UART's interrupt path. Each test boots the standard archive with its own
//! manifest in place of `/etc/services`.

use abi::exit::ExitCode;
use systests::{archive_with_manifest, tutti};

const SERVICES: &str = "\
service names
    program /bin/svc_names
    priority 40
    restart always

service console
    program /bin/svc_console
    priority 45
    restart always
    ports 0x3f8-0x3ff
    irq 4

service crashy
    program /bin/svc_crashy
    priority 20
    restart always
    backoff 10ms 100ms

service crashloop
    program /bin/svc_crashloop
    priority 20
    restart always
    backoff 20ms 160ms

service check
    program /bin/svc_check
    priority 10
    restart never
    endpoint crashy
    console
    ports 0x80
    shutdown-on-exit
";

#[test]
fn services_start_resolve_restart_and_back_off() {
    let run = tutti("").initrd(archive_with_manifest("services.cpio", Some(SERVICES))).run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("init: started service names (/bin/svc_names, priority 40)")
        .assert_printed("init: the name service is ready")
        .assert_printed("[INFO] console: serving COM at 0x3f8, interrupt line 4")
        // exactly the listed capabilities
        .assert_printed("svc_check: 3 capabilities, as listed: true, port 0x80: true, 0x81 refused: true")
        // a service that faults is restarted, its client reconnects through the name service
        .assert_printed("init: service crashy faulted: vector 14")
        .assert_printed("init: restarted service crashy")
        .assert_printed("svc_check: 10 pings answered, reconnected 3 times through the name service")
        .assert_printed("svc_check: lookup of crashloop: Err(Denied)")
        // a service that crashes in a loop is backed off and reported
        .assert_printed("init: service crashloop ended without reporting (panic or killed); crashing in a loop")
        .assert_printed("backing off 80 ms")
        .assert_printed("svc_check: status crashy: running")
        .assert_printed("svc_check: status names: running, 0 restarts")
        .assert_printed("svc_check: ok")
        .assert_printed("init: service check exited with status 0; not restarted (policy)")
        .assert_printed("init: shutting down (status 0)");
}

#[test]
fn the_console_driver_edits_lines_from_its_interrupt_path() {
    let run = tutti("").initrd(archive_with_manifest("services-console.cpio", Some(SERVICES))).run().unwrap();
    run.assert_exit(ExitCode::Success)
        .assert_printed("svc_check: written through the console service")
        // the echo of the edited input: backspace erases on the terminal
        .assert_printed("abc\u{8} \u{8}d")
        .assert_printed("read line \"abd\"")
        .assert_printed("read line \"hi there\"")
        .assert_printed("injected [120, 127, 127, 13] (Ok(Done)), read line \"\"")
        .assert_printed("svc_check: a second reader gets Ok(Busy)")
        .assert_printed("oops^C")
        // (the driver's echo and the kernel's console share the UART, so this line may be cut)
        .assert_printed("Ok(Cancelled)")
        .assert_printed("svc_check: ok");
}

#[test]
fn a_malformed_manifest_starts_nothing_and_names_each_bad_line() {
    let bad =
        "service names\n    program /bin/svc_names\n    priority 99\nservice console\n    irq 4\n    frobnicate\n";
    let run = tutti("").initrd(archive_with_manifest("services-bad.cpio", Some(bad))).run().unwrap();
    run.assert_exit(ExitCode::InitFailed)
        .assert_printed("init: /etc/services line 3: priority `99` out of range (0 to 62)")
        .assert_printed("init: /etc/services line 6: unknown keyword `frobnicate`")
        .assert_printed("init: /etc/services line 4: service `console` has no `program` line")
        .assert_printed("init: /etc/services has 3 error(s); starting nothing");
    assert!(!run.printed("started service"), "{}", run.report("a service was started"));
}

#[test]
fn without_a_manifest_init_greets_and_exits() {
    tutti("")
        .initrd(archive_with_manifest("services-none.cpio", None))
        .run()
        .unwrap()
        .assert_exit(ExitCode::Success)
        .assert_printed("init: hello from user space")
        .assert_printed("init: no /etc/services, nothing to start")
        .assert_printed("task init exited with status 0");
}
