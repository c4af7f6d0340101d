//! Connections: one secure session carried over a reliable, ordered byte stream (TCP), with a
//! handshake timeout, keepalive probes and failure detection.
//!
//! Design: the soft bus sends sessions over TCP and keeps UDP multicast for discovery only
//! (the reasons are in `docs/softbus/README.md`, "Transport"). On a stream, frames simply
//! follow each other; [`FrameReader`] cuts the incoming bytes into whole frames with the
//! length in each frame header ([`crate::wire::decode_prefix`]). A [`Connection`] wraps one
//! [`Session`] and adds what a stream needs and a datagram session does not:
//!
//! - the handshake must complete within `handshake_timeout` of the connection's start;
//! - when nothing was heard from the peer for `keepalive_interval`, a keepalive probe
//!   (`ChannelMessage::Keepalive`) goes out, and at most one per interval; probes are answered
//!   automatically and never reach the caller;
//! - a peer silent for `idle_timeout` is declared lost ([`ConnectionEvent::ConnectionLost`]
//!   with [`CloseReason::PeerSilent`]).
//!
//! Everything is driven by the caller: bytes in ([`Connection::handle_bytes`]), frames out
//! ([`Connection::poll_transmit`]), timers ([`Connection::poll`] at [`Connection::poll_at`]),
//! events out ([`Connection::poll_event`]). A fatal problem (a bad handshake, an untrusted
//! peer, garbage on the stream, a timeout) ends the connection with exactly one
//! `ConnectionLost` event carrying a typed [`CloseReason`]. A record that fails the replay
//! window or authentication is dropped and counted, as in a datagram session: on TCP it can
//! only come from an attacker injecting segments.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use rand_core::CryptoRng;

use crate::identity::Identity;
use crate::session::{PeerIdentity, Session, SessionError, SessionEvent, TrustPolicy};
use crate::time::Instant;
use crate::wire::{self, encode_messages, frame, messages, ChannelMessage, WireError};

/// Frames and events kept unpolled, at most; beyond that the oldest are dropped.
const MAX_PENDING: usize = 1024;

/// Cuts a byte stream into whole frames.
///
/// Bytes are appended with [`FrameReader::push`]; [`FrameReader::next_frame`] returns the
/// next complete frame, `None` while one is incomplete, or the error of a frame that can
/// never decode (bad magic, unknown version or type: the stream has lost its framing). The
/// buffer holds at most one incomplete frame (at most 65,543 bytes) plus what was pushed
/// since the last drain.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
}

impl FrameReader {
    /// An empty reader.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends bytes received from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole frame, or `None` if more bytes are needed.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>, WireError> {
        match frame::Frame::new_checked(&self.buf[..]) {
            Ok(f) => {
                let total = f.total_len();
                let rest = self.buf.split_off(total.min(self.buf.len()));
                Ok(Some(core::mem::replace(&mut self.buf, rest)))
            }
            Err(WireError::Truncated { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Bytes received but not yet returned as a frame.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Takes the buffered bytes out (to hand them to a [`Connection`] after the first frame).
    pub fn take_buffered(&mut self) -> Vec<u8> {
        core::mem::take(&mut self.buf)
    }
}

/// The timers of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The handshake must complete this soon after the connection started.
    pub handshake_timeout: Duration,
    /// A keepalive probe goes out when the peer was silent this long (and at most one per
    /// interval).
    pub keepalive_interval: Duration,
    /// A peer silent this long is lost.
    pub idle_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            keepalive_interval: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(20),
        }
    }
}

/// Why a connection ended.
#[derive(Debug, PartialEq)]
pub enum CloseReason {
    /// The handshake did not complete within `handshake_timeout`.
    HandshakeTimeout,
    /// Nothing was heard from the peer for `silent_for` (at least `idle_timeout`).
    PeerSilent {
        /// How long the peer had been silent.
        silent_for: Duration,
    },
    /// The handshake failed: bad message, bad identity proof, or an untrusted peer
    /// ([`SessionError::Untrusted`]).
    Handshake(SessionError),
    /// The stream carried bytes that are not a session frame: framing is lost.
    Malformed(WireError),
    /// A frame arrived that a session never accepts at this point.
    Protocol(SessionError),
    /// The peer closed the stream.
    PeerClosed,
    /// The caller closed the connection.
    Local,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HandshakeTimeout => f.write_str("the handshake did not complete in time"),
            Self::PeerSilent { silent_for } => {
                write!(f, "connection lost: the peer was silent for {} ms", silent_for.as_millis())
            }
            Self::Handshake(e) => write!(f, "handshake failed: {e}"),
            Self::Malformed(e) => write!(f, "the stream carried a malformed frame: {e}"),
            Self::Protocol(e) => write!(f, "protocol violation: {e}"),
            Self::PeerClosed => f.write_str("the peer closed the connection"),
            Self::Local => f.write_str("closed locally"),
        }
    }
}

