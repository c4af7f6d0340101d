//! The network service (docs/net.md): the smoltcp TCP/IP stack, serving sockets over IPC
//! (protocol `svc::net`). Registered as `net`. It touches no hardware: the driver `netdrv`
//! (`svc_netdrv`) owns the virtio-net device and moves Ethernet frames through two rings in
//! a memory object this service owns (protocol and rings: `svc::netdrv`).
//!
//! One thread serves the endpoint and looks after the rings: the notification the driver
//! signals is bound to that thread, so a receive on the endpoint returns with a `NOTIFY`
//! message when frames have moved; the receive timeout is smoltcp's poll delay. Each
//! iteration: poll smoltcp (which takes received frames from the ring and puts frames to send
//! in the other), signal the driver's doorbell if frames moved, then wait for the next request
//! or signal. A request never waits: one that cannot progress is answered `WouldBlock`, and
//! the client is signalled when its sockets may have moved (see `svc::net`).
//!
//! **The driver may die.** Its doorbell capability then becomes invalid (checked every
//! 20 ms and on every signal): the service drops frames to send meanwhile, keeps every socket
//! and its TCP state, looks `netdrv` up again every 20 ms, resets the rings and attaches the
//! new driver (which resets the device); TCP retransmits what was lost.
//!
//! Every frame is checked before smoltcp sees it (Ethernet, ARP, IPv4 header and checksum,
//! TCP/UDP/ICMP checksums); a malformed one is dropped and counted, the first few reported one
//! by one, then a summary at most every few seconds. Configuration: the manifest's `arg` lines
//! (`dhcp`, or `address=<a.b.c.d>/<n>` and `gateway=<a.b.c.d>`); without any, DHCP.
//! Everything a client sends is checked: socket ids belong to the caller's badge, ranges lie in
//! its buffer, and there are limits on clients and sockets.
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::rights;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use rt::ipc::{BufRange, Cap, Client as IpcClient, Server, SharedBuffer};
use rt::log::{info, warn};
use rt::sys::{self, Handle};
use smoltcp::iface::{Config, Interface, PollResult, SocketHandle, SocketSet};
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::socket::{dhcpv4, tcp, udp};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol, HardwareAddress, Icmpv4Packet, IpAddress,
    IpCidr, IpEndpoint, IpProtocol, Ipv4Address, Ipv4Cidr, Ipv4Packet, TcpPacket, UdpPacket,
};
use svc::net::{tcp_state, NetProtocol, Request, Response, BUFFER_LEN, READY_BIT};
use svc::netdrv::{self, Direction, NetDrv, RingError, Rings, DOORBELL_BIT, FRAME_MAX};

rt::entry!(main);

/// `NOTIFY`: the label of a receive ended by the bound notification.
const NOTIFY: u32 = abi::syscall::label::NOTIFY;
/// How long the service waits for the driver at its start.
const DRIVER_WAIT_NS: u64 = 10_000_000_000;
/// Each call of an attachment.
const ATTACH_TIMEOUT_NS: u64 = 2_000_000_000;
/// How often the service checks that the driver lives, and retries attaching a driver that
/// has gone.
const CHECK_NS: u64 = 20_000_000;
/// Clients (badges) served at once.
const MAX_CLIENTS: usize = 8;
/// Sockets (ids) one client may hold.
const MAX_PER_CLIENT: usize = 8;
/// smoltcp sockets in all: clients' sockets, listening pools, closing connections, DHCP.
const MAX_SOCKETS: usize = 24;
/// Bytes of each TCP socket's receive and send buffers.
const TCP_BUFFER: usize = 16 * 1024;
/// UDP: datagrams and bytes queued each way per socket; the largest datagram (no IP fragments).
const UDP_PACKETS: usize = 8;
const UDP_BUFFER: usize = 8 * 1024;
const UDP_MAX: usize = 1472;
/// The longest the loop sleeps when smoltcp has nothing scheduled (DHCP retries, sweeps).
const IDLE_NS: u64 = 500_000_000;
/// Malformed frames reported one by one before only summaries are printed.
const REPORT_EACH: u64 = 5;
/// The least time between two summaries of malformed frames.
const SUMMARY_NS: u64 = 2_000_000_000;

fn main() -> i32 {
    rt::log::set_prefix("net");
    match run() {
        Ok(status) => svc::exit(status),
        Err(e) => {
            warn!("{e}");
            svc::exit(1)
        }
    }
}

/// How the interface gets its address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Addressing {
    Dhcp,
    Static { address: Ipv4Cidr, gateway: Option<Ipv4Address> },
}

/// The configuration from the manifest's `arg` lines.
fn addressing(args: &[String]) -> Result<Addressing, String> {
    let mut dhcp = false;
    let mut address = None;
    let mut gateway = None;
    for arg in args {
        let arg = arg.trim();
        if arg == "dhcp" {
            dhcp = true;
        } else if let Some(text) = arg.strip_prefix("address=") {
            let (ip, prefix) = text.split_once('/').ok_or_else(|| alloc::format!("bad address {text:?}: a.b.c.d/n"))?;
            let ip: Ipv4Address = ip.parse().map_err(|_| alloc::format!("bad address {text:?}"))?;
            let prefix: u8 = prefix
                .parse()
                .ok()
                .filter(|&p| (1..=32).contains(&p))
                .ok_or_else(|| alloc::format!("bad prefix length in {text:?}: 1 to 32"))?;
            address = Some(Ipv4Cidr::new(ip, prefix));
        } else if let Some(text) = arg.strip_prefix("gateway=") {
            gateway = Some(text.parse::<Ipv4Address>().map_err(|_| alloc::format!("bad gateway {text:?}"))?);
        } else {
            return Err(alloc::format!("unknown argument {arg:?} (dhcp, address=a.b.c.d/n, gateway=a.b.c.d)"));
        }
    }
    match (dhcp, address) {
        (true, Some(_)) => Err("both dhcp and a static address".into()),
        (_, Some(address)) => Ok(Addressing::Static { address, gateway }),
        (_, None) if gateway.is_some() => Err("a gateway without an address".into()),
        _ => Ok(Addressing::Dhcp),
    }
}

