//! The daemon: the tokio adapter that gives the sans-IO soft bus its sockets, clock, files and
//! randomness.
//!
//! Design: one `Shared` value holds what every task needs (identity, trust store, discovery
//! state, the address book learned from beacons, the pairing offer, the open sessions), each
//! behind its own short-held `std` mutex that is never held across an `.await`. Tasks:
//!
//! - `discovery`: the UDP socket (multicast group and/or unicast peers) driving
//!   `softbus::discovery::Discovery`;
//! - `mdns`: answers mDNS/DNS-SD queries for `_tutti._udp` (the `mdns-sd` crate's thread);
//! - `link`: one task per TCP session, driving `softbus::connection::Connection` and an RPC
//!   client and server over it, serving the built-in services;
//! - `pairing`: pairing over TCP, as the device that typed the code or the one showing it;
//! - `local_api`: the Unix socket of the local API;
//! - `permissions`: the policy check of each incoming call and the `ask` prompts;
//! - `provider`: display and storage, served through a connected `tutti serve`;
//! - `files`: the file I/O of transfers (`tutti send`), resumable;
//! - `streams`: the long-lived local API requests (`sub`, `send`, `serve`) and `pub`.
//!
//! The TCP listener looks at the first frame of each connection: a handshake starts a session,
//! a pairing frame a pairing. Incoming connections are bounded (at most
//! [`MAX_INCOMING`] at once); everything the network says goes through the typed decoders of
//! `softbus`, and what they refuse is logged, never trusted.

mod discovery;
mod files;
mod link;
mod local_api;
mod mdns;
mod pairing;
mod permissions;
mod provider;
mod streams;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use softbus::capability::Policy;
use softbus::discovery::{Advertisement, Discovery, DiscoveryConfig};
use softbus::identity::{DeviceId, Identity};
use softbus::pairing::PairingOffer;
use softbus::rng::SeededRng;
use softbus::session::{PeerIdentity, TrustPolicy};
use softbus::time::Instant;
use softbus::trust::TrustStore;
use softbus::wire::CapabilitySet;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::api::{ApiError, ErrorKind};
use crate::config::{device_kind, Config, ConfigError};
use crate::state::{StateDir, StateError};

/// Incoming TCP connections handled at once; more are closed at once and logged.
pub const MAX_INCOMING: usize = 256;

/// Why the daemon could not start or stopped.
#[derive(Debug)]
pub enum DaemonError {
    /// A state file is unusable.
    State(StateError),
    /// The configuration is unusable.
    Config(ConfigError),
    /// A socket could not be opened.
    Socket(String, std::io::Error),
    /// The operating system gave no randomness.
    Entropy(String),
}

impl std::fmt::Display for DaemonError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::State(e) => write!(f, "{e}"),
            Self::Config(e) => write!(f, "{e}"),
            Self::Socket(what, e) => write!(f, "cannot open {what}: {e}"),
            Self::Entropy(e) => write!(f, "no randomness from the operating system: {e}"),
        }
    }
}

impl std::error::Error for DaemonError {}

impl From<StateError> for DaemonError {
    fn from(e: StateError) -> Self {
        Self::State(e)
    }
}

impl From<ConfigError> for DaemonError {
    fn from(e: ConfigError) -> Self {
        Self::Config(e)
    }
}

/// A command to the task of an open session.
pub(crate) enum LinkCommand {
    /// Call `method` on the peer.
    Call { method: String, payload: Vec<u8>, timeout: Duration, reply: oneshot::Sender<Result<Vec<u8>, ApiError>> },
    /// The answer to request `request_id`, computed outside the task (after a prompt, or by
    /// a `tutti serve` client).
    Answer { request_id: u64, served: provider::Served },
    /// Subscribe to `topic` on this session.
    Subscribe { topic: String },
    /// Publish on `topic`; the reply says whether the peer subscribed.
    Publish { topic: String, payload: Vec<u8>, reply: oneshot::Sender<bool> },
    /// Send a file.
    SendFile {
        name: String,
        file: std::fs::File,
        size: u64,
        sha256: [u8; 32],
        progress: mpsc::UnboundedSender<files::SendProgress>,
    },
    /// The policy (or the local user) decided about a file offer.
    OfferDecided { offer: softbus::file::FileOffer, allowed: bool },
    /// Close the session (the peer was revoked).
    Close,
}

