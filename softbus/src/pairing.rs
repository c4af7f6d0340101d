//! Pairing: two devices that do not trust each other yet exchange their long-term public keys,
//! authenticated by a short numeric code that a person carries from one screen to the other.
//!
//! Design: the device that shows the code holds a [`PairingOffer`] (the code, an expiry, and
//! a budget of attempts); the device where the code is typed starts a [`Pairing`] as the
//! initiator, the showing device answers as the responder. The exchange is SPAKE2 over
//! Ed25519 (the RustCrypto `spake2` crate) with the code as the password, then each side's
//! identity sealed with AES-256-GCM under a key derived from the SPAKE2 result:
//!
//! ```text
//!  initiator (typed the code)                      responder (shows the code)
//!  step 1: pairing id, SPAKE2 message A  ───────▶  offer.begin_attempt(): one attempt used
//!                                       ◀───────  step 2: SPAKE2 message B, seal_B(identity B)
//!  open seal_B (fails: wrong code, abort)
//!  step 3: seal_A(identity A)            ───────▶  open seal_A (fails: wrong code)
//!  both: the peer's keys go to the trust store
//! ```
//!
//! Keys: `transcript = SHA-256("tutti-softbus-v1 pairing" ‖ pairing id ‖ A ‖ B)`; HKDF-SHA256
//! with the transcript as salt and the SPAKE2 key as input gives one sealing key per
//! direction. A sealed identity is the Ed25519 and X25519 public keys, an Ed25519 signature
//! over the transcript and the X25519 key (so the sender holds the signing key and binds the
//! two keys to this exchange) and the device name. Only someone who knows the code derives the
//! same keys, so a wrong code fails to open the first seal (`WrongCode`), and a man in the
//! middle without the code sees only SPAKE2 messages and ciphertexts: each attempt lets him
//! test one guess of the code, online. The offer bounds that: a 6-digit code, at most
//! [`PairingLimits::max_attempts`] attempts (3 by default) and an expiry (2 minutes), so
//! the chance of a guessed pairing is at most 3 in a million per shown code.
//!
//! Step 4 is an unauthenticated abort with a reason byte, so the other side can say why the
//! pairing ended instead of seeing the connection drop. Timeouts are the caller's: the state
//! machine has no timers, the daemon bounds the whole exchange.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hkdf::Hkdf;
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};
use spake2::{Ed25519Group, Spake2};
use zeroize::Zeroizing;

use crate::identity::{verify_signature, DeviceId, Identity};
use crate::rng::SeededRng;
use crate::time::Instant;
use crate::wire::discovery::MAX_NAME_LEN;
use crate::wire::{self, Datagram, Pairing as PairingFrame, WireError};

/// Digits in a pairing code.
pub const CODE_DIGITS: usize = 6;
/// Bytes of a SPAKE2 message over Ed25519 (a side byte and a point).
const SPAKE2_MSG_LEN: usize = 33;
const TRANSCRIPT_CONTEXT: &[u8] = b"tutti-softbus-v1 pairing";
const SIGNATURE_CONTEXT: &[u8] = b"tutti-softbus-v1 pairing identity";
const INITIATOR_NAME: &[u8] = b"tutti pairing initiator";
const RESPONDER_NAME: &[u8] = b"tutti pairing responder";
/// Bytes of an identity block before the name: Ed25519 key, X25519 key, signature, name length.
const IDENTITY_FIXED_LEN: usize = 32 + 32 + 64 + 1;

const STEP_START: u8 = 1;
const STEP_RESPONSE: u8 = 2;
const STEP_FINISH: u8 = 3;
const STEP_ABORT: u8 = 4;

/// A pairing code: [`CODE_DIGITS`] decimal digits.
#[derive(Clone, PartialEq, Eq)]
pub struct PairingCode([u8; CODE_DIGITS]);

impl PairingCode {
    /// A uniformly random code.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        // Rejection sampling keeps the 10^6 codes equally likely.
        let limit = u32::MAX - u32::MAX % 1_000_000;
        let mut n = rng.next_u32();
        while n >= limit {
            n = rng.next_u32();
        }
        let mut n = n % 1_000_000;
        let mut digits = [b'0'; CODE_DIGITS];
        for d in digits.iter_mut().rev() {
            *d = b'0' + (n % 10) as u8;
            n /= 10;
        }
        Self(digits)
    }

    /// Parses a code typed by a person: six digits, spaces and `-` ignored.
    pub fn parse(text: &str) -> Result<Self, PairingError> {
        let mut digits = [b'0'; CODE_DIGITS];
        let mut n = 0;
        for c in text.bytes().filter(|c| *c != b' ' && *c != b'-') {
            let slot = digits.get_mut(n).ok_or(PairingError::BadCode)?;
            if !c.is_ascii_digit() {
                return Err(PairingError::BadCode);
            }
            *slot = c;
            n += 1;
        }
        if n != CODE_DIGITS {
            return Err(PairingError::BadCode);
        }
        Ok(Self(digits))
    }

    /// The digits as text.
    pub fn as_str(&self) -> &str {
        core::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for PairingCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PairingCode(******)")
    }
}

