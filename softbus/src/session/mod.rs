//! Secure sessions: a Noise XX handshake with mutual authentication, then AES-256-GCM
//! records with explicit counters and replay protection.
//!
//! Design: one [`Session`] is the sans-IO state machine of one session between two devices.
//! The initiator calls [`Session::initiate`], the responder [`Session::accept`] with the
//! first handshake datagram; both then feed every datagram of the session to
//! [`Session::handle_datagram`] and send what [`Session::poll_transmit`] yields. The
//! handshake is `Noise_XX_25519_AESGCM_SHA256` (snow, over the RustCrypto resolver of
//! [`noise_crypto`]): forward secrecy from the ephemeral keys, and each side's static X25519
//! key is transmitted encrypted. The encrypted payloads of messages 2 and 3 carry an
//! identity proof: the sender's Ed25519 public key (hence its device id) and its signature
//! over its X25519 static key. The receiver verifies it and asks its [`TrustPolicy`]; an
//! untrusted device ends the handshake with [`SessionError::Untrusted`] before any record
//! can flow (the initiator checks before revealing its own identity in message 3).
//!
//! Records use snow's stateless transport with the 64-bit counter sent in clear as the
//! nonce, so records may be lost or reordered (datagrams). The receiver checks the counter
//! against a [`replay::ReplayWindow`] before decrypting and marks it only after the record
//! authenticated. A bad record is dropped with a typed error and the session goes on; a bad
//! handshake message fails the session for good.

pub(crate) mod noise_crypto;
pub mod replay;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use snow::{HandshakeState, StatelessTransportState};

use crate::identity::{verify_signature, DeviceId, Identity};
use crate::rng::SeededRng;
use crate::wire::session::{MAX_HANDSHAKE_MSG_LEN, MAX_RECORD_PLAINTEXT, TAG_LEN};
use crate::wire::{self, Datagram, Handshake, Record, WireError};
use replay::{ReplayError, ReplayWindow};

/// The Noise protocol name of every session.
pub const NOISE_PARAMS: &str = "Noise_XX_25519_AESGCM_SHA256";
/// The Noise prologue: both sides must agree on it, binding the handshake to this protocol.
const PROLOGUE: &[u8] = b"tutti-softbus-v1";
/// What the Ed25519 key signs in an identity proof, before the X25519 static key.
const PROOF_CONTEXT: &[u8] = b"tutti-softbus-v1 noise static";
/// Bytes of an identity proof: Ed25519 public key and signature.
const PROOF_LEN: usize = 32 + 64;
/// Records and events kept unpolled, at most; older ones are dropped.
const MAX_PENDING: usize = 1024;

/// Decides which devices may hold a session with this one.
pub trait TrustPolicy {
    /// Whether `peer` (authenticated by the handshake) is trusted.
    fn is_trusted(&self, peer: &PeerIdentity) -> bool;
}

impl<F: Fn(&PeerIdentity) -> bool> TrustPolicy for F {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        self(peer)
    }
}

/// Who is at the other end, as proven by the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerIdentity {
    /// Its device id.
    pub device_id: DeviceId,
    /// Its Ed25519 public key.
    pub signing_public: [u8; 32],
    /// Its X25519 static key.
    pub noise_static: [u8; 32],
}

/// Which side of the handshake this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Sent the first message.
    Initiator,
    /// Answered it.
    Responder,
}

/// What a session reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// The handshake completed with this authenticated, trusted peer.
    Established(PeerIdentity),
    /// The plaintext of one record, in arrival order.
    Received(Vec<u8>),
}

