//! The kernel's objects and state machines, without hardware: tasks, threads, capabilities,
//! endpoints (call / receive / reply), notifications, scheduling, timeouts, faults, quotas.
//!
//! The architecture layer (`os/kernel`) owns the hardware side: it turns a trap into a call of
//! [`Kernel::syscall`], [`Kernel::tick`] or [`Kernel::fault`], then asks [`Kernel::schedule`]
//! which thread runs next and resumes it, first writing any result the model left for that
//! thread ([`Kernel::take_return`]) into its registers. Everything the model needs from the
//! machine (address spaces, user memory, the console, register contexts) goes through the
//! [`Machine`] trait, so the whole model runs in host unit tests with a fake machine.
//!
//! Design (after seL4): the kernel never blocks and keeps no per-thread kernel stack; a
//! blocked thread is a state in the model, and a result for it waits in the model until it
//! runs again. Every path is bounded: no operation iterates over all threads or tasks.

mod ipc;
mod memory;
#[cfg(test)]
mod tests;

pub use memory::{Access, MapFailure, MemoryObject};

use crate::arena::{Arena, Id};
use crate::cap::{CapError, CapTable, Capability, Handle, Rights};
use crate::sched::{RunQueue, TimerKey, TimerQueue, MAX_PRIORITY};
use abi::syscall::{regs, Args, Error, ObjectType, Return, Sys, DEBUG_WRITE_MAX, FOREVER, LOG_READ_MAX, MESSAGE_WORDS};
use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;

pub type TaskId = Id<TaskTag>;
pub type ThreadId = Id<ThreadTag>;
pub type EndpointId = Id<Endpoint>;
pub type NotificationId = Id<Notification>;
pub type MemoryId = Id<MemoryObject>;

/// Marker types naming task and thread ids (those objects are stored with the machine's
/// address-space and context types, which ids need not carry).
pub struct TaskTag;
pub struct ThreadTag;

/// A user address that is not mapped with the access asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BadAddress;

/// What the model needs from the machine.
pub trait Machine {
    /// An address space.
    type Space;
    /// A thread's saved registers.
    type Context;

    /// Reads user memory of `space` at `addr` into `buf`; fails if any byte is not mapped
    /// user-readable.
    fn read_user(&mut self, space: &Self::Space, addr: u64, buf: &mut [u8]) -> Result<(), BadAddress>;
    /// Copies `buf` to user address `addr`, which must be mapped user-writable in `space`.
    fn write_user(&mut self, space: &Self::Space, addr: u64, buf: &[u8]) -> Result<(), BadAddress>;
    /// Copies kernel log bytes from position `from` into `out`: the position of the first byte
    /// copied, the count, and the log's end (`logring::LogRing::read`).
    fn log_read(&mut self, from: u64, out: &mut [u8]) -> (u64, usize, u64);
    /// The user registers saved in `context`, in `abi::syscall::regs` order.
    fn context_regs(&self, context: &Self::Context) -> [u64; regs::COUNT];
    /// Replaces them; false (nothing changed) if a value is not acceptable, e.g. a `rip`,
    /// `rsp` or `fs` base outside the user half.
    fn set_context_regs(&mut self, context: &mut Self::Context, regs: &[u64; regs::COUNT]) -> bool;
    /// Nanoseconds since boot, read now (the model's clock otherwise advances only at `tick`).
    /// A machine without a clock of its own returns 0 and drives time through `tick` alone.
    fn now(&mut self) -> u64;
    /// Prints on the kernel console.
    fn console_write(&mut self, text: &str);
    /// The registers of a new thread that starts at `entry` with `stack` and `arg` in `rdi`.
    fn new_context(&mut self, entry: u64, stack: u64, arg: u64) -> Self::Context;
    /// A new, empty address space.
    fn new_space(&mut self) -> Option<Self::Space>;
    /// A zeroed physical frame.
    fn alloc_frame(&mut self) -> Option<u64>;
    /// `pages` zeroed frames that follow each other physically; returns the first.
    fn alloc_contiguous(&mut self, pages: u64) -> Option<u64>;
    /// Gives back a frame from `alloc_frame` or `alloc_contiguous`.
    fn free_frame(&mut self, frame: u64);
    /// Maps one page of `space` at `vaddr` to `frame`.
    fn map_page(&mut self, space: &mut Self::Space, vaddr: u64, frame: u64, access: Access) -> Result<(), MapFailure>;
    /// Removes the page of `space` at `vaddr` (the frame stays with its owner).
    fn unmap_page(&mut self, space: &mut Self::Space, vaddr: u64);
    /// Whether user space may use I/O ports `[port, port + width)` at all (some belong to the
    /// kernel whatever the capabilities say).
    fn port_allowed(&self, port: u16, width: u8) -> bool;
    /// Reads an I/O port (`width` 1, 2 or 4 bytes).
    fn port_read(&mut self, port: u16, width: u8) -> u32;
    /// Writes an I/O port.
    fn port_write(&mut self, port: u16, width: u8, value: u32);
    /// Masks or unmasks an interrupt line.
    fn irq_mask(&mut self, line: u8, masked: bool);
}

/// The device resources the first task receives capabilities for.
#[derive(Clone, Copy, Debug)]
pub struct Devices {
    /// The boot archive: physical start and length.
    pub archive: (u64, u64),
    /// Device memory: physical start and length.
    pub device_memory: (u64, u64),
    /// Interrupt lines 0 .. `irq_lines`.
    pub irq_lines: u8,
}

/// The most notifications that watch one task (`TaskWatch`).
pub const MAX_WATCHERS: usize = 8;

/// What a receive returns when the bound notification was signalled.
pub(super) fn notify_return(bits: u64) -> Return {
    Return::ok([abi::syscall::label::NOTIFY as u64, bits, 0, 0, 0, 0, 0])
}

/// The most interrupt lines the kernel routes.
pub const MAX_IRQ_LINES: usize = 24;

/// The objects a capability can designate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Object {
    /// The kernel console (for `debug_write`).
    Console,
    Task(TaskId),
    Thread(ThreadId),
    Endpoint(EndpointId),
    Notification(NotificationId),
    Memory(MemoryId),
    /// I/O ports `base .. base + len`.
    IoPorts {
        base: u16,
        len: u32,
    },
    /// Interrupt lines `base .. base + count`.
    IrqLines {
        base: u8,
        count: u8,
    },
    /// The detached call of `caller` (`ReplyDetach`), valid while the caller is in
    /// `State::Detached(seq)`.
    Reply {
        caller: ThreadId,
        seq: u32,
    },
}

impl Object {
    fn kind(self) -> ObjectType {
        match self {
            Object::Console => ObjectType::Console,
            Object::Task(_) => ObjectType::Task,
            Object::Thread(_) => ObjectType::Thread,
            Object::Endpoint(_) => ObjectType::Endpoint,
            Object::Notification(_) => ObjectType::Notification,
            Object::Memory(_) => ObjectType::Memory,
            Object::IoPorts { .. } => ObjectType::IoPorts,
            Object::IrqLines { .. } => ObjectType::IrqLines,
            Object::Reply { .. } => ObjectType::Reply,
        }
    }
}

/// `rax` of a foreign system call that could not be delivered or answered: `-ENOSYS`.
pub const FOREIGN_FAILED: u64 = -38i64 as u64;

