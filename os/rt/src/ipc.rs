//! Typed IPC: requests and responses as Rust types, a client and a server loop.
//!
//! A protocol is a pair of enums, one for requests and one for responses, declared with
//! [`protocol!`](crate::protocol). Each variant has a label (the message label) and fields of
//! [`Wire`] types laid out in the message's four data words (see [`wire`]); a [`Cap`] field
//! travels in the message's capability slot. Payloads larger than 32 bytes go through a
//! [`SharedBuffer`] and messages name byte ranges of it ([`BufRange`]).
//!
//! ```ignore
//! rt::protocol! {
//!     /// A key-value store.
//!     pub protocol Kv {
//!         request KvRequest {
//!             Put { key: u64, value: u64 } = 1,
//!             Get { key: u64 } = 2,
//!         }
//!         response KvResponse {
//!             Done = 1,
//!             Value { value: Option<u64> } = 2,
//!         }
//!     }
//! }
//! // Client:
//! let kv = Client::<Kv>::new(endpoint);
//! kv.call(&KvRequest::Put { key: 1, value: 2 }, FOREVER_NS)?;
//! // Server:
//! Server::<Kv>::new(endpoint).serve(|badge, request| match request { ... });
//! ```
//!
//! **Hostile input.** Decoding is fallible and checks everything: an unknown label, an invalid
//! value (a `bool` that is not 0 or 1, ...), a missing capability or one nobody asked for give a
//! [`DecodeError`]. The server loop then closes any capability that came with the message and
//! replies [`REJECTED`] (word 0: the error's code, word 1: the offending label) without calling
//! the handler, and serves on. The client treats replies the same way: an undecodable reply is
//! [`IpcError::BadReply`].
//!
//! **Capabilities.** A capability in a request is copied (the client keeps its handle); one in
//! a response is moved (the server loop closes its handle once the reply is sent). A received
//! [`Cap`] belongs to the receiver.

pub mod buffer;
pub mod wire;

pub use buffer::{BufferError, SharedBuffer, SHARED_WINDOW};
pub use wire::{BufRange, Cap, Reader, Wire, Writer, PAYLOAD_MAX};

use crate::sys::{self, Error, Handle, Message, Received, FOREVER_NS};
use core::marker::PhantomData;

/// Labels from here up are the system's (the kernel's `FAULT` is `0xffff_0001`); protocols
/// use labels below.
pub const RESERVED_LABELS: u32 = 0xfff0_0000;
/// The reply to a request the server could not decode: word 0 the [`DecodeError`] code,
/// word 1 the request's label.
pub const REJECTED: u32 = 0xfff0_0001;

/// Why a message does not decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u64)]
pub enum DecodeError {
    /// No variant has this label.
    UnknownLabel = 1,
    /// A field's bytes are not a valid value of its type.
    InvalidValue = 2,
    /// The variant has a capability field but the message carries none.
    MissingCapability = 3,
    /// The message carries a capability the variant has no field for.
    UnexpectedCapability = 4,
    /// The fields need more than a message's 32 bytes (a broken `Wire` implementation).
    Truncated = 5,
    /// A rejection code this runtime does not know (from a `REJECTED` reply).
    Unknown = 0xff,
}

impl DecodeError {
    /// The code sent in a [`REJECTED`] reply.
    pub fn code(self) -> u64 {
        self as u64
    }

    /// The error a code stands for (`Unknown` for a code this runtime does not know).
    pub fn from_code(code: u64) -> DecodeError {
        match code {
            1 => DecodeError::UnknownLabel,
            2 => DecodeError::InvalidValue,
            3 => DecodeError::MissingCapability,
            4 => DecodeError::UnexpectedCapability,
            5 => DecodeError::Truncated,
            _ => DecodeError::Unknown,
        }
    }
}

