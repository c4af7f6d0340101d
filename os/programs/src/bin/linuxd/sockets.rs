//! Sockets (docs/linux.md, "Sockets"): `AF_INET` stream (TCP) and datagram (UDP) sockets of Linux
//! programs on the network service (`svc::net`, docs/net.md). linuxd is one client of the
//! service: every process's sockets are its sockets there, named by the service's ids. The
//! service never blocks (a request that cannot progress is answered `WouldBlock` and the
//! service signals the notification bound to linuxd's main thread when it may), so a call that
//! must wait is parked (`BLOCK`) and tried again, or is `EAGAIN` on a non-blocking socket.

use super::*;
use core::cell::UnsafeCell;
use svc::net::{readiness, tcp_state, NetProtocol, Request as NetRequest, Response as NetResponse};

/// Linux constants.
const AF_INET: u64 = 2;
const SOCK_STREAM: u64 = 1;
const SOCK_DGRAM: u64 = 2;
const SOCK_TYPE_MASK: u64 = 0xf;
const SOCK_NONBLOCK: u64 = 0o4000;
const SOCK_CLOEXEC: u64 = 0o2000000;
const IPPROTO_TCP: u64 = 6;
const IPPROTO_UDP: u64 = 17;
const MSG_PEEK: u64 = 0x2;
const MSG_DONTWAIT: u64 = 0x40;
const MSG_WAITALL: u64 = 0x100;
pub(crate) const MSG_NOSIGNAL: u64 = 0x4000;
const SOL_SOCKET: u64 = 1;
const SO_TYPE: u64 = 3;
const SO_ERROR: u64 = 4;
const SO_SNDBUF: u64 = 7;
const SO_RCVBUF: u64 = 8;
const SO_ACCEPTCONN: u64 = 30;
/// `struct sockaddr_in`'s size.
const SOCKADDR_IN: usize = 16;
/// Ephemeral ports linuxd picks for UDP sockets used before `bind`, and TCP listeners on port 0.
const EPHEMERAL_FIRST: u16 = 40000;
const EPHEMERAL_COUNT: u16 = 8192;
/// How long finding the network service may take (it is not there when the machine has no
/// network device).
const LOOKUP_NS: u64 = 200_000_000;

/// linuxd's connection to the network service and its shared buffer (used only by the main
/// thread).
struct NetConn {
    client: Client<NetProtocol>,
    buffer: SharedBuffer,
}

struct NetCell(UnsafeCell<Option<NetConn>>);
// Safety: only linuxd's main thread uses it (the console reader thread never does).
unsafe impl Sync for NetCell {}
static NET: NetCell = NetCell(UnsafeCell::new(None));
static NEXT_PORT: core::sync::atomic::AtomicU16 = core::sync::atomic::AtomicU16::new(0);
/// When finding the service last failed (nanoseconds since boot; 0: never): it is not looked
/// for again within `RETRY_AFTER_NS`, so a machine without a network answers at once.
static FAILED_AT: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);
const RETRY_AFTER_NS: u64 = 2_000_000_000;

/// The connection, made on first use: `None` if there is no network service.
fn net() -> Option<&'static NetConn> {
    // Safety: main thread only (see `NetCell`); the reference does not outlive a reconnection
    // because callers use it for one call at a time and `reconnect` runs between calls.
    let slot = unsafe { &mut *NET.0.get() };
    use core::sync::atomic::Ordering;
    let failed = FAILED_AT.load(Ordering::Relaxed);
    if slot.is_none() && (failed == 0 || sys::time_now().saturating_sub(failed) > RETRY_AFTER_NS) {
        *slot = connect();
        if slot.is_none() {
            FAILED_AT.store(sys::time_now().max(1), Ordering::Relaxed);
        }
    }
    slot.as_ref()
}

/// Forgets the connection after the service failed (it restarts; the next call connects).
fn reconnect() {
    // Safety: as in `net`.
    let slot = unsafe { &mut *NET.0.get() };
    if let Some(old) = slot.take() {
        let _ = sys::cap_close(old.client.endpoint());
    }
}

