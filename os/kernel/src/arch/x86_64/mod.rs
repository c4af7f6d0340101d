//! Everything specific to x86_64: boot entry, descriptor tables, traps, paging, the local APIC,
//! the serial port. The rest of the kernel reaches the hardware only through this module.

pub mod apic;
pub mod cpu;
pub mod gdt;
pub mod ioapic;
pub mod paging;
pub mod serial;
pub mod syscall;
pub mod trap;

core::arch::global_asm!(include_str!("boot.s"), options(att_syntax));
