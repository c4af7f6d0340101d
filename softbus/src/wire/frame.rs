//! The common frame header: a typed, checked view over the first eight bytes of every frame.
//!
//! Design (after smoltcp's `Packet<T>`): [`Frame`] wraps any `AsRef<[u8]>` buffer. The only
//! constructor, [`Frame::new_checked`], validates magic, version, type, reserved bits and
//! that the buffer holds the whole body, so every accessor afterwards is infallible and
//! cannot index out of bounds. Bodies are encoded through the [`FrameBody`] trait, which
//! each body type implements; [`encode`] writes header and body in one pass.
//!
//! Layout (all integers big-endian), see `docs/softbus/wire.md`:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 2 | magic `0x54 0x42` ("TB") |
//! | 2 | 1 | version, `1` |
//! | 3 | 1 | frame type |
//! | 4 | 1 | flags, zero in version 1 |
//! | 5 | 1 | reserved, zero |
//! | 6 | 2 | body length |

use alloc::vec;
use alloc::vec::Vec;

use super::cursor::{Reader, Writer};
use super::WireError;

/// The two magic bytes that open every frame: ASCII "TB" (Tutti bus).
pub const MAGIC: [u8; 2] = *b"TB";
/// The only wire version this code speaks.
pub const VERSION: u8 = 1;
/// Bytes in the common header.
pub const HEADER_LEN: usize = 8;
/// The largest body the 16-bit length field can describe.
pub const MAX_BODY_LEN: usize = u16::MAX as usize;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FrameType {
    /// A discovery beacon: a device announcing itself.
    Beacon,
    /// A discovery query: asking devices to announce themselves.
    Query,
    /// One Noise handshake message.
    Handshake,
    /// One encrypted transport record of an established session.
    Record,
    /// One message of a pairing exchange (outside any session).
    Pairing,
}

impl FrameType {
    /// The type byte on the wire.
    pub const fn to_byte(self) -> u8 {
        match self {
            Self::Beacon => 0x01,
            Self::Query => 0x02,
            Self::Handshake => 0x10,
            Self::Record => 0x20,
            Self::Pairing => 0x30,
        }
    }

    /// The frame type of a type byte.
    pub const fn from_byte(b: u8) -> Result<Self, WireError> {
        match b {
            0x01 => Ok(Self::Beacon),
            0x02 => Ok(Self::Query),
            0x10 => Ok(Self::Handshake),
            0x20 => Ok(Self::Record),
            0x30 => Ok(Self::Pairing),
            other => Err(WireError::UnknownFrameType(other)),
        }
    }
}

/// A checked view of one frame at the start of a buffer.
#[derive(Debug, Clone)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
    frame_type: FrameType,
    body_len: usize,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Validates the header at the start of `buffer`; the buffer may continue past the frame
    /// (a byte stream), see [`Frame::total_len`].
    ///
    /// Fails with `Truncated` when the header or body is incomplete (a stream reader waits
    /// for more bytes), and with a specific error for bad magic, an unknown version or frame
    /// type, or non-zero flags and reserved bytes.
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let mut r = Reader::new(buffer.as_ref());
        let magic: [u8; 2] = r.array()?;
        if magic != MAGIC {
            return Err(WireError::BadMagic);
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(WireError::UnknownVersion(version));
        }
        let frame_type = FrameType::from_byte(r.u8()?)?;
        let (flags, reserved) = (r.u8()?, r.u8()?);
        if flags != 0 || reserved != 0 {
            return Err(WireError::ReservedNotZero);
        }
        let body_len = usize::from(r.u16()?);
        r.take(body_len)?;
        Ok(Self { buffer, frame_type, body_len })
    }

    /// The frame type.
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
    }

    /// The body length from the header.
    pub fn body_len(&self) -> usize {
        self.body_len
    }

    /// Header plus body: the bytes this frame occupies in the buffer.
    pub fn total_len(&self) -> usize {
        HEADER_LEN + self.body_len
    }

    /// The body bytes.
    pub fn body(&self) -> &[u8] {
        // `new_checked` proved the buffer holds `total_len()` bytes.
        self.buffer.as_ref().get(HEADER_LEN..self.total_len()).unwrap_or(&[])
    }

    /// The wrapped buffer.
    pub fn into_inner(self) -> T {
        self.buffer
    }
}

