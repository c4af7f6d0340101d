//! Four-level x86_64 page tables, and the kernel's own address-space layout.
//!
//! Layout of the kernel half (see docs/memory.md):
//! - `0xffff_8000_0000_0000 + p`: the direct map of physical RAM at `p`, read-write, no-execute;
//!   page-table frames and the heap are reached through it;
//! - `0xffff_ffff_8000_0000 + p`: the kernel image loaded at physical `p`, with text read-only
//!   and executable, read-only data read-only and no-execute, data and bss read-write and
//!   no-execute, and unmapped guard pages under the stacks.
//!
//! Nothing in the kernel's tables is user-accessible.

use kcore::memmap::PAGE_SIZE;

/// Where physical memory is mapped in the kernel half.
pub const DIRECT_MAP: u64 = 0xffff_8000_0000_0000;
/// Where the kernel image is linked.
pub const KERNEL_VMA: u64 = 0xffff_ffff_8000_0000;

const LARGE_PAGE: u64 = 2 << 20;

/// Page-table entry bits.
pub mod flags {
    pub const PRESENT: u64 = 1 << 0;
    pub const WRITABLE: u64 = 1 << 1;
    pub const USER: u64 = 1 << 2;
    pub const WRITE_THROUGH: u64 = 1 << 3;
    pub const NO_CACHE: u64 = 1 << 4;
    pub const HUGE: u64 = 1 << 7;
    pub const NO_EXECUTE: u64 = 1 << 63;
}
use flags::*;

const ADDRESS_MASK: u64 = 0x000f_ffff_ffff_f000;

/// The kernel-virtual address of physical address `phys`, through the direct map.
pub fn phys_to_virt(phys: u64) -> *mut u8 {
    (DIRECT_MAP + phys) as *mut u8
}

/// Why a mapping could not be made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapError {
    /// No frame was left for an intermediate page table.
    OutOfFrames,
    /// Something is already mapped at this virtual address.
    AlreadyMapped(u64),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            MapError::OutOfFrames => write!(f, "out of physical frames for page tables"),
            MapError::AlreadyMapped(v) => write!(f, "virtual address {v:#x} is already mapped"),
        }
    }
}

/// A four-level page table, identified by the physical address of its top level.
pub struct PageTable {
    root: u64,
}

impl PageTable {
    /// An empty page table. `alloc` hands out zeroed, direct-mapped frames.
    pub fn new(alloc: &mut dyn FnMut() -> Option<u64>) -> Result<PageTable, MapError> {
        Ok(PageTable { root: alloc().ok_or(MapError::OutOfFrames)? })
    }

    /// The page table whose top level is the frame at `root`.
    pub fn from_root(root: u64) -> PageTable {
        PageTable { root }
    }

    /// The physical address and leaf flags that `virt` maps to, if it is mapped.
    pub fn translate(&self, virt: u64) -> Option<(u64, u64)> {
        let mut table = self.root;
        for level in (1..=4).rev() {
            let index = (virt >> (12 + 9 * (level - 1))) & 0x1ff;
            // Safety: `table` is a page-table frame reached through the direct map.
            let entry = unsafe { *(phys_to_virt(table) as *const u64).add(index as usize) };
            if entry & PRESENT == 0 {
                return None;
            }
            let page_size = 1u64 << (12 + 9 * (level - 1));
            if level == 1 || entry & HUGE != 0 {
                let base = entry & ADDRESS_MASK & !(page_size - 1);
                return Some((base + (virt & (page_size - 1)), entry & !ADDRESS_MASK));
            }
            table = entry & ADDRESS_MASK;
        }
        None
    }

    /// Changes the leaf flags of the 4 KiB page mapped at `virt`, keeping its frame.
    pub fn set_flags(&mut self, virt: u64, leaf: u64) -> bool {
        let Some((phys, _)) = self.translate(virt) else { return false };
        let mut no_alloc = || None;
        match self.entry(virt, 1, leaf & USER, &mut no_alloc) {
            Ok(entry) => {
                // Safety: `entry` is the present leaf for `virt` in this table's frames.
                unsafe { *entry = (phys & ADDRESS_MASK) | leaf | PRESENT };
                true
            }
            Err(_) => false,
        }
    }

