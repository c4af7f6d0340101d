//! The heap: the global allocator behind `alloc` (`Vec`, `String`, `Box`, `BTreeMap`, ...).
//!
//! The heap is one contiguous range of the address space starting at [`HEAP_BASE`]. It grows
//! on demand: on the first allocation, and whenever no free block fits, the runtime creates a
//! memory object (`MemoryCreate`), maps it read-write right after the previous region, and
//! hands it to a linked-list first-fit allocator (`linked_list_allocator::Heap`, whose free
//! space then simply extends). Regions grow geometrically, [`FIRST_STEP`] first and then
//! double up to [`MAX_STEP`] per step; a larger allocation gets a region of its own size. The
//! memory capability is closed once mapped: the object belongs to this task and lives as long
//! as the mapping. The heap never shrinks.
//!
//! **Failure.** When the task's quota (or the machine's memory, or the heap's address range)
//! runs out, the allocator returns null; it never panics. Fallible APIs (`Vec::try_reserve`,
//! `Box::try_new` where available) then return an error the program can handle. Infallible
//! ones (`Vec::push`, `format!`) call the default allocation error handler, which panics with
//! "memory allocation of N bytes failed"; the runtime's panic handler prints that and ends the
//! task with status 101.
//!
//! **Threads.** The allocator state sits behind a [`SpinLock`], so
//! the threads of a task may allocate and free concurrently. The lock is not reentrant; the
//! allocator never allocates while holding it.

use crate::sync::SpinLock;
use crate::sys;
use abi::syscall::map;
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{null_mut, NonNull};
use linked_list_allocator::Heap;

/// Where the heap starts.
pub const HEAP_BASE: u64 = 0x1000_0000_0000;
/// The most address space the heap may cover (8 TiB, up to `0x1800_0000_0000`).
pub const HEAP_MAX: u64 = 0x0800_0000_0000;
/// The size of the first region.
pub const FIRST_STEP: usize = 64 * 1024;
/// The largest regular region (a single larger allocation gets a region that fits it).
pub const MAX_STEP: usize = 8 << 20;
/// The largest memory object the kernel makes.
const MAX_OBJECT: usize = 1 << 30;
const PAGE: usize = 4096;
/// Bytes a region needs beyond an allocation's size and alignment: the allocator's hole
/// bookkeeping at both ends.
const SLACK: usize = 64;

/// How the heap stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeapStats {
    /// Memory objects mapped so far.
    pub regions: usize,
    /// Bytes mapped (the heap's size).
    pub mapped: usize,
    /// Bytes handed out (with the allocator's rounding).
    pub used: usize,
    /// Times growing failed (and an allocation returned null).
    pub failures: usize,
    /// The error of the last failed growth.
    pub last_error: Option<sys::Error>,
}

struct State {
    heap: Heap,
    next_step: usize,
    stats: HeapStats,
}

static STATE: SpinLock<State> = SpinLock::new(State {
    heap: Heap::empty(),
    next_step: FIRST_STEP,
    stats: HeapStats { regions: 0, mapped: 0, used: 0, failures: 0, last_error: None },
});

/// The heap's current statistics.
pub fn stats() -> HeapStats {
    let state = STATE.lock();
    HeapStats { used: state.heap.used(), ..state.stats }
}

impl State {
    /// Maps a region that fits `layout` after the heap's end; false if that is impossible.
    fn grow(&mut self, layout: Layout) -> bool {
        match self.try_grow(layout) {
            Ok(()) => true,
            Err(e) => {
                self.stats.failures += 1;
                self.stats.last_error = Some(e);
                false
            }
        }
    }

    fn try_grow(&mut self, layout: Layout) -> Result<(), sys::Error> {
        let need = layout
            .size()
            .checked_add(layout.align())
            .and_then(|n| n.checked_add(SLACK))
            .and_then(|n| n.checked_next_multiple_of(PAGE))
            .ok_or(sys::Error::OutOfMemory)?;
        let step = self.next_step.max(need);
        let mapped = self.stats.mapped;
        if step > MAX_OBJECT || (mapped + step) as u64 > HEAP_MAX {
            return Err(sys::Error::OutOfMemory);
        }
        let at = HEAP_BASE + mapped as u64;
        let memory = sys::memory_create(0, step as u64)?;
        if let Err(e) = sys::memory_map(memory, 0, at, 0, step as u64, map::READ | map::WRITE) {
            // Give the pages back at once rather than when the task ends.
            let _ = sys::cap_revoke(memory);
            let _ = sys::cap_close(memory);
            return Err(e);
        }
        // The mapping keeps the object; the capability is not needed any more.
        let _ = sys::cap_close(memory);
        if mapped == 0 {
            // Safety: `step` bytes at HEAP_BASE are now mapped read-write for the rest of the
            // task's life, and nothing else uses them.
            unsafe { self.heap.init(at as *mut u8, step) };
        } else {
            // Safety: the new `step` bytes are mapped read-write right after the heap's end (its
            // top is HEAP_BASE + mapped) and live as long as the rest of the heap.
            unsafe { self.heap.extend(step) };
        }
        self.stats.mapped += step;
        self.stats.regions += 1;
        self.next_step = (self.next_step * 2).min(MAX_STEP);
        Ok(())
    }
}

/// The global allocator of every program (see the module documentation).
pub struct RtAllocator;

// Safety: blocks come from `linked_list_allocator::Heap`, which returns disjoint blocks that
// fit the layout inside memory it owns; the lock serialises all access to it; failure returns
// null.
unsafe impl GlobalAlloc for RtAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let mut state = STATE.lock();
        loop {
            if let Ok(block) = state.heap.allocate_first_fit(layout) {
                return block.as_ptr();
            }
            if !state.grow(layout) {
                return null_mut();
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if let Some(block) = NonNull::new(ptr) {
            // Safety: the caller guarantees `ptr` came from `alloc` with this layout.
            unsafe { STATE.lock().heap.deallocate(block, layout) };
        }
    }
}

#[global_allocator]
static ALLOCATOR: RtAllocator = RtAllocator;
