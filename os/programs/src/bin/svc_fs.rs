//! The file-system service (docs/fs.md): one tree of mounts served over the `svc::fs`
//! protocol. `/` is a tmpfs (in memory, bounded), `/boot` the boot archive read-only, `/disk`
//! ext2 on the first virtio-blk disk (if there is one and it mounts; otherwise a one-line
//! reason and the rest keeps working). The logic (paths, mounts, tmpfs, bootfs, the ext2
//! adapter) is the host-tested `vfs` crate; this program adds the device, the clock, sessions
//! with their shared buffers and open-file tables, and the protocol. Registered as `fs`.
//!
//! Every request is hostile: ranges are checked against the session's buffer, lengths
//! against limits, handles against the session's table; nothing a client sends can panic the
//! server. One thread serves everything in order (the virtio-blk disk is polled).
#![no_std]
#![no_main]

extern crate alloc;

use abi::syscall::{map, rights};
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use drivers::pci::{ConfigPorts, CONFIG_ADDRESS};
use drivers::virtio_blk::{self, BlkError, SECTOR};
use rt::ipc::{BufRange, Cap, Server, SharedBuffer};
use rt::log::{info, warn};
use rt::sys::{self, Handle};
use svc::boot::Response as Grant;
use svc::fs::{self as proto, flags, whence, Error, FileSystem, Request, Response};
use vfs::{FileSystem as _, Loc, OpenOptions, Vfs};

rt::entry!(main);

/// Where the boot archive is mapped.
const ARCHIVE_AT: u64 = 0x5100_0000_0000;
/// tmpfs: bytes and nodes.
const TMPFS_QUOTA: u64 = 256 * 1024;
const TMPFS_NODES: u64 = 1024;
/// The DMA arena of the disk driver.
const DMA_ARENA: u64 = 128 * 1024;
/// The largest single disk request (bounce pages of the arena).
const DISK_CHUNK: usize = 16 * 1024;
/// Sessions at a time, per client (badge of the name service), and buffer bytes of all.
const SESSIONS_MAX: usize = 16;
const SESSIONS_PER_CLIENT: usize = 4;
const BUFFERS_TOTAL: u64 = 256 * 1024;
/// Session badges: this bit and a counter.
const SESSION_BIT: u64 = 1 << 48;
/// Directory records per `ReadDir`.
const ENTRIES_PER_CALL: u32 = 256;
/// CMOS real-time clock ports.
const CMOS_INDEX: u16 = 0x70;

fn main() -> i32 {
    rt::log::set_prefix("fs");
    match run() {
        Ok(never) => never,
        Err(e) => {
            warn!("{e}");
            svc::exit(1)
        }
    }
}

/// The disk for ext2: byte offsets to sectors, requests cut into arena-sized pieces.
struct Disk {
    dev: virtio_blk::BlockDevice,
}

impl Disk {
    fn sector(offset: u64, len: usize) -> Result<u64, ext2fs::DeviceError> {
        if !offset.is_multiple_of(SECTOR as u64) || !len.is_multiple_of(SECTOR) {
            return Err(ext2fs::DeviceError);
        }
        Ok(offset / SECTOR as u64)
    }
}

impl ext2fs::BlockDevice for Disk {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), ext2fs::DeviceError> {
        let mut sector = Self::sector(offset, buf.len())?;
        for chunk in buf.chunks_mut(DISK_CHUNK) {
            self.dev.read(sector, chunk).map_err(|_| ext2fs::DeviceError)?;
            sector += (chunk.len() / SECTOR) as u64;
        }
        Ok(())
    }

    fn write(&mut self, offset: u64, buf: &[u8]) -> Result<(), ext2fs::DeviceError> {
        let mut sector = Self::sector(offset, buf.len())?;
        for chunk in buf.chunks(DISK_CHUNK) {
            self.dev.write(sector, chunk).map_err(|_| ext2fs::DeviceError)?;
            sector += (chunk.len() / SECTOR) as u64;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), ext2fs::DeviceError> {
        self.dev.flush().map_err(|_| ext2fs::DeviceError)
    }

    fn size(&self) -> u64 {
        self.dev.capacity().saturating_mul(SECTOR as u64)
    }
}

