//! Channel messages: what travels inside the plaintext of an encrypted record.
//!
//! Design: a record's plaintext is a sequence of channel messages, each a 4-byte header
//! (type, flags, body length) and a body, so several small messages (an RPC reply and a
//! window update, say) share one record. [`ChannelMessage`] borrows its text and payload
//! from the plaintext; [`Messages`] iterates a plaintext and yields an error, then stops,
//! at the first malformed message. Flags are defined per type (`FIN` for stream data,
//! `REPLY` for keepalives) and must be zero elsewhere.
//!
//! Message header (big-endian): type (1), flags (1), body length (2), body.
//! The body layouts are in `docs/softbus/wire.md`, section "Channel messages".

use alloc::vec;
use alloc::vec::Vec;

use super::cursor::{Reader, Writer};
use super::WireError;

/// Bytes of a channel message header.
pub const MESSAGE_HEADER_LEN: usize = 4;
/// The longest RPC method name or pub/sub topic, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 255;
/// Flag of [`ChannelMessage::StreamData`]: the last data of the stream.
pub const FLAG_FIN: u8 = 0x01;
/// Flag of [`ChannelMessage::Keepalive`]: this is the answer to a keepalive.
pub const FLAG_REPLY: u8 = 0x01;

const RPC_REQUEST: u8 = 0x01;
const RPC_RESPONSE: u8 = 0x02;
const RPC_ERROR: u8 = 0x03;
const RPC_CANCEL: u8 = 0x04;
const SUBSCRIBE: u8 = 0x10;
const UNSUBSCRIBE: u8 = 0x11;
const PUBLISH: u8 = 0x12;
const PUBLISH_ACK: u8 = 0x13;
const STREAM_DATA: u8 = 0x20;
const WINDOW_UPDATE: u8 = 0x21;
const KEEPALIVE: u8 = 0x30;
const FILE_OFFER: u8 = 0x40;
const FILE_ACCEPT: u8 = 0x41;
const FILE_DONE: u8 = 0x42;

/// Why an RPC failed, as carried in [`ChannelMessage::RpcError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RpcErrorCode(pub u16);

impl RpcErrorCode {
    /// No service or method of that name.
    pub const NOT_FOUND: Self = Self(1);
    /// The request payload is not acceptable.
    pub const INVALID_ARGUMENT: Self = Self(2);
    /// The deadline passed before a reply.
    pub const DEADLINE_EXCEEDED: Self = Self(3);
    /// The caller cancelled the request.
    pub const CANCELLED: Self = Self(4);
    /// The policy refuses this caller.
    pub const PERMISSION_DENIED: Self = Self(5);
    /// The service cannot take the request now.
    pub const UNAVAILABLE: Self = Self(6);
    /// Too many requests in flight.
    pub const RESOURCE_EXHAUSTED: Self = Self(7);
    /// The service failed.
    pub const INTERNAL: Self = Self(8);
}

/// How a file transfer ended, as carried in [`ChannelMessage::FileDone`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileStatus(pub u8);

impl FileStatus {
    /// Every byte arrived and the SHA-256 matches the offer.
    pub const COMPLETE: Self = Self(0);
    /// The bytes arrived but their SHA-256 differs from the offer.
    pub const HASH_MISMATCH: Self = Self(1);
    /// The receiver does not want the file.
    pub const REFUSED: Self = Self(2);
    /// The receiver cannot store the file (no space, I/O error).
    pub const FAILED: Self = Self(3);
}

