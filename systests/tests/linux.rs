//! The Linux personality (docs/linux.md): static C programs from `tools/linux-tests/`, built by
//! the host's gcc (`gcc -static -O2`), are put on an ext2 disk (`mke2fs -d`) and run by the
//! native shell's `linux` command through `linuxd`. Each test checks the programs' console
//! output and the command's status; the file test compares with the same program run on the
//! host.

use abi::exit::ExitCode;
use std::process::Command;
use systests::linux::{boot, boot_with, compile, compile_with, disk, output, read, results, scratch};
use systests::shell_outputs;

#[test]
fn linux_hello_prints_argv_and_environ_and_exits_3() {
    let hello = compile("hello", &["-O2"]);
    let pie = compile_with("hello", "hello-pie", &["-O2", "-static-pie", "-fPIE"]);
    let img = disk("linux-hello", &[("hello", read(&hello)), ("hello-pie", read(&pie))]);
    // The default system in 16 MiB: linuxd's standard quota runs one static glibc program.
    let run = boot_with(
        "linux-hello",
        &img,
        &["linux /disk/hello one 'two words'", "linux /disk/hello-pie pie", "linux-counts", "exit 0"],
        None,
        Some("16M"),
    );
    run.assert_exit(ExitCode::Success);
    let outputs = shell_outputs(&run);
    let (text, status) = output(&outputs, "linux /disk/hello one 'two words'");
    assert_eq!(status, 3, "{}", run.report(&text));
    for line in [
        "hello from linux: argc=3",
        "argv[0]=/disk/hello",
        "argv[1]=one",
        "argv[2]=two words",
        "env HOME=/",
        "env PATH=/bin:/disk:/boot/bin",
        "HOME is /",
    ] {
        assert!(text.lines().any(|l| l == line), "`{line}` in:\n{text}");
    }
    let (text, status) = output(&outputs, "linux /disk/hello-pie pie");
    assert_eq!(status, 3, "static-PIE:\n{}", run.report(&text));
    assert!(text.contains("argv[1]=pie"), "{text}");
    let (text, status) = output(&outputs, "linux-counts");
    assert_eq!(status, 0, "{text}");
}

#[test]
fn linux_file_io_on_tmpfs_and_ext2_matches_the_host() {
    let fileio = compile("fileio", &["-O2"]);
    // The same binary on the host, in a fresh directory.
    let host_dir = scratch("linux-fileio-host").join("base");
    let _ = std::fs::remove_dir_all(&host_dir);
    std::fs::create_dir_all(&host_dir).unwrap();
    let host = Command::new(&fileio).arg(&host_dir).output().expect("the test program runs on the host");
    assert!(host.status.success(), "on the host: {host:?}");
    let expected = results(&String::from_utf8_lossy(&host.stdout));
    assert!(expected.last().is_some_and(|l| l == "R done"), "{expected:?}");

    let img = disk("linux-fileio", &[("fileio", read(&fileio))]);
    let commands =
        ["mkdir /tmp/base", "linux /disk/fileio /tmp/base", "mkdir /disk/base", "linux /disk/fileio /disk/base"];
    let run = boot("linux-fileio", &img, &commands);
    let outputs = shell_outputs(&run);
    for command in ["linux /disk/fileio /tmp/base", "linux /disk/fileio /disk/base"] {
        let (text, status) = output(&outputs, command);
        assert_eq!(status, 0, "{}", run.report(&text));
        assert_eq!(results(&text), expected, "`{command}` differs from the host:\n{text}");
    }
}

#[test]
fn linux_malloc_heavy_program_uses_brk_and_mmap() {
    let malloc = compile("malloc", &["-O2"]);
    let host = Command::new(&malloc).output().expect("the test program runs on the host");
    let expected = String::from_utf8_lossy(&host.stdout).into_owned();
    let img = disk("linux-malloc", &[("malloc", read(&malloc))]);
    let run = boot("linux-malloc", &img, &["linux /disk/malloc", "linux /disk/malloc"]);
    let outputs = shell_outputs(&run);
    let runs: Vec<_> = outputs.iter().filter(|(c, _, _)| c == "linux /disk/malloc").collect();
    assert_eq!(runs.len(), 2, "{}", run.report("two runs"));
    for (_, text, status) in runs {
        assert_eq!(*status, 0, "{}", run.report(text));
        let got: Vec<&str> = text.lines().filter(|l| !l.starts_with('[')).collect();
        let want: Vec<&str> = expected.lines().collect();
        assert_eq!(got, want, "{}", run.report("the output differs from the host's"));
    }
}

