//! init: the first task and the supervisor of the system services (docs/services.md).
//!
//! It reads the manifest `/etc/services` from the boot archive (docs/manifest.md). Without one
//! it greets and exits 0; with a malformed one it prints every error with its line and exits 1
//! without starting anything. Otherwise it starts each service in its own task, with exactly
//! the capabilities the manifest lists, and is every service's fault supervisor. It notices
//! when a service ends (a fault message on its endpoint, or a `TaskWatch` on its task signalling
//! the notification bound to init's thread), restarts it per its policy with exponential
//! backoff, reports a service
//! that crashes in a loop, and answers status queries (`svc::boot::Request::Status`).
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::{init_caps, map, rights, ObjectType};
use alloc::string::String;
use alloc::vec::Vec;
use manifest::{Capability, Restart};
use rt::ipc::{Cap, Client, Payload};
use rt::spawn::{spawn, Spawn};
use rt::sys::{self, Error, Handle, Message, FOREVER_NS};
use svc::boot::{exit, state, Request, Response};
use svc::names::{self as names_proto, Names};

rt::entry!(main);

/// Where init maps the boot archive to read the manifest.
const ARCHIVE_AT: u64 = 0x5100_0000_0000;
const MANIFEST: &str = "etc/services";
/// The label of a fault message from the kernel.
const FAULT: u32 = abi::syscall::label::FAULT;
/// Badges of the supervisor capabilities: this bit and the slot.
const FAULT_BADGE: u64 = 1 << 32;
/// A service that ran this long before ending starts over at its initial backoff.
const STABLE_NS: u64 = 10_000_000_000;
/// Quick failures in a row after which init reports a crash loop.
const LOOP_FAILURES: u32 = 3;
/// How long init waits for the name service to hand over its endpoint.
const NAMES_WAIT_NS: u64 = 2_000_000_000;
/// Timeout of init's calls to the name service (it must never hang init).
const NAMES_CALL_NS: u64 = 1_000_000_000;

/// The page-fault vector, and the error-code bits for "the page was present" and "user mode".
const PAGE_FAULT: u64 = 14;
const FAULT_PRESENT: u64 = 1;
const FAULT_USER: u64 = 4;

/// A user-mode fault on a missing page in the shared-buffer window (`rt::ipc::SHARED_WINDOW`):
/// a buffer whose owner died under a copy (docs/services.md).
fn is_shared_window_miss(vector: u64, code: u64, address: u64) -> bool {
    vector == PAGE_FAULT
        && code & FAULT_PRESENT == 0
        && code & FAULT_USER != 0
        && rt::ipc::SHARED_WINDOW.contains(&address)
}

/// Maps a fresh zeroed page, owned by and charged to `task`, at the faulting page: the copy
/// that faulted finishes there and `SharedBuffer` then sees its object gone.
fn repair_shared_window(task: Handle, address: u64) -> Result<(), Error> {
    let page = address & !0xfff;
    let memory = sys::memory_create(task, 4096)?;
    let mapped = sys::memory_map(memory, task, page, 0, 4096, map::READ | map::WRITE);
    let _ = sys::cap_close(memory);
    mapped
}

/// How a service last ended.
#[derive(Clone, Copy, Debug)]
enum Ending {
    Status(i32),
    Fault(u64),
    Vanished,
}

/// A capability init made for a service once, kept for every start.
enum Made {
    Device { cap: Handle, response: fn(Cap, &Capability) -> Response, capability: Capability },
    Endpoint(svc::Name),
    Broken,
}

struct Slot {
    spec: manifest::Service,
    badge: u64,
    made: Vec<Made>,
    task: Option<Handle>,
    state: u8,
    restarts: u32,
    last: Option<Ending>,
    reported: Option<i32>,
    started_at: u64,
    quick_failures: u32,
    next_backoff_ms: u64,
    /// An admin asked for a restart: start again at once when it has ended.
    restart_now: bool,
    restart_at: u64,
}

