//! Address spaces of user tasks: the lower half of a page table, with every access from the
//! kernel to user memory checked against it.

use crate::arch::cpu::{read_cr3, write_cr3};
use crate::arch::paging::{flags, phys_to_virt, MapError, PageTable};
use elf::USER_END;
use kcore::memmap::PAGE_SIZE;

/// An address space: the lower half is the task's, the upper half is the kernel's (shared by
/// all address spaces, never user-accessible).
pub struct AddressSpace {
    table: PageTable,
}

impl AddressSpace {
    /// An address space with nothing mapped in the user half.
    pub fn new() -> Result<AddressSpace, MapError> {
        let root = crate::mem::alloc_frame().ok_or(MapError::OutOfFrames)?;
        let kernel = phys_to_virt(crate::mem::kernel_root()) as *const u64;
        // Safety: both are page-table frames in the direct map; the upper 256 entries of the
        // kernel's top level are copied so the kernel half is shared.
        unsafe { core::ptr::copy_nonoverlapping(kernel.add(256), (phys_to_virt(root) as *mut u64).add(256), 256) };
        Ok(AddressSpace { table: PageTable::from_root(root) })
    }

    /// Maps fresh zeroed frames over `[start, end)` (page-aligned) with `leaf` flags; pages
    /// already mapped keep their frame and get the union of the permissions.
    pub fn map_zeroed(&mut self, start: u64, end: u64, leaf: u64) -> Result<(), MapError> {
        let mut page = start;
        while page < end {
            match self.table.translate(page) {
                Some((_, old)) => {
                    let writable = (old | leaf) & flags::WRITABLE;
                    let no_exec = old & leaf & flags::NO_EXECUTE;
                    self.table.set_flags(page, flags::USER | writable | no_exec);
                }
                None => {
                    let frame = crate::mem::alloc_frame().ok_or(MapError::OutOfFrames)?;
                    let mut alloc = crate::mem::alloc_frame;
                    if let Err(e) = self.table.map(page, frame, PAGE_SIZE, leaf | flags::USER, &mut alloc) {
                        crate::mem::free_frame(frame);
                        return Err(e);
                    }
                }
            }
            page += PAGE_SIZE;
        }
        Ok(())
    }

    /// Maps one user page at `virt` to `frame` (owned elsewhere: a memory object).
    pub fn map_page(&mut self, virt: u64, frame: u64, access: kcore::kernel::Access) -> Result<(), MapError> {
        if self.table.translate(virt).is_some() {
            return Err(MapError::AlreadyMapped(virt));
        }
        let mut leaf = flags::USER;
        if access.writable {
            leaf |= flags::WRITABLE;
        }
        if !access.executable {
            leaf |= flags::NO_EXECUTE;
        }
        if access.device {
            leaf |= flags::NO_CACHE | flags::WRITE_THROUGH;
        }
        let mut alloc = crate::mem::alloc_frame;
        self.table.map(virt, frame, PAGE_SIZE, leaf, &mut alloc)
    }

    /// Removes the user page at `virt` (its frame stays with its owner).
    pub fn unmap_page(&mut self, virt: u64) {
        if self.table.unmap(virt).is_some() && read_cr3() == self.table.root() {
            crate::arch::cpu::invlpg(virt);
        }
    }

    /// Copies `bytes` to user address `at`, which must be mapped (by the loader, whatever the
    /// page permissions).
    pub fn write_bytes(&mut self, at: u64, bytes: &[u8]) -> Result<(), UserMemoryError> {
        self.for_each_chunk(at, bytes.len(), 0, &mut |phys, offset, len| {
            // Safety: `phys` is a frame of this address space, reached through the direct map.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr().add(offset), phys_to_virt(phys), len) };
        })
    }

    /// Copies `buffer.len()` bytes from user address `at`, which must be mapped user-readable.
    pub fn read_user(&self, at: u64, buffer: &mut [u8]) -> Result<(), UserMemoryError> {
        let len = buffer.len();
        self.for_each_chunk(at, len, flags::USER, &mut |phys, offset, n| {
            // Safety: as in `write_bytes`.
            unsafe { core::ptr::copy_nonoverlapping(phys_to_virt(phys), buffer.as_mut_ptr().add(offset), n) };
        })
    }

    /// Copies `bytes` to user address `at`, which must be mapped user-writable.
    pub fn write_user(&self, at: u64, bytes: &[u8]) -> Result<(), UserMemoryError> {
        self.for_each_chunk(at, bytes.len(), flags::USER | flags::WRITABLE, &mut |phys, offset, n| {
            // Safety: as in `write_bytes`; the page is the task's own, mapped writable.
            unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr().add(offset), phys_to_virt(phys), n) };
        })
    }

    /// Splits `[at, at + len)` into per-page chunks, each mapped with at least `required` flags,
    /// and calls `f(phys, offset, len)` on each, after checking all of them.
    fn for_each_chunk(
        &self,
        at: u64,
        len: usize,
        required: u64,
        f: &mut dyn FnMut(u64, usize, usize),
    ) -> Result<(), UserMemoryError> {
        let end = at.checked_add(len as u64).ok_or(UserMemoryError)?;
        if end > USER_END {
            return Err(UserMemoryError);
        }
        for pass in 0..2 {
            let mut offset = 0;
            while offset < len {
                let virt = at + offset as u64;
                let (phys, leaf) = self.table.translate(virt).ok_or(UserMemoryError)?;
                if leaf & required != required {
                    return Err(UserMemoryError);
                }
                let n = ((PAGE_SIZE - virt % PAGE_SIZE) as usize).min(len - offset);
                if pass == 1 {
                    f(phys, offset, n);
                }
                offset += n;
            }
        }
        Ok(())
    }

    /// Makes this the address space of the CPU (if it is not already).
    pub fn activate(&self) {
        if read_cr3() != self.table.root() {
            // Safety: the upper half is the kernel's own, so the kernel keeps running.
            unsafe { write_cr3(self.table.root()) };
        }
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        if read_cr3() == self.table.root() {
            // Safety: the kernel's own tables map the kernel; the task's are about to go.
            unsafe { write_cr3(crate::mem::kernel_root()) };
        }
        // Leaves first, then the tables that held them: every frame of the user half.
        self.table.for_each_user_entry(&mut |_, entry| crate::mem::free_frame(entry & 0x000f_ffff_ffff_f000));
        crate::mem::free_frame(self.table.root());
    }
}

/// A user address that is not mapped, or not with the access asked for.
#[derive(Clone, Copy, Debug)]
pub struct UserMemoryError;
