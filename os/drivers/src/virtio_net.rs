//! virtio-net over PCI (QEMU's `virtio-net-pci`, transitional or modern-only), driven by the
//! non-blocking raw driver of `virtio-drivers` ([`VirtIONetRaw`]) through [`TuttiHal`].
//!
//! The function is found, mapped and checked by [`crate::virtio_pci::open`], which also resets
//! the device, so a restarted driver starts from a clean device. Buffers: [`QUEUE_SIZE`]
//! receive and as many transmit buffers of [`BUFFER_LEN`] bytes, each in its own slot of two
//! DMA buffers of the arena (no bounce copies). Every receive buffer is posted to the device at
//! once and re-posted as soon as its frame has been handed on; a transmit buffer is reused
//! once the device has returned it. Nothing blocks: the caller polls [`NetDevice::receive`]
//! after an interrupt (or a timeout) and [`NetDevice::transmit`] fails with
//! [`NetError::Busy`] while every transmit buffer is with the device.
//!
//! The device is not trusted with lengths: a used length that does not fit the buffer it names
//! is counted as a bad frame and the buffer re-posted.

use crate::dma::{DmaBuffer, DmaError, TuttiHal};
use crate::pci::{ConfigPorts, Function};
use crate::virtio_pci::{self, OpenError};
use rt::sys::Handle;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::PciTransport;

/// virtio-net: transitional (legacy + modern) and modern-only device IDs.
pub const NET_DEVICES: [u16; 2] = [0x1000, 0x1041];
/// Descriptors per queue, and so buffers per direction.
pub const QUEUE_SIZE: usize = 16;
/// Bytes of one buffer: the virtio-net header (at most 12) and an Ethernet frame of up to
/// 1514 bytes, rounded up so two buffers fill a page.
pub const BUFFER_LEN: usize = 2048;
/// The largest Ethernet frame (without the frame check sequence) sent or received.
pub const FRAME_MAX: usize = 1514;
/// Bytes of DMA memory the driver takes from the arena beyond the queues (which take four to
/// six pages): size the arena (`dma::init`) at least [`DMA_BYTES`].
pub const DMA_BYTES: usize = 2 * QUEUE_SIZE * BUFFER_LEN + 16 * 4096;

/// Why the network device cannot be used, or a transfer failed.
#[derive(Debug)]
pub enum NetError {
    /// Finding, mapping or checking the function failed (`NoDevice` when there is none).
    Open(OpenError),
    /// The DMA arena had no room for the buffers.
    Dma(DmaError),
    /// The device failed a request or its set-up.
    Virtio(virtio_drivers::Error),
    /// Every transmit buffer is with the device: poll and try again.
    Busy,
    /// A frame longer than [`FRAME_MAX`].
    TooLong(usize),
}

impl From<OpenError> for NetError {
    fn from(e: OpenError) -> NetError {
        NetError::Open(e)
    }
}

impl From<DmaError> for NetError {
    fn from(e: DmaError) -> NetError {
        NetError::Dma(e)
    }
}

impl From<virtio_drivers::Error> for NetError {
    fn from(e: virtio_drivers::Error) -> NetError {
        NetError::Virtio(e)
    }
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::Open(OpenError::NoDevice) => f.write_str("no virtio-net device"),
            NetError::Open(e) => write!(f, "cannot set up the virtio-net function: {e:?}"),
            NetError::Dma(e) => write!(f, "DMA memory: {e:?}"),
            NetError::Virtio(e) => write!(f, "device error: {e:?}"),
            NetError::Busy => f.write_str("every transmit buffer is in use"),
            NetError::TooLong(n) => write!(f, "a frame of {n} bytes is longer than {FRAME_MAX}"),
        }
    }
}

/// Counters of the driver's own view of the traffic.
#[derive(Clone, Copy, Debug, Default)]
pub struct NetStats {
    pub received: u64,
    pub transmitted: u64,
    /// Used buffers whose length the device reported wrongly (too short for the header or
    /// longer than the buffer or [`FRAME_MAX`]).
    pub bad_length: u64,
    /// Receive buffers that could not be posted again (a device or queue error).
    pub repost_failures: u64,
}

/// An open virtio-net device.
pub struct NetDevice {
    inner: VirtIONetRaw<TuttiHal, PciTransport, QUEUE_SIZE>,
    function: Function,
    rx: DmaBuffer,
    tx: DmaBuffer,
    /// For each descriptor token, the receive slot posted under it.
    rx_slot: [Option<usize>; QUEUE_SIZE],
    /// For each descriptor token, the transmit slot and its length (header included).
    tx_slot: [Option<(usize, usize)>; QUEUE_SIZE],
    /// Transmit slots not with the device (a bit each).
    tx_free: u32,
    mac: [u8; 6],
    stats: NetStats,
}

/// The `slot`-th buffer of `memory`.
fn slot(memory: &mut DmaBuffer, slot: usize) -> &mut [u8] {
    &mut memory.as_mut_slice()[slot * BUFFER_LEN..(slot + 1) * BUFFER_LEN]
}