/// An open file or directory of a session.
#[derive(Clone, Copy)]
struct Open {
    loc: Loc,
    pos: u64,
    read: bool,
    write: bool,
    append: bool,
    dir: bool,
    /// Its file was deleted meanwhile.
    stale: bool,
}

struct Session {
    /// The name-service badge of the client that attached.
    owner: u64,
    buffer: Option<SharedBuffer>,
    files: Vec<Option<Open>>,
    /// For eviction: the request counter when it was last used.
    used: u64,
}

struct Service {
    vfs: Vfs,
    endpoint: Handle,
    sessions: BTreeMap<u64, Session>,
    next_session: u64,
    requests: u64,
    /// Wall-clock seconds at `clock_base` (0 without an RTC).
    rtc: u64,
    clock_base: u64,
}

fn map_error(e: vfs::Error) -> Error {
    use vfs::Error as V;
    match e {
        V::NotFound => Error::NotFound,
        V::Exists => Error::Exists,
        V::NotDirectory => Error::NotDirectory,
        V::IsDirectory => Error::IsDirectory,
        V::NotEmpty => Error::NotEmpty,
        V::NoSpace => Error::NoSpace,
        V::NameTooLong => Error::NameTooLong,
        V::InvalidPath => Error::InvalidPath,
        V::ReadOnly => Error::ReadOnly,
        V::TooBig => Error::TooBig,
        V::InvalidArgument => Error::InvalidArgument,
        V::Busy => Error::Busy,
        V::Loop => Error::Loop,
        V::Io => Error::Io,
        V::Corrupt(_) => Error::Corrupt,
        V::Unsupported(_) => Error::Unsupported,
        V::CrossDevice => Error::CrossDevice,
        V::NoMemory => Error::NoMemory,
        V::NotSymlink => Error::NotSymlink,
        // Answered with `Redirect` (`Service::handle`).
        V::Forwarded => Error::Redirected,
    }
}

fn kind(k: vfs::Kind) -> proto::Kind {
    use vfs::Kind as K;
    match k {
        K::Unknown => proto::Kind::Unknown,
        K::Regular => proto::Kind::Regular,
        K::Directory => proto::Kind::Directory,
        K::Symlink => proto::Kind::Symlink,
        K::CharDevice => proto::Kind::CharDevice,
        K::BlockDevice => proto::Kind::BlockDevice,
        K::Fifo => proto::Kind::Fifo,
        K::Socket => proto::Kind::Socket,
    }
}

fn failed(error: Error) -> Response {
    Response::Failed { error }
}

type Reply = Result<Response, Error>;

impl Service {
    fn handle(&mut self, badge: u64, request: Request) -> Response {
        self.requests += 1;
        let now = self.rtc + sys::time_now().saturating_sub(self.clock_base) / 1_000_000_000;
        self.vfs.set_clock(now);
        self.vfs.take_forward();
        let mut reply = match request {
            Request::Attach => self.attach(badge),
            other => self.in_session(badge, other),
        };
        if matches!(reply, Err(Error::Redirected)) {
            reply = self.redirect(badge);
        }
        self.report_problems();
        reply.unwrap_or_else(failed)
    }

    /// The answer to a request whose path led into the forwarded mount: the path(s) inside it.
    fn redirect(&mut self, badge: u64) -> Reply {
        let forward = self.vfs.take_forward().ok_or(Error::Io)?;
        let mut bytes = forward.path.clone();
        let path = BufRange { offset: 0, len: bytes.len() as u64 };
        let second = match &forward.second {
            Some(second) => {
                bytes.extend_from_slice(second);
                BufRange { offset: path.len, len: second.len() as u64 }
            }
            None => BufRange { offset: path.len, len: 0 },
        };
        self.put(badge, &bytes)?;
        Ok(Response::Redirect { path, second })
    }

