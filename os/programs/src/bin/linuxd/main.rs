//! linuxd: the Linux personality server (docs/linux.md).
//!
//! It loads static x86_64 Linux executables (non-PIE and static-PIE) from any mount of the
//! file-system service into new tasks, lays out their initial stack, and makes its own endpoint
//! both their personality (every `syscall` instruction becomes a call here, badged with the
//! process) and their fault supervisor. It then serves their system calls with Linux semantics
//! on Tutti's services: files through `fs`, fds 0-2 on the console service, memory as memory
//! objects committed on first touch and mirrored into linuxd for copying arguments in and out.
//! Clients (the shell's `linux` command) use the `svc::linux` protocol on the same endpoint.
//!
//! The logic that needs no system call (numbers, errno, structures, the initial stack, fd
//! tables, address-space bookkeeping) is the host-tested crate `lpx`.
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::{info, label, map, regs, rights, Sys};
use alloc::boxed::Box;
use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::rc::Rc;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use lpx::errno::*;
use lpx::fd::FdTable;
use lpx::mem::{Access, Chunk, Kind, Space, PAGE, PROT_EXEC, PROT_READ, PROT_WRITE};
use lpx::nr;
use lpx::structs::{self, FileStat};
use rt::ipc::{BufRange, Cap, Client, Payload, SharedBuffer};
use rt::sys::{self, Handle, Message, FOREVER_NS};
use svc::console::{Console, Request as ConsoleRequest, Response as ConsoleResponse};
use svc::fs::{self, Fs};
use svc::linux::{Request, Response, BUFFER_LEN, ENDED_BIT};

rt::entry!(main);

mod files;
mod loader;
mod memory;
mod pipes;
mod procfs;
mod procs;
mod signals;
mod sockets;
mod syscalls;
mod threads;
mod tty;

use files::{Fd, Open};

/// Processes with captured output at a time.
const CAPTURED_MAX: usize = 8;
use lpx::proc::Ended as Status;
use signals::Signals;

/// Where linuxd maps the mirrors of its processes' memory.
const MIRROR_BASE: u64 = 0x3000_0000_0000;
const MIRROR_END: u64 = 0x4000_0000_0000;
/// The process's stack: 8 MiB reserved below this, committed 64 KiB at a time.
const STACK_TOP: u64 = 0x7fff_ffff_f000;
const STACK_SIZE: u64 = 8 << 20;
const STACK_CHUNK: u64 = 64 << 10;
/// The `brk` heap: reserved after the program, committed 64 KiB at a time.
const BRK_MAX: u64 = 1 << 30;
const BRK_CHUNK: u64 = 64 << 10;
/// A program's zero-initialised data (`.bss`) is committed 64 KiB at a time.
const BSS_CHUNK: u64 = 64 << 10;
/// `mmap` places mappings top-down below this, above the floor.
const MMAP_TOP: u64 = 0x7f00_0000_0000;
const MMAP_FLOOR: u64 = 0x1000_0000_0000;
/// Mappings up to this size are one chunk; larger ones are committed in chunks of this.
const MMAP_CHUNK: u64 = 256 << 10;
/// Where a static-PIE program is loaded.
const PIE_BASE: u64 = 0x0555_5555_4000;
/// The largest program headers read.
const HEAD_MAX: usize = 64 << 10;
/// Quota each process's task gets from linuxd's: its thread, capabilities and the records and
/// page tables of its mappings. Its memory objects are linuxd's (charged to linuxd's quota), so
/// processes share linuxd's quota as they use it; linuxd keeps `LINUXD_RESERVE` of it for
/// itself (its heap, and the mirror mappings of its processes' memory): every commit checks
/// for its bytes plus the reserve, so the reserve covers what linuxd allocates between two
/// checks (a mirror mapping's records and page tables, a few heap blocks).
const PROCESS_TASK_QUOTA: u64 = 512 << 10;
const LINUXD_RESERVE: u64 = 192 << 10;
/// Priority of a process's thread.
const PROCESS_PRIORITY: u8 = 10;
/// At most this many bytes move in one read/write system call (a short count, as Linux may).
const IO_MAX: usize = 64 << 10;
/// Ended processes remembered for `Status`.
const ENDED_MAX: usize = 64;
/// Badges: a process's personality and supervisor capabilities.
const BADGE_SYSCALL: u64 = 1 << 48;
const BADGE_FAULT: u64 = 2 << 48;
const BADGE_KIND: u64 = 0xffff << 48;
const SIGSEGV: u32 = 11;
const SIGILL: u32 = 4;
const SIGFPE: u32 = 8;
const SIGTRAP: u32 = 5;
const SIGBUS: u32 = 7;
const AT_FDCWD: i64 = -100;
const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
/// The terminal's foreground process group (`ioctl`).
const TIOCGPGRP: u64 = 0x540f;
const TIOCSPGRP: u64 = 0x5410;

