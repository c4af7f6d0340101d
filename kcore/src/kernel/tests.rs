//! The kernel model on a fake machine: IPC, rights, timeouts, death, quotas, priorities,
//! notifications, faults, and a random system-call storm.

use super::*;
use abi::syscall::{encode_call, info, label, map};
use std::string::String;

/// User memory is one readable region per address space plus mapped pages; frames are
/// counted so leaks show.
struct Fake {
    console: String,
    next_frame: u64,
    live_frames: std::collections::BTreeSet<u64>,
    ports: std::collections::BTreeMap<u16, u32>,
    masked: [bool; MAX_IRQ_LINES],
    log: crate::logring::LogRing<256>,
    written: Vec<u8>,
}

/// Where the fake's user memory is writable (`write_user`), and how much.
const WRITABLE_AT: u64 = 0x20_0000;
const WRITABLE_LEN: usize = 8192;

fn fake() -> Fake {
    Fake {
        console: String::new(),
        next_frame: 0,
        live_frames: Default::default(),
        ports: Default::default(),
        masked: [true; MAX_IRQ_LINES],
        log: Default::default(),
        written: Vec::new(),
    }
}

const DEVICES: Devices =
    Devices { archive: (0x10_0000, 5000), device_memory: (0xfd00_0000, 0x100_0000), irq_lines: 24 };

struct Space {
    base: u64,
    bytes: Vec<u8>,
    pages: std::collections::BTreeMap<u64, (u64, bool)>,
}

fn space(base: u64, bytes: &[u8]) -> Space {
    Space { base, bytes: bytes.to_vec(), pages: Default::default() }
}

impl Machine for Fake {
    type Space = Space;
    type Context = (u64, u64, u64);

    fn read_user(&mut self, space: &Space, addr: u64, buf: &mut [u8]) -> Result<(), BadAddress> {
        let start = addr.checked_sub(space.base).ok_or(BadAddress)? as usize;
        let end = start.checked_add(buf.len()).ok_or(BadAddress)?;
        buf.copy_from_slice(space.bytes.get(start..end).ok_or(BadAddress)?);
        Ok(())
    }
    fn write_user(&mut self, space: &Space, addr: u64, buf: &[u8]) -> Result<(), BadAddress> {
        // The fake's spaces are read-only images; tests map a writable window at WRITABLE_AT.
        let start = addr.checked_sub(WRITABLE_AT).ok_or(BadAddress)? as usize;
        let end = start.checked_add(buf.len()).filter(|e| *e <= WRITABLE_LEN).ok_or(BadAddress)?;
        let _ = space;
        self.written.resize(WRITABLE_LEN, 0);
        self.written[start..end].copy_from_slice(buf);
        Ok(())
    }
    fn now(&mut self) -> u64 {
        0
    }
    fn context_regs(&self, context: &(u64, u64, u64)) -> [u64; abi::syscall::regs::COUNT] {
        use abi::syscall::regs;
        let mut r = [0; regs::COUNT];
        (r[regs::RIP], r[regs::RSP], r[regs::RDI]) = *context;
        r
    }
    fn set_context_regs(&mut self, context: &mut (u64, u64, u64), r: &[u64; abi::syscall::regs::COUNT]) -> bool {
        use abi::syscall::regs;
        if r[regs::RIP] >= 1 << 47 || r[regs::RSP] >= 1 << 47 {
            return false;
        }
        *context = (r[regs::RIP], r[regs::RSP], r[regs::RDI]);
        true
    }
    fn log_read(&mut self, from: u64, out: &mut [u8]) -> (u64, usize, u64) {
        let (start, n) = self.log.read(from, out);
        (start, n, self.log.end())
    }
    fn console_write(&mut self, text: &str) {
        self.console.push_str(text);
        self.log.push(text.as_bytes());
    }
    fn new_context(&mut self, entry: u64, stack: u64, arg: u64) -> (u64, u64, u64) {
        (entry, stack, arg)
    }
    fn new_space(&mut self) -> Option<Space> {
        Some(space(0, &[]))
    }
    fn alloc_frame(&mut self) -> Option<u64> {
        if self.live_frames.len() >= 512 {
            return None;
        }
        self.next_frame += 4096;
        self.live_frames.insert(self.next_frame);
        Some(self.next_frame)
    }
    fn alloc_contiguous(&mut self, pages: u64) -> Option<u64> {
        let first = self.alloc_frame()?;
        for _ in 1..pages {
            self.alloc_frame()?;
        }
        Some(first)
    }
    fn free_frame(&mut self, frame: u64) {
        assert!(self.live_frames.remove(&frame), "double free of {frame:#x}");
    }
    fn map_page(&mut self, space: &mut Space, vaddr: u64, frame: u64, access: Access) -> Result<(), MapFailure> {
        if space.pages.contains_key(&vaddr) {
            return Err(MapFailure::InUse);
        }
        space.pages.insert(vaddr, (frame, access.writable));
        Ok(())
    }
    fn port_allowed(&self, port: u16, width: u8) -> bool {
        // Like the PC: the PIT (0x40-0x43) belongs to the kernel.
        !(port as u32 + width as u32 > 0x40 && port < 0x44)
    }
    fn port_read(&mut self, port: u16, _: u8) -> u32 {
        self.ports.get(&port).copied().unwrap_or(0xff)
    }
    fn port_write(&mut self, port: u16, _: u8, value: u32) {
        self.ports.insert(port, value);
    }
    fn irq_mask(&mut self, line: u8, masked: bool) {
        self.masked[line as usize] = masked;
    }
    fn unmap_page(&mut self, space: &mut Space, vaddr: u64) {
        assert!(space.pages.remove(&vaddr).is_some(), "unmapping an unmapped page");
    }
}

const TEXT_AT: u64 = 0x1000;
const QUOTA: u64 = 64 * 1024;

fn boot() -> (Kernel<Fake>, TaskId, ThreadId) {
    let mut k = Kernel::new(fake());
    let init = k.create_init("init", space(TEXT_AT, b"hello world"), QUOTA, 0x40_0000, 0x7000, DEVICES).unwrap();
    let t = k.schedule().unwrap();
    (k, init, t)
}

/// The first capability of init is the console.
const CONSOLE: u32 = abi::syscall::init_caps::CONSOLE;

fn sys(k: &mut Kernel<Fake>, number: Sys, handle: u32, a: [u64; 7]) {
    k.syscall(&Args { rax: encode_call(number, handle), a });
}

/// Makes a call and, if the caller is still running, returns its result.
fn now(k: &mut Kernel<Fake>, number: Sys, handle: u32, a: [u64; 7]) -> Return {
    let me = k.current().unwrap();
    sys(k, number, handle, a);
    assert_eq!(k.schedule(), Some(me), "{number:?} should not block");
    k.take_return(me).expect("a result")
}

fn ok(r: Return) -> [u64; 7] {
    assert_eq!(r.status, 0, "expected success, got {:?}", Error::from_code(r.status));
    r.r
}

fn err(r: Return) -> Error {
    Error::from_code(r.status).unwrap_or_else(|| panic!("expected an error, got {r:?}"))
}

fn spawn(k: &mut Kernel<Fake>, priority: u64) -> (u32, ThreadId) {
    let h = ok(now(k, Sys::ThreadCreate, 0, [0x40_1000, 0x6000, priority, 7, 0, 0, 0]))[0] as u32;
    let task = k.current_task().unwrap();
    let thread = *k.task(task).unwrap().threads.last().unwrap();
    (h, thread)
}

