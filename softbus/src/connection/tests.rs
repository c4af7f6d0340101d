//! Two connections joined by an in-memory stream and driven by a fake clock: handshake,
//! data, keepalive, failure detection and every way a connection ends.

use super::*;
use crate::identity::DeviceId;
use crate::rng::SeededRng;
use crate::session::PeerIdentity;
use crate::wire::{Beacon, CapabilitySet, DeviceKind};

fn identity(seed: u8) -> Identity {
    Identity::generate(&mut SeededRng::from_seed([seed; 32]))
}

fn trust_all(_: &PeerIdentity) -> bool {
    true
}

fn trust_none(_: &PeerIdentity) -> bool {
    false
}

/// Moves every pending frame of `from` to `to` as one stream write, at `now`.
fn pump(from: &mut Connection, to: &mut Connection, now: Instant, trust: &dyn TrustPolicy) -> usize {
    let mut bytes = Vec::new();
    while let Some(frame) = from.poll_transmit() {
        bytes.extend_from_slice(&frame);
    }
    if !bytes.is_empty() && !to.is_closed() {
        to.handle_bytes(now, &bytes, trust).unwrap();
    }
    bytes.len()
}

fn events(c: &mut Connection) -> Vec<ConnectionEvent> {
    core::iter::from_fn(|| c.poll_event()).collect()
}

/// Connects alice (initiator) to bob at time zero with the default timers.
fn pair(trust_a: &dyn TrustPolicy, trust_b: &dyn TrustPolicy) -> (Connection, Connection) {
    let (a_id, b_id) = (identity(1), identity(2));
    let mut rng = SeededRng::from_seed([7; 32]);
    let config = ConnectionConfig::default();
    let mut alice = Connection::connect(&a_id, Instant::ZERO, config, &mut rng).unwrap();
    let first = alice.poll_transmit().unwrap();
    let mut bob = Connection::accept(&b_id, &first, Instant::ZERO, config, &mut rng).unwrap();
    pump(&mut bob, &mut alice, Instant::ZERO, trust_a);
    pump(&mut alice, &mut bob, Instant::ZERO, trust_b);
    (alice, bob)
}

#[test]
fn handshake_and_data_over_a_stream() {
    let (mut alice, mut bob) = pair(&trust_all, &trust_all);
    assert!(alice.is_established() && bob.is_established());
    assert!(
        matches!(events(&mut alice)[..], [ConnectionEvent::Established(p)] if p.device_id == identity(2).device_id())
    );
    assert!(
        matches!(events(&mut bob)[..], [ConnectionEvent::Established(p)] if p.device_id == identity(1).device_id())
    );
    let msg = encode_messages(&[ChannelMessage::RpcCancel { request_id: 4 }]).unwrap();
    alice.send(&msg).unwrap();
    alice.send(&msg).unwrap();
    pump(&mut alice, &mut bob, Instant::ZERO, &trust_all);
    assert_eq!(events(&mut bob), [ConnectionEvent::Received(msg.clone()), ConnectionEvent::Received(msg)]);
}

#[test]
fn frames_split_at_every_byte_still_arrive() {
    let (mut alice, mut bob) = pair(&trust_all, &trust_all);
    events(&mut bob);
    let msg = encode_messages(&[ChannelMessage::Subscribe { topic: "news" }]).unwrap();
    alice.send(&msg).unwrap();
    let frame = alice.poll_transmit().unwrap();
    for byte in &frame {
        bob.handle_bytes(Instant::ZERO, core::slice::from_ref(byte), &trust_all).unwrap();
    }
    assert_eq!(events(&mut bob), [ConnectionEvent::Received(msg)]);
}

#[test]
fn keepalives_keep_a_quiet_connection_alive() {
    let (mut alice, mut bob) = pair(&trust_all, &trust_all);
    let config = ConnectionConfig::default();
    events(&mut alice);
    events(&mut bob);
    assert_eq!(alice.poll_at(), Some(Instant::ZERO.saturating_add(config.keepalive_interval)));
    // One minute of silence from the application, in 1 s steps: probes and answers flow.
    for s in 1..=60u64 {
        let now = Instant::from_millis(s * 1000);
        alice.poll(now);
        bob.poll(now);
        pump(&mut alice, &mut bob, now, &trust_all);
        pump(&mut bob, &mut alice, now, &trust_all);
        pump(&mut alice, &mut bob, now, &trust_all);
    }
    assert!(alice.is_established() && bob.is_established());
    assert!(events(&mut alice).is_empty(), "keepalives never reach the caller");
    assert!(events(&mut bob).is_empty());
    assert!(alice.stats().keepalives_sent > 0 || bob.stats().keepalives_sent > 0);
    assert!(alice.stats().keepalives_answered + bob.stats().keepalives_answered > 0);
}

#[test]
fn a_silent_peer_is_lost_after_the_idle_timeout() {
    let (mut alice, _bob) = pair(&trust_all, &trust_all);
    events(&mut alice);
    let config = ConnectionConfig::default();
    let mut now = Instant::ZERO;
    let end = Instant::ZERO.saturating_add(config.idle_timeout);
    let mut probes = 0;
    while let Some(at) = alice.poll_at() {
        assert!(at >= now, "timers never go back");
        now = at;
        alice.poll(now);
        probes += core::iter::from_fn(|| alice.poll_transmit()).count();
        assert!(now <= end, "lost by the idle timeout");
    }
    assert_eq!(now, end);
    assert_eq!(probes, 3, "probes at 5, 10 and 15 s, then nothing more");
    assert_eq!(
        events(&mut alice),
        [ConnectionEvent::ConnectionLost(CloseReason::PeerSilent { silent_for: config.idle_timeout })]
    );
    assert_eq!(alice.send(b""), Err(ConnectionError::Closed));
    assert_eq!(alice.handle_bytes(now, b"x", &trust_all), Err(ConnectionError::Closed));
}

