//! The trust store: the devices this device has paired with, their keys, and revocation.
//!
//! Design: a [`TrustStore`] is a small ordered map from device id to [`TrustedDevice`] (both
//! public keys, the name it gave itself, and when it was paired). It is the session's
//! [`TrustPolicy`]: a peer is trusted only if its device id is in the store *and* the
//! Ed25519 and X25519 keys it proved in the handshake are exactly the ones learned at pairing,
//! so a revoked device, or a device that kept its id but changed its keys, cannot establish a
//! session. The store is bounded ([`MAX_TRUSTED`]) and has a versioned byte format with a
//! checksum, like the key store; writing it to a file (mode 0600, atomically) is the daemon's
//! job. Times are what the caller says (seconds since the Unix epoch in `tuttid`): the soft bus
//! reads no clock.
//!
//! Byte layout (all integers big-endian), see `docs/softbus/wire.md`, "Trust store": magic
//! `TTRU` (4), version `1` (1), reserved zero (1), entry count (2), entries, SHA-256 of
//! everything before (32). Entry: device id (16), Ed25519 key (32), X25519 key (32), paired
//! at (8), name length N (1), name (N, UTF-8, at most 64).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha256};

use crate::identity::DeviceId;
use crate::pairing::PairedPeer;
use crate::session::{PeerIdentity, TrustPolicy};
use crate::wire::cursor::Reader;
use crate::wire::discovery::MAX_NAME_LEN;

/// Most devices a trust store holds.
pub const MAX_TRUSTED: usize = 1024;
const MAGIC: [u8; 4] = *b"TTRU";
const VERSION: u8 = 1;
const HEADER_LEN: usize = 8;
const CHECKSUM_LEN: usize = 32;
const ENTRY_FIXED_LEN: usize = 16 + 32 + 32 + 8 + 1;

/// One trusted device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedDevice {
    /// Its device id.
    pub device_id: DeviceId,
    /// Its Ed25519 public key (the device id derives from it).
    pub signing_public: [u8; 32],
    /// Its X25519 static key, the one its sessions must use.
    pub noise_static: [u8; 32],
    /// The name it gave at pairing.
    pub name: String,
    /// When it was paired, in the caller's time (seconds since the Unix epoch in `tuttid`).
    pub paired_at: u64,
}

impl TrustedDevice {
    /// The entry for a device just paired at `paired_at`.
    pub fn from_paired(peer: PairedPeer, paired_at: u64) -> Self {
        Self {
            device_id: peer.device_id,
            signing_public: peer.signing_public,
            noise_static: peer.noise_static,
            name: peer.name,
            paired_at,
        }
    }
}

/// Why the trust store refused an operation or its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrustError {
    /// No trusted device has this id.
    NotFound(DeviceId),
    /// The store holds [`MAX_TRUSTED`] devices already.
    Full,
    /// The entry is inconsistent: its device id does not derive from its Ed25519 key, or its
    /// name is too long.
    BadEntry(DeviceId),
    /// The bytes end early.
    Truncated,
    /// The bytes do not start with the trust store magic.
    BadMagic,
    /// Written by a version this code does not read.
    UnknownVersion(u8),
    /// Reserved bytes are not zero.
    ReservedNotZero,
    /// The checksum does not match: the file is corrupt.
    ChecksumMismatch,
    /// Bytes follow the checksum.
    TrailingBytes(usize),
    /// A device appears twice.
    Duplicate(DeviceId),
    /// Entries are not in increasing device id order (the encoding is canonical).
    Unordered(DeviceId),
    /// More entries than [`MAX_TRUSTED`].
    TooMany(usize),
    /// A name is not UTF-8.
    BadUtf8,
}

impl fmt::Display for TrustError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotFound(id) => write!(f, "device {id} is not trusted"),
            Self::Full => write!(f, "the trust store is full ({MAX_TRUSTED} devices)"),
            Self::BadEntry(id) => write!(f, "trust store entry {id} is inconsistent"),
            Self::Truncated => f.write_str("trust store is truncated"),
            Self::BadMagic => f.write_str("not a Tutti trust store (bad magic)"),
            Self::UnknownVersion(v) => write!(f, "unknown trust store version {v}"),
            Self::ReservedNotZero => f.write_str("trust store reserved bytes are not zero"),
            Self::ChecksumMismatch => f.write_str("trust store checksum mismatch: the file is corrupt"),
            Self::TrailingBytes(n) => write!(f, "{n} bytes after the trust store checksum"),
            Self::Duplicate(id) => write!(f, "device {id} appears twice in the trust store"),
            Self::Unordered(id) => write!(f, "trust store entry {id} is out of order"),
            Self::TooMany(n) => write!(f, "trust store has {n} entries, at most {MAX_TRUSTED} allowed"),
            Self::BadUtf8 => f.write_str("a trust store name is not valid UTF-8"),
        }
    }
}

