//! The native shell (`/bin/shell`, docs/shell.md): a command line on the console service for
//! files (through the file-system service), services (through init), memory, the kernel log and
//! running programs by path.
//!
//! Interactive by default: it prints a prompt and reads lines from the console. With `arg`
//! lines in its manifest entry (what `cargo xtask run --cmd` adds) it runs each as a command
//! instead, between the lines `--- $ <command>` and `--- exit <status>`, and exits with the last
//! status, which `shutdown-on-exit` turns into the machine's end.
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::{label, rights};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write;
use rt::ipc::{BufRange, Client, SharedBuffer};
use rt::spawn::{spawn_image, Spawn};
use rt::sys::{self, Handle, FOREVER_NS};
use svc::boot::{self, Response};
use svc::console::{Console, Request as ConsoleRequest, Response as ConsoleResponse};
use svc::fs::{self, Fs, Kind};

rt::entry!(main);

/// The largest program `run` loads.
const PROGRAM_MAX: usize = 8 << 20;
/// Quota given to a program the shell runs (from the shell's own).
const PROGRAM_QUOTA: u64 = 1 << 20;
/// Bytes of the console buffer (lines in, output out).
const CONSOLE_BUFFER: u64 = 4096;
/// Label of a fault message from the kernel (docs/abi.md).
const FAULT: u32 = label::FAULT;