#[test]
fn linux_bad_input_is_refused_and_linuxd_serves_on() {
    let hello = compile("hello", &["-O2"]);
    let bad = compile("bad", &["-O2"]);
    let dynamic = compile_with("hello", "hello-dynamic", &["-O2"]);
    let mut corrupt = read(&hello);
    corrupt.truncate(200);
    corrupt[40..48].copy_from_slice(&u64::MAX.to_le_bytes());
    // An aarch64 executable header (e_machine 183) in front of the x86_64 program's bytes.
    let mut aarch64 = read(&hello);
    aarch64[18..20].copy_from_slice(&183u16.to_le_bytes());
    let img = disk(
        "linux-bad",
        &[
            ("hello", read(&hello)),
            ("bad", read(&bad)),
            ("dynamic", read(&dynamic)),
            ("corrupt", corrupt),
            ("aarch64", aarch64),
            ("text", b"just some text\n".to_vec()),
        ],
    );
    let commands = [
        "linux /disk/corrupt",
        "linux /disk/aarch64",
        "linux /disk/text",
        "linux /disk/dynamic",
        "linux /disk/missing",
        "linux /disk/bad",
        "linux /disk/bad segv",
        "linux /disk/hello after",
        "linux-counts",
    ];
    let run = boot("linux-bad", &img, &commands);
    let outputs = shell_outputs(&run);
    for command in ["linux /disk/corrupt", "linux /disk/aarch64", "linux /disk/text"] {
        let (text, status) = output(&outputs, command);
        assert_eq!(status, 1, "{}", run.report(&text));
        assert!(text.contains("exec format error (ENOEXEC)"), "{command}: {text}");
    }
    assert!(output(&outputs, "linux /disk/aarch64").0.contains("not x86_64"));
    let (text, status) = output(&outputs, "linux /disk/dynamic");
    assert_eq!(status, 1);
    assert!(text.contains("ENOEXEC") && text.contains("interpreter /lib64/ld-linux-x86-64.so.2 is missing"), "{text}");
    let (text, status) = output(&outputs, "linux /disk/missing");
    assert_eq!(status, 1);
    assert!(text.contains("ENOENT"), "{text}");

    let (text, status) = output(&outputs, "linux /disk/bad");
    assert_eq!(status, 0, "{}", run.report(&text));
    for line in [
        "write bad pointer: -1 errno 14",
        "write kernel-half pointer: -1 errno 14",
        "read bad pointer: -1 errno 14",
        "read into code: -1 errno 14",
        "open bad path: -1 errno 14",
        "unknown call: -1 errno 38",
    ] {
        assert!(text.lines().any(|l| l == line), "`{line}` in:\n{text}");
    }
    let (text, status) = output(&outputs, "linux /disk/bad segv");
    assert_eq!(status, 139, "{}", run.report(&text));
    assert!(text.contains("about to fault") && text.contains("killed by SIGSEGV"), "{text}");
    run.assert_printed("linuxd: pid").assert_printed("killed by SIGSEGV: fault vector 14 at address 0x10");
    // linuxd serves on.
    let (text, status) = output(&outputs, "linux /disk/hello after");
    assert_eq!(status, 3, "{}", run.report(&text));
    let (text, _) = output(&outputs, "linux-counts");
    assert!(text.lines().any(|l| l.trim_start().starts_with("1000 ?")), "{text}");
}

/// Random system calls with hostile arguments from many children
/// (`tools/linux-tests/sysfuzz.c`, which refuses to run anywhere but on Tutti): linuxd answers
/// them all, ends only the children that fault, never restarts, and serves the next program.
#[test]
fn linux_random_system_calls_never_bring_linuxd_down() {
    let fuzz = compile("sysfuzz", &["-O2"]);
    let hello = compile("hello", &["-O2"]);
    let img = disk("linux-sysfuzz", &[("sysfuzz", read(&fuzz)), ("hello", read(&hello))]);
    let commands = ["linux /disk/sysfuzz 20261201 150 400", "linux /disk/sysfuzz 7 150 400", "linux /disk/hello after"];
    let run = boot("linux-sysfuzz", &img, &commands);
    let outputs = shell_outputs(&run);
    for command in &commands[..2] {
        let (text, status) = output(&outputs, command);
        assert_eq!(status, 0, "`{command}`: {}", run.report(&text));
        assert!(text.contains("R children 150 done"), "`{command}`: {}", run.report(&text));
    }
    let (text, status) = output(&outputs, "linux /disk/hello after");
    assert_eq!(status, 3, "{}", run.report(&text));
    assert!(text.contains("argv[1]=after"), "{}", run.report(&text));
    let starts = run.lines.iter().filter(|l| l.text.contains("started service linux")).count();
    assert_eq!(starts, 1, "linuxd was restarted: {}", run.report("restarts"));
    assert!(run.crash().is_none(), "{}", run.report("the kernel crashed"));
}
