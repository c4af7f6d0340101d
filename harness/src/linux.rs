//! The Linux baseline: Debian's kernel and a busybox initramfs, booted in the same QEMU with the
//! same flags as Tutti, so every benchmark has a Linux figure measured in the same run.
//!
//! # What the baseline is
//!
//! * The kernel is the one Debian's `linux-image-amd64` package currently depends on (for
//!   example `linux-image-6.1.0-56-amd64`). [`LinuxBaseline::prepare`] downloads that package
//!   with `apt-get download` and extracts its `boot/vmlinuz-*` with `dpkg-deb -x`; nothing is
//!   installed on the host. The extracted kernel is cached under the work directory (normally
//!   `target/linux/`), and later calls reuse it without touching the network.
//! * The initramfs ([`LinuxBaseline::initramfs`]) holds the static busybox of Debian's
//!   `busybox-static` package and, as `/init`, the program `bootmark`
//!   (tools/bootmark/bootmark.c, a libc-free static binary compiled with the host's gcc).
//!   `bootmark` reads the TSC first thing and prints `bootmark tsc=<decimal>` (see
//!   [`parse_bootmark`]): the moment Linux reached user space, in TSC ticks like Tutti's own
//!   boot figures. Then it does what the `bootmark=<mode>` word of the kernel command line asks:
//!   - `exit`: end the machine at once through QEMU's `isa-debug-exit` device with the value
//!     0x10, the value of [`abi::exit::ExitCode::Success`], so QEMU exits with status
//!     [`QEMU_EXIT_STATUS`] (33) and the harness reports `Ending::Exit(ExitCode::Success)`.
//!   - `run:<path>`: run the busybox shell script `<path>`, which ends the machine by running
//!     [`EXIT_COMMAND`] (`/bin/bootmark-exit`, bootmark again, ending it the same way).
//!   - no `bootmark=` word: an interactive busybox shell, for poking at the baseline by hand.
//!
//!   When it cannot (an unknown mode, or busybox cannot be executed) it prints
//!   `bootmark: <why>` and ends the machine with [`abi::exit::ExitCode::BadConfig`] instead
//!   (QEMU status [`QEMU_FAILURE_STATUS`], 37), so a broken baseline never passes for a run.
//! * The kernel command line is [`kernel_cmdline`]: `console=ttyS0 quiet panic=-1 bootmark=...`.
//!
//! # Reusing it in a benchmark
//!
//! A benchmark packs its workload into the initramfs as an extra file (its C programs compiled
//! with [`compile_static`]) and boots with `bootmark=run:<that file>`; the script prints its own
//! figures on the console and then runs `/bin/bootmark-exit`:
//!
//! ```no_run
//! use harness::linux::{self, LinuxBaseline};
//! use harness::Machine;
//! use std::path::Path;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let linux = LinuxBaseline::prepare(Path::new("target/linux"))?;
//! let script = "echo bench start\nbusybox true\necho bench end\n/bin/bootmark-exit\n";
//! let initramfs = linux.initramfs(
//!     &[("bench/script.sh".to_string(), script.as_bytes().to_vec())],
//!     Path::new("target/linux/bench.cpio"),
//! )?;
//! let run = Machine::new(linux.kernel.clone())
//!     .initrd(initramfs)
//!     .append(&linux::kernel_cmdline("run:/bench/script.sh"))
//!     .icount(true)
//!     .run()?;
//! let tsc = run.lines.iter().find_map(|line| linux::parse_bootmark(&line.text));
//! println!("Linux {} reached user space at TSC {tsc:?}", linux.version);
//! # Ok(())
//! # }
//! ```
//!
//! Booting it by hand (an interactive shell; Ctrl-A X quits QEMU):
//! `qemu-system-x86_64 -M pc -accel tcg -m 128M -display none -serial mon:stdio -no-reboot
//! -kernel <kernel> -initrd <initramfs> -append "console=ttyS0 quiet panic=-1"`.
//!
//! The initramfs has no applet links: the shell finds only its built-ins and a few applets by
//! name, so scripts call other tools as `busybox <applet>` (`busybox cat /proc/cmdline`).

use std::collections::BTreeSet;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

/// The Debian package whose dependency names the current kernel image package.
const META_PACKAGE: &str = "linux-image-amd64";

/// Where the static busybox of Debian's `busybox-static` package lives (`/usr/bin/busybox` on
/// hosts with merged `/usr`, where `/bin` is a link to it).
const BUSYBOX_PATHS: [&str; 2] = ["/bin/busybox", "/usr/bin/busybox"];

/// The kernel command-line words of every baseline boot, before `bootmark=`.
const CMDLINE_BASE: &str = "console=ttyS0 quiet panic=-1";

/// The QEMU process exit status after bootmark ends the machine: it writes 0x10
/// ([`abi::exit::ExitCode::Success`]) to the `isa-debug-exit` port and QEMU exits with
/// `(0x10 << 1) | 1`.
pub const QEMU_EXIT_STATUS: i32 = abi::exit::ExitCode::Success.qemu_status();