/// What a connection reports.
#[derive(Debug, PartialEq)]
pub enum ConnectionEvent {
    /// The handshake completed with this authenticated, trusted peer.
    Established(PeerIdentity),
    /// The plaintext of one record holding channel messages other than keepalives (it may
    /// hold keepalives too; they were answered already).
    Received(Vec<u8>),
    /// The connection ended; nothing more will happen. Reported exactly once.
    ConnectionLost(CloseReason),
}

/// Why a connection refused an operation.
#[derive(Debug, PartialEq)]
pub enum ConnectionError {
    /// The session refused it (not established yet, plaintext too large, ...).
    Session(SessionError),
    /// A keepalive could not be encoded (never happens with valid tokens).
    Wire(WireError),
    /// The connection has ended.
    Closed,
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Session(e) => write!(f, "{e}"),
            Self::Wire(e) => write!(f, "{e}"),
            Self::Closed => f.write_str("the connection has ended"),
        }
    }
}

impl core::error::Error for ConnectionError {}

impl From<SessionError> for ConnectionError {
    fn from(e: SessionError) -> Self {
        Self::Session(e)
    }
}

/// Counters for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectionStats {
    /// Records dropped: replayed, behind the window, or failing authentication.
    pub records_dropped: u64,
    /// Keepalive probes sent.
    pub keepalives_sent: u64,
    /// Keepalive probes answered.
    pub keepalives_answered: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Handshaking,
    Established,
    Closed,
}

/// One session over a byte stream, sans-IO.
#[derive(Debug)]
pub struct Connection {
    config: ConnectionConfig,
    session: Session,
    reader: FrameReader,
    phase: Phase,
    started: Instant,
    last_received: Instant,
    last_probe: Option<Instant>,
    next_token: u64,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ConnectionEvent>,
    stats: ConnectionStats,
}

impl Connection {
    /// Opens a connection as the initiator at `now`: the first handshake frame is ready to send.
    pub fn connect<R: CryptoRng + ?Sized>(
        identity: &Identity,
        now: Instant,
        config: ConnectionConfig,
        rng: &mut R,
    ) -> Result<Self, ConnectionError> {
        let session = Session::initiate(identity, rng)?;
        Ok(Self::with_session(session, now, config))
    }

    /// Accepts a connection whose first frame (handshake message 1) is `first_frame`, at
    /// `now`; the answer is ready to send. Feed the bytes that followed the first frame to
    /// [`Connection::handle_bytes`].
    pub fn accept<R: CryptoRng + ?Sized>(
        identity: &Identity,
        first_frame: &[u8],
        now: Instant,
        config: ConnectionConfig,
        rng: &mut R,
    ) -> Result<Self, ConnectionError> {
        let session = Session::accept(identity, first_frame, rng)?;
        Ok(Self::with_session(session, now, config))
    }

    fn with_session(mut session: Session, now: Instant, config: ConnectionConfig) -> Self {
        let mut transmits = VecDeque::new();
        while let Some(frame) = session.poll_transmit() {
            transmits.push_back(frame);
        }
        Self {
            config,
            session,
            reader: FrameReader::new(),
            phase: Phase::Handshaking,
            started: now,
            last_received: now,
            last_probe: None,
            next_token: 1,
            transmits,
            events: VecDeque::new(),
            stats: ConnectionStats::default(),
        }
    }

    /// The authenticated peer, once established.
    pub fn peer(&self) -> Option<&PeerIdentity> {
        self.session.peer()
    }

    /// Whether records can flow.
    pub fn is_established(&self) -> bool {
        self.phase == Phase::Established
    }

    /// Whether the connection has ended.
    pub fn is_closed(&self) -> bool {
        self.phase == Phase::Closed
    }

    /// The counters.
    pub fn stats(&self) -> &ConnectionStats {
        &self.stats
    }