/// Connects to the network service; `None` (with the reason in the log) if it cannot.
fn connect() -> Option<NetConn> {
    let made = (|| -> Result<NetConn, String> {
        let notify = tty::main_notification().ok_or("no notification")?;
        let mut names = svc::names().map_err(|e| format!("name service: {e:?}"))?;
        let endpoint = svc::lookup(&mut names, "net", LOOKUP_NS);
        let _ = sys::cap_close(names.endpoint());
        let client = Client::<NetProtocol>::new(endpoint.map_err(|e| format!("no service `net`: {e:?}"))?);
        let copy = sys::cap_duplicate(notify, rights::SEND | rights::DUPLICATE, 0).map_err(|e| format!("{e}"))?;
        let opened = client.call(&NetRequest::Open { notify: Cap(copy) }, FOREVER_NS);
        // The service has its own copy now.
        let _ = sys::cap_close(copy);
        match opened {
            Ok(NetResponse::Opened { buffer, .. }) => {
                let buffer = SharedBuffer::map(buffer.0).map_err(|e| format!("its buffer: {e}"))?;
                Ok(NetConn { client, buffer })
            }
            other => Err(format!("it refused: {other:?}")),
        }
    })();
    match made {
        Ok(conn) => Some(conn),
        Err(why) => {
            rt::log::warn!("sockets: the network service cannot be used: {why}");
            None
        }
    }
}

/// One request to the service; a failed call (the service died) is `ENETDOWN` and connects
/// again next time.
fn call(request: &NetRequest) -> Result<NetResponse, Errno> {
    let net = net().ok_or(ENETDOWN)?;
    match net.client.call(request, FOREVER_NS) {
        Ok(r) => Ok(r),
        Err(_) => {
            reconnect();
            Err(ENETDOWN)
        }
    }
}

/// The errno of a refusal.
fn refused(r: NetResponse) -> Errno {
    match r {
        NetResponse::Refused => EADDRINUSE,
        NetResponse::Full => ENOBUFS,
        NetResponse::ConnectionClosed => EPIPE,
        NetResponse::NotConfigured => ENETUNREACH,
        NetResponse::BadSocket => EBADF,
        _ => EIO,
    }
}

/// An IPv4 address and port.
type Endpoint = ([u8; 4], u16);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Made, not yet bound, listening or connected.
    Fresh,
    Listening(u32),
    Connecting(u32),
    Connected(u32),
    /// A bound UDP socket.
    Udp(u32),
    /// A TCP connection that failed (refused, reset); the error is in `error`.
    Failed,
}

/// A socket of a process.
pub(crate) struct Sock {
    stream: bool,
    /// `O_NONBLOCK` (and the access mode, read-write).
    pub(crate) flags: u64,
    state: State,
    /// The bound port (0: none) and the peer.
    port: u16,
    peer: Option<Endpoint>,
    /// `SO_ERROR`: the pending error (a refused non-blocking connect).
    error: Errno,
    shut_write: bool,
    shut_read: bool,
}

impl Drop for Sock {
    /// The last descriptor closed: the service's socket goes too.
    fn drop(&mut self) {
        if let State::Listening(id) | State::Connecting(id) | State::Connected(id) | State::Udp(id) = self.state {
            let _ = call(&NetRequest::Close { id });
        }
    }
}

/// `struct sockaddr_in` of `addr:port`.
fn sockaddr(addr: [u8; 4], port: u16) -> [u8; SOCKADDR_IN] {
    let mut b = [0u8; SOCKADDR_IN];
    b[0..2].copy_from_slice(&(AF_INET as u16).to_le_bytes());
    b[2..4].copy_from_slice(&port.to_be_bytes());
    b[4..8].copy_from_slice(&addr);
    b
}

/// An ephemeral port (they wrap around in the range).
fn ephemeral() -> u16 {
    let n = NEXT_PORT.fetch_add(1, core::sync::atomic::Ordering::Relaxed);
    EPHEMERAL_FIRST + n % EPHEMERAL_COUNT
}

impl Sock {
    fn would_block(&self, flags: u64) -> Errno {
        if self.flags & o::NONBLOCK != 0 || flags & MSG_DONTWAIT != 0 {
            EAGAIN
        } else {
            BLOCK
        }
    }

    /// A connecting TCP socket learns whether it is established.
    fn settle(&mut self) {
        let State::Connecting(id) = self.state else { return };
        match call(&NetRequest::State { id }) {
            Ok(NetResponse::State { state: tcp_state::CONNECTING }) => {}
            Ok(NetResponse::State { state: tcp_state::ESTABLISHED | tcp_state::PEER_CLOSED }) => {
                self.state = State::Connected(id);
            }
            _ => {
                let _ = call(&NetRequest::Close { id });
                self.state = State::Failed;
                self.error = ECONNREFUSED;
            }
        }
    }