impl core::error::Error for TrustError {}

/// The devices this device trusts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustStore {
    devices: BTreeMap<DeviceId, TrustedDevice>,
}

impl TrustStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Trusts `device`, replacing an entry with the same id (pairing again renews the keys).
    pub fn add(&mut self, device: TrustedDevice) -> Result<(), TrustError> {
        check_entry(&device)?;
        if self.devices.len() >= MAX_TRUSTED && !self.devices.contains_key(&device.device_id) {
            return Err(TrustError::Full);
        }
        self.devices.insert(device.device_id, device);
        Ok(())
    }

    /// Stops trusting `id`; returns what was removed.
    pub fn revoke(&mut self, id: &DeviceId) -> Result<TrustedDevice, TrustError> {
        self.devices.remove(id).ok_or(TrustError::NotFound(*id))
    }

    /// The entry of `id`.
    pub fn get(&self, id: &DeviceId) -> Option<&TrustedDevice> {
        self.devices.get(id)
    }

    /// Every trusted device, by id.
    pub fn list(&self) -> impl Iterator<Item = &TrustedDevice> {
        self.devices.values()
    }

    /// How many devices are trusted.
    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// Whether no device is trusted.
    pub fn is_empty(&self) -> bool {
        self.devices.is_empty()
    }

    /// Encodes the store.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.devices.len() * (ENTRY_FIXED_LEN + 16) + CHECKSUM_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.push(0);
        // `add` keeps the count at most MAX_TRUSTED, which fits 16 bits.
        out.extend_from_slice(&u16::try_from(self.devices.len()).unwrap_or(u16::MAX).to_be_bytes());
        for d in self.devices.values() {
            out.extend_from_slice(d.device_id.as_bytes());
            out.extend_from_slice(&d.signing_public);
            out.extend_from_slice(&d.noise_static);
            out.extend_from_slice(&d.paired_at.to_be_bytes());
            // `add` keeps names at most MAX_NAME_LEN bytes.
            out.push(u8::try_from(d.name.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(d.name.as_bytes());
        }
        let digest = Sha256::digest(&out);
        out.extend_from_slice(&digest);
        out
    }

    /// Decodes bytes written by [`TrustStore::to_bytes`].
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, TrustError> {
        let body_len = bytes.len().checked_sub(CHECKSUM_LEN).ok_or(TrustError::Truncated)?;
        let mut r = Reader::new(bytes);
        let magic: [u8; 4] = r.array().map_err(|_| TrustError::Truncated)?;
        if magic != MAGIC {
            return Err(TrustError::BadMagic);
        }
        let version = r.u8().map_err(|_| TrustError::Truncated)?;
        if version != VERSION {
            return Err(TrustError::UnknownVersion(version));
        }
        if r.u8().map_err(|_| TrustError::Truncated)? != 0 {
            return Err(TrustError::ReservedNotZero);
        }
        let count = usize::from(r.u16().map_err(|_| TrustError::Truncated)?);
        if count > MAX_TRUSTED {
            return Err(TrustError::TooMany(count));
        }
        let body = bytes.get(..body_len).ok_or(TrustError::Truncated)?;
        let checksum = bytes.get(body_len..).ok_or(TrustError::Truncated)?;
        let mut store = Self::new();
        let mut entries = Reader::new(body.get(HEADER_LEN..).ok_or(TrustError::Truncated)?);
        let mut parse = || -> Result<(), TrustError> {
            for _ in 0..count {
                let device = read_entry(&mut entries)?;
                if let Some((last, _)) = store.devices.last_key_value() {
                    if *last == device.device_id {
                        return Err(TrustError::Duplicate(device.device_id));
                    }
                    if *last > device.device_id {
                        return Err(TrustError::Unordered(device.device_id));
                    }
                }
                store.add(device)?;
            }
            Ok(())
        };
        // A corrupt file most often fails its checksum; report that rather than a symptom.
        let parsed = parse();
        if Sha256::digest(body).as_slice() != checksum {
            return Err(TrustError::ChecksumMismatch);
        }
        parsed?;
        let rest = entries.rest().len();
        if rest != 0 {
            return Err(TrustError::TrailingBytes(rest));
        }
        Ok(store)
    }
}