    /// Logs why a mount refused an operation as corrupt (once per problem).
    fn report_problems(&mut self) {
        for i in 0..self.vfs.mounts().len() {
            let path = self.vfs.mounts()[i].path.clone();
            if let Some(what) = self.vfs.mount_fs(i).and_then(|fs| fs.take_problem()) {
                warn!(
                    "{}: corrupt metadata: {what}; the operation was refused",
                    core::str::from_utf8(&path).unwrap_or("?")
                );
            }
        }
    }

    fn attach(&mut self, badge: u64) -> Reply {
        let owner = match self.sessions.get(&badge) {
            Some(s) => s.owner,
            None if badge & SESSION_BIT != 0 => return Err(Error::NoSession),
            None => badge,
        };
        // Bounded: the oldest session of this client, or of anyone, makes room.
        let mine = self.sessions.values().filter(|s| s.owner == owner).count();
        if mine >= SESSIONS_PER_CLIENT {
            self.evict(Some(owner));
        }
        if self.sessions.len() >= SESSIONS_MAX {
            self.evict(None);
        }
        self.next_session += 1;
        let id = SESSION_BIT | self.next_session;
        let cap =
            sys::cap_duplicate(self.endpoint, rights::SEND | rights::DUPLICATE, id).map_err(|_| Error::NoMemory)?;
        self.sessions.insert(id, Session { owner, buffer: None, files: Vec::new(), used: self.requests });
        Ok(Response::Session { endpoint: Cap(cap) })
    }

    /// Drops the least recently used session (of `owner`, if given).
    fn evict(&mut self, owner: Option<u64>) {
        let victim = self
            .sessions
            .iter()
            .filter(|(_, s)| owner.is_none_or(|o| s.owner == o))
            .min_by_key(|(_, s)| s.used)
            .map(|(id, _)| *id);
        if let Some(id) = victim {
            self.sessions.remove(&id);
        }
    }

    fn buffer_bytes(&self) -> u64 {
        self.sessions.values().filter_map(|s| s.buffer.as_ref()).map(|b| b.len() as u64).sum()
    }

