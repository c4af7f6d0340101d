//! The boot archive: the cpio newc image QEMU loads with `-initrd`. It holds the programs and
//! files Tutti starts with; the kernel checks it whole before trusting any of it.

use crate::arch::paging::phys_to_virt;
use crate::pvh::PhysRange;

/// Why the boot archive cannot be used.
#[derive(Debug)]
pub enum ArchiveError {
    Missing,
    /// Not on a page boundary: it could not be handed to user space as whole pages.
    Misaligned(u64),
    Corrupt(newc::Error),
}

impl core::fmt::Display for ArchiveError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            ArchiveError::Missing => {
                write!(f, "no boot archive: start QEMU with -initrd <archive.cpio> (cargo xtask run does this)")
            }
            ArchiveError::Corrupt(e) => write!(f, "the boot archive is corrupt: {e}"),
            ArchiveError::Misaligned(at) => write!(f, "the boot archive at {at:#x} does not start on a page boundary"),
        }
    }
}

/// Finds and checks the boot archive.
pub fn open(range: Option<PhysRange>) -> Result<newc::Archive<'static>, ArchiveError> {
    let range = range.ok_or(ArchiveError::Missing)?;
    if range.start % 4096 != 0 {
        return Err(ArchiveError::Misaligned(range.start));
    }
    // Safety: memory bring-up checked that the archive lies in RAM, which the kernel's direct
    // map covers, and reserved it, so nothing else writes to it.
    let bytes = unsafe { core::slice::from_raw_parts(phys_to_virt(range.start), range.len as usize) };
    newc::Archive::new(bytes).map_err(ArchiveError::Corrupt)
}
