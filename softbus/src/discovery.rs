//! Discovery: who is on the local network, what they are and what they offer.
//!
//! Design: a sans-IO state machine. The caller hands in every datagram received on the
//! discovery multicast group ([`Discovery::handle_datagram`]), calls [`Discovery::poll`] at
//! [`Discovery::poll_at`] or later, and sends whatever [`Discovery::poll_transmit`] yields to
//! the group. The machine multicasts a beacon at start and every `beacon_interval`, answers
//! queries with a beacon, keeps a table of peers heard from, and reports changes as
//! [`DiscoveryEvent`]s.
//!
//! Bad input and floods: every queue and table is bounded. The peer table holds at most
//! `max_peers` entries; a new peer beyond that evicts the one heard from least recently (a
//! flood of fake ids churns the table but never grows it). Answers to queries are coalesced
//! and rate-limited to one beacon per `min_answer_interval`, so a query flood costs at most
//! that many beacons. Unsent events beyond `max_pending_events` drop the oldest. Every such
//! case is counted in [`DiscoveryStats`] for the log.

use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;

use crate::identity::DeviceId;
use crate::time::Instant;
use crate::wire::{self, Beacon, CapabilitySet, Datagram, DeviceKind, Query, WireError};

/// Datagrams waiting to be sent, at most.
const MAX_PENDING_TRANSMITS: usize = 16;

/// The tunables of discovery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryConfig {
    /// Time between two periodic beacons.
    pub beacon_interval: Duration,
    /// A peer not heard from for this long is lost.
    pub peer_timeout: Duration,
    /// Most peers kept at once.
    pub max_peers: usize,
    /// Least time between two beacons sent in answer to queries.
    pub min_answer_interval: Duration,
    /// Most events kept for [`Discovery::poll_event`].
    pub max_pending_events: usize,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        Self {
            beacon_interval: Duration::from_secs(5),
            peer_timeout: Duration::from_secs(16),
            max_peers: 256,
            min_answer_interval: Duration::from_millis(250),
            max_pending_events: 1024,
        }
    }
}

/// What this device announces about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Advertisement {
    /// Its kind.
    pub kind: DeviceKind,
    /// Its capabilities.
    pub capabilities: CapabilitySet,
    /// Where it accepts sessions, 0 for nowhere.
    pub session_port: u16,
    /// Its name, at most [`wire::discovery::MAX_NAME_LEN`] bytes.
    pub name: String,
}

/// A device heard from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its id.
    pub device_id: DeviceId,
    /// What it announced.
    pub advertisement: Advertisement,
    /// When it was first heard from.
    pub first_seen: Instant,
    /// When it was last heard from.
    pub last_seen: Instant,
}

/// A change in the set of peers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryEvent {
    /// A device was heard from for the first time (or again after it was lost).
    PeerFound(PeerInfo),
    /// A known device announced something different.
    PeerUpdated(PeerInfo),
    /// A device went silent for longer than the timeout, or was evicted from a full table.
    PeerLost(DeviceId),
}

/// Counters for the log: what discovery dropped or limited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Beacons from other devices accepted.
    pub beacons_received: u64,
    /// Queries from other devices accepted.
    pub queries_received: u64,
    /// Datagrams that did not decode, or were not discovery frames.
    pub malformed: u64,
    /// Peers evicted from the full table.
    pub evicted: u64,
    /// Events dropped because the caller did not poll them in time.
    pub events_dropped: u64,
    /// Queries answered by a beacon already scheduled (rate limiting).
    pub answers_coalesced: u64,
    /// Datagrams dropped because the transmit queue was full.
    pub transmits_dropped: u64,
}

