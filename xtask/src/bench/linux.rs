//! `cargo xtask bench linux`: Tutti's Linux personality (`linuxd`, docs/linux.md) beside native
//! Linux, the same static binaries in the same QEMU with the same flags, counted in guest
//! instructions under `-icount shift=0`.
//!
//! | figure | per | workload |
//! |---|---|---|
//! | `getppid` | call | 100,000 `getppid` system calls (the null system call) |
//! | `forkexec` | process | 200 times fork, execve of a static program that exits, waitpid |
//! | `pipe` | MiB | 16 MiB from a child to its parent through a pipe, 64 KiB per call |
//! | `files` | file | 500 files of 4 KiB created, written, read back and deleted on tmpfs |
//! | `script` | run | busybox `sh` running a script that spawns 200 text-processing processes |
//!
//! Every workload is a mode of one program, tools/linuxbench/lbench.c (static, glibc, compiled
//! here with the host's gcc), and the script is tools/linuxbench/lbench.sh, run by Debian's
//! static busybox. **Tutti** gets the three files in its boot archive under `/boot/bench/` and
//! boots the default system with linuxd's quota raised ([`LINUXD_QUOTA`]) and the native shell
//! running `linux /boot/bench/lbench <mode> ...` once per workload, then `linux-counts` (the
//! system calls linuxd answered with `ENOSYS`). **Linux** gets them in the baseline's initramfs
//! (`/bench/`, busybox at `/bin/busybox`) and runs the same commands from a busybox script.
//! Both work in `/tmp`, a tmpfs on both: Tutti's file-system service mounts tmpfs at `/`, and
//! Linux's initramfs root is a tmpfs (the script prints its type to show it).
//!
//! The script's output must be the same on Tutti, on Linux and on the host (the same busybox
//! run there directly): the benchmark fails otherwise. Targets from the issue: a null system
//! call at most [`NULL_TARGET`] times Linux's, the script at most [`SCRIPT_TARGET`] times.

use super::{linux_work_dir, thousands, BenchFigures, BenchResults, Options, Report, MEMORY};
use crate::{deps, root, step, Failure};
use harness::linux::{self, LinuxBaseline};
use harness::{Machine, Run};
use serde_json::json;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Tutti's null system call through linuxd may take at most this many times Linux's.
const NULL_TARGET: f64 = 3.0;
/// Tutti's run of the busybox script may take at most this many times Linux's.
const SCRIPT_TARGET: f64 = 1.5;

/// linuxd's quota in Tutti's run: the default manifest's 2.5 MiB fits one small program; the
/// script has a shell, a pipeline of five busybox processes and lbench alive at once.
const LINUXD_QUOTA: &str = "64M";

/// How long each machine may run before the harness stops it as hung.
const DEADLINE: Duration = Duration::from_secs(1200);

/// The prefix of the lines in which lbench prints the script's output.
const SCRIPT_OUTPUT: &str = "script| ";

/// The environment lbench gives its children (FIXED_ENV in lbench.c), also for the host's run.
const FIXED_ENV: [(&str, &str); 3] = [("PATH", "/bin"), ("HOME", "/"), ("LANG", "C")];

/// One workload: an lbench mode and its arguments (`{busybox}` and `{script}` stand for the
/// paths on each system).
struct Workload {
    name: &'static str,
    per: &'static str,
    what: &'static str,
    args: &'static str,
    /// The largest Tutti ÷ Linux ratio the issue accepts, if it sets one.
    target: Option<f64>,
}

const WORKLOADS: [Workload; 5] = [
    Workload {
        name: "getppid",
        per: "call",
        what: "null system call: `getppid` (the `syscall` instruction, no libc), 100,000",
        args: "getppid 100000",
        target: Some(NULL_TARGET),
    },
    Workload {
        name: "forkexec",
        per: "process",
        what: "fork + execve of lbench `noop` (static glibc) + waitpid, 200",
        args: "forkexec 200",
        target: None,
    },
    Workload {
        name: "pipe",
        per: "MiB",
        what: "16 MiB from a child to its parent through a pipe, 64 KiB writes and reads",
        args: "pipe 16",
        target: None,
    },
    Workload {
        name: "files",
        per: "file",
        what: "create + write 4 KiB + close, open + read back + close, unlink; 500 files on tmpfs",
        args: "files /tmp/lbench-files 500",
        target: None,
    },
    Workload {
        name: "script",
        per: "run",
        what: "busybox `sh` script: 200 processes (40 pipelines of sed, tr, sort, uniq, awk)",
        args: "script {busybox} {script} /tmp/lbench-script 1",
        target: Some(SCRIPT_TARGET),
    },
];