/// Linux `open` flags.
mod o {
    pub const ACCMODE: u64 = 3;
    pub const WRONLY: u64 = 1;
    pub const RDONLY: u64 = 0;
    pub const CREAT: u64 = 0o100;
    pub const EXCL: u64 = 0o200;
    pub const TRUNC: u64 = 0o1000;
    pub const APPEND: u64 = 0o2000;
    pub const NONBLOCK: u64 = 0o4000;
    pub const DIRECTORY: u64 = 0o200000;
    pub const NOFOLLOW: u64 = 0o400000;
    pub const CLOEXEC: u64 = 0o2000000;
}

fn main() -> i32 {
    rt::log::set_prefix("linuxd");
    match Server::start() {
        Ok(mut server) => server.run(),
        Err(e) => {
            rt::log::error!("cannot start: {e}");
            svc::exit(1)
        }
    }
}

/// Mirror addresses in linuxd, handed out once (the range is far larger than any use).
static MIRROR_NEXT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(MIRROR_BASE);

fn mirror_alloc(len: u64) -> Result<u64, Errno> {
    use core::sync::atomic::Ordering;
    // One unmapped page between mirrors.
    let at = MIRROR_NEXT.fetch_add(len + PAGE, Ordering::Relaxed);
    if at + len > MIRROR_END {
        return Err(ENOMEM);
    }
    Ok(at)
}

/// A Linux process: one task with its threads. The fields `tid`, `thread`, `clear_tid` and
/// `signals.thread` are the state of the thread being served, the others' are in `others`
/// (`threads.rs`).
struct Process {
    pid: u32,
    /// The thread being served: its id, its handle, its `clear_child_tid` word.
    tid: u32,
    thread: Handle,
    clear_tid: u64,
    /// The other threads.
    others: Vec<threads::Thread>,
    /// The parent process, 0 for one a client started (or an orphan).
    ppid: u32,
    /// Process group and session.
    pgid: u32,
    sid: u32,
    client: u64,
    exe: String,
    /// Its name (`prctl(PR_SET_NAME)`; the program's file name at exec).
    comm: [u8; 16],
    /// Its arguments, each followed by a NUL (`/proc/<pid>/cmdline`).
    cmdline: Vec<u8>,
    /// When it was made (`fork`, or started by a client): nanoseconds since boot.
    started: u64,
    task: Handle,
    space: Space,
    fds: FdTable<Fd>,
    cwd: String,
    brk_start: u64,
    brk: u64,
    umask: u32,
    signals: Signals,
    /// Whether it has called `execve` (a parent may no longer `setpgid` it).
    execed: bool,
    /// A `vfork` child sharing its parent's memory (`clone` with `CLONE_VM`): the parent's pid.
    /// Its thread runs in the parent's task (`task` is the parent's handle, never freed through
    /// the child) and it holds the parent's `space` until it execs or ends.
    lent_by: Option<u32>,
}

/// An ended child its parent has not waited for.
struct Zombie {
    ppid: u32,
    pgid: u32,
    status: Status,
}

