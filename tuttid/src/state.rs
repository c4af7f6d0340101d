//! The state directory: where the daemon keeps its key store, trust store, config file and
//! API socket, with the permissions secrets need.
//!
//! Design: one directory per device (default `$XDG_STATE_HOME/tutti`, else
//! `~/.local/state/tutti`), created with mode 0700. The key store (`identity.key`, 104 bytes,
//! `softbus::identity`) is created once with mode 0600 and never rewritten; the trust store
//! (`trust.bin`, `softbus::trust`) is replaced atomically (write a 0600 temporary file, then
//! rename) so a crash never leaves half a file. Corrupt files are reported with their path and
//! the typed decoding error, never silently replaced.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use softbus::capability::{Decision, Policy};
use softbus::identity::{Identity, KeystoreError};
use softbus::trust::{TrustError, TrustStore};

/// File names inside the state directory.
pub const KEYSTORE_FILE: &str = "identity.key";
/// The trust store file.
pub const TRUST_FILE: &str = "trust.bin";
/// The config file.
pub const CONFIG_FILE: &str = "config.json";
/// The permission rules.
pub const POLICY_FILE: &str = "policy.json";
/// The local API socket.
pub const SOCKET_FILE: &str = "tuttid.sock";

/// Why a state file could not be used.
#[derive(Debug)]
pub enum StateError {
    /// No state directory was given and neither `XDG_STATE_HOME` nor `HOME` is set.
    NoStateDir,
    /// A file or directory operation failed.
    Io(PathBuf, std::io::Error),
    /// The key store file is corrupt.
    Keystore(PathBuf, KeystoreError),
    /// The trust store file is corrupt.
    Trust(PathBuf, TrustError),
    /// The policy file is corrupt.
    Policy(PathBuf, String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoStateDir => f.write_str("no state directory: set XDG_STATE_HOME or HOME, or pass --state-dir"),
            Self::Io(p, e) => write!(f, "{}: {e}", p.display()),
            Self::Keystore(p, e) => write!(f, "key store {}: {e}", p.display()),
            Self::Trust(p, e) => write!(f, "trust store {}: {e}", p.display()),
            Self::Policy(p, e) => write!(f, "policy file {}: {e}", p.display()),
        }
    }
}

impl std::error::Error for StateError {}

/// The policy file: the rules, each a device id, a capability name, a decision and an
/// optional end (seconds since the Unix epoch).
/// The default state directory: `$XDG_STATE_HOME/tutti`, else `$HOME/.local/state/tutti`.
pub fn default_state_dir() -> Result<PathBuf, StateError> {
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir).join("tutti"));
    }
    let home = std::env::var_os("HOME").filter(|d| !d.is_empty()).ok_or(StateError::NoStateDir)?;
    Ok(PathBuf::from(home).join(".local/state/tutti"))
}

