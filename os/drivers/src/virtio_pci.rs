//! What every virtio driver over PCI shares: finding the function, switching on memory
//! decoding and bus mastering, mapping its memory BARs from the device memory capability, and
//! checking every virtio structure its capability list names against those BARs (BAR index,
//! `offset + length` within the BAR, with overflow checks) before `virtio-drivers` builds its
//! modern PCI transport, so nothing the device reports can send the transport outside its
//! windows. A looping capability list, which the transport would walk forever, is refused.
//!
//! Building the transport resets the device (`begin_init` writes status 0 first), so a driver
//! that restarts after a crash starts from a clean device.

use crate::dma::{self, DmaError, TuttiHal};
use crate::pci::{self, command, Address, ConfigPorts, Function};
use rt::sys::Handle;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::{PciTransport, VirtioPciError};

/// The virtio vendor ID.
pub const VIRTIO_VENDOR: u16 = 0x1af4;

const PCI_CAP_VENDOR: u8 = 0x09;
// virtio_pci_cap fields (offsets in the capability).
const CAP_TYPE_AND_BAR: u8 = 0x00; // cfg_type in byte 3 of the first word
const CAP_BAR: u8 = 0x04;
const CAP_OFFSET: u8 = 0x08;
const CAP_LENGTH: u8 = 0x0c;
// Structure types the transport maps (common, notify, ISR, device); PCI-config access (5)
// and shared memory (8) are not mapped.
const MAPPED_TYPES: core::ops::RangeInclusive<u8> = 1..=4;

/// Why a virtio PCI function cannot be brought up.
#[derive(Debug)]
pub enum OpenError {
    /// No function with one of the device IDs on the buses searched.
    NoDevice,
    /// A virtio structure names a BAR that is missing, not memory, or too small.
    BadCapability { bar: u8, offset: u32, length: u32 },
    /// The capability list loops, or a virtio capability does not fit in configuration space.
    BadCapabilityList,
    /// Mapping registers failed.
    Dma(DmaError),
    /// The virtio PCI transport refused the device.
    Transport(VirtioPciError),
}

impl From<DmaError> for OpenError {
    fn from(e: DmaError) -> OpenError {
        OpenError::Dma(e)
    }
}

impl From<VirtioPciError> for OpenError {
    fn from(e: VirtioPciError) -> OpenError {
        OpenError::Transport(e)
    }
}

/// Finds the first function of [`VIRTIO_VENDOR`] with one of `devices` through `cam`, maps
/// its memory BARs from `device_memory` (the DMA arena must be set up already, `dma::init`),
/// checks its virtio structures and builds the transport (which resets the device).
pub fn open(cam: ConfigPorts, device_memory: Handle, devices: &[u16]) -> Result<(Function, PciTransport), OpenError> {
    let function = pci::find(&cam, VIRTIO_VENDOR, devices).ok_or(OpenError::NoDevice)?;
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
    Ok((function, transport))
}

/// Checks each virtio structure of the capability list against the BARs.
fn check_structures(cam: &ConfigPorts, function: &Function) -> Result<(), OpenError> {
    let mut result = Ok(());
    let ends = pci::capabilities(cam, function.address, |c| {
        if c.id != PCI_CAP_VENDOR || result.is_err() {
            return;
        }
        // The transport reads the 16-byte virtio_pci_cap (20 for notify) from here.
        if c.offset > 0xff - 0x14 {
            result = Err(OpenError::BadCapabilityList);
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
            result = Err(OpenError::BadCapability { bar, offset, length });
        }
    });
    // virtio-drivers walks the list again without a bound: refuse a looping one here.
    if !ends {
        return Err(OpenError::BadCapabilityList);
    }
    result
}
