//! System calls: numbers, the register convention, messages and error codes.
//!
//! A program makes a system call with the `syscall` instruction. In: `rax` holds the call
//! number in bits 0-15 and, for calls on an object, the capability handle in bits 32-63;
//! arguments `a0`-`a6` are `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`, `r12`. Out: `rax` holds the
//! status (0, or an [`Error`] code) and results `r0`-`r6` are in the same seven registers.
//! `rcx` and `r11` are clobbered by the instruction; every other register, including the
//! x87/SSE state, is preserved. See docs/abi.md for each call's arguments, rights and errors.

/// System-call numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Sys {
    /// `debug_write` on a console capability (WRITE): `a0` pointer, `a1` length.
    DebugWrite = 0,
    /// `exit(a0 = status)`: ends the calling task. Does not return.
    Exit = 1,
    /// Gives the CPU to the next ready thread of the same priority.
    Yield = 2,
    /// Sleeps `a0` nanoseconds.
    Sleep = 3,
    /// Calls an endpoint (SEND): message in `a0`-`a5`, timeout in `a6`; the reply comes back in
    /// `r0`-`r5`.
    Call = 4,
    /// Receives on an endpoint (RECEIVE), timeout in `a6`: message in `r0`-`r5`, badge in `r6`.
    Recv = 5,
    /// Replies to the caller being served: message in `a0`-`a5`.
    Reply = 6,
    /// Replies (`a0`-`a5`) then receives on the endpoint, as `Reply` then `Recv`.
    ReplyRecv = 7,
    /// Signals a notification (SEND): ORs `a0` into its bits.
    Signal = 8,
    /// Waits on a notification (RECEIVE), timeout in `a6`: its bits in `r0`, then cleared.
    Wait = 9,
    /// Copies a capability (DUPLICATE): rights mask `a0`, badge `a1` (if it has none) -> `r0`.
    CapDuplicate = 10,
    /// Closes a handle.
    CapClose = 11,
    /// Destroys the object for every holder (REVOKE).
    CapRevoke = 12,
    /// Describes a capability: `r0` object type, `r1` rights, `r2` badge.
    CapInfo = 13,
    /// Creates an endpoint -> `r0` handle with all rights.
    EndpointCreate = 14,
    /// Creates a notification -> `r0` handle with all rights.
    NotificationCreate = 15,
    /// Nanoseconds since boot -> `r0`.
    TimeNow = 16,
    /// Creates a thread in the task of the handle (CONTROL; 0 = own task): `a0` entry, `a1`
    /// stack, `a2` priority, `a3` argument (its `rdi`) -> `r0` thread handle. It starts at once.
    ThreadCreate = 17,
    /// Ends the calling thread; the task ends (status 0) with its last thread. Does not return.
    ThreadExit = 18,
    /// Creates a memory object of `a0` bytes (rounded up to pages, zeroed) owned by and charged
    /// to the task of the handle (CONTROL; 0 = own task), with flags `a1` (`memory_flags`) ->
    /// `r0` handle with all rights.
    MemoryCreate = 19,
    /// Maps the memory object of the handle into a task (`a0`: task handle with CONTROL, 0 =
    /// own task) at `a1`, from offset `a2`, `a3` bytes, with permissions `a4` (`map::*`, each
    /// needing the matching right on the memory capability). Page-aligned; no overlap.
    MemoryMap = 20,
    /// Removes the mapping that starts at `a1` from a task (`a0`, as for `MemoryMap`).
    MemoryUnmap = 21,
    /// Creates an empty task: quota `a0` bytes (taken from the caller's), capability limit
    /// `a1`, highest priority `a2` (at most the caller's), name at `a3` (`a4` bytes, at most
    /// 32) -> `r0` handle with all rights.
    TaskCreate = 22,
    /// Copies the caller's capability `a0` (DUPLICATE) into the task of the handle (CONTROL)
    /// with rights masked by `a1` and badge `a2` (if it has none) -> `r0` its handle there.
    TaskGrant = 23,
    /// Makes the caller's endpoint `a0` (SEND) the fault supervisor of the task of the handle
    /// (CONTROL); fault messages carry that capability's badge.
    TaskSetSupervisor = 24,
    /// A capability for a part of a range object (I/O ports, interrupt lines, device memory):
    /// offset `a0`, length `a1` within the range of the handle (DUPLICATE) -> `r0` handle.
    CapSubrange = 25,
    /// Reads I/O port `a0` of the range of the handle (READ), width `a1` bytes (1, 2, 4) -> `r0`.
    PortRead = 26,
    /// Writes `a2` to I/O port `a0` of the range of the handle (WRITE), width `a1` bytes.
    PortWrite = 27,
    /// Binds interrupt line `a0` of the range of the handle (CONTROL) to the notification `a1`
    /// (SEND): when the line fires, the kernel masks it and signals bits `a2`. Unmasks the line.
    IrqBind = 28,
    /// Unmasks interrupt line `a0` of the range of the handle (CONTROL) after handling it.
    IrqAck = 29,
    /// Binds the notification of the handle (RECEIVE) to the calling thread: while the thread
    /// waits in `Recv`/`ReplyRecv`, a signal of the notification ends the wait with a message
    /// labelled `label::NOTIFY` carrying the bits in word 0. `a0` = 1 unbinds instead.
    NotificationBind = 30,
    /// Signals bits `a1` on the notification `a0` (SEND) when the task of the handle (CONTROL)
    /// ends, however it ends. At most 8 watches per task.
    TaskWatch = 31,
    /// Describes the task of the handle (CONTROL), or the caller's own with handle 0: `r0` quota
    /// bytes in use, `r1` the quota, `r2` threads, `r3` capabilities, `r4` pages mapped.
    TaskInfo = 32,
    /// Copies kernel log bytes from position `a2` (bytes since boot) into `a0`..`a0 + a1`
    /// (at most `LOG_READ_MAX`) with the console handle (READ): `r0` the count, `r1` the position
    /// of the first byte copied (later than `a2` if those bytes are gone), `r2` the log's end.
    LogRead = 33,
    /// Gives the task of the handle (CONTROL; not the caller's own) a personality: the endpoint
    /// `a0` (SEND). From then on every `syscall` instruction of its threads is a call to that
    /// endpoint (label `label::SYSCALL`, words = rax, rdi, rsi, rdx, badge = the capability's);
    /// the reply's word 0 becomes the thread's rax and nothing else changes.
    TaskSetPersonality = 34,
    /// Reads (`a1` = 0) or writes (`a1` = 1) the saved user registers of the thread of the
    /// handle (CONTROL; not the calling thread), `regs::COUNT` words at `a0` in `regs` order.
    ThreadRegs = 35,
    /// Detaches the call the calling thread is serving into a one-shot reply capability
    /// (`r0`), so the thread can receive other calls and answer this one later.
    ReplyDetach = 36,
    /// Answers the call of the reply capability of the handle (SEND) with the message `a0`-`a5`
    /// (as `Reply`); the capability is closed. A caller that has gone is not an error.
    ReplyWith = 37,
}