/// Why frames were dropped before reaching smoltcp.
#[derive(Default)]
struct Drops {
    /// IPv6 frames: not malformed, not counted in the total.
    ipv6: u64,
    runt: u64,
    foreign: u64,
    ethertype: u64,
    arp: u64,
    ipv4: u64,
    checksum: u64,
    transport: u64,
    device: u64,
    reported: u64,
    summarised: u64,
    last_summary: u64,
}

impl Drops {
    fn total(&self) -> u64 {
        self.runt + self.foreign + self.ethertype + self.arp + self.ipv4 + self.checksum + self.transport + self.device
    }

    fn drop(&mut self, reason: &'static str, frame: &[u8]) {
        if reason == REASON_IPV6 {
            self.ipv6 += 1;
            return;
        }
        let counter = match reason {
            REASON_RUNT => &mut self.runt,
            REASON_FOREIGN => &mut self.foreign,
            REASON_ETHERTYPE => &mut self.ethertype,
            REASON_ARP => &mut self.arp,
            REASON_IPV4 => &mut self.ipv4,
            REASON_CHECKSUM => &mut self.checksum,
            REASON_DEVICE => &mut self.device,
            _ => &mut self.transport,
        };
        *counter += 1;
        if self.reported < REPORT_EACH {
            self.reported += 1;
            let src = frame.get(6..12).unwrap_or(&[]);
            warn!("dropped a malformed frame ({} bytes from {:02x?}): {reason}", frame.len(), src);
        }
    }

    /// A summary line, if frames were dropped since the last one and it is time.
    fn summary(&mut self, now: u64) {
        let total = self.total();
        if total == self.summarised || now < self.last_summary + SUMMARY_NS {
            return;
        }
        self.summarised = total;
        self.last_summary = now;
        warn!(
            "dropped {total} malformed frames so far: {} runts, {} not for us, {} unknown ethertype, {} bad ARP, \
             {} bad IPv4 header, {} bad IPv4 checksum, {} bad TCP/UDP/ICMP, {} bad length from the device",
            self.runt, self.foreign, self.ethertype, self.arp, self.ipv4, self.checksum, self.transport, self.device
        );
    }
}

const REASON_RUNT: &str = "shorter than an Ethernet header";
const REASON_FOREIGN: &str = "addressed to another station";
const REASON_ETHERTYPE: &str = "unsupported ethertype";
const REASON_ARP: &str = "malformed ARP";
const REASON_IPV4: &str = "malformed IPv4 header";
const REASON_CHECKSUM: &str = "bad IPv4 header checksum";
const REASON_TRANSPORT: &str = "malformed or bad checksum TCP/UDP/ICMP";
const REASON_DEVICE: &str = "bad length from the device";
const REASON_IPV6: &str = "IPv6";

/// Checks a received frame; `Err(reason)` if smoltcp should not see it.
fn check_frame(frame: &[u8], mac: EthernetAddress) -> Result<(), &'static str> {
    let eth = EthernetFrame::new_checked(frame).map_err(|_| REASON_RUNT)?;
    let dst = eth.dst_addr();
    if dst != mac && !dst.is_broadcast() && !dst.is_multicast() {
        return Err(REASON_FOREIGN);
    }
    match eth.ethertype() {
        EthernetProtocol::Arp => {
            let arp = ArpPacket::new_checked(eth.payload()).map_err(|_| REASON_ARP)?;
            ArpRepr::parse(&arp).map(|_| ()).map_err(|_| REASON_ARP)
        }
        EthernetProtocol::Ipv4 => {
            let ip = Ipv4Packet::new_checked(eth.payload()).map_err(|_| REASON_IPV4)?;
            if ip.version() != 4 {
                return Err(REASON_IPV4);
            }
            if !ip.verify_checksum() {
                return Err(REASON_CHECKSUM);
            }
            if ip.more_frags() || ip.frag_offset() != 0 {
                return Ok(()); // smoltcp drops fragments itself (no reassembly)
            }
            let (src, dst) = (IpAddress::Ipv4(ip.src_addr()), IpAddress::Ipv4(ip.dst_addr()));
            let payload = ip.payload();
            let good = match ip.next_header() {
                IpProtocol::Tcp => TcpPacket::new_checked(payload).is_ok_and(|t| t.verify_checksum(&src, &dst)),
                IpProtocol::Udp => {
                    UdpPacket::new_checked(payload).is_ok_and(|u| u.checksum() == 0 || u.verify_checksum(&src, &dst))
                }
                IpProtocol::Icmp => Icmpv4Packet::new_checked(payload).is_ok_and(|i| i.verify_checksum()),
                _ => true,
            };
            if good {
                Ok(())
            } else {
                Err(REASON_TRANSPORT)
            }
        }
        // IPv6 (neighbour and router solicitations of the host) is not spoken here, but
        // well-formed: dropped without a report.
        EthernetProtocol::Ipv6 => Err(REASON_IPV6),
        _ => Err(REASON_ETHERTYPE),
    }
}

/// The driver's side of the link, while one is attached.
struct Link {
    driver: IpcClient<NetDrv>,
    doorbell: Handle,
}

impl Drop for Link {
    fn drop(&mut self) {
        let _ = sys::cap_close(self.doorbell);
        let _ = sys::cap_close(self.driver.endpoint());
    }
}

