//! The console for Linux programs (docs/linux.md, "The console"): Debian's static busybox `sh`
//! as the interactive shell on Tutti's serial console, started by the native shell with
//! `--login` as `cargo xtask run` does. The test types on the console (QEMU's standard input):
//! commands, a line for the `read` built-in, Ctrl-C to a foreground `sleep` (SIGINT, status
//! 130), `exit`, and then a command of the native shell, which has the console again.

use std::time::Duration;
use systests::linux::{disk, machine_with, read};

const WAIT: Duration = Duration::from_secs(60);

/// Waits for a console line ending with `text`: a command's output, after the prompt that
/// busybox may print on the same line when the command was typed ahead.
fn ends(run: &mut harness::Running, text: &str) -> bool {
    run.wait_until(|line| line.trim_end().ends_with(text), WAIT).is_some()
}

#[test]
fn linux_busybox_sh_is_the_interactive_shell_on_the_console() {
    let busybox = harness::linux::find_busybox().expect("the static busybox (busybox-static) is installed");
    let img = disk("linux-console", &[("busybox", read(&busybox))]);
    let machine =
        machine_with("linux-console", &img, &["--login", "linux /disk/busybox sh -i"], Some("8M"), None, true)
            .deadline(Duration::from_secs(240));
    let mut run = machine.spawn().unwrap();
    assert!(run.wait_for("linuxd: serving", WAIT).is_some(), "{}", run.report("linuxd did not start"));

    run.type_text("echo typed $((6*7))\n");
    assert!(ends(&mut run, "typed 42"), "{}", run.report("no answer to a typed command"));

    run.type_text("read first rest; echo \"got:$first:$rest\"\n");
    run.type_text("hello there world\n");
    assert!(ends(&mut run, "got:hello:there world"), "{}", run.report("the read built-in did not get the typed line"));

    // Ctrl-C while a foreground program runs: SIGINT ends it; the shell goes on.
    // The program says when it runs (then becomes sleep), so Ctrl-C comes while it does.
    run.type_text("sh -c 'echo started-sleep; exec sleep 60'; echo not interrupted\n");
    let started = run.wait_until(|l| l.trim_end().ends_with("started-sleep") && !l.contains("echo"), WAIT);
    assert!(started.is_some(), "{}", run.report("the foreground program did not start"));
    run.type_text("\x03");
    run.type_text("echo status:$?\n");
    assert!(ends(&mut run, "status:130"), "{}", run.report("Ctrl-C did not interrupt sleep"));

    run.type_text("echo sleeps:$(ps -o comm | grep -c sleep)\n");
    assert!(ends(&mut run, "sleeps:0"), "{}", run.report("the interrupted sleep is still listed"));

    // Back to the native shell, which reads the console again.
    run.type_text("exit\n");
    assert!(run.wait_for("Back in the Tutti shell", WAIT).is_some(), "{}", run.report("busybox sh did not exit"));
    run.type_text("echo from the native shell\n");
    // The answer, not the echo of the typed line (the prompt may or may not be in front of it).
    let answered =
        run.wait_until(|l| l.trim_end().ends_with("from the native shell") && !l.contains("echo from"), WAIT);
    assert!(answered.is_some(), "{}", run.report("the native shell did not get the console back"));
    assert!(
        !run.lines().iter().any(|l| l.text.contains("tutti:/$ tutti:/$")),
        "{}",
        run.report("the native shell read a line nobody typed")
    );
    run.type_text("exit 0\n");
    let done = run.finish();
    assert!(done.ending == harness::Ending::Exit(abi::exit::ExitCode::Success), "{}", done.report("shutdown"));
}
