//! The soft bus server's local protocol (`softbusd`, docs/softbus/tutti.md) and its client.
//!
//! A client looks `softbus` up in the name service and sends `Open`: the server answers with a
//! shared buffer it owns (one per client badge). Requests take their text arguments from that
//! buffer (NUL-separated) and answers put text or reply bytes at its offset 0. Requests that
//! need the network (`Pair`, `Call`, `Caps`) are answered when the exchange ends: the server
//! keeps the reply and goes on serving others, so a slow peer delays only its caller.

use crate::{LookupError, Name};
use alloc::string::String;
use alloc::vec::Vec;
use rt::ipc::{BufRange, Cap, Client, IpcError, SharedBuffer};
use rt::sys;

/// Bytes of the shared buffer the server makes for each client.
pub const BUFFER_LEN: u64 = 16 * 1024;

rt::protocol! {
    /// The soft bus server.
    pub protocol SoftBus {
        request Request {
            /// Registers the caller; answered `Opened`.
            Open = 1,
            /// The devices discovered and trusted, as a table (`Text`).
            Devices = 2,
            /// Shows a new pairing code here (`Code`); the previous one is dropped.
            PairShow = 3,
            /// Pairs with the device named in `range` (`device\0code`), which shows the code:
            /// `Text` (the paired device) or `Failed`.
            Pair { range: BufRange } = 4,
            /// The trusted devices, as a table (`Text`).
            Trust = 5,
            /// Stops trusting the device named in `range` (`Text` or `Failed`).
            Revoke { range: BufRange } = 6,
            /// Calls a method: `range` holds `device\0method\0payload`; `Reply` with the
            /// response bytes or `Failed`.
            Call { range: BufRange, timeout_ms: u32 } = 7,
            /// The capabilities of the device named in `range`, as a table (`Text` or `Failed`).
            Caps { range: BufRange } = 8,
            /// Answers a permission prompt for `device\0capability` in `range`: with `seconds`
            /// > 0 the answer becomes a rule until then, else it covers the calls waiting now.
            Answer { range: BufRange, allow: bool, seconds: u32 } = 9,
            /// The permission policy: its default and rules (`Text`).
            Policy = 10,
            /// Sets the rule for `device\0capability` in `range`: [`decision`] `ALLOW`, `DENY`
            /// or `ASK`, for `seconds` (0: until changed). `Text` or `Failed`.
            PolicySet { range: BufRange, decision: u32, seconds: u32 } = 11,
            /// Removes the rule for `device\0capability` in `range` (a grant revoked): the
            /// default applies again. `Text` or `Failed`.
            PolicyRemove { range: BufRange } = 12,
            /// The name service only (badge 0): an endpoint for the remote service `name`
            /// (`<service>@<device>`) that `client` looked up. Answered `Proxy` or `Failed`.
            Proxy { name: Name, client: u64 } = 13,
            /// Sends a file: `range` holds `device\0path`; when the receiver confirmed it (or
            /// refused it), `Text` or `Failed`.
            Send { range: BufRange } = 14,
            /// An endpoint speaking the file-system protocol (`svc::fs`) for the remote mount
            /// (`/remote/<device>/...`, docs/fs.md "Remote mounts"): `Files`.
            Files = 15,
        }
        response Response {
            Opened { buffer: Cap, len: u64 } = 1,
            /// `len` bytes of UTF-8 text at buffer offset 0.
            Text { len: u32 } = 2,
            /// A pairing code (6 digits) and how long it stays valid.
            Code { code: u32, valid_s: u32 } = 3,
            /// `len` bytes of response at buffer offset 0.
            Reply { len: u32 } = 4,
            /// Refused or failed: a [`failure`] kind, the RPC error code for `REMOTE`, and
            /// `len` bytes of message at buffer offset 0.
            Failed { kind: u32, code: u32, len: u32 } = 5,
            /// The caller has not sent `Open`.
            NotOpen = 6,
            /// An endpoint for a remote service: `Open` and `Call` on it (with an empty device,
            /// and the method's name without its service) reach that service on its device.
            Proxy { endpoint: Cap } = 7,
            /// The file-system endpoint of the remote mount (`Attach` there).
            Files { endpoint: Cap } = 8,
        }
    }
}

/// The decisions of [`Request::PolicySet`].
pub mod decision {
    pub const ALLOW: u32 = 0;
    pub const DENY: u32 = 1;
    pub const ASK: u32 = 2;
}