/// Why a session refused an input or an operation.
#[derive(Debug, PartialEq)]
pub enum SessionError {
    /// The datagram did not decode.
    Wire(WireError),
    /// The Noise handshake failed (bad message, failed decryption, bad key).
    Noise(snow::Error),
    /// A frame arrived that this state does not expect (a step out of order, a record
    /// before the handshake completed, a discovery frame).
    Unexpected(&'static str),
    /// The frame belongs to another session.
    WrongSession {
        /// This session's id.
        expected: u64,
        /// The frame's session id.
        got: u64,
    },
    /// The peer's identity proof is malformed or its signature does not verify.
    BadIdentityProof,
    /// The peer authenticated but the trust policy refuses it.
    Untrusted(DeviceId),
    /// The session failed earlier and can do nothing more.
    Failed,
    /// The handshake has not completed yet.
    NotEstablished,
    /// The record counter was seen before, or is behind the replay window.
    Replay(ReplayError),
    /// The record failed authentication: tampered, or not from this session.
    Tampered {
        /// The record counter claimed.
        counter: u64,
    },
    /// The plaintext is larger than one record can carry.
    TooLarge(usize),
    /// The send counter reached its end: the session must be replaced.
    CounterExhausted,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wire(e) => write!(f, "malformed session frame: {e}"),
            Self::Noise(e) => write!(f, "noise handshake failed: {e:?}"),
            Self::Unexpected(what) => write!(f, "unexpected frame: {what}"),
            Self::WrongSession { expected, got } => {
                write!(f, "frame for session {got:#018x} arrived at session {expected:#018x}")
            }
            Self::BadIdentityProof => f.write_str("the peer's identity proof does not verify"),
            Self::Untrusted(id) => write!(f, "device {id} is not trusted: handshake refused"),
            Self::Failed => f.write_str("the session has failed"),
            Self::NotEstablished => f.write_str("the handshake has not completed"),
            Self::Replay(e) => write!(f, "{e}"),
            Self::Tampered { counter } => write!(f, "record {counter} failed authentication (tampered)"),
            Self::TooLarge(n) => write!(f, "plaintext of {n} bytes exceeds the record limit of {MAX_RECORD_PLAINTEXT}"),
            Self::CounterExhausted => f.write_str("record counter exhausted: start a new session"),
        }
    }
}

impl core::error::Error for SessionError {}

impl From<WireError> for SessionError {
    fn from(e: WireError) -> Self {
        Self::Wire(e)
    }
}

impl From<snow::Error> for SessionError {
    fn from(e: snow::Error) -> Self {
        Self::Noise(e)
    }
}

impl From<ReplayError> for SessionError {
    fn from(e: ReplayError) -> Self {
        Self::Replay(e)
    }
}

enum State {
    /// Waiting for handshake message `expect`.
    Handshaking {
        noise: Box<HandshakeState>,
        expect: u8,
    },
    Established {
        transport: Box<StatelessTransportState>,
        send_counter: u64,
        window: ReplayWindow,
    },
    Failed,
}

/// One secure session, sans-IO.
pub struct Session {
    role: Role,
    session_id: u64,
    state: State,
    proof: [u8; PROOF_LEN],
    peer: Option<PeerIdentity>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<SessionEvent>,
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Handshaking { expect: 2, .. } => "awaiting handshake message 2",
            State::Handshaking { .. } => "awaiting handshake message 3",
            State::Established { .. } => "established",
            State::Failed => "failed",
        };
        f.debug_struct("Session")
            .field("role", &self.role)
            .field("session_id", &self.session_id)
            .field("state", &state)
            .field("peer", &self.peer.map(|p| p.device_id))
            .finish_non_exhaustive()
    }
}

fn identity_proof(identity: &Identity) -> [u8; PROOF_LEN] {
    let mut signed = Vec::with_capacity(PROOF_CONTEXT.len() + 32);
    signed.extend_from_slice(PROOF_CONTEXT);
    signed.extend_from_slice(&identity.noise_public());
    let mut proof = [0u8; PROOF_LEN];
    let (key, sig) = proof.split_at_mut(32);
    key.copy_from_slice(&identity.signing_public());
    sig.copy_from_slice(&identity.sign(&signed));
    proof
}

/// Checks `payload` as the identity proof of the holder of `noise_static`.
fn verify_identity_proof(payload: &[u8], noise_static: &[u8]) -> Result<PeerIdentity, SessionError> {
    let noise_static = <[u8; 32]>::try_from(noise_static).map_err(|_| SessionError::BadIdentityProof)?;
    let proof = <&[u8; PROOF_LEN]>::try_from(payload).map_err(|_| SessionError::BadIdentityProof)?;
    let (key, sig) = proof.split_at(32);
    let signing_public = <[u8; 32]>::try_from(key).map_err(|_| SessionError::BadIdentityProof)?;
    let signature = <[u8; 64]>::try_from(sig).map_err(|_| SessionError::BadIdentityProof)?;
    let mut signed = Vec::with_capacity(PROOF_CONTEXT.len() + 32);
    signed.extend_from_slice(PROOF_CONTEXT);
    signed.extend_from_slice(&noise_static);
    if !verify_signature(&signing_public, &signed, &signature) {
        return Err(SessionError::BadIdentityProof);
    }
    Ok(PeerIdentity { device_id: DeviceId::from_signing_public(&signing_public), signing_public, noise_static })
}