/// Why discovery refused an input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscoveryError {
    /// The datagram did not decode.
    Wire(WireError),
    /// The datagram is a session frame, not a discovery frame.
    NotDiscovery,
    /// The advertisement's name is longer than a beacon can carry.
    NameTooLong(usize),
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Wire(e) => write!(f, "malformed discovery datagram: {e}"),
            Self::NotDiscovery => f.write_str("a session frame arrived on the discovery channel"),
            Self::NameTooLong(n) => {
                write!(f, "device name is {n} bytes, at most {} allowed", wire::discovery::MAX_NAME_LEN)
            }
        }
    }
}

impl core::error::Error for DiscoveryError {}

impl From<WireError> for DiscoveryError {
    fn from(e: WireError) -> Self {
        Self::Wire(e)
    }
}

/// The discovery state machine of one device.
#[derive(Debug)]
pub struct Discovery {
    config: DiscoveryConfig,
    local_id: DeviceId,
    advertisement: Advertisement,
    peers: BTreeMap<DeviceId, PeerInfo>,
    /// The same peers ordered by `last_seen`, oldest first: for expiry and eviction.
    by_age: BTreeSet<(Instant, DeviceId)>,
    next_beacon: Instant,
    answer_due: Option<Instant>,
    last_answer: Option<Instant>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<DiscoveryEvent>,
    stats: DiscoveryStats,
}

impl Discovery {
    /// Discovery for the device `local_id`, announcing `advertisement`; the first beacon is
    /// due at `now`.
    pub fn new(
        local_id: DeviceId,
        advertisement: Advertisement,
        config: DiscoveryConfig,
        now: Instant,
    ) -> Result<Self, DiscoveryError> {
        check_name(&advertisement)?;
        Ok(Self {
            config,
            local_id,
            advertisement,
            peers: BTreeMap::new(),
            by_age: BTreeSet::new(),
            next_beacon: now,
            answer_due: None,
            last_answer: None,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: DiscoveryStats::default(),
        })
    }

    /// Changes what this device announces; a beacon goes out at the next poll.
    pub fn set_advertisement(&mut self, advertisement: Advertisement, now: Instant) -> Result<(), DiscoveryError> {
        check_name(&advertisement)?;
        self.advertisement = advertisement;
        self.next_beacon = now;
        Ok(())
    }

