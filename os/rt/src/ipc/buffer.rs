//! Shared buffers: a memory object mapped in two tasks, for payloads too large for a message.
//!
//! One side makes the buffer ([`SharedBuffer::create`]) and sends a capability to it once (a
//! [`Cap`](super::Cap) field, usually a copy made with [`SharedBuffer::share`] that lacks
//! `REVOKE`); the other side maps it ([`SharedBuffer::map`]). Later messages name byte ranges
//! of it ([`BufRange`]).
//!
//! **Hostile peers.** Offsets and lengths from the other side are checked here (no overflow,
//! inside the buffer) before any byte is touched. The other side may change the bytes at any
//! moment, so this type never hands out references into the buffer: [`read`](SharedBuffer::read)
//! copies bytes out once and the receiver validates its copy. Whoever owns the memory object
//! can destroy it, which unmaps it here too, so a server should read only buffers it owns: it
//! creates the buffer and gives the client a copy without `REVOKE`. A client's buffer from a
//! server that has died (a crash, a kill) is gone: [`read`](SharedBuffer::read) and
//! [`write`](SharedBuffer::write) on a buffer this task did not create check that the object
//! exists before the copy and again after it, and return [`BufferError::Gone`] instead of
//! faulting. The owner may die between the first check and the end of the copy (this task
//! preempted meanwhile): the copy then touches pages that are no longer mapped. Every buffer is
//! mapped in [`SHARED_WINDOW`], and init, the fault supervisor of every service, answers a
//! page fault on a missing page there by mapping a fresh zeroed page (charged to the faulting
//! task) and resuming it (docs/services.md, "Faults in the shared-buffer window"): the copy
//! finishes on that page, the second check sees the object gone, and the bytes are discarded.
//! Dropping such a buffer unmaps those pages again.

use super::BufRange;
use crate::sys::{self, Error, Handle};
use abi::syscall::{map, rights};
use core::sync::atomic::{AtomicU64, Ordering};

/// Where shared buffers are mapped: after the heap's range, below `0x2000_0000_0000`. init
/// repairs page faults in this window (module docs).
pub const SHARED_WINDOW: core::ops::Range<u64> = 0x1800_0000_0000..0x2000_0000_0000;
const SHARED_BASE: u64 = SHARED_WINDOW.start;
const SHARED_END: u64 = SHARED_WINDOW.end;
const PAGE: u64 = 4096;
/// The largest buffer (the kernel's largest memory object).
pub const BUFFER_MAX: usize = 1 << 30;

/// The next free address for a buffer (ranges are never reused; an unmapped page separates
/// buffers).
static NEXT: AtomicU64 = AtomicU64::new(SHARED_BASE);

/// Why an access to a shared buffer was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BufferError {
    /// The range is not inside the buffer (or its end overflows).
    OutOfRange,
    /// The buffer is mapped read-only here.
    ReadOnly,
    /// The memory object is gone (its owner ended or revoked it).
    Gone,
}

impl core::fmt::Display for BufferError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            BufferError::OutOfRange => "range outside the buffer",
            BufferError::ReadOnly => "buffer is read-only",
            BufferError::Gone => "buffer is gone (its owner ended)",
        })
    }
}

/// A memory object mapped in this task and shared with another; unmapped and its handle closed
/// on drop.
#[derive(Debug)]
pub struct SharedBuffer {
    memory: Handle,
    at: u64,
    len: usize,
    writable: bool,
    /// Created here (it lives as long as this task keeps it), not received from a peer.
    owned: bool,
}

impl SharedBuffer {
    /// A new zeroed buffer of `len` bytes (rounded up to pages), owned by this task, mapped
    /// read-write.
    pub fn create(len: usize) -> Result<SharedBuffer, Error> {
        if len == 0 || len > BUFFER_MAX {
            return Err(Error::InvalidArgument);
        }
        let memory = sys::memory_create(0, len as u64)?;
        Self::map_object(memory, len, true, true).inspect_err(|_| {
            let _ = sys::cap_revoke(memory);
            let _ = sys::cap_close(memory);
        })
    }

    /// Maps the memory object behind `memory` (received from another task), read-write if the
    /// capability allows it, else read-only. Takes the handle: it is closed when the buffer
    /// drops, and here already if mapping fails.
    pub fn map(memory: Handle) -> Result<SharedBuffer, Error> {
        let result = sys::memory_size(memory).and_then(|size| {
            let (_, rights, _) = sys::cap_info(memory)?;
            if rights & rights::READ == 0 {
                return Err(Error::MissingRights);
            }
            Self::map_object(memory, size as usize, rights & rights::WRITE != 0, false)
        });
        if result.is_err() {
            let _ = sys::cap_close(memory);
        }
        result
    }