/// What objects cost against a task's quota, in bytes. Memory pages count at their size; kernel
/// heap memory counts eight times over, because the kernel heap is an eighth of physical memory:
/// so even a task whose quota is all of memory cannot exhaust the kernel heap.
pub mod cost {
    pub const THREAD: u64 = 8 * 1024;
    pub const TASK: u64 = 16 * 1024;
    pub const ENDPOINT: u64 = 8 * 128;
    pub const NOTIFICATION: u64 = 8 * 64;
    pub const CAPABILITY: u64 = 8 * 32;
    /// A memory object's record; each page costs 4 KiB plus its 8-byte entry (x8).
    pub const MEMORY: u64 = 8 * 128;
    pub const PAGE: u64 = 4096 + 8 * 8;
    /// A mapping: its records (x8) and, at worst, three new page-table frames.
    pub const MAPPING: u64 = 8 * 64 + 3 * 4096;
}

/// A task: an address space, a capability table, a memory quota, its threads.
pub struct Task<S> {
    pub name: String,
    pub space: S,
    caps: CapTable<Object>,
    quota: u64,
    used: u64,
    threads: Vec<ThreadId>,
    /// Objects this task created; they die with it.
    owned: Vec<Object>,
    max_priority: u8,
    /// Where fault messages go: an endpoint and the badge they carry.
    supervisor: Option<(EndpointId, u64)>,
    /// Where its threads' `syscall` instructions go, as messages (`TaskSetPersonality`): the
    /// task runs another system's ABI (Linux) served in user space.
    personality: Option<(EndpointId, u64)>,
    /// The task that created this one and the quota it gave (returned when this one ends).
    parent: Option<(TaskId, u64)>,
    /// Memory objects mapped into this task: (object, address, pages).
    mappings: Vec<(MemoryId, u64, u64)>,
    /// Notifications to signal when this task ends (`TaskWatch`).
    watchers: Vec<(NotificationId, u64)>,
    /// Calls it detached and has not answered yet: when it ends, their callers get `PeerDied`.
    detached: Vec<(ThreadId, u32)>,
}

impl<S> Task<S> {
    fn charge(&mut self, bytes: u64) -> Result<(), Error> {
        let used = self.used.checked_add(bytes).filter(|u| *u <= self.quota).ok_or(Error::QuotaExceeded)?;
        self.used = used;
        Ok(())
    }
    fn refund(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }
    /// Bytes of quota in use and the limit.
    pub fn quota(&self) -> (u64, u64) {
        (self.used, self.quota)
    }
}

/// What a thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// In the run queue.
    Ready,
    /// On the CPU.
    Running,
    /// Queued on an endpoint with a message, waiting for a receiver.
    Calling(EndpointId),
    /// Its call was received; waiting for that thread's reply.
    AwaitingReply(ThreadId),
    /// Waiting on an endpoint for a caller.
    Receiving(EndpointId),
    /// Waiting on a notification.
    Waiting(NotificationId),
    Sleeping,
    /// Its call was received and detached into a reply capability (`ReplyDetach`) with this
    /// number; waiting for `ReplyWith`.
    Detached(u32),
}

/// A message: an info word (label and flags), data words, maybe a capability, and (when
/// received) the badge of the capability it was sent through.
#[derive(Clone, Copy, Debug, Default)]
pub struct Message {
    pub info: u64,
    pub words: [u64; MESSAGE_WORDS],
    pub cap: Option<Capability<Object>>,
    pub badge: u64,
}

/// A thread.
pub struct Thread<C> {
    pub task: TaskId,
    pub state: State,
    base_priority: u8,
    priority: u8,
    /// The result to write into its registers when it next runs.
    pending: Option<Return>,
    timer: Option<TimerKey>,
    /// The caller this thread owes a reply.
    serving: Option<ThreadId>,
    /// The message it is sending while `Calling`.
    outgoing: Message,
    /// Its call is a fault message: the reply resumes it with its registers untouched.
    in_fault: bool,
    /// Its task has a personality: its `syscall` instructions become messages.
    foreign: bool,
    /// Its call is a foreign system call: the reply's word 0 becomes its `rax`, nothing else.
    in_foreign_call: bool,
    /// The `rax` to write when it next runs (the result of a foreign system call).
    pending_rax: Option<u64>,
    /// A notification whose signals also end its receives (`NotificationBind`).
    bound: Option<NotificationId>,
    pub context: C,
}

impl<C> Thread<C> {
    /// What waits for it to be written into its registers before it runs: a result
    /// ([`Kernel::take_return`]) and the `rax` of a foreign system call ([`Kernel::take_rax`]),
    /// both taken at once (the switch path looks the thread up once).
    pub fn take_results(&mut self) -> (Option<Return>, Option<u64>) {
        (self.pending.take(), self.pending_rax.take())
    }
}

/// An endpoint: callers waiting for a receiver, or receivers waiting for a caller.
#[derive(Default)]
pub struct Endpoint {
    callers: VecDeque<ThreadId>,
    receivers: VecDeque<ThreadId>,
}

/// A notification: a word of pending signal bits and the threads waiting for them.
#[derive(Default)]
pub struct Notification {
    bits: u64,
    waiters: VecDeque<ThreadId>,
    /// The thread it is bound to (`NotificationBind`).
    bound: Option<ThreadId>,
}

/// Why a task could not be created.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreateError {
    Quota,
}

/// The length of a timeslice, in nanoseconds.
pub const TIMESLICE_NS: u64 = 10_000_000;

/// A CPU exception in user mode, as the architecture reports it.
#[derive(Clone, Copy, Debug)]
pub struct Fault {
    pub vector: u64,
    pub error_code: u64,
    pub address: u64,
    pub rip: u64,
}

/// What happened to a task that ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TaskEnd {
    pub name: String,
    pub status: i64,
    pub was_init: bool,
}

/// The kernel's state.
pub struct Kernel<M: Machine> {
    pub machine: M,
    tasks: Arena<Task<M::Space>, TaskTag>,
    threads: Arena<Thread<M::Context>, ThreadTag>,
    endpoints: Arena<Endpoint>,
    notifications: Arena<Notification>,
    memory: Arena<MemoryObject>,
    /// Where each interrupt line's interrupts go: a notification and the bits to signal.
    irq_bindings: [Option<(NotificationId, u64)>; MAX_IRQ_LINES],
    run_queue: RunQueue<ThreadId>,
    timers: TimerQueue<ThreadId>,
    /// Numbers detached calls (`State::Detached`), so a reply capability answers only its call.
    next_detach: u32,
    current: Option<ThreadId>,
    /// The current thread must give way at the next schedule (a higher priority woke, or it
    /// yielded, or its slice ended): `Some(true)` to the back of its level, `Some(false)` to
    /// the front.
    give_way: Option<bool>,
    /// A thread woken by the current one's IPC that should run next without passing through
    /// the run queue (the caller blocks, its receiver runs: the common case of every call and
    /// reply). Taken by the next `schedule`.
    handoff: Option<ThreadId>,
    now: u64,
    slice_end: u64,
    init: Option<TaskId>,
    ended: VecDeque<TaskEnd>,
}

