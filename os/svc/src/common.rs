//! The protocols of init and the system services, and client helpers (docs/services.md).
//!
//! Badges: init gives the service in manifest slot `i` capabilities badged `i + 1` (to init's
//! endpoint and to the name service), so both know who calls. Badge 0 (no badge) is init
//! itself at the name service.

use alloc::vec::Vec;
use rt::ipc::{Client, IpcError};
use rt::sys::{self, Handle};

/// The longest service name, as in the manifest.
pub const NAME_MAX: usize = 16;
/// A name on the wire: UTF-8 bytes, zero-padded.
pub type Name = [u8; NAME_MAX];

/// `text` as a wire name, or `None` if it is longer than `NAME_MAX`.
pub fn name(text: &str) -> Option<Name> {
    let mut out = [0; NAME_MAX];
    out.get_mut(..text.len())?.copy_from_slice(text.as_bytes());
    Some(out)
}

/// A wire name as text (up to the first zero; `?` if it is not UTF-8).
pub fn name_str(name: &Name) -> &str {
    let len = name.iter().position(|&b| b == 0).unwrap_or(NAME_MAX);
    core::str::from_utf8(&name[..len]).unwrap_or("?")
}

/// The boot protocol: what a service asks init on the endpoint it gets as its startup
/// argument (handle 2), and the status query.
pub mod boot {
    use super::Name;
    use rt::ipc::Cap;

    /// The bytes of an `arg` line in one `ArgumentPart`.
    pub const ARG_PART: usize = 28;

    /// Service states in a `Service` reply.
    pub mod state {
        pub const RUNNING: u8 = 1;
        /// Ended; waiting for its backoff delay before the next start.
        pub const BACKING_OFF: u8 = 2;
        /// Ended and not restarted (policy), or not started.
        pub const STOPPED: u8 = 3;
        /// Could not be started (no such program, no memory...).
        pub const FAILED: u8 = 4;

        /// The state's name.
        pub fn text(state: u8) -> &'static str {
            match state {
                RUNNING => "running",
                BACKING_OFF => "backing-off",
                STOPPED => "stopped",
                FAILED => "failed",
                _ => "unknown",
            }
        }
    }

    /// How a service last ended, in a `Service` reply (`exit_value` says more).
    pub mod exit {
        /// It has not ended yet.
        pub const NONE: u8 = 0;
        /// It told init it exits with status `exit_value`.
        pub const STATUS: u8 = 1;
        /// A CPU exception, vector `exit_value`; init ended it.
        pub const FAULT: u8 = 2;
        /// It ended without telling init (a panic, an exit without `Exiting`, killed).
        pub const VANISHED: u8 = 3;
    }

    rt::protocol! {
        /// Between init and its services.
        pub protocol Boot {
            request Request {
                /// The `index`-th capability the manifest gives the caller.
                Capability { index: u32 } = 1,
                /// A capability to the name service (badged with the caller's slot).
                Names = 2,
                /// The caller is about to end with `status` (so init knows a clean exit).
                Exiting { status: i32 } = 3,
                /// The state of the `index`-th service of the manifest.
                Status { index: u32 } = 4,
                /// From the name service only: its endpoint, for init to hand out.
                Provide { endpoint: Cap } = 5,
                /// Bytes `offset..` of the caller's `index`-th `arg` line.
                Argument { index: u32, offset: u32 } = 6,
                /// What the `index`-th service's task uses (`Usage`).
                Usage { index: u32 } = 7,
                /// `admin` services only: end the `index`-th service now as if it had been
                /// killed (its restart policy then applies).
                Kill { index: u32 } = 8,
                /// `admin` services only: start the `index`-th service again now, ending it first
                /// if it runs, without backoff and whatever its policy.
                Restart { index: u32 } = 9,
            }
            response Response {
                /// I/O ports `first` to `first + count - 1`.
                Ports { cap: Cap, first: u16, count: u16 } = 1,
                /// One interrupt line.
                Irq { cap: Cap, line: u8 } = 2,
                /// Physical device memory.
                DeviceMemory { cap: Cap, base: u64, len: u64 } = 3,
                /// The right to look `name` up in the name service.
                Endpoint { name: Name } = 4,
                /// No capability, service or entry at that index.
                NoMore = 5,
                NamesEndpoint { cap: Cap } = 6,
                /// The name service is not running (yet).
                Unavailable = 7,
                Done = 8,
                Service { name: Name, state: u8, restarts: u32, exit_kind: u8, exit_value: i32 } = 9,
                /// The caller may not do this.
                Denied = 10,
                /// init could not make the capability.
                Failed = 11,
                /// The boot archive: a read-only memory object of `len` bytes (cpio newc).
                BootArchive { cap: Cap, len: u64 } = 12,
                /// Part of an `arg` line of `total` bytes: `len` bytes in `bytes`.
                ArgumentPart { total: u16, len: u8, bytes: [u8; ARG_PART] } = 13,
                /// Quota bytes in use and the quota, and pages mapped (a running service).
                Usage { used: u64, quota: u64, pages: u64 } = 14,
                /// The console, with the right to read the kernel log (`sys::log_read`).
                KernelLog { cap: Cap } = 15,
            }
        }
    }
}