struct Init {
    endpoint: Handle,
    /// Bound to init's thread and watching every service task: a service's end wakes init's
    /// receive at once (no polling).
    ends: Handle,
    slots: Vec<Slot>,
    /// The name service's endpoint (unbadged: init is its administrator).
    names: Option<Handle>,
    /// Set when a `shutdown-on-exit` service ended for good: init's exit status.
    shutdown: Option<i32>,
    /// The name service was (re)started: send it every running service's rights.
    reallow: bool,
}

fn main() -> i32 {
    rt::println!("init: hello from user space");
    let text = match read_manifest() {
        Ok(Some(text)) => text,
        Ok(None) => {
            rt::println!("init: no /etc/services, nothing to start");
            return 0;
        }
        Err(e) => {
            rt::println!("init: cannot read the boot archive: {e}");
            return 1;
        }
    };
    let manifest = match manifest::parse(&text) {
        Ok(m) => m,
        Err(errors) => {
            for e in &errors {
                rt::println!("init: /etc/services {e}");
            }
            rt::println!("init: /etc/services has {} error(s); starting nothing", errors.len());
            return 1;
        }
    };
    let Ok(endpoint) = sys::endpoint_create() else {
        rt::println!("init: cannot create its endpoint");
        return 1;
    };
    let Ok(ends) = sys::notification_create().and_then(|n| sys::notification_bind(n).map(|()| n)) else {
        rt::println!("init: cannot create its notification");
        return 1;
    };
    let slots = manifest.services.into_iter().enumerate().map(|(i, spec)| Slot::new(i, spec)).collect();
    let mut init = Init { endpoint, ends, slots, names: None, shutdown: None, reallow: false };
    init.start_all();
    init.run()
}

impl Slot {
    fn new(index: usize, spec: manifest::Service) -> Slot {
        let made = spec.grants.iter().map(|g| make(&spec.name, &g.capability)).collect();
        Slot {
            badge: index as u64 + 1,
            next_backoff_ms: spec.backoff.initial_ms,
            spec,
            made,
            task: None,
            state: state::STOPPED,
            restarts: 0,
            last: None,
            reported: None,
            started_at: 0,
            quick_failures: 0,
            restart_at: 0,
            restart_now: false,
        }
    }
}

/// Makes the capability of one manifest grant from init's whole ranges.
fn make(service: &str, capability: &Capability) -> Made {
    let made = match capability {
        Capability::Ports { first, last } => {
            rt::device::subrange(init_caps::IO_PORTS, *first as u64, (*last - *first) as u64 + 1).map(|cap| {
                Made::Device {
                    cap,
                    capability: capability.clone(),
                    response: |cap, c| match c {
                        Capability::Ports { first, last } => {
                            Response::Ports { cap, first: *first, count: *last - *first + 1 }
                        }
                        _ => Response::Failed,
                    },
                }
            })
        }
        Capability::Irq { line } => {
            rt::device::subrange(init_caps::IRQ_LINES, *line as u64, 1).map(|cap| Made::Device {
                cap,
                capability: capability.clone(),
                response: |cap, c| match c {
                    Capability::Irq { line } => Response::Irq { cap, line: *line },
                    _ => Response::Failed,
                },
            })
        }
        Capability::DeviceMemory { base, len } => rt::device::range(init_caps::DEVICE_MEMORY)
            .and_then(|(start, size)| {
                if *base < start || base + len > start + size {
                    return Err(Error::InvalidArgument);
                }
                rt::device::subrange(init_caps::DEVICE_MEMORY, base - start, *len)
            })
            .map(|cap| Made::Device {
                cap,
                capability: capability.clone(),
                response: |cap, c| match c {
                    Capability::DeviceMemory { base, len } => Response::DeviceMemory { cap, base: *base, len: *len },
                    _ => Response::Failed,
                },
            }),
        Capability::Endpoint { service } => Ok(Made::Endpoint(svc::name(service).unwrap_or_default())),
        Capability::KernelLog => {
            sys::cap_duplicate(init_caps::CONSOLE, rights::READ | rights::WRITE | rights::DUPLICATE, 0).map(|cap| {
                Made::Device { cap, capability: capability.clone(), response: |cap, _| Response::KernelLog { cap } }
            })
        }
        Capability::BootArchive => sys::cap_duplicate(init_caps::BOOT_ARCHIVE, rights::READ | rights::DUPLICATE, 0)
            .map(|cap| Made::Device {
                cap,
                capability: capability.clone(),
                response: |cap, _| Response::BootArchive { cap, len: sys::memory_size(cap.0).unwrap_or(0) },
            }),
    };
    made.unwrap_or_else(|e| {
        rt::println!("init: {service}: cannot make {capability:?}: {e}");
        Made::Broken
    })
}

