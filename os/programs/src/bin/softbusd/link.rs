//! One TCP connection of the server: an incoming one until its first frame says what it is, a
//! session (`softbus::connection::Connection` with an RPC client and server on it), or a
//! pairing exchange (either side).
//!
//! Design: nothing here blocks. `Link::pump` reads what the network service has, feeds the
//! machines, serves requests, hands finished calls to their local callers and queues what
//! the machines yield; bytes the service cannot take yet wait in `out`. Every phase has a
//! deadline, so a silent peer costs one socket for a bounded time.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::time::Duration;

use softbus::capability::Capability;
use softbus::connection::{first_frame_type, CloseReason, Connection, ConnectionEvent, FrameReader};
use softbus::file::FileOffer;
use softbus::identity::DeviceId;
use softbus::pairing::{AbortReason, Pairing, PairingCode, PairingError};
use softbus::rpc::{RpcClient, RpcOutcome, RpcServer, ServerEvent};
use softbus::session::SessionError;
use softbus::time::Instant;
use softbus::wire::{messages, ChannelMessage, FileStatus, FrameType, RpcErrorCode};
use svc::net::{tcp_state, NetError, TcpStream};
use svc::softbus::failure;

use crate::files::Files;
use crate::{Bus, Failure, Verdict, Waiter, ASK_TIMEOUT};

/// How long an incoming connection may take to send its first frame, and a TCP connect.
const FIRST_FRAME: Duration = Duration::from_secs(10);
/// The longest a pairing exchange may take, on either side.
const PAIRING_TIMEOUT: Duration = Duration::from_secs(15);
/// Bytes read from one connection in one pump (others get their turn).
const READ_BUDGET: usize = 64 * 1024;
/// Bytes of output a link may hold before it stops producing more.
const OUT_MAX: usize = 64 * 1024;

/// What a local caller asked of a session.
pub enum Work {
    /// An RPC call.
    Call { method: String, payload: Vec<u8>, timeout: Duration },
    /// Sending the file at `path`.
    Send { path: String },
}

/// Work for a session, waiting until it is established.
pub struct Queued {
    pub waiter: Waiter,
    pub work: Work,
}

/// An encrypted session and the channels on it.
pub struct Session {
    conn: Connection,
    client: RpcClient,
    server: RpcServer,
    /// The authenticated peer, once established.
    pub peer: Option<DeviceId>,
    /// The device this side dialled, if it did.
    expected: Option<DeviceId>,
    /// Local callers by request id.
    pending: BTreeMap<u64, Waiter>,
    /// Calls waiting for the handshake.
    queued: Vec<Queued>,
    /// Requests waiting for the local user's answer to a prompt.
    asks: Vec<Asked>,
    /// Files being received.
    files: Files,
    /// File offers waiting for the local user's answer, since when.
    file_asks: Vec<(FileOffer, Capability, Instant)>,
    /// Lost (not closed on purpose) after this device opened it: open it again.
    reconnect: bool,
    /// Whether any record came from the peer (an immediate close after the handshake means
    /// the peer does not trust this device).
    heard: bool,
}

/// A request waiting for a prompt's answer.
struct Asked {
    request_id: u64,
    method: String,
    payload: Vec<u8>,
    capability: Capability,
    since: Instant,
}

/// What a link is doing.
pub enum Phase {
    /// Incoming, before its first frame.
    First(FrameReader),
    /// A session, handshaking or established.
    Session(Box<Session>),
    /// Answering a pairing another device started.
    PairAnswer { pairing: Pairing, reader: FrameReader },
    /// Pairing with a device that shows `code`, for a local caller.
    PairDial {
        pairing: Pairing,
        reader: FrameReader,
        expected: DeviceId,
        waiter: Option<Waiter>,
        result: Option<softbus::pairing::PairedPeer>,
    },
    /// Done: send what is queued, then close.
    Closing,
}

/// One TCP connection.
pub struct Link {
    pub stream: TcpStream<'static>,
    pub phase: Phase,
    /// Bytes not yet taken by the network service.
    out: Vec<u8>,
    /// TCP established (incoming links are).
    connected: bool,
    /// When the current phase must have ended (first frame, connect, pairing).
    deadline: Option<Instant>,
    /// Over: to be dropped once `out` is empty (or at once if the stream is dead).
    pub done: bool,
}