/// The rings to the driver as a smoltcp device: received frames are copied out of their
/// slot, checked, then handed on; frames to send are built in `scratch` and copied into a
/// slot. Without a driver, frames to send are dropped (TCP retransmits them later).
struct Phy {
    rings: Rings,
    link: Option<Link>,
    mac: EthernetAddress,
    frame: Vec<u8>,
    scratch: Vec<u8>,
    drops: Drops,
    /// Frames handed to smoltcp since the loop last looked.
    delivered: u64,
    /// Frames put in or taken out since the driver was last signalled.
    kick: bool,
    /// smoltcp had a frame to send but the ring was full.
    blocked: bool,
    /// The driver broke the rings (an impossible index): attach it again.
    broken: bool,
    /// Frames dropped because no driver was attached.
    lost: u64,
}

struct RxToken<'a>(&'a [u8]);

struct TxToken<'a> {
    /// `None` without a driver: the frame is dropped.
    rings: Option<&'a mut Rings>,
    scratch: &'a mut Vec<u8>,
    kick: &'a mut bool,
    broken: &'a mut bool,
    lost: &'a mut u64,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        // smoltcp keeps to the MTU (FRAME_MAX); a longer frame is built and dropped.
        self.scratch.resize(len.max(FRAME_MAX), 0);
        let result = f(&mut self.scratch[..len]);
        match self.rings.map(|rings| rings.push(Direction::ToDriver, &self.scratch[..len])) {
            Some(Ok(true)) => *self.kick = true,
            Some(Ok(false)) | None => *self.lost += 1,
            Some(Err(RingError::BadLength(n))) => warn!("cannot send a frame of {n} bytes"),
            Some(Err(_)) => *self.broken = true,
        }
        result
    }
}

impl Device for Phy {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let Phy { rings, link, mac, frame, scratch, drops, delivered, kick, broken, lost, .. } = self;
        link.as_ref()?;
        // smoltcp may answer a frame at once: take one only while the ring to the driver has
        // room (nobody else puts frames in until the tokens are consumed).
        match rings.has_room(Direction::ToDriver) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(_) => {
                *broken = true;
                return None;
            }
        }
        // Skip (and count) malformed frames; bounded by the ring's slots.
        for _ in 0..netdrv::SLOTS {
            match rings.pop(Direction::ToStack, frame) {
                Ok(Some(len)) => {
                    *kick = true;
                    match check_frame(&frame[..len], *mac) {
                        Ok(()) => {
                            *delivered += 1;
                            let tx = TxToken { rings: Some(rings), scratch, kick, broken, lost };
                            return Some((RxToken(&frame[..len]), tx));
                        }
                        Err(reason) => drops.drop(reason, &frame[..len]),
                    }
                }
                Ok(None) => return None,
                Err(RingError::BadLength(_)) => {
                    *kick = true;
                    drops.drop(REASON_DEVICE, &[]);
                }
                Err(_) => {
                    *broken = true;
                    return None;
                }
            }
        }
        None
    }

    fn transmit(&mut self, _: Instant) -> Option<TxToken<'_>> {
        let Phy { rings, link, scratch, kick, broken, lost, blocked, .. } = self;
        if link.is_none() {
            return Some(TxToken { rings: None, scratch, kick, broken, lost });
        }
        match rings.has_room(Direction::ToDriver) {
            Ok(true) => Some(TxToken { rings: Some(rings), scratch, kick, broken, lost }),
            Ok(false) => {
                *blocked = true;
                None
            }
            Err(_) => {
                *broken = true;
                None
            }
        }
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = FRAME_MAX;
        caps.max_burst_size = Some(netdrv::SLOTS as usize / 2);
        caps
    }
}

/// Why attaching to the driver failed.
#[derive(Debug)]
enum AttachError {
    /// The driver has no device.
    NoDevice,
    /// A call failed (the driver died meanwhile...).
    Ipc(rt::ipc::IpcError),
    /// A system call of ours failed.
    Sys(sys::Error),
    /// The driver answered something else.
    Refused(netdrv::Response),
}

impl core::fmt::Display for AttachError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            AttachError::NoDevice => f.write_str("no virtio-net device"),
            AttachError::Ipc(e) => write!(f, "{e}"),
            AttachError::Sys(e) => write!(f, "{e}"),
            AttachError::Refused(r) => write!(f, "the driver answered {r:?}"),
        }
    }
}

/// What the stack keeps to attach a (new) driver: the DMA arena it owns for it and the
/// notification the driver signals.
struct Attachment {
    arena: Handle,
    notification: Handle,
}

impl Attachment {
    /// Resets the rings and hands them, the arena and the notification to the driver behind
    /// `endpoint` (taken: closed on failure). Returns the link and the device's MAC.
    fn attach(&self, rings: &mut Rings, endpoint: Handle) -> Result<(Link, [u8; 6]), AttachError> {
        let driver = IpcClient::<NetDrv>::new(endpoint);
        let result = (|| {
            rings.reset();
            let call = |request: netdrv::Request| {
                let response = driver.call(&request, ATTACH_TIMEOUT_NS).map_err(AttachError::Ipc);
                if let Some(cap) = request_cap(&request) {
                    let _ = sys::cap_close(cap);
                }
                response
            };
            let copy = rings.share().map_err(AttachError::Sys)?;
            expect_done(call(netdrv::Request::Rings { memory: Cap(copy) })?)?;
            let copy = sys::cap_duplicate(self.arena, rights::READ | rights::WRITE | rights::DUPLICATE, 0)
                .map_err(AttachError::Sys)?;
            expect_done(call(netdrv::Request::Arena { memory: Cap(copy) })?)?;
            let copy =
                sys::cap_duplicate(self.notification, rights::SEND | rights::DUPLICATE, 0).map_err(AttachError::Sys)?;
            match call(netdrv::Request::Attach { notify: Cap(copy) })? {
                netdrv::Response::Attached { doorbell, mac } => Ok((doorbell.0, mac)),
                netdrv::Response::NoDevice => Err(AttachError::NoDevice),
                other => Err(AttachError::Refused(other)),
            }
        })();
        match result {
            Ok((doorbell, mac)) => Ok((Link { driver, doorbell }, mac)),
            Err(e) => {
                let _ = sys::cap_close(endpoint);
                Err(e)
            }
        }
    }
}

