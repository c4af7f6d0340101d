//! Device access for user-space drivers: I/O ports, interrupt lines and device memory, each
//! through a capability to a range (docs/abi.md). init holds the whole ranges
//! (`init_caps::IO_PORTS`, `IRQ_LINES`, `DEVICE_MEMORY`) and hands each driver just its part
//! (`subrange`).

use crate::sys::{syscall, Error, Handle};
use abi::syscall::Sys;

/// A capability for `len` units from `offset` within the range of `handle` (ports, lines, or
/// bytes of device memory).
pub fn subrange(handle: Handle, offset: u64, len: u64) -> Result<Handle, Error> {
    syscall(Sys::CapSubrange, handle, [offset, len, 0, 0, 0, 0, 0]).map(|r| r[0] as Handle)
}

/// The base and length of a range capability.
pub fn range(handle: Handle) -> Result<(u64, u64), Error> {
    syscall(Sys::CapInfo, handle, [0; 7]).map(|r| (r[4], r[3]))
}

/// Reads a byte from an I/O port of the range.
pub fn inb(ports: Handle, port: u16) -> Result<u8, Error> {
    syscall(Sys::PortRead, ports, [port as u64, 1, 0, 0, 0, 0, 0]).map(|r| r[0] as u8)
}

/// Writes a byte to an I/O port of the range.
pub fn outb(ports: Handle, port: u16, value: u8) -> Result<(), Error> {
    syscall(Sys::PortWrite, ports, [port as u64, 1, value as u64, 0, 0, 0, 0]).map(drop)
}

/// Reads `width` bytes (1, 2, 4) from an I/O port of the range.
pub fn port_read(ports: Handle, port: u16, width: u8) -> Result<u32, Error> {
    syscall(Sys::PortRead, ports, [port as u64, width as u64, 0, 0, 0, 0, 0]).map(|r| r[0] as u32)
}

/// Writes `width` bytes (1, 2, 4) to an I/O port of the range.
pub fn port_write(ports: Handle, port: u16, width: u8, value: u32) -> Result<(), Error> {
    syscall(Sys::PortWrite, ports, [port as u64, width as u64, value as u64, 0, 0, 0, 0]).map(drop)
}

/// Sends interrupts of `line` to `notification` as `bits` and unmasks the line.
pub fn irq_bind(lines: Handle, line: u8, notification: Handle, bits: u64) -> Result<(), Error> {
    syscall(Sys::IrqBind, lines, [line as u64, notification as u64, bits, 0, 0, 0, 0]).map(drop)
}

/// Unmasks `line` after its interrupt has been handled.
pub fn irq_ack(lines: Handle, line: u8) -> Result<(), Error> {
    syscall(Sys::IrqAck, lines, [line as u64, 0, 0, 0, 0, 0, 0]).map(drop)
}