const HELP: &str = "\
commands:
  ls [-l] [path...]     list directories          cat <path>...       print files
  echo <text>           print text                write <path> <text> write a file
  mkdir <path>          make a directory          rm <path>           remove a file or empty directory
  mv <from> <to>        rename                    stat <path>         show metadata
  cp <from> <to>        copy a file               wc <path>...        count bytes and lines
  cd <path>, pwd        working directory         df                  mounts and free space
  sync                  flush file systems        ps, services        services and their state
  kill <service>        end a service (its restart policy applies)
  restart <service>     start a service again now
  mem                   memory use per service    dmesg               the kernel log
  net                   network status            uptime              time since boot
  sleep <ms>            wait                      run <path>, <path>  run a program
  linux <path> [args]   run a static Linux program (its exit status is the command's)
  linux-counts          unimplemented Linux system calls made so far
  bus devices|trust     soft bus: devices discovered and trusted; trusted devices
  bus pair --show       show a pairing code here (another device types it)
  bus pair <dev> <code> pair with a device that shows <code>
  bus revoke <dev>      stop trusting a device
  bus caps <dev>        what a device offers
  bus call <dev> <service.method> [payload]   call a method (payload: JSON)
  bus ping <dev> [count] [bytes]   round trips of echo.echo: spread and throughput
  bus remote <service>@<dev> <method> [payload]   call through the name service
  bus send <dev> <path>  send a file (the receiver checks its SHA-256)
  bus policy [set <dev> <cap> allow|deny|ask [s] | remove <dev> <cap>]   permissions
  bus allow|deny <dev> <cap> [seconds]   answer a permission prompt
  exit [status]         leave the shell
  `> file` and `>> file` after a command write its output to a file.
";

struct Shell {
    console: Option<(Client<Console>, SharedBuffer)>,
    fs: Option<Fs>,
    kernel_log: Option<Handle>,
    /// Where `dmesg` continues (0: from the oldest byte held).
    cwd: String,
    status: i32,
    /// Set by `exit`.
    leave: Option<i32>,
    /// Ends of programs the shell runs: signalled on this notification, bound to `endpoint`.
    endpoint: Handle,
    ends: Handle,
    /// The status of the last `linux` command's program.
    linux_status: Option<i32>,
    /// Whether someone at the console runs the commands (typed, or `--login`): then a Linux
    /// program reads the console; else (the manifest's commands) its input is empty.
    interactive: bool,
}

fn main() -> i32 {
    let mut shell = match Shell::new() {
        Ok(shell) => shell,
        Err(e) => {
            rt::println!("shell: cannot start: {e}");
            return svc::exit(1);
        }
    };
    let mut commands = svc::arguments().unwrap_or_default();
    // `--login` first: the commands run as if typed (the Linux personality's busybox `sh`, as
    // `cargo xtask run` starts it), then this shell reads the console.
    if commands.first().is_some_and(|c| c == "--login") {
        commands.remove(0);
        shell.interactive = true;
        for command in &commands {
            shell.status = shell.execute(command);
        }
        shell.leave = None;
        shell.say("Back in the Tutti shell. Type `help` for the commands.\n");
    } else if !commands.is_empty() {
        let mut status = 0;
        for command in &commands {
            shell.say(&format!("--- $ {command}\n"));
            status = shell.execute(command);
            status = shell.leave.unwrap_or(status);
            shell.status = status;
            shell.say(&format!("--- exit {status}\n"));
            if shell.leave.is_some() {
                break;
            }
        }
        return svc::exit(status);
    } else {
        shell.say("Tutti shell. Type `help` for the commands.\n");
    }
    shell.interactive = true;
    loop {
        let prompt = format!("tutti:{}$ ", shell.cwd);
        shell.say(&prompt);
        let Some(line) = shell.read_line() else {
            // No console: nothing more to read.
            return svc::exit(shell.status);
        };
        shell.status = shell.execute(&line);
        if let Some(status) = shell.leave {
            return svc::exit(status);
        }
    }
}

impl Shell {
    fn new() -> Result<Shell, String> {
        let mut kernel_log = None;
        for cap in svc::capabilities().map_err(|e| format!("init: {e}"))? {
            if let Response::KernelLog { cap } = cap {
                kernel_log = Some(cap.0);
            }
        }
        let console = Self::connect_console();
        let endpoint = sys::endpoint_create().map_err(|e| format!("endpoint: {e}"))?;
        let ends = sys::notification_create().map_err(|e| format!("notification: {e}"))?;
        sys::notification_bind(ends).map_err(|e| format!("bind: {e}"))?;
        Ok(Shell {
            console,
            fs: None,
            kernel_log,
            cwd: String::from("/"),
            status: 0,
            leave: None,
            endpoint,
            ends,
            linux_status: None,
            interactive: false,
        })
    }

    fn connect_console() -> Option<(Client<Console>, SharedBuffer)> {
        let mut names = svc::names().ok()?;
        let endpoint = svc::lookup(&mut names, "console", 2_000_000_000).ok()?;
        let console = Client::<Console>::new(endpoint);
        let ConsoleResponse::Buffer { memory, .. } =
            console.call(&ConsoleRequest::OpenBuffer { len: CONSOLE_BUFFER }, FOREVER_NS).ok()?
        else {
            return None;
        };
        let buffer = SharedBuffer::map(memory.0).ok()?;
        Some((console, buffer))
    }

    /// Writes `text` on the console; reconnects once if the console service restarted, and
    /// falls back to the kernel console without it.
    fn say(&mut self, text: &str) {
        for attempt in 0..2 {
            if self.console.is_none() && attempt == 1 {
                self.console = Self::connect_console();
            }
            if let Some((console, buffer)) = &self.console {
                let sent = text.as_bytes().chunks(CONSOLE_BUFFER as usize).all(|chunk| {
                    let range = BufRange { offset: 0, len: chunk.len() as u64 };
                    buffer.write(0, chunk).is_ok()
                        && matches!(
                            console.call(&ConsoleRequest::WriteBuffer { range }, FOREVER_NS),
                            Ok(ConsoleResponse::Done)
                        )
                });
                if sent {
                    return;
                }
                self.console = None;
            }
        }
        for line in text.lines() {
            rt::println!("{line}");
        }
    }

    /// The next line typed (an empty one after Ctrl-C), or `None` without a console.
    fn read_line(&mut self) -> Option<String> {
        loop {
            if self.console.is_none() {
                self.console = Self::connect_console();
            }
            let (console, buffer) = self.console.as_ref()?;
            match console.call(&ConsoleRequest::ReadLine { offset: 0 }, FOREVER_NS) {
                Ok(ConsoleResponse::Line { len }) => {
                    let mut bytes = alloc::vec![0; (len as usize).min(CONSOLE_BUFFER as usize)];
                    buffer.read(0, &mut bytes).ok()?;
                    return Some(String::from_utf8_lossy(&bytes).into_owned());
                }
                Ok(ConsoleResponse::Cancelled) => {
                    return Some(String::new());
                }
                Ok(ConsoleResponse::Busy) => {
                    sys::sleep(100_000_000);
                }
                // The console service restarted: connect again.
                _ => {
                    self.console = None;
                    sys::sleep(10_000_000);
                }
            }
        }
    }

    fn fs(&mut self) -> Result<&Fs, String> {
        if self.fs.is_none() {
            self.fs = Some(Fs::connect().map_err(|e| format!("file system: {}", e.text()))?);
        }
        Ok(self.fs.as_ref().expect("connected above"))
    }

    /// `path` made absolute against the working directory.
    fn absolute(&self, path: &str) -> String {
        if path.starts_with('/') {
            String::from(path)
        } else if self.cwd.ends_with('/') {
            format!("{}{path}", self.cwd)
        } else {
            format!("{}/{path}", self.cwd)
        }
    }

    /// Runs one command line; returns its status.
    fn execute(&mut self, line: &str) -> i32 {
        let words = match split(line) {
            Ok(words) => words,
            Err(e) => {
                self.say(&format!("shell: {e}\n"));
                return 2;
            }
        };
        let (words, redirect) = match redirection(words) {
            Ok(parts) => parts,
            Err(e) => {
                self.say(&format!("shell: {e}\n"));
                return 2;
            }
        };
        if words.is_empty() {
            return 0;
        }
        let mut out = String::new();
        self.linux_status = None;
        let status = match self.command(&words, &mut out) {
            Ok(()) => self.linux_status.take().unwrap_or(0),
            Err(e) => {
                if redirect.is_some() {
                    self.say(&format!("{}: {e}\n", words[0]));
                } else {
                    let _ = writeln!(out, "{}: {e}", words[0]);
                }
                1
            }
        };
        match redirect {
            None => self.say(&out),
            Some((path, append)) => {
                let path = self.absolute(&path);
                let written = self.fs().and_then(|fs| {
                    let result = if append {
                        fs.append_file(&path, out.as_bytes())
                    } else {
                        fs.write_file(&path, out.as_bytes())
                    };
                    result.map_err(|e| format!("{path}: {}", e.text()))
                });
                if let Err(e) = written {
                    self.say(&format!("shell: {e}\n"));
                    return 1;
                }
            }
        }
        status
    }

    fn command(&mut self, words: &[String], out: &mut String) -> Result<(), String> {
        let args: Vec<&str> = words[1..].iter().map(String::as_str).collect();
        match words[0].as_str() {
            "help" => out.push_str(HELP),
            "echo" => {
                out.push_str(&args.join(" "));
                out.push('\n');
            }
            "pwd" => {
                out.push_str(&self.cwd);
                out.push('\n');
            }
            "cd" => {
                let path = self.absolute(args.first().copied().unwrap_or("/"));
                let stat = self.fs()?.stat(&path).map_err(|e| format!("{path}: {}", e.text()))?;
                if stat.kind != Kind::Directory {
                    return Err(format!("{path}: not a directory"));
                }
                self.cwd = normalise(&path);
            }
            "ls" => self.ls(&args, out)?,
            "cat" => {
                for path in args {
                    let path = self.absolute(path);
                    let bytes =
                        self.fs()?.read_file_limited(&path, 1 << 20).map_err(|e| format!("{path}: {}", e.text()))?;
                    out.push_str(&String::from_utf8_lossy(&bytes));
                }
            }
            "write" => {
                let [path, text @ ..] = args.as_slice() else { return Err(String::from("usage: write <path> <text>")) };
                let path = self.absolute(path);
                let mut bytes = text.join(" ");
                bytes.push('\n');
                self.fs()?.write_file(&path, bytes.as_bytes()).map_err(|e| format!("{path}: {}", e.text()))?;
            }
            "mkdir" => {
                for path in args {
                    let path = self.absolute(path);
                    self.fs()?.mkdir(&path, 0o755).map_err(|e| format!("{path}: {}", e.text()))?;
                }
            }
            "rm" => {
                for path in args {
                    let path = self.absolute(path);
                    let fs = self.fs()?;
                    match fs.unlink(&path) {
                        Err(fs::Error::IsDirectory) => fs.rmdir(&path),
                        other => other,
                    }
                    .map_err(|e| format!("{path}: {}", e.text()))?;
                }
            }
            "mv" => {
                let [from, to] = args.as_slice() else { return Err(String::from("usage: mv <from> <to>")) };
                let (from, to) = (self.absolute(from), self.absolute(to));
                self.fs()?.rename(&from, &to).map_err(|e| format!("{from} -> {to}: {}", e.text()))?;
            }
            "cp" => {
                let [from, to] = args.as_slice() else { return Err(String::from("usage: cp <from> <to>")) };
                let (from, to) = (self.absolute(from), self.absolute(to));
                let fs = self.fs()?;
                let mut source = fs.open(&from, fs::flags::READ, 0).map_err(|e| format!("{from}: {}", e.text()))?;
                let flags = fs::flags::WRITE | fs::flags::CREATE | fs::flags::TRUNCATE;
                let mut target = fs.open(&to, flags, 0o644).map_err(|e| format!("{to}: {}", e.text()))?;
                each_chunk(&mut source, &from, |chunk| {
                    target.write(chunk).map(|_| ()).map_err(|e| format!("{to}: {}", e.text()))
                })?;
                target.close().map_err(|e| format!("{to}: {}", e.text()))?;
            }
            "wc" => {
                for path in args {
                    let path = self.absolute(path);
                    let fs = self.fs()?;
                    let mut file = fs.open(&path, fs::flags::READ, 0).map_err(|e| format!("{path}: {}", e.text()))?;
                    let (mut bytes, mut lines) = (0u64, 0u64);
                    each_chunk(&mut file, &path, |chunk| {
                        bytes += chunk.len() as u64;
                        lines += chunk.iter().filter(|b| **b == b'\n').count() as u64;
                        Ok(())
                    })?;
                    let _ = writeln!(out, "{lines} lines, {bytes} bytes: {path}");
                }
            }
            "stat" => {
                for path in args {
                    let path = self.absolute(path);
                    let s = self.fs()?.lstat(&path).map_err(|e| format!("{path}: {}", e.text()))?;
                    let _ = writeln!(
                        out,
                        "{path}: {} mode {:o} size {} inode {} links {} blocks {} mtime {}",
                        kind_name(s.kind),
                        s.mode,
                        s.size,
                        s.ino,
                        s.nlink,
                        s.blocks,
                        s.mtime
                    );
                }
            }
            "df" | "mount" => {
                let mounts = self.fs()?.mounts().map_err(|e| String::from(e.text()))?;
                let _ = writeln!(out, "{:<10} {:<7} {:<3} {:>10} {:>10}", "mount", "type", "", "size KiB", "free KiB");
                for m in mounts {
                    let _ = writeln!(
                        out,
                        "{:<10} {:<7} {:<3} {:>10} {:>10}",
                        m.path,
                        m.fs_type,
                        if m.read_only { "ro" } else { "rw" },
                        m.total_bytes / 1024,
                        m.free_bytes / 1024
                    );
                }
            }
            "sync" => self.fs()?.sync().map_err(|e| String::from(e.text()))?,
            "ps" | "services" => self.services(out)?,
            "kill" | "restart" => {
                let [name] = args.as_slice() else { return Err(format!("usage: {} <service>", words[0])) };
                let index = service_index(name)?;
                let request =
                    if words[0] == "kill" { boot::Request::Kill { index } } else { boot::Request::Restart { index } };
                match svc::init().call(&request, FOREVER_NS) {
                    Ok(Response::Done) => {}
                    Ok(Response::Denied) => return Err(String::from("not allowed (the shell needs `admin`)")),
                    other => return Err(format!("init answered {other:?}")),
                }
            }
            "mem" => self.mem(out)?,
            "dmesg" => self.dmesg(out)?,
            "net" => self.net(out)?,
            "uptime" => {
                let ms = sys::time_now() / 1_000_000;
                let _ = writeln!(out, "up {}.{:03} s", ms / 1000, ms % 1000);
            }
            "sleep" => {
                let ms: u64 = args.first().and_then(|a| a.parse().ok()).ok_or("usage: sleep <milliseconds>")?;
                sys::sleep(ms.saturating_mul(1_000_000));
            }
            "exit" => {
                let status = match args.first() {
                    Some(a) => a.parse().map_err(|_| format!("not a status: {a}"))?,
                    None => self.status,
                };
                self.leave = Some(status);
            }
            "run" => {
                let [path, ..] = args.as_slice() else { return Err(String::from("usage: run <path>")) };
                return self.run(path, out);
            }
            "linux" => {
                let [path, ..] = args.as_slice() else { return Err(String::from("usage: linux <path> [args...]")) };
                return self.linux(path, &args, out);
            }
            "linux-counts" => {
                let linux = svc::linux::LinuxClient::connect(1_000_000_000).map_err(|e| format!("{e}"))?;
                let counts = linux.counts().map_err(|e| format!("{e}"))?;
                for (nr, count) in counts {
                    let _ = writeln!(out, "{nr:>4} {:<24} {count}", lpx::nr::name(nr as u64));
                }
            }
            "bus" => self.bus(&args, out)?,
            word if word.starts_with('/') || word.starts_with("./") => return self.run(word, out),
            other => return Err(format!("unknown command (try `help`): {other}")),
        }
        Ok(())
    }

    fn ls(&mut self, args: &[&str], out: &mut String) -> Result<(), String> {
        let long = args.contains(&"-l");
        let mut paths: Vec<&str> = args.iter().copied().filter(|a| *a != "-l").collect();
        if paths.is_empty() {
            paths.push(".");
        }
        for path in paths {
            let path = if path == "." { self.cwd.clone() } else { self.absolute(path) };
            let fs = self.fs()?;
            let stat = fs.stat(&path).map_err(|e| format!("{path}: {}", e.text()))?;
            if stat.kind != Kind::Directory {
                let _ = writeln!(out, "{path}");
                continue;
            }
            let mut entries = fs.read_dir(&path).map_err(|e| format!("{path}: {}", e.text()))?;
            entries.retain(|e| e.name != b"." && e.name != b"..");
            entries.sort_by(|a, b| a.name.cmp(&b.name));
            for entry in entries {
                let name = entry.name_str();
                if long {
                    let full = if path.ends_with('/') { format!("{path}{name}") } else { format!("{path}/{name}") };
                    match fs.lstat(&full) {
                        Ok(s) => {
                            let _ = writeln!(out, "{} {:>10} {name}", mode_string(s.kind, s.mode), s.size);
                        }
                        Err(e) => {
                            let _ = writeln!(out, "?????????? {:>10} {name} ({})", "?", e.text());
                        }
                    }
                } else {
                    let slash = if entry.kind == Kind::Directory { "/" } else { "" };
                    let _ = writeln!(out, "{name}{slash}");
                }
            }
        }
        Ok(())
    }

    fn services(&mut self, out: &mut String) -> Result<(), String> {
        let _ = writeln!(out, "{:<16} {:<12} {:>8}  last end", "service", "state", "restarts");
        for index in 0.. {
            match svc::init().call(&boot::Request::Status { index }, FOREVER_NS) {
                Ok(Response::Service { name, state, restarts, exit_kind, exit_value }) => {
                    let last = match exit_kind {
                        boot::exit::STATUS => format!("status {exit_value}"),
                        boot::exit::FAULT => format!("fault {exit_value}"),
                        boot::exit::VANISHED => String::from("vanished (panic or killed)"),
                        _ => String::from("-"),
                    };
                    let _ = writeln!(
                        out,
                        "{:<16} {:<12} {:>8}  {last}",
                        svc::name_str(&name),
                        boot::state::text(state),
                        restarts
                    );
                }
                Ok(Response::NoMore) => break,
                other => return Err(format!("init answered {other:?}")),
            }
        }
        Ok(())
    }

    fn mem(&mut self, out: &mut String) -> Result<(), String> {
        let _ = writeln!(out, "{:<16} {:>10} {:>10} {:>10}", "task", "used KiB", "quota KiB", "mapped KiB");
        let (mut used, mut quota, mut mapped) = (0, 0, 0);
        for index in 0.. {
            let name = match svc::init().call(&boot::Request::Status { index }, FOREVER_NS) {
                Ok(Response::Service { name, .. }) => name,
                Ok(Response::NoMore) => break,
                other => return Err(format!("init answered {other:?}")),
            };
            match svc::init().call(&boot::Request::Usage { index }, FOREVER_NS) {
                Ok(Response::Usage { used: u, quota: q, pages }) => {
                    let _ = writeln!(
                        out,
                        "{:<16} {:>10} {:>10} {:>10}",
                        svc::name_str(&name),
                        u / 1024,
                        q / 1024,
                        pages * 4
                    );
                    used += u;
                    quota += q;
                    mapped += pages * 4;
                }
                _ => {
                    let _ = writeln!(out, "{:<16} {:>10} {:>10} {:>10}", svc::name_str(&name), "-", "-", "-");
                }
            }
        }
        let _ = writeln!(out, "{:<16} {:>10} {:>10} {:>10}", "total", used / 1024, quota / 1024, mapped);
        Ok(())
    }

    fn dmesg(&mut self, out: &mut String) -> Result<(), String> {
        let log = self.kernel_log.ok_or("no kernel log (the shell needs `kernel-log`)")?;
        let mut at = 0;
        let mut chunk = alloc::vec![0u8; abi::syscall::LOG_READ_MAX];
        loop {
            let (start, n, _end) = sys::log_read(log, at, &mut chunk).map_err(|e| format!("{e}"))?;
            if n == 0 {
                break;
            }
            out.push_str(&String::from_utf8_lossy(&chunk[..n]));
            at = start + n as u64;
        }
        Ok(())
    }

    /// `bus ...`: the soft bus server's local API (docs/softbus/tutti.md).
    fn bus(&mut self, args: &[&str], out: &mut String) -> Result<(), String> {
        if let ["remote", name, method, rest @ ..] = args {
            // Through the name service, as any program would reach `display@node1`.
            let remote = svc::softbus::Remote::lookup(name, 2_000_000_000).map_err(|e| format!("{name}: {e}"))?;
            let payload = if rest.is_empty() { String::from("null") } else { rest.join(" ") };
            let answer = remote.call(method, payload.as_bytes(), 0).map_err(|e| format!("{name}: {e}"))?;
            out.push_str(&String::from_utf8_lossy(&answer));
            out.push('\n');
            return Ok(());
        }
        let bus = svc::softbus::Bus::connect(2_000_000_000).map_err(|e| format!("{e}"))?;
        let failed = |e: svc::softbus::BusError| format!("{e}");
        match args {
            ["devices"] => out.push_str(&bus.devices().map_err(failed)?),
            ["trust"] | ["trust", "list"] => out.push_str(&bus.trust().map_err(failed)?),
            ["pair", "--show"] => {
                let (code, valid_s) = bus.pair_show().map_err(failed)?;
                let _ = writeln!(out, "pairing code {code:06} (valid {valid_s} s): type it on the other device");
            }
            ["pair", device, code] => out.push_str(&bus.pair(device, code).map_err(failed)?),
            ["revoke", device] | ["trust", "revoke", device] => out.push_str(&bus.revoke(device).map_err(failed)?),
            ["caps", device] => out.push_str(&bus.caps(device).map_err(failed)?),
            ["send", device, path] => {
                let path = self.absolute(path);
                out.push_str(&bus.send(device, &path).map_err(failed)?);
            }
            [verb @ ("allow" | "deny"), device, capability, rest @ ..] => {
                let seconds = match rest {
                    [] => 0,
                    [s] => s.parse().map_err(|_| format!("not a number of seconds: {s}"))?,
                    _ => return Err(String::from("usage: bus allow|deny <dev> <capability> [seconds]")),
                };
                out.push_str(&bus.answer(device, capability, *verb == "allow", seconds).map_err(failed)?);
            }
            ["policy"] => out.push_str(&bus.policy().map_err(failed)?),
            ["policy", "set", device, capability, decision, rest @ ..] => {
                use svc::softbus::decision as d;
                let decision = match *decision {
                    "allow" => d::ALLOW,
                    "deny" => d::DENY,
                    "ask" => d::ASK,
                    other => return Err(format!("not a decision (allow, deny, ask): {other}")),
                };
                let seconds = match rest {
                    [] => 0,
                    [s] => s.parse().map_err(|_| format!("not a number of seconds: {s}"))?,
                    _ => return Err(String::from("usage: bus policy set <dev> <capability> allow|deny|ask [seconds]")),
                };
                out.push_str(&bus.policy_set(device, capability, decision, seconds).map_err(failed)?);
            }
            ["policy", "remove", device, capability] => out.push_str(&bus.policy_remove(device, capability).map_err(failed)?),
            ["ping", device, rest @ ..] => {
                let number = |i: usize, default: usize, max: usize| -> Result<usize, String> {
                    match rest.get(i) {
                        None => Ok(default),
                        Some(t) => t.parse().ok().filter(|n| (1..=max).contains(n)).ok_or(format!("not 1 to {max}: {t}")),
                    }
                };
                let (count, bytes) = (number(0, 10, 100_000)?, number(1, 32, 8192)?.max(2));
                self.bus_ping(&bus, device, count, bytes, out)?;
            }
            ["run", device, program, rest @ ..] => return self.bus_run(&bus, device, program, rest, out),
            ["call", device, method, rest @ ..] => {
                let payload = rest.join(" ");
                let payload = if payload.is_empty() { String::from("null") } else { payload };
                let answer = bus.call(device, method, payload.as_bytes(), 0).map_err(failed)?;
                out.push_str(&String::from_utf8_lossy(&answer));
                out.push('\n');
            }
            _ => {
                return Err(String::from(
                    "usage: bus devices | trust | pair --show | pair <dev> <code> | revoke <dev> | caps <dev> | call <dev> <method> [payload] | run <dev> <program> [args] | ping <dev> [count] [bytes] | policy ... | allow|deny <dev> <cap> [s]",
                ))
            }
        }
        Ok(())
    }

    /// `bus run`: starts the Linux program `program` on `device` (`compute.run`) and prints its
    /// output as it comes (`compute.output`, asked again every 100 ms while there is none) until
    /// it ends; its exit status is the command's.
    fn bus_run(
        &mut self,
        bus: &svc::softbus::Bus,
        device: &str,
        program: &str,
        args: &[&str],
        out: &mut String,
    ) -> Result<(), String> {
        let request = serde_json::json!({ "program": program, "args": args });
        let answer = bus.call(device, "compute.run", request.to_string().as_bytes(), 0).map_err(|e| format!("{e}"))?;
        let started: serde_json::Value = serde_json::from_slice(&answer).map_err(|e| format!("compute.run: {e}"))?;
        let run = started["run"].as_u64().ok_or_else(|| String::from("compute.run gave no run number"))?;
        let before = core::mem::take(out);
        self.say(&before);
        let ask = serde_json::json!({ "run": run }).to_string();
        loop {
            let answer = bus.call(device, "compute.output", ask.as_bytes(), 0).map_err(|e| format!("{e}"))?;
            let output: serde_json::Value =
                serde_json::from_slice(&answer).map_err(|e| format!("compute.output: {e}"))?;
            let text = output["output"].as_str().unwrap_or_default();
            self.say(text);
            if output["done"].as_bool() == Some(true) {
                let code = match (output["exit"].as_i64(), output["signal"].as_u64()) {
                    (Some(code), _) => code as i32,
                    (None, Some(signal)) => {
                        let _ = writeln!(out, "{program} on {device}: killed by signal {signal}");
                        128 + signal as i32
                    }
                    (None, None) => 0,
                };
                if code != 0 {
                    let _ = writeln!(out, "{program} on {device}: exit status {code}");
                }
                self.linux_status = Some(code);
                return Ok(());
            }
            if text.is_empty() {
                sys::sleep(100_000_000);
            }
        }
    }

    /// `bus ping`: `count` calls of `echo.echo` on `device` with a JSON string of `bytes`
    /// bytes, each answer checked; the round trips' spread and the payload throughput.
    fn bus_ping(
        &mut self,
        bus: &svc::softbus::Bus,
        device: &str,
        count: usize,
        bytes: usize,
        out: &mut String,
    ) -> Result<(), String> {
        let mut payload = String::with_capacity(bytes);
        payload.push('"');
        payload.extend(core::iter::repeat_n('x', bytes - 2));
        payload.push('"');
        let mut samples = Vec::with_capacity(count);
        let start = sys::time_now();
        for _ in 0..count {
            let t = sys::time_now();
            let answer = bus.call(device, "echo.echo", payload.as_bytes(), 0).map_err(|e| format!("{e}"))?;
            samples.push(sys::time_now() - t);
            if answer != payload.as_bytes() {
                return Err(format!("echo.echo answered {} bytes that differ from the {bytes} sent", answer.len()));
            }
        }
        let total = (sys::time_now() - start).max(1);
        samples.sort_unstable();
        let at = |q: usize| samples[((samples.len() - 1) * q).div_ceil(100).min(samples.len() - 1)] / 1000;
        let kb_s = (2 * bytes * count) as u64 * 1_000_000 / total;
        let _ = writeln!(
            out,
            "ping {device}: n={count} bytes={bytes} min_us={} p50_us={} p99_us={} max_us={} kb_s={kb_s}",
            samples[0] / 1000,
            at(50),
            at(99),
            samples[samples.len() - 1] / 1000
        );
        Ok(())
    }

    fn net(&mut self, out: &mut String) -> Result<(), String> {
        let net = svc::net::Net::connect(1_000_000_000).map_err(|e| format!("network service: {e}"))?;
        match net.config() {
            Ok(c) => {
                let [a, b, d, e] = c.addr;
                let [g0, g1, g2, g3] = c.gateway;
                let m = c.mac;
                let _ = writeln!(
                    out,
                    "net0: address {a}.{b}.{d}.{e}/{} gateway {g0}.{g1}.{g2}.{g3} mac {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
                    c.prefix, m[0], m[1], m[2], m[3], m[4], m[5]
                );
                Ok(())
            }
            Err(e) => Err(format!("net0: {e}")),
        }
    }

    /// Runs the static Linux program at `path` with `args` (argv, `args[0]` the path) through
    /// the Linux personality and waits for its end: its exit code is the command's status,
    /// 128 + the signal if it was killed.
    fn linux(&mut self, path: &str, args: &[&str], out: &mut String) -> Result<(), String> {
        let linux = svc::linux::LinuxClient::connect(2_000_000_000).map_err(|e| format!("{e}"))?;
        let envp = ["PATH=/bin:/disk:/boot/bin", "HOME=/", "TERM=vt100", "LANG=C"];
        // Flush what came before, so the program's output follows it.
        let before = core::mem::take(out);
        self.say(&before);
        let pid = linux.spawn(path, &self.cwd, args, &envp, self.interactive).map_err(|e| format!("{e}"))?;
        match linux.wait(pid, 1_000_000_000).map_err(|e| format!("{e}"))? {
            svc::linux::Status::Exited(code) => {
                self.linux_status = Some(code);
                Ok(())
            }
            svc::linux::Status::Killed(signal) => {
                let name = match signal {
                    11 => "SIGSEGV",
                    4 => "SIGILL",
                    6 => "SIGABRT",
                    8 => "SIGFPE",
                    _ => "a signal",
                };
                self.linux_status = Some(128 + signal as i32);
                let _ = writeln!(out, "{path}: killed by {name} (signal {signal})");
                Ok(())
            }
            svc::linux::Status::Running => Err(String::from("still running")),
        }
    }

    /// Runs the program at `path` as the supervisor of its task and waits for its end; a
    /// fault ends it and is the command's error.
    fn run(&mut self, path: &str, out: &mut String) -> Result<(), String> {
        let path = self.absolute(path);
        let image = self.fs()?.read_file_limited(&path, PROGRAM_MAX).map_err(|e| format!("{path}: {}", e.text()))?;
        let name = path.rsplit('/').next().unwrap_or("program");
        let me = sys::task_info(0).map_err(|e| format!("{e}"))?;
        let quota = PROGRAM_QUOTA.min(me.quota.saturating_sub(me.used) / 2);
        let spawn = Spawn { path: &path, name, quota, priority: 10, cap: None };
        let task = spawn_image(&image, &spawn).map_err(|e| format!("{path}: {e}"))?;
        drop(image);
        let supervised = sys::cap_duplicate(self.endpoint, rights::SEND, 1).and_then(|cap| {
            let set = sys::task_set_supervisor(task, cap);
            let _ = sys::cap_close(cap);
            set
        });
        if let Err(e) = supervised.and_then(|()| sys::task_watch(task, self.ends, 1)) {
            let _ = sys::cap_revoke(task);
            return Err(format!("cannot supervise {path}: {e}"));
        }
        // Flush what came before, so the program's output follows it.
        let before = core::mem::take(out);
        self.say(&before);
        let result = loop {
            match sys::recv(self.endpoint, FOREVER_NS) {
                Ok(received) if received.message.label == label::NOTIFY => {
                    if sys::cap_info(task).is_err() {
                        break Ok(());
                    }
                }
                Ok(received) if received.message.label == FAULT => {
                    let [vector, code, address, rip] = received.message.words;
                    let _ = sys::cap_revoke(task);
                    break Err(format!(
                        "{path}: fault vector {vector} (error code {code:#x}, address {address:#x}, rip {rip:#x}); ended"
                    ));
                }
                Ok(_) => {
                    let _ = sys::reply(&sys::Message::default());
                }
                Err(e) => break Err(format!("waiting for {path}: {e}")),
            }
        };
        let _ = sys::cap_close(task);
        result
    }
}

/// The index of service `name` in init's manifest.
fn service_index(name: &str) -> Result<u32, String> {
    for index in 0.. {
        match svc::init().call(&boot::Request::Status { index }, FOREVER_NS) {
            Ok(Response::Service { name: n, .. }) if svc::name_str(&n) == name => return Ok(index),
            Ok(Response::Service { .. }) => {}
            _ => break,
        }
    }
    Err(format!("no service named {name}"))
}

/// Splits a line into words: whitespace separates, `'...'` and `"..."` quote, `\` escapes.
fn split(line: &str) -> Result<Vec<String>, &'static str> {
    let mut words = Vec::new();
    let mut word = String::new();
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' | '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some(q) if q == c => break,
                        Some('\\') if c == '"' => word.push(chars.next().ok_or("a `\\` at the end")?),
                        Some(other) => word.push(other),
                        None => return Err("unterminated quote"),
                    }
                }
            }
            '\\' => {
                in_word = true;
                word.push(chars.next().ok_or("a `\\` at the end")?);
            }
            c if c.is_whitespace() => {
                if in_word {
                    words.push(core::mem::take(&mut word));
                    in_word = false;
                }
            }
            '#' if !in_word => break,
            c => {
                in_word = true;
                word.push(c);
            }
        }
    }
    if in_word {
        words.push(word);
    }
    Ok(words)
}