/// What every task of the daemon shares.
pub(crate) struct Shared {
    identity: Identity,
    name: String,
    state: StateDir,
    config: Config,
    epoch: tokio::time::Instant,
    session_port: u16,
    discovery_port: u16,
    rng: Mutex<SeededRng>,
    trust: Mutex<TrustStore>,
    discovery: Mutex<Discovery>,
    /// Session addresses learned from beacons: source address and announced port.
    addrs: Mutex<HashMap<DeviceId, SocketAddr>>,
    offer: Mutex<Option<PairingOffer>>,
    links: Mutex<HashMap<DeviceId, mpsc::Sender<LinkCommand>>>,
    /// What trusted devices may use (`policy.json`).
    policy: Mutex<Policy>,
    /// Connected prompt clients, newest last.
    prompters: Mutex<Vec<mpsc::Sender<permissions::PendingPrompt>>>,
    /// Prompts written to a prompt client and not answered yet, by id.
    pending_prompts: Mutex<HashMap<u64, oneshot::Sender<permissions::PromptAnswer>>>,
    next_prompt: Mutex<u64>,
    /// The connected `tutti serve` client.
    provider: Mutex<Option<provider::Provider>>,
    /// Local subscribers (`tutti sub`) by topic; each gets message lines.
    topics: Mutex<HashMap<String, Vec<mpsc::Sender<serde_json::Value>>>>,
    /// Held while opening a session, so concurrent calls to one device share one session.
    dialing: tokio::sync::Mutex<()>,
    /// Devices whose lost session is being opened again (`link::reconnect`).
    reconnecting: Mutex<std::collections::HashSet<DeviceId>>,
}

/// Locks `m`, recovering the data if a task panicked while holding it.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Shared {
    /// The soft bus time: microseconds since the daemon started.
    pub(crate) fn now(&self) -> Instant {
        Instant::from_micros(u64::try_from(self.epoch.elapsed().as_micros()).unwrap_or(u64::MAX))
    }

    /// The tokio instant of a soft bus instant.
    pub(crate) fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.epoch + Duration::from_micros(at.as_micros())
    }

    /// A fresh generator for one operation, drawn from the daemon's generator.
    pub(crate) fn rng(&self) -> SeededRng {
        SeededRng::from_rng(&mut *lock(&self.rng))
    }

    /// The trust store as a session trust policy.
    pub(crate) fn trust_policy(&self) -> SharedTrust<'_> {
        SharedTrust(self)
    }

    /// Adds a freshly paired device to the trust store and saves it.
    pub(crate) fn trust_paired(&self, peer: softbus::pairing::PairedPeer) -> Result<(), ApiError> {
        let device = softbus::trust::TrustedDevice::from_paired(peer, unix_now());
        let mut trust = lock(&self.trust);
        trust.add(device).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
        self.state.save_trust(&trust).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
    }

    /// The device meant by `text`: a device id, a unique id prefix, or a unique name among
    /// the discovered and trusted devices.
    pub(crate) fn resolve(&self, text: &str) -> Result<DeviceId, ApiError> {
        let mut known: Vec<(DeviceId, String)> =
            lock(&self.discovery).peers().map(|p| (p.device_id, p.advertisement.name.clone())).collect();
        known.extend(lock(&self.trust).list().map(|d| (d.device_id, d.name.clone())));
        softbus::identity::resolve_device(text, known.iter().map(|(id, name)| (*id, name.as_str()))).map_err(
            |e| match e {
                softbus::identity::ResolveError::Ambiguous(n) => ApiError::new(
                    ErrorKind::Ambiguous,
                    format!("{text:?} matches {n} devices; give more of the device id"),
                ),
                softbus::identity::ResolveError::NotFound => ApiError::new(
                    ErrorKind::NotFound,
                    format!("no device {text:?}: it is neither discovered nor trusted (see `tutti devices`)"),
                ),
            },
        )
    }

    /// Where `id` accepts sessions, as learned from its beacons.
    pub(crate) fn address(&self, id: &DeviceId) -> Result<SocketAddr, ApiError> {
        lock(&self.addrs).get(id).copied().ok_or_else(|| {
            ApiError::new(
                ErrorKind::NotFound,
                format!("device {id} has not been discovered on the network (see `tutti devices`)"),
            )
        })
    }
}

/// The trust store behind the shared mutex, as a `TrustPolicy`.
pub(crate) struct SharedTrust<'a>(&'a Shared);

