//! One simulated device: the real `softbus` state machines of one incarnation of a node.
//!
//! Design: a [`Node`] holds what a daemon holds (a `Discovery`, and per connection a
//! `Connection` with an `RpcClient` and an `RpcServer`) and does what a daemon's session task
//! does with them, minus the sockets: [`Node::drive_link`] runs the timers, handles the
//! connection's events, feeds channel messages to the RPC halves and collects what has to go
//! out. It returns a [`LinkOutput`] for the world to put on the network and to check. A crash
//! drops the whole `Node`; a restart builds a new one with the same identity.

use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;

use softbus::connection::{CloseReason, Connection, ConnectionEvent};
use softbus::discovery::Discovery;
use softbus::identity::DeviceId;
use softbus::pubsub::{PubSub, PubSubEvent};
use softbus::rng::SeededRng;
use softbus::rpc::{IncomingRequest, RpcClient, RpcEvent, RpcServer, ServerEvent};
use softbus::session::{PeerIdentity, TrustPolicy};
use softbus::time::Instant;
use softbus::wire::messages;

/// Whom a node trusts: the members (members do), or everybody (outsiders do).
#[derive(Debug, Clone)]
pub enum Trust {
    /// Exactly these devices.
    Members(Rc<BTreeSet<DeviceId>>),
    /// Any device.
    Everybody,
}

impl TrustPolicy for Trust {
    fn is_trusted(&self, peer: &PeerIdentity) -> bool {
        match self {
            Self::Members(ids) => ids.contains(&peer.device_id),
            Self::Everybody => true,
        }
    }
}

/// One connection of a node and the RPC halves on it.
#[derive(Debug)]
pub struct Link {
    pub conn: Connection,
    pub client: RpcClient,
    pub server: RpcServer,
    pub pubsub: PubSub,
    /// The device the dialler meant to reach; `None` on the accepting side.
    pub want: Option<DeviceId>,
    /// The authenticated peer, once established.
    pub peer: Option<DeviceId>,
}

impl Link {
    pub fn new(conn: Connection, want: Option<DeviceId>) -> Self {
        Self {
            conn,
            client: RpcClient::default(),
            server: RpcServer::default(),
            pubsub: PubSub::default(),
            want,
            peer: None,
        }
    }
}

/// What driving one link produced.
#[derive(Debug, Default)]
pub struct LinkOutput {
    /// Frames to write to the stream.
    pub frames: Vec<Vec<u8>>,
    /// Calls that ended.
    pub ended: Vec<RpcEvent>,
    /// Publications received on the topic `sim`: sequence number and payload.
    pub publications: Vec<(u64, Vec<u8>)>,
    /// Requests that reached the server, with the authenticated caller.
    pub requests: Vec<(DeviceId, IncomingRequest)>,
    /// The handshake completed with the intended peer.
    pub established: Option<DeviceId>,
    /// A different device than the intended one answered; the link was closed.
    pub mismatched: bool,
    /// The connection ended (the link is gone), and why.
    pub closed: Option<CloseReason>,
    /// Records the connection dropped (replayed, too old, tampered), reported at close.
    pub records_dropped: u64,
    /// Channel messages that did not decode.
    pub malformed: u64,
}

/// One incarnation of a simulated device.
#[derive(Debug)]
pub struct Node {
    pub discovery: Discovery,
    /// Connections by pipe id.
    pub links: BTreeMap<u64, Link>,
    pub rng: SeededRng,
    pub trust: Trust,
}

impl Node {
    pub fn new(discovery: Discovery, rng: SeededRng, trust: Trust) -> Self {
        Self { discovery, links: BTreeMap::new(), rng, trust }
    }

    /// When the node next has timer work: discovery, connections or call deadlines.
    pub fn wake_at(&self) -> Instant {
        let links =
            self.links.values().flat_map(|l| [l.conn.poll_at(), l.client.poll_at(), l.pubsub.poll_at()]).flatten();
        links.fold(self.discovery.poll_at(), Instant::min)
    }

    /// The newest established link to `id`.
    pub fn established_link_to(&self, id: &DeviceId) -> Option<u64> {
        self.links.iter().rev().find(|(_, l)| l.conn.is_established() && l.peer.as_ref() == Some(id)).map(|(p, _)| *p)
    }

    /// Whether a link to `id` is open or being opened.
    pub fn has_link_to(&self, id: &DeviceId) -> bool {
        self.links.values().any(|l| l.peer.as_ref() == Some(id) || (l.peer.is_none() && l.want.as_ref() == Some(id)))
    }

    /// Feeds a frame received on `pipe`'s stream.
    pub fn feed(&mut self, pipe: u64, now: Instant, frame: &[u8]) {
        let Self { links, trust, .. } = self;
        if let Some(link) = links.get_mut(&pipe) {
            // An error only means the connection had ended; the event says so already.
            let _ = link.conn.handle_bytes(now, frame, trust);
        }
    }

    /// Runs the timers of `pipe`'s link at `now`, handles its events and collects its output.
    /// A link whose connection ended is removed, and its calls end as unavailable.
    pub fn drive_link(&mut self, now: Instant, pipe: u64) -> Option<LinkOutput> {
        let link = self.links.get_mut(&pipe)?;
        let mut out = LinkOutput::default();
        link.conn.poll(now);
        link.client.poll(now);
        link.pubsub.poll(now);
        while let Some(event) = link.conn.poll_event() {
            match event {
                ConnectionEvent::Established(peer) => {
                    if link.want.is_some_and(|want| want != peer.device_id) {
                        out.mismatched = true;
                        link.conn.close_local();
                    } else {
                        link.peer = Some(peer.device_id);
                        out.established = Some(peer.device_id);
                        // Every node listens to the topic `sim` of every peer it talks to.
                        let _ = link.pubsub.subscribe(crate::world::TOPIC);
                    }
                }
                ConnectionEvent::Received(plaintext) => {
                    for message in messages(&plaintext) {
                        match message {
                            Ok(m) => {
                                link.client.handle_message(&m);
                                link.pubsub.handle_message(&m);
                                // Refusals (duplicates, limits) are answered or counted inside.
                                let _ = link.server.handle_message(&m);
                            }
                            Err(_) => out.malformed += 1,
                        }
                    }
                }
                ConnectionEvent::ConnectionLost(reason) => out.closed = Some(reason),
            }
        }
        while let Some(event) = link.server.poll_event() {
            if let (ServerEvent::Request(request), Some(peer)) = (event, link.peer) {
                out.requests.push((peer, request));
            }
        }
        while let Some(event) = link.pubsub.poll_event() {
            if let PubSubEvent::Message { seq, payload, .. } = event {
                out.publications.push((seq, payload));
            }
        }
        if out.closed.is_some() {
            link.client.fail_all("connection lost");
            out.ended.extend(std::iter::from_fn(|| link.client.poll_event()));
            out.records_dropped = link.conn.stats().records_dropped;
            self.links.remove(&pipe);
            return Some(out);
        }
        out.ended.extend(std::iter::from_fn(|| link.client.poll_event()));
        while let Some(plaintext) =
            link.client.poll_transmit().or_else(|| link.server.poll_transmit()).or_else(|| link.pubsub.poll_transmit())
        {
            // Fails only when not established, and then there is nothing to send yet.
            let _ = link.conn.send(&plaintext);
        }
        out.frames.extend(std::iter::from_fn(|| link.conn.poll_transmit()));
        Some(out)
    }
}
