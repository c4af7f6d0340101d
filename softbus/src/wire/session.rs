//! Session frame bodies: Noise handshake messages and encrypted transport records.
//!
//! Design: both bodies open with the 64-bit session id the initiator chose, so a receiver
//! finds the session state before touching any cryptography. A record carries its 64-bit
//! counter in clear: it is the AEAD nonce (explicit nonces let records travel over
//! datagrams that are lost or reordered) and the input of the replay window. The ciphertext
//! is not interpreted here; its authentication is the session's job.
//!
//! Handshake body: session id (8), step 1..=3 (1), reserved zero (1), Noise message (at most
//! [`MAX_HANDSHAKE_MSG_LEN`]). Record body: session id (8), counter (8), ciphertext with its
//! 16-byte tag (at least [`TAG_LEN`] bytes).

use super::cursor::{Reader, Writer};
use super::frame::{FrameBody, FrameType, MAX_BODY_LEN};
use super::WireError;

/// The largest Noise handshake message accepted; XX messages are at most 96 bytes plus a
/// small payload.
pub const MAX_HANDSHAKE_MSG_LEN: usize = 1024;
/// Bytes of the handshake body before the Noise message.
pub const HANDSHAKE_FIXED_LEN: usize = 10;
/// Bytes of the record body before the ciphertext.
pub const RECORD_FIXED_LEN: usize = 16;
/// Bytes of the AES-GCM tag that ends every ciphertext.
pub const TAG_LEN: usize = 16;
/// The largest plaintext one record can carry.
pub const MAX_RECORD_PLAINTEXT: usize = MAX_BODY_LEN - RECORD_FIXED_LEN - TAG_LEN;

/// One message of the three-message Noise XX handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Handshake<'a> {
    /// The session this message belongs to, chosen by the initiator.
    pub session_id: u64,
    /// Which message of the pattern: 1 (initiator), 2 (responder), 3 (initiator).
    pub step: u8,
    /// The Noise message.
    pub message: &'a [u8],
}

impl<'a> FrameBody<'a> for Handshake<'a> {
    const FRAME_TYPE: FrameType = FrameType::Handshake;

    fn body_len(&self) -> usize {
        HANDSHAKE_FIXED_LEN + self.message.len()
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if !(1..=3).contains(&self.step) {
            return Err(WireError::BadValue("handshake step"));
        }
        if self.message.len() > MAX_HANDSHAKE_MSG_LEN {
            return Err(WireError::Oversized { len: self.message.len(), max: MAX_HANDSHAKE_MSG_LEN });
        }
        w.u64(self.session_id)?;
        w.u8(self.step)?;
        w.u8(0)?;
        w.put(self.message)
    }

    fn parse_body(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let session_id = r.u64()?;
        let step = r.u8()?;
        if !(1..=3).contains(&step) {
            return Err(WireError::BadValue("handshake step"));
        }
        if r.u8()? != 0 {
            return Err(WireError::ReservedNotZero);
        }
        let message = r.rest();
        if message.len() > MAX_HANDSHAKE_MSG_LEN {
            return Err(WireError::Oversized { len: message.len(), max: MAX_HANDSHAKE_MSG_LEN });
        }
        Ok(Self { session_id, step, message })
    }
}

/// One encrypted transport record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// The session this record belongs to.
    pub session_id: u64,
    /// The sender's record counter: the AEAD nonce and the replay window's input.
    pub counter: u64,
    /// The AES-256-GCM ciphertext followed by its tag.
    pub ciphertext: &'a [u8],
}

impl<'a> FrameBody<'a> for Record<'a> {
    const FRAME_TYPE: FrameType = FrameType::Record;

    fn body_len(&self) -> usize {
        RECORD_FIXED_LEN + self.ciphertext.len()
    }

    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), WireError> {
        if self.ciphertext.len() < TAG_LEN {
            return Err(WireError::BadValue("record ciphertext shorter than its tag"));
        }
        w.u64(self.session_id)?;
        w.u64(self.counter)?;
        w.put(self.ciphertext)
    }

    fn parse_body(body: &'a [u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(body);
        let session_id = r.u64()?;
        let counter = r.u64()?;
        let ciphertext = r.rest();
        if ciphertext.len() < TAG_LEN {
            return Err(WireError::Truncated { needed: RECORD_FIXED_LEN + TAG_LEN, got: body.len() });
        }
        Ok(Self { session_id, counter, ciphertext })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::frame::encode_to_vec;
    use crate::wire::{decode_datagram, Datagram};

    #[test]
    fn handshake_round_trips() {
        let h = Handshake { session_id: 0x0102_0304_0506_0708, step: 2, message: &[9; 48] };
        let bytes = encode_to_vec(&h).unwrap();
        assert_eq!(&bytes[8..16], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(bytes[16], 2);
        assert_eq!(decode_datagram(&bytes), Ok(Datagram::Handshake(h)));
    }

    #[test]
    fn handshake_rejects_bad_step_and_oversized_message() {
        let mut bytes = encode_to_vec(&Handshake { session_id: 1, step: 1, message: &[] }).unwrap();
        bytes[16] = 4;
        assert_eq!(decode_datagram(&bytes).unwrap_err(), WireError::BadValue("handshake step"));
        let big = [0u8; MAX_HANDSHAKE_MSG_LEN + 1];
        let h = Handshake { session_id: 1, step: 1, message: &big };
        assert_eq!(encode_to_vec(&h).unwrap_err(), WireError::Oversized { len: 1025, max: 1024 });
    }

    #[test]
    fn record_round_trips_and_needs_a_tag() {
        let r = Record { session_id: 5, counter: u64::MAX - 1, ciphertext: &[3; 20] };
        let bytes = encode_to_vec(&r).unwrap();
        assert_eq!(&bytes[16..24], &(u64::MAX - 1).to_be_bytes());
        assert_eq!(decode_datagram(&bytes), Ok(Datagram::Record(r)));
        let short = Record { session_id: 5, counter: 0, ciphertext: &[3; 15] };
        assert!(encode_to_vec(&short).is_err());
    }
}