fn read_entry(r: &mut Reader<'_>) -> Result<TrustedDevice, TrustError> {
    let id: [u8; 16] = r.array().map_err(|_| TrustError::Truncated)?;
    let signing_public: [u8; 32] = r.array().map_err(|_| TrustError::Truncated)?;
    let noise_static: [u8; 32] = r.array().map_err(|_| TrustError::Truncated)?;
    let paired_at = r.u64().map_err(|_| TrustError::Truncated)?;
    let name_len = usize::from(r.u8().map_err(|_| TrustError::Truncated)?);
    let name = r.take(name_len).map_err(|_| TrustError::Truncated)?;
    let name = core::str::from_utf8(name).map_err(|_| TrustError::BadUtf8)?;
    Ok(TrustedDevice {
        device_id: DeviceId::from_bytes(id),
        signing_public,
        noise_static,
        name: String::from(name),
        paired_at,
    })
}

fn check_entry(d: &TrustedDevice) -> Result<(), TrustError> {
    if DeviceId::from_signing_public(&d.signing_public) != d.device_id || d.name.len() > MAX_NAME_LEN {
        return Err(TrustError::BadEntry(d.device_id));
    }
    Ok(())
}

impl TrustPolicy for TrustStore {
    /// Trusted: the device id is in the store with exactly the keys the handshake proved.
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        self.devices
            .get(&peer.device_id)
            .is_some_and(|d| d.signing_public == peer.signing_public && d.noise_static == peer.noise_static)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Identity;
    use crate::rng::SeededRng;
    use crate::session::{Session, SessionError};

    fn identity(seed: u8) -> Identity {
        Identity::generate(&mut SeededRng::from_seed([seed; 32]))
    }

    fn entry(id: &Identity, name: &str) -> TrustedDevice {
        TrustedDevice {
            device_id: id.device_id(),
            signing_public: id.signing_public(),
            noise_static: id.noise_public(),
            name: String::from(name),
            paired_at: 1_700_000_000,
        }
    }

    fn sample() -> TrustStore {
        let mut s = TrustStore::new();
        s.add(entry(&identity(1), "laptop")).unwrap();
        s.add(entry(&identity(2), "phone ☎")).unwrap();
        s
    }

    #[test]
    fn add_list_revoke() {
        let mut s = sample();
        assert_eq!(s.len(), 2);
        let names: Vec<_> = s.list().map(|d| d.name.as_str()).collect();
        assert_eq!(names.len(), 2);
        let gone = s.revoke(&identity(1).device_id()).unwrap();
        assert_eq!(gone.name, "laptop");
        assert_eq!(s.revoke(&identity(1).device_id()), Err(TrustError::NotFound(identity(1).device_id())));
        assert!(s.get(&identity(2).device_id()).is_some());
        let mut bad = entry(&identity(3), "x");
        bad.device_id = identity(4).device_id();
        assert_eq!(s.add(bad.clone()), Err(TrustError::BadEntry(bad.device_id)));
    }

    #[test]
    fn bytes_round_trip() {
        let s = sample();
        let bytes = s.to_bytes();
        assert_eq!(&bytes[..5], b"TTRU\x01");
        assert_eq!(TrustStore::from_bytes(&bytes), Ok(s));
        let empty = TrustStore::new();
        assert_eq!(TrustStore::from_bytes(&empty.to_bytes()), Ok(empty));
    }

    #[test]
    fn corruption_is_reported() {
        let good = sample().to_bytes();
        assert_eq!(TrustStore::from_bytes(&good[..10]), Err(TrustError::Truncated));
        assert_eq!(TrustStore::from_bytes(&good[..good.len() - 1]), Err(TrustError::ChecksumMismatch));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(TrustStore::from_bytes(&bad), Err(TrustError::BadMagic));
        let mut bad = good.clone();
        bad[4] = 2;
        assert_eq!(TrustStore::from_bytes(&bad), Err(TrustError::UnknownVersion(2)));
        let mut bad = good.clone();
        bad[5] = 1;
        assert_eq!(TrustStore::from_bytes(&bad), Err(TrustError::ReservedNotZero));
        let mut bad = good.clone();
        bad[40] ^= 0x10;
        assert_eq!(TrustStore::from_bytes(&bad), Err(TrustError::ChecksumMismatch));
        let mut extra = good.clone();
        extra.push(0);
        assert!(TrustStore::from_bytes(&extra).is_err());
    }

