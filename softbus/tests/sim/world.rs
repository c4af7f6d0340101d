//! The world of one simulation run: nodes, network, clock, workload, faults and the checks.
//!
//! Design: [`World::run`] plays a fixed script. Each epoch has a chaos window (random loss,
//! duplication, reordering, corruption, jitter, a random partition, random crashes and
//! restarts) and then a calm window (no loss, no corruption; the partition stays), at whose
//! end discovery must have converged inside each partition. Then the network heals; discovery
//! must converge across all live nodes, nodes dead long enough must be forgotten, and every
//! call must have ended exactly once. Everything random is drawn from the seed in a fixed
//! order, so a seed replays the same run; [`Report::trace`] hashes the order of events to
//! prove it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::rc::Rc;
use std::time::Duration;

use softbus::connection::{Connection, ConnectionConfig};
use softbus::discovery::{Advertisement, Discovery, DiscoveryConfig};
use softbus::identity::{DeviceId, Identity};
use softbus::rng::SeededRng;
use softbus::rpc::{RpcEvent, RpcOutcome};
use softbus::time::Instant;
use softbus::wire::{CapabilitySet, DeviceKind, RpcErrorCode};

use crate::net::{End, Faults, Pipe, Queue, Segment, SimRng};
use crate::node::{Link, LinkOutput, Node, Trust};

/// The topic every node publishes on and subscribes to on each of its connections.
pub const TOPIC: &str = "sim";
/// The method every node serves: answers `re:` followed by the payload.
const METHOD: &str = "sim.echo";
/// The longest call deadline of the workload.
const MAX_CALL_TIMEOUT_US: u64 = 3_000_000;
/// The largest delivery delay of a datagram without jitter.
const BASE_DELAY_US: u64 = 500;

/// The shape of a run.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Nodes that trust each other.
    pub nodes: usize,
    /// Extra nodes that nobody trusts (they trust everybody and keep trying).
    pub outsiders: usize,
    /// Chaos-then-calm epochs.
    pub epochs: u32,
    /// Length of a chaos window.
    pub chaos: Duration,
    /// Length of a calm window (at least a beacon interval plus the largest jitter).
    pub calm: Duration,
    /// Peers each node mostly calls.
    pub friends: usize,
    /// Probability that a node crashes during one chaos window.
    pub crash_chance: f64,
    /// Probability that a crashed node restarts (after 0.5 to 15 s).
    pub restart_chance: f64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 100,
            outsiders: 2,
            epochs: 3,
            chaos: Duration::from_secs(20),
            calm: Duration::from_secs(6),
            friends: 3,
            crash_chance: 0.06,
            restart_chance: 0.7,
        }
    }
}

/// What a run did; equal reports for equal seeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    pub nodes: usize,
    pub calls: u64,
    pub responses: u64,
    pub server_errors: u64,
    pub timeouts: u64,
    pub cancelled: u64,
    pub unavailable: u64,
    pub died_with_caller: u64,
    pub outsider_calls: u64,
    pub handshakes: u64,
    pub connections_lost: u64,
    pub mismatched: u64,
    pub records_dropped: u64,
    pub records_injected: u64,
    pub published: u64,
    pub delivered: u64,
    pub datagrams: u64,
    pub datagrams_lost: u64,
    pub datagrams_malformed: u64,
    pub crashes: u64,
    pub restarts: u64,
    pub discovery_checks: u64,
    /// A hash of the order of every event: equal seeds give equal traces.
    pub trace: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} nodes, {} calls ({} responses, {} server errors, {} timeouts, {} cancelled, {} unavailable, \
             {} died with their caller, {} by outsiders to members), {} handshakes, {} connections lost, \
             {} wrong peers, {} records injected / {} dropped, {} published / {} delivered, {} datagrams ({} lost, {} malformed), \
             {} crashes, {} restarts, {} discovery checks, trace {:#018x}",
            self.nodes,
            self.calls,
            self.responses,
            self.server_errors,
            self.timeouts,
            self.cancelled,
            self.unavailable,
            self.died_with_caller,
            self.outsider_calls,
            self.handshakes,
            self.connections_lost,
            self.mismatched,
            self.records_injected,
            self.records_dropped,
            self.published,
            self.delivered,
            self.datagrams,
            self.datagrams_lost,
            self.datagrams_malformed,
            self.crashes,
            self.restarts,
            self.discovery_checks,
            self.trace
        )
    }
}

