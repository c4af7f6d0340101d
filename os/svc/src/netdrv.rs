//! Between the network stack (`net`, `svc_net`) and the network driver (`netdrv`,
//! `svc_netdrv`), docs/net.md: the control protocol [`NetDrv`] and the frame rings
//! ([`Rings`]).
//!
//! **Memory.** The stack creates and owns two memory objects and hands them to the driver:
//! the rings ([`RINGS_LEN`] bytes, [`Rings::create`]) and the driver's DMA arena
//! ([`ARENA_LEN`] bytes, physically contiguous, never mapped by the stack). Because the stack
//! owns them, a driver that dies frees neither: the device, which may still write received
//! frames into the arena until the next driver resets it, never writes into memory that has
//! gone back to the kernel, and the stack's view of the rings stays valid.
//!
//! **Rings.** Two single-producer/single-consumer rings of [`SLOTS`] slots of [`SLOT_LEN`]
//! bytes: [`Direction::ToStack`] (received frames: the driver produces, the stack consumes) and
//! [`Direction::ToDriver`] (frames to send). Each ring has a `head` (the producer's count of
//! frames put in) and a `tail` (the consumer's count of frames taken out), free-running `u32`s
//! in their own cache lines of the first page; slot `i % SLOTS` holds frame `i`: its length
//! (`u16`, little-endian) at offset 0 and the frame from offset [`FRAME_OFFSET`]. The producer
//! writes the slot, then publishes `head + 1` (release); the consumer reads `head` (acquire),
//! copies the slot out, then publishes `tail + 1` (release). Nothing locks, nothing waits:
//! a full ring refuses a frame, an empty one has none.
//!
//! **Hostile peers.** Each side keeps its own index privately and only publishes it; it reads
//! the other side's index and checks it (`head - tail` must be at most [`SLOTS`], else
//! [`RingError::Corrupt`]). A frame's length is read once and checked
//! ([`FRAME_MIN`]..=[`FRAME_MAX`], else [`RingError::BadLength`], the slot skipped), and the
//! frame is copied out once before anyone looks at it; the peer may scribble on the shared
//! memory at any time, which can only garble frames, never make either side touch memory
//! outside the rings.
//!
//! **Notifications.** Each side gives the other a notification to signal (`SEND` only): the
//! driver signals the stack's with [`STACK_BIT`] when it has put frames in or taken frames
//! out; the stack signals the driver's doorbell with [`DOORBELL_BIT`] likewise.
//!
//! **Death.** Objects a task created die with it. The stack notices a dead driver because its
//! doorbell capability becomes invalid ([`alive`]); it then looks `netdrv` up again, resets
//! the rings and attaches afresh. The driver notices a dead stack because the rings' memory
//! object is gone ([`Rings::gone`]).

use abi::syscall::{map, rights};
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use rt::ipc::Cap;
use rt::sys::{self, Error, Handle};

/// Slots per ring.
pub const SLOTS: u32 = 32;
/// Bytes of one slot.
pub const SLOT_LEN: usize = 2048;
/// Where a slot's frame starts (its length is at offset 0).
pub const FRAME_OFFSET: usize = 16;
/// The shortest frame (an Ethernet header) and the longest (without the frame check
/// sequence) a ring carries.
pub const FRAME_MIN: usize = 14;
pub const FRAME_MAX: usize = 1514;
/// Bytes of the header page (indices, magic).
const HEADER_LEN: usize = 4096;
/// Bytes of the rings' memory object.
pub const RINGS_LEN: usize = HEADER_LEN + 2 * SLOTS as usize * SLOT_LEN;
/// Bytes of the DMA arena the stack makes for the driver.
pub const ARENA_LEN: u64 = 128 * 1024;
/// The bit the driver signals on the stack's notification.
pub const STACK_BIT: u64 = 1 << 1;
/// The bit the stack signals on the driver's doorbell.
pub const DOORBELL_BIT: u64 = 1 << 1;
/// Written by the stack at offset [`MAGIC_AT`]: "TNDR" and the layout's version 1.
const MAGIC: u32 = 0x5244_4e54;
const MAGIC_AT: usize = 512;
/// Where the rings are mapped (one set per task at a time).
const RINGS_BASE: u64 = 0x4300_0000_0000;

