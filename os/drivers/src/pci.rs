//! PCI configuration space through configuration mechanism #1: the address register at port
//! `0xcf8` and the data register at `0xcfc`, reached through an I/O-port capability of exactly
//! those eight ports (`0xcf8`-`0xcff`). Enumerates bus 0 and the buses behind PCI-to-PCI
//! bridges, probes BAR sizes (write all ones, read the mask back, restore), and reads the
//! interrupt line and pin.
//!
//! Everything read from configuration space is treated as untrusted: bus numbers, capability
//! pointers and BAR masks are bounds-checked, and walks are bounded, so a misbehaving device
//! cannot make the enumerator loop or panic.

use rt::device;
use rt::sys::{Error as SysError, Handle};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

/// The configuration address register.
pub const CONFIG_ADDRESS: u16 = 0xcf8;
/// The configuration data register.
pub const CONFIG_DATA: u16 = 0xcfc;
/// How many ports the configuration capability must cover (`0xcf8`-`0xcff`).
pub const CONFIG_PORTS: u64 = 8;

// Configuration-space offsets (type 0 and type 1 headers).
const VENDOR_DEVICE: u8 = 0x00;
const STATUS_COMMAND: u8 = 0x04;
const CLASS_REVISION: u8 = 0x08;
const HEADER_TYPE_WORD: u8 = 0x0c;
const BAR0: u8 = 0x10;
const BUS_NUMBERS: u8 = 0x18;
const CAPABILITIES_POINTER: u8 = 0x34;
const INTERRUPT: u8 = 0x3c;

/// Command register bits.
pub mod command {
    /// Decode I/O-space BARs.
    pub const IO_SPACE: u16 = 1 << 0;
    /// Decode memory-space BARs.
    pub const MEMORY_SPACE: u16 = 1 << 1;
    /// The device may master the bus (DMA).
    pub const BUS_MASTER: u16 = 1 << 2;
}

/// Status register bit: the device has a capability list.
const STATUS_CAPABILITIES: u16 = 1 << 4;

/// Why the PCI configuration space cannot be used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PciError {
    /// The port capability does not cover `0xcf8`-`0xcff`.
    PortsNotGranted { first: u64, count: u64 },
    /// A system call failed.
    Sys(SysError),
}

impl From<SysError> for PciError {
    fn from(e: SysError) -> PciError {
        PciError::Sys(e)
    }
}

/// A bus/device/function triple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Address {
    pub bus: u8,
    /// 0-31.
    pub device: u8,
    /// 0-7.
    pub function: u8,
}

impl core::fmt::Display for Address {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

impl From<DeviceFunction> for Address {
    fn from(d: DeviceFunction) -> Address {
        Address { bus: d.bus, device: d.device & 31, function: d.function & 7 }
    }
}

impl From<Address> for DeviceFunction {
    fn from(a: Address) -> DeviceFunction {
        DeviceFunction { bus: a.bus, device: a.device, function: a.function }
    }
}

/// Configuration space through the two registers. One thread at a time: an access is an
/// address write followed by a data access.
#[derive(Debug)]
pub struct ConfigPorts {
    ports: Handle,
}

impl ConfigPorts {
    /// Wraps an I/O-port capability that must cover `0xcf8`-`0xcff`.
    pub fn new(ports: Handle) -> Result<ConfigPorts, PciError> {
        let (first, count) = device::range(ports)?;
        let end = first.checked_add(count).unwrap_or(0);
        if first > CONFIG_ADDRESS as u64 || end < CONFIG_ADDRESS as u64 + CONFIG_PORTS {
            return Err(PciError::PortsNotGranted { first, count });
        }
        Ok(ConfigPorts { ports })
    }

    fn select(&self, a: Address, offset: u8) -> Result<(), SysError> {
        let address = 1u32 << 31
            | (a.bus as u32) << 16
            | ((a.device & 31) as u32) << 11
            | ((a.function & 7) as u32) << 8
            | (offset & 0xfc) as u32;
        device::port_write(self.ports, CONFIG_ADDRESS, 4, address)
    }

    /// Reads the aligned 32-bit register containing `offset`. All ones (what an absent device
    /// reads as) if the port access fails.
    pub fn read(&self, a: Address, offset: u8) -> u32 {
        match self.select(a, offset) {
            Ok(()) => device::port_read(self.ports, CONFIG_DATA, 4).unwrap_or(u32::MAX),
            Err(_) => u32::MAX,
        }
    }

    /// Writes the aligned 32-bit register containing `offset` (ignored if the port access
    /// fails, as a write to an absent device is).
    pub fn write(&self, a: Address, offset: u8, value: u32) {
        if self.select(a, offset).is_ok() {
            let _ = device::port_write(self.ports, CONFIG_DATA, 4, value);
        }
    }

    /// The command register.
    pub fn command(&self, a: Address) -> u16 {
        self.read(a, STATUS_COMMAND) as u16
    }