impl Link {
    /// A connection accepted by the listener.
    pub fn incoming(stream: TcpStream<'static>, now: Instant) -> Link {
        Link {
            stream,
            phase: Phase::First(FrameReader::new()),
            out: Vec::new(),
            connected: true,
            deadline: Some(now.saturating_add(FIRST_FRAME)),
            done: false,
        }
    }

    /// A session this device opens to `expected` on a connection still being made.
    pub fn dial_session(
        bus: &mut Bus,
        stream: TcpStream<'static>,
        expected: DeviceId,
        now: Instant,
    ) -> Result<Link, String> {
        let conn = Connection::connect(&bus.identity, now, bus.connection_config, &mut bus.rng)
            .map_err(|e| format!("cannot start a session: {e}"))?;
        let session = Session::new(conn, Some(expected));
        let mut link = Link {
            stream,
            phase: Phase::Session(Box::new(session)),
            out: Vec::new(),
            connected: false,
            deadline: Some(now.saturating_add(FIRST_FRAME)),
            done: false,
        };
        link.collect();
        Ok(link)
    }

    /// A pairing this device starts with `expected`, which shows `code`.
    pub fn dial_pairing(
        bus: &mut Bus,
        stream: TcpStream<'static>,
        expected: DeviceId,
        code: &PairingCode,
        waiter: Waiter,
        now: Instant,
    ) -> Result<Link, (Waiter, String)> {
        let pairing = match Pairing::initiate(&bus.identity, &bus.name, code, &mut bus.rng) {
            Ok(p) => p,
            Err(e) => return Err((waiter, format!("pairing failed: {e}"))),
        };
        let mut link = Link {
            stream,
            phase: Phase::PairDial {
                pairing,
                reader: FrameReader::new(),
                expected,
                waiter: Some(waiter),
                result: None,
            },
            out: Vec::new(),
            connected: false,
            deadline: Some(now.saturating_add(PAIRING_TIMEOUT)),
            done: false,
        };
        link.collect();
        Ok(link)
    }

    /// The session's peer, if this link is an established session.
    pub fn session_peer(&self) -> Option<DeviceId> {
        match &self.phase {
            Phase::Session(s) if !self.done => s.peer.or(s.expected),
            _ => None,
        }
    }

    /// The device to open a session to again, if this link was a session this device opened
    /// and lost.
    pub fn reconnect_to(&self) -> Option<DeviceId> {
        match &self.phase {
            Phase::Session(s) if s.reconnect => s.peer,
            _ => None,
        }
    }

    /// Whether this is an established session with `id`.
    pub fn is_established_with(&self, id: &DeviceId) -> bool {
        matches!(&self.phase, Phase::Session(s) if !self.done && s.peer == Some(*id))
    }

    /// Starts a call on this session (queued until it is established).
    pub fn call(&mut self, bus: &Bus, queued: Queued, now: Instant) {
        let Phase::Session(s) = &mut self.phase else {
            bus.fail(queued.waiter, Failure::new(failure::UNREACHABLE, "the session has ended"));
            return;
        };
        if s.peer.is_none() {
            s.queued.push(queued);
            return;
        }
        s.start_call(bus, queued, now);
        self.collect();
    }

    /// When this link has work next.
    pub fn poll_at(&self) -> Option<Instant> {
        let machine = match &self.phase {
            Phase::Session(s) => [s.conn.poll_at(), s.client.poll_at(), s.ask_deadline()].into_iter().flatten().min(),
            _ => None,
        };
        [machine, self.deadline].into_iter().flatten().min()
    }

    /// Does everything that can be done now.
    pub fn pump(&mut self, bus: &mut Bus, now: Instant) {
        if !self.connected {
            match self.stream.state() {
                Ok(tcp_state::CONNECTING) => {}
                Ok(tcp_state::ESTABLISHED | tcp_state::PEER_CLOSED) => self.connected = true,
                _ => {
                    self.fail_all(
                        bus,
                        Failure::new(failure::UNREACHABLE, format!("cannot connect to {}", self.stream.peer())),
                    );
                    return;
                }
            }
        }
        if self.connected {
            self.read(bus, now);
        }
        if let Phase::Session(s) = &mut self.phase {
            s.conn.poll(now);
            s.client.poll(now);
            s.drive(bus, now);
            if s.peer.is_some() {
                // Established: the connection's own timers (keepalive, idle) take over from
                // the connect deadline.
                self.deadline = None;
            }
        }
        self.collect();
        if let Some(deadline) = self.deadline {
            if now >= deadline && !self.done {
                let what = match &self.phase {
                    Phase::First(_) => "sent no frame in time",
                    Phase::Session(_) => "did not connect in time",
                    _ => "did not finish pairing in time",
                };
                rt::log::info!("{} {what}; closed", self.stream.peer());
                self.fail_all(bus, Failure::new(failure::TIMEOUT, format!("{} {what}", self.stream.peer())));
            }
        }
        self.flush();
    }

