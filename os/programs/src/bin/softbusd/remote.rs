//! The remote mount (`/remote/<device>/...`, docs/fs.md "Remote mounts"): the file-system
//! protocol (`svc::fs`) served by softbusd for paths the file-system service redirected here,
//! each operation turned into one `storage.*` call (`softbus::storage`) to that device.
//!
//! Design: a client gets a `Files` endpoint from the soft bus protocol, attaches there and gets
//! a session with its own shared buffer and handle table, as with the file-system service. A
//! handle is a device, a path on it and a position; nothing stays open on the serving device,
//! so a lost session loses only the calls in flight. Calls that need the network keep the
//! client's reply (`ReplyDetach`) and are answered when the call ends ([`complete`]): one slow
//! device delays only its callers. `/remote` itself lists the trusted devices; a device's
//! directory is its shared directory. Symbolic links, modes and times are not shared
//! (`Unsupported`). Every request is checked as in the file-system service: ranges against
//! the buffer, handles against the table, sessions and buffers bounded.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use abi::syscall::rights;
use rt::ipc::{BufRange, Cap, Payload, SharedBuffer};
use rt::sys::{self, Handle, Message};
use softbus::storage::{self, open, FileError, FileKind, FileStat, Reply};
use svc::fs::{self as proto, flags, whence, Error, Request, Response};

use crate::Failure;

/// Badges of the remote mount's endpoints: this bit, then `ROOT` and the client's badge for
/// the endpoint `Files` gives, or a session number.
pub const FILES_BIT: u64 = 1 << 61;
const ROOT: u64 = 1 << 60;
/// Sessions at a time (the least recently used gives way), and the largest buffer.
const SESSIONS_MAX: usize = 8;
const BUFFER_MAX: u64 = 32 * 1024;

/// An open handle: where, and what the client may do.
#[derive(Clone)]
struct Open {
    /// `None` for `/remote` itself.
    device: Option<String>,
    /// The path on the device (`""`: its shared directory).
    path: String,
    pos: u64,
    dir: bool,
    read: bool,
    write: bool,
    append: bool,
}

struct Session {
    buffer: Option<SharedBuffer>,
    files: Vec<Option<Open>>,
    used: u64,
}

/// The sessions of the remote mount.
#[derive(Default)]
pub struct Files {
    sessions: BTreeMap<u64, Session>,
    next: u64,
    requests: u64,
}

/// What to do with a storage call's answer.
pub struct Op {
    session: u64,
    device: String,
    /// What the answer must be.
    asked: storage::Asked,
    then: Then,
}

enum Then {
    /// A new handle in `slot`.
    Opened {
        slot: usize,
        open: Open,
    },
    /// Data for handle `slot`; `advance`: move its position.
    Read {
        slot: usize,
        advance: bool,
    },
    Written {
        slot: usize,
        advance: bool,
    },
    /// A seek from the end: the new position is the size plus `offset`.
    SeekEnd {
        slot: usize,
        offset: i64,
    },
    /// The stat of `path` (on the op's device).
    Stat {
        path: String,
    },
    /// Entries of the directory `path` from `cookie`.
    Entries {
        path: String,
        cookie: u64,
    },
    Done,
}

/// A request on the remote mount that needs the device: what to call, and what next.
pub struct Call {
    pub device: String,
    pub method: &'static str,
    pub payload: Vec<u8>,
    pub op: Op,
}

/// How one request is answered: now, or after a call.
pub enum Step {
    Now(Response),
    Call(Call),
}

fn failed(error: Error) -> Step {
    Step::Now(Response::Failed { error })
}

/// The file-system error for a storage error of the serving device.
fn file_error(e: FileError) -> Error {
    match e {
        FileError::NotFound => Error::NotFound,
        FileError::Exists => Error::Exists,
        FileError::NotDirectory => Error::NotDirectory,
        FileError::IsDirectory => Error::IsDirectory,
        FileError::NotEmpty => Error::NotEmpty,
        FileError::NoSpace => Error::NoSpace,
        FileError::NameTooLong => Error::NameTooLong,
        FileError::InvalidPath => Error::InvalidPath,
        FileError::ReadOnly => Error::ReadOnly,
        FileError::TooBig => Error::TooBig,
        FileError::InvalidArgument => Error::InvalidArgument,
        FileError::Io => Error::Io,
        FileError::Unsupported => Error::Unsupported,
        FileError::PermissionDenied => Error::PermissionDenied,
    }
}