impl<M: Machine> Kernel<M> {
    pub fn new(machine: M) -> Kernel<M> {
        Kernel {
            machine,
            tasks: Arena::default(),
            threads: Arena::default(),
            endpoints: Arena::default(),
            notifications: Arena::default(),
            memory: Arena::default(),
            irq_bindings: [None; MAX_IRQ_LINES],
            run_queue: RunQueue::default(),
            timers: TimerQueue::default(),
            next_detach: 0,
            current: None,
            give_way: None,
            handoff: None,
            now: 0,
            slice_end: 0,
            init: None,
            ended: VecDeque::new(),
        }
    }

    // ----- lookups ------------------------------------------------------------------------

    pub fn task(&self, id: TaskId) -> Option<&Task<M::Space>> {
        self.tasks.get(id)
    }
    fn task_mut(&mut self, id: TaskId) -> Option<&mut Task<M::Space>> {
        self.tasks.get_mut(id)
    }
    pub fn thread(&self, id: ThreadId) -> Option<&Thread<M::Context>> {
        self.threads.get(id)
    }
    pub fn thread_mut(&mut self, id: ThreadId) -> Option<&mut Thread<M::Context>> {
        self.threads.get_mut(id)
    }
    fn t(&mut self, id: ThreadId) -> &mut Thread<M::Context> {
        self.threads.get_mut(id).expect("a live thread id")
    }

    /// The thread on the CPU.
    pub fn current(&self) -> Option<ThreadId> {
        self.current
    }

    /// The task of the thread on the CPU.
    pub fn current_task(&self) -> Option<TaskId> {
        self.current.and_then(|t| self.thread(t)).map(|t| t.task)
    }

    /// Nanoseconds since boot, as last told by [`Kernel::tick`].
    pub fn now(&self) -> u64 {
        self.now
    }

    /// Tasks that ended since the last call, oldest first.
    pub fn take_ended(&mut self) -> Option<TaskEnd> {
        self.ended.pop_front()
    }

    /// The fast path of `Yield`: with no other ready thread of at least the current one's
    /// priority and nothing woken, yielding changes nothing, and the caller goes on with status
    /// 0 and its registers untouched. Returns false when the general path must run.
    pub fn fast_yield(&self) -> bool {
        // A foreign thread's `syscall` with rax 2 is its personality's call (Linux `open`).
        let current = self.current.and_then(|c| self.thread(c)).filter(|t| !t.foreign);
        let Some(priority) = current.map(|t| t.priority) else { return false };
        self.handoff.is_none() && self.give_way.is_none() && self.run_queue.highest().is_none_or(|h| h < priority)
    }

    /// The number of live tasks.
    pub fn task_count(&self) -> usize {
        self.tasks.len()
    }

    // ----- creation -----------------------------------------------------------------------

    /// Creates the first task, with `quota` bytes, its initial capabilities (`init_caps`: the
    /// console, and the boot archive at physical `archive` as a read-only memory object), and
    /// one thread at `entry`/`stack` at the highest priority.
    pub fn create_init(
        &mut self,
        name: &str,
        space: M::Space,
        quota: u64,
        entry: u64,
        stack: u64,
        devices: Devices,
    ) -> Result<TaskId, CreateError> {
        let id = self.new_task(name, space, quota, 4096, MAX_PRIORITY);
        let archive = self.memory.insert(MemoryObject::physical(devices.archive.0, devices.archive.1, false));
        let device = self.memory.insert(MemoryObject::physical(devices.device_memory.0, devices.device_memory.1, true));
        let task = self.task_mut(id).expect("just created");
        task.owned.push(Object::Memory(archive));
        task.owned.push(Object::Memory(device));
        let all = Rights::ALL;
        for cap in [
            Capability { object: Object::Console, rights: all, badge: 0 },
            Capability {
                object: Object::Memory(archive),
                rights: Rights::READ | Rights::DUPLICATE | Rights::GRANT,
                badge: 0,
            },
            Capability { object: Object::IoPorts { base: 0, len: 0x1_0000 }, rights: all, badge: 0 },
            Capability {
                object: Object::IrqLines { base: 0, count: devices.irq_lines.min(MAX_IRQ_LINES as u8) },
                rights: all,
                badge: 0,
            },
            Capability {
                object: Object::Memory(device),
                rights: Rights::ALL.intersect(Rights(!Rights::EXECUTE.0)),
                badge: 0,
            },
        ] {
            task.caps.insert(cap).map_err(|_| CreateError::Quota)?;
        }
        self.new_thread(id, entry, stack, 0, MAX_PRIORITY).map_err(|_| CreateError::Quota)?;
        self.init = Some(id);
        Ok(id)
    }

    fn new_task(&mut self, name: &str, space: M::Space, quota: u64, cap_limit: usize, max_priority: u8) -> TaskId {
        self.tasks.insert(Task {
            name: String::from(name),
            space,
            caps: CapTable::new(cap_limit),
            quota,
            used: 0,
            threads: Vec::new(),
            owned: Vec::new(),
            max_priority,
            supervisor: None,
            personality: None,
            parent: None,
            mappings: Vec::new(),
            watchers: Vec::new(),
            detached: Vec::new(),
        })
    }

    fn new_thread(&mut self, task: TaskId, entry: u64, stack: u64, arg: u64, priority: u8) -> Result<ThreadId, Error> {
        self.task_mut(task).ok_or(Error::InvalidHandle)?.charge(cost::THREAD)?;
        let context = self.machine.new_context(entry, stack, arg);
        let foreign = self.task(task).is_some_and(|t| t.personality.is_some());
        let id = self.threads.insert(Thread {
            task,
            state: State::Ready,
            base_priority: priority,
            priority,
            pending: None,
            timer: None,
            serving: None,
            outgoing: Message::default(),
            in_fault: false,
            foreign,
            in_foreign_call: false,
            pending_rax: None,
            bound: None,
            context,
        });
        self.task_mut(task).expect("checked above").threads.push(id);
        self.make_ready(id);
        Ok(id)
    }

    // ----- scheduling ---------------------------------------------------------------------

    fn make_ready(&mut self, id: ThreadId) {
        let thread = self.t(id);
        thread.state = State::Ready;
        let priority = thread.priority;
        self.run_queue.push_back(priority, id);
        if let Some(current) = self.current.and_then(|c| self.thread(c)) {
            if current.state == State::Running && priority > current.priority {
                self.give_way = Some(false);
            }
        }
    }

    /// Reads the machine's clock (time never goes back).
    fn refresh_now(&mut self) -> u64 {
        self.now = self.now.max(self.machine.now());
        self.now
    }

    /// When the machine's timer must next interrupt: the earliest timeout, and the end of the
    /// current slice if another thread of its priority waits for the CPU (round robin). `None`:
    /// no interrupt is needed until something else happens (tickless).
    ///
    /// A slice ends `TIMESLICE_NS` after the model's clock as last read, which may be behind the
    /// machine's (it is read at interrupts and timed waits, not on every switch, to keep IPC
    /// short): a thread can lose the CPU to a waiting peer early, never late.
    pub fn next_deadline(&self) -> Option<u64> {
        let timers = self.timers.next_deadline();
        // Cheapest test first: this runs on every return to user mode.
        let Some(waiting) = self.run_queue.highest() else { return timers };
        let current = self.current.and_then(|c| self.thread(c)).filter(|t| t.state == State::Running);
        match current {
            Some(t) if waiting >= t.priority => Some(timers.map_or(self.slice_end, |d| d.min(self.slice_end))),
            _ => timers,
        }
    }

