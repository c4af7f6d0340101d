//! The soft bus wire format, version 1: typed, checked views over byte buffers.
//!
//! Design (after smoltcp): every frame starts with the common header of [`frame`]; its body
//! is one of the layouts in [`discovery`] (beacon, query), [`session`] (handshake, record),
//! [`pairing`] (the PAKE exchange),
//! and the plaintext of a record is a sequence of [`channel`] messages. Decoders borrow from
//! the input instead of allocating, check every length before use, and return a
//! [`WireError`] for any malformed, truncated, oversized or unknown input: they never panic.
//! Every layout is documented byte by byte in `docs/softbus/wire.md`.
//!
//! Version rule: the header's version byte names the layout of everything after it. A
//! decoder accepts exactly the versions it implements and rejects others with
//! [`WireError::UnknownVersion`]; any change to an existing layout takes a new version.
//! Within a version, reserved bytes and undefined flags are sent as zero and rejected when
//! not zero, so they stay free for a future version; only device kinds and capability bits
//! are open-ended (unknown values are kept, not rejected).

pub mod channel;
pub mod cursor;
pub mod discovery;
mod error;
pub mod frame;
pub mod pairing;
#[cfg(test)]
mod proptests;
pub mod session;

pub use channel::{encode_messages, messages, ChannelMessage, FileStatus, Messages, RpcErrorCode};
pub use discovery::{Beacon, CapabilitySet, DeviceKind, Query};
pub use error::WireError;
pub use frame::{encode, encode_to_vec, Frame, FrameBody, FrameType};
pub use pairing::Pairing;
pub use session::{Handshake, Record};

/// A decoded frame of any type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Datagram<'a> {
    /// A discovery beacon.
    Beacon(Beacon<'a>),
    /// A discovery query.
    Query(Query),
    /// A handshake message.
    Handshake(Handshake<'a>),
    /// An encrypted record.
    Record(Record<'a>),
    /// A pairing message.
    Pairing(Pairing<'a>),
}

/// Decodes the frame at the start of `buf`, returning it and the bytes it occupies; the
/// rest of `buf` is not looked at (for byte streams). `Truncated` means "wait for more".
pub fn decode_prefix(buf: &[u8]) -> Result<(Datagram<'_>, usize), WireError> {
    let frame = Frame::new_checked(buf)?;
    let total = frame.total_len();
    let body = buf.get(frame::HEADER_LEN..total).ok_or(WireError::Truncated { needed: total, got: buf.len() })?;
    let datagram = match frame.frame_type() {
        FrameType::Beacon => Datagram::Beacon(Beacon::parse_body(body)?),
        FrameType::Query => Datagram::Query(Query::parse_body(body)?),
        FrameType::Handshake => Datagram::Handshake(Handshake::parse_body(body)?),
        FrameType::Record => Datagram::Record(Record::parse_body(body)?),
        FrameType::Pairing => Datagram::Pairing(Pairing::parse_body(body)?),
    };
    Ok((datagram, total))
}

/// Decodes a datagram holding exactly one frame; bytes after the frame are an error.
pub fn decode_datagram(buf: &[u8]) -> Result<Datagram<'_>, WireError> {
    let (datagram, used) = decode_prefix(buf)?;
    match buf.len() - used {
        0 => Ok(datagram),
        extra => Err(WireError::TrailingBytes(extra)),
    }
}