    fn in_session(&mut self, badge: u64, request: Request) -> Reply {
        let requests = self.requests;
        let session = self.sessions.get_mut(&badge).ok_or(Error::NoSession)?;
        session.used = requests;
        if let Request::Buffer { len } = request {
            return self.make_buffer(badge, len);
        }
        if session.buffer.is_none() {
            return Err(Error::NoSession);
        }
        match request {
            Request::Attach | Request::Buffer { .. } => Err(Error::InvalidArgument),
            Request::Open { path, flags, mode } => self.open(badge, path, flags, mode),
            Request::Close { handle } => {
                let s = self.session(badge)?;
                let slot = s.files.get_mut(handle as usize).ok_or(Error::BadHandle)?;
                slot.take().ok_or(Error::BadHandle)?;
                Ok(Response::Done)
            }
            Request::Read { handle, len, at } => self.read(badge, handle, len, at),
            Request::Write { handle, len, at } => self.write(badge, handle, len, at),
            Request::Seek { handle, whence, offset } => self.seek(badge, handle, whence, offset),
            Request::Stat { path, follow } => {
                let path = self.path(badge, path)?;
                let loc = self.vfs.resolve(&path, follow).map_err(map_error)?;
                self.stat_record(badge, loc)
            }
            Request::FStat { handle } => {
                let open = self.file(badge, handle)?;
                self.stat_record(badge, open.loc)
            }
            Request::ReadDir { handle, cookie } => self.read_dir(badge, handle, cookie),
            Request::Mkdir { path, mode } => {
                let path = self.path(badge, path)?;
                self.vfs.mkdir(&path, mode).map_err(map_error)?;
                Ok(Response::Done)
            }
            Request::Unlink { path } => {
                let path = self.path(badge, path)?;
                let target = self.vfs.target(&path).ok();
                self.vfs.unlink(&path).map_err(map_error)?;
                self.forget(target);
                Ok(Response::Done)
            }
            Request::Rmdir { path } => {
                let path = self.path(badge, path)?;
                let target = self.vfs.target(&path).ok();
                self.vfs.rmdir(&path).map_err(map_error)?;
                self.forget(target);
                Ok(Response::Done)
            }
            Request::Rename { from, to } => {
                let from = self.path(badge, from)?;
                let to = self.path(badge, to)?;
                let replaced = self.vfs.target(&to).ok();
                let moved = self.vfs.target(&from).ok();
                self.vfs.rename(&from, &to).map_err(map_error)?;
                if replaced != moved {
                    self.forget(replaced);
                }
                Ok(Response::Done)
            }
            Request::Truncate { path, size } => {
                let path = self.path(badge, path)?;
                self.vfs.truncate(&path, size).map_err(map_error)?;
                Ok(Response::Done)
            }
            Request::FTruncate { handle, size } => {
                let open = self.file(badge, handle)?;
                if !open.write {
                    return Err(Error::BadHandle);
                }
                self.vfs.truncate_loc(open.loc, size).map_err(map_error)?;
                Ok(Response::Done)
            }
            Request::Fsync { handle } => {
                let open = self.file(badge, handle)?;
                self.vfs.sync_mount(open.loc.mount).map_err(map_error)?;
                Ok(Response::Done)
            }
            Request::Symlink { target, path } => {
                let target = self.path(badge, target)?;
                let path = self.path(badge, path)?;
                self.vfs.symlink(&target, &path).map_err(map_error)?;
                Ok(Response::Done)
            }
            Request::Readlink { path } => {
                let path = self.path(badge, path)?;
                let target = self.vfs.readlink(&path).map_err(map_error)?;
                self.put(badge, &target)?;
                Ok(Response::Data { len: target.len() as u64 })
            }
            Request::Chmod { path, mode } => {
                let path = self.path(badge, path)?;
                self.vfs.chmod(&path, mode).map_err(map_error)?;
                Ok(Response::Done)
            }
            Request::SetTimes { path, atime, mtime } => {
                let path = self.path(badge, path)?;
                self.vfs.set_times(&path, atime, mtime).map_err(map_error)?;
                Ok(Response::Done)
            }
            Request::Mounts { index } => {
                if index as usize >= self.vfs.mounts().len() {
                    return Ok(Response::NoMore);
                }
                self.mount_record(badge, index as usize)
            }
            Request::StatFs { path } => {
                let path = self.path(badge, path)?;
                let index = match self.vfs.mount_of(&path) {
                    Err(vfs::Error::Forwarded) => self.vfs.take_forward().map(|f| f.mount).ok_or(Error::Io)?,
                    other => other.map_err(map_error)?,
                };
                self.mount_record(badge, index)
            }
            Request::Sync => {
                self.vfs.sync_all().map_err(map_error)?;
                Ok(Response::Done)
            }
        }
    }

    fn session(&mut self, badge: u64) -> Result<&mut Session, Error> {
        self.sessions.get_mut(&badge).ok_or(Error::NoSession)
    }

    fn buffer(&self, badge: u64) -> Result<&SharedBuffer, Error> {
        self.sessions.get(&badge).and_then(|s| s.buffer.as_ref()).ok_or(Error::NoSession)
    }

    fn make_buffer(&mut self, badge: u64, len: u64) -> Reply {
        if self.session(badge)?.buffer.is_some() {
            return Err(Error::Exists);
        }
        if !(proto::BUFFER_MIN..=proto::BUFFER_MAX).contains(&len) {
            return Err(Error::InvalidArgument);
        }
        // Room among all sessions' buffers: the least recently used others give way.
        let mut rounds = 0;
        while self.buffer_bytes() + len > BUFFERS_TOTAL && rounds < SESSIONS_MAX {
            let victim = self
                .sessions
                .iter()
                .filter(|(id, s)| **id != badge && s.buffer.is_some())
                .min_by_key(|(_, s)| s.used)
                .map(|(id, _)| *id);
            match victim {
                Some(id) => {
                    self.sessions.remove(&id);
                }
                None => break,
            }
            rounds += 1;
        }
        let buffer = SharedBuffer::create(len as usize).map_err(|_| Error::NoMemory)?;
        let copy = buffer.share(rights::READ | rights::WRITE | rights::DUPLICATE).map_err(|_| Error::NoMemory)?;
        self.session(badge)?.buffer = Some(buffer);
        Ok(Response::Buffer { memory: Cap(copy), len })
    }

