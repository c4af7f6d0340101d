//! The network service's protocol (`svc_net`, docs/net.md) and its client helpers:
//! [`Net`] (a connection to the service), [`TcpListener`], [`TcpStream`] and [`UdpSocket`]
//! with blocking methods built on the service's non-blocking requests.
//!
//! **Blocking over synchronous IPC.** The service must answer each request before it takes the
//! next, so no request waits: one that cannot progress is answered `WouldBlock`, and the
//! service remembers that the client waits. When its sockets may have progressed (a frame came
//! in, a timer ran) it signals the notification the client registered with `Open`
//! ([`READY_BIT`]); the helper waits on it (at most [`RETRY_NS`] at a time, as a safety net)
//! and asks again. Bulk data goes through one shared buffer per client (made by the service,
//! mapped by the client): `Send`/`Recv` name a byte range of it.
//!
//! The helpers are for one thread per [`Net`]: the shared buffer is reused by every call.

use crate::LookupError;
use alloc::vec::Vec;
use rt::ipc::{BufRange, Cap, Client, IpcError, SharedBuffer};
use rt::sys::{self, Handle};

/// The notification bit the service signals when a waiting client's sockets may have
/// progressed.
pub const READY_BIT: u64 = 1;
/// The longest a helper waits for a signal before asking again anyway.
pub const RETRY_NS: u64 = 100_000_000;
/// Bytes of the shared buffer the service makes for each client.
pub const BUFFER_LEN: u64 = 16 * 1024;

/// TCP states in `State` replies (the service's view of the connection).
pub mod tcp_state {
    /// Connecting (SYN sent or received).
    pub const CONNECTING: u8 = 1;
    /// Data flows both ways.
    pub const ESTABLISHED: u8 = 2;
    /// The peer has closed its side; what it sent may still be read.
    pub const PEER_CLOSED: u8 = 3;
    /// This side has closed; the connection is winding down.
    pub const CLOSING: u8 = 4;
    /// Closed (also after a reset or a refused connection).
    pub const CLOSED: u8 = 5;
    /// A listening socket.
    pub const LISTENING: u8 = 6;
}

/// Bits of a `Readiness` answer.
pub mod readiness {
    /// Data (or the end of the stream) to receive; a listener has a connection to accept.
    pub const READABLE: u8 = 1;
    /// Room to send (a TCP connection is established).
    pub const WRITABLE: u8 = 2;
    /// The connection is closed both ways, or was reset or refused.
    pub const HANGUP: u8 = 4;
}

