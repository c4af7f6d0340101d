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
/// `mmap` places mappings top-down below this, above the floor.
const MMAP_TOP: u64 = 0x7f00_0000_0000;
const MMAP_FLOOR: u64 = 0x1000_0000_0000;
/// Mappings up to this size are one chunk; larger ones are committed in chunks of this.
const MMAP_CHUNK: u64 = 256 << 10;
/// Where a static-PIE program is loaded.
const PIE_BASE: u64 = 0x0555_5555_4000;
/// The largest program headers read.
const HEAD_MAX: usize = 64 << 10;
/// Bytes of quota each process gets (from linuxd's own) at most, and what linuxd keeps for
/// itself (its heap, and the mirror mappings of its processes' memory).
const PROCESS_QUOTA: u64 = 8 << 20;
const LINUXD_RESERVE: u64 = 640 << 10;
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

/// An open file description.
enum Open {
    /// The console service (fds 0-2): writes go to it, reads see the end of input.
    Console {
        flags: u64,
    },
    /// `/dev/null`.
    Null {
        flags: u64,
    },
    File(FileDesc),
}

struct FileDesc {
    file: fs::File<'static>,
    path: String,
    flags: u64,
    directory: bool,
    /// `getdents64` state: entries not yet returned, where the server continues, the offset.
    pending: VecDeque<(u64, u8, Vec<u8>)>,
    cookie: u64,
    started: bool,
    done: bool,
    offset: u64,
}

type Fd = Rc<RefCell<Open>>;

/// How a process is, or ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Status {
    Exited(i32),
    Killed(u32),
}