    /// Reads what has arrived and feeds it to the phase.
    fn read(&mut self, bus: &mut Bus, now: Instant) {
        let mut buf = [0u8; 4096];
        let mut budget = READ_BUDGET;
        while budget > 0 && !self.done && self.out.len() < OUT_MAX {
            match self.stream.recv(&mut buf, 0) {
                Ok(0) => {
                    self.ended(bus, now);
                    return;
                }
                Ok(n) => {
                    budget = budget.saturating_sub(n);
                    self.feed(bus, &buf[..n], now);
                }
                Err(NetError::TimedOut) => return,
                Err(e) => {
                    rt::log::debug!("receive from {} failed: {e}", self.stream.peer());
                    self.ended(bus, now);
                    return;
                }
            }
        }
    }

    /// The peer closed or the connection broke.
    fn ended(&mut self, bus: &mut Bus, now: Instant) {
        match &mut self.phase {
            Phase::Session(s) => {
                s.conn.stream_ended();
                s.drive(bus, now);
            }
            Phase::PairDial { .. } => self.finish_pair_dial(bus),
            _ => {}
        }
        self.done = true;
    }

    fn feed(&mut self, bus: &mut Bus, bytes: &[u8], now: Instant) {
        match &mut self.phase {
            Phase::First(reader) => {
                reader.push(bytes);
                let first = match reader.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return,
                    Err(e) => {
                        rt::log::warn!("{} started with a malformed frame: {e}", self.stream.peer());
                        self.done = true;
                        return;
                    }
                };
                let leftover = reader.take_buffered();
                self.start(bus, &first, &leftover, now);
            }
            Phase::Session(s) => {
                let _ = s.conn.handle_bytes(now, bytes, &bus.trust);
            }
            Phase::PairAnswer { pairing, reader } => {
                reader.push(bytes);
                let frame = match reader.next_frame() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return,
                    Err(e) => {
                        rt::log::warn!("pairing from {}: malformed frame: {e}", self.stream.peer());
                        self.phase = Phase::Closing;
                        return;
                    }
                };
                let result = pairing.handle_frame(&bus.identity, &frame);
                while let Some(frame) = pairing.poll_transmit() {
                    self.out.extend_from_slice(&frame);
                }
                match result {
                    Ok(Some(peer)) => {
                        let (id, name) = (peer.device_id, peer.name.clone());
                        match bus.trust_paired(peer) {
                            Ok(()) => {
                                bus.offer = None;
                                rt::println!("softbus: paired with {name} ({id})");
                            }
                            Err(e) => rt::log::error!("{e}"),
                        }
                    }
                    Ok(None) => return,
                    Err(e) => {
                        let left = bus.offer.as_ref().map_or(0, |o| o.attempts_left());
                        rt::log::warn!(
                            "pairing attempt from {} failed: {e} ({left} attempts left)",
                            self.stream.peer()
                        );
                    }
                }
                self.phase = Phase::Closing;
            }
            Phase::PairDial { pairing, reader, expected, waiter, result } => {
                reader.push(bytes);
                loop {
                    let frame = match reader.next_frame() {
                        Ok(Some(frame)) => frame,
                        Ok(None) => return,
                        Err(e) => {
                            let message = format!("pairing failed: malformed frame: {e}");
                            if let Some(w) = waiter.take() {
                                bus.fail(w, Failure::new(failure::PAIRING_FAILED, message));
                            }
                            self.phase = Phase::Closing;
                            return;
                        }
                    };
                    if result.is_some() {
                        // After the result the responder only closes, or aborts.
                        let e = pairing.handle_frame(&bus.identity, &frame).err().unwrap_or(PairingError::Finished);
                        if let Some(w) = waiter.take() {
                            bus.fail(w, Failure::new(failure::PAIRING_FAILED, format!("pairing failed: {e}")));
                        }
                        *result = None;
                        self.phase = Phase::Closing;
                        return;
                    }
                    let outcome = pairing.handle_frame(&bus.identity, &frame);
                    while let Some(frame) = pairing.poll_transmit() {
                        self.out.extend_from_slice(&frame);
                    }
                    match outcome {
                        Ok(Some(peer)) if peer.device_id != *expected => {
                            let message = format!(
                                "pairing failed: the device that answered is {}, not {expected}",
                                peer.device_id
                            );
                            if let Some(w) = waiter.take() {
                                bus.fail(w, Failure::new(failure::PAIRING_FAILED, message));
                            }
                            self.phase = Phase::Closing;
                            return;
                        }
                        Ok(Some(peer)) => *result = Some(peer),
                        Ok(None) => {}
                        Err(e) => {
                            let kind = if matches!(e, PairingError::BadCode) {
                                failure::BAD_REQUEST
                            } else {
                                failure::PAIRING_FAILED
                            };
                            if let Some(w) = waiter.take() {
                                bus.fail(w, Failure::new(kind, format!("pairing failed: {e}")));
                            }
                            self.phase = Phase::Closing;
                            return;
                        }
                    }
                }
            }
            Phase::Closing => {}
        }
    }

    /// The responder closed after the last step: the pairing succeeded if a result is held.
    fn finish_pair_dial(&mut self, bus: &mut Bus) {
        let Phase::PairDial { waiter, result, .. } = &mut self.phase else { return };
        let (Some(waiter), Some(peer)) = (waiter.take(), result.take()) else {
            if let Some(w) = waiter.take() {
                bus.fail(
                    w,
                    Failure::new(failure::PAIRING_FAILED, "pairing failed: the other device closed the connection"),
                );
            }
            return;
        };
        let (id, name) = (peer.device_id, peer.name.clone());
        match bus.trust_paired(peer) {
            Ok(()) => {
                rt::println!("softbus: paired with {name} ({id})");
                bus.answer_text(waiter, &format!("paired with {name} ({id})\n"));
            }
            Err(e) => bus.fail(waiter, Failure::new(failure::INTERNAL, e)),
        }
    }

    /// The first frame of an incoming connection decides what it is.
    fn start(&mut self, bus: &mut Bus, first: &[u8], leftover: &[u8], now: Instant) {
        let from = self.stream.peer();
        match first_frame_type(first) {
            Ok(FrameType::Handshake) => {
                match Connection::accept(&bus.identity, first, now, bus.connection_config, &mut bus.rng) {
                    Ok(conn) => {
                        let mut session = Session::new(conn, None);
                        if !leftover.is_empty() {
                            let _ = session.conn.handle_bytes(now, leftover, &bus.trust);
                        }
                        self.phase = Phase::Session(Box::new(session));
                        self.deadline = None;
                    }
                    Err(e) => {
                        rt::log::warn!("refused a session handshake from {from}: {e}");
                        self.done = true;
                    }
                }
            }
            Ok(FrameType::Pairing) => {
                let attempt = match bus.offer.as_mut() {
                    None => Err(AbortReason::NoOffer),
                    Some(offer) => offer.begin_attempt(now).map_err(|e| match e {
                        PairingError::NotOffered(reason) => reason,
                        _ => AbortReason::Protocol,
                    }),
                };
                let code = match attempt {
                    Ok(code) => code,
                    Err(reason) => {
                        rt::log::warn!("pairing attempt from {from} refused: {reason}");
                        if let Ok(abort) = Pairing::refuse(first, reason) {
                            self.out.extend_from_slice(&abort);
                        }
                        self.phase = Phase::Closing;
                        return;
                    }
                };
                match Pairing::respond(&bus.identity, &bus.name, &code, first, &mut bus.rng) {
                    Ok(mut pairing) => {
                        while let Some(frame) = pairing.poll_transmit() {
                            self.out.extend_from_slice(&frame);
                        }
                        self.phase = Phase::PairAnswer { pairing, reader: FrameReader::new() };
                        self.deadline = Some(now.saturating_add(PAIRING_TIMEOUT));
                        if !leftover.is_empty() {
                            self.feed(bus, leftover, now);
                        }
                    }
                    Err(e) => {
                        rt::log::warn!("pairing attempt from {from} failed: {e}");
                        self.phase = Phase::Closing;
                    }
                }
            }
            Ok(other) => {
                rt::log::warn!("a connection from {from} started with a {other:?} frame; closed");
                self.done = true;
            }
            Err(e) => {
                rt::log::warn!("a connection from {from} started with a malformed frame: {e}");
                self.done = true;
            }
        }
    }

    /// Moves what the machines yield into `out`; notices the end.
    fn collect(&mut self) {
        match &mut self.phase {
            Phase::Session(s) => {
                while let Some(frame) = s.conn.poll_transmit() {
                    self.out.extend_from_slice(&frame);
                }
                if s.conn.is_closed() {
                    self.done = true;
                }
            }
            Phase::PairDial { pairing, .. } => {
                while let Some(frame) = pairing.poll_transmit() {
                    self.out.extend_from_slice(&frame);
                }
            }
            Phase::Closing => self.done = true,
            _ => {}
        }
    }

    /// Gives the network service what it takes of `out`.
    fn flush(&mut self) {
        while !self.out.is_empty() && self.connected {
            match self.stream.send(&self.out, 0) {
                Ok(0) | Err(NetError::TimedOut) => return,
                Ok(n) => {
                    self.out.drain(..n);
                }
                Err(e) => {
                    rt::log::debug!("send to {} failed: {e}", self.stream.peer());
                    self.out.clear();
                    self.done = true;
                    return;
                }
            }
        }
    }

    /// Whether the link can go: over, and nothing left to send (or the stream is dead).
    pub fn finished(&self) -> bool {
        self.done && (self.out.is_empty() || !self.connected)
    }

    /// Ends the link, failing every local caller with `failure`.
    pub fn fail_all(&mut self, bus: &mut Bus, failure: Failure) {
        match &mut self.phase {
            Phase::Session(s) => {
                for (_, w) in core::mem::take(&mut s.pending) {
                    bus.fail(w, failure.clone());
                }
                for q in core::mem::take(&mut s.queued) {
                    bus.fail(q.waiter, failure.clone());
                }
                s.files.session_lost(bus, &failure);
                s.conn.close_local();
            }
            Phase::PairDial { waiter, .. } => {
                if let Some(w) = waiter.take() {
                    bus.fail(w, failure);
                }
            }
            _ => {}
        }
        self.done = true;
        self.out.clear();
    }
}