/// The capability a request carries (our copy, closed once sent: the driver has its own).
fn request_cap(request: &netdrv::Request) -> Option<Handle> {
    match request {
        netdrv::Request::Rings { memory } | netdrv::Request::Arena { memory } => Some(memory.0),
        netdrv::Request::Attach { notify } => Some(notify.0),
    }
}

fn expect_done(response: netdrv::Response) -> Result<(), AttachError> {
    match response {
        netdrv::Response::Done => Ok(()),
        netdrv::Response::NoDevice => Err(AttachError::NoDevice),
        other => Err(AttachError::Refused(other)),
    }
}

/// What a socket id stands for.
enum Kind {
    /// Listening sockets on one port: each takes one connection.
    Listener {
        port: u16,
        pool: Vec<SocketHandle>,
    },
    Stream(SocketHandle),
    Udp(SocketHandle),
}

struct Socket {
    owner: u64,
    kind: Kind,
}

struct Client {
    notify: Handle,
    buffer: SharedBuffer,
    /// Answered `WouldBlock` (or an equivalent) since the last signal.
    waiting: bool,
}

struct Stack {
    phy: Phy,
    iface: Interface,
    sockets: SocketSet<'static>,
    dhcp: Option<SocketHandle>,
    table: BTreeMap<u32, Socket>,
    clients: BTreeMap<u64, Client>,
    /// TCP sockets closed by their clients, kept until the connection has wound down.
    closing: Vec<SocketHandle>,
    next_id: u32,
    next_port: u16,
    configured: bool,
    gateway: Option<Ipv4Address>,
}

fn now_instant() -> Instant {
    Instant::from_micros((sys::time_now() / 1000) as i64)
}

fn tcp_socket() -> tcp::Socket<'static> {
    let mut socket =
        tcp::Socket::new(tcp::SocketBuffer::new(vec![0; TCP_BUFFER]), tcp::SocketBuffer::new(vec![0; TCP_BUFFER]));
    socket.set_nagle_enabled(false);
    socket
}

fn state_code(state: tcp::State) -> u8 {
    use tcp::State::*;
    match state {
        SynSent | SynReceived => tcp_state::CONNECTING,
        Established => tcp_state::ESTABLISHED,
        CloseWait => tcp_state::PEER_CLOSED,
        FinWait1 | FinWait2 | Closing | LastAck | TimeWait => tcp_state::CLOSING,
        Closed => tcp_state::CLOSED,
        Listen => tcp_state::LISTENING,
    }
}

impl Stack {
    fn smoltcp_sockets(&self) -> usize {
        self.sockets.iter().count()
    }

    fn poll(&mut self) -> bool {
        let before = self.phy.delivered;
        let result = self.iface.poll(now_instant(), &mut self.phy, &mut self.sockets);
        let mut changed = result == PollResult::SocketStateChanged || self.phy.delivered != before;
        if let Some(handle) = self.dhcp {
            let event = self.sockets.get_mut::<dhcpv4::Socket>(handle).poll();
            match event {
                Some(dhcpv4::Event::Configured(config)) => {
                    let (address, router) = (config.address, config.router);
                    self.configure(address, router, "DHCP");
                    changed = true;
                }
                Some(dhcpv4::Event::Deconfigured) => {
                    info!("DHCP lease lost: no address");
                    self.iface.update_ip_addrs(|addrs| addrs.clear());
                    self.iface.routes_mut().remove_default_ipv4_route();
                    self.configured = false;
                    self.gateway = None;
                }
                None => {}
            }
        }
        // Connections closed by their clients that have wound down.
        let sockets = &mut self.sockets;
        self.closing.retain(|&handle| {
            let state = sockets.get::<tcp::Socket>(handle).state();
            let done = matches!(state, tcp::State::Closed | tcp::State::TimeWait);
            if done {
                sockets.remove(handle);
            }
            !done
        });
        changed
    }

    fn configure(&mut self, address: Ipv4Cidr, gateway: Option<Ipv4Address>, how: &str) {
        self.iface.update_ip_addrs(|addrs| {
            addrs.clear();
            let _ = addrs.push(IpCidr::Ipv4(address));
        });
        match gateway {
            Some(g) => {
                let _ = self.iface.routes_mut().add_default_ipv4_route(g);
            }
            None => {
                self.iface.routes_mut().remove_default_ipv4_route();
            }
        }
        self.configured = true;
        self.gateway = gateway;
        match gateway {
            Some(g) => info!("address {address}, gateway {g} ({how})"),
            None => info!("address {address}, no gateway ({how})"),
        }
    }

    /// Signals every client that waits.
    fn wake(&mut self) {
        for client in self.clients.values_mut() {
            if core::mem::take(&mut client.waiting) {
                let _ = sys::signal(client.notify, READY_BIT);
            }
        }
    }

    /// Forgets clients whose task has ended (their notification is gone), with their sockets.
    fn sweep(&mut self) {
        let gone: Vec<u64> =
            self.clients.iter().filter(|(_, c)| sys::cap_info(c.notify).is_err()).map(|(&badge, _)| badge).collect();
        for badge in gone {
            info!("client {badge} has gone; closing its sockets");
            self.forget(badge);
        }
    }

    fn forget(&mut self, badge: u64) {
        if let Some(client) = self.clients.remove(&badge) {
            let _ = sys::cap_close(client.notify);
        }
        let ids: Vec<u32> = self.table.iter().filter(|(_, s)| s.owner == badge).map(|(&id, _)| id).collect();
        for id in ids {
            self.close(id, true);
        }
    }

