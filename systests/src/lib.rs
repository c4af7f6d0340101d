//! Shared setup of the system tests: where the image under test is, and scratch files.
//!
//! `cargo xtask test` builds the kernel and the boot archive and passes their paths in
//! `TUTTI_KERNEL` and `TUTTI_ARCHIVE` (and a scratch directory in `TUTTI_SCRATCH`). Each test
//! boots its own QEMU, so libtest runs them in parallel, one per host core by default.

use harness::Machine;
use std::path::PathBuf;
use std::time::Duration;

pub mod linux;
pub mod softbus;

/// The deadline of one boot. A boot to the ready line takes well under a second under TCG;
/// the margin covers a loaded CI machine. A hang is reported as a failure at the deadline.
pub const DEADLINE: Duration = Duration::from_secs(60);

fn env_path(name: &str) -> PathBuf {
    match std::env::var_os(name) {
        Some(p) => PathBuf::from(p),
        None => panic!("{name} is not set: run the system tests with `cargo xtask test`"),
    }
}

/// The kernel under test.
pub fn kernel() -> PathBuf {
    env_path("TUTTI_KERNEL")
}

/// The boot archive under test.
pub fn archive() -> PathBuf {
    env_path("TUTTI_ARCHIVE")
}

/// A machine booting the image under test with `cmdline`.
pub fn tutti(cmdline: &str) -> Machine {
    Machine::new(kernel()).initrd(archive()).append(cmdline).deadline(DEADLINE)
}

/// Writes `bytes` to a scratch file named `name` and returns its path.
pub fn scratch_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = env_path("TUTTI_SCRATCH");
    std::fs::create_dir_all(&dir).expect("cannot create the scratch directory");
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("cannot write a scratch file");
    path
}

/// The boot archive under test with `etc/services` replaced by `manifest` (or removed), written
/// to the scratch file `name`. Without a soft bus service in `manifest`, `bin/softbusd` is left
/// out too: the archive is RAM, and the base system must fit in 16 MiB.
pub fn archive_with_manifest(name: &str, manifest: Option<&str>) -> PathBuf {
    let bytes = std::fs::read(archive()).expect("the boot archive");
    let original = newc::Archive::new(&bytes).expect("a valid archive");
    let mut writer = newc::Writer::new();
    let softbus = manifest.is_some_and(|m| m.contains("/bin/softbusd"));
    for entry in original.entries() {
        if entry.name == "etc/services" || (entry.name == "bin/softbusd" && !softbus) {
            continue;
        }
        if entry.is_dir() {
            writer.dir(entry.name, 0o755);
        } else if entry.is_file() {
            writer.file(entry.name, 0o755, entry.data);
        }
    }
    if let Some(text) = manifest {
        writer.file("etc/services", 0o644, text.as_bytes());
    }
    scratch_file(name, &writer.finish())
}

/// The manifest of the boot archive under test.
pub fn manifest() -> String {
    let bytes = std::fs::read(archive()).expect("the boot archive");
    let archive = newc::Archive::new(&bytes).expect("a valid archive");
    let entry = archive.find("etc/services").expect("etc/services in the boot archive");
    String::from_utf8(entry.data.to_vec()).expect("a UTF-8 manifest")
}

/// The default manifest without the soft bus: the base system, which runs in 16 MiB
/// (docs/softbus/tutti.md, "Footprint").
pub fn base_manifest() -> String {
    let mut out = String::new();
    let mut skipping = false;
    for line in manifest().lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("service ") {
            skipping = trimmed == "service softbus";
        }
        if !skipping && trimmed != "endpoint softbus" && trimmed != "arg remote=/remote" {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

/// Boots the image under test with the native shell running `commands` (as `cargo xtask run
/// --cmd` does: `arg` lines and `restart never` on the shell service), archive scratch file
/// `name`.
pub fn shell(name: &str, commands: &[&str]) -> Machine {
    shell_with(name, &self::manifest(), commands)
}

/// [`shell`] on `base`, a manifest such as [`base_manifest`].
pub fn shell_with(name: &str, base: &str, commands: &[&str]) -> Machine {
    let mut manifest = String::new();
    for line in base.lines() {
        manifest.push_str(line);
        manifest.push('\n');
        if line.trim() == "service shell" {
            for command in commands {
                manifest.push_str(&format!("    arg {command}\n"));
            }
            manifest.push_str("    restart never\n");
        }
    }
    let archive = archive_with_manifest(name, Some(&manifest));
    Machine::new(kernel()).initrd(archive).append("").deadline(DEADLINE)
}

/// The output of each shell command in `run` (between `--- $ <command>` and `--- exit <n>`), with
/// its status.
pub fn shell_outputs(run: &harness::Run) -> Vec<(String, String, i32)> {
    run.shell_outputs()
}
