//! virtio-blk over PCI (QEMU's `virtio-blk-pci`, transitional or modern-only), driven by the
//! `virtio-drivers` crate through its modern PCI transport and [`TuttiHal`].
//!
//! The function is found, mapped and checked by [`crate::virtio_pci::open`] (every virtio
//! structure against the BARs, a looping capability list refused) before the transport is built.
//! Requests complete by polling the used ring.

use crate::dma::{DmaError, TuttiHal};
use crate::pci::{ConfigPorts, Function};
use crate::virtio_pci::{self, OpenError};
use rt::sys::Handle;
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};

pub use crate::virtio_pci::VIRTIO_VENDOR;
/// virtio-blk: transitional (legacy + modern) and modern-only device IDs.
pub const BLOCK_DEVICES: [u16; 2] = [0x1001, 0x1042];
/// Bytes in a sector.
pub const SECTOR: usize = 512;

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

impl From<OpenError> for BlkError {
    fn from(e: OpenError) -> BlkError {
        match e {
            OpenError::NoDevice => BlkError::NoDevice,
            OpenError::BadCapability { bar, offset, length } => BlkError::BadCapability { bar, offset, length },
            OpenError::BadCapabilityList => BlkError::BadCapabilityList,
            OpenError::Dma(e) => BlkError::Dma(e),
            OpenError::Transport(e) => BlkError::Transport(e),
        }
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
/// (which the DMA arena must already be set up beside, `dma::init`), and brings it up
/// (`virtio_pci::open`).
pub fn open(cam: ConfigPorts, device_memory: Handle) -> Result<BlockDevice, BlkError> {
    let (function, transport) = virtio_pci::open(cam, device_memory, &BLOCK_DEVICES)?;
    let inner = VirtIOBlk::<TuttiHal, _>::new(transport)?;
    let capacity = inner.capacity();
    Ok(BlockDevice { inner, function, capacity })
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
