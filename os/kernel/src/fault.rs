//! What happens when the kernel itself goes wrong: a panic or a CPU exception in kernel mode.
//!
//! Either is a kernel bug. The report names the fault, shows the registers and a frame-pointer
//! backtrace (return addresses; the host tools symbolise them against the kernel ELF), and then
//! the machine stops with a distinct exit status so tests and users see exactly what happened.

use crate::arch::{cpu, trap::TrapFrame};
use crate::console::print_emergency;
use abi::exit::ExitCode;

macro_rules! emergency {
    ($($arg:tt)*) => { print_emergency(format_args!("{}\n", format_args!($($arg)*))) };
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range exceeded",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack-segment fault",
    "#GP general protection fault",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 floating-point error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating-point error",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security exception",
    "reserved (31)",
];

/// The name of exception `vector` ("#PF page fault").
pub fn exception_name(vector: u64) -> &'static str {
    NAMES[vector as usize % 32]
}

/// Reports an exception taken in kernel mode and stops the machine.
pub fn kernel_fault(frame: &TrapFrame) -> ! {
    let vector = frame.vector as usize;
    emergency!("");
    emergency!("KERNEL FAULT: {} (vector {vector}), error code {:#x}", NAMES[vector % 32], frame.error_code);
    if vector == 14 {
        let e = frame.error_code;
        emergency!(
            "  page fault at {:#x}: {} {} access{}",
            cpu::cr2(),
            if e & 1 != 0 { "protection violation on" } else { "not-present page on" },
            if e & 0x10 != 0 {
                "instruction-fetch"
            } else if e & 2 != 0 {
                "write"
            } else {
                "read"
            },
            if e & 4 != 0 { " from user mode" } else { " from kernel mode" },
        );
    }
    let f = frame;
    emergency!(
        "  rip {:#018x}  cs  {:#06x}  rflags {:#010x}  rsp {:#018x}  ss {:#06x}",
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss
    );
    emergency!("  rax {:#018x}  rbx {:#018x}  rcx {:#018x}  rdx {:#018x}", f.rax, f.rbx, f.rcx, f.rdx);
    emergency!("  rsi {:#018x}  rdi {:#018x}  rbp {:#018x}  r8  {:#018x}", f.rsi, f.rdi, f.rbp, f.r8);
    emergency!("  r9  {:#018x}  r10 {:#018x}  r11 {:#018x}  r12 {:#018x}", f.r9, f.r10, f.r11, f.r12);
    emergency!("  r13 {:#018x}  r14 {:#018x}  r15 {:#018x}", f.r13, f.r14, f.r15);
    backtrace(Some(f.rip), f.rbp);
    crate::shutdown::exit(ExitCode::KernelFault)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    emergency!("");
    match info.location() {
        Some(l) => emergency!("KERNEL PANIC at {}:{}: {}", l.file(), l.line(), info.message()),
        None => emergency!("KERNEL PANIC: {}", info.message()),
    }
    backtrace(None, cpu::frame_pointer());
    crate::shutdown::exit(ExitCode::Panic)
}

extern "C" {
    static boot_stack_bottom: u8;
    static boot_stack_top: u8;
    static fault_stack_bottom: u8;
    static fault_stack_top: u8;
}

/// The kernel stacks a frame pointer may point into.
fn on_a_kernel_stack(address: u64) -> bool {
    let stacks = [
        (&raw const boot_stack_bottom as u64, &raw const boot_stack_top as u64),
        (&raw const fault_stack_bottom as u64, &raw const fault_stack_top as u64),
    ];
    stacks.iter().any(|&(bottom, top)| address >= bottom && address + 16 <= top)
}

/// Prints the return addresses of the frame-pointer chain starting at `rbp`, preceded by
/// `first` (the faulting instruction). Every frame pointer is checked to lie on a kernel stack
/// before it is read, so a corrupt chain ends the backtrace instead of faulting again.
fn backtrace(first: Option<u64>, mut rbp: u64) {
    emergency!("backtrace:");
    let mut depth = 0;
    if let Some(rip) = first {
        emergency!("  #{depth:<2} {rip:#018x}");
        depth += 1;
    }
    while depth < 64 && rbp.is_multiple_of(8) && on_a_kernel_stack(rbp) {
        // Safety: rbp is 8-aligned and [rbp, rbp + 16) lies on a kernel stack.
        let (next, ret) = unsafe { (*(rbp as *const u64), *((rbp + 8) as *const u64)) };
        if ret == 0 {
            break;
        }
        emergency!("  #{depth:<2} {ret:#018x}");
        depth += 1;
        if next <= rbp {
            break; // frames grow upwards; anything else is corrupt or the end
        }
        rbp = next;
    }
    emergency!("end of backtrace");
}
