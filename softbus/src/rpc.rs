//! RPC channel: request/response calls over a session, with deadlines and cancellation.
//!
//! Design: two sans-IO halves that speak [`ChannelMessage`]s; the caller carries their
//! output in session records ([`crate::session::Session::send`]) and feeds them the channel
//! messages of received records. [`RpcClient`] guarantees that every call it accepted ends
//! in exactly one [`RpcOutcome`] event: the response, an error from the server, a timeout at
//! its deadline, or its cancellation; replies that arrive after that are counted and
//! ignored. [`RpcServer`] tracks the requests in flight so that each gets at most one reply
//! and a cancelled one gets none. Deadlines travel as millisecond budgets, because device
//! clocks differ. In-flight tables are bounded.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::time::Instant;
use crate::wire::{encode_messages, ChannelMessage, RpcErrorCode, WireError};

/// Calls in flight at once, by default.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;

/// Why an RPC operation was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RpcError {
    /// Too many calls (or requests) in flight.
    TooManyInFlight,
    /// The request could not be encoded (method name too long, payload too large).
    Encode(WireError),
    /// No call or request in flight has this id.
    NotPending(u64),
    /// The peer sent a request id that is already in flight.
    DuplicateRequest(u64),
}

impl fmt::Display for RpcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooManyInFlight => f.write_str("too many RPCs in flight"),
            Self::Encode(e) => write!(f, "cannot encode RPC message: {e}"),
            Self::NotPending(id) => write!(f, "no RPC {id} in flight"),
            Self::DuplicateRequest(id) => write!(f, "request id {id} is already in flight"),
        }
    }
}

impl core::error::Error for RpcError {}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RpcOutcome {
    /// The server's response.
    Response(Vec<u8>),
    /// The server's error.
    Error {
        /// What went wrong.
        code: RpcErrorCode,
        /// Details for people.
        message: String,
    },
    /// No reply before the deadline.
    TimedOut,
    /// The caller cancelled the call.
    Cancelled,
}

/// The end of one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcEvent {
    /// The call, as returned by [`RpcClient::call`].
    pub request_id: u64,
    /// How it ended.
    pub outcome: RpcOutcome,
}

/// The calling half of an RPC channel.
#[derive(Debug)]
pub struct RpcClient {
    next_id: u64,
    max_in_flight: usize,
    pending: BTreeMap<u64, Option<Instant>>,
    deadlines: BTreeSet<(Instant, u64)>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<RpcEvent>,
    late_replies: u64,
}

impl Default for RpcClient {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

fn budget_ms(timeout: Option<Duration>) -> u32 {
    match timeout {
        None => 0,
        Some(t) => u32::try_from(t.as_millis()).unwrap_or(u32::MAX).max(1),
    }
}

impl RpcClient {
    /// A client with at most `max_in_flight` calls in flight.
    pub fn new(max_in_flight: usize) -> Self {
        Self {
            next_id: 1,
            max_in_flight,
            pending: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            late_replies: 0,
        }
    }

    /// Calls `method` with `payload`, ending at the latest `timeout` after `now` (never with
    /// `None`). Returns the request id its [`RpcEvent`] will carry.
    pub fn call(
        &mut self,
        now: Instant,
        method: &str,
        payload: &[u8],
        timeout: Option<Duration>,
    ) -> Result<u64, RpcError> {
        if self.pending.len() >= self.max_in_flight {
            return Err(RpcError::TooManyInFlight);
        }
        let request_id = self.next_id;
        let request = ChannelMessage::RpcRequest { request_id, deadline_ms: budget_ms(timeout), method, payload };
        let bytes = encode_messages(&[request]).map_err(RpcError::Encode)?;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let deadline = timeout.map(|t| now.saturating_add(t));
        if let Some(at) = deadline {
            self.deadlines.insert((at, request_id));
        }
        self.pending.insert(request_id, deadline);
        self.transmits.push_back(bytes);
        Ok(request_id)
    }

    /// Cancels a call in flight: the server is told, and the call ends as `Cancelled`.
    pub fn cancel(&mut self, request_id: u64) -> Result<(), RpcError> {
        self.finish(request_id, RpcOutcome::Cancelled)?;
        let bytes = encode_messages(&[ChannelMessage::RpcCancel { request_id }]).map_err(RpcError::Encode)?;
        self.transmits.push_back(bytes);
        Ok(())
    }

    /// Takes in a channel message from the server; other messages than replies are ignored.
    pub fn handle_message(&mut self, message: &ChannelMessage<'_>) {
        let (request_id, outcome) = match *message {
            ChannelMessage::RpcResponse { request_id, payload } => (request_id, RpcOutcome::Response(payload.to_vec())),
            ChannelMessage::RpcError { request_id, code, message } => {
                (request_id, RpcOutcome::Error { code, message: String::from(message) })
            }
            _ => return,
        };
        if self.finish(request_id, outcome).is_err() {
            self.late_replies += 1;
        }
    }