/// The name service's protocol (`svc_names`).
pub mod names {
    use super::Name;
    use rt::ipc::Cap;

    rt::protocol! {
        /// Names to endpoints.
        pub protocol Names {
            request Request {
                /// Registers `endpoint` (SEND, GRANT, DUPLICATE) under the caller's own service
                /// name, replacing an earlier registration.
                Register { endpoint: Cap } = 1,
                /// An endpoint capability for `name` (badged with the caller's badge).
                Lookup { name: Name } = 2,
                /// init only: `client` may look `name` up, or register under it.
                Allow { client: u64, name: Name, register: bool } = 3,
                /// init only: `client` ended: drop its rights and its registration.
                Forget { client: u64 } = 4,
            }
            response Response {
                Done = 1,
                Found { endpoint: Cap } = 2,
                /// Allowed, but nobody is registered under the name right now.
                NotRegistered = 3,
                Denied = 4,
                /// The service's tables are full.
                Full = 5,
            }
        }
    }
}

/// The console driver's protocol (`svc_console`).
pub mod console {
    use rt::ipc::{BufRange, Cap};

    /// Bytes in one inline `Write` or `Inject`.
    pub const INLINE_MAX: usize = 31;
    /// The longest line `ReadLine` returns.
    pub const LINE_MAX: usize = 256;
    /// The largest buffer a client may ask for.
    pub const BUFFER_MAX: u64 = 64 * 1024;

    rt::protocol! {
        /// The serial console: output for many clients, line input for one at a time.
        pub protocol Console {
            request Request {
                /// Writes the first `len` bytes (`\n` becomes `\r\n`).
                Write { len: u8, bytes: [u8; 31] } = 1,
                /// A shared buffer for this client (one per badge).
                OpenBuffer { len: u64 } = 2,
                /// Writes `range` of the client's buffer.
                WriteBuffer { range: BufRange } = 3,
                /// Waits for a complete line and writes it to the client's buffer at `offset`.
                ReadLine { offset: u64 } = 4,
                /// Test aid: sends the bytes through the UART in loopback mode, so they come back
                /// as input through the interrupt path (echo is held back and written after).
                Inject { len: u8, bytes: [u8; 31] } = 5,
                /// `ReadLine` that gives up after `wait_ms` milliseconds with `NoLine` (the
                /// reader role is free again), for a reader that must not hold the console.
                ReadLineFor { offset: u64, wait_ms: u64 } = 6,
                /// Puts the line in `range` of the client's buffer (without its end) back in
                /// front of the typed lines: the next `ReadLine` gets it (a reader that read
                /// ahead and no longer wants it gives it back).
                Unread { range: BufRange } = 7,
            }
            response Response {
                Done = 1,
                Buffer { memory: Cap, len: u64 } = 2,
                /// A line of `len` bytes (without its end) is in the buffer.
                Line { len: u64 } = 3,
                /// Another client is reading a line.
                Busy = 4,
                /// The line was cancelled with Ctrl-C.
                Cancelled = 5,
                NoBuffer = 6,
                OutOfRange = 7,
                TooLarge = 8,
                Exists = 9,
                /// The device or the system refused.
                Failed = 10,
                /// `ReadLineFor`: no line was completed in time.
                NoLine = 11,
            }
        }
    }
}

/// A tiny echo protocol for the supervisor's tests (`svc_crashy`).
pub mod echo {
    rt::protocol! {
        /// Ping-pong.
        pub protocol Echo {
            request Request {
                Ping { n: u64 } = 1,
            }
            response Response {
                /// `served`: how many pings this incarnation of the server has answered.
                Pong { n: u64, served: u64 } = 1,
            }
        }
    }
}

/// init, through the endpoint it gave this service (the startup argument).
pub fn init() -> Client<boot::Boot> {
    Client::new(rt::startup_arg() as Handle)
}

/// Every capability the manifest gives this service, in manifest order.
pub fn capabilities() -> Result<Vec<boot::Response>, IpcError> {
    let mut out = Vec::new();
    for index in 0..64 {
        match init().call(&boot::Request::Capability { index }, sys::FOREVER_NS)? {
            boot::Response::NoMore => break,
            other => out.push(other),
        }
    }
    Ok(out)
}