/// How long a shown code lives and how often it may be tried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingLimits {
    /// The code expires this long after it was shown.
    pub lifetime: Duration,
    /// Pairing attempts (right or wrong) a code allows.
    pub max_attempts: u8,
}

impl Default for PairingLimits {
    fn default() -> Self {
        Self { lifetime: Duration::from_secs(120), max_attempts: 3 }
    }
}

/// A code shown on this device, waiting for another device to pair with it.
#[derive(Debug, Clone)]
pub struct PairingOffer {
    code: PairingCode,
    expires_at: Instant,
    attempts_left: u8,
}

impl PairingOffer {
    /// An offer of a fresh random code from `now`.
    pub fn new<R: CryptoRng + ?Sized>(now: Instant, limits: PairingLimits, rng: &mut R) -> Self {
        Self::with_code(PairingCode::generate(rng), now, limits)
    }

    /// An offer of `code` from `now`.
    pub fn with_code(code: PairingCode, now: Instant, limits: PairingLimits) -> Self {
        Self { code, expires_at: now.saturating_add(limits.lifetime), attempts_left: limits.max_attempts }
    }

    /// The code to show.
    pub fn code(&self) -> &PairingCode {
        &self.code
    }

    /// When the code expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// Attempts still allowed.
    pub fn attempts_left(&self) -> u8 {
        self.attempts_left
    }

    /// Uses one attempt at `now` and returns the code to answer it with; fails once the code
    /// expired or its attempts are used up.
    pub fn begin_attempt(&mut self, now: Instant) -> Result<PairingCode, PairingError> {
        if now >= self.expires_at {
            return Err(PairingError::NotOffered(AbortReason::Expired));
        }
        if self.attempts_left == 0 {
            return Err(PairingError::NotOffered(AbortReason::TooManyAttempts));
        }
        self.attempts_left -= 1;
        Ok(self.code.clone())
    }
}

/// Why a pairing was aborted, as carried by an abort message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortReason {
    /// The codes did not match.
    WrongCode,
    /// The responder shows no pairing code.
    NoOffer,
    /// The responder's code expired.
    Expired,
    /// The responder's code has been tried too often.
    TooManyAttempts,
    /// A message was malformed or out of order.
    Protocol,
    /// A reason this version does not know.
    Other(u8),
}

impl AbortReason {
    fn to_byte(self) -> u8 {
        match self {
            Self::WrongCode => 1,
            Self::NoOffer => 2,
            Self::Expired => 3,
            Self::TooManyAttempts => 4,
            Self::Protocol => 5,
            Self::Other(b) => b,
        }
    }

    fn from_byte(b: u8) -> Self {
        match b {
            1 => Self::WrongCode,
            2 => Self::NoOffer,
            3 => Self::Expired,
            4 => Self::TooManyAttempts,
            5 => Self::Protocol,
            other => Self::Other(other),
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongCode => f.write_str("the pairing codes do not match"),
            Self::NoOffer => {
                f.write_str("the other device is not showing a pairing code (run `tutti pair --show` there)")
            }
            Self::Expired => f.write_str("the pairing code has expired (show a new one)"),
            Self::TooManyAttempts => f.write_str("the pairing code was tried too often (show a new one)"),
            Self::Protocol => f.write_str("pairing protocol error"),
            Self::Other(b) => write!(f, "pairing aborted (reason {b})"),
        }
    }
}

/// Why a pairing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PairingError {
    /// A code is not [`CODE_DIGITS`] decimal digits.
    BadCode,
    /// The codes on the two devices differ (or someone in the middle guessed wrong).
    WrongCode,
    /// This device offers no usable code (none shown, expired, attempts used up).
    NotOffered(AbortReason),
    /// The other device aborted the pairing.
    PeerAborted(AbortReason),
    /// A frame did not decode.
    Wire(WireError),
    /// A frame arrived out of order, or a payload is malformed.
    Protocol(&'static str),
    /// The peer's identity block does not verify.
    BadIdentity,
    /// The pairing already ended.
    Finished,
}