    /// Sets the command register (leaving the write-one-to-clear status bits alone).
    pub fn set_command(&self, a: Address, command: u16) {
        self.write(a, STATUS_COMMAND, command as u32);
    }
}

impl ConfigurationAccess for ConfigPorts {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        self.read(device_function.into(), register_offset)
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        self.write(device_function.into(), register_offset, data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        ConfigPorts { ports: self.ports }
    }
}

/// A base address register, sized by the write-ones probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bar {
    /// I/O space: first port and number of ports.
    Io { port: u32, size: u32 },
    /// Memory space: physical address and size in bytes. `wide`: a 64-bit BAR, which takes
    /// this slot and the next.
    Memory { address: u64, size: u64, prefetchable: bool, wide: bool },
}

impl core::fmt::Display for Bar {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            Bar::Io { port, size } => write!(f, "io {port:#x}+{size:#x}"),
            Bar::Memory { address, size, prefetchable, wide } => write!(
                f,
                "mem {address:#x}+{size:#x}{}{}",
                if wide { " 64-bit" } else { "" },
                if prefetchable { " prefetchable" } else { "" }
            ),
        }
    }
}

/// One PCI function and what its configuration header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Function {
    pub address: Address,
    pub vendor: u16,
    pub device: u16,
    pub class: u8,
    pub subclass: u8,
    pub prog_if: u8,
    pub revision: u8,
    /// The header layout (0 device, 1 PCI-to-PCI bridge, 2 CardBus bridge), without the
    /// multi-function bit.
    pub header_type: u8,
    /// BAR slots; the slot after a 64-bit BAR is `None`.
    pub bars: [Option<Bar>; 6],
    /// The interrupt line the firmware routed (0xff: none).
    pub interrupt_line: u8,
    /// The interrupt pin (0 none, 1-4 INTA-INTD).
    pub interrupt_pin: u8,
    /// For a PCI-to-PCI bridge: the bus behind it.
    pub secondary_bus: Option<u8>,
}

impl Function {
    /// The memory BAR in `slot`, if that slot is one.
    pub fn memory_bar(&self, slot: usize) -> Option<(u64, u64)> {
        match self.bars.get(slot).copied().flatten() {
            Some(Bar::Memory { address, size, .. }) => Some((address, size)),
            _ => None,
        }
    }
}

/// The lowest set bit of a BAR's address mask is its size (0: the BAR is not implemented).
fn size_from_mask(mask: u64) -> u64 {
    mask & mask.wrapping_neg()
}

/// Reads and sizes the BARs of a function whose header has `count` of them (6 for a device,
/// 2 for a bridge). Decoding is switched off during the probe so the all-ones address never
/// decodes (except on a host bridge, which must keep decoding, as Linux does it), and
/// everything is restored afterwards.
fn probe_bars(cam: &ConfigPorts, a: Address, count: usize, host_bridge: bool) -> [Option<Bar>; 6] {
    let mut bars = [None; 6];
    if count == 0 {
        return bars;
    }
    let saved_command = cam.command(a);
    if !host_bridge {
        cam.set_command(a, saved_command & !(command::IO_SPACE | command::MEMORY_SPACE));
    }
    let mut slot = 0;
    while slot < count.min(6) {
        let offset = BAR0 + 4 * slot as u8;
        let original = cam.read(a, offset);
        cam.write(a, offset, u32::MAX);
        let mask = cam.read(a, offset);
        cam.write(a, offset, original);
        if original & 1 == 1 {
            // I/O: bits 2-31 are the address (16 of them on x86).
            let size = size_from_mask((mask & !3) as u64) as u32;
            if size != 0 {
                bars[slot] = Some(Bar::Io { port: original & !3, size });
            }
            slot += 1;
            continue;
        }
        let wide = (original >> 1) & 3 == 2 && slot + 1 < count.min(6);
        let prefetchable = original & 8 != 0;
        let (address, full_mask) = if wide {
            let high_offset = offset + 4;
            let high = cam.read(a, high_offset);
            cam.write(a, high_offset, u32::MAX);
            let high_mask = cam.read(a, high_offset);
            cam.write(a, high_offset, high);
            ((high as u64) << 32 | (original & !0xf) as u64, (high_mask as u64) << 32 | (mask & !0xf) as u64)
        } else {
            ((original & !0xf) as u64, (mask & !0xf) as u64)
        };
        let size = size_from_mask(full_mask);
        if size != 0 {
            bars[slot] = Some(Bar::Memory { address, size, prefetchable, wide });
        }
        slot += if wide { 2 } else { 1 };
    }
    cam.set_command(a, saved_command);
    bars
}