/// A system call that waits: its detached reply, and what ends the wait.
struct Parked {
    pid: u32,
    tid: u32,
    reply: Handle,
    /// When it ends anyway (`u64::MAX`: never), answering `on_timeout`.
    deadline: u64,
    on_timeout: u64,
    /// Ranges of the process zeroed when the deadline passes (`select`'s sets).
    clear: Vec<(u64, usize)>,
    wait: Wait,
}

/// What a call returning `BLOCK` asks for its wait: a deadline, the answer then, and memory
/// to clear then.
#[derive(Default)]
struct Block {
    deadline: Option<(u64, u64)>,
    clear: Vec<(u64, usize)>,
    /// The wait, if not the call's usual one (`futex`).
    wait: Option<Wait>,
}

#[derive(Clone, Copy, Debug)]
enum Wait {
    /// Served again whenever something changed (pipes, children, signals).
    Retry { number: u64, args: [u64; 3] },
    /// `nanosleep`: only the deadline or a signal ends it.
    Sleep,
    /// `rt_sigsuspend`/`pause`: only a signal ends it; the mask to restore after the handler.
    Suspend { mask: u64 },
    /// `vfork`: the child's `execve` or end answers it with the child's pid.
    Vfork { child: u32 },
    /// `futex` wait: a wake of `addr` matching `bitset` (or the deadline, or a signal).
    Futex { addr: u64, bitset: u32 },
}

/// The error a system call's implementation returns to wait: the call is parked and served
/// again later (Linux's internal ERESTARTSYS, never seen by a process).
const BLOCK: Errno = Errno(512);

struct ClientState {
    notify: Handle,
    buffer: SharedBuffer,
}

struct Server {
    endpoint: Handle,
    fs: Option<&'static Fs>,
    console: Option<(Client<Console>, SharedBuffer)>,
    clients: BTreeMap<u64, ClientState>,
    procs: BTreeMap<u32, Process>,
    ended: BTreeMap<u32, (u64, Status)>,
    next_pid: u32,
    counts: BTreeMap<u64, u64>,
    rng: lpx::rng::Rng,
    /// Waiting system calls.
    parked: Vec<Parked>,
    /// The read ends of captured output (`SpawnCaptured`), by pid: the client and the pipe.
    captured: BTreeMap<u32, (u64, pipes::PipeEnd)>,
    /// What a call returning `BLOCK` asks for its wait (set by it).
    block: Block,
    /// The child a `vfork` returning `BLOCK` waits for (set by it).
    vfork_child: Option<u32>,
    /// Threads linuxd made in existing tasks (a process's threads, and `CLONE_VM` children
    /// running in their parent's task), whose messages carry the task's badge: thread number
    /// to process and thread id.
    thread_pids: BTreeMap<u32, (u32, u32)>,
    zombies: BTreeMap<u32, Zombie>,
    /// Console input and the terminal's foreground group (`tty.rs`).
    tty: tty::Tty,
    /// Nanoseconds since 1970 at boot (from the file system's clock), for CLOCK_REALTIME.
    realtime_base: u64,
    hwcap: u64,
}

/// Why a program was not started: an errno and the message for the client.
struct Refusal(Errno, String);

impl From<sys::Error> for Refusal {
    fn from(e: sys::Error) -> Self {
        let errno = match e {
            sys::Error::QuotaExceeded | sys::Error::OutOfMemory => ENOMEM,
            _ => EIO,
        };
        Refusal(errno, format!("system call failed: {e}"))
    }
}

fn fs_errno(e: fs::Error) -> Errno {
    Errno(e.errno())
}

