//! virtio-blk over PCI (QEMU's `virtio-blk-pci`, transitional or modern-only), driven by the
//! `virtio-drivers` crate through its modern PCI transport and [`TuttiHal`].
//!
//! Before the transport is built this module finds the function, switches on memory decoding
//! and bus mastering, maps each memory BAR from the device memory capability, and checks every
//! virtio structure the capability list names (BAR index, offset + length within the BAR, with
//! overflow checks) so nothing the device reports can send the transport outside its windows,
//! and refuses a looping capability list, which the transport would walk forever.
//! Requests complete by polling the used ring.

use crate::dma::{self, DmaError, TuttiHal};
use crate::pci::{self, command, Address, ConfigPorts, Function};
use rt::sys::Handle;
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};

/// The virtio vendor ID.
pub const VIRTIO_VENDOR: u16 = 0x1af4;
/// virtio-blk: transitional (legacy + modern) and modern-only device IDs.
pub const BLOCK_DEVICES: [u16; 2] = [0x1001, 0x1042];
/// Bytes in a sector.
pub const SECTOR: usize = 512;

const PCI_CAP_VENDOR: u8 = 0x09;
// virtio_pci_cap fields (offsets in the capability).
const CAP_TYPE_AND_BAR: u8 = 0x00; // cfg_type in byte 3 of the first word
const CAP_BAR: u8 = 0x04;
const CAP_OFFSET: u8 = 0x08;
const CAP_LENGTH: u8 = 0x0c;
// Structure types the transport maps (common, notify, ISR, device); PCI-config access (5)
// and shared memory (8) are not mapped.
const MAPPED_TYPES: core::ops::RangeInclusive<u8> = 1..=4;

/// Why the block device cannot be used.
#[derive(Debug)]
pub enum BlkError {
    /// No virtio-blk function on the buses searched.
    NoDevice,
    /// A virtio structure names a BAR that is missing, not memory, or too small.
    BadCapability { bar: u8, offset: u32, length: u32 },
    /// The capability list loops, or a virtio capability does not fit in configuration space.
    BadCapabilityList,
    /// Mapping registers or DMA memory failed.
    Dma(DmaError),
    /// The virtio PCI transport refused the device.
    Transport(VirtioPciError),
    /// The device failed a request or its set-up.
    Virtio(virtio_drivers::Error),
    /// A buffer that is empty or not a whole number of sectors.
    BadLength(usize),
    /// A request past the end of the disk.
    OutOfRange { sector: u64, sectors: u64, capacity: u64 },
}

impl From<DmaError> for BlkError {
    fn from(e: DmaError) -> BlkError {
        BlkError::Dma(e)
    }
}

impl From<VirtioPciError> for BlkError {
    fn from(e: VirtioPciError) -> BlkError {
        BlkError::Transport(e)
    }
}

impl From<virtio_drivers::Error> for BlkError {
    fn from(e: virtio_drivers::Error) -> BlkError {
        BlkError::Virtio(e)
    }
}

/// An open virtio-blk device.
pub struct BlockDevice {
    inner: VirtIOBlk<TuttiHal, PciTransport>,
    function: Function,
    capacity: u64,
}

/// Finds the first virtio-blk function through `cam`, maps its BARs from `device_memory`
/// (which the DMA arena must already be set up beside, `dma::init`), and brings it up.
pub fn open(cam: ConfigPorts, device_memory: Handle) -> Result<BlockDevice, BlkError> {
    let function = pci::find(&cam, VIRTIO_VENDOR, &BLOCK_DEVICES).ok_or(BlkError::NoDevice)?;
    let a = function.address;
    cam.set_command(a, cam.command(a) | command::MEMORY_SPACE | command::BUS_MASTER);
    for slot in 0..6 {
        if let Some((address, size)) = function.memory_bar(slot) {
            if address != 0 {
                dma::map_registers(device_memory, address, size)?;
            }
        }
    }
    check_structures(&cam, &function)?;
    let mut root = PciRoot::new(cam);
    let transport = PciTransport::new::<TuttiHal, _>(&mut root, a.into())?;
    let inner = VirtIOBlk::<TuttiHal, _>::new(transport)?;
    let capacity = inner.capacity();
    Ok(BlockDevice { inner, function, capacity })
}

/// Checks each virtio structure of the capability list against the BARs.
fn check_structures(cam: &ConfigPorts, function: &Function) -> Result<(), BlkError> {
    let mut result = Ok(());
    let ends = pci::capabilities(cam, function.address, |c| {
        if c.id != PCI_CAP_VENDOR || result.is_err() {
            return;
        }
        // The transport reads the 16-byte virtio_pci_cap (20 for notify) from here.
        if c.offset > 0xff - 0x14 {
            result = Err(BlkError::BadCapabilityList);
            return;
        }
        let a: Address = function.address;
        let cfg_type = (cam.read(a, c.offset + CAP_TYPE_AND_BAR) >> 24) as u8;
        if !MAPPED_TYPES.contains(&cfg_type) {
            return;
        }
        let bar = cam.read(a, c.offset + CAP_BAR) as u8;
        let offset = cam.read(a, c.offset + CAP_OFFSET);
        let length = cam.read(a, c.offset + CAP_LENGTH);
        let fits = function.memory_bar(bar as usize).is_some_and(|(address, size)| {
            address != 0 && (offset as u64).checked_add(length as u64).is_some_and(|end| end <= size)
        });
        if !fits {
            result = Err(BlkError::BadCapability { bar, offset, length });
        }
    });
    // virtio-drivers walks the list again without a bound: refuse a looping one here.
    if !ends {
        return Err(BlkError::BadCapabilityList);
    }
    result
}

impl BlockDevice {
    /// The PCI function.
    pub fn function(&self) -> &Function {
        &self.function
    }

    /// Capacity in sectors, as the device reported it.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Whether the device refuses writes.
    pub fn read_only(&self) -> bool {
        self.inner.readonly()
    }

    fn check(&self, sector: u64, len: usize) -> Result<(), BlkError> {
        if len == 0 || !len.is_multiple_of(SECTOR) {
            return Err(BlkError::BadLength(len));
        }
        let sectors = (len / SECTOR) as u64;
        let out_of_range = BlkError::OutOfRange { sector, sectors, capacity: self.capacity };
        match sector.checked_add(sectors) {
            Some(end) if end <= self.capacity && sector <= usize::MAX as u64 => Ok(()),
            _ => Err(out_of_range),
        }
    }

    /// Reads whole sectors from `sector` into `buf` (a non-zero multiple of [`SECTOR`]). A
    /// buffer in the DMA arena is read into directly, any other through a bounce copy.
    pub fn read(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len())?;
        Ok(self.inner.read_blocks(sector as usize, buf)?)
    }

    /// Writes whole sectors from `buf` at `sector`.
    pub fn write(&mut self, sector: u64, buf: &[u8]) -> Result<(), BlkError> {
        self.check(sector, buf.len())?;
        Ok(self.inner.write_blocks(sector as usize, buf)?)
    }

    /// Asks the device to make completed writes durable (a no-op without the flush feature).
    pub fn flush(&mut self) -> Result<(), BlkError> {
        Ok(self.inner.flush()?)
    }

    /// Issues a read past the end of the disk without the local check, to see the device's
    /// own refusal (for tests of the error path).
    pub fn read_unchecked(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), BlkError> {
        if buf.is_empty() || !buf.len().is_multiple_of(SECTOR) || sector > usize::MAX as u64 {
            return Err(BlkError::BadLength(buf.len()));
        }
        Ok(self.inner.read_blocks(sector as usize, buf)?)
    }
}
