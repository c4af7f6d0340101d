//! `cargo xtask bench ipc`: the microkernel's primitives beside their nearest Linux equivalents,
//! in guest instructions per operation under `-icount shift=0` (the guest's TSC counts
//! instructions, user and kernel alike), in the same QEMU with the same flags.
//!
//! | operation | Tutti | Linux |
//! |---|---|---|
//! | IPC round trip | `call`: call + reply between two address spaces | the fastest of `pipe`, `futex` and `unix` ping-pong between two processes |
//! | null system call | `null` | `getppid` |
//! | notification signal-to-wake | `notify` | half a `futex` ping-pong round trip |
//! | page fault to handler and back | `fault`: to the supervisor and back | `fault`: SIGSEGV handler that mprotects the page back |
//!
//! Linux runs tools/linuxbench/ipcbench.c, a static program compiled here with the host's gcc
//! and glibc and packed into the Linux baseline's initramfs with a busybox script that runs each
//! of its subcommands and then ends the machine. Each subcommand prints one [`BenchLine`].
//!
//! Tutti's side ([`measure_tutti`]) boots Tutti with `init=/bin/ipcbench` (os/programs), which
//! prints the same line format, one line for each of [`TUTTI_NAMES`];
//! [`TuttiFigures::from_results`] reads them.
//!
//! [`BenchLine`]: super::BenchLine

use super::{linux_work_dir, thousands, BenchFigures, BenchLineError, BenchResults, Options, Report, MEMORY};
use crate::{deps, root, step, Failure};
use harness::linux::{self, LinuxBaseline};
use harness::Machine;
use serde_json::json;
use std::fmt::Write as _;
use std::time::Duration;

/// The Linux programs, in the order the script runs them, with their iteration counts (after a
/// warm-up of a tenth as many). Chosen so that the whole benchmark, Linux's boot included
/// (about 6 G instructions), takes well under three minutes under `-icount`.
const LINUX_PROGRAMS: [(&str, u64); 5] =
    [("getppid", 1_000_000), ("pipe", 50_000), ("futex", 50_000), ("unix", 50_000), ("fault", 100_000)];

/// The names of the lines Tutti's benchmark program prints, one each:
/// - `call`: one IPC call + reply between two address spaces (the register fast path);
/// - `null`: one system call that does nothing;
/// - `notify`: one signal of a notification to a thread waiting on it, until that thread runs
///   (half of a ping-pong round trip between two threads, as for Linux);
/// - `fault`: one page fault delivered to the supervisor endpoint, fixed there and resumed.
pub const TUTTI_NAMES: [&str; 4] = ["call", "null", "notify", "fault"];

/// Where the program and the script go in the initramfs.
const PROGRAM_PATH: &str = "bench/ipcbench";
const SCRIPT_PATH: &str = "bench/ipc.sh";

/// Tutti's IPC call + reply must take at most a tenth of Linux's fastest ping-pong.
const IPC_TARGET: f64 = 0.1;
/// Tutti's null system call must take no more than Linux's getppid.
const NULL_TARGET: f64 = 1.0;

/// Tutti's figures, one per name of [`TUTTI_NAMES`].
#[derive(Clone, Debug, PartialEq)]
pub struct TuttiFigures {
    pub call: BenchFigures,
    pub null: BenchFigures,
    pub notify: BenchFigures,
    pub fault: BenchFigures,
}

impl TuttiFigures {
    /// Picks Tutti's figures out of the `bench` lines of its run; fails if one is missing.
    pub fn from_results(results: &BenchResults) -> Result<TuttiFigures, BenchLineError> {
        let [call, null, notify, fault] = TUTTI_NAMES;
        Ok(TuttiFigures {
            call: results.get(call)?.clone(),
            null: results.get(null)?.clone(),
            notify: results.get(notify)?.clone(),
            fault: results.get(fault)?.clone(),
        })
    }
}

/// Linux's figures, one per program of [`LINUX_PROGRAMS`].
#[derive(Clone, Debug, PartialEq)]
struct LinuxFigures {
    getppid: BenchFigures,
    pipe: BenchFigures,
    futex: BenchFigures,
    unix: BenchFigures,
    fault: BenchFigures,
}

impl LinuxFigures {
    fn from_results(results: &BenchResults) -> Result<LinuxFigures, BenchLineError> {
        let get = |name: &str| results.get(name).cloned();
        Ok(LinuxFigures {
            getppid: get("getppid")?,
            pipe: get("pipe")?,
            futex: get("futex")?,
            unix: get("unix")?,
            fault: get("fault")?,
        })
    }

    /// The ping-pong with the fewest instructions per round trip.
    fn fastest_ping_pong(&self) -> &BenchFigures {
        [&self.pipe, &self.futex, &self.unix]
            .into_iter()
            .min_by(|a, b| a.per_op_exact().total_cmp(&b.per_op_exact()))
            .expect("three ping-pongs")
    }
}

