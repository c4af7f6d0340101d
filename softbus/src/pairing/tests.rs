//! Pairing between two in-memory devices: the right code, a wrong one, a meddler in the
//! middle, and the limits of an offer.

use super::*;
use crate::wire::encode_to_vec;

fn identity(seed: u8) -> Identity {
    Identity::generate(&mut SeededRng::from_seed([seed; 32]))
}

fn code(text: &str) -> PairingCode {
    PairingCode::parse(text).unwrap()
}

/// Runs a whole exchange; returns what each side ended with.
fn run(
    typed: &PairingCode,
    shown: &PairingCode,
) -> (Result<Option<PairedPeer>, PairingError>, Result<Option<PairedPeer>, PairingError>) {
    let (alice, bob) = (identity(1), identity(2));
    let mut rng = SeededRng::from_seed([9; 32]);
    let mut init = Pairing::initiate(&alice, "alice", typed, &mut rng).unwrap();
    let step1 = init.poll_transmit().unwrap();
    let mut resp = Pairing::respond(&bob, "bob", shown, &step1, &mut rng).unwrap();
    let step2 = resp.poll_transmit().unwrap();
    let init_result = init.handle_frame(&alice, &step2);
    let Some(step3) = init.poll_transmit() else { return (init_result, Ok(None)) };
    let resp_result = resp.handle_frame(&bob, &step3);
    (init_result, resp_result)
}

#[test]
fn the_right_code_exchanges_both_identities() {
    let (a, b) = run(&code("123456"), &code("123 456"));
    let bob_seen = a.unwrap().unwrap();
    let alice_seen = b.unwrap().unwrap();
    assert_eq!(bob_seen.device_id, identity(2).device_id());
    assert_eq!(bob_seen.noise_static, identity(2).noise_public());
    assert_eq!(bob_seen.signing_public, identity(2).signing_public());
    assert_eq!(bob_seen.name, "bob");
    assert_eq!(alice_seen.device_id, identity(1).device_id());
    assert_eq!(alice_seen.noise_static, identity(1).noise_public());
    assert_eq!(alice_seen.name, "alice");
}

#[test]
fn a_wrong_code_fails_cleanly_on_both_sides() {
    let (a, b) = run(&code("123456"), &code("123457"));
    assert_eq!(a, Err(PairingError::WrongCode));
    // The initiator's abort reaches the responder, which learns why.
    assert_eq!(b, Err(PairingError::PeerAborted(AbortReason::WrongCode)));
}

#[test]
fn the_identities_never_travel_in_clear() {
    let (alice, bob) = (identity(1), identity(2));
    let mut rng = SeededRng::from_seed([4; 32]);
    let mut init = Pairing::initiate(&alice, "alice", &code("000001"), &mut rng).unwrap();
    let step1 = init.poll_transmit().unwrap();
    let mut resp = Pairing::respond(&bob, "bob", &code("000001"), &step1, &mut rng).unwrap();
    let step2 = resp.poll_transmit().unwrap();
    init.handle_frame(&alice, &step2).unwrap();
    let step3 = init.poll_transmit().unwrap();
    for (frame, key) in [(&step2, bob.signing_public()), (&step3, alice.signing_public())] {
        assert!(!frame.windows(32).any(|w| w == key), "a public key is visible on the wire");
    }
}

#[test]
fn a_meddler_who_changes_a_message_breaks_the_pairing() {
    let (alice, bob) = (identity(1), identity(2));
    let mut rng = SeededRng::from_seed([5; 32]);
    let mut init = Pairing::initiate(&alice, "alice", &code("424242"), &mut rng).unwrap();
    let step1 = init.poll_transmit().unwrap();
    let mut resp = Pairing::respond(&bob, "bob", &code("424242"), &step1, &mut rng).unwrap();
    let mut step2 = resp.poll_transmit().unwrap();
    let last = step2.len() - 1;
    step2[last] ^= 1;
    assert_eq!(init.handle_frame(&alice, &step2), Err(PairingError::WrongCode));
    // Replacing the SPAKE2 message with the meddler's own (code guessed wrong) fails too.
    let mallory = identity(6);
    let mut mitm = Pairing::initiate(&mallory, "mallory", &code("999999"), &mut rng).unwrap();
    let fake1 = mitm.poll_transmit().unwrap();
    let mut resp = Pairing::respond(&bob, "bob", &code("424242"), &fake1, &mut rng).unwrap();
    let step2 = resp.poll_transmit().unwrap();
    assert_eq!(mitm.handle_frame(&mallory, &step2), Err(PairingError::WrongCode));
}