    fn close(&mut self, id: u32, abort: bool) {
        let Some(socket) = self.table.remove(&id) else { return };
        match socket.kind {
            Kind::Listener { pool, .. } => {
                for handle in pool {
                    self.sockets.remove(handle);
                }
            }
            Kind::Stream(handle) => {
                let s = self.sockets.get_mut::<tcp::Socket>(handle);
                if abort {
                    s.abort();
                } else {
                    s.close();
                }
                self.closing.push(handle);
            }
            Kind::Udp(handle) => {
                self.sockets.remove(handle);
            }
        }
    }

    fn new_id(&mut self, owner: u64, kind: Kind) -> u32 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            if !self.table.contains_key(&self.next_id) {
                break;
            }
        }
        self.table.insert(self.next_id, Socket { owner, kind });
        self.next_id
    }

    fn owned(&self, badge: u64) -> usize {
        self.table.values().filter(|s| s.owner == badge).count()
    }

    /// Room for `n` more smoltcp sockets and one more id of `badge`.
    fn room(&self, badge: u64, n: usize) -> bool {
        self.owned(badge) < MAX_PER_CLIENT && self.smoltcp_sockets() + n <= MAX_SOCKETS
    }

    fn stream(&self, badge: u64, id: u32) -> Option<SocketHandle> {
        match self.table.get(&id) {
            Some(Socket { owner, kind: Kind::Stream(handle) }) if *owner == badge => Some(*handle),
            _ => None,
        }
    }

    fn udp(&self, badge: u64, id: u32) -> Option<SocketHandle> {
        match self.table.get(&id) {
            Some(Socket { owner, kind: Kind::Udp(handle) }) if *owner == badge => Some(*handle),
            _ => None,
        }
    }

    /// Whether a TCP listener (`tcp`) or a UDP socket holds `port`.
    fn port_in_use(&self, port: u16, tcp: bool) -> bool {
        self.table.values().any(|s| match &s.kind {
            Kind::Listener { port: p, .. } => tcp && *p == port,
            Kind::Udp(h) => !tcp && self.sockets.get::<udp::Socket>(*h).endpoint().port == port,
            Kind::Stream(_) => false,
        })
    }

    fn ephemeral_port(&mut self) -> u16 {
        self.next_port = if self.next_port == u16::MAX || self.next_port < 49152 { 49152 } else { self.next_port + 1 };
        self.next_port
    }

    /// Marks the caller as waiting and answers `response`.
    fn wait(&mut self, badge: u64, response: Response) -> Response {
        if let Some(client) = self.clients.get_mut(&badge) {
            client.waiting = true;
        }
        response
    }

    fn handle(&mut self, badge: u64, request: Request) -> Response {
        if let Request::Open { notify } = request {
            return self.open(badge, notify.0);
        }
        if !self.clients.contains_key(&badge) {
            return Response::NotOpen;
        }
        match request {
            Request::Open { .. } => Response::Failed,
            Request::Config => {
                let Some(cidr) = self.iface.ipv4_addr().filter(|_| self.configured) else {
                    return self.wait(badge, Response::NotConfigured);
                };
                let prefix = self
                    .iface
                    .ip_addrs()
                    .iter()
                    .find_map(|c| match c {
                        IpCidr::Ipv4(c) if c.address() == cidr => Some(c.prefix_len()),
                        _ => None,
                    })
                    .unwrap_or(32);
                Response::Config {
                    addr: cidr.octets(),
                    prefix,
                    gateway: self.gateway.map_or([0; 4], |g| g.octets()),
                    mac: self.phy.mac.0,
                }
            }
            Request::TcpListen { port, backlog } => {
                let backlog = backlog.clamp(1, 4) as usize;
                if port == 0 || self.port_in_use(port, true) {
                    return Response::Refused;
                }
                if !self.room(badge, backlog) {
                    return Response::Full;
                }
                let mut pool = Vec::new();
                for _ in 0..backlog {
                    let mut socket = tcp_socket();
                    if socket.listen(port).is_err() {
                        return Response::Refused;
                    }
                    pool.push(self.sockets.add(socket));
                }
                Response::Socket { id: self.new_id(badge, Kind::Listener { port, pool }) }
            }
            Request::TcpAccept { listener } => self.accept(badge, listener),
            Request::TcpConnect { addr, port } => {
                let to = Ipv4Address::from(addr);
                if port == 0 || to.is_unspecified() || to.is_broadcast() || to.is_multicast() {
                    return Response::Refused;
                }
                if !self.configured {
                    return Response::NotConfigured;
                }
                if !self.room(badge, 1) {
                    return Response::Full;
                }
                let mut socket = tcp_socket();
                let local = self.ephemeral_port();
                let remote = IpEndpoint::new(IpAddress::Ipv4(to), port);
                if socket.connect(self.iface.context(), remote, local).is_err() {
                    return Response::Refused;
                }
                let handle = self.sockets.add(socket);
                Response::Socket { id: self.new_id(badge, Kind::Stream(handle)) }
            }
            Request::State { id } => match self.table.get(&id) {
                Some(Socket { owner, kind: Kind::Listener { .. } }) if *owner == badge => {
                    Response::State { state: tcp_state::LISTENING }
                }
                Some(Socket { owner, kind: Kind::Stream(h) }) if *owner == badge => {
                    let state = state_code(self.sockets.get::<tcp::Socket>(*h).state());
                    if state == tcp_state::CONNECTING {
                        self.wait(badge, Response::State { state })
                    } else {
                        Response::State { state }
                    }
                }
                _ => Response::BadSocket,
            },
            Request::Poll { id } => self.readiness(badge, id),
            Request::Send { id, range } => self.send(badge, id, range),
            Request::Recv { id, range } => self.recv(badge, id, range),
            Request::Close { id } => match self.table.get(&id) {
                Some(s) if s.owner == badge => {
                    self.close(id, false);
                    Response::Done
                }
                _ => Response::BadSocket,
            },
            Request::UdpBind { port } => {
                if port == 0 || self.port_in_use(port, false) {
                    return Response::Refused;
                }
                if !self.room(badge, 1) {
                    return Response::Full;
                }
                let buffer =
                    || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; UDP_PACKETS], vec![0; UDP_BUFFER]);
                let mut socket = udp::Socket::new(buffer(), buffer());
                if socket.bind(port).is_err() {
                    return Response::Refused;
                }
                let handle = self.sockets.add(socket);
                Response::Socket { id: self.new_id(badge, Kind::Udp(handle)) }
            }
            Request::UdpSendTo { id, addr, port, range } => {
                let Some(handle) = self.udp(badge, id) else { return Response::BadSocket };
                let Some(client) = self.clients.get(&badge) else { return Response::NotOpen };
                if client.buffer.check(range).is_err() || range.len as usize > UDP_MAX {
                    return Response::OutOfRange;
                }
                if !self.configured {
                    return Response::NotConfigured;
                }
                let to = Ipv4Address::from(addr);
                if port == 0 || to.is_unspecified() {
                    return Response::Refused;
                }
                let mut data = vec![0; range.len as usize];
                if client.buffer.read(range.offset, &mut data).is_err() {
                    return Response::OutOfRange;
                }
                let socket = self.sockets.get_mut::<udp::Socket>(handle);
                match socket.send_slice(&data, IpEndpoint::new(IpAddress::Ipv4(to), port)) {
                    Ok(()) => Response::Done,
                    Err(udp::SendError::BufferFull) => self.wait(badge, Response::WouldBlock),
                    Err(udp::SendError::Unaddressable) => Response::Refused,
                }
            }
            Request::UdpRecvFrom { id, range } => {
                let Some(handle) = self.udp(badge, id) else { return Response::BadSocket };
                let Some(client) = self.clients.get(&badge) else { return Response::NotOpen };
                if client.buffer.check(range).is_err() {
                    return Response::OutOfRange;
                }
                let socket = self.sockets.get_mut::<udp::Socket>(handle);
                match socket.recv() {
                    Ok((data, meta)) => {
                        let n = data.len().min(range.len as usize);
                        let _ = client.buffer.write(range.offset, &data[..n]);
                        let (addr, port) = match meta.endpoint.addr {
                            IpAddress::Ipv4(a) => (a.octets(), meta.endpoint.port),
                        };
                        Response::Datagram { len: n as u64, addr, port }
                    }
                    Err(_) => self.wait(badge, Response::WouldBlock),
                }
            }
            Request::JoinMulticast { addr } => {
                let group = Ipv4Address::from(addr);
                if !group.is_multicast() {
                    return Response::Refused;
                }
                match self.iface.join_multicast_group(group) {
                    Ok(()) => {
                        info!("joined multicast group {group}");
                        Response::Done
                    }
                    Err(_) => Response::Full,
                }
            }
        }
    }

    fn open(&mut self, badge: u64, notify: Handle) -> Response {
        if self.clients.contains_key(&badge) {
            // A new incarnation of the client (or a second Open): start it afresh.
            self.forget(badge);
        }
        if self.clients.len() >= MAX_CLIENTS {
            let _ = sys::cap_close(notify);
            return Response::Full;
        }
        let shared = SharedBuffer::create(BUFFER_LEN as usize).and_then(|buffer| {
            let copy = buffer.share(rights::READ | rights::WRITE | rights::DUPLICATE)?;
            Ok((buffer, copy))
        });
        match shared {
            Ok((buffer, copy)) => {
                self.clients.insert(badge, Client { notify, buffer, waiting: false });
                Response::Opened { buffer: Cap(copy), len: BUFFER_LEN }
            }
            Err(_) => {
                let _ = sys::cap_close(notify);
                Response::Failed
            }
        }
    }

    /// `Poll`: what socket `id` of `badge` could do now.
    fn readiness(&mut self, badge: u64, id: u32) -> Response {
        use svc::net::readiness::{HANGUP, READABLE, WRITABLE};
        let bits = match self.table.get(&id) {
            Some(Socket { owner, kind }) if *owner == badge => match kind {
                Kind::Listener { pool, .. } => {
                    let pending = pool.iter().any(|&h| {
                        !matches!(
                            self.sockets.get::<tcp::Socket>(h).state(),
                            tcp::State::Listen | tcp::State::SynReceived
                        )
                    });
                    if pending {
                        READABLE
                    } else {
                        0
                    }
                }
                Kind::Stream(h) => {
                    let s = self.sockets.get::<tcp::Socket>(*h);
                    let mut bits = 0;
                    if s.can_recv() || (!s.may_recv() && s.state() != tcp::State::SynSent) {
                        bits |= READABLE;
                    }
                    if s.can_send() {
                        bits |= WRITABLE;
                    }
                    if s.state() == tcp::State::Closed || (!s.may_recv() && !s.may_send() && !s.can_recv()) {
                        bits |= HANGUP;
                    }
                    bits
                }
                Kind::Udp(h) => {
                    let s = self.sockets.get::<udp::Socket>(*h);
                    (if s.can_recv() { READABLE } else { 0 }) | (if s.can_send() { WRITABLE } else { 0 })
                }
            },
            _ => return Response::BadSocket,
        };
        if bits & (READABLE | WRITABLE) == 0 {
            return self.wait(badge, Response::Readiness { bits });
        }
        Response::Readiness { bits }
    }

    fn accept(&mut self, badge: u64, listener: u32) -> Response {
        let (port, ready) = match self.table.get(&listener) {
            Some(Socket { owner, kind: Kind::Listener { port, pool } }) if *owner == badge => {
                let ready = pool.iter().position(|&h| {
                    !matches!(self.sockets.get::<tcp::Socket>(h).state(), tcp::State::Listen | tcp::State::SynReceived)
                });
                (*port, ready.map(|i| (i, pool[i])))
            }
            _ => return Response::BadSocket,
        };
        let Some((index, handle)) = ready else { return self.wait(badge, Response::WouldBlock) };
        let full = self.owned(badge) >= MAX_PER_CLIENT;
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        let state = socket.state();
        let peer = socket.remote_endpoint();
        if state == tcp::State::Closed || peer.is_none() || full {
            // Reset before it was accepted (or no room for another id): listen again with it.
            socket.abort();
            let _ = socket.listen(port);
            return self.wait(badge, Response::WouldBlock);
        }
        let peer = peer.expect("checked above");
        // A fresh listening socket takes the accepted one's place, if there is room.
        let fresh = if self.smoltcp_sockets() < MAX_SOCKETS {
            let mut s = tcp_socket();
            s.listen(port).ok().map(|_| self.sockets.add(s))
        } else {
            None
        };
        if let Some(Socket { kind: Kind::Listener { pool, .. }, .. }) = self.table.get_mut(&listener) {
            match fresh {
                Some(f) => pool[index] = f,
                None => {
                    pool.remove(index);
                }
            }
        }
        let id = self.new_id(badge, Kind::Stream(handle));
        let IpAddress::Ipv4(addr) = peer.addr;
        Response::Accepted { id, addr: addr.octets(), port: peer.port }
    }

    fn send(&mut self, badge: u64, id: u32, range: BufRange) -> Response {
        let Some(handle) = self.stream(badge, id) else { return Response::BadSocket };
        let Some(client) = self.clients.get(&badge) else { return Response::NotOpen };
        if client.buffer.check(range).is_err() {
            return Response::OutOfRange;
        }
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if matches!(socket.state(), tcp::State::SynSent | tcp::State::SynReceived)
            || (socket.may_send() && !socket.can_send())
        {
            return self.wait(badge, Response::WouldBlock);
        }
        if !socket.may_send() {
            return Response::ConnectionClosed;
        }
        let mut sent = 0u64;
        // Two rounds: the send buffer is a ring, its free space may wrap.
        for _ in 0..2 {
            let offset = range.offset + sent;
            let left = (range.len - sent) as usize;
            if left == 0 {
                break;
            }
            let result = socket.send(|room| {
                let n = room.len().min(left);
                match client.buffer.read(offset, &mut room[..n]) {
                    Ok(()) => (n, n),
                    Err(_) => (0, 0),
                }
            });
            match result {
                Ok(0) | Err(_) => break,
                Ok(n) => sent += n as u64,
            }
        }
        Response::Sent { len: sent }
    }

    fn recv(&mut self, badge: u64, id: u32, range: BufRange) -> Response {
        let Some(handle) = self.stream(badge, id) else { return Response::BadSocket };
        let Some(client) = self.clients.get(&badge) else { return Response::NotOpen };
        if client.buffer.check(range).is_err() {
            return Response::OutOfRange;
        }
        let socket = self.sockets.get_mut::<tcp::Socket>(handle);
        if !socket.can_recv() {
            let connecting = matches!(socket.state(), tcp::State::SynSent | tcp::State::SynReceived);
            if connecting || socket.may_recv() {
                return self.wait(badge, Response::WouldBlock);
            }
            return Response::Received { len: 0 };
        }
        let mut got = 0u64;
        for _ in 0..2 {
            let offset = range.offset + got;
            let left = (range.len - got) as usize;
            if left == 0 {
                break;
            }
            let result = socket.recv(|data| {
                let n = data.len().min(left);
                match client.buffer.write(offset, &data[..n]) {
                    Ok(()) => (n, n),
                    Err(_) => (0, 0),
                }
            });
            match result {
                Ok(0) | Err(_) => break,
                Ok(n) => got += n as u64,
            }
        }
        Response::Received { len: got }
    }
}

