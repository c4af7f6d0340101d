//! Test program: each thread's SSE registers survive system calls, yields and preemption.
//! Three threads at the same priority fill xmm0-xmm15 with their own pattern, then yield,
//! spin through timer preemptions and make system calls, checking the pattern each time.
#![no_std]
#![no_main]

use abi::syscall::Sys;
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};
use rt::sys;

rt::entry!(main);

static DONE: AtomicU64 = AtomicU64::new(0);
static BAD: AtomicU64 = AtomicU64::new(0);

/// What happens while the registers hold their pattern.
#[derive(Clone, Copy)]
enum Action {
    Yield = 0,
    /// A loop long enough for timer preemption.
    Spin = 1,
    SystemCall = 2,
}

/// Loads `seed`-derived values into xmm0-xmm15, performs `action`, and checks them. All of it
/// is one asm block, so the compiler cannot use the vector registers in between.
fn fill_and_check(seed: u64, action: Action) -> bool {
    let values: [u64; 16] = core::array::from_fn(|i| seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(i as u64));
    let mut got = [0u64; 16];
    // Safety: the block clobbers only the registers it declares; the system calls (yield,
    // time_now) change no memory.
    unsafe {
        asm!(
            "movq xmm0, [{v}]", "movq xmm1, [{v} + 8]", "movq xmm2, [{v} + 16]", "movq xmm3, [{v} + 24]",
            "movq xmm4, [{v} + 32]", "movq xmm5, [{v} + 40]", "movq xmm6, [{v} + 48]", "movq xmm7, [{v} + 56]",
            "movq xmm8, [{v} + 64]", "movq xmm9, [{v} + 72]", "movq xmm10, [{v} + 80]", "movq xmm11, [{v} + 88]",
            "movq xmm12, [{v} + 96]", "movq xmm13, [{v} + 104]", "movq xmm14, [{v} + 112]", "movq xmm15, [{v} + 120]",
            "cmp {act}, 1",
            "je 2f",
            "ja 3f",
            "mov eax, {yield_call}",
            "syscall",
            "jmp 4f",
            "2: mov ecx, {spins}",
            "5: dec ecx",
            "jnz 5b",
            "jmp 4f",
            "3: mov eax, {time_call}",
            "syscall",
            "4:",
            "movq [{g}], xmm0", "movq [{g} + 8], xmm1", "movq [{g} + 16], xmm2", "movq [{g} + 24], xmm3",
            "movq [{g} + 32], xmm4", "movq [{g} + 40], xmm5", "movq [{g} + 48], xmm6", "movq [{g} + 56], xmm7",
            "movq [{g} + 64], xmm8", "movq [{g} + 72], xmm9", "movq [{g} + 80], xmm10", "movq [{g} + 88], xmm11",
            "movq [{g} + 96], xmm12", "movq [{g} + 104], xmm13", "movq [{g} + 112], xmm14", "movq [{g} + 120], xmm15",
            v = in(reg) values.as_ptr(),
            g = in(reg) got.as_mut_ptr(),
            act = in(reg) action as u64,
            yield_call = const Sys::Yield as u32,
            time_call = const Sys::TimeNow as u32,
            spins = const 3_000_000u32,
            out("rax") _, out("rcx") _, out("r11") _, out("rdi") _, out("rsi") _, out("rdx") _,
            out("r10") _, out("r8") _, out("r9") _, out("r12") _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _, out("xmm4") _, out("xmm5") _,
            out("xmm6") _, out("xmm7") _, out("xmm8") _, out("xmm9") _, out("xmm10") _, out("xmm11") _,
            out("xmm12") _, out("xmm13") _, out("xmm14") _, out("xmm15") _,
        );
    }
    got == values
}

fn work(seed: u64) {
    for round in 0..20 {
        let action = [Action::Yield, Action::Spin, Action::SystemCall][round as usize % 3];
        if !fill_and_check(seed + round, action) {
            BAD.fetch_add(1, Ordering::Relaxed);
        }
    }
    DONE.fetch_add(1, Ordering::Relaxed);
}

extern "C" fn worker(seed: u64) -> ! {
    work(seed);
    sys::thread_exit()
}

fn main() -> i32 {
    for i in 0..2 {
        sys::thread_create(worker, rt::stack(8192).expect("a stack"), 63, 1000 * (i + 1)).expect("worker");
    }
    work(7);
    while DONE.load(Ordering::Relaxed) < 3 {
        sys::yield_now();
    }
    let bad = BAD.load(Ordering::Relaxed);
    rt::println!("xmm: {} of 60 checks failed", bad);
    if bad == 0 {
        rt::println!("xmm: ok");
        0
    } else {
        1
    }
}
