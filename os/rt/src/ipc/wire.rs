//! The encoding of typed values in a message's data words.
//!
//! Every [`Wire`] type has a fixed size: a payload's fields are laid out one after the other,
//! little-endian, in the 32 bytes of the four data words (word 0 holds bytes 0-7), with no
//! padding; bytes past the last field are zero when sent and ignored when received. A
//! [`Cap`] field takes no bytes: it travels in the message's capability slot, so a payload
//! has at most one. Decoding checks every value (a `bool` is 0 or 1, an `Option` tag 0 or 1, a
//! `char` a Unicode scalar value) and fails with a [`DecodeError`], never a panic.

use super::DecodeError;
use crate::sys::{Handle, Message};

/// Bytes of payload in a message: four words.
pub const PAYLOAD_MAX: usize = 32;

/// A value with a fixed-size encoding in a message.
pub trait Wire: Sized {
    /// Bytes of the encoding.
    const SIZE: usize;
    /// Capabilities it carries (a payload may carry one).
    const CAPS: usize = 0;
    /// Appends the encoding.
    fn put(&self, w: &mut Writer);
    /// Takes the encoding; fails on a value that is not a valid `Self`.
    fn get(r: &mut Reader) -> Result<Self, DecodeError>;
}

/// Builds a message: the label, then the fields' bytes and capability.
pub struct Writer {
    label: u32,
    bytes: [u8; PAYLOAD_MAX],
    len: usize,
    cap: Option<Handle>,
}

impl Writer {
    pub fn new(label: u32) -> Writer {
        Writer { label, bytes: [0; PAYLOAD_MAX], len: 0, cap: None }
    }

    /// Appends bytes. Panics beyond 32 bytes, which the `protocol!` macro rules out at compile
    /// time for types whose `Wire::SIZE` is right.
    pub fn put_bytes(&mut self, bytes: &[u8]) {
        assert!(self.len + bytes.len() <= PAYLOAD_MAX, "a Wire::SIZE is wrong: the payload exceeds 32 bytes");
        self.bytes[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Puts a capability in the message (at most one, as `protocol!` checks).
    pub fn put_cap(&mut self, handle: Handle) {
        assert!(self.cap.is_none(), "a Wire::CAPS is wrong: two capabilities in one message");
        self.cap = Some(handle);
    }

    /// The message.
    pub fn finish(self) -> Message {
        let mut words = [0u64; 4];
        for (i, word) in words.iter_mut().enumerate() {
            let mut b = [0; 8];
            b.copy_from_slice(&self.bytes[i * 8..i * 8 + 8]);
            *word = u64::from_le_bytes(b);
        }
        Message { label: self.label, words, cap: self.cap }
    }
}

/// Reads the fields of a received message.
pub struct Reader {
    bytes: [u8; PAYLOAD_MAX],
    pos: usize,
    cap: Option<Handle>,
    cap_taken: bool,
}

impl Reader {
    pub fn new(message: &Message) -> Reader {
        let mut bytes = [0; PAYLOAD_MAX];
        for (i, word) in message.words.iter().enumerate() {
            bytes[i * 8..i * 8 + 8].copy_from_slice(&word.to_le_bytes());
        }
        Reader { bytes, pos: 0, cap: message.cap, cap_taken: false }
    }

    /// The next `N` bytes.
    pub fn get_bytes<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let end = self.pos.checked_add(N).filter(|&e| e <= PAYLOAD_MAX).ok_or(DecodeError::Truncated)?;
        let mut out = [0; N];
        out.copy_from_slice(&self.bytes[self.pos..end]);
        self.pos = end;
        Ok(out)
    }

    /// The message's capability.
    pub fn get_cap(&mut self) -> Result<Handle, DecodeError> {
        match self.cap {
            Some(handle) if !self.cap_taken => {
                self.cap_taken = true;
                Ok(handle)
            }
            _ => Err(DecodeError::MissingCapability),
        }
    }

    /// Ends decoding: a capability nobody took is an error (its receiver should close it).
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.cap.is_some() && !self.cap_taken {
            return Err(DecodeError::UnexpectedCapability);
        }
        Ok(())
    }
}