    /// Blocks the current thread in `state`, with a timeout in nanoseconds (FOREVER: none).
    fn block_current(&mut self, state: State, timeout: u64) {
        let id = self.current.expect("a thread made the call");
        let timer = self.arm_wait(id, timeout);
        let thread = self.t(id);
        thread.state = state;
        thread.timer = timer;
    }

    /// The timer of a wait of thread `id` that starts now, for `timeout` nanoseconds (FOREVER:
    /// none).
    #[inline(always)]
    fn arm_wait(&mut self, id: ThreadId, timeout: u64) -> Option<TimerKey> {
        if timeout == FOREVER {
            return None;
        }
        let deadline = self.refresh_now().saturating_add(timeout);
        Some(self.timers.arm(deadline, id))
    }

    /// Ends a thread's wait: cancels its timer, stores its result, queues it.
    fn wake(&mut self, id: ThreadId, result: Return) {
        self.end_wait(id, result);
        self.make_ready(id);
    }

    /// What ending any wait does: the thread's timer is cancelled and `result` waits for it
    /// (unless it is resuming after a fault: it retries its instruction with its own registers).
    fn end_wait(&mut self, id: ThreadId, result: Return) {
        let thread = self.t(id);
        let timer = thread.timer.take();
        if core::mem::take(&mut thread.in_foreign_call) {
            // The reply's word 0 (r[1] of a received message) is the result; if the server is
            // gone (or anything else failed), the call fails with ENOSYS.
            thread.pending_rax = Some(if result.status == 0 { result.r[1] } else { FOREIGN_FAILED });
        } else if !core::mem::take(&mut thread.in_fault) {
            thread.pending = Some(result);
        }
        if let Some(key) = timer {
            self.timers.cancel(key);
        }
    }

    /// Like [`Kernel::wake`], for a thread the current one hands the CPU to by IPC: if the
    /// current thread then blocks and nothing of higher priority is ready, it runs next without
    /// passing through the run queue.
    fn wake_direct(&mut self, id: ThreadId, result: Return) {
        if self.handoff.is_some() {
            return self.wake(id, result);
        }
        self.end_wait(id, result);
        self.t(id).state = State::Ready;
        self.handoff = Some(id);
    }

    /// Chooses the thread to run: the current one unless it blocked, ended, yielded, used up
    /// its slice or a higher priority is ready. `None`: nothing to run (idle).
    pub fn schedule(&mut self) -> Option<ThreadId> {
        if let Some(h) = self.handoff.take() {
            let current_runs = self.current.and_then(|c| self.thread(c)).is_some_and(|t| t.state == State::Running);
            // One lookup of the thread handed to (the hottest path: every IPC switch).
            let highest = self.run_queue.highest();
            if let Some(t) = self.threads.get_mut(h).filter(|t| t.state == State::Ready) {
                if !current_runs && highest.is_none_or(|q| q <= t.priority) {
                    t.state = State::Running;
                    self.give_way = None;
                    self.current = Some(h);
                    self.slice_end = self.now.saturating_add(TIMESLICE_NS);
                    return Some(h);
                }
                self.make_ready(h);
            }
        }
        if let Some(id) = self.current {
            let running = self.thread(id).is_some_and(|t| t.state == State::Running);
            if running {
                let priority = self.thread(id).map_or(0, |t| t.priority);
                let higher = self.run_queue.highest().is_some_and(|h| h > priority);
                let peer = self.run_queue.highest().is_some_and(|h| h >= priority);
                match self.give_way.take() {
                    Some(to_back) if peer => {
                        self.t(id).state = State::Ready;
                        if to_back && !higher {
                            self.run_queue.push_back(priority, id);
                        } else {
                            self.run_queue.push_front(priority, id);
                        }
                    }
                    _ => return Some(id),
                }
            }
        }
        self.give_way = None;
        let (_, next) = self.run_queue.pop()?;
        self.t(next).state = State::Running;
        self.current = Some(next);
        self.slice_end = self.now.saturating_add(TIMESLICE_NS);
        Some(next)
    }

    /// The result waiting for `thread` (to be written into its registers before it runs).
    pub fn take_return(&mut self, thread: ThreadId) -> Option<Return> {
        self.thread_mut(thread)?.pending.take()
    }

    /// The `rax` waiting for `thread` after a foreign system call (nothing else changes).
    pub fn take_rax(&mut self, thread: ThreadId) -> Option<u64> {
        self.thread_mut(thread)?.pending_rax.take()
    }

    /// The timer interrupt: time is `now` nanoseconds since boot. Wakes sleepers and timed-out
    /// waiters and ends the current slice when it is used up.
    pub fn tick(&mut self, now: u64) {
        self.now = self.now.max(now);
        let now = self.now;
        while let Some(id) = self.timers.expired(now) {
            if let Some(thread) = self.thread_mut(id) {
                thread.timer = None;
                let state = thread.state;
                self.cancel_wait(id, state);
                let result = if state == State::Sleeping { Return::ok([0; 7]) } else { Return::err(Error::TimedOut) };
                self.wake(id, result);
            }
        }
        if self.current.is_some() && now >= self.slice_end {
            self.give_way = Some(true);
        }
    }

    /// Takes a blocked thread out of whatever queue its state puts it in.
    fn cancel_wait(&mut self, id: ThreadId, state: State) {
        match state {
            State::Calling(ep) => {
                if let Some(e) = self.endpoints.get_mut(ep) {
                    e.callers.retain(|t| *t != id);
                }
            }
            State::Receiving(ep) => {
                if let Some(e) = self.endpoints.get_mut(ep) {
                    e.receivers.retain(|t| *t != id);
                }
            }
            State::Waiting(n) => {
                if let Some(n) = self.notifications.get_mut(n) {
                    n.waiters.retain(|t| *t != id);
                }
            }
            State::AwaitingReply(server) => {
                // The server's later reply finds no caller and is dropped.
                if let Some(s) = self.thread_mut(server) {
                    if s.serving == Some(id) {
                        s.serving = None;
                        s.priority = s.base_priority;
                    }
                }
            }
            State::Ready => {
                if self.handoff == Some(id) {
                    self.handoff = None;
                } else {
                    let priority = self.t(id).priority;
                    self.run_queue.remove(priority, id);
                }
            }
            // The task holding the reply finds the caller gone (the state no longer matches).
            State::Running | State::Sleeping | State::Detached(_) => {}
        }
    }

    // ----- system calls -------------------------------------------------------------------

    /// The current thread made a system call with `args`.
    pub fn syscall(&mut self, args: &Args) {
        let Some(id) = self.current else { return };
        let t = self.t(id);
        if t.foreign {
            let (task, priority) = (t.task, t.priority);
            self.foreign_syscall(id, task, priority, args);
            return;
        }
        // The IPC fast paths first, before anything the general path builds.
        let (number, handle) = (args.number(), Handle(args.handle()));
        if (number == Sys::Call as u16 && self.fast_call(id, handle, &args.a))
            || (number == Sys::ReplyRecv as u16 && self.fast_reply_recv(id, handle, &args.a))
        {
            return;
        }
        let result = match Sys::from_number(number) {
            None => Err(Error::NoSuchCall),
            Some(sys) => self.dispatch(id, sys, args),
        };
        // A call that blocked or ended the thread leaves no result now.
        match result {
            Ok(Some(r)) => self.t(id).pending = Some(r),
            Ok(None) => {}
            Err(e) => {
                if let Some(t) = self.thread_mut(id) {
                    t.pending = Some(Return::err(e));
                }
            }
        }
    }

