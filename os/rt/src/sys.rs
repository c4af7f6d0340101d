//! System-call wrappers (docs/abi.md). Each one is the `syscall` instruction with the ABI's
//! register assignment, and turns the status in `rax` into a `Result`.

use abi::syscall::{encode_call, info, Sys};
pub use abi::syscall::{Error, FOREVER as FOREVER_NS};
use core::arch::asm;

/// A capability handle.
pub type Handle = u32;

/// Makes system call `sys` on `handle` with arguments `a0`-`a6`; returns `r0`-`r6`.
pub fn syscall(sys: Sys, handle: Handle, a: [u64; 7]) -> Result<[u64; 7], Error> {
    // Safety: `raw` is sound for every call a typed wrapper makes: the arguments are plain
    // values, and pointers among them come from references the wrapper holds for the call.
    let (status, r) = unsafe { raw(encode_call(sys, handle), a) };
    match status {
        0 => Ok(r),
        code => Err(Error::from_code(code).unwrap_or(Error::InvalidArgument)),
    }
}

/// The `syscall` instruction: `rax` and `a0`-`a6` in, status and `r0`-`r6` out.
///
/// # Safety
/// The kernel treats the arguments as hostile, but a call that succeeds may change this task's
/// memory or state in ways the caller must be ready for.
pub unsafe fn raw(rax: u64, a: [u64; 7]) -> (u64, [u64; 7]) {
    let status: u64;
    let mut r = a;
    // Safety: the kernel preserves every register but the ones listed; rcx and r11 are taken
    // by the instruction.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") rax => status,
            inlateout("rdi") r[0],
            inlateout("rsi") r[1],
            inlateout("rdx") r[2],
            inlateout("r10") r[3],
            inlateout("r8") r[4],
            inlateout("r9") r[5],
            inlateout("r12") r[6],
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    (status, r)
}

/// A message: a label, four data words and maybe a capability.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Message {
    pub label: u32,
    pub words: [u64; 4],
    pub cap: Option<Handle>,
}

impl Message {
    pub const fn new(label: u32, words: [u64; 4]) -> Message {
        Message { label, words, cap: None }
    }

    /// The argument registers of a send (or reply) of this message with `timeout` in `a6`, for
    /// raw `syscall`s such as a server's `ReplyRecv` that reads the info word itself.
    pub fn args(&self, timeout: u64) -> [u64; 7] {
        let flag = if self.cap.is_some() { info::CAP } else { 0 };
        let w = self.words;
        [self.label as u64 | flag, w[0], w[1], w[2], w[3], self.cap.unwrap_or(0) as u64, timeout]
    }

    fn from_regs(r: &[u64; 7]) -> Message {
        Message {
            label: info::label(r[0]),
            words: [r[1], r[2], r[3], r[4]],
            cap: (r[0] & info::CAP != 0).then_some(r[5] as Handle),
        }
    }
}

/// A received message and the badge of the capability it was sent through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Received {
    pub message: Message,
    pub badge: u64,
}

/// Writes `text` (at most `DEBUG_WRITE_MAX` bytes) to the kernel console.
pub fn debug_write(console: Handle, text: &str) -> Result<(), Error> {
    syscall(Sys::DebugWrite, console, [text.as_ptr() as u64, text.len() as u64, 0, 0, 0, 0, 0]).map(drop)
}

/// Ends the calling task with `status`.
pub fn exit(status: i32) -> ! {
    let _ = syscall(Sys::Exit, 0, [status as i64 as u64, 0, 0, 0, 0, 0, 0]);
    unreachable!("exit returned")
}

/// Ends the calling thread.
pub fn thread_exit() -> ! {
    let _ = syscall(Sys::ThreadExit, 0, [0; 7]);
    unreachable!("thread_exit returned")
}

/// Lets the other ready threads of the same priority run.
pub fn yield_now() {
    let _ = syscall(Sys::Yield, 0, [0; 7]);
}