rt::protocol! {
    /// Sockets of the network service. Socket ids are per service and checked against the
    /// caller's badge: a client names only its own sockets.
    pub protocol NetProtocol {
        request Request {
            /// Registers the caller: `notify` (SEND) is signalled with [`READY_BIT`] when a
            /// request answered `WouldBlock` may succeed. Answered `Opened` with the client's
            /// shared buffer. Again from the same client: replaces the notification, same buffer.
            Open { notify: Cap } = 1,
            /// The interface's address (when configured).
            Config = 2,
            /// A TCP socket listening on `port` with up to `backlog` (1-4) connections waiting.
            TcpListen { port: u16, backlog: u8 } = 3,
            /// A connection that arrived at `listener`, or `WouldBlock`.
            TcpAccept { listener: u32 } = 4,
            /// Starts a connection to `addr:port`; `State` tells when it is established.
            TcpConnect { addr: [u8; 4], port: u16 } = 5,
            /// The state of TCP socket `id` (`tcp_state`).
            State { id: u32 } = 6,
            /// Queues bytes of the shared buffer for sending: `Sent { len }` (maybe fewer than
            /// asked), or `WouldBlock` while the send buffer is full.
            Send { id: u32, range: BufRange } = 7,
            /// Copies received bytes into the shared buffer: `Received { len }` (0 at the end of
            /// the stream), or `WouldBlock`.
            Recv { id: u32, range: BufRange } = 8,
            /// Closes socket `id` (TCP: sends what is queued, then FIN); the id is invalid at once.
            Close { id: u32 } = 9,
            /// A UDP socket bound to `port`.
            UdpBind { port: u16 } = 10,
            /// Sends one datagram of the bytes of `range` to `addr:port`.
            UdpSendTo { id: u32, addr: [u8; 4], port: u16, range: BufRange } = 11,
            /// The next datagram into the shared buffer at `range` (cut to its length), or
            /// `WouldBlock`.
            UdpRecvFrom { id: u32, range: BufRange } = 12,
            /// Joins the IPv4 multicast group `addr` (IGMP) on the interface.
            JoinMulticast { addr: [u8; 4] } = 13,
            /// What socket `id` could do now (`poll`): `Readiness` with [`readiness`] bits; when
            /// it is neither readable nor writable the caller counts as waiting (signalled on
            /// progress).
            Poll { id: u32 } = 14,
        }
        response Response {
            Done = 1,
            Opened { buffer: Cap, len: u64 } = 2,
            Config { addr: [u8; 4], prefix: u8, gateway: [u8; 4], mac: [u8; 6] } = 3,
            Socket { id: u32 } = 4,
            Accepted { id: u32, addr: [u8; 4], port: u16 } = 5,
            State { state: u8 } = 6,
            Sent { len: u64 } = 7,
            Received { len: u64 } = 8,
            Datagram { len: u64, addr: [u8; 4], port: u16 } = 9,
            /// Try again after the notification is signalled.
            WouldBlock = 10,
            /// The caller has not sent `Open`.
            NotOpen = 11,
            /// No such socket of the caller's, or one of the wrong kind.
            BadSocket = 12,
            /// The port is in use, or the address or port is not usable (0, broadcast...).
            Refused = 13,
            /// The range is outside the shared buffer.
            OutOfRange = 14,
            /// The caller's or the service's socket limit, or the client table, is full.
            Full = 15,
            /// The connection is closed or was reset: nothing more can be sent.
            ConnectionClosed = 16,
            /// The interface has no address yet (DHCP has not answered).
            NotConfigured = 17,
            /// The service could not do it (out of memory...).
            Failed = 18,
            /// `Poll`: [`readiness`] bits.
            Readiness { bits: u8 } = 19,
        }
    }
}

/// Why a network call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetError {
    /// Finding the service failed.
    Lookup(LookupError),
    /// The IPC itself failed (the service is gone: `Kernel(PeerDied)` or `InvalidHandle`).
    Ipc(IpcError),
    /// A kernel call of the helper failed (creating the notification, mapping the buffer).
    Kernel(sys::Error),
    /// The deadline passed.
    TimedOut,
    /// The service said no: the response it gave instead of the expected one.
    Refused(ResponseKind),
}

/// The non-success responses, for [`NetError::Refused`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResponseKind {
    NotOpen,
    BadSocket,
    Refused,
    OutOfRange,
    Full,
    ConnectionClosed,
    NotConfigured,
    Failed,
    /// A response that does not belong to the request.
    Unexpected,
}

impl From<IpcError> for NetError {
    fn from(e: IpcError) -> NetError {
        NetError::Ipc(e)
    }
}

impl core::fmt::Display for NetError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            NetError::Lookup(e) => write!(f, "cannot find the network service: {e:?}"),
            NetError::Ipc(e) => write!(f, "network service: {e}"),
            NetError::Kernel(e) => write!(f, "{e}"),
            NetError::TimedOut => f.write_str("timed out"),
            NetError::Refused(kind) => write!(f, "network service refused: {kind:?}"),
        }
    }
}

fn refused(response: Response) -> NetError {
    NetError::Refused(match response {
        Response::NotOpen => ResponseKind::NotOpen,
        Response::BadSocket => ResponseKind::BadSocket,
        Response::Refused => ResponseKind::Refused,
        Response::OutOfRange => ResponseKind::OutOfRange,
        Response::Full => ResponseKind::Full,
        Response::ConnectionClosed => ResponseKind::ConnectionClosed,
        Response::NotConfigured => ResponseKind::NotConfigured,
        Response::Failed => ResponseKind::Failed,
        _ => ResponseKind::Unexpected,
    })
}

/// An IPv4 socket address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SocketAddr {
    pub addr: [u8; 4],
    pub port: u16,
}

impl core::fmt::Display for SocketAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let [a, b, c, d] = self.addr;
        write!(f, "{a}.{b}.{c}.{d}:{}", self.port)
    }
}