/// A frame body: something with a frame type that can be parsed from and emitted into bytes.
pub trait FrameBody<'a>: Sized {
    /// The frame type that carries this body.
    const FRAME_TYPE: FrameType;
    /// Bytes [`FrameBody::emit_body`] writes.
    fn body_len(&self) -> usize;
    /// Writes the body.
    fn emit_body(&self, w: &mut Writer<'_>) -> Result<(), WireError>;
    /// Parses a complete body; bytes left over are an error.
    fn parse_body(body: &'a [u8]) -> Result<Self, WireError>;
}

/// Writes header and body of `body` into `out`, returning the bytes written.
pub fn encode<'a, B: FrameBody<'a>>(body: &B, out: &mut [u8]) -> Result<usize, WireError> {
    let body_len = body.body_len();
    let len = u16::try_from(body_len).map_err(|_| WireError::Oversized { len: body_len, max: MAX_BODY_LEN })?;
    let mut w = Writer::new(out);
    w.put(&MAGIC)?;
    w.u8(VERSION)?;
    w.u8(B::FRAME_TYPE.to_byte())?;
    w.u8(0)?;
    w.u8(0)?;
    w.u16(len)?;
    body.emit_body(&mut w)?;
    Ok(w.position())
}

/// Encodes `body` as a frame into a new vector.
pub fn encode_to_vec<'a, B: FrameBody<'a>>(body: &B) -> Result<Vec<u8>, WireError> {
    let mut out = vec![0u8; HEADER_LEN + body.body_len()];
    let n = encode(body, &mut out)?;
    out.truncate(n);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(t: u8, len: u16) -> Vec<u8> {
        let mut v = Vec::from(MAGIC);
        v.extend_from_slice(&[VERSION, t, 0, 0]);
        v.extend_from_slice(&len.to_be_bytes());
        v
    }

    #[test]
    fn checked_view_reads_the_header() {
        let mut buf = header(0x20, 3);
        buf.extend_from_slice(&[7, 8, 9, 0xff]);
        let f = Frame::new_checked(&buf[..]).unwrap();
        assert_eq!(f.frame_type(), FrameType::Record);
        assert_eq!(f.body(), &[7, 8, 9]);
        assert_eq!(f.total_len(), 11);
    }

    #[test]
    fn header_errors_are_typed() {
        assert_eq!(Frame::new_checked(&b"T"[..]).unwrap_err(), WireError::Truncated { needed: 2, got: 1 });
        assert_eq!(Frame::new_checked(&b"XX\x01\x01\0\0\0\0"[..]).unwrap_err(), WireError::BadMagic);
        let mut v = header(0x01, 0);
        v[2] = 2;
        assert_eq!(Frame::new_checked(&v[..]).unwrap_err(), WireError::UnknownVersion(2));
        assert_eq!(Frame::new_checked(&header(0x77, 0)[..]).unwrap_err(), WireError::UnknownFrameType(0x77));
        let mut v = header(0x01, 0);
        v[4] = 1;
        assert_eq!(Frame::new_checked(&v[..]).unwrap_err(), WireError::ReservedNotZero);
        assert_eq!(Frame::new_checked(&header(0x01, 5)[..]).unwrap_err(), WireError::Truncated { needed: 13, got: 8 });
    }

    #[test]
    fn frame_types_round_trip() {
        for t in [FrameType::Beacon, FrameType::Query, FrameType::Handshake, FrameType::Record, FrameType::Pairing] {
            assert_eq!(FrameType::from_byte(t.to_byte()), Ok(t));
        }
    }
}
