//! Device identity: the long-term keys of one device, its device id, and the byte format of
//! its key store.
//!
//! Design: a device has two long-term secrets, an X25519 static key (its Noise identity in
//! sessions) and an Ed25519 signing key (its name: the device id is the first 16 bytes of
//! SHA-256 over the Ed25519 public key, and the signing key vouches for the X25519 key in the
//! handshake, see [`crate::session`]). The key store is a small versioned byte string with a
//! SHA-256 checksum, so a truncated or corrupted file is reported rather than loaded; writing
//! it to a file with 0600 permissions is the daemon's job. Secrets are wiped on drop and
//! never printed by `Debug`.
//!
//! Key store layout (104 bytes): magic `TKEY` (4), version `1` (1), reserved zero (3),
//! X25519 secret (32), Ed25519 secret seed (32), SHA-256 of the previous 72 bytes (32).

use alloc::vec::Vec;
use core::fmt;
use core::str::FromStr;

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

/// Bytes in a device id.
pub const DEVICE_ID_LEN: usize = 16;
/// Bytes in an encoded key store.
pub const KEYSTORE_LEN: usize = 104;
const KEYSTORE_MAGIC: [u8; 4] = *b"TKEY";
const KEYSTORE_VERSION: u8 = 1;
const KEYSTORE_BODY_LEN: usize = 72;

/// The name of a device: 16 bytes derived from its Ed25519 public key.
///
/// Shown as lowercase hexadecimal in eight groups of four digits, e.g.
/// `3f2a-9c01-77de-0b4e-5a61-c2d8-e9f0-1234`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceId([u8; DEVICE_ID_LEN]);

impl DeviceId {
    /// The id of the device whose Ed25519 public key is `public_key`.
    pub fn from_signing_public(public_key: &[u8; 32]) -> Self {
        let digest = Sha256::digest(public_key);
        let mut id = [0u8; DEVICE_ID_LEN];
        id.copy_from_slice(digest.get(..DEVICE_ID_LEN).unwrap_or(&[0; DEVICE_ID_LEN]));
        Self(id)
    }

    /// A device id from its raw bytes.
    pub const fn from_bytes(bytes: [u8; DEVICE_ID_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; DEVICE_ID_LEN] {
        &self.0
    }
}

impl fmt::Display for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            for b in pair {
                write!(f, "{b:02x}")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for DeviceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceId({self})")
    }
}

/// Why a text is not a device id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseDeviceIdError;

impl fmt::Display for ParseDeviceIdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a device id is 32 hexadecimal digits, optionally grouped with '-'")
    }
}

impl core::error::Error for ParseDeviceIdError {}

impl FromStr for DeviceId {
    type Err = ParseDeviceIdError;

    /// Accepts 32 hexadecimal digits (either case), with any `-` separators.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; DEVICE_ID_LEN];
        let mut digits = s.chars().filter(|&c| c != '-');
        for byte in out.iter_mut() {
            let hi = digits.next().and_then(|c| c.to_digit(16)).ok_or(ParseDeviceIdError)?;
            let lo = digits.next().and_then(|c| c.to_digit(16)).ok_or(ParseDeviceIdError)?;
            *byte = u8::try_from(hi * 16 + lo).map_err(|_| ParseDeviceIdError)?;
        }
        if digits.next().is_some() {
            return Err(ParseDeviceIdError);
        }
        Ok(Self(out))
    }
}

/// Why key store bytes could not be loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeystoreError {
    /// The input is not [`KEYSTORE_LEN`] bytes long.
    WrongLength(usize),
    /// The input does not start with the key store magic.
    BadMagic,
    /// The key store was written by a version this code does not read.
    UnknownVersion(u8),
    /// Reserved bytes are not zero.
    ReservedNotZero,
    /// The checksum does not match: the key store is corrupt.
    ChecksumMismatch,
}

impl fmt::Display for KeystoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongLength(n) => write!(f, "key store is {n} bytes, expected {KEYSTORE_LEN}"),
            Self::BadMagic => f.write_str("not a Tutti key store (bad magic)"),
            Self::UnknownVersion(v) => write!(f, "unknown key store version {v}"),
            Self::ReservedNotZero => f.write_str("key store reserved bytes are not zero"),
            Self::ChecksumMismatch => f.write_str("key store checksum mismatch: the file is corrupt"),
        }
    }
}

impl core::error::Error for KeystoreError {}

/// The long-term keys of this device.
pub struct Identity {
    noise: StaticSecret,
    signing: SigningKey,
}

