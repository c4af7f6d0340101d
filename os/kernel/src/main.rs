//! The Tutti kernel.
//!
//! Bring-up, in order: the serial console; the boot information and the command line; the
//! descriptor tables (so any later fault is reported); physical memory, the kernel's own page
//! tables and the heap; the boot archive; the timer. Then the "ready" line. Every step that can
//! fail because of how the machine was started (options, memory, archive) ends with a clear
//! message and a distinct exit status instead of a crash. See docs/boot.md.
#![no_std]
#![no_main]

extern crate alloc;
extern crate freestanding;

mod arch;
mod archive;
mod console;
mod crash;
mod fault;
mod loader;
mod mem;
mod pvh;
mod shutdown;
mod space;
mod system;
mod time;

use abi::exit::ExitCode;
use kcore::cmdline::{OnReady, Options};

/// Stops the machine because of how it was started, with a message saying what is wrong.
pub(crate) fn refuse(what: &str, why: &dyn core::fmt::Display) -> ! {
    println!("error: {what}: {why}");
    shutdown::exit(ExitCode::BadConfig)
}

/// Called by the boot stub on the boot stack, with interrupts disabled.
#[no_mangle]
extern "C" fn kernel_main(start_info: u64) -> ! {
    let entry_tsc = arch::cpu::rdtsc();
    console::init();
    println!("Tutti {} (x86_64) booting", env!("CARGO_PKG_VERSION"));
    arch::gdt::init();
    arch::trap::init();

    // Safety: `start_info` is what the PVH loader passed, and the boot tables are still live.
    let boot = unsafe { pvh::read(start_info) }.unwrap_or_else(|e| refuse("boot information", &e));
    let options = Options::parse(boot.cmdline()).unwrap_or_else(|e| refuse("kernel command line", &e));
    console::set_level(options.log);
    log::debug!("command line: {:?}", boot.cmdline());
    for r in boot.ram() {
        log::debug!("RAM {:#012x}-{:#012x} ({} KiB)", r.start, r.start + r.len, r.len / 1024);
    }

    let report = mem::init(&boot).unwrap_or_else(|e| refuse("memory", &e));
    log::info!(
        "memory: {} KiB RAM, {} KiB free; heap {} KiB, frame bitmap {} B, {} page-table frames",
        report.ram / 1024,
        report.free / 1024,
        report.heap / 1024,
        report.bitmap,
        report.page_table_frames
    );

    let archive = archive::open(boot.archive).unwrap_or_else(|e| refuse("boot archive", &e));
    log::info!("boot archive: {} entries", archive.entries().count());
    for e in archive.entries() {
        log::debug!("  {:06o} {:>8} {}", e.mode, e.data.len(), e.name);
    }

    let irq_lines = arch::ioapic::init();
    let timer = arch::apic::init(time::HZ)
        .unwrap_or_else(|_| refuse("timer", &"the PIT never counted down, so the APIC timer cannot be calibrated"));
    log::info!("timer: local APIC at {} Hz ({} counts/ms, TSC {} kHz)", time::HZ, timer.apic_per_ms, timer.tsc_per_ms);
    log::debug!("I/O APIC: {irq_lines} interrupt lines at vectors {:#x}..", arch::ioapic::VECTOR_BASE);

    if let Some(kind) = options.crash {
        crash::crash(kind);
    }

    let now = arch::cpu::rdtsc();
    println!("{} (tsc {now}, kernel {} cycles)", abi::console::READY, now - entry_tsc);

    match options.on_ready {
        OnReady::Init => {
            let path = options.init;
            let file = archive
                .find(path)
                .filter(|e| e.is_file())
                .unwrap_or_else(|| refuse("init", &format_args!("{path} is not a file in the boot archive")));
            let name = path.rsplit('/').next().unwrap_or(path);
            let program = loader::load(file.data).unwrap_or_else(|e| refuse("init", &format_args!("{path}: {e}")));
            log::info!("starting {path}");
            // init's quota: all free memory (kernel objects are charged 8x their heap use,
            // and the heap is an eighth of memory, so the heap cannot run out either).
            let quota = report.free;
            let devices = kcore::kernel::Devices {
                archive: boot.archive.map_or((0, 0), |a| (a.start, a.len)),
                device_memory: report.device_memory,
                irq_lines,
            };
            system::start(name, program.space, quota, (program.entry, program.stack), devices, &timer)
        }
        OnReady::Exit => {
            const TICKS: u64 = 3;
            while time::ticks() < TICKS {
                arch::cpu::wait_for_interrupt();
            }
            log::info!("timer: {} ticks, shutting down", time::ticks());
            shutdown::exit(ExitCode::Success)
        }
        OnReady::Idle => loop {
            arch::cpu::wait_for_interrupt();
        },
    }
}