    /// Ends the calls whose deadline is not after `now`.
    pub fn poll(&mut self, now: Instant) {
        while let Some(&(at, request_id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            // The entry is in `pending` as long as it is in `deadlines`.
            let _ = self.finish(request_id, RpcOutcome::TimedOut);
        }
    }

    /// Ends every call in flight with [`RpcErrorCode::UNAVAILABLE`] and `reason`: the
    /// session carrying them has ended, so no reply can come. Nothing is sent.
    pub fn fail_all(&mut self, reason: &str) {
        let ids: Vec<u64> = self.pending.keys().copied().collect();
        for request_id in ids {
            let outcome = RpcOutcome::Error { code: RpcErrorCode::UNAVAILABLE, message: String::from(reason) };
            // Every id comes from `pending`, so `finish` finds it.
            let _ = self.finish(request_id, outcome);
        }
        self.transmits.clear();
    }

    /// The next deadline, if a call has one.
    pub fn poll_at(&self) -> Option<Instant> {
        self.deadlines.first().map(|&(at, _)| at)
    }

    /// The next plaintext to send in a session record.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next ended call.
    pub fn poll_event(&mut self) -> Option<RpcEvent> {
        self.events.pop_front()
    }

    /// Calls in flight.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Replies that arrived for no call in flight (late, duplicated or bogus).
    pub fn late_replies(&self) -> u64 {
        self.late_replies
    }

    fn finish(&mut self, request_id: u64, outcome: RpcOutcome) -> Result<(), RpcError> {
        let deadline = self.pending.remove(&request_id).ok_or(RpcError::NotPending(request_id))?;
        if let Some(at) = deadline {
            self.deadlines.remove(&(at, request_id));
        }
        self.events.push_back(RpcEvent { request_id, outcome });
        Ok(())
    }
}

/// A request the server should answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncomingRequest {
    /// The caller's id for it; pass it to [`RpcServer::respond`] or [`RpcServer::fail`].
    pub request_id: u64,
    /// `service.method`.
    pub method: String,
    /// Argument bytes.
    pub payload: Vec<u8>,
    /// Time budget in milliseconds, 0 for none.
    pub deadline_ms: u32,
}

/// What the server half reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// A new request.
    Request(IncomingRequest),
    /// The caller cancelled a request: do not answer it.
    Cancelled(u64),
}

/// The answering half of an RPC channel.
#[derive(Debug)]
pub struct RpcServer {
    max_in_flight: usize,
    in_flight: BTreeSet<u64>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<ServerEvent>,
}

impl Default for RpcServer {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_IN_FLIGHT)
    }
}

impl RpcServer {
    /// A server with at most `max_in_flight` requests in flight; beyond that requests are
    /// refused at once with `RESOURCE_EXHAUSTED`.
    pub fn new(max_in_flight: usize) -> Self {
        Self { max_in_flight, in_flight: BTreeSet::new(), transmits: VecDeque::new(), events: VecDeque::new() }
    }

    /// Takes in a channel message from the caller; other messages than requests and
    /// cancellations are ignored.
    pub fn handle_message(&mut self, message: &ChannelMessage<'_>) -> Result<(), RpcError> {
        match *message {
            ChannelMessage::RpcRequest { request_id, deadline_ms, method, payload } => {
                if self.in_flight.contains(&request_id) {
                    return Err(RpcError::DuplicateRequest(request_id));
                }
                if self.in_flight.len() >= self.max_in_flight {
                    self.send_error(request_id, RpcErrorCode::RESOURCE_EXHAUSTED, "too many requests in flight")?;
                    return Err(RpcError::TooManyInFlight);
                }
                self.in_flight.insert(request_id);
                self.events.push_back(ServerEvent::Request(IncomingRequest {
                    request_id,
                    method: String::from(method),
                    payload: payload.to_vec(),
                    deadline_ms,
                }));
            }
            ChannelMessage::RpcCancel { request_id } if self.in_flight.remove(&request_id) => {
                self.events.push_back(ServerEvent::Cancelled(request_id));
            }
            _ => {}
        }
        Ok(())
    }

    /// Answers `request_id` with `payload`.
    pub fn respond(&mut self, request_id: u64, payload: &[u8]) -> Result<(), RpcError> {
        self.take(request_id)?;
        let bytes =
            encode_messages(&[ChannelMessage::RpcResponse { request_id, payload }]).map_err(RpcError::Encode)?;
        self.transmits.push_back(bytes);
        Ok(())
    }