/// One channel message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelMessage<'a> {
    /// Call `method` with `payload`; the reply must arrive within `deadline_ms` (0: no
    /// deadline). The deadline is a budget, not a time, because device clocks differ.
    RpcRequest {
        /// Chosen by the caller, unique among its requests in flight on this session.
        request_id: u64,
        /// Time budget in milliseconds.
        deadline_ms: u32,
        /// `service.method`.
        method: &'a str,
        /// Argument bytes.
        payload: &'a [u8],
    },
    /// The successful result of a request.
    RpcResponse {
        /// The request this answers.
        request_id: u64,
        /// Result bytes.
        payload: &'a [u8],
    },
    /// The failure of a request.
    RpcError {
        /// The request this answers.
        request_id: u64,
        /// What went wrong.
        code: RpcErrorCode,
        /// Details for people.
        message: &'a str,
    },
    /// The caller no longer wants the reply.
    RpcCancel {
        /// The request to cancel.
        request_id: u64,
    },
    /// Start receiving publications on `topic`.
    Subscribe {
        /// The topic.
        topic: &'a str,
    },
    /// Stop receiving publications on `topic`.
    Unsubscribe {
        /// The topic.
        topic: &'a str,
    },
    /// A message published on `topic`.
    Publish {
        /// The publisher's sequence number on this topic.
        seq: u64,
        /// The topic.
        topic: &'a str,
        /// The message.
        payload: &'a [u8],
    },
    /// The subscriber has every publication on `topic` up to and including `seq`.
    PublishAck {
        /// The acknowledged sequence number.
        seq: u64,
        /// The topic.
        topic: &'a str,
    },
    /// Bytes of a stream at `offset`.
    StreamData {
        /// The stream.
        stream_id: u32,
        /// Where `data` starts in the stream.
        offset: u64,
        /// Whether this is the end of the stream.
        fin: bool,
        /// The bytes.
        data: &'a [u8],
    },
    /// The receiver accepts stream bytes up to (excluding) `max_offset`.
    WindowUpdate {
        /// The stream.
        stream_id: u32,
        /// The new limit.
        max_offset: u64,
    },
    /// Liveness probe (`reply == false`) or its answer, echoing `token`.
    Keepalive {
        /// Echoed by the answer.
        token: u64,
        /// Whether this is the answer.
        reply: bool,
    },
    /// The sender offers a file, whose bytes will travel on stream `stream_id`.
    FileOffer {
        /// The stream that will carry the bytes; its offsets are file offsets.
        stream_id: u32,
        /// Bytes in the file.
        size: u64,
        /// SHA-256 of the whole file.
        sha256: [u8; 32],
        /// The file's name, UTF-8, at most 255 bytes, without directories.
        name: &'a str,
    },
    /// The receiver takes the offered file and already has its first `offset` bytes (from an
    /// earlier, broken transfer of the same content): the sender starts there.
    FileAccept {
        /// The stream of the offer.
        stream_id: u32,
        /// Where the sender starts.
        offset: u64,
    },
    /// The receiver's last word on a transfer.
    FileDone {
        /// The stream of the offer.
        stream_id: u32,
        /// How it ended.
        status: FileStatus,
    },
}

fn name_len(s: &str) -> Result<u8, WireError> {
    u8::try_from(s.len()).map_err(|_| WireError::Oversized { len: s.len(), max: MAX_NAME_LEN })
}

fn name_rest<'a>(r: &mut Reader<'a>) -> Result<&'a str, WireError> {
    let rest = r.rest();
    if rest.len() > MAX_NAME_LEN {
        return Err(WireError::Oversized { len: rest.len(), max: MAX_NAME_LEN });
    }
    core::str::from_utf8(rest).map_err(|_| WireError::BadUtf8)
}

impl<'a> ChannelMessage<'a> {
    fn type_byte(&self) -> u8 {
        match self {
            Self::RpcRequest { .. } => RPC_REQUEST,
            Self::RpcResponse { .. } => RPC_RESPONSE,
            Self::RpcError { .. } => RPC_ERROR,
            Self::RpcCancel { .. } => RPC_CANCEL,
            Self::Subscribe { .. } => SUBSCRIBE,
            Self::Unsubscribe { .. } => UNSUBSCRIBE,
            Self::Publish { .. } => PUBLISH,
            Self::PublishAck { .. } => PUBLISH_ACK,
            Self::StreamData { .. } => STREAM_DATA,
            Self::WindowUpdate { .. } => WINDOW_UPDATE,
            Self::Keepalive { .. } => KEEPALIVE,
            Self::FileOffer { .. } => FILE_OFFER,
            Self::FileAccept { .. } => FILE_ACCEPT,
            Self::FileDone { .. } => FILE_DONE,
        }
    }

    fn flags(&self) -> u8 {
        match self {
            Self::StreamData { fin: true, .. } => FLAG_FIN,
            Self::Keepalive { reply: true, .. } => FLAG_REPLY,
            _ => 0,
        }
    }