impl fmt::Display for PairingError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCode => write!(f, "a pairing code is {CODE_DIGITS} decimal digits"),
            Self::WrongCode => f.write_str("wrong pairing code: the codes on the two devices do not match"),
            Self::NotOffered(reason) => write!(f, "no pairing possible here: {reason}"),
            Self::PeerAborted(reason) => write!(f, "the other device refused the pairing: {reason}"),
            Self::Wire(e) => write!(f, "malformed pairing frame: {e}"),
            Self::Protocol(what) => write!(f, "pairing protocol error: {what}"),
            Self::BadIdentity => f.write_str("the other device's identity does not verify"),
            Self::Finished => f.write_str("the pairing has already ended"),
        }
    }
}

impl core::error::Error for PairingError {}

impl From<WireError> for PairingError {
    fn from(e: WireError) -> Self {
        Self::Wire(e)
    }
}

/// The device at the other end of a successful pairing: what goes into the trust store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairedPeer {
    /// Its device id (derived from `signing_public`).
    pub device_id: DeviceId,
    /// Its Ed25519 public key.
    pub signing_public: [u8; 32],
    /// Its X25519 static key, the one its sessions will use.
    pub noise_static: [u8; 32],
    /// The name it gave itself.
    pub name: String,
}

/// Which side of a pairing this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairingRole {
    /// Typed the code, sent the first message.
    Initiator,
    /// Shows the code, answered.
    Responder,
}

enum State {
    /// The initiator waits for step 2.
    AwaitResponse {
        spake: Spake2<Ed25519Group>,
        msg_a: Vec<u8>,
    },
    /// The responder waits for step 3.
    AwaitFinish {
        open_key: Zeroizing<[u8; 32]>,
        transcript: [u8; 32],
    },
    Done,
}

/// One pairing exchange, sans-IO: feed it frames, send what it yields.
pub struct Pairing {
    role: PairingRole,
    pairing_id: u64,
    identity_block: IdentityBlockSource,
    state: State,
    transmits: Vec<Vec<u8>>,
}

/// What this side needs to seal its identity once the transcript is known.
struct IdentityBlockSource {
    signing_public: [u8; 32],
    noise_public: [u8; 32],
    name: String,
}

impl fmt::Debug for Pairing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pairing")
            .field("role", &self.role)
            .field("pairing_id", &self.pairing_id)
            .finish_non_exhaustive()
    }
}

impl Pairing {
    /// Starts pairing as the initiator with the code the user typed: step 1 is ready to send.
    pub fn initiate<R: CryptoRng + ?Sized>(
        identity: &Identity,
        name: &str,
        code: &PairingCode,
        rng: &mut R,
    ) -> Result<Self, PairingError> {
        let source = identity_source(identity, name)?;
        let pairing_id = rng.next_u64();
        let mut rng = SeededRng::from_rng(rng);
        let (spake, msg_a) = Spake2::<Ed25519Group>::start_a_with_rng(
            &spake2::Password::new(code.as_str().as_bytes()),
            &spake2::Identity::new(INITIATOR_NAME),
            &spake2::Identity::new(RESPONDER_NAME),
            &mut rng,
        );
        let mut pairing = Self {
            role: PairingRole::Initiator,
            pairing_id,
            identity_block: source,
            state: State::Done,
            transmits: Vec::new(),
        };
        pairing.push_frame(STEP_START, &msg_a)?;
        pairing.state = State::AwaitResponse { spake, msg_a };
        Ok(pairing)
    }

    /// Answers `first_frame` (step 1) as the responder with the code of this device's offer
    /// (from [`PairingOffer::begin_attempt`]): step 2 is ready to send.
    pub fn respond<R: CryptoRng + ?Sized>(
        identity: &Identity,
        name: &str,
        code: &PairingCode,
        first_frame: &[u8],
        rng: &mut R,
    ) -> Result<Self, PairingError> {
        let source = identity_source(identity, name)?;
        let frame = decode(first_frame)?;
        if frame.step != STEP_START {
            return Err(PairingError::Protocol("a pairing starts with step 1"));
        }
        if frame.payload.len() != SPAKE2_MSG_LEN {
            return Err(PairingError::Protocol("SPAKE2 message of the wrong length"));
        }
        let mut rng = SeededRng::from_rng(rng);
        let (spake, msg_b) = Spake2::<Ed25519Group>::start_b_with_rng(
            &spake2::Password::new(code.as_str().as_bytes()),
            &spake2::Identity::new(INITIATOR_NAME),
            &spake2::Identity::new(RESPONDER_NAME),
            &mut rng,
        );
        let key =
            Zeroizing::new(spake.finish(frame.payload).map_err(|_| PairingError::Protocol("bad SPAKE2 message"))?);
        let transcript = transcript(frame.pairing_id, frame.payload, &msg_b);
        let keys = derive_keys(&key, &transcript)?;
        let mut pairing = Self {
            role: PairingRole::Responder,
            pairing_id: frame.pairing_id,
            identity_block: source,
            state: State::Done,
            transmits: Vec::new(),
        };
        let sealed = pairing.seal_identity(identity, &keys.responder, &transcript)?;
        let mut payload = msg_b;
        payload.extend_from_slice(&sealed);
        pairing.push_frame(STEP_RESPONSE, &payload)?;
        pairing.state = State::AwaitFinish { open_key: keys.initiator, transcript };
        Ok(pairing)
    }