/// The QEMU process exit status when bootmark could not do what its mode asked: 0x12
/// ([`abi::exit::ExitCode::BadConfig`]), after printing `bootmark: <why>`.
pub const QEMU_FAILURE_STATUS: i32 = abi::exit::ExitCode::BadConfig.qemu_status();

/// The command that a `bootmark=run:<path>` script runs to end the machine.
pub const EXIT_COMMAND: &str = "/bin/bootmark-exit";

/// The prefix of the line that bootmark prints when Linux starts it.
const BOOTMARK_PREFIX: &str = "bootmark tsc=";

/// A Linux kernel and the pieces of its initramfs, ready to boot.
#[derive(Clone, Debug)]
pub struct LinuxBaseline {
    /// The kernel image (`.../boot/vmlinuz-<version>`), for QEMU's `-kernel`.
    pub kernel: PathBuf,
    /// The kernel release, as `uname -r` prints it (`6.1.0-56-amd64`).
    pub version: String,
    /// The Debian package the kernel came from (`linux-image-6.1.0-56-amd64`).
    pub package: String,
    /// That package's Debian version (`6.1.192-2`), which names the upstream kernel release.
    pub debian_version: String,
    /// The static busybox binary packed as `/bin/busybox`.
    pub busybox: PathBuf,
    /// The compiled tools/bootmark/bootmark.c, packed as `/init` and `/bin/bootmark-exit`.
    pub bootmark: PathBuf,
}

/// Why the Linux baseline could not be prepared or packed. Each message says what to do.
#[derive(Debug)]
#[non_exhaustive]
pub enum LinuxError {
    /// A file operation failed: `action` (such as "create the directory") on `path`.
    Io { action: &'static str, path: PathBuf, source: io::Error },
    /// A host program could not be started; `install` says how to get it.
    ToolMissing { program: &'static str, install: &'static str, source: io::Error },
    /// A host program ran and failed; `advice` says what to do.
    ToolFailed { command: String, status: ExitStatus, stderr: String, advice: &'static str },
    /// `apt-cache depends linux-image-amd64` named no `linux-image-*-amd64` package.
    NoKernelPackage { output: String },
    /// `apt-get download` succeeded but left no `.deb` file in `dir` (a temporary directory,
    /// removed since).
    NoDownloadedPackage { package: String, dir: PathBuf },
    /// The extracted package does not hold exactly one `boot/vmlinuz-*`.
    NoKernelImage { package: String, dir: PathBuf },
    /// No busybox binary at the usual paths.
    BusyboxMissing,
    /// The busybox found is not a static x86_64 ELF executable (`why` says what is wrong).
    BusyboxNotStatic { path: PathBuf, why: String },
    /// An extra initramfs file has a path that cannot be packed (`why` says what is wrong).
    BadExtraPath { path: String, why: &'static str },
}

impl fmt::Display for LinuxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinuxError::Io { action, path, source } => {
                write!(f, "could not {action} {}: {source}", path.display())
            }
            LinuxError::ToolMissing { program, install, source } => {
                write!(f, "could not run `{program}` ({source}); {install}")
            }
            LinuxError::ToolFailed { command, status, stderr, advice } => {
                write!(f, "`{command}` failed ({status}); {advice}")?;
                if !stderr.trim().is_empty() {
                    write!(f, "\nits error output:\n{}", stderr.trim_end())?;
                }
                Ok(())
            }
            LinuxError::NoKernelPackage { output } => write!(
                f,
                "`apt-cache depends {META_PACKAGE}` named no linux-image-*-amd64 package; run \
                 `apt-get update` (as root) with a Debian mirror in /etc/apt/sources.list(.d). \
                 It printed:\n{}",
                output.trim_end()
            ),
            LinuxError::NoDownloadedPackage { package, dir } => write!(
                f,
                "`apt-get download {package}` reported success but left no {package}_*.deb in {}; \
                 run it by hand in an empty directory to see what it does",
                dir.display()
            ),
            LinuxError::NoKernelImage { package, dir } => write!(
                f,
                "the package {package} extracted to {} does not hold exactly one boot/vmlinuz-*; \
                 delete that directory and retry, or check that {META_PACKAGE} still names a kernel \
                 image package (`apt-cache depends {META_PACKAGE}`)",
                dir.display()
            ),
            LinuxError::BusyboxMissing => write!(
                f,
                "no busybox at {}; install the static one with `apt-get install -y busybox-static`",
                BUSYBOX_PATHS.join(" or ")
            ),
            LinuxError::BusyboxNotStatic { path, why } => write!(
                f,
                "{} is not a static x86_64 executable ({why}); the initramfs has no shared \
                 libraries, so install the static busybox with `apt-get install -y busybox-static` \
                 (it replaces the dynamically linked `busybox` package)",
                path.display()
            ),
            LinuxError::BadExtraPath { path, why } => {
                write!(f, "cannot add {path:?} to the Linux initramfs: {why}; choose another path")
            }
        }
    }
}

