//! Starting programs from the boot archive in new tasks: the user-space program loader.
//!
//! The boot archive is a read-only memory object (`init_caps::BOOT_ARCHIVE`) mapped once into
//! this task. A program is found there, checked by the `elf` crate (hostile input), and loaded
//! into a new task: each group of segments that share pages gets one memory object owned by the
//! child, filled through a scratch mapping here, then mapped into the child with the union of
//! the group's permissions; a stack object is mapped below the top of the user half; the first
//! thread starts at the entry point with the handle of the capability passed to the child in
//! `rdi`. The child's first capability is the console, so it can print.

use crate::sys::{self, Error, Handle};
use abi::syscall::{init_caps, map, rights};
use elf::{Elf, ElfError, Segment, PF_W, PF_X};

/// Where the boot archive is mapped in the loading task.
const ARCHIVE_AT: u64 = 0x5000_0000_0000;
/// Where segment contents are staged in the loading task.
const SCRATCH_AT: u64 = 0x5800_0000_0000;
/// The child's stack: 64 KiB ending one page below the top of the user half.
const STACK_TOP: u64 = elf::USER_END - 0x1000;
const STACK_SIZE: u64 = 64 * 1024;
const PAGE: u64 = 4096;

/// Why a program could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// No such file in the boot archive.
    NotFound,
    /// The boot archive is not a valid cpio archive.
    BadArchive(newc::Error),
    /// The file is not a loadable program.
    BadProgram(ElfError),
    /// A system call failed.
    System(Error),
}

impl From<Error> for SpawnError {
    fn from(e: Error) -> Self {
        SpawnError::System(e)
    }
}

impl core::fmt::Display for SpawnError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            SpawnError::NotFound => write!(f, "no such program in the boot archive"),
            SpawnError::BadArchive(e) => write!(f, "boot archive: {e}"),
            SpawnError::BadProgram(e) => write!(f, "not a loadable program: {e}"),
            SpawnError::System(e) => write!(f, "{e}"),
        }
    }
}

/// What the child gets.
pub struct Spawn<'a> {
    /// Path in the boot archive.
    pub path: &'a str,
    /// Task name (at most 32 bytes).
    pub name: &'a str,
    /// Bytes of quota, taken from this task's.
    pub quota: u64,
    /// Priority of its first thread, and the highest it may use.
    pub priority: u8,
    /// A capability of ours to copy to the child (handle, rights, badge); its handle there is
    /// the child's `rt::startup_arg()`.
    pub cap: Option<(Handle, u32, u64)>,
}

/// The boot archive, mapped here on first use.
fn archive() -> Result<&'static [u8], SpawnError> {
    static MAPPED: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
    let mut size = MAPPED.load(core::sync::atomic::Ordering::Relaxed);
    if size == 0 {
        let bytes = sys::memory_size(init_caps::BOOT_ARCHIVE)?;
        sys::memory_map(init_caps::BOOT_ARCHIVE, 0, ARCHIVE_AT, 0, bytes.next_multiple_of(PAGE), map::READ)?;
        size = bytes;
        MAPPED.store(size, core::sync::atomic::Ordering::Relaxed);
    }
    // Safety: the archive is mapped read-only at ARCHIVE_AT for `size` bytes for the rest of
    // this task's life, and nothing writes to it.
    Ok(unsafe { core::slice::from_raw_parts(ARCHIVE_AT as *const u8, size as usize) })
}

/// Starts `spawn.path` of the boot archive in a new task; returns the task's handle (all
/// rights).
pub fn spawn(spawn: &Spawn) -> Result<Handle, SpawnError> {
    let archive = newc::Archive::new(archive()?).map_err(SpawnError::BadArchive)?;
    let file = archive.find(spawn.path).filter(|e| e.is_file()).ok_or(SpawnError::NotFound)?;
    spawn_image(file.data, spawn)
}

/// Starts the program `image` (an ELF file read from anywhere, e.g. a file system) in a new
/// task, as `spawn` does; `spawn.path` is not used.
pub fn spawn_image(image: &[u8], spawn: &Spawn) -> Result<Handle, SpawnError> {
    let elf = Elf::parse(image).map_err(SpawnError::BadProgram)?;
    if elf.position_independent {
        return Err(SpawnError::BadProgram(ElfError::NotExecutable(3)));
    }
    let task = sys::task_create(spawn.quota, 256, spawn.priority, spawn.name)?;
    match load(task, &elf, spawn) {
        Ok(()) => Ok(task),
        Err(e) => {
            let _ = sys::cap_revoke(task);
            Err(e)
        }
    }
}

fn load(task: Handle, elf: &Elf, spawn: &Spawn) -> Result<(), SpawnError> {
    // The console first, so it is the child's handle 1 as for init; with DUPLICATE so the
    // child can hand it on to programs it starts.
    sys::task_grant(task, init_caps::CONSOLE, rights::WRITE | rights::DUPLICATE, 0)?;
    let arg = match spawn.cap {
        Some((cap, rights, badge)) => sys::task_grant(task, cap, rights, badge)? as u64,
        None => 0,
    };
    let mut group: Option<(u64, u64, u32)> = None;
    let mut pending: [Option<Segment>; 16] = [None; 16];
    let mut count = 0;
    for segment in elf.segments() {
        let (start, end) = segment.pages();
        match group {
            Some((s, e, flags)) if start < e => group = Some((s, e.max(end), flags | segment.flags)),
            Some(g) => {
                load_group(task, elf, g, &pending[..count])?;
                count = 0;
                group = Some((start, end, segment.flags));
            }
            None => group = Some((start, end, segment.flags)),
        }
        if count == pending.len() {
            return Err(SpawnError::BadProgram(ElfError::BadProgramHeaders));
        }
        pending[count] = Some(segment);
        count += 1;
    }
    if let Some(g) = group {
        load_group(task, elf, g, &pending[..count])?;
    }
    let stack = sys::memory_create(task, STACK_SIZE)?;
    sys::memory_map(stack, task, STACK_TOP - STACK_SIZE, 0, STACK_SIZE, map::READ | map::WRITE)?;
    sys::cap_close(stack)?;
    sys::thread_create_in(task, elf.entry, STACK_TOP, spawn.priority, arg)?;
    Ok(())
}

/// Loads segments sharing the pages `[start, end)` into one memory object of the child.
fn load_group(
    task: Handle,
    elf: &Elf,
    (start, end, flags): (u64, u64, u32),
    segments: &[Option<Segment>],
) -> Result<(), SpawnError> {
    let len = end - start;
    let memory = sys::memory_create(task, len)?;
    sys::memory_map(memory, 0, SCRATCH_AT, 0, len, map::READ | map::WRITE)?;
    for segment in segments.iter().flatten() {
        let data = elf.data(segment);
        // Safety: the scratch mapping is `len` bytes, writable, ours alone; the segment lies in
        // [start, end) (checked by `elf`), so the copy stays inside it.
        unsafe {
            core::ptr::copy_nonoverlapping(data.as_ptr(), (SCRATCH_AT + segment.vaddr - start) as *mut u8, data.len());
        }
    }
    sys::memory_unmap(0, SCRATCH_AT)?;
    let mut perms = map::READ;
    if flags & PF_W != 0 {
        perms |= map::WRITE;
    }
    if flags & PF_X != 0 {
        perms |= map::EXECUTE;
    }
    sys::memory_map(memory, task, start, 0, len, perms)?;
    sys::cap_close(memory)?;
    Ok(())
}