impl Identity {
    /// A new identity with fresh keys drawn from `rng`.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut noise = Zeroizing::new([0u8; 32]);
        let mut signing = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(noise.as_mut());
        rng.fill_bytes(signing.as_mut());
        Self::from_secrets(&noise, &signing)
    }

    /// The identity with these secrets (X25519 secret, Ed25519 seed).
    pub fn from_secrets(noise_secret: &[u8; 32], signing_seed: &[u8; 32]) -> Self {
        Self { noise: StaticSecret::from(*noise_secret), signing: SigningKey::from_bytes(signing_seed) }
    }

    /// This device's id.
    pub fn device_id(&self) -> DeviceId {
        DeviceId::from_signing_public(&self.signing_public())
    }

    /// The X25519 public key other devices see in the Noise handshake.
    pub fn noise_public(&self) -> [u8; 32] {
        PublicKey::from(&self.noise).to_bytes()
    }

    /// The X25519 secret, for the Noise handshake.
    pub(crate) fn noise_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.noise.to_bytes())
    }

    /// The Ed25519 public key.
    pub fn signing_public(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// Signs `message` with the Ed25519 key.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.signing.sign(message).to_bytes()
    }

    /// Encodes the key store (secret material: keep it private, it is wiped on drop).
    pub fn to_keystore_bytes(&self) -> Zeroizing<Vec<u8>> {
        let mut out = Zeroizing::new(Vec::with_capacity(KEYSTORE_LEN));
        out.extend_from_slice(&KEYSTORE_MAGIC);
        out.push(KEYSTORE_VERSION);
        out.extend_from_slice(&[0, 0, 0]);
        out.extend_from_slice(self.noise.as_bytes());
        out.extend_from_slice(self.signing.as_bytes());
        let digest = Sha256::digest(&out[..]);
        out.extend_from_slice(&digest);
        out
    }

    /// Decodes a key store written by [`Identity::to_keystore_bytes`].
    pub fn from_keystore_bytes(bytes: &[u8]) -> Result<Self, KeystoreError> {
        if bytes.len() != KEYSTORE_LEN {
            return Err(KeystoreError::WrongLength(bytes.len()));
        }
        let (body, checksum) = bytes.split_at(KEYSTORE_BODY_LEN);
        let (magic, rest) = body.split_at(4);
        if magic != KEYSTORE_MAGIC {
            return Err(KeystoreError::BadMagic);
        }
        let (header, keys) = rest.split_at(4);
        if let [version, reserved @ ..] = header {
            if *version != KEYSTORE_VERSION {
                return Err(KeystoreError::UnknownVersion(*version));
            }
            if reserved.iter().any(|&b| b != 0) {
                return Err(KeystoreError::ReservedNotZero);
            }
        }
        if Sha256::digest(body).as_slice() != checksum {
            return Err(KeystoreError::ChecksumMismatch);
        }
        let (noise, signing) = keys.split_at(32);
        let mut noise_secret = Zeroizing::new([0u8; 32]);
        let mut signing_seed = Zeroizing::new([0u8; 32]);
        noise_secret.copy_from_slice(noise);
        signing_seed.copy_from_slice(signing);
        Ok(Self::from_secrets(&noise_secret, &signing_seed))
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity").field("device_id", &self.device_id()).finish_non_exhaustive()
    }
}

/// Checks an Ed25519 `signature` by `signing_public` over `message`.
pub fn verify_signature(signing_public: &[u8; 32], message: &[u8], signature: &[u8; 64]) -> bool {
    VerifyingKey::from_bytes(signing_public)
        .is_ok_and(|key| key.verify(message, &Signature::from_bytes(signature)).is_ok())
}

/// Why [`resolve_device`] found no single device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResolveError {
    /// No known device has that id, name or id prefix.
    NotFound,
    /// This many devices match.
    Ambiguous(usize),
}