    /// Bytes of the body (without the message header).
    pub fn body_len(&self) -> usize {
        match self {
            Self::RpcRequest { method, payload, .. } => 13 + method.len() + payload.len(),
            Self::RpcResponse { payload, .. } => 8 + payload.len(),
            Self::RpcError { message, .. } => 10 + message.len(),
            Self::RpcCancel { .. } => 8,
            Self::Subscribe { topic } | Self::Unsubscribe { topic } => topic.len(),
            Self::Publish { topic, payload, .. } => 9 + topic.len() + payload.len(),
            Self::PublishAck { topic, .. } => 8 + topic.len(),
            Self::StreamData { data, .. } => 12 + data.len(),
            Self::WindowUpdate { .. } => 12,
            Self::Keepalive { .. } => 8,
            Self::FileOffer { name, .. } => 45 + name.len(),
            Self::FileAccept { .. } => 12,
            Self::FileDone { .. } => 5,
        }
    }

    /// Bytes of header and body.
    pub fn encoded_len(&self) -> usize {
        MESSAGE_HEADER_LEN + self.body_len()
    }

    /// Writes header and body into `out`, returning the bytes written.
    pub fn emit(&self, out: &mut [u8]) -> Result<usize, WireError> {
        let body_len = self.body_len();
        let len = u16::try_from(body_len).map_err(|_| WireError::Oversized { len: body_len, max: 65535 })?;
        let mut w = Writer::new(out);
        w.u8(self.type_byte())?;
        w.u8(self.flags())?;
        w.u16(len)?;
        match *self {
            Self::RpcRequest { request_id, deadline_ms, method, payload } => {
                w.u64(request_id)?;
                w.u32(deadline_ms)?;
                w.u8(name_len(method)?)?;
                w.put(method.as_bytes())?;
                w.put(payload)?;
            }
            Self::RpcResponse { request_id, payload } => {
                w.u64(request_id)?;
                w.put(payload)?;
            }
            Self::RpcError { request_id, code, message } => {
                w.u64(request_id)?;
                w.u16(code.0)?;
                w.put(message.as_bytes())?;
            }
            Self::RpcCancel { request_id } => w.u64(request_id)?,
            Self::Subscribe { topic } | Self::Unsubscribe { topic } => {
                name_len(topic)?;
                w.put(topic.as_bytes())?;
            }
            Self::Publish { seq, topic, payload } => {
                w.u64(seq)?;
                w.u8(name_len(topic)?)?;
                w.put(topic.as_bytes())?;
                w.put(payload)?;
            }
            Self::PublishAck { seq, topic } => {
                name_len(topic)?;
                w.u64(seq)?;
                w.put(topic.as_bytes())?;
            }
            Self::StreamData { stream_id, offset, data, .. } => {
                w.u32(stream_id)?;
                w.u64(offset)?;
                w.put(data)?;
            }
            Self::WindowUpdate { stream_id, max_offset } => {
                w.u32(stream_id)?;
                w.u64(max_offset)?;
            }
            Self::Keepalive { token, .. } => w.u64(token)?,
            Self::FileOffer { stream_id, size, sha256, name } => {
                w.u32(stream_id)?;
                w.u64(size)?;
                w.put(&sha256)?;
                w.u8(name_len(name)?)?;
                w.put(name.as_bytes())?;
            }
            Self::FileAccept { stream_id, offset } => {
                w.u32(stream_id)?;
                w.u64(offset)?;
            }
            Self::FileDone { stream_id, status } => {
                w.u32(stream_id)?;
                w.u8(status.0)?;
            }
        }
        Ok(w.position())
    }

