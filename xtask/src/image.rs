//! Building the bootable image: the kernel ELF (bare-metal workspace `os/`) and the boot
//! archive (a cpio newc image of `bootfs/`).

use crate::{root, run_command, step, Failure};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What QEMU boots.
pub struct Image {
    pub kernel: PathBuf,
    pub archive: PathBuf,
}

/// The smallest `-m` with which QEMU can load Tutti at all: its firmware and the kernel image
/// at 1 MiB need the first 2 MiB. Between this and the kernel's own minimum, the kernel itself
/// explains that memory is short.
const QEMU_MIN_MIB: u64 = 2;

/// Refuses a `-m` value too small for QEMU to even load the kernel.
pub fn check_memory(mem: &str) -> Result<(), Failure> {
    let digits = mem.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number: u64 = digits.parse().map_err(|_| Failure(format!("cannot read memory size {mem:?} (try 128M)")))?;
    let mib = match &mem[digits.len()..] {
        "" | "M" | "m" | "MB" | "MiB" => number,
        "G" | "g" | "GB" | "GiB" => number * 1024,
        "K" | "k" | "KB" | "KiB" => number / 1024,
        unit => return Err(Failure(format!("unknown memory unit {unit:?} in {mem:?} (use M or G)"))),
    };
    if mib < QEMU_MIN_MIB {
        return Err(Failure(format!("{mem} of RAM is too little for QEMU to load Tutti (at least {QEMU_MIN_MIB}M)")));
    }
    Ok(())
}

/// Builds the kernel, the native programs and the boot archive.
pub fn build() -> Result<Image, Failure> {
    step("building the kernel and the programs");
    let os = root().join("os");
    run_command(Command::new(env!("CARGO")).current_dir(&os).args(["build", "--release"]))?;
    let binaries = os.join("target/x86_64-unknown-linux-gnu/release");
    let kernel = binaries.join("kernel");

    step("building the boot archive");
    let out = root().join("target/tutti");
    std::fs::create_dir_all(&out)?;
    let archive = out.join("boot.cpio");
    std::fs::write(&archive, boot_archive(&root().join("bootfs"), &programs(&os, &binaries)?)?)?;
    Ok(Image { kernel, archive })
}

/// The native programs (one per `os/programs/src/bin/<name>.rs`) as (name, built binary).
fn programs(os: &Path, binaries: &Path) -> Result<Vec<(String, PathBuf)>, Failure> {
    let mut programs = Vec::new();
    for entry in std::fs::read_dir(os.join("programs/src/bin"))? {
        let path = entry?.path();
        if let (Some(name), Some("rs")) =
            (path.file_stem().and_then(|s| s.to_str()), path.extension().and_then(|e| e.to_str()))
        {
            programs.push((name.to_string(), binaries.join(name)));
        }
    }
    programs.sort();
    Ok(programs)
}

/// A newc archive of the directory tree at `dir` plus the `programs` under `bin/`, directories
/// before their contents, in sorted order so the archive is reproducible.
pub fn boot_archive(dir: &Path, programs: &[(String, PathBuf)]) -> Result<Vec<u8>, Failure> {
    let mut writer = newc::Writer::new();
    add_tree(&mut writer, dir, "")?;
    writer.dir("bin", 0o755);
    for (name, path) in programs {
        let bytes = std::fs::read(path).map_err(|e| Failure(format!("reading {}: {e}", path.display())))?;
        writer.file(&format!("bin/{name}"), 0o755, &bytes);
    }
    Ok(writer.finish())
}

fn add_tree(writer: &mut newc::Writer, dir: &Path, prefix: &str) -> Result<(), Failure> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Failure(format!("reading {}: {e}", dir.display())))?
        .collect::<Result<_, _>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().into_string().map_err(|n| Failure(format!("non-UTF-8 file name {n:?}")))?;
        let path = format!("{prefix}{name}");
        let kind = entry.file_type()?;
        if kind.is_dir() {
            writer.dir(&path, 0o755);
            add_tree(writer, &entry.path(), &format!("{path}/"))?;
        } else if kind.is_file() {
            use std::os::unix::fs::PermissionsExt;
            let perm = entry.metadata()?.permissions().mode() & 0o777;
            writer.file(&path, perm, &std::fs::read(entry.path())?);
        } else {
            return Err(Failure(format!("{}: only files and directories go into the boot archive", path)));
        }
    }
    Ok(())
}
