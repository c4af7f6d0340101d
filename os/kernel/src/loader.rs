//! Loading a program from the boot archive into a new task.
//!
//! The ELF file is checked whole by `kcore::elf` first; then each loadable segment gets fresh
//! zeroed frames (pages shared by two segments get both permissions), its file bytes are
//! copied in, and a stack is mapped at the top of the user half below an unmapped guard page.

use crate::arch::paging::{flags, MapError};
use crate::space::AddressSpace;
use elf::{Elf, ElfError, PF_W, PF_X, USER_END};

/// The top of the initial stack (16-byte aligned), with an unmapped page above it.
pub const STACK_TOP: u64 = USER_END - 0x1000;
/// The size of the initial stack.
pub const STACK_SIZE: u64 = 64 * 1024;

/// Why a program could not be loaded.
#[derive(Debug)]
pub enum LoadError {
    Elf(ElfError),
    /// Position-independent programs are not supported yet.
    PositionIndependent,
    OutOfMemory,
}

impl core::fmt::Display for LoadError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            LoadError::Elf(e) => write!(f, "{e}"),
            LoadError::PositionIndependent => write!(f, "position-independent executables are not supported yet"),
            LoadError::OutOfMemory => write!(f, "out of memory"),
        }
    }
}

impl From<MapError> for LoadError {
    fn from(_: MapError) -> Self {
        LoadError::OutOfMemory
    }
}

/// A loaded program: its address space, entry point and initial stack pointer.
pub struct Program {
    pub space: AddressSpace,
    pub entry: u64,
    pub stack: u64,
}

/// Loads the executable `bytes` into a new address space.
pub fn load(bytes: &[u8]) -> Result<Program, LoadError> {
    let elf = Elf::parse(bytes).map_err(LoadError::Elf)?;
    if elf.position_independent {
        return Err(LoadError::PositionIndependent);
    }
    let mut space = AddressSpace::new()?;
    for segment in elf.segments() {
        let mut leaf = 0;
        if segment.flags & PF_W != 0 {
            leaf |= flags::WRITABLE;
        }
        if segment.flags & PF_X == 0 {
            leaf |= flags::NO_EXECUTE;
        }
        let (start, end) = segment.pages();
        space.map_zeroed(start, end, leaf)?;
        space.write_bytes(segment.vaddr, elf.data(&segment)).map_err(|_| LoadError::OutOfMemory)?;
    }
    space.map_zeroed(STACK_TOP - STACK_SIZE, STACK_TOP, flags::WRITABLE | flags::NO_EXECUTE)?;
    Ok(Program { space, entry: elf.entry, stack: STACK_TOP })
}