    /// Parses one message at the start of `buf`, returning it and the bytes it occupies.
    pub fn parse_prefix(buf: &'a [u8]) -> Result<(Self, usize), WireError> {
        let mut r = Reader::new(buf);
        let kind = r.u8()?;
        let flags = r.u8()?;
        let len = usize::from(r.u16()?);
        let body = r.take(len)?;
        let allowed_flags = match kind {
            STREAM_DATA => FLAG_FIN,
            KEEPALIVE => FLAG_REPLY,
            _ => 0,
        };
        if flags & !allowed_flags != 0 {
            return Err(WireError::ReservedNotZero);
        }
        let mut b = Reader::new(body);
        let msg = match kind {
            RPC_REQUEST => {
                let request_id = b.u64()?;
                let deadline_ms = b.u32()?;
                let method_len = usize::from(b.u8()?);
                let method = b.text(method_len)?;
                Self::RpcRequest { request_id, deadline_ms, method, payload: b.rest() }
            }
            RPC_RESPONSE => Self::RpcResponse { request_id: b.u64()?, payload: b.rest() },
            RPC_ERROR => {
                let request_id = b.u64()?;
                let code = RpcErrorCode(b.u16()?);
                let message = core::str::from_utf8(b.rest()).map_err(|_| WireError::BadUtf8)?;
                Self::RpcError { request_id, code, message }
            }
            RPC_CANCEL => Self::RpcCancel { request_id: b.u64()? },
            SUBSCRIBE => Self::Subscribe { topic: name_rest(&mut b)? },
            UNSUBSCRIBE => Self::Unsubscribe { topic: name_rest(&mut b)? },
            PUBLISH => {
                let seq = b.u64()?;
                let topic_len = usize::from(b.u8()?);
                let topic = b.text(topic_len)?;
                Self::Publish { seq, topic, payload: b.rest() }
            }
            PUBLISH_ACK => {
                let seq = b.u64()?;
                Self::PublishAck { seq, topic: name_rest(&mut b)? }
            }
            STREAM_DATA => {
                let stream_id = b.u32()?;
                let offset = b.u64()?;
                Self::StreamData { stream_id, offset, fin: flags & FLAG_FIN != 0, data: b.rest() }
            }
            WINDOW_UPDATE => Self::WindowUpdate { stream_id: b.u32()?, max_offset: b.u64()? },
            KEEPALIVE => Self::Keepalive { token: b.u64()?, reply: flags & FLAG_REPLY != 0 },
            FILE_OFFER => {
                let stream_id = b.u32()?;
                let size = b.u64()?;
                let sha256 = b.array()?;
                let name_len = usize::from(b.u8()?);
                Self::FileOffer { stream_id, size, sha256, name: b.text(name_len)? }
            }
            FILE_ACCEPT => Self::FileAccept { stream_id: b.u32()?, offset: b.u64()? },
            FILE_DONE => Self::FileDone { stream_id: b.u32()?, status: FileStatus(b.u8()?) },
            other => return Err(WireError::UnknownMessageType(other)),
        };
        b.finish()?;
        Ok((msg, MESSAGE_HEADER_LEN + len))
    }
}

/// Encodes `messages` one after another, as the plaintext of one record.
pub fn encode_messages(messages: &[ChannelMessage<'_>]) -> Result<Vec<u8>, WireError> {
    let total = messages.iter().map(ChannelMessage::encoded_len).sum();
    let mut out = vec![0u8; total];
    let mut pos = 0;
    for m in messages {
        let dst = out.get_mut(pos..).ok_or(WireError::BufferTooSmall { needed: total, got: pos })?;
        pos += m.emit(dst)?;
    }
    Ok(out)
}

/// Iterates the channel messages of a record's plaintext.
///
/// Yields `Err` at the first malformed message and then ends: the rest of a plaintext
/// cannot be trusted once one length is wrong.
#[derive(Debug, Clone)]
pub struct Messages<'a> {
    rest: &'a [u8],
}

