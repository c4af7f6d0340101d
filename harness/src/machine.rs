//! One QEMU machine: its command line, running it with a deadline, and reading the outcome.

use crate::symbols::Symbols;
use abi::exit::ExitCode;
use std::fmt::{self, Write as _};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The QEMU binary used for every machine.
pub const QEMU: &str = "qemu-system-x86_64";

/// How to boot one machine. Every machine is a PC (`-M pc`) under TCG with one CPU, the serial
/// console on QEMU's standard output, no display, no reboot (a triple fault ends QEMU), and
/// the `isa-debug-exit` device through which the kernel reports how it ended.
#[derive(Clone, Debug)]
pub struct Machine {
    kernel: PathBuf,
    initrd: Option<PathBuf>,
    append: String,
    memory: String,
    icount: bool,
    deadline: Duration,
    extra: Vec<String>,
    /// A command QEMU runs under (`ip netns exec <name>`), empty for none.
    prefix: Vec<String>,
}

/// One line of console output and when it appeared, counted from the start of QEMU.
#[derive(Clone, Debug)]
pub struct Line {
    pub at: Duration,
    pub text: String,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// The kernel stopped the machine through `isa-debug-exit` with this code.
    Exit(ExitCode),
    /// QEMU exited with a status that is not one of the kernel's: 0 after a triple fault or a
    /// reset (with `-no-reboot`), 1 for QEMU's own errors.
    QemuStatus(i32),
    /// QEMU was killed by a signal.
    Killed,
    /// The deadline passed and the harness stopped QEMU.
    TimedOut,
}

impl fmt::Display for Ending {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ending::Exit(code) => write!(f, "kernel exit {code:?}"),
            Ending::QemuStatus(0) => write!(f, "QEMU exit status 0 (a triple fault or reset)"),
            Ending::QemuStatus(s) => write!(f, "QEMU exit status {s}"),
            Ending::Killed => write!(f, "QEMU killed by a signal"),
            Ending::TimedOut => write!(f, "no end before the deadline (hang)"),
        }
    }
}

/// Why a machine could not be run at all.
#[derive(Debug)]
pub enum HarnessError {
    /// QEMU is not installed.
    QemuMissing,
    /// A file the machine needs does not exist.
    MissingFile(PathBuf),
    Io(std::io::Error),
}

impl fmt::Display for HarnessError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HarnessError::QemuMissing => {
                write!(f, "{QEMU} not found; install it with: apt-get install -y qemu-system-x86")
            }
            HarnessError::MissingFile(p) => write!(f, "{} does not exist", p.display()),
            HarnessError::Io(e) => write!(f, "running QEMU: {e}"),
        }
    }
}

impl std::error::Error for HarnessError {}

impl Machine {
    /// A machine booting `kernel` with 128 MiB of RAM and a 60-second deadline.
    pub fn new(kernel: impl Into<PathBuf>) -> Machine {
        Machine {
            kernel: kernel.into(),
            initrd: None,
            append: String::new(),
            memory: "128M".into(),
            icount: false,
            deadline: Duration::from_secs(60),
            extra: Vec::new(),
            prefix: Vec::new(),
        }
    }

    /// The boot archive (`-initrd`).
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Machine {
        self.initrd = Some(path.into());
        self
    }

    /// The kernel command line (`-append`).
    pub fn append(mut self, cmdline: &str) -> Machine {
        self.append = cmdline.into();
        self
    }

    /// Guest RAM, as QEMU's `-m` takes it (`"128M"`).
    pub fn memory(mut self, size: &str) -> Machine {
        self.memory = size.into();
        self
    }

    /// Deterministic execution: `-icount shift=0`, one nanosecond of guest time per guest
    /// instruction, so the guest's TSC counts instructions.
    pub fn icount(mut self, on: bool) -> Machine {
        self.icount = on;
        self
    }

    /// How long the machine may run before the harness stops it and reports a hang.
    pub fn deadline(mut self, deadline: Duration) -> Machine {
        self.deadline = deadline;
        self
    }

    /// More QEMU arguments.
    pub fn arg(mut self, arg: &str) -> Machine {
        self.extra.push(arg.into());
        self
    }

    /// Runs QEMU inside the network namespace `name` (`ip netns exec <name> qemu...`), for
    /// tap devices that exist only there (see [`crate::net::Namespace`]).
    pub fn in_namespace(mut self, name: &str) -> Machine {
        self.prefix = ["ip", "netns", "exec", name].iter().map(|s| s.to_string()).collect();
        self
    }

