//! ELF64 executables for x86_64: the checks and the segment list a program loader needs.
//!
//! The file comes from the boot archive or, later, from any user: it is hostile. Every field the
//! loader relies on is validated here, once: the identification bytes, the machine, the type
//! (static executables and static position-independent executables), the program-header table
//! bounds, and for every loadable segment that its file bytes lie inside the file, that its
//! memory size covers its file size, that it lies wholly in the user half of the address space
//! without wrapping, and that its file offset and address agree modulo the page size. A file that
//! passes can be loaded without further checks.

#![no_std]

#[cfg(test)]
extern crate std;

#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;

use core::fmt;

/// The end of the user half of the address space (exclusive), `0x0000_8000_0000_0000`.
pub const USER_END: u64 = 1 << 47;
const PAGE: u64 = 4096;

const PT_LOAD: u32 = 1;
const PT_INTERP: u32 = 3;
const PT_PHDR: u32 = 6;
const PT_TLS: u32 = 7;
const ET_EXEC: u16 = 2;
const ET_DYN: u16 = 3;
const EM_X86_64: u16 = 62;
const HEADER_LEN: usize = 64;
const PHDR_LEN: usize = 56;
/// More program headers than this is not a real program.
const MAX_PHDRS: usize = 64;

/// Segment permission bits (`p_flags`).
pub const PF_X: u32 = 1;
pub const PF_W: u32 = 2;
pub const PF_R: u32 = 4;

/// Why a file is not a loadable program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header, or no `\x7fELF` magic.
    NotElf,
    /// Not 64-bit little-endian ELF version 1.
    WrongClass,
    /// Built for another machine (the `e_machine` value).
    WrongMachine(u16),
    /// Not an executable (relocatable object, core dump, ...).
    NotExecutable(u16),
    /// Needs a dynamic linker (has a `PT_INTERP` segment).
    Dynamic,
    /// The program-header table is malformed or out of the file.
    BadProgramHeaders,
    /// Segment `index` is malformed: outside the file, outside user memory, overlapping wrap,
    /// or offset and address misaligned.
    BadSegment(usize),
    /// No loadable segment.
    NoSegments,
    /// The entry point is not inside an executable segment.
    BadEntry(u64),
}

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ElfError::NotElf => write!(f, "not an ELF file"),
            ElfError::WrongClass => write!(f, "not a 64-bit little-endian ELF file"),
            ElfError::WrongMachine(m) => write!(f, "built for another machine (e_machine {m}), not x86_64"),
            ElfError::NotExecutable(t) => write!(f, "not an executable (e_type {t})"),
            ElfError::Dynamic => write!(f, "a dynamically linked program (needs an interpreter)"),
            ElfError::BadProgramHeaders => write!(f, "malformed program-header table"),
            ElfError::BadSegment(i) => write!(f, "malformed loadable segment {i}"),
            ElfError::NoSegments => write!(f, "no loadable segment"),
            ElfError::BadEntry(e) => write!(f, "entry point {e:#x} is not in an executable segment"),
        }
    }
}

/// A loadable segment, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    /// Where it goes in memory (before any load bias for position-independent programs).
    pub vaddr: u64,
    /// Bytes in memory; the part past `file_len` is zero.
    pub mem_len: u64,
    /// Where its bytes are in the file.
    pub offset: u64,
    pub file_len: u64,
    /// `PF_R`, `PF_W`, `PF_X`.
    pub flags: u32,
}

impl Segment {
    /// The page-aligned memory range the segment occupies.
    pub fn pages(&self) -> (u64, u64) {
        (self.vaddr & !(PAGE - 1), (self.vaddr + self.mem_len).next_multiple_of(PAGE))
    }
}

/// A checked executable.
#[derive(Clone, Copy, Debug)]
pub struct Elf<'a> {
    bytes: &'a [u8],
    /// The entry point.
    pub entry: u64,
    /// Position-independent (`ET_DYN`): may be loaded at any page-aligned bias.
    pub position_independent: bool,
    phoff: usize,
    phnum: usize,
}