    /// Takes in a datagram received on the discovery group at `now`.
    ///
    /// Malformed datagrams and session frames are refused (and counted); the caller may log
    /// the error and go on.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<(), DiscoveryError> {
        let decoded = wire::decode_datagram(datagram).map_err(|e| {
            self.stats.malformed += 1;
            DiscoveryError::Wire(e)
        })?;
        match decoded {
            Datagram::Beacon(beacon) => self.on_beacon(now, &beacon),
            Datagram::Query(query) => self.on_query(now, &query),
            Datagram::Handshake(_) | Datagram::Record(_) | Datagram::Pairing(_) => {
                self.stats.malformed += 1;
                return Err(DiscoveryError::NotDiscovery);
            }
        }
        Ok(())
    }

    /// Asks devices offering all of `wanted` (any device if empty) to announce themselves.
    pub fn query(&mut self, wanted: CapabilitySet) {
        let query = Query { device_id: self.local_id, wanted };
        match wire::encode_to_vec(&query) {
            Ok(bytes) => self.push_transmit(bytes),
            Err(_) => self.stats.transmits_dropped += 1,
        }
    }

    /// Does what is due at `now`: sends a periodic or answering beacon, loses silent peers.
    pub fn poll(&mut self, now: Instant) {
        let answer_now = self.answer_due.is_some_and(|due| due <= now);
        if answer_now || self.next_beacon <= now {
            self.send_beacon();
            if answer_now {
                self.last_answer = Some(now);
            }
            self.answer_due = None;
            self.next_beacon = now.saturating_add(self.config.beacon_interval);
        }
        while let Some(&(last_seen, id)) = self.by_age.first() {
            if last_seen.saturating_add(self.config.peer_timeout) > now {
                break;
            }
            self.remove_peer(last_seen, id);
        }
    }

    /// When [`Discovery::poll`] next has something to do.
    pub fn poll_at(&self) -> Instant {
        let mut at = self.next_beacon;
        if let Some(due) = self.answer_due {
            at = at.min(due);
        }
        if let Some(&(last_seen, _)) = self.by_age.first() {
            at = at.min(last_seen.saturating_add(self.config.peer_timeout));
        }
        at
    }

    /// The next datagram to send to the discovery group.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next change in the set of peers.
    pub fn poll_event(&mut self) -> Option<DiscoveryEvent> {
        self.events.pop_front()
    }

    /// The peers known now, by device id.
    pub fn peers(&self) -> impl Iterator<Item = &PeerInfo> {
        self.peers.values()
    }

    /// What is known of `id`.
    pub fn peer(&self, id: &DeviceId) -> Option<&PeerInfo> {
        self.peers.get(id)
    }

    /// The counters of dropped and limited input.
    pub fn stats(&self) -> &DiscoveryStats {
        &self.stats
    }

    fn on_beacon(&mut self, now: Instant, beacon: &Beacon<'_>) {
        if beacon.device_id == self.local_id {
            return;
        }
        self.stats.beacons_received += 1;
        let advertisement = Advertisement {
            kind: beacon.kind,
            capabilities: beacon.capabilities,
            session_port: beacon.session_port,
            name: String::from(beacon.name),
        };
        if let Some(peer) = self.peers.get_mut(&beacon.device_id) {
            self.by_age.remove(&(peer.last_seen, peer.device_id));
            peer.last_seen = now;
            self.by_age.insert((now, peer.device_id));
            if peer.advertisement != advertisement {
                peer.advertisement = advertisement;
                let event = DiscoveryEvent::PeerUpdated(peer.clone());
                self.push_event(event);
            }
            return;
        }
        if self.peers.len() >= self.config.max_peers {
            match self.by_age.first().copied() {
                Some((last_seen, oldest)) => {
                    self.stats.evicted += 1;
                    self.remove_peer(last_seen, oldest);
                }
                None => return, // max_peers is zero: keep no peers at all.
            }
        }
        let peer = PeerInfo { device_id: beacon.device_id, advertisement, first_seen: now, last_seen: now };
        self.by_age.insert((now, peer.device_id));
        self.peers.insert(peer.device_id, peer.clone());
        self.push_event(DiscoveryEvent::PeerFound(peer));
    }

    fn on_query(&mut self, now: Instant, query: &Query) {
        if query.device_id == self.local_id {
            return;
        }
        self.stats.queries_received += 1;
        if !self.advertisement.capabilities.contains(query.wanted) {
            return;
        }
        if self.answer_due.is_some() {
            self.stats.answers_coalesced += 1;
            return;
        }
        let earliest = self.last_answer.map_or(now, |t| t.saturating_add(self.config.min_answer_interval));
        self.answer_due = Some(earliest.max(now));
    }

    fn remove_peer(&mut self, last_seen: Instant, id: DeviceId) {
        self.by_age.remove(&(last_seen, id));
        if self.peers.remove(&id).is_some() {
            self.push_event(DiscoveryEvent::PeerLost(id));
        }
    }

    fn send_beacon(&mut self) {
        let beacon = Beacon {
            device_id: self.local_id,
            kind: self.advertisement.kind,
            capabilities: self.advertisement.capabilities,
            session_port: self.advertisement.session_port,
            name: &self.advertisement.name,
        };
        match wire::encode_to_vec(&beacon) {
            Ok(bytes) => self.push_transmit(bytes),
            Err(_) => self.stats.transmits_dropped += 1,
        }
    }

    fn push_transmit(&mut self, bytes: Vec<u8>) {
        if self.transmits.len() >= MAX_PENDING_TRANSMITS {
            self.transmits.pop_front();
            self.stats.transmits_dropped += 1;
        }
        self.transmits.push_back(bytes);
    }

    fn push_event(&mut self, event: DiscoveryEvent) {
        if self.events.len() >= self.config.max_pending_events {
            self.events.pop_front();
            self.stats.events_dropped += 1;
        }
        self.events.push_back(event);
    }
}

