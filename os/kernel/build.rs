//! Links the kernel as a static ELF at the addresses of `linker.ld`, and generates the
//! interrupt entry stubs.

use std::fmt::Write as _;
use std::path::PathBuf;

/// Vectors for which the CPU pushes an error code.
const HAS_ERROR_CODE: [u8; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];

fn main() {
    let dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let script = dir.join("linker.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    for arg in [
        &format!("-Wl,-T,{}", script.display()),
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-no-pie",
        "-Wl,--build-id=none",
        "-Wl,-n",
        "-Wl,--gc-sections",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }

    // One entry stub per vector: push a zero where the CPU pushes no error code, push the
    // vector, join the common path. A table of their addresses fills the IDT.
    let mut asm = String::from(".section .text.isr, \"ax\"\n");
    for v in 0..=255u8 {
        writeln!(asm, ".balign 16\nisr_stub_{v}:").unwrap();
        if !HAS_ERROR_CODE.contains(&v) {
            asm.push_str("    push 0\n");
        }
        writeln!(asm, "    push {v}\n    jmp isr_common").unwrap();
    }
    asm.push_str(".section .rodata.isr, \"a\"\n.balign 8\n.global ISR_STUBS\nISR_STUBS:\n");
    for v in 0..=255u8 {
        writeln!(asm, "    .quad isr_stub_{v}").unwrap();
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap()).join("isr_stubs.s");
    std::fs::write(out, asm).unwrap();
}
