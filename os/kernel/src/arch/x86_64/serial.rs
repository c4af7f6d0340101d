//! The 16550 UART on COM1, polled: the kernel's console until a user-space console driver
//! takes over the device.

use super::cpu::{inb, outb};

const COM1: u16 = 0x3f8;
const DATA: u16 = 0;
const INTERRUPT_ENABLE: u16 = 1;
const FIFO_CONTROL: u16 = 2;
const LINE_CONTROL: u16 = 3;
const MODEM_CONTROL: u16 = 4;
const LINE_STATUS: u16 = 5;
const TRANSMIT_EMPTY: u8 = 1 << 5;

/// The COM1 serial port.
pub struct Serial;

impl Serial {
    /// Programs COM1 for 115200 baud, 8N1, FIFOs on, interrupts off.
    pub fn init() -> Serial {
        // Safety: COM1 is the 16550 every PC-compatible QEMU machine has; this is its
        // documented initialisation sequence.
        unsafe {
            outb(COM1 + INTERRUPT_ENABLE, 0x00);
            outb(COM1 + LINE_CONTROL, 0x80); // divisor latch access
            outb(COM1 + DATA, 0x01); // divisor 1: 115200 baud
            outb(COM1 + INTERRUPT_ENABLE, 0x00);
            outb(COM1 + LINE_CONTROL, 0x03); // 8 bits, no parity, one stop bit
            outb(COM1 + FIFO_CONTROL, 0xc7); // enable and clear FIFOs
            outb(COM1 + MODEM_CONTROL, 0x03); // DTR, RTS
        }
        Serial
    }

    /// Sends one byte, waiting for room in the transmitter.
    pub fn write_byte(&mut self, byte: u8) {
        // Safety: COM1 was initialised by `init`; polling the line status has no side effects.
        unsafe {
            while inb(COM1 + LINE_STATUS) & TRANSMIT_EMPTY == 0 {
                core::hint::spin_loop();
            }
            outb(COM1 + DATA, byte);
        }
    }
}

impl core::fmt::Write for Serial {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.write_byte(b'\r');
            }
            self.write_byte(b);
        }
        Ok(())
    }
}
