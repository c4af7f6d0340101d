//! The entry point of the cargo-fuzz target in `elf/fuzz/` (and of a test over mutated
//! executables): parse arbitrary bytes as an executable, both whole and with only their
//! headers at hand, and use everything a parsed executable offers. Nothing here may panic
//! whatever the bytes are; errors are expected. Exists only in tests and with `fuzzing`.

use crate::{interpreter, Elf};

/// Parses `data` every way the loaders do and touches every accessor of a result.
pub fn exercise(data: &[u8]) {
    if let Ok(elf) = Elf::parse(data) {
        touch(&elf);
    }
    // The user-space loader reads only the headers and claims the file's length.
    let claimed = data.get(..8).map_or(0, |b| u64::from_le_bytes(b.try_into().expect("8 bytes")));
    for len in [data.len() as u64, data.len() as u64 * 2, claimed, u64::MAX] {
        if let Ok(elf) = Elf::parse_with_len(data, len) {
            let _ = elf.program_headers();
            let _ = elf.phdr_vaddr();
            for s in elf.segments() {
                let _ = s.pages();
            }
        }
    }
    let _ = interpreter(data);
}

fn touch(elf: &Elf<'_>) {
    let _ = elf.phdr_vaddr();
    let _ = elf.tls();
    let _ = elf.program_headers();
    for s in elf.segments() {
        let _ = s.pages();
        assert_eq!(elf.data(&s).len() as u64, s.file_len, "a segment's data is its file length");
    }
}