/// Finds the first virtio-net function through `cam`, maps its BARs from `device_memory`
/// (the DMA arena must be set up, `dma::init`, with at least [`DMA_BYTES`]), resets and
/// brings it up, and posts every receive buffer.
pub fn open(cam: ConfigPorts, device_memory: Handle) -> Result<NetDevice, NetError> {
    let (function, transport) = virtio_pci::open(cam, device_memory, &NET_DEVICES)?;
    let inner = VirtIONetRaw::<TuttiHal, _, QUEUE_SIZE>::new(transport)?;
    let rx = DmaBuffer::new(QUEUE_SIZE * BUFFER_LEN)?;
    let tx = DmaBuffer::new(QUEUE_SIZE * BUFFER_LEN)?;
    let mac = inner.mac_address();
    let mut device = NetDevice {
        inner,
        function,
        rx,
        tx,
        rx_slot: [None; QUEUE_SIZE],
        tx_slot: [None; QUEUE_SIZE],
        tx_free: (1u32 << QUEUE_SIZE) - 1,
        mac,
        stats: NetStats::default(),
    };
    for s in 0..QUEUE_SIZE {
        device.post(s)?;
    }
    Ok(device)
}

impl NetDevice {
    /// The PCI function (its `interrupt_line` is the line the firmware routed INTx to).
    pub fn function(&self) -> &Function {
        &self.function
    }

    /// The device's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The counters.
    pub fn stats(&self) -> NetStats {
        self.stats
    }

    /// Reads (and so clears) the interrupt status, which lowers the interrupt line. Returns
    /// whether the device had raised it.
    pub fn ack_interrupt(&mut self) -> bool {
        !self.inner.ack_interrupt().is_empty()
    }

    /// Gives receive slot `s` to the device.
    fn post(&mut self, s: usize) -> Result<(), NetError> {
        let buffer = slot(&mut self.rx, s);
        // Safety: the slot is not touched again until the device returns it under this token
        // (`receive` is the only reader, and only of slots it gets back from the used ring).
        let token = unsafe { self.inner.receive_begin(buffer)? };
        let entry = self.rx_slot.get_mut(token as usize).ok_or(NetError::Virtio(virtio_drivers::Error::WrongToken))?;
        *entry = Some(s);
        Ok(())
    }

    /// Takes the next received frame, if any, hands it to `f` and gives its buffer back to the
    /// device. `Some(None)`: a buffer came back with a bad length (counted, re-posted).
    pub fn receive<R>(&mut self, f: impl FnOnce(&[u8]) -> R) -> Option<Option<R>> {
        let token = self.inner.poll_receive()?;
        let Some(s) = self.rx_slot.get_mut(token as usize).and_then(Option::take) else {
            // A token we never posted: the device is broken; nothing to hand on.
            self.stats.bad_length += 1;
            return Some(None);
        };
        let buffer = slot(&mut self.rx, s);
        // Safety: `buffer` is the slot posted under `token` (`rx_slot`).
        let result = match unsafe { self.inner.receive_complete(token, buffer) } {
            Ok((header, len)) if len <= FRAME_MAX && header + len <= BUFFER_LEN => {
                self.stats.received += 1;
                Some(f(&slot(&mut self.rx, s)[header..header + len]))
            }
            _ => {
                self.stats.bad_length += 1;
                None
            }
        };
        if self.post(s).is_err() {
            self.stats.repost_failures += 1;
        }
        Some(result)
    }

    /// Returns the transmit buffers the device has finished with.
    pub fn reclaim(&mut self) {
        while let Some(token) = self.inner.poll_transmit() {
            let Some((s, len)) = self.tx_slot.get_mut(token as usize).and_then(Option::take) else { return };
            let buffer = &slot(&mut self.tx, s)[..len];
            // Safety: `buffer` is exactly the slice passed to `transmit_begin` under `token`.
            let _ = unsafe { self.inner.transmit_complete(token, buffer) };
            self.tx_free |= 1 << s;
        }
    }

    /// Whether a transmit buffer is free (after reclaiming finished ones).
    pub fn can_transmit(&mut self) -> bool {
        self.reclaim();
        self.tx_free != 0
    }

    /// Sends a frame of `len` bytes that `fill` writes; returns what `fill` returned.
    pub fn transmit<R>(&mut self, len: usize, fill: impl FnOnce(&mut [u8]) -> R) -> Result<R, NetError> {
        if len > FRAME_MAX {
            return Err(NetError::TooLong(len));
        }
        self.reclaim();
        if self.tx_free == 0 {
            return Err(NetError::Busy);
        }
        let s = self.tx_free.trailing_zeros() as usize;
        let buffer = slot(&mut self.tx, s);
        let header = self.inner.fill_buffer_header(buffer)?;
        let result = fill(&mut buffer[header..header + len]);
        let total = header + len;
        // Safety: the slot stays untouched until `reclaim` gets it back under this token.
        let token = unsafe { self.inner.transmit_begin(&buffer[..total])? };
        let entry = self.tx_slot.get_mut(token as usize).ok_or(NetError::Virtio(virtio_drivers::Error::WrongToken))?;
        *entry = Some((s, total));
        self.tx_free &= !(1 << s);
        self.stats.transmitted += 1;
        Ok(result)
    }
}