/// The files of one state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The state directory at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// Its path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates the directory (mode 0700) if it does not exist.
    pub fn create(&self) -> Result<(), StateError> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.root).map_err(|e| self.io(&self.root, e))
    }

    /// The path of a file in it.
    pub fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// The API socket path.
    pub fn socket(&self) -> PathBuf {
        self.file(SOCKET_FILE)
    }

    fn io(&self, path: &Path, e: std::io::Error) -> StateError {
        StateError::Io(path.to_path_buf(), e)
    }

    /// Loads the key store, or creates one (mode 0600) with `generate` if there is none.
    /// Returns the identity and whether it was created now.
    pub fn load_or_create_identity(&self, generate: impl FnOnce() -> Identity) -> Result<(Identity, bool), StateError> {
        let path = self.file(KEYSTORE_FILE);
        match fs::read(&path) {
            Ok(bytes) => {
                let mode = fs::metadata(&path).map_err(|e| self.io(&path, e))?.permissions().mode();
                if mode & 0o077 != 0 {
                    tracing::warn!(path = %path.display(), mode = format!("{:o}", mode & 0o777), "key store is readable by others; chmod 600 it");
                }
                let identity = Identity::from_keystore_bytes(&bytes).map_err(|e| StateError::Keystore(path, e))?;
                Ok((identity, false))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = generate();
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                    .map_err(|e| self.io(&path, e))?;
                file.write_all(&identity.to_keystore_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| self.io(&path, e))?;
                Ok((identity, true))
            }
            Err(e) => Err(self.io(&path, e)),
        }
    }

    /// Loads the trust store; an absent file is an empty store.
    pub fn load_trust(&self) -> Result<TrustStore, StateError> {
        let path = self.file(TRUST_FILE);
        match fs::read(&path) {
            Ok(bytes) => TrustStore::from_bytes(&bytes).map_err(|e| StateError::Trust(path, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(TrustStore::new()),
            Err(e) => Err(self.io(&path, e)),
        }
    }

    /// Replaces the trust store file atomically (mode 0600).
    pub fn save_trust(&self, store: &TrustStore) -> Result<(), StateError> {
        self.replace(TRUST_FILE, &store.to_bytes())
    }

    /// Replaces the file `name` atomically (mode 0600): a temporary file, then a rename.
    fn replace(&self, name: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.file(name);
        let tmp = self.file(&format!("{name}.tmp"));
        let _ = fs::remove_file(&tmp);
        let mut file =
            OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp).map_err(|e| self.io(&tmp, e))?;
        file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| self.io(&tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| self.io(&path, e))
    }

    /// Loads the permission rules (`policy.json`) over `default`; an absent file has none.
    pub fn load_policy(&self, default: Decision) -> Result<Policy, StateError> {
        let path = self.file(POLICY_FILE);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Policy::new(default)),
            Err(e) => return Err(self.io(&path, e)),
        };
        busvc::policy::from_json(&bytes, default).map_err(|e| StateError::Policy(path, e))
    }

    /// Replaces the policy file atomically (mode 0600).
    pub fn save_policy(&self, policy: &Policy) -> Result<(), StateError> {
        let text = busvc::policy::to_json(policy);
        self.replace(POLICY_FILE, &text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use softbus::capability::{Capability, Rule};
    use softbus::identity::DeviceId;
    use softbus::rng::SeededRng;

    fn temp_dir(tag: &str) -> StateDir {
        let dir = std::env::temp_dir().join(format!("tuttid-state-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        StateDir::new(dir)
    }

    #[test]
    fn key_store_is_created_once_with_mode_0600() {
        let dir = temp_dir("keys");
        dir.create().unwrap();
        let gen = || Identity::generate(&mut SeededRng::from_seed([1; 32]));
        let (a, created) = dir.load_or_create_identity(gen).unwrap();
        assert!(created);
        let mode = fs::metadata(dir.file(KEYSTORE_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(fs::metadata(dir.root()).unwrap().permissions().mode() & 0o777, 0o700);
        let (b, created) = dir.load_or_create_identity(|| panic!("must not generate again")).unwrap();
        assert!(!created);
        assert_eq!(a.device_id(), b.device_id());
        fs::write(dir.file(KEYSTORE_FILE), b"garbage").unwrap();
        assert!(matches!(
            dir.load_or_create_identity(gen),
            Err(StateError::Keystore(_, KeystoreError::WrongLength(7)))
        ));
        fs::remove_dir_all(dir.root()).unwrap();
    }

    #[test]
    fn policy_saves_and_loads() {
        let dir = temp_dir("policy");
        dir.create().unwrap();
        assert_eq!(dir.load_policy(Decision::Ask).unwrap(), Policy::new(Decision::Ask));
        let mut policy = Policy::new(Decision::Allow);
        let peer = DeviceId::from_bytes([3; 16]);
        policy.set(Rule { peer, capability: Capability::Display, decision: Decision::Deny, until: Some(9) }).unwrap();
        let custom = Capability::parse("echo").unwrap();
        policy.set(Rule { peer, capability: custom, decision: Decision::Ask, until: None }).unwrap();
        dir.save_policy(&policy).unwrap();
        assert_eq!(dir.load_policy(Decision::Allow).unwrap(), policy);
        assert_eq!(fs::metadata(dir.file(POLICY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        fs::write(dir.file(POLICY_FILE), br#"{"rules":[{"device":"x","capability":"display","decision":"allow"}]}"#)
            .unwrap();
        assert!(matches!(dir.load_policy(Decision::Allow), Err(StateError::Policy(_, _))));
        fs::remove_dir_all(dir.root()).unwrap();
    }

    #[test]
    fn trust_store_saves_atomically_and_reports_corruption() {
        let dir = temp_dir("trust");
        dir.create().unwrap();
        assert!(dir.load_trust().unwrap().is_empty());
        let id = Identity::generate(&mut SeededRng::from_seed([2; 32]));
        let mut store = TrustStore::new();
        store
            .add(softbus::trust::TrustedDevice {
                device_id: id.device_id(),
                signing_public: id.signing_public(),
                noise_static: id.noise_public(),
                name: "peer".into(),
                paired_at: 1,
            })
            .unwrap();
        dir.save_trust(&store).unwrap();
        assert_eq!(dir.load_trust().unwrap(), store);
        assert_eq!(fs::metadata(dir.file(TRUST_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        fs::write(dir.file(TRUST_FILE), b"TTRU").unwrap();
        assert!(matches!(dir.load_trust(), Err(StateError::Trust(_, _))));
        fs::remove_dir_all(dir.root()).unwrap();
    }
}
