//! softbusd: the soft bus server inside Tutti (docs/softbus/tutti.md).
//!
//! It drives the sans-IO `softbus` crate on Tutti's services, as `tuttid` does on Linux with
//! tokio, and speaks the same protocol, so Tutti guests and Linux hosts form one device
//! network: discovery by UDP multicast (beacons and queries), pairing with a 6-digit code
//! (SPAKE2), Noise XX sessions over TCP with the trusted keys, RPC with deadlines, and the
//! built-in services (`caps.list`, `echo.echo`, `compute.*` from the `busvc` crate, and
//! `display.show` on the Tutti console). Its key store and trust store are on the persistent
//! disk (`store`). Local programs (the shell's `bus` command) use the `svc::softbus` protocol
//! on its endpoint.
//!
//! Design: one thread, one event loop, nothing blocks. The network client's notification is
//! bound to the thread, so a socket that progressed ends the wait on the endpoint exactly as
//! a local request does. Each TCP connection is a `link::Link`; requests that need the
//! network keep their caller's reply capability (`ReplyDetach`) until the exchange ends.
#![no_std]
#![no_main]

extern crate alloc;

mod files;
mod link;
mod remote;
mod run;
mod storage;
mod store;

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt::Write as _;
use core::time::Duration;

use abi::syscall::{label, rights};
use rt::ipc::{Cap, Payload, SharedBuffer};
use rt::sys::{self, Handle, Message};
use softbus::capability::{decode_list, encode_list, Capability, CapabilityDescriptor, Decision, Policy, Rule};
use softbus::connection::ConnectionConfig;
use softbus::discovery::{Advertisement, Discovery, DiscoveryConfig, DiscoveryEvent};
use softbus::identity::{resolve_device, DeviceId, Identity, ResolveError};
use softbus::pairing::{PairedPeer, PairingCode, PairingLimits, PairingOffer};
use softbus::rng::SeededRng;
use softbus::time::Instant;
use softbus::trust::{TrustStore, TrustedDevice};
use softbus::wire::{self, CapabilitySet, Datagram, DeviceKind, RpcErrorCode};
use svc::net::{Net, NetError, SocketAddr, TcpListener, UdpSocket};
use svc::softbus::{failure, Request, Response, BUFFER_LEN};

use link::{Link, Queued, Work};
use store::Store;

rt::entry!(main);

/// The UDP port of discovery, the TCP port of sessions and pairing, and the multicast group:
/// `tuttid`'s defaults, so the two meet without configuration.
const DISCOVERY_PORT: u16 = 47800;
const SESSION_PORT: u16 = 47801;
const GROUP: [u8; 4] = [239, 255, 84, 66];
/// TCP connections at once: each may hold a frame being read (64 KiB) and output (64 KiB plus
/// a frame), so this bounds the server's memory to its quota (docs/softbus/tutti.md).
const MAX_LINKS: usize = 4;
/// Local clients with a buffer.
const MAX_CLIENTS: usize = 8;
/// The longest wait of the loop (a safety net; sockets and requests wake it).
const MAX_WAIT: Duration = Duration::from_millis(200);
/// The default and the longest deadline of a local call.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
const CALL_TIMEOUT_MAX: Duration = Duration::from_secs(120);
const SECOND_NS: u64 = 1_000_000_000;

fn main() -> i32 {
    rt::log::set_prefix("softbus");
    match run() {
        Ok(()) => svc::exit(0),
        Err(e) => {
            rt::log::error!("{e}");
            svc::exit(1)
        }
    }
}

/// The settings from the manifest's `arg` lines.
struct Settings {
    name: Option<String>,
    dir: String,
    kind: DeviceKind,
    /// Unicast discovery targets besides the group.
    peers: Vec<[u8; 4]>,
    multicast: bool,
    /// The decision for trusted devices without a rule.
    policy: Decision,
    /// Where received files go.
    received: String,
    /// The directory shared through `storage.*`.
    shared: String,
}

fn parse_ip(text: &str) -> Option<[u8; 4]> {
    let mut out = [0u8; 4];
    let mut parts = text.split('.');
    for byte in &mut out {
        *byte = parts.next()?.parse().ok()?;
    }
    parts.next().is_none().then_some(out)
}

fn settings() -> Result<Settings, String> {
    let mut s = Settings {
        name: None,
        dir: "/disk/softbus".into(),
        kind: DeviceKind::Embedded,
        peers: Vec::new(),
        multicast: true,
        policy: Decision::Allow,
        received: "/disk/received".into(),
        shared: "/disk/shared".into(),
    };
    let args = svc::arguments().map_err(|e| format!("cannot read the arguments: {e:?}"))?;
    for arg in &args {
        let (key, value) = arg.split_once('=').unwrap_or((arg.as_str(), ""));
        match key {
            "name" if !value.is_empty() && value.len() <= wire::discovery::MAX_NAME_LEN => s.name = Some(value.into()),
            "dir" if value.starts_with('/') => s.dir = value.into(),
            "received" if value.starts_with('/') => s.received = value.into(),
            "shared" if value.starts_with('/') => s.shared = value.into(),
            "kind" => {
                s.kind = match value {
                    "desktop" => DeviceKind::Desktop,
                    "server" => DeviceKind::Server,
                    "laptop" => DeviceKind::Laptop,
                    "embedded" => DeviceKind::Embedded,
                    other => return Err(format!("bad argument kind={other}: desktop, server, laptop or embedded")),
                }
            }
            "peer" => {
                s.peers.push(parse_ip(value).ok_or_else(|| format!("bad argument peer={value}: an IPv4 address"))?)
            }
            "no-multicast" => s.multicast = false,
            "policy" => {
                s.policy =
                    Decision::parse(value).ok_or_else(|| format!("bad argument policy={value}: allow, deny or ask"))?
            }
            _ => {
                return Err(format!(
                    "bad argument {arg:?}: name=, dir=, received=, shared=, kind=, peer=, policy= or no-multicast"
                ))
            }
        }
    }
    Ok(s)
}

/// A local caller waiting for an answer.
pub struct Waiter {
    reply: Handle,
    badge: u64,
    answer: Answer,
}

