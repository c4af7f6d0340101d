//! The `syscall` instruction's entry point.
//!
//! `syscall` leaves the user's rsp in place and puts its rip in rcx and its rflags in r11. The
//! entry switches to the kernel stack and builds the same [`TrapFrame`] an interrupt from user
//! mode would (vector [`SYSCALL_VECTOR`]), then joins the common path; the return is the
//! common `iretq`. FMASK clears IF, TF, DF and AC on entry, so the kernel runs with interrupts
//! disabled as everywhere else.
//!
//! [`TrapFrame`]: super::trap::TrapFrame

use super::cpu::wrmsr;
use super::gdt::{KERNEL_CODE, USER_BASE, USER_CODE, USER_DATA};
use super::trap::SYSCALL_VECTOR;
use core::arch::global_asm;

const IA32_STAR: u32 = 0xc000_0081;
const IA32_LSTAR: u32 = 0xc000_0082;
const IA32_FMASK: u32 = 0xc000_0084;
const FMASK: u64 = (1 << 9) | (1 << 8) | (1 << 10) | (1 << 18); // IF, TF, DF, AC

/// The kernel stack's top, loaded by the entry (the TSS holds the same for interrupts).
#[no_mangle]
pub static mut KERNEL_STACK_TOP: u64 = 0;
#[no_mangle]
static mut USER_RSP_SCRATCH: u64 = 0;

global_asm!(
    ".section .text.isr, \"ax\"",
    ".global syscall_entry",
    "syscall_entry:",
    "    mov [rip + {scratch}], rsp",
    "    mov rsp, [rip + {top}]",
    "    push {user_data}",
    "    push qword ptr [rip + {scratch}]",
    "    push r11",
    "    push {user_code}",
    "    push rcx",
    "    push 0",
    "    push {vector}",
    "    jmp isr_common",
    scratch = sym USER_RSP_SCRATCH,
    top = sym KERNEL_STACK_TOP,
    user_data = const USER_DATA as u64,
    user_code = const USER_CODE as u64,
    vector = const SYSCALL_VECTOR,
);

extern "C" {
    fn syscall_entry();
}

/// Enables `syscall` with `stack_top` as the kernel stack.
pub fn init(stack_top: u64) {
    // Safety: one CPU, during bring-up; the MSRs exist on every x86_64 CPU and the values are
    // the selectors of our GDT and the entry above.
    unsafe {
        KERNEL_STACK_TOP = stack_top;
        wrmsr(IA32_STAR, (USER_BASE as u64) << 48 | (KERNEL_CODE as u64) << 32);
        wrmsr(IA32_LSTAR, syscall_entry as *const () as u64);
        wrmsr(IA32_FMASK, FMASK);
    }
}