impl core::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            DecodeError::UnknownLabel => "unknown label",
            DecodeError::InvalidValue => "invalid value",
            DecodeError::MissingCapability => "missing capability",
            DecodeError::UnexpectedCapability => "unexpected capability",
            DecodeError::Truncated => "payload too long",
            DecodeError::Unknown => "unknown rejection",
        })
    }
}

/// Why a typed call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IpcError {
    /// The system call failed: `PeerDied` (the server is gone), `TimedOut`, `InvalidHandle`...
    Kernel(Error),
    /// The server could not decode the request.
    Rejected(DecodeError),
    /// The reply does not decode as a response of the protocol.
    BadReply(DecodeError),
}

impl From<Error> for IpcError {
    fn from(e: Error) -> IpcError {
        IpcError::Kernel(e)
    }
}

impl core::fmt::Display for IpcError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            IpcError::Kernel(e) => write!(f, "{e}"),
            IpcError::Rejected(e) => write!(f, "request rejected: {e}"),
            IpcError::BadReply(e) => write!(f, "bad reply: {e}"),
        }
    }
}

/// A request or response type: encodes into a message and decodes from one.
pub trait Payload: Sized {
    /// The label of this value's variant.
    fn label(&self) -> u32;
    /// The message.
    fn encode(&self) -> Message;
    /// The value, or why the message is not one. On error, a capability that came with the
    /// message is still the caller's to close.
    fn decode(message: &Message) -> Result<Self, DecodeError>;
}

/// A protocol: what a client may ask and what the server answers.
pub trait Protocol {
    type Request: Payload;
    type Response: Payload;
    /// For messages.
    const NAME: &'static str;
}

/// The client side of a protocol: an endpoint capability (`SEND`, and `GRANT` for requests
/// with a capability).
pub struct Client<P: Protocol> {
    endpoint: Handle,
    _protocol: PhantomData<P>,
}

impl<P: Protocol> Client<P> {
    pub const fn new(endpoint: Handle) -> Client<P> {
        Client { endpoint, _protocol: PhantomData }
    }

    /// The endpoint capability.
    pub fn endpoint(&self) -> Handle {
        self.endpoint
    }

    /// Sends `request` and waits for the response, at most `timeout` ns for the whole call.
    pub fn call(&self, request: &P::Request, timeout: u64) -> Result<P::Response, IpcError> {
        let reply = sys::call(self.endpoint, &request.encode(), timeout)?;
        if reply.label == REJECTED {
            close(reply.cap);
            return Err(IpcError::Rejected(DecodeError::from_code(reply.words[0])));
        }
        P::Response::decode(&reply).map_err(|e| {
            close(reply.cap);
            IpcError::BadReply(e)
        })
    }
}

fn close(cap: Option<Handle>) {
    if let Some(handle) = cap {
        let _ = sys::cap_close(handle);
    }
}

/// The server side of a protocol: an endpoint capability with `RECEIVE`.
pub struct Server<P: Protocol> {
    endpoint: Handle,
    _protocol: PhantomData<P>,
}

impl<P: Protocol> Server<P> {
    pub const fn new(endpoint: Handle) -> Server<P> {
        Server { endpoint, _protocol: PhantomData }
    }

    /// Serves calls forever: each request that decodes goes to `handler` with the badge of
    /// the caller's capability, and its result is the reply; one that does not is rejected
    /// (see the module documentation). Returns only when receiving fails (the endpoint is
    /// gone), with the error.
    pub fn serve(&self, mut handler: impl FnMut(u64, P::Request) -> P::Response) -> Error {
        let mut incoming = match sys::recv(self.endpoint, FOREVER_NS) {
            Ok(incoming) => incoming,
            Err(e) => return e,
        };
        loop {
            let reply = Self::answer(&incoming, &mut handler);
            let next = sys::reply_recv(self.endpoint, &reply, FOREVER_NS);
            // A capability in a response is moved: the caller has its copy now.
            close(reply.cap);
            match next {
                Ok(received) => incoming = received,
                Err(e) => return e,
            }
        }
    }