const _: () = assert!(FRAME_OFFSET + FRAME_MAX <= SLOT_LEN);
const _: () = assert!(SLOTS.is_power_of_two());

/// Whether a set of rings is mapped in this task (at [`RINGS_BASE`]).
static MAPPED: AtomicBool = AtomicBool::new(false);

rt::protocol! {
    /// The stack's requests to the driver. Attaching takes three calls because a message
    /// carries one capability: `Rings`, `Arena`, then `Attach`.
    pub protocol NetDrv {
        request Request {
            /// The rings: a memory object of at least [`RINGS_LEN`] bytes (READ, WRITE) that
            /// the stack has initialised ([`Rings::create`]). Replaces earlier rings.
            Rings { memory: Cap } = 1,
            /// The DMA arena: a physically contiguous memory object of [`ARENA_LEN`] bytes
            /// (READ, WRITE). Used from the first `Attach` on; later ones are closed.
            Arena { memory: Cap } = 2,
            /// The stack's notification (SEND). Brings the device up (resetting it) if it is
            /// not yet, empties nothing (the stack has reset the rings) and starts moving frames.
            Attach { notify: Cap } = 3,
        }
        response Response {
            Done = 1,
            /// Attached: the driver's doorbell (SEND) and the device's MAC address.
            Attached { doorbell: Cap, mac: [u8; 6] } = 2,
            /// There is no virtio-net device.
            NoDevice = 3,
            /// `Attach` before `Rings` and `Arena`, or one of them is unusable.
            BadMemory = 4,
            /// The device could not be brought up.
            Failed = 5,
        }
    }
}

/// Whether the peer that made the notification (or endpoint) behind `handle` still lives.
pub fn alive(handle: Handle) -> bool {
    sys::cap_info(handle).is_ok()
}

/// Which ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Received frames, from the driver to the stack.
    ToStack = 0,
    /// Frames to send, from the stack to the driver.
    ToDriver = 1,
}

/// Why the rings cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RingError {
    /// The memory object is smaller than [`RINGS_LEN`], or has not the rights.
    TooSmall,
    /// The stack has not initialised it (no magic).
    BadMagic,
    /// The peer's index is impossible (more than [`SLOTS`] frames between head and tail).
    Corrupt,
    /// A frame's length is outside [`FRAME_MIN`]..=[`FRAME_MAX`] (the slot was skipped).
    BadLength(usize),
    /// Another set of rings is mapped in this task.
    Busy,
    /// A system call failed.
    Sys(Error),
}

impl From<Error> for RingError {
    fn from(e: Error) -> RingError {
        RingError::Sys(e)
    }
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::TooSmall => write!(f, "the rings' memory is smaller than {RINGS_LEN} bytes or not writable"),
            RingError::BadMagic => f.write_str("the rings were not initialised"),
            RingError::Corrupt => f.write_str("the peer published an impossible ring index"),
            RingError::BadLength(n) => write!(f, "a frame of {n} bytes in a ring"),
            RingError::Busy => f.write_str("rings are already mapped"),
            RingError::Sys(e) => write!(f, "{e}"),
        }
    }
}

/// Offsets of a ring's head and tail in the header page, and of its first slot.
fn layout(direction: Direction) -> (usize, usize, usize) {
    let d = direction as usize;
    (d * 128, d * 128 + 64, HEADER_LEN + d * SLOTS as usize * SLOT_LEN)
}

/// The two rings, mapped in this task; unmapped (and the handle closed) on drop.
pub struct Rings {
    memory: Handle,
    /// Created here (the stack), not received (the driver).
    owned: bool,
    /// This side's private copies of the indices it publishes: `produced[d]` for the ring it
    /// produces into, `consumed[d]` for the one it consumes from.
    produced: [u32; 2],
    consumed: [u32; 2],
}