    fn dispatch(&mut self, id: ThreadId, sys: Sys, args: &Args) -> Result<Option<Return>, Error> {
        let task = self.t(id).task;
        let handle = Handle(args.handle());
        let a = args.a;
        let done = |r: [u64; 7]| Ok(Some(Return::ok(r)));
        match sys {
            Sys::DebugWrite => {
                self.lookup(task, handle, Rights::WRITE, ObjectType::Console)?;
                self.debug_write(task, a[0], a[1])?;
                done([0; 7])
            }
            Sys::Exit => {
                self.end_task(task, a[0] as i64);
                Ok(None)
            }
            Sys::MemoryCreate => self.memory_create(task, handle, a[0], a[1]),
            Sys::MemoryMap => self.memory_map(task, handle, a),
            Sys::MemoryUnmap => self.memory_unmap(task, Handle(a[0] as u32), a[1]),
            Sys::TaskCreate => self.task_create(task, a),
            Sys::TaskGrant => {
                let target = self.target_task(task, handle)?;
                let cap = *self
                    .task(task)
                    .ok_or(Error::InvalidHandle)?
                    .caps
                    .check(Handle(a[0] as u32), Rights::DUPLICATE)
                    .map_err(cap_error)?;
                if !self.alive(cap.object) {
                    return Err(Error::InvalidHandle);
                }
                let badge = if cap.badge == 0 { a[2] } else { cap.badge };
                let copy = Capability {
                    object: cap.object,
                    rights: cap.rights.intersect(Rights::from_bits_truncate(a[1])),
                    badge,
                };
                let h = self.insert_cap(target, copy)?;
                done([h.0 as u64, 0, 0, 0, 0, 0, 0])
            }
            Sys::TaskSetSupervisor => {
                let target = self.target_task(task, handle)?;
                let cap = *self
                    .task(task)
                    .ok_or(Error::InvalidHandle)?
                    .caps
                    .check(Handle(a[0] as u32), Rights::SEND)
                    .map_err(cap_error)?;
                let Object::Endpoint(ep) = cap.object else { return Err(Error::WrongType) };
                if !self.alive(cap.object) {
                    return Err(Error::InvalidHandle);
                }
                self.set_supervisor(target, ep, cap.badge);
                done([0; 7])
            }
            Sys::CapSubrange => self.cap_subrange(task, handle, a[0], a[1]),
            Sys::PortRead => {
                let (port, width) = self.port(task, handle, Rights::READ, a[0], a[1])?;
                let value = self.machine.port_read(port, width);
                done([value as u64, 0, 0, 0, 0, 0, 0])
            }
            Sys::PortWrite => {
                let (port, width) = self.port(task, handle, Rights::WRITE, a[0], a[1])?;
                self.machine.port_write(port, width, a[2] as u32);
                done([0; 7])
            }
            Sys::IrqBind => {
                let line = self.irq_line(task, handle, a[0])?;
                let n = self.notification(task, Handle(a[1] as u32), Rights::SEND)?;
                self.irq_bindings[line as usize] = Some((n, a[2]));
                self.machine.irq_mask(line, false);
                done([0; 7])
            }
            Sys::IrqAck => {
                let line = self.irq_line(task, handle, a[0])?;
                if self.irq_bindings[line as usize].is_some() {
                    self.machine.irq_mask(line, false);
                }
                done([0; 7])
            }
            Sys::NotificationBind => {
                let n = self.notification(task, handle, Rights::RECEIVE)?;
                self.bind(id, n, a[0] == 1)?;
                done([0; 7])
            }
            Sys::TaskSetPersonality => {
                let target = self.target_task(task, handle)?;
                let cap = *self
                    .task(task)
                    .ok_or(Error::InvalidHandle)?
                    .caps
                    .check(Handle(a[0] as u32), Rights::SEND)
                    .map_err(cap_error)?;
                let Object::Endpoint(ep) = cap.object else { return Err(Error::WrongType) };
                if !self.alive(cap.object) {
                    return Err(Error::InvalidHandle);
                }
                if target == task {
                    // A task cannot give up its own Tutti system calls (nothing could undo it).
                    return Err(Error::InvalidArgument);
                }
                self.set_personality(target, ep, cap.badge);
                done([0; 7])
            }
            Sys::ThreadRegs => self.thread_regs(id, task, handle, a[0], a[1]),
            Sys::ReplyDetach => {
                let h = self.reply_detach(id, task)?;
                done([h.0 as u64, 0, 0, 0, 0, 0, 0])
            }
            Sys::ReplyWith => {
                self.reply_with(task, handle, a)?;
                done([0; 7])
            }
            Sys::TaskInfo => {
                let target = self.target_task(task, handle)?;
                let t = self.task(target).ok_or(Error::InvalidHandle)?;
                let (used, quota) = t.quota();
                let pages: u64 = t.mappings.iter().map(|m| m.2).sum();
                done([used, quota, t.threads.len() as u64, t.caps.len() as u64, pages, 0, 0])
            }
            Sys::LogRead => {
                self.lookup(task, handle, Rights::READ, ObjectType::Console)?;
                if a[1] > LOG_READ_MAX as u64 {
                    return Err(Error::InvalidArgument);
                }
                let mut buffer = [0u8; LOG_READ_MAX];
                let (start, n, end) = self.machine.log_read(a[2], &mut buffer[..a[1] as usize]);
                let space = &self.tasks.get(task).ok_or(Error::InvalidHandle)?.space;
                self.machine.write_user(space, a[0], &buffer[..n]).map_err(|BadAddress| Error::BadAddress)?;
                done([n as u64, start, end, 0, 0, 0, 0])
            }
            Sys::TaskWatch => {
                let target = self.target_task(task, handle)?;
                let n = self.notification(task, Handle(a[0] as u32), Rights::SEND)?;
                let t = self.task_mut(target).ok_or(Error::InvalidHandle)?;
                if t.watchers.len() >= MAX_WATCHERS {
                    return Err(Error::InvalidArgument);
                }
                t.watchers.push((n, a[1]));
                done([0; 7])
            }
            Sys::ThreadExit => {
                self.destroy(Object::Thread(id));
                if self.task(task).is_some_and(|t| t.threads.is_empty()) {
                    self.end_task(task, 0);
                }
                Ok(None)
            }
            Sys::Yield => {
                self.give_way = Some(true);
                done([0; 7])
            }
            Sys::Sleep if a[0] == 0 => done([0; 7]),
            Sys::Sleep => {
                self.block_current(State::Sleeping, a[0]);
                Ok(None)
            }
            Sys::Call => self.call(id, handle, a),
            Sys::Recv => self.recv(id, handle, a[6]),
            Sys::Reply => {
                self.reply(id, a)?;
                done([0; 7])
            }
            Sys::ReplyRecv => {
                // A reply to a caller that is gone is not an error for a server loop.
                match self.reply(id, a) {
                    Ok(()) | Err(Error::NoCaller) => {}
                    Err(e) => return Err(e),
                }
                self.recv(id, handle, a[6])
            }
            Sys::Signal => {
                let n = self.notification(task, handle, Rights::SEND)?;
                self.signal(n, a[0]);
                done([0; 7])
            }
            Sys::Wait => {
                let n = self.notification(task, handle, Rights::RECEIVE)?;
                self.wait(id, n, a[6])
            }
            Sys::CapDuplicate => {
                let caps = &mut self.task_mut(task).ok_or(Error::InvalidHandle)?.caps;
                let badge = (a[1] != 0).then_some(a[1]);
                let new = caps.duplicate(handle, Rights::from_bits_truncate(a[0]), badge).map_err(cap_error)?;
                done([new.0 as u64, 0, 0, 0, 0, 0, 0])
            }
            Sys::CapClose => {
                let t = self.task_mut(task).ok_or(Error::InvalidHandle)?;
                t.caps.remove(handle).map_err(cap_error)?;
                t.refund(cost::CAPABILITY);
                done([0; 7])
            }
            Sys::CapRevoke => {
                let cap = *self
                    .task(task)
                    .ok_or(Error::InvalidHandle)?
                    .caps
                    .check(handle, Rights::REVOKE)
                    .map_err(cap_error)?;
                if !self.alive(cap.object) {
                    return Err(Error::InvalidHandle);
                }
                self.destroy(cap.object);
                done([0; 7])
            }
            Sys::CapInfo => {
                let cap = *self.task(task).ok_or(Error::InvalidHandle)?.caps.get(handle).map_err(cap_error)?;
                if !self.alive(cap.object) {
                    return Err(Error::InvalidHandle);
                }
                let (size, base) = match cap.object {
                    Object::Memory(m) => {
                        self.memory.get(m).map_or((0, 0), |m| (m.size, m.physical_base().unwrap_or(0)))
                    }
                    Object::IoPorts { base, len } => (len as u64, base as u64),
                    Object::IrqLines { base, count } => (count as u64, base as u64),
                    // A thread's number, as foreign system-call messages carry it.
                    Object::Thread(t) => (0, t.index() as u64),
                    _ => (0, 0),
                };
                done([cap.object.kind() as u64, cap.rights.0 as u64, cap.badge, size, base, 0, 0])
            }
            Sys::EndpointCreate => {
                let h = self.create_object(task, cost::ENDPOINT, |k| {
                    Object::Endpoint(k.endpoints.insert(Endpoint::default()))
                })?;
                done([h.0 as u64, 0, 0, 0, 0, 0, 0])
            }
            Sys::NotificationCreate => {
                let h = self.create_object(task, cost::NOTIFICATION, |k| {
                    Object::Notification(k.notifications.insert(Notification::default()))
                })?;
                done([h.0 as u64, 0, 0, 0, 0, 0, 0])
            }
            Sys::TimeNow => done([self.refresh_now(), 0, 0, 0, 0, 0, 0]),
            Sys::ThreadCreate => {
                let target = self.target_task(task, handle)?;
                let (entry, stack, priority, arg) = (a[0], a[1], a[2], a[3]);
                // At most the caller's and the target's highest priority.
                let max =
                    self.task(task).map_or(0, |t| t.max_priority).min(self.task(target).map_or(0, |t| t.max_priority));
                if priority > max as u64 || entry >= elf::USER_END || stack >= elf::USER_END {
                    return Err(Error::InvalidArgument);
                }
                let thread = self.new_thread(target, entry, stack, arg, priority as u8)?;
                let cap = Capability { object: Object::Thread(thread), rights: Rights::ALL, badge: 0 };
                let h = self.insert_cap(task, cap)?;
                done([h.0 as u64, 0, 0, 0, 0, 0, 0])
            }
        }
    }