/// Where the program, busybox and the script are on one system.
struct Paths {
    lbench: &'static str,
    busybox: &'static str,
    script: &'static str,
}

/// In Tutti's boot archive, mounted read-only at `/boot`.
const TUTTI_PATHS: Paths =
    Paths { lbench: "/boot/bench/lbench", busybox: "/boot/bench/busybox", script: "/boot/bench/lbench.sh" };
/// In the Linux baseline's initramfs, which already holds busybox.
const LINUX_PATHS: Paths = Paths { lbench: "/bench/lbench", busybox: "/bin/busybox", script: "/bench/lbench.sh" };

impl Workload {
    /// The command line of this workload on a system whose files are at `paths`.
    fn command(&self, paths: &Paths) -> String {
        let args = self.args.replace("{busybox}", paths.busybox).replace("{script}", paths.script);
        format!("{} {args}", paths.lbench)
    }
}

/// What one system measured: each workload's figures, in [`WORKLOADS`] order, and the script's
/// output.
struct Side {
    figures: Vec<BenchFigures>,
    script_output: Vec<String>,
}

impl Side {
    fn read(run: &Run, who: &str) -> Result<Side, Failure> {
        let results = BenchResults::from_lines(run.lines.iter().map(|l| l.text.as_str()))
            .map_err(|e| Failure(run.report(&format!("{who}'s lbench: {e}"))))?;
        let figures = WORKLOADS
            .iter()
            .map(|w| results.get(w.name).cloned().map_err(|e| Failure(run.report(&format!("{who}: {e}")))))
            .collect::<Result<_, _>>()?;
        Ok(Side { figures, script_output: script_output(run.lines.iter().map(|l| l.text.as_str())) })
    }
}

/// The script's output among console `lines`: the text after [`SCRIPT_OUTPUT`].
fn script_output<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    lines
        .into_iter()
        .filter_map(|l| l.trim_end_matches(['\r', '\n']).strip_prefix(SCRIPT_OUTPUT).map(String::from))
        .collect()
}

/// The bytes of the files both systems get: lbench, busybox and the script.
struct Files {
    lbench: Vec<u8>,
    busybox: Vec<u8>,
    script: Vec<u8>,
}

/// The Linux benchmark.
pub fn run(_options: &Options) -> Result<Report, Failure> {
    deps::ensure(&[deps::QEMU, deps::BUSYBOX, deps::GCC])?;
    let work = linux_work_dir().join("lbench");
    std::fs::create_dir_all(&work)?;
    step("Linux: preparing the baseline and compiling tools/linuxbench/lbench.c");
    let baseline = LinuxBaseline::prepare(&linux_work_dir())?;
    let lbench = linux::compile_static(
        &root().join("tools/linuxbench/lbench.c"),
        &work.join("lbench"),
        &["-O2", "-Wall", "-Wextra", "-Werror"],
    )?;
    let read = |path: &Path| std::fs::read(path).map_err(|e| Failure(format!("cannot read {}: {e}", path.display())));
    let script_path = root().join("tools/linuxbench/lbench.sh");
    let files = Files { lbench: read(&lbench)?, busybox: read(&baseline.busybox)?, script: read(&script_path)? };

    step("the script on the host, for the output both systems must print");
    let expected = host_script_output(&baseline.busybox, &script_path, &work)?;
    let (tutti, unimplemented) = measure_tutti(&files, &work)?;
    let linux = measure_linux(&baseline, &files, &work)?;
    for (who, side) in [("Tutti", &tutti), ("Linux", &linux)] {
        if side.script_output != expected {
            return Err(Failure(format!(
                "the script's output on {who} differs from the host's.\n{who}:\n{}\nthe host:\n{}",
                side.script_output.join("\n"),
                expected.join("\n")
            )));
        }
    }
    let title = format!("Linux {} (Debian {})", baseline.version, baseline.debian_version);
    Ok(Report {
        markdown: markdown(&tutti, &linux, &unimplemented, &title),
        json: report_json(&tutti, &linux, &unimplemented, &title),
    })
}