impl std::error::Error for LinuxError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            LinuxError::Io { source, .. } | LinuxError::ToolMissing { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl LinuxBaseline {
    /// Gets everything the baseline needs, cached under `work_dir` (normally `target/linux/`):
    ///
    /// 1. asks apt (`apt-cache depends linux-image-amd64`, no network) which kernel image
    ///    package is current;
    /// 2. unless `<work_dir>/<package>/` already holds it, downloads that package with
    ///    `apt-get download` (about 70 MB from the Debian mirror; no root needed) and keeps its
    ///    `boot/` directory, extracted with `dpkg-deb -x`;
    /// 3. finds the static busybox of the `busybox-static` package;
    /// 4. compiles tools/bootmark/bootmark.c into `<work_dir>/bootmark` with gcc, unless the
    ///    binary is newer than the source.
    ///
    /// Idempotent, and safe to run from several processes at once: partial results are built
    /// in private temporary directories and renamed into place when complete.
    pub fn prepare(work_dir: &Path) -> Result<LinuxBaseline, LinuxError> {
        create_dir_all(work_dir)?;
        let package = current_kernel_package()?;
        let package_dir = work_dir.join(&package);
        let (kernel, version, debian_version) = match cached_kernel(&package_dir) {
            Some(found) => found,
            None => {
                download_kernel(&package, work_dir, &package_dir)?;
                cached_kernel(&package_dir)
                    .ok_or_else(|| LinuxError::NoKernelImage { package: package.clone(), dir: package_dir })?
            }
        };
        let busybox = find_busybox()?;
        let bootmark = build_bootmark(work_dir)?;
        Ok(LinuxBaseline { kernel, version, package, debian_version, busybox, bootmark })
    }

    /// Writes the baseline's initramfs (a cpio newc archive) to `out` and returns its path.
    ///
    /// It holds `dev/` (with `console`, character device 5:1, through which the kernel gives
    /// `/init` its standard input and output, and `null`, 1:3), `proc/`, `sys/`, `tmp/`,
    /// `bin/busybox`, `bin/sh` (a link to busybox), bootmark as `init` and as
    /// `bin/bootmark-exit`, and then each `extra` file as `(path, contents)`, mode 0755, with
    /// its missing parent directories. Extra paths are relative to the initramfs root (a
    /// leading `/` is ignored) and must not replace one of the files above.
    pub fn initramfs(&self, extra: &[(String, Vec<u8>)], out: &Path) -> Result<PathBuf, LinuxError> {
        let busybox = read(&self.busybox)?;
        let bootmark = read(&self.bootmark)?;
        let archive = build_initramfs(&busybox, &bootmark, extra)?;
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            create_dir_all(parent)?;
        }
        std::fs::write(out, archive).map_err(|source| LinuxError::Io {
            action: "write the initramfs",
            path: out.to_path_buf(),
            source,
        })?;
        Ok(out.to_path_buf())
    }
}

impl LinuxBaseline {
    /// The kernel `modules` (paths under the package's `lib/modules/<version>/kernel/`, such as
    /// `drivers/net/virtio_net.ko`) as initramfs files `modules/<file name>`, in the order
    /// given, for a benchmark script to `insmod`. The baseline keeps only `boot/`, so the first
    /// time a module is missing from `<work_dir>/<package>-kmod/` the package is downloaded
    /// again (`apt-get download`, about 70 MB) and the modules are copied out of it.
    pub fn modules(&self, work_dir: &Path, modules: &[&str]) -> Result<Vec<(String, Vec<u8>)>, LinuxError> {
        let cache = work_dir.join(format!("{}-kmod", self.package));
        if !modules.iter().all(|m| cache.join(m).is_file()) {
            self.fetch_modules(work_dir, &cache, modules)?;
        }
        modules
            .iter()
            .map(|m| {
                let name = m.rsplit('/').next().unwrap_or(m);
                Ok((format!("modules/{name}"), read(&cache.join(m))?))
            })
            .collect()
    }