fn run() -> Result<i32, String> {
    let args = svc::arguments().map_err(|e| alloc::format!("cannot read the arguments: {e}"))?;
    let addressing = addressing(&args).map_err(|e| alloc::format!("bad configuration: {e}"))?;
    let mut rings = Rings::create().map_err(|e| alloc::format!("the rings: {e}"))?;
    let (arena, _) =
        sys::memory_create_contiguous(0, netdrv::ARENA_LEN).map_err(|e| alloc::format!("the DMA arena: {e}"))?;
    // The driver signals this notification, bound to the only thread: its signals end the
    // receive on the endpoint.
    let notification = sys::notification_create().map_err(|_| "no notification")?;
    sys::notification_bind(notification).map_err(|e| alloc::format!("binding the notification: {e}"))?;
    let attachment = Attachment { arena, notification };
    let mut names = svc::names().map_err(|_| "no name service")?;
    let driver = svc::lookup(&mut names, "netdrv", DRIVER_WAIT_NS)
        .map_err(|e| alloc::format!("no network driver (netdrv): {e:?}"))?;
    let (link, mac) = match attachment.attach(&mut rings, driver) {
        Ok(attached) => attached,
        Err(AttachError::NoDevice) => {
            info!("no virtio-net device: the network is off");
            return Ok(0);
        }
        Err(e) => return Err(alloc::format!("attaching the driver: {e}")),
    };
    let mac = EthernetAddress(mac);

    let mut phy = Phy {
        rings,
        link: Some(link),
        mac,
        frame: vec![0; FRAME_MAX],
        scratch: vec![0; FRAME_MAX],
        drops: Drops::default(),
        delivered: 0,
        kick: false,
        blocked: false,
        broken: false,
        lost: 0,
    };
    let mut config = Config::new(HardwareAddress::Ethernet(mac));
    config.random_seed =
        rt::rdtsc() ^ u64::from_le_bytes([mac.0[0], mac.0[1], mac.0[2], mac.0[3], mac.0[4], mac.0[5], 0, 0]);
    let iface = Interface::new(config, &mut phy, now_instant());
    let mut stack = Stack {
        phy,
        iface,
        sockets: SocketSet::new(Vec::new()),
        dhcp: None,
        table: BTreeMap::new(),
        clients: BTreeMap::new(),
        closing: Vec::new(),
        next_id: 0,
        next_port: 49152 + (rt::rdtsc() % 8192) as u16,
        configured: false,
        gateway: None,
    };
    match addressing {
        Addressing::Dhcp => stack.dhcp = Some(stack.sockets.add(dhcpv4::Socket::new())),
        Addressing::Static { address, gateway } => stack.configure(address, gateway, "static"),
    }

    let endpoint = sys::endpoint_create().map_err(|_| "no endpoint")?;
    svc::register(&names, endpoint).map_err(|_| "cannot register as net")?;
    let m = mac.0;
    info!(
        "attached to netdrv, MAC {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}; {}",
        m[0],
        m[1],
        m[2],
        m[3],
        m[4],
        m[5],
        match addressing {
            Addressing::Dhcp => "asking DHCP for an address",
            Addressing::Static { .. } => "static address",
        }
    );
    serve(&mut stack, endpoint, &attachment, &mut names)
}

