//! Sessions between two in-memory peers: handshake, data, and every way a record or a peer
//! is refused.

use super::*;
use crate::rng::SeededRng;

fn identity(seed: u8) -> Identity {
    Identity::generate(&mut SeededRng::from_seed([seed; 32]))
}

fn trust_all(_: &PeerIdentity) -> bool {
    true
}

fn trust_none(_: &PeerIdentity) -> bool {
    false
}

struct Pair {
    alice: Session,
    bob: Session,
    alice_id: Identity,
    bob_id: Identity,
}

/// Runs the handshake between alice (initiator) and bob (responder), both trusting all.
fn established() -> Pair {
    let (alice_id, bob_id) = (identity(1), identity(2));
    let mut rng = SeededRng::from_seed([3; 32]);
    let mut alice = Session::initiate(&alice_id, &mut rng).unwrap();
    let msg1 = alice.poll_transmit().unwrap();
    let mut bob = Session::accept(&bob_id, &msg1, &mut rng).unwrap();
    let msg2 = bob.poll_transmit().unwrap();
    alice.handle_datagram(&msg2, &trust_all).unwrap();
    let msg3 = alice.poll_transmit().unwrap();
    bob.handle_datagram(&msg3, &trust_all).unwrap();
    Pair { alice, bob, alice_id, bob_id }
}

fn record(from: &mut Session, plaintext: &[u8]) -> Vec<u8> {
    from.send(plaintext).unwrap();
    from.poll_transmit().unwrap()
}

fn received(s: &mut Session) -> Vec<u8> {
    match s.poll_event() {
        Some(SessionEvent::Received(p)) => p,
        other => panic!("expected a record, got {other:?}"),
    }
}

#[test]
fn handshake_completes_and_carries_data_both_ways() {
    let mut p = established();
    assert!(p.alice.is_established() && p.bob.is_established());
    assert_eq!(p.alice.poll_event(), Some(SessionEvent::Established(*p.alice.peer().unwrap())));
    assert_eq!(p.bob.poll_event(), Some(SessionEvent::Established(*p.bob.peer().unwrap())));
    let bob_seen_by_alice = p.alice.peer().unwrap();
    assert_eq!(bob_seen_by_alice.device_id, p.bob_id.device_id());
    assert_eq!(bob_seen_by_alice.noise_static, p.bob_id.noise_public());
    assert_eq!(p.bob.peer().unwrap().device_id, p.alice_id.device_id());
    assert_eq!(p.alice.session_id(), p.bob.session_id());

    let to_bob = record(&mut p.alice, b"hello bob");
    p.bob.handle_datagram(&to_bob, &trust_all).unwrap();
    assert_eq!(received(&mut p.bob), b"hello bob");
    let to_alice = record(&mut p.bob, b"hello alice");
    p.alice.handle_datagram(&to_alice, &trust_all).unwrap();
    assert_eq!(received(&mut p.alice), b"hello alice");
    // The plaintext does not appear on the wire.
    assert!(!to_bob.windows(9).any(|w| w == b"hello bob"));
}

#[test]
fn records_may_arrive_out_of_order_within_the_window() {
    let mut p = established();
    let records: Vec<_> = (0..5u8).map(|i| record(&mut p.alice, &[i])).collect();
    for i in [3, 0, 4, 1, 2] {
        p.bob.handle_datagram(&records[i], &trust_all).unwrap();
    }
    p.bob.poll_event();
    let order: Vec<u8> = (0..5).map(|_| received(&mut p.bob)[0]).collect();
    assert_eq!(order, [3, 0, 4, 1, 2]);
}

#[test]
fn replayed_records_are_rejected() {
    let mut p = established();
    let r = record(&mut p.alice, b"once");
    p.bob.handle_datagram(&r, &trust_all).unwrap();
    assert_eq!(p.bob.handle_datagram(&r, &trust_all), Err(SessionError::Replay(ReplayError::Replayed(0))));
    assert!(p.bob.is_established(), "a bad record does not end the session");
}

