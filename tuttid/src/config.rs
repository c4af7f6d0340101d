//! The daemon's configuration: the `config.json` file in the state directory, with defaults
//! for everything, and the command-line overrides of `tuttid`.
//!
//! Design: every field has a default, so an empty object `{}` (or no file at all: the daemon
//! writes the defaults on first start) is a working configuration. Unknown fields are an
//! error, so a typo does not silently fall back to a default. The layout is documented in
//! `docs/softbus/daemon.md`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The default UDP port of discovery.
pub const DEFAULT_DISCOVERY_PORT: u16 = 47800;
/// The default TCP port of sessions and pairing.
pub const DEFAULT_SESSION_PORT: u16 = 47801;
/// The default discovery multicast group (administratively scoped, RFC 2365).
pub const DEFAULT_GROUP: Ipv4Addr = Ipv4Addr::new(239, 255, 84, 66);

/// Everything `config.json` can say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The device name other devices see; `null` means the host name.
    pub name: Option<String>,
    /// The device kind announced: unspecified, phone, tablet, laptop, desktop, server, tv,
    /// watch, speaker, camera or embedded.
    pub kind: String,
    /// Discovery settings.
    pub discovery: DiscoveryConfig,
    /// Session (TCP) settings.
    pub session: SessionConfig,
    /// Pairing settings.
    pub pairing: PairingConfig,
    /// Permission settings.
    pub policy: PolicyConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            name: None,
            kind: "desktop".into(),
            discovery: DiscoveryConfig::default(),
            session: SessionConfig::default(),
            pairing: PairingConfig::default(),
            policy: PolicyConfig::default(),
        }
    }
}

/// Permission settings: what trusted devices may use when no rule says otherwise.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PolicyConfig {
    /// The decision where no rule applies: `allow`, `deny` or `ask`.
    pub default: String,
    /// How long an `ask` waits for the local user before refusing, in milliseconds.
    pub ask_timeout_ms: u64,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self { default: "allow".into(), ask_timeout_ms: 30_000 }
    }
}

impl PolicyConfig {
    /// The default decision.
    pub fn default_decision(&self) -> Result<softbus::capability::Decision, ConfigError> {
        softbus::capability::Decision::parse(&self.default).ok_or_else(|| {
            ConfigError::Invalid(format!("policy.default is {:?}; use allow, deny or ask", self.default))
        })
    }
}

/// Discovery settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Address the discovery socket binds (`0.0.0.0` to hear multicast on every interface).
    pub bind: IpAddr,
    /// UDP port of discovery, the same on every device of a network.
    pub port: u16,
    /// Multicast group beacons and queries go to.
    pub group: Ipv4Addr,
    /// Whether to use the multicast group at all.
    pub multicast: bool,
    /// Unicast addresses (`host:port`) that also get every beacon and query: for networks
    /// without multicast, and for tests on loopback.
    pub peers: Vec<SocketAddr>,
    /// Time between two beacons, in milliseconds.
    pub beacon_interval_ms: u64,
    /// A device not heard from for this long is dropped, in milliseconds.
    pub peer_timeout_ms: u64,
    /// Answer mDNS/DNS-SD queries for `_tutti._udp` (so `avahi-browse` lists this device).
    pub mdns: bool,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_DISCOVERY_PORT,
            group: DEFAULT_GROUP,
            multicast: true,
            peers: Vec::new(),
            beacon_interval_ms: 5_000,
            peer_timeout_ms: 16_000,
            mdns: true,
        }
    }
}

/// Session settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionConfig {
    /// Address the session listener binds.
    pub bind: IpAddr,
    /// TCP port of the session listener; 0 picks a free port (announced in beacons).
    pub port: u16,
    /// The handshake must complete within this many milliseconds.
    pub handshake_timeout_ms: u64,
    /// A keepalive probe goes out after this many milliseconds of silence from the peer.
    pub keepalive_interval_ms: u64,
    /// A peer silent this many milliseconds is lost.
    pub idle_timeout_ms: u64,
    /// Default deadline of a call, in milliseconds.
    pub call_timeout_ms: u64,
    /// A session this device opened to a trusted device that is lost (the peer went silent,
    /// closed or reset it) is opened again in the background, first after
    /// `reconnect_min_ms`, then with the wait doubled up to `reconnect_max_ms`, until it is
    /// back or the device is no longer trusted. 0 turns this off.
    pub reconnect_min_ms: u64,
    /// The longest wait between two attempts to open a lost session again.
    pub reconnect_max_ms: u64,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            port: DEFAULT_SESSION_PORT,
            handshake_timeout_ms: 10_000,
            keepalive_interval_ms: 5_000,
            idle_timeout_ms: 20_000,
            call_timeout_ms: 10_000,
            reconnect_min_ms: 200,
            reconnect_max_ms: 10_000,
        }
    }
}