/// Tutti's side of the benchmark: boots Tutti with `init=/bin/ipcbench` (os/programs) under
/// `-icount shift=0` and reads its `bench` lines ([`TUTTI_NAMES`]).
fn measure_tutti() -> Result<Option<BenchResults>, Failure> {
    let image = crate::image::build()?;
    step("Tutti: booting and running ipcbench under -icount");
    let run = Machine::new(&image.kernel)
        .initrd(&image.archive)
        .memory(MEMORY)
        .append("init=/bin/ipcbench")
        .icount(true)
        .deadline(Duration::from_secs(300))
        .run()?;
    run.check(abi::exit::ExitCode::Success).map_err(Failure)?;
    BenchResults::from_lines(run.lines.iter().map(|l| l.text.as_str()))
        .map(Some)
        .map_err(|e| Failure(run.report(&format!("Tutti's ipcbench: {e}"))))
}

/// The IPC benchmark.
pub fn run(_options: &Options) -> Result<Report, Failure> {
    deps::ensure(&[deps::QEMU, deps::BUSYBOX, deps::GCC])?;
    let tutti = match measure_tutti()? {
        Some(results) => Some(TuttiFigures::from_results(&results)?),
        None => None,
    };
    let (baseline, linux) = measure_linux()?;
    let title = format!("Linux {} (Debian {})", baseline.version, baseline.debian_version);
    let rows = rows(tutti.as_ref(), &linux);
    Ok(Report { markdown: markdown(&rows, &linux, &title), json: report_json(&rows, tutti.as_ref(), &linux, &title) })
}

/// Boots the Linux baseline with ipcbench and its script, and reads the figures.
fn measure_linux() -> Result<(LinuxBaseline, LinuxFigures), Failure> {
    step("Linux: preparing the baseline and compiling tools/linuxbench/ipcbench.c");
    let work = linux_work_dir();
    let baseline = LinuxBaseline::prepare(&work)?;
    let program = linux::compile_static(
        &root().join("tools/linuxbench/ipcbench.c"),
        &work.join("ipcbench"),
        &["-O2", "-Wall", "-Wextra", "-Werror"],
    )?;
    let program = std::fs::read(&program).map_err(|e| Failure(format!("cannot read {}: {e}", program.display())))?;
    let initramfs = baseline.initramfs(
        &[(PROGRAM_PATH.to_string(), program), (SCRIPT_PATH.to_string(), script().into_bytes())],
        &work.join("ipc-initramfs.cpio"),
    )?;

    step(&format!("Linux {}: booting and running ipcbench under -icount (a minute or two)", baseline.version));
    let run = Machine::new(&baseline.kernel)
        .initrd(&initramfs)
        .memory(MEMORY)
        .append(&linux::kernel_cmdline(&format!("run:/{SCRIPT_PATH}")))
        .icount(true)
        .deadline(Duration::from_secs(600))
        .run()?;
    run.check(abi::exit::ExitCode::Success).map_err(Failure)?;
    let results = BenchResults::from_lines(run.lines.iter().map(|l| l.text.as_str()))
        .and_then(|results| LinuxFigures::from_results(&results))
        .map_err(|e| Failure(run.report(&format!("Linux's ipcbench: {e}"))))?;
    Ok((baseline, results))
}

/// The busybox script that runs every Linux program and ends the machine.
fn script() -> String {
    let mut script = String::from("# Generated by `cargo xtask bench ipc` (xtask/src/bench/ipc.rs).\n");
    for (name, iterations) in LINUX_PROGRAMS {
        let _ = writeln!(script, "/{PROGRAM_PATH} {name} {iterations}");
    }
    let _ = writeln!(script, "{}", linux::EXIT_COMMAND);
    script
}

/// One row of the table: an operation measured on both systems, in instructions per operation.
#[derive(Debug)]
struct Row {
    operation: &'static str,
    tutti: Option<f64>,
    tutti_how: &'static str,
    linux: f64,
    linux_how: String,
    /// The largest Tutti ÷ Linux ratio the issue accepts, if it sets one.
    target: Option<f64>,
}

impl Row {
    fn ratio(&self) -> Option<f64> {
        self.tutti.map(|tutti| tutti / self.linux)
    }

    fn target_met(&self) -> Option<bool> {
        Some(self.ratio()? <= self.target?)
    }
}