#[test]
fn records_older_than_the_window_are_rejected() {
    let mut p = established();
    let first = record(&mut p.alice, b"old");
    let mut last = Vec::new();
    for _ in 0..replay::WINDOW {
        last = record(&mut p.alice, b"x");
    }
    p.bob.handle_datagram(&last, &trust_all).unwrap();
    assert_eq!(p.bob.handle_datagram(&first, &trust_all), Err(SessionError::Replay(ReplayError::TooOld(0))));
}

#[test]
fn tampered_records_are_rejected_and_do_not_move_the_window() {
    let mut p = established();
    let r = record(&mut p.alice, b"payload");
    // Flip a ciphertext bit, a tag bit, a counter bit: all fail authentication.
    for at in [wire::frame::HEADER_LEN + 16, r.len() - 1, wire::frame::HEADER_LEN + 15] {
        let mut bad = r.clone();
        bad[at] ^= 0x01;
        let counter = if at == wire::frame::HEADER_LEN + 15 { 1 } else { 0 };
        assert_eq!(p.bob.handle_datagram(&bad, &trust_all), Err(SessionError::Tampered { counter }));
    }
    // A changed session id is caught before any decryption.
    let mut bad = r.clone();
    bad[wire::frame::HEADER_LEN] ^= 0x80;
    assert!(matches!(p.bob.handle_datagram(&bad, &trust_all), Err(SessionError::WrongSession { .. })));
    // The genuine record (and counter 1) are still accepted afterwards.
    p.bob.handle_datagram(&r, &trust_all).unwrap();
    p.bob.poll_event();
    assert_eq!(received(&mut p.bob), b"payload");
    let r1 = record(&mut p.alice, b"next");
    p.bob.handle_datagram(&r1, &trust_all).unwrap();
}

#[test]
fn responder_refuses_an_untrusted_initiator() {
    let mut rng = SeededRng::from_seed([4; 32]);
    let (alice_id, bob_id) = (identity(1), identity(2));
    let mut alice = Session::initiate(&alice_id, &mut rng).unwrap();
    let mut bob = Session::accept(&bob_id, &alice.poll_transmit().unwrap(), &mut rng).unwrap();
    alice.handle_datagram(&bob.poll_transmit().unwrap(), &trust_all).unwrap();
    let msg3 = alice.poll_transmit().unwrap();
    let only_carol = |p: &PeerIdentity| p.device_id == identity(9).device_id();
    assert_eq!(bob.handle_datagram(&msg3, &only_carol), Err(SessionError::Untrusted(alice_id.device_id())));
    assert!(bob.is_failed());
    assert!(bob.poll_event().is_none());
    // Nothing gets through afterwards.
    let r = record(&mut alice, b"let me in");
    assert_eq!(bob.handle_datagram(&r, &trust_all), Err(SessionError::Failed));
    assert_eq!(bob.send(b"x"), Err(SessionError::Failed));
}

#[test]
fn initiator_refuses_an_untrusted_responder_without_revealing_itself() {
    let mut rng = SeededRng::from_seed([5; 32]);
    let mut alice = Session::initiate(&identity(1), &mut rng).unwrap();
    let mut bob = Session::accept(&identity(2), &alice.poll_transmit().unwrap(), &mut rng).unwrap();
    let msg2 = bob.poll_transmit().unwrap();
    assert_eq!(alice.handle_datagram(&msg2, &trust_none), Err(SessionError::Untrusted(identity(2).device_id())));
    assert!(alice.poll_transmit().is_none(), "message 3 (alice's identity) is never sent");
    assert!(alice.is_failed());
}

#[test]
fn a_forged_identity_proof_is_refused() {
    // Mallory presents a proof signed by carol's key over mallory's own static key: the
    // signature is valid for carol but over another key, so it must not verify.
    let (mallory, carol) = (identity(7), identity(8));
    let mut forged = identity_proof(&carol);
    assert!(verify_identity_proof(&forged, &carol.noise_public()).is_ok());
    assert_eq!(verify_identity_proof(&forged, &mallory.noise_public()), Err(SessionError::BadIdentityProof));
    forged[40] ^= 1;
    assert_eq!(verify_identity_proof(&forged, &carol.noise_public()), Err(SessionError::BadIdentityProof));
    assert_eq!(verify_identity_proof(&forged[..95], &carol.noise_public()), Err(SessionError::BadIdentityProof));
}