/// The kinds of [`Response::Failed`].
pub mod failure {
    /// No such device, or not discovered.
    pub const NOT_FOUND: u32 = 1;
    /// The device cannot be reached, or the session ended.
    pub const UNREACHABLE: u32 = 2;
    /// Not trusted (either way): pair first.
    pub const UNTRUSTED: u32 = 3;
    /// No answer before the deadline.
    pub const TIMEOUT: u32 = 4;
    /// The remote service answered an error (its code in `code`).
    pub const REMOTE: u32 = 5;
    /// The remote device's policy refused the call.
    pub const PERMISSION_DENIED: u32 = 6;
    /// The request is malformed (bad code, too long, not UTF-8).
    pub const BAD_REQUEST: u32 = 7;
    /// The pairing exchange failed (wrong code, no offer, attempts used up).
    pub const PAIRING_FAILED: u32 = 8;
    /// The server is busy (too many calls waiting) or failed inside.
    pub const INTERNAL: u32 = 9;
}

/// Why a client request failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BusError {
    Lookup(LookupError),
    Ipc(IpcError),
    Kernel(sys::Error),
    /// The server refused or the remote side failed: kind, RPC code, message.
    Failed {
        kind: u32,
        code: u32,
        message: String,
    },
    /// The arguments do not fit in the buffer.
    TooBig,
    /// An answer that does not belong to the request.
    Protocol,
}

impl core::fmt::Display for BusError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            BusError::Lookup(e) => write!(f, "soft bus service: {e:?}"),
            BusError::Ipc(e) => write!(f, "soft bus service: {e:?}"),
            BusError::Kernel(e) => write!(f, "{e}"),
            BusError::Failed { message, .. } => f.write_str(message),
            BusError::TooBig => f.write_str("arguments too long"),
            BusError::Protocol => f.write_str("soft bus service: unexpected answer"),
        }
    }
}

impl From<IpcError> for BusError {
    fn from(e: IpcError) -> Self {
        BusError::Ipc(e)
    }
}

/// A connection to the soft bus server.
pub struct Bus {
    client: Client<SoftBus>,
    buffer: SharedBuffer,
}

impl Bus {
    /// Looks `softbus` up (waiting up to `wait_ns`) and opens it; the caller's manifest entry
    /// needs `endpoint softbus`.
    pub fn connect(wait_ns: u64) -> Result<Bus, BusError> {
        let mut names = crate::names()?;
        let endpoint = crate::lookup(&mut names, "softbus", wait_ns).map_err(BusError::Lookup)?;
        let _ = sys::cap_close(names.endpoint());
        Bus::open(endpoint)
    }

    /// Opens the server (or a remote service's proxy) behind `endpoint`, which this value
    /// then owns.
    fn open(endpoint: rt::sys::Handle) -> Result<Bus, BusError> {
        let client = Client::<SoftBus>::new(endpoint);
        match client.call(&Request::Open, sys::FOREVER_NS)? {
            Response::Opened { buffer, .. } => {
                let buffer = SharedBuffer::map(buffer.0).map_err(BusError::Kernel)?;
                Ok(Bus { client, buffer })
            }
            _ => Err(BusError::Protocol),
        }
    }