/// This service's `arg` lines from the manifest, in order.
pub fn arguments() -> Result<Vec<alloc::string::String>, IpcError> {
    let mut out = Vec::new();
    for index in 0..64 {
        let mut text = Vec::new();
        loop {
            let request = boot::Request::Argument { index, offset: text.len() as u32 };
            match init().call(&request, sys::FOREVER_NS)? {
                boot::Response::ArgumentPart { total, len, bytes } => {
                    let len = (len as usize).min(bytes.len());
                    text.extend_from_slice(&bytes[..len]);
                    if len == 0 || text.len() >= total as usize {
                        break;
                    }
                }
                _ => return Ok(out),
            }
        }
        out.push(alloc::string::String::from_utf8_lossy(&text).into_owned());
    }
    Ok(out)
}

/// This service's I/O ports, interrupt line... of the manifest: the first of each kind.
pub fn first_ports(caps: &[boot::Response]) -> Option<(Handle, u16, u16)> {
    caps.iter().find_map(|c| match c {
        boot::Response::Ports { cap, first, count } => Some((cap.0, *first, *count)),
        _ => None,
    })
}

/// The first interrupt line among `caps`.
pub fn first_irq(caps: &[boot::Response]) -> Option<(Handle, u8)> {
    caps.iter().find_map(|c| match c {
        boot::Response::Irq { cap, line } => Some((cap.0, *line)),
        _ => None,
    })
}

/// A capability to the name service, from init.
pub fn names() -> Result<Client<names::Names>, IpcError> {
    match init().call(&boot::Request::Names, sys::FOREVER_NS)? {
        boot::Response::NamesEndpoint { cap } => Ok(Client::new(cap.0)),
        _ => Err(IpcError::Kernel(sys::Error::PeerDied)),
    }
}

/// Why a lookup failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LookupError {
    /// The manifest does not give this service an endpoint to that name.
    Denied,
    /// Nobody registered the name before the deadline.
    NotRegistered,
    /// The name is too long, or the name service is full.
    BadName,
    Ipc(IpcError),
}

/// Looks `name` up, waiting (10 ms at a time) up to `wait_ns` for it to be registered. Asks
/// init for a new name-service capability if the name service itself was restarted.
pub fn lookup(names: &mut Client<names::Names>, target: &str, wait_ns: u64) -> Result<Handle, LookupError> {
    let key = name(target).ok_or(LookupError::BadName)?;
    let deadline = sys::time_now().saturating_add(wait_ns);
    loop {
        match names.call(&names::Request::Lookup { name: key }, 1_000_000_000) {
            Ok(names::Response::Found { endpoint }) => return Ok(endpoint.0),
            Ok(names::Response::Denied) => return Err(LookupError::Denied),
            Ok(names::Response::NotRegistered) => {}
            Ok(_) => return Err(LookupError::BadName),
            Err(IpcError::Kernel(sys::Error::PeerDied | sys::Error::InvalidHandle)) => {
                // The name service restarted: a fresh capability from init.
                if let Ok(fresh) = self::names() {
                    let _ = sys::cap_close(names.endpoint());
                    *names = fresh;
                }
            }
            Err(e) => return Err(LookupError::Ipc(e)),
        }
        if sys::time_now() >= deadline {
            return Err(LookupError::NotRegistered);
        }
        sys::sleep(10_000_000);
    }
}

/// Registers `endpoint` under this service's name (a copy with SEND, GRANT and DUPLICATE).
pub fn register(names: &Client<names::Names>, endpoint: Handle) -> Result<(), IpcError> {
    use abi::syscall::rights;
    let copy = sys::cap_duplicate(endpoint, rights::SEND | rights::GRANT | rights::DUPLICATE, 0)?;
    let result = names.call(&names::Request::Register { endpoint: rt::ipc::Cap(copy) }, sys::FOREVER_NS);
    let _ = sys::cap_close(copy);
    match result? {
        names::Response::Done => Ok(()),
        _ => Err(IpcError::Kernel(sys::Error::MissingRights)),
    }
}

/// Tells init this service ends with `status`, and returns it (for `main` to return).
pub fn exit(status: i32) -> i32 {
    let _ = init().call(&boot::Request::Exiting { status }, sys::FOREVER_NS);
    status
}

/// Writes `text` to the console service, in inline pieces.
pub fn console_write(console: &Client<console::Console>, text: &[u8]) -> Result<(), IpcError> {
    for chunk in text.chunks(console::INLINE_MAX) {
        let mut bytes = [0; console::INLINE_MAX];
        bytes[..chunk.len()].copy_from_slice(chunk);
        console.call(&console::Request::Write { len: chunk.len() as u8, bytes }, sys::FOREVER_NS)?;
    }
    Ok(())
}