    fn debug_write(&mut self, task: TaskId, ptr: u64, len: u64) -> Result<(), Error> {
        if len > DEBUG_WRITE_MAX as u64 {
            return Err(Error::InvalidArgument);
        }
        let mut buffer = [0u8; DEBUG_WRITE_MAX];
        let buffer = &mut buffer[..len as usize];
        let space = &self.tasks.get(task).ok_or(Error::InvalidHandle)?.space;
        self.machine.read_user(space, ptr, buffer).map_err(|BadAddress| Error::BadAddress)?;
        let text = core::str::from_utf8(buffer).map_err(|_| Error::InvalidArgument)?;
        self.machine.console_write(text);
        Ok(())
    }

    /// Charges the task, makes the object, and gives the task a capability with all rights.
    fn create_object(
        &mut self,
        task: TaskId,
        cost: u64,
        make: impl FnOnce(&mut Self) -> Object,
    ) -> Result<Handle, Error> {
        self.task_mut(task).ok_or(Error::InvalidHandle)?.charge(cost + cost::CAPABILITY)?;
        let object = make(self);
        let t = self.task_mut(task).expect("charged above");
        t.owned.push(object);
        match t.caps.insert(Capability { object, rights: Rights::ALL, badge: 0 }) {
            Ok(h) => Ok(h),
            Err(e) => {
                self.destroy(object);
                Err(cap_error(e))
            }
        }
    }

    fn insert_cap(&mut self, task: TaskId, cap: Capability<Object>) -> Result<Handle, Error> {
        let t = self.task_mut(task).ok_or(Error::InvalidHandle)?;
        t.charge(cost::CAPABILITY)?;
        t.caps.insert(cap).map_err(|e| {
            t.refund(cost::CAPABILITY);
            cap_error(e)
        })
    }

    /// The object behind `handle` in `task`'s table, checked for rights, type and life.
    fn lookup(&self, task: TaskId, handle: Handle, needs: Rights, kind: ObjectType) -> Result<Object, Error> {
        let cap = self.task(task).ok_or(Error::InvalidHandle)?.caps.check(handle, needs).map_err(cap_error)?;
        if cap.object.kind() != kind {
            return Err(Error::WrongType);
        }
        if !self.alive(cap.object) {
            return Err(Error::InvalidHandle);
        }
        Ok(cap.object)
    }

    /// The task a call acts on: the caller's own for the null handle, else the task behind the
    /// handle, which needs CONTROL.
    fn target_task(&self, task: TaskId, handle: Handle) -> Result<TaskId, Error> {
        if handle == Handle::NULL {
            return Ok(task);
        }
        match self.lookup(task, handle, Rights::CONTROL, ObjectType::Task)? {
            Object::Task(t) => Ok(t),
            _ => Err(Error::WrongType),
        }
    }

    /// The I/O port `port` of width `width` through the port range behind `handle`.
    fn port(&self, task: TaskId, handle: Handle, needs: Rights, port: u64, width: u64) -> Result<(u16, u8), Error> {
        let Object::IoPorts { base, len } = self.lookup(task, handle, needs, ObjectType::IoPorts)? else {
            return Err(Error::WrongType);
        };
        let inside = port >= base as u64 && port.checked_add(width).is_some_and(|end| end <= base as u64 + len as u64);
        if !matches!(width, 1 | 2 | 4) || !inside || !self.machine.port_allowed(port as u16, width as u8) {
            return Err(Error::InvalidArgument);
        }
        Ok((port as u16, width as u8))
    }

    /// Interrupt line `line` of the range behind `handle` (CONTROL).
    fn irq_line(&self, task: TaskId, handle: Handle, line: u64) -> Result<u8, Error> {
        let Object::IrqLines { base, count } = self.lookup(task, handle, Rights::CONTROL, ObjectType::IrqLines)? else {
            return Err(Error::WrongType);
        };
        if line < base as u64 || line >= base as u64 + count as u64 {
            return Err(Error::InvalidArgument);
        }
        Ok(line as u8)
    }

