//! `cargo xtask bench [<name>]`: Tutti measured beside Linux in the same QEMU with the same
//! flags.
//!
//! Each benchmark ([`Benchmark`]) boots both systems, prints a markdown table and writes its
//! figures as JSON to `<out>/<name>.json` (`target/bench/` by default). Without a name every
//! benchmark runs and the tables are also written to [`GENERATED_DOC`] with the date and the
//! QEMU version, the generated page the microkernel issue asks for. How the figures are
//! counted, and the Linux baseline they are compared with, are in docs/benchmarks.md.
//!
//! - [`boot`]: reset to ready, in guest instructions and wall-clock time.
//! - [`ipc`]: IPC round trip, null system call, notification signal-to-wake and page fault to
//!   a handler and back, in guest instructions per operation.
//! - [`storage`]: file I/O on ext2 over virtio-blk (sequential write and read, small files).
//! - [`restart`]: time from a service's crash to the service restored, beside a Linux supervisor.
//! - [`net`]: TCP throughput from the host to the guest over virtio-net on a tap device.
//! - [`linux`]: the Linux personality beside Linux: null system call, fork + exec, pipe
//!   throughput, small files on tmpfs, and a busybox script of 200 processes.
//! - [`devices`]: the soft bus across two Tutti guests and a host `tuttid`: RPC round trips
//!   and payload throughput host → guest (beside plain TCP) and guest → guest.
//!
//! Programs that measure inside the guest print one line per figure, in the format that
//! [`BenchLine`] parses (`bench <name> iterations=<n> instructions=<total> per_op=<total/n>`);
//! [`BenchResults::from_lines`] collects the lines of a run.

mod boot;
mod devices;
mod ipc;
mod linux;
mod net;
mod restart;
mod softbus;
mod storage;

use crate::{root, step, Failure};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

/// The page that `cargo xtask bench` (all benchmarks) regenerates.
pub const GENERATED_DOC: &str = "docs/BENCHMARKS.md";

/// Guest RAM of every benchmark machine, Tutti and Linux alike.
pub const MEMORY: &str = "128M";

/// A benchmark that `cargo xtask bench <name>` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Benchmark {
    /// Boot to ready: guest instructions and wall-clock time.
    Boot,
    /// Microkernel primitives against Linux: IPC, null system call, notification, page fault.
    Ipc,
    /// The soft bus between two tuttid daemons on loopback, beside plain TCP.
    Softbus,
    /// File I/O on ext2 over virtio-blk: sequential write and read, small files.
    Storage,
    /// TCP throughput from the host to the guest over virtio-net on a tap device.
    Net,
    /// Time from a service's crash to the service restored, beside a Linux supervisor.
    Restart,
    /// The Linux personality (linuxd) beside Linux: system calls, processes, pipes, files, a script.
    Linux,
    /// The soft bus across devices: two Tutti guests and a host tuttid on a bridge (needs root).
    Devices,
}

impl Benchmark {
    /// Every benchmark, in the order `cargo xtask bench` runs them.
    pub const ALL: [Benchmark; 8] = [
        Benchmark::Boot,
        Benchmark::Ipc,
        Benchmark::Softbus,
        Benchmark::Storage,
        Benchmark::Net,
        Benchmark::Restart,
        Benchmark::Linux,
        Benchmark::Devices,
    ];

    /// The benchmark's name, as on the command line and in `<name>.json`.
    pub fn name(self) -> &'static str {
        match self {
            Benchmark::Boot => "boot",
            Benchmark::Ipc => "ipc",
            Benchmark::Softbus => "softbus",
            Benchmark::Storage => "storage",
            Benchmark::Net => "net",
            Benchmark::Restart => "restart",
            Benchmark::Linux => "linux",
            Benchmark::Devices => "devices",
        }
    }
}

/// What one benchmark produced.
pub struct Report {
    /// A markdown section: a `##` heading, the table and notes below it.
    pub markdown: String,
    /// The figures, written to `<name>.json`.
    pub json: serde_json::Value,
}

/// Options shared by the benchmarks.
pub struct Options {
    /// Wall-clock samples per system, where a benchmark takes them.
    pub runs: usize,
}