/// Takes `> path` or `>> path` off the words: the file and whether to append.
#[allow(clippy::type_complexity)]
fn redirection(mut words: Vec<String>) -> Result<(Vec<String>, Option<(String, bool)>), &'static str> {
    let Some(at) = words.iter().position(|w| w == ">" || w == ">>") else { return Ok((words, None)) };
    if words.len() != at + 2 {
        return Err("a redirection needs exactly one file, at the end");
    }
    let path = words.pop().expect("checked");
    let append = words.pop().expect("checked") == ">>";
    Ok((words, Some((path, append))))
}

/// `path` without `.`, `..` and repeated `/`.
fn normalise(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            other => parts.push(other),
        }
    }
    let mut out = String::from("/");
    out.push_str(&parts.join("/"));
    out
}

fn kind_name(kind: Kind) -> &'static str {
    match kind {
        Kind::Regular => "file",
        Kind::Directory => "directory",
        Kind::Symlink => "symlink",
        Kind::CharDevice => "character device",
        Kind::BlockDevice => "block device",
        Kind::Fifo => "fifo",
        Kind::Socket => "socket",
        Kind::Unknown => "unknown",
    }
}

/// `drwxr-xr-x` style.
/// Reads `file` (opened from `path`) to its end, 32 KiB at a time (a remote file's most per
/// call), handing each piece to `f`.
fn each_chunk(
    file: &mut fs::File<'_>,
    path: &str,
    mut f: impl FnMut(&[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut chunk = alloc::vec![0u8; fs::REMOTE_BUFFER as usize];
    loop {
        let n = file.read(&mut chunk).map_err(|e| format!("{path}: {}", e.text()))?;
        if n == 0 {
            return Ok(());
        }
        f(&chunk[..n])?;
    }
}

fn mode_string(kind: Kind, mode: u16) -> String {
    let mut s = String::new();
    s.push(match kind {
        Kind::Directory => 'd',
        Kind::Symlink => 'l',
        Kind::CharDevice => 'c',
        Kind::BlockDevice => 'b',
        Kind::Fifo => 'p',
        Kind::Socket => 's',
        _ => '-',
    });
    for shift in [6, 3, 0] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s.to_string()
}
