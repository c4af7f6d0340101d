//! The one error type of every decoder and encoder in [`crate::wire`].
//!
//! Decoders never panic: every malformed, truncated, oversized or unknown input maps to one
//! variant here, so the caller can count it, log it and drop the datagram.

use core::fmt;

/// Why a buffer could not be decoded, or a value could not be encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireError {
    /// The buffer ends before the field at `needed` bytes could be read.
    Truncated {
        /// Bytes the layout needs.
        needed: usize,
        /// Bytes the buffer has.
        got: usize,
    },
    /// The first two bytes are not the Tutti magic.
    BadMagic,
    /// The version byte names a version this decoder does not speak.
    UnknownVersion(u8),
    /// The frame type byte is not a known frame type.
    UnknownFrameType(u8),
    /// The channel message type byte is not a known message type.
    UnknownMessageType(u8),
    /// A reserved byte or flag bit is not zero.
    ReservedNotZero,
    /// A length field, or the buffer itself, is over the limit of its layout.
    Oversized {
        /// The length found or asked for.
        len: usize,
        /// The largest length the layout allows.
        max: usize,
    },
    /// The buffer holds bytes past the end that its length fields describe.
    TrailingBytes(usize),
    /// A text field is not valid UTF-8.
    BadUtf8,
    /// A field holds a value outside its defined range.
    BadValue(&'static str),
    /// The output buffer is too small for the encoding (encoding only).
    BufferTooSmall {
        /// Bytes the encoding needs.
        needed: usize,
        /// Bytes the output buffer has.
        got: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated { needed, got } => write!(f, "truncated input: need {needed} bytes, have {got}"),
            Self::BadMagic => f.write_str("bad magic: not a Tutti soft bus frame"),
            Self::UnknownVersion(v) => write!(f, "unknown wire version {v}"),
            Self::UnknownFrameType(t) => write!(f, "unknown frame type {t:#04x}"),
            Self::UnknownMessageType(t) => write!(f, "unknown channel message type {t:#04x}"),
            Self::ReservedNotZero => f.write_str("reserved bits are not zero"),
            Self::Oversized { len, max } => write!(f, "oversized field: {len} bytes, at most {max} allowed"),
            Self::TrailingBytes(n) => write!(f, "{n} trailing bytes after the frame"),
            Self::BadUtf8 => f.write_str("text field is not valid UTF-8"),
            Self::BadValue(what) => write!(f, "invalid value in field {what}"),
            Self::BufferTooSmall { needed, got } => {
                write!(f, "output buffer too small: need {needed} bytes, have {got}")
            }
        }
    }
}

impl core::error::Error for WireError {}