/// Runs `which` benchmark, or all of them (then also writing [`GENERATED_DOC`]); writes each
/// one's JSON into `out_dir`.
pub fn run(which: Option<Benchmark>, out_dir: &Path, options: &Options) -> Result<std::process::ExitCode, Failure> {
    let selected: Vec<Benchmark> = match which {
        Some(one) => vec![one],
        None => Benchmark::ALL.to_vec(),
    };
    let mut sections = Vec::new();
    for benchmark in selected {
        let report = match benchmark {
            Benchmark::Boot => boot::run(options)?,
            Benchmark::Ipc => ipc::run(options)?,
            Benchmark::Softbus => softbus::run(options)?,
            Benchmark::Storage => storage::run(options)?,
            Benchmark::Net => net::run(options)?,
            Benchmark::Restart => restart::run(options)?,
            Benchmark::Linux => linux::run(options)?,
            Benchmark::Devices => devices::run(options)?,
        };
        println!("\n{}", report.markdown);
        let json_path = out_dir.join(format!("{}.json", benchmark.name()));
        write_file(&json_path, &(serde_json::to_string_pretty(&report.json)? + "\n"))?;
        println!("JSON: {}", json_path.display());
        sections.push(report.markdown);
    }
    if which.is_none() {
        let doc = root().join(GENERATED_DOC);
        step(&format!("writing {GENERATED_DOC}"));
        write_file(&doc, &generated_doc(&today(), &qemu_version()?, &sections))?;
        println!("{}", doc.display());
    }
    Ok(std::process::ExitCode::SUCCESS)
}

fn write_file(path: &Path, text: &str) -> Result<(), Failure> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Failure(format!("cannot create {}: {e}", dir.display())))?;
    }
    std::fs::write(path, text).map_err(|e| Failure(format!("cannot write {}: {e}", path.display())))
}

/// The text of [`GENERATED_DOC`]: a header, then each benchmark's section.
fn generated_doc(date: &str, qemu: &str, sections: &[String]) -> String {
    let mut doc = format!(
        "# Benchmark results\n\n\
         <!-- Generated by `cargo xtask bench`; do not edit by hand, rerun it. -->\n\n\
         Generated by `cargo xtask bench` on {date} with {qemu}, Tutti {}. Tutti and Linux run in the \
         same QEMU with the same flags; guest instructions are counted under `-icount shift=0`. How \
         the figures are measured, and how to reproduce them: [benchmarks.md](benchmarks.md).\n",
        env!("CARGO_PKG_VERSION"),
    );
    for section in sections {
        doc.push('\n');
        doc.push_str(section.trim_end());
        doc.push('\n');
    }
    doc
}

/// The first line of `qemu-system-x86_64 --version` (`QEMU emulator version 7.2.22 (...)`).
fn qemu_version() -> Result<String, Failure> {
    let output = Command::new(crate::deps::QEMU.program)
        .arg("--version")
        .output()
        .map_err(|e| Failure(format!("cannot run {} --version: {e}", crate::deps::QEMU.program)))?;
    let text = String::from_utf8_lossy(&output.stdout);
    let first = text.lines().next().unwrap_or("").trim();
    if !output.status.success() || first.is_empty() {
        return Err(Failure(format!("{} --version printed no version ({})", crate::deps::QEMU.program, output.status)));
    }
    Ok(first.to_string())
}

/// Today's date (UTC) as `YYYY-MM-DD`.
fn today() -> String {
    let days = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() / 86_400);
    let (y, m, d) = civil_date(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The Gregorian date `days` days after 1970-01-01.
fn civil_date(days: u64) -> (u64, u64, u64) {
    // Count from 0000-03-01, so that the leap day is the last day of a year, in 400-year eras
    // of 146,097 days.
    let z = days + 719_468;
    let era = z / 146_097;
    let day_of_era = z % 146_097;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Formats `n` with thousands separators: `6,072,684,602`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// One figure printed by a benchmark program inside the guest:
/// `bench <name> iterations=<n> instructions=<total> per_op=<total / n>`, where `total` is the
/// TSC difference (guest instructions under `-icount shift=0`) over `n` operations, after a
/// warm-up, and `per_op` is `total / n` rounded down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchFigures {
    pub name: String,
    pub iterations: u64,
    pub instructions: u64,
    pub per_op: u64,
}

impl BenchFigures {
    /// Instructions per operation, unrounded.
    pub fn per_op_exact(&self) -> f64 {
        self.instructions as f64 / self.iterations as f64
    }

    /// The figures as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "iterations": self.iterations,
            "instructions": self.instructions,
            "per_op": self.per_op_exact(),
        })
    }
}