#[test]
fn the_handshake_times_out() {
    let mut rng = SeededRng::from_seed([8; 32]);
    let config = ConnectionConfig::default();
    let mut alice = Connection::connect(&identity(1), Instant::ZERO, config, &mut rng).unwrap();
    assert_eq!(alice.poll_at(), Some(Instant::ZERO.saturating_add(config.handshake_timeout)));
    alice.poll(Instant::from_millis(9_999));
    assert!(!alice.is_closed());
    alice.poll(Instant::from_millis(10_000));
    assert_eq!(events(&mut alice), [ConnectionEvent::ConnectionLost(CloseReason::HandshakeTimeout)]);
    assert_eq!(alice.poll_at(), None);
}

#[test]
fn closing_is_reported_once() {
    let (mut alice, mut bob) = pair(&trust_all, &trust_all);
    events(&mut alice);
    events(&mut bob);
    alice.stream_ended();
    alice.close_local();
    assert_eq!(events(&mut alice), [ConnectionEvent::ConnectionLost(CloseReason::PeerClosed)]);
    bob.close_local();
    assert_eq!(events(&mut bob), [ConnectionEvent::ConnectionLost(CloseReason::Local)]);
    assert!(bob.is_closed() && bob.poll_at().is_none());
}

#[test]
fn untrusted_peers_end_the_connection_on_both_sides() {
    // Alice refuses bob: she never sends message 3, bob never establishes.
    let (mut alice, mut bob) = pair(&trust_none, &trust_all);
    let bob_id = identity(2).device_id();
    assert_eq!(
        events(&mut alice),
        [ConnectionEvent::ConnectionLost(CloseReason::Handshake(SessionError::Untrusted(bob_id)))]
    );
    assert!(!bob.is_established());
    bob.poll(Instant::from_millis(10_000));
    assert_eq!(events(&mut bob), [ConnectionEvent::ConnectionLost(CloseReason::HandshakeTimeout)]);

    // Bob refuses alice after message 3.
    let (_alice, mut bob) = pair(&trust_all, &trust_none);
    let alice_id = identity(1).device_id();
    assert_eq!(
        events(&mut bob),
        [ConnectionEvent::ConnectionLost(CloseReason::Handshake(SessionError::Untrusted(alice_id)))]
    );
}

#[test]
fn garbage_and_discovery_frames_end_the_connection() {
    let (_alice, mut bob) = pair(&trust_all, &trust_all);
    events(&mut bob);
    bob.handle_bytes(Instant::ZERO, b"GET / HTTP/1.1\r\n", &trust_all).unwrap();
    assert_eq!(events(&mut bob), [ConnectionEvent::ConnectionLost(CloseReason::Malformed(WireError::BadMagic))]);

    let (_alice, mut bob) = pair(&trust_all, &trust_all);
    events(&mut bob);
    let beacon = Beacon {
        device_id: DeviceId::from_bytes([1; 16]),
        kind: DeviceKind::Laptop,
        capabilities: CapabilitySet::NONE,
        session_port: 0,
        name: "x",
    };
    bob.handle_bytes(Instant::ZERO, &wire::encode_to_vec(&beacon).unwrap(), &trust_all).unwrap();
    assert!(matches!(events(&mut bob)[..], [ConnectionEvent::ConnectionLost(CloseReason::Protocol(_))]));
}

#[test]
fn replayed_records_are_dropped_and_counted() {
    let (mut alice, mut bob) = pair(&trust_all, &trust_all);
    events(&mut bob);
    let msg = encode_messages(&[ChannelMessage::RpcCancel { request_id: 1 }]).unwrap();
    alice.send(&msg).unwrap();
    let frame = alice.poll_transmit().unwrap();
    bob.handle_bytes(Instant::ZERO, &frame, &trust_all).unwrap();
    bob.handle_bytes(Instant::ZERO, &frame, &trust_all).unwrap();
    assert_eq!(events(&mut bob), [ConnectionEvent::Received(msg)]);
    assert_eq!(bob.stats().records_dropped, 1);
    assert!(bob.is_established());
}

#[test]
fn frame_reader_returns_whole_frames_only() {
    let beacon = Beacon {
        device_id: DeviceId::from_bytes([2; 16]),
        kind: DeviceKind::Phone,
        capabilities: CapabilitySet::NONE,
        session_port: 1,
        name: "phone",
    };
    let one = wire::encode_to_vec(&beacon).unwrap();
    let mut r = FrameReader::new();
    r.push(&one[..5]);
    assert_eq!(r.next_frame(), Ok(None));
    r.push(&one[5..]);
    r.push(&one[..3]);
    assert_eq!(r.next_frame(), Ok(Some(one.clone())));
    assert_eq!(r.next_frame(), Ok(None));
    assert_eq!(r.buffered(), 3);
    assert_eq!(first_frame_type(&one), Ok(wire::FrameType::Beacon));
    let mut bad = FrameReader::new();
    bad.push(b"XXXXXXXXXX");
    assert_eq!(bad.next_frame(), Err(WireError::BadMagic));
}
