//! The Linux personality against programs of other toolchains (docs/linux.md, "Tests"): the C
//! programs of `tools/linux-tests/` built static with musl (`musl-gcc`), and the Rust programs of
//! `tools/linux-tests/rust/` built static with glibc, each run on the host and through linuxd
//! with the outputs compared.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use systests::linux::{boot, build_rust_programs, compile_musl, disk, output, read, results, scratch};
use systests::shell_outputs;

/// One program to compare: its file on the disk, the command on Tutti, and its arguments on the
/// host; `whole` compares every line of standard output, not only the `R ` ones.
struct Case {
    binary: PathBuf,
    file: String,
    command: String,
    host_args: Vec<OsString>,
    whole: bool,
}

/// The lines compared: `R ` lines, or every line (Tutti's log lines, `[`, left out).
fn compared(text: &str, whole: bool) -> Vec<String> {
    if whole {
        text.lines().filter(|l| !l.starts_with('[')).map(String::from).collect()
    } else {
        results(text)
    }
}

/// Runs every case on the host, then boots Tutti once with `setup` and every case's command,
/// and compares each case's output with the host's.
fn compare(name: &str, cases: &[Case], setup: &[&str]) {
    let expected: Vec<Vec<String>> = cases
        .iter()
        .map(|case| {
            let host = Command::new(&case.binary).args(&case.host_args).output().expect("runs on the host");
            assert!(host.status.success(), "{} on the host: {host:?}", case.file);
            let lines = compared(&String::from_utf8_lossy(&host.stdout), case.whole);
            assert!(case.whole || lines.last().is_some_and(|l| l == "R done"), "{}: {lines:?}", case.file);
            lines
        })
        .collect();
    let files: Vec<(&str, Vec<u8>)> = cases.iter().map(|c| (c.file.as_str(), read(&c.binary))).collect();
    let img = disk(name, &files);
    let mut commands: Vec<&str> = setup.to_vec();
    commands.extend(cases.iter().map(|c| c.command.as_str()));
    commands.push("linux-counts");
    let run = boot(name, &img, &commands);
    let outputs = shell_outputs(&run);
    for (case, expected) in cases.iter().zip(&expected) {
        let (text, status) = output(&outputs, &case.command);
        assert_eq!(status, 0, "`{}`: {}", case.command, run.report(&text));
        let what = format!("`{}`", case.command);
        systests::linux::assert_same_lines(&what, &compared(&text, case.whole), expected, &run.report(&text));
    }
}

fn fresh_dir(name: &str) -> OsString {
    let dir = scratch(name).join("base");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.into_os_string()
}

fn case(binary: &Path, file: &str, args: &str, host_args: Vec<OsString>, whole: bool) -> Case {
    let command = if args.is_empty() { format!("linux /disk/{file}") } else { format!("linux /disk/{file} {args}") };
    Case { binary: binary.to_path_buf(), file: file.to_string(), command, host_args, whole }
}

#[test]
fn linux_musl_programs_match_the_host() {
    let cases = [
        case(&compile_musl("fileio"), "musl-fileio", "/tmp/base", vec![fresh_dir("linux-musl-fileio")], false),
        case(&compile_musl("malloc"), "musl-malloc", "", vec![], true),
        case(&compile_musl("procs"), "musl-procs", "/tmp", vec![fresh_dir("linux-musl-procs")], false),
        case(&compile_musl("pipes"), "musl-pipes", "", vec![], false),
        case(&compile_musl("threads"), "musl-threads", "", vec![], false),
    ];
    compare("linux-musl", &cases, &["mkdir /tmp/base"]);
}

#[test]
fn linux_rust_std_programs_match_the_host() {
    let dir = build_rust_programs();
    let cases = [
        case(&dir.join("rfs"), "rfs", "/tmp", vec![fresh_dir("linux-rust-rfs")], false),
        case(&dir.join("rfs"), "rfs", "/disk/scratch", vec![fresh_dir("linux-rust-rfs-2")], false),
        case(&dir.join("rthreads"), "rthreads", "", vec![], false),
        case(&dir.join("rprocess"), "rprocess", "", vec![], false),
    ];
    compare("linux-rust", &cases, &["mkdir /disk/scratch"]);
}