/// Sleeps at least `ns` nanoseconds.
pub fn sleep(ns: u64) {
    let _ = syscall(Sys::Sleep, 0, [ns, 0, 0, 0, 0, 0, 0]);
}

/// Nanoseconds since boot.
pub fn time_now() -> u64 {
    syscall(Sys::TimeNow, 0, [0; 7]).map_or(0, |r| r[0])
}

/// Calls the endpoint and waits for the reply (at most `timeout` ns; `FOREVER`).
pub fn call(endpoint: Handle, message: &Message, timeout: u64) -> Result<Message, Error> {
    syscall(Sys::Call, endpoint, message.args(timeout)).map(|r| Message::from_regs(&r))
}

/// Waits for a call on the endpoint.
pub fn recv(endpoint: Handle, timeout: u64) -> Result<Received, Error> {
    syscall(Sys::Recv, endpoint, [0, 0, 0, 0, 0, 0, timeout])
        .map(|r| Received { message: Message::from_regs(&r), badge: r[6] })
}

/// Replies to the call being served.
pub fn reply(message: &Message) -> Result<(), Error> {
    syscall(Sys::Reply, 0, message.args(0)).map(drop)
}

/// Replies to the call being served, then waits for the next call on the endpoint.
pub fn reply_recv(endpoint: Handle, message: &Message, timeout: u64) -> Result<Received, Error> {
    syscall(Sys::ReplyRecv, endpoint, message.args(timeout))
        .map(|r| Received { message: Message::from_regs(&r), badge: r[6] })
}

/// ORs `bits` into the notification.
pub fn signal(notification: Handle, bits: u64) -> Result<(), Error> {
    syscall(Sys::Signal, notification, [bits, 0, 0, 0, 0, 0, 0]).map(drop)
}

/// Waits for bits of the notification (at most `timeout` ns) and clears them.
pub fn wait(notification: Handle, timeout: u64) -> Result<u64, Error> {
    syscall(Sys::Wait, notification, [0, 0, 0, 0, 0, 0, timeout]).map(|r| r[0])
}

/// A copy of the capability with at most `rights` and, if it has none, `badge` (0: none).
pub fn cap_duplicate(handle: Handle, rights: u32, badge: u64) -> Result<Handle, Error> {
    syscall(Sys::CapDuplicate, handle, [rights as u64, badge, 0, 0, 0, 0, 0]).map(|r| r[0] as Handle)
}

/// Closes a handle.
pub fn cap_close(handle: Handle) -> Result<(), Error> {
    syscall(Sys::CapClose, handle, [0; 7]).map(drop)
}

/// Destroys the object for every holder.
pub fn cap_revoke(handle: Handle) -> Result<(), Error> {
    syscall(Sys::CapRevoke, handle, [0; 7]).map(drop)
}

/// (object type, rights, badge) of a capability.
pub fn cap_info(handle: Handle) -> Result<(u64, u32, u64), Error> {
    syscall(Sys::CapInfo, handle, [0; 7]).map(|r| (r[0], r[1] as u32, r[2]))
}

/// The number of the thread `thread` designates, as `SYSCALL` messages carry it.
pub fn thread_number(thread: Handle) -> Result<u32, Error> {
    syscall(Sys::CapInfo, thread, [0; 7]).map(|r| r[4] as u32)
}

/// A new endpoint.
pub fn endpoint_create() -> Result<Handle, Error> {
    syscall(Sys::EndpointCreate, 0, [0; 7]).map(|r| r[0] as Handle)
}

/// A new notification.
pub fn notification_create() -> Result<Handle, Error> {
    syscall(Sys::NotificationCreate, 0, [0; 7]).map(|r| r[0] as Handle)
}

/// Starts a thread in this task running `entry(arg)` on `stack` at `priority`.
pub fn thread_create(
    entry: extern "C" fn(u64) -> !,
    stack: &'static mut [u8],
    priority: u8,
    arg: u64,
) -> Result<Handle, Error> {
    // At a function's entry rsp + 8 is 16-byte aligned (as if `call` pushed a return address).
    let top = (stack.as_mut_ptr() as u64 + stack.len() as u64) & !15;
    let a = [entry as usize as u64, top - 8, priority as u64, arg, 0, 0, 0];
    syscall(Sys::ThreadCreate, 0, a).map(|r| r[0] as Handle)
}

