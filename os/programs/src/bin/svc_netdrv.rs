//! The network driver service `netdrv` (docs/net.md): owns the virtio-net device (PCI
//! configuration ports, the BAR window and the interrupt lines of its manifest entry) and
//! moves Ethernet frames between the device and the network stack (`net`), which runs TCP/IP
//! in its own task. Registered as `netdrv`.
//!
//! The stack attaches with the protocol `svc::netdrv`: it sends the rings and the DMA arena
//! (both its own memory objects) and its notification; the driver brings the device up
//! (which resets it: a restarted driver starts from a clean device) and answers with its
//! doorbell and the MAC address. One thread then waits on the endpoint; the device's
//! interrupt (bit [`IRQ_BIT`]) and the stack's doorbell (`DOORBELL_BIT`) arrive as `NOTIFY`
//! messages through one notification bound to it. After each wake-up it moves frames:
//! from the ring to the device while transmit buffers are free, from the device to the ring
//! while slots are free (a full ring leaves frames with the device, which drops what does not
//! fit: back-pressure), and signals the stack if anything moved.
//!
//! Everything the stack writes is checked (`svc::netdrv::Rings`). When the stack has gone
//! (the rings' memory object is gone) the driver resets the device and ends with status 0;
//! init starts a fresh one for the next stack. Without a virtio-net device it answers
//! `NoDevice` to the stack, which then turns the network off.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::string::String;
use drivers::dma;
use drivers::pci::{self, ConfigPorts};
use drivers::virtio_net::{self, NetDevice};
use drivers::virtio_pci::VIRTIO_VENDOR;
use rt::device::{irq_ack, irq_bind};
use rt::ipc::{Cap, Server};
use rt::log::{info, warn};
use rt::sys::{self, Handle};
use svc::netdrv::{self, Direction, NetDrv, Request, Response, RingError, Rings, FRAME_MAX, STACK_BIT};

rt::entry!(main);

/// The notification bit of the device's interrupt (the stack's doorbell is `DOORBELL_BIT`).
const IRQ_BIT: u64 = 1;
const NOTIFY: u32 = abi::syscall::label::NOTIFY;
/// How often the driver looks whether the stack still lives while nothing happens, and polls
/// the device when it has no interrupt line.
const IDLE_NS: u64 = 100_000_000;
const POLL_NS: u64 = 10_000_000;
/// While frames to send wait for a transmit buffer: the device does not always interrupt when
/// it has finished sending, so look again this soon.
const BACKLOG_NS: u64 = 500_000;
/// Wake-ups between two checks that the stack still lives while traffic flows.
const CHECK_EVERY: u32 = 64;
/// The least time between two summaries of dropped frames.
const SUMMARY_NS: u64 = 2_000_000_000;

fn main() -> i32 {
    rt::log::set_prefix("netdrv");
    match run() {
        Ok(status) => svc::exit(status),
        Err(e) => {
            warn!("{e}");
            svc::exit(1)
        }
    }
}

/// Frames the driver could not pass on.
#[derive(Default, Clone, Copy, PartialEq, Eq)]
struct Drops {
    /// From the device: shorter than an Ethernet header, or a bad length.
    device: u64,
    /// From the stack: a slot with a bad length.
    stack: u64,
    /// To the device: it refused the frame.
    transmit: u64,
}

struct Driver {
    /// The PCI configuration ports and the device memory (the BAR window).
    ports: Handle,
    device_memory: Handle,
    /// Whether a virtio-net function exists.
    present: bool,
    /// The interrupt lines of the manifest.
    lines: alloc::vec::Vec<(Handle, u8)>,
    /// The notification bound to the thread: interrupt and doorbell.
    notification: Handle,
    dev: Option<NetDevice>,
    irq: Option<(Handle, u8)>,
    rings: Option<Rings>,
    arena: Option<Handle>,
    /// The stack's notification.
    stack: Option<Handle>,
    frame: [u8; FRAME_MAX],
    drops: Drops,
    reported: Drops,
    last_summary: u64,
}

impl Driver {
    fn handle(&mut self, request: Request) -> Response {
        match request {
            Request::Rings { memory } => {
                // One set of rings is mapped at a time: the old one goes first.
                self.rings = None;
                self.rings_from(memory.0)
            }
            Request::Arena { memory } => {
                if self.dev.is_some() || self.arena.is_some() {
                    let _ = sys::cap_close(memory.0);
                } else {
                    self.arena = Some(memory.0);
                }
                Response::Done
            }
            Request::Attach { notify } => {
                let response = self.attach(notify.0);
                if !matches!(response, Response::Attached { .. }) {
                    let _ = sys::cap_close(notify.0);
                }
                response
            }
        }
    }

    /// Maps rings from the stack.
    fn rings_from(&mut self, memory: Handle) -> Response {
        match Rings::attach(memory) {
            Ok(rings) => {
                self.rings = Some(rings);
                Response::Done
            }
            Err(e) => {
                warn!("unusable rings from the stack: {e}");
                self.rings = None;
                Response::BadMemory
            }
        }
    }

