//! The Linux personality's processes, signals and pipes (docs/linux.md): `tools/linux-tests/`
//! `procs.c` (fork, vfork, execve, wait4/waitid, process groups and sessions, deaths by
//! signals) and `pipes.c` (pipes between processes, EOF, atomic writes, EPIPE/SIGPIPE,
//! non-blocking ends, poll/ppoll/select/pselect), built static by the host's gcc, run on the host
//! and through linuxd, their `R ` lines compared.

use std::process::Command;
use systests::linux::{assert_same_lines, boot, compile, disk, output, read, results, scratch};
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
        assert_same_lines(&format!("`{command}`"), &results(&text), expected, &run.report(&text));
    }
}

/// A directory holding the host's static busybox and a link to it for each of its applets.
fn busybox_bin(dir: &std::path::Path) -> std::path::PathBuf {
    let busybox = harness::linux::find_busybox().expect("the static busybox (busybox-static) is installed");
    let bin = dir.join("bin");
    let _ = std::fs::remove_dir_all(&bin);
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(&busybox, bin.join("busybox")).unwrap();
    let list = Command::new(&busybox).arg("--list").output().expect("busybox --list");
    for applet in String::from_utf8_lossy(&list.stdout).lines().filter(|a| *a != "busybox") {
        std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
    }
    bin
}

#[test]
fn linux_busybox_sh_runs_scripts_with_pipes_loops_and_applets_as_on_the_host() {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/linux-tests/busybox.sh");
    let host = scratch("linux-busybox-host");
    let bin = busybox_bin(&host);
    let work = host.join("work");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let out = Command::new(bin.join("busybox"))
        .arg("sh")
        .arg(&script)
        .arg(&bin)
        .arg(&work)
        .env_clear()
        .output()
        .expect("busybox sh runs on the host");
    assert!(out.status.success(), "on the host: {out:?}");
    let expected: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect();
    assert_eq!(expected.last().map(String::as_str), Some("== done"));

    // The same on an ext2 disk: /disk/bin with the links, the script at /disk/busybox.sh.
    let dir = scratch("linux-busybox");
    let src = dir.join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src).unwrap();
    let status = Command::new("cp").arg("-a").arg(&bin).arg(src.join("bin")).status().unwrap();
    assert!(status.success());
    std::fs::copy(&script, src.join("busybox.sh")).unwrap();
    let img = dir.join("disk.img");
    let made =
        Command::new("mke2fs").args(["-q", "-t", "ext2", "-d"]).arg(&src).arg("-F").arg(&img).arg("16M").output();
    assert!(made.unwrap().status.success());
    let command = "linux /disk/bin/busybox sh /disk/busybox.sh /disk/bin /tmp/bb";
    // /bin/sh for popen and system (glibc runs them with /bin/sh).
    let link = "linux /disk/bin/ln -s /disk/bin /bin";
    let run = boot("linux-busybox", &img, &["mkdir /tmp/bb", link, command, "linux /disk/bin/cat /tmp/bb/errors"]);
    assert_eq!(output(&shell_outputs(&run), link).1, 0, "{}", run.report("ln -s"));
    let outputs = shell_outputs(&run);
    assert!(outputs.iter().any(|(c, _, _)| c == command), "{}", run.report("the script did not finish"));
    let (text, status) = output(&outputs, command);
    let (errors, _) = output(&outputs, "linux /disk/bin/cat /tmp/bb/errors");
    assert_eq!(status, 0, "{}\nstandard error:\n{errors}", run.report(&text));
    let got: Vec<&str> = text.lines().filter(|l| !l.starts_with('[')).collect();
    assert_same_lines("busybox sh", &got, &expected, &format!("{}\nstandard error:\n{errors}", run.report(&text)));
}
