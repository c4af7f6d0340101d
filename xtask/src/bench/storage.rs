//! `cargo xtask bench storage`: file I/O on ext2 over virtio-blk, Tutti beside Linux in the same
//! QEMU with the same flags and the same kind of disk.
//!
//! | figure | per | workload |
//! |---|---|---|
//! | `seqwrite` | MiB | 8 MiB in 64 KiB writes to a new file, then fsync |
//! | `seqread` | MiB | the file read back in 64 KiB reads (Linux drops its page cache first) |
//! | `smallfiles` | file | 500 files of 1 KiB created and written, then all deleted |
//!
//! Tutti runs `fsbench` (os/programs/src/bin/fsbench.rs) as a service beside `svc_fs`, which
//! mounts the disk at `/disk`; Linux runs tools/linuxbench/fsbench.c from the baseline's
//! initramfs, whose script loads the virtio and ext4 modules (from the same Debian kernel
//! package, cached in `target/linux/<package>-modules/`), mounts the disk as ext2 and runs it.
//! Each system gets a fresh 64 MiB image made by `mke2fs -t ext2 -b 4096` for each boot, attached
//! as `virtio-blk-pci` with `cache=unsafe` (the host's own flush is skipped: an fsync costs the
//! guest its work and the device's FLUSH, not the host disk's). Each system boots twice: under
//! `-icount shift=0` for the TSC figures, and without it for the guest-clock times.

use super::{linux_work_dir, thousands, BenchFigures, BenchResults, Options, Report, MEMORY};
use crate::{deps, root, step, Failure};
use harness::linux::{self, LinuxBaseline};
use harness::{Machine, Run};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The figures both programs print, with the unit of one operation.
const FIGURES: [(&str, &str, &str); 3] = [
    ("seqwrite", "MiB", "sequential write of 8 MiB (64 KiB writes) + fsync"),
    ("seqread", "MiB", "sequential read of the 8 MiB back (64 KiB reads), cold"),
    ("smallfiles", "file", "create + write 1 KiB + close, then delete, 500 files"),
];

/// The kernel modules Linux needs for ext2 on virtio-blk, in load order (each after the ones
/// it depends on, as their `.modinfo` `depends=` lists say; ext4 also needs a crc32c driver at
/// mount), as paths in the package.
const LINUX_MODULES: [&str; 11] = [
    "drivers/virtio/virtio_ring.ko",
    "drivers/virtio/virtio.ko",
    "drivers/virtio/virtio_pci_modern_dev.ko",
    "drivers/virtio/virtio_pci_legacy_dev.ko",
    "drivers/virtio/virtio_pci.ko",
    "drivers/block/virtio_blk.ko",
    "lib/crc16.ko",
    "crypto/crc32c_generic.ko",
    "fs/mbcache.ko",
    "fs/jbd2/jbd2.ko",
    "fs/ext4/ext4.ko",
];

const PROGRAM_PATH: &str = "bench/fsbench";
const SCRIPT_PATH: &str = "bench/storage.sh";
const DISK_SIZE: &str = "64M";

/// The manifest Tutti boots with: the name service, fs with the disk and fsbench.
const TUTTI_MANIFEST: &str = "\
service names
    program /bin/svc_names
    priority 40
    restart always

service fs
    program /bin/svc_fs
    priority 30
    quota 2M
    restart always
    ports 0xcf8-0xcff
    ports 0x70-0x71
    device-memory 0xfe000000 0xc00000
    boot-archive

service fsbench
    program /bin/fsbench
    priority 10
    quota 2M
    restart never
    endpoint fs
    shutdown-on-exit
";

/// One system's figures: instructions (icount run) and guest-clock nanoseconds (plain run).
struct Side {
    figures: BTreeMap<&'static str, BenchFigures>,
    ns: BTreeMap<&'static str, u64>,
}