    /// Downloads the package into a private directory and copies `modules` into `cache`.
    fn fetch_modules(&self, work_dir: &Path, cache: &Path, modules: &[&str]) -> Result<(), LinuxError> {
        let tmp = work_dir.join(format!(".kmod.{}.partial", std::process::id()));
        remove_dir_all(&tmp)?;
        create_dir_all(&tmp)?;
        let result = (|| {
            run(
                Command::new("apt-get").args(["download", "--quiet", &self.package]).current_dir(&tmp),
                "apt-get",
                "the Linux baseline needs a Debian host with apt",
                "downloading needs network access to the Debian mirror in /etc/apt/sources.list(.d)",
            )?;
            let deb = std::fs::read_dir(&tmp)
                .map_err(|source| LinuxError::Io { action: "list the directory", path: tmp.clone(), source })?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .find(|path| path.extension().is_some_and(|x| x == "deb"))
                .ok_or_else(|| LinuxError::NoDownloadedPackage { package: self.package.clone(), dir: tmp.clone() })?;
            let root = tmp.join("root");
            run(
                Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
                "dpkg-deb",
                "install it with `apt-get install -y dpkg`",
                "the downloaded package may be damaged; retry",
            )?;
            let kernel = root.join("lib/modules").join(&self.version).join("kernel");
            for m in modules {
                let to = cache.join(m);
                create_dir_all(to.parent().unwrap_or(cache))?;
                std::fs::copy(kernel.join(m), &to).map_err(|source| LinuxError::Io {
                    action: "copy the kernel module",
                    path: kernel.join(m),
                    source,
                })?;
            }
            Ok(())
        })();
        let cleanup = remove_dir_all(&tmp);
        result.and(cleanup)
    }
}

/// The Linux command line for benchmarks: `console=ttyS0 quiet panic=-1 bootmark=<mode>`, or
/// without the `bootmark=` word when `mode` is empty (an interactive shell).
///
/// * `console=ttyS0`: the kernel's console, and so `/init`'s standard streams, on the serial
///   port that the harness reads.
/// * `quiet`: the baseline should be Linux at its fastest. Without it the kernel prints its
///   whole boot log on the serial port, which is slow under QEMU and would add its printing
///   time to every Linux figure; warnings and errors are still printed.
/// * `panic=-1`: reboot at once on a panic, which with QEMU's `-no-reboot` ends QEMU instead of
///   leaving a dead machine until the deadline.
/// * `bootmark=<mode>`: what `/init` does after printing its TSC line (see the module docs).
///
/// # Panics
/// If `mode` contains white space or a quote, which the kernel would split or strip.
pub fn kernel_cmdline(mode: &str) -> String {
    assert!(
        !mode.contains(|c: char| c.is_whitespace() || c == '"'),
        "bootmark mode {mode:?} contains white space or a quote"
    );
    if mode.is_empty() {
        CMDLINE_BASE.to_string()
    } else {
        format!("{CMDLINE_BASE} bootmark={mode}")
    }
}

/// The TSC value of a console line printed by bootmark (`bootmark tsc=<decimal>`), if `line`
/// is one. Line endings and surrounding white space are ignored, and so is text before the
/// marker (the kernel may print on the same console line).
pub fn parse_bootmark(line: &str) -> Option<u64> {
    let start = line.find(BOOTMARK_PREFIX)?;
    let digits = line[start + BOOTMARK_PREFIX.len()..].trim_end();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The kernel image package that `linux-image-amd64` currently depends on.
fn current_kernel_package() -> Result<String, LinuxError> {
    let output = run(
        Command::new("apt-cache").args(["depends", META_PACKAGE]),
        "apt-cache",
        "the Linux baseline needs a Debian host with apt",
        "run `apt-get update` (as root) with a Debian mirror in /etc/apt/sources.list(.d)",
    )?;
    let output = String::from_utf8_lossy(&output).into_owned();
    kernel_package_from_depends(&output).ok_or(LinuxError::NoKernelPackage { output })
}

/// The first `linux-image-*-amd64` dependency in the output of `apt-cache depends`, whose
/// lines look like `  Depends: linux-image-6.1.0-56-amd64` (virtual packages in `<...>`).
fn kernel_package_from_depends(output: &str) -> Option<String> {
    output.lines().find_map(|line| {
        let target = line.trim().trim_start_matches('|').strip_prefix("Depends:")?.trim();
        let target = target.trim_start_matches('<').trim_end_matches('>');
        let is_image = target.starts_with("linux-image-") && target.ends_with("-amd64") && target != META_PACKAGE;
        is_image.then(|| target.to_string())
    })
}

/// The kernel image, its release and its Debian version, if `package_dir` holds a complete
/// extraction (see [`download_kernel`]).
fn cached_kernel(package_dir: &Path) -> Option<(PathBuf, String, String)> {
    let debian_version = std::fs::read_to_string(package_dir.join("debian-version")).ok()?;
    let mut images =
        std::fs::read_dir(package_dir.join("boot")).ok()?.filter_map(|entry| entry.ok()).filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name.strip_prefix("vmlinuz-")?.to_string();
            Some((entry.path(), version))
        });
    let (kernel, version) = images.next()?;
    if images.next().is_some() {
        return None;
    }
    Some((kernel, version, debian_version.trim().to_string()))
}