    fn attach(&mut self, notify: Handle) -> Response {
        if !self.present {
            return Response::NoDevice;
        }
        if self.rings.is_none() {
            return Response::BadMemory;
        }
        if self.dev.is_none() {
            if let Err(response) = self.open() {
                return response;
            }
        }
        let Some(mac) = self.dev.as_ref().map(NetDevice::mac) else { return Response::Failed };
        let Ok(doorbell) =
            sys::cap_duplicate(self.notification, abi::syscall::rights::SEND | abi::syscall::rights::DUPLICATE, 0)
        else {
            return Response::Failed;
        };
        if let Some(old) = self.stack.replace(notify) {
            let _ = sys::cap_close(old);
        }
        info!("the stack is attached");
        Response::Attached { doorbell: Cap(doorbell), mac }
    }

    /// Brings the device up in the stack's arena and binds its interrupt.
    fn open(&mut self) -> Result<(), Response> {
        let arena = self.arena.take().ok_or(Response::BadMemory)?;
        dma::adopt(arena).map_err(|e| {
            warn!("unusable DMA arena from the stack: {e:?}");
            Response::BadMemory
        })?;
        let cam = ConfigPorts::new(self.ports).map_err(|_| Response::Failed)?;
        let dev = virtio_net::open(cam, self.device_memory).map_err(|e| {
            warn!("virtio-net: {e}");
            Response::Failed
        })?;
        let function = *dev.function();
        let line = function.interrupt_line;
        self.irq = match self.lines.iter().find(|(_, l)| *l == line) {
            Some(&(cap, line)) => match irq_bind(cap, line, self.notification, IRQ_BIT) {
                Ok(()) => Some((cap, line)),
                Err(e) => {
                    warn!("binding interrupt line {line}: {e}; polling every 10 ms");
                    None
                }
            },
            None => {
                warn!("the manifest does not grant interrupt line {line}: polling every 10 ms");
                None
            }
        };
        // The device may have raised its line before it was bound (a configuration interrupt
        // during set-up): read the status once, which lowers it, or no edge would ever come.
        let mut dev = dev;
        dev.ack_interrupt();
        let m = dev.mac();
        info!(
            "virtio-net {} {:04x}:{:04x}, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}, {} (device reset)",
            function.address,
            function.vendor,
            function.device,
            m[0],
            m[1],
            m[2],
            m[3],
            m[4],
            m[5],
            match self.irq {
                Some((_, line)) => alloc::format!("interrupt line {line}"),
                None => "polled".into(),
            }
        );
        self.dev = Some(dev);
        Ok(())
    }

    /// Moves frames both ways; signals the stack if any moved. Returns whether frames to send
    /// are left waiting for a transmit buffer.
    fn pump(&mut self) -> Result<bool, RingError> {
        let Driver { dev: Some(dev), rings: Some(rings), stack: Some(stack), frame, drops, .. } = self else {
            return Ok(false);
        };
        let mut moved = false;
        // To the device, while it has transmit buffers (bounded by the ring's slots).
        while dev.can_transmit() {
            match rings.pop(Direction::ToDriver, &mut frame[..]) {
                Ok(Some(len)) => {
                    moved = true;
                    if dev.transmit(len, |buffer| buffer.copy_from_slice(&frame[..len])).is_err() {
                        drops.transmit += 1;
                    }
                }
                Ok(None) => break,
                Err(RingError::BadLength(_)) => {
                    moved = true;
                    drops.stack += 1;
                }
                Err(e) => return Err(e),
            }
        }
        // From the device, while the ring has room (bounded by the ring's slots).
        while rings.has_room(Direction::ToStack)? {
            match dev.receive(|bytes| rings.push(Direction::ToStack, bytes)) {
                None => break,
                Some(Some(Ok(true))) => moved = true,
                Some(Some(Ok(false)) | Some(Err(RingError::BadLength(_))) | None) => drops.device += 1,
                Some(Some(Err(e))) => return Err(e),
            }
        }
        if moved {
            sys::signal(*stack, STACK_BIT)?;
        }
        Ok(rings.pending(Direction::ToDriver)? > 0)
    }

    /// Whether the stack has gone (its rings or its notification).
    fn stack_gone(&self) -> bool {
        match (&self.rings, self.stack) {
            (Some(rings), Some(stack)) => rings.gone() || !netdrv::alive(stack),
            _ => false,
        }
    }

    fn summary(&mut self, now: u64) {
        if self.drops == self.reported || now < self.last_summary + SUMMARY_NS {
            return;
        }
        self.reported = self.drops;
        self.last_summary = now;
        let d = self.drops;
        warn!(
            "dropped frames so far: {} from the device (bad length), {} from the stack (bad length), {} refused by the device",
            d.device, d.stack, d.transmit
        );
    }
}

