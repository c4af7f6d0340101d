//! The pairing frame body: one message of the PAKE pairing exchange of [`crate::pairing`].
//!
//! Design: pairing runs before two devices trust each other, so its frames travel outside any
//! session, on their own TCP connection. Like a handshake, the body opens with a 64-bit id
//! chosen at random by the initiator and a step number; the payload of each step is
//! interpreted by the pairing state machine (SPAKE2 messages, sealed identities, an abort
//! reason), not here.
//!
//! Body: pairing id (8), step 1..=4 (1), reserved zero (1), payload (at most
//! [`MAX_PAIRING_PAYLOAD`]).

use super::cursor::{Reader, Writer};
use super::frame::{FrameBody, FrameType};
use super::WireError;

/// The largest pairing payload accepted.
pub const MAX_PAIRING_PAYLOAD: usize = 1024;
/// Bytes of the pairing body before the payload.
pub const PAIRING_FIXED_LEN: usize = 10;
/// The highest step number.
pub const MAX_PAIRING_STEP: u8 = 4;

/// One message of a pairing exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pairing<'a> {
    /// The exchange this message belongs to, chosen by the initiator.
    pub pairing_id: u64,
    /// 1 (initiator: SPAKE2 message), 2 (responder: SPAKE2 message and sealed identity),
    /// 3 (initiator: sealed identity), 4 (either side: abort with a reason).
    pub step: u8,
    /// The step's payload.
    pub payload: &'a [u8],
}

impl<'a> FrameBody<'a> for Pairing<'a> {
    const FRAME_TYPE: FrameType = FrameType::Pairing;

    fn body_len(&self) -> usize {
        PAIRING_FIXED_LEN + self.payload.len()
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if !(1..=MAX_PAIRING_STEP).contains(&self.step) {
            return Err(WireError::BadValue("pairing step"));
        }
        if self.payload.len() > MAX_PAIRING_PAYLOAD {
            return Err(WireError::Oversized { len: self.payload.len(), max: MAX_PAIRING_PAYLOAD });
        }
        w.u64(self.pairing_id)?;
        w.u8(self.step)?;
        w.u8(0)?;
        w.put(self.payload)
    }

    fn parse_body(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let pairing_id = r.u64()?;
        let step = r.u8()?;
        if !(1..=MAX_PAIRING_STEP).contains(&step) {
            return Err(WireError::BadValue("pairing step"));
        }
        if r.u8()? != 0 {
            return Err(WireError::ReservedNotZero);
        }
        let payload = r.rest();
        if payload.len() > MAX_PAIRING_PAYLOAD {
            return Err(WireError::Oversized { len: payload.len(), max: MAX_PAIRING_PAYLOAD });
        }
        Ok(Self { pairing_id, step, payload })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::encode_to_vec;
    use crate::wire::{decode_datagram, Datagram};

    #[test]
    fn pairing_round_trips() {
        let p = Pairing { pairing_id: 0x1122_3344_5566_7788, step: 2, payload: &[5; 40] };
        let bytes = encode_to_vec(&p).unwrap();
        assert_eq!(bytes[3], 0x30);
        assert_eq!(&bytes[8..16], &0x1122_3344_5566_7788u64.to_be_bytes());
        assert_eq!(decode_datagram(&bytes), Ok(Datagram::Pairing(p)));
    }

    #[test]
    fn pairing_rejects_bad_steps_reserved_and_oversize() {
        let mut bytes = encode_to_vec(&Pairing { pairing_id: 1, step: 1, payload: &[] }).unwrap();
        bytes[16] = 5;
        assert_eq!(decode_datagram(&bytes).unwrap_err(), WireError::BadValue("pairing step"));
        bytes[16] = 1;
        bytes[17] = 1;
        assert_eq!(decode_datagram(&bytes).unwrap_err(), WireError::ReservedNotZero);
        let big = [0u8; MAX_PAIRING_PAYLOAD + 1];
        assert!(encode_to_vec(&Pairing { pairing_id: 1, step: 1, payload: &big }).is_err());
        assert!(encode_to_vec(&Pairing { pairing_id: 1, step: 0, payload: &[] }).is_err());
    }
}