/// A `bench` line: figures, or `bench <name> error=<why>` from a program that failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BenchLine {
    Figures(BenchFigures),
    Error { name: String, why: String },
}

/// Why benchmark lines could not be read.
#[derive(Debug, PartialEq, Eq)]
pub enum BenchLineError {
    /// A line starts with `bench ` but is not in the format (`why` says what is wrong).
    Malformed { line: String, why: &'static str },
    /// The program reported that it failed.
    Failed { name: String, why: String },
    /// Two lines for the same benchmark.
    Duplicate { name: String },
    /// No line for a benchmark that was expected.
    Missing { name: String },
}

impl fmt::Display for BenchLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchLineError::Malformed { line, why } => write!(f, "malformed benchmark line ({why}): {line:?}"),
            BenchLineError::Failed { name, why } => write!(f, "benchmark {name} failed: {why}"),
            BenchLineError::Duplicate { name } => write!(f, "benchmark {name} printed two result lines"),
            BenchLineError::Missing { name } => write!(f, "benchmark {name} printed no result line"),
        }
    }
}

impl std::error::Error for BenchLineError {}

const LINE_PREFIX: &str = "bench ";

impl BenchLine {
    /// Parses one console line: `None` if it does not start with `bench ` (white space around
    /// the line is ignored), otherwise the figures or the reported error, or why the line is
    /// malformed. The three figures must come in this order, and `per_op` must equal
    /// `instructions / iterations` rounded down.
    pub fn parse(line: &str) -> Option<Result<BenchLine, BenchLineError>> {
        let rest = line.trim().strip_prefix(LINE_PREFIX)?;
        let malformed = |why| BenchLineError::Malformed { line: line.trim().to_string(), why };
        Some((|| {
            let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
            let name_ok = !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !name_ok {
                return Err(malformed("the name must be letters, digits, `_` or `-`"));
            }
            if let Some(why) = rest.strip_prefix("error=") {
                return Ok(BenchLine::Error { name: name.to_string(), why: why.trim().to_string() });
            }
            let mut fields = rest.split(' ');
            let mut field = |key: &str| -> Result<u64, BenchLineError> {
                let value = fields
                    .next()
                    .and_then(|f| f.strip_prefix(key))
                    .and_then(|f| f.strip_prefix('='))
                    .ok_or_else(|| malformed("expected iterations=, instructions= and per_op=, in that order"))?;
                if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(malformed("a figure is not a decimal number"));
                }
                value.parse().map_err(|_| malformed("a figure does not fit in 64 bits"))
            };
            let iterations = field("iterations")?;
            let instructions = field("instructions")?;
            let per_op = field("per_op")?;
            if fields.next().is_some() {
                return Err(malformed("text after per_op="));
            }
            if iterations == 0 {
                return Err(malformed("iterations=0"));
            }
            if per_op != instructions / iterations {
                return Err(malformed("per_op is not instructions / iterations"));
            }
            Ok(BenchLine::Figures(BenchFigures { name: name.to_string(), iterations, instructions, per_op }))
        })())
    }
}

/// The figures of one run, by benchmark name.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BenchResults(BTreeMap<String, BenchFigures>);

impl BenchResults {
    /// Collects the `bench` lines among `lines` (other lines are ignored). Fails on a malformed
    /// line, a reported error or two lines with the same name.
    pub fn from_lines<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<BenchResults, BenchLineError> {
        let mut results = BTreeMap::new();
        for line in lines {
            match BenchLine::parse(line) {
                None => {}
                Some(Err(e)) => return Err(e),
                Some(Ok(BenchLine::Error { name, why })) => return Err(BenchLineError::Failed { name, why }),
                Some(Ok(BenchLine::Figures(figures))) => {
                    let name = figures.name.clone();
                    if results.insert(name.clone(), figures).is_some() {
                        return Err(BenchLineError::Duplicate { name });
                    }
                }
            }
        }
        Ok(BenchResults(results))
    }

