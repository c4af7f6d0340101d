//! DMA memory and device-register windows of a driver task, and the `virtio_drivers::Hal`
//! implementation on top of them.
//!
//! **DMA.** One physically contiguous memory object (`MemoryCreate` with `CONTIGUOUS`, its
//! physical address from `CapInfo`) is mapped at [`DMA_BASE`] and handed out in pages by a
//! bitmap allocator. Because the arena is contiguous, virtual-to-physical translation is one
//! subtraction (`virt_to_phys`), and nothing else of the task is ever given to a device.
//! Buffers outside the arena (a request header on the stack) are copied through bounce pages
//! of the arena by `Hal::share`/`unshare`.
//!
//! **Registers.** Each memory BAR of a device is mapped from a `CapSubrange` of the device
//! memory capability at an address from [`MMIO_BASE`] on; `Hal::mmio_phys_to_virt` only looks
//! the windows up, so the driver decides (and bounds-checks) what is mapped.
//!
//! The state is per task (the `Hal` trait has no receiver) behind a lock.

use abi::syscall::map;
use core::ptr::NonNull;
use rt::device;
use rt::sync::SpinLock;
use rt::sys::{self, Error as SysError, Handle};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

/// Where the DMA arena is mapped.
pub const DMA_BASE: u64 = 0x4100_0000_0000;
/// Where device-register windows are mapped, one after another.
pub const MMIO_BASE: u64 = 0x4200_0000_0000;
/// The largest arena: 1 MiB, 256 pages (one bit each).
pub const DMA_MAX: u64 = 1 << 20;
const PAGE: u64 = 4096;
const WINDOWS: usize = 12;

/// Why DMA memory or a register window could not be set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmaError {
    /// The arena is already set up, or the size is 0 or above [`DMA_MAX`].
    BadSize,
    /// The arena is not set up yet.
    NoArena,
    /// Not enough free pages.
    Exhausted,
    /// A register window outside the device memory capability, empty, or overflowing.
    OutsideDeviceMemory { address: u64, size: u64 },
    /// Every window slot is taken.
    TooManyWindows,
    /// A system call failed.
    Sys(SysError),
}

impl From<SysError> for DmaError {
    fn from(e: SysError) -> DmaError {
        DmaError::Sys(e)
    }
}

struct Arena {
    physical: u64,
    pages: usize,
    used: [u64; 4],
}

#[derive(Clone, Copy)]
struct Window {
    physical: u64,
    len: u64,
    virt: u64,
}

struct State {
    arena: Option<Arena>,
    windows: [Option<Window>; WINDOWS],
    next_window: u64,
}

static STATE: SpinLock<State> = SpinLock::new(State { arena: None, windows: [None; WINDOWS], next_window: MMIO_BASE });

/// Creates the DMA arena: `bytes` (rounded up to pages, at most [`DMA_MAX`]) of physically
/// contiguous memory, mapped read-write at [`DMA_BASE`]. Returns its physical address.
pub fn init(bytes: u64) -> Result<u64, DmaError> {
    let mut state = STATE.lock();
    if state.arena.is_some() || bytes == 0 || bytes > DMA_MAX {
        return Err(DmaError::BadSize);
    }
    let len = bytes.div_ceil(PAGE) * PAGE;
    let (memory, physical) = sys::memory_create_contiguous(0, len)?;
    install(&mut state, memory, physical, len)
}

/// Takes `memory`, a physically contiguous memory object another task made (and owns), as the
/// arena: the network driver gets its arena from the network stack, so that the memory a
/// device may still write to after the driver has died stays allocated (docs/net.md). The
/// object must be contiguous, writable and of 1 page to [`DMA_MAX`]. Returns its physical
/// address. The handle is the arena's from now on (closed here already on failure).
pub fn adopt(memory: Handle) -> Result<u64, DmaError> {
    let mut state = STATE.lock();
    let checked = (|| {
        if state.arena.is_some() {
            return Err(DmaError::BadSize);
        }
        let r = sys::syscall(abi::syscall::Sys::CapInfo, memory, [0; 7])?;
        let (kind, rights, len, physical) = (r[0], r[1] as u32, r[3], r[4]);
        if kind != abi::syscall::ObjectType::Memory as u64 {
            return Err(DmaError::Sys(SysError::WrongType));
        }
        if rights & (abi::syscall::rights::READ | abi::syscall::rights::WRITE)
            != abi::syscall::rights::READ | abi::syscall::rights::WRITE
        {
            return Err(DmaError::Sys(SysError::MissingRights));
        }
        // A non-contiguous object reports physical address 0.
        if physical == 0 || !(PAGE..=DMA_MAX).contains(&len) || !len.is_multiple_of(PAGE) {
            return Err(DmaError::BadSize);
        }
        Ok((len, physical))
    })();
    match checked {
        Ok((len, physical)) => install(&mut state, memory, physical, len),
        Err(e) => {
            let _ = sys::cap_close(memory);
            Err(e)
        }
    }
}