#[test]
fn debug_write_needs_the_console_capability_and_checks_memory() {
    let (mut k, _, _) = boot();
    ok(now(&mut k, Sys::DebugWrite, CONSOLE, [TEXT_AT, 5, 0, 0, 0, 0, 0]));
    assert_eq!(k.machine.console, "hello");
    assert_eq!(err(now(&mut k, Sys::DebugWrite, CONSOLE, [0x9000, 5, 0, 0, 0, 0, 0])), Error::BadAddress);
    assert_eq!(err(now(&mut k, Sys::DebugWrite, CONSOLE, [TEXT_AT, 1 << 20, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::DebugWrite, 12345, [TEXT_AT, 5, 0, 0, 0, 0, 0])), Error::InvalidHandle);
    let weak = ok(now(&mut k, Sys::CapDuplicate, CONSOLE, [Rights::READ.0 as u64, 0, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::DebugWrite, weak, [TEXT_AT, 5, 0, 0, 0, 0, 0])), Error::MissingRights);
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::DebugWrite, ep, [TEXT_AT, 5, 0, 0, 0, 0, 0])), Error::WrongType);
}

#[test]
fn log_read_copies_the_console_log_with_the_read_right_and_checks_memory() {
    let (mut k, _, _) = boot();
    ok(now(&mut k, Sys::DebugWrite, CONSOLE, [TEXT_AT, 5, 0, 0, 0, 0, 0]));
    let r = ok(now(&mut k, Sys::LogRead, CONSOLE, [WRITABLE_AT, 64, 0, 0, 0, 0, 0]));
    let end = k.machine.log.end();
    assert_eq!((r[0], r[1], r[2]), (end, 0, end));
    assert!(k.machine.written[..end as usize].ends_with(b"hello"));
    // From a later position: only what follows it.
    let r = ok(now(&mut k, Sys::LogRead, CONSOLE, [WRITABLE_AT + 100, 64, end - 3, 0, 0, 0, 0]));
    assert_eq!((r[0], r[1]), (3, end - 3));
    assert_eq!(&k.machine.written[100..103], b"llo");
    assert_eq!(err(now(&mut k, Sys::LogRead, CONSOLE, [0x9000, 8, 0, 0, 0, 0, 0])), Error::BadAddress);
    assert_eq!(err(now(&mut k, Sys::LogRead, CONSOLE, [WRITABLE_AT, 1 << 20, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    let write_only = ok(now(&mut k, Sys::CapDuplicate, CONSOLE, [Rights::WRITE.0 as u64, 0, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::LogRead, write_only, [WRITABLE_AT, 8, 0, 0, 0, 0, 0])), Error::MissingRights);
}

#[test]
fn task_info_reports_quota_threads_capabilities_and_pages() {
    let (mut k, _, _) = boot_big();
    let me = ok(now(&mut k, Sys::TaskInfo, 0, [0; 7]));
    assert!(me[0] > 0 && me[0] <= me[1], "used {} of quota {}", me[0], me[1]);
    assert_eq!(me[2] as usize, k.task(k.current_task().unwrap()).unwrap().threads.len());
    let child = ok(now(&mut k, Sys::TaskCreate, 0, [1 << 16, 64, 10, TEXT_AT, 5, 0, 0]))[0] as u32;
    let info = ok(now(&mut k, Sys::TaskInfo, child, [0; 7]));
    assert_eq!((info[1], info[2], info[3], info[4]), (1 << 16, 0, 0, 0));
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::TaskInfo, ep, [0; 7])), Error::WrongType);
    let weak = ok(now(&mut k, Sys::CapDuplicate, child, [Rights::DUPLICATE.0 as u64, 0, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::TaskInfo, weak, [0; 7])), Error::MissingRights);
}

#[test]
fn call_and_reply_between_threads_with_badges_and_capability_transfer() {
    let (mut k, _, client) = boot();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let badged =
        ok(now(&mut k, Sys::CapDuplicate, ep, [(Rights::SEND | Rights::GRANT).0 as u64, 99, 0, 0, 0, 0, 0]))[0] as u32;
    let (_, server) = spawn(&mut k, 10);
    // The client (priority 63) blocks in its call; the server runs.
    sys(&mut k, Sys::Call, badged, [7 | info::CAP, 1, 2, 3, 4, CONSOLE as u64, FOREVER]);
    assert_eq!(k.schedule(), Some(server));
    assert_eq!(k.take_return(server), None, "a new thread has no result");
    // The server receives the queued call at once.
    let got = ok(now(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]));
    assert_eq!((got[0] & 0xffff_ffff, got[1], got[2], got[3], got[4], got[6]), (7, 1, 2, 3, 4, 99));
    assert!(got[0] & info::CAP != 0);
    let moved = got[5] as u32;
    assert_eq!(ok(now(&mut k, Sys::CapInfo, moved, [0; 7]))[0], ObjectType::Console as u64);
    // It runs at the client's priority while serving (donation).
    assert_eq!(k.thread(server).unwrap().priority, 63);
    // Reply: the client (higher base priority) takes the CPU back.
    sys(&mut k, Sys::Reply, 0, [5, 50, 60, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(client));
    let reply = ok(k.take_return(client).unwrap());
    assert_eq!((reply[0], reply[1], reply[2]), (5, 50, 60));
    assert_eq!(k.thread(server).unwrap().priority, 10);
}

#[test]
fn rights_are_enforced_on_every_path() {
    let (mut k, _, _) = boot();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let send_only = ok(now(&mut k, Sys::CapDuplicate, ep, [Rights::SEND.0 as u64, 0, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::Recv, send_only, [0, 0, 0, 0, 0, 0, 0])), Error::MissingRights);
    // Sending a capability needs GRANT on the endpoint capability.
    assert_eq!(
        err(now(&mut k, Sys::Call, send_only, [info::CAP, 0, 0, 0, 0, CONSOLE as u64, 0])),
        Error::MissingRights
    );
    assert_eq!(err(now(&mut k, Sys::CapDuplicate, send_only, [u64::MAX, 0, 0, 0, 0, 0, 0])), Error::MissingRights);
    let n = ok(now(&mut k, Sys::NotificationCreate, 0, [0; 7]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::Call, n, [0; 7])), Error::WrongType);
    assert_eq!(err(now(&mut k, Sys::Reply, 0, [0; 7])), Error::NoCaller);
    assert_eq!(err(now(&mut k, Sys::Recv, ep, [0; 7])), Error::WouldBlock, "timeout 0 polls");
    ok(now(&mut k, Sys::CapClose, send_only, [0; 7]));
    assert_eq!(err(now(&mut k, Sys::CapClose, send_only, [0; 7])), Error::InvalidHandle);
    assert_eq!(err(now(&mut k, Sys::CapInfo, 0, [0; 7])), Error::InvalidHandle);
    k.syscall(&Args { rax: 999, a: [0; 7] });
    let me = k.current().unwrap();
    assert_eq!(err(k.take_return(me).unwrap()), Error::NoSuchCall);
}