impl Init {
    /// Starts the name service first (and waits for its endpoint), then the others in order.
    fn start_all(&mut self) {
        if let Some(i) = self.slots.iter().position(|s| s.spec.name == manifest::NAME_SERVICE) {
            self.start(i);
            let deadline = sys::time_now() + NAMES_WAIT_NS;
            while self.names.is_none() && sys::time_now() < deadline && self.slots[i].task.is_some() {
                self.step();
            }
            if self.names.is_none() {
                rt::println!("init: the name service did not hand over its endpoint");
            }
        }
        for i in 0..self.slots.len() {
            if self.slots[i].task.is_none() && self.slots[i].state == state::STOPPED {
                self.start(i);
            }
        }
    }

    /// Serves and supervises until a `shutdown-on-exit` service has ended for good.
    fn run(&mut self) -> i32 {
        loop {
            if let Some(status) = self.shutdown {
                for slot in &mut self.slots {
                    if let Some(task) = slot.task.take() {
                        let _ = sys::cap_revoke(task);
                    }
                }
                rt::println!("init: shutting down (status {status})");
                return status;
            }
            self.step();
        }
    }

    /// One round: serve a message (or time out), notice ended services, restart due ones.
    fn step(&mut self) {
        let now = sys::time_now();
        let wake =
            self.slots.iter().filter(|s| s.state == state::BACKING_OFF).map(|s| s.restart_at).min().unwrap_or(u64::MAX);
        // Woken by a message, by a service's end (the bound notification) or for the next
        // restart that is due.
        let timeout = if wake == u64::MAX { FOREVER_NS } else { wake.saturating_sub(now).max(1) };
        match sys::recv(self.endpoint, timeout) {
            Ok(received) if received.message.label == abi::syscall::label::NOTIFY => {}
            Ok(received) => self.handle(received.badge, received.message),
            Err(Error::TimedOut | Error::WouldBlock) => {}
            Err(e) => rt::println!("init: receive failed: {e}"),
        }
        for i in 0..self.slots.len() {
            if let Some(task) = self.slots[i].task {
                if sys::cap_info(task).is_err() {
                    let how = match self.slots[i].reported {
                        Some(status) => Ending::Status(status),
                        None => Ending::Vanished,
                    };
                    self.ended(i, how);
                }
            }
        }
        let now = sys::time_now();
        for i in 0..self.slots.len() {
            if self.slots[i].state == state::BACKING_OFF && self.slots[i].restart_at <= now {
                self.slots[i].restarts += 1;
                self.start(i);
            }
        }
    }