/// The registers `ThreadRegs` reads and writes, in this order, one `u64` each.
pub mod regs {
    pub const RAX: usize = 0;
    pub const RBX: usize = 1;
    pub const RCX: usize = 2;
    pub const RDX: usize = 3;
    pub const RSI: usize = 4;
    pub const RDI: usize = 5;
    pub const RBP: usize = 6;
    pub const RSP: usize = 7;
    pub const R8: usize = 8;
    pub const R9: usize = 9;
    pub const R10: usize = 10;
    pub const R11: usize = 11;
    pub const R12: usize = 12;
    pub const R13: usize = 13;
    pub const R14: usize = 14;
    pub const R15: usize = 15;
    pub const RIP: usize = 16;
    /// Written: only the arithmetic flags, DF and TF are taken; IF stays set, IOPL 0.
    pub const RFLAGS: usize = 17;
    /// The `fs` segment base (thread-local storage).
    pub const FS_BASE: usize = 18;
    pub const COUNT: usize = 19;
}

impl Sys {
    pub const ALL: [Sys; 38] = [
        Sys::DebugWrite,
        Sys::Exit,
        Sys::Yield,
        Sys::Sleep,
        Sys::Call,
        Sys::Recv,
        Sys::Reply,
        Sys::ReplyRecv,
        Sys::Signal,
        Sys::Wait,
        Sys::CapDuplicate,
        Sys::CapClose,
        Sys::CapRevoke,
        Sys::CapInfo,
        Sys::EndpointCreate,
        Sys::NotificationCreate,
        Sys::TimeNow,
        Sys::ThreadCreate,
        Sys::ThreadExit,
        Sys::MemoryCreate,
        Sys::MemoryMap,
        Sys::MemoryUnmap,
        Sys::TaskCreate,
        Sys::TaskGrant,
        Sys::TaskSetSupervisor,
        Sys::CapSubrange,
        Sys::PortRead,
        Sys::PortWrite,
        Sys::IrqBind,
        Sys::IrqAck,
        Sys::NotificationBind,
        Sys::TaskWatch,
        Sys::TaskInfo,
        Sys::LogRead,
        Sys::TaskSetPersonality,
        Sys::ThreadRegs,
        Sys::ReplyDetach,
        Sys::ReplyWith,
    ];

