//! `cargo xtask bench boot`: boot to ready, Tutti beside Linux in the same QEMU with the same
//! flags.
//!
//! Boot time is measured two ways. Guest instructions to the ready point, under
//! `-icount shift=0`, where the guest's TSC advances one tick per instruction, so the count
//! read by the guest is deterministic and unaffected by the host's load: Tutti prints it on its
//! ready line, Linux's `/init` (tools/bootmark) prints it first thing. And wall-clock time from
//! starting QEMU to that line on the console, without icount, the median of several runs.
//! Both systems boot from reset through the same firmware with the same QEMU flags, so the
//! counts include the firmware for both. See docs/benchmarks.md.

use super::{linux_work_dir, thousands, Options, Report, MEMORY};
use crate::{deps, image, step, Failure};
use harness::linux::{self, LinuxBaseline};
use harness::{Machine, Run};
use serde_json::json;
use std::fmt::Write as _;
use std::time::Duration;

/// Tutti's instruction count must be at most 1/20 of Linux's.
const TARGET_RATIO: f64 = 20.0;

/// One system's boot measurements.
struct BootFigures {
    instructions: u64,
    wall_ms: Vec<f64>,
}

impl BootFigures {
    fn median_ms(&self) -> f64 {
        let mut sorted = self.wall_ms.clone();
        sorted.sort_by(f64::total_cmp);
        sorted[sorted.len() / 2]
    }
}

/// Reads the TSC from Tutti's ready line: `Tutti ready (tsc <n>, kernel <m> cycles)`.
fn parse_ready(line: &str) -> Option<(u64, u64)> {
    let rest = line.strip_prefix(abi::console::READY)?.trim().strip_prefix("(tsc ")?;
    let (tsc, rest) = rest.split_once(", kernel ")?;
    let kernel = rest.strip_suffix(" cycles)")?;
    Some((tsc.parse().ok()?, kernel.parse().ok()?))
}

/// Runs `machine` once; the run must end with a success status and print a line that `parse`
/// accepts. Returns the parsed value and the time the line appeared.
fn measure<T>(machine: &Machine, parse: impl Fn(&str) -> Option<T>) -> Result<(T, Duration), Failure> {
    let run: Run = machine.run()?;
    run.check(abi::exit::ExitCode::Success).map_err(Failure)?;
    run.lines
        .iter()
        .find_map(|l| parse(&l.text).map(|v| (v, l.at)))
        .ok_or_else(|| Failure(run.report("the ready line was not found")))
}

/// One deterministic run for the instruction count (`count` picks it from the parsed line, which
/// is returned too), then `runs` runs for wall-clock time.
fn figures<T>(
    machine: Machine,
    runs: usize,
    count: impl Fn(&T) -> u64,
    parse: impl Fn(&str) -> Option<T> + Copy,
) -> Result<(BootFigures, T), Failure> {
    let (value, _) = measure(&machine.clone().icount(true), parse)?;
    let mut wall_ms = Vec::new();
    for _ in 0..runs {
        let (_, at) = measure(&machine.clone().icount(false), parse)?;
        wall_ms.push(at.as_secs_f64() * 1000.0);
    }
    Ok((BootFigures { instructions: count(&value), wall_ms }, value))
}

/// The boot benchmark.
pub fn run(options: &Options) -> Result<Report, Failure> {
    let runs = options.runs.max(1);
    deps::ensure(&[deps::QEMU, deps::BUSYBOX, deps::GCC])?;
    let image = image::build()?;

    step("Tutti: booting to the ready line");
    let tutti_machine = Machine::new(&image.kernel)
        .initrd(&image.archive)
        .memory(MEMORY)
        .append("on_ready=exit")
        .deadline(Duration::from_secs(120));
    let (tutti, (_, kernel_instructions)) = figures(tutti_machine, runs, |&(tsc, _)| tsc, parse_ready)?;

    step("Linux: preparing the baseline (Debian kernel, busybox initramfs)");
    let work = linux_work_dir();
    let baseline = LinuxBaseline::prepare(&work)?;
    let initramfs = baseline.initramfs(&[], &work.join("boot-initramfs.cpio"))?;
    step(&format!("Linux {}: booting to /init", baseline.version));
    let linux_machine = Machine::new(&baseline.kernel)
        .initrd(&initramfs)
        .memory(MEMORY)
        .append(&linux::kernel_cmdline("exit"))
        .deadline(Duration::from_secs(600));
    let (linux, _) = figures(linux_machine, runs, |&tsc| tsc, linux::parse_bootmark)?;

    let ratio = linux.instructions as f64 / tutti.instructions as f64;
    let mut markdown = String::new();
    let _ = writeln!(
        markdown,
        "## Boot to ready
"
    );
    let _ = writeln!(
        markdown,
        "QEMU TCG `-M pc -m {MEMORY}`; guest instructions from reset to ready under `-icount shift=0` \
         (Tutti: its ready line; Linux: its `/init`), both through the same firmware; wall clock from \
         starting QEMU to that line, median of {runs}.\n"
    );
    let _ = writeln!(markdown, "| system | guest instructions to ready | wall-clock ms |");
    let _ = writeln!(markdown, "|---|---:|---:|");
    let _ = writeln!(
        markdown,
        "| Tutti {} | {} | {:.1} |",
        env!("CARGO_PKG_VERSION"),
        thousands(tutti.instructions),
        tutti.median_ms()
    );
    let _ = writeln!(
        markdown,
        "| Linux {} (Debian {}) | {} | {:.1} |",
        baseline.version,
        baseline.debian_version,
        thousands(linux.instructions),
        linux.median_ms()
    );
    let _ = writeln!(
        markdown,
        "\nTutti needs {ratio:.1}x fewer instructions than Linux (target: at least {TARGET_RATIO}x: {}); \
         {} of Tutti's are in its kernel, the rest in the firmware.",
        if ratio >= TARGET_RATIO { "met" } else { "NOT met" },
        thousands(kernel_instructions)
    );

    let json = json!({
        "benchmark": "boot",
        "qemu": { "machine": "pc", "accel": "tcg", "memory": MEMORY, "icount": "shift=0" },
        "tutti": {
            "version": env!("CARGO_PKG_VERSION"),
            "instructions_to_ready": tutti.instructions,
            "kernel_instructions": kernel_instructions,
            "wall_ms": tutti.wall_ms,
            "wall_ms_median": tutti.median_ms(),
        },
        "linux": {
            "version": baseline.version,
            "debian_version": baseline.debian_version,
            "instructions_to_init": linux.instructions,
            "wall_ms": linux.wall_ms,
            "wall_ms_median": linux.median_ms(),
        },
        "instruction_ratio": ratio,
        "target_ratio": TARGET_RATIO,
    });
    Ok(Report { markdown, json })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ready_line() {
        assert_eq!(parse_ready("Tutti ready (tsc 11187272, kernel 1846166 cycles)"), Some((11187272, 1846166)));
        assert_eq!(parse_ready("Tutti ready (tsc x, kernel 1 cycles)"), None);
        assert_eq!(parse_ready("[info ] Tutti ready"), None);
    }
}