    /// `CapSubrange`: a capability for part of a range object.
    fn cap_subrange(&mut self, task: TaskId, handle: Handle, offset: u64, len: u64) -> Result<Option<Return>, Error> {
        let cap =
            *self.task(task).ok_or(Error::InvalidHandle)?.caps.check(handle, Rights::DUPLICATE).map_err(cap_error)?;
        if !self.alive(cap.object) || len == 0 {
            return Err(if len == 0 { Error::InvalidArgument } else { Error::InvalidHandle });
        }
        let end = offset.checked_add(len).ok_or(Error::InvalidArgument)?;
        let object = match cap.object {
            Object::IoPorts { base, len: total } if end <= total as u64 => {
                Object::IoPorts { base: base + offset as u16, len: len as u32 }
            }
            Object::IrqLines { base, count } if end <= count as u64 => {
                Object::IrqLines { base: base + offset as u8, count: len as u8 }
            }
            Object::Memory(m) => {
                let object = self.memory.get(m).ok_or(Error::InvalidHandle)?;
                let start = object.physical_base().filter(|_| object.is_physical()).ok_or(Error::WrongType)?;
                if !offset.is_multiple_of(4096) || end > object.size {
                    return Err(Error::InvalidArgument);
                }
                let device = object.is_device();
                self.task_mut(task).ok_or(Error::InvalidHandle)?.charge(cost::MEMORY)?;
                let part = self
                    .memory
                    .insert(MemoryObject::physical(start + offset, len, device).charged_to(task, cost::MEMORY));
                self.task_mut(task).expect("charged above").owned.push(Object::Memory(part));
                Object::Memory(part)
            }
            _ => return Err(Error::InvalidArgument),
        };
        let h = self.insert_cap(task, Capability { object, rights: cap.rights, badge: cap.badge })?;
        Ok(Some(Return::ok([h.0 as u64, 0, 0, 0, 0, 0, 0])))
    }

    /// An interrupt arrived on `line` (the machine masked it): signal its notification. The
    /// driver unmasks it with `IrqAck` when it has handled the device.
    pub fn interrupt(&mut self, line: u8) {
        let binding = self.irq_bindings.get(line as usize).copied().flatten();
        match binding.filter(|(n, _)| self.notifications.contains(*n)) {
            Some((n, bits)) => self.signal(n, bits),
            None => {
                if let Some(slot) = self.irq_bindings.get_mut(line as usize) {
                    *slot = None;
                }
            }
        }
    }

    fn notification(&self, task: TaskId, handle: Handle, needs: Rights) -> Result<NotificationId, Error> {
        match self.lookup(task, handle, needs, ObjectType::Notification)? {
            Object::Notification(n) => Ok(n),
            _ => Err(Error::WrongType),
        }
    }

    fn alive(&self, object: Object) -> bool {
        match object {
            Object::Console => true,
            Object::Task(t) => self.task(t).is_some(),
            Object::Thread(t) => self.thread(t).is_some(),
            Object::Endpoint(e) => self.endpoints.contains(e),
            Object::Notification(n) => self.notifications.contains(n),
            Object::Memory(m) => self.memory.contains(m),
            Object::IoPorts { .. } | Object::IrqLines { .. } => true,
            Object::Reply { caller, seq } => self.thread(caller).is_some_and(|t| t.state == State::Detached(seq)),
        }
    }

    // ----- notifications ------------------------------------------------------------------

    fn signal(&mut self, n: NotificationId, bits: u64) {
        let Some(notification) = self.notifications.get_mut(n) else { return };
        notification.bits |= bits;
        if let Some(waiter) = notification.waiters.pop_front() {
            let bits = core::mem::take(&mut notification.bits);
            self.wake_direct(waiter, Return::ok([bits, 0, 0, 0, 0, 0, 0]));
            return;
        }
        // A bound thread waiting in a receive gets the bits as a NOTIFY message.
        let Some(thread) = notification.bound else { return };
        if let Some(State::Receiving(ep)) = self.thread(thread).map(|t| t.state) {
            let bits = self.notifications.get_mut(n).map_or(0, |n| core::mem::take(&mut n.bits));
            if let Some(e) = self.endpoints.get_mut(ep) {
                e.receivers.retain(|t| *t != thread);
            }
            self.wake_direct(thread, notify_return(bits));
        }
    }

    /// `NotificationBind`: binds `n` to thread `id` (or unbinds it).
    fn bind(&mut self, id: ThreadId, n: NotificationId, unbind: bool) -> Result<(), Error> {
        let notification = self.notifications.get_mut(n).ok_or(Error::InvalidHandle)?;
        if unbind {
            if notification.bound == Some(id) {
                notification.bound = None;
                self.t(id).bound = None;
            }
            return Ok(());
        }
        if notification.bound.is_some_and(|t| t != id) {
            return Err(Error::InvalidArgument);
        }
        notification.bound = Some(id);
        if let Some(old) = self.t(id).bound.replace(n).filter(|old| *old != n) {
            if let Some(o) = self.notifications.get_mut(old) {
                o.bound = None;
            }
        }
        Ok(())
    }

    /// The pending bits of the notification bound to `id`, taken (0: none).
    pub(super) fn take_bound_bits(&mut self, id: ThreadId) -> u64 {
        let Some(n) = self.thread(id).and_then(|t| t.bound) else { return 0 };
        self.notifications.get_mut(n).map_or(0, |n| core::mem::take(&mut n.bits))
    }

    fn wait(&mut self, id: ThreadId, n: NotificationId, timeout: u64) -> Result<Option<Return>, Error> {
        let notification = self.notifications.get_mut(n).ok_or(Error::InvalidHandle)?;
        if notification.bits != 0 {
            let bits = core::mem::take(&mut notification.bits);
            return Ok(Some(Return::ok([bits, 0, 0, 0, 0, 0, 0])));
        }
        if timeout == 0 {
            return Err(Error::WouldBlock);
        }
        notification.waiters.push_back(id);
        self.block_current(State::Waiting(n), timeout);
        Ok(None)
    }

    // ----- faults and the end of tasks ----------------------------------------------------

    /// Whether faults of `task` go to a live supervisor (otherwise a fault ends the task).
    pub fn has_supervisor(&self, task: TaskId) -> bool {
        self.task(task).and_then(|t| t.supervisor).is_some_and(|(ep, _)| self.endpoints.contains(ep))
    }

    /// The current thread took a CPU exception in user mode. With a supervisor, the fault
    /// becomes a call to the supervisor's endpoint on the thread's behalf (label FAULT), and the
    /// supervisor's reply resumes it; without one, the task ends. The info word carries the
    /// thread's number (`info::thread`), as a `SYSCALL` message's does.
    pub fn fault(&mut self, fault: Fault) {
        let Some(id) = self.current else { return };
        let task = self.t(id).task;
        let supervisor = self.task(task).and_then(|t| t.supervisor).filter(|(ep, _)| self.endpoints.contains(*ep));
        match supervisor {
            Some((ep, badge)) => {
                let message = Message {
                    info: abi::syscall::label::FAULT as u64 | (id.index() as u64) << abi::syscall::info::THREAD_SHIFT,
                    words: [fault.vector, fault.error_code, fault.address, fault.rip],
                    cap: None,
                    badge,
                };
                self.t(id).in_fault = true;
                self.send_call(id, ep, message, FOREVER);
            }
            None => self.end_task(task, -(fault.vector as i64) - 1),
        }
    }