    /// Writes `parts` NUL-separated into the buffer.
    fn put(&self, parts: &[&[u8]]) -> Result<BufRange, BusError> {
        let mut bytes = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            if i > 0 {
                bytes.push(0);
            }
            bytes.extend_from_slice(part);
        }
        if bytes.len() > self.buffer.len() {
            return Err(BusError::TooBig);
        }
        self.buffer.write(0, &bytes).map_err(|_| BusError::TooBig)?;
        Ok(BufRange { offset: 0, len: bytes.len() as u64 })
    }

    fn take(&self, len: u32) -> Result<Vec<u8>, BusError> {
        let mut out = alloc::vec![0u8; (len as usize).min(self.buffer.len())];
        self.buffer.read(0, &mut out).map_err(|_| BusError::Protocol)?;
        Ok(out)
    }

    fn ask(&self, request: &Request) -> Result<Vec<u8>, BusError> {
        match self.client.call(request, sys::FOREVER_NS)? {
            Response::Text { len } | Response::Reply { len } => self.take(len),
            Response::Failed { kind, code, len } => {
                let message = String::from_utf8_lossy(&self.take(len)?).into_owned();
                Err(BusError::Failed { kind, code, message })
            }
            _ => Err(BusError::Protocol),
        }
    }

    fn text(&self, request: &Request) -> Result<String, BusError> {
        self.ask(request).map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
    }

    /// The devices discovered and trusted, as a table.
    pub fn devices(&self) -> Result<String, BusError> {
        self.text(&Request::Devices)
    }

    /// Shows a new pairing code: the code and how many seconds it stays valid.
    pub fn pair_show(&self) -> Result<(u32, u32), BusError> {
        match self.client.call(&Request::PairShow, sys::FOREVER_NS)? {
            Response::Code { code, valid_s } => Ok((code, valid_s)),
            _ => Err(BusError::Protocol),
        }
    }

    /// Pairs with `device`, which shows `code`; what was paired.
    pub fn pair(&self, device: &str, code: &str) -> Result<String, BusError> {
        let range = self.put(&[device.as_bytes(), code.as_bytes()])?;
        self.text(&Request::Pair { range })
    }

    /// The trusted devices, as a table.
    pub fn trust(&self) -> Result<String, BusError> {
        self.text(&Request::Trust)
    }

    /// Stops trusting `device`.
    pub fn revoke(&self, device: &str) -> Result<String, BusError> {
        let range = self.put(&[device.as_bytes()])?;
        self.text(&Request::Revoke { range })
    }

    /// Calls `method` on `device` with `payload`, waiting up to `timeout_ms` for the answer.
    pub fn call(&self, device: &str, method: &str, payload: &[u8], timeout_ms: u32) -> Result<Vec<u8>, BusError> {
        let range = self.put(&[device.as_bytes(), method.as_bytes(), payload])?;
        self.ask(&Request::Call { range, timeout_ms })
    }

    /// Answers the permission prompt of `device` for `capability`; `seconds` > 0 makes it a
    /// rule for that long.
    pub fn answer(&self, device: &str, capability: &str, allow: bool, seconds: u32) -> Result<String, BusError> {
        let range = self.put(&[device.as_bytes(), capability.as_bytes()])?;
        self.text(&Request::Answer { range, allow, seconds })
    }

    /// The permission policy, as a table.
    pub fn policy(&self) -> Result<String, BusError> {
        self.text(&Request::Policy)
    }

    /// Sets the rule of `device` for `capability` to `decision` ([`decision`]) for `seconds`
    /// (0: until changed).
    pub fn policy_set(&self, device: &str, capability: &str, decision: u32, seconds: u32) -> Result<String, BusError> {
        let range = self.put(&[device.as_bytes(), capability.as_bytes()])?;
        self.text(&Request::PolicySet { range, decision, seconds })
    }

    /// Removes the rule of `device` for `capability`.
    pub fn policy_remove(&self, device: &str, capability: &str) -> Result<String, BusError> {
        let range = self.put(&[device.as_bytes(), capability.as_bytes()])?;
        self.text(&Request::PolicyRemove { range })
    }

    /// Sends the file at `path` to `device` and waits until the receiver checked it.
    pub fn send(&self, device: &str, path: &str) -> Result<String, BusError> {
        let range = self.put(&[device.as_bytes(), path.as_bytes()])?;
        self.text(&Request::Send { range })
    }

    /// The capabilities of `device`, as a table.
    pub fn caps(&self, device: &str) -> Result<String, BusError> {
        let range = self.put(&[device.as_bytes()])?;
        self.text(&Request::Caps { range })
    }
}

/// A remote service looked up in the name service as `<service>@<device>` (the caller's
/// manifest entry needs `endpoint softbus`): called like a local one, its calls, replies,
/// payloads and errors carried by the soft bus.
pub struct Remote {
    bus: Bus,
}

impl Remote {
    /// Looks `name` (`display@node1`) up, waiting up to `wait_ns` for the name service, and
    /// opens it.
    pub fn lookup(name: &str, wait_ns: u64) -> Result<Remote, BusError> {
        let mut names = crate::names()?;
        let endpoint = crate::lookup(&mut names, name, wait_ns).map_err(BusError::Lookup)?;
        let _ = sys::cap_close(names.endpoint());
        Ok(Remote { bus: Bus::open(endpoint)? })
    }

    /// Calls `method` (`show`) of the service with `payload` (JSON), waiting up to
    /// `timeout_ms` (0: the server's default) for the answer.
    pub fn call(&self, method: &str, payload: &[u8], timeout_ms: u32) -> Result<Vec<u8>, BusError> {
        self.bus.call("", method, payload, timeout_ms)
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = sys::cap_close(self.client.endpoint());
    }
}