    pub fn from_number(n: u16) -> Option<Sys> {
        if (n as usize) < Sys::ALL.len() {
            Some(Sys::ALL[n as usize])
        } else {
            None
        }
    }
}

/// `rax` for a call: the number and the capability handle.
pub const fn encode_call(sys: Sys, handle: u32) -> u64 {
    sys as u64 | (handle as u64) << 32
}

/// The most bytes one `debug_write` takes.
pub const DEBUG_WRITE_MAX: usize = 4096;
/// The most bytes one `LogRead` copies.
pub const LOG_READ_MAX: usize = 4096;

/// A timeout meaning "wait forever".
pub const FOREVER: u64 = u64::MAX;

/// Data words of a message, besides its info word.
pub const MESSAGE_WORDS: usize = 4;

/// The info word of a message (`a0`/`r0`): the label in bits 0-31, flags above.
pub mod info {
    /// A capability travels with the message: its handle is in `a5` (sending) / `r5` (received).
    pub const CAP: u64 = 1 << 32;
    /// The label of a message.
    pub const fn label(info: u64) -> u32 {
        info as u32
    }
    /// Where a `SYSCALL` or `FAULT` message's info word carries the calling (faulting) thread's
    /// number (the `r4` of `CapInfo` on a capability to that thread).
    pub const THREAD_SHIFT: u32 = 40;
    /// The calling thread's number in a `SYSCALL` or `FAULT` message's info word.
    pub const fn thread(info: u64) -> u32 {
        (info >> THREAD_SHIFT) as u32
    }
}

/// The capabilities the first task (init) starts with, by handle.
pub mod init_caps {
    /// The kernel console (`debug_write`), all rights.
    pub const CONSOLE: u32 = 1;
    /// The boot archive as a read-only memory object (`CapInfo` gives its size in `r3`).
    pub const BOOT_ARCHIVE: u32 = 2;
    /// Every I/O port (0-0xffff) but the kernel's own (PIC, PIT, keyboard-controller port 0x61,
    /// QEMU's debug exit), which no capability reaches.
    pub const IO_PORTS: u32 = 3;
    /// Every interrupt line of the I/O APIC (global system interrupts 0-23).
    pub const IRQ_LINES: u32 = 4;
    /// Device memory: physical addresses below 4 GiB that are not RAM, except the local and I/O
    /// APICs. Maps uncached. `CapInfo` gives its base in `r4` and size in `r3`.
    pub const DEVICE_MEMORY: u32 = 5;
}

/// Capability rights (bits of `CapInfo` `r1` and of rights masks).
pub mod rights {
    /// Map a memory object readable.
    pub const READ: u32 = 1 << 0;
    /// Map a memory object writable.
    pub const WRITE: u32 = 1 << 1;
    /// Map a memory object executable.
    pub const EXECUTE: u32 = 1 << 2;
    /// Call an endpoint; signal a notification; write to the console (with WRITE).
    pub const SEND: u32 = 1 << 3;
    /// Receive on an endpoint; wait on a notification.
    pub const RECEIVE: u32 = 1 << 4;
    /// Send capabilities through an endpoint.
    pub const GRANT: u32 = 1 << 5;
    /// Copy the capability (never with more rights).
    pub const DUPLICATE: u32 = 1 << 6;
    /// Destroy the object for every holder.
    pub const REVOKE: u32 = 1 << 7;
    /// Control a task: threads, memory, capabilities, supervisor.
    pub const CONTROL: u32 = 1 << 8;
    pub const ALL: u32 = (1 << 9) - 1;
}

/// Flags of `MemoryCreate` (`a1`).
pub mod memory_flags {
    /// Physically contiguous (at most 4 MiB), for device DMA: `CapInfo` gives its physical
    /// address in `r4`.
    pub const CONTIGUOUS: u64 = 1;
}

/// Permissions of a mapping (`MemoryMap` `a4`).
pub mod map {
    pub const READ: u64 = 1;
    pub const WRITE: u64 = 2;
    pub const EXECUTE: u64 = 4;
}