    fn handle(&mut self, badge: u64, message: Message) {
        if message.label == FAULT {
            let slot = (badge & !FAULT_BADGE) as usize;
            let Some(s) = self.slots.get(slot.wrapping_sub(1)) else { return };
            let [vector, code, address, rip] = message.words;
            if let Some(task) = s.task.filter(|_| is_shared_window_miss(vector, code, address)) {
                if repair_shared_window(task, address).is_ok() {
                    rt::println!(
                        "init: service {} touched a vanished shared buffer at {address:#x}: mapped a zeroed page",
                        s.spec.name
                    );
                    if let Err(e) = sys::reply(&Message::default()) {
                        rt::println!("init: cannot resume service {}: {e}", s.spec.name);
                    }
                    return;
                }
            }
            rt::println!(
                "init: service {} faulted: vector {vector}, error code {code:#x}, address {address:#x}, rip {rip:#x}",
                s.spec.name
            );
            if let Some(task) = s.task {
                let _ = sys::cap_revoke(task);
            }
            self.ended(slot - 1, Ending::Fault(vector));
            return;
        }
        let reply = match Request::decode(&message) {
            Ok(request) => self.answer(badge, request),
            Err(e) => {
                if let Some(cap) = message.cap {
                    let _ = sys::cap_close(cap);
                }
                rt::ipc::rejection(message.label, e)
            }
        };
        if let Err(e) = sys::reply(&reply) {
            rt::println!("init: cannot reply: {e}");
        }
        if let Some(cap) = reply.cap {
            let _ = sys::cap_close(cap);
        }
        if core::mem::take(&mut self.reallow) {
            for i in 0..self.slots.len() {
                if self.slots[i].task.is_some() {
                    self.allow(i);
                }
            }
        }
    }

    fn answer(&mut self, badge: u64, request: Request) -> Message {
        let Some(index) = (badge as usize).checked_sub(1).filter(|i| *i < self.slots.len()) else {
            return Response::Denied.encode();
        };
        let response = match request {
            Request::Capability { index: n } => match self.slots[index].made.get(n as usize) {
                None => Response::NoMore,
                Some(Made::Endpoint(name)) => Response::Endpoint { name: *name },
                Some(Made::Broken) => Response::Failed,
                Some(Made::Device { cap, response, capability }) => {
                    let wanted = rights::READ | rights::WRITE | rights::CONTROL | rights::DUPLICATE;
                    match sys::cap_duplicate(*cap, wanted, 0) {
                        Ok(copy) => response(Cap(copy), capability),
                        Err(_) => Response::Failed,
                    }
                }
            },
            Request::Names => match self.names {
                Some(names) => match sys::cap_duplicate(names, rights::SEND | rights::GRANT | rights::DUPLICATE, badge)
                {
                    Ok(copy) => Response::NamesEndpoint { cap: Cap(copy) },
                    Err(_) => Response::Unavailable,
                },
                None => Response::Unavailable,
            },
            Request::Exiting { status } => {
                self.slots[index].reported = Some(status);
                Response::Done
            }
            Request::Status { index: n } => match self.slots.get(n as usize) {
                None => Response::NoMore,
                Some(s) => {
                    let (exit_kind, exit_value) = match s.last {
                        None => (exit::NONE, 0),
                        Some(Ending::Status(v)) => (exit::STATUS, v),
                        Some(Ending::Fault(v)) => (exit::FAULT, v as i32),
                        Some(Ending::Vanished) => (exit::VANISHED, 0),
                    };
                    Response::Service {
                        name: svc::name(&s.spec.name).unwrap_or_default(),
                        state: s.state,
                        restarts: s.restarts,
                        exit_kind,
                        exit_value,
                    }
                }
            },
            Request::Argument { index: n, offset } => match self.slots[index].spec.args.get(n as usize) {
                None => Response::NoMore,
                Some(text) => {
                    let rest = text.as_bytes().get(offset as usize..).unwrap_or_default();
                    let len = rest.len().min(svc::boot::ARG_PART);
                    let mut bytes = [0; svc::boot::ARG_PART];
                    bytes[..len].copy_from_slice(&rest[..len]);
                    Response::ArgumentPart { total: text.len() as u16, len: len as u8, bytes }
                }
            },
            Request::Usage { index: n } => match self.slots.get(n as usize).map(|s| s.task) {
                None => Response::NoMore,
                Some(None) => Response::Unavailable,
                Some(Some(task)) => match sys::task_info(task) {
                    Ok(info) => Response::Usage { used: info.used, quota: info.quota, pages: info.pages },
                    Err(_) => Response::Unavailable,
                },
            },
            Request::Kill { index: n } | Request::Restart { index: n } if !self.slots[index].spec.admin => {
                let _ = n;
                Response::Denied
            }
            Request::Kill { index: n } => match self.slots.get(n as usize) {
                None => Response::NoMore,
                Some(s) => {
                    if let Some(task) = s.task {
                        rt::println!(
                            "init: killing service {} (asked by {})",
                            s.spec.name,
                            self.slots[index].spec.name
                        );
                        let _ = sys::cap_revoke(task);
                    }
                    Response::Done
                }
            },
            Request::Restart { index: n } => match self.slots.get_mut(n as usize) {
                None => Response::NoMore,
                Some(s) => {
                    s.restart_now = true;
                    match s.task {
                        Some(task) => {
                            let _ = sys::cap_revoke(task);
                        }
                        None => {
                            s.state = state::BACKING_OFF;
                            s.restart_at = 0;
                        }
                    }
                    Response::Done
                }
            },
            Request::Provide { endpoint } => {
                if self.slots[index].spec.name != manifest::NAME_SERVICE {
                    let _ = sys::cap_close(endpoint.0);
                    Response::Denied
                } else {
                    if let Some(old) = self.names.replace(endpoint.0) {
                        let _ = sys::cap_close(old);
                    }
                    rt::println!("init: the name service is ready");
                    // Once the reply has freed the name service: tell it who may do what.
                    self.reallow = true;
                    Response::Done
                }
            }
        };
        response.encode()
    }