    /// The figures named `name`.
    pub fn get(&self, name: &str) -> Result<&BenchFigures, BenchLineError> {
        self.0.get(name).ok_or_else(|| BenchLineError::Missing { name: name.to_string() })
    }
}

/// Where a benchmark keeps its Linux files (`target/linux/`, shared with the baseline's cache).
pub fn linux_work_dir() -> PathBuf {
    root().join("target/linux")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn figures(name: &str, iterations: u64, instructions: u64, per_op: u64) -> BenchLine {
        BenchLine::Figures(BenchFigures { name: name.into(), iterations, instructions, per_op })
    }

    #[test]
    fn parses_figures_and_errors() {
        let line = "bench pipe iterations=20000 instructions=123456789 per_op=6172";
        assert_eq!(BenchLine::parse(line), Some(Ok(figures("pipe", 20000, 123456789, 6172))));
        assert_eq!(
            BenchLine::parse("  bench null iterations=1 instructions=0 per_op=0\r"),
            Some(Ok(figures("null", 1, 0, 0)))
        );
        assert_eq!(
            BenchLine::parse("bench unix error=socketpair: Address family not supported"),
            Some(Ok(BenchLine::Error { name: "unix".into(), why: "socketpair: Address family not supported".into() }))
        );
        assert_eq!(BenchLine::parse("bootmark tsc=5"), None);
        assert_eq!(BenchLine::parse("benchmark iterations=1"), None);
        assert_eq!(BenchLine::parse(""), None);
        assert_eq!(BenchLine::parse("bench "), None);
    }

    #[test]
    fn rejects_malformed_lines() {
        for line in [
            "bench pipe",
            "bench pi/pe iterations=1 instructions=1 per_op=1",
            "bench pipe iterations=1 instructions=1",
            "bench pipe instructions=1 iterations=1 per_op=1",
            "bench pipe iterations=1 instructions=1 per_op=1 extra=2",
            "bench pipe iterations=1  instructions=1 per_op=1",
            "bench pipe iterations=-1 instructions=1 per_op=1",
            "bench pipe iterations= instructions=1 per_op=1",
            "bench pipe iterations=0 instructions=0 per_op=0",
            "bench pipe iterations=2 instructions=10 per_op=4",
            "bench pipe iterations=1 instructions=18446744073709551616 per_op=1",
        ] {
            assert!(matches!(BenchLine::parse(line), Some(Err(BenchLineError::Malformed { .. }))), "{line:?}");
        }
    }

    #[test]
    fn collects_a_run() {
        let console = [
            "bootmark tsc=6000000",
            "bench getppid iterations=10 instructions=3005 per_op=300",
            "some other line",
            "bench pipe iterations=4 instructions=100 per_op=25",
        ];
        let results = BenchResults::from_lines(console).unwrap();
        assert_eq!(results.get("getppid").unwrap().per_op_exact(), 300.5);
        assert_eq!(results.get("pipe").unwrap().instructions, 100);
        assert_eq!(results.get("futex"), Err(BenchLineError::Missing { name: "futex".into() }));
        assert_eq!(results.0.len(), 2);

        let failed = BenchResults::from_lines(["bench futex error=mmap: no memory"]);
        assert_eq!(failed, Err(BenchLineError::Failed { name: "futex".into(), why: "mmap: no memory".into() }));
        let twice = ["bench a iterations=1 instructions=1 per_op=1"; 2];
        assert_eq!(BenchResults::from_lines(twice), Err(BenchLineError::Duplicate { name: "a".into() }));
    }

    #[test]
    fn formats_numbers_and_dates() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(6072684602), "6,072,684,602");
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(59), (1970, 3, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(20_818), (2026, 12, 31));
        assert_eq!(civil_date(20_819), (2027, 1, 1));
    }

    #[test]
    fn generates_the_results_page() {
        let doc =
            generated_doc("2026-11-23", "QEMU emulator version 7.2.22", &["## A\n\n| x |\n".into(), "## B".into()]);
        assert!(doc.starts_with("# Benchmark results\n"));
        assert!(doc.contains("Generated by `cargo xtask bench` on 2026-11-23 with QEMU emulator version 7.2.22"));
        assert!(doc.ends_with("\n## A\n\n| x |\n\n## B\n"));
    }
}