impl Rings {
    /// The stack: new zeroed rings with the magic written.
    pub fn create() -> Result<Rings, RingError> {
        let memory = sys::memory_create(0, RINGS_LEN as u64)?;
        let rings = Rings::map(memory, true).inspect_err(|_| {
            let _ = sys::cap_revoke(memory);
            let _ = sys::cap_close(memory);
        })?;
        rings.word(MAGIC_AT).store(MAGIC, Ordering::Release);
        Ok(rings)
    }

    /// The driver: maps rings received from the stack (takes the handle; closed here already
    /// on failure) and checks their size and magic.
    pub fn attach(memory: Handle) -> Result<Rings, RingError> {
        let checked = (|| {
            let size = sys::memory_size(memory)?;
            let (_, r, _) = sys::cap_info(memory)?;
            if size < RINGS_LEN as u64 || r & (rights::READ | rights::WRITE) != rights::READ | rights::WRITE {
                return Err(RingError::TooSmall);
            }
            Ok(())
        })();
        if let Err(e) = checked {
            let _ = sys::cap_close(memory);
            return Err(e);
        }
        let rings = Rings::map(memory, false).inspect_err(|_| {
            let _ = sys::cap_close(memory);
        })?;
        if rings.word(MAGIC_AT).load(Ordering::Acquire) != MAGIC {
            return Err(RingError::BadMagic);
        }
        Ok(rings)
    }

    fn map(memory: Handle, owned: bool) -> Result<Rings, RingError> {
        if MAPPED.swap(true, Ordering::AcqRel) {
            return Err(RingError::Busy);
        }
        if let Err(e) = sys::memory_map(memory, 0, RINGS_BASE, 0, RINGS_LEN as u64, map::READ | map::WRITE) {
            MAPPED.store(false, Ordering::Release);
            return Err(e.into());
        }
        Ok(Rings { memory, owned, produced: [0; 2], consumed: [0; 2] })
    }

    /// A copy of the capability for the driver (READ, WRITE and DUPLICATE, which a
    /// capability sent in a message needs; no REVOKE).
    pub fn share(&self) -> Result<Handle, Error> {
        sys::cap_duplicate(self.memory, rights::READ | rights::WRITE | rights::DUPLICATE, 0)
    }

    /// Whether the memory object has gone (its owner, the stack, ended). Received rings must
    /// be checked before use: touching a gone mapping faults.
    pub fn gone(&self) -> bool {
        !self.owned && sys::cap_info(self.memory).is_err()
    }

    /// The stack, before attaching a (new) driver: both rings empty, indices zero.
    pub fn reset(&mut self) {
        for direction in [Direction::ToStack, Direction::ToDriver] {
            let (head, tail, _) = layout(direction);
            self.word(head).store(0, Ordering::Release);
            self.word(tail).store(0, Ordering::Release);
        }
        self.produced = [0; 2];
        self.consumed = [0; 2];
    }

    /// The `u32` at byte `offset` of the header page.
    fn word(&self, offset: usize) -> &AtomicU32 {
        debug_assert!(offset + 4 <= HEADER_LEN && offset.is_multiple_of(4));
        // Safety: the header page is mapped read-write at RINGS_BASE for as long as `self`
        // lives (the stack owns the object; the driver checks `gone` before use), the offset
        // is 4-aligned and inside it, and the peer only ever accesses these words atomically.
        unsafe { AtomicU32::from_ptr((RINGS_BASE as usize + offset) as *mut u32) }
    }

    /// Frames waiting in `direction` and the published tail, checked: `(head, tail)`.
    fn indices(&self, direction: Direction, producer: bool) -> Result<(u32, u32), RingError> {
        let (head_at, tail_at, _) = layout(direction);
        let d = direction as usize;
        let (head, tail) = if producer {
            (self.produced[d], self.word(tail_at).load(Ordering::Acquire))
        } else {
            (self.word(head_at).load(Ordering::Acquire), self.consumed[d])
        };
        if head.wrapping_sub(tail) > SLOTS {
            return Err(RingError::Corrupt);
        }
        Ok((head, tail))
    }