    /// Tells the name service what the service in `index` may register and look up.
    fn allow(&self, index: usize) {
        let Some(names) = self.names else { return };
        let names = Client::<Names>::new(names);
        let slot = &self.slots[index];
        let own = svc::name(&slot.spec.name).unwrap_or_default();
        let mut requests = alloc::vec![names_proto::Request::Allow { client: slot.badge, name: own, register: true }];
        for made in &slot.made {
            if let Made::Endpoint(name) = made {
                requests.push(names_proto::Request::Allow { client: slot.badge, name: *name, register: false });
            }
        }
        for request in requests {
            if let Err(e) = names.call(&request, NAMES_CALL_NS) {
                rt::println!("init: the name service refused {request:?}: {e}");
            }
        }
    }

    fn start(&mut self, index: usize) {
        let slot = &mut self.slots[index];
        let spec = &slot.spec;
        slot.reported = None;
        let started = spawn(&Spawn {
            path: &spec.program,
            name: &spec.name,
            quota: spec.quota,
            priority: spec.priority,
            cap: Some((self.endpoint, rights::SEND | rights::GRANT, slot.badge)),
        });
        let task = match started {
            Ok(task) => task,
            Err(e) => {
                rt::println!("init: cannot start service {} ({}): {e}", spec.name, spec.program);
                slot.state = state::FAILED;
                return;
            }
        };
        let supervised = sys::cap_duplicate(self.endpoint, rights::SEND, FAULT_BADGE | slot.badge).and_then(|cap| {
            let set = sys::task_set_supervisor(task, cap);
            let _ = sys::cap_close(cap);
            set
        });
        let supervised = supervised.and_then(|()| sys::task_watch(task, self.ends, 1));
        if let Err(e) = supervised {
            rt::println!("init: cannot supervise service {}: {e}", spec.name);
            let _ = sys::cap_revoke(task);
            slot.state = state::FAILED;
            return;
        }
        slot.task = Some(task);
        slot.state = state::RUNNING;
        slot.started_at = sys::time_now();
        if slot.restarts == 0 {
            rt::println!("init: started service {} ({}, priority {})", spec.name, spec.program, spec.priority);
        } else {
            rt::println!("init: restarted service {} (restart {})", spec.name, slot.restarts);
        }
        self.allow(index);
    }