/// A random seed: RDRAND when the CPU has it, else the time-stamp counter.
fn seed() -> u64 {
    let ecx = core::arch::x86_64::__cpuid(1).ecx;
    if ecx & (1 << 30) != 0 {
        let mut value = 0u64;
        for _ in 0..10 {
            // Safety: the CPU reported RDRAND support (CPUID.1:ECX bit 30).
            if unsafe { core::arch::x86_64::_rdrand64_step(&mut value) } == 1 {
                return value ^ rt::rdtsc();
            }
        }
    }
    rt::rdtsc().wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

impl Server {
    fn start() -> Result<Server, String> {
        let endpoint = sys::endpoint_create().map_err(|e| format!("endpoint: {e}"))?;
        let names = svc::names().map_err(|e| format!("name service: {e:?}"))?;
        let hwcap = core::arch::x86_64::__cpuid(1).edx as u64;
        let server = Server {
            endpoint,
            fs: None,
            console: None,
            clients: BTreeMap::new(),
            procs: BTreeMap::new(),
            ended: BTreeMap::new(),
            next_pid: 2,
            counts: BTreeMap::new(),
            rng: lpx::rng::Rng::new(seed()),
            parked: Vec::new(),
            captured: BTreeMap::new(),
            block: Block::default(),
            vfork_child: None,
            thread_pids: BTreeMap::new(),
            zombies: BTreeMap::new(),
            tty: tty::Tty::default(),
            realtime_base: 0,
            hwcap,
        };
        svc::register(&names, endpoint).map_err(|e| format!("cannot register as linux: {e:?}"))?;
        let _ = sys::cap_close(names.endpoint());
        rt::log::info!("serving");
        Ok(server.connected())
    }

    fn connected(mut self) -> Server {
        if let Some(fs) = self.fs() {
            if let Ok(stat) = fs.stat("/") {
                self.realtime_base = (stat.mtime * 1_000_000_000).saturating_sub(sys::time_now());
            }
        }
        self
    }

    fn fs(&mut self) -> Option<&'static Fs> {
        if self.fs.is_none() {
            match Fs::connect() {
                Ok(fs) => self.fs = Some(Box::leak(Box::new(fs))),
                Err(e) => rt::log::warn!("file system: {}", e.text()),
            }
        }
        self.fs
    }

    fn run(&mut self) -> i32 {
        // The answer to the system call or fault just served, sent with the next receive
        // (`ReplyRecv`: one kernel entry for both).
        let mut answer: Option<Message> = None;
        loop {
            let timeout = match self.parked.iter().map(|p| p.deadline).min() {
                None | Some(u64::MAX) => FOREVER_NS,
                Some(next) => next.saturating_sub(sys::time_now()).max(1),
            };
            let received = match answer.take() {
                Some(m) => sys::syscall(Sys::ReplyRecv, self.endpoint, m.args(timeout)),
                None => sys::syscall(Sys::Recv, self.endpoint, [0, 0, 0, 0, 0, 0, timeout]),
            };
            if !self.parked.is_empty() {
                self.expire_parked();
            }
            let r = match received {
                Ok(r) => r,
                Err(sys::Error::TimedOut) => continue,
                Err(e) => {
                    rt::log::error!("receive failed: {e}");
                    return svc::exit(1);
                }
            };
            let info_word = r[0];
            let badge = r[6];
            let message = Message {
                label: info::label(info_word),
                words: [r[1], r[2], r[3], r[4]],
                cap: (info_word & info::CAP != 0).then_some(r[5] as Handle),
            };
            match message.label {
                label::SYSCALL if badge & BADGE_KIND == BADGE_SYSCALL => {
                    let (pid, tid) = self.thread_ids(info::thread(info_word), badge as u32);
                    if let Some(rax) = self.syscall(pid, tid, message.words) {
                        answer = Some(Message::new(0, [rax, 0, 0, 0]));
                    }
                }
                // The console reader left a line (the bound notification; no one to answer).
                label::NOTIFY => {
                    // Network progress needs nothing here: the parked calls are tried again below.
                    if message.words[0] & tty::INPUT_BIT != 0 {
                        self.console_input();
                    }
                }
                label::FAULT if badge & BADGE_KIND == BADGE_FAULT => {
                    let (pid, tid) = self.thread_ids(info::thread(info_word), badge as u32);
                    if self.fault(pid, tid, message.words) {
                        answer = Some(Message::default());
                    }
                }
                _ => {
                    let reply = match Request::decode(&message) {
                        Ok(request) => self.request(badge, request),
                        Err(e) => {
                            if let Some(cap) = message.cap {
                                let _ = sys::cap_close(cap);
                            }
                            rt::ipc::rejection(message.label, e)
                        }
                    };
                    let _ = sys::reply(&reply);
                    if let Some(cap) = reply.cap {
                        let _ = sys::cap_close(cap);
                    }
                }
            }
            self.retry_parked();
            self.update_console_reader();
        }
    }

    // ---- Waiting system calls ----

    /// Parks the system call of thread `tid` being served (its implementation returned
    /// `BLOCK`).
    fn park(&mut self, pid: u32, tid: u32, wait: Wait) {
        let block = core::mem::take(&mut self.block);
        let (deadline, on_timeout) = block.deadline.unwrap_or((u64::MAX, 0));
        match sys::reply_detach() {
            Ok(reply) => self.parked.push(Parked { pid, tid, reply, deadline, on_timeout, clear: block.clear, wait }),
            Err(e) => {
                // Without a reply capability the call cannot wait: it fails.
                rt::log::warn!("pid {pid}: cannot wait ({e})");
                let _ = sys::reply(&Message::new(0, [ENOMEM.to_rax(), 0, 0, 0]));
            }
        }
    }

    /// Answers a parked call with `rax` (after delivering pending signals).
    fn finish(&mut self, parked: Parked, rax: u64) {
        match self.on_return(parked.pid, parked.tid, rax) {
            Some(rax) => {
                let _ = sys::reply_with(parked.reply, &Message::new(0, [rax, 0, 0, 0]));
            }
            None => {
                let _ = sys::cap_close(parked.reply);
            }
        }
    }

    /// Serves the parked calls again until none can go on.
    fn retry_parked(&mut self) {
        let mut progress = true;
        while progress && !self.parked.is_empty() {
            progress = false;
            for parked in core::mem::take(&mut self.parked) {
                if !self.procs.get_mut(&parked.pid).is_some_and(|p| p.switch_to(parked.tid)) {
                    let _ = sys::cap_close(parked.reply);
                    continue;
                }
                let Wait::Retry { number, args } = parked.wait else {
                    self.parked.push(parked);
                    continue;
                };
                self.block = Block::default();
                match self.dispatch(parked.pid, number, args) {
                    Err(BLOCK) => self.parked.push(parked),
                    Ok(Some(rax)) => {
                        progress = true;
                        self.finish(parked, rax);
                    }
                    Ok(None) => {
                        progress = true;
                        let _ = sys::cap_close(parked.reply);
                    }
                    Err(e) => {
                        progress = true;
                        self.finish(parked, e.to_rax());
                    }
                }
            }
        }
    }

    /// Answers the parked calls whose deadline passed.
    fn expire_parked(&mut self) {
        let now = sys::time_now();
        if !self.parked.iter().any(|p| p.deadline <= now) {
            return;
        }
        for parked in core::mem::take(&mut self.parked) {
            if parked.deadline <= now {
                let rax = parked.on_timeout;
                if let Some(p) = self.procs.get_mut(&parked.pid) {
                    for &(at, len) in &parked.clear {
                        let _ = p.write_mem(at, &alloc::vec![0u8; len]);
                    }
                }
                self.finish(parked, rax);
            } else {
                self.parked.push(parked);
            }
        }
    }

    // ---- The client protocol ----

    fn request(&mut self, badge: u64, request: Request) -> Message {
        rt::log::debug!("request {request:?} from {badge:#x}");
        let response = match request {
            Request::Open { notify } => self.open_client(badge, notify.0),
            Request::Spawn { range, argc, envc, input } => {
                let stdio = if input { loader::Stdio::Console } else { loader::Stdio::Output };
                self.spawn_request(badge, range, argc, envc, stdio)
            }
            Request::SpawnCaptured { range, argc, envc } => {
                if self.captured.len() >= CAPTURED_MAX {
                    let message = format!("{CAPTURED_MAX} programs with captured output already");
                    self.refuse(badge, &message, EAGAIN)
                } else {
                    self.spawn_request(badge, range, argc, envc, loader::Stdio::Captured)
                }
            }
            Request::Output { pid } => self.output(badge, pid),
            Request::Status { pid } => match (self.procs.get(&pid), self.ended.get(&pid)) {
                (Some(p), _) if p.client == badge => Response::Running,
                (None, Some((client, status))) if *client == badge => match status {
                    Status::Exited(code) => Response::Exited { code: *code },
                    Status::Killed(signal) => Response::Killed { signal: *signal },
                },
                _ => Response::NoSuchProcess,
            },
            Request::Counts { index } => match self.counts.iter().nth(index as usize) {
                Some((nr, count)) => Response::Count { nr: *nr as u32, count: *count },
                None => Response::NoMore,
            },
        };
        response.encode()
    }

    fn open_client(&mut self, badge: u64, notify: Handle) -> Response {
        if let Some(old) = self.clients.get_mut(&badge) {
            let _ = sys::cap_close(old.notify);
            old.notify = notify;
            return match old.buffer.share(rights::READ | rights::WRITE | rights::DUPLICATE) {
                Ok(cap) => Response::Opened { buffer: Cap(cap), len: BUFFER_LEN },
                Err(_) => Response::BadRequest,
            };
        }
        let Ok(buffer) = SharedBuffer::create(BUFFER_LEN as usize) else {
            let _ = sys::cap_close(notify);
            return Response::BadRequest;
        };
        let Ok(cap) = buffer.share(rights::READ | rights::WRITE | rights::DUPLICATE) else {
            let _ = sys::cap_close(notify);
            return Response::BadRequest;
        };
        self.clients.insert(badge, ClientState { notify, buffer });
        Response::Opened { buffer: Cap(cap), len: BUFFER_LEN }
    }

    /// What a captured process wrote so far (non-blocking); the pipe is forgotten at its end.
    fn output(&mut self, badge: u64, pid: u32) -> Response {
        let Some(client) = self.clients.get(&badge) else { return Response::BadRequest };
        let Some((owner, read)) = self.captured.get(&pid) else { return Response::NoSuchProcess };
        if *owner != badge {
            return Response::NoSuchProcess;
        }
        let (bytes, done) = match read.read(BUFFER_LEN as usize) {
            Ok(bytes) if bytes.is_empty() => (bytes, true),
            Ok(bytes) => (bytes, false),
            Err(EAGAIN) => (Vec::new(), false),
            Err(_) => (Vec::new(), true),
        };
        if client.buffer.write(0, &bytes).is_err() {
            return Response::BadRequest;
        }
        if done {
            self.captured.remove(&pid);
        }
        Response::Output { len: bytes.len() as u32, done }
    }

    fn refuse(&self, badge: u64, message: &str, errno: Errno) -> Response {
        let Some(client) = self.clients.get(&badge) else { return Response::BadRequest };
        let bytes = &message.as_bytes()[..message.len().min(BUFFER_LEN as usize)];
        let _ = client.buffer.write(0, bytes);
        Response::Refused { errno: errno.0 as u32, len: bytes.len() as u32 }
    }

    fn spawn_request(&mut self, badge: u64, range: BufRange, argc: u32, envc: u32, stdio: loader::Stdio) -> Response {
        let Some(client) = self.clients.get(&badge) else { return Response::BadRequest };
        let Ok((_, len)) = client.buffer.check(range) else { return Response::BadRequest };
        let mut bytes = alloc::vec![0u8; len];
        if client.buffer.read(range.offset, &mut bytes).is_err() {
            return Response::BadRequest;
        }
        let strings: Vec<&[u8]> = bytes.split(|b| *b == 0).collect();
        let needed = 2 + argc as usize + envc as usize;
        // The last piece after the final NUL is empty.
        if strings.len() < needed + 1 {
            return Response::BadRequest;
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let path = text(strings[0]);
        let cwd = text(strings[1]);
        let argv: Vec<&[u8]> = strings[2..2 + argc as usize].to_vec();
        let envp: Vec<&[u8]> = strings[2 + argc as usize..needed].to_vec();
        match self.spawn(badge, &path, &cwd, &argv, &envp, stdio) {
            Ok(pid) => {
                if stdio == loader::Stdio::Console {
                    self.tty.started_group = pid;
                }
                Response::Spawned { pid }
            }
            Err(Refusal(errno, message)) => {
                let message = format!("{path}: {} ({}): {message}", errno_text(errno), errno.name());
                rt::log::debug!("{message}");
                let client = self.clients.get(&badge).expect("checked above");
                let bytes = &message.as_bytes()[..message.len().min(BUFFER_LEN as usize)];
                let _ = client.buffer.write(0, bytes);
                Response::Refused { errno: errno.0 as u32, len: bytes.len() as u32 }
            }
        }
    }

    /// Ends process `pid` with `status`: its task and memory go, its waiting calls are
    /// dropped, its children are orphaned, and its parent gets a zombie and `SIGCHLD` (or, for
    /// a process a client started, the client is told).
    fn end(&mut self, pid: u32, status: Status) {
        let Some(mut p) = self.procs.remove(&pid) else { return };
        let (lent_by, task, thread) = (p.lent_by.take(), p.task, p.thread);
        let space = core::mem::replace(&mut p.space, Space::new());
        self.drop_image(pid, lent_by, task, thread, space);
        p.drop_other_threads();
        self.thread_pids.retain(|_, (owner, _)| *owner != pid);
        p.fds.clear();
        // Children running in its task have lost their thread with it.
        let borrowers: Vec<u32> = self.procs.values().filter(|c| c.lent_by == Some(pid)).map(|c| c.pid).collect();
        for child in borrowers {
            self.end(child, Status::Killed(lpx::proc::SIGKILL));
        }
        self.parked.retain(|parked| {
            if parked.pid == pid {
                let _ = sys::cap_close(parked.reply);
            }
            parked.pid != pid
        });
        for child in self.procs.values_mut().filter(|c| c.ppid == pid) {
            child.ppid = 0;
        }
        self.zombies.retain(|_, z| z.ppid != pid);
        self.release_vfork(pid);
        let parent = self.procs.get(&p.ppid).map(|parent| parent.signals.action(lpx::proc::SIGCHLD));
        match parent {
            Some(action) => {
                // A parent ignoring SIGCHLD (or with SA_NOCLDWAIT) leaves no zombie.
                if action.handler != lpx::proc::SIG_IGN && action.flags & lpx::proc::SA_NOCLDWAIT == 0 {
                    self.zombies.insert(pid, Zombie { ppid: p.ppid, pgid: p.pgid, status });
                }
                let (code, child_status) = status.child_info();
                let info = lpx::proc::SigInfo { signo: lpx::proc::SIGCHLD, code, pid, status: child_status, addr: 0 };
                self.send_signal(p.ppid, info);
            }
            None => {
                if let Some(c) = self.clients.get(&p.client) {
                    let _ = sys::signal(c.notify, ENDED_BIT);
                }
                self.ended.insert(pid, (p.client, status));
                while self.ended.len() > ENDED_MAX {
                    self.ended.pop_first();
                }
            }
        }
    }

    // ---- Faults ----

    /// A fault of process `pid`: commits memory and resumes (true), runs its signal handler
    /// (true), or kills it.
    fn fault(&mut self, pid: u32, tid: u32, [vector, code, address, rip]: [u64; 4]) -> bool {
        let Some(p) = self.procs.get_mut(&pid).and_then(|p| p.switch_to(tid).then_some(p)) else { return false };
        let mut why = "";
        // A write to a copy-on-write chunk: the process gets its own copy.
        if vector == 14 && code & 2 != 0 {
            match p.break_cow(address) {
                Ok(true) => return true,
                Ok(false) => {}
                Err(_) => why = " (out of memory: linuxd's quota is exhausted)",
            }
        }
        if vector == 14 && why.is_empty() {
            if let Access::Commit { start, len, prot } = p.space.access(address, code & 2 != 0) {
                match p.commit(start, len, prot) {
                    Ok(_) => return true,
                    Err(_) => why = " (out of memory: linuxd's quota is exhausted)",
                }
            }
        }
        let signal = match vector {
            0 | 16 | 19 => SIGFPE,
            1 | 3 => SIGTRAP,
            6 => SIGILL,
            17 => SIGBUS,
            _ => SIGSEGV,
        };
        let info = lpx::proc::SigInfo { signo: signal, code: lpx::proc::SEGV_MAPERR, pid: 0, status: 0, addr: address };
        if why.is_empty() && self.deliver_fault(pid, info) {
            return true;
        }
        let Some(p) = self.procs.get(&pid) else { return false };
        rt::log::warn!(
            "pid {pid} ({}) killed by {}: fault vector {vector} at address {address:#x} (rip {rip:#x}, error code {code:#x}){why}",
            p.exe,
            signal_name(signal)
        );
        self.end(pid, Status::Killed(signal));
        false
    }
}

fn connect_console() -> Option<(Client<Console>, SharedBuffer)> {
    let mut names = svc::names().ok()?;
    let endpoint = svc::lookup(&mut names, "console", 2_000_000_000).ok();
    let _ = sys::cap_close(names.endpoint());
    let console = Client::<Console>::new(endpoint?);
    let ConsoleResponse::Buffer { memory, .. } =
        console.call(&ConsoleRequest::OpenBuffer { len: 4096 }, FOREVER_NS).ok()?
    else {
        return None;
    };
    let buffer = SharedBuffer::map(memory.0).ok()?;
    Some((console, buffer))
}

fn need(fs: Option<&'static Fs>) -> Result<&'static Fs, Errno> {
    fs.ok_or(EIO)
}

/// Reads exactly `out.len()` bytes at `offset` (fewer only at the end of the file: the rest
/// stays zero).
fn read_full(file: &mut fs::File<'static>, offset: u64, out: &mut [u8]) -> Result<(), fs::Error> {
    let mut done = 0;
    while done < out.len() {
        let n = file.read_at(offset + done as u64, &mut out[done..])?;
        if n == 0 {
            break;
        }
        done += n;
    }
    Ok(())
}

/// `struct rlimit` of `resource`: the stack 8 MiB, descriptors `MAX_FDS`, the rest unlimited.
fn rlimit(resource: u64) -> [u8; 16] {
    const RLIMIT_STACK: u64 = 3;
    const RLIMIT_NOFILE: u64 = 7;
    match resource {
        RLIMIT_STACK => structs::two_words(STACK_SIZE, u64::MAX),
        RLIMIT_NOFILE => structs::two_words(lpx::fd::MAX_FDS as u64, lpx::fd::MAX_FDS as u64),
        _ => structs::two_words(u64::MAX, u64::MAX),
    }
}

/// Nanoseconds on clock `id`.
fn clock(id: u64, realtime_base: u64) -> Result<u64, Errno> {
    let now = sys::time_now();
    match id {
        0 | 5 | 11 => Ok(realtime_base + now),
        1..=4 | 6 | 7 => Ok(now),
        _ => Err(EINVAL),
    }
}

fn signal_name(signal: u32) -> &'static str {
    match signal {
        4 => "SIGILL",
        5 => "SIGTRAP",
        6 => "SIGABRT",
        7 => "SIGBUS",
        8 => "SIGFPE",
        9 => "SIGKILL",
        11 => "SIGSEGV",
        15 => "SIGTERM",
        _ => "a signal",
    }
}

fn errno_text(e: Errno) -> &'static str {
    match e {
        ENOEXEC => "exec format error",
        ENOENT => "no such file or directory",
        EACCES => "permission denied",
        ENOMEM => "out of memory",
        E2BIG => "argument list too long",
        EISDIR => "is a directory",
        ENOTDIR => "not a directory",
        _ => "cannot execute",
    }
}

fn stat_of(s: &fs::Stat) -> FileStat {
    FileStat {
        dev: s.mount as u64 + 1,
        ino: s.ino,
        mode: s.st_mode(),
        nlink: s.nlink,
        uid: s.uid,
        gid: s.gid,
        rdev: 0,
        size: s.size,
        blksize: 4096,
        blocks: s.blocks,
        atime: s.atime,
        mtime: s.mtime,
        ctime: s.ctime,
    }
}