/// The channel messages in `plaintext`.
pub fn messages(plaintext: &[u8]) -> Messages<'_> {
    Messages { rest: plaintext }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<ChannelMessage<'a>, WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match ChannelMessage::parse_prefix(self.rest) {
            Ok((msg, used)) => {
                self.rest = self.rest.get(used..).unwrap_or(&[]);
                Some(Ok(msg))
            }
            Err(e) => {
                self.rest = &[];
                Some(Err(e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_kinds() -> Vec<ChannelMessage<'static>> {
        vec![
            ChannelMessage::RpcRequest { request_id: 1, deadline_ms: 500, method: "display.show", payload: b"hi" },
            ChannelMessage::RpcResponse { request_id: 1, payload: b"ok" },
            ChannelMessage::RpcError { request_id: 2, code: RpcErrorCode::NOT_FOUND, message: "no such method" },
            ChannelMessage::RpcCancel { request_id: 3 },
            ChannelMessage::Subscribe { topic: "news" },
            ChannelMessage::Unsubscribe { topic: "news" },
            ChannelMessage::Publish { seq: 9, topic: "news", payload: b"x" },
            ChannelMessage::PublishAck { seq: 9, topic: "news" },
            ChannelMessage::StreamData { stream_id: 4, offset: 100, fin: true, data: b"tail" },
            ChannelMessage::WindowUpdate { stream_id: 4, max_offset: 65536 },
            ChannelMessage::Keepalive { token: 77, reply: true },
            ChannelMessage::FileOffer { stream_id: 5, size: 1 << 40, sha256: [7; 32], name: "photo.jpg" },
            ChannelMessage::FileAccept { stream_id: 5, offset: 4096 },
            ChannelMessage::FileDone { stream_id: 5, status: FileStatus::HASH_MISMATCH },
        ]
    }

    #[test]
    fn every_kind_round_trips_in_one_plaintext() {
        let msgs = all_kinds();
        let bytes = encode_messages(&msgs).unwrap();
        let back: Result<Vec<_>, _> = messages(&bytes).collect();
        assert_eq!(back.unwrap(), msgs);
    }

    #[test]
    fn rpc_request_layout_is_as_documented() {
        let m = ChannelMessage::RpcRequest { request_id: 0x0a, deadline_ms: 0x0b, method: "m", payload: b"p" };
        let bytes = encode_messages(&[m]).unwrap();
        assert_eq!(bytes, [1, 0, 0, 15, 0, 0, 0, 0, 0, 0, 0, 0x0a, 0, 0, 0, 0x0b, 1, b'm', b'p']);
    }

    #[test]
    fn file_messages_layout_is_as_documented() {
        let m = ChannelMessage::FileAccept { stream_id: 2, offset: 3 };
        assert_eq!(encode_messages(&[m]).unwrap(), [0x41, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 3]);
        let m = ChannelMessage::FileDone { stream_id: 2, status: FileStatus::COMPLETE };
        assert_eq!(encode_messages(&[m]).unwrap(), [0x42, 0, 0, 5, 0, 0, 0, 2, 0]);
        let offer = ChannelMessage::FileOffer { stream_id: 1, size: 9, sha256: [0xaa; 32], name: "a" };
        let bytes = encode_messages(&[offer]).unwrap();
        assert_eq!(bytes.len(), 4 + 45 + 1);
        assert_eq!(&bytes[..16], &[0x40, 0, 0, 46, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 9]);
        assert_eq!((bytes[48], bytes[49]), (1, b'a'));
        // A name length pointing past the body is truncation, not a panic.
        let mut bad = bytes.clone();
        bad[48] = 2;
        assert!(matches!(ChannelMessage::parse_prefix(&bad), Err(WireError::Truncated { .. })));
    }

    #[test]
    fn malformed_messages_are_typed_errors() {
        assert_eq!(ChannelMessage::parse_prefix(&[0x99, 0, 0, 0]).unwrap_err(), WireError::UnknownMessageType(0x99));
        assert_eq!(
            ChannelMessage::parse_prefix(&[RPC_CANCEL, 1, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            WireError::ReservedNotZero
        );
        assert_eq!(
            ChannelMessage::parse_prefix(&[RPC_CANCEL, 0, 0, 9]).unwrap_err(),
            WireError::Truncated { needed: 13, got: 4 }
        );
        assert_eq!(
            ChannelMessage::parse_prefix(&[RPC_CANCEL, 0, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            WireError::TrailingBytes(1)
        );
        assert_eq!(ChannelMessage::parse_prefix(&[SUBSCRIBE, 0, 0, 1, 0xff]).unwrap_err(), WireError::BadUtf8);
    }

    #[test]
    fn iteration_stops_after_the_first_error() {
        let mut bytes = encode_messages(&[ChannelMessage::RpcCancel { request_id: 1 }]).unwrap();
        bytes.extend_from_slice(&[0x99, 0, 0, 0]);
        bytes.extend(encode_messages(&[ChannelMessage::RpcCancel { request_id: 2 }]).unwrap());
        let out: Vec<_> = messages(&bytes).collect();
        assert_eq!(out.len(), 2);
        assert!(out[1].is_err());
    }

    #[test]
    fn long_topic_is_refused_when_encoding() {
        let topic = "t".repeat(256);
        let m = ChannelMessage::Subscribe { topic: &topic };
        assert_eq!(encode_messages(&[m]).unwrap_err(), WireError::Oversized { len: 256, max: 255 });
    }
}
