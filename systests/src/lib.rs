//! Shared setup of the system tests: where the image under test is, and scratch files.
//!
//! `cargo xtask test` builds the kernel and the boot archive and passes their paths in
//! `TUTTI_KERNEL` and `TUTTI_ARCHIVE` (and a scratch directory in `TUTTI_SCRATCH`). Each test
//! boots its own QEMU, so libtest runs them in parallel, one per host core by default.

use harness::Machine;
use std::path::PathBuf;
use std::time::Duration;

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
