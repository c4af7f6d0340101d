//! The initial stack of a Linux process (System V x86_64 ABI, section 3.4.1, and Linux's
//! `create_elf_tables`): at `rsp` (16-byte aligned) `argc`, then the `argv` pointers and a
//! NULL, the `envp` pointers and a NULL, the auxiliary vector as (type, value) pairs ending
//! with `AT_NULL`; above them the strings, the 16 `AT_RANDOM` bytes, the `AT_PLATFORM` string
//! and the `AT_EXECFN` string, and an 8-byte zero word at the very top.

use alloc::vec::Vec;

pub const AT_NULL: u64 = 0;
pub const AT_PHDR: u64 = 3;
pub const AT_PHENT: u64 = 4;
pub const AT_PHNUM: u64 = 5;
pub const AT_PAGESZ: u64 = 6;
pub const AT_BASE: u64 = 7;
pub const AT_FLAGS: u64 = 8;
pub const AT_ENTRY: u64 = 9;
pub const AT_UID: u64 = 11;
pub const AT_EUID: u64 = 12;
pub const AT_GID: u64 = 13;
pub const AT_EGID: u64 = 14;
pub const AT_PLATFORM: u64 = 15;
pub const AT_HWCAP: u64 = 16;
pub const AT_CLKTCK: u64 = 17;
pub const AT_SECURE: u64 = 23;
pub const AT_RANDOM: u64 = 25;
pub const AT_HWCAP2: u64 = 26;
pub const AT_EXECFN: u64 = 31;

/// Why a stack cannot be built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackError {
    /// The strings and vectors do not fit in the space allowed (`E2BIG`).
    TooBig,
}

/// The bytes to copy to `[base, base + bytes.len())` of the process, and its starting `rsp`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InitialStack {
    pub base: u64,
    pub bytes: Vec<u8>,
    pub rsp: u64,
}

/// What goes on the stack.
pub struct StackSpec<'a> {
    pub argv: &'a [&'a [u8]],
    pub envp: &'a [&'a [u8]],
    /// The path the program was started by (`AT_EXECFN`).
    pub execfn: &'a [u8],
    /// `AT_PLATFORM`, e.g. `x86_64`.
    pub platform: &'a [u8],
    /// The 16 bytes `AT_RANDOM` points at.
    pub random: [u8; 16],
    /// Every other auxiliary entry (type, value), in order; `AT_RANDOM`, `AT_PLATFORM`,
    /// `AT_EXECFN` and `AT_NULL` are added.
    pub auxv: &'a [(u64, u64)],
}