    /// A `syscall` instruction of a thread whose task has a personality: a call to the
    /// personality's endpoint, label `SYSCALL` with the thread's number in the info word's upper
    /// bits (`info::thread`), words = `rax` (the number), `rdi`, `rsi`, `rdx` (the server reads
    /// the other registers with `ThreadRegs`), badge = the personality capability's. The reply's
    /// word 0 becomes `rax`; every other register is kept.
    fn foreign_syscall(&mut self, id: ThreadId, task: TaskId, priority: u8, args: &Args) {
        let personality = self.task(task).and_then(|t| t.personality).filter(|(ep, _)| self.endpoints.contains(*ep));
        let Some((ep, badge)) = personality else {
            self.t(id).pending_rax = Some(FOREIGN_FAILED);
            return;
        };
        let info = abi::syscall::label::SYSCALL as u64 | (id.index() as u64) << abi::syscall::info::THREAD_SHIFT;
        let words = [args.rax, args.a[0], args.a[1], args.a[2]];
        // The fast path when the server waits (as `fast_call`): straight into its registers.
        if self.handoff.is_none() {
            if let Some(receiver) = self.endpoints.get_mut(ep).and_then(|e| e.receivers.pop_front()) {
                let message = Return::ok([info, words[0], words[1], words[2], words[3], 0, badge]);
                self.hand_over(id, priority, receiver, message, true);
                return;
            }
        }
        self.t(id).in_foreign_call = true;
        self.send_call(id, ep, Message { info, words, cap: None, badge }, FOREVER);
    }

    /// `ThreadRegs`: copies the saved registers of the thread of `handle` to or from the
    /// caller's memory at `at`.
    fn thread_regs(
        &mut self,
        id: ThreadId,
        task: TaskId,
        handle: Handle,
        at: u64,
        write: u64,
    ) -> Result<Option<Return>, Error> {
        let Object::Thread(target) = self.lookup(task, handle, Rights::CONTROL, ObjectType::Thread)? else {
            return Err(Error::WrongType);
        };
        if target == id || write > 1 || self.thread(target).is_none() {
            return Err(if self.thread(target).is_none() { Error::InvalidHandle } else { Error::InvalidArgument });
        }
        let mut bytes = [0u8; regs::COUNT * 8];
        let space = &self.tasks.get(task).ok_or(Error::InvalidHandle)?.space;
        if write == 0 {
            let values = self.machine.context_regs(&self.threads.get(target).expect("checked").context);
            for (chunk, v) in bytes.chunks_exact_mut(8).zip(values) {
                chunk.copy_from_slice(&v.to_le_bytes());
            }
            self.machine.write_user(space, at, &bytes).map_err(|BadAddress| Error::BadAddress)?;
        } else {
            self.machine.read_user(space, at, &mut bytes).map_err(|BadAddress| Error::BadAddress)?;
            let mut values = [0u64; regs::COUNT];
            for (v, chunk) in values.iter_mut().zip(bytes.chunks_exact(8)) {
                *v = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
            }
            let context = &mut self.threads.get_mut(target).expect("checked").context;
            if !self.machine.set_context_regs(context, &values) {
                return Err(Error::InvalidArgument);
            }
        }
        Ok(Some(Return::ok([0; 7])))
    }

    /// Makes `endpoint` the personality of `task` (see `foreign_syscall`); its threads, now and
    /// later, no longer make Tutti system calls.
    fn set_personality(&mut self, task: TaskId, endpoint: EndpointId, badge: u64) {
        let Some(t) = self.task_mut(task) else { return };
        t.personality = Some((endpoint, badge));
        let threads = t.threads.clone();
        for thread in threads {
            self.t(thread).foreign = true;
        }
    }

    /// Ends a task: its threads stop, callers waiting on it and on its objects get `PeerDied`,
    /// the objects it created are destroyed, its address space is freed.
    pub fn end_task(&mut self, task: TaskId, status: i64) {
        // Take the task's mappings of other tasks' memory out first, so dropping its address
        // space frees only its own frames.
        self.unmap_all(task);
        let Some(t) = self.tasks.remove(task) else { return };
        for thread in &t.threads {
            self.remove_thread(*thread);
        }
        for object in &t.owned {
            self.destroy(*object);
        }
        for (n, bits) in &t.watchers {
            self.signal(*n, *bits);
        }
        for &(caller, seq) in &t.detached {
            if self.thread(caller).is_some_and(|c| c.state == State::Detached(seq)) {
                self.wake(caller, Return::err(Error::PeerDied));
            }
        }
        if let Some((parent, quota)) = t.parent {
            if let Some(p) = self.task_mut(parent) {
                p.refund(quota + cost::TASK);
            }
        }
        self.ended.push_back(TaskEnd { name: t.name.clone(), status, was_init: self.init == Some(task) });
        // Dropping the task drops its address space (the machine frees its frames).
        drop(t);
    }

    fn remove_thread(&mut self, id: ThreadId) {
        let Some(thread) = self.thread(id) else { return };
        let (state, serving, bound) = (thread.state, thread.serving, thread.bound);
        if let Some(n) = bound.and_then(|n| self.notifications.get_mut(n)) {
            n.bound = None;
        }
        self.cancel_wait(id, state);
        if let Some(caller) = serving {
            if self.thread(caller).is_some_and(|c| c.state == State::AwaitingReply(id)) {
                self.wake(caller, Return::err(Error::PeerDied));
            }
        }
        if self.current == Some(id) {
            self.current = None;
        }
        self.threads.remove(id);
    }

    /// Destroys an object: every capability to it becomes invalid, threads waiting on it get
    /// `PeerDied`.
    fn destroy(&mut self, object: Object) {
        match object {
            Object::Endpoint(e) => {
                if let Some(endpoint) = self.endpoints.remove(e) {
                    for t in endpoint.callers.into_iter().chain(endpoint.receivers) {
                        self.wake(t, Return::err(Error::PeerDied));
                    }
                }
            }
            Object::Notification(n) => {
                if let Some(notification) = self.notifications.remove(n) {
                    if let Some(t) = notification.bound.and_then(|t| self.thread_mut(t)) {
                        t.bound = None;
                    }
                    for t in notification.waiters {
                        self.wake(t, Return::err(Error::PeerDied));
                    }
                }
            }
            Object::Thread(t) => {
                if let Some(task) = self.thread(t).map(|t| t.task) {
                    self.remove_thread(t);
                    if let Some(task) = self.task_mut(task) {
                        task.threads.retain(|x| *x != t);
                        task.refund(cost::THREAD);
                    }
                }
            }
            Object::Task(t) => self.end_task(t, -1),
            Object::Memory(m) => self.destroy_memory(m),
            // A reply revoked unanswered: its caller learns that nobody will answer.
            Object::Reply { caller, seq } => {
                if self.thread(caller).is_some_and(|t| t.state == State::Detached(seq)) {
                    self.wake(caller, Return::err(Error::PeerDied));
                }
            }
            Object::Console | Object::IoPorts { .. } | Object::IrqLines { .. } => {}
        }
    }
}

fn cap_error(e: CapError) -> Error {
    match e {
        CapError::InvalidHandle => Error::InvalidHandle,
        CapError::MissingRights { .. } => Error::MissingRights,
        CapError::TableFull => Error::QuotaExceeded,
    }
}