impl Session {
    fn new(conn: Connection, expected: Option<DeviceId>) -> Session {
        Session {
            conn,
            client: RpcClient::default(),
            server: RpcServer::default(),
            peer: None,
            expected,
            pending: BTreeMap::new(),
            queued: Vec::new(),
            asks: Vec::new(),
            files: Files::default(),
            file_asks: Vec::new(),
            reconnect: false,
            heard: false,
        }
    }

    fn start_call(&mut self, bus: &Bus, q: Queued, now: Instant) {
        match q.work {
            Work::Call { method, payload, timeout } => match self.client.call(now, &method, &payload, Some(timeout)) {
                Ok(id) => {
                    self.pending.insert(id, q.waiter);
                }
                Err(e) => bus.fail(q.waiter, Failure::new(failure::BAD_REQUEST, format!("{e}"))),
            },
            Work::Send { path } => {
                let to = self.peer.map_or_else(String::new, |p| bus.name_of(&p));
                if let Err((waiter, failure)) = self.files.send(bus.store.fs, &path, to, q.waiter) {
                    bus.fail(waiter, failure);
                }
            }
        }
    }

    /// Handles the connection's events, serves requests, finishes calls, sends records.
    fn drive(&mut self, bus: &mut Bus, now: Instant) {
        while let Some(event) = self.conn.poll_event() {
            match event {
                ConnectionEvent::Established(peer) => {
                    if let Some(want) = self.expected.filter(|want| *want != peer.device_id) {
                        let message = format!("the device that answered is {}, not {want}", peer.device_id);
                        rt::log::warn!("{message}");
                        for q in core::mem::take(&mut self.queued) {
                            bus.fail(q.waiter, Failure::new(failure::UNREACHABLE, message.clone()));
                        }
                        self.conn.close_local();
                        continue;
                    }
                    rt::log::info!("session established with {}", bus.name_of(&peer.device_id));
                    self.peer = Some(peer.device_id);
                    for q in core::mem::take(&mut self.queued) {
                        self.start_call(bus, q, now);
                    }
                }
                ConnectionEvent::Received(plaintext) => {
                    self.heard = true;
                    for message in messages(&plaintext) {
                        match message {
                            Ok(m) => {
                                self.client.handle_message(&m);
                                if let Err(e) = self.server.handle_message(&m) {
                                    rt::log::debug!("request refused: {e}");
                                }
                                if let Some(peer) = self.peer {
                                    self.file_message(bus, &peer, &m, now);
                                }
                            }
                            Err(e) => {
                                rt::log::warn!("malformed channel message: {e}");
                                break;
                            }
                        }
                    }
                }
                ConnectionEvent::ConnectionLost(reason) => {
                    let failure = self.close_failure(&reason);
                    // As tuttid: a session this device opened and lost (silent, closed or reset
                    // by the peer), not one closed here or refused in the handshake.
                    self.reconnect = self.expected.is_some()
                        && self.peer.is_some()
                        && matches!(
                            reason,
                            CloseReason::PeerSilent { .. } | CloseReason::PeerClosed | CloseReason::Malformed(_)
                        );
                    match (&reason, self.peer) {
                        (CloseReason::Handshake(e), _) => rt::log::warn!("session refused: {e}"),
                        (_, Some(id)) => rt::log::info!("session with {} ended: {reason}", bus.name_of(&id)),
                        _ => rt::log::debug!("connection ended before the handshake: {reason}"),
                    }
                    for (_, w) in core::mem::take(&mut self.pending) {
                        bus.fail(w, failure.clone());
                    }
                    for q in core::mem::take(&mut self.queued) {
                        bus.fail(q.waiter, failure.clone());
                    }
                    self.files.session_lost(bus, &failure);
                }
            }
        }
        while let Some(event) = self.server.poll_event() {
            let (ServerEvent::Request(req), Some(peer)) = (event, self.peer) else { continue };
            match bus.verdict(&peer, &req.method) {
                Verdict::Serve => self.answer(bus, &peer, req.request_id, &req.method, &req.payload),
                Verdict::Deny(message) => {
                    rt::log::info!("{} may not use {}: refused", bus.name_of(&peer), req.method);
                    self.refuse(req.request_id, &message);
                }
                Verdict::Ask(capability) => {
                    bus.prompt(&peer, &capability, &req.method);
                    self.asks.push(Asked {
                        request_id: req.request_id,
                        method: req.method,
                        payload: req.payload,
                        capability,
                        since: now,
                    });
                }
            }
        }
        if let Some(peer) = self.peer {
            for (offer, capability, since) in core::mem::take(&mut self.file_asks) {
                match bus.answer_for(&peer, &capability, since) {
                    Some(true) => self.files.accept(bus.store.fs, &bus.received, offer),
                    Some(false) => self.files.refuse(offer.stream_id, FileStatus::REFUSED),
                    None if now.saturating_duration_since(since) >= ASK_TIMEOUT => {
                        rt::log::info!("{} from {}: no answer in time; refused", offer.name, bus.name_of(&peer));
                        self.files.refuse(offer.stream_id, FileStatus::REFUSED);
                    }
                    None => self.file_asks.push((offer, capability, since)),
                }
            }
            for asked in core::mem::take(&mut self.asks) {
                match bus.answer_for(&peer, &asked.capability, asked.since) {
                    Some(true) => self.answer(bus, &peer, asked.request_id, &asked.method, &asked.payload),
                    Some(false) => {
                        self.refuse(asked.request_id, &format!("the user of {} did not allow this call", bus.name))
                    }
                    None if now.saturating_duration_since(asked.since) >= ASK_TIMEOUT => {
                        self.refuse(asked.request_id, &format!("the user of {} did not answer in time", bus.name))
                    }
                    None => self.asks.push(asked),
                }
            }
        }
        while let Some(event) = self.client.poll_event() {
            let Some(waiter) = self.pending.remove(&event.request_id) else { continue };
            match event.outcome {
                RpcOutcome::Response(bytes) => bus.answer_reply(waiter, &bytes),
                RpcOutcome::Error { code: RpcErrorCode::PERMISSION_DENIED, message } => {
                    bus.fail(waiter, Failure::new(failure::PERMISSION_DENIED, format!("permission denied: {message}")))
                }
                RpcOutcome::Error { code, message } => bus.fail(
                    waiter,
                    Failure {
                        kind: failure::REMOTE,
                        code: u32::from(code.0),
                        message: format!("the service answered error {}: {message}", code.0),
                    },
                ),
                RpcOutcome::TimedOut => {
                    bus.fail(waiter, Failure::new(failure::TIMEOUT, "no answer before the deadline"))
                }
                RpcOutcome::Cancelled => bus.fail(waiter, Failure::new(failure::INTERNAL, "the call was cancelled")),
            }
        }
        self.files.pump(bus);
        for plaintext in self.files.take_transmits() {
            if let Err(e) = self.conn.send(&plaintext) {
                rt::log::warn!("could not send a record: {e}");
            }
        }
        while let Some(plaintext) = self.client.poll_transmit().or_else(|| self.server.poll_transmit()) {
            if let Err(e) = self.conn.send(&plaintext) {
                rt::log::warn!("could not send a record: {e}");
            }
        }
    }