    /// A path (or link target) from the session's buffer.
    fn path(&self, badge: u64, range: BufRange) -> Result<Vec<u8>, Error> {
        if range.len > proto::PATH_MAX as u64 {
            return Err(Error::NameTooLong);
        }
        let buffer = self.buffer(badge)?;
        buffer.check(range).map_err(|_| Error::OutOfRange)?;
        let mut out = alloc::vec![0; range.len as usize];
        buffer.read(range.offset, &mut out).map_err(|_| Error::OutOfRange)?;
        Ok(out)
    }

    /// Writes `bytes` at offset 0 of the session's buffer.
    fn put(&self, badge: u64, bytes: &[u8]) -> Result<(), Error> {
        self.buffer(badge)?.write(0, bytes).map_err(|_| Error::OutOfRange)
    }

    fn file(&mut self, badge: u64, handle: u32) -> Result<Open, Error> {
        let s = self.session(badge)?;
        let open = s.files.get(handle as usize).copied().flatten().ok_or(Error::BadHandle)?;
        if open.stale {
            return Err(Error::Stale);
        }
        Ok(open)
    }

    fn set_pos(&mut self, badge: u64, handle: u32, pos: u64) {
        if let Some(Some(open)) = self.sessions.get_mut(&badge).and_then(|s| s.files.get_mut(handle as usize)) {
            open.pos = pos;
        }
    }

    /// After a delete: handles of `target` become stale if its node is gone.
    fn forget(&mut self, target: Option<Loc>) {
        let Some(target) = target else { return };
        let gone = self.vfs.stat_loc(target).map_or(true, |s| s.nlink == 0);
        if !gone {
            return;
        }
        for s in self.sessions.values_mut() {
            for open in s.files.iter_mut().flatten() {
                if open.loc == target {
                    open.stale = true;
                }
            }
        }
    }

    fn open(&mut self, badge: u64, path: BufRange, f: u32, mode: u16) -> Reply {
        if f & !flags::ALL != 0 {
            return Err(Error::InvalidArgument);
        }
        let path = self.path(badge, path)?;
        let o = OpenOptions {
            read: f & flags::READ != 0,
            write: f & flags::WRITE != 0,
            create: f & flags::CREATE != 0,
            exclusive: f & flags::EXCLUSIVE != 0,
            truncate: f & flags::TRUNCATE != 0,
            directory: f & flags::DIRECTORY != 0,
            nofollow: f & flags::NOFOLLOW != 0,
        };
        // Room for the handle first, so a full table creates nothing.
        let s = self.session(badge)?;
        let slot = proto::free_slot(&mut s.files)?;
        let (loc, stat) = self.vfs.open(&path, o, mode).map_err(map_error)?;
        let dir = stat.kind == vfs::Kind::Directory;
        let open = Open {
            loc,
            pos: 0,
            read: o.read || dir,
            write: o.write,
            append: f & flags::APPEND != 0,
            dir,
            stale: false,
        };
        self.session(badge)?.files[slot] = Some(open);
        Ok(Response::Opened { handle: slot as u32, kind: kind(stat.kind) as u8, size: stat.size })
    }

    fn read(&mut self, badge: u64, handle: u32, len: u32, at: Option<u64>) -> Reply {
        let open = self.file(badge, handle)?;
        if !open.read || open.dir {
            return Err(if open.dir { Error::IsDirectory } else { Error::BadHandle });
        }
        if len as usize > self.buffer(badge)?.len() {
            return Err(Error::OutOfRange);
        }
        let offset = at.unwrap_or(open.pos);
        let mut data = alloc::vec![0; len as usize];
        let n = self.vfs.read(open.loc, offset, &mut data).map_err(map_error)?;
        self.put(badge, &data[..n])?;
        if at.is_none() {
            self.set_pos(badge, handle, offset + n as u64);
        }
        Ok(Response::Data { len: n as u64 })
    }