    /// The kernel ELF this machine boots.
    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    /// The QEMU arguments; `serial` is `stdio` for captured runs or `mon:stdio` for an
    /// interactive terminal (Ctrl-A X quits, Ctrl-A C reaches the QEMU monitor).
    pub fn args(&self, serial: &str) -> Vec<String> {
        let mut args: Vec<String> = [
            "-M",
            "pc",
            "-accel",
            "tcg",
            // RDRAND: the soft bus makes its device keys from it (qemu64 lacks it).
            "-cpu",
            "qemu64,+rdrand",
            "-smp",
            "1",
            "-m",
            &self.memory,
            "-display",
            "none",
            "-no-reboot",
            "-serial",
            serial,
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if serial == "stdio" {
            args.extend(["-monitor".into(), "none".into()]);
        }
        if self.icount {
            args.extend(["-icount".into(), "shift=0".into()]);
        }
        args.extend(["-kernel".into(), self.kernel.display().to_string()]);
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".into(), initrd.display().to_string()]);
        }
        args.extend(["-append".into(), self.append.clone()]);
        args.extend(self.extra.iter().cloned());
        args
    }

    /// A command for an interactive run on the terminal (in the machine's namespace, if any).
    pub fn interactive_command(&self) -> Command {
        self.command("mon:stdio")
    }

    /// The QEMU command of this machine with its serial console on `serial` (QEMU's `-serial`
    /// syntax, e.g. `unix:/path,server=on,wait=off`), in the machine's namespace if it has one.
    pub fn command(&self, serial: &str) -> Command {
        let mut command = match self.prefix.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(QEMU);
                c
            }
            None => Command::new(QEMU),
        };
        command.args(self.args(serial));
        command
    }

    /// Boots the machine and collects its console until QEMU exits or the deadline passes.
    pub fn run(&self) -> Result<Run, HarnessError> {
        Ok(self.spawn()?.finish())
    }

    /// Boots the machine and returns at once: the test acts while it runs
    /// ([`Running::wait_for`] a console line, then talk to it), then [`Running::finish`]es or
    /// [`Running::stop`]s it. The deadline still holds from the start.
    pub fn spawn(&self) -> Result<Running, HarnessError> {
        for file in std::iter::once(&self.kernel).chain(self.initrd.iter()) {
            if !file.exists() {
                return Err(HarnessError::MissingFile(file.clone()));
            }
        }
        let args = self.args("stdio");
        let start = Instant::now();
        let mut child =
            self.command("stdio").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().map_err(
                |e| match e.kind() {
                    std::io::ErrorKind::NotFound => HarnessError::QemuMissing,
                    _ => HarnessError::Io(e),
                },
            )?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut raw = Vec::new();
            while reader.read_until(b'\n', &mut raw).unwrap_or(0) > 0 {
                let text = String::from_utf8_lossy(&raw).trim_end_matches(['\r', '\n']).to_string();
                if tx.send(Line { at: start.elapsed(), text }).is_err() {
                    break;
                }
                raw.clear();
            }
        });
        let stderr_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        let mut command: Vec<&str> = self.prefix.iter().map(String::as_str).collect();
        command.push(QEMU);
        command.extend(args.iter().map(String::as_str));
        Ok(Running {
            child,
            stdin,
            rx,
            lines: Vec::new(),
            start,
            deadline: start + self.deadline,
            reader: Some(reader),
            stderr_reader: Some(stderr_reader),
            kernel: self.kernel.clone(),
            command: command.join(" "),
        })
    }
}

/// A machine that is running ([`Machine::spawn`]): its console so far, and ways to wait for a
/// line, then end it.
pub struct Running {
    child: Child,
    /// QEMU's standard input: the serial port's receive side ([`Running::type_text`]).
    stdin: Option<std::process::ChildStdin>,
    rx: mpsc::Receiver<Line>,
    lines: Vec<Line>,
    start: Instant,
    deadline: Instant,
    reader: Option<std::thread::JoinHandle<()>>,
    stderr_reader: Option<std::thread::JoinHandle<String>>,
    kernel: PathBuf,
    command: String,
}

impl Drop for Running {
    /// A machine dropped while running (a test failed while acting on it) is stopped, so no
    /// QEMU outlives its test.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Running {
    /// The console lines so far.
    pub fn lines(&self) -> &[Line] {
        &self.lines
    }