/// How a server answers a request.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Respond,
    Fail,
}

enum Event {
    Wake { node: usize, incarnation: u32 },
    Datagram { node: usize, bytes: Vec<u8> },
    Pipe { pipe: u64, side: usize },
    CallTick { node: usize, incarnation: u32 },
    Reply { node: usize, incarnation: u32, pipe: u64, request_id: u64, answer: Answer, payload: Vec<u8> },
    Cancel { node: usize, incarnation: u32, pipe: u64, request_id: u64 },
    Crash { node: usize },
    Restart { node: usize },
}

impl Event {
    fn tag(&self) -> (u64, u64) {
        match *self {
            Self::Wake { node, .. } => (1, node as u64),
            Self::Datagram { node, .. } => (2, node as u64),
            Self::Pipe { pipe, side } => (3, pipe * 2 + side as u64),
            Self::CallTick { node, .. } => (4, node as u64),
            Self::Reply { node, .. } => (5, node as u64),
            Self::Cancel { node, .. } => (6, node as u64),
            Self::Crash { node } => (7, node as u64),
            Self::Restart { node } => (8, node as u64),
        }
    }
}

/// One call made by the workload, as the ledger knows it.
struct Call {
    deadline: Instant,
    /// An outsider calling a member: it must never get a response.
    forbidden: bool,
    payload: Vec<u8>,
    ended: bool,
    died: bool,
}

/// Ledger key: caller node, its incarnation, the pipe of the call, the request id.
type CallKey = (usize, u32, u64, u64);

/// Stops the run: a property does not hold.
fn violation(seed: u64, now: Instant, what: fmt::Arguments<'_>) -> ! {
    panic!("seed {seed:#x}, at {} us: {what}", now.as_micros())
}

/// A simulation run.
pub struct World {
    seed: u64,
    config: SimConfig,
    rng: SimRng,
    now: Instant,
    queue: Queue<Event>,
    identities: Vec<Identity>,
    ids: Vec<DeviceId>,
    members: Rc<BTreeSet<DeviceId>>,
    friends: Vec<Vec<DeviceId>>,
    nodes: Vec<Option<Node>>,
    incarnation: Vec<u32>,
    up_since: Vec<Instant>,
    down_since: Vec<Option<Instant>>,
    wake: Vec<Option<Instant>>,
    faults: Faults,
    pipes: BTreeMap<u64, Pipe>,
    next_pipe: u64,
    calls: BTreeMap<CallKey, Call>,
    calls_enabled: bool,
    /// Per pipe and publishing side: the last sequence number published on `TOPIC`.
    published: BTreeMap<(u64, usize), u64>,
    /// Per pipe and publishing side: the last sequence number the subscriber delivered.
    delivered: BTreeMap<(u64, usize), u64>,
    next_payload: u64,
    report: Report,
}

impl World {
    /// A world of `config.nodes + config.outsiders` nodes, all down, keys drawn from `seed`.
    pub fn new(seed: u64, config: SimConfig) -> Self {
        let total = config.nodes + config.outsiders;
        let mut rng = SimRng::new(seed);
        let identities: Vec<Identity> =
            (0..total).map(|_| Identity::generate(&mut SeededRng::from_seed(rng.seed32()))).collect();
        let ids: Vec<DeviceId> = identities.iter().map(Identity::device_id).collect();
        let members: BTreeSet<DeviceId> = ids.iter().take(config.nodes).copied().collect();
        let friends = (0..total)
            .map(|n| {
                (0..config.friends)
                    .filter_map(|_| {
                        let f = rng.index(config.nodes);
                        (f != n).then(|| ids.get(f).copied()).flatten()
                    })
                    .collect()
            })
            .collect();
        Self {
            seed,
            faults: Faults::none(total),
            rng,
            now: Instant::ZERO,
            queue: Queue::new(),
            identities,
            ids,
            members: Rc::new(members),
            friends,
            nodes: (0..total).map(|_| None).collect(),
            incarnation: vec![0; total],
            up_since: vec![Instant::ZERO; total],
            down_since: vec![None; total],
            wake: vec![None; total],
            pipes: BTreeMap::new(),
            next_pipe: 1,
            calls: BTreeMap::new(),
            calls_enabled: true,
            published: BTreeMap::new(),
            delivered: BTreeMap::new(),
            next_payload: 0,
            report: Report { nodes: total, trace: 0xcbf2_9ce4_8422_2325, ..Report::default() },
            config,
        }
    }