/// Downloads `package` and keeps its `boot/` directory and Debian version in `package_dir`,
/// working in a private temporary directory under `work_dir` and renaming the result into
/// place, so that an interrupted run leaves nothing that looks complete.
fn download_kernel(package: &str, work_dir: &Path, package_dir: &Path) -> Result<(), LinuxError> {
    let tmp = work_dir.join(format!(".{package}.{}.partial", std::process::id()));
    remove_dir_all(&tmp)?;
    create_dir_all(&tmp)?;
    let result = download_into(package, &tmp, package_dir);
    let cleanup = remove_dir_all(&tmp);
    result.and(cleanup)
}

/// The body of [`download_kernel`], working in `tmp`.
fn download_into(package: &str, tmp: &Path, package_dir: &Path) -> Result<(), LinuxError> {
    run(
        Command::new("apt-get").args(["download", "--quiet", package]).current_dir(tmp),
        "apt-get",
        "the Linux baseline needs a Debian host with apt",
        "downloading needs network access to the Debian mirror in /etc/apt/sources.list(.d); if \
         the mirror no longer has this version, run `apt-get update` (as root) and retry",
    )?;
    let deb = std::fs::read_dir(tmp)
        .map_err(|source| LinuxError::Io { action: "list the directory", path: tmp.to_path_buf(), source })?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.path())
        .find(|path| {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            name.starts_with(&format!("{package}_")) && name.ends_with(".deb")
        })
        .ok_or_else(|| LinuxError::NoDownloadedPackage { package: package.to_string(), dir: tmp.to_path_buf() })?;

    let dpkg_advice = "the downloaded package may be damaged; retry";
    let version = run(
        Command::new("dpkg-deb").arg("--field").arg(&deb).arg("Version"),
        "dpkg-deb",
        "install it with `apt-get install -y dpkg`",
        dpkg_advice,
    )?;
    let root = tmp.join("root");
    run(
        Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root),
        "dpkg-deb",
        "install it with `apt-get install -y dpkg`",
        dpkg_advice,
    )?;

    // Keep only boot/ (the kernel image, its config and System.map): the modules in lib/ are
    // hundreds of megabytes that an initramfs without modules never loads.
    let staged = tmp.join("staged");
    create_dir_all(&staged)?;
    rename(&root.join("boot"), &staged.join("boot"))?;
    let version_file = staged.join("debian-version");
    std::fs::write(&version_file, version).map_err(|source| LinuxError::Io {
        action: "write",
        path: version_file,
        source,
    })?;
    // A leftover incomplete extraction is in the way of the rename; a complete one, from a
    // process that raced us, wins and ours is dropped.
    if package_dir.exists() && cached_kernel(package_dir).is_none() {
        remove_dir_all(package_dir)?;
    }
    if let Err(source) = std::fs::rename(&staged, package_dir) {
        if cached_kernel(package_dir).is_none() {
            return Err(LinuxError::Io { action: "move the extracted kernel to", path: package_dir.into(), source });
        }
    }
    Ok(())
}

/// The static busybox binary of the `busybox-static` package.
pub fn find_busybox() -> Result<PathBuf, LinuxError> {
    let path = BUSYBOX_PATHS.iter().map(PathBuf::from).find(|p| p.is_file()).ok_or(LinuxError::BusyboxMissing)?;
    let data = read(&path)?;
    check_static_x86_64(&data).map_err(|why| LinuxError::BusyboxNotStatic { path: path.clone(), why })?;
    Ok(path)
}

/// Whether `data` is an x86_64 ELF executable that needs no dynamic loader; if not, why.
fn check_static_x86_64(data: &[u8]) -> Result<(), String> {
    use object::elf::{FileHeader64, EM_X86_64, ET_DYN, ET_EXEC, PT_INTERP};
    use object::read::elf::{FileHeader as _, ProgramHeader as _};

    let header = FileHeader64::<object::Endianness>::parse(data).map_err(|e| format!("not a 64-bit ELF file: {e}"))?;
    let endian = header.endian().map_err(|e| format!("bad ELF header: {e}"))?;
    if header.e_machine(endian) != EM_X86_64 {
        return Err(format!("ELF machine {} is not x86_64", header.e_machine(endian)));
    }
    if !matches!(header.e_type(endian), ET_EXEC | ET_DYN) {
        return Err("not an executable".into());
    }
    let segments = header.program_headers(endian, data).map_err(|e| format!("bad program headers: {e}"))?;
    if segments.iter().any(|s| s.p_type(endian) == PT_INTERP) {
        return Err("dynamically linked".into());
    }
    Ok(())
}

/// Compiles tools/bootmark/bootmark.c into `<work_dir>/bootmark` unless that is newer than the
/// source, and returns the binary's path.
fn build_bootmark(work_dir: &Path) -> Result<PathBuf, LinuxError> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("harness/ is inside the repository");
    compile_static(
        &repo.join("tools/bootmark/bootmark.c"),
        &work_dir.join("bootmark"),
        &["-nostdlib", "-O2", "-fno-stack-protector", "-fno-pie", "-no-pie"],
    )
}