fn check_name(advertisement: &Advertisement) -> Result<(), DiscoveryError> {
    let len = advertisement.name.len();
    if len > wire::discovery::MAX_NAME_LEN {
        return Err(DiscoveryError::NameTooLong(len));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn id(n: u32) -> DeviceId {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&n.to_be_bytes());
        DeviceId::from_bytes(b)
    }

    fn advert(name: &str, capabilities: CapabilitySet) -> Advertisement {
        Advertisement { kind: DeviceKind::Laptop, capabilities, session_port: 9000, name: name.to_string() }
    }

    fn node(n: u32, caps: CapabilitySet) -> Discovery {
        Discovery::new(id(n), advert(&alloc::format!("node{n}"), caps), DiscoveryConfig::default(), Instant::ZERO)
            .unwrap()
    }

    fn beacon_bytes(n: u32, name: &str) -> Vec<u8> {
        let b = Beacon {
            device_id: id(n),
            kind: DeviceKind::Phone,
            capabilities: CapabilitySet::CAMERA,
            session_port: 1,
            name,
        };
        wire::encode_to_vec(&b).unwrap()
    }

    fn drain_events(d: &mut Discovery) -> Vec<DiscoveryEvent> {
        core::iter::from_fn(|| d.poll_event()).collect()
    }

    fn secs(s: u64) -> Instant {
        Instant::from_millis(s * 1000)
    }

    #[test]
    fn two_nodes_find_each_other_from_their_first_beacons() {
        let mut a = node(1, CapabilitySet::DISPLAY);
        let mut b = node(2, CapabilitySet::STORAGE);
        a.poll(Instant::ZERO);
        b.poll(Instant::ZERO);
        let from_a = a.poll_transmit().unwrap();
        let from_b = b.poll_transmit().unwrap();
        b.handle_datagram(Instant::ZERO, &from_a).unwrap();
        a.handle_datagram(Instant::ZERO, &from_b).unwrap();
        match drain_events(&mut a).as_slice() {
            [DiscoveryEvent::PeerFound(p)] => {
                assert_eq!(p.device_id, id(2));
                assert_eq!(p.advertisement, advert("node2", CapabilitySet::STORAGE));
            }
            other => panic!("unexpected events {other:?}"),
        }
        assert_eq!(b.peer(&id(1)).unwrap().advertisement.name, "node1");
        // Own beacons looping back from the multicast group are ignored.
        a.handle_datagram(Instant::ZERO, &from_a).unwrap();
        assert_eq!(a.peers().count(), 1);
    }

    #[test]
    fn beacons_repeat_at_the_interval() {
        let mut a = node(1, CapabilitySet::NONE);
        a.poll(Instant::ZERO);
        assert!(a.poll_transmit().is_some());
        assert_eq!(a.poll_at(), secs(5));
        a.poll(secs(4));
        assert!(a.poll_transmit().is_none());
        a.poll(secs(5));
        assert!(a.poll_transmit().is_some());
    }

    #[test]
    fn changed_beacons_update_and_silent_peers_are_lost() {
        let mut a = node(1, CapabilitySet::NONE);
        a.handle_datagram(secs(1), &beacon_bytes(7, "cam")).unwrap();
        a.handle_datagram(secs(2), &beacon_bytes(7, "cam")).unwrap();
        a.handle_datagram(secs(3), &beacon_bytes(7, "camera")).unwrap();
        let events = drain_events(&mut a);
        assert!(
            matches!(events.as_slice(), [DiscoveryEvent::PeerFound(_), DiscoveryEvent::PeerUpdated(p)] if p.advertisement.name == "camera")
        );
        assert_eq!(a.peer(&id(7)).unwrap().first_seen, secs(1));
        a.poll(secs(18));
        assert!(drain_events(&mut a).is_empty());
        assert_eq!(a.poll_at(), secs(19), "the silence deadline of the peer");
        a.poll(secs(19));
        assert_eq!(drain_events(&mut a), [DiscoveryEvent::PeerLost(id(7))]);
        assert!(a.peer(&id(7)).is_none());
    }

    #[test]
    fn queries_are_answered_and_rate_limited() {
        let mut a = node(1, CapabilitySet::CAMERA);
        a.poll(Instant::ZERO);
        a.poll_transmit();
        let mut asker = node(2, CapabilitySet::NONE);
        asker.query(CapabilitySet::CAMERA);
        let query = asker.poll_transmit().unwrap();
        let t = Instant::from_millis(1000);
        a.handle_datagram(t, &query).unwrap();
        assert_eq!(a.poll_at(), t);
        a.poll(t);
        assert!(a.poll_transmit().is_some(), "first query is answered at once");
        // A burst of queries right after: one answer, no sooner than the rate limit allows.
        for i in 0..1000 {
            a.handle_datagram(Instant::from_millis(1001 + i % 10), &query).unwrap();
        }
        a.poll(Instant::from_millis(1100));
        assert!(a.poll_transmit().is_none());
        a.poll(Instant::from_millis(1250));
        assert!(a.poll_transmit().is_some());
        assert!(a.poll_transmit().is_none());
        assert_eq!(a.stats().answers_coalesced, 999);
        // A query for capabilities this device lacks is not answered.
        asker.query(CapabilitySet::DISPLAY);
        a.handle_datagram(secs(3), &asker.poll_transmit().unwrap()).unwrap();
        a.poll(secs(3));
        assert!(a.poll_transmit().is_none());
    }

    #[test]
    fn a_flood_of_fake_ids_keeps_memory_bounded() {
        let config = DiscoveryConfig { max_peers: 64, max_pending_events: 100, ..DiscoveryConfig::default() };
        let mut a = Discovery::new(id(0), advert("a", CapabilitySet::NONE), config, Instant::ZERO).unwrap();
        for n in 1..=10_000u32 {
            a.handle_datagram(Instant::from_micros(u64::from(n)), &beacon_bytes(n, "fake")).unwrap();
        }
        assert_eq!(a.peers().count(), 64);
        assert_eq!(a.by_age.len(), 64);
        assert_eq!(a.events.len(), 100);
        assert_eq!(a.stats().evicted, 10_000 - 64);
        assert!(a.stats().events_dropped > 0);
        // The newest survive; the oldest were evicted.
        assert!(a.peer(&id(10_000)).is_some());
        assert!(a.peer(&id(1)).is_none());
    }

    #[test]
    fn bad_input_is_refused_and_counted() {
        let mut a = node(1, CapabilitySet::NONE);
        assert!(matches!(a.handle_datagram(Instant::ZERO, b"garbage"), Err(DiscoveryError::Wire(_))));
        let record = wire::encode_to_vec(&wire::Record { session_id: 1, counter: 0, ciphertext: &[0; 16] }).unwrap();
        assert_eq!(a.handle_datagram(Instant::ZERO, &record), Err(DiscoveryError::NotDiscovery));
        assert_eq!(a.stats().malformed, 2);
        let long = "n".repeat(65);
        assert_eq!(
            Discovery::new(id(1), advert(&long, CapabilitySet::NONE), DiscoveryConfig::default(), Instant::ZERO)
                .unwrap_err(),
            DiscoveryError::NameTooLong(65)
        );
    }

    #[test]
    fn transmit_queue_is_bounded() {
        let mut a = node(1, CapabilitySet::NONE);
        for _ in 0..100 {
            a.query(CapabilitySet::NONE);
        }
        assert_eq!(a.transmits.len(), MAX_PENDING_TRANSMITS);
        assert_eq!(a.stats().transmits_dropped, 100 - MAX_PENDING_TRANSMITS as u64);
    }
}