impl SessionConfig {
    /// The connection timers of the soft bus.
    pub fn connection_config(&self) -> softbus::connection::ConnectionConfig {
        softbus::connection::ConnectionConfig {
            handshake_timeout: Duration::from_millis(self.handshake_timeout_ms),
            keepalive_interval: Duration::from_millis(self.keepalive_interval_ms),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms),
        }
    }
}

/// Pairing settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PairingConfig {
    /// How long a shown code stays valid, in seconds.
    pub code_lifetime_s: u64,
    /// How many attempts (right or wrong) a shown code allows.
    pub max_attempts: u8,
}

impl Default for PairingConfig {
    fn default() -> Self {
        Self { code_lifetime_s: 120, max_attempts: 3 }
    }
}

/// Why the configuration could not be read.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read or written.
    Io(std::path::PathBuf, std::io::Error),
    /// The file is not a valid configuration.
    Parse(std::path::PathBuf, serde_json::Error),
    /// A value is out of range.
    Invalid(String),
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Io(p, e) => write!(f, "config file {}: {e}", p.display()),
            Self::Parse(p, e) => write!(f, "config file {} is invalid: {e}", p.display()),
            Self::Invalid(what) => write!(f, "invalid configuration: {what}"),
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads `path`; if it does not exist, writes the defaults there and returns them.
    pub fn load_or_create(path: &Path) -> Result<Self, ConfigError> {
        match std::fs::read(path) {
            Ok(bytes) => {
                let config: Self = serde_json::from_slice(&bytes).map_err(|e| ConfigError::Parse(path.into(), e))?;
                config.validate()?;
                Ok(config)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let config = Self::default();
                let mut text = serde_json::to_string_pretty(&config).map_err(|e| ConfigError::Parse(path.into(), e))?;
                text.push('\n');
                std::fs::write(path, text).map_err(|e| ConfigError::Io(path.into(), e))?;
                Ok(config)
            }
            Err(e) => Err(ConfigError::Io(path.into(), e)),
        }
    }

    /// Checks values that the types allow but the daemon cannot use.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.discovery.beacon_interval_ms == 0 {
            return Err(ConfigError::Invalid("discovery.beacon_interval_ms must be positive".into()));
        }
        if self.discovery.peer_timeout_ms <= self.discovery.beacon_interval_ms {
            return Err(ConfigError::Invalid("discovery.peer_timeout_ms must exceed beacon_interval_ms".into()));
        }
        if self.session.keepalive_interval_ms == 0 || self.session.idle_timeout_ms <= self.session.keepalive_interval_ms
        {
            return Err(ConfigError::Invalid(
                "session.idle_timeout_ms must exceed a positive keepalive_interval_ms".into(),
            ));
        }
        if self.pairing.max_attempts == 0 {
            return Err(ConfigError::Invalid("pairing.max_attempts must be at least 1".into()));
        }
        if let Some(name) = &self.name {
            if name.len() > softbus::wire::discovery::MAX_NAME_LEN {
                return Err(ConfigError::Invalid("name is longer than 64 bytes".into()));
            }
        }
        device_kind(&self.kind)?;
        self.policy.default_decision()?;
        Ok(())
    }
}

/// The wire device kind of a kind name.
pub fn device_kind(name: &str) -> Result<softbus::wire::DeviceKind, ConfigError> {
    use softbus::wire::DeviceKind as K;
    Ok(match name {
        "unspecified" => K::Unspecified,
        "phone" => K::Phone,
        "tablet" => K::Tablet,
        "laptop" => K::Laptop,
        "desktop" => K::Desktop,
        "server" => K::Server,
        "tv" => K::Tv,
        "watch" => K::Watch,
        "speaker" => K::Speaker,
        "camera" => K::Camera,
        "embedded" => K::Embedded,
        other => return Err(ConfigError::Invalid(format!("unknown device kind {other:?}"))),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_object_is_the_default_and_typos_are_errors() {
        let c: Config = serde_json::from_str("{}").unwrap();
        assert_eq!(c, Config::default());
        c.validate().unwrap();
        let c: Config = serde_json::from_str(r#"{"discovery": {"port": 9, "peers": ["127.0.0.1:5"]}}"#).unwrap();
        assert_eq!(c.discovery.port, 9);
        assert_eq!(c.discovery.peers, ["127.0.0.1:5".parse::<SocketAddr>().unwrap()]);
        assert!(serde_json::from_str::<Config>(r#"{"discovery": {"prot": 9}}"#).is_err());
        let bad = Config { kind: "toaster".into(), ..Config::default() };
        assert!(bad.validate().is_err());
    }
}