    /// A UDP socket bound to `port` (an ephemeral one for 0).
    fn bind_udp(&mut self, port: u16) -> Result<u32, Errno> {
        let tries = if port == 0 { 16 } else { 1 };
        for _ in 0..tries {
            let port = if port == 0 { ephemeral() } else { port };
            match call(&NetRequest::UdpBind { port })? {
                NetResponse::Socket { id } => {
                    self.state = State::Udp(id);
                    self.port = port;
                    return Ok(id);
                }
                NetResponse::Refused => continue,
                other => return Err(refused(other)),
            }
        }
        Err(EADDRINUSE)
    }

    /// `send`: at most the service's buffer of `data`, to `to` (UDP) or the peer.
    pub(crate) fn send(&mut self, data: &[u8], flags: u64, to: Option<Endpoint>) -> Result<usize, Errno> {
        let net = net().ok_or(ENETDOWN)?;
        let len = data.len().min(net.buffer.len());
        if self.stream {
            self.settle();
            let id = match self.state {
                State::Connected(id) => id,
                State::Connecting(_) => return Err(self.would_block(flags)),
                State::Failed => return Err(core::mem::replace(&mut self.error, EPIPE)),
                _ => return Err(ENOTCONN),
            };
            if self.shut_write {
                return Err(EPIPE);
            }
            if data.is_empty() {
                return Ok(0);
            }
            net.buffer.write(0, &data[..len]).map_err(|_| EIO)?;
            return match call(&NetRequest::Send { id, range: BufRange { offset: 0, len: len as u64 } })? {
                NetResponse::Sent { len: n } => Ok((n as usize).min(len)),
                NetResponse::WouldBlock => Err(self.would_block(flags)),
                NetResponse::ConnectionClosed => Err(EPIPE),
                other => Err(refused(other)),
            };
        }
        let (addr, port) = to.or(self.peer).ok_or(EDESTADDRREQ)?;
        let id = match self.state {
            State::Udp(id) => id,
            _ => self.bind_udp(0)?,
        };
        if data.len() > net.buffer.len() {
            return Err(EMSGSIZE);
        }
        net.buffer.write(0, data).map_err(|_| EIO)?;
        let range = BufRange { offset: 0, len: data.len() as u64 };
        match call(&NetRequest::UdpSendTo { id, addr, port, range })? {
            NetResponse::Sent { .. } | NetResponse::Done => Ok(data.len()),
            NetResponse::WouldBlock => Err(self.would_block(flags)),
            other => Err(refused(other)),
        }
    }

    /// `recv`: up to `len` bytes (a TCP stream's next bytes, 0 at its end; a UDP datagram cut
    /// to `len`), and the sender.
    pub(crate) fn recv(&mut self, len: usize, flags: u64) -> Result<(Vec<u8>, Option<Endpoint>), Errno> {
        if flags & MSG_PEEK != 0 {
            return Err(EOPNOTSUPP);
        }
        let net = net().ok_or(ENETDOWN)?;
        let room = len.min(net.buffer.len());
        let range = BufRange { offset: 0, len: room as u64 };
        if self.stream {
            self.settle();
            let id = match self.state {
                State::Connected(id) => id,
                State::Connecting(_) => return Err(self.would_block(flags)),
                State::Failed => {
                    // The pending error once, then the end of the stream.
                    let e = core::mem::replace(&mut self.error, Errno(0));
                    return if e.0 != 0 { Err(e) } else { Ok((Vec::new(), None)) };
                }
                _ => return Err(ENOTCONN),
            };
            if self.shut_read || len == 0 {
                return Ok((Vec::new(), self.peer));
            }
            return match call(&NetRequest::Recv { id, range })? {
                NetResponse::Received { len } => {
                    let mut out = alloc::vec![0u8; (len as usize).min(room)];
                    net.buffer.read(0, &mut out).map_err(|_| EIO)?;
                    Ok((out, self.peer))
                }
                NetResponse::WouldBlock => Err(self.would_block(flags)),
                NetResponse::ConnectionClosed => Ok((Vec::new(), self.peer)),
                other => Err(refused(other)),
            };
        }
        let State::Udp(id) = self.state else {
            // Never bound: nothing can arrive.
            return Err(self.would_block(flags));
        };
        match call(&NetRequest::UdpRecvFrom { id, range })? {
            NetResponse::Datagram { len, addr, port } => {
                let mut out = alloc::vec![0u8; (len as usize).min(room)];
                net.buffer.read(0, &mut out).map_err(|_| EIO)?;
                Ok((out, Some((addr, port))))
            }
            NetResponse::WouldBlock => Err(self.would_block(flags)),
            other => Err(refused(other)),
        }
    }