fn run() -> Result<i32, String> {
    let caps = svc::capabilities().map_err(|e| alloc::format!("init gave no capabilities: {e}"))?;
    let (ports, first, count) = svc::first_ports(&caps).ok_or("no I/O ports in the manifest")?;
    if first as u64 != pci::CONFIG_ADDRESS as u64 || (count as u64) < pci::CONFIG_PORTS {
        return Err("the manifest must grant the PCI configuration ports 0xcf8-0xcff".into());
    }
    let device_memory = caps
        .iter()
        .find_map(|c| match c {
            svc::boot::Response::DeviceMemory { cap, .. } => Some(cap.0),
            _ => None,
        })
        .ok_or("no device memory in the manifest")?;
    let lines = caps
        .iter()
        .filter_map(|c| match c {
            svc::boot::Response::Irq { cap, line } => Some((cap.0, *line)),
            _ => None,
        })
        .collect();
    let cam = ConfigPorts::new(ports).map_err(|e| alloc::format!("configuration ports: {e:?}"))?;
    let present = pci::find(&cam, VIRTIO_VENDOR, &virtio_net::NET_DEVICES).is_some();
    let notification = sys::notification_create().map_err(|_| "no notification")?;
    sys::notification_bind(notification).map_err(|e| alloc::format!("binding the notification: {e}"))?;
    let endpoint = sys::endpoint_create().map_err(|_| "no endpoint")?;
    let names = svc::names().map_err(|_| "no name service")?;
    svc::register(&names, endpoint).map_err(|_| "cannot register as netdrv")?;
    if present {
        info!("a virtio-net device is present; waiting for the stack");
    } else {
        info!("no virtio-net device");
    }
    let mut driver = Driver {
        ports,
        device_memory,
        present,
        lines,
        notification,
        dev: None,
        irq: None,
        rings: None,
        arena: None,
        stack: None,
        frame: [0; FRAME_MAX],
        drops: Drops::default(),
        reported: Drops::default(),
        last_summary: 0,
    };
    serve(&mut driver, endpoint)
}

/// The loop: wait for an interrupt, the doorbell or a request; move frames.
fn serve(driver: &mut Driver, endpoint: Handle) -> Result<i32, String> {
    let mut reply: Option<sys::Message> = None;
    let mut wakeups = 0u32;
    let mut backlog = false;
    loop {
        let timeout = if backlog {
            BACKLOG_NS
        } else if driver.dev.is_some() && driver.irq.is_none() {
            POLL_NS
        } else {
            IDLE_NS
        };
        let received = match reply.take() {
            Some(message) => {
                let r = sys::reply_recv(endpoint, &message, timeout);
                // A capability in a response is moved: the caller has its copy now.
                if let Some(cap) = message.cap {
                    let _ = sys::cap_close(cap);
                }
                r
            }
            None => sys::recv(endpoint, timeout),
        };
        let mut check = false;
        match received {
            Ok(incoming) if incoming.message.label == NOTIFY => {
                if incoming.message.words[0] & IRQ_BIT != 0 {
                    if let (Some((cap, line)), Some(dev)) = (driver.irq, driver.dev.as_mut()) {
                        // Unmask first, then read the status (which lowers the line): an event
                        // after the read raises the line again and so interrupts again.
                        let _ = irq_ack(cap, line);
                        dev.ack_interrupt();
                    }
                }
                // The doorbell (`DOORBELL_BIT`) needs nothing but the pump below.
            }
            Ok(incoming) => {
                reply = Some(Server::<NetDrv>::answer(&incoming, &mut |_, request| driver.handle(request)));
            }
            Err(sys::Error::TimedOut | sys::Error::WouldBlock) => {
                check = true;
                // A lost edge would leave the line high for good: lower it now and then.
                if let (Some((cap, line)), Some(dev)) = (driver.irq, driver.dev.as_mut()) {
                    let _ = irq_ack(cap, line);
                    dev.ack_interrupt();
                }
            }
            Err(e) => return Err(alloc::format!("receiving on the endpoint: {e}")),
        }
        wakeups = wakeups.wrapping_add(1);
        if (check || wakeups.is_multiple_of(CHECK_EVERY)) && driver.stack_gone() {
            return Ok(end_for_gone_stack(driver));
        }
        backlog = false;
        match driver.pump() {
            Ok(left) => backlog = left,
            Err(RingError::Sys(_)) if driver.stack_gone() => return Ok(end_for_gone_stack(driver)),
            Err(e) => {
                // The stack broke the rings: stop using them until it attaches again.
                warn!("the stack's rings: {e}; waiting for it to attach again");
                driver.rings = None;
            }
        }
        driver.summary(sys::time_now());
    }
}

/// The stack has gone: reset the device (so it stops writing into the stack's arena, which
/// is going back to the kernel) and end; init starts a fresh driver for the next stack.
fn end_for_gone_stack(driver: &mut Driver) -> i32 {
    info!("the stack has gone: resetting the device and ending");
    // Dropping the device resets it (virtio-drivers' transport writes status 0).
    driver.dev = None;
    driver.rings = None;
    0
}
