//! Host programs xtask needs, and installing them on a fresh Debian machine.

use crate::{run_command, step, Failure};
use std::process::Command;

/// A program on the host and the Debian package that provides it.
pub struct Need {
    pub program: &'static str,
    pub package: &'static str,
}

pub const QEMU: Need = Need { program: "qemu-system-x86_64", package: "qemu-system-x86" };
pub const BUSYBOX: Need = Need { program: "busybox", package: "busybox-static" };
pub const GCC: Need = Need { program: "gcc", package: "gcc" };
/// musl-gcc: the Linux personality's tests build their C programs with musl too.
pub const MUSL: Need = Need { program: "musl-gcc", package: "musl-tools" };
/// mke2fs, e2fsck and debugfs: the storage tests make and check ext2 images with them.
pub const E2FSPROGS: Need = Need { program: "mke2fs", package: "e2fsprogs" };
/// ip: the network tests make network namespaces and tap devices.
pub const IPROUTE2: Need = Need { program: "ip", package: "iproute2" };

fn installed(program: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {program}")]).output().is_ok_and(|o| o.status.success())
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// Makes sure every program in `needs` is installed: as root on a Debian machine it installs
/// the missing packages with apt-get; otherwise it fails with the exact command to run.
pub fn ensure(needs: &[Need]) -> Result<(), Failure> {
    let missing: Vec<&str> = needs.iter().filter(|n| !installed(n.program)).map(|n| n.package).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages = missing.join(" ");
    if is_root() && installed("apt-get") {
        step(&format!("installing {packages} with apt-get"));
        run_command(Command::new("apt-get").arg("update").arg("-q"))?;
        run_command(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        return Ok(());
    }
    Err(Failure(format!("missing host packages; install them with:\n    sudo apt-get install -y {packages}")))
}
