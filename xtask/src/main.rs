//! `cargo xtask`: the one entry point for building, running, testing and benchmarking Tutti.
//!
//! - `cargo xtask run`   builds everything and boots Tutti in QEMU with the console here;
//! - `cargo xtask test`  runs the host unit tests, then the QEMU system tests;
//! - `cargo xtask bench [boot|ipc]` measures Tutti beside Linux in the same QEMU (see
//!   docs/benchmarks.md);
//! - `cargo xtask build` only builds the kernel and the boot archive.
//!
//! Host packages that are missing (QEMU, ...) are installed with apt-get when running as root
//! on Debian; elsewhere the exact install command is printed. See docs/xtask.md.

mod bench;
mod deps;
mod image;
mod nodes;
mod shell_command;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::{Command, ExitCode};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "Build, run, test and benchmark Tutti")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Build the kernel and boot archive, then boot Tutti in QEMU with the console on this
    /// terminal (Ctrl-A X quits QEMU).
    Run {
        /// Guest RAM, as QEMU's -m takes it.
        #[arg(long, default_value = "128M")]
        mem: String,
        /// Kernel command line (see docs/cmdline.md), e.g. "log=debug".
        #[arg(long, default_value = "")]
        append: String,
        /// Deterministic execution (-icount shift=0): the guest TSC counts instructions.
        #[arg(long)]
        icount: bool,
        /// Run this shell command instead of the interactive shell, print its output and exit
        /// with its status (may be given several times: run in order, stop at `exit`).
        #[arg(long)]
        cmd: Vec<String>,
        /// With --cmd: seconds before the run is stopped as hung.
        #[arg(long, default_value_t = 120)]
        timeout: u64,
        /// Land in the native shell instead of busybox `sh` (which needs the host's static
        /// busybox, Debian's busybox-static).
        #[arg(long)]
        native: bool,
        /// Boot this many guests on one virtual network (needs root): guest 0 on this
        /// terminal, the others' consoles on Unix sockets (docs/xtask.md).
        #[arg(long, conflicts_with = "cmd")]
        nodes: Option<usize>,
        /// With --nodes: also run `tuttid` on the host side of that network.
        #[arg(long, requires = "nodes")]
        host: bool,
    },
    /// Run the host unit tests, then the QEMU system tests.
    Test {
        /// Run only the system tests whose names contain this.
        filter: Option<String>,
        /// Skip the host unit tests.
        #[arg(long)]
        system_only: bool,
    },
    /// Measure Tutti beside Linux in the same QEMU; prints tables and writes JSON. Without a
    /// benchmark name, runs them all and regenerates docs/BENCHMARKS.md.
    Bench {
        /// The benchmark to run (all of them if omitted).
        #[arg(value_enum)]
        benchmark: Option<bench::Benchmark>,
        /// Where to write the JSON results, one `<benchmark>.json` each.
        #[arg(long, default_value = "target/bench")]
        out: PathBuf,
        /// Wall-clock samples per system for the boot benchmark (the instruction counts are
        /// deterministic).
        #[arg(long, default_value_t = 3)]
        runs: usize,
    },
    /// Build the kernel and the boot archive.
    Build,
}

/// An error that ends the task, with a message for the user.
#[derive(Debug)]
pub struct Failure(pub String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

/// The root of the repository.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the repository root").to_path_buf()
}

/// Runs a command with its output on this terminal; fails unless it succeeds.
pub fn run_command(command: &mut Command) -> Result<(), Failure> {
    let shown = format!("{command:?}");
    let status = command.status().map_err(|e| Failure(format!("cannot start {shown}: {e}")))?;
    if status.success() {
        Ok(())
    } else {
        Err(Failure(format!("{shown} failed ({status})")))
    }
}

/// Prints a progress step.
pub fn step(what: &str) {
    eprintln!("\x1b[1m==>\x1b[0m {what}");
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Task::Run { mem, append, icount, cmd, timeout, .. } if !cmd.is_empty() => {
            shell_command::run(&mem, &append, icount, &cmd, timeout)
        }
        Task::Run { mem, append, native, nodes: Some(nodes), host, .. } => {
            nodes::run(nodes, host, &mem, &append, native)
        }
        Task::Run { mem, append, icount, native, .. } => run(&mem, &append, icount, native),
        Task::Test { filter, system_only } => test(filter.as_deref(), system_only),
        Task::Bench { benchmark, out, runs } => bench::run(benchmark, &root().join(out), &bench::Options { runs }),
        Task::Build => image::build().map(|_| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|Failure(message)| {
        eprintln!("error: {message}");
        ExitCode::FAILURE
    })
}

fn run(mem: &str, append: &str, icount: bool, native: bool) -> Result<ExitCode, Failure> {
    deps::ensure(&[deps::QEMU])?;
    let image = image::build()?;
    image::check_memory(mem, &image)?;
    let archive = if native { image.archive.clone() } else { shell_command::login_archive(&image.archive, mem)? };
    let machine = harness::Machine::new(&image.kernel).initrd(&archive).memory(mem).append(append).icount(icount);
    let machine = image::with_devices(machine)?;
    step("booting Tutti (Ctrl-A X quits)");
    let status = machine.interactive_command().status().map_err(|e| Failure(format!("cannot start QEMU: {e}")))?;
    interactive_end(status)
}

/// The exit code of an interactive run that ended with `status`.
pub fn interactive_end(status: std::process::ExitStatus) -> Result<ExitCode, Failure> {
    match status.code().and_then(abi::exit::ExitCode::from_qemu_status) {
        Some(abi::exit::ExitCode::Success) => Ok(ExitCode::SUCCESS),
        Some(code) => Err(Failure(format!("Tutti stopped: {code:?}"))),
        // Quitting QEMU by hand (Ctrl-A X) is a normal end of an interactive run.
        None if status.code() == Some(0) => Ok(ExitCode::SUCCESS),
        None => Err(Failure(format!("QEMU ended with {status}"))),
    }
}

fn test(filter: Option<&str>, system_only: bool) -> Result<ExitCode, Failure> {
    deps::ensure(&[deps::QEMU, deps::E2FSPROGS, deps::IPROUTE2, deps::BUSYBOX, deps::MUSL])?;
    if !system_only {
        step("host unit tests");
        run_command(Command::new(env!("CARGO")).current_dir(root()).args([
            "test",
            "--workspace",
            "--exclude",
            "systests",
        ]))?;
    }
    let image = image::build()?;
    step("system tests (QEMU)");
    let mut command = Command::new(env!("CARGO"));
    command
        .current_dir(root())
        .args(["test", "--no-fail-fast", "-p", "systests", "--"])
        .env("TUTTI_KERNEL", &image.kernel)
        .env("TUTTI_ARCHIVE", &image.archive)
        .env("TUTTI_SCRATCH", root().join("target/systests"));
    if let Some(f) = filter {
        command.arg(f);
    }
    run_command(&mut command)?;
    Ok(ExitCode::SUCCESS)
}
