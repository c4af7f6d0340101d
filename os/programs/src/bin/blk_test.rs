//! Test program (init): PCI enumeration and a polled virtio-blk driver in user space
//! (docs/drivers.md). With just the eight configuration ports and the pages of the block
//! device's BARs (`CapSubrange`s of init's capabilities) plus a contiguous DMA arena, it reads
//! sector 0 and checks the pattern the host wrote into the image, writes sector 1 from a stack
//! buffer (bounce copy) and sectors 16-23 from a DMA buffer (in place), flushes, reads both
//! back, times a 1 MiB sequential read, and checks that a request past the end is refused.
//! The system test then finds the written sectors in the image file on the host.
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::init_caps;
use alloc::string::String;
use drivers::dma::{self, DmaBuffer};
use drivers::pci::{self, ConfigPorts, CONFIG_ADDRESS, CONFIG_PORTS};
use drivers::virtio_blk::{self, BlkError, SECTOR};
use rt::{device, sys};

rt::entry!(main);

/// What the host writes at the start of sector 0; the rest of the sector is `host_byte(i)`.
const HOST_MAGIC: &[u8; 16] = b"TUTTI DISK TEST\n";
/// What this program writes at the start of sector 1; the rest is `i ^ 0x5a`.
const GUEST_MAGIC: &[u8; 16] = b"WRITTEN BY TUTTI";
const DMA_ARENA: u64 = 256 * 1024;
const CHUNK: usize = 64 * 1024;

fn host_byte(i: usize) -> u8 {
    (i as u8).wrapping_mul(7).wrapping_add(3)
}

/// Sectors 16-23 get this, `i` counting from the start of sector 16.
fn pattern(i: usize) -> u8 {
    ((i * 31 + 17) % 251) as u8
}

fn main() -> i32 {
    match run() {
        Ok(()) => {
            rt::println!("blk_test: ok");
            0
        }
        Err(e) => {
            rt::println!("blk_test: FAILED: {e}");
            1
        }
    }
}

/// What failed, and the error.
fn fail(what: &str, e: impl core::fmt::Debug) -> String {
    alloc::format!("{what}: {e:?}")
}

fn run() -> Result<(), String> {
    let ports =
        device::subrange(init_caps::IO_PORTS, CONFIG_ADDRESS as u64, CONFIG_PORTS).map_err(|e| fail("ports", e))?;
    let cam = ConfigPorts::new(ports).map_err(|e| fail("configuration ports", e))?;
    let found = pci::enumerate(&cam, |f| {
        rt::println!(
            "blk_test: pci {} {:04x}:{:04x} class {:02x}.{:02x} ({})",
            f.address,
            f.vendor,
            f.device,
            f.class,
            f.subclass,
            pci::class_name(f.class, f.subclass)
        );
    });
    rt::println!("blk_test: {found} PCI functions");

    let arena = dma::init(DMA_ARENA).map_err(|e| fail("DMA arena", e))?;
    rt::println!("blk_test: DMA arena {DMA_ARENA:#x} bytes at physical {arena:#x}");
    let mut disk = virtio_blk::open(cam, init_caps::DEVICE_MEMORY).map_err(|e| fail("virtio-blk", e))?;
    let f = *disk.function();
    rt::println!(
        "blk_test: virtio-blk at {} ({:04x}:{:04x}), {} sectors, read-only {}, irq line {}",
        f.address,
        f.vendor,
        f.device,
        disk.capacity(),
        disk.read_only(),
        f.interrupt_line
    );

    // Sector 0: the host's pattern, read through a bounce copy (a stack buffer).
    let mut sector = [0u8; SECTOR];
    disk.read(0, &mut sector).map_err(|e| fail("read sector 0", e))?;
    let host_ok = sector[..16] == HOST_MAGIC[..] && (16..SECTOR).all(|i| sector[i] == host_byte(i));
    rt::println!("blk_test: sector 0 holds the host's pattern: {host_ok}");

    // Sector 1 from the stack.
    let mut written = [0u8; SECTOR];
    written[..16].copy_from_slice(GUEST_MAGIC);
    for (i, b) in written.iter_mut().enumerate().skip(16) {
        *b = i as u8 ^ 0x5a;
    }
    disk.write(1, &written).map_err(|e| fail("write sector 1", e))?;

    // Sectors 16-23 in place from DMA memory.
    let mut buffer = DmaBuffer::new(CHUNK).map_err(|e| fail("DMA buffer", e))?;
    let block = &mut buffer.as_mut_slice()[..8 * SECTOR];
    for (i, b) in block.iter_mut().enumerate() {
        *b = pattern(i);
    }
    disk.write(16, block).map_err(|e| fail("write sectors 16-23", e))?;
    disk.flush().map_err(|e| fail("flush", e))?;

    let mut back = [0u8; SECTOR];
    disk.read(1, &mut back).map_err(|e| fail("read sector 1", e))?;
    let one_ok = back == written;
    block.fill(0);
    disk.read(16, block).map_err(|e| fail("read sectors 16-23", e))?;
    let many_ok = block.iter().enumerate().all(|(i, &b)| b == pattern(i));
    rt::println!("blk_test: sector 1 written and read back: {one_ok}; sectors 16-23 (DMA buffer): {many_ok}");

    // Errors: refused locally, and by the device itself.
    let capacity = disk.capacity();
    let local = disk.read(capacity, &mut back);
    let device = disk.read_unchecked(capacity, &mut back);
    let odd = disk.read(0, &mut back[..100]);
    let errors_ok = matches!(local, Err(BlkError::OutOfRange { .. }))
        && matches!(device, Err(BlkError::Virtio(_)))
        && matches!(odd, Err(BlkError::BadLength(100)));
    rt::println!("blk_test: past the end: {local:?}; the device says {device:?}; 100 bytes: {odd:?}");

    // Throughput: 1 MiB sequentially in 64 KiB requests into the DMA buffer.
    let total = (1u64 << 20).min(capacity * SECTOR as u64) as usize;
    let start = sys::time_now();
    let tsc = rt::rdtsc();
    let mut sum = 0u64;
    for chunk in 0..total / CHUNK {
        let sector = (chunk * CHUNK / SECTOR) as u64;
        disk.read(sector, buffer.as_mut_slice()).map_err(|e| fail("sequential read", e))?;
        sum = sum.wrapping_add(buffer.as_mut_slice()[0] as u64);
    }
    let ns = sys::time_now().saturating_sub(start); // 10 ms timer resolution
    rt::println!(
        "blk_test: read {} KiB in {} requests: {} ms, {} cycles (checksum {sum})",
        total / 1024,
        total / CHUNK,
        ns / 1_000_000,
        rt::rdtsc().wrapping_sub(tsc)
    );

    if host_ok && one_ok && many_ok && errors_ok {
        Ok(())
    } else {
        Err(fail("checks", (host_ok, one_ok, many_ok, errors_ok)))
    }
}