    fn total(&self) -> usize {
        self.nodes.len()
    }

    fn is_member(&self, n: usize) -> bool {
        n < self.config.nodes
    }

    fn bound(&self) -> Duration {
        DiscoveryConfig::default().beacon_interval + self.faults.jitter + Duration::from_micros(BASE_DELAY_US + 1)
    }

    /// Plays the script and checks every property; panics (naming the seed) on a violation.
    pub fn run(mut self) -> Report {
        for n in 0..self.total() {
            self.start(n);
        }
        for _ in 0..self.config.epochs {
            self.faults = self.chaos_faults();
            let chaos_us = u64::try_from(self.config.chaos.as_micros()).unwrap_or(u64::MAX);
            for n in 0..self.total() {
                if self.rng.chance(self.config.crash_chance) {
                    let at = self.now.saturating_add(self.rng.micros(0, chaos_us));
                    self.queue.push(at, Event::Crash { node: n });
                }
            }
            self.run_for(self.config.chaos);
            self.faults.loss = 0.0;
            self.faults.corrupt = 0.0;
            self.run_for(self.config.calm);
            self.check_discovery();
        }
        self.faults = Faults::none(self.total());
        self.run_for(Duration::from_secs(10));
        self.check_discovery();
        self.calls_enabled = false;
        let forget = DiscoveryConfig::default().peer_timeout + self.bound();
        self.run_for(forget.max(Duration::from_micros(MAX_CALL_TIMEOUT_US)));
        self.check_discovery();
        self.check_forgotten(forget);
        self.check_calls();
        self.check_publications();
        self.report
    }

    fn chaos_faults(&mut self) -> Faults {
        let pick = |rng: &mut SimRng, options: &[f64]| options.get(rng.index(options.len())).copied().unwrap_or(0.0);
        let loss = pick(&mut self.rng, &[0.0, 0.02, 0.1, 0.3]);
        let duplicate = pick(&mut self.rng, &[0.0, 0.05, 0.2]);
        let reorder = pick(&mut self.rng, &[0.0, 0.1, 0.3]);
        let corrupt = pick(&mut self.rng, &[0.0, 0.01]);
        let jitter = Duration::from_millis([1, 50, 300][self.rng.index(3)]);
        let parts = if self.rng.chance(0.4) { 1 } else { 2 + self.rng.below(2) };
        let partition = (0..self.total()).map(|_| u8::try_from(self.rng.below(parts)).unwrap_or(0)).collect();
        Faults { loss, duplicate, reorder, corrupt, jitter, partition }
    }

    fn fail(&self, what: fmt::Arguments<'_>) -> ! {
        violation(self.seed, self.now, what)
    }

