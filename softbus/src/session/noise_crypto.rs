//! The cryptography under snow: a `snow::resolvers::CryptoResolver` over RustCrypto and dalek.
//!
//! Design: snow built without default features brings no primitives, so this module supplies
//! exactly the three of `Noise_XX_25519_AESGCM_SHA256`: X25519 (x25519-dalek), AES-256-GCM
//! (aes-gcm) and SHA-256 (sha2). Anything else resolves to `None` and snow refuses the
//! pattern. Randomness (only the ephemeral key needs it) comes from a [`SeededRng`] seeded by
//! the caller's generator; the resolver hands it out once, so two handshakes can never share
//! an ephemeral key. AES-GCM nonces are four zero bytes and the 64-bit counter big-endian, as
//! the Noise specification defines for AESGCM. Secrets are wiped on drop.

use alloc::boxed::Box;
use core::cell::Cell;

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce, Tag};
use sha2::{Digest, Sha256};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::CryptoResolver;
use snow::types::{Cipher, Dh, Hash, Random};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::Zeroizing;

use crate::rng::SeededRng;

/// Bytes of an AES-GCM tag.
const TAG_LEN: usize = 16;

/// Resolves the primitives of `Noise_XX_25519_AESGCM_SHA256`.
pub(crate) struct Resolver {
    rng: Cell<Option<SeededRng>>,
}

impl Resolver {
    /// A resolver whose one random generator is `rng`.
    pub(crate) fn new(rng: SeededRng) -> Self {
        Self { rng: Cell::new(Some(rng)) }
    }
}

impl CryptoResolver for Resolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.rng.take().map(|rng| Box::new(NoiseRandom(rng)) as Box<dyn Random>)
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        matches!(choice, DHChoice::Curve25519).then(|| Box::new(X25519::default()) as Box<dyn Dh>)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        matches!(choice, HashChoice::SHA256).then(|| Box::new(Sha256Hash::default()) as Box<dyn Hash>)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        matches!(choice, CipherChoice::AESGCM).then(|| Box::new(AesGcmCipher::default()) as Box<dyn Cipher>)
    }
}

struct NoiseRandom(SeededRng);

impl Random for NoiseRandom {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.0.fill(dest);
        Ok(())
    }
}

#[derive(Default)]
struct X25519 {
    secret: Zeroizing<[u8; 32]>,
    public: [u8; 32],
}

impl X25519 {
    fn derive_public(&mut self) {
        self.public = PublicKey::from(&StaticSecret::from(*self.secret)).to_bytes();
    }
}

impl Dh for X25519 {
    fn name(&self) -> &'static str {
        "25519"
    }

    fn pub_len(&self) -> usize {
        32
    }

    fn priv_len(&self) -> usize {
        32
    }

    fn set(&mut self, privkey: &[u8]) {
        // snow checks the length against `priv_len` before calling; a wrong one leaves the key unset.
        if let Ok(key) = <[u8; 32]>::try_from(privkey) {
            *self.secret = key;
            self.derive_public();
        }
    }

    fn generate(&mut self, rng: &mut dyn Random) -> Result<(), snow::Error> {
        rng.try_fill_bytes(self.secret.as_mut())?;
        self.derive_public();
        Ok(())
    }

    fn pubkey(&self) -> &[u8] {
        &self.public
    }

    fn privkey(&self) -> &[u8] {
        self.secret.as_ref()
    }

    fn dh(&self, pubkey: &[u8], out: &mut [u8]) -> Result<(), snow::Error> {
        // snow passes its whole key buffer (longer than 32 bytes); the key is its start.
        let public = pubkey.get(..32).and_then(|k| <[u8; 32]>::try_from(k).ok()).ok_or(snow::Error::Dh)?;
        let shared = StaticSecret::from(*self.secret).diffie_hellman(&PublicKey::from(public));
        // A low-order point yields an all-zero secret: refuse it rather than derive keys from it.
        if !shared.was_contributory() {
            return Err(snow::Error::Dh);
        }
        out.get_mut(..32).ok_or(snow::Error::Dh)?.copy_from_slice(shared.as_bytes());
        Ok(())
    }
}

#[derive(Default)]
struct AesGcmCipher {
    aead: Option<Aes256Gcm>,
}

fn nonce(counter: u64) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_be_bytes());
    Nonce::from(n)
}

