//! Building the bootable image: the kernel ELF (bare-metal workspace `os/`) and the boot
//! archive (a cpio newc image of `bootfs/`).

use crate::{root, run_command, step, Failure};
use std::path::{Path, PathBuf};
use std::process::Command;

/// What QEMU boots.
#[derive(Debug)]
pub struct Image {
    pub kernel: PathBuf,
    pub archive: PathBuf,
}

/// Refuses a `-m` value too small for QEMU to even load `image`: its firmware owns the first
/// MiB, the kernel image follows at 1 MiB, and the boot archive is placed at the top of RAM; if
/// they do not fit, the machine dies before the kernel can say anything. Between this and the
/// kernel's own minimum (docs/boot.md), the kernel itself explains that memory is short.
/// The bytes of a memory size as QEMU's `-m` takes it (`128M`, `1G`).
pub fn memory_bytes(mem: &str) -> Result<u64, Failure> {
    let digits = mem.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let number: u64 = digits.parse().map_err(|_| Failure(format!("cannot read memory size {mem:?} (try 128M)")))?;
    Ok(match &mem[digits.len()..] {
        "" | "M" | "m" | "MB" | "MiB" => number << 20,
        "G" | "g" | "GB" | "GiB" => number << 30,
        "K" | "k" | "KB" | "KiB" => number << 10,
        unit => return Err(Failure(format!("unknown memory unit {unit:?} in {mem:?} (use M or G)"))),
    })
}

/// Whole MiB of a memory size (0 if it cannot be read).
pub fn megabytes(mem: &str) -> u64 {
    memory_bytes(mem).map_or(0, |b| b >> 20)
}

pub fn check_memory(mem: &str, image: &Image) -> Result<(), Failure> {
    let bytes = memory_bytes(mem)?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let needed = loadable_minimum(size(&image.kernel), size(&image.archive));
    if bytes < needed {
        return Err(Failure(format!(
            "{mem} of RAM is too little for QEMU to load Tutti and its boot archive (at least {}M)",
            needed.div_ceil(1 << 20)
        )));
    }
    Ok(())
}

/// The least RAM in which QEMU can place the firmware, the kernel and the archive: the first
/// MiB, the kernel file (an upper bound of its image), the archive, and a MiB of slack for the
/// firmware's and loader's own data.
fn loadable_minimum(kernel: u64, archive: u64) -> u64 {
    (2 << 20) + kernel + archive
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

/// The native programs (one per `os/programs/src/bin/<name>.rs` or
/// `os/programs/src/bin/<name>/main.rs`, as Cargo finds them) as (name, built binary).
fn programs(os: &Path, binaries: &Path) -> Result<Vec<(String, PathBuf)>, Failure> {
    let mut programs = Vec::new();
    for entry in std::fs::read_dir(os.join("programs/src/bin"))? {
        let path = entry?.path();
        let name = if path.is_dir() && path.join("main.rs").is_file() {
            path.file_name().and_then(|s| s.to_str())
        } else if path.extension().and_then(|e| e.to_str()) == Some("rs") {
            path.file_stem().and_then(|s| s.to_str())
        } else {
            None
        };
        if let Some(name) = name {
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

/// The persistent disk of `cargo xtask run`: `target/tutti-disk.img`, a 64 MiB ext2 image made
/// with mke2fs the first time, mounted by the file-system service at /disk.
pub fn disk() -> Result<PathBuf, Failure> {
    persistent_disk(&crate::root().join("target").join("tutti-disk.img"), 64)
}

/// The ext2 image at `path`, made with mke2fs (`mib` MiB) if it does not exist yet; kept
/// across runs, so what a guest stores on it stays.
pub fn persistent_disk(path: &Path, mib: u32) -> Result<PathBuf, Failure> {
    if !path.exists() {
        crate::deps::ensure(&[crate::deps::E2FSPROGS])?;
        crate::step(&format!("making the disk {} (ext2, {mib} MiB)", path.display()));
        crate::run_command(
            std::process::Command::new("mke2fs")
                .args(["-q", "-t", "ext2", "-L", "tutti", "-F"])
                .arg(path)
                .arg(format!("{mib}M")),
        )?;
    }
    Ok(path.to_path_buf())
}

/// `machine` with the devices of `cargo xtask run`: the disk (virtio-blk) and user-mode
/// networking (virtio-net behind QEMU's NAT, which also answers DHCP).
pub fn with_devices(machine: harness::Machine) -> Result<harness::Machine, Failure> {
    let disk = disk()?;
    Ok(machine
        .arg("-drive")
        .arg(&format!("file={},if=none,id=disk0,format=raw", disk.display()))
        .arg("-device")
        .arg("virtio-blk-pci,drive=disk0")
        .arg("-netdev")
        .arg("user,id=net0")
        .arg("-device")
        .arg("virtio-net-pci,netdev=net0"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(dir: &Path, kernel: usize, archive: usize) -> Image {
        let (k, a) = (dir.join("kernel"), dir.join("archive"));
        std::fs::write(&k, vec![0; kernel]).unwrap();
        std::fs::write(&a, vec![0; archive]).unwrap();
        Image { kernel: k, archive: a }
    }

    #[test]
    fn refuses_memory_too_small_to_load_the_image() {
        let dir = std::env::temp_dir().join(format!("xtask-image-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let img = image(&dir, 200 << 10, 800 << 10);
        assert!(check_memory("2M", &img).unwrap_err().0.contains("at least 3M"));
        assert!(check_memory("3M", &img).is_ok());
        assert!(check_memory("1G", &img).is_ok());
        assert!(check_memory("lots", &img).is_err());
        assert!(check_memory("8T", &img).unwrap_err().0.contains("unknown memory unit"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