fn builder<'a, R: CryptoRng + ?Sized>(secret: &'a [u8; 32], rng: &mut R) -> Result<snow::Builder<'a>, SessionError> {
    let params = NOISE_PARAMS.parse().map_err(SessionError::Noise)?;
    let resolver = noise_crypto::Resolver::new(SeededRng::from_rng(rng));
    Ok(snow::Builder::with_resolver(params, Box::new(resolver)).local_private_key(secret)?.prologue(PROLOGUE)?)
}

impl Session {
    /// Starts a session as initiator: the first handshake message is ready to send.
    pub fn initiate<R: CryptoRng + ?Sized>(identity: &Identity, rng: &mut R) -> Result<Self, SessionError> {
        let session_id = rng.next_u64();
        let secret = identity.noise_secret();
        let noise = builder(&secret, rng)?.build_initiator()?;
        let mut session = Self::new(Role::Initiator, session_id, identity, noise, 2);
        session.write_handshake(1, &[])?;
        Ok(session)
    }

    /// Starts a session as responder to `datagram`, the initiator's first handshake message;
    /// the second message is ready to send.
    pub fn accept<R: CryptoRng + ?Sized>(
        identity: &Identity,
        datagram: &[u8],
        rng: &mut R,
    ) -> Result<Self, SessionError> {
        let Datagram::Handshake(Handshake { session_id, step: 1, message }) = wire::decode_datagram(datagram)? else {
            return Err(SessionError::Unexpected("a session starts with handshake message 1"));
        };
        let secret = identity.noise_secret();
        let mut noise = builder(&secret, rng)?.build_responder()?;
        let mut payload = vec![0u8; MAX_HANDSHAKE_MSG_LEN];
        noise.read_message(message, &mut payload)?;
        let mut session = Self::new(Role::Responder, session_id, identity, noise, 3);
        let proof = session.proof;
        session.write_handshake(2, &proof)?;
        Ok(session)
    }

    fn new(role: Role, session_id: u64, identity: &Identity, noise: HandshakeState, expect: u8) -> Self {
        Self {
            role,
            session_id,
            state: State::Handshaking { noise: Box::new(noise), expect },
            proof: identity_proof(identity),
            peer: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// This session's id (chosen by the initiator, carried by every frame).
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// Which side this is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The authenticated peer, once the handshake completed.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.peer.as_ref()
    }

    /// Whether records can flow.
    pub fn is_established(&self) -> bool {
        matches!(self.state, State::Established { .. })
    }

    /// Whether the session failed for good.
    pub fn is_failed(&self) -> bool {
        matches!(self.state, State::Failed)
    }

    /// Takes in a datagram of this session.
    ///
    /// A bad handshake message, a bad identity proof or an untrusted peer fails the session;
    /// a bad record (replayed, too old, tampered) is dropped and the session goes on.
    pub fn handle_datagram(&mut self, datagram: &[u8], trust: &dyn TrustPolicy) -> Result<(), SessionError> {
        let decoded = wire::decode_datagram(datagram)?;
        match decoded {
            Datagram::Handshake(h) => {
                self.check_session(h.session_id)?;
                let result = self.on_handshake(h, trust);
                if result.is_err() && !self.is_established() {
                    self.state = State::Failed;
                }
                result
            }
            Datagram::Record(r) => {
                self.check_session(r.session_id)?;
                self.on_record(r)
            }
            Datagram::Beacon(_) | Datagram::Query(_) => Err(SessionError::Unexpected("discovery frame on a session")),
            Datagram::Pairing(_) => Err(SessionError::Unexpected("pairing frame on a session")),
        }
    }

    /// Encrypts `plaintext` as the next record; the datagram is ready to send.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), SessionError> {
        if plaintext.len() > MAX_RECORD_PLAINTEXT {
            return Err(SessionError::TooLarge(plaintext.len()));
        }
        let State::Established { transport, send_counter, .. } = &mut self.state else {
            return Err(self.not_ready());
        };
        // snow refuses the last nonce value; stop one before it.
        if *send_counter >= u64::MAX - 1 {
            return Err(SessionError::CounterExhausted);
        }
        let counter = *send_counter;
        let mut ciphertext = vec![0u8; plaintext.len() + TAG_LEN];
        let len = transport.write_message(counter, plaintext, &mut ciphertext)?;
        ciphertext.truncate(len);
        *send_counter += 1;
        let frame = wire::encode_to_vec(&Record { session_id: self.session_id, counter, ciphertext: &ciphertext })?;
        push_bounded(&mut self.transmits, frame);
        Ok(())
    }