/// Runs the script with the host's busybox as lbench would (`busybox sh lbench.sh busybox
/// <dir>`, the fixed environment) and returns its output lines.
fn host_script_output(busybox: &Path, script: &Path, work: &Path) -> Result<Vec<String>, Failure> {
    let dir = work.join("host-script");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let out = Command::new(busybox)
        .arg("sh")
        .arg(script)
        .arg(busybox)
        .arg(&dir)
        .env_clear()
        .envs(FIXED_ENV)
        .output()
        .map_err(|e| Failure(format!("cannot run {}: {e}", busybox.display())))?;
    if !out.status.success() || out.stdout.is_empty() {
        return Err(Failure(format!(
            "the script failed on the host ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).lines().map(String::from).collect())
}

/// `manifest` with linuxd's quota set to [`LINUXD_QUOTA`].
fn with_linuxd_quota(manifest: &str) -> Result<String, Failure> {
    let mut out = String::new();
    let (mut in_linux, mut found) = (false, false);
    for line in manifest.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.first() == Some(&"service") {
            in_linux = words == ["service", "linux"];
        }
        if in_linux && words.first() == Some(&"quota") {
            let _ = writeln!(out, "    quota {LINUXD_QUOTA}");
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        return Err(Failure("the manifest (bootfs/etc/services) has no `quota` line in `service linux`".into()));
    }
    Ok(out)
}

/// The shell commands of Tutti's run: one `linux` command per workload, then `linux-counts`.
fn tutti_commands() -> Vec<String> {
    let mut commands: Vec<String> = WORKLOADS.iter().map(|w| format!("linux {}", w.command(&TUTTI_PATHS))).collect();
    commands.push("linux-counts".into());
    commands
}

/// A system call linuxd answered with `ENOSYS` during Tutti's run: number, name, times.
#[derive(Debug, PartialEq)]
struct Unimplemented {
    nr: u32,
    name: String,
    count: u64,
}

/// The lines of `linux-counts` (`<nr> <name> <count>`, docs/shell.md); others are skipped.
fn unimplemented_calls(text: &str) -> Vec<Unimplemented> {
    text.lines()
        .filter_map(|line| match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [nr, name, count] => {
                Some(Unimplemented { nr: nr.parse().ok()?, name: name.to_string(), count: count.parse().ok()? })
            }
            _ => None,
        })
        .collect()
}

fn measure_tutti(files: &Files, work: &Path) -> Result<(Side, Vec<Unimplemented>), Failure> {
    let image = crate::image::build()?;
    let bytes = std::fs::read(&image.archive)?;
    let manifest = crate::shell_command::manifest_with_commands(
        &with_linuxd_quota(&crate::shell_command::manifest_of(&bytes)?)?,
        &tutti_commands(),
    )?;
    let in_archive = |path: &str| path.trim_start_matches('/').trim_start_matches("boot/").to_string();
    let extra = [
        (in_archive(TUTTI_PATHS.lbench), files.lbench.clone()),
        (in_archive(TUTTI_PATHS.busybox), files.busybox.clone()),
        (in_archive(TUTTI_PATHS.script), files.script.clone()),
    ];
    let archive = work.join("tutti-lbench.cpio");
    std::fs::write(&archive, crate::shell_command::with_manifest_and_files(&bytes, &manifest, &extra)?)?;
    step("Tutti: lbench through linuxd under -icount (a few minutes)");
    let run =
        Machine::new(&image.kernel).initrd(&archive).memory(MEMORY).append("").icount(true).deadline(DEADLINE).run()?;
    for (command, text, status) in run.shell_outputs() {
        if status != 0 {
            return Err(Failure(run.report(&format!("Tutti: `{command}` ended with status {status}:\n{text}"))));
        }
    }
    run.check(abi::exit::ExitCode::Success).map_err(Failure)?;
    let counts = run.shell_outputs().into_iter().find(|(c, _, _)| c == "linux-counts").map(|(_, t, _)| t);
    Ok((Side::read(&run, "Tutti")?, unimplemented_calls(&counts.unwrap_or_default())))
}

/// The baseline's busybox script: show that `/tmp` is a tmpfs, run every workload, end.
fn linux_script() -> String {
    let mut s = String::from("# Generated by `cargo xtask bench linux` (xtask/src/bench/linux.rs).\n");
    s.push_str("/bin/busybox stat -f -c 'lbench: /tmp is %T' /tmp\n");
    for w in &WORKLOADS {
        let _ = writeln!(s, "{}", w.command(&LINUX_PATHS));
    }
    s.push_str(linux::EXIT_COMMAND);
    s.push('\n');
    s
}

fn measure_linux(baseline: &LinuxBaseline, files: &Files, work: &Path) -> Result<Side, Failure> {
    let script_path = "bench/linux.sh";
    let extra = [
        (LINUX_PATHS.lbench.trim_start_matches('/').to_string(), files.lbench.clone()),
        (LINUX_PATHS.script.trim_start_matches('/').to_string(), files.script.clone()),
        (script_path.to_string(), linux_script().into_bytes()),
    ];
    let initramfs = baseline.initramfs(&extra, &work.join("linux-lbench.cpio"))?;
    step(&format!("Linux {}: lbench under -icount (a minute or two)", baseline.version));
    let run = Machine::new(&baseline.kernel)
        .initrd(&initramfs)
        .memory(MEMORY)
        .append(&linux::kernel_cmdline(&format!("run:/{script_path}")))
        .icount(true)
        .deadline(DEADLINE)
        .run()?;
    run.check(abi::exit::ExitCode::Success).map_err(Failure)?;
    if !run.printed("lbench: /tmp is tmpfs") {
        return Err(Failure(run.report("Linux's /tmp is not a tmpfs (the script prints its type)")));
    }
    Side::read(&run, "Linux")
}

/// (workload, Tutti's figures, Linux's figures, Tutti ÷ Linux).
fn rows<'a>(
    tutti: &'a Side,
    linux: &'a Side,
) -> impl Iterator<Item = (&'static Workload, &'a BenchFigures, &'a BenchFigures, f64)> {
    WORKLOADS
        .iter()
        .zip(tutti.figures.iter().zip(&linux.figures))
        .map(|(w, (t, l))| (w, t, l, t.per_op_exact() / l.per_op_exact()))
}

fn verdict(ratio: f64, target: Option<f64>) -> String {
    match target {
        None => "–".into(),
        Some(t) if ratio <= t => format!("≤ {t}: met"),
        Some(t) => format!("≤ {t}: NOT met"),
    }
}

fn markdown(tutti: &Side, linux: &Side, unimplemented: &[Unimplemented], title: &str) -> String {
    let mut out = String::from("## Linux personality beside Linux (`cargo xtask bench linux`)\n\n");
    let _ = writeln!(
        out,
        "Guest instructions per operation (user, kernel and, on Tutti, linuxd and the services it calls) under \
         `-icount shift=0`, QEMU TCG `-M pc -m {MEMORY}`, one CPU; the same static binaries on Tutti {} (through \
         linuxd) and on {title}. After a warm-up of a tenth as many operations (one run of the script).\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "| workload | per | Tutti | Linux | Tutti ÷ Linux | target |");
    let _ = writeln!(out, "|---|---|---:|---:|---:|---|");
    for (w, t, l, ratio) in rows(tutti, linux) {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {ratio:.2} | {} |",
            w.what,
            w.per,
            thousands(t.per_op_exact().round() as u64),
            thousands(l.per_op_exact().round() as u64),
            verdict(ratio, w.target)
        );
    }
    let _ = writeln!(
        out,
        "\nThe script's {} lines of output are the same on Tutti, on Linux and on the host. Files are on tmpfs on \
         both systems (`/tmp`).",
        tutti.script_output.len()
    );
    if !unimplemented.is_empty() {
        let calls: Vec<String> =
            unimplemented.iter().map(|u| format!("`{}` ({}) {} times", u.name, u.nr, thousands(u.count))).collect();
        let _ = writeln!(
            out,
            "\nSystem calls linuxd answered with `ENOSYS` meanwhile (the programs carry on without them): {}.",
            calls.join(", ")
        );
    }
    out
}

fn report_json(tutti: &Side, linux: &Side, unimplemented: &[Unimplemented], title: &str) -> serde_json::Value {
    let mut figures = serde_json::Map::new();
    for (w, t, l, ratio) in rows(tutti, linux) {
        figures.insert(
            w.name.to_string(),
            json!({
                "what": w.what,
                "per": w.per,
                "tutti": t.json(),
                "linux": l.json(),
                "ratio": ratio,
                "target": w.target,
                "target_met": w.target.map(|target| ratio <= target),
            }),
        );
    }
    json!({
        "benchmark": "linux",
        "unit": "guest instructions (TSC under -icount shift=0)",
        "qemu": { "machine": "pc", "accel": "tcg", "smp": 1, "memory": MEMORY, "icount": "shift=0" },
        "linux": title,
        "linuxd_quota": LINUXD_QUOTA,
        "script_output_lines": tutti.script_output.len(),
        "figures": figures,
        "tutti_enosys": unimplemented
            .iter()
            .map(|u| json!({ "nr": u.nr, "name": u.name, "count": u.count }))
            .collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_use_each_systems_paths() {
        let script = &WORKLOADS[4];
        assert_eq!(
            script.command(&LINUX_PATHS),
            "/bench/lbench script /bin/busybox /bench/lbench.sh /tmp/lbench-script 1"
        );
        assert_eq!(
            script.command(&TUTTI_PATHS),
            "/boot/bench/lbench script /boot/bench/busybox /boot/bench/lbench.sh /tmp/lbench-script 1"
        );
        let commands = tutti_commands();
        assert_eq!(commands.len(), WORKLOADS.len() + 1);
        assert!(commands[..WORKLOADS.len()].iter().all(|c| c.starts_with("linux /boot/") && c.len() <= 256));
        assert_eq!(commands.last().map(String::as_str), Some("linux-counts"));
        let s = linux_script();
        assert!(s.contains("/bench/lbench getppid 100000\n") && s.trim_end().ends_with(linux::EXIT_COMMAND));
    }

    #[test]
    fn raises_only_linuxds_quota() {
        let manifest =
            "service fs\n    quota 2M\n\nservice linux\n    program /bin/linuxd\n    quota 2560K\n    console\n";
        let raised = with_linuxd_quota(manifest).unwrap();
        assert_eq!(raised, format!("service fs\n    quota 2M\n\nservice linux\n    program /bin/linuxd\n    quota {LINUXD_QUOTA}\n    console\n"));
        assert!(with_linuxd_quota("service fs\n    quota 2M\n").is_err());
    }

    #[test]
    fn finds_the_script_output() {
        let lines =
            ["[INFO] x", "script| round 0 1 2", "bench script iterations=1 instructions=5 per_op=5", "script| done\r"];
        assert_eq!(script_output(lines), ["round 0 1 2", "done"]);
    }

    #[test]
    fn reads_the_unimplemented_calls() {
        let text = "  99 sysinfo                  80\n 334 rseq                     627\nlinux-counts: oops\n";
        assert_eq!(
            unimplemented_calls(text),
            [
                Unimplemented { nr: 99, name: "sysinfo".into(), count: 80 },
                Unimplemented { nr: 334, name: "rseq".into(), count: 627 }
            ]
        );
    }

    #[test]
    fn judges_targets() {
        assert_eq!(verdict(2.9, Some(3.0)), "≤ 3: met");
        assert_eq!(verdict(3.1, Some(3.0)), "≤ 3: NOT met");
        assert_eq!(verdict(9.0, None), "–");
    }
}