/// Lays the stack out below `top` (16-byte aligned) using at most `max` bytes.
pub fn build(top: u64, max: u64, spec: &StackSpec) -> Result<InitialStack, StackError> {
    let top = top & !15;
    // Strings, from the top down: the zero word, execfn, platform, random, env, args.
    let mut strings: Vec<u8> = Vec::new();
    let offsets_from_top = |bytes: &[u8], nul: bool, strings: &mut Vec<u8>| -> u64 {
        // Prepend: we build the block in reverse and fix it below.
        let mut piece = Vec::from(bytes);
        if nul {
            piece.push(0);
        }
        piece.reverse();
        strings.extend_from_slice(&piece);
        strings.len() as u64
    };
    offsets_from_top(&[0; 8], false, &mut strings);
    let execfn = offsets_from_top(spec.execfn, true, &mut strings);
    let platform = offsets_from_top(spec.platform, true, &mut strings);
    let random = offsets_from_top(&spec.random, false, &mut strings);
    let mut env = Vec::with_capacity(spec.envp.len());
    for e in spec.envp.iter().rev() {
        env.push(offsets_from_top(e, true, &mut strings));
    }
    env.reverse();
    let mut args = Vec::with_capacity(spec.argv.len());
    for a in spec.argv.iter().rev() {
        args.push(offsets_from_top(a, true, &mut strings));
    }
    args.reverse();
    strings.reverse();
    let strings_len = strings.len() as u64;
    let at = |from_top: u64| top - from_top;

    let mut auxv: Vec<(u64, u64)> = spec.auxv.to_vec();
    auxv.push((AT_RANDOM, at(random)));
    auxv.push((AT_PLATFORM, at(platform)));
    auxv.push((AT_EXECFN, at(execfn)));
    auxv.push((AT_NULL, 0));
    let words = 1 + spec.argv.len() + 1 + spec.envp.len() + 1 + 2 * auxv.len();
    let vectors = (words * 8) as u64;
    let total = strings_len.checked_add(vectors).and_then(|t| t.checked_add(16)).ok_or(StackError::TooBig)?;
    if total > max || total > top {
        return Err(StackError::TooBig);
    }
    let rsp = (top - strings_len - vectors) & !15;
    let mut bytes: Vec<u8> = Vec::with_capacity((top - rsp) as usize);
    let mut word = |w: u64| bytes.extend_from_slice(&w.to_le_bytes());
    word(spec.argv.len() as u64);
    for a in &args {
        word(at(*a));
    }
    word(0);
    for e in &env {
        word(at(*e));
    }
    word(0);
    for (t, v) in &auxv {
        word(*t);
        word(*v);
    }
    bytes.resize((top - strings_len - rsp) as usize, 0);
    bytes.extend_from_slice(&strings);
    Ok(InitialStack { base: rsp, bytes, rsp })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn word(s: &InitialStack, addr: u64) -> u64 {
        let at = (addr - s.base) as usize;
        u64::from_le_bytes(s.bytes[at..at + 8].try_into().unwrap())
    }

    fn cstr(s: &InitialStack, addr: u64) -> std::vec::Vec<u8> {
        let at = (addr - s.base) as usize;
        s.bytes[at..].iter().take_while(|b| **b != 0).copied().collect()
    }

    #[test]
    fn the_layout_is_the_abis() {
        let spec = StackSpec {
            argv: &[b"/disk/hello", b"one", b"two words"],
            envp: &[b"PATH=/bin", b"HOME=/"],
            execfn: b"/disk/hello",
            platform: b"x86_64",
            random: [7; 16],
            auxv: &[(AT_PAGESZ, 4096), (AT_ENTRY, 0x401000)],
        };
        let top = 0x7fff_ffff_f000;
        let s = build(top, 1 << 20, &spec).unwrap();
        assert_eq!(s.rsp % 16, 0, "rsp 16-byte aligned at argc");
        assert_eq!(s.base + s.bytes.len() as u64, top);
        assert_eq!(word(&s, s.rsp), 3);
        assert_eq!(cstr(&s, word(&s, s.rsp + 8)), b"/disk/hello");
        assert_eq!(cstr(&s, word(&s, s.rsp + 24)), b"two words");
        assert_eq!(word(&s, s.rsp + 32), 0);
        assert_eq!(cstr(&s, word(&s, s.rsp + 40)), b"PATH=/bin");
        assert_eq!(cstr(&s, word(&s, s.rsp + 48)), b"HOME=/");
        assert_eq!(word(&s, s.rsp + 56), 0);
        let mut at = s.rsp + 64;
        let mut aux = std::collections::BTreeMap::new();
        loop {
            let (t, v) = (word(&s, at), word(&s, at + 8));
            at += 16;
            if t == AT_NULL {
                break;
            }
            aux.insert(t, v);
        }
        assert_eq!(aux[&AT_PAGESZ], 4096);
        assert_eq!(aux[&AT_ENTRY], 0x401000);
        assert_eq!(cstr(&s, aux[&AT_PLATFORM]), b"x86_64");
        assert_eq!(cstr(&s, aux[&AT_EXECFN]), b"/disk/hello");
        let r = (aux[&AT_RANDOM] - s.base) as usize;
        assert_eq!(&s.bytes[r..r + 16], &[7; 16]);
        assert!(at <= aux[&AT_RANDOM], "vectors below the strings");
        assert_eq!(word(&s, top - 8), 0, "a zero word at the top");
    }

    #[test]
    fn too_much_is_refused() {
        let big = std::vec![b'x'; 5000];
        let argv: [&[u8]; 1] = [&big];
        let spec = StackSpec { argv: &argv, envp: &[], execfn: b"/a", platform: b"x86_64", random: [0; 16], auxv: &[] };
        assert_eq!(build(0x10000, 4096, &spec), Err(StackError::TooBig));
        assert!(build(0x10000, 8192, &spec).is_ok());
    }
}
