//! The I/O APIC: routes device interrupt lines (global system interrupts) to vectors on the
//! local APIC. Every line starts masked; a line is unmasked when a driver binds it
//! (`IrqBind`) and after each interrupt it handled (`IrqAck`); the kernel masks it when it
//! fires, so a level-triggered device cannot storm before its driver has run.
//!
//! QEMU's `pc` machine has one I/O APIC at the standard address with 24 inputs; ISA
//! interrupts 1-15 are inputs 1-15 (edge, active high), the PIT's interrupt 0 arrives on input
//! 2 (the kernel uses the local APIC timer instead), and PCI interrupts are inputs 16-23
//! (level, active low).

use super::paging::phys_to_virt;
use core::sync::atomic::{AtomicU32, Ordering};

/// The I/O APIC's physical address.
pub const MMIO_BASE: u64 = 0xfec0_0000;
/// The vector of input 0; input `n` arrives on `VECTOR_BASE + n`.
pub const VECTOR_BASE: u8 = 0x30;

const REG_VERSION: u32 = 0x01;
const REG_REDIRECTION: u32 = 0x10;
const MASKED: u32 = 1 << 16;
const LEVEL: u32 = 1 << 15;
const ACTIVE_LOW: u32 = 1 << 13;

static LINES: AtomicU32 = AtomicU32::new(0);

fn select(register: u32) -> *mut u32 {
    let base = phys_to_virt(MMIO_BASE) as *mut u32;
    // Safety: the I/O APIC page is mapped uncached in the kernel's tables (mem.rs); IOREGSEL is
    // at offset 0.
    unsafe { core::ptr::write_volatile(base, register) };
    base.wrapping_add(4) // IOWIN at offset 0x10
}

fn read(register: u32) -> u32 {
    // Safety: as in `select`; IOWIN is the selected register's window.
    unsafe { core::ptr::read_volatile(select(register)) }
}

fn write(register: u32, value: u32) {
    // Safety: as in `read`.
    unsafe { core::ptr::write_volatile(select(register), value) }
}

/// Programs every input masked, routed to its vector on the boot CPU. Returns the number of
/// inputs.
pub fn init() -> u8 {
    let lines = (((read(REG_VERSION) >> 16) & 0xff) + 1).min(kcore::kernel::MAX_IRQ_LINES as u32);
    LINES.store(lines, Ordering::Relaxed);
    for line in 0..lines {
        let mode = if line >= 16 { LEVEL | ACTIVE_LOW } else { 0 };
        write(REG_REDIRECTION + 2 * line + 1, 0); // destination: local APIC 0
        write(REG_REDIRECTION + 2 * line, MASKED | mode | (VECTOR_BASE as u32 + line));
    }
    lines as u8
}

/// Masks or unmasks input `line`.
pub fn set_masked(line: u8, masked: bool) {
    if line as u32 >= LINES.load(Ordering::Relaxed) {
        return;
    }
    let register = REG_REDIRECTION + 2 * line as u32;
    let low = read(register);
    write(register, if masked { low | MASKED } else { low & !MASKED });
}

/// The input line of `vector`, if it is an I/O APIC vector.
pub fn line_of(vector: u64) -> Option<u8> {
    let line = vector.checked_sub(VECTOR_BASE as u64)?;
    (line < LINES.load(Ordering::Relaxed) as u64).then_some(line as u8)
}