/// The interface's configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InterfaceConfig {
    pub addr: [u8; 4],
    pub prefix: u8,
    pub gateway: [u8; 4],
    pub mac: [u8; 6],
}

/// A connection to the network service: its endpoint, this client's notification and the
/// shared buffer.
pub struct Net {
    client: Client<NetProtocol>,
    notify: Handle,
    buffer: SharedBuffer,
}

/// Deadline `timeout_ns` from now (saturating).
pub fn deadline(timeout_ns: u64) -> u64 {
    sys::time_now().saturating_add(timeout_ns)
}

impl Net {
    /// Looks the service `net` up (waiting up to `wait_ns` for it to register) and opens it.
    pub fn connect(wait_ns: u64) -> Result<Net, NetError> {
        let mut names = crate::names()?;
        let endpoint = crate::lookup(&mut names, "net", wait_ns).map_err(NetError::Lookup)?;
        let _ = sys::cap_close(names.endpoint());
        Net::open(endpoint)
    }

    /// Opens the service behind `endpoint` (which this value then owns).
    pub fn open(endpoint: Handle) -> Result<Net, NetError> {
        let client = Client::<NetProtocol>::new(endpoint);
        let notify = sys::notification_create().map_err(NetError::Kernel)?;
        let request = Request::Open { notify: Cap(notify) };
        let response = client.call(&request, sys::FOREVER_NS);
        let buffer = match response {
            Ok(Response::Opened { buffer, .. }) => SharedBuffer::map(buffer.0).map_err(NetError::Kernel),
            Ok(other) => Err(refused(other)),
            Err(e) => Err(e.into()),
        };
        match buffer {
            Ok(buffer) => Ok(Net { client, notify, buffer }),
            Err(e) => {
                let _ = sys::cap_close(notify);
                Err(e)
            }
        }
    }

    fn call(&self, request: &Request) -> Result<Response, NetError> {
        Ok(self.client.call(request, sys::FOREVER_NS)?)
    }

    /// Asks until the answer is not `WouldBlock`, waiting for the service's signal in between,
    /// until `deadline` (ns since boot).
    fn blocking(&self, deadline: u64, mut request: impl FnMut() -> Request) -> Result<Response, NetError> {
        loop {
            match self.call(&request())? {
                Response::WouldBlock => {}
                other => return Ok(other),
            }
            let now = sys::time_now();
            if now >= deadline {
                return Err(NetError::TimedOut);
            }
            let _ = sys::wait(self.notify, (deadline - now).min(RETRY_NS));
        }
    }

    /// The interface's address, netmask length, gateway and MAC; `NotConfigured` before DHCP
    /// has answered.
    pub fn config(&self) -> Result<InterfaceConfig, NetError> {
        match self.call(&Request::Config)? {
            Response::Config { addr, prefix, gateway, mac } => Ok(InterfaceConfig { addr, prefix, gateway, mac }),
            other => Err(refused(other)),
        }
    }

    /// Waits up to `timeout_ns` for the interface to have an address.
    pub fn wait_configured(&self, timeout_ns: u64) -> Result<InterfaceConfig, NetError> {
        let deadline = deadline(timeout_ns);
        loop {
            match self.config() {
                Err(NetError::Refused(ResponseKind::NotConfigured)) if sys::time_now() < deadline => {
                    sys::sleep(20_000_000)
                }
                Err(NetError::Refused(ResponseKind::NotConfigured)) => return Err(NetError::TimedOut),
                other => return other,
            }
        }
    }

    /// Joins an IPv4 multicast group.
    pub fn join_multicast(&self, addr: [u8; 4]) -> Result<(), NetError> {
        match self.call(&Request::JoinMulticast { addr })? {
            Response::Done => Ok(()),
            other => Err(refused(other)),
        }
    }

    fn socket(&self, request: &Request) -> Result<u32, NetError> {
        match self.call(request)? {
            Response::Socket { id } => Ok(id),
            other => Err(refused(other)),
        }
    }