/// How a waiting caller is answered.
pub enum Answer {
    /// With the reply bytes, text or the failure.
    Plain,
    /// A `caps.list` answer as a table.
    Caps,
    /// In the file-system protocol (the remote mount).
    File(alloc::boxed::Box<remote::Op>),
}

/// A failure for a local caller.
#[derive(Clone)]
pub struct Failure {
    kind: u32,
    code: u32,
    message: String,
}

impl Failure {
    fn new(kind: u32, message: impl Into<String>) -> Failure {
        Failure { kind, code: 0, message: message.into() }
    }
}

/// The server's state, shared by the links.
pub struct Bus {
    identity: Identity,
    name: String,
    rng: SeededRng,
    store: Store,
    trust: TrustStore,
    discovery: Discovery,
    /// Session addresses learned from beacons.
    addrs: BTreeMap<DeviceId, SocketAddr>,
    offer: Option<PairingOffer>,
    connection_config: ConnectionConfig,
    clients: BTreeMap<u64, SharedBuffer>,
    epoch: u64,
    /// What trusted devices may use.
    policy: Policy,
    /// Seconds since 1970 when the server started (the file system's clock).
    unix_base: u64,
    /// Prompt answers for the calls waiting now: peer, capability, allowed, when.
    answers: Vec<(DeviceId, Capability, bool, Instant)>,
    /// The server's endpoint (proxies are badged copies of it).
    endpoint: Handle,
    /// Where files sent to this device go.
    pub received: String,
    /// The directory trusted devices use through `storage.*`.
    shared: String,
    /// Lost sessions to open again: when next, and the wait after that.
    reconnect: BTreeMap<DeviceId, (Instant, Duration)>,
    /// Remote services looked up in the name service, by proxy number: service and device.
    proxies: BTreeMap<u64, (String, String)>,
    next_proxy: u64,
    /// The remote mount's sessions.
    files: core::cell::RefCell<remote::Files>,
    /// Programs running for other devices.
    runs: run::Runs,
}

/// The first and the longest wait before opening a lost session again (tuttid's defaults).
const RECONNECT_MIN: Duration = Duration::from_millis(200);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

/// The badge bit of proxy endpoints (`<service>@<device>`); the low bits number the proxy.
const PROXY_BIT: u64 = 1 << 62;
/// Proxies kept; the oldest is dropped beyond.
const MAX_PROXIES: usize = 64;

/// What to do with one incoming request.
pub enum Verdict {
    Serve,
    Deny(String),
    /// Ask the local user about this capability.
    Ask(Capability),
}

/// How long a call waits for the local user to answer a prompt.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(30);

/// A random seed: RDRAND (the CPU's generator) mixed with the time-stamp counter and the
/// MAC; `false` when the CPU has no RDRAND (then the keys are only as unpredictable as the
/// boot timing, which the log says).
fn seed(mac: [u8; 6]) -> ([u8; 32], bool) {
    let mut out = [0u8; 32];
    let has_rdrand = core::arch::x86_64::__cpuid(1).ecx & (1 << 30) != 0;
    let mut good = has_rdrand;
    for (i, chunk) in out.chunks_mut(8).enumerate() {
        let mut value = 0u64;
        let mut got = false;
        if has_rdrand {
            for _ in 0..16 {
                // Safety: the CPU reported RDRAND support (CPUID.1:ECX bit 30).
                if unsafe { core::arch::x86_64::_rdrand64_step(&mut value) } == 1 {
                    got = true;
                    break;
                }
            }
        }
        good &= got;
        let mac_word = u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], i as u8, 0]);
        value ^= rt::rdtsc().rotate_left(17 * i as u32) ^ mac_word ^ sys::time_now();
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    (out, good)
}