macro_rules! wire_int {
    ($($t:ty),*) => {$(
        impl Wire for $t {
            const SIZE: usize = core::mem::size_of::<$t>();
            fn put(&self, w: &mut Writer) {
                w.put_bytes(&self.to_le_bytes());
            }
            fn get(r: &mut Reader) -> Result<Self, DecodeError> {
                r.get_bytes().map(<$t>::from_le_bytes)
            }
        }
    )*};
}

wire_int!(u8, u16, u32, u64, i8, i16, i32, i64);

impl Wire for () {
    const SIZE: usize = 0;
    fn put(&self, _: &mut Writer) {}
    fn get(_: &mut Reader) -> Result<Self, DecodeError> {
        Ok(())
    }
}

impl Wire for bool {
    const SIZE: usize = 1;
    fn put(&self, w: &mut Writer) {
        w.put_bytes(&[*self as u8]);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.get_bytes::<1>()? {
            [0] => Ok(false),
            [1] => Ok(true),
            _ => Err(DecodeError::InvalidValue),
        }
    }
}

impl Wire for char {
    const SIZE: usize = 4;
    fn put(&self, w: &mut Writer) {
        (*self as u32).put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        char::from_u32(u32::get(r)?).ok_or(DecodeError::InvalidValue)
    }
}

impl<const N: usize> Wire for [u8; N] {
    const SIZE: usize = N;
    fn put(&self, w: &mut Writer) {
        w.put_bytes(self);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        r.get_bytes()
    }
}

/// A tag byte (0 none, 1 some), then the value's bytes (zeros for none).
impl<T: Wire> Wire for Option<T> {
    const SIZE: usize = 1 + T::SIZE;
    const CAPS: usize = T::CAPS;
    fn put(&self, w: &mut Writer) {
        match self {
            Some(value) => {
                w.put_bytes(&[1]);
                value.put(w);
            }
            None => {
                w.put_bytes(&[0]);
                for _ in 0..T::SIZE {
                    w.put_bytes(&[0]);
                }
            }
        }
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        match r.get_bytes::<1>()? {
            [0] => {
                for _ in 0..T::SIZE {
                    r.get_bytes::<1>()?;
                }
                Ok(None)
            }
            [1] => T::get(r).map(Some),
            _ => Err(DecodeError::InvalidValue),
        }
    }
}

impl<A: Wire, B: Wire> Wire for (A, B) {
    const SIZE: usize = A::SIZE + B::SIZE;
    const CAPS: usize = A::CAPS + B::CAPS;
    fn put(&self, w: &mut Writer) {
        self.0.put(w);
        self.1.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok((A::get(r)?, B::get(r)?))
    }
}

impl<A: Wire, B: Wire, C: Wire> Wire for (A, B, C) {
    const SIZE: usize = A::SIZE + B::SIZE + C::SIZE;
    const CAPS: usize = A::CAPS + B::CAPS + C::CAPS;
    fn put(&self, w: &mut Writer) {
        self.0.put(w);
        self.1.put(w);
        self.2.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok((A::get(r)?, B::get(r)?, C::get(r)?))
    }
}

/// A capability carried by a message (its handle in the sender's or the receiver's table).
///
/// The typed layer copies a capability in a request (the client keeps its handle) and moves
/// one in a response (the server closes its handle once the reply is sent). A received `Cap`
/// is the receiver's to keep or close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cap(pub Handle);

impl Wire for Cap {
    const SIZE: usize = 0;
    const CAPS: usize = 1;
    fn put(&self, w: &mut Writer) {
        w.put_cap(self.0);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        r.get_cap().map(Cap)
    }
}

/// A byte range of a shared buffer named in a message: offset, then length (16 bytes). It is
/// just two numbers: [`SharedBuffer`](super::SharedBuffer) checks it against the buffer.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BufRange {
    pub offset: u64,
    pub len: u64,
}

impl Wire for BufRange {
    const SIZE: usize = 16;
    fn put(&self, w: &mut Writer) {
        self.offset.put(w);
        self.len.put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Ok(BufRange { offset: u64::get(r)?, len: u64::get(r)? })
    }
}