    /// A file offer (the storage capability's policy decides, `ask` prompts as for calls) or a
    /// message of a transfer.
    fn file_message(&mut self, bus: &mut Bus, peer: &DeviceId, m: &ChannelMessage<'_>, now: Instant) {
        let from = bus.name_of(peer);
        if let Some(offer) = FileOffer::from_message(m) {
            match bus.verdict(peer, "storage.receive") {
                Verdict::Serve => {
                    rt::log::info!("receiving {} ({} bytes) from {from}", offer.name, offer.size);
                    self.files.accept(bus.store.fs, &bus.received, offer);
                }
                Verdict::Deny(_) => {
                    rt::log::info!("refused {} from {from}: the policy does not allow storage", offer.name);
                    self.files.refuse(offer.stream_id, FileStatus::REFUSED);
                }
                Verdict::Ask(capability) => {
                    bus.prompt(peer, &capability, &format!("storage.receive {} ({} bytes)", offer.name, offer.size));
                    self.file_asks.push((offer, capability, now));
                }
            }
            return;
        }
        self.files.handle_message(bus.store.fs, &bus.received, m, &from);
    }

    /// Serves a request the policy allowed and answers it.
    fn answer(&mut self, bus: &mut Bus, peer: &DeviceId, request_id: u64, method: &str, payload: &[u8]) {
        let answered = match bus.serve(peer, method, payload) {
            Ok(bytes) => self.server.respond(request_id, &bytes),
            Err((code, message)) => self.server.fail(request_id, code, &message),
        };
        if let Err(e) = answered {
            rt::log::warn!("could not answer a request: {e}");
        }
    }