#[test]
fn timeouts_end_blocked_calls() {
    let (mut k, _, me) = boot();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, 5_000]);
    assert_eq!(k.schedule(), None, "nothing else to run");
    k.tick(4_999);
    assert_eq!(k.schedule(), None);
    k.tick(5_000);
    assert_eq!(k.schedule(), Some(me));
    assert_eq!(err(k.take_return(me).unwrap()), Error::TimedOut);
    // The endpoint forgot the receiver: a later call with timeout 0 finds nobody.
    assert_eq!(err(now(&mut k, Sys::Call, ep, [0; 7])), Error::WouldBlock);
    sys(&mut k, Sys::Sleep, 0, [1_000, 0, 0, 0, 0, 0, 0]);
    k.tick(5_500);
    assert_eq!(k.schedule(), None);
    k.tick(6_000);
    assert_eq!(k.schedule(), Some(me));
    ok(k.take_return(me).unwrap());
}

#[test]
fn a_call_to_a_server_that_never_answers_times_out() {
    let (mut k, _, client) = boot();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let (_, server) = spawn(&mut k, 10);
    sys(&mut k, Sys::Call, ep, [1, 0, 0, 0, 0, 0, 1_000]);
    assert_eq!(k.schedule(), Some(server));
    ok(now(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]));
    k.tick(1_000);
    assert_eq!(k.schedule(), Some(client));
    assert_eq!(err(k.take_return(client).unwrap()), Error::TimedOut);
    // The server's late reply is dropped, and its donated priority is gone.
    assert_eq!(k.thread(server).unwrap().priority, 10);
}

/// A second task with its own thread, created through the bring-up interface.
fn second_task(k: &mut Kernel<Fake>, priority: u8) -> (TaskId, ThreadId) {
    let t = k.new_task("server", space(0, &[]), QUOTA, 64, MAX_PRIORITY);
    let thread = k.new_thread(t, 0x40_0000, 0x7000, 0, priority).unwrap();
    (t, thread)
}