    /// Re-checksums `body` as a store file.
    fn sealed(mut body: Vec<u8>) -> Vec<u8> {
        let digest = Sha256::digest(&body);
        body.extend_from_slice(&digest);
        body
    }

    #[test]
    fn inconsistent_content_with_a_valid_checksum_is_refused() {
        let good = sample().to_bytes();
        let body = &good[..good.len() - CHECKSUM_LEN];
        // The first entry repeated at the end (out of order), or twice in a row.
        let first_len = ENTRY_FIXED_LEN + usize::from(body[HEADER_LEN + ENTRY_FIXED_LEN - 1]);
        let first = &body[HEADER_LEN..HEADER_LEN + first_len];
        let first_id = DeviceId::from_bytes(body[HEADER_LEN..HEADER_LEN + 16].try_into().unwrap());
        let mut unordered = body.to_vec();
        unordered.extend_from_slice(first);
        unordered[6..8].copy_from_slice(&3u16.to_be_bytes());
        assert_eq!(TrustStore::from_bytes(&sealed(unordered)), Err(TrustError::Unordered(first_id)));
        let mut dup = body[..HEADER_LEN].to_vec();
        dup.extend_from_slice(first);
        dup.extend_from_slice(first);
        assert_eq!(TrustStore::from_bytes(&sealed(dup)), Err(TrustError::Duplicate(first_id)));
        // A device id that does not match its key.
        let mut wrong = body.to_vec();
        wrong[HEADER_LEN] ^= 1;
        assert!(matches!(TrustStore::from_bytes(&sealed(wrong)), Err(TrustError::BadEntry(_))));
        // Too many entries announced.
        let mut many = body.to_vec();
        many[6..8].copy_from_slice(&2000u16.to_be_bytes());
        assert_eq!(TrustStore::from_bytes(&sealed(many)), Err(TrustError::TooMany(2000)));
        // Count says one entry but two follow.
        let mut trailing = body.to_vec();
        trailing[6..8].copy_from_slice(&1u16.to_be_bytes());
        assert!(matches!(TrustStore::from_bytes(&sealed(trailing)), Err(TrustError::TrailingBytes(_))));
    }

    /// Runs a handshake between `a` (initiator) and `b`, each with its own trust store.
    fn handshake(a: &Identity, ta: &TrustStore, b: &Identity, tb: &TrustStore) -> Result<(), SessionError> {
        let mut rng = SeededRng::from_seed([5; 32]);
        let mut sa = Session::initiate(a, &mut rng)?;
        let mut sb = Session::accept(b, &sa.poll_transmit().ok_or(SessionError::Failed)?, &mut rng)?;
        sa.handle_datagram(&sb.poll_transmit().ok_or(SessionError::Failed)?, ta)?;
        sb.handle_datagram(&sa.poll_transmit().ok_or(SessionError::Failed)?, tb)
    }

    #[test]
    fn the_store_is_the_session_policy_and_revocation_refuses_sessions() {
        let (a, b) = (identity(1), identity(2));
        let mut ta = TrustStore::new();
        ta.add(entry(&b, "b")).unwrap();
        let mut tb = TrustStore::new();
        tb.add(entry(&a, "a")).unwrap();
        assert_eq!(handshake(&a, &ta, &b, &tb), Ok(()));

        // b revokes a: a can no longer establish a session with b.
        tb.revoke(&a.device_id()).unwrap();
        assert_eq!(handshake(&a, &ta, &b, &tb), Err(SessionError::Untrusted(a.device_id())));
        // And a, after revoking b, refuses before revealing itself.
        ta.revoke(&b.device_id()).unwrap();
        assert_eq!(handshake(&a, &ta, &b, &tb), Err(SessionError::Untrusted(b.device_id())));
    }

    #[test]
    fn a_known_id_with_other_keys_is_not_trusted() {
        let (a, b) = (identity(1), identity(2));
        let mut tb = TrustStore::new();
        let mut stale = entry(&a, "a");
        stale.noise_static = identity(9).noise_public();
        tb.add(stale).unwrap();
        let mut ta = TrustStore::new();
        ta.add(entry(&b, "b")).unwrap();
        assert_eq!(handshake(&a, &ta, &b, &tb), Err(SessionError::Untrusted(a.device_id())));
    }
}