    /// Refuses a request: permission denied.
    fn refuse(&mut self, request_id: u64, message: &str) {
        if let Err(e) = self.server.fail(request_id, RpcErrorCode::PERMISSION_DENIED, message) {
            rt::log::debug!("could not refuse a request: {e}");
        }
    }

    /// When the first waiting prompt times out.
    fn ask_deadline(&self) -> Option<Instant> {
        let calls = self.asks.iter().map(|a| a.since);
        calls.chain(self.file_asks.iter().map(|(_, _, since)| *since)).map(|s| s.saturating_add(ASK_TIMEOUT)).min()
    }

    /// What local callers get when the connection ends for `reason`.
    fn close_failure(&self, reason: &CloseReason) -> Failure {
        match (reason, self.peer) {
            (CloseReason::Handshake(SessionError::Untrusted(id)), _) => Failure::new(
                failure::UNTRUSTED,
                format!("device {id} is not trusted by this device: pair with it first (bus pair {id} <code>)"),
            ),
            (CloseReason::PeerClosed, Some(id)) if !self.heard => Failure::new(
                failure::UNTRUSTED,
                format!("device {id} closed the session right after the handshake: it does not trust this device (pair again)"),
            ),
            (CloseReason::HandshakeTimeout, _) => Failure::new(failure::TIMEOUT, format!("{reason}")),
            _ => Failure::new(failure::UNREACHABLE, format!("session ended: {reason}")),
        }
    }
}
