//! What the compiler expects a freestanding program to provide: the memory primitives (the
//! host target's precompiled compiler_builtins does not export them) and the unwinding
//! personality routine that core's unwind tables name (Tutti's programs abort on panic, so it
//! is never called). Linked into the kernel and into every native user program.
#![no_std]

use core::arch::asm;

/// # Safety
/// `dest` and `src` must be valid for `n` bytes and must not overlap.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // Eight bytes per step, then the tail: a string instruction counts once per repetition
    // (under `-icount` and on CPUs without fast short strings), so qwords are cheaper.
    // Safety: the caller guarantees both ranges; DF is clear in Rust code by the ABI.
    unsafe {
        asm!(
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            tail = in(reg) n & 7,
            inout("rdi") dest => _,
            inout("rsi") src => _,
            inout("rcx") n >> 3 => _,
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// # Safety
/// `dest` and `src` must be valid for `n` bytes; they may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // Safety: a forward copy is correct when dest is below src or the ranges are disjoint.
        return unsafe { memcpy(dest, src, n) };
    }
    // Safety: copy backwards from the last byte; DF is restored before returning.
    unsafe {
        asm!(
            "std",
            "rep movsb",
            "cld",
            inout("rdi") dest.wrapping_add(n - 1) => _,
            inout("rsi") src.wrapping_add(n - 1) => _,
            inout("rcx") n => _,
            options(nostack),
        );
    }
    dest
}

/// # Safety
/// `dest` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    let byte = value as u8 as u64;
    // Safety: the caller guarantees the range; qwords first, then the tail (as in memcpy).
    unsafe {
        asm!(
            "rep stosq",
            "mov rcx, {tail}",
            "rep stosb",
            tail = in(reg) n & 7,
            inout("rdi") dest => _,
            inout("rcx") n >> 3 => _,
            in("rax") byte * 0x0101_0101_0101_0101,
            options(nostack, preserves_flags),
        );
    }
    dest
}

/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // Safety: the caller guarantees both ranges.
        let (x, y) = unsafe { (*a.add(i), *b.add(i)) };
        if x != y {
            return x as i32 - y as i32;
        }
    }
    0
}

/// # Safety
/// As for [`memcmp`].
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // Safety: same contract.
    unsafe { memcmp(a, b, n) }
}

/// The precompiled `alloc` is built for unwinding: its cleanup paths (in `format!`, for
/// example) end in `_Unwind_Resume`. Tutti's programs abort on panic, so no unwinding ever
/// starts and this is never reached; it only satisfies the linker.
#[no_mangle]
pub extern "C" fn _Unwind_Resume() -> ! {
    // Safety: `ud2` raises #UD, which the kernel reports (for a program: a fault of its task).
    unsafe { asm!("ud2", options(noreturn)) }
}

/// Never called: the kernel is built with `panic = "abort"`.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