#[test]
fn handshake_messages_out_of_order_or_corrupt_fail_the_session() {
    let mut rng = SeededRng::from_seed([6; 32]);
    let mut alice = Session::initiate(&identity(1), &mut rng).unwrap();
    let msg1 = alice.poll_transmit().unwrap();
    // Message 1 echoed back to the initiator is out of order.
    assert_eq!(
        alice.handle_datagram(&msg1, &trust_all),
        Err(SessionError::Unexpected("handshake message out of order"))
    );
    assert!(alice.is_failed());

    let mut alice = Session::initiate(&identity(1), &mut rng).unwrap();
    let mut bob = Session::accept(&identity(2), &alice.poll_transmit().unwrap(), &mut rng).unwrap();
    let mut msg2 = bob.poll_transmit().unwrap();
    let last = msg2.len() - 1;
    msg2[last] ^= 1;
    assert_eq!(alice.handle_datagram(&msg2, &trust_all), Err(SessionError::Noise(snow::Error::Decrypt)));
    assert!(alice.is_failed());
}

#[test]
fn accept_needs_handshake_message_one() {
    let mut rng = SeededRng::from_seed([7; 32]);
    let record = wire::encode_to_vec(&Record { session_id: 1, counter: 0, ciphertext: &[0; 16] }).unwrap();
    assert!(matches!(Session::accept(&identity(2), &record, &mut rng), Err(SessionError::Unexpected(_))));
    assert!(matches!(Session::accept(&identity(2), b"junk", &mut rng), Err(SessionError::Wire(_))));
    let short = wire::encode_to_vec(&Handshake { session_id: 1, step: 1, message: &[1; 5] }).unwrap();
    assert!(matches!(Session::accept(&identity(2), &short, &mut rng), Err(SessionError::Noise(_))));
}

#[test]
fn sending_before_establishment_or_too_much_is_refused() {
    let mut rng = SeededRng::from_seed([8; 32]);
    let mut alice = Session::initiate(&identity(1), &mut rng).unwrap();
    assert_eq!(alice.send(b"early"), Err(SessionError::NotEstablished));
    let mut p = established();
    let big = vec![0u8; MAX_RECORD_PLAINTEXT + 1];
    assert_eq!(p.alice.send(&big), Err(SessionError::TooLarge(MAX_RECORD_PLAINTEXT + 1)));
    let max = vec![7u8; MAX_RECORD_PLAINTEXT];
    let r = record(&mut p.alice, &max);
    p.bob.handle_datagram(&r, &trust_all).unwrap();
    p.bob.poll_event();
    assert_eq!(received(&mut p.bob), max);
}

#[test]
fn two_handshakes_never_share_keys() {
    let a = established();
    let mut b = established();
    // Same identities and seed give the same session; a record from one is not valid in a
    // session with a different ephemeral key.
    let mut rng = SeededRng::from_seed([99; 32]);
    let mut alice = Session::initiate(&a.alice_id, &mut rng).unwrap();
    let mut bob = Session::accept(&a.bob_id, &alice.poll_transmit().unwrap(), &mut rng).unwrap();
    alice.handle_datagram(&bob.poll_transmit().unwrap(), &trust_all).unwrap();
    bob.handle_datagram(&alice.poll_transmit().unwrap(), &trust_all).unwrap();
    let mut r = record(&mut b.alice, b"other session");
    // Rewrite the session id so only the keys differ.
    r[wire::frame::HEADER_LEN..wire::frame::HEADER_LEN + 8].copy_from_slice(&bob.session_id().to_be_bytes());
    assert_eq!(bob.handle_datagram(&r, &trust_all), Err(SessionError::Tampered { counter: 0 }));
}