/// The longest task name.
pub const TASK_NAME_MAX: usize = 32;

/// Labels the kernel puts on messages it sends on a thread's behalf.
pub mod label {
    /// A fault message to a task's supervisor: words = vector, error code, address, rip; the
    /// faulting thread's number in the info word (`info::thread`).
    pub const FAULT: u32 = 0xffff_0001;
    /// The bound notification was signalled while the thread received: word 0 = the bits.
    pub const NOTIFY: u32 = 0xffff_0002;
    /// A `syscall` instruction of a task with a personality: words = rax, rdi, rsi, rdx.
    pub const SYSCALL: u32 = 0xffff_0003;
}

/// Object types reported by `CapInfo`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum ObjectType {
    Console = 1,
    Task = 2,
    Thread = 3,
    Endpoint = 4,
    Notification = 5,
    Memory = 6,
    IoPorts = 7,
    IrqLines = 8,
    /// A call being answered later (`ReplyDetach`).
    Reply = 9,
}

/// Error codes returned in `rax`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Error {
    /// No such system call.
    NoSuchCall = 1,
    /// A pointer argument does not point at memory the caller may access that way.
    BadAddress = 2,
    /// An argument is out of range.
    InvalidArgument = 3,
    /// The handle does not name a capability of the caller, or its object no longer exists.
    InvalidHandle = 4,
    /// The capability is of the wrong object type for the call.
    WrongType = 5,
    /// The capability lacks a right the call needs.
    MissingRights = 6,
    /// The task's memory quota or capability table is exhausted.
    QuotaExceeded = 7,
    /// The timeout passed.
    TimedOut = 8,
    /// The other side of the call died or its object was destroyed.
    PeerDied = 9,
    /// `Reply` without a caller to reply to.
    NoCaller = 10,
    /// A timeout of 0 and nothing there: the call would block.
    WouldBlock = 11,
    /// The address range is already (partly) mapped.
    AddressInUse = 12,
    /// The machine is out of physical memory.
    OutOfMemory = 13,
}

impl Error {
    pub const ALL: [Error; 13] = [
        Error::NoSuchCall,
        Error::BadAddress,
        Error::InvalidArgument,
        Error::InvalidHandle,
        Error::WrongType,
        Error::MissingRights,
        Error::QuotaExceeded,
        Error::TimedOut,
        Error::PeerDied,
        Error::NoCaller,
        Error::WouldBlock,
        Error::AddressInUse,
        Error::OutOfMemory,
    ];

    pub fn from_code(code: u64) -> Option<Error> {
        Error::ALL.into_iter().find(|e| *e as u64 == code)
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::NoSuchCall => "no such system call",
            Error::BadAddress => "bad address",
            Error::InvalidArgument => "invalid argument",
            Error::InvalidHandle => "invalid handle",
            Error::WrongType => "wrong object type",
            Error::MissingRights => "missing rights",
            Error::QuotaExceeded => "quota exceeded",
            Error::TimedOut => "timed out",
            Error::PeerDied => "peer died",
            Error::NoCaller => "no caller to reply to",
            Error::WouldBlock => "would block",
            Error::AddressInUse => "address range in use",
            Error::OutOfMemory => "out of memory",
        })
    }
}

/// The registers of a system call, as the kernel reads them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `rax`: number and handle.
    pub rax: u64,
    /// `a0`-`a6`.
    pub a: [u64; 7],
}

impl Args {
    pub fn number(&self) -> u16 {
        self.rax as u16
    }
    pub fn handle(&self) -> u32 {
        (self.rax >> 32) as u32
    }
}

/// What a system call returns: `rax` and `r0`-`r6`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Return {
    pub status: u64,
    pub r: [u64; 7],
}

impl Return {
    pub const fn ok(r: [u64; 7]) -> Return {
        Return { status: 0, r }
    }
    pub const fn err(e: Error) -> Return {
        Return { status: e as u64, r: [0; 7] }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_codes_round_trip() {
        for (i, s) in Sys::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(Sys::from_number(i as u16), Some(*s));
        }
        assert_eq!(Sys::from_number(Sys::ALL.len() as u16), None);
        for e in Error::ALL {
            assert_eq!(Error::from_code(e as u64), Some(e));
        }
        assert_eq!(Error::from_code(0), None);
        let args = Args { rax: encode_call(Sys::Call, 0xdead_beef), a: [0; 7] };
        assert_eq!((args.number(), args.handle()), (Sys::Call as u16, 0xdead_beef));
    }
}