    /// Waits up to `timeout` (and never past the machine's deadline) for a console line
    /// containing `needle`, counting lines printed before the call too. `None`: the time
    /// passed or QEMU ended first.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> Option<Line> {
        self.wait_until(|line| line.contains(needle), timeout)
    }

    /// Waits up to `timeout` (and never past the deadline) for a console line *equal* to
    /// `text` (ignoring surrounding white space), counting lines printed before the call too:
    /// unlike [`Running::wait_for`], the echo of a typed command line does not match.
    pub fn wait_for_line(&mut self, text: &str, timeout: Duration) -> Option<Line> {
        self.wait_until(|line| line.trim() == text, timeout)
    }

    /// Waits up to `timeout` (and never past the deadline) for a console line for which
    /// `hit` holds, counting lines printed before the call too.
    pub fn wait_until(&mut self, hit: impl Fn(&str) -> bool, timeout: Duration) -> Option<Line> {
        if let Some(line) = self.lines.iter().find(|l| hit(&l.text)) {
            return Some(line.clone());
        }
        let until = (Instant::now() + timeout).min(self.deadline);
        loop {
            let now = Instant::now();
            if now >= until {
                return None;
            }
            match self.rx.recv_timeout(until - now) {
                Ok(line) => {
                    let found = hit(&line.text);
                    self.lines.push(line);
                    if found {
                        return self.lines.last().cloned();
                    }
                }
                Err(_) => return None,
            }
        }
    }

    /// Types `text` on the serial console (QEMU's standard input becomes the UART's receive
    /// side): `\n` ends a line, `\x03` is Ctrl-C. False if QEMU no longer reads it.
    pub fn type_text(&mut self, text: &str) -> bool {
        use std::io::Write as _;
        let Some(stdin) = self.stdin.as_mut() else { return false };
        stdin.write_all(text.as_bytes()).and_then(|()| stdin.flush()).is_ok()
    }

    /// The run so far, as a report headed by `problem` (for a failure while it runs).
    pub fn report(&mut self, problem: &str) -> String {
        self.lines.extend(self.rx.try_iter());
        let run = Run {
            lines: self.lines.clone(),
            ending: Ending::TimedOut,
            stderr: String::new(),
            elapsed: self.start.elapsed(),
            kernel: self.kernel.clone(),
            command: self.command.clone(),
        };
        run.report(&format!("{problem} (the machine is still running)"))
    }

    /// Stops the machine now (QEMU is killed) and returns the run; its ending is `Killed`
    /// unless QEMU had already exited.
    pub fn stop(mut self) -> Run {
        let ending = match self.child.try_wait() {
            Ok(Some(status)) => ending_of(status),
            _ => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Ending::Killed
            }
        };
        self.collect(ending)
    }

    /// Collects the console until QEMU exits or the deadline passes (then QEMU is stopped and
    /// the ending is `TimedOut`).
    pub fn finish(mut self) -> Run {
        let deadline = self.deadline;
        let mut timed_out = false;
        loop {
            let now = Instant::now();
            if now >= deadline {
                timed_out = true;
                break;
            }
            match self.rx.recv_timeout(deadline - now) {
                Ok(line) => self.lines.push(line),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    timed_out = true;
                    break;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        let status = if timed_out { None } else { wait_until(&mut self.child, deadline).ok().flatten() };
        let ending = match status {
            None => {
                let _ = self.child.kill();
                let _ = self.child.wait();
                Ending::TimedOut
            }
            Some(status) => ending_of(status),
        };
        self.collect(ending)
    }

    fn collect(mut self, ending: Ending) -> Run {
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        self.lines.extend(self.rx.try_iter());
        let stderr = self.stderr_reader.take().and_then(|r| r.join().ok()).unwrap_or_default();
        Run {
            lines: std::mem::take(&mut self.lines),
            ending,
            stderr,
            elapsed: self.start.elapsed(),
            kernel: std::mem::take(&mut self.kernel),
            command: std::mem::take(&mut self.command),
        }
    }
}

fn ending_of(status: std::process::ExitStatus) -> Ending {
    match status.code() {
        Some(code) => ExitCode::from_qemu_status(code).map_or(Ending::QemuStatus(code), Ending::Exit),
        None => Ending::Killed,
    }
}

fn wait_until(child: &mut Child, deadline: Instant) -> Result<Option<std::process::ExitStatus>, HarnessError> {
    loop {
        if let Some(status) = child.try_wait().map_err(HarnessError::Io)? {
            return Ok(Some(status));
        }
        if Instant::now() >= deadline {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A kernel panic or fault report found on the console.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    /// The report's first line (`KERNEL PANIC at ...: message` or `KERNEL FAULT: ...`).
    pub headline: String,
    /// The report's detail lines (registers, page-fault cause).
    pub details: Vec<String>,
    /// The backtrace's addresses, innermost first.
    pub backtrace: Vec<u64>,
}

/// What one run of a machine produced.
#[derive(Clone, Debug)]
pub struct Run {
    pub lines: Vec<Line>,
    pub ending: Ending,
    /// What QEMU printed on its standard error.
    pub stderr: String,
    pub elapsed: Duration,
    kernel: PathBuf,
    command: String,
}

impl Run {
    /// The output of each command of Tutti's native shell in this run, with its status: the
    /// shell brackets each with `--- $ <command>` and `--- exit <status>` (docs/shell.md).
    pub fn shell_outputs(&self) -> Vec<(String, String, i32)> {
        let mut out = Vec::new();
        let mut current: Option<(String, String)> = None;
        for line in &self.lines {
            let text = line.text.trim_end_matches('\r');
            if let Some(status) = text.strip_prefix("--- exit ") {
                if let Some((command, output)) = current.take() {
                    out.push((command, output, status.trim().parse().unwrap_or(-1)));
                }
            } else if let Some(command) = text.strip_prefix("--- $ ") {
                current = Some((command.to_string(), String::new()));
            } else if let Some((_, output)) = current.as_mut() {
                output.push_str(text);
                output.push('\n');
            }
        }
        out
    }

    /// The whole console output.
    pub fn console(&self) -> String {
        self.lines.iter().map(|l| format!("{}\n", l.text)).collect()
    }

    /// The first console line containing `needle`.
    pub fn find(&self, needle: &str) -> Option<&Line> {
        self.lines.iter().find(|l| l.text.contains(needle))
    }

    /// Whether some console line contains `needle`.
    pub fn printed(&self, needle: &str) -> bool {
        self.find(needle).is_some()
    }

    /// The kernel's panic or fault report, if it printed one.
    pub fn crash(&self) -> Option<Crash> {
        let start =
            self.lines.iter().position(|l| l.text.starts_with("KERNEL PANIC") || l.text.starts_with("KERNEL FAULT"))?;
        let mut crash = Crash { headline: self.lines[start].text.clone(), details: Vec::new(), backtrace: Vec::new() };
        let mut in_backtrace = false;
        for line in &self.lines[start + 1..] {
            let text = line.text.trim();
            if text == "backtrace:" {
                in_backtrace = true;
            } else if text == "end of backtrace" || (in_backtrace && !text.starts_with('#')) {
                break;
            } else if in_backtrace {
                let address = text.split_whitespace().nth(1).and_then(|a| a.strip_prefix("0x"));
                if let Some(a) = address.and_then(|a| u64::from_str_radix(a, 16).ok()) {
                    crash.backtrace.push(a);
                }
            } else {
                crash.details.push(text.to_string());
            }
        }
        Some(crash)
    }

    /// The backtrace of the crash report with function names, one frame per line.
    pub fn symbolized_backtrace(&self) -> Vec<String> {
        let Some(crash) = self.crash() else { return Vec::new() };
        let symbols = Symbols::load(&self.kernel).ok();
        crash
            .backtrace
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let name = symbols.as_ref().and_then(|s| s.lookup(*a)).unwrap_or_else(|| "?".into());
                format!("#{i:<2} {a:#018x} {name}")
            })
            .collect()
    }

    /// Succeeds if the machine ended with `expected`; otherwise explains what happened: the
    /// ending, any kernel panic or fault with its symbolised backtrace, the console and QEMU's
    /// own messages.
    pub fn check(&self, expected: ExitCode) -> Result<(), String> {
        if self.ending == Ending::Exit(expected) && (expected != ExitCode::Success || self.crash().is_none()) {
            return Ok(());
        }
        Err(self.report(&format!("expected kernel exit {expected:?}, got: {}", self.ending)))
    }

    /// Panics with [`Run::check`]'s explanation unless the machine ended with `expected`.
    #[track_caller]
    pub fn assert_exit(&self, expected: ExitCode) -> &Run {
        if let Err(report) = self.check(expected) {
            panic!("{report}");
        }
        self
    }

    /// Panics with the console unless some line contains `needle`.
    #[track_caller]
    pub fn assert_printed(&self, needle: &str) -> &Run {
        if !self.printed(needle) {
            panic!("{}", self.report(&format!("the console never showed {needle:?}")));
        }
        self
    }

    /// A full account of the run, headed by `problem`.
    pub fn report(&self, problem: &str) -> String {
        let mut out = format!("{problem}\n");
        if let Some(crash) = self.crash() {
            let _ = writeln!(out, "{}", crash.headline);
            for d in &crash.details {
                let _ = writeln!(out, "  {d}");
            }
            let _ = writeln!(out, "backtrace:");
            for frame in self.symbolized_backtrace() {
                let _ = writeln!(out, "  {frame}");
            }
        }
        let _ = writeln!(out, "--- console ({} lines, {:.2?}) ---", self.lines.len(), self.elapsed);
        out.push_str(&self.console());
        if !self.stderr.trim().is_empty() {
            let _ = writeln!(out, "--- QEMU stderr ---\n{}", self.stderr.trim_end());
        }
        let _ = writeln!(out, "--- command ---\n{}", self.command);
        out
    }
}
