//! The simulated network: a seeded random source, the fault model, the event queue, and the
//! byte pipes that stand for TCP connections.
//!
//! Design: discovery datagrams are delivered one by one with their own delay, so they can be
//! lost, duplicated, reordered (by jitter), corrupted or cut off by a partition. A [`Pipe`]
//! models one TCP connection: each direction is a FIFO of frames with delivery times that
//! never go backwards. TCP hides loss, so a lost segment becomes a retransmission delay for
//! it and everything behind it; a partition stalls the head of the pipe until it heals. On
//! top of that an adversary may inject a copy of an earlier record or swap two records in
//! flight, which the sessions must drop or tolerate. A closed or crashed end turns into a
//! `Reset` segment (FIN/RST) for the other end, or into silence.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::time::Duration;

use softbus::time::Instant;

/// A splitmix64 generator: the one source of randomness of a run, apart from key material.
#[derive(Debug, Clone)]
pub struct SimRng(u64);

impl SimRng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// An index into a slice of `len` elements.
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64) < p
    }

    /// Uniform in `lo..=hi` microseconds.
    pub fn micros(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_micros(lo + self.below(hi.saturating_sub(lo) + 1))
    }

    /// A 32-byte seed for key material and the state machines' generators.
    pub fn seed32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// What the network does to traffic now.
#[derive(Debug, Clone, PartialEq)]
pub struct Faults {
    /// Probability that a datagram is lost, or that a stream segment needs a retransmission.
    pub loss: f64,
    /// Probability that a datagram arrives twice, or that an old record is injected again.
    pub duplicate: f64,
    /// Probability that a record overtakes the one sent before it on a stream.
    pub reorder: f64,
    /// Probability that a datagram arrives with one byte changed.
    pub corrupt: f64,
    /// Largest extra delay of a datagram (reordering by jitter).
    pub jitter: Duration,
    /// The partition of each node: nodes talk only within the same partition.
    pub partition: Vec<u8>,
}

impl Faults {
    /// A perfect network for `nodes` nodes.
    pub fn none(nodes: usize) -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            jitter: Duration::from_millis(1),
            partition: vec![0; nodes],
        }
    }

    /// Whether `a` and `b` can talk.
    pub fn connected(&self, a: usize, b: usize) -> bool {
        self.partition.get(a) == self.partition.get(b)
    }
}

/// One scheduled event: ordered by time, then by the order of scheduling.
pub struct Scheduled<E> {
    pub at: Instant,
    pub seq: u64,
    pub event: E,
}

impl<E> PartialEq for Scheduled<E> {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}

impl<E> Eq for Scheduled<E> {}

impl<E> PartialOrd for Scheduled<E> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<E> Ord for Scheduled<E> {
    // Reversed: the heap pops the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The event queue of the simulated clock.
pub struct Queue<E> {
    heap: BinaryHeap<Scheduled<E>>,
    seq: u64,
}

impl<E> Queue<E> {
    pub fn new() -> Self {
        Self { heap: BinaryHeap::new(), seq: 0 }
    }

    pub fn push(&mut self, at: Instant, event: E) {
        self.seq += 1;
        self.heap.push(Scheduled { at, seq: self.seq, event });
    }

    /// The next event at or before `until`.
    pub fn pop_until(&mut self, until: Instant) -> Option<(Instant, E)> {
        if self.heap.peek()?.at > until {
            return None;
        }
        self.heap.pop().map(|s| (s.at, s.event))
    }
}

/// What travels on one direction of a pipe.
#[derive(Debug, Clone)]
pub enum Segment {
    /// One frame.
    Frame(Vec<u8>),
    /// The other end closed or reset the connection.
    Reset,
}

/// One end of a pipe: a node incarnation and the frames travelling towards it.
#[derive(Debug)]
pub struct End {
    pub node: usize,
    pub incarnation: u32,
    /// Whether this end still exists (its connection did not end, its node did not crash).
    pub open: bool,
    /// Whether this end's node accepted the connection (the responder, after frame 1).
    pub accepted: bool,
    pub inbound: VecDeque<(Instant, Segment)>,
    /// When the last inbound segment is due: later segments are never due earlier.
    pub last_due: Instant,
}

impl End {
    pub fn new(node: usize, incarnation: u32, accepted: bool) -> Self {
        Self { node, incarnation, open: true, accepted, inbound: VecDeque::new(), last_due: Instant::ZERO }
    }
}

/// One simulated TCP connection: `ends[0]` dialled `ends[1]`.
#[derive(Debug)]
pub struct Pipe {
    pub ends: [End; 2],
    /// Record frames sent so far in each direction, for the adversary to inject again.
    pub sent_records: [Vec<Vec<u8>>; 2],
}

/// Whether `frame` is an encrypted record (frame type byte `0x20`).
pub fn is_record(frame: &[u8]) -> bool {
    frame.get(3) == Some(&0x20)
}

impl Pipe {
    pub fn new(dialer: End, listener: End) -> Self {
        Self { ends: [dialer, listener], sent_records: [Vec::new(), Vec::new()] }
    }

    /// Queues `segment` towards `to`, due at `due` or after the segment before it.
    /// Returns when it is due.
    pub fn push(&mut self, to: usize, due: Instant, segment: Segment) -> Option<Instant> {
        let end = self.ends.get_mut(to)?;
        let due = due.max(end.last_due);
        end.last_due = due;
        end.inbound.push_back((due, segment));
        Some(due)
    }

    /// Swaps the payloads of the last two inbound records of `to` (same due times), so the
    /// later record overtakes the earlier one.
    pub fn swap_last_records(&mut self, to: usize) -> bool {
        let Some(end) = self.ends.get_mut(to) else { return false };
        let n = end.inbound.len();
        if n < 2 {
            return false;
        }
        let both_records = matches!(
            (end.inbound.get(n - 2), end.inbound.get(n - 1)),
            (Some((_, Segment::Frame(a))), Some((_, Segment::Frame(b)))) if is_record(a) && is_record(b)
        );
        if !both_records {
            return false;
        }
        let last = end.inbound.get(n - 1).map(|(_, s)| s.clone());
        let before = end.inbound.get(n - 2).map(|(_, s)| s.clone());
        if let (Some(last), Some(before)) = (last, before) {
            if let Some(slot) = end.inbound.get_mut(n - 2) {
                slot.1 = last;
            }
            if let Some(slot) = end.inbound.get_mut(n - 1) {
                slot.1 = before;
            }
        }
        true
    }

    /// Whether both ends are gone: the pipe can be forgotten (what is in flight is dropped).
    pub fn finished(&self) -> bool {
        self.ends.iter().all(|e| !e.open)
    }
}
