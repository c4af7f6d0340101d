//! User-space device drivers (docs/drivers.md): PCI configuration space through an I/O-port
//! capability of ports `0xcf8`-`0xcff` ([`pci`]), DMA memory and register windows of a driver
//! task with the `virtio_drivers::Hal` on top ([`dma`]), and virtio-blk over PCI
//! ([`virtio_blk`]).
#![no_std]

pub mod dma;
pub mod pci;
pub mod virtio_blk;