    /// An abort frame answering `first_frame` when this device cannot pair (no code shown,
    /// expired, attempts used up): send it and close the connection.
    pub fn refuse(first_frame: &[u8], reason: AbortReason) -> Result<Vec<u8>, PairingError> {
        let frame = decode(first_frame)?;
        Ok(wire::encode_to_vec(&PairingFrame {
            pairing_id: frame.pairing_id,
            step: STEP_ABORT,
            payload: &[reason.to_byte()],
        })?)
    }

    /// Which side this is.
    pub fn role(&self) -> PairingRole {
        self.role
    }

    /// Takes in the next frame of the exchange (the `identity` is this device's, again, to
    /// sign with). Returns the paired peer when the exchange completed on this side.
    ///
    /// Any error ends the pairing; a wrong code also queues an abort for the peer.
    pub fn handle_frame(&mut self, identity: &Identity, frame: &[u8]) -> Result<Option<PairedPeer>, PairingError> {
        let result = self.step(identity, frame);
        if result.is_err() {
            self.state = State::Done;
        }
        if let Err(e) = &result {
            let reason = match e {
                PairingError::WrongCode => Some(AbortReason::WrongCode),
                PairingError::PeerAborted(_) | PairingError::Finished => None,
                _ => Some(AbortReason::Protocol),
            };
            if let Some(reason) = reason {
                let _ = self.push_frame(STEP_ABORT, &[reason.to_byte()]);
            }
        }
        result
    }

    fn step(&mut self, identity: &Identity, bytes: &[u8]) -> Result<Option<PairedPeer>, PairingError> {
        let frame = decode(bytes)?;
        if matches!(self.state, State::Done) {
            return Err(PairingError::Finished);
        }
        if frame.pairing_id != self.pairing_id {
            return Err(PairingError::Protocol("frame of another pairing"));
        }
        if frame.step == STEP_ABORT {
            let reason = frame.payload.first().copied().map_or(AbortReason::Protocol, AbortReason::from_byte);
            return Err(PairingError::PeerAborted(reason));
        }
        match core::mem::replace(&mut self.state, State::Done) {
            State::AwaitResponse { spake, msg_a } => {
                if frame.step != STEP_RESPONSE {
                    return Err(PairingError::Protocol("expected step 2"));
                }
                let (msg_b, sealed) = frame
                    .payload
                    .split_at_checked(SPAKE2_MSG_LEN)
                    .ok_or(PairingError::Protocol("step 2 is too short"))?;
                let key =
                    Zeroizing::new(spake.finish(msg_b).map_err(|_| PairingError::Protocol("bad SPAKE2 message"))?);
                let transcript = transcript(self.pairing_id, &msg_a, msg_b);
                let keys = derive_keys(&key, &transcript)?;
                let peer = open_identity(&keys.responder, &transcript, sealed)?;
                let sealed = self.seal_identity(identity, &keys.initiator, &transcript)?;
                self.push_frame(STEP_FINISH, &sealed)?;
                Ok(Some(peer))
            }
            State::AwaitFinish { open_key, transcript } => {
                if frame.step != STEP_FINISH {
                    return Err(PairingError::Protocol("expected step 3"));
                }
                Ok(Some(open_identity(&open_key, &transcript, frame.payload)?))
            }
            State::Done => Err(PairingError::Finished),
        }
    }