/// Reads the header of the function at `a`, or `None` if nothing answers there.
pub fn function(cam: &ConfigPorts, a: Address) -> Option<Function> {
    let id = cam.read(a, VENDOR_DEVICE);
    let vendor = id as u16;
    if vendor == 0xffff || vendor == 0 {
        return None;
    }
    let class = cam.read(a, CLASS_REVISION);
    let header_type = (cam.read(a, HEADER_TYPE_WORD) >> 16) as u8 & 0x7f;
    let bar_count = match header_type {
        0 => 6,
        1 => 2,
        _ => 0,
    };
    let interrupt = cam.read(a, INTERRUPT);
    let secondary_bus = (header_type == 1).then(|| (cam.read(a, BUS_NUMBERS) >> 8) as u8);
    Some(Function {
        address: a,
        vendor,
        device: (id >> 16) as u16,
        class: (class >> 24) as u8,
        subclass: (class >> 16) as u8,
        prog_if: (class >> 8) as u8,
        revision: class as u8,
        header_type,
        bars: probe_bars(cam, a, bar_count, class >> 16 == 0x0600),
        interrupt_line: interrupt as u8,
        interrupt_pin: (interrupt >> 8) as u8,
        secondary_bus,
    })
}

fn multifunction(cam: &ConfigPorts, a: Address) -> bool {
    (cam.read(a, HEADER_TYPE_WORD) >> 16) & 0x80 != 0
}

/// Calls `visit` for every function on bus 0 and on the buses behind PCI-to-PCI bridges,
/// each bus at most once (a bridge naming bus 0 or a bus already seen is not followed).
/// Returns how many functions were found.
pub fn enumerate(cam: &ConfigPorts, mut visit: impl FnMut(&Function)) -> usize {
    let mut seen = [0u64; 4]; // one bit per bus
    let mut pending = [0u8; 256];
    let mut queued = 1; // bus 0
    let mut next = 0;
    seen[0] = 1;
    let mut found = 0;
    while next < queued {
        let bus = pending[next];
        next += 1;
        for dev in 0..32 {
            let first = Address { bus, device: dev, function: 0 };
            let functions = if cam.read(first, VENDOR_DEVICE) as u16 == 0xffff {
                0
            } else if multifunction(cam, first) {
                8
            } else {
                1
            };
            for func in 0..functions {
                let Some(f) = function(cam, Address { bus, device: dev, function: func }) else {
                    continue;
                };
                found += 1;
                visit(&f);
                if let Some(secondary) = f.secondary_bus {
                    let (word, bit) = (secondary as usize / 64, secondary as usize % 64);
                    if seen[word] & (1 << bit) == 0 && queued < pending.len() {
                        seen[word] |= 1 << bit;
                        pending[queued] = secondary;
                        queued += 1;
                    }
                }
            }
        }
    }
    found
}

/// The first function with this vendor and one of these device IDs.
pub fn find(cam: &ConfigPorts, vendor: u16, devices: &[u16]) -> Option<Function> {
    let mut hit = None;
    enumerate(cam, |f| {
        if hit.is_none() && f.vendor == vendor && devices.contains(&f.device) {
            hit = Some(*f);
        }
    });
    hit
}

/// A capability in a function's capability list: its ID and offset in configuration space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability {
    pub id: u8,
    pub offset: u8,
}

/// Calls `visit` for each entry of the capability list of `a`. The walk stops at a pointer
/// into the header (below 0x40) and after 48 entries (the most that fit in configuration
/// space). Returns `false` if the list did not end by then (it loops), `true` otherwise.
pub fn capabilities(cam: &ConfigPorts, a: Address, mut visit: impl FnMut(Capability)) -> bool {
    if (cam.read(a, STATUS_COMMAND) >> 16) as u16 & STATUS_CAPABILITIES == 0 {
        return true;
    }
    let mut offset = cam.read(a, CAPABILITIES_POINTER) as u8 & 0xfc;
    for _ in 0..48 {
        if offset < 0x40 {
            return true;
        }
        let header = cam.read(a, offset);
        visit(Capability { id: header as u8, offset });
        offset = (header >> 8) as u8 & 0xfc;
    }
    offset < 0x40
}

/// A short name for common class codes.
pub fn class_name(class: u8, subclass: u8) -> &'static str {
    match (class, subclass) {
        (0x01, 0x00) => "SCSI storage",
        (0x01, 0x01) => "IDE",
        (0x01, 0x06) => "SATA",
        (0x01, 0x08) => "NVMe",
        (0x01, _) => "storage",
        (0x02, 0x00) => "Ethernet",
        (0x02, _) => "network",
        (0x03, _) => "display",
        (0x06, 0x00) => "host bridge",
        (0x06, 0x01) => "ISA bridge",
        (0x06, 0x04) => "PCI bridge",
        (0x06, 0x80) => "bridge",
        (0x06, _) => "bridge",
        (0x0c, 0x03) => "USB",
        (0x0c, 0x05) => "SMBus",
        (0x00, _) => "unclassified",
        (0xff, _) => "vendor-specific",
        _ => "other",
    }
}
