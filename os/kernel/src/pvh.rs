//! The PVH boot protocol's start-of-day information (`hvm_start_info`), read once at boot.
//!
//! The structure, the command line, the memory map and the module list live wherever the
//! loader put them, possibly in memory the kernel later reuses or does not map, so everything
//! the kernel needs is copied out here, with every pointer and count checked first.

use crate::arch::paging::phys_to_virt;

const MAGIC: u32 = 0x336e_c578;
/// The longest kernel command line accepted.
pub const CMDLINE_MAX: usize = 1024;
/// The most memory-map entries accepted.
pub const MEMMAP_MAX: usize = 128;
const E820_RAM: u32 = 1;

#[repr(C)]
struct StartInfo {
    magic: u32,
    version: u32,
    flags: u32,
    nr_modules: u32,
    modlist_paddr: u64,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
    reserved: u32,
}

#[repr(C)]
struct Module {
    paddr: u64,
    size: u64,
    cmdline_paddr: u64,
    reserved: u64,
}

#[repr(C)]
struct MemmapEntry {
    addr: u64,
    size: u64,
    kind: u32,
    reserved: u32,
}

/// Why the boot information cannot be used.
#[derive(Debug)]
pub enum BootInfoError {
    BadMagic(u32),
    NoMemoryMap,
    CmdlineTooLong,
    CmdlineNotUtf8,
}

impl core::fmt::Display for BootInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BootInfoError::BadMagic(m) => write!(f, "not booted through PVH (start-info magic {m:#x})"),
            BootInfoError::NoMemoryMap => write!(f, "the boot loader passed no memory map (PVH start info version 0)"),
            BootInfoError::CmdlineTooLong => write!(f, "the kernel command line is longer than {CMDLINE_MAX} bytes"),
            BootInfoError::CmdlineNotUtf8 => write!(f, "the kernel command line is not UTF-8"),
        }
    }
}

/// A range of physical memory.
#[derive(Clone, Copy, Debug, Default)]
pub struct PhysRange {
    pub start: u64,
    pub len: u64,
}

/// What the kernel keeps of the boot information.
pub struct BootInfo {
    cmdline: [u8; CMDLINE_MAX],
    cmdline_len: usize,
    /// RAM ranges from the memory map.
    ram: [PhysRange; MEMMAP_MAX],
    ram_count: usize,
    /// The first module: the boot archive.
    pub archive: Option<PhysRange>,
    /// Memory the loader's structures occupy (to keep out of the allocator until copied).
    pub loader_data: [PhysRange; 4],
}

impl BootInfo {
    pub fn cmdline(&self) -> &str {
        // Checked to be UTF-8 in `read`.
        core::str::from_utf8(&self.cmdline[..self.cmdline_len]).unwrap_or("")
    }

    pub fn ram(&self) -> &[PhysRange] {
        &self.ram[..self.ram_count]
    }
}

/// Reads the structure at physical address `start_info` (which must be in the boot direct map).
///
/// # Safety
/// `start_info` must be the address the PVH loader passed in ebx, and the boot page tables
/// must still map the first 4 GiB at the direct-map base.
pub unsafe fn read(start_info: u64) -> Result<BootInfo, BootInfoError> {
    // Safety: the loader placed the structure in the low 4 GiB, which the boot tables map.
    let info = unsafe { &*(phys_to_virt(start_info) as *const StartInfo) };
    if info.magic != MAGIC {
        return Err(BootInfoError::BadMagic(info.magic));
    }
    let mut out = BootInfo {
        cmdline: [0; CMDLINE_MAX],
        cmdline_len: 0,
        ram: [PhysRange::default(); MEMMAP_MAX],
        ram_count: 0,
        archive: None,
        loader_data: [PhysRange::default(); 4],
    };
    out.loader_data[0] = PhysRange { start: start_info, len: core::mem::size_of::<StartInfo>() as u64 };

    if info.cmdline_paddr != 0 {
        let base = phys_to_virt(info.cmdline_paddr);
        // Safety: the string is in the mapped low 4 GiB; at most CMDLINE_MAX + 1 bytes are read.
        let bytes = unsafe { core::slice::from_raw_parts(base, CMDLINE_MAX + 1) };
        let len = bytes.iter().position(|&b| b == 0).ok_or(BootInfoError::CmdlineTooLong)?;
        let bytes = &bytes[..len];
        core::str::from_utf8(bytes).map_err(|_| BootInfoError::CmdlineNotUtf8)?;
        out.cmdline[..len].copy_from_slice(bytes);
        out.cmdline_len = len;
        out.loader_data[1] = PhysRange { start: info.cmdline_paddr, len: len as u64 + 1 };
    }

    if info.version < 1 || info.memmap_paddr == 0 || info.memmap_entries == 0 {
        return Err(BootInfoError::NoMemoryMap);
    }
    let entries = (info.memmap_entries as usize).min(MEMMAP_MAX);
    // Safety: the table is in the mapped low 4 GiB and holds at least `entries` entries.
    // Safety: the table is in the mapped low 4 GiB and holds at least `entries` entries.
    let map = unsafe { core::slice::from_raw_parts(phys_to_virt(info.memmap_paddr) as *const MemmapEntry, entries) };
    for e in map.iter().filter(|e| e.kind == E820_RAM && e.size > 0) {
        out.ram[out.ram_count] = PhysRange { start: e.addr, len: e.size };
        out.ram_count += 1;
    }
    out.loader_data[2] =
        PhysRange { start: info.memmap_paddr, len: (entries * core::mem::size_of::<MemmapEntry>()) as u64 };

    if info.nr_modules > 0 && info.modlist_paddr != 0 {
        // Safety: the module list is in the mapped low 4 GiB and has at least one entry.
        // Safety: the module list is in the mapped low 4 GiB and has at least one entry.
        let module = unsafe { &*(phys_to_virt(info.modlist_paddr) as *const Module) };
        if module.size > 0 {
            out.archive = Some(PhysRange { start: module.paddr, len: module.size });
        }
        out.loader_data[3] = PhysRange { start: info.modlist_paddr, len: core::mem::size_of::<Module>() as u64 };
    }
    Ok(out)
}