    /// `poll` events now.
    pub(crate) fn events(&mut self) -> i16 {
        const POLLIN: i16 = 0x1;
        const POLLOUT: i16 = 0x4;
        const POLLERR: i16 = 0x8;
        const POLLHUP: i16 = 0x10;
        const POLLRDNORM: i16 = 0x40;
        const POLLWRNORM: i16 = 0x100;
        let id = match self.state {
            State::Fresh if self.stream => return POLLOUT | POLLHUP,
            State::Fresh => return POLLOUT | POLLWRNORM,
            State::Failed => return POLLERR | POLLHUP | POLLIN,
            State::Listening(id) | State::Connecting(id) | State::Connected(id) | State::Udp(id) => id,
        };
        let bits = match call(&NetRequest::Poll { id }) {
            Ok(NetResponse::Readiness { bits }) => bits,
            _ => return POLLERR,
        };
        let mut events = 0;
        if bits & readiness::READABLE != 0 {
            events |= POLLIN | POLLRDNORM;
        }
        if bits & readiness::WRITABLE != 0 && !matches!(self.state, State::Listening(_)) {
            events |= POLLOUT | POLLWRNORM;
        }
        if bits & readiness::HANGUP != 0 {
            events |= POLLHUP;
            if matches!(self.state, State::Connecting(_)) {
                events |= POLLERR;
            }
        }
        events
    }

    pub(crate) fn stat(&self) -> FileStat {
        const S_IFSOCK: u32 = 0o140000;
        FileStat {
            dev: 7,
            ino: self as *const Sock as u64,
            mode: S_IFSOCK | 0o777,
            nlink: 1,
            blksize: 4096,
            ..Default::default()
        }
    }
}

/// `struct sockaddr_in` at `addr` (`len` bytes): the address and port.
fn read_sockaddr(p: &mut Process, addr: u64, len: u64) -> Result<([u8; 4], u16), Errno> {
    if (len as usize) < SOCKADDR_IN {
        return Err(EINVAL);
    }
    let mut b = [0u8; SOCKADDR_IN];
    p.read_mem(addr, &mut b)?;
    if u16::from_le_bytes([b[0], b[1]]) as u64 != AF_INET {
        return Err(EAFNOSUPPORT);
    }
    Ok(([b[4], b[5], b[6], b[7]], u16::from_be_bytes([b[2], b[3]])))
}

/// Writes `struct sockaddr_in` of `peer` at `addr` with its length at `len_at` (both may be
/// NULL), cut to the room the caller gave, as Linux does.
fn write_sockaddr(p: &mut Process, addr: u64, len_at: u64, peer: ([u8; 4], u16)) -> Result<(), Errno> {
    if addr == 0 || len_at == 0 {
        return Ok(());
    }
    let mut room = [0u8; 4];
    p.read_mem(len_at, &mut room)?;
    let room = u32::from_le_bytes(room) as usize;
    if (room as i32) < 0 {
        return Err(EINVAL);
    }
    let bytes = sockaddr(peer.0, peer.1);
    p.write_mem(addr, &bytes[..room.min(SOCKADDR_IN)])?;
    p.write_mem(len_at, &(SOCKADDR_IN as u32).to_le_bytes())
}

impl Process {
    /// The socket behind `fd` (`ENOTSOCK` for another kind of file).
    fn socket_of(&self, fd: i64) -> Result<Fd, Errno> {
        let file = self.fds.get(fd)?.clone();
        if !matches!(&*file.borrow(), Open::Socket(_)) {
            return Err(ENOTSOCK);
        }
        Ok(file)
    }