fn run() -> Result<(), String> {
    let settings = settings()?;
    let fs = svc::fs::Fs::connect().map_err(|e| format!("no file-system service: {}", e.text()))?;
    let (store, ephemeral) = Store::open(fs, &settings.dir)?;
    // Net outlives everything: its sockets borrow it.
    let net = match Net::connect(10 * SECOND_NS) {
        Ok(net) => &*alloc::boxed::Box::leak(alloc::boxed::Box::new(net)),
        // No network service (no network card: it ended): nothing to do, and no restarts.
        Err(NetError::Lookup(_)) => {
            rt::log::info!("no network service: the soft bus is off");
            return Ok(());
        }
        Err(e) => return Err(format!("no network service: {e}")),
    };
    let config = net.wait_configured(60 * SECOND_NS).map_err(|e| format!("the network has no address: {e}"))?;
    let (seed, good) = seed(config.mac);
    if !good {
        rt::log::warn!("the CPU has no RDRAND: keys come from timing alone (give QEMU -cpu ...,+rdrand)");
    }
    let mut rng = SeededRng::from_seed(seed);
    let (identity, made) = store.identity(|| Identity::generate(&mut rng))?;
    let trust = store.trust()?;
    let policy = store.policy(settings.policy)?;
    let unix_base = store.unix_now();
    let id = identity.device_id();
    let name = settings.name.clone().unwrap_or_else(|| {
        let text = id.to_string();
        format!("tutti-{}", &text[..4])
    });
    let udp = net.bind_udp(DISCOVERY_PORT).map_err(|e| format!("cannot bind UDP port {DISCOVERY_PORT}: {e}"))?;
    if settings.multicast {
        net.join_multicast(GROUP).map_err(|e| format!("cannot join the discovery group: {e}"))?;
    }
    let listener = net.listen(SESSION_PORT, 2).map_err(|e| format!("cannot listen on TCP port {SESSION_PORT}: {e}"))?;
    net.bind_notification().map_err(|e| format!("cannot bind the network notification: {e}"))?;

    let endpoint = sys::endpoint_create().map_err(|e| format!("no endpoint: {e}"))?;
    let names = svc::names().map_err(|e| format!("no name service: {e:?}"))?;
    svc::register(&names, endpoint).map_err(|e| format!("cannot register as softbus: {e:?}"))?;

    let epoch = sys::time_now();
    let advertisement = Advertisement {
        kind: settings.kind,
        capabilities: CapabilitySet::COMPUTE
            .union(CapabilitySet::DISPLAY)
            .union(CapabilitySet::STORAGE)
            .union(CapabilitySet::CUSTOM),
        session_port: SESSION_PORT,
        name: name.clone(),
    };
    let mut discovery = Discovery::new(id, advertisement, DiscoveryConfig::default(), Instant::from_micros(0))
        .map_err(|e| format!("discovery: {e}"))?;
    discovery.query(CapabilitySet::NONE);
    let [a, b, c, d] = config.addr;
    rt::println!(
        "softbus: {name} ({id}) on {a}.{b}.{c}.{d}, sessions on TCP {SESSION_PORT}; {} identity, {} trusted device(s), state in {}{}",
        if made { "new" } else { "stored" },
        trust.len(),
        store.dir,
        if ephemeral { " (not persistent)" } else { "" }
    );
    let mut bus = Bus {
        identity,
        name,
        rng,
        store,
        trust,
        discovery,
        addrs: BTreeMap::new(),
        offer: None,
        connection_config: ConnectionConfig::default(),
        clients: BTreeMap::new(),
        epoch,
        policy,
        unix_base,
        answers: Vec::new(),
        endpoint,
        received: if ephemeral { "/tmp/received".into() } else { settings.received.clone() },
        shared: if ephemeral { "/tmp/shared".into() } else { settings.shared.clone() },
        proxies: BTreeMap::new(),
        next_proxy: 0,
        files: core::cell::RefCell::new(remote::Files::default()),
        runs: run::Runs::default(),
        reconnect: BTreeMap::new(),
    };
    match bus.store.fs.mkdir(&bus.shared, 0o755) {
        Ok(()) | Err(svc::fs::Error::Exists) => {}
        Err(e) => rt::log::warn!("cannot make the shared directory {}: {}", bus.shared, e.text()),
    }
    let mut targets: Vec<SocketAddr> =
        settings.peers.iter().map(|&addr| SocketAddr { addr, port: DISCOVERY_PORT }).collect();
    if settings.multicast {
        targets.push(SocketAddr { addr: GROUP, port: DISCOVERY_PORT });
    }
    let mut links: Vec<Link> = Vec::new();
    loop {
        let now = bus.now();
        bus.discover(&udp, &targets, now);
        accept(&listener, &mut links, now);
        for link in links.iter_mut() {
            link.pump(&mut bus, now);
        }
        for id in links.iter().filter(|l| l.finished()).filter_map(Link::reconnect_to) {
            bus.reconnect.entry(id).or_insert((now.saturating_add(RECONNECT_MIN), RECONNECT_MIN));
        }
        links.retain(|l| !l.finished());
        bus.reconnect_due(&mut links, net, now);
        let next = links
            .iter()
            .filter_map(Link::poll_at)
            .chain([bus.discovery.poll_at()])
            .chain(bus.reconnect.values().map(|(at, _)| *at))
            .min();
        let wait = next.map_or(MAX_WAIT, |at| at.saturating_duration_since(bus.now()).min(MAX_WAIT));
        match sys::recv(endpoint, u64::try_from(wait.as_nanos()).unwrap_or(u64::MAX).max(1)) {
            Ok(incoming) if incoming.message.label == label::NOTIFY => {}
            Ok(incoming) => bus.request(incoming.badge, &incoming.message, &mut links, net),
            Err(sys::Error::TimedOut) => {}
            Err(e) => return Err(format!("receiving on the endpoint: {e}")),
        }
    }
}

/// Takes the connections waiting at the listener.
fn accept(listener: &TcpListener<'static>, links: &mut Vec<Link>, now: Instant) {
    while links.len() < MAX_LINKS {
        match listener.accept(0) {
            Ok(stream) => links.push(Link::incoming(stream, now)),
            Err(NetError::TimedOut) => return,
            Err(e) => {
                rt::log::warn!("accepting failed: {e}");
                return;
            }
        }
    }
}

impl Bus {
    /// The soft bus time: microseconds since the server started.
    fn now(&self) -> Instant {
        Instant::from_micros(sys::time_now().saturating_sub(self.epoch) / 1000)
    }

    /// Runs discovery: timers, what to send, what came.
    fn discover(&mut self, udp: &UdpSocket<'static>, targets: &[SocketAddr], now: Instant) {
        let mut buf = [0u8; 2048];
        for _ in 0..64 {
            match udp.recv_from(&mut buf, 0) {
                Ok((n, from)) => self.on_datagram(&buf[..n], from, now),
                Err(NetError::TimedOut) => break,
                Err(e) => {
                    rt::log::debug!("discovery receive failed: {e}");
                    break;
                }
            }
        }
        self.discovery.poll(now);
        while let Some(datagram) = self.discovery.poll_transmit() {
            for target in targets {
                if let Err(e) = udp.send_to(&datagram, *target) {
                    rt::log::debug!("discovery send to {target} failed: {e}");
                }
            }
        }
        // Addresses only of devices discovery still knows (or that are trusted): a flood of fake
        // ids, whose evictions may outrun the bounded event queue, must not grow the map.
        if self.addrs.len() > DiscoveryConfig::default().max_peers {
            let (discovery, trust) = (&self.discovery, &self.trust);
            self.addrs.retain(|id, _| discovery.peer(id).is_some() || trust.get(id).is_some());
        }
        while let Some(event) = self.discovery.poll_event() {
            match event {
                DiscoveryEvent::PeerFound(p) => {
                    rt::log::info!("found {} ({})", p.advertisement.name, p.device_id)
                }
                DiscoveryEvent::PeerUpdated(_) => {}
                DiscoveryEvent::PeerLost(id) => {
                    rt::log::info!("lost {}", self.name_of(&id));
                    self.addrs.remove(&id);
                }
            }
        }
    }

    fn on_datagram(&mut self, bytes: &[u8], from: SocketAddr, now: Instant) {
        if self.discovery.handle_datagram(now, bytes).is_err() {
            return;
        }
        if let Ok(Datagram::Beacon(beacon)) = wire::decode_datagram(bytes) {
            if beacon.device_id != self.identity.device_id() && beacon.session_port != 0 {
                self.addrs.insert(beacon.device_id, SocketAddr { addr: from.addr, port: beacon.session_port });
            }
        }
    }

