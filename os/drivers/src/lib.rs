//! User-space device drivers (docs/drivers.md): PCI configuration space through an I/O-port
//! capability of ports `0xcf8`-`0xcff` ([`pci`]), DMA memory and register windows of a driver
//! task with the `virtio_drivers::Hal` on top ([`dma`]), the shared set-up of virtio functions
//! over PCI ([`virtio_pci`]), virtio-blk ([`virtio_blk`]) and virtio-net ([`virtio_net`]).
#![no_std]

pub mod dma;
pub mod pci;
pub mod virtio_blk;
pub mod virtio_net;
pub mod virtio_pci;