    /// `socket(domain, type, protocol)`.
    pub(crate) fn socket(&mut self, domain: u64, kind: u64, protocol: u64) -> Result<u64, Errno> {
        if domain != AF_INET {
            return Err(EAFNOSUPPORT);
        }
        if kind & !(SOCK_TYPE_MASK | SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let stream = match (kind & SOCK_TYPE_MASK, protocol) {
            (SOCK_STREAM, 0 | IPPROTO_TCP) => true,
            (SOCK_DGRAM, 0 | IPPROTO_UDP) => false,
            (SOCK_STREAM | SOCK_DGRAM, _) => return Err(EPROTONOSUPPORT),
            _ => return Err(ESOCKTNOSUPPORT),
        };
        let sock = Sock {
            stream,
            flags: 2 | (kind & SOCK_NONBLOCK),
            state: State::Fresh,
            port: 0,
            peer: None,
            error: Errno(0),
            shut_write: false,
            shut_read: false,
        };
        let fd = self.fds.insert(Rc::new(RefCell::new(Open::Socket(sock))), kind & SOCK_CLOEXEC != 0)?;
        Ok(fd as u64)
    }

    /// `bind(fd, addr, len)`: the port (any local address: the interface has one).
    pub(crate) fn bind(&mut self, fd: i64, addr: u64, len: u64) -> Result<u64, Errno> {
        let file = self.socket_of(fd)?;
        let (_, port) = read_sockaddr(self, addr, len)?;
        let mut open = file.borrow_mut();
        let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
        if s.state != State::Fresh || s.port != 0 {
            return Err(EINVAL);
        }
        if s.stream {
            s.port = if port == 0 { ephemeral() } else { port };
        } else {
            s.bind_udp(port)?;
        }
        Ok(0)
    }

    /// `listen(fd, backlog)`.
    pub(crate) fn listen(&mut self, fd: i64, backlog: u64) -> Result<u64, Errno> {
        let file = self.socket_of(fd)?;
        let mut open = file.borrow_mut();
        let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
        match s.state {
            State::Listening(_) => return Ok(0),
            State::Fresh if s.stream => {}
            _ if !s.stream => return Err(EOPNOTSUPP),
            _ => return Err(EINVAL),
        }
        if s.port == 0 {
            s.port = ephemeral();
        }
        let backlog = (backlog as i32).clamp(1, 4) as u8;
        match call(&NetRequest::TcpListen { port: s.port, backlog })? {
            NetResponse::Socket { id } => {
                s.state = State::Listening(id);
                Ok(0)
            }
            other => Err(refused(other)),
        }
    }

    /// `accept4(fd, addr, len, flags)`.
    pub(crate) fn accept(&mut self, fd: i64, addr: u64, len_at: u64, flags: u64) -> Result<u64, Errno> {
        if flags & !(SOCK_NONBLOCK | SOCK_CLOEXEC) != 0 {
            return Err(EINVAL);
        }
        let file = self.socket_of(fd)?;
        let (id, port, blocking) = {
            let open = file.borrow();
            let Open::Socket(s) = &*open else { return Err(ENOTSOCK) };
            let State::Listening(id) = s.state else { return Err(EINVAL) };
            (id, s.port, s.would_block(0))
        };
        match call(&NetRequest::TcpAccept { listener: id })? {
            NetResponse::Accepted { id, addr: peer_addr, port: peer_port } => {
                let sock = Sock {
                    stream: true,
                    flags: 2 | (flags & SOCK_NONBLOCK),
                    state: State::Connected(id),
                    port,
                    peer: Some((peer_addr, peer_port)),
                    error: Errno(0),
                    shut_write: false,
                    shut_read: false,
                };
                let new = self.fds.insert(Rc::new(RefCell::new(Open::Socket(sock))), flags & SOCK_CLOEXEC != 0)?;
                write_sockaddr(self, addr, len_at, (peer_addr, peer_port))?;
                Ok(new as u64)
            }
            NetResponse::WouldBlock => Err(blocking),
            other => Err(refused(other)),
        }
    }

    /// `connect(fd, addr, len)`: TCP waits until established (`EINPROGRESS` when
    /// non-blocking); UDP records the peer.
    pub(crate) fn connect(&mut self, fd: i64, addr: u64, len: u64) -> Result<u64, Errno> {
        let file = self.socket_of(fd)?;
        let (peer_addr, peer_port) = read_sockaddr(self, addr, len)?;
        let mut open = file.borrow_mut();
        let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
        if !s.stream {
            s.peer = Some((peer_addr, peer_port));
            return Ok(0);
        }
        match s.state {
            State::Fresh => {
                if peer_port == 0 {
                    return Err(ECONNREFUSED);
                }
                let id = match call(&NetRequest::TcpConnect { addr: peer_addr, port: peer_port })? {
                    NetResponse::Socket { id } => id,
                    NetResponse::Refused => return Err(ENETUNREACH),
                    other => return Err(refused(other)),
                };
                s.state = State::Connecting(id);
                s.peer = Some((peer_addr, peer_port));
                s.settle();
                match s.state {
                    State::Connected(_) => Ok(0),
                    State::Failed => Err(core::mem::replace(&mut s.error, Errno(0))),
                    _ if s.flags & o::NONBLOCK != 0 => Err(EINPROGRESS),
                    _ => Err(BLOCK),
                }
            }
            // The same call again after waiting (or a second connect).
            State::Connecting(_) => {
                s.settle();
                match s.state {
                    State::Connected(_) => Ok(0),
                    State::Failed => Err(core::mem::replace(&mut s.error, Errno(0))),
                    _ if s.flags & o::NONBLOCK != 0 => Err(EALREADY),
                    _ => Err(BLOCK),
                }
            }
            State::Connected(_) => Err(EISCONN),
            State::Failed => Err(ECONNREFUSED),
            _ => Err(EINVAL),
        }
    }

    /// `sendto(fd, buf, len, flags, addr, addrlen)`: the bytes sent.
    pub(crate) fn sendto(
        &mut self,
        fd: i64,
        buf: u64,
        len: u64,
        flags: u64,
        to: Option<(u64, u64)>,
    ) -> Result<usize, Errno> {
        let file = self.socket_of(fd)?;
        let to = match to {
            Some((addr, len)) if addr != 0 => Some(read_sockaddr(self, addr, len)?),
            _ => None,
        };
        let data = self.read_user(buf, (len as usize).min(IO_MAX))?;
        let mut open = file.borrow_mut();
        let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
        s.send(&data, flags, to)
    }

    /// `recvfrom(fd, buf, len, flags, addr, addrlen)`: the bytes received.
    pub(crate) fn recvfrom(
        &mut self,
        fd: i64,
        buf: u64,
        len: u64,
        flags: u64,
        from: (u64, u64),
    ) -> Result<usize, Errno> {
        if flags & !(MSG_DONTWAIT | MSG_WAITALL | MSG_NOSIGNAL | MSG_PEEK) != 0 {
            return Err(EINVAL);
        }
        let file = self.socket_of(fd)?;
        let len = (len as usize).min(IO_MAX);
        self.check(buf, len as u64, true)?;
        let (data, sender) = {
            let mut open = file.borrow_mut();
            let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
            s.recv(len, flags)?
        };
        self.write_mem(buf, &data)?;
        if let Some(sender) = sender {
            write_sockaddr(self, from.0, from.1, sender)?;
        }
        Ok(data.len())
    }

    /// `shutdown(fd, how)`: reading ends at once; writing ends (`EPIPE` afterwards) but the
    /// service sends the FIN only when the socket is closed (docs/linux.md, "Sockets").
    pub(crate) fn shutdown(&mut self, fd: i64, how: u64) -> Result<u64, Errno> {
        let file = self.socket_of(fd)?;
        let mut open = file.borrow_mut();
        let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
        if s.stream && !matches!(s.state, State::Connected(_) | State::Connecting(_)) {
            return Err(ENOTCONN);
        }
        match how {
            0 => s.shut_read = true,
            1 => s.shut_write = true,
            2 => (s.shut_read, s.shut_write) = (true, true),
            _ => return Err(EINVAL),
        }
        Ok(0)
    }

    /// `getsockname` (`peer` false) and `getpeername`.
    pub(crate) fn sockname(&mut self, fd: i64, addr: u64, len_at: u64, peer: bool) -> Result<u64, Errno> {
        let file = self.socket_of(fd)?;
        let answer = {
            let mut open = file.borrow_mut();
            let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
            s.settle();
            if peer {
                match s.peer {
                    Some(p) if !s.stream || matches!(s.state, State::Connected(_)) => p,
                    _ => return Err(ENOTCONN),
                }
            } else {
                let local = match call(&NetRequest::Config) {
                    Ok(NetResponse::Config { addr, .. }) => addr,
                    _ => [0; 4],
                };
                (local, s.port)
            }
        };
        write_sockaddr(self, addr, len_at, answer)?;
        Ok(0)
    }

    /// `setsockopt`: accepted (the service's TCP has its own buffers and no options), but the
    /// value is checked.
    pub(crate) fn setsockopt(&mut self, fd: i64, level: u64, _name: u64, value: u64, len: u64) -> Result<u64, Errno> {
        self.socket_of(fd)?;
        if level != SOL_SOCKET && level != IPPROTO_TCP && level != 0 && level != IPPROTO_UDP {
            return Err(ENOPROTOOPT);
        }
        if len > 0 {
            self.read_user(value, (len as usize).min(256))?;
        }
        Ok(0)
    }

    /// `getsockopt`: `SO_ERROR` (taking the pending error), `SO_TYPE`, `SO_ACCEPTCONN`, the
    /// buffer sizes; other options read as 0.
    pub(crate) fn getsockopt(&mut self, fd: i64, level: u64, name: u64, value: u64, len_at: u64) -> Result<u64, Errno> {
        let file = self.socket_of(fd)?;
        let v: u32 = {
            let mut open = file.borrow_mut();
            let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
            match (level, name) {
                (SOL_SOCKET, SO_ERROR) => {
                    s.settle();
                    core::mem::replace(&mut s.error, Errno(0)).0 as u32
                }
                (SOL_SOCKET, SO_TYPE) => (if s.stream { SOCK_STREAM } else { SOCK_DGRAM }) as u32,
                (SOL_SOCKET, SO_ACCEPTCONN) => matches!(s.state, State::Listening(_)) as u32,
                (SOL_SOCKET, SO_SNDBUF | SO_RCVBUF) => svc::net::BUFFER_LEN as u32,
                _ => 0,
            }
        };
        let mut room = [0u8; 4];
        self.read_mem(len_at, &mut room)?;
        let room = (u32::from_le_bytes(room) as usize).min(4);
        self.write_mem(value, &v.to_le_bytes()[..room])?;
        self.write_mem(len_at, &(room as u32).to_le_bytes())?;
        Ok(0)
    }

    /// `sendmsg(fd, msg, flags)`: the gathered `msg_iov` to `msg_name` (or the peer); no
    /// control messages.
    pub(crate) fn sendmsg(&mut self, fd: i64, msg: u64, flags: u64) -> Result<usize, Errno> {
        let header = self.read_user(msg, 56)?;
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let (name, namelen, iov, iovlen, controllen) = (word(0), word(8) as u32 as u64, word(16), word(24), word(40));
        if controllen != 0 {
            return Err(EOPNOTSUPP);
        }
        let file = self.socket_of(fd)?;
        let to = if name != 0 { Some(read_sockaddr(self, name, namelen)?) } else { None };
        let mut data = Vec::new();
        for (base, len) in self.iovecs(iov, iovlen)? {
            let room = IO_MAX.saturating_sub(data.len());
            data.extend_from_slice(&self.read_user(base, (len as usize).min(room))?);
        }
        let mut open = file.borrow_mut();
        let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
        s.send(&data, flags, to)
    }

    /// `recvmsg(fd, msg, flags)`: into `msg_iov`, the sender in `msg_name`; no control
    /// messages (`msg_controllen` 0), `msg_flags` 0.
    pub(crate) fn recvmsg(&mut self, fd: i64, msg: u64, flags: u64) -> Result<usize, Errno> {
        let header = self.read_user(msg, 56)?;
        let word = |at: usize| u64::from_le_bytes(header[at..at + 8].try_into().expect("8 bytes"));
        let (name, iov, iovlen) = (word(0), word(16), word(24));
        let file = self.socket_of(fd)?;
        let iov = self.iovecs(iov, iovlen)?;
        let total: usize = iov.iter().map(|v| v.1 as usize).sum::<usize>().min(IO_MAX);
        for (base, len) in &iov {
            self.check(*base, *len, true)?;
        }
        let (data, sender) = {
            let mut open = file.borrow_mut();
            let Open::Socket(s) = &mut *open else { return Err(ENOTSOCK) };
            s.recv(total, flags)?
        };
        let mut at = 0;
        for (base, len) in iov {
            let n = (len as usize).min(data.len() - at);
            self.write_mem(base, &data[at..at + n])?;
            at += n;
            if at == data.len() {
                break;
            }
        }
        if let Some(sender) = sender {
            write_sockaddr(self, name, msg + 8, sender)?;
        }
        self.write_mem(msg + 40, &0u64.to_le_bytes())?;
        self.write_mem(msg + 48, &0u32.to_le_bytes())?;
        Ok(data.len())
    }
}