    fn write(&mut self, badge: u64, handle: u32, len: u32, at: Option<u64>) -> Reply {
        let open = self.file(badge, handle)?;
        if !open.write {
            return Err(Error::BadHandle);
        }
        let buffer = self.buffer(badge)?;
        let mut data = alloc::vec![0; len as usize];
        if len as usize > buffer.len() || buffer.read(0, &mut data).is_err() {
            return Err(Error::OutOfRange);
        }
        let offset = match at {
            Some(at) => at,
            None if open.append => self.vfs.stat_loc(open.loc).map_err(map_error)?.size,
            None => open.pos,
        };
        let n = self.vfs.write(open.loc, offset, &data).map_err(map_error)?;
        if at.is_none() {
            self.set_pos(badge, handle, offset + n as u64);
        }
        Ok(Response::Written { len: n as u64 })
    }

    fn seek(&mut self, badge: u64, handle: u32, from: u8, offset: i64) -> Reply {
        let open = self.file(badge, handle)?;
        let base = match from {
            whence::SET => 0,
            whence::CURRENT => open.pos,
            whence::END => self.vfs.stat_loc(open.loc).map_err(map_error)?.size,
            _ => return Err(Error::InvalidArgument),
        };
        let pos = base.checked_add_signed(offset).filter(|p| *p <= i64::MAX as u64).ok_or(Error::InvalidArgument)?;
        self.set_pos(badge, handle, pos);
        Ok(Response::Position { pos })
    }

    fn stat_record(&mut self, badge: u64, loc: Loc) -> Reply {
        let s = self.vfs.stat_loc(loc).map_err(map_error)?;
        let stat = proto::Stat {
            ino: s.ino,
            mount: loc.mount as u32,
            kind: kind(s.kind),
            mode: s.mode,
            nlink: s.nlink,
            uid: s.uid,
            gid: s.gid,
            size: s.size,
            blocks: s.blocks,
            atime: s.atime,
            mtime: s.mtime,
            ctime: s.ctime,
        };
        self.put(badge, &stat.encode())?;
        Ok(Response::Record { len: proto::STAT_LEN as u32 })
    }

    fn read_dir(&mut self, badge: u64, handle: u32, cookie: u64) -> Reply {
        let open = self.file(badge, handle)?;
        if !open.dir {
            return Err(Error::NotDirectory);
        }
        let room = self.buffer(badge)?.len();
        let mut out = Vec::new();
        let mut count = 0;
        let mut next = cookie;
        while count < ENTRIES_PER_CALL {
            let Some((entry, after)) = self.vfs.readdir(open.loc, next).map_err(map_error)? else { break };
            let record = proto::DirEntry { ino: entry.ino, kind: kind(entry.kind), name: entry.name };
            if !record.encode_within(&mut out, room) {
                break;
            }
            count += 1;
            if after == next {
                break; // a file system that does not advance: stop rather than loop
            }
            next = after;
        }
        self.put(badge, &out)?;
        Ok(Response::Entries { count, len: out.len() as u32, cookie: next })
    }

    fn mount_record(&mut self, badge: u64, index: usize) -> Reply {
        let m = &self.vfs.mounts()[index];
        let (path, fs_type, read_only) = (m.path.clone(), m.fs.fs_type(), m.fs.read_only());
        let space = self.vfs.mount_fs(index).map(|fs| fs.statfs()).unwrap_or_default();
        let info = proto::MountInfo {
            path: alloc::string::String::from_utf8_lossy(&path).into_owned(),
            fs_type: fs_type.into(),
            read_only,
            block_size: space.block_size,
            total_bytes: space.total_bytes,
            free_bytes: space.free_bytes,
            files: space.files,
            free_files: space.free_files,
        };
        let bytes = info.encode();
        self.put(badge, &bytes)?;
        Ok(Response::Record { len: bytes.len() as u32 })
    }
}