    /// The next frame to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        if self.transmits.is_empty() {
            None
        } else {
            Some(self.transmits.remove(0))
        }
    }

    fn push_frame(&mut self, step: u8, payload: &[u8]) -> Result<(), PairingError> {
        let frame = wire::encode_to_vec(&PairingFrame { pairing_id: self.pairing_id, step, payload })?;
        self.transmits.push(frame);
        Ok(())
    }

    fn seal_identity(
        &self,
        identity: &Identity,
        key: &[u8; 32],
        transcript: &[u8; 32],
    ) -> Result<Vec<u8>, PairingError> {
        let source = &self.identity_block;
        let mut signed = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 64);
        signed.extend_from_slice(SIGNATURE_CONTEXT);
        signed.extend_from_slice(transcript);
        signed.extend_from_slice(&source.noise_public);
        let mut block = Zeroizing::new(Vec::with_capacity(IDENTITY_FIXED_LEN + source.name.len()));
        block.extend_from_slice(&source.signing_public);
        block.extend_from_slice(&source.noise_public);
        block.extend_from_slice(&identity.sign(&signed));
        block.push(u8::try_from(source.name.len()).map_err(|_| PairingError::Protocol("name too long"))?);
        block.extend_from_slice(source.name.as_bytes());
        let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| PairingError::Protocol("key length"))?;
        cipher
            .encrypt(&Nonce::from([0u8; 12]), Payload { msg: &block, aad: transcript })
            .map_err(|_| PairingError::Protocol("sealing failed"))
    }
}

fn identity_source(identity: &Identity, name: &str) -> Result<IdentityBlockSource, PairingError> {
    if name.len() > MAX_NAME_LEN {
        return Err(PairingError::Protocol("device name longer than 64 bytes"));
    }
    Ok(IdentityBlockSource {
        signing_public: identity.signing_public(),
        noise_public: identity.noise_public(),
        name: String::from(name),
    })
}

fn decode(bytes: &[u8]) -> Result<PairingFrame<'_>, PairingError> {
    match wire::decode_datagram(bytes)? {
        Datagram::Pairing(p) => Ok(p),
        _ => Err(PairingError::Protocol("not a pairing frame")),
    }
}

fn transcript(pairing_id: u64, msg_a: &[u8], msg_b: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(TRANSCRIPT_CONTEXT);
    h.update(pairing_id.to_be_bytes());
    h.update(msg_a);
    h.update(msg_b);
    h.finalize().into()
}

struct SealingKeys {
    initiator: Zeroizing<[u8; 32]>,
    responder: Zeroizing<[u8; 32]>,
}

fn derive_keys(spake_key: &[u8], transcript: &[u8; 32]) -> Result<SealingKeys, PairingError> {
    let hk = Hkdf::<Sha256>::new(Some(transcript), spake_key);
    let mut keys = SealingKeys { initiator: Zeroizing::new([0; 32]), responder: Zeroizing::new([0; 32]) };
    hk.expand(b"tutti pairing initiator identity", keys.initiator.as_mut())
        .and_then(|()| hk.expand(b"tutti pairing responder identity", keys.responder.as_mut()))
        .map_err(|_| PairingError::Protocol("key derivation"))?;
    Ok(keys)
}

/// Opens and checks a sealed identity block.
fn open_identity(key: &[u8; 32], transcript: &[u8; 32], sealed: &[u8]) -> Result<PairedPeer, PairingError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| PairingError::Protocol("key length"))?;
    let block = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from([0u8; 12]), Payload { msg: sealed, aad: transcript })
            .map_err(|_| PairingError::WrongCode)?,
    );
    let mut r = wire::cursor::Reader::new(&block);
    let signing_public: [u8; 32] = r.array().map_err(|_| PairingError::BadIdentity)?;
    let noise_static: [u8; 32] = r.array().map_err(|_| PairingError::BadIdentity)?;
    let signature: [u8; 64] = r.array().map_err(|_| PairingError::BadIdentity)?;
    let name_len = r.u8().map_err(|_| PairingError::BadIdentity)?;
    if usize::from(name_len) > MAX_NAME_LEN {
        return Err(PairingError::BadIdentity);
    }
    let name = r.text(usize::from(name_len)).map_err(|_| PairingError::BadIdentity)?;
    r.finish().map_err(|_| PairingError::BadIdentity)?;
    let mut signed = Vec::with_capacity(SIGNATURE_CONTEXT.len() + 64);
    signed.extend_from_slice(SIGNATURE_CONTEXT);
    signed.extend_from_slice(transcript);
    signed.extend_from_slice(&noise_static);
    if !verify_signature(&signing_public, &signed, &signature) {
        return Err(PairingError::BadIdentity);
    }
    Ok(PairedPeer {
        device_id: DeviceId::from_signing_public(&signing_public),
        signing_public,
        noise_static,
        name: String::from(name),
    })
}

#[cfg(test)]
mod tests;