    /// Listens on TCP `port` with up to `backlog` (1-4) connections waiting to be accepted.
    pub fn listen(&self, port: u16, backlog: u8) -> Result<TcpListener<'_>, NetError> {
        let id = self.socket(&Request::TcpListen { port, backlog })?;
        Ok(TcpListener { net: self, id })
    }

    /// Connects to `to`, waiting up to `timeout_ns` for the connection to be established.
    pub fn connect_tcp(&self, to: SocketAddr, timeout_ns: u64) -> Result<TcpStream<'_>, NetError> {
        let deadline = deadline(timeout_ns);
        let id = self.socket(&Request::TcpConnect { addr: to.addr, port: to.port })?;
        let stream = TcpStream { net: self, id, peer: to };
        loop {
            match self.call(&Request::State { id })? {
                Response::State { state: tcp_state::CONNECTING } => {}
                Response::State { state: tcp_state::ESTABLISHED | tcp_state::PEER_CLOSED } => return Ok(stream),
                Response::State { .. } => return Err(NetError::Refused(ResponseKind::ConnectionClosed)),
                other => return Err(refused(other)),
            }
            let now = sys::time_now();
            if now >= deadline {
                return Err(NetError::TimedOut);
            }
            let _ = sys::wait(self.notify, (deadline - now).min(RETRY_NS));
        }
    }

    /// Starts connecting to `to` and returns at once; `TcpStream::state` says when the
    /// connection is established (or refused). For event loops.
    pub fn start_connect(&self, to: SocketAddr) -> Result<TcpStream<'_>, NetError> {
        let id = self.socket(&Request::TcpConnect { addr: to.addr, port: to.port })?;
        Ok(TcpStream { net: self, id, peer: to })
    }

    /// Binds this client's notification to the calling thread: the service's signals then
    /// end the thread's receive on its endpoint with a `NOTIFY` message (an event loop that
    /// serves its own clients waits there).
    pub fn bind_notification(&self) -> Result<(), NetError> {
        sys::notification_bind(self.notify).map_err(NetError::Kernel)
    }

    /// A UDP socket bound to `port`.
    pub fn bind_udp(&self, port: u16) -> Result<UdpSocket<'_>, NetError> {
        let id = self.socket(&Request::UdpBind { port })?;
        Ok(UdpSocket { net: self, id })
    }

    fn close(&self, id: u32) {
        let _ = self.call(&Request::Close { id });
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let _ = sys::cap_close(self.client.endpoint());
        let _ = sys::cap_close(self.notify);
    }
}

/// A listening TCP socket; closed on drop.
pub struct TcpListener<'a> {
    net: &'a Net,
    id: u32,
}

impl<'a> TcpListener<'a> {
    /// Waits up to `timeout_ns` for a connection.
    pub fn accept(&self, timeout_ns: u64) -> Result<TcpStream<'a>, NetError> {
        let listener = self.id;
        match self.net.blocking(deadline(timeout_ns), || Request::TcpAccept { listener })? {
            Response::Accepted { id, addr, port } => {
                Ok(TcpStream { net: self.net, id, peer: SocketAddr { addr, port } })
            }
            other => Err(refused(other)),
        }
    }
}

impl Drop for TcpListener<'_> {
    fn drop(&mut self) {
        self.net.close(self.id);
    }
}

/// A TCP connection; closed on drop (what was queued is still sent).
pub struct TcpStream<'a> {
    net: &'a Net,
    id: u32,
    peer: SocketAddr,
}