impl TrustPolicy for SharedTrust<'_> {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        lock(&self.0.trust).is_trusted(peer)
    }
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .map_or_else(|| "tutti-device".to_string(), |s| s.chars().take(64).collect())
}

/// Runs the daemon on the state directory `state` with `config` until SIGINT or SIGTERM.
pub async fn run(state: StateDir, config: Config) -> Result<(), DaemonError> {
    config.validate()?;
    state.create()?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| DaemonError::Entropy(e.to_string()))?;
    let mut rng = SeededRng::from_seed(seed);
    let (identity, created) = state.load_or_create_identity(|| Identity::generate(&mut rng))?;
    let trust = state.load_trust()?;
    let policy = state.load_policy(config.policy.default_decision()?)?;
    let name = config.name.clone().unwrap_or_else(host_name);
    if created {
        tracing::info!(device = %identity.device_id(), "created a new device identity");
    }

    let listener = TcpListener::bind((config.session.bind, config.session.port)).await.map_err(|e| {
        DaemonError::Socket(format!("session listener {}:{}", config.session.bind, config.session.port), e)
    })?;
    let session_port = listener.local_addr().map_err(|e| DaemonError::Socket("session listener".into(), e))?.port();
    let udp = discovery::open_socket(&config.discovery)?;
    let discovery_port = udp.local_addr().map_err(|e| DaemonError::Socket("discovery socket".into(), e))?.port();
    let socket_path = state.socket();
    let api = local_api::bind(&socket_path)?;

    let epoch = tokio::time::Instant::now();
    let advertisement = Advertisement {
        kind: device_kind(&config.kind)?,
        capabilities: CapabilitySet::COMPUTE,
        session_port,
        name: name.clone(),
    };
    let discovery_config = DiscoveryConfig {
        beacon_interval: Duration::from_millis(config.discovery.beacon_interval_ms),
        peer_timeout: Duration::from_millis(config.discovery.peer_timeout_ms),
        ..DiscoveryConfig::default()
    };
    let disc = Discovery::new(identity.device_id(), advertisement, discovery_config, Instant::ZERO)
        .map_err(|e| DaemonError::Config(ConfigError::Invalid(e.to_string())))?;
    tracing::info!(
        device = %identity.device_id(),
        %name,
        session_port,
        discovery_port,
        trusted = trust.len(),
        state_dir = %state.root().display(),
        "tuttid started"
    );
    let shared = Arc::new(Shared {
        identity,
        name,
        state,
        config,
        epoch,
        session_port,
        discovery_port,
        rng: Mutex::new(rng),
        trust: Mutex::new(trust),
        discovery: Mutex::new(disc),
        addrs: Mutex::new(HashMap::new()),
        offer: Mutex::new(None),
        links: Mutex::new(HashMap::new()),
        policy: Mutex::new(policy),
        prompters: Mutex::new(Vec::new()),
        pending_prompts: Mutex::new(HashMap::new()),
        next_prompt: Mutex::new(0),
        provider: Mutex::new(None),
        topics: Mutex::new(HashMap::new()),
        dialing: tokio::sync::Mutex::new(()),
        reconnecting: Mutex::new(std::collections::HashSet::new()),
    });

    let kind = shared.config.kind.clone();
    let mdns = mdns::start(&shared, &kind, &CapabilitySet::COMPUTE.to_string());
    let tasks = [
        tokio::spawn(discovery::run(shared.clone(), udp)),
        tokio::spawn(accept_loop(shared.clone(), listener)),
        tokio::spawn(local_api::serve(shared.clone(), api)),
    ];
    wait_for_shutdown().await;
    tracing::info!("shutting down");
    for task in tasks {
        task.abort();
    }
    drop(mdns);
    let _ = std::fs::remove_file(&socket_path);
    Ok(())
}

async fn wait_for_shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// Accepts TCP connections and hands each to a session or a pairing by its first frame.
async fn accept_loop(shared: Arc<Shared>, listener: TcpListener) {
    let slots = Arc::new(Semaphore::new(MAX_INCOMING));
    loop {
        let (stream, from) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%from, "too many incoming connections; closing this one");
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            link::handle_incoming(shared, stream, from).await;
            drop(permit);
        });
    }
}

/// The path of the API socket for a state directory (for `tutti`).
pub fn socket_path(state_dir: &std::path::Path) -> PathBuf {
    StateDir::new(state_dir).socket()
}