#[test]
fn out_of_order_and_foreign_frames_are_refused() {
    let (alice, bob) = (identity(1), identity(2));
    let mut rng = SeededRng::from_seed([6; 32]);
    let mut init = Pairing::initiate(&alice, "alice", &code("111111"), &mut rng).unwrap();
    let step1 = init.poll_transmit().unwrap();
    assert_eq!(init.handle_frame(&alice, &step1), Err(PairingError::Protocol("expected step 2")));
    assert_eq!(init.handle_frame(&alice, &step1), Err(PairingError::Finished));
    let other = encode_to_vec(&crate::wire::Pairing { pairing_id: 1, step: 1, payload: &[0; 3] }).unwrap();
    assert!(matches!(Pairing::respond(&bob, "bob", &code("111111"), &other, &mut rng), Err(PairingError::Protocol(_))));
    assert!(matches!(Pairing::respond(&bob, "bob", &code("111111"), b"junk", &mut rng), Err(PairingError::Wire(_))));
    let abort = Pairing::refuse(&step1, AbortReason::NoOffer).unwrap();
    let mut init = Pairing::initiate(&alice, "alice", &code("111111"), &mut rng).unwrap();
    let step1 = init.poll_transmit().unwrap();
    let abort_for_this = Pairing::refuse(&step1, AbortReason::NoOffer).unwrap();
    assert_eq!(init.handle_frame(&alice, &abort), Err(PairingError::Protocol("frame of another pairing")));
    let mut init = Pairing::initiate(&alice, "alice", &code("111111"), &mut rng).unwrap();
    let step1 = init.poll_transmit().unwrap();
    let abort_for_this_too = Pairing::refuse(&step1, AbortReason::Expired).unwrap();
    assert_eq!(init.handle_frame(&alice, &abort_for_this_too), Err(PairingError::PeerAborted(AbortReason::Expired)));
    assert_ne!(abort_for_this, abort);
}

#[test]
fn an_offer_bounds_attempts_and_time() {
    let mut rng = SeededRng::from_seed([1; 32]);
    let limits = PairingLimits::default();
    let mut offer = PairingOffer::new(Instant::ZERO, limits, &mut rng);
    for _ in 0..limits.max_attempts {
        assert_eq!(offer.begin_attempt(Instant::from_millis(1_000)).as_ref(), Ok(offer.code()));
    }
    assert_eq!(
        offer.begin_attempt(Instant::from_millis(1_000)),
        Err(PairingError::NotOffered(AbortReason::TooManyAttempts))
    );
    let mut offer = PairingOffer::with_code(code("654321"), Instant::ZERO, limits);
    assert_eq!(offer.begin_attempt(Instant::from_millis(120_000)), Err(PairingError::NotOffered(AbortReason::Expired)));
    assert_eq!(offer.attempts_left(), 3);
}

#[test]
fn codes_are_six_digits_and_spread_evenly() {
    assert_eq!(PairingCode::parse("12-34 56").unwrap().as_str(), "123456");
    for bad in ["12345", "1234567", "12345a", "", "١٢٣٤٥٦"] {
        assert_eq!(PairingCode::parse(bad), Err(PairingError::BadCode), "{bad:?}");
    }
    let mut rng = SeededRng::from_seed([2; 32]);
    let mut first_digit = [0u32; 10];
    for _ in 0..5000 {
        let c = PairingCode::generate(&mut rng);
        assert_eq!(c.as_str().len(), 6);
        let d = c.as_str().as_bytes()[0] - b'0';
        first_digit[usize::from(d)] += 1;
    }
    assert!(first_digit.iter().all(|&n| (400..600).contains(&n)), "{first_digit:?}");
    assert_eq!(alloc::format!("{:?}", code("123456")), "PairingCode(******)");
}
