//! User tasks: an address space and the threads that run in it.
//!
//! This first cut runs one task (init) with one thread; scheduling, several tasks, capabilities
//! and IPC come next (see the microkernel-core issue). What is here already has its final shape:
//! a thread's user state is a [`TrapFrame`] and an FPU area, entering and leaving the kernel
//! goes through the common trap path, and every access to user memory is checked against the
//! task's page tables.

use crate::arch::cpu::write_cr3;
use crate::arch::gdt::{USER_CODE, USER_DATA};
use crate::arch::paging::{flags, phys_to_virt, MapError, PageTable};
use crate::arch::trap::{self, FpuState, TrapFrame};
use alloc::boxed::Box;
use alloc::string::String;
use kcore::elf::USER_END;
use kcore::memmap::PAGE_SIZE;
use spin::Mutex;

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

    /// Makes this the address space of the CPU.
    pub fn activate(&self) {
        // Safety: the upper half is the kernel's own, so the kernel keeps running.
        unsafe { write_cr3(self.table.root()) };
    }
}

impl Drop for AddressSpace {
    fn drop(&mut self) {
        // Leaves first, then the tables that held them: every frame of the user half.
        self.table.for_each_user_entry(&mut |_, entry| crate::mem::free_frame(entry & 0x000f_ffff_ffff_f000));
        crate::mem::free_frame(self.table.root());
    }
}

/// A user address that is not mapped, or not with the access asked for.
#[derive(Clone, Copy, Debug)]
pub struct UserMemoryError;

/// A thread's user state.
pub struct Thread {
    pub frame: TrapFrame,
    pub fpu: Box<FpuState>,
}

impl Thread {
    /// A thread that starts at `entry` with stack pointer `stack`.
    pub fn new(entry: u64, stack: u64) -> Thread {
        let frame = TrapFrame {
            rip: entry,
            rsp: stack,
            cs: USER_CODE as u64,
            ss: USER_DATA as u64,
            rflags: 0x202, // IF
            ..TrapFrame::default()
        };
        Thread { frame, fpu: Box::new(FpuState::new()) }
    }
}

/// A task: a name, an address space, its thread.
pub struct Task {
    pub name: String,
    pub space: AddressSpace,
    pub thread: Thread,
}

static CURRENT: Mutex<Option<Task>> = Mutex::new(None);

extern "C" {
    static boot_stack_top: u8;
}

/// The top of the kernel stack, where every entry from user mode starts.
fn kernel_stack_top() -> u64 {
    &raw const boot_stack_top as u64
}

/// Runs `task` in user mode. The kernel stack is reset: the kernel keeps nothing on it between
/// entries.
pub fn start(task: Task) -> ! {
    let stack = kernel_stack_top();
    crate::arch::gdt::set_kernel_stack(stack);
    crate::arch::syscall::init(stack);
    task.space.activate();
    let frame = task.thread.frame;
    let mut current = CURRENT.lock();
    *current = Some(task);
    let fpu: *mut FpuState = &mut *current.as_mut().expect("just set").thread.fpu;
    drop(current);
    // Safety: one CPU; the FPU area lives in the current task, which stays until it ends.
    unsafe { trap::CURRENT_FPU = fpu };
    // Safety: the frame was built by `Thread::new` from a checked entry point and stack.
    unsafe { trap::enter_user(&frame, stack) }
}

/// Runs `f` on the current task.
pub fn with_current<R>(f: impl FnOnce(&mut Task) -> R) -> Option<R> {
    CURRENT.lock().as_mut().map(f)
}

/// Ends the current task with `status`.
pub fn exit_current(status: i64) -> ! {
    let task = CURRENT.lock().take();
    let name = task.as_ref().map_or_else(String::new, |t| t.name.clone());
    // The kernel's tables stay valid while the task's address space is freed.
    // Safety: the kernel's own root maps the kernel.
    unsafe { write_cr3(crate::mem::kernel_root()) };
    drop(task);
    log::info!("task {name} exited with status {status}");
    crate::shutdown::init_ended(status)
}

/// A CPU exception in user mode: the task is killed (supervisors come with IPC).
pub fn user_fault(frame: &TrapFrame) -> ! {
    let name = with_current(|t| t.name.clone()).unwrap_or_default();
    let what = crate::fault::exception_name(frame.vector);
    if frame.vector == 14 {
        log::warn!(
            "task {name}: {what} at rip {:#x}, address {:#x}, error code {:#x}; killed",
            frame.rip,
            crate::arch::cpu::cr2(),
            frame.error_code
        );
    } else {
        log::warn!("task {name}: {what} at rip {:#x}, error code {:#x}; killed", frame.rip, frame.error_code);
    }
    exit_current(-(frame.vector as i64) - 1)
}
