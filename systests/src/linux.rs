//! Helpers of the Linux personality's system tests (`tests/linux.rs`, `tests/linux_procs.rs`):
//! static C programs from `tools/linux-tests/` built by the host's gcc, ext2 disks holding
//! them, and boots of the shell with linuxd's quota raised.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("systests/ is in the repository").to_path_buf()
}

pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(std::env::var_os("TUTTI_SCRATCH").expect("run with cargo xtask test")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `tools/linux-tests/<name>.c` built static with `flags` (cached by modification time).
pub fn compile(name: &str, flags: &[&str]) -> PathBuf {
    let source = repo().join(format!("tools/linux-tests/{name}.c"));
    let binary = scratch("linux-bin").join(name);
    harness::linux::compile_static(&source, &binary, flags).unwrap_or_else(|e| panic!("building {name}: {e}"))
}

/// `tools/linux-tests/<name>.c` built static by `musl-gcc -O2` (Debian's musl-tools), in a file
/// named `musl-<name>`.
pub fn compile_musl(name: &str) -> PathBuf {
    let source = repo().join(format!("tools/linux-tests/{name}.c"));
    let binary = scratch("linux-bin").join(format!("musl-{name}"));
    let result = Command::new("musl-gcc").args(["-static", "-O2", "-o"]).arg(&binary).arg(&source).output();
    let result = result.unwrap_or_else(|e| panic!("musl-gcc: {e}; install it with `apt-get install -y musl-tools`"));
    assert!(result.status.success(), "musl-gcc {name}: {}", String::from_utf8_lossy(&result.stderr));
    binary
}

/// The Rust programs of `tools/linux-tests/rust/` built by the host's toolchain as static glibc
/// executables (`-C target-feature=+crt-static`, static-PIE); the directory holding them.
pub fn build_rust_programs() -> PathBuf {
    let target_dir = scratch("linux-rust");
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let result = Command::new(cargo)
        .args(["build", "--release", "--offline", "--target", "x86_64-unknown-linux-gnu", "--manifest-path"])
        .arg(repo().join("tools/linux-tests/rust/Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .output()
        .expect("cargo runs");
    assert!(result.status.success(), "building tools/linux-tests/rust: {}", String::from_utf8_lossy(&result.stderr));
    target_dir.join("x86_64-unknown-linux-gnu/release")
}

/// `tools/linux-tests/<name>.c` built with gcc and exactly `flags` (no `-static` added): a
/// static-PIE or a dynamically linked program, in a file named `out`.
pub fn compile_with(name: &str, out: &str, flags: &[&str]) -> PathBuf {
    let source = repo().join(format!("tools/linux-tests/{name}.c"));
    let binary = scratch("linux-bin").join(out);
    let result = Command::new("gcc").args(flags).arg("-o").arg(&binary).arg(&source).output().expect("gcc");
    assert!(result.status.success(), "gcc {flags:?}: {}", String::from_utf8_lossy(&result.stderr));
    binary
}

/// A 16 MiB ext2 image holding `files` (name, bytes) at its root.
pub fn disk(name: &str, files: &[(&str, Vec<u8>)]) -> PathBuf {
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

/// Boots with `disk` attached and the shell running `commands` (as `crate::shell` does),
/// with linuxd's quota raised to 8 MiB: the standard 2.5 MiB keeps the system within 16 MiB but
/// leaves room for one small program only.
pub fn boot(name: &str, disk: &Path, commands: &[&str]) -> harness::Run {
    boot_with(name, disk, commands, Some("8M"), None)
}

/// [`boot`] with linuxd's quota `quota` (the manifest's if `None`) in `memory` of guest RAM
/// (the harness's default if `None`).
pub fn boot_with(
    name: &str,
    disk: &Path,
    commands: &[&str],
    quota: Option<&str>,
    memory: Option<&str>,
) -> harness::Run {
    machine_with(name, disk, commands, quota, memory, true).run().unwrap()
}

/// The machine [`boot_with`] runs, for a test that acts while it runs: the shell service gets
/// `commands` as its arguments (with `restart never` if `once`), linuxd the quota `quota`.
pub fn machine_with(
    name: &str,
    disk: &Path,
    commands: &[&str],
    quota: Option<&str>,
    memory: Option<&str>,
    once: bool,
) -> harness::Machine {
    let drive = format!("file={},if=none,id=d0,format=raw", disk.display());
    let mut manifest = String::new();
    let mut in_linux = false;
    // 16 MiB holds the base system, not the soft bus as well.
    let base = if memory == Some("16M") { crate::base_manifest() } else { crate::manifest() };
    for line in base.lines() {
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
            if once {
                manifest.push_str("    restart never\n");
            }
        }
    }
    let archive = crate::archive_with_manifest(&format!("{name}.cpio"), Some(&manifest));
    let mut boot = crate::tutti("");
    if let Some(memory) = memory {
        boot = boot.memory(memory);
    }
    boot.initrd(archive).arg("-drive").arg(&drive).arg("-device").arg("virtio-blk-pci,drive=d0")
}

pub fn output(outputs: &[(String, String, i32)], command: &str) -> (String, i32) {
    let found = outputs.iter().find(|(c, _, _)| c == command);
    let (_, text, status) = found.unwrap_or_else(|| panic!("no output of `{command}` in {outputs:#?}"));
    (text.clone(), *status)
}

pub fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Asserts that `got` (lines printed on Tutti) equals `expected` (the host's): the first line
/// that differs fails with its number, then a different count; `context` (the output, a run
/// report) goes in the message.
pub fn assert_same_lines<G: AsRef<str> + std::fmt::Debug, E: AsRef<str> + std::fmt::Debug>(
    what: &str,
    got: &[G],
    expected: &[E],
    context: &str,
) {
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g.as_ref(), e.as_ref(), "{what}: line {i} differs from the host:\n{context}");
    }
    assert_eq!(got.len(), expected.len(), "{what}: a different number of lines than the host's:\n{context}");
}

/// The `R ` lines of `text`.
pub fn results(text: &str) -> Vec<String> {
    text.lines().filter(|l| l.starts_with("R ")).map(String::from).collect()
}
