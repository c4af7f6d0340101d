//! Physical memory, the kernel's own page tables and the kernel heap.
//!
//! Bring-up order: the firmware's RAM ranges become a [`FreeMap`]; what is in use (the low
//! megabyte, the kernel image, the loader's structures, the boot archive) is taken out; the
//! heap and the frame bitmap are carved from what is left; the rest goes to the frame
//! allocator. Then the kernel builds its own page tables (see `arch::paging`) and switches to
//! them, leaving the boot tables' identity map behind.

use crate::arch::cpu::write_cr3;
use crate::arch::paging::{flags, phys_to_virt, MapError, PageTable, DIRECT_MAP, KERNEL_VMA};
use crate::pvh::BootInfo;
use kcore::frames::FrameAllocator;
use kcore::memmap::{FreeMap, Region, TooManyRegions, PAGE_SIZE};
use linked_list_allocator::LockedHeap;
use spin::Mutex;

#[global_allocator]
static HEAP: LockedHeap = LockedHeap::empty();

static FRAMES: Mutex<Option<FrameAllocator<'static>>> = Mutex::new(None);

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;
/// Memory below this is the firmware's (BIOS data, option ROMs, the PVH structures).
const LOW_MEMORY: u64 = MIB;
/// Structures built before the switch to the kernel's tables must lie in the boot direct map.
const BOOT_MAPPED: u64 = 4 << 30;
const HEAP_MIN: u64 = 512 * KIB;
const HEAP_MAX: u64 = 64 * MIB;
/// The least free memory the kernel will start with: the smallest heap, its page tables and
/// room for the first tasks.
pub const MIN_FREE: u64 = 2 * MIB;

/// Why memory could not be set up.
#[derive(Debug)]
pub enum MemoryError {
    TooManyRegions,
    ArchiveNotInRam,
    TooLittle { free: u64, needed: u64 },
    Map(MapError),
}

impl From<TooManyRegions> for MemoryError {
    fn from(_: TooManyRegions) -> Self {
        MemoryError::TooManyRegions
    }
}

impl From<MapError> for MemoryError {
    fn from(e: MapError) -> Self {
        MemoryError::Map(e)
    }
}

impl core::fmt::Display for MemoryError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MemoryError::TooManyRegions => write!(f, "the firmware memory map has too many regions"),
            MemoryError::ArchiveNotInRam => write!(f, "the boot archive does not lie in RAM"),
            MemoryError::TooLittle { free, needed } => write!(
                f,
                "not enough memory: {} KiB free after the kernel and boot archive, Tutti needs at least {} KiB \
                 (give QEMU more with -m)",
                free / KIB,
                needed / KIB
            ),
            MemoryError::Map(e) => write!(f, "building the kernel page tables: {e}"),
        }
    }
}

/// What memory bring-up found, for the boot log.
pub struct MemoryReport {
    /// Device memory for user-space drivers: from the end of RAM below 4 GiB to the I/O APIC.
    pub device_memory: (u64, u64),
    pub ram: u64,
    pub free: u64,
    pub heap: u64,
    pub bitmap: u64,
    pub page_table_frames: usize,
}

extern "C" {
    static __kernel_phys_start: u8;
    static __text_start: u8;
    static __text_end: u8;
    static __rodata_start: u8;
    static __rodata_end: u8;
    static __data_start: u8;
    static __data_end: u8;
    static __kernel_end: u8;
    static boot_stack_guard: u8;
    static fault_stack_guard: u8;
}

fn symbol(s: &u8) -> u64 {
    s as *const u8 as u64
}

/// Sets up frames, page tables and heap. Runs once, on the boot tables.
pub fn init(boot: &BootInfo) -> Result<MemoryReport, MemoryError> {
    let mut free = FreeMap::<{ crate::pvh::MEMMAP_MAX + 16 }>::default();
    for r in boot.ram() {
        free.add(r.start, r.len)?;
    }
    let ram = free.total();
    let ram_map = free.clone();
    if let Some(a) = boot.archive {
        let inside = |r: &Region| a.start >= r.start && a.start.saturating_add(a.len) <= r.end;
        if !ram_map.regions().iter().any(inside) {
            return Err(MemoryError::ArchiveNotInRam);
        }
    }

    // Safety: only the addresses of linker symbols are taken.
    let (image_start, image_end) = unsafe { (symbol(&__kernel_phys_start), symbol(&__kernel_end) - KERNEL_VMA) };
    free.reserve(0, LOW_MEMORY)?;
    free.reserve(image_start, image_end - image_start)?;
    for r in boot.loader_data.iter().chain(boot.archive.iter()) {
        free.reserve(r.start, r.len)?;
    }
    let available = free.total();
    if available < MIN_FREE {
        return Err(MemoryError::TooLittle { free: available, needed: MIN_FREE });
    }

    let heap_size = (available / 8).clamp(HEAP_MIN, HEAP_MAX) & !(PAGE_SIZE - 1);
    let heap = free
        .take(heap_size, PAGE_SIZE, BOOT_MAPPED)
        .ok_or(MemoryError::TooLittle { free: available, needed: MIN_FREE })?;

    let regions = free.regions();
    let span = Region::new(regions[0].start, regions[regions.len() - 1].end);
    let words = FrameAllocator::words_for(span.len());
    let bitmap_bytes = (words * 8) as u64;
    let bitmap = free
        .take(bitmap_bytes, PAGE_SIZE, BOOT_MAPPED)
        .ok_or(MemoryError::TooLittle { free: available, needed: MIN_FREE })?;
    // Safety: the bitmap's frames were just taken out of the free map, so nothing else owns
    // them; they are in the boot direct map now and in the kernel's direct map later.
    let bits = unsafe { core::slice::from_raw_parts_mut(phys_to_virt(bitmap) as *mut u64, words) };
    let mut frames = FrameAllocator::new(span, bits);
    for r in free.regions() {
        frames.release(*r);
    }
    let before = frames.free_frames();
    let root = build_kernel_tables(ram_map.regions(), &mut frames)?;
    let page_table_frames = before - frames.free_frames();
    // Safety: the new tables map the kernel image, its stacks and the direct map at the
    // addresses the boot tables used for them.
    unsafe { write_cr3(root) };

    // Safety: the heap's frames were taken out of the free map and are mapped in the
    // kernel's direct map; the heap is initialised once.
    unsafe { HEAP.lock().init(phys_to_virt(heap), heap_size as usize) };
    let low_ram_end = ram_map.regions().iter().map(|r| r.end).filter(|e| *e <= 1 << 32).max().unwrap_or(0);
    let device_start = low_ram_end.next_multiple_of(1 << 20);
    let device_memory = (device_start, crate::arch::ioapic::MMIO_BASE.saturating_sub(device_start));
    let report = MemoryReport {
        device_memory,
        ram,
        free: frames.free_frames() as u64 * PAGE_SIZE,
        heap: heap_size,
        bitmap: bitmap_bytes,
        page_table_frames,
    };
    *FRAMES.lock() = Some(frames);
    *KERNEL_ROOT.lock() = root;
    Ok(report)
}