impl Side {
    fn read(icount: &Run, timed: &Run, who: &str) -> Result<Side, Failure> {
        let results = BenchResults::from_lines(icount.lines.iter().map(|l| l.text.as_str()))
            .map_err(|e| Failure(icount.report(&format!("{who}'s fsbench: {e}"))))?;
        let mut figures = BTreeMap::new();
        let mut ns = BTreeMap::new();
        for (name, _, _) in FIGURES {
            figures
                .insert(name, results.get(name).map_err(|e| Failure(icount.report(&format!("{who}: {e}"))))?.clone());
            let prefix = format!("benchtime {name} ns=");
            let value = timed
                .lines
                .iter()
                .find_map(|l| l.text.trim().strip_prefix(&prefix).and_then(|v| v.parse().ok()))
                .ok_or_else(|| Failure(timed.report(&format!("{who} printed no `{prefix}<n>` line"))))?;
            ns.insert(name, value);
        }
        Ok(Side { figures, ns })
    }
}

/// The storage benchmark.
pub fn run(_options: &Options) -> Result<Report, Failure> {
    deps::ensure(&[deps::QEMU, deps::BUSYBOX, deps::GCC, deps::E2FSPROGS])?;
    let work = linux_work_dir().join("storage");
    std::fs::create_dir_all(&work)?;
    let tutti = measure_tutti(&work)?;
    let (baseline, linux) = measure_linux(&work)?;
    let title = format!("Linux {} (Debian {})", baseline.version, baseline.debian_version);
    Ok(Report { markdown: markdown(&tutti, &linux, &title), json: report_json(&tutti, &linux, &title) })
}

/// A fresh ext2 image at `path`.
fn fresh_disk(path: &Path) -> Result<(), Failure> {
    let _ = std::fs::remove_file(path);
    let out = Command::new("mke2fs")
        .args(["-q", "-t", "ext2", "-b", "4096", "-F"])
        .arg(path)
        .arg(DISK_SIZE)
        .output()
        .map_err(|e| Failure(format!("cannot run mke2fs: {e}")))?;
    if !out.status.success() {
        return Err(Failure(format!("mke2fs failed: {}", String::from_utf8_lossy(&out.stderr))));
    }
    Ok(())
}

/// `machine` with a fresh disk at `path` as virtio-blk, booted with or without icount.
fn boot(machine: Machine, disk: &Path, icount: bool) -> Result<Run, Failure> {
    fresh_disk(disk)?;
    let drive = format!("file={},if=none,id=d0,format=raw,cache=unsafe", disk.display());
    let run = machine
        .memory(MEMORY)
        .arg("-drive")
        .arg(&drive)
        .arg("-device")
        .arg("virtio-blk-pci,drive=d0")
        .icount(icount)
        .deadline(Duration::from_secs(600))
        .run()?;
    run.check(abi::exit::ExitCode::Success).map_err(Failure)?;
    Ok(run)
}

fn measure_tutti(work: &Path) -> Result<Side, Failure> {
    let image = crate::image::build()?;
    let bytes = std::fs::read(&image.archive)?;
    let archive = work.join("tutti-storage.cpio");
    std::fs::write(&archive, crate::shell_command::with_manifest(&bytes, TUTTI_MANIFEST)?)?;
    let machine = || Machine::new(&image.kernel).initrd(&archive);
    let disk = work.join("tutti-disk.img");
    step("Tutti: fsbench on ext2 over virtio-blk under -icount");
    let icount = boot(machine(), &disk, true)?;
    step("Tutti: fsbench without icount (guest clock)");
    let timed = boot(machine(), &disk, false)?;
    Side::read(&icount, &timed, "Tutti")
}

