//! System-call numbers, the calling convention and error codes.
//!
//! A program makes a system call with the `syscall` instruction: the number in `rax`, arguments
//! in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9` (the Linux order; `rcx` and `r11` are taken by the
//! instruction). The kernel returns a status in `rax`, 0 for success or an [`Error`] code, and
//! results in `rdi`, `rsi`, `rdx`, `r10`, `r8`, `r9`. Every other register is preserved,
//! including the vector registers. See docs/abi.md.

/// System-call numbers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Sys {
    /// `debug_write(ptr, len)`: writes `len` bytes (at most [`DEBUG_WRITE_MAX`]) of UTF-8 from
    /// `ptr` to the kernel console.
    DebugWrite = 0,
    /// `exit(status)`: ends the calling task, all its threads, with `status`. Does not return.
    Exit = 1,
}

impl Sys {
    pub fn from_number(n: u64) -> Option<Sys> {
        match n {
            0 => Some(Sys::DebugWrite),
            1 => Some(Sys::Exit),
            _ => None,
        }
    }
}

/// The most bytes one `debug_write` takes.
pub const DEBUG_WRITE_MAX: usize = 4096;

/// Error codes returned in `rax`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum Error {
    /// No such system call.
    NoSuchCall = 1,
    /// A pointer argument does not point at memory the caller may access that way.
    BadAddress = 2,
    /// An argument is out of range (a length too large, bytes not UTF-8, ...).
    InvalidArgument = 3,
}

impl Error {
    pub fn from_code(code: u64) -> Option<Error> {
        match code {
            1 => Some(Error::NoSuchCall),
            2 => Some(Error::BadAddress),
            3 => Some(Error::InvalidArgument),
            _ => None,
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Error::NoSuchCall => "no such system call",
            Error::BadAddress => "bad address",
            Error::InvalidArgument => "invalid argument",
        })
    }
}