/// Waits forever (for threads with nothing left to do but must not end the task).
pub fn park() -> ! {
    loop {
        sleep(FOREVER_NS / 2);
    }
}

/// A memory object of `bytes` (zeroed) owned by `task` (0: this task).
pub fn memory_create(task: Handle, bytes: u64) -> Result<Handle, Error> {
    syscall(Sys::MemoryCreate, task, [bytes, 0, 0, 0, 0, 0, 0]).map(|r| r[0] as Handle)
}

/// A physically contiguous memory object of `bytes` (at most 4 MiB) owned by `task` (0: this
/// task), for device DMA; returns the handle and the physical address.
pub fn memory_create_contiguous(task: Handle, bytes: u64) -> Result<(Handle, u64), Error> {
    let handle = syscall(Sys::MemoryCreate, task, [bytes, abi::syscall::memory_flags::CONTIGUOUS, 0, 0, 0, 0, 0])
        .map(|r| r[0] as Handle)?;
    let physical = syscall(Sys::CapInfo, handle, [0; 7]).map(|r| r[4])?;
    Ok((handle, physical))
}

/// Maps `len` bytes of `memory` from `offset` into `task` (0: this task) at `vaddr` with
/// permissions `perms` (`abi::syscall::map::*`).
pub fn memory_map(memory: Handle, task: Handle, vaddr: u64, offset: u64, len: u64, perms: u64) -> Result<(), Error> {
    syscall(Sys::MemoryMap, memory, [task as u64, vaddr, offset, len, perms, 0, 0]).map(drop)
}

/// Removes the mapping at `vaddr` from `task` (0: this task).
pub fn memory_unmap(task: Handle, vaddr: u64) -> Result<(), Error> {
    syscall(Sys::MemoryUnmap, 0, [task as u64, vaddr, 0, 0, 0, 0, 0]).map(drop)
}

/// A new empty task with `quota` bytes (from ours), at most `caps` capabilities and threads of
/// at most `priority`.
pub fn task_create(quota: u64, caps: u64, priority: u8, name: &str) -> Result<Handle, Error> {
    let a = [quota, caps, priority as u64, name.as_ptr() as u64, name.len() as u64, 0, 0];
    syscall(Sys::TaskCreate, 0, a).map(|r| r[0] as Handle)
}

/// Copies our capability `cap` into `task` with at most `rights` and `badge`; returns its
/// handle there.
pub fn task_grant(task: Handle, cap: Handle, rights: u32, badge: u64) -> Result<Handle, Error> {
    syscall(Sys::TaskGrant, task, [cap as u64, rights as u64, badge, 0, 0, 0, 0]).map(|r| r[0] as Handle)
}

/// Makes our endpoint the fault supervisor of `task`.
pub fn task_set_supervisor(task: Handle, endpoint: Handle) -> Result<(), Error> {
    syscall(Sys::TaskSetSupervisor, task, [endpoint as u64, 0, 0, 0, 0, 0, 0]).map(drop)
}

/// Starts a thread in another task (CONTROL) at `entry` with `stack` and `arg` in `rdi`.
pub fn thread_create_in(task: Handle, entry: u64, stack: u64, priority: u8, arg: u64) -> Result<Handle, Error> {
    syscall(Sys::ThreadCreate, task, [entry, stack, priority as u64, arg, 0, 0, 0]).map(|r| r[0] as Handle)
}

/// The size in bytes of the memory object behind `handle` (`WrongType` if it is none).
pub fn memory_size(handle: Handle) -> Result<u64, Error> {
    let r = syscall(Sys::CapInfo, handle, [0; 7])?;
    if r[0] != abi::syscall::ObjectType::Memory as u64 {
        return Err(Error::WrongType);
    }
    Ok(r[3])
}