    fn trace(&mut self, a: u64, b: u64) {
        for x in [self.now.as_micros(), a, b] {
            self.report.trace = (self.report.trace ^ x).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now.saturating_add(d);
        while let Some((at, event)) = self.queue.pop_until(until) {
            self.now = at;
            let (kind, who) = event.tag();
            self.trace(kind, who);
            self.handle(event);
        }
        self.now = until;
    }

    fn alive(&self, n: usize, incarnation: u32) -> bool {
        self.nodes.get(n).is_some_and(Option::is_some) && self.incarnation.get(n) == Some(&incarnation)
    }

    fn handle(&mut self, event: Event) {
        match event {
            Event::Wake { node, incarnation } => {
                if self.alive(node, incarnation) && self.wake[node] == Some(self.now) {
                    self.wake[node] = None;
                    self.drive(node);
                }
            }
            Event::Datagram { node, bytes } => self.on_datagram(node, &bytes),
            Event::Pipe { pipe, side } => self.on_pipe(pipe, side),
            Event::CallTick { node, incarnation } => {
                if self.alive(node, incarnation) {
                    let next = self.now.saturating_add(self.rng.micros(200_000, 1_500_000));
                    self.queue.push(next, Event::CallTick { node, incarnation });
                    if self.calls_enabled {
                        self.call_tick(node);
                    }
                }
            }
            Event::Reply { node, incarnation, pipe, request_id, answer, payload } => {
                if !self.alive(node, incarnation) {
                    return;
                }
                if let Some(link) = self.nodes[node].as_mut().and_then(|n| n.links.get_mut(&pipe)) {
                    let _ = match answer {
                        Answer::Respond => link.server.respond(request_id, &[b"re:", &payload[..]].concat()),
                        Answer::Fail => link.server.fail(request_id, RpcErrorCode::INTERNAL, "simulated failure"),
                    };
                    self.drive_one(node, pipe);
                }
            }
            Event::Cancel { node, incarnation, pipe, request_id } => {
                if !self.alive(node, incarnation) {
                    return;
                }
                if let Some(link) = self.nodes[node].as_mut().and_then(|n| n.links.get_mut(&pipe)) {
                    // The call may have ended already; then there is nothing to cancel.
                    let _ = link.client.cancel(request_id);
                    self.drive_one(node, pipe);
                }
            }
            Event::Crash { node } => self.crash(node),
            Event::Restart { node } => {
                if self.nodes[node].is_none() {
                    self.report.restarts += 1;
                    self.start(node);
                }
            }
        }
    }

    /// Starts a new incarnation of node `n` with its old identity.
    fn start(&mut self, n: usize) {
        self.incarnation[n] += 1;
        let incarnation = self.incarnation[n];
        let advertisement = Advertisement {
            kind: DeviceKind::Embedded,
            capabilities: CapabilitySet::COMPUTE,
            // The node's "address": the world maps it back to the node when dialling.
            session_port: u16::try_from(n + 1).unwrap_or(0),
            name: format!("node-{n}"),
        };
        let mut discovery = Discovery::new(self.ids[n], advertisement, DiscoveryConfig::default(), self.now)
            .unwrap_or_else(|e| self.fail(format_args!("discovery refused node {n}: {e}")));
        discovery.query(CapabilitySet::NONE);
        let trust = if self.is_member(n) { Trust::Members(self.members.clone()) } else { Trust::Everybody };
        self.nodes[n] = Some(Node::new(discovery, SeededRng::from_seed(self.rng.seed32()), trust));
        self.up_since[n] = self.now;
        self.down_since[n] = None;
        self.wake[n] = None;
        let first_call = self.now.saturating_add(self.rng.micros(100_000, 1_500_000));
        self.queue.push(first_call, Event::CallTick { node: n, incarnation });
        self.drive(n);
    }

    fn crash(&mut self, n: usize) {
        if self.nodes[n].take().is_none() {
            return;
        }
        self.report.crashes += 1;
        self.down_since[n] = Some(self.now);
        self.wake[n] = None;
        let incarnation = self.incarnation[n];
        for (_, call) in self.calls.range_mut((n, incarnation, 0, 0)..=(n, incarnation, u64::MAX, u64::MAX)) {
            if !call.ended && !call.died {
                call.died = true;
                self.report.died_with_caller += 1;
            }
        }
        // A process crash makes the kernel reset its connections; a machine crash is silence.
        let mut resets = Vec::new();
        for (&id, pipe) in &mut self.pipes {
            for side in 0..2 {
                let end = &mut pipe.ends[side];
                if end.node == n && end.incarnation == incarnation && end.open {
                    end.open = false;
                    end.inbound.clear();
                    if pipe.ends[1 - side].open && self.rng.chance(0.5) {
                        resets.push((id, 1 - side));
                    }
                }
            }
        }
        for (pipe, to) in resets {
            self.send_segment(pipe, to, Segment::Reset);
        }
        self.pipes.retain(|_, p| !p.finished());
        if self.rng.chance(self.config.restart_chance) {
            let at = self.now.saturating_add(self.rng.micros(500_000, 15_000_000));
            self.queue.push(at, Event::Restart { node: n });
        }
    }

    /// Runs everything of node `n` that is due and puts its output on the network.
    fn drive(&mut self, n: usize) {
        let now = self.now;
        let Some(node) = self.nodes[n].as_mut() else { return };
        node.discovery.poll(now);
        let datagrams: Vec<Vec<u8>> = std::iter::from_fn(|| node.discovery.poll_transmit()).collect();
        while node.discovery.poll_event().is_some() {}
        let pipes: Vec<u64> = node.links.keys().copied().collect();
        let outputs: Vec<(u64, LinkOutput)> =
            pipes.into_iter().filter_map(|p| node.drive_link(now, p).map(|o| (p, o))).collect();
        for d in datagrams {
            self.broadcast(n, &d);
        }
        for (pipe, out) in outputs {
            self.apply(n, pipe, out);
        }
        self.schedule_wake(n);
    }

    /// Drives one link of node `n` (after input on it).
    fn drive_one(&mut self, n: usize, pipe: u64) {
        let now = self.now;
        let out = self.nodes[n].as_mut().and_then(|node| node.drive_link(now, pipe));
        if let Some(out) = out {
            self.apply(n, pipe, out);
        }
        self.schedule_wake(n);
    }

    fn schedule_wake(&mut self, n: usize) {
        let Some(node) = self.nodes[n].as_ref() else { return };
        let at = node.wake_at().max(self.now);
        if self.wake[n].is_some_and(|w| w <= at) {
            return;
        }
        self.wake[n] = Some(at);
        self.queue.push(at, Event::Wake { node: n, incarnation: self.incarnation[n] });
    }

    fn broadcast(&mut self, from: usize, bytes: &[u8]) {
        for to in 0..self.total() {
            if to == from || !self.faults.connected(from, to) {
                continue;
            }
            self.report.datagrams += 1;
            if self.rng.chance(self.faults.loss) {
                self.report.datagrams_lost += 1;
                continue;
            }
            let copies = if self.rng.chance(self.faults.duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                let mut bytes = bytes.to_vec();
                if self.rng.chance(self.faults.corrupt) && !bytes.is_empty() {
                    let i = self.rng.index(bytes.len());
                    if let Some(b) = bytes.get_mut(i) {
                        *b ^= 1 << self.rng.below(8);
                    }
                }
                let jitter = u64::try_from(self.faults.jitter.as_micros()).unwrap_or(0);
                let at = self.now.saturating_add(self.rng.micros(50, BASE_DELAY_US + jitter));
                self.queue.push(at, Event::Datagram { node: to, bytes });
            }
        }
    }

    fn on_datagram(&mut self, n: usize, bytes: &[u8]) {
        let now = self.now;
        let Some(node) = self.nodes[n].as_mut() else { return };
        if node.discovery.handle_datagram(now, bytes).is_err() {
            self.report.datagrams_malformed += 1;
        }
        self.drive(n);
    }

    /// Puts a segment on `pipe` towards end `to`, after a network delay.
    fn send_segment(&mut self, pipe: u64, to: usize, segment: Segment) {
        let mut delay = self.rng.micros(20, 200);
        if self.rng.chance(self.faults.loss) {
            delay += self.rng.micros(200_000, 600_000); // a retransmission
        }
        let due = self.now.saturating_add(delay);
        let Some(p) = self.pipes.get_mut(&pipe) else { return };
        let record = matches!(&segment, Segment::Frame(f) if crate::net::is_record(f));
        let frame = match &segment {
            Segment::Frame(f) => Some(f.clone()),
            Segment::Reset => None,
        };
        let Some(due) = p.push(to, due, segment) else { return };
        self.queue.push(due, Event::Pipe { pipe, side: to });
        let (Some(frame), true) = (frame, record) else { return };
        if self.rng.chance(self.faults.reorder) {
            p.swap_last_records(to);
        }
        if self.rng.chance(self.faults.duplicate) {
            if let Some(old) = p.sent_records[to].get(self.rng.index(p.sent_records[to].len())).cloned() {
                let later = self.now.saturating_add(self.rng.micros(1_000, 100_000));
                if let Some(due) = p.push(to, later, Segment::Frame(old)) {
                    self.report.records_injected += 1;
                    self.queue.push(due, Event::Pipe { pipe, side: to });
                }
            }
        }
        let sent = &mut p.sent_records[to];
        if sent.len() >= 32 {
            sent.remove(0);
        }
        sent.push(frame);
    }

    /// Delivers what is due on `pipe` towards end `side`, in order, unless partitioned.
    fn on_pipe(&mut self, pipe: u64, side: usize) {
        loop {
            let Some(p) = self.pipes.get_mut(&pipe) else { return };
            let other = p.ends[1 - side].node;
            let end = &mut p.ends[side];
            if !end.open {
                end.inbound.clear();
                return;
            }
            match end.inbound.front() {
                Some((due, _)) if *due <= self.now => {}
                _ => return,
            }
            if !self.faults.connected(end.node, other) {
                let retry = self.now.saturating_add(Duration::from_millis(250));
                self.queue.push(retry, Event::Pipe { pipe, side });
                return;
            }
            let Some((_, segment)) = end.inbound.pop_front() else { return };
            self.deliver(pipe, side, segment);
        }
    }

    fn deliver(&mut self, pipe: u64, side: usize, segment: Segment) {
        let now = self.now;
        let Some(p) = self.pipes.get_mut(&pipe) else { return };
        let n = p.ends[side].node;
        let Some(node) = self.nodes[n].as_mut() else { return };
        match segment {
            Segment::Frame(frame) if !p.ends[side].accepted => {
                // The listener's first frame: a real daemon would accept here.
                let identity = &self.identities[n];
                match Connection::accept(identity, &frame, now, ConnectionConfig::default(), &mut node.rng) {
                    Ok(conn) => {
                        p.ends[side].accepted = true;
                        node.links.insert(pipe, Link::new(conn, None));
                    }
                    Err(_) => {
                        p.ends[side].open = false;
                        self.send_segment(pipe, 1 - side, Segment::Reset);
                        return;
                    }
                }
            }
            Segment::Frame(frame) => node.feed(pipe, now, &frame),
            Segment::Reset => match node.links.get_mut(&pipe) {
                Some(link) => link.conn.stream_ended(),
                None => {
                    p.ends[side].open = false;
                    return;
                }
            },
        }
        self.drive_one(n, pipe);
    }

    /// Applies what driving a link of node `n` produced.
    fn apply(&mut self, n: usize, pipe: u64, out: LinkOutput) {
        let Some(side) = self
            .pipes
            .get(&pipe)
            .and_then(|p| p.ends.iter().position(|e| e.node == n && e.incarnation == self.incarnation[n] && e.open))
        else {
            return;
        };
        if out.malformed > 0 {
            self.fail(format_args!("node {n} got {} malformed channel messages from an honest peer", out.malformed));
        }
        self.report.mismatched += u64::from(out.mismatched);
        for event in out.ended {
            self.end_call(n, pipe, event);
        }
        for (seq, payload) in out.publications {
            let from = 1 - side;
            let last = self.delivered.entry((pipe, from)).or_insert(0);
            if seq != *last + 1 || payload != publication(pipe, from, seq) {
                let last = *last;
                self.fail(format_args!("pipe {pipe}: publication {seq} delivered after {last}: {payload:?}"));
            }
            *last = seq;
            self.report.delivered += 1;
        }
        for (peer, request) in out.requests {
            if self.is_member(n) && !self.members.contains(&peer) {
                self.fail(format_args!("member {n} served {} to the untrusted {peer}", request.method));
            }
            let incarnation = self.incarnation[n];
            let at = self.now.saturating_add(self.rng.micros(0, 300_000));
            let answer = match self.rng.below(20) {
                0..=13 => Some(Answer::Respond),
                14..=16 => Some(Answer::Fail),
                _ => None, // never answered: the caller's deadline ends the call
            };
            if let Some(answer) = answer {
                let (request_id, payload) = (request.request_id, request.payload);
                self.queue.push(at, Event::Reply { node: n, incarnation, pipe, request_id, answer, payload });
            }
        }
        for frame in out.frames {
            self.send_segment(pipe, 1 - side, Segment::Frame(frame));
        }
        if let Some(peer) = out.established {
            self.report.handshakes += 1;
            if !self.is_member(n) && self.calls_enabled {
                self.call(n, pipe, peer); // an outsider tries its luck at once
            }
        }
        if out.closed.is_some() {
            self.report.connections_lost += 1;
            self.report.records_dropped += out.records_dropped;
            if let Some(p) = self.pipes.get_mut(&pipe) {
                p.ends[side].open = false;
                p.ends[side].inbound.clear();
                if p.ends[1 - side].open {
                    self.send_segment(pipe, 1 - side, Segment::Reset);
                }
            }
            if self.pipes.get(&pipe).is_some_and(Pipe::finished) {
                self.pipes.remove(&pipe);
            }
        }
    }

    fn call_tick(&mut self, n: usize) {
        self.publish(n);
        let Some(node) = self.nodes[n].as_ref() else { return };
        let peers: Vec<(DeviceId, u16)> =
            node.discovery.peers().map(|p| (p.device_id, p.advertisement.session_port)).collect();
        let friends = &self.friends[n];
        let target = if !friends.is_empty() && self.rng.chance(0.85) {
            let f = friends.get(self.rng.index(friends.len())).copied();
            peers.iter().find(|(id, _)| Some(*id) == f).copied()
        } else {
            peers.get(self.rng.index(peers.len())).copied()
        };
        let Some((target, port)) = target else { return };
        match node.established_link_to(&target) {
            Some(pipe) => self.call(n, pipe, target),
            None if !node.has_link_to(&target) => self.dial(n, target, port),
            None => {}
        }
    }

    /// Publishes one message on `TOPIC` on every established connection of node `n`.
    fn publish(&mut self, n: usize) {
        let now = self.now;
        let Some(node) = self.nodes[n].as_mut() else { return };
        let mut touched = Vec::new();
        for (&pipe, link) in &mut node.links {
            let Some(side) = self.pipes.get(&pipe).and_then(|p| p.ends.iter().position(|e| e.node == n && e.open))
            else {
                continue;
            };
            let seq = self.published.get(&(pipe, side)).copied().unwrap_or(0) + 1;
            if let Ok(Some(got)) = link.pubsub.publish(now, TOPIC, &publication(pipe, side, seq)) {
                if got != seq {
                    violation(self.seed, now, format_args!("pipe {pipe}: published {got}, expected {seq}"));
                }
                self.published.insert((pipe, side), seq);
                self.report.published += 1;
                touched.push(pipe);
            }
        }
        for pipe in touched {
            self.drive_one(n, pipe);
        }
    }

    /// Makes one call from node `n` on `pipe`.
    fn call(&mut self, n: usize, pipe: u64, target: DeviceId) {
        self.next_payload += 1;
        let payload = [self.next_payload.to_be_bytes().as_slice(), target.as_bytes()].concat();
        let timeout = self.rng.micros(100_000, MAX_CALL_TIMEOUT_US);
        let cancel_at = self.rng.chance(0.03).then(|| self.now.saturating_add(self.rng.micros(0, 200_000)));
        let now = self.now;
        let Some(link) = self.nodes[n].as_mut().and_then(|node| node.links.get_mut(&pipe)) else { return };
        let Ok(request_id) = link.client.call(now, METHOD, &payload, Some(timeout)) else { return };
        let incarnation = self.incarnation[n];
        let forbidden = !self.is_member(n) && self.members.contains(&target);
        let call = Call { deadline: now.saturating_add(timeout), forbidden, payload, ended: false, died: false };
        self.calls.insert((n, incarnation, pipe, request_id), call);
        self.report.calls += 1;
        self.report.outsider_calls += u64::from(forbidden);
        if let Some(at) = cancel_at {
            self.queue.push(at, Event::Cancel { node: n, incarnation, pipe, request_id });
        }
        self.drive_one(n, pipe);
    }

    /// Opens a connection from node `n` to the device announcing `port`.
    fn dial(&mut self, n: usize, target: DeviceId, port: u16) {
        let now = self.now;
        let Some(node) = self.nodes[n].as_mut() else { return };
        let conn = match Connection::connect(&self.identities[n], now, ConnectionConfig::default(), &mut node.rng) {
            Ok(conn) => conn,
            Err(e) => self.fail(format_args!("node {n} cannot start a connection: {e}")),
        };
        let pipe = self.next_pipe;
        self.next_pipe += 1;
        node.links.insert(pipe, Link::new(conn, Some(target)));
        // A corrupted beacon may announce a port no node has: then nobody listens there.
        let to = usize::from(port).checked_sub(1).filter(|&to| to < self.total() && to != n);
        let listener = match to {
            Some(to) => End::new(to, self.incarnation[to], false),
            None => End::new(n, 0, false),
        };
        let listening = to.is_some_and(|to| self.nodes[to].is_some());
        self.pipes.insert(pipe, Pipe::new(End::new(n, self.incarnation[n], true), listener));
        if !listening {
            if let Some(p) = self.pipes.get_mut(&pipe) {
                p.ends[1].open = false;
            }
            self.send_segment(pipe, 0, Segment::Reset); // connection refused
        }
        self.drive_one(n, pipe);
    }

    fn end_call(&mut self, n: usize, pipe: u64, event: RpcEvent) {
        let key = (n, self.incarnation[n], pipe, event.request_id);
        let (seed, now) = (self.seed, self.now);
        let fail = |what: fmt::Arguments<'_>| violation(seed, now, what);
        let Some(call) = self.calls.get_mut(&key) else {
            fail(format_args!("node {n} ended call {key:?}, which it never made"))
        };
        if call.ended {
            fail(format_args!("call {key:?} ended twice, the second time with {:?}", event.outcome));
        }
        if now > call.deadline {
            fail(format_args!("call {key:?} ended after its deadline {}", call.deadline.as_micros()));
        }
        call.ended = true;
        let expected = [b"re:", &call.payload[..]].concat();
        let report = &mut self.report;
        match event.outcome {
            RpcOutcome::Response(bytes) if call.forbidden => {
                fail(format_args!("outsider {n} got a response {bytes:?} from a member to {key:?}"))
            }
            RpcOutcome::Response(bytes) if bytes != expected => {
                fail(format_args!("call {key:?} got the wrong response {bytes:?}"))
            }
            RpcOutcome::Response(_) => report.responses += 1,
            RpcOutcome::Error { code: RpcErrorCode::UNAVAILABLE, .. } => report.unavailable += 1,
            RpcOutcome::Error { .. } => report.server_errors += 1,
            RpcOutcome::TimedOut => report.timeouts += 1,
            RpcOutcome::Cancelled => report.cancelled += 1,
        }
    }

    /// Every live node lists every live node of its partition that was up for the bound.
    fn check_discovery(&mut self) {
        let bound = self.bound();
        let settled = |w: &Self, n: usize| w.nodes[n].is_some() && w.up_since[n].saturating_add(bound) <= w.now;
        for a in 0..self.total() {
            if !settled(self, a) {
                continue;
            }
            for b in 0..self.total() {
                if a == b || !settled(self, b) || !self.faults.connected(a, b) {
                    continue;
                }
                let sees = self.nodes[a].as_ref().is_some_and(|node| node.discovery.peer(&self.ids[b]).is_some());
                if !sees {
                    self.fail(format_args!("discovery did not converge: node {a} does not see node {b}"));
                }
            }
        }
        self.report.discovery_checks += 1;
    }

    /// No live node lists a node that has been down for `forget` or longer.
    fn check_forgotten(&self, forget: Duration) {
        for d in 0..self.total() {
            let Some(down) = self.down_since[d] else { continue };
            if down.saturating_add(forget) > self.now {
                continue;
            }
            for (a, node) in self.nodes.iter().enumerate() {
                if node.as_ref().is_some_and(|node| node.discovery.peer(&self.ids[d]).is_some()) {
                    self.fail(format_args!("node {a} still lists node {d}, down since {} us", down.as_micros()));
                }
            }
        }
    }

    /// Every publication on a connection that is still open at both ends was delivered.
    fn check_publications(&self) {
        for (&(pipe, side), &published) in &self.published {
            let Some(p) = self.pipes.get(&pipe) else { continue };
            if !p.ends.iter().all(|e| e.open) {
                continue;
            }
            let delivered = self.delivered.get(&(pipe, side)).copied().unwrap_or(0);
            if delivered != published {
                self.fail(format_args!(
                    "pipe {pipe}: {published} published, {delivered} delivered to a live subscriber"
                ));
            }
        }
    }

    /// Every call of a live caller ended (exactly once: `end_call` refuses a second end).
    fn check_calls(&self) {
        for (key, call) in &self.calls {
            if !call.ended && !call.died {
                self.fail(format_args!("call {key:?} never ended (deadline {} us)", call.deadline.as_micros()));
            }
        }
    }
}

/// The payload of publication `seq` from `side` of `pipe`.
fn publication(pipe: u64, side: usize, seq: u64) -> Vec<u8> {
    [pipe.to_be_bytes(), (side as u64).to_be_bytes(), seq.to_be_bytes()].concat()
}
