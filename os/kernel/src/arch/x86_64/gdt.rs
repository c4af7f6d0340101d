//! The global descriptor table and the task-state segment.
//!
//! Flat 64-bit segments for the kernel and for user space, laid out the way `syscall`/`sysret`
//! expect (user data right below user code), and a TSS whose interrupt stack table gives the
//! double-fault, NMI and machine-check handlers a known-good stack of their own.

use core::arch::asm;
use core::mem::size_of;

pub const KERNEL_CODE: u16 = 0x08;
pub const KERNEL_DATA: u16 = 0x10;
/// The base of the user selectors as `sysret` computes them: user data at +8, user code at +16.
pub const USER_BASE: u16 = 0x18 | 3;
pub const USER_DATA: u16 = 0x20 | 3;
pub const USER_CODE: u16 = 0x28 | 3;
const TSS_SELECTOR: u16 = 0x30;

/// The interrupt-stack-table slot used for faults that must not trust the current stack.
pub const FAULT_IST: u8 = 1;

#[repr(C, packed)]
struct TaskState {
    reserved0: u32,
    rsp: [u64; 3],
    reserved1: u64,
    ist: [u64; 7],
    reserved2: u64,
    reserved3: u16,
    iomap_base: u16,
}

static mut TSS: TaskState = TaskState {
    reserved0: 0,
    rsp: [0; 3],
    reserved1: 0,
    ist: [0; 7],
    reserved2: 0,
    reserved3: 0,
    iomap_base: size_of::<TaskState>() as u16, // no I/O permission bitmap
};

static mut GDT: [u64; 8] = [
    0,
    0x00af_9a00_0000_ffff, // 0x08 kernel code, 64-bit
    0x00cf_9200_0000_ffff, // 0x10 kernel data
    0x00cf_fa00_0000_ffff, // 0x18 user code, 32-bit (unused; keeps the sysret layout)
    0x00cf_f200_0000_ffff, // 0x20 user data
    0x00af_fa00_0000_ffff, // 0x28 user code, 64-bit
    0,                     // 0x30 TSS, low half (filled in by `init`)
    0,                     // TSS, high half
];

#[repr(C, packed)]
struct Pointer {
    limit: u16,
    base: u64,
}

extern "C" {
    static fault_stack_top: u8;
}

/// Sets the stack the CPU switches to when an interrupt or exception arrives in user mode.
pub fn set_kernel_stack(top: u64) {
    // Safety: one CPU, interrupts disabled in the kernel: nothing else touches the TSS now.
    unsafe { (&raw mut TSS.rsp).cast::<u64>().write_unaligned(top) };
}

/// Loads the GDT and TSS. Called once, early, on the boot CPU.
pub fn init() {
    // Safety: runs once on one CPU before anything else uses TSS or GDT; the statics live for
    // the kernel's lifetime, as lgdt/ltr require.
    unsafe {
        let tss = &raw mut TSS;
        (*tss).ist[FAULT_IST as usize - 1] = &raw const fault_stack_top as u64;
        let base = tss as u64;
        let limit = (size_of::<TaskState>() - 1) as u64;
        let gdt = &raw mut GDT;
        (*gdt)[6] = limit & 0xffff
            | (base & 0xff_ffff) << 16
            | 0x89 << 40 // present, 64-bit TSS (available)
            | (limit >> 16 & 0xf) << 48
            | (base >> 24 & 0xff) << 56;
        (*gdt)[7] = base >> 32;
        let pointer = Pointer { limit: (size_of::<[u64; 8]>() - 1) as u16, base: gdt as u64 };
        asm!(
            "lgdt [{ptr}]",
            "push {code}",
            "lea {tmp}, [rip + 2f]",
            "push {tmp}",
            "retfq",
            "2:",
            "mov ds, {data:x}",
            "mov es, {data:x}",
            "mov ss, {data:x}",
            "ltr {tss:x}",
            ptr = in(reg) &pointer,
            code = const KERNEL_CODE as u64,
            data = in(reg) KERNEL_DATA as u64,
            tss = in(reg) TSS_SELECTOR as u64,
            tmp = out(reg) _,
        );
    }
}
