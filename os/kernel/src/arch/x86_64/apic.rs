//! The local APIC and its timer, calibrated against the PIT.
//!
//! The legacy 8259 PICs are remapped away from the exception vectors and masked: interrupts
//! come through the local APIC (and, for devices, later through the I/O APIC). The APIC timer's
//! frequency is not architectural, so it is measured once against PIT channel 2 (polled, no
//! interrupt) over a short window.

use super::cpu::{inb, outb, rdmsr, rdtsc, wrmsr};
use super::paging::phys_to_virt;
use super::trap::{SPURIOUS_VECTOR, TIMER_VECTOR};
use core::sync::atomic::{AtomicU64, Ordering};

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;

const REG_EOI: usize = 0xb0;
const REG_SPURIOUS: usize = 0xf0;
const REG_LVT_TIMER: usize = 0x320;
const REG_TIMER_INITIAL: usize = 0x380;
const REG_TIMER_CURRENT: usize = 0x390;
const REG_TIMER_DIVIDE: usize = 0x3e0;
const TIMER_PERIODIC: u32 = 1 << 17;
const LVT_MASKED: u32 = 1 << 16;

const PIT_HZ: u64 = 1_193_182;
/// The calibration window: 1 ms keeps boot short and the error under 0.1 %.
const CALIBRATION_PIT_TICKS: u64 = PIT_HZ / 1000;
/// An upper bound on polling the PIT, so a machine without one fails instead of hanging.
const CALIBRATION_MAX_POLLS: u64 = 50_000_000;

/// The physical address of the local APIC's registers, to be mapped uncached.
pub fn mmio_base() -> u64 {
    // Safety: IA32_APIC_BASE exists on every x86_64 CPU.
    unsafe { rdmsr(IA32_APIC_BASE) & 0x000f_ffff_ffff_f000 }
}

static BASE_VIRT: AtomicU64 = AtomicU64::new(0);

fn read(reg: usize) -> u32 {
    let base = BASE_VIRT.load(Ordering::Relaxed);
    // Safety: `init` mapped the APIC page at `base` before anyone calls this.
    unsafe { core::ptr::read_volatile((base as usize + reg) as *const u32) }
}

fn write(reg: usize, value: u32) {
    let base = BASE_VIRT.load(Ordering::Relaxed);
    // Safety: as in `read`.
    unsafe { core::ptr::write_volatile((base as usize + reg) as *mut u32, value) }
}

/// What the calibration measured.
#[derive(Clone, Copy, Debug)]
pub struct TimerInfo {
    /// APIC timer counts (after the divide-by-16) per millisecond.
    pub apic_per_ms: u64,
    /// Time-stamp counter cycles per millisecond.
    pub tsc_per_ms: u64,
}

/// The timer could not be calibrated.
#[derive(Clone, Copy, Debug)]
pub struct NoPit;

/// Masks the 8259s, enables the local APIC, measures its timer, and starts it periodic at `hz`.
/// The APIC register page must already be mapped uncached in the direct map.
pub fn init(hz: u64) -> Result<TimerInfo, NoPit> {
    // Safety: the 8259 and PIT ports and IA32_APIC_BASE are standard PC hardware; the
    // sequences are the documented ones.
    unsafe {
        // Remap the 8259s to vectors 0x20-0x2f (so a spurious IRQ 7 is not mistaken for an
        // exception), then mask every line.
        for (port, value) in [(0x20, 0x11), (0xa0, 0x11), (0x21, 0x20), (0xa1, 0x28), (0x21, 4), (0xa1, 2)] {
            outb(port, value);
        }
        outb(0x21, 1);
        outb(0xa1, 1);
        outb(0x21, 0xff);
        outb(0xa1, 0xff);
        wrmsr(IA32_APIC_BASE, rdmsr(IA32_APIC_BASE) | APIC_GLOBAL_ENABLE);
    }
    BASE_VIRT.store(phys_to_virt(mmio_base()) as u64, Ordering::Relaxed);
    write(REG_SPURIOUS, 0x100 | SPURIOUS_VECTOR as u32);
    write(REG_TIMER_DIVIDE, 0x3); // divide by 16
    write(REG_LVT_TIMER, LVT_MASKED | TIMER_VECTOR as u32);

    let info = calibrate()?;
    write(REG_LVT_TIMER, TIMER_PERIODIC | TIMER_VECTOR as u32);
    write(REG_TIMER_INITIAL, (info.apic_per_ms * 1000 / hz).clamp(1, u32::MAX as u64) as u32);
    Ok(info)
}

fn calibrate() -> Result<TimerInfo, NoPit> {
    // Safety: PIT channel 2 and port 0x61 (its gate) are standard PC hardware, otherwise
    // unused by Tutti.
    unsafe {
        let gate = inb(0x61) & !0x03; // gate low, speaker off
        outb(0x61, gate);
        outb(0x43, 0b1011_0000); // channel 2, low then high byte, mode 0 (one-shot)
        outb(0x42, CALIBRATION_PIT_TICKS as u8);
        outb(0x42, (CALIBRATION_PIT_TICKS >> 8) as u8);
        write(REG_TIMER_INITIAL, u32::MAX);
        let tsc_start = rdtsc();
        outb(0x61, gate | 1); // gate high: the PIT counts down
        let mut polls = 0;
        while inb(0x61) & 0x20 == 0 {
            polls += 1;
            if polls == CALIBRATION_MAX_POLLS {
                return Err(NoPit);
            }
        }
        let apic = (u32::MAX - read(REG_TIMER_CURRENT)) as u64;
        let tsc = rdtsc() - tsc_start;
        write(REG_TIMER_INITIAL, 0);
        outb(0x61, gate);
        let ms_scale = |count: u64| (count * PIT_HZ / CALIBRATION_PIT_TICKS / 1000).max(1);
        Ok(TimerInfo { apic_per_ms: ms_scale(apic), tsc_per_ms: ms_scale(tsc) })
    }
}

/// APIC timer counts per millisecond, once calibrated (for `arm`).
static COUNTS_PER_MS: AtomicU64 = AtomicU64::new(0);

/// Switches the timer from periodic ticks to one-shot mode, stopped: from now on it fires only
/// when `arm`ed (the kernel is tickless once tasks run).
pub fn one_shot(info: &TimerInfo) {
    COUNTS_PER_MS.store(info.apic_per_ms, Ordering::Relaxed);
    write(REG_TIMER_INITIAL, 0);
    write(REG_LVT_TIMER, TIMER_VECTOR as u32);
}

/// Makes the one-shot timer fire `ns` nanoseconds from now (at least one count, at most about
/// a minute: an earlier interrupt is harmless, the kernel re-arms for what is left).
pub fn arm(ns: u64) {
    let per_ms = COUNTS_PER_MS.load(Ordering::Relaxed);
    let counts = (ns as u128 * per_ms as u128 / 1_000_000).clamp(1, u32::MAX as u128);
    write(REG_TIMER_INITIAL, counts as u32);
}

/// Stops the one-shot timer.
pub fn disarm() {
    write(REG_TIMER_INITIAL, 0);
}

/// Acknowledges the interrupt being handled.
pub fn end_of_interrupt() {
    write(REG_EOI, 0);
}