/// Binds `notification` to the calling thread: its signals also end this thread's receives, as
/// a message labelled `abi::syscall::label::NOTIFY` with the bits in word 0.
pub fn notification_bind(notification: Handle) -> Result<(), Error> {
    syscall(Sys::NotificationBind, notification, [0; 7]).map(drop)
}

/// Signals `bits` on `notification` when `task` ends.
pub fn task_watch(task: Handle, notification: Handle, bits: u64) -> Result<(), Error> {
    syscall(Sys::TaskWatch, task, [notification as u64, bits, 0, 0, 0, 0, 0]).map(drop)
}

/// What a task uses (`TaskInfo`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TaskInfo {
    /// Bytes of quota in use, and the quota.
    pub used: u64,
    pub quota: u64,
    pub threads: u64,
    pub capabilities: u64,
    /// Pages mapped into its address space.
    pub pages: u64,
}

/// What the task of `task` (CONTROL), or the caller with handle 0, uses.
pub fn task_info(task: Handle) -> Result<TaskInfo, Error> {
    let r = syscall(Sys::TaskInfo, task, [0; 7])?;
    Ok(TaskInfo { used: r[0], quota: r[1], threads: r[2], capabilities: r[3], pages: r[4] })
}

/// Copies kernel log bytes from position `from` into `out` with a console capability that has
/// READ: the position of the first byte copied (later than `from` if those bytes are gone), the
/// count, and the log's end.
pub fn log_read(console: Handle, from: u64, out: &mut [u8]) -> Result<(u64, usize, u64), Error> {
    let len = out.len().min(abi::syscall::LOG_READ_MAX);
    let r = syscall(Sys::LogRead, console, [out.as_mut_ptr() as u64, len as u64, from, 0, 0, 0, 0])?;
    Ok((r[1], r[0] as usize, r[2]))
}

/// Gives `task` (CONTROL) a personality: every `syscall` instruction of its threads becomes a
/// call to `endpoint` (SEND) labelled `abi::syscall::label::SYSCALL`, words = rax, rdi, rsi,
/// rdx; the reply's word 0 becomes the thread's rax (docs/abi.md, "Personalities").
pub fn task_set_personality(task: Handle, endpoint: Handle) -> Result<(), Error> {
    syscall(Sys::TaskSetPersonality, task, [endpoint as u64, 0, 0, 0, 0, 0, 0]).map(drop)
}

/// The saved user registers of `thread` (CONTROL; not the calling thread), in
/// `abi::syscall::regs` order.
pub fn thread_regs(thread: Handle) -> Result<[u64; abi::syscall::regs::COUNT], Error> {
    let mut regs = [0u64; abi::syscall::regs::COUNT];
    syscall(Sys::ThreadRegs, thread, [regs.as_mut_ptr() as u64, 0, 0, 0, 0, 0, 0])?;
    Ok(regs)
}

/// Replaces the saved user registers of `thread` (`InvalidArgument` if rip, rsp or the fs base
/// is outside the user half; rflags keeps only its arithmetic flags, TF and DF).
pub fn set_thread_regs(thread: Handle, regs: &[u64; abi::syscall::regs::COUNT]) -> Result<(), Error> {
    syscall(Sys::ThreadRegs, thread, [regs.as_ptr() as u64, 1, 0, 0, 0, 0, 0]).map(drop)
}

/// Detaches the call being served into a one-shot reply capability: this thread may receive
/// other calls and answer this one later with [`reply_with`] (docs/abi.md, "Deferred replies").
pub fn reply_detach() -> Result<Handle, Error> {
    syscall(Sys::ReplyDetach, 0, [0; 7]).map(|r| r[0] as Handle)
}

/// Answers the detached call of `reply` with `message`; the capability is closed. A caller that
/// has gone meanwhile is not an error.
pub fn reply_with(reply: Handle, message: &Message) -> Result<(), Error> {
    syscall(Sys::ReplyWith, reply, message.args(0)).map(drop)
}