    /// A device's name: from the trust store, else from discovery, else its id.
    fn name_of(&self, id: &DeviceId) -> String {
        self.trust
            .get(id)
            .map(|d| d.name.clone())
            .or_else(|| self.discovery.peer(id).map(|p| p.advertisement.name.clone()))
            .unwrap_or_else(|| id.to_string())
    }

    /// Adds a freshly paired device to the trust store and saves it.
    fn trust_paired(&mut self, peer: PairedPeer) -> Result<(), String> {
        let device = TrustedDevice::from_paired(peer, self.unix_now());
        self.trust.add(device).map_err(|e| format!("cannot trust the device: {e}"))?;
        self.store.save_trust(&self.trust)
    }

    /// The device meant by `text`: a device id, a unique name, or a unique id prefix among
    /// the discovered and trusted devices.
    fn resolve(&self, text: &str) -> Result<DeviceId, Failure> {
        let mut known: Vec<(DeviceId, &str)> =
            self.discovery.peers().map(|p| (p.device_id, p.advertisement.name.as_str())).collect();
        known.extend(self.trust.list().map(|d| (d.device_id, d.name.as_str())));
        resolve_device(text, known).map_err(|e| match e {
            ResolveError::Ambiguous(n) => {
                Failure::new(failure::NOT_FOUND, format!("{text:?} matches {n} devices; give more of the device id"))
            }
            ResolveError::NotFound => Failure::new(
                failure::NOT_FOUND,
                format!("no device {text:?}: it is neither discovered nor trusted (see bus devices)"),
            ),
        })
    }

    /// Where `id` accepts sessions.
    fn address(&self, id: &DeviceId) -> Result<SocketAddr, Failure> {
        self.addrs.get(id).copied().ok_or_else(|| {
            Failure::new(
                failure::UNREACHABLE,
                format!("device {} has not been discovered on the network", self.name_of(id)),
            )
        })
    }

    /// Seconds since 1970 now.
    fn unix_now(&self) -> u64 {
        self.unix_base + sys::time_now().saturating_sub(self.epoch) / SECOND_NS
    }

    /// The policy's verdict on `peer` calling `method` (`caps.list` is always answered, and a
    /// method without a capability name is not served anyway).
    pub fn verdict(&self, peer: &DeviceId, method: &str) -> Verdict {
        if method == busvc::CAPS_METHOD {
            return Verdict::Serve;
        }
        let Ok(capability) = Capability::of_method(method) else { return Verdict::Serve };
        match self.policy.decide(peer, &capability, self.unix_now()) {
            Decision::Allow => Verdict::Serve,
            Decision::Deny => Verdict::Deny(format!("{} does not allow this device to use {capability}", self.name)),
            Decision::Ask => Verdict::Ask(capability),
        }
    }

    /// Shows a permission prompt on the console.
    pub fn prompt(&self, peer: &DeviceId, capability: &Capability, method: &str) {
        let name = self.name_of(peer);
        rt::println!(
            "softbus: {name} ({peer}) asks to use {capability} ({method}): answer `bus allow {name} {capability} [seconds]` or `bus deny {name} {capability} [seconds]` within {} s",
            ASK_TIMEOUT.as_secs()
        );
    }

    /// The answer for a call of `peer` to `capability` waiting since `since`: a prompt answer
    /// given after it, or a rule that decides now.
    pub fn answer_for(&self, peer: &DeviceId, capability: &Capability, since: Instant) -> Option<bool> {
        let given = self.answers.iter().rev().find(|(p, c, _, at)| p == peer && c == capability && *at >= since);
        if let Some((_, _, allow, _)) = given {
            return Some(*allow);
        }
        match self.policy.decide(peer, capability, self.unix_now()) {
            Decision::Allow => Some(true),
            Decision::Deny => Some(false),
            Decision::Ask => None,
        }
    }

    /// The rules of the policy, as a table.
    fn policy_table(&self) -> String {
        let mut out = String::new();
        let now = self.unix_now();
        let _ = writeln!(out, "default for trusted devices: {}", self.policy.default_decision().as_str());
        for r in self.policy.rules() {
            let until = r
                .until
                .map_or_else(|| "until changed".to_string(), |u| format!("for {} s more", u.saturating_sub(now)));
            let _ = writeln!(
                out,
                "{:<16} {:<10} {:<6} {until}",
                self.name_of(&r.peer),
                r.capability.as_str(),
                r.decision.as_str()
            );
        }
        out
    }

    /// The device and capability named in a request's buffer.
    fn device_capability(&self, badge: u64, range: rt::ipc::BufRange) -> Result<(DeviceId, Capability), Failure> {
        let args = self.text_arguments(badge, range, 2)?;
        let id = self.resolve(&args[0])?;
        let capability = Capability::parse(&args[1]).map_err(|e| Failure::new(failure::BAD_REQUEST, format!("{e}")))?;
        Ok((id, capability))
    }

    /// Sets (or with `decision` `None`, removes) the rule of `id` for `capability`, and saves.
    fn set_rule(
        &mut self,
        id: DeviceId,
        capability: Capability,
        decision: Option<Decision>,
        seconds: u32,
    ) -> Result<String, Failure> {
        let name = self.name_of(&id);
        let limit = if seconds > 0 { format!(" for {seconds} s") } else { " until changed".to_string() };
        let text = match decision {
            Some(decision) => {
                let until = (seconds > 0).then(|| self.unix_now() + u64::from(seconds));
                self.policy
                    .set(Rule { peer: id, capability: capability.clone(), decision, until })
                    .map_err(|e| Failure::new(failure::INTERNAL, format!("{e}")))?;
                format!("{name}: {capability} {}{limit}\n", decision.as_str())
            }
            None => match self.policy.remove(&id, &capability) {
                Some(_) => format!(
                    "{name}: no rule for {capability}; the default ({}) applies\n",
                    self.policy.default_decision().as_str()
                ),
                None => return Err(Failure::new(failure::NOT_FOUND, format!("{name} has no rule for {capability}"))),
            },
        };
        self.store.save_policy(&self.policy).map_err(|e| Failure::new(failure::INTERNAL, e))?;
        Ok(text)
    }