/// The file-system error for a soft bus failure (no session, refused, deadline).
pub fn bus_error(f: &Failure) -> Error {
    use svc::softbus::failure as k;
    match f.kind {
        k::NOT_FOUND | k::UNTRUSTED => Error::NotFound,
        k::TIMEOUT => Error::TimedOut,
        k::PERMISSION_DENIED => Error::PermissionDenied,
        k::REMOTE if f.code == u32::from(softbus::wire::RpcErrorCode::PERMISSION_DENIED.0) => Error::PermissionDenied,
        k::REMOTE if f.code == u32::from(softbus::wire::RpcErrorCode::NOT_FOUND.0) => Error::Unsupported,
        _ => Error::Io,
    }
}

/// A stable inode number for a path (FNV-1a), never 0.
fn ino(device: &str, path: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in device.bytes().chain([0]).chain(path.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h.max(1)
}

fn kind_of(k: FileKind) -> proto::Kind {
    match k {
        FileKind::Regular => proto::Kind::Regular,
        FileKind::Directory => proto::Kind::Directory,
        FileKind::Other => proto::Kind::Unknown,
    }
}

fn record(device: &str, path: &str, s: &FileStat) -> proto::Stat {
    proto::Stat {
        ino: ino(device, path),
        mount: u32::MAX,
        kind: kind_of(s.kind),
        mode: s.mode,
        nlink: 1,
        uid: 0,
        gid: 0,
        size: s.size,
        blocks: s.size.div_ceil(512),
        atime: s.mtime,
        mtime: s.mtime,
        ctime: s.mtime,
    }
}

/// A directory that is not on any device (`/remote`, or a device's own directory).
fn directory(device: &str, path: &str) -> proto::Stat {
    record(device, path, &FileStat { kind: FileKind::Directory, size: 0, mtime: 0, mode: 0o755 })
}

/// A path of the remote mount split: the device and the path on it (`None` for `/`).
fn split(path: &str) -> Result<Option<(String, String)>, Error> {
    let inside = path.strip_prefix('/').ok_or(Error::InvalidPath)?;
    if inside.is_empty() {
        return Ok(None);
    }
    let (device, rest) = inside.split_once('/').unwrap_or((inside, ""));
    storage::check_path(rest).map_err(file_error)?;
    if device.is_empty() {
        return Err(Error::InvalidPath);
    }
    Ok(Some((device.into(), rest.into())))
}

impl Files {
    /// The endpoint `Files` answers to the soft bus client `client`.
    pub fn endpoint(&self, server: Handle, client: u64) -> Result<Handle, sys::Error> {
        sys::cap_duplicate(
            server,
            rights::SEND | rights::GRANT | rights::DUPLICATE,
            FILES_BIT | ROOT | (client & 0xffff_ffff),
        )
    }

    fn buffer(&self, badge: u64) -> Result<&SharedBuffer, Error> {
        self.sessions.get(&badge).and_then(|s| s.buffer.as_ref()).ok_or(Error::NoSession)
    }

    fn text(&self, badge: u64, range: BufRange) -> Result<String, Error> {
        if range.len > proto::PATH_MAX as u64 {
            return Err(Error::NameTooLong);
        }
        let buffer = self.buffer(badge)?;
        let (offset, len) = buffer.check(range).map_err(|_| Error::OutOfRange)?;
        let mut bytes = alloc::vec![0; len];
        buffer.read(offset as u64, &mut bytes).map_err(|_| Error::OutOfRange)?;
        String::from_utf8(bytes).map_err(|_| Error::InvalidPath)
    }

    fn put(&self, badge: u64, bytes: &[u8]) -> Result<(), Error> {
        self.buffer(badge)?.write(0, bytes).map_err(|_| Error::OutOfRange)
    }

    fn file(&self, badge: u64, handle: u32) -> Result<Open, Error> {
        let s = self.sessions.get(&badge).ok_or(Error::NoSession)?;
        s.files.get(handle as usize).cloned().flatten().ok_or(Error::BadHandle)
    }

    fn stat_now(&self, badge: u64, stat: &proto::Stat) -> Step {
        match self.put(badge, &stat.encode()) {
            Ok(()) => Step::Now(Response::Record { len: proto::STAT_LEN as u32 }),
            Err(e) => failed(e),
        }
    }

    /// One request on the remote mount; `devices` are the names `/remote` lists, and
    /// `known(name)` says whether a device of that name is trusted.
    pub fn request(
        &mut self,
        server: Handle,
        badge: u64,
        message: &Message,
        devices: &[String],
        known: &dyn Fn(&str) -> bool,
    ) -> Step {
        let request = match Request::decode(message) {
            Ok(r) => r,
            Err(_) => return failed(Error::InvalidArgument),
        };
        self.requests += 1;
        if badge & ROOT != 0 {
            return match request {
                Request::Attach => self.attach(server),
                _ => failed(Error::NoSession),
            };
        }
        let requests = self.requests;
        let Some(session) = self.sessions.get_mut(&badge) else { return failed(Error::NoSession) };
        session.used = requests;
        if let Request::Buffer { len } = request {
            return self.make_buffer(badge, len);
        }
        if session.buffer.is_none() {
            return failed(Error::NoSession);
        }
        match self.serve(badge, request, devices, known) {
            Ok(step) => step,
            Err(e) => failed(e),
        }
    }

    fn attach(&mut self, server: Handle) -> Step {
        if self.sessions.len() >= SESSIONS_MAX {
            let oldest = self.sessions.iter().min_by_key(|(_, s)| s.used).map(|(id, _)| *id);
            if let Some(id) = oldest {
                self.sessions.remove(&id);
            }
        }
        self.next += 1;
        let id = FILES_BIT | (self.next & 0xffff_ffff_ffff);
        match sys::cap_duplicate(server, rights::SEND | rights::DUPLICATE, id) {
            Ok(cap) => {
                self.sessions.insert(id, Session { buffer: None, files: Vec::new(), used: self.requests });
                Step::Now(Response::Session { endpoint: Cap(cap) })
            }
            Err(_) => failed(Error::NoMemory),
        }
    }

    fn make_buffer(&mut self, badge: u64, len: u64) -> Step {
        let Some(session) = self.sessions.get_mut(&badge) else { return failed(Error::NoSession) };
        if session.buffer.is_some() {
            return failed(Error::Exists);
        }
        if !(proto::BUFFER_MIN..=BUFFER_MAX).contains(&len) {
            return failed(Error::InvalidArgument);
        }
        let Ok(buffer) = SharedBuffer::create(len as usize) else { return failed(Error::NoMemory) };
        let Ok(copy) = buffer.share(rights::READ | rights::WRITE | rights::DUPLICATE) else {
            return failed(Error::NoMemory);
        };
        session.buffer = Some(buffer);
        Step::Now(Response::Buffer { memory: Cap(copy), len })
    }

    fn call(&self, badge: u64, device: String, request: storage::Request<'_>, then: Then) -> Step {
        let op = Op { session: badge, device: device.clone(), asked: request.asked(), then };
        Step::Call(Call { device, method: request.method(), payload: request.encode(), op })
    }

    fn serve(
        &mut self,
        badge: u64,
        request: Request,
        devices: &[String],
        known: &dyn Fn(&str) -> bool,
    ) -> Result<Step, Error> {
        match request {
            Request::Attach | Request::Buffer { .. } => Err(Error::InvalidArgument),
            Request::Open { path, flags: f, mode: _ } => {
                if f & !flags::ALL != 0 {
                    return Err(Error::InvalidArgument);
                }
                let path = self.text(badge, path)?;
                let write = f & (flags::WRITE | flags::TRUNCATE | flags::CREATE) != 0;
                let session = self.sessions.get_mut(&badge).ok_or(Error::NoSession)?;
                let slot = proto::free_slot(&mut session.files)?;
                let dir = |device: Option<String>| Open {
                    device,
                    path: String::new(),
                    pos: 0,
                    dir: true,
                    read: true,
                    write: false,
                    append: false,
                };
                let target = split(&path)?;
                if write && target.as_ref().is_none_or(|(_, p)| p.is_empty()) {
                    return Err(Error::IsDirectory);
                }
                match target {
                    None => {
                        session.files[slot] = Some(dir(None));
                        Ok(Step::Now(Response::Opened {
                            handle: slot as u32,
                            kind: proto::Kind::Directory as u8,
                            size: 0,
                        }))
                    }
                    Some((device, rest)) if rest.is_empty() => {
                        if !known(&device) {
                            return Err(Error::NotFound);
                        }
                        session.files[slot] = Some(dir(Some(device)));
                        Ok(Step::Now(Response::Opened {
                            handle: slot as u32,
                            kind: proto::Kind::Directory as u8,
                            size: 0,
                        }))
                    }
                    Some((device, rest)) => {
                        let mut o = 0;
                        for (fs_flag, storage_flag) in [
                            (flags::CREATE, open::CREATE),
                            (flags::EXCLUSIVE, open::EXCLUSIVE),
                            (flags::TRUNCATE, open::TRUNCATE),
                            (flags::DIRECTORY, open::DIRECTORY),
                        ] {
                            if f & fs_flag != 0 {
                                o |= storage_flag;
                            }
                        }
                        if f & flags::TRUNCATE != 0 && f & flags::WRITE == 0 {
                            return Err(Error::InvalidArgument);
                        }
                        let open = Open {
                            device: Some(device.clone()),
                            path: rest.clone(),
                            pos: 0,
                            dir: false,
                            read: f & flags::READ != 0,
                            write: f & flags::WRITE != 0,
                            append: f & flags::APPEND != 0,
                        };
                        // Reserve the slot while the call is out.
                        session.files[slot] = Some(Open { read: false, write: false, ..open.clone() });
                        let request = storage::Request::Open { path: &rest, flags: o };
                        Ok(self.call(badge, device, request, Then::Opened { slot, open }))
                    }
                }
            }
            Request::Close { handle } => {
                let session = self.sessions.get_mut(&badge).ok_or(Error::NoSession)?;
                session.files.get_mut(handle as usize).and_then(Option::take).ok_or(Error::BadHandle)?;
                Ok(Step::Now(Response::Done))
            }
            Request::Read { handle, len, at } => {
                let open = self.file(badge, handle)?;
                if open.dir {
                    return Err(Error::IsDirectory);
                }
                if !open.read {
                    return Err(Error::BadHandle);
                }
                let room = self.buffer(badge)?.len().min(storage::MAX_IO);
                if len as usize > self.buffer(badge)?.len() {
                    return Err(Error::OutOfRange);
                }
                let len = (len as usize).min(room) as u32;
                let device = open.device.clone().ok_or(Error::IsDirectory)?;
                let request = storage::Request::Read { path: &open.path, offset: at.unwrap_or(open.pos), len };
                Ok(self.call(badge, device, request, Then::Read { slot: handle as usize, advance: at.is_none() }))
            }
            Request::Write { handle, len, at } => {
                let open = self.file(badge, handle)?;
                if !open.write || open.dir {
                    return Err(Error::BadHandle);
                }
                let buffer = self.buffer(badge)?;
                if len as usize > buffer.len() {
                    return Err(Error::OutOfRange);
                }
                let len = (len as usize).min(storage::MAX_IO);
                let mut data = alloc::vec![0; len];
                buffer.read(0, &mut data).map_err(|_| Error::OutOfRange)?;
                let offset = if open.append { None } else { Some(at.unwrap_or(open.pos)) };
                let device = open.device.clone().ok_or(Error::IsDirectory)?;
                let request = storage::Request::Write { path: &open.path, offset, data: &data };
                Ok(self.call(badge, device, request, Then::Written { slot: handle as usize, advance: at.is_none() }))
            }
            Request::Seek { handle, whence: from, offset } => {
                let open = self.file(badge, handle)?;
                let base = match from {
                    whence::SET => 0,
                    whence::CURRENT => open.pos,
                    whence::END => {
                        let device = open.device.clone().ok_or(Error::InvalidArgument)?;
                        let request = storage::Request::Stat { path: &open.path };
                        return Ok(self.call(badge, device, request, Then::SeekEnd { slot: handle as usize, offset }));
                    }
                    _ => return Err(Error::InvalidArgument),
                };
                let pos = base.checked_add_signed(offset).ok_or(Error::InvalidArgument)?;
                self.set_pos(badge, handle as usize, pos);
                Ok(Step::Now(Response::Position { pos }))
            }
            Request::Stat { path, follow: _ } => {
                let path = self.text(badge, path)?;
                match split(&path)? {
                    None => Ok(self.stat_now(badge, &directory("", ""))),
                    Some((device, rest)) if rest.is_empty() => {
                        if !known(&device) {
                            return Err(Error::NotFound);
                        }
                        Ok(self.stat_now(badge, &directory(&device, "")))
                    }
                    Some((device, rest)) => {
                        let then = Then::Stat { path: rest.clone() };
                        Ok(self.call(badge, device, storage::Request::Stat { path: &rest }, then))
                    }
                }
            }
            Request::FStat { handle } => {
                let open = self.file(badge, handle)?;
                match open.device {
                    Some(device) if !open.path.is_empty() => {
                        let then = Then::Stat { path: open.path.clone() };
                        Ok(self.call(badge, device, storage::Request::Stat { path: &open.path }, then))
                    }
                    device => Ok(self.stat_now(badge, &directory(device.as_deref().unwrap_or(""), ""))),
                }
            }
            Request::ReadDir { handle, cookie } => {
                let open = self.file(badge, handle)?;
                if !open.dir {
                    return Err(Error::NotDirectory);
                }
                let Some(device) = open.device else {
                    // `/remote`: the trusted devices.
                    let entries = devices
                        .iter()
                        .skip(usize::try_from(cookie).unwrap_or(usize::MAX))
                        .map(|name| storage::Entry { name: name.clone(), kind: FileKind::Directory, size: 0 })
                        .collect::<Vec<_>>();
                    return self.entries(badge, "", "", cookie, &entries).map(Step::Now);
                };
                let start = u32::try_from(cookie).map_err(|_| Error::InvalidArgument)?;
                let request = storage::Request::ReadDir { path: &open.path, start };
                let then = Then::Entries { path: open.path.clone(), cookie };
                Ok(self.call(badge, device, request, then))
            }
            Request::Mkdir { path, mode: _ } => self.path_call(badge, path, |p| storage::Request::Mkdir { path: p }),
            Request::Unlink { path } => {
                self.path_call(badge, path, |p| storage::Request::Remove { path: p, dir: false })
            }
            Request::Rmdir { path } => self.path_call(badge, path, |p| storage::Request::Remove { path: p, dir: true }),
            Request::Truncate { path, size } => {
                self.path_call(badge, path, |p| storage::Request::Truncate { path: p, size })
            }
            Request::Rename { from, to } => {
                let (from, to) = (self.text(badge, from)?, self.text(badge, to)?);
                let (Some((a, from)), Some((b, to))) = (split(&from)?, split(&to)?) else { return Err(Error::Busy) };
                if a != b {
                    return Err(Error::CrossDevice);
                }
                if from.is_empty() || to.is_empty() {
                    return Err(Error::Busy);
                }
                Ok(self.call(badge, a, storage::Request::Rename { from: &from, to: &to }, Then::Done))
            }
            Request::FTruncate { handle, size } => {
                let open = self.file(badge, handle)?;
                if !open.write {
                    return Err(Error::BadHandle);
                }
                let device = open.device.clone().ok_or(Error::IsDirectory)?;
                Ok(self.call(badge, device, storage::Request::Truncate { path: &open.path, size }, Then::Done))
            }
            Request::Fsync { handle } => {
                let open = self.file(badge, handle)?;
                match open.device {
                    Some(device) => {
                        Ok(self.call(badge, device, storage::Request::Sync { path: &open.path }, Then::Done))
                    }
                    None => Ok(Step::Now(Response::Done)),
                }
            }
            Request::Readlink { .. } => Err(Error::NotSymlink),
            Request::Symlink { .. } | Request::Chmod { .. } | Request::SetTimes { .. } => Err(Error::Unsupported),
            Request::Mounts { .. } => Ok(Step::Now(Response::NoMore)),
            Request::StatFs { .. } => Err(Error::Unsupported),
            Request::Sync => Ok(Step::Now(Response::Done)),
        }
    }

    /// A request on one path inside a device (not a device's own directory: `Busy`).
    fn path_call(
        &self,
        badge: u64,
        path: BufRange,
        make: impl Fn(&str) -> storage::Request<'_>,
    ) -> Result<Step, Error> {
        let path = self.text(badge, path)?;
        match split(&path)? {
            Some((device, rest)) if !rest.is_empty() => {
                let request = make(&rest);
                Ok(self.call(badge, device, request, Then::Done))
            }
            _ => Err(Error::Busy),
        }
    }

    fn set_pos(&mut self, badge: u64, slot: usize, pos: u64) {
        if let Some(Some(open)) = self.sessions.get_mut(&badge).and_then(|s| s.files.get_mut(slot)) {
            open.pos = pos;
        }
    }

    /// Directory records of `entries` (the listing from `cookie`), as many as fit the buffer.
    fn entries(
        &self,
        badge: u64,
        device: &str,
        dir: &str,
        cookie: u64,
        entries: &[storage::Entry],
    ) -> Result<Response, Error> {
        let room = self.buffer(badge)?.len();
        let mut out = Vec::new();
        let mut count = 0u32;
        for e in entries {
            let path = if dir.is_empty() { e.name.clone() } else { alloc::format!("{dir}/{}", e.name) };
            let record =
                proto::DirEntry { ino: ino(device, &path), kind: kind_of(e.kind), name: e.name.as_bytes().to_vec() };
            if !record.encode_within(&mut out, room) {
                break;
            }
            count += 1;
        }
        self.put(badge, &out)?;
        Ok(Response::Entries { count, len: out.len() as u32, cookie: cookie + u64::from(count) })
    }

    /// The answer to the client of `op`, from the call's result: the reply bytes, or why the
    /// soft bus could not get them.
    pub fn complete(&mut self, op: Op, result: Result<&[u8], Error>) -> Response {
        let badge = op.session;
        let reply = result.and_then(|bytes| storage::decode_reply(op.asked, bytes).map_err(file_error));
        self.finish(badge, &op.device, op.then, reply).unwrap_or_else(|error| Response::Failed { error })
    }

    fn finish(&mut self, badge: u64, device: &str, then: Then, reply: Result<Reply, Error>) -> Result<Response, Error> {
        match (then, reply) {
            (Then::Opened { slot, .. }, Err(e)) => {
                if let Some(s) = self.sessions.get_mut(&badge) {
                    if let Some(entry) = s.files.get_mut(slot) {
                        *entry = None;
                    }
                }
                Err(e)
            }
            (_, Err(e)) => Err(e),
            (Then::Opened { slot, mut open }, Ok(Reply::Stat(stat))) => {
                open.dir = stat.kind == FileKind::Directory;
                if open.dir {
                    open.read = true;
                    open.write = false;
                }
                let s = self.sessions.get_mut(&badge).ok_or(Error::NoSession)?;
                let entry = s.files.get_mut(slot).ok_or(Error::BadHandle)?;
                *entry = Some(open);
                Ok(Response::Opened { handle: slot as u32, kind: kind_of(stat.kind) as u8, size: stat.size })
            }
            (Then::Read { slot, advance }, Ok(Reply::Data(data))) => {
                self.put(badge, &data)?;
                if advance {
                    let pos = self.file(badge, slot as u32)?.pos;
                    self.set_pos(badge, slot, pos + data.len() as u64);
                }
                Ok(Response::Data { len: data.len() as u64 })
            }
            (Then::Written { slot, advance }, Ok(Reply::Written { len, end })) => {
                let open = self.file(badge, slot as u32)?;
                if advance {
                    let pos = if open.append { end } else { open.pos + u64::from(len) };
                    self.set_pos(badge, slot, pos);
                }
                Ok(Response::Written { len: u64::from(len) })
            }
            (Then::SeekEnd { slot, offset }, Ok(Reply::Stat(stat))) => {
                let pos = stat.size.checked_add_signed(offset).ok_or(Error::InvalidArgument)?;
                self.set_pos(badge, slot, pos);
                Ok(Response::Position { pos })
            }
            (Then::Stat { path }, Ok(Reply::Stat(stat))) => {
                let record = record(device, &path, &stat);
                self.put(badge, &record.encode())?;
                Ok(Response::Record { len: proto::STAT_LEN as u32 })
            }
            (Then::Entries { path, cookie }, Ok(Reply::Entries { entries, .. })) => {
                self.entries(badge, device, &path, cookie, &entries)
            }
            (Then::Done, Ok(Reply::Done)) => Ok(Response::Done),
            _ => Err(Error::Io),
        }
    }
}

/// Sends `response` to a kept reply.
pub fn answer(reply: Handle, response: Response) {
    let message = response.encode();
    let _ = sys::reply_with(reply, &message);
    if let Some(cap) = message.cap {
        let _ = sys::cap_close(cap);
    }
}