    /// Takes in bytes read from the stream at `now`.
    ///
    /// Problems with the input end the connection with a `ConnectionLost` event rather than
    /// an error; the only error is calling this on a connection that has ended.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8], trust: &dyn TrustPolicy) -> Result<(), ConnectionError> {
        if self.phase == Phase::Closed {
            return Err(ConnectionError::Closed);
        }
        self.reader.push(bytes);
        while self.phase != Phase::Closed {
            let frame = match self.reader.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => {
                    self.close(CloseReason::Malformed(e));
                    break;
                }
            };
            self.on_frame(now, &frame, trust);
        }
        Ok(())
    }

    fn on_frame(&mut self, now: Instant, frame: &[u8], trust: &dyn TrustPolicy) {
        match self.session.handle_datagram(frame, trust) {
            Ok(()) => self.last_received = now,
            Err(SessionError::Replay(_) | SessionError::Tampered { .. }) => self.stats.records_dropped += 1,
            Err(e) if self.phase == Phase::Handshaking => self.close(CloseReason::Handshake(e)),
            Err(e) => self.close(CloseReason::Protocol(e)),
        }
        while let Some(frame) = self.session.poll_transmit() {
            push_bounded(&mut self.transmits, frame);
        }
        while let Some(event) = self.session.poll_event() {
            match event {
                SessionEvent::Established(peer) if self.phase == Phase::Handshaking => {
                    self.phase = Phase::Established;
                    push_bounded(&mut self.events, ConnectionEvent::Established(peer));
                }
                SessionEvent::Established(_) => {}
                SessionEvent::Received(plaintext) => self.on_plaintext(plaintext),
            }
        }
    }

    fn on_plaintext(&mut self, plaintext: Vec<u8>) {
        let mut other = false;
        let mut answers = Vec::new();
        for message in messages(&plaintext) {
            match message {
                Ok(ChannelMessage::Keepalive { token, reply: false }) => answers.push(token),
                Ok(ChannelMessage::Keepalive { reply: true, .. }) => {}
                _ => other = true,
            }
        }
        for token in answers {
            if self.send_keepalive(token, true).is_ok() {
                self.stats.keepalives_answered += 1;
            }
        }
        if other {
            push_bounded(&mut self.events, ConnectionEvent::Received(plaintext));
        }
    }

    /// Encrypts `plaintext` (channel messages) as the next record; the frame is ready to send.
    pub fn send(&mut self, plaintext: &[u8]) -> Result<(), ConnectionError> {
        if self.phase == Phase::Closed {
            return Err(ConnectionError::Closed);
        }
        self.session.send(plaintext)?;
        while let Some(frame) = self.session.poll_transmit() {
            push_bounded(&mut self.transmits, frame);
        }
        Ok(())
    }

    fn send_keepalive(&mut self, token: u64, reply: bool) -> Result<(), ConnectionError> {
        let bytes = encode_messages(&[ChannelMessage::Keepalive { token, reply }]).map_err(ConnectionError::Wire)?;
        self.send(&bytes)
    }

    /// Does what is due at `now`: the handshake timeout, keepalive probes, failure detection.
    pub fn poll(&mut self, now: Instant) {
        match self.phase {
            Phase::Closed => {}
            Phase::Handshaking => {
                if now >= self.started.saturating_add(self.config.handshake_timeout) {
                    self.close(CloseReason::HandshakeTimeout);
                }
            }
            Phase::Established => {
                let silent_for = now.saturating_duration_since(self.last_received);
                if silent_for >= self.config.idle_timeout {
                    self.close(CloseReason::PeerSilent { silent_for });
                } else if now >= self.next_probe_at() {
                    let token = self.next_token;
                    self.next_token = self.next_token.wrapping_add(1);
                    if self.send_keepalive(token, false).is_ok() {
                        self.stats.keepalives_sent += 1;
                    }
                    self.last_probe = Some(now);
                }
            }
        }
    }

    fn next_probe_at(&self) -> Instant {
        let quiet = self.last_received.saturating_add(self.config.keepalive_interval);
        match self.last_probe {
            Some(at) => quiet.max(at.saturating_add(self.config.keepalive_interval)),
            None => quiet,
        }
    }

    /// When [`Connection::poll`] next has something to do; `None` once closed.
    pub fn poll_at(&self) -> Option<Instant> {
        match self.phase {
            Phase::Closed => None,
            Phase::Handshaking => Some(self.started.saturating_add(self.config.handshake_timeout)),
            Phase::Established => {
                Some(self.next_probe_at().min(self.last_received.saturating_add(self.config.idle_timeout)))
            }
        }
    }

    /// Ends the connection from this side: a `ConnectionLost` event with
    /// [`CloseReason::Local`] follows, unless it had ended already.
    pub fn close_local(&mut self) {
        self.close(CloseReason::Local);
    }

    /// Tells the connection that the peer closed the stream (a read returned end of file): a
    /// `ConnectionLost` event with [`CloseReason::PeerClosed`] follows, unless it had ended.
    pub fn stream_ended(&mut self) {
        self.close(CloseReason::PeerClosed);
    }

    fn close(&mut self, reason: CloseReason) {
        if self.phase == Phase::Closed {
            return;
        }
        self.phase = Phase::Closed;
        push_bounded(&mut self.events, ConnectionEvent::ConnectionLost(reason));
    }

    /// The next frame to write to the stream.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ConnectionEvent> {
        self.events.pop_front()
    }
}

fn push_bounded<T>(queue: &mut VecDeque<T>, item: T) {
    if queue.len() >= MAX_PENDING {
        queue.pop_front();
    }
    queue.push_back(item);
}

/// The frame type of the first frame on a stream, to choose between a session and a pairing.
pub fn first_frame_type(frame: &[u8]) -> Result<wire::FrameType, WireError> {
    Ok(frame::Frame::new_checked(frame)?.frame_type())
}

#[cfg(test)]
mod tests;