    /// The service in `index` has ended `how`: restart it, back off, or let it be.
    fn ended(&mut self, index: usize, how: Ending) {
        let now = sys::time_now();
        let names = self.names;
        let slot = &mut self.slots[index];
        if let Some(task) = slot.task.take() {
            let _ = sys::cap_close(task);
        }
        slot.last = Some(how);
        let failed = !matches!(how, Ending::Status(0));
        let what = match how {
            Ending::Status(s) => alloc::format!("exited with status {s}"),
            Ending::Fault(v) => alloc::format!("was ended by fault vector {v}"),
            Ending::Vanished => String::from("ended without reporting (panic or killed)"),
        };
        if slot.spec.name == manifest::NAME_SERVICE {
            if let Some(old) = self.names.take() {
                let _ = sys::cap_close(old);
            }
        } else if let Some(names) = names {
            let forget = names_proto::Request::Forget { client: slot.badge };
            let _ = Client::<Names>::new(names).call(&forget, NAMES_CALL_NS);
        }
        if core::mem::take(&mut slot.restart_now) {
            rt::println!("init: service {} {what}; restarting now (asked)", slot.spec.name);
            slot.quick_failures = 0;
            slot.next_backoff_ms = slot.spec.backoff.initial_ms;
            slot.state = state::BACKING_OFF;
            slot.restart_at = now;
            return;
        }
        let again = match slot.spec.restart {
            Restart::Always => true,
            Restart::OnFailure => failed,
            Restart::Never => false,
        };
        if !again {
            rt::println!("init: service {} {what}; not restarted (policy)", slot.spec.name);
            slot.state = state::STOPPED;
            if slot.spec.shutdown_on_exit {
                // The machine ends with the service's own status (1 if it reported none).
                self.shutdown = Some(match how {
                    Ending::Status(status) => status,
                    Ending::Fault(_) | Ending::Vanished => 1,
                });
            }
            return;
        }
        if now.saturating_sub(slot.started_at) >= STABLE_NS {
            slot.quick_failures = 0;
            slot.next_backoff_ms = slot.spec.backoff.initial_ms;
        }
        slot.quick_failures += 1;
        let delay_ms = slot.next_backoff_ms;
        slot.next_backoff_ms = (delay_ms * 2).min(slot.spec.backoff.max_ms);
        slot.restart_at = now + delay_ms * 1_000_000;
        slot.state = state::BACKING_OFF;
        if slot.quick_failures >= LOOP_FAILURES {
            rt::println!(
                "init: service {} {what}; crashing in a loop ({} failures in a row), backing off {delay_ms} ms",
                slot.spec.name,
                slot.quick_failures
            );
        } else {
            rt::println!("init: service {} {what}; restarting in {delay_ms} ms", slot.spec.name);
        }
    }
}

/// The manifest's bytes from the boot archive, `None` if there is none.
fn read_manifest() -> Result<Option<Vec<u8>>, Error> {
    let r = sys::syscall(abi::syscall::Sys::CapInfo, init_caps::BOOT_ARCHIVE, [0; 7])?;
    if r[0] != ObjectType::Memory as u64 {
        return Err(Error::WrongType);
    }
    let size = r[3];
    sys::memory_map(init_caps::BOOT_ARCHIVE, 0, ARCHIVE_AT, 0, size.next_multiple_of(4096), map::READ)?;
    // Safety: the archive is mapped read-only at ARCHIVE_AT for `size` bytes; nothing writes to
    // it, and it is unmapped only after the copy below.
    let archive = unsafe { core::slice::from_raw_parts(ARCHIVE_AT as *const u8, size as usize) };
    // A malformed archive has no manifest (the kernel checked it at boot anyway).
    let found = newc::Archive::new(archive)
        .ok()
        .and_then(|a| a.find(MANIFEST))
        .filter(|e| e.is_file())
        .map(|e| e.data.to_vec());
    let _ = sys::memory_unmap(0, ARCHIVE_AT);
    Ok(found)
}