    fn map_object(memory: Handle, len: usize, writable: bool, owned: bool) -> Result<SharedBuffer, Error> {
        let pages = (len as u64).next_multiple_of(PAGE);
        let at = NEXT.fetch_add(pages + PAGE, Ordering::Relaxed);
        if at.checked_add(pages).is_none_or(|end| end > SHARED_END) {
            return Err(Error::OutOfMemory);
        }
        let perms = if writable { map::READ | map::WRITE } else { map::READ };
        sys::memory_map(memory, 0, at, 0, pages, perms)?;
        Ok(SharedBuffer { memory, at, len, writable, owned })
    }

    /// A copy of the capability for another task, with at most `rights` (for a peer that may
    /// read and write: `READ | WRITE | DUPLICATE`, without `REVOKE`).
    pub fn share(&self, rights: u32) -> Result<Handle, Error> {
        sys::cap_duplicate(self.memory, rights, 0)
    }

    /// The memory object's handle in this task.
    pub fn handle(&self) -> Handle {
        self.memory
    }

    /// Where the buffer is mapped in this task (for another thread of the task that reads it
    /// directly).
    pub fn addr(&self) -> u64 {
        self.at
    }

    /// Bytes in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Checks a range named by a (possibly hostile) peer: `(start, len)` inside the buffer.
    pub fn check(&self, range: BufRange) -> Result<(usize, usize), BufferError> {
        let end = range.offset.checked_add(range.len).ok_or(BufferError::OutOfRange)?;
        if end > self.len as u64 {
            return Err(BufferError::OutOfRange);
        }
        Ok((range.offset as usize, range.len as usize))
    }

    /// A buffer received from a peer whose memory object is gone (see the module docs).
    fn gone(&self) -> bool {
        !self.owned && sys::cap_info(self.memory).is_err()
    }

    /// Copies `out.len()` bytes from `offset` into `out`.
    pub fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), BufferError> {
        let (start, len) = self.check(BufRange { offset, len: out.len() as u64 })?;
        if self.gone() {
            return Err(BufferError::Gone);
        }
        // Safety: [start, start + len) lies inside this buffer's range of the address space
        // (checked above), which nothing else uses while `self` lives, and `out` is ours; the
        // peer may write the bytes meanwhile, which can only make the copy inconsistent. If the
        // peer's object died since the check, the pages fault and init maps zeroed ones (module
        // docs); the check below then discards what was copied.
        unsafe { core::ptr::copy_nonoverlapping((self.at as usize + start) as *const u8, out.as_mut_ptr(), len) };
        if self.gone() {
            return Err(BufferError::Gone);
        }
        Ok(())
    }

    /// Copies `data` to `offset`.
    pub fn write(&self, offset: u64, data: &[u8]) -> Result<(), BufferError> {
        if !self.writable {
            return Err(BufferError::ReadOnly);
        }
        let (start, len) = self.check(BufRange { offset, len: data.len() as u64 })?;
        if self.gone() {
            return Err(BufferError::Gone);
        }
        // Safety: as in `read`; the mapping is writable (a repaired page too).
        unsafe { core::ptr::copy_nonoverlapping(data.as_ptr(), (self.at as usize + start) as *mut u8, len) };
        if self.gone() {
            return Err(BufferError::Gone);
        }
        Ok(())
    }

    /// Calls `f` with the bytes of `range`, copied out in chunks of at most `CHUNK` bytes (the
    /// range is checked first, so `f` sees nothing of a bad range).
    pub fn read_chunks<const CHUNK: usize>(
        &self,
        range: BufRange,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), BufferError> {
        const { assert!(CHUNK > 0, "chunks must not be empty") };
        self.check(range)?;
        let mut chunk = [0u8; CHUNK];
        let mut offset = range.offset;
        let end = range.offset + range.len;
        while offset < end {
            let n = ((end - offset) as usize).min(CHUNK);
            self.read(offset, &mut chunk[..n])?;
            f(&chunk[..n]);
            offset += n as u64;
        }
        Ok(())
    }
}

impl Drop for SharedBuffer {
    fn drop(&mut self) {
        if self.gone() {
            // The object's mapping went with it; pages init mapped after faults may remain.
            let pages = (self.len as u64).div_ceil(PAGE);
            for page in 0..pages {
                let _ = sys::memory_unmap(0, self.at + page * PAGE);
            }
        } else {
            let _ = sys::memory_unmap(0, self.at);
        }
        let _ = sys::cap_close(self.memory);
    }
}