// The offsets come from the file: `at` may be anything (found by the fuzz entry point).
fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(at..at.checked_add(2)?)?.try_into().ok()?))
}
fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(at..at.checked_add(4)?)?.try_into().ok()?))
}
fn u64_at(b: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

impl<'a> Elf<'a> {
    /// Checks `bytes` as an x86_64 executable.
    pub fn parse(bytes: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        Self::parse_with_len(bytes, bytes.len() as u64)
    }

    /// Checks the headers of an executable of `file_len` bytes whose first bytes are `head`
    /// (at least the ELF header and the program-header table, else `BadProgramHeaders`):
    /// for a loader that reads segments from a file itself. Segments are checked against
    /// `file_len`; [`Elf::data`] gives only what lies inside `head`.
    pub fn parse_with_len(bytes: &'a [u8], file_len: u64) -> Result<Elf<'a>, ElfError> {
        if bytes.len() < HEADER_LEN || &bytes[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        if bytes[4] != 2 || bytes[5] != 1 || bytes[6] != 1 {
            return Err(ElfError::WrongClass);
        }
        let e_type = u16_at(bytes, 16).ok_or(ElfError::NotElf)?;
        let machine = u16_at(bytes, 18).ok_or(ElfError::NotElf)?;
        if machine != EM_X86_64 {
            return Err(ElfError::WrongMachine(machine));
        }
        if e_type != ET_EXEC && e_type != ET_DYN {
            return Err(ElfError::NotExecutable(e_type));
        }
        let entry = u64_at(bytes, 24).ok_or(ElfError::NotElf)?;
        let phoff = u64_at(bytes, 32).ok_or(ElfError::NotElf)?;
        let phentsize = u16_at(bytes, 54).ok_or(ElfError::NotElf)? as usize;
        let phnum = u16_at(bytes, 56).ok_or(ElfError::NotElf)? as usize;
        if phentsize != PHDR_LEN || phnum == 0 || phnum > MAX_PHDRS {
            return Err(ElfError::BadProgramHeaders);
        }
        let table_end = phoff.checked_add((phnum * PHDR_LEN) as u64).ok_or(ElfError::BadProgramHeaders)?;
        if table_end > bytes.len() as u64 || bytes.len() as u64 > file_len {
            return Err(ElfError::BadProgramHeaders);
        }
        let elf = Elf { bytes, entry, position_independent: e_type == ET_DYN, phoff: phoff as usize, phnum };
        let mut loadable = 0;
        let mut entry_ok = false;
        for i in 0..phnum {
            let kind = elf.phdr_type(i);
            if kind == PT_INTERP {
                return Err(ElfError::Dynamic);
            }
            if kind != PT_LOAD {
                continue;
            }
            let s = elf.read_segment(i);
            let end = s.vaddr.checked_add(s.mem_len);
            let file_end = s.offset.checked_add(s.file_len);
            let valid = matches!(end, Some(e) if e <= USER_END)
                && matches!(file_end, Some(e) if e <= file_len)
                && s.file_len <= s.mem_len
                && s.mem_len > 0
                && s.vaddr % PAGE == s.offset % PAGE;
            if !valid {
                return Err(ElfError::BadSegment(i));
            }
            loadable += 1;
            entry_ok |= s.flags & PF_X != 0 && entry >= s.vaddr && entry < s.vaddr + s.mem_len;
        }
        if loadable == 0 {
            return Err(ElfError::NoSegments);
        }
        if !entry_ok {
            return Err(ElfError::BadEntry(entry));
        }
        Ok(elf)
    }

    /// The loadable segments, in file order.
    pub fn segments(&self) -> impl Iterator<Item = Segment> + '_ {
        (0..self.phnum).filter(|&i| self.phdr_type(i) == PT_LOAD).map(|i| self.read_segment(i))
    }

    /// The file bytes of a segment returned by [`Elf::segments`] (after
    /// [`Elf::parse_with_len`], only the part inside the bytes given).
    pub fn data(&self, segment: &Segment) -> &'a [u8] {
        // Checked in `parse`: offset + file_len lies within the file.
        let start = (segment.offset as usize).min(self.bytes.len());
        let end = ((segment.offset + segment.file_len) as usize).min(self.bytes.len());
        &self.bytes[start..end]
    }

    /// Where the program headers are in memory (before any load bias), for `AT_PHDR`: the
    /// `PT_PHDR` segment's address, else the address of the table's file offset inside a
    /// loadable segment; `None` if they are not loaded.
    pub fn phdr_vaddr(&self) -> Option<u64> {
        let at = |i: usize, off: usize| u64_at(self.bytes, self.phoff + i * PHDR_LEN + off);
        if let Some(i) = (0..self.phnum).find(|&i| self.phdr_type(i) == PT_PHDR) {
            return at(i, 16);
        }
        let phoff = self.phoff as u64;
        self.segments()
            .find(|s| s.offset <= phoff && phoff + (self.phnum * PHDR_LEN) as u64 <= s.offset + s.file_len)
            .map(|s| s.vaddr + (phoff - s.offset))
    }

    /// The thread-local storage template (`PT_TLS`), if any: (vaddr, file_len, mem_len, align).
    pub fn tls(&self) -> Option<(u64, u64, u64, u64)> {
        let i = (0..self.phnum).find(|&i| self.phdr_type(i) == PT_TLS)?;
        let at = self.phoff + i * PHDR_LEN;
        Some((
            u64_at(self.bytes, at + 16)?,
            u64_at(self.bytes, at + 32)?,
            u64_at(self.bytes, at + 40)?,
            u64_at(self.bytes, at + 48)?,
        ))
    }

    /// Where the program headers are, and how many: (file offset, count), for `AT_PHDR`.
    pub fn program_headers(&self) -> (u64, usize) {
        (self.phoff as u64, self.phnum)
    }

    fn phdr_type(&self, i: usize) -> u32 {
        // In bounds: the table was checked in `parse`.
        u32_at(self.bytes, self.phoff + i * PHDR_LEN).unwrap_or(0)
    }

    fn read_segment(&self, i: usize) -> Segment {
        let at = self.phoff + i * PHDR_LEN;
        let field = |off| u64_at(self.bytes, at + off).unwrap_or(0);
        Segment {
            flags: u32_at(self.bytes, at + 4).unwrap_or(0),
            offset: field(8),
            vaddr: field(16),
            file_len: field(32),
            mem_len: field(40),
        }
    }
}

/// The interpreter a dynamically linked executable asks for (`PT_INTERP`'s path, without
/// its NUL), if the file has one inside its bytes: for a clear "interpreter missing" message
/// after [`Elf::parse`] refused the file with [`ElfError::Dynamic`].
pub fn interpreter(bytes: &[u8]) -> Option<&[u8]> {
    let phoff = usize::try_from(u64_at(bytes, 32)?).ok()?;
    let phnum = u16_at(bytes, 56)? as usize;
    (0..phnum.min(MAX_PHDRS)).find_map(|i| {
        let at = phoff.checked_add(i.checked_mul(PHDR_LEN)?)?;
        if u32_at(bytes, at)? != PT_INTERP {
            return None;
        }
        let offset = usize::try_from(u64_at(bytes, at.checked_add(8)?)?).ok()?;
        let len = usize::try_from(u64_at(bytes, at.checked_add(32)?)?).ok()?;
        let path = bytes.get(offset..offset.checked_add(len)?)?;
        Some(path.split(|b| *b == 0).next().unwrap_or(path))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    /// A minimal executable: one R+X segment at 0x400000 holding `code`, entry at its start.
    fn exe(code: &[u8]) -> Vec<u8> {
        let mut b = std::vec![0u8; 0x1000];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&ET_EXEC.to_le_bytes());
        b[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[20..24].copy_from_slice(&1u32.to_le_bytes());
        b[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[52..54].copy_from_slice(&64u16.to_le_bytes());
        b[54..56].copy_from_slice(&(PHDR_LEN as u16).to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        let ph = 64;
        b[ph..ph + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
        b[ph + 4..ph + 8].copy_from_slice(&(PF_R | PF_X).to_le_bytes());
        b[ph + 8..ph + 16].copy_from_slice(&0x1000u64.to_le_bytes());
        b[ph + 16..ph + 24].copy_from_slice(&0x401000u64.to_le_bytes());
        b[ph + 32..ph + 40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        b[ph + 40..ph + 48].copy_from_slice(&0x2000u64.to_le_bytes());
        b.extend_from_slice(code);
        b
    }

    #[test]
    fn accepts_a_minimal_executable() {
        let bytes = exe(&[0xf4; 16]);
        let elf = Elf::parse(&bytes).unwrap();
        assert_eq!(elf.entry, 0x401000);
        let segs: Vec<_> = elf.segments().collect();
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].pages(), (0x401000, 0x403000));
        assert_eq!(elf.data(&segs[0]), &[0xf4; 16]);
    }

    #[test]
    fn rejects_what_cannot_be_loaded() {
        let good = exe(&[0x90; 8]);
        let with = |at: usize, bytes: &[u8]| {
            let mut b = good.clone();
            b[at..at + bytes.len()].copy_from_slice(bytes);
            Elf::parse(&b).map(|_| ())
        };
        assert_eq!(Elf::parse(b"\x7fELF").map(|_| ()), Err(ElfError::NotElf));
        assert_eq!(with(4, &[1]), Err(ElfError::WrongClass));
        assert_eq!(with(18, &183u16.to_le_bytes()), Err(ElfError::WrongMachine(183)));
        assert_eq!(with(16, &1u16.to_le_bytes()), Err(ElfError::NotExecutable(1)));
        assert_eq!(with(64, &PT_INTERP.to_le_bytes()), Err(ElfError::Dynamic));
        assert_eq!(with(56, &0u16.to_le_bytes()), Err(ElfError::BadProgramHeaders));
        assert_eq!(with(32, &u64::MAX.to_le_bytes()), Err(ElfError::BadProgramHeaders));
        // Segment in the kernel half, wrapping, beyond the file, misaligned, memsz < filesz.
        assert_eq!(with(64 + 16, &0xffff_8000_0000_1000u64.to_le_bytes()), Err(ElfError::BadSegment(0)));
        assert_eq!(with(64 + 40, &u64::MAX.to_le_bytes()), Err(ElfError::BadSegment(0)));
        assert_eq!(with(64 + 32, &0x10_0000u64.to_le_bytes()), Err(ElfError::BadSegment(0)));
        assert_eq!(with(64 + 16, &0x401008u64.to_le_bytes()), Err(ElfError::BadSegment(0)));
        assert_eq!(with(64 + 40, &4u64.to_le_bytes()), Err(ElfError::BadSegment(0)));
        assert_eq!(with(64 + 4, &PF_R.to_le_bytes()), Err(ElfError::BadEntry(0x401000)));
        assert_eq!(with(24, &0x500000u64.to_le_bytes()), Err(ElfError::BadEntry(0x500000)));
    }

    #[test]
    fn headers_only_interpreter_and_phdr_address() {
        let full = exe(&[0x90; 8]);
        let elf = Elf::parse_with_len(&full[..0x100], full.len() as u64).unwrap();
        let seg = elf.segments().next().unwrap();
        assert!(elf.data(&seg).is_empty(), "the segment is beyond the head");
        assert_eq!(Elf::parse_with_len(&full[..0x100], 0x800).map(|_| ()), Err(ElfError::BadSegment(0)));
        assert_eq!(elf.phdr_vaddr(), None, "the table is not inside a loaded segment");
        let mut dynamic = full.clone();
        dynamic[64..68].copy_from_slice(&PT_INTERP.to_le_bytes());
        dynamic[64 + 8..64 + 16].copy_from_slice(&0x200u64.to_le_bytes());
        dynamic[64 + 32..64 + 40].copy_from_slice(&5u64.to_le_bytes());
        dynamic[0x200..0x205].copy_from_slice(b"/ld\0x");
        assert_eq!(Elf::parse(&dynamic).map(|_| ()), Err(ElfError::Dynamic));
        assert_eq!(interpreter(&dynamic), Some(&b"/ld"[..]));
        assert_eq!(interpreter(&full), None);
        assert_eq!(interpreter(b"short"), None);
    }

    #[test]
    fn the_fuzz_entry_point_survives_mutated_executables() {
        let good = exe(&[0x90; 64]);
        crate::fuzz::exercise(&good);
        crate::fuzz::exercise(&[]);
        crate::fuzz::exercise(b"\x7fELF");
        // Deterministic mutations: bytes set to boundary values, and truncations.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for round in 0..4000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let mut b = good.clone();
            let at = (seed % 200) as usize;
            let value = [0u64, u64::MAX, 0x1000, 0x8000_0000_0000, seed][round % 5];
            b[at..at + 8].copy_from_slice(&value.to_le_bytes());
            b.truncate(b.len() - (seed >> 32) as usize % b.len());
            crate::fuzz::exercise(&b);
        }
    }

    proptest::proptest! {
        #[test]
        fn mutations_never_panic_and_accepted_segments_are_sound(at in 0usize..200, value in proptest::prelude::any::<u64>()) {
            let mut b = exe(&[0x90; 64]);
            let at = at.min(b.len() - 8);
            b[at..at + 8].copy_from_slice(&value.to_le_bytes());
            if let Ok(elf) = Elf::parse(&b) {
                for s in elf.segments() {
                    proptest::prop_assert!(s.vaddr + s.mem_len <= USER_END);
                    proptest::prop_assert_eq!(elf.data(&s).len() as u64, s.file_len);
                }
            }
        }
    }
}