fn run() -> Result<i32, &'static str> {
    let caps = svc::capabilities().map_err(|_| "init gave no capabilities")?;
    let (rtc, clock_base) = (read_rtc(&caps).unwrap_or(0), sys::time_now());
    if rtc == 0 {
        info!("no real-time clock ports: timestamps count from 1970");
    }

    let mut tmpfs = vfs::tmpfs::Tmpfs::new(TMPFS_QUOTA, TMPFS_NODES);
    tmpfs.set_clock(rtc);
    for dir in [&b"boot"[..], b"disk", b"tmp"] {
        let root = tmpfs.root();
        let _ = tmpfs.mkdir(root, dir, 0o755);
    }
    let mut tree = Vfs::new(Box::new(tmpfs));
    info!("mounted tmpfs at / ({} KiB)", TMPFS_QUOTA / 1024);

    match boot_archive(&caps) {
        Ok(bootfs) => {
            let files = bootfs.entries();
            match tree.mount(b"/boot", Box::new(bootfs)) {
                Ok(_) => info!("mounted the boot archive at /boot read-only ({files} entries)"),
                Err(e) => warn!("/boot not mounted: {e}"),
            }
        }
        Err(e) => warn!("/boot not mounted: {e}"),
    }

    match disk(&caps) {
        Ok(ext2) => match tree.mount(b"/disk", Box::new(ext2)) {
            Ok(i) => {
                let space = tree.mount_fs(i).map(|fs| fs.statfs()).unwrap_or_default();
                let ro = tree.mounts()[i].fs.read_only();
                info!(
                    "mounted ext2 at /disk ({} KiB, {} KiB free{})",
                    space.total_bytes / 1024,
                    space.free_bytes / 1024,
                    if ro { ", read-only" } else { "" }
                );
            }
            Err(e) => warn!("/disk not mounted: {e}"),
        },
        Err(reason) => warn!("/disk not mounted: {reason}"),
    }

    for arg in svc::arguments().unwrap_or_default() {
        match arg.strip_prefix("remote=") {
            Some(path) => {
                match tree.mkdir(path.as_bytes(), 0o755).and_then(|()| tree.mount_forward(path.as_bytes(), "softbus")) {
                    Ok(_) => info!("{path}: other devices' storage, through the soft bus server"),
                    Err(e) => warn!("{path} not mounted: {e}"),
                }
            }
            None => warn!("unknown argument {arg:?} (remote=<path>)"),
        }
    }

    let endpoint = sys::endpoint_create().map_err(|_| "no endpoint")?;
    let names = svc::names().map_err(|_| "no name service")?;
    svc::register(&names, endpoint).map_err(|_| "cannot register as fs")?;
    info!("serving");
    let mut service =
        Service { vfs: tree, endpoint, sessions: BTreeMap::new(), next_session: 0, requests: 0, rtc, clock_base };
    let error = Server::<FileSystem>::new(endpoint).serve(|badge, request| service.handle(badge, request));
    warn!("serving stopped: {error}");
    Ok(svc::exit(1))
}

/// The boot archive from the manifest's `boot-archive` grant, mapped read-only for good.
fn boot_archive(caps: &[Grant]) -> Result<vfs::bootfs::Bootfs, alloc::string::String> {
    let (cap, len) = caps
        .iter()
        .find_map(|c| match c {
            Grant::BootArchive { cap, len } => Some((cap.0, *len)),
            _ => None,
        })
        .ok_or_else(|| alloc::string::String::from("no boot-archive in the manifest"))?;
    if len == 0 {
        return Err("the boot archive is empty".into());
    }
    sys::memory_map(cap, 0, ARCHIVE_AT, 0, len.next_multiple_of(4096), map::READ)
        .map_err(|e| alloc::format!("cannot map the boot archive: {e}"))?;
    // Safety: the archive is mapped read-only at ARCHIVE_AT for `len` bytes and never unmapped
    // (this task keeps the capability); nobody writes to it.
    let bytes: &'static [u8] = unsafe { core::slice::from_raw_parts(ARCHIVE_AT as *const u8, len as usize) };
    vfs::bootfs::Bootfs::new(bytes).map_err(|e| alloc::format!("the boot archive is not valid: {e}"))
}