fn measure_linux(work: &Path) -> Result<(LinuxBaseline, Side), Failure> {
    step("Linux: preparing the baseline, its modules, and compiling tools/linuxbench/fsbench.c");
    let linux_dir = linux_work_dir();
    let baseline = LinuxBaseline::prepare(&linux_dir)?;
    let modules = linux_modules(&baseline, &linux_dir)?;
    let program = linux::compile_static(
        &root().join("tools/linuxbench/fsbench.c"),
        &linux_dir.join("fsbench"),
        &["-O2", "-Wall", "-Wextra", "-Werror"],
    )?;
    let program = std::fs::read(&program).map_err(|e| Failure(format!("cannot read {}: {e}", program.display())))?;
    let mut extra = vec![(PROGRAM_PATH.to_string(), program), (SCRIPT_PATH.to_string(), script().into_bytes())];
    extra.extend(modules);
    let initramfs = baseline.initramfs(&extra, &work.join("storage-initramfs.cpio"))?;
    let machine = || {
        Machine::new(&baseline.kernel).initrd(&initramfs).append(&linux::kernel_cmdline(&format!("run:/{SCRIPT_PATH}")))
    };
    let disk = work.join("linux-disk.img");
    step(&format!("Linux {}: fsbench under -icount (a minute or two)", baseline.version));
    let icount = boot(machine(), &disk, true)?;
    step("Linux: fsbench without icount (guest clock)");
    let timed = boot(machine(), &disk, false)?;
    Ok((baseline, Side::read(&icount, &timed, "Linux")?))
}

/// Where a module goes in the initramfs.
fn module_path(module: &str) -> String {
    format!("modules/{}", module.rsplit('/').next().unwrap_or(module))
}

/// The busybox script: load the modules, mount the disk, run fsbench, unmount, end. The
/// initramfs has only `sh` linked to busybox, so every other applet is called through it.
fn script() -> String {
    let mut s = String::from("# Generated by `cargo xtask bench storage` (xtask/src/bench/storage.rs).\nset -e\n");
    s.push_str("bb=/bin/busybox\n$bb mount -t proc proc /proc\n$bb mount -t devtmpfs devtmpfs /dev\n");
    for module in LINUX_MODULES {
        s.push_str(&format!("$bb insmod /{}\n", module_path(module)));
    }
    s.push_str("$bb mkdir -p /mnt\n");
    s.push_str("n=0; while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do $bb sleep 0.1; n=$((n+1)); done\n");
    s.push_str("$bb mount -t ext2 /dev/vda /mnt\n");
    s.push_str(&format!("/{PROGRAM_PATH} /mnt\n"));
    s.push_str("$bb umount /mnt\n");
    s.push_str(linux::EXIT_COMMAND);
    s.push('\n');
    s
}

/// The [`LINUX_MODULES`] of the baseline's kernel package as initramfs files. They are kept in
/// `<work>/<package>-modules/`; when one is missing the package is downloaded again with
/// `apt-get download` (the baseline keeps only its `boot/`) and the modules are copied out.
fn linux_modules(baseline: &LinuxBaseline, work: &Path) -> Result<Vec<(String, Vec<u8>)>, Failure> {
    let cache = work.join(format!("{}-modules", baseline.package));
    let cached = |m: &str| cache.join(m.rsplit('/').next().unwrap_or(m));
    if !LINUX_MODULES.iter().all(|m| cached(m).is_file()) {
        fetch_modules(baseline, work, &cache)?;
    }
    LINUX_MODULES
        .iter()
        .map(|m| {
            let bytes = std::fs::read(cached(m)).map_err(|e| Failure(format!("cannot read module {m}: {e}")))?;
            Ok((module_path(m), bytes))
        })
        .collect()
}