impl Cipher for AesGcmCipher {
    fn name(&self) -> &'static str {
        "AESGCM"
    }

    fn set(&mut self, key: &[u8; 32]) {
        self.aead = Aes256Gcm::new_from_slice(key).ok();
    }

    /// snow sizes `out` to hold the plaintext and the tag before calling; should it ever not,
    /// nothing is written and 0 is returned, which snow's callers treat as a failed write.
    fn encrypt(&self, counter: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let Some(aead) = &self.aead else { return 0 };
        let len = plaintext.len();
        let Some((body, rest)) = out.split_at_mut_checked(len) else { return 0 };
        let Some(tag_out) = rest.get_mut(..TAG_LEN) else { return 0 };
        body.copy_from_slice(plaintext);
        match aead.encrypt_inout_detached(&nonce(counter), authtext, body.into()) {
            Ok(tag) => {
                tag_out.copy_from_slice(&tag);
                len + TAG_LEN
            }
            Err(_) => {
                body.fill(0);
                0
            }
        }
    }

    fn decrypt(&self, counter: u64, authtext: &[u8], ciphertext: &[u8], out: &mut [u8]) -> Result<usize, snow::Error> {
        let aead = self.aead.as_ref().ok_or(snow::Error::Decrypt)?;
        let len = ciphertext.len().checked_sub(TAG_LEN).ok_or(snow::Error::Decrypt)?;
        let (body_in, tag) = ciphertext.split_at(len);
        let tag = Tag::try_from(tag).map_err(|_| snow::Error::Decrypt)?;
        let body = out.get_mut(..len).ok_or(snow::Error::Decrypt)?;
        body.copy_from_slice(body_in);
        if aead.decrypt_inout_detached(&nonce(counter), authtext, body.into(), &tag).is_err() {
            body.fill(0);
            return Err(snow::Error::Decrypt);
        }
        Ok(len)
    }
}

#[derive(Default)]
struct Sha256Hash(Sha256);

impl Hash for Sha256Hash {
    fn name(&self) -> &'static str {
        "SHA256"
    }

    fn block_len(&self) -> usize {
        64
    }

    fn hash_len(&self) -> usize {
        32
    }

    fn reset(&mut self) {
        self.0 = Sha256::new();
    }

    fn input(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    fn result(&mut self, out: &mut [u8]) {
        let digest = self.0.finalize_reset();
        if let Some(out) = out.get_mut(..32) {
            out.copy_from_slice(&digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cipher_round_trips_and_detects_tampering() {
        let mut c = AesGcmCipher::default();
        c.set(&[7; 32]);
        let mut ct = [0u8; 5 + TAG_LEN];
        assert_eq!(c.encrypt(9, b"ad", b"hello", &mut ct), 21);
        let mut pt = [0u8; 21];
        assert_eq!(c.decrypt(9, b"ad", &ct, &mut pt), Ok(5));
        assert_eq!(&pt[..5], b"hello");
        assert_eq!(c.decrypt(10, b"ad", &ct, &mut pt), Err(snow::Error::Decrypt));
        assert_eq!(c.decrypt(9, b"AD", &ct, &mut pt), Err(snow::Error::Decrypt));
        ct[0] ^= 1;
        assert_eq!(c.decrypt(9, b"ad", &ct, &mut pt), Err(snow::Error::Decrypt));
        assert_eq!(c.decrypt(9, b"ad", &ct[..10], &mut pt), Err(snow::Error::Decrypt));
        let mut short = [0u8; 8];
        assert_eq!(c.encrypt(9, b"", b"hello", &mut short), 0);
    }

    #[test]
    fn cipher_matches_a_known_aes_gcm_vector() {
        // NIST GCM test case 13: AES-256, zero key, zero 96-bit IV, empty plaintext.
        let mut c = AesGcmCipher::default();
        c.set(&[0; 32]);
        let mut tag = [0u8; TAG_LEN];
        assert_eq!(c.encrypt(0, b"", b"", &mut tag), TAG_LEN);
        assert_eq!(
            tag,
            [0x53, 0x0f, 0x8a, 0xfb, 0xc7, 0x45, 0x36, 0xb9, 0xa9, 0x63, 0xb4, 0xf1, 0xc4, 0xcb, 0x73, 0x8b]
        );
    }

    #[test]
    fn dh_agrees_and_refuses_low_order_points() {
        let mut rng = NoiseRandom(SeededRng::from_seed([1; 32]));
        let (mut a, mut b) = (X25519::default(), X25519::default());
        a.generate(&mut rng).unwrap();
        b.generate(&mut rng).unwrap();
        let (mut ab, mut ba) = ([0u8; 32], [0u8; 32]);
        a.dh(b.pubkey(), &mut ab).unwrap();
        b.dh(a.pubkey(), &mut ba).unwrap();
        assert_eq!(ab, ba);
        assert_eq!(a.dh(&[0; 32], &mut ab), Err(snow::Error::Dh));
        assert_eq!(a.dh(&[1; 31], &mut ab), Err(snow::Error::Dh));
        let mut padded = [0u8; 56];
        padded[..32].copy_from_slice(b.pubkey());
        a.dh(&padded, &mut ab).unwrap();
        assert_eq!(ab, ba);
    }

    #[test]
    fn hash_is_sha256_and_rng_is_handed_out_once() {
        let mut h = Sha256Hash::default();
        h.input(b"abc");
        let mut out = [0u8; 32];
        h.result(&mut out);
        assert_eq!(out[..4], [0xba, 0x78, 0x16, 0xbf]);
        let r = Resolver::new(SeededRng::from_seed([0; 32]));
        assert!(r.resolve_rng().is_some());
        assert!(r.resolve_rng().is_none());
        assert!(r.resolve_cipher(&CipherChoice::ChaChaPoly).is_none());
    }
}