fn rows(tutti: Option<&TuttiFigures>, linux: &LinuxFigures) -> Vec<Row> {
    let fastest = linux.fastest_ping_pong();
    let ping_pongs =
        [&linux.pipe, &linux.futex, &linux.unix].map(|f| format!("{} {}", f.name, per_op(f.per_op_exact()))).join(", ");
    vec![
        Row {
            operation: "IPC round trip",
            tutti: tutti.map(|t| t.call.per_op_exact()),
            tutti_how: "`call`: call + reply between two address spaces",
            linux: fastest.per_op_exact(),
            linux_how: format!("`{}` ping-pong, the fastest of {ping_pongs}", fastest.name),
            target: Some(IPC_TARGET),
        },
        Row {
            operation: "null system call",
            tutti: tutti.map(|t| t.null.per_op_exact()),
            tutti_how: "`null`",
            linux: linux.getppid.per_op_exact(),
            linux_how: "`getppid`".into(),
            target: Some(NULL_TARGET),
        },
        Row {
            operation: "notification signal-to-wake",
            tutti: tutti.map(|t| t.notify.per_op_exact()),
            tutti_how: "`notify`: signal until the waiter runs",
            linux: linux.futex.per_op_exact() / 2.0,
            linux_how: "half a `futex` ping-pong round trip (FUTEX_WAKE until the waiter runs)".into(),
            target: None,
        },
        Row {
            operation: "page fault to handler and back",
            tutti: tutti.map(|t| t.fault.per_op_exact()),
            tutti_how: "`fault`: to the supervisor endpoint, fixed, resumed",
            linux: linux.fault.per_op_exact(),
            linux_how: "`fault`: SIGSEGV handler mprotects the page back, returns".into(),
            target: None,
        },
    ]
}

fn per_op(value: f64) -> String {
    // Thousands separators; one decimal below 10,000, where it still shows a difference.
    let tenths = (value * 10.0).round() as u64;
    if tenths < 100_000 {
        format!("{}.{}", thousands(tenths / 10), tenths % 10)
    } else {
        thousands(value.round() as u64)
    }
}

fn markdown(rows: &[Row], linux: &LinuxFigures, linux_title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "## IPC and kernel primitives\n");
    let _ = writeln!(
        out,
        "Guest instructions per operation (user and kernel) under `-icount shift=0`, QEMU TCG `-M pc -m {MEMORY}`, \
         one CPU; Tutti {} beside {linux_title}. Round trips are between two address spaces.\n",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "| operation | Tutti | Tutti measures | Linux | Linux measures | Tutti ÷ Linux | target |");
    let _ = writeln!(out, "|---|---:|---|---:|---|---:|---|");
    for row in rows {
        let tutti = row.tutti.map_or("not yet measured".to_string(), per_op);
        let ratio = row.ratio().map_or("–".to_string(), |r| format!("{r:.3}"));
        let target = match (row.target, row.target_met()) {
            (None, _) => "–".to_string(),
            (Some(t), None) => format!("≤ {t}"),
            (Some(t), Some(met)) => format!("≤ {t}: {}", if met { "met" } else { "NOT met" }),
        };
        let _ = writeln!(
            out,
            "| {} | {tutti} | {} | {} | {} | {ratio} | {target} |",
            row.operation,
            row.tutti_how,
            per_op(row.linux),
            row.linux_how
        );
    }
    let _ = writeln!(out, "\nThe Linux programs (tools/linuxbench/ipcbench.c), after a warm-up of a tenth as many:\n");
    let _ = writeln!(out, "| program | iterations | instructions | per operation |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for f in [&linux.getppid, &linux.pipe, &linux.futex, &linux.unix, &linux.fault] {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            f.name,
            thousands(f.iterations),
            thousands(f.instructions),
            per_op(f.per_op_exact())
        );
    }
    out
}