    /// The reply to one received message: the handler's response, or a rejection.
    pub fn answer(incoming: &Received, handler: &mut impl FnMut(u64, P::Request) -> P::Response) -> Message {
        let message = &incoming.message;
        match P::Request::decode(message) {
            Ok(request) => handler(incoming.badge, request).encode(),
            Err(e) => {
                close(message.cap);
                rejection(message.label, e)
            }
        }
    }
}

/// The [`REJECTED`] reply to a request with `label` that failed with `error`.
pub fn rejection(label: u32, error: DecodeError) -> Message {
    Message::new(REJECTED, [error.code(), label as u64, 0, 0])
}

/// Declares a protocol: a unit struct implementing [`Protocol`] and its request and response
/// enums implementing [`Payload`]. Every variant names its label; fields are `Wire` types.
/// Checked at compile time: labels distinct and below [`RESERVED_LABELS`], at most 32 bytes
/// and one capability per variant. See the module documentation for an example.
#[macro_export]
macro_rules! protocol {
    (
        $(#[$meta:meta])*
        $vis:vis protocol $protocol:ident {
            $(#[$request_meta:meta])*
            request $request:ident { $($request_body:tt)* }
            $(#[$response_meta:meta])*
            response $response:ident { $($response_body:tt)* }
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug)]
        $vis struct $protocol;

        impl $crate::ipc::Protocol for $protocol {
            type Request = $request;
            type Response = $response;
            const NAME: &'static str = stringify!($protocol);
        }

        $crate::__payload! { $(#[$request_meta])* $vis $request { $($request_body)* } }
        $crate::__payload! { $(#[$response_meta])* $vis $response { $($response_body)* } }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __payload {
    (
        $(#[$meta:meta])*
        $vis:vis $name:ident {
            $(
                $(#[$variant_meta:meta])*
                $variant:ident $({ $($field:ident : $type:ty),* $(,)? })? = $label:literal
            ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        $vis enum $name {
            $( $(#[$variant_meta])* $variant $({ $($field: $type),* })? ),*
        }

        const _: () = {
            let labels: &[u32] = &[$($label),*];
            let mut i = 0;
            while i < labels.len() {
                assert!(labels[i] < $crate::ipc::RESERVED_LABELS, "label in the reserved range");
                let mut j = i + 1;
                while j < labels.len() {
                    assert!(labels[i] != labels[j], concat!("two variants of ", stringify!($name), " share a label"));
                    j += 1;
                }
                i += 1;
            }
            $(
                assert!(
                    0 $($(+ <$type as $crate::ipc::Wire>::SIZE)*)? <= $crate::ipc::PAYLOAD_MAX,
                    concat!(stringify!($name), "::", stringify!($variant), " exceeds 32 bytes")
                );
                assert!(
                    0 $($(+ <$type as $crate::ipc::Wire>::CAPS)*)? <= 1,
                    concat!(stringify!($name), "::", stringify!($variant), " has more than one capability")
                );
            )*
        };

        impl $crate::ipc::Payload for $name {
            fn label(&self) -> u32 {
                match self {
                    $( Self::$variant { .. } => $label, )*
                }
            }

            #[allow(unused_variables)]
            fn encode(&self) -> $crate::sys::Message {
                let mut w = $crate::ipc::Writer::new($crate::ipc::Payload::label(self));
                match self {
                    $( Self::$variant $({ $($field),* })? => { $($( $crate::ipc::Wire::put($field, &mut w); )*)? } )*
                }
                w.finish()
            }

            fn decode(message: &$crate::sys::Message) -> ::core::result::Result<Self, $crate::ipc::DecodeError> {
                let mut r = $crate::ipc::Reader::new(message);
                let value = match message.label {
                    $( $label => Self::$variant $({ $($field: <$type as $crate::ipc::Wire>::get(&mut r)?),* })?, )*
                    _ => return Err($crate::ipc::DecodeError::UnknownLabel),
                };
                r.finish()?;
                Ok(value)
            }
        }
    };
}