impl TcpStream<'_> {
    /// The other end.
    pub fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Sends some of `data` (at most the shared buffer's length), waiting up to `timeout_ns`
    /// for room; returns how many bytes were queued.
    pub fn send(&self, data: &[u8], timeout_ns: u64) -> Result<usize, NetError> {
        let chunk = &data[..data.len().min(self.net.buffer.len())];
        if chunk.is_empty() {
            return Ok(0);
        }
        self.net.buffer.write(0, chunk).map_err(|_| NetError::Refused(ResponseKind::OutOfRange))?;
        let range = BufRange { offset: 0, len: chunk.len() as u64 };
        let id = self.id;
        match self.net.blocking(deadline(timeout_ns), || Request::Send { id, range })? {
            Response::Sent { len } => Ok((len as usize).min(chunk.len())),
            other => Err(refused(other)),
        }
    }

    /// Sends all of `data` before `timeout_ns` from now.
    pub fn send_all(&self, mut data: &[u8], timeout_ns: u64) -> Result<(), NetError> {
        let deadline = deadline(timeout_ns);
        while !data.is_empty() {
            let left = deadline.saturating_sub(sys::time_now());
            if left == 0 {
                return Err(NetError::TimedOut);
            }
            let n = self.send(data, left)?;
            data = &data[n..];
        }
        Ok(())
    }

    /// Receives into `out`, waiting up to `timeout_ns` for data; 0 means the peer closed.
    pub fn recv(&self, out: &mut [u8], timeout_ns: u64) -> Result<usize, NetError> {
        let want = out.len().min(self.net.buffer.len());
        if want == 0 {
            return Ok(0);
        }
        let range = BufRange { offset: 0, len: want as u64 };
        let id = self.id;
        match self.net.blocking(deadline(timeout_ns), || Request::Recv { id, range })? {
            Response::Received { len } => {
                let len = (len as usize).min(want);
                self.net.buffer.read(0, &mut out[..len]).map_err(|_| NetError::Refused(ResponseKind::OutOfRange))?;
                Ok(len)
            }
            other => Err(refused(other)),
        }
    }

    /// Receives until the peer closes or `max` bytes came, within `timeout_ns`.
    pub fn recv_to_end(&self, max: usize, timeout_ns: u64) -> Result<Vec<u8>, NetError> {
        let deadline = deadline(timeout_ns);
        let mut out = Vec::new();
        let mut chunk = [0u8; 2048];
        while out.len() < max {
            let left = deadline.saturating_sub(sys::time_now());
            if left == 0 {
                return Err(NetError::TimedOut);
            }
            let want = chunk.len().min(max - out.len());
            match self.recv(&mut chunk[..want], left)? {
                0 => break,
                n => out.extend_from_slice(&chunk[..n]),
            }
        }
        Ok(out)
    }

    /// The connection's state (`tcp_state`).
    pub fn state(&self) -> Result<u8, NetError> {
        match self.net.call(&Request::State { id: self.id })? {
            Response::State { state } => Ok(state),
            other => Err(refused(other)),
        }
    }
}

impl Drop for TcpStream<'_> {
    fn drop(&mut self) {
        self.net.close(self.id);
    }
}

/// A bound UDP socket; closed on drop.
pub struct UdpSocket<'a> {
    net: &'a Net,
    id: u32,
}

impl UdpSocket<'_> {
    /// Sends one datagram (at most the shared buffer's length).
    pub fn send_to(&self, data: &[u8], to: SocketAddr) -> Result<(), NetError> {
        if data.len() as u64 > BUFFER_LEN.min(self.net.buffer.len() as u64) {
            return Err(NetError::Refused(ResponseKind::OutOfRange));
        }
        self.net.buffer.write(0, data).map_err(|_| NetError::Refused(ResponseKind::OutOfRange))?;
        let range = BufRange { offset: 0, len: data.len() as u64 };
        let request = Request::UdpSendTo { id: self.id, addr: to.addr, port: to.port, range };
        match self.net.blocking(deadline(1_000_000_000), || request.clone())? {
            Response::Done => Ok(()),
            other => Err(refused(other)),
        }
    }

    /// Waits up to `timeout_ns` for a datagram; returns its length (cut to `out`) and sender.
    pub fn recv_from(&self, out: &mut [u8], timeout_ns: u64) -> Result<(usize, SocketAddr), NetError> {
        let want = out.len().min(self.net.buffer.len());
        let range = BufRange { offset: 0, len: want as u64 };
        let id = self.id;
        match self.net.blocking(deadline(timeout_ns), || Request::UdpRecvFrom { id, range })? {
            Response::Datagram { len, addr, port } => {
                let len = (len as usize).min(want);
                self.net.buffer.read(0, &mut out[..len]).map_err(|_| NetError::Refused(ResponseKind::OutOfRange))?;
                Ok((len, SocketAddr { addr, port }))
            }
            other => Err(refused(other)),
        }
    }
}

impl Drop for UdpSocket<'_> {
    fn drop(&mut self) {
        self.net.close(self.id);
    }
}
