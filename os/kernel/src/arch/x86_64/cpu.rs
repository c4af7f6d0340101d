//! Single x86_64 instructions the kernel needs: port I/O, model-specific and control registers,
//! halting, the time-stamp counter.

use core::arch::asm;

/// Writes a byte to an I/O port.
///
/// # Safety
/// The port must belong to a device the kernel drives, and the write must be valid for it.
pub unsafe fn outb(port: u16, value: u8) {
    // Safety: the caller vouches for the device behind the port.
    unsafe { asm!("out dx, al", in("dx") port, in("al") value, options(nomem, nostack, preserves_flags)) }
}

/// Writes a double word to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outl(port: u16, value: u32) {
    // Safety: the caller vouches for the device behind the port.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") value, options(nomem, nostack, preserves_flags)) }
}

/// Reads a byte from an I/O port.
///
/// # Safety
/// As for [`outb`]; reads can have side effects on devices.
pub unsafe fn inb(port: u16) -> u8 {
    let value: u8;
    // Safety: the caller vouches for the device behind the port.
    unsafe { asm!("in al, dx", in("dx") port, out("al") value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Writes a word to an I/O port.
///
/// # Safety
/// As for [`outb`].
pub unsafe fn outw(port: u16, value: u16) {
    // Safety: the caller vouches for the device behind the port.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") value, options(nomem, nostack, preserves_flags)) }
}

/// Reads a word from an I/O port.
///
/// # Safety
/// As for [`inb`].
pub unsafe fn inw(port: u16) -> u16 {
    let value: u16;
    // Safety: the caller vouches for the device behind the port.
    unsafe { asm!("in ax, dx", in("dx") port, out("ax") value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Reads a double word from an I/O port.
///
/// # Safety
/// As for [`inb`].
pub unsafe fn inl(port: u16) -> u32 {
    let value: u32;
    // Safety: the caller vouches for the device behind the port.
    unsafe { asm!("in eax, dx", in("dx") port, out("eax") value, options(nomem, nostack, preserves_flags)) }
    value
}

/// Reads a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU, or the read faults.
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // Safety: the caller vouches that the MSR exists.
    unsafe { asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (hi as u64) << 32 | lo as u64
}

/// Writes a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid for it; MSRs change how the CPU behaves.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    // Safety: the caller vouches for the MSR and the value.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack, preserves_flags))
    }
}

/// The time-stamp counter. Under QEMU with `-icount shift=0` it counts guest instructions.
pub fn rdtsc() -> u64 {
    let (lo, hi): (u32, u32);
    // Safety: rdtsc only reads the counter; CR4.TSD is clear so it is allowed at any privilege.
    unsafe { asm!("rdtsc", out("eax") lo, out("edx") hi, options(nomem, nostack, preserves_flags)) }
    (hi as u64) << 32 | lo as u64
}

/// The faulting address of the last page fault.
pub fn cr2() -> u64 {
    let value: u64;
    // Safety: reading CR2 has no side effects.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value
}

/// The physical address of the current top-level page table.
pub fn read_cr3() -> u64 {
    let value: u64;
    // Safety: reading CR3 has no side effects.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) }
    value & 0x000f_ffff_ffff_f000
}

/// Drops the TLB entry of the page at `virt`.
pub fn invlpg(virt: u64) {
    // Safety: invalidating a TLB entry only costs a later page walk.
    unsafe { asm!("invlpg [{}]", in(reg) virt, options(nostack, preserves_flags)) }
}

/// Loads a new top-level page table.
///
/// # Safety
/// `pml4` must be the physical address of a page table that maps the running kernel (its code,
/// stack and data) at the same addresses as the current one.
pub unsafe fn write_cr3(pml4: u64) {
    // Safety: the caller guarantees the new tables map everything the kernel is using.
    unsafe { asm!("mov cr3, {}", in(reg) pml4, options(nostack, preserves_flags)) }
}

/// The frame pointer of the caller's frame.
#[inline(always)]
pub fn frame_pointer() -> u64 {
    let rbp: u64;
    // Safety: reading rbp has no side effects.
    unsafe { asm!("mov {}, rbp", out(reg) rbp, options(nomem, nostack, preserves_flags)) }
    rbp
}

/// Waits for the next interrupt with interrupts enabled, then disables them again.
///
/// The kernel otherwise runs with interrupts disabled (it is not preemptible, and the
/// precompiled core library uses the red zone), so this is the one place interrupts arrive.
pub fn wait_for_interrupt() {
    // Safety: `sti; hlt` takes the interrupt at the `hlt`, on a stack whose live data is all
    // above rsp (this function's own frame is compiled without a red zone).
    unsafe { asm!("sti", "hlt", "cli", options(nomem, nostack)) }
}

/// Stops this CPU for good.
pub fn halt_forever() -> ! {
    loop {
        // Safety: with interrupts disabled, `hlt` stops the CPU; nothing is left to run.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) }
    }
}
