//! System calls: decoding the registers of a [`TrapFrame`] into a call, checking every
//! argument, and writing the result back (docs/abi.md).

use crate::arch::trap::TrapFrame;
use abi::syscall::{Error, Sys, DEBUG_WRITE_MAX};

/// Handles the system call in `frame` (from user mode) and stores its status in `rax`.
pub fn handle(frame: &mut TrapFrame) {
    let result = match Sys::from_number(frame.rax) {
        Some(Sys::DebugWrite) => debug_write(frame.rdi, frame.rsi),
        Some(Sys::Exit) => crate::task::exit_current(frame.rdi as i64),
        None => Err(Error::NoSuchCall),
    };
    frame.rax = match result {
        Ok(()) => 0,
        Err(e) => e as u64,
    };
}

/// `debug_write(ptr, len)`.
fn debug_write(ptr: u64, len: u64) -> Result<(), Error> {
    if len > DEBUG_WRITE_MAX as u64 {
        return Err(Error::InvalidArgument);
    }
    let mut buffer = [0u8; DEBUG_WRITE_MAX];
    let buffer = &mut buffer[..len as usize];
    crate::task::with_current(|t| t.space.read_user(ptr, buffer))
        .ok_or(Error::BadAddress)?
        .map_err(|_| Error::BadAddress)?;
    let text = core::str::from_utf8(buffer).map_err(|_| Error::InvalidArgument)?;
    crate::console::print(format_args!("{text}"));
    Ok(())
}