    /// The producer: whether `direction` has a free slot.
    pub fn has_room(&self, direction: Direction) -> Result<bool, RingError> {
        let (head, tail) = self.indices(direction, true)?;
        Ok(head.wrapping_sub(tail) < SLOTS)
    }

    /// The consumer: frames waiting in `direction`.
    pub fn pending(&self, direction: Direction) -> Result<u32, RingError> {
        let (head, tail) = self.indices(direction, false)?;
        Ok(head.wrapping_sub(tail))
    }

    /// The producer: puts `frame` in; `Ok(false)` if the ring is full.
    pub fn push(&mut self, direction: Direction, frame: &[u8]) -> Result<bool, RingError> {
        if !(FRAME_MIN..=FRAME_MAX).contains(&frame.len()) {
            return Err(RingError::BadLength(frame.len()));
        }
        let (head, tail) = self.indices(direction, true)?;
        if head.wrapping_sub(tail) >= SLOTS {
            return Ok(false);
        }
        let slot = self.slot(direction, head);
        let len = (frame.len() as u16).to_le_bytes();
        // Safety: `slot` is the start of a SLOT_LEN-byte slot inside the mapping (see `slot`)
        // and the frame fits after FRAME_OFFSET (checked above); the consumer does not read
        // this slot until `head + 1` is published below (a hostile one may, which only
        // garbles what it reads).
        unsafe {
            core::ptr::copy_nonoverlapping(len.as_ptr(), slot, 2);
            core::ptr::copy_nonoverlapping(frame.as_ptr(), slot.add(FRAME_OFFSET), frame.len());
        }
        let d = direction as usize;
        self.produced[d] = head.wrapping_add(1);
        self.word(layout(direction).0).store(self.produced[d], Ordering::Release);
        Ok(true)
    }

    /// The consumer: copies the next frame into `out` (at least [`FRAME_MAX`] bytes) and
    /// returns its length; `Ok(None)` if the ring is empty. A frame with a bad length is
    /// skipped and reported ([`RingError::BadLength`]).
    pub fn pop(&mut self, direction: Direction, out: &mut [u8]) -> Result<Option<usize>, RingError> {
        let (head, tail) = self.indices(direction, false)?;
        if head == tail {
            return Ok(None);
        }
        let slot = self.slot(direction, tail);
        let mut len = [0u8; 2];
        // Safety: `slot` is a slot inside the mapping; two bytes are read once.
        unsafe { core::ptr::copy_nonoverlapping(slot, len.as_mut_ptr(), 2) };
        let len = u16::from_le_bytes(len) as usize;
        let result = if (FRAME_MIN..=FRAME_MAX).contains(&len) && len <= out.len() {
            // Safety: `len` bytes from FRAME_OFFSET lie inside the slot (len <= FRAME_MAX)
            // and `out` holds at least `len` bytes (checked); the producer published this
            // slot (acquire load of head above) and does not reuse it before our tail moves.
            unsafe { core::ptr::copy_nonoverlapping(slot.add(FRAME_OFFSET), out.as_mut_ptr(), len) };
            Ok(Some(len))
        } else {
            Err(RingError::BadLength(len))
        };
        let d = direction as usize;
        self.consumed[d] = tail.wrapping_add(1);
        self.word(layout(direction).1).store(self.consumed[d], Ordering::Release);
        result
    }

    /// The address of slot `index % SLOTS` of `direction`.
    fn slot(&self, direction: Direction, index: u32) -> *mut u8 {
        let (_, _, first) = layout(direction);
        (RINGS_BASE as usize + first + (index % SLOTS) as usize * SLOT_LEN) as *mut u8
    }
}

impl Drop for Rings {
    fn drop(&mut self) {
        let _ = sys::memory_unmap(0, RINGS_BASE);
        let _ = sys::cap_close(self.memory);
        MAPPED.store(false, Ordering::Release);
    }
}