    /// Removes the 4 KiB mapping at `virt` and returns its frame. The caller flushes the TLB
    /// entry if this table is active.
    pub fn unmap(&mut self, virt: u64) -> Option<u64> {
        let (phys, _) = self.translate(virt)?;
        let mut no_alloc = || None;
        let entry = self.entry(virt, 1, 0, &mut no_alloc).ok()?;
        // Safety: `entry` is the present leaf for `virt` in this table's frames.
        unsafe { *entry = 0 };
        Some(phys & ADDRESS_MASK)
    }

    /// Calls `visit(table_level, entry)` for every present entry of the lower half (the user
    /// part), leaves first, so an address space can give its frames back.
    pub fn for_each_user_entry(&self, visit: &mut dyn FnMut(u32, u64)) {
        fn walk(table: u64, level: u32, entries: core::ops::Range<usize>, visit: &mut dyn FnMut(u32, u64)) {
            for index in entries {
                // Safety: `table` is a page-table frame reached through the direct map.
                let entry = unsafe { *(phys_to_virt(table) as *const u64).add(index) };
                if entry & PRESENT == 0 {
                    continue;
                }
                if level > 1 && entry & HUGE == 0 {
                    walk(entry & ADDRESS_MASK, level - 1, 0..512, visit);
                }
                visit(level, entry);
            }
        }
        walk(self.root, 4, 0..256, visit);
    }

    /// The physical address to load into CR3.
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps `len` bytes (a multiple of the page size) at `virt` to `phys` with the leaf flags
    /// `leaf` (`PRESENT` is implied), using 2 MiB pages where both sides are aligned.
    pub fn map(
        &mut self,
        virt: u64,
        phys: u64,
        len: u64,
        leaf: u64,
        alloc: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<(), MapError> {
        let mut offset = 0;
        while offset < len {
            let (v, p) = (virt + offset, phys + offset);
            let large = leaf & USER == 0
                && v.is_multiple_of(LARGE_PAGE)
                && p.is_multiple_of(LARGE_PAGE)
                && len - offset >= LARGE_PAGE;
            let level = if large { 2 } else { 1 };
            let entry = self.entry(v, level, leaf & USER, alloc)?;
            // Safety: `entry` points into a page-table frame reached through the direct map.
            unsafe {
                if *entry & PRESENT != 0 {
                    return Err(MapError::AlreadyMapped(v));
                }
                *entry = p | leaf | PRESENT | if large { HUGE } else { 0 };
            }
            offset += if large { LARGE_PAGE } else { PAGE_SIZE };
        }
        Ok(())
    }

    /// The entry for `virt` at `level` (1 = page table, 2 = page directory), creating the
    /// tables above it; `user` (0 or `USER`) goes into the intermediate entries on the way.
    fn entry(
        &mut self,
        virt: u64,
        level: u32,
        user: u64,
        alloc: &mut dyn FnMut() -> Option<u64>,
    ) -> Result<*mut u64, MapError> {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            let index = (virt >> (12 + 9 * (l - 1))) & 0x1ff;
            let slot = (phys_to_virt(table) as *mut u64).wrapping_add(index as usize);
            // Safety: `table` is a page-table frame owned by this PageTable, reached through
            // the direct map; `index` is below 512.
            unsafe {
                if *slot & PRESENT == 0 {
                    let frame = alloc().ok_or(MapError::OutOfFrames)?;
                    *slot = frame | PRESENT | WRITABLE | user;
                } else if *slot & HUGE != 0 {
                    return Err(MapError::AlreadyMapped(virt));
                } else {
                    *slot |= user;
                }
                table = *slot & ADDRESS_MASK;
            }
        }
        let index = (virt >> (12 + 9 * (level - 1))) & 0x1ff;
        Ok((phys_to_virt(table) as *mut u64).wrapping_add(index as usize))
    }
}