/// Maps `memory` (`len` bytes at `physical`) at [`DMA_BASE`] as the arena, all pages free.
fn install(state: &mut State, memory: Handle, physical: u64, len: u64) -> Result<u64, DmaError> {
    if let Err(e) = sys::memory_map(memory, 0, DMA_BASE, 0, len, map::READ | map::WRITE) {
        let _ = sys::cap_close(memory);
        return Err(e.into());
    }
    state.arena = Some(Arena { physical, pages: (len / PAGE) as usize, used: [0; 4] });
    Ok(physical)
}

impl Arena {
    fn is_used(&self, page: usize) -> bool {
        self.used[page / 64] & (1 << (page % 64)) != 0
    }

    fn set(&mut self, first: usize, count: usize, used: bool) {
        for page in first..first + count {
            if used {
                self.used[page / 64] |= 1 << (page % 64);
            } else {
                self.used[page / 64] &= !(1 << (page % 64));
            }
        }
    }

    /// First fit: the index of the first run of `count` free pages.
    fn alloc(&mut self, count: usize) -> Option<usize> {
        if count == 0 || count > self.pages {
            return None;
        }
        let mut first = 0;
        while first + count <= self.pages {
            match (first..first + count).find(|&p| self.is_used(p)) {
                Some(used) => first = used + 1,
                None => {
                    self.set(first, count, true);
                    return Some(first);
                }
            }
        }
        None
    }
}

/// Allocates `pages` zeroed pages of the arena: (physical address, pointer).
pub fn alloc(pages: usize) -> Result<(u64, NonNull<u8>), DmaError> {
    let mut state = STATE.lock();
    let arena = state.arena.as_mut().ok_or(DmaError::NoArena)?;
    let first = arena.alloc(pages).ok_or(DmaError::Exhausted)?;
    let virt = DMA_BASE + first as u64 * PAGE;
    // Safety: the pages lie inside the arena, which is mapped read-write at DMA_BASE for the
    // task's lifetime, and were free, so nothing else refers to them.
    unsafe { core::ptr::write_bytes(virt as *mut u8, 0, pages * PAGE as usize) };
    let pointer = NonNull::new(virt as *mut u8).ok_or(DmaError::NoArena)?;
    Ok((arena.physical + first as u64 * PAGE, pointer))
}

/// Returns pages from [`alloc`]. Addresses outside the arena are refused (`false`).
pub fn free(physical: u64, pages: usize) -> bool {
    let mut state = STATE.lock();
    let Some(arena) = state.arena.as_mut() else { return false };
    let Some(offset) = physical.checked_sub(arena.physical) else { return false };
    let first = (offset / PAGE) as usize;
    if !offset.is_multiple_of(PAGE) || pages == 0 || first.saturating_add(pages) > arena.pages {
        return false;
    }
    arena.set(first, pages, false);
    true
}

/// The physical address of `len` bytes at `virt` if they lie wholly in the arena.
pub fn virt_to_phys(virt: u64, len: u64) -> Option<u64> {
    let state = STATE.lock();
    let arena = state.arena.as_ref()?;
    let offset = virt.checked_sub(DMA_BASE)?;
    (offset.checked_add(len)? <= arena.pages as u64 * PAGE).then_some(arena.physical + offset)
}

fn phys_to_virt(physical: u64) -> Option<u64> {
    let state = STATE.lock();
    let arena = state.arena.as_ref()?;
    let offset = physical.checked_sub(arena.physical)?;
    (offset < arena.pages as u64 * PAGE).then_some(DMA_BASE + offset)
}

/// A page-granular buffer in the arena, returned to it on drop: I/O into it needs no copy.
pub struct DmaBuffer {
    physical: u64,
    pointer: NonNull<u8>,
    pages: usize,
}

impl DmaBuffer {
    /// At least `bytes` (rounded up to pages) of zeroed DMA memory.
    pub fn new(bytes: usize) -> Result<DmaBuffer, DmaError> {
        let pages = bytes.div_ceil(PAGE as usize).max(1);
        let (physical, pointer) = alloc(pages)?;
        Ok(DmaBuffer { physical, pointer, pages })
    }

    /// The physical address devices use.
    pub fn physical(&self) -> u64 {
        self.physical
    }

    /// The whole buffer.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // Safety: the pages are mapped, owned by this buffer until it drops, and the
        // exclusive borrow of `self` keeps any other reference away.
        unsafe { core::slice::from_raw_parts_mut(self.pointer.as_ptr(), self.pages * PAGE as usize) }
    }
}

impl Drop for DmaBuffer {
    fn drop(&mut self) {
        free(self.physical, self.pages);
    }
}