/// A Linux process: one task with one thread.
struct Process {
    pid: u32,
    client: u64,
    exe: String,
    task: Handle,
    thread: Handle,
    space: Space,
    fds: FdTable<Fd>,
    cwd: String,
    brk_start: u64,
    brk: u64,
    umask: u32,
}

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
    /// Detached replies of sleeping processes: (deadline ns, reply capability, pid).
    sleepers: Vec<(u64, Handle, u32)>,
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
            sleepers: Vec::new(),
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
        loop {
            let now = sys::time_now();
            let timeout = self.sleepers.iter().map(|s| s.0).min().map_or(FOREVER_NS, |d| d.saturating_sub(now).max(1));
            let received = sys::syscall(Sys::Recv, self.endpoint, [0, 0, 0, 0, 0, 0, timeout]);
            self.wake_sleepers();
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
                    let pid = badge as u32;
                    if let Some(rax) = self.syscall(pid, message.words) {
                        let _ = sys::reply(&Message::new(0, [rax, 0, 0, 0]));
                    }
                }
                label::FAULT if badge & BADGE_KIND == BADGE_FAULT => {
                    if self.fault(badge as u32, message.words) {
                        let _ = sys::reply(&Message::default());
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
        }
    }

    fn wake_sleepers(&mut self) {
        let now = sys::time_now();
        self.sleepers.retain(|&(deadline, reply, _)| {
            if deadline <= now {
                let _ = sys::reply_with(reply, &Message::new(0, [0, 0, 0, 0]));
                false
            } else {
                true
            }
        });
    }

    // ---- The client protocol ----

    fn request(&mut self, badge: u64, request: Request) -> Message {
        rt::log::debug!("request {request:?} from {badge:#x}");
        let response = match request {
            Request::Open { notify } => self.open_client(badge, notify.0),
            Request::Spawn { range, argc, envc } => self.spawn_request(badge, range, argc, envc),
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

    fn spawn_request(&mut self, badge: u64, range: BufRange, argc: u32, envc: u32) -> Response {
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
        match self.spawn(badge, &path, &cwd, &argv, &envp) {
            Ok(pid) => Response::Spawned { pid },
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

    // ---- The loader ----

    fn spawn(&mut self, client: u64, path: &str, cwd: &str, argv: &[&[u8]], envp: &[&[u8]]) -> Result<u32, Refusal> {
        let fs = self.fs().ok_or_else(|| Refusal(EIO, String::from("the file-system service is unavailable")))?;
        let cwd = if cwd.starts_with('/') { lpx::path::normalise(cwd) } else { String::from("/") };
        let path = lpx::path::join(&cwd, path);
        let mut file = fs.open(&path, fs::flags::READ, 0).map_err(|e| Refusal(fs_errno(e), String::from(e.text())))?;
        if file.kind() != fs::Kind::Regular {
            return Err(Refusal(EACCES, String::from("not a regular file")));
        }
        let size = file.size_at_open();
        let mut head = alloc::vec![0u8; (size as usize).min(HEAD_MAX)];
        read_full(&mut file, 0, &mut head).map_err(|e| Refusal(fs_errno(e), String::from(e.text())))?;
        let elf = match elf::Elf::parse_with_len(&head, size) {
            Ok(elf) => elf,
            Err(elf::ElfError::Dynamic) => {
                let interp = elf::interpreter(&head).map(|p| String::from_utf8_lossy(p).into_owned());
                let interp = interp.unwrap_or_else(|| String::from("(unreadable)"));
                let present = fs.stat(&interp).is_ok();
                let why = if present {
                    format!("a dynamically linked program (interpreter {interp}); only static programs run")
                } else {
                    format!(
                        "a dynamically linked program whose interpreter {interp} is missing; only static programs run"
                    )
                };
                return Err(Refusal(ENOEXEC, why));
            }
            Err(e) => return Err(Refusal(ENOEXEC, format!("{e}"))),
        };
        let bias = if elf.position_independent { PIE_BASE } else { 0 };
        let mut image_end = 0u64;
        for s in elf.segments() {
            let end = s.vaddr.checked_add(s.mem_len).and_then(|e| e.checked_add(bias));
            match end {
                Some(e) if e <= MMAP_FLOOR => image_end = image_end.max(e),
                _ => return Err(Refusal(ENOEXEC, String::from("a segment lies outside the program area"))),
            }
        }
        let name = path.rsplit('/').next().unwrap_or("linux");
        let name = &name[..name.len().min(abi::syscall::TASK_NAME_MAX)];
        let me = sys::task_info(0)?;
        let quota = PROCESS_QUOTA.min(me.quota.saturating_sub(me.used).saturating_sub(LINUXD_RESERVE));
        if quota < (256 << 10) {
            return Err(Refusal(ENOMEM, String::from("linuxd's quota is exhausted")));
        }
        let task = sys::task_create(quota, 64, PROCESS_PRIORITY, name)?;
        let pid = self.next_pid;
        let mut process = Process {
            pid,
            client,
            exe: path.clone(),
            task,
            thread: 0,
            space: Space::new(),
            fds: FdTable::new(),
            cwd,
            brk_start: 0,
            brk: 0,
            umask: 0o022,
        };
        match self.load(&mut process, &mut file, &elf, bias, image_end, argv, envp) {
            Ok(()) => {
                self.next_pid += 1;
                rt::log::debug!("pid {pid}: {path} started");
                self.procs.insert(pid, process);
                Ok(pid)
            }
            Err(e) => {
                process.teardown();
                Err(e)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn load(
        &mut self,
        p: &mut Process,
        file: &mut fs::File<'static>,
        elf: &elf::Elf,
        bias: u64,
        image_end: u64,
        argv: &[&[u8]],
        envp: &[&[u8]],
    ) -> Result<(), Refusal> {
        // Segments sharing pages form one region with the union of their permissions.
        let mut groups: Vec<(u64, u64, u32, Vec<elf::Segment>)> = Vec::new();
        for s in elf.segments() {
            let (start, end) = s.pages();
            match groups.last_mut() {
                Some(g) if start + bias < g.1 => {
                    g.1 = g.1.max(end + bias);
                    g.2 |= s.flags;
                    g.3.push(s);
                }
                _ => groups.push((start + bias, end + bias, s.flags, alloc::vec![s])),
            }
        }
        for (start, end, flags, segments) in &groups {
            let mut prot = 0;
            if flags & elf::PF_R != 0 {
                prot |= PROT_READ;
            }
            if flags & elf::PF_W != 0 {
                prot |= PROT_WRITE | PROT_READ;
            }
            if flags & elf::PF_X != 0 {
                prot |= PROT_EXEC | PROT_READ;
            }
            p.space
                .add(*start, end - start, prot, Kind::Image, 0)
                .map_err(|_| Refusal(ENOEXEC, String::from("overlapping or misplaced segments")))?;
            let chunk = p.commit(*start, end - start, prot).map_err(|e| Refusal(e, String::from("out of memory")))?;
            for s in segments {
                let at = chunk.mirror + (s.vaddr + bias - start);
                // Safety: the mirror of this chunk is mapped read-write here for `end - start`
                // bytes, and the segment lies inside the group's pages (checked by `elf`).
                let dest = unsafe { core::slice::from_raw_parts_mut(at as *mut u8, s.file_len as usize) };
                read_full(file, s.offset, dest).map_err(|e| Refusal(fs_errno(e), String::from(e.text())))?;
            }
        }
        // The brk heap after the program, the stack at the top.
        p.brk_start = image_end.next_multiple_of(PAGE);
        p.brk = p.brk_start;
        p.space
            .add(p.brk_start, BRK_MAX, PROT_READ | PROT_WRITE, Kind::Brk, BRK_CHUNK)
            .map_err(|_| Refusal(ENOEXEC, String::from("no room for the heap")))?;
        p.space.set_limit(p.brk_start, p.brk_start);
        p.space
            .add(STACK_TOP - STACK_SIZE, STACK_SIZE, PROT_READ | PROT_WRITE, Kind::Stack, STACK_CHUNK)
            .map_err(|_| Refusal(ENOEXEC, String::from("no room for the stack")))?;
        let mut random = [0u8; 16];
        self.rng.stir(rt::rdtsc());
        self.rng.fill(&mut random);
        let (_, phnum) = elf.program_headers();
        let phdr = elf.phdr_vaddr().map_or(0, |v| v + bias);
        let entry = elf.entry + bias;
        let auxv = [
            (lpx::stack::AT_PHDR, phdr),
            (lpx::stack::AT_PHENT, 56),
            (lpx::stack::AT_PHNUM, phnum as u64),
            (lpx::stack::AT_PAGESZ, PAGE),
            (lpx::stack::AT_BASE, 0),
            (lpx::stack::AT_FLAGS, 0),
            (lpx::stack::AT_ENTRY, entry),
            (lpx::stack::AT_UID, 0),
            (lpx::stack::AT_EUID, 0),
            (lpx::stack::AT_GID, 0),
            (lpx::stack::AT_EGID, 0),
            (lpx::stack::AT_SECURE, 0),
            (lpx::stack::AT_CLKTCK, 100),
            (lpx::stack::AT_HWCAP, self.hwcap),
            (lpx::stack::AT_HWCAP2, 0),
        ];
        let spec =
            lpx::stack::StackSpec { argv, envp, execfn: p.exe.as_bytes(), platform: b"x86_64", random, auxv: &auxv };
        let stack = lpx::stack::build(STACK_TOP, STACK_SIZE / 4, &spec)
            .map_err(|_| Refusal(E2BIG, String::from("arguments and environment too long")))?;
        p.write_mem(stack.base, &stack.bytes).map_err(|e| Refusal(e, String::from("cannot write the stack")))?;
        // Standard input, output and error: the console.
        for _ in 0..3 {
            let console = Rc::new(RefCell::new(Open::Console { flags: 2 }));
            p.fds.insert(console, false).map_err(|e| Refusal(e, String::from("fds")))?;
        }
        let personality = sys::cap_duplicate(self.endpoint, rights::SEND, BADGE_SYSCALL | p.pid as u64)?;
        let set = sys::task_set_personality(p.task, personality);
        let _ = sys::cap_close(personality);
        set?;
        let supervisor = sys::cap_duplicate(self.endpoint, rights::SEND, BADGE_FAULT | p.pid as u64)?;
        let set = sys::task_set_supervisor(p.task, supervisor);
        let _ = sys::cap_close(supervisor);
        set?;
        p.thread = sys::thread_create_in(p.task, entry, stack.rsp, PROCESS_PRIORITY, 0)?;
        Ok(())
    }

    /// Ends process `pid` with `status`: its task goes, its client is told.
    fn end(&mut self, pid: u32, status: Status) {
        let Some(mut p) = self.procs.remove(&pid) else { return };
        p.teardown();
        self.sleepers.retain(|&(_, reply, sleeper)| {
            if sleeper == pid {
                let _ = sys::cap_close(reply);
            }
            sleeper != pid
        });
        if let Some(c) = self.clients.get(&p.client) {
            let _ = sys::signal(c.notify, ENDED_BIT);
        }
        self.ended.insert(pid, (p.client, status));
        while self.ended.len() > ENDED_MAX {
            self.ended.pop_first();
        }
    }

    // ---- Faults ----

    /// A fault of process `pid`: commits memory and resumes (true), or kills it.
    fn fault(&mut self, pid: u32, [vector, code, address, rip]: [u64; 4]) -> bool {
        let Some(p) = self.procs.get_mut(&pid) else { return false };
        let mut why = "";
        if vector == 14 {
            if let Access::Commit { start, len, prot } = p.space.access(address, code & 2 != 0) {
                match p.commit(start, len, prot) {
                    Ok(_) => return true,
                    Err(_) => {
                        let used = sys::task_info(p.task).map(|i| (i.used, i.quota)).unwrap_or_default();
                        rt::log::warn!("pid {pid}: quota {} of {} bytes used", used.0, used.1);
                        why = " (out of memory: the process's quota is exhausted)"
                    }
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
        rt::log::warn!(
            "pid {pid} ({}) killed by {}: fault vector {vector} at address {address:#x} (rip {rip:#x}, error code {code:#x}){why}",
            p.exe,
            signal_name(signal)
        );
        self.end(pid, Status::Killed(signal));
        false
    }

    // ---- System calls ----

    /// Serves a system call of `pid`; the value for its rax, or `None` to not answer (the
    /// process ended, or the answer comes later).
    fn syscall(&mut self, pid: u32, [number, a0, a1, a2]: [u64; 4]) -> Option<u64> {
        if !self.procs.contains_key(&pid) {
            return None;
        }
        let result = self.dispatch(pid, number, [a0, a1, a2]);
        match result {
            Ok(Some(v)) => Some(v),
            Ok(None) => None,
            Err(e) => {
                if e == ENOSYS {
                    *self.counts.entry(number).or_insert(0) += 1;
                }
                Some(e.to_rax())
            }
        }
    }

    fn dispatch(&mut self, pid: u32, number: u64, [a0, a1, a2]: [u64; 3]) -> Result<Option<u64>, Errno> {
        // The fourth to sixth arguments (r10, r8, r9) come from the thread's registers.
        let more = |p: &Process| -> Result<[u64; 3], Errno> {
            let r = sys::thread_regs(p.thread).map_err(|_| EFAULT)?;
            Ok([r[regs::R10], r[regs::R8], r[regs::R9]])
        };
        let fs = self.fs;
        let realtime_base = self.realtime_base;
        let Some(p) = self.procs.get_mut(&pid) else { return Ok(None) };
        let ok = |v: u64| Ok(Some(v));
        match number {
            nr::EXIT | nr::EXIT_GROUP => {
                self.end(pid, Status::Exited(a0 as u8 as i32));
                Ok(None)
            }
            nr::READ => ok(p.read(a0 as i32 as i64, a1, a2 as usize, None)? as u64),
            nr::WRITE => {
                let (data, fd) = (p.read_user(a1, a2 as usize)?, a0 as i32 as i64);
                let n = self.write_fd(pid, fd, &data, None)?;
                ok(n as u64)
            }
            nr::PREAD64 => {
                let [off, ..] = more(p)?;
                ok(p.read(a0 as i32 as i64, a1, a2 as usize, Some(off))? as u64)
            }
            nr::PWRITE64 => {
                let [off, ..] = more(p)?;
                let data = p.read_user(a1, a2 as usize)?;
                ok(self.write_fd(pid, a0 as i32 as i64, &data, Some(off))? as u64)
            }
            nr::READV => {
                let iov = p.iovecs(a1, a2)?;
                let total: usize = iov.iter().map(|v| v.1 as usize).sum::<usize>().min(IO_MAX);
                for (base, len) in &iov {
                    p.check(*base, *len, true)?;
                }
                let data = p.read_fd(a0 as i32 as i64, total, None)?;
                let mut at = 0;
                for (base, len) in iov {
                    let n = (len as usize).min(data.len() - at);
                    p.write_mem(base, &data[at..at + n])?;
                    at += n;
                    if at == data.len() {
                        break;
                    }
                }
                ok(data.len() as u64)
            }
            nr::WRITEV => {
                let iov = p.iovecs(a1, a2)?;
                let mut data = Vec::new();
                for (base, len) in iov {
                    let room = IO_MAX.saturating_sub(data.len());
                    data.extend_from_slice(&p.read_user(base, (len as usize).min(room))?);
                }
                ok(self.write_fd(pid, a0 as i32 as i64, &data, None)? as u64)
            }
            nr::OPEN => ok(p.open(fs, AT_FDCWD, a0, a1, a2 as u32)? as u64),
            nr::OPENAT => {
                let [mode, ..] = more(p)?;
                ok(p.open(fs, a0 as i32 as i64, a1, a2, mode as u32)? as u64)
            }
            nr::CREAT => ok(p.open(fs, AT_FDCWD, a0, o::CREAT | o::WRONLY | o::TRUNC, a1 as u32)? as u64),
            nr::CLOSE => {
                p.fds.remove(a0 as i32 as i64)?;
                ok(0)
            }
            nr::LSEEK => ok(p.lseek(a0 as i32 as i64, a1 as i64, a2)?),
            nr::FSTAT => {
                let st = p.fstat(a0 as i32 as i64)?;
                p.write_mem(a1, &structs::stat(&st))?;
                ok(0)
            }
            nr::STAT | nr::LSTAT => {
                let path = p.path_arg(AT_FDCWD, a0)?;
                let st = p.stat_path(fs, &path, number == nr::STAT)?;
                p.write_mem(a1, &structs::stat(&st))?;
                ok(0)
            }
            nr::NEWFSTATAT => {
                let [flags, ..] = more(p)?;
                let st = p.stat_at(fs, a0 as i32 as i64, a1, flags)?;
                p.write_mem(a2, &structs::stat(&st))?;
                ok(0)
            }
            nr::STATX => {
                let [_mask, buf, ..] = more(p)?;
                let st = p.stat_at(fs, a0 as i32 as i64, a1, a2)?;
                p.write_mem(buf, &structs::statx(&st))?;
                ok(0)
            }
            nr::GETDENTS64 => ok(p.getdents(a0 as i32 as i64, a1, a2 as usize)? as u64),
            nr::MKDIR | nr::MKDIRAT => {
                let (dirfd, path, mode) =
                    if number == nr::MKDIR { (AT_FDCWD, a0, a1) } else { (a0 as i32 as i64, a1, a2) };
                let path = p.path_arg(dirfd, path)?;
                let mode = (mode as u32 & 0o7777 & !p.umask) as u16;
                need(fs)?.mkdir(&path, mode).map_err(fs_errno)?;
                ok(0)
            }
            nr::UNLINK | nr::RMDIR => {
                let path = p.path_arg(AT_FDCWD, a0)?;
                let fs = need(fs)?;
                if number == nr::UNLINK { fs.unlink(&path) } else { fs.rmdir(&path) }.map_err(fs_errno)?;
                ok(0)
            }
            nr::UNLINKAT => {
                let path = p.path_arg(a0 as i32 as i64, a1)?;
                let fs = need(fs)?;
                if a2 & 0x200 != 0 { fs.rmdir(&path) } else { fs.unlink(&path) }.map_err(fs_errno)?;
                ok(0)
            }
            nr::RENAME => {
                let (from, to) = (p.path_arg(AT_FDCWD, a0)?, p.path_arg(AT_FDCWD, a1)?);
                need(fs)?.rename(&from, &to).map_err(fs_errno)?;
                ok(0)
            }
            nr::RENAMEAT | nr::RENAMEAT2 => {
                let [to, flags, ..] = more(p)?;
                if number == nr::RENAMEAT2 && flags != 0 {
                    return Err(EINVAL);
                }
                let (from, to) = (p.path_arg(a0 as i32 as i64, a1)?, p.path_arg(a2 as i32 as i64, to)?);
                need(fs)?.rename(&from, &to).map_err(fs_errno)?;
                ok(0)
            }
            nr::READLINK => ok(p.readlink(fs, AT_FDCWD, a0, a1, a2)? as u64),
            nr::READLINKAT => {
                let [size, ..] = more(p)?;
                ok(p.readlink(fs, a0 as i32 as i64, a1, a2, size)? as u64)
            }
            nr::ACCESS => {
                let path = p.path_arg(AT_FDCWD, a0)?;
                p.stat_path(fs, &path, true)?;
                ok(0)
            }
            nr::FACCESSAT | nr::FACCESSAT2 => {
                let path = p.path_arg(a0 as i32 as i64, a1)?;
                p.stat_path(fs, &path, true)?;
                ok(0)
            }
            nr::CHDIR => {
                let path = p.path_arg(AT_FDCWD, a0)?;
                let st = p.stat_path(fs, &path, true)?;
                if st.mode & structs::S_IFMT != structs::S_IFDIR {
                    return Err(ENOTDIR);
                }
                p.cwd = lpx::path::normalise(&path);
                ok(0)
            }
            nr::FCHDIR => {
                let fd = p.fds.get(a0 as i32 as i64)?.clone();
                let path = match &*fd.borrow() {
                    Open::File(f) if f.directory => f.path.clone(),
                    Open::File(_) => return Err(ENOTDIR),
                    _ => return Err(ENOTDIR),
                };
                p.cwd = lpx::path::normalise(&path);
                ok(0)
            }
            nr::GETCWD => {
                let mut bytes = Vec::from(p.cwd.as_bytes());
                bytes.push(0);
                if (a1 as usize) < bytes.len() {
                    return Err(ERANGE);
                }
                p.write_mem(a0, &bytes)?;
                ok(bytes.len() as u64)
            }
            nr::FTRUNCATE => {
                let fd = p.fds.get(a0 as i32 as i64)?.clone();
                let result = match &*fd.borrow() {
                    Open::File(f) if !f.directory => f.file.truncate(a1).map_err(fs_errno),
                    Open::File(_) => Err(EISDIR),
                    _ => Err(EINVAL),
                };
                result?;
                ok(0)
            }
            nr::FSYNC | nr::FDATASYNC => {
                let fd = p.fds.get(a0 as i32 as i64)?.clone();
                let result = match &*fd.borrow() {
                    Open::File(f) => f.file.fsync().map_err(fs_errno),
                    _ => Ok(()),
                };
                result?;
                ok(0)
            }
            nr::DUP => ok(p.fds.dup(a0 as i32 as i64, 0, false)? as u64),
            nr::DUP2 => {
                if a0 == a1 {
                    p.fds.get(a0 as i32 as i64)?;
                    return ok(a1);
                }
                p.fds.dup_to(a0 as i32 as i64, a1 as i32 as i64, false)?;
                ok(a1)
            }
            nr::DUP3 => {
                if a0 == a1 || a2 & !o::CLOEXEC != 0 {
                    return Err(EINVAL);
                }
                p.fds.dup_to(a0 as i32 as i64, a1 as i32 as i64, a2 & o::CLOEXEC != 0)?;
                ok(a1)
            }
            nr::FCNTL => p.fcntl(a0 as i32 as i64, a1, a2).map(Some),
            nr::IOCTL => p.ioctl(a0 as i32 as i64, a1, a2).map(Some),
            nr::BRK => ok(p.set_brk(a0)),
            nr::MMAP => {
                let [flags, fd, offset] = more(p)?;
                ok(p.mmap(a0, a1, a2 as u32, flags, fd as i32 as i64, offset)?)
            }
            nr::MUNMAP => {
                if !a0.is_multiple_of(PAGE) || a1 == 0 {
                    return Err(EINVAL);
                }
                p.release_range(a0, a1.next_multiple_of(PAGE));
                ok(0)
            }
            nr::MPROTECT => {
                if !a0.is_multiple_of(PAGE) {
                    return Err(EINVAL);
                }
                p.space.protect(a0, a1.next_multiple_of(PAGE), a2 as u32);
                ok(0)
            }
            nr::MADVISE => ok(0),
            nr::ARCH_PRCTL => {
                const ARCH_SET_FS: u64 = 0x1002;
                const ARCH_GET_FS: u64 = 0x1003;
                match a0 {
                    ARCH_SET_FS => {
                        let mut r = sys::thread_regs(p.thread).map_err(|_| EPERM)?;
                        r[regs::FS_BASE] = a1;
                        sys::set_thread_regs(p.thread, &r).map_err(|_| EPERM)?;
                        ok(0)
                    }
                    ARCH_GET_FS => {
                        let r = sys::thread_regs(p.thread).map_err(|_| EPERM)?;
                        p.write_mem(a1, &r[regs::FS_BASE].to_le_bytes())?;
                        ok(0)
                    }
                    _ => Err(EINVAL),
                }
            }
            nr::SET_TID_ADDRESS => ok(pid as u64),
            nr::SET_ROBUST_LIST => ok(0),
            nr::PRLIMIT64 => {
                let [old, ..] = more(p)?;
                if a0 != 0 && a0 != pid as u64 {
                    return Err(ESRCH);
                }
                if old != 0 {
                    p.write_mem(old, &rlimit(a1))?;
                }
                ok(0)
            }
            nr::GETRLIMIT => {
                p.write_mem(a1, &rlimit(a0))?;
                ok(0)
            }
            nr::SETRLIMIT => ok(0),
            nr::GETRANDOM => {
                let len = (a1 as usize).min(IO_MAX);
                p.check(a0, len as u64, true)?;
                let mut bytes = alloc::vec![0u8; len];
                self.rng.stir(rt::rdtsc());
                self.rng.fill(&mut bytes);
                let p = self.procs.get_mut(&pid).expect("present");
                p.write_mem(a0, &bytes)?;
                ok(len as u64)
            }
            nr::UNAME => {
                let u = structs::utsname(["Linux", "tutti", "6.1.0-tutti", "#1 Tutti linuxd", "x86_64", "(none)"]);
                p.write_mem(a0, &u)?;
                ok(0)
            }
            nr::GETPID | nr::GETTID => ok(pid as u64),
            nr::GETPPID => ok(1),
            nr::GETUID | nr::GETEUID | nr::GETGID | nr::GETEGID => ok(0),
            nr::CLOCK_GETTIME => {
                let ns = clock(a0, realtime_base)?;
                p.write_mem(a1, &structs::two_words(ns / 1_000_000_000, ns % 1_000_000_000))?;
                ok(0)
            }
            nr::CLOCK_GETRES => {
                clock(a0, realtime_base)?;
                if a1 != 0 {
                    p.write_mem(a1, &structs::two_words(0, 1))?;
                }
                ok(0)
            }
            nr::GETTIMEOFDAY => {
                let ns = realtime_base + sys::time_now();
                if a0 != 0 {
                    p.write_mem(a0, &structs::two_words(ns / 1_000_000_000, ns % 1_000_000_000 / 1000))?;
                }
                ok(0)
            }
            nr::TIME => {
                let secs = (realtime_base + sys::time_now()) / 1_000_000_000;
                if a0 != 0 {
                    p.write_mem(a0, &secs.to_le_bytes())?;
                }
                ok(secs)
            }
            nr::NANOSLEEP | nr::CLOCK_NANOSLEEP => {
                let (req, abs) = if number == nr::NANOSLEEP { (a0, false) } else { (a2, a1 & 1 != 0) };
                let mut ts = [0u8; 16];
                p.read_mem(req, &mut ts)?;
                let (secs, nanos) = structs::read_two_words(&ts);
                if nanos >= 1_000_000_000 || (secs as i64) < 0 {
                    return Err(EINVAL);
                }
                let ns = secs.saturating_mul(1_000_000_000).saturating_add(nanos);
                let now = sys::time_now();
                let deadline = if abs {
                    let base = if number == nr::CLOCK_NANOSLEEP && a0 == 0 { realtime_base } else { 0 };
                    ns.saturating_sub(base)
                } else {
                    now.saturating_add(ns)
                };
                if deadline <= now {
                    return ok(0);
                }
                let reply = sys::reply_detach().map_err(|_| ENOMEM)?;
                self.sleepers.push((deadline, reply, pid));
                Ok(None)
            }
            nr::SCHED_YIELD => ok(0),
            nr::RT_SIGACTION => {
                if a2 != 0 {
                    p.write_mem(a2, &[0u8; 32])?;
                }
                ok(0)
            }
            nr::RT_SIGPROCMASK => {
                let [size, ..] = more(p)?;
                if a2 != 0 {
                    p.write_mem(a2, &alloc::vec![0u8; (size as usize).min(128)])?;
                }
                ok(0)
            }
            nr::SIGALTSTACK => {
                if a1 != 0 {
                    p.write_mem(a1, &[0u8; 24])?;
                }
                ok(0)
            }
            nr::UMASK => {
                let old = p.umask;
                p.umask = a0 as u32 & 0o777;
                ok(old as u64)
            }
            nr::WAIT4 => Err(ECHILD),
            nr::KILL | nr::TGKILL | nr::TKILL => {
                let (target, signal) = if number == nr::TGKILL { (a1, a2) } else { (a0, a1) };
                if target != pid as u64 && !(number == nr::KILL && target == 0) {
                    return Err(ESRCH);
                }
                if signal == 0 {
                    return ok(0);
                }
                if signal > 64 {
                    return Err(EINVAL);
                }
                rt::log::warn!("pid {pid} ({}) killed by {} (sent to itself)", p.exe, signal_name(signal as u32));
                self.end(pid, Status::Killed(signal as u32));
                Ok(None)
            }
            _ => Err(ENOSYS),
        }
    }

    /// `write` on `fd` of `pid`: the console service, `/dev/null`, or a file.
    fn write_fd(&mut self, pid: u32, fd: i64, data: &[u8], at: Option<u64>) -> Result<usize, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(EBADF)?;
        let fd = p.fds.get(fd)?.clone();
        let open = fd.borrow();
        match &*open {
            Open::Console { flags } | Open::Null { flags } if flags & o::ACCMODE == o::RDONLY => Err(EBADF),
            Open::Console { .. } => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                self.console_write(data);
                Ok(data.len())
            }
            Open::Null { .. } => Ok(data.len()),
            Open::File(f) => {
                if f.directory {
                    return Err(EISDIR);
                }
                if f.flags & o::ACCMODE == o::RDONLY {
                    return Err(EBADF);
                }
                drop(open);
                let mut open = fd.borrow_mut();
                let Open::File(f) = &mut *open else { return Err(EBADF) };
                match at {
                    Some(offset) => f.file.write_at(offset, data),
                    None => f.file.write(data),
                }
                .map_err(fs_errno)
            }
        }
    }

    fn console_write(&mut self, data: &[u8]) {
        if self.console.is_none() {
            self.console = connect_console();
        }
        if let Some((console, buffer)) = &self.console {
            let sent = data.chunks(buffer.len()).all(|chunk| {
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
        rt::print!("{}", String::from_utf8_lossy(data));
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

impl Process {
    /// Commits `[start, start + len)` (a chunk of a region): a memory object charged to the
    /// process, mapped there with `prot` and here read-write.
    fn commit(&mut self, start: u64, len: u64, prot: u32) -> Result<Chunk, Errno> {
        let memory = sys::memory_create(self.task, len).map_err(|_| ENOMEM)?;
        let mirror = mirror_alloc(len)?;
        let mut perms = map::READ;
        if prot & PROT_WRITE != 0 {
            perms |= map::WRITE;
        }
        if prot & PROT_EXEC != 0 {
            perms |= map::EXECUTE;
        }
        let mapped = sys::memory_map(memory, 0, mirror, 0, len, map::READ | map::WRITE)
            .and_then(|()| sys::memory_map(memory, self.task, start, 0, len, perms));
        if mapped.is_err() {
            let _ = sys::cap_revoke(memory);
            return Err(ENOMEM);
        }
        let chunk = Chunk { start, len, mirror, memory };
        self.space.commit(chunk);
        Ok(chunk)
    }

    /// The mirror address of `addr` and the contiguous bytes there, committing if needed.
    fn locate(&mut self, addr: u64, write: bool) -> Result<(u64, u64), Errno> {
        for _ in 0..2 {
            match self.space.access(addr, write) {
                Access::Committed { mirror, len } => return Ok((mirror, len)),
                Access::Commit { start, len, prot } => {
                    self.commit(start, len, prot)?;
                }
                Access::Fault => return Err(EFAULT),
            }
        }
        Err(EFAULT)
    }

    /// Checks that `[addr, addr + len)` is accessible (committing what it must).
    fn check(&mut self, addr: u64, len: u64, write: bool) -> Result<(), Errno> {
        let end = addr.checked_add(len).ok_or(EFAULT)?;
        let mut at = addr;
        while at < end {
            let (_, n) = self.locate(at, write)?;
            at += n;
        }
        Ok(())
    }

    fn read_mem(&mut self, addr: u64, out: &mut [u8]) -> Result<(), Errno> {
        addr.checked_add(out.len() as u64).ok_or(EFAULT)?;
        let mut done = 0;
        while done < out.len() {
            let (mirror, n) = self.locate(addr + done as u64, false)?;
            let n = (n as usize).min(out.len() - done);
            // Safety: `locate` found `n` committed bytes at `mirror`, mapped read-write in this
            // task for as long as the chunk exists (only linuxd releases chunks).
            unsafe { core::ptr::copy_nonoverlapping(mirror as *const u8, out[done..].as_mut_ptr(), n) };
            done += n;
        }
        Ok(())
    }

    fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.check(addr, data.len() as u64, true)?;
        let mut done = 0;
        while done < data.len() {
            let (mirror, n) = self.locate(addr + done as u64, true)?;
            let n = (n as usize).min(data.len() - done);
            // Safety: as in `read_mem`; the region allows writing.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), mirror as *mut u8, n) };
            done += n;
        }
        Ok(())
    }

    /// `len` bytes (at most `IO_MAX`) of the process at `addr`.
    fn read_user(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut out = alloc::vec![0u8; len.min(IO_MAX)];
        self.read_mem(addr, &mut out)?;
        Ok(out)
    }

    /// A NUL-terminated string at `addr` (at most `PATH_MAX` bytes).
    fn read_cstr(&mut self, addr: u64) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut at = addr;
        loop {
            let (mirror, n) = self.locate(at, false)?;
            let n = (n as usize).min(lpx::path::PATH_MAX - out.len());
            // Safety: as in `read_mem`.
            let bytes = unsafe { core::slice::from_raw_parts(mirror as *const u8, n) };
            if let Some(end) = bytes.iter().position(|b| *b == 0) {
                out.extend_from_slice(&bytes[..end]);
                return Ok(out);
            }
            out.extend_from_slice(bytes);
            if out.len() >= lpx::path::PATH_MAX {
                return Err(ENAMETOOLONG);
            }
            at += n as u64;
        }
    }

    fn iovecs(&mut self, addr: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
        if count > 1024 {
            return Err(EINVAL);
        }
        let bytes = self.read_user(addr, count as usize * 16)?;
        Ok(structs::iovecs(&bytes))
    }

    /// The absolute path named by `dirfd` and the string at `addr`.
    fn path_arg(&mut self, dirfd: i64, addr: u64) -> Result<String, Errno> {
        let bytes = self.read_cstr(addr)?;
        if bytes.is_empty() {
            return Err(ENOENT);
        }
        let path = String::from_utf8(bytes).map_err(|_| EINVAL)?;
        if path.starts_with('/') || dirfd == AT_FDCWD {
            return Ok(lpx::path::join(&self.cwd, &path));
        }
        let fd = self.fds.get(dirfd)?.clone();
        let open = fd.borrow();
        match &*open {
            Open::File(f) if f.directory => Ok(lpx::path::join(&f.path, &path)),
            _ => Err(ENOTDIR),
        }
    }

    fn stat_path(&mut self, fs: Option<&'static Fs>, path: &str, follow: bool) -> Result<FileStat, Errno> {
        if let Some(st) = device_stat(path) {
            return Ok(st);
        }
        let fs = need(fs)?;
        let s = if follow { fs.stat(path) } else { fs.lstat(path) }.map_err(fs_errno)?;
        Ok(stat_of(&s))
    }

    fn stat_at(&mut self, fs: Option<&'static Fs>, dirfd: i64, addr: u64, flags: u64) -> Result<FileStat, Errno> {
        const AT_SYMLINK_NOFOLLOW: u64 = 0x100;
        const AT_EMPTY_PATH: u64 = 0x1000;
        let bytes = self.read_cstr(addr)?;
        if bytes.is_empty() {
            if flags & AT_EMPTY_PATH != 0 {
                return self.fstat(dirfd);
            }
            return Err(ENOENT);
        }
        let path = self.path_arg(dirfd, addr)?;
        self.stat_path(fs, &path, flags & AT_SYMLINK_NOFOLLOW == 0)
    }

    fn fstat(&mut self, fd: i64) -> Result<FileStat, Errno> {
        let fd = self.fds.get(fd)?.clone();
        let open = fd.borrow();
        match &*open {
            Open::Console { .. } => Ok(device_stat("/dev/console").expect("known")),
            Open::Null { .. } => Ok(device_stat("/dev/null").expect("known")),
            Open::File(f) => f.file.stat().map(|s| stat_of(&s)).map_err(fs_errno),
        }
    }

    fn open(&mut self, fs: Option<&'static Fs>, dirfd: i64, addr: u64, flags: u64, mode: u32) -> Result<i32, Errno> {
        let path = self.path_arg(dirfd, addr)?;
        let cloexec = flags & o::CLOEXEC != 0;
        let norm = lpx::path::normalise(&path);
        match norm.as_str() {
            "/dev/null" => return self.fds.insert(Rc::new(RefCell::new(Open::Null { flags })), cloexec),
            "/dev/tty" | "/dev/console" | "/dev/stdout" | "/dev/stderr" => {
                return self.fds.insert(Rc::new(RefCell::new(Open::Console { flags })), cloexec)
            }
            _ => {}
        }
        let target = if norm == "/proc/self/exe" { self.exe.clone() } else { path };
        let fs = need(fs)?;
        let acc = flags & o::ACCMODE;
        let mut f = 0;
        if acc != o::WRONLY {
            f |= fs::flags::READ;
        }
        if acc != o::RDONLY {
            f |= fs::flags::WRITE;
        }
        if flags & o::CREAT != 0 {
            f |= fs::flags::CREATE;
        }
        if flags & o::EXCL != 0 {
            f |= fs::flags::EXCLUSIVE;
        }
        if flags & o::TRUNC != 0 && acc != o::RDONLY {
            f |= fs::flags::TRUNCATE;
        }
        if flags & o::APPEND != 0 {
            f |= fs::flags::APPEND;
        }
        if flags & o::DIRECTORY != 0 {
            f |= fs::flags::DIRECTORY;
        }
        if flags & o::NOFOLLOW != 0 {
            f |= fs::flags::NOFOLLOW;
        }
        let mode = (mode & 0o7777 & !self.umask) as u16;
        let file = match fs.open(&target, f, mode) {
            Err(fs::Error::IsDirectory) if acc == o::RDONLY => {
                fs.open(&target, f | fs::flags::DIRECTORY, mode).map_err(fs_errno)?
            }
            other => other.map_err(fs_errno)?,
        };
        let directory = file.kind() == fs::Kind::Directory;
        let desc = FileDesc {
            file,
            path: lpx::path::normalise(&target),
            flags: flags & !o::CLOEXEC,
            directory,
            pending: VecDeque::new(),
            cookie: 0,
            started: false,
            done: false,
            offset: 0,
        };
        self.fds.insert(Rc::new(RefCell::new(Open::File(desc))), cloexec)
    }

    /// Reads up to `len` bytes from `fd` (at `at`, or the position).
    fn read_fd(&mut self, fd: i64, len: usize, at: Option<u64>) -> Result<Vec<u8>, Errno> {
        let fd = self.fds.get(fd)?.clone();
        let mut open = fd.borrow_mut();
        match &mut *open {
            Open::Console { flags } | Open::Null { flags } => {
                if *flags & o::ACCMODE == o::WRONLY {
                    return Err(EBADF);
                }
                Ok(Vec::new())
            }
            Open::File(f) => {
                if f.directory {
                    return Err(EISDIR);
                }
                if f.flags & o::ACCMODE == o::WRONLY {
                    return Err(EBADF);
                }
                let mut out = alloc::vec![0u8; len.min(IO_MAX)];
                let mut done = 0;
                while done < out.len() {
                    let n = match at {
                        Some(offset) => f.file.read_at(offset + done as u64, &mut out[done..]),
                        None => f.file.read(&mut out[done..]),
                    }
                    .map_err(fs_errno)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                out.truncate(done);
                Ok(out)
            }
        }
    }

    fn read(&mut self, fd: i64, buf: u64, len: usize, at: Option<u64>) -> Result<usize, Errno> {
        let len = len.min(IO_MAX);
        self.check(buf, len as u64, true)?;
        let data = self.read_fd(fd, len, at)?;
        self.write_mem(buf, &data)?;
        Ok(data.len())
    }

    fn lseek(&mut self, fd: i64, offset: i64, whence: u64) -> Result<u64, Errno> {
        let fd = self.fds.get(fd)?.clone();
        let mut open = fd.borrow_mut();
        match &mut *open {
            Open::Console { .. } => Err(ESPIPE),
            Open::Null { .. } => Ok(0),
            Open::File(f) if f.directory => {
                if whence == 0 && offset == 0 {
                    f.pending.clear();
                    f.cookie = 0;
                    f.started = false;
                    f.done = false;
                    f.offset = 0;
                    Ok(0)
                } else {
                    Err(EINVAL)
                }
            }
            Open::File(f) => {
                let whence = match whence {
                    0 => fs::whence::SET,
                    1 => fs::whence::CURRENT,
                    2 => fs::whence::END,
                    _ => return Err(EINVAL),
                };
                f.file.seek(whence, offset).map_err(fs_errno)
            }
        }
    }

    fn getdents(&mut self, fd: i64, buf: u64, room: usize) -> Result<usize, Errno> {
        let fd = self.fds.get(fd)?.clone();
        let mut open = fd.borrow_mut();
        let Open::File(f) = &mut *open else { return Err(ENOTDIR) };
        if !f.directory {
            return Err(ENOTDIR);
        }
        if !f.started {
            f.started = true;
            f.pending.push_back((1, 4, Vec::from(&b"."[..])));
            f.pending.push_back((1, 4, Vec::from(&b".."[..])));
        }
        let room = room.min(IO_MAX);
        let mut out = Vec::new();
        loop {
            if f.pending.is_empty() && !f.done {
                let (entries, next) = f.file.read_dir_from(f.cookie).map_err(fs_errno)?;
                if entries.is_empty() {
                    f.done = true;
                }
                f.cookie = next;
                for e in entries {
                    f.pending.push_back((e.ino.max(1), e.kind.dtype(), e.name));
                }
            }
            let Some((ino, dtype, name)) = f.pending.front() else { break };
            if !structs::dirent64(&mut out, room, *ino, f.offset + 1, *dtype, name) {
                if out.is_empty() {
                    return Err(EINVAL);
                }
                break;
            }
            f.offset += 1;
            f.pending.pop_front();
        }
        drop(open);
        self.write_mem(buf, &out)?;
        Ok(out.len())
    }

    fn readlink(
        &mut self,
        fs: Option<&'static Fs>,
        dirfd: i64,
        addr: u64,
        buf: u64,
        size: u64,
    ) -> Result<usize, Errno> {
        let path = self.path_arg(dirfd, addr)?;
        let target = if lpx::path::normalise(&path) == "/proc/self/exe" {
            Vec::from(self.exe.as_bytes())
        } else {
            need(fs)?.readlink(&path).map_err(fs_errno)?
        };
        if (size as i64) <= 0 {
            return Err(EINVAL);
        }
        let n = target.len().min(size as usize);
        self.write_mem(buf, &target[..n])?;
        Ok(n)
    }

    fn fcntl(&mut self, fd: i64, cmd: u64, arg: u64) -> Result<u64, Errno> {
        const F_DUPFD: u64 = 0;
        const F_GETFD: u64 = 1;
        const F_SETFD: u64 = 2;
        const F_GETFL: u64 = 3;
        const F_SETFL: u64 = 4;
        const F_DUPFD_CLOEXEC: u64 = 1030;
        match cmd {
            F_DUPFD | F_DUPFD_CLOEXEC => Ok(self.fds.dup(fd, arg as usize, cmd == F_DUPFD_CLOEXEC)? as u64),
            F_GETFD => Ok(self.fds.cloexec(fd)? as u64),
            F_SETFD => {
                self.fds.set_cloexec(fd, arg & 1 != 0)?;
                Ok(0)
            }
            F_GETFL => {
                let file = self.fds.get(fd)?.clone();
                let open = file.borrow();
                Ok(match &*open {
                    Open::Console { flags } | Open::Null { flags } => *flags,
                    Open::File(f) => f.flags | if f.directory { o::DIRECTORY } else { 0 },
                })
            }
            F_SETFL => {
                // Only the status flags change (O_APPEND, O_NONBLOCK); recorded, and O_APPEND
                // keeps what the file was opened with on the server (docs/linux.md).
                let file = self.fds.get(fd)?.clone();
                let mut open = file.borrow_mut();
                let settable = o::APPEND | o::NONBLOCK;
                match &mut *open {
                    Open::Console { flags } | Open::Null { flags } => *flags = (*flags & !settable) | (arg & settable),
                    Open::File(f) => f.flags = (f.flags & !settable) | (arg & settable),
                }
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    fn ioctl(&mut self, fd: i64, request: u64, arg: u64) -> Result<u64, Errno> {
        const TCGETS: u64 = 0x5401;
        const TCSETS: u64 = 0x5402;
        const TCSETSW: u64 = 0x5403;
        const TCSETSF: u64 = 0x5404;
        const TIOCGPGRP: u64 = 0x540f;
        const TIOCGWINSZ: u64 = 0x5413;
        let file = self.fds.get(fd)?.clone();
        if !matches!(&*file.borrow(), Open::Console { .. }) {
            return Err(ENOTTY);
        }
        match request {
            TCGETS => self.write_mem(arg, &structs::termios()).map(|()| 0),
            TCSETS | TCSETSW | TCSETSF => Ok(0),
            TIOCGWINSZ => self.write_mem(arg, &structs::winsize(24, 80)).map(|()| 0),
            TIOCGPGRP => self.write_mem(arg, &self.pid.to_le_bytes()).map(|()| 0),
            _ => Err(EINVAL),
        }
    }

    /// `brk`: the new break, or the old one when the request cannot be met.
    fn set_brk(&mut self, addr: u64) -> u64 {
        if addr < self.brk_start || addr > self.brk_start + BRK_MAX {
            return self.brk;
        }
        let released = self.space.set_limit(self.brk_start, addr);
        self.release(released);
        self.brk = addr;
        addr
    }

    fn release(&mut self, released: lpx::mem::Released) {
        for c in released.chunks {
            // Destroying the object unmaps it from the process and from here.
            let _ = sys::cap_revoke(c.memory);
        }
        for (mirror, len) in released.zero {
            // Safety: a mirror range of a chunk that stays committed and mapped here.
            unsafe { core::ptr::write_bytes(mirror as *mut u8, 0, len as usize) };
        }
    }

    fn release_range(&mut self, start: u64, len: u64) {
        let released = self.space.unmap(start, len);
        self.release(released);
    }

    fn mmap(&mut self, addr: u64, len: u64, prot: u32, flags: u64, fd: i64, offset: u64) -> Result<u64, Errno> {
        const MAP_SHARED: u64 = 1;
        const MAP_PRIVATE: u64 = 2;
        const MAP_FIXED: u64 = 0x10;
        const MAP_ANONYMOUS: u64 = 0x20;
        const MAP_FIXED_NOREPLACE: u64 = 0x100000;
        if len == 0 || !offset.is_multiple_of(PAGE) || flags & (MAP_SHARED | MAP_PRIVATE) == 0 {
            return Err(EINVAL);
        }
        let len = len.checked_next_multiple_of(PAGE).filter(|l| *l <= (1 << 40)).ok_or(ENOMEM)?;
        let start = if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            if !addr.is_multiple_of(PAGE) || addr == 0 {
                return Err(EINVAL);
            }
            if !self.space.is_free(addr, len) {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    return Err(EEXIST);
                }
                self.release_range(addr, len);
                if !self.space.is_free(addr, len) {
                    return Err(ENOMEM);
                }
            }
            addr
        } else {
            self.space.find_free_below(MMAP_TOP, MMAP_FLOOR, len).ok_or(ENOMEM)?
        };
        let chunk = if len <= 4 * MMAP_CHUNK { 0 } else { MMAP_CHUNK };
        if flags & MAP_ANONYMOUS != 0 {
            self.space.add(start, len, prot, Kind::Anonymous, chunk).map_err(|_| ENOMEM)?;
            return Ok(start);
        }
        // A file: copied into a private mapping (shared writable mappings are not supported).
        if flags & MAP_SHARED != 0 && prot & PROT_WRITE != 0 {
            return Err(ENODEV);
        }
        let file = self.fds.get(fd)?.clone();
        let mut open = file.borrow_mut();
        let Open::File(f) = &mut *open else { return Err(ENODEV) };
        if f.directory {
            return Err(ENODEV);
        }
        self.space.add(start, len, prot, Kind::File, 0).map_err(|_| ENOMEM)?;
        let chunk = match self.commit(start, len, prot) {
            Ok(c) => c,
            Err(e) => {
                self.space.unmap(start, len);
                return Err(e);
            }
        };
        // Safety: the mirror was just mapped read-write here for `len` bytes.
        let dest = unsafe { core::slice::from_raw_parts_mut(chunk.mirror as *mut u8, len as usize) };
        if let Err(e) = read_full(&mut f.file, offset, dest) {
            drop(open);
            self.release_range(start, len);
            return Err(fs_errno(e));
        }
        Ok(start)
    }

    /// Ends the task and closes every handle of the process.
    fn teardown(&mut self) {
        let _ = sys::cap_revoke(self.task);
        let _ = sys::cap_close(self.task);
        for c in self.space.chunks() {
            let _ = sys::cap_close(c.memory);
        }
        self.space = Space::new();
        if self.thread != 0 {
            let _ = sys::cap_close(self.thread);
        }
        self.fds.clear();
    }
}

/// The metadata of the device files linuxd serves itself.
fn device_stat(path: &str) -> Option<FileStat> {
    let (rdev, mode) = match lpx::path::normalise(path).as_str() {
        "/dev/null" => ((1 << 8) | 3, structs::S_IFCHR | 0o666),
        "/dev/console" | "/dev/tty" => ((5 << 8) | 1, structs::S_IFCHR | 0o620),
        _ => return None,
    };
    Some(FileStat { dev: 5, ino: rdev, mode, nlink: 1, rdev, blksize: 1024, ..Default::default() })
}
