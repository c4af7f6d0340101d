//! The Linux personality (docs/linux.md): static C programs from `tools/linux-tests/`, built by
//! the host's gcc (`gcc -static -O2`), are put on an ext2 disk (`mke2fs -d`) and run by the
//! native shell's `linux` command through `linuxd`. Each test checks the programs' console
//! output and the command's status; the file test compares with the same program run on the
//! host.

use abi::exit::ExitCode;
use std::path::{Path, PathBuf};
use std::process::Command;
use systests::shell_outputs;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("systests/ is in the repository").to_path_buf()
}

fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(std::env::var_os("TUTTI_SCRATCH").expect("run with cargo xtask test")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tools/linux-tests/<name>.c` built static with `flags` (cached by modification time).
fn compile(name: &str, flags: &[&str]) -> PathBuf {
    let source = repo().join(format!("tools/linux-tests/{name}.c"));
    let binary = scratch("linux-bin").join(name);
    harness::linux::compile_static(&source, &binary, flags).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

/// `tools/linux-tests/<name>.c` built with gcc and exactly `flags` (no `-static` added): a
/// static-PIE or a dynamically linked program, in a file named `out`.
fn compile_with(name: &str, out: &str, flags: &[&str]) -> PathBuf {
    let source = repo().join(format!("tools/linux-tests/{name}.c"));
    let binary = scratch("linux-bin").join(out);
    let result = Command::new("gcc").args(flags).arg("-o").arg(&binary).arg(&source).output().expect("gcc");
    assert!(result.status.success(), "gcc {flags:?}: {}", String::from_utf8_lossy(&result.stderr));
    binary
}

/// A 16 MiB ext2 image holding `files` (name, bytes) at its root.
fn disk(name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
    let dir = scratch(name);
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    for (file, bytes) in files {
        std::fs::write(src.join(file), bytes).unwrap();
    }
    let img = dir.join("disk.img");
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext2", "-d"])
        .arg(&src)
        .arg("-F")
        .arg(&img)
        .arg("16M")
        .output()
        .expect("mke2fs (e2fsprogs) is installed");
    assert!(out.status.success(), "mke2fs: {}", String::from_utf8_lossy(&out.stderr));
    img
}

/// Boots with `disk` attached and the shell running `commands` (as `systests::shell` does),
/// with linuxd's quota raised to 8 MiB: the standard 2.5 MiB keeps the system within 16 MiB but
/// leaves room for one small program only.
fn boot(name: &str, disk: &Path, commands: &[&str]) -> harness::Run {
    boot_with(name, disk, commands, Some("8M"), None)
}

/// [`boot`] with linuxd's quota `quota` (the manifest's if `None`) in `memory` of guest RAM
/// (the harness's default if `None`).
fn boot_with(name: &str, disk: &Path, commands: &[&str], quota: Option<&str>, memory: Option<&str>) -> harness::Run {
    let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
    let mut manifest = String::new();
    let mut in_linux = false;
    for line in systests::manifest().lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("service ") {
            in_linux = trimmed == "service linux";
        }
        if let (true, Some(quota)) = (in_linux && trimmed.starts_with("quota "), quota) {
            manifest.push_str(&format!("    quota {quota}\n"));
            continue;
        }
        manifest.push_str(line);
        manifest.push('\n');
        if trimmed == "service shell" {
            for command in commands {
                manifest.push_str(&format!("    arg {command}\n"));
            }
            manifest.push_str("    restart never\n");
        }
    }
    let archive = systests::archive_with_manifest(&format!("{name}.cpio"), Some(&manifest));
    let mut boot = systests::tutti("");
    if let Some(memory) = memory {
        boot = boot.memory(memory);
    }
    boot.initrd(archive).arg("-drive").arg(&drive).arg("-device").arg("virtio-blk-pci,drive=d0").run().unwrap()
}

fn output(outputs: &[(String, String, i32)], command: &str) -> (String, i32) {
    let found = outputs.iter().find(|(c, _, _)| c == command);
    let (_, text, status) = found.unwrap_or_else(|| panic!("no output of `{command}` in {outputs:#?}"));
    (text.clone(), *status)
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

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
    assert_eq!(status, 3, "static-PIE:\n{text}");
    assert!(text.contains("argv[1]=pie"), "{text}");
    let (text, status) = output(&outputs, "linux-counts");
    assert_eq!(status, 0, "{text}");
}

/// The `R ` lines of `text`.
fn results(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with("R ")).map(String::from).collect()
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