fn fetch_modules(baseline: &LinuxBaseline, work: &Path, cache: &Path) -> Result<(), Failure> {
    step(&format!("Linux: downloading {} again for its modules (about 70 MB)", baseline.package));
    let tmp = work.join(format!(".modules.{}.partial", std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let result = (|| {
        let ok = |what: &str, out: std::io::Result<std::process::Output>| match out {
            Ok(o) if o.status.success() => Ok(()),
            Ok(o) => Err(Failure(format!("{what} failed: {}", String::from_utf8_lossy(&o.stderr)))),
            Err(e) => Err(Failure(format!("cannot run {what}: {e}"))),
        };
        ok(
            "apt-get download",
            Command::new("apt-get").args(["download", "--quiet", &baseline.package]).current_dir(&tmp).output(),
        )?;
        let deb = std::fs::read_dir(&tmp)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.extension().is_some_and(|x| x == "deb"))
            .ok_or_else(|| Failure(format!("apt-get download {} left no .deb", baseline.package)))?;
        let root_dir = tmp.join("root");
        ok("dpkg-deb -x", Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root_dir).output())?;
        let kernel_dir = root_dir.join("lib/modules").join(&baseline.version).join("kernel");
        let staged = tmp.join("staged");
        std::fs::create_dir_all(&staged)?;
        for m in LINUX_MODULES {
            let name = m.rsplit('/').next().unwrap_or(m);
            std::fs::copy(kernel_dir.join(m), staged.join(name))
                .map_err(|e| Failure(format!("module {m} is not in {}: {e}", baseline.package)))?;
        }
        let _ = std::fs::remove_dir_all(cache);
        std::fs::rename(&staged, cache)?;
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&tmp);
    result
}

/// (figure, unit, Tutti instructions/op, Linux instructions/op, Tutti ns/op, Linux ns/op).
fn rows(tutti: &Side, linux: &Side) -> Vec<(&'static str, &'static str, &'static str, f64, f64, f64, f64)> {
    FIGURES
        .iter()
        .map(|&(name, unit, what)| {
            let (t, l) = (&tutti.figures[name], &linux.figures[name]);
            let per = |ns: u64, f: &BenchFigures| ns as f64 / f.iterations as f64;
            (name, unit, what, t.per_op_exact(), l.per_op_exact(), per(tutti.ns[name], t), per(linux.ns[name], l))
        })
        .collect()
}

fn markdown(tutti: &Side, linux: &Side, title: &str) -> String {
    let mut out = String::from("## Storage: ext2 on virtio-blk (`cargo xtask bench storage`)\n\n");
    out.push_str(&format!(
        "| operation | per | Tutti instructions | {title} instructions | Tutti ÷ Linux | Tutti µs | Linux µs |\n"
    ));
    out.push_str("|---|---|---:|---:|---:|---:|---:|\n");
    for (_, unit, what, ti, li, tn, ln) in rows(tutti, linux) {
        out.push_str(&format!(
            "| {what} | {unit} | {} | {} | {:.2} | {:.0} | {:.0} |\n",
            thousands(ti.round() as u64),
            thousands(li.round() as u64),
            ti / li,
            tn / 1000.0,
            ln / 1000.0
        ));
    }
    out.push_str(
        "\nInstructions: the guest's TSC under `-icount shift=0` (guest instructions, plus idle time while \
         a system waits for the disk, which Linux spends halted and Tutti polling). µs: the guest's clock \
         in a run without icount. Both disks are fresh 64 MiB ext2 images (4 KiB blocks), `cache=unsafe`.\n",
    );
    out
}

fn report_json(tutti: &Side, linux: &Side, title: &str) -> serde_json::Value {
    let mut figures = serde_json::Map::new();
    for (name, unit, what, _, _, _, _) in rows(tutti, linux) {
        figures.insert(
            name.to_string(),
            json!({
                "what": what,
                "per": unit,
                "tutti": { "tsc": tutti.figures[name].json(), "ns": tutti.ns[name] },
                "linux": { "tsc": linux.figures[name].json(), "ns": linux.ns[name] },
            }),
        );
    }
    json!({ "benchmark": "storage", "linux": title, "memory": MEMORY, "disk": DISK_SIZE, "figures": figures })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_script_loads_every_module_before_mounting_and_ends_the_machine() {
        let s = script();
        let mount = s.find("mount -t ext2").unwrap();
        for m in LINUX_MODULES {
            assert!(s.find(&module_path(m)).unwrap() < mount, "{m}");
        }
        assert!(s.trim_end().ends_with(linux::EXIT_COMMAND));
    }

    #[test]
    fn module_paths_are_flat() {
        assert_eq!(module_path("fs/ext4/ext4.ko"), "modules/ext4.ko");
    }
}