#[test]
fn callers_of_a_dead_server_get_an_error_not_a_hang() {
    let (mut k, init, client) = boot();
    let (server_task, server) = second_task(&mut k, 10);
    // The server owns the endpoint; the client holds a SEND capability to it.
    k.current = Some(server);
    k.t(client).state = State::Ready;
    k.run_queue.remove(63, client);
    k.t(server).state = State::Running;
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let Object::Endpoint(ep_id) = k.task(server_task).unwrap().caps.get(Handle(ep)).unwrap().object else { panic!() };
    let h = k.grant(init, Capability { object: Object::Endpoint(ep_id), rights: Rights::SEND, badge: 0 }).unwrap();
    k.run_queue.push_back(63, client);
    k.give_way = Some(false);
    assert_eq!(k.schedule(), Some(client));
    // Client calls; server receives; then the server exits without replying.
    sys(&mut k, Sys::Call, h.0, [1, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(server));
    ok(now(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]));
    sys(&mut k, Sys::Exit, 0, [3, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(client));
    assert_eq!(err(k.take_return(client).unwrap()), Error::PeerDied);
    assert_eq!(k.take_ended().unwrap(), TaskEnd { name: "server".into(), status: 3, was_init: false });
    // The endpoint died with its owner: the client's capability is dead too.
    assert_eq!(err(now(&mut k, Sys::Call, h.0, [0; 7])), Error::InvalidHandle);
}

/// init's thread serves calls on an endpoint from two client threads of its own task; returns
/// (endpoint, client a, client b).
fn two_callers(k: &mut Kernel<Fake>) -> (u32, ThreadId, ThreadId) {
    let ep = ok(now(k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let (_, a) = spawn(k, 20);
    let (_, b) = spawn(k, 20);
    (ep, a, b)
}

#[test]
fn a_detached_call_is_answered_later_while_the_server_serves_others() {
    let (mut k, _, server) = boot_big();
    let (ep, a, b) = two_callers(&mut k);
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(a));
    sys(&mut k, Sys::Call, ep, [7, 70, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(server));
    assert_eq!(ok(k.take_return(server).unwrap())[1], 70);
    // The server keeps a's call for later and serves b in the meantime.
    let reply = ok(now(&mut k, Sys::ReplyDetach, 0, [0; 7]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::ReplyDetach, 0, [0; 7])), Error::NoCaller, "nothing else is served");
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(b), "a still waits");
    sys(&mut k, Sys::Call, ep, [8, 80, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(server));
    assert_eq!(ok(k.take_return(server).unwrap())[1], 80);
    ok(now(&mut k, Sys::Reply, 0, [0, 81, 0, 0, 0, 0, 0]));
    // Now a's answer, through the reply capability, which is then gone.
    ok(now(&mut k, Sys::ReplyWith, reply, [0, 71, 0, 0, 0, 0, 0]));
    assert_eq!(err(now(&mut k, Sys::ReplyWith, reply, [0, 72, 0, 0, 0, 0, 0])), Error::InvalidHandle);
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    let mut answers = std::collections::BTreeMap::new();
    while let Some(t) = k.schedule() {
        if let Some(r) = k.take_return(t) {
            answers.insert(t, ok(r)[1]);
        }
        sys(&mut k, Sys::Sleep, 0, [1_000_000, 0, 0, 0, 0, 0, 0]);
    }
    assert_eq!((answers.get(&a), answers.get(&b)), (Some(&71), Some(&81)));
}

#[test]
fn a_detached_call_whose_reply_is_revoked_gets_peer_died() {
    let (mut k, _, server) = boot_big();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let (_, a) = spawn(&mut k, 20);
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(a));
    sys(&mut k, Sys::Call, ep, [7, 70, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(server));
    let _ = k.take_return(server);
    let reply = ok(now(&mut k, Sys::ReplyDetach, 0, [0; 7]))[0] as u32;
    let info = ok(now(&mut k, Sys::CapInfo, reply, [0; 7]));
    assert_eq!(info[0], ObjectType::Reply as u64);
    ok(now(&mut k, Sys::CapRevoke, reply, [0; 7]));
    assert_eq!(err(now(&mut k, Sys::CapInfo, reply, [0; 7])), Error::InvalidHandle, "answered: gone");
    sys(&mut k, Sys::Sleep, 0, [1_000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(a));
    assert_eq!(err(k.take_return(a).unwrap()), Error::PeerDied);
}

#[test]
fn a_detached_call_that_times_out_is_dropped_quietly_and_a_foreign_one_gets_rax() {
    let (mut k, _, server) = boot_big();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let (_, a) = spawn(&mut k, 20);
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(a));
    sys(&mut k, Sys::Call, ep, [7, 70, 0, 0, 0, 0, 5_000]);
    assert_eq!(k.schedule(), Some(server));
    let _ = k.take_return(server);
    let reply = ok(now(&mut k, Sys::ReplyDetach, 0, [0; 7]))[0] as u32;
    sys(&mut k, Sys::Sleep, 0, [10_000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), None);
    k.tick(5_000);
    assert_eq!(k.schedule(), Some(a));
    assert_eq!(err(k.take_return(a).unwrap()), Error::TimedOut);
    check_invariants(&k);
    // Foreign: a child with a personality calls; the server detaches and answers later.
    let (pep, _, _, child) = foreign_child(&mut k);
    sys(&mut k, Sys::Sleep, 0, [1_000_000, 0, 0, 0, 0, 0, 0]);
    k.tick(10_000);
    assert_eq!(k.schedule(), Some(server));
    let _ = k.take_return(server);
    ok(now(&mut k, Sys::ReplyWith, reply, [0, 1, 0, 0, 0, 0, 0]));
    sys(&mut k, Sys::Recv, pep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(child));
    k.syscall(&Args { rax: 0, a: [0; 7] });
    assert_eq!(k.schedule(), Some(server));
    let _ = k.take_return(server);
    let foreign = ok(now(&mut k, Sys::ReplyDetach, 0, [0; 7]))[0] as u32;
    ok(now(&mut k, Sys::ReplyWith, foreign, [0, 99, 0, 0, 0, 0, 0]));
    sys(&mut k, Sys::Sleep, 0, [1_000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(child));
    assert_eq!(k.take_rax(child), Some(99));
    check_invariants(&k);
}

#[test]
fn queued_callers_get_peer_died_when_the_endpoint_is_revoked() {
    let (mut k, _, _) = boot();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let (_, worker) = spawn(&mut k, 63);
    // init queues a call; the worker (same priority) runs and revokes the endpoint.
    let init_thread = k.current().unwrap();
    sys(&mut k, Sys::Call, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(worker));
    ok(now(&mut k, Sys::CapRevoke, ep, [0; 7]));
    sys(&mut k, Sys::Yield, 0, [0; 7]);
    assert_eq!(k.schedule(), Some(init_thread));
    assert_eq!(err(k.take_return(init_thread).unwrap()), Error::PeerDied);
}

#[test]
fn quota_exhaustion_is_an_error_and_the_task_runs_on() {
    let (mut k, init, _) = boot();
    let mut made = 0;
    loop {
        let r = now(&mut k, Sys::EndpointCreate, 0, [0; 7]);
        if r.status != 0 {
            assert_eq!(err(r), Error::QuotaExceeded);
            break;
        }
        made += 1;
        assert!(made < 10_000, "quota never ran out");
    }
    let (used, limit) = k.task(init).unwrap().quota();
    assert!(used <= limit);
    assert_eq!(made, ((QUOTA - cost::THREAD) / (cost::ENDPOINT + cost::CAPABILITY)) as usize);
    // Closing handles does not free the objects (they belong to the task), revoking does.
    ok(now(&mut k, Sys::DebugWrite, CONSOLE, [TEXT_AT, 5, 0, 0, 0, 0, 0]));
}

#[test]
fn a_woken_higher_priority_thread_preempts_at_once() {
    let (mut k, _, _) = boot();
    let n = ok(now(&mut k, Sys::NotificationCreate, 0, [0; 7]))[0] as u32;
    let (_, low) = spawn(&mut k, 5);
    let high = k.current().unwrap();
    // init (63) waits; the low thread runs and signals; init preempts it immediately.
    sys(&mut k, Sys::Wait, n, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(low));
    sys(&mut k, Sys::Signal, n, [0b101, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(high));
    assert_eq!(ok(k.take_return(high).unwrap())[0], 0b101);
    // Signals before a wait are kept.
    ok(now(&mut k, Sys::Signal, n, [0b10, 0, 0, 0, 0, 0, 0]));
    assert_eq!(ok(now(&mut k, Sys::Wait, n, [0; 7]))[0], 0b10);
    assert_eq!(err(now(&mut k, Sys::Wait, n, [0; 7])), Error::WouldBlock);
}

#[test]
fn yield_takes_the_fast_path_only_when_nothing_else_could_run() {
    let (mut k, _, _) = boot();
    assert!(k.fast_yield(), "alone: yielding changes nothing");
    let (_, _) = spawn(&mut k, 63);
    assert!(!k.fast_yield(), "a peer of the same priority must get the CPU");
    let (mut k, _, _) = boot();
    spawn(&mut k, 3);
    assert!(k.fast_yield(), "a lower priority never runs on a yield");
}

#[test]
fn round_robin_within_a_priority_on_slice_end() {
    let (mut k, _, a) = boot();
    let (_, b) = spawn(&mut k, 63);
    assert_eq!(k.schedule(), Some(a));
    k.tick(TIMESLICE_NS);
    assert_eq!(k.schedule(), Some(b));
    k.tick(2 * TIMESLICE_NS);
    assert_eq!(k.schedule(), Some(a));
    sys(&mut k, Sys::Yield, 0, [0; 7]);
    assert_eq!(k.schedule(), Some(b));
}

#[test]
fn the_timer_is_needed_only_for_timeouts_and_for_peers_waiting_on_a_slice() {
    let (mut k, _, a) = boot();
    // Alone: no timeout, nobody waiting for the CPU: no timer interrupt at all (tickless).
    assert_eq!(k.schedule(), Some(a));
    assert_eq!(k.next_deadline(), None);
    // A peer of the same priority waits: the slice end.
    let (_, b) = spawn(&mut k, 63);
    assert_eq!(k.schedule(), Some(a));
    assert_eq!(k.next_deadline(), Some(TIMESLICE_NS));
    // A sleeper's deadline, when earlier than the slice end.
    sys(&mut k, Sys::Sleep, 0, [3_000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(b));
    assert_eq!(k.next_deadline(), Some(3_000));
    k.tick(3_000);
    assert_eq!(k.schedule(), Some(b), "the woken thread waits for the slice end of b");
    assert_eq!(k.next_deadline(), Some(TIMESLICE_NS));
    // A lower priority waiting does not need a slice end.
    let _low = spawn(&mut k, 5);
    sys(&mut k, Sys::Sleep, 0, [50_000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(a));
    assert_eq!(k.next_deadline(), Some(53_000));
}

#[test]
fn a_fault_goes_to_the_supervisor_which_resumes_the_thread() {
    let (mut k, init, supervisor) = boot();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let Object::Endpoint(ep_id) = k.task(init).unwrap().caps.get(Handle(ep)).unwrap().object else { panic!() };
    let (child_task, child) = second_task(&mut k, 10);
    k.set_supervisor(child_task, ep_id, 0xc0de);
    // The supervisor waits; the child runs and faults.
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(child));
    k.fault(Fault { vector: 14, error_code: 4, address: 0xdead, rip: 0x40_1234 });
    assert_eq!(k.schedule(), Some(supervisor));
    let m = ok(k.take_return(supervisor).unwrap());
    assert_eq!((m[0] as u32, m[1], m[2], m[3], m[4], m[6]), (label::FAULT, 14, 4, 0xdead, 0x40_1234, 0xc0de));
    assert_eq!(abi::syscall::info::thread(m[0]), child.index(), "the faulting thread's number");
    // Resume: reply; the child is ready again, with no result written over its registers.
    ok(now(&mut k, Sys::Reply, 0, [0; 7]));
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(child));
    assert_eq!(k.take_return(child), None, "a resumed fault keeps its registers");
    // Without a supervisor a fault ends the task.
    let (lone, _) = second_task(&mut k, 1);
    let lone_thread = *k.task(lone).unwrap().threads.first().unwrap();
    k.end_task(child_task, 0);
    assert_eq!(k.schedule(), Some(lone_thread));
    k.fault(Fault { vector: 6, error_code: 0, address: 0, rip: 0 });
    assert!(k.task(lone).is_none());
    let ended: Vec<_> = core::iter::from_fn(|| k.take_ended()).collect();
    assert_eq!(ended.last().unwrap().status, -7);
}

#[test]
fn the_last_thread_exiting_ends_the_task() {
    let (mut k, init, first) = boot();
    let (_, second) = spawn(&mut k, 63);
    sys(&mut k, Sys::ThreadExit, 0, [0; 7]);
    assert_eq!(k.schedule(), Some(second));
    assert!(k.thread(first).is_none());
    assert!(k.task(init).is_some());
    sys(&mut k, Sys::ThreadExit, 0, [0; 7]);
    assert_eq!(k.schedule(), None);
    assert_eq!(k.take_ended().unwrap(), TaskEnd { name: "init".into(), status: 0, was_init: true });
}

/// A storm of random system calls with random arguments from a fixed seed: the model must
/// never panic, and its invariants (every thread in exactly one place) must hold.
#[test]
fn random_system_calls_never_break_the_model() {
    for seed in 1..=20u64 {
        let (mut k, _, _) = boot();
        let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for step in 0..3_000u64 {
            match k.schedule() {
                None => k.tick(k.now() + TIMESLICE_NS),
                Some(_) => {
                    let number = next() % (Sys::ALL.len() as u64 + 2);
                    let number = if number == Sys::Exit as u64 { Sys::Yield as u64 } else { number };
                    let handle = match next() % 3 {
                        0 => next() as u32,
                        _ => Handle::new_for_tests((next() % 8) as usize, 0).0,
                    };
                    let mut a = [0u64; 7];
                    for w in a.iter_mut() {
                        *w = match next() % 4 {
                            0 => next(),
                            1 => next() % 16,
                            2 => TEXT_AT + next() % 16,
                            _ => 0,
                        };
                    }
                    a[6] = next() % 50_000; // bounded timeouts so the storm moves on
                    k.syscall(&Args { rax: number | (handle as u64) << 32, a });
                    if step % 7 == 0 {
                        k.tick(k.now() + next() % 20_000);
                    }
                }
            }
            check_invariants(&k);
        }
    }
}

fn check_invariants(k: &Kernel<Fake>) {
    let mut running = 0;
    for (id, t) in k.threads.iter() {
        let queued = k.run_queue.remove_would_find(t.priority, id);
        match t.state {
            State::Ready => assert!(queued || k.handoff == Some(id), "ready thread {id:?} not in the run queue"),
            State::Running => {
                running += 1;
                assert_eq!(k.current, Some(id));
            }
            State::Calling(ep) => assert!(k.endpoints.get(ep).is_some_and(|e| e.callers.contains(&id))),
            State::Receiving(ep) => assert!(k.endpoints.get(ep).is_some_and(|e| e.receivers.contains(&id))),
            State::Waiting(n) => assert!(k.notifications.get(n).is_some_and(|x| x.waiters.contains(&id))),
            State::AwaitingReply(s) => assert!(k.thread(s).is_some_and(|s| s.serving == Some(id))),
            State::Sleeping => assert!(t.timer.is_some()),
            // A detached call is held by exactly one task, whose reply capability answers it.
            State::Detached(seq) => {
                let holders = k.tasks.iter().filter(|(_, task)| task.detached.contains(&(id, seq))).count();
                assert_eq!(holders, 1, "detached call {seq} of {id:?}");
            }
        }
        assert!(t.priority >= t.base_priority);
        if t.state != State::Ready {
            assert!(!queued, "{id:?} is {:?} but queued", t.state);
        }
    }
    assert!(running <= 1);
    for (_, task) in k.tasks.iter() {
        assert!(task.used <= task.quota);
    }
}

const BIG_QUOTA: u64 = 1 << 30;

fn boot_big() -> (Kernel<Fake>, TaskId, ThreadId) {
    let mut k = Kernel::new(fake());
    let init = k.create_init("init", space(TEXT_AT, b"child"), BIG_QUOTA, 0x40_0000, 0x7000, DEVICES).unwrap();
    let t = k.schedule().unwrap();
    (k, init, t)
}

fn pages_of(k: &Kernel<Fake>, task: TaskId) -> Vec<(u64, u64)> {
    k.task(task).unwrap().space.pages.iter().map(|(v, (f, _))| (*v, *f)).collect()
}

#[test]
fn memory_objects_map_with_their_rights_and_unmap_everywhere_on_revoke() {
    let (mut k, init, _) = boot_big();
    let m = ok(now(&mut k, Sys::MemoryCreate, 0, [3 * 4096, 0, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(ok(now(&mut k, Sys::CapInfo, m, [0; 7]))[3], 3 * 4096);
    assert_eq!(k.machine.live_frames.len(), 3);
    ok(now(&mut k, Sys::MemoryMap, m, [0, 0x20_0000, 0, 3 * 4096, map::READ | map::WRITE, 0, 0]));
    assert_eq!(pages_of(&k, init).len(), 3);
    // Overlap, misalignment, beyond the object, no permissions: refused, nothing changes.
    assert_eq!(err(now(&mut k, Sys::MemoryMap, m, [0, 0x20_1000, 0, 4096, map::READ, 0, 0])), Error::AddressInUse);
    assert_eq!(err(now(&mut k, Sys::MemoryMap, m, [0, 0x30_0001, 0, 4096, map::READ, 0, 0])), Error::InvalidArgument);
    assert_eq!(
        err(now(&mut k, Sys::MemoryMap, m, [0, 0x30_0000, 4096, 3 * 4096, map::READ, 0, 0])),
        Error::InvalidArgument
    );
    assert_eq!(err(now(&mut k, Sys::MemoryMap, m, [0, 0x30_0000, 0, 4096, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(
        err(now(&mut k, Sys::MemoryMap, m, [0, 0x7fff_ffff_f000, 0, 8192, map::READ, 0, 0])),
        Error::InvalidArgument
    );
    assert_eq!(pages_of(&k, init).len(), 3);
    // A read-only copy cannot map writable.
    let ro = ok(now(&mut k, Sys::CapDuplicate, m, [(Rights::READ | Rights::DUPLICATE).0 as u64, 0, 0, 0, 0, 0, 0]))[0]
        as u32;
    assert_eq!(err(now(&mut k, Sys::MemoryMap, ro, [0, 0x30_0000, 0, 4096, map::WRITE, 0, 0])), Error::MissingRights);
    ok(now(&mut k, Sys::MemoryMap, ro, [0, 0x30_0000, 4096, 4096, map::READ, 0, 0]));
    assert!(!k.task(init).unwrap().space.pages[&0x30_0000].1, "mapped read-only");
    // Unmap one mapping; revoke takes the rest everywhere and frees the frames.
    ok(now(&mut k, Sys::MemoryUnmap, 0, [0, 0x30_0000, 0, 0, 0, 0, 0]));
    assert_eq!(err(now(&mut k, Sys::MemoryUnmap, 0, [0, 0x30_0000, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    ok(now(&mut k, Sys::CapRevoke, m, [0; 7]));
    assert!(pages_of(&k, init).is_empty());
    assert!(k.machine.live_frames.is_empty());
    assert_eq!(err(now(&mut k, Sys::MemoryMap, ro, [0, 0x30_0000, 0, 4096, map::READ, 0, 0])), Error::InvalidHandle);
}

#[test]
fn tasks_made_from_user_space_share_memory_and_give_everything_back() {
    let (mut k, init, _) = boot_big();
    let (used_before, _) = k.task(init).unwrap().quota();
    let child = ok(now(&mut k, Sys::TaskCreate, 0, [1 << 20, 64, 20, TEXT_AT, 5, 0, 0]))[0] as u32;
    let (used_after, _) = k.task(init).unwrap().quota();
    assert_eq!(used_after - used_before, (1 << 20) + cost::TASK + cost::CAPABILITY);
    // Memory owned by (and charged to) the child, mapped into both.
    let m = ok(now(&mut k, Sys::MemoryCreate, child, [8192, 0, 0, 0, 0, 0, 0]))[0] as u32;
    ok(now(&mut k, Sys::MemoryMap, m, [child as u64, 0x40_0000, 0, 8192, map::READ | map::EXECUTE, 0, 0]));
    ok(now(&mut k, Sys::MemoryMap, m, [0, 0x60_0000, 0, 8192, map::READ | map::WRITE, 0, 0]));
    let Object::Task(child_id) = k.task(init).unwrap().caps.get(Handle(child)).unwrap().object else { panic!() };
    assert_eq!(pages_of(&k, child_id)[0].1, pages_of(&k, init)[0].1, "the same frame in both");
    assert!(k.task(child_id).unwrap().quota().0 >= 8192);
    // Give it the console and a thread; its supervisor is an endpoint of init's.
    let console_there =
        ok(now(&mut k, Sys::TaskGrant, child, [CONSOLE as u64, Rights::WRITE.0 as u64, 0, 0, 0, 0, 0]))[0];
    assert_eq!(console_there, abi::syscall::init_caps::CONSOLE as u64, "first capability of the child");
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    ok(now(&mut k, Sys::TaskSetSupervisor, child, [ep as u64, 0, 0, 0, 0, 0, 0]));
    ok(now(&mut k, Sys::ThreadCreate, child, [0x40_0000, 0x7000, 20, 0, 0, 0, 0]));
    assert_eq!(err(now(&mut k, Sys::ThreadCreate, child, [0x40_0000, 0x7000, 21, 0, 0, 0, 0])), Error::InvalidArgument);
    // Ending the child: its mappings and memory go, everywhere, and init's quota comes back.
    ok(now(&mut k, Sys::CapRevoke, child, [0; 7]));
    assert!(k.task(child_id).is_none());
    assert!(pages_of(&k, init).is_empty(), "the child's memory was unmapped from init too");
    assert!(k.machine.live_frames.is_empty());
    let (used_end, _) = k.task(init).unwrap().quota();
    // What init still holds: an endpoint and four capabilities (child, memory, endpoint, thread).
    assert_eq!(used_end, used_before + cost::ENDPOINT + 4 * cost::CAPABILITY);
    assert_eq!(err(now(&mut k, Sys::MemoryMap, m, [0, 0x60_0000, 0, 8192, map::READ, 0, 0])), Error::InvalidHandle);
}

/// A child task with a personality: init's endpoint (badged 0x1a) gets its system calls.
/// Returns (endpoint handle, child task handle, child thread handle, child thread id).
fn foreign_child(k: &mut Kernel<Fake>) -> (u32, u32, u32, ThreadId) {
    let child = ok(now(k, Sys::TaskCreate, 0, [1 << 20, 64, 20, TEXT_AT, 5, 0, 0]))[0] as u32;
    let ep = ok(now(k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let badged = ok(now(k, Sys::CapDuplicate, ep, [Rights::ALL.0 as u64, 0x1a, 0, 0, 0, 0, 0]))[0] as u32;
    ok(now(k, Sys::TaskSetPersonality, child, [badged as u64, 0, 0, 0, 0, 0, 0]));
    let thread = ok(now(k, Sys::ThreadCreate, child, [0x40_0000, 0x7000, 20, 7, 0, 0, 0]))[0] as u32;
    let task = k.current_task().unwrap();
    let Object::Thread(id) = k.task(task).unwrap().caps.get(Handle(thread)).unwrap().object else { panic!() };
    (ep, child, thread, id)
}

#[test]
fn a_task_with_a_personality_sends_its_system_calls_and_gets_only_rax_back() {
    let (mut k, _, server) = boot_big();
    let (ep, child, thread, child_thread) = foreign_child(&mut k);
    // The server waits; the child runs and makes what would be Tutti's `Exit`: a message.
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(child_thread));
    // Nor does the number of Tutti's `Yield` (Linux `open`) take the yield fast path.
    assert!(!k.fast_yield(), "a foreign thread's rax {} is its personality's", Sys::Yield as u64);
    k.syscall(&Args { rax: Sys::Exit as u64, a: [11, 22, 33, 44, 55, 66, 77] });
    assert_eq!(k.schedule(), Some(server), "the personality server serves the call");
    let got = ok(k.take_return(server).unwrap());
    assert_eq!(got[0] as u32, abi::syscall::label::SYSCALL);
    assert_eq!(&got[1..5], &[Sys::Exit as u64, 11, 22, 33], "number, rdi, rsi, rdx");
    assert_eq!(got[6], 0x1a, "the personality capability's badge");
    let thread_number = ok(now(&mut k, Sys::CapInfo, thread, [0; 7]))[4];
    assert_eq!(abi::syscall::info::thread(got[0]) as u64, thread_number, "which thread called");
    // It reads the thread's other registers, changes its rip, and answers 42.
    ok(now(&mut k, Sys::ThreadRegs, thread, [WRITABLE_AT, 0, 0, 0, 0, 0, 0]));
    let rip = u64::from_le_bytes(k.machine.written[16 * 8..17 * 8].try_into().unwrap());
    assert_eq!(rip, 0x40_0000);
    ok(now(&mut k, Sys::Reply, 0, [0, 42, 0, 0, 0, 0, 0]));
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(child_thread));
    assert_eq!(k.take_return(child_thread), None, "no Tutti result: the other registers stay");
    assert_eq!(k.take_rax(child_thread), Some(42));
    assert!(k.task(k.current_task().unwrap()).is_some(), "Exit did not end the child");
    let _ = child;
    // Again through ReplyRecv's fast path.
    k.syscall(&Args { rax: 39, a: [0; 7] });
    assert_eq!(k.schedule(), Some(server));
    assert_eq!(ok(k.take_return(server).unwrap())[1], 39);
    sys(&mut k, Sys::ReplyRecv, ep, [0, 43, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(child_thread));
    assert_eq!((k.take_return(child_thread), k.take_rax(child_thread)), (None, Some(43)));
}

#[test]
fn a_foreign_call_whose_server_is_gone_fails_with_enosys() {
    let (mut k, _, server) = boot_big();
    let (ep, _, _, child_thread) = foreign_child(&mut k);
    // The server is busy (asleep); the child's call waits on the endpoint.
    sys(&mut k, Sys::Sleep, 0, [1_000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(child_thread));
    k.syscall(&Args { rax: 39, a: [0; 7] });
    assert_eq!(k.schedule(), None);
    k.tick(1_000);
    assert_eq!(k.schedule(), Some(server));
    ok(k.take_return(server).unwrap());
    // The endpoint goes away before anyone received the call.
    ok(now(&mut k, Sys::CapRevoke, ep, [0; 7]));
    sys(&mut k, Sys::Sleep, 0, [1_000, 0, 0, 0, 0, 0, 0]);
    assert_eq!(k.schedule(), Some(child_thread));
    assert_eq!(k.take_rax(child_thread), Some(FOREIGN_FAILED));
    assert_eq!(k.take_return(child_thread), None);
}

#[test]
fn thread_registers_and_personalities_check_their_arguments() {
    let (mut k, _, _) = boot_big();
    let (ep, child, thread, _) = foreign_child(&mut k);
    // Writing from memory that is not there, a bad direction, the wrong object, too few rights,
    // the calling thread itself.
    assert_eq!(err(now(&mut k, Sys::ThreadRegs, thread, [0x9000, 1, 0, 0, 0, 0, 0])), Error::BadAddress);
    assert_eq!(err(now(&mut k, Sys::ThreadRegs, thread, [WRITABLE_AT, 2, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::ThreadRegs, thread, [0x9000, 0, 0, 0, 0, 0, 0])), Error::BadAddress);
    assert_eq!(err(now(&mut k, Sys::ThreadRegs, ep, [WRITABLE_AT, 0, 0, 0, 0, 0, 0])), Error::WrongType);
    let me = ok(now(&mut k, Sys::ThreadCreate, 0, [0x40_0000, 0x7000, 20, 0, 0, 0, 0]))[0] as u32;
    let weak = ok(now(&mut k, Sys::CapDuplicate, me, [Rights::DUPLICATE.0 as u64, 0, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::ThreadRegs, weak, [WRITABLE_AT, 0, 0, 0, 0, 0, 0])), Error::MissingRights);
    let current = k.current().unwrap();
    let task = k.current_task().unwrap();
    let own = k.grant(task, Capability { object: Object::Thread(current), rights: Rights::ALL, badge: 0 }).unwrap();
    assert_eq!(err(now(&mut k, Sys::ThreadRegs, own.0, [WRITABLE_AT, 0, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    // A personality needs an endpoint, and a task cannot give itself one.
    assert_eq!(err(now(&mut k, Sys::TaskSetPersonality, child, [thread as u64, 0, 0, 0, 0, 0, 0])), Error::WrongType);
    assert_eq!(err(now(&mut k, Sys::TaskSetPersonality, 0, [ep as u64, 0, 0, 0, 0, 0, 0])), Error::InvalidArgument);
}

#[test]
fn task_creation_checks_its_arguments() {
    let (mut k, _, _) = boot_big();
    assert_eq!(err(now(&mut k, Sys::TaskCreate, 0, [1 << 20, 64, 20, 0xdead_0000, 5, 0, 0])), Error::BadAddress);
    assert_eq!(err(now(&mut k, Sys::TaskCreate, 0, [1 << 20, 64, 20, TEXT_AT, 500, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::TaskCreate, 0, [1 << 20, 0, 20, TEXT_AT, 5, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::TaskCreate, 0, [u64::MAX, 64, 20, TEXT_AT, 5, 0, 0])), Error::QuotaExceeded);
    assert_eq!(err(now(&mut k, Sys::TaskCreate, 0, [1 << 20, 64, 64, TEXT_AT, 5, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::MemoryCreate, 0, [0, 0, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::MemoryCreate, 0, [1 << 40, 0, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    // The fake machine has 512 frames: a bigger object fails cleanly and leaks nothing.
    assert_eq!(err(now(&mut k, Sys::MemoryCreate, 0, [600 * 4096, 0, 0, 0, 0, 0, 0])), Error::OutOfMemory);
    assert!(k.machine.live_frames.is_empty());
}

#[test]
fn the_boot_archive_is_a_read_only_memory_object() {
    let (mut k, init, _) = boot();
    let archive = abi::syscall::init_caps::BOOT_ARCHIVE;
    let info = ok(now(&mut k, Sys::CapInfo, archive, [0; 7]));
    assert_eq!((info[0], info[3]), (ObjectType::Memory as u64, 5000));
    assert_eq!(
        err(now(&mut k, Sys::MemoryMap, archive, [0, 0x50_0000, 0, 8192, map::WRITE, 0, 0])),
        Error::MissingRights
    );
    ok(now(&mut k, Sys::MemoryMap, archive, [0, 0x50_0000, 0, 8192, map::READ, 0, 0]));
    assert_eq!(pages_of(&k, init), [(0x50_0000, 0x10_0000), (0x50_1000, 0x10_1000)]);
    k.end_task(init, 0);
    assert!(k.machine.live_frames.is_empty(), "borrowed frames are never freed");
}

/// Not a test: a loop of call / reply_recv round trips for profiling the model on the host
/// (`valgrind --tool=callgrind <test binary> --ignored --exact kernel::tests::profile_round_trips`).
#[test]
#[ignore]
fn profile_round_trips() {
    let (mut k, _, client) = boot_big();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let (_, server) = spawn(&mut k, 63);
    sys(&mut k, Sys::Call, ep, [1, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(server));
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), Some(server));
    for _ in 0..100_000 {
        sys(&mut k, Sys::ReplyRecv, ep, [1, 2, 3, 4, 5, 0, FOREVER]);
        assert_eq!(k.schedule(), Some(client));
        k.take_return(client);
        sys(&mut k, Sys::Call, ep, [1, 2, 3, 4, 5, 0, FOREVER]);
        assert_eq!(k.schedule(), Some(server));
        k.take_return(server);
    }
}

use abi::syscall::init_caps::{DEVICE_MEMORY, IO_PORTS, IRQ_LINES};

#[test]
fn io_ports_through_capabilities_within_their_range_only() {
    let (mut k, _, _) = boot();
    ok(now(&mut k, Sys::PortWrite, IO_PORTS, [0x3f8, 1, b'x' as u64, 0, 0, 0, 0]));
    assert_eq!(k.machine.ports[&0x3f8], b'x' as u32);
    assert_eq!(ok(now(&mut k, Sys::PortRead, IO_PORTS, [0x3f8, 1, 0, 0, 0, 0, 0]))[0], b'x' as u64);
    // The kernel's own ports are out of reach whatever the capability.
    assert_eq!(err(now(&mut k, Sys::PortWrite, IO_PORTS, [0x43, 1, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::PortRead, IO_PORTS, [0x3e, 4, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::PortRead, IO_PORTS, [0x3f8, 3, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    // A subrange: COM1's eight ports, read-only.
    let com1 = ok(now(&mut k, Sys::CapSubrange, IO_PORTS, [0x3f8, 8, 0, 0, 0, 0, 0]))[0] as u32;
    let info = ok(now(&mut k, Sys::CapInfo, com1, [0; 7]));
    assert_eq!((info[0], info[3], info[4]), (ObjectType::IoPorts as u64, 8, 0x3f8));
    ok(now(&mut k, Sys::PortRead, com1, [0x3ff, 1, 0, 0, 0, 0, 0]));
    assert_eq!(err(now(&mut k, Sys::PortRead, com1, [0x400, 1, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::PortRead, com1, [0x3fe, 4, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::CapSubrange, com1, [4, 8, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    let read_only = ok(now(&mut k, Sys::CapDuplicate, com1, [Rights::READ.0 as u64, 0, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::PortWrite, read_only, [0x3f8, 1, 0, 0, 0, 0, 0])), Error::MissingRights);
}

#[test]
fn interrupts_signal_their_notification_and_stay_masked_until_acknowledged() {
    let (mut k, _, me) = boot();
    let n = ok(now(&mut k, Sys::NotificationCreate, 0, [0; 7]))[0] as u32;
    let rtc = ok(now(&mut k, Sys::CapSubrange, IRQ_LINES, [8, 1, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(err(now(&mut k, Sys::IrqBind, rtc, [9, n as u64, 1, 0, 0, 0, 0])), Error::InvalidArgument);
    ok(now(&mut k, Sys::IrqBind, rtc, [8, n as u64, 0b100, 0, 0, 0, 0]));
    assert!(!k.machine.masked[8]);
    sys(&mut k, Sys::Wait, n, [0, 0, 0, 0, 0, 0, FOREVER]);
    assert_eq!(k.schedule(), None);
    // The machine masks the line when it fires.
    k.machine.masked[8] = true;
    k.interrupt(8);
    assert_eq!(k.schedule(), Some(me));
    assert_eq!(ok(k.take_return(me).unwrap())[0], 0b100);
    ok(now(&mut k, Sys::IrqAck, rtc, [8, 0, 0, 0, 0, 0, 0]));
    assert!(!k.machine.masked[8]);
    // An unbound line is ignored.
    k.interrupt(3);
    k.interrupt(200);
}

#[test]
fn device_memory_maps_and_splits_but_never_executes() {
    let (mut k, init, _) = boot();
    assert_eq!(
        err(now(&mut k, Sys::MemoryMap, DEVICE_MEMORY, [0, 0x50_0000, 0, 4096, map::READ | map::EXECUTE, 0, 0])),
        Error::MissingRights
    );
    let fb = ok(now(&mut k, Sys::CapSubrange, DEVICE_MEMORY, [0x1000, 0x2000, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(ok(now(&mut k, Sys::CapInfo, fb, [0; 7]))[4], 0xfd00_1000);
    ok(now(&mut k, Sys::MemoryMap, fb, [0, 0x50_0000, 0, 0x2000, map::READ | map::WRITE, 0, 0]));
    assert_eq!(pages_of(&k, init), [(0x50_0000, 0xfd00_1000), (0x50_1000, 0xfd00_2000)]);
    assert_eq!(err(now(&mut k, Sys::CapSubrange, fb, [0, 0x3000, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::CapSubrange, fb, [1, 0x1000, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    // Revoking the part unmaps it and frees nothing (the device owns those addresses).
    ok(now(&mut k, Sys::CapRevoke, fb, [0; 7]));
    assert!(pages_of(&k, init).is_empty());
    assert!(k.machine.live_frames.is_empty());
}

#[test]
fn contiguous_memory_for_dma_reports_its_physical_address() {
    let (mut k, _, _) = boot_big();
    let dma = ok(now(&mut k, Sys::MemoryCreate, 0, [3 * 4096, 1, 0, 0, 0, 0, 0]))[0] as u32;
    let info = ok(now(&mut k, Sys::CapInfo, dma, [0; 7]));
    assert_eq!((info[3], info[4]), (3 * 4096, 4096), "the fake machine's first frame");
    let plain = ok(now(&mut k, Sys::MemoryCreate, 0, [4096, 0, 0, 0, 0, 0, 0]))[0] as u32;
    assert_eq!(ok(now(&mut k, Sys::CapInfo, plain, [0; 7]))[4], 0, "no address for scattered memory");
    assert_eq!(err(now(&mut k, Sys::MemoryCreate, 0, [8 << 20, 1, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::MemoryCreate, 0, [4096, 2, 0, 0, 0, 0, 0])), Error::InvalidArgument);
    assert_eq!(err(now(&mut k, Sys::CapSubrange, dma, [0, 4096, 0, 0, 0, 0, 0])), Error::WrongType);
    ok(now(&mut k, Sys::CapRevoke, dma, [0; 7]));
    ok(now(&mut k, Sys::CapRevoke, plain, [0; 7]));
    assert!(k.machine.live_frames.is_empty());
}

#[test]
fn a_bound_notification_ends_a_receive_and_a_watch_reports_a_task_ending() {
    let (mut k, _, me) = boot_big();
    let ep = ok(now(&mut k, Sys::EndpointCreate, 0, [0; 7]))[0] as u32;
    let n = ok(now(&mut k, Sys::NotificationCreate, 0, [0; 7]))[0] as u32;
    ok(now(&mut k, Sys::NotificationBind, n, [0; 7]));
    // Bits pending before the receive end it at once.
    ok(now(&mut k, Sys::Signal, n, [0b1, 0, 0, 0, 0, 0, 0]));
    let r = ok(now(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]));
    assert_eq!((r[0] as u32, r[1]), (label::NOTIFY, 0b1));
    // A child task watched by the notification: its end wakes the receiving thread.
    let child = ok(now(&mut k, Sys::TaskCreate, 0, [1 << 20, 8, 10, TEXT_AT, 5, 0, 0]))[0] as u32;
    ok(now(&mut k, Sys::TaskWatch, child, [n as u64, 0b100, 0, 0, 0, 0, 0]));
    ok(now(&mut k, Sys::ThreadCreate, child, [0x40_0000, 0x7000, 5, 0, 0, 0, 0]));
    sys(&mut k, Sys::Recv, ep, [0, 0, 0, 0, 0, 0, FOREVER]);
    let child_thread = k.schedule().expect("the child runs while init waits");
    assert_ne!(child_thread, me);
    sys(&mut k, Sys::Exit, 0, [0; 7]);
    assert_eq!(k.schedule(), Some(me));
    let r = ok(k.take_return(me).unwrap());
    assert_eq!((r[0] as u32, r[1]), (label::NOTIFY, 0b100));
    // A second thread cannot bind the same notification; unbinding works.
    let (_, _) = spawn(&mut k, 1);
    ok(now(&mut k, Sys::NotificationBind, n, [1, 0, 0, 0, 0, 0, 0]));
    assert_eq!(err(now(&mut k, Sys::TaskWatch, 12345, [n as u64, 1, 0, 0, 0, 0, 0])), Error::InvalidHandle);
    // Without a binding the endpoint alone decides.
    ok(now(&mut k, Sys::Signal, n, [0b1, 0, 0, 0, 0, 0, 0]));
    assert_eq!(err(now(&mut k, Sys::Recv, ep, [0; 7])), Error::WouldBlock);
}

#[test]
fn a_revoked_memory_object_gives_its_quota_back_to_its_owner() {
    let (mut k, init, _) = boot_big();
    let (before, _) = k.task(init).unwrap().quota();
    let child = ok(now(&mut k, Sys::TaskCreate, 0, [1 << 20, 64, 20, TEXT_AT, 5, 0, 0]))[0] as u32;
    let with_child = k.task(init).unwrap().quota().0;
    // Owned by init, mapped into the child: revoking it refunds init at once, many times over.
    for _ in 0..64 {
        let m = ok(now(&mut k, Sys::MemoryCreate, 0, [64 << 10, 0, 0, 0, 0, 0, 0]))[0] as u32;
        ok(now(&mut k, Sys::MemoryMap, m, [child as u64, 0x40_0000, 0, 64 << 10, map::READ, 0, 0]));
        assert!(k.task(init).unwrap().quota().0 > with_child + (64 << 10));
        ok(now(&mut k, Sys::CapRevoke, m, [0; 7]));
        ok(now(&mut k, Sys::CapClose, m, [0; 7]));
        assert_eq!(k.task(init).unwrap().quota().0, with_child, "the object's pages and record came back");
    }
    assert!(k.machine.live_frames.is_empty());
    ok(now(&mut k, Sys::CapRevoke, child, [0; 7]));
    ok(now(&mut k, Sys::CapClose, child, [0; 7]));
    assert_eq!(k.task(init).unwrap().quota().0, before);
}