/// Compiles the C program `source` into the static executable `binary` with the host's gcc
/// (`gcc -static <flags> -o <binary> <source>`), unless `binary` is newer than `source`, and
/// returns `binary`. For the baseline's own `/init` and for the programs that benchmarks add
/// to the initramfs. The compiler writes a temporary file next to `binary` that is renamed
/// into place, so concurrent callers never see a partial binary.
pub fn compile_static(source: &Path, binary: &Path, flags: &[&str]) -> Result<PathBuf, LinuxError> {
    let modified = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified());
    let source_time = modified(source).map_err(|source_err| LinuxError::Io {
        action: "read the C source",
        path: source.to_path_buf(),
        source: source_err,
    })?;
    if modified(binary).is_ok_and(|binary_time| binary_time >= source_time) {
        return Ok(binary.to_path_buf());
    }
    let name = binary.file_name().map_or("binary".into(), |n| n.to_string_lossy());
    let tmp = binary.with_file_name(format!(".{name}.{}.partial", std::process::id()));
    run(
        Command::new("gcc").arg("-static").args(flags).arg("-o").arg(&tmp).arg(source),
        "gcc",
        "install it with `apt-get install -y gcc` (static glibc, libc.a, comes with libc6-dev)",
        "the C program does not compile; fix it (the command and gcc's messages follow)",
    )?;
    rename(&tmp, binary)?;
    Ok(binary.to_path_buf())
}

/// The initramfs archive: the fixed files described at [`LinuxBaseline::initramfs`], then
/// `extra`.
fn build_initramfs(busybox: &[u8], bootmark: &[u8], extra: &[(String, Vec<u8>)]) -> Result<Vec<u8>, LinuxError> {
    let mut w = newc::Writer::new();
    w.dir("dev", 0o755)
        .char_device("dev/console", 0o600, 5, 1)
        .char_device("dev/null", 0o666, 1, 3)
        .dir("proc", 0o555)
        .dir("sys", 0o555)
        .dir("tmp", 0o1777)
        .dir("bin", 0o755)
        .file("bin/busybox", 0o755, busybox)
        .symlink("bin/sh", "busybox")
        .file("bin/bootmark-exit", 0o755, bootmark)
        .file("init", 0o755, bootmark);
    let mut dirs: BTreeSet<String> = ["dev", "proc", "sys", "tmp", "bin"].map(String::from).into();
    let mut files: BTreeSet<String> =
        ["dev/console", "dev/null", "bin/busybox", "bin/sh", "bin/bootmark-exit", "init"].map(String::from).into();

    for (path, data) in extra {
        let bad = |why| LinuxError::BadExtraPath { path: path.clone(), why };
        let name = path.strip_prefix('/').unwrap_or(path);
        if name.split('/').any(|part| part.is_empty() || part == "." || part == "..") {
            return Err(bad("it must be a file path without empty, `.` or `..` components"));
        }
        if files.contains(name) || dirs.contains(name) {
            return Err(bad("the initramfs already holds that path"));
        }
        for (end, _) in name.match_indices('/') {
            let parent = &name[..end];
            if files.contains(parent) {
                return Err(bad("one of its parent directories is a file of the initramfs"));
            }
            if dirs.insert(parent.to_string()) {
                w.dir(parent, 0o755);
            }
        }
        w.file(name, 0o755, data);
        files.insert(name.to_string());
    }
    Ok(w.finish())
}