impl Stack {
    /// Signals the driver if frames moved; notices a driver that has gone or broke the rings.
    fn kick(&mut self, check: bool) {
        let phy = &mut self.phy;
        let Some(link) = &phy.link else { return };
        let mut gone = phy.broken || (check && !netdrv::alive(link.doorbell));
        if core::mem::take(&mut phy.kick) && !gone {
            gone = sys::signal(link.doorbell, DOORBELL_BIT).is_err();
        }
        if gone {
            if core::mem::take(&mut phy.broken) {
                warn!("the driver broke the rings; attaching it again");
            } else {
                info!("the driver has gone; frames are dropped until it is back (TCP retransmits them)");
            }
            phy.link = None;
        }
    }

    /// Looks the driver up again and attaches it; false while it is not back.
    fn reattach(&mut self, attachment: &Attachment, names: &mut IpcClient<svc::names::Names>) -> bool {
        let Ok(endpoint) = svc::lookup(names, "netdrv", 0) else { return false };
        match attachment.attach(&mut self.phy.rings, endpoint) {
            Ok((link, mac)) => {
                self.phy.link = Some(link);
                if mac == self.phy.mac.0 {
                    info!("the driver is back (MAC unchanged); {} frames were dropped meanwhile", self.phy.lost);
                } else {
                    warn!("the driver is back with another MAC address {mac:02x?}; keeping {}", self.phy.mac);
                }
                true
            }
            Err(e) => {
                warn!("attaching the driver again: {e}");
                false
            }
        }
    }
}