/// The device a person means by `text`, among `known` devices (id and name, repeats allowed):
/// a full device id (known or not), else a unique name, else a unique prefix of the id in
/// hexadecimal (dashes ignored, any case).
pub fn resolve_device<'a>(
    text: &str,
    known: impl IntoIterator<Item = (DeviceId, &'a str)>,
) -> Result<DeviceId, ResolveError> {
    if let Ok(id) = text.parse::<DeviceId>() {
        return Ok(id);
    }
    let known: Vec<(DeviceId, &str)> = known.into_iter().collect();
    let pick = |mut ids: Vec<DeviceId>| -> Option<Result<DeviceId, ResolveError>> {
        ids.sort();
        ids.dedup();
        match ids.as_slice() {
            [] => None,
            [one] => Some(Ok(*one)),
            more => Some(Err(ResolveError::Ambiguous(more.len()))),
        }
    };
    if let Some(found) = pick(known.iter().filter(|(_, name)| *name == text).map(|(id, _)| *id).collect()) {
        return found;
    }
    let needle: Vec<u8> = text.bytes().filter(|b| *b != b'-').map(|b| b.to_ascii_lowercase()).collect();
    if !needle.is_empty() && needle.iter().all(u8::is_ascii_hexdigit) {
        let by_prefix = known
            .iter()
            .filter(|(id, _)| {
                let hex: Vec<u8> = alloc::format!("{id}").bytes().filter(|b| *b != b'-').collect();
                hex.starts_with(&needle)
            })
            .map(|(id, _)| *id)
            .collect();
        if let Some(found) = pick(by_prefix) {
            return found;
        }
    }
    Err(ResolveError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use alloc::string::ToString;

    fn identity(seed: u8) -> Identity {
        Identity::generate(&mut SeededRng::from_seed([seed; 32]))
    }

    #[test]
    fn device_id_is_derived_from_the_signing_key() {
        let id = identity(1);
        let digest = Sha256::digest(id.signing_public());
        assert_eq!(id.device_id().as_bytes()[..], digest[..16]);
        assert_ne!(identity(2).device_id(), id.device_id());
    }

    #[test]
    fn device_id_text_round_trips() {
        let id = DeviceId::from_bytes([0x3f, 0x2a, 0x9c, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0xa, 0xb, 0xc, 0xd]);
        let text = id.to_string();
        assert_eq!(text, "3f2a-9c01-0203-0405-0607-0809-0a0b-0c0d");
        assert_eq!(text.parse::<DeviceId>(), Ok(id));
        assert_eq!(text.to_uppercase().replace('-', "").parse::<DeviceId>(), Ok(id));
        assert_eq!("3f2a".parse::<DeviceId>(), Err(ParseDeviceIdError));
        assert_eq!("zz".repeat(16).parse::<DeviceId>(), Err(ParseDeviceIdError));
        assert_eq!((text + "00").parse::<DeviceId>(), Err(ParseDeviceIdError));
    }

    #[test]
    fn keystore_round_trips() {
        let id = identity(3);
        let bytes = id.to_keystore_bytes();
        assert_eq!(bytes.len(), KEYSTORE_LEN);
        assert_eq!(&bytes[..5], b"TKEY\x01");
        let back = Identity::from_keystore_bytes(&bytes).unwrap();
        assert_eq!(back.device_id(), id.device_id());
        assert_eq!(back.noise_public(), id.noise_public());
    }

    #[test]
    fn corrupt_keystores_are_reported() {
        let good = identity(4).to_keystore_bytes();
        assert_eq!(Identity::from_keystore_bytes(&good[..50]).unwrap_err(), KeystoreError::WrongLength(50));
        let mut bad = good.to_vec();
        bad[0] = b'X';
        assert_eq!(Identity::from_keystore_bytes(&bad).unwrap_err(), KeystoreError::BadMagic);
        let mut bad = good.to_vec();
        bad[4] = 9;
        assert_eq!(Identity::from_keystore_bytes(&bad).unwrap_err(), KeystoreError::UnknownVersion(9));
        let mut bad = good.to_vec();
        bad[6] = 1;
        assert_eq!(Identity::from_keystore_bytes(&bad).unwrap_err(), KeystoreError::ReservedNotZero);
        let mut bad = good.to_vec();
        bad[20] ^= 1;
        assert_eq!(Identity::from_keystore_bytes(&bad).unwrap_err(), KeystoreError::ChecksumMismatch);
    }

    #[test]
    fn signatures_verify_only_for_the_signed_message() {
        let id = identity(5);
        let sig = id.sign(b"hello");
        assert!(verify_signature(&id.signing_public(), b"hello", &sig));
        assert!(!verify_signature(&id.signing_public(), b"hellO", &sig));
        assert!(!verify_signature(&identity(6).signing_public(), b"hello", &sig));
    }

    #[test]
    fn debug_does_not_print_secrets() {
        let id = identity(7);
        let text = alloc::format!("{id:?}");
        assert!(text.contains(&id.device_id().to_string()));
        assert!(!text.contains("noise"));
    }

    #[test]
    fn devices_resolve_by_id_name_and_prefix() {
        let a = DeviceId::from_signing_public(&[1; 32]);
        let b = DeviceId::from_signing_public(&[2; 32]);
        let known = [(a, "laptop"), (b, "phone"), (a, "laptop")];
        assert_eq!(resolve_device("phone", known), Ok(b));
        assert_eq!(resolve_device(&a.to_string(), []), Ok(a));
        let prefix: alloc::string::String =
            a.to_string().chars().take(6).collect::<alloc::string::String>().to_uppercase();
        assert_eq!(resolve_device(&prefix, known), Ok(a));
        assert_eq!(resolve_device("tablet", known), Err(ResolveError::NotFound));
        assert_eq!(resolve_device("", known), Err(ResolveError::NotFound));
        assert_eq!(resolve_device("same", [(a, "same"), (b, "same")]), Err(ResolveError::Ambiguous(2)));
    }
}