/// Runs `command` and returns its standard output, or says which program is missing (with
/// `install`) or which command failed (with `advice`).
fn run(
    command: &mut Command,
    program: &'static str,
    install: &'static str,
    advice: &'static str,
) -> Result<Vec<u8>, LinuxError> {
    let output = command.output().map_err(|source| LinuxError::ToolMissing { program, install, source })?;
    if output.status.success() {
        return Ok(output.stdout);
    }
    let args = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect::<Vec<_>>().join(" ");
    let mut command_line = format!("{program} {args}");
    if let Some(dir) = command.get_current_dir() {
        command_line = format!("cd {} && {command_line}", dir.display());
    }
    Err(LinuxError::ToolFailed {
        command: command_line,
        status: output.status,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        advice,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, LinuxError> {
    std::fs::read(path).map_err(|source| LinuxError::Io { action: "read", path: path.to_path_buf(), source })
}

fn create_dir_all(path: &Path) -> Result<(), LinuxError> {
    std::fs::create_dir_all(path).map_err(|source| LinuxError::Io {
        action: "create the directory",
        path: path.to_path_buf(),
        source,
    })
}

/// Removes a directory tree; one that does not exist is already removed.
fn remove_dir_all(path: &Path) -> Result<(), LinuxError> {
    match std::fs::remove_dir_all(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => {
            Err(LinuxError::Io { action: "remove the directory", path: path.to_path_buf(), source: e })
        }
        _ => Ok(()),
    }
}

fn rename(from: &Path, to: &Path) -> Result<(), LinuxError> {
    std::fs::rename(from, to).map_err(|source| LinuxError::Io {
        action: "move into place",
        path: to.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_bootmark_line() {
        assert_eq!(parse_bootmark("bootmark tsc=123456789"), Some(123_456_789));
        assert_eq!(parse_bootmark("bootmark tsc=0\r\n"), Some(0));
        assert_eq!(parse_bootmark("[    0.5] noise bootmark tsc=42"), Some(42));
        assert_eq!(parse_bootmark("bootmark tsc=18446744073709551615"), Some(u64::MAX));
    }

    #[test]
    fn rejects_other_lines() {
        assert_eq!(parse_bootmark(""), None);
        assert_eq!(parse_bootmark("bootmark tsc="), None);
        assert_eq!(parse_bootmark("bootmark tsc=12x"), None);
        assert_eq!(parse_bootmark("bootmark tsc=-1"), None);
        assert_eq!(parse_bootmark("bootmark tsc=+1"), None);
        assert_eq!(parse_bootmark("bootmark tsc= 1"), None);
        assert_eq!(parse_bootmark("bootmark tsc=18446744073709551616"), None);
        assert_eq!(parse_bootmark("bootmark: cannot execute /bin/busybox"), None);
        assert_eq!(parse_bootmark("tsc=5"), None);
    }

    #[test]
    fn builds_the_command_line() {
        assert_eq!(kernel_cmdline("exit"), "console=ttyS0 quiet panic=-1 bootmark=exit");
        assert_eq!(kernel_cmdline("run:/bench/a.sh"), "console=ttyS0 quiet panic=-1 bootmark=run:/bench/a.sh");
        assert_eq!(kernel_cmdline(""), "console=ttyS0 quiet panic=-1");
    }

    #[test]
    #[should_panic(expected = "white space")]
    fn refuses_a_mode_the_kernel_would_split() {
        kernel_cmdline("run:/a b.sh");
    }

    #[test]
    fn bootmark_exit_values_match_the_abi() {
        // tools/bootmark/bootmark.c writes these values; the harness decodes them as exit codes.
        use abi::exit::{ExitCode, DEBUG_EXIT_PORT};
        let source = include_str!("../../tools/bootmark/bootmark.c");
        let define = |name: &str, value: u32| format!("#define {name} {value:#x}");
        assert!(source.contains(&define("DEBUG_EXIT_SUCCESS", ExitCode::Success as u32)));
        assert!(source.contains(&define("DEBUG_EXIT_FAILURE", ExitCode::BadConfig as u32)));
        assert!(source.contains(&define("DEBUG_EXIT_PORT", DEBUG_EXIT_PORT.into())));
        assert_eq!((QEMU_EXIT_STATUS, QEMU_FAILURE_STATUS), (33, 37));
        assert!(source.contains(EXIT_COMMAND.trim_start_matches("/bin/")));
    }

    #[test]
    fn finds_the_kernel_package() {
        let output = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(kernel_package_from_depends(output).as_deref(), Some("linux-image-6.1.0-56-amd64"));
        let virtual_dep = "linux-image-amd64\n |Depends: <linux-image-6.12.9-amd64>\n  Depends: foo\n";
        assert_eq!(kernel_package_from_depends(virtual_dep).as_deref(), Some("linux-image-6.12.9-amd64"));
        assert_eq!(kernel_package_from_depends("linux-image-amd64\n  Recommends: firmware\n"), None);
        assert_eq!(kernel_package_from_depends("E: No packages found\n"), None);
    }

    #[test]
    fn packs_the_initramfs() {
        let extra = [
            ("/bench/script.sh".to_string(), b"echo hi\n".to_vec()),
            ("bench/data/x".to_string(), b"x".to_vec()),
            ("etc/motd".to_string(), Vec::new()),
        ];
        let bytes = build_initramfs(b"BUSYBOX", b"BOOTMARK", &extra).unwrap();
        let archive = newc::Archive::new(&bytes).unwrap();
        let entry = |name: &str| archive.find(name).unwrap_or_else(|| panic!("{name} is missing"));
        let console = entry("dev/console");
        assert_eq!((console.rdev_major, console.rdev_minor, console.mode & newc::S_IFMT), (5, 1, newc::S_IFCHR));
        let null = entry("dev/null");
        assert_eq!((null.rdev_major, null.rdev_minor), (1, 3));
        for dir in ["dev", "proc", "sys", "tmp", "bin", "bench", "bench/data", "etc"] {
            assert!(entry(dir).is_dir(), "{dir} is not a directory");
        }
        assert_eq!(entry("init").data, b"BOOTMARK");
        assert_eq!(entry("init").mode, newc::S_IFREG | 0o755);
        assert_eq!(entry("bin/bootmark-exit").data, b"BOOTMARK");
        assert_eq!(entry("bin/busybox").data, b"BUSYBOX");
        assert_eq!((entry("bin/sh").mode & newc::S_IFMT, entry("bin/sh").data), (newc::S_IFLNK, &b"busybox"[..]));
        assert_eq!(entry("bench/script.sh").data, b"echo hi\n");
        assert_eq!(entry("bench/data/x").data, b"x");
        // Each directory comes before what it holds, as the kernel's unpacker needs.
        let names: Vec<&str> = archive.entries().map(|e| e.name).collect();
        let position = |name| names.iter().position(|n| *n == name).unwrap();
        assert!(position("bench") < position("bench/data") && position("bench/data") < position("bench/data/x"));
        assert_eq!(names.iter().filter(|n| **n == "bench").count(), 1);
    }

    #[test]
    fn refuses_bad_extra_paths() {
        for path in ["", "/", "a//b", "../x", "a/./b", "dir/", "init", "/bin/sh", "bin", "init/x", "dev/console/y"] {
            let result = build_initramfs(b"", b"", &[(path.to_string(), Vec::new())]);
            assert!(matches!(result, Err(LinuxError::BadExtraPath { .. })), "{path:?} was accepted");
        }
        let twice = [("a".to_string(), Vec::new()), ("a".to_string(), Vec::new())];
        assert!(build_initramfs(b"", b"", &twice).is_err());
        let file_then_child = [("a".to_string(), Vec::new()), ("a/b".to_string(), Vec::new())];
        assert!(build_initramfs(b"", b"", &file_then_child).is_err());
    }

    #[test]
    fn recognises_a_static_executable() {
        assert!(check_static_x86_64(b"#!/bin/sh\n").is_err());
        // The harness's own test binary is a dynamically linked executable.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert_eq!(check_static_x86_64(&me), Err("dynamically linked".to_string()));
    }

    #[test]
    fn reports_missing_and_failing_programs() {
        let missing = run(&mut Command::new("no-such-program-tutti"), "no-such-program-tutti", "install it", "");
        assert!(matches!(missing, Err(LinuxError::ToolMissing { .. })));
        let failing = run(Command::new("sh").args(["-c", "echo oops >&2; exit 3"]), "sh", "", "try again");
        let message = failing.unwrap_err().to_string();
        assert!(message.starts_with("`sh -c echo oops >&2; exit 3` failed (exit status: 3); try again"), "{message}");
        assert!(message.ends_with("its error output:\noops"), "{message}");
        assert_eq!(run(Command::new("sh").args(["-c", "echo out"]), "sh", "", "").unwrap(), b"out\n");
    }

    #[test]
    fn errors_say_what_to_do() {
        assert!(LinuxError::BusyboxMissing.to_string().contains("apt-get install -y busybox-static"));
        let e = LinuxError::NoKernelPackage { output: String::new() };
        assert!(e.to_string().contains("apt-get update"));
    }

    /// Downloads and builds the real baseline (network, about 70 MB the first time) and boots
    /// it in both benchmark modes (about 20 seconds each):
    /// `cargo test -p harness -- --ignored boots_the_real_baseline`.
    #[test]
    #[ignore]
    fn boots_the_real_baseline() {
        use crate::{Ending, Machine};
        use abi::exit::ExitCode;
        use std::time::Duration;

        let work = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/linux");
        let linux = LinuxBaseline::prepare(&work).unwrap_or_else(|e| panic!("{e}"));
        assert!(linux.kernel.is_file() && linux.version.ends_with("-amd64"), "{linux:?}");
        assert_eq!(LinuxBaseline::prepare(&work).unwrap().kernel, linux.kernel);
        check_static_x86_64(&std::fs::read(&linux.bootmark).unwrap()).unwrap();

        let script = format!("echo script ran\n{EXIT_COMMAND}\necho not reached\n");
        let script = vec![("bench/script.sh".to_string(), script.into_bytes())];
        let cases = [
            ("exit", Vec::new(), ExitCode::Success, None),
            ("run:/bench/script.sh", script, ExitCode::Success, Some("script ran")),
            ("bogus", Vec::new(), ExitCode::BadConfig, Some("bootmark: unknown mode bootmark=bogus")),
        ];
        for (mode, extra, code, expected) in cases {
            let initramfs = linux.initramfs(&extra, &work.join("test.cpio")).unwrap();
            let run = Machine::new(linux.kernel.clone())
                .initrd(initramfs)
                .append(&kernel_cmdline(mode))
                .icount(true)
                .deadline(Duration::from_secs(240))
                .run()
                .unwrap();
            let console = run.console();
            assert_eq!(run.ending, Ending::Exit(code), "{mode}: {console}");
            assert!(run.lines.iter().any(|l| parse_bootmark(&l.text).is_some()), "{mode}: {console}");
            assert!(expected.is_none_or(|text| run.printed(text)) && !run.printed("not reached"), "{console}");
        }
    }
}
