//! The Linux personality's processes, signals and pipes (docs/linux.md): `tools/linux-tests/`
//! `procs.c` (fork, vfork, execve, wait4/waitid, process groups and sessions, deaths by
//! signals) and `pipes.c` (pipes between processes, EOF, atomic writes, EPIPE/SIGPIPE,
//! non-blocking ends, poll/ppoll/select/pselect), built static by the host's gcc, run on the host
//! and through linuxd, their `R ` lines compared.

use std::process::Command;
use systests::linux::{boot, compile, disk, output, read, results, scratch};
use systests::shell_outputs;

/// The `R ` lines of `binary` run on the host with `args`; they end with `R done`.
fn on_host(binary: &std::path::Path, args: &[&std::ffi::OsStr]) -> Vec<String> {
    let host = Command::new(binary).args(args).output().expect("the test program runs on the host");
    assert!(host.status.success(), "on the host: {host:?}");
    let expected = results(&String::from_utf8_lossy(&host.stdout));
    assert!(expected.last().is_some_and(|l| l == "R done"), "{expected:?}");
    expected
}

#[test]
fn linux_processes_and_pipes_match_the_host() {
    let procs = compile("procs", &["-O2"]);
    let pipes = compile("pipes", &["-O2"]);
    let host_dir = scratch("linux-procs-host");
    let expected_procs = on_host(&procs, &[host_dir.as_os_str()]);
    let expected_pipes = on_host(&pipes, &[]);

    let img = disk("linux-procs", &[("procs", read(&procs)), ("pipes", read(&pipes))]);
    let commands = ["linux /disk/procs /tmp", "linux /disk/pipes", "linux /disk/procs /disk"];
    let run = boot("linux-procs", &img, &commands);
    let outputs = shell_outputs(&run);
    for (command, expected) in [
        ("linux /disk/procs /tmp", &expected_procs),
        ("linux /disk/pipes", &expected_pipes),
        ("linux /disk/procs /disk", &expected_procs),
    ] {
        let (text, status) = output(&outputs, command);
        assert_eq!(status, 0, "`{command}`: {}", run.report(&text));
        let got = results(&text);
        for (i, (g, e)) in got.iter().zip(expected.iter()).enumerate() {
            assert_eq!(g, e, "`{command}` line {i} differs from the host:\n{text}");
        }
        assert_eq!(got.len(), expected.len(), "`{command}`: {}", run.report(&text));
    }
}