    /// The next datagram to send to the peer.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn not_ready(&self) -> SessionError {
        match self.state {
            State::Failed => SessionError::Failed,
            _ => SessionError::NotEstablished,
        }
    }

    fn check_session(&self, got: u64) -> Result<(), SessionError> {
        if got != self.session_id {
            return Err(SessionError::WrongSession { expected: self.session_id, got });
        }
        Ok(())
    }

    fn on_handshake(&mut self, h: Handshake<'_>, trust: &dyn TrustPolicy) -> Result<(), SessionError> {
        let State::Handshaking { noise, expect } = &mut self.state else {
            return Err(match self.state {
                State::Failed => SessionError::Failed,
                _ => SessionError::Unexpected("handshake message after the handshake completed"),
            });
        };
        if h.step != *expect {
            return Err(SessionError::Unexpected("handshake message out of order"));
        }
        let mut payload = vec![0u8; MAX_HANDSHAKE_MSG_LEN];
        let len = noise.read_message(h.message, &mut payload)?;
        let proof = payload.get(..len).ok_or(SessionError::BadIdentityProof)?;
        let remote_static = noise.get_remote_static().ok_or(SessionError::BadIdentityProof)?;
        let peer = verify_identity_proof(proof, remote_static)?;
        if !trust.is_trusted(&peer) {
            return Err(SessionError::Untrusted(peer.device_id));
        }
        if self.role == Role::Initiator {
            let proof = self.proof;
            self.write_handshake(3, &proof)?;
        }
        let State::Handshaking { noise, .. } = core::mem::replace(&mut self.state, State::Failed) else {
            return Err(SessionError::Failed);
        };
        let transport = noise.into_stateless_transport_mode()?;
        self.state =
            State::Established { transport: Box::new(transport), send_counter: 0, window: ReplayWindow::default() };
        self.peer = Some(peer);
        push_bounded(&mut self.events, SessionEvent::Established(peer));
        Ok(())
    }

    fn on_record(&mut self, r: Record<'_>) -> Result<(), SessionError> {
        let State::Established { transport, window, .. } = &mut self.state else {
            return Err(self.not_ready());
        };
        window.check(r.counter)?;
        let mut plaintext = vec![0u8; r.ciphertext.len()];
        let len = transport
            .read_message(r.counter, r.ciphertext, &mut plaintext)
            .map_err(|_| SessionError::Tampered { counter: r.counter })?;
        window.mark(r.counter);
        plaintext.truncate(len);
        push_bounded(&mut self.events, SessionEvent::Received(plaintext));
        Ok(())
    }

    fn write_handshake(&mut self, step: u8, payload: &[u8]) -> Result<(), SessionError> {
        let State::Handshaking { noise, .. } = &mut self.state else {
            return Err(SessionError::Failed);
        };
        let mut message = vec![0u8; MAX_HANDSHAKE_MSG_LEN];
        let len = noise.write_message(payload, &mut message)?;
        let message = message.get(..len).ok_or(SessionError::Unexpected("noise message length"))?;
        let frame = wire::encode_to_vec(&Handshake { session_id: self.session_id, step, message })?;
        push_bounded(&mut self.transmits, frame);
        Ok(())
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= MAX_PENDING {
        queue.pop_front();
    }
    queue.push_back(item);
}

#[cfg(test)]
mod tests;
