//! Test program (init): user-space device access through capabilities. The RTC's periodic
//! interrupt (line 8) is bound to a notification and acknowledged through I/O ports 0x70-0x71;
//! a page of device memory (the VGA framebuffer, BAR 0 of QEMU's standard VGA) is mapped and
//! written; ports outside the granted range and the kernel's own ports are refused.
#![no_std]
#![no_main]

use abi::syscall::{init_caps, map};
use rt::device::{self, inb, outb};
use rt::sys::{self, Error};

rt::entry!(main);

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
const NMI_OFF: u8 = 0x80;
const FRAMEBUFFER: u64 = 0xfd00_0000;
const MAPPED_AT: u64 = 0x4000_0000_0000;

fn cmos_read(ports: sys::Handle, register: u8) -> u8 {
    outb(ports, CMOS_INDEX, NMI_OFF | register).expect("index");
    inb(ports, CMOS_DATA).expect("data")
}

fn cmos_write(ports: sys::Handle, register: u8, value: u8) {
    outb(ports, CMOS_INDEX, NMI_OFF | register).expect("index");
    outb(ports, CMOS_DATA, value).expect("data");
}

fn main() -> i32 {
    let mut ok = true;
    // Just the RTC's two ports and its interrupt line.
    let cmos = device::subrange(init_caps::IO_PORTS, CMOS_INDEX as u64, 2).expect("ports");
    let line = device::subrange(init_caps::IRQ_LINES, 8, 1).expect("line");
    ok &= inb(cmos, 0x72) == Err(Error::InvalidArgument);
    ok &= inb(init_caps::IO_PORTS, 0x40) == Err(Error::InvalidArgument); // the PIT is the kernel's
    ok &= device::irq_bind(line, 9, init_caps::CONSOLE, 1).is_err();

    let n = sys::notification_create().expect("notification");
    device::irq_bind(line, 8, n, 1 << 8).expect("bind");
    cmos_write(cmos, 0x0a, (cmos_read(cmos, 0x0a) & 0xf0) | 0x06); // 1024 Hz
    cmos_write(cmos, 0x0b, cmos_read(cmos, 0x0b) | 0x40); // periodic interrupt on
    let mut interrupts = 0;
    for _ in 0..5 {
        match sys::wait(n, 2_000_000_000) {
            Ok(bits) if bits == 1 << 8 => {
                interrupts += 1;
                cmos_read(cmos, 0x0c); // reading register C acknowledges the RTC
                device::irq_ack(line, 8).expect("ack");
            }
            other => {
                rt::println!("devices: wait gave {other:?}");
                break;
            }
        }
    }
    cmos_write(cmos, 0x0b, cmos_read(cmos, 0x0b) & !0x40);
    rt::println!("devices: {interrupts} RTC interrupts through the notification");
    ok &= interrupts == 5;

    let (base, len) = device::range(init_caps::DEVICE_MEMORY).expect("device memory");
    let offset = FRAMEBUFFER - base;
    let page = device::subrange(init_caps::DEVICE_MEMORY, offset, 4096).expect("a framebuffer page");
    ok &= sys::memory_map(page, 0, MAPPED_AT, 0, 4096, map::READ | map::EXECUTE) == Err(Error::MissingRights);
    sys::memory_map(page, 0, MAPPED_AT, 0, 4096, map::READ | map::WRITE).expect("map");
    let pixels = MAPPED_AT as *mut u32;
    for i in 0..1024 {
        // Safety: the page is mapped read-write here; it is device memory (uncached).
        unsafe { core::ptr::write_volatile(pixels.add(i), 0x00c0_ffee ^ i as u32) };
    }
    // Safety: as above.
    let back = (0..1024).all(|i| unsafe { core::ptr::read_volatile(pixels.add(i)) } == 0x00c0_ffee ^ i as u32);
    rt::println!("devices: device memory {base:#x}+{len:#x}, framebuffer page written and read back: {back}");
    ok &= back;
    rt::println!("devices: {}", if ok { "ok" } else { "FAILED" });
    if ok {
        0
    } else {
        1
    }
}