    /// Everything this device offers.
    fn capabilities(&self) -> Vec<CapabilityDescriptor> {
        let mut list = busvc::capabilities();
        if let Some(compute) = list.iter_mut().find(|d| d.capability == Capability::Compute) {
            *compute = compute.clone().with("programs", "compute.run compute.output (Linux programs)");
        }
        list.push(busvc::display_capability("console"));
        list.push(
            CapabilityDescriptor::new(Capability::Storage)
                .with("methods", "storage.get storage.list storage.put")
                .with("files", "tutti send")
                .with("directory", &self.shared)
                .with("received", &self.received),
        );
        list
    }

    /// Serves one request of the trusted `peer` that the policy allowed (only trusted devices
    /// get a session at all).
    fn serve(&mut self, peer: &DeviceId, method: &str, payload: &[u8]) -> Result<Vec<u8>, (RpcErrorCode, String)> {
        match method {
            busvc::CAPS_METHOD => {
                encode_list(&self.capabilities()).map_err(|e| (RpcErrorCode::INTERNAL, e.to_string()))
            }
            "display.show" => {
                let value = serde_json::from_slice::<serde_json::Value>(payload)
                    .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(payload).into_owned()));
                let text = busvc::display_text(&value);
                rt::println!("[{}] {text}", self.name_of(peer));
                Ok(busvc::display_answer(&text))
            }
            m if m.starts_with("storage.") => storage::serve(self.store.fs, &self.shared, m, payload),
            other => match self.runs.serve(peer, other, payload) {
                Some(served) => served,
                None => busvc::serve(other, payload),
            },
        }
    }

    // ---- Local clients ----

    /// Writes `bytes` (cut to the buffer) to the client's buffer; the length written.
    fn put(&self, badge: u64, bytes: &[u8]) -> u32 {
        let Some(buffer) = self.clients.get(&badge) else { return 0 };
        let len = bytes.len().min(buffer.len());
        match buffer.write(0, &bytes[..len]) {
            Ok(()) => len as u32,
            Err(_) => 0,
        }
    }

    fn text_response(&self, badge: u64, text: &str) -> Response {
        Response::Text { len: self.put(badge, text.as_bytes()) }
    }

    fn failed_response(&self, badge: u64, f: &Failure) -> Response {
        Response::Failed { kind: f.kind, code: f.code, len: self.put(badge, f.message.as_bytes()) }
    }

    /// Answers a caller of the remote mount: the file-system answer of `op` from `result`.
    fn answer_file(&self, reply: Handle, op: remote::Op, result: Result<&[u8], svc::fs::Error>) {
        let response = self.files.borrow_mut().complete(op, result);
        remote::answer(reply, response);
    }

    /// Answers a waiting caller with `failure`.
    pub fn fail(&self, waiter: Waiter, failure: Failure) {
        if let Answer::File(op) = waiter.answer {
            return self.answer_file(waiter.reply, *op, Err(remote::bus_error(&failure)));
        }
        let response = self.failed_response(waiter.badge, &failure);
        let _ = sys::reply_with(waiter.reply, &response.encode());
    }

    /// Answers a waiting caller with text.
    pub fn answer_text(&self, waiter: Waiter, text: &str) {
        if let Answer::File(op) = waiter.answer {
            return self.answer_file(waiter.reply, *op, Err(svc::fs::Error::Io));
        }
        let response = self.text_response(waiter.badge, text);
        let _ = sys::reply_with(waiter.reply, &response.encode());
    }

    /// Answers a waiting caller with the bytes of a remote response.
    pub fn answer_reply(&self, waiter: Waiter, bytes: &[u8]) {
        if let Answer::File(op) = waiter.answer {
            return self.answer_file(waiter.reply, *op, Ok(bytes));
        }
        if matches!(waiter.answer, Answer::Caps) {
            let text = match decode_list(bytes) {
                Ok(list) => caps_table(&list),
                Err(e) => {
                    return self
                        .fail(waiter, Failure::new(failure::INTERNAL, format!("a malformed capability list: {e}")))
                }
            };
            return self.answer_text(waiter, &text);
        }
        let room = self.clients.get(&waiter.badge).map_or(0, SharedBuffer::len);
        if bytes.len() > room {
            let message = format!("the answer has {} bytes, more than the {room} the buffer holds", bytes.len());
            return self.fail(waiter, Failure::new(failure::INTERNAL, message));
        }
        let response = Response::Reply { len: self.put(waiter.badge, bytes) };
        let _ = sys::reply_with(waiter.reply, &response.encode());
    }

    /// The NUL-separated arguments of a request in the client's buffer.
    fn arguments(&self, badge: u64, range: rt::ipc::BufRange, count: usize) -> Result<Vec<Vec<u8>>, Failure> {
        let bad = |what: &str| Failure::new(failure::BAD_REQUEST, what.to_string());
        let buffer = self.clients.get(&badge).ok_or_else(|| bad("not open"))?;
        let (offset, len) = buffer.check(range).map_err(|_| bad("the range is outside the buffer"))?;
        let mut bytes = alloc::vec![0u8; len];
        buffer.read(offset as u64, &mut bytes).map_err(|_| bad("the range is outside the buffer"))?;
        let parts: Vec<Vec<u8>> = bytes.splitn(count, |b| *b == 0).map(<[u8]>::to_vec).collect();
        if parts.len() != count {
            return Err(bad("missing arguments"));
        }
        Ok(parts)
    }

    fn text_arguments(&self, badge: u64, range: rt::ipc::BufRange, count: usize) -> Result<Vec<String>, Failure> {
        self.arguments(badge, range, count)?
            .into_iter()
            .map(|p| String::from_utf8(p).map_err(|_| Failure::new(failure::BAD_REQUEST, "an argument is not UTF-8")))
            .collect()
    }

    /// Serves one local request; answers at once, or keeps the reply for later.
    fn request(&mut self, badge: u64, message: &Message, links: &mut Vec<Link>, net: &'static Net) {
        if badge & remote::FILES_BIT != 0 && badge & PROXY_BIT == 0 {
            return self.file_request(badge, message, links, net);
        }
        let request = match Request::decode(message) {
            Ok(r) => r,
            Err(e) => {
                if let Some(cap) = message.cap {
                    let _ = sys::cap_close(cap);
                }
                let _ = sys::reply(&rt::ipc::rejection(message.label, e));
                return;
            }
        };
        if badge & PROXY_BIT != 0 && !matches!(request, Request::Open | Request::Call { .. }) {
            let f = Failure::new(failure::BAD_REQUEST, "a remote service's endpoint takes Open and Call only");
            return reply_now(self.failed_response(badge, &f));
        }
        if let Request::Proxy { name, client } = request {
            return reply_now(self.proxy(badge, name, client));
        }
        if let Request::Files = request {
            let endpoint = self.files.borrow().endpoint(self.endpoint, badge);
            return reply_now(match endpoint {
                Ok(cap) => Response::Files { endpoint: Cap(cap) },
                Err(e) => self.failed_response(badge, &Failure::new(failure::INTERNAL, format!("no endpoint: {e}"))),
            });
        }
        if !matches!(request, Request::Open) && !self.clients.contains_key(&badge) {
            return reply_now(Response::NotOpen);
        }
        let now = self.now();
        let immediate = match request {
            Request::Open => Some(self.open(badge)),
            Request::Devices => Some(self.text_response(badge, &self.devices_table(links))),
            Request::Trust => Some(self.text_response(badge, &self.trust_table())),
            Request::Policy => Some(self.text_response(badge, &self.policy_table())),
            Request::Proxy { .. } | Request::Files => Some(Response::NotOpen),
            Request::PairShow => {
                let limits = PairingLimits::default();
                let offer = PairingOffer::new(now, limits, &mut self.rng);
                let code = offer.code().as_str().parse::<u32>().unwrap_or(0);
                rt::println!(
                    "softbus: pairing code {} (valid {} s, {} attempts)",
                    offer.code().as_str(),
                    limits.lifetime.as_secs(),
                    limits.max_attempts
                );
                self.offer = Some(offer);
                Some(Response::Code { code, valid_s: limits.lifetime.as_secs() as u32 })
            }
            Request::Revoke { range } => {
                let revoked = self.text_arguments(badge, range, 1).and_then(|a| self.revoke(&a[0], links));
                Some(self.text_or_failed(badge, revoked))
            }
            Request::Answer { range, allow, seconds } => {
                let answered = self.device_capability(badge, range).and_then(|(id, capability)| {
                    if seconds > 0 {
                        let decision = if allow { Decision::Allow } else { Decision::Deny };
                        self.set_rule(id, capability, Some(decision), seconds)
                    } else {
                        let name = self.name_of(&id);
                        let text = format!(
                            "{} {name} to use {capability} this time\n",
                            if allow { "allowed" } else { "denied" }
                        );
                        self.answers.retain(|(_, _, _, at)| now.saturating_duration_since(*at) < ASK_TIMEOUT);
                        self.answers.push((id, capability, allow, now));
                        Ok(text)
                    }
                });
                Some(self.text_or_failed(badge, answered))
            }
            Request::PolicySet { range, decision, seconds } => {
                use svc::softbus::decision as d;
                let decision = match decision {
                    d::ALLOW => Ok(Decision::Allow),
                    d::DENY => Ok(Decision::Deny),
                    d::ASK => Ok(Decision::Ask),
                    _ => Err(Failure::new(failure::BAD_REQUEST, "not a decision")),
                };
                let set = decision.and_then(|dec| {
                    let (id, capability) = self.device_capability(badge, range)?;
                    self.set_rule(id, capability, Some(dec), seconds)
                });
                Some(self.text_or_failed(badge, set))
            }
            Request::PolicyRemove { range } => {
                let removed = self
                    .device_capability(badge, range)
                    .and_then(|(id, capability)| self.set_rule(id, capability, None, 0));
                Some(self.text_or_failed(badge, removed))
            }
            Request::Pair { range } => {
                let started = self.start_pair(badge, range, links, net, now);
                self.failed_now(badge, started)
            }
            Request::Call { range, timeout_ms } => {
                let timeout = if timeout_ms == 0 {
                    CALL_TIMEOUT
                } else {
                    Duration::from_millis(u64::from(timeout_ms)).min(CALL_TIMEOUT_MAX)
                };
                let started = self.arguments(badge, range, 3).and_then(|mut parts| {
                    let payload = parts.pop().unwrap_or_default();
                    let mut method = String::from_utf8(parts.pop().unwrap_or_default()).unwrap_or_default();
                    let mut device = String::from_utf8(parts.pop().unwrap_or_default()).unwrap_or_default();
                    // A proxy's calls go to its service on its device.
                    if let Some((service, target)) =
                        self.proxies.get(&(badge & !PROXY_BIT)).filter(|_| badge & PROXY_BIT != 0)
                    {
                        method = format!("{service}.{method}");
                        device = target.clone();
                    }
                    self.start_call(
                        badge,
                        &device,
                        Work::Call { method, payload, timeout },
                        Answer::Plain,
                        links,
                        net,
                        now,
                    )
                });
                self.failed_now(badge, started)
            }
            Request::Send { range } => {
                let started = self.text_arguments(badge, range, 2).and_then(|a| {
                    self.start_call(badge, &a[0], Work::Send { path: a[1].clone() }, Answer::Plain, links, net, now)
                });
                self.failed_now(badge, started)
            }
            Request::Caps { range } => {
                let started = self.text_arguments(badge, range, 1).and_then(|a| {
                    let work =
                        Work::Call { method: busvc::CAPS_METHOD.into(), payload: Vec::new(), timeout: CALL_TIMEOUT };
                    self.start_call(badge, &a[0], work, Answer::Caps, links, net, now)
                });
                self.failed_now(badge, started)
            }
        };
        if let Some(response) = immediate {
            reply_now(response);
        }
    }

    /// One request on the remote mount (`/remote`): answered now, or after a storage call.
    fn file_request(&mut self, badge: u64, message: &Message, links: &mut Vec<Link>, net: &'static Net) {
        let devices = self.remote_devices();
        let known = |name: &str| devices.iter().any(|d| d == name);
        let step = self.files.borrow_mut().request(self.endpoint, badge, message, &devices, &known);
        if let Some(cap) = message.cap {
            let _ = sys::cap_close(cap);
        }
        let call = match step {
            remote::Step::Now(response) => return reply_now_fs(response),
            remote::Step::Call(call) => call,
        };
        let work = Work::Call { method: call.method.into(), payload: call.payload, timeout: CALL_TIMEOUT };
        let now = self.now();
        if let Err(f) =
            self.start_call(badge, &call.device, work, Answer::File(alloc::boxed::Box::new(call.op)), links, net, now)
        {
            reply_now_fs(svc::fs::Response::Failed { error: remote::bus_error(&f) });
        }
    }

    /// The names `/remote` lists: the trusted devices, by name when it is a plain file name
    /// that no other trusted device has, else by id.
    fn remote_devices(&self) -> Vec<String> {
        let names: Vec<&str> = self.trust.list().map(|d| d.name.as_str()).collect();
        let mut out: Vec<String> = self
            .trust
            .list()
            .map(|d| {
                let unique = names.iter().filter(|n| **n == d.name).count() == 1;
                if unique && busvc::safe_file_name(&d.name) {
                    d.name.clone()
                } else {
                    d.device_id.to_string()
                }
            })
            .collect();
        out.sort();
        out
    }

    /// The answer of a request that gave text or failed.
    fn text_or_failed(&self, badge: u64, result: Result<String, Failure>) -> Response {
        match result {
            Ok(text) => self.text_response(badge, &text),
            Err(f) => self.failed_response(badge, &f),
        }
    }

    /// The answer now of a request that was kept for later (`None`), or that failed at once.
    fn failed_now(&self, badge: u64, started: Result<(), Failure>) -> Option<Response> {
        started.err().map(|f| self.failed_response(badge, &f))
    }

    fn open(&mut self, badge: u64) -> Response {
        if !self.clients.contains_key(&badge) {
            if self.clients.len() >= MAX_CLIENTS {
                // The oldest badge gives up its place.
                let oldest = self.clients.keys().next().copied();
                if let Some(old) = oldest {
                    self.clients.remove(&old);
                }
            }
            match SharedBuffer::create(BUFFER_LEN as usize) {
                Ok(buffer) => {
                    self.clients.insert(badge, buffer);
                }
                Err(e) => {
                    rt::log::warn!("no buffer for a client: {e}");
                    return Response::NotOpen;
                }
            }
        }
        match self.clients.get(&badge).map(|b| b.share(rights::READ | rights::WRITE | rights::DUPLICATE)) {
            Some(Ok(cap)) => Response::Opened { buffer: Cap(cap), len: BUFFER_LEN },
            _ => Response::NotOpen,
        }
    }

    /// A proxy endpoint for `name` (`<service>@<device>`), asked by the name service (badge 0)
    /// for `client`.
    fn proxy(&mut self, badge: u64, name: svc::Name, client: u64) -> Response {
        let refuse = |bus: &Bus, message: String| {
            rt::log::info!("no proxy: {message}");
            Response::Failed { kind: failure::NOT_FOUND, code: 0, len: bus.put(badge, message.as_bytes()) }
        };
        if badge != 0 {
            return refuse(self, "only the name service makes proxies".into());
        }
        let text = svc::name_str(&name);
        let Some((service, device)) = text.split_once('@').filter(|(s, d)| !s.is_empty() && !d.is_empty()) else {
            return refuse(self, format!("{text:?} is not <service>@<device>"));
        };
        if let Err(f) = self.resolve(device) {
            return refuse(self, f.message);
        }
        let number = self.next_proxy;
        let Ok(endpoint) =
            sys::cap_duplicate(self.endpoint, rights::SEND | rights::GRANT | rights::DUPLICATE, PROXY_BIT | number)
        else {
            return refuse(self, "no capability for the proxy".into());
        };
        self.next_proxy += 1;
        self.proxies.insert(number, (service.to_string(), device.to_string()));
        while self.proxies.len() > MAX_PROXIES {
            self.proxies.pop_first();
        }
        rt::log::debug!("proxy {number} for {text} (client {client:#x})");
        Response::Proxy { endpoint: Cap(endpoint) }
    }

    /// Opens lost sessions again when their time comes (doubling the wait after each failed
    /// try, up to `RECONNECT_MAX`) while the device is trusted and no session to it is open.
    fn reconnect_due(&mut self, links: &mut Vec<Link>, net: &'static Net, now: Instant) {
        let due: Vec<DeviceId> = self.reconnect.iter().filter(|(_, (at, _))| *at <= now).map(|(id, _)| *id).collect();
        let open: Vec<DeviceId> =
            self.reconnect.keys().filter(|id| links.iter().any(|l| l.is_established_with(id))).copied().collect();
        for id in open {
            self.reconnect.remove(&id);
            rt::log::info!("session with {} opened again", self.name_of(&id));
        }
        for id in due {
            if self.trust.get(&id).is_none() {
                self.reconnect.remove(&id);
                continue;
            }
            let Some(&(_, wait)) = self.reconnect.get(&id) else { continue };
            self.reconnect.insert(id, (now.saturating_add(wait), (wait * 2).min(RECONNECT_MAX)));
            if links.iter().any(|l| l.session_peer() == Some(id)) || links.len() >= MAX_LINKS {
                continue;
            }
            let Ok(addr) = self.address(&id) else { continue };
            match net.start_connect(addr) {
                Ok(stream) => match Link::dial_session(self, stream, id, now) {
                    Ok(link) => links.push(link),
                    Err(e) => rt::log::debug!("reconnecting: {e}"),
                },
                Err(e) => rt::log::debug!("reconnecting to {addr}: {e}"),
            }
        }
    }

    /// Detaches the reply of the request being served.
    fn detach(&self, badge: u64, answer: Answer) -> Result<Waiter, Failure> {
        sys::reply_detach()
            .map(|reply| Waiter { reply, badge, answer })
            .map_err(|e| Failure::new(failure::INTERNAL, format!("cannot keep the call: {e}")))
    }

    fn room(links: &[Link]) -> Result<(), Failure> {
        if links.len() >= MAX_LINKS {
            return Err(Failure::new(failure::INTERNAL, format!("{MAX_LINKS} connections are open; try again")));
        }
        Ok(())
    }

    fn start_pair(
        &mut self,
        badge: u64,
        range: rt::ipc::BufRange,
        links: &mut Vec<Link>,
        net: &'static Net,
        now: Instant,
    ) -> Result<(), Failure> {
        let args = self.text_arguments(badge, range, 2)?;
        let code = PairingCode::parse(&args[1])
            .map_err(|e| Failure::new(failure::BAD_REQUEST, format!("pairing failed: {e}")))?;
        let id = self.resolve(&args[0])?;
        let addr = self.address(&id)?;
        Self::room(links)?;
        let stream = net
            .start_connect(addr)
            .map_err(|e| Failure::new(failure::UNREACHABLE, format!("cannot connect to {addr}: {e}")))?;
        let waiter = self.detach(badge, Answer::Plain)?;
        match Link::dial_pairing(self, stream, id, &code, waiter, now) {
            Ok(link) => links.push(link),
            Err((waiter, message)) => self.fail(waiter, Failure::new(failure::PAIRING_FAILED, message)),
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn start_call(
        &mut self,
        badge: u64,
        device: &str,
        work: Work,
        answer: Answer,
        links: &mut Vec<Link>,
        net: &'static Net,
        now: Instant,
    ) -> Result<(), Failure> {
        let id = self.resolve(device)?;
        if id == self.identity.device_id() {
            return Err(Failure::new(failure::BAD_REQUEST, "that is this device"));
        }
        if self.trust.get(&id).is_none() {
            return Err(Failure::new(
                failure::UNTRUSTED,
                format!(
                    "device {} is not trusted by this device: pair with it first (bus pair {id} <code>)",
                    self.name_of(&id)
                ),
            ));
        }
        if let Some(link) = links.iter_mut().find(|l| l.session_peer() == Some(id)) {
            let waiter = self.detach(badge, answer)?;
            link.call(self, Queued { waiter, work }, now);
            return Ok(());
        }
        let addr = self.address(&id)?;
        Self::room(links)?;
        let stream = net
            .start_connect(addr)
            .map_err(|e| Failure::new(failure::UNREACHABLE, format!("cannot connect to {addr}: {e}")))?;
        let mut link = Link::dial_session(self, stream, id, now).map_err(|e| Failure::new(failure::INTERNAL, e))?;
        let waiter = self.detach(badge, answer)?;
        link.call(self, Queued { waiter, work }, now);
        links.push(link);
        Ok(())
    }

    fn revoke(&mut self, device: &str, links: &mut [Link]) -> Result<String, Failure> {
        let id = self.resolve(device)?;
        let removed = self.trust.revoke(&id).map_err(|e| Failure::new(failure::NOT_FOUND, format!("{e}")))?;
        self.store.save_trust(&self.trust).map_err(|e| Failure::new(failure::INTERNAL, e))?;
        self.policy.forget(&id);
        self.store.save_policy(&self.policy).map_err(|e| Failure::new(failure::INTERNAL, e))?;
        for link in links.iter_mut().filter(|l| l.session_peer() == Some(id)) {
            link.fail_all(self, Failure::new(failure::UNTRUSTED, "the device was revoked"));
        }
        Ok(format!("no longer trusted: {} ({id})\n", removed.name))
    }

    fn devices_table(&self, links: &[Link]) -> String {
        let now = self.now();
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{:<40} {:<16} {:<9} {:<22} {:<8} {:<10} last seen",
            "device", "name", "kind", "address", "trusted", "connected"
        );
        let mut ids: Vec<DeviceId> = self.discovery.peers().map(|p| p.device_id).collect();
        ids.extend(self.trust.list().map(|d| d.device_id));
        ids.sort();
        ids.dedup();
        for id in ids {
            let peer = self.discovery.peer(&id);
            let kind = peer.map_or_else(|| "-".to_string(), |p| format!("{:?}", p.advertisement.kind).to_lowercase());
            let address = self.addrs.get(&id).map_or_else(|| "-".to_string(), |a| a.to_string());
            let seen = peer.map_or_else(
                || "-".to_string(),
                |p| format!("{} ms ago", now.saturating_duration_since(p.last_seen).as_millis()),
            );
            let connected = links.iter().any(|l| l.is_established_with(&id));
            let _ = writeln!(
                out,
                "{:<40} {:<16} {:<9} {:<22} {:<8} {:<10} {seen}",
                id.to_string(),
                self.name_of(&id),
                kind,
                address,
                if self.trust.get(&id).is_some() { "yes" } else { "no" },
                if connected { "yes" } else { "no" },
            );
        }
        out
    }

    fn trust_table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "{:<40} {:<16} paired at (unix time)", "device", "name");
        for d in self.trust.list() {
            let _ = writeln!(out, "{:<40} {:<16} {}", d.device_id.to_string(), d.name, d.paired_at);
        }
        out
    }
}

/// Answers the request being served with `response` (a capability in it is moved: ours is
/// closed after the reply).
fn reply_now_fs(response: svc::fs::Response) {
    let reply = response.encode();
    let _ = sys::reply(&reply);
    if let Some(cap) = reply.cap {
        let _ = sys::cap_close(cap);
    }
}

fn reply_now(response: Response) {
    let reply = response.encode();
    let _ = sys::reply(&reply);
    if let Some(cap) = reply.cap {
        let _ = sys::cap_close(cap);
    }
}

/// A capability list as a table: one line per capability with its attributes.
fn caps_table(list: &[CapabilityDescriptor]) -> String {
    let mut out = String::new();
    for d in list {
        let _ = write!(out, "{}", d.capability);
        for (k, v) in &d.attributes {
            let _ = write!(out, " {k}={v}");
        }
        out.push('\n');
    }
    out
}