/// Maps `size` bytes of device registers at physical `address` (a BAR) from the device memory
/// capability `device_memory` (only the pages covering the BAR: a `CapSubrange`), uncached,
/// read-write, and remembers the window for `Hal::mmio_phys_to_virt`. Returns the virtual
/// address of `address`.
pub fn map_registers(device_memory: Handle, address: u64, size: u64) -> Result<u64, DmaError> {
    let outside = DmaError::OutsideDeviceMemory { address, size };
    let (base, len) = device::range(device_memory)?;
    let end = address.checked_add(size).ok_or(outside)?;
    if size == 0 || address < base || end > base.checked_add(len).ok_or(outside)? {
        return Err(outside);
    }
    let first_page = address & !(PAGE - 1);
    let map_len = (end - first_page).div_ceil(PAGE) * PAGE;
    if first_page < base || first_page + map_len > base + len {
        return Err(outside);
    }
    let mut state = STATE.lock();
    if let Some(w) = state.windows.iter().flatten().find(|w| w.physical <= address && end <= w.physical + w.len) {
        return Ok(w.virt + (address - w.physical));
    }
    let slot = state.windows.iter().position(Option::is_none).ok_or(DmaError::TooManyWindows)?;
    let virt = state.next_window;
    let part = device::subrange(device_memory, first_page - base, map_len)?;
    if let Err(e) = sys::memory_map(part, 0, virt, 0, map_len, map::READ | map::WRITE) {
        let _ = sys::cap_close(part);
        return Err(e.into());
    }
    // One unmapped guard page between windows.
    state.next_window = virt + map_len + PAGE;
    state.windows[slot] = Some(Window { physical: first_page, len: map_len, virt });
    Ok(virt + (address - first_page))
}

fn lookup_registers(address: u64, size: u64) -> Option<u64> {
    let end = address.checked_add(size)?;
    let state = STATE.lock();
    let w = state.windows.iter().flatten().find(|w| w.physical <= address && end <= w.physical + w.len)?;
    Some(w.virt + (address - w.physical))
}

/// The `virtio_drivers::Hal` of a Tutti driver task: DMA from the arena, registers from the
/// windows of [`map_registers`].
pub struct TuttiHal;

// Safety: `dma_alloc` returns page-aligned, zeroed, exclusively owned arena pages (or a null
// physical address, which virtio-drivers treats as failure); `mmio_phys_to_virt` returns only
// addresses inside windows mapped for exactly that physical range; `share` gives the device
// either the buffer's own arena pages or bounce pages it owns until `unshare`.
unsafe impl Hal for TuttiHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        alloc(pages).unwrap_or((0, NonNull::dangling()))
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        if free(paddr, pages) {
            0
        } else {
            -1
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // The driver maps every memory BAR of the device and checks each virtio structure
        // against it (`virtio_blk::open`) before virtio-drivers asks, so a miss is a bug of
        // this crate, not something a device can cause.
        let virt = lookup_registers(paddr, size as u64).expect("virtio structure outside the mapped BARs");
        NonNull::new(virt as *mut u8).expect("register window at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, direction: BufferDirection) -> PhysAddr {
        let virt = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len();
        if let Some(physical) = virt_to_phys(virt, len as u64) {
            return physical;
        }
        // A bounce copy in the arena. virtio-drivers has one request in flight per call here
        // (header, data, status), so the arena runs dry only if it was sized far too small.
        let pages = len.div_ceil(PAGE as usize).max(1);
        let (physical, bounce) = alloc(pages).expect("DMA arena exhausted by bounce buffers");
        if direction != BufferDirection::DeviceToDriver {
            // Safety: `buffer` is valid for `len` bytes (the caller's contract) and the bounce
            // pages are ours and at least `len` bytes; they do not overlap (the buffer is not
            // in the arena).
            unsafe { core::ptr::copy_nonoverlapping(virt as *const u8, bounce.as_ptr(), len) };
        }
        physical
    }

    unsafe fn unshare(paddr: PhysAddr, buffer: NonNull<[u8]>, direction: BufferDirection) {
        let virt = buffer.as_ptr() as *mut u8 as u64;
        let len = buffer.len();
        if virt_to_phys(virt, len as u64).is_some() {
            return; // shared in place
        }
        let Some(bounce) = phys_to_virt(paddr) else { return };
        if direction != BufferDirection::DriverToDevice {
            // Safety: `paddr` came from `share`, so `bounce` is our bounce copy of `len` bytes;
            // `buffer` is valid for writes of `len` bytes (the caller's contract).
            unsafe { core::ptr::copy_nonoverlapping(bounce as *const u8, virt as *mut u8, len) };
        }
        free(paddr, len.div_ceil(PAGE as usize).max(1));
    }
}