/// ext2 on the first virtio-blk disk, or why not.
fn disk(caps: &[Grant]) -> Result<vfs::ext2::Ext2<Disk>, alloc::string::String> {
    use alloc::format;
    let ports = caps
        .iter()
        .find_map(|c| match c {
            Grant::Ports { cap, first, .. } if *first == CONFIG_ADDRESS => Some(cap.0),
            _ => None,
        })
        .ok_or_else(|| alloc::string::String::from("no PCI configuration ports in the manifest"))?;
    let memory = caps
        .iter()
        .find_map(|c| match c {
            Grant::DeviceMemory { cap, .. } => Some(cap.0),
            _ => None,
        })
        .ok_or_else(|| alloc::string::String::from("no device memory in the manifest"))?;
    let cam = ConfigPorts::new(ports).map_err(|e| format!("PCI configuration ports: {e:?}"))?;
    drivers::dma::init(DMA_ARENA).map_err(|e| format!("DMA memory: {e:?}"))?;
    let dev = match virtio_blk::open(cam, memory) {
        Ok(dev) => dev,
        Err(BlkError::NoDevice) => return Err("no virtio-blk disk".into()),
        Err(e) => return Err(format!("virtio-blk: {e:?}")),
    };
    let read_only = dev.read_only();
    let sectors = dev.capacity();
    vfs::ext2::Ext2::mount(Disk { dev }, read_only)
        .map_err(|e| format!("the disk ({} KiB) does not mount as ext2: {}", sectors / 2, vfs::ext2::map_error(&e)))
}

/// Seconds since 1970 from the CMOS clock, if the manifest gives its ports.
fn read_rtc(caps: &[Grant]) -> Option<u64> {
    let ports = caps.iter().find_map(|c| match c {
        Grant::Ports { cap, first, count } if *first == CMOS_INDEX && *count >= 2 => Some(cap.0),
        _ => None,
    })?;
    let read = |register: u8| -> Option<u8> {
        rt::device::outb(ports, CMOS_INDEX, register).ok()?;
        rt::device::inb(ports, CMOS_INDEX + 1).ok()
    };
    // Wait (bounded) until no update is in progress, then read twice until stable.
    let sample = || -> Option<[u8; 7]> {
        for _ in 0..10_000 {
            if read(0x0a)? & 0x80 == 0 {
                break;
            }
        }
        Some([read(0x00)?, read(0x02)?, read(0x04)?, read(0x07)?, read(0x08)?, read(0x09)?, read(0x32)?])
    };
    let mut t = sample()?;
    for _ in 0..4 {
        let again = sample()?;
        if again == t {
            break;
        }
        t = again;
    }
    let status_b = read(0x0b)?;
    let bcd = |v: u8| if status_b & 0x04 == 0 { (v & 0x0f) + (v >> 4) * 10 } else { v };
    let pm = status_b & 0x02 == 0 && t[2] & 0x80 != 0;
    let (sec, min) = (bcd(t[0]) as u64, bcd(t[1]) as u64);
    let mut hour = bcd(t[2] & 0x7f) as u64;
    if status_b & 0x02 == 0 {
        hour %= 12;
        if pm {
            hour += 12;
        }
    }
    let (day, month) = (bcd(t[3]) as u64, bcd(t[4]) as u64);
    let century = match bcd(t[6]) as u64 {
        19..=30 => bcd(t[6]) as u64,
        _ => 20,
    };
    let year = century * 100 + bcd(t[5]) as u64;
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || year < 1970 {
        return None;
    }
    Some(days_since_epoch(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days from 1970-01-01 to the date (proleptic Gregorian).
fn days_since_epoch(year: u64, month: u64, day: u64) -> u64 {
    let (y, m) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    (era * 146_097 + doe).saturating_sub(719_468)
}