/// The loop: poll the stack, answer the request, wait for the next request or a signal of the
/// driver; look after the link to the driver.
fn serve(
    stack: &mut Stack,
    endpoint: Handle,
    attachment: &Attachment,
    names: &mut IpcClient<svc::names::Names>,
) -> Result<i32, String> {
    let mut reply: Option<sys::Message> = None;
    let mut last_sweep = sys::time_now();
    let mut last_check = last_sweep;
    let mut next_attach = 0u64;
    let mut idle_spins = 0u32;
    loop {
        stack.phy.blocked = false;
        let changed = stack.poll();
        if changed {
            stack.wake();
        }
        let now = sys::time_now();
        let check = now > last_check + CHECK_NS;
        if check {
            last_check = now;
        }
        stack.kick(check);
        if stack.phy.link.is_none() && now >= next_attach {
            next_attach = now + CHECK_NS;
            if stack.reattach(attachment, names) {
                continue;
            }
        }
        stack.phy.drops.summary(now);
        if now > last_sweep + 1_000_000_000 {
            last_sweep = now;
            stack.sweep();
        }
        let mut timeout = match stack.iface.poll_delay(now_instant(), &stack.sockets) {
            Some(delay) => (delay.total_micros() * 1000).min(IDLE_NS),
            None => IDLE_NS,
        };
        if stack.phy.link.is_none() {
            timeout = timeout.min(CHECK_NS);
        }
        if stack.phy.blocked {
            // The ring to the driver is full: its signal wakes us when it has taken frames.
            timeout = timeout.max(CHECK_NS);
        }
        // smoltcp wants to run again at once: do so a few times, then let time pass.
        if timeout == 0 {
            idle_spins += 1;
            if idle_spins > 64 {
                timeout = 1;
                idle_spins = 0;
            }
        } else {
            idle_spins = 0;
        }
        let received = match reply.take() {
            Some(message) => {
                let r = sys::reply_recv(endpoint, &message, timeout);
                if let Some(cap) = message.cap {
                    let _ = sys::cap_close(cap);
                }
                r
            }
            None => sys::recv(endpoint, timeout),
        };
        let incoming = match received {
            Ok(incoming) => incoming,
            Err(sys::Error::TimedOut | sys::Error::WouldBlock) => continue,
            Err(e) => return Err(alloc::format!("receiving on the endpoint: {e}")),
        };
        if incoming.message.label == NOTIFY {
            // The driver moved frames (`STACK_BIT`): the poll at the top takes them.
            continue;
        }
        let message = Server::<NetProtocol>::answer(&incoming, &mut |badge, request| stack.handle(badge, request));
        // Let smoltcp act on the request (send queued data, ...) before answering.
        if stack.poll() {
            stack.wake();
        }
        stack.kick(false);
        reply = Some(message);
    }
}