fn report_json(
    rows: &[Row],
    tutti: Option<&TuttiFigures>,
    linux: &LinuxFigures,
    linux_title: &str,
) -> serde_json::Value {
    let rows: Vec<_> = rows
        .iter()
        .map(|row| {
            json!({
                "operation": row.operation,
                "tutti_per_op": row.tutti,
                "tutti_measures": row.tutti_how,
                "linux_per_op": row.linux,
                "linux_measures": row.linux_how,
                "ratio": row.ratio(),
                "target_max_ratio": row.target,
                "target_met": row.target_met(),
            })
        })
        .collect();
    let tutti = tutti.map(|t| {
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "call": t.call.json(), "null": t.null.json(), "notify": t.notify.json(), "fault": t.fault.json(),
        })
    });
    let programs: serde_json::Map<String, serde_json::Value> =
        [&linux.getppid, &linux.pipe, &linux.futex, &linux.unix, &linux.fault]
            .into_iter()
            .map(|f| (f.name.clone(), f.json()))
            .collect();
    json!({
        "benchmark": "ipc",
        "unit": "guest instructions per operation",
        "qemu": { "machine": "pc", "accel": "tcg", "smp": 1, "memory": MEMORY, "icount": "shift=0" },
        "rows": rows,
        "tutti": tutti,
        "linux": { "version": linux_title, "programs": programs },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn results(lines: &[&str]) -> BenchResults {
        BenchResults::from_lines(lines.iter().copied()).unwrap()
    }

    fn linux() -> LinuxFigures {
        LinuxFigures::from_results(&results(&[
            "bench getppid iterations=10 instructions=3005 per_op=300",
            "bench pipe iterations=10 instructions=200000 per_op=20000",
            "bench futex iterations=10 instructions=120000 per_op=12000",
            "bench unix iterations=10 instructions=300000 per_op=30000",
            "bench fault iterations=10 instructions=90000 per_op=9000",
        ]))
        .unwrap()
    }

    #[test]
    fn reads_tuttis_lines() {
        let lines = [
            "[info ] init: starting",
            "bench call iterations=100 instructions=100000 per_op=1000",
            "bench null iterations=100 instructions=15000 per_op=150",
            "bench notify iterations=100 instructions=50000 per_op=500",
            "bench fault iterations=100 instructions=300000 per_op=3000",
        ];
        let tutti = TuttiFigures::from_results(&results(&lines)).unwrap();
        assert_eq!(
            (tutti.call.per_op, tutti.null.per_op, tutti.notify.per_op, tutti.fault.per_op),
            (1000, 150, 500, 3000)
        );
        let missing = TuttiFigures::from_results(&results(&lines[..4]));
        assert_eq!(missing, Err(BenchLineError::Missing { name: "fault".into() }));
    }

    #[test]
    fn tuttis_column_waits_for_its_figures() {
        let linux = linux();
        assert_eq!(linux.fastest_ping_pong().name, "futex");
        let rows = rows(None, &linux);
        let table = markdown(&rows, &linux, "Linux test");
        assert_eq!(table.matches("| not yet measured |").count(), 4, "{table}");
        assert!(
            table.contains("| 12,000 | `futex` ping-pong, the fastest of pipe 20,000, futex 12,000, unix 30,000 |"),
            "{table}"
        );
        assert!(
            table.contains("| null system call | not yet measured | `null` | 300.5 | `getppid` | – | ≤ 1 |"),
            "{table}"
        );
        assert!(table.contains("| 6,000.0 | half a `futex`"), "{table}");
        let json = report_json(&rows, None, &linux, "Linux test");
        assert!(json["tutti"].is_null());
        assert_eq!(json["rows"][0]["linux_per_op"], 12000.0);
        assert_eq!(json["linux"]["programs"]["getppid"]["per_op"], 300.5);
    }

    #[test]
    fn tuttis_figures_fill_the_table() {
        let linux = linux();
        let tutti = TuttiFigures::from_results(&results(&[
            "bench call iterations=10 instructions=10000 per_op=1000",
            "bench null iterations=10 instructions=4000 per_op=400",
            "bench notify iterations=10 instructions=5000 per_op=500",
            "bench fault iterations=10 instructions=30000 per_op=3000",
        ]))
        .unwrap();
        let rows = rows(Some(&tutti), &linux);
        assert_eq!(rows[0].target_met(), Some(true)); // 1,000 <= 12,000 / 10
        assert_eq!(rows[1].target_met(), Some(false)); // 400 > 300.5
        assert_eq!(rows[2].target_met(), None);
        let table = markdown(&rows, &linux, "Linux test");
        assert!(!table.contains("not yet measured"), "{table}");
        assert!(table.contains("| IPC round trip | 1,000.0 |"), "{table}");
        assert!(table.contains("| 0.083 | ≤ 0.1: met |"), "{table}");
        assert!(table.contains("≤ 1: NOT met"), "{table}");
        let json = report_json(&rows, Some(&tutti), &linux, "Linux test");
        assert_eq!(json["tutti"]["null"]["per_op"], 400.0);
        assert_eq!(json["rows"][1]["target_met"], false);
    }

    #[test]
    fn the_script_runs_every_program_then_ends_the_machine() {
        let script = script();
        let lines: Vec<&str> = script.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), LINUX_PROGRAMS.len() + 1);
        assert_eq!(lines[0], "/bench/ipcbench getppid 1000000");
        assert_eq!(lines.last(), Some(&linux::EXIT_COMMAND));
    }

    #[test]
    fn ipcbench_knows_every_program() {
        let source = include_str!("../../../tools/linuxbench/ipcbench.c");
        for (name, _) in LINUX_PROGRAMS {
            assert!(source.contains(&format!("{{ \"{name}\", bench_{name},")), "ipcbench.c has no subcommand {name}");
        }
    }

    #[test]
    fn formats_per_op_figures() {
        assert_eq!(per_op(300.54), "300.5");
        assert_eq!(per_op(9_999.94), "9,999.9");
        assert_eq!(per_op(27_065.4), "27,065");
    }
}