    /// Answers `request_id` with an error.
    pub fn fail(&mut self, request_id: u64, code: RpcErrorCode, message: &str) -> Result<(), RpcError> {
        self.take(request_id)?;
        self.send_error(request_id, code, message)
    }

    /// The next plaintext to send in a session record.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next request or cancellation.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    fn take(&mut self, request_id: u64) -> Result<(), RpcError> {
        if self.in_flight.remove(&request_id) {
            Ok(())
        } else {
            Err(RpcError::NotPending(request_id))
        }
    }

    fn send_error(&mut self, request_id: u64, code: RpcErrorCode, message: &str) -> Result<(), RpcError> {
        let bytes =
            encode_messages(&[ChannelMessage::RpcError { request_id, code, message }]).map_err(RpcError::Encode)?;
        self.transmits.push_back(bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages;

    /// Delivers everything the client has to send to the server.
    fn client_to_server(c: &mut RpcClient, s: &mut RpcServer) {
        while let Some(p) = c.poll_transmit() {
            for m in messages(&p) {
                let _ = s.handle_message(&m.unwrap());
            }
        }
    }

    fn server_to_client(s: &mut RpcServer, c: &mut RpcClient) {
        while let Some(p) = s.poll_transmit() {
            for m in messages(&p) {
                c.handle_message(&m.unwrap());
            }
        }
    }

    fn events(c: &mut RpcClient) -> Vec<RpcEvent> {
        core::iter::from_fn(|| c.poll_event()).collect()
    }

    #[test]
    fn a_call_gets_its_response() {
        let (mut c, mut s) = (RpcClient::default(), RpcServer::default());
        let id = c.call(Instant::ZERO, "compute.sha256", b"abc", Some(Duration::from_secs(1))).unwrap();
        client_to_server(&mut c, &mut s);
        let Some(ServerEvent::Request(req)) = s.poll_event() else { panic!("no request") };
        assert_eq!(
            (req.request_id, req.method.as_str(), &req.payload[..], req.deadline_ms),
            (id, "compute.sha256", &b"abc"[..], 1000)
        );
        s.respond(id, b"digest").unwrap();
        assert_eq!(s.respond(id, b"again"), Err(RpcError::NotPending(id)), "one reply per request");
        server_to_client(&mut s, &mut c);
        assert_eq!(events(&mut c), [RpcEvent { request_id: id, outcome: RpcOutcome::Response(b"digest".to_vec()) }]);
        assert_eq!(c.in_flight(), 0);
        assert_eq!(c.poll_at(), None);
    }

    #[test]
    fn server_errors_reach_the_caller() {
        let (mut c, mut s) = (RpcClient::default(), RpcServer::default());
        let id = c.call(Instant::ZERO, "nope.nothing", b"", None).unwrap();
        client_to_server(&mut c, &mut s);
        s.poll_event();
        s.fail(id, RpcErrorCode::NOT_FOUND, "no such method").unwrap();
        server_to_client(&mut s, &mut c);
        let outcome = RpcOutcome::Error { code: RpcErrorCode::NOT_FOUND, message: "no such method".into() };
        assert_eq!(events(&mut c), [RpcEvent { request_id: id, outcome }]);
    }

    #[test]
    fn calls_time_out_once_and_late_replies_are_ignored() {
        let (mut c, mut s) = (RpcClient::default(), RpcServer::default());
        let t0 = Instant::from_millis(100);
        let fast = c.call(t0, "a.b", b"", Some(Duration::from_millis(50))).unwrap();
        let slow = c.call(t0, "a.b", b"", Some(Duration::from_millis(500))).unwrap();
        assert_eq!(c.poll_at(), Some(Instant::from_millis(150)));
        c.poll(Instant::from_millis(149));
        assert!(events(&mut c).is_empty());
        c.poll(Instant::from_millis(150));
        assert_eq!(events(&mut c), [RpcEvent { request_id: fast, outcome: RpcOutcome::TimedOut }]);
        client_to_server(&mut c, &mut s);
        s.poll_event();
        s.respond(fast, b"too late").unwrap();
        server_to_client(&mut s, &mut c);
        assert!(events(&mut c).is_empty());
        assert_eq!(c.late_replies(), 1);
        c.poll(Instant::from_millis(10_000));
        assert_eq!(events(&mut c), [RpcEvent { request_id: slow, outcome: RpcOutcome::TimedOut }]);
        assert_eq!(c.cancel(slow), Err(RpcError::NotPending(slow)));
    }

    #[test]
    fn cancellation_ends_the_call_and_tells_the_server() {
        let (mut c, mut s) = (RpcClient::default(), RpcServer::default());
        let id = c.call(Instant::ZERO, "storage.read", b"f", Some(Duration::from_secs(5))).unwrap();
        client_to_server(&mut c, &mut s);
        c.cancel(id).unwrap();
        assert_eq!(events(&mut c), [RpcEvent { request_id: id, outcome: RpcOutcome::Cancelled }]);
        c.poll(Instant::from_millis(60_000));
        assert!(events(&mut c).is_empty(), "no timeout after cancellation");
        client_to_server(&mut c, &mut s);
        assert!(matches!(s.poll_event(), Some(ServerEvent::Request(_))));
        assert_eq!(s.poll_event(), Some(ServerEvent::Cancelled(id)));
        assert_eq!(s.respond(id, b"x"), Err(RpcError::NotPending(id)));
    }

    #[test]
    fn every_call_ends_exactly_once_under_random_interleavings() {
        let (mut c, mut s) = (RpcClient::new(64), RpcServer::new(64));
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut rand = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut issued = Vec::new();
        let mut ended = BTreeMap::new();
        for step in 0..3000u64 {
            let now = Instant::from_millis(step);
            match rand(6) {
                0 | 1 => {
                    if let Ok(id) = c.call(now, "svc.m", b"p", Some(Duration::from_millis(1 + rand(40)))) {
                        issued.push(id);
                    }
                }
                2 => client_to_server(&mut c, &mut s),
                3 => {
                    while let Some(ServerEvent::Request(r)) = s.poll_event() {
                        let _ = match rand(3) {
                            0 => s.respond(r.request_id, b"ok"),
                            1 => s.fail(r.request_id, RpcErrorCode::INTERNAL, "boom"),
                            _ => Ok(()), // never answered: the caller's deadline ends it
                        };
                    }
                    server_to_client(&mut s, &mut c);
                }
                4 if !issued.is_empty() => {
                    let id = issued[rand(issued.len() as u64) as usize];
                    let _ = c.cancel(id);
                }
                _ => c.poll(now),
            }
            for e in events(&mut c) {
                assert!(ended.insert(e.request_id, e.outcome).is_none(), "call {} ended twice", e.request_id);
            }
        }
        c.poll(Instant::from_millis(3_600_000));
        for e in events(&mut c) {
            assert!(ended.insert(e.request_id, e.outcome).is_none());
        }
        assert_eq!(ended.len(), issued.len(), "every call ended");
        assert_eq!(c.in_flight(), 0);
    }

    #[test]
    fn fail_all_ends_every_call_once() {
        let mut c = RpcClient::default();
        let a = c.call(Instant::ZERO, "a.b", b"", Some(Duration::from_secs(1))).unwrap();
        let b = c.call(Instant::ZERO, "a.b", b"", None).unwrap();
        c.fail_all("connection lost");
        let unavailable = RpcOutcome::Error { code: RpcErrorCode::UNAVAILABLE, message: "connection lost".into() };
        assert_eq!(
            events(&mut c),
            [
                RpcEvent { request_id: a, outcome: unavailable.clone() },
                RpcEvent { request_id: b, outcome: unavailable }
            ]
        );
        assert_eq!((c.in_flight(), c.poll_at(), c.poll_transmit()), (0, None, None));
        c.poll(Instant::from_millis(5_000));
        assert!(events(&mut c).is_empty(), "no timeout after fail_all");
    }

    #[test]
    fn limits_and_bad_input_are_typed_errors() {
        let mut c = RpcClient::new(1);
        c.call(Instant::ZERO, "a.b", b"", None).unwrap();
        assert_eq!(c.call(Instant::ZERO, "a.b", b"", None), Err(RpcError::TooManyInFlight));
        let long = "m".repeat(256);
        let mut c = RpcClient::default();
        assert!(matches!(c.call(Instant::ZERO, &long, b"", None), Err(RpcError::Encode(_))));
        assert_eq!(c.in_flight(), 0);

        let mut s = RpcServer::new(1);
        let req = |id| ChannelMessage::RpcRequest { request_id: id, deadline_ms: 0, method: "a.b", payload: &[] };
        s.handle_message(&req(1)).unwrap();
        assert_eq!(s.handle_message(&req(1)), Err(RpcError::DuplicateRequest(1)));
        assert_eq!(s.handle_message(&req(2)), Err(RpcError::TooManyInFlight));
        let refused = s.poll_transmit().unwrap();
        let msgs: Vec<_> = messages(&refused).collect();
        assert!(matches!(
            msgs[..],
            [Ok(ChannelMessage::RpcError { request_id: 2, code: RpcErrorCode::RESOURCE_EXHAUSTED, .. })]
        ));
        assert_eq!(budget_ms(Some(Duration::from_micros(10))), 1);
        assert_eq!(budget_ms(Some(Duration::from_secs(u64::MAX))), u32::MAX);
    }
}