/// The physical address of the kernel's top-level page table, whose upper half every address
/// space shares.
static KERNEL_ROOT: Mutex<u64> = Mutex::new(0);

pub fn kernel_root() -> u64 {
    *KERNEL_ROOT.lock()
}

/// A zeroed physical frame, or `None` when memory is exhausted.
pub fn alloc_frame() -> Option<u64> {
    let frame = FRAMES.lock().as_mut()?.alloc()?;
    // Safety: the frame was free, so nothing else uses it; the direct map covers all RAM.
    unsafe { core::ptr::write_bytes(phys_to_virt(frame), 0, PAGE_SIZE as usize) };
    Some(frame)
}

/// `pages` zeroed frames that follow each other physically; returns the first.
pub fn alloc_contiguous(pages: u64) -> Option<u64> {
    let start = FRAMES.lock().as_mut()?.alloc_contiguous(pages as usize, PAGE_SIZE)?;
    // Safety: the frames were free, so nothing else uses them; the direct map covers all RAM.
    unsafe { core::ptr::write_bytes(phys_to_virt(start), 0, (pages * PAGE_SIZE) as usize) };
    Some(start)
}

/// Gives a frame back. A frame that is not allocated is a kernel bug.
pub fn free_frame(frame: u64) {
    if let Some(frames) = FRAMES.lock().as_mut() {
        if let Err(e) = frames.free(frame) {
            panic!("freeing a frame: {e}");
        }
    }
}

/// Builds the kernel's page tables and returns the physical address of the top level.
fn build_kernel_tables(ram: &[Region], frames: &mut FrameAllocator) -> Result<u64, MemoryError> {
    let mut alloc = || {
        let frame = frames.alloc()?;
        // Page-table frames must be reachable through the boot direct map while we build.
        assert!(frame < BOOT_MAPPED, "page-table frame above the boot direct map");
        // Safety: a fresh frame, owned by the page table from now on.
        unsafe { core::ptr::write_bytes(phys_to_virt(frame), 0, PAGE_SIZE as usize) };
        Some(frame)
    };
    let mut table = PageTable::new(&mut alloc)?;

    // Safety: only the addresses of linker symbols are taken.
    let (text, rodata, data, guards) = unsafe {
        (
            (symbol(&__text_start), symbol(&__text_end)),
            (symbol(&__rodata_start), symbol(&__rodata_end)),
            (symbol(&__data_start), symbol(&__data_end)),
            [symbol(&boot_stack_guard), symbol(&fault_stack_guard)],
        )
    };
    let mut map_image = |(start, end): (u64, u64), leaf: u64, alloc: &mut dyn FnMut() -> Option<u64>| {
        // Leave the stack guard pages out.
        let mut page = start;
        while page < end {
            let run_end = guards.iter().copied().filter(|&g| g >= page && g < end).min().unwrap_or(end);
            if run_end > page {
                table.map(page, page - KERNEL_VMA, run_end - page, leaf, alloc)?;
            }
            page = run_end + PAGE_SIZE;
        }
        Ok::<(), MapError>(())
    };
    map_image(text, 0, &mut alloc)?;
    map_image(rodata, flags::NO_EXECUTE, &mut alloc)?;
    map_image(data, flags::WRITABLE | flags::NO_EXECUTE, &mut alloc)?;

    for r in ram {
        table.map(DIRECT_MAP + r.start, r.start, r.len(), flags::WRITABLE | flags::NO_EXECUTE, &mut alloc)?;
    }
    let mmio = flags::WRITABLE | flags::NO_EXECUTE | flags::NO_CACHE | flags::WRITE_THROUGH;
    for device in [crate::arch::apic::mmio_base(), crate::arch::ioapic::MMIO_BASE] {
        table.map(DIRECT_MAP + device, device, PAGE_SIZE, mmio, &mut alloc)?;
    }
    Ok(table.root())
}
