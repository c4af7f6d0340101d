//! Remote file access: the binary `storage.*` methods behind `/remote/<device>/` on Tutti
//! (docs/softbus/wire.md, "Remote files"), served by every device that shares a directory
//! (`tuttid serve --storage`, `softbusd`'s `/disk/shared`).
//!
//! Design: one RPC per file-system operation, no caching, no open state on the serving side:
//! a request names a path relative to the shared directory and, for data, an offset, so a
//! lost session or a restarted server loses nothing but the calls in flight. Paths are plain
//! names joined by `/` (`""` is the shared directory itself); this module refuses anything
//! else before a [`Backend`] sees it, and each backend refuses symbolic links on the way.
//! A reply starts with a status byte (0, or a [`FileError`] code) so file errors keep their
//! meaning (`NotFound`, `Exists`, `NotEmpty`...) instead of collapsing into RPC error codes,
//! which stay for the soft bus's own refusals (permission, deadline, unknown method).

use alloc::string::String;
use alloc::vec::Vec;

/// The most bytes one `storage.read` or `storage.write` moves.
pub const MAX_IO: usize = 32 * 1024;
/// The longest relative path, and the longest name in it.
pub const PATH_MAX: usize = 1024;
/// The longest name of one component.
pub const NAME_MAX: usize = 255;
/// Directory entries per `storage.readdir` answer.
pub const ENTRIES_MAX: usize = 128;

/// The methods (service `storage`: the `storage` capability and its policy apply).
pub mod method {
    /// Metadata of a path.
    pub const STAT: &str = "storage.stat";
    /// Checks, creates or truncates a file (or checks a directory): its metadata.
    pub const OPEN: &str = "storage.open";
    /// Bytes at an offset.
    pub const READ: &str = "storage.read";
    /// Bytes at an offset or at the end.
    pub const WRITE: &str = "storage.write";
    /// A page of a directory's entries.
    pub const READDIR: &str = "storage.readdir";
    /// Makes a directory.
    pub const MKDIR: &str = "storage.mkdir";
    /// Removes a file or an empty directory.
    pub const REMOVE: &str = "storage.remove";
    /// Renames inside the shared directory.
    pub const RENAME: &str = "storage.rename";
    /// Sets a file's length.
    pub const TRUNCATE: &str = "storage.truncate";
    /// Makes what was written durable.
    pub const SYNC: &str = "storage.sync";
    /// All of them.
    pub const ALL: [&str; 10] = [STAT, OPEN, READ, WRITE, READDIR, MKDIR, REMOVE, RENAME, TRUNCATE, SYNC];

    /// Whether `name` is one of them.
    pub fn is_one(name: &str) -> bool {
        ALL.contains(&name)
    }
}

/// `storage.open` flags.
pub mod open {
    /// Create the file if it does not exist.
    pub const CREATE: u8 = 1;
    /// With `CREATE`: fail with `Exists` if it exists.
    pub const EXCLUSIVE: u8 = 2;
    /// Cut the file to length 0.
    pub const TRUNCATE: u8 = 4;
    /// The path must be a directory.
    pub const DIRECTORY: u8 = 8;
    /// Every flag.
    pub const ALL: u8 = 15;
}

/// Why a remote file operation failed (the status byte of a reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileError {
    /// No such file or directory.
    NotFound = 1,
    /// It exists.
    Exists = 2,
    /// A component is not a directory.
    NotDirectory = 3,
    /// It is a directory.
    IsDirectory = 4,
    /// The directory is not empty.
    NotEmpty = 5,
    /// The serving device's disk is full.
    NoSpace = 6,
    /// A name or the path is too long.
    NameTooLong = 7,
    /// Not a relative path of plain names (or the shared directory itself where a name is needed).
    InvalidPath = 8,
    /// The shared directory is read-only.
    ReadOnly = 9,
    /// Past what the serving side allows.
    TooBig = 10,
    /// A malformed request or an impossible argument.
    InvalidArgument = 11,
    /// The serving device's file system failed.
    Io = 12,
    /// The serving side cannot do this.
    Unsupported = 13,
    /// A symbolic link on the way, or the host's permissions refused it.
    PermissionDenied = 14,
}

const ERRORS: [FileError; 14] = [
    FileError::NotFound,
    FileError::Exists,
    FileError::NotDirectory,
    FileError::IsDirectory,
    FileError::NotEmpty,
    FileError::NoSpace,
    FileError::NameTooLong,
    FileError::InvalidPath,
    FileError::ReadOnly,
    FileError::TooBig,
    FileError::InvalidArgument,
    FileError::Io,
    FileError::Unsupported,
    FileError::PermissionDenied,
];

impl FileError {
    /// The error with status byte `code`.
    pub fn from_code(code: u8) -> Option<FileError> {
        ERRORS.iter().copied().find(|e| *e as u8 == code)
    }

    /// A short description.
    pub fn text(self) -> &'static str {
        match self {
            FileError::NotFound => "no such file or directory",
            FileError::Exists => "file exists",
            FileError::NotDirectory => "not a directory",
            FileError::IsDirectory => "is a directory",
            FileError::NotEmpty => "directory not empty",
            FileError::NoSpace => "no space left",
            FileError::NameTooLong => "name too long",
            FileError::InvalidPath => "not a relative path of plain names",
            FileError::ReadOnly => "read-only",
            FileError::TooBig => "too large",
            FileError::InvalidArgument => "invalid argument",
            FileError::Io => "input/output error",
            FileError::Unsupported => "not supported",
            FileError::PermissionDenied => "permission denied",
        }
    }
}

impl core::fmt::Display for FileError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.text())
    }
}

/// What a path names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FileKind {
    /// A regular file.
    Regular = 1,
    /// A directory.
    Directory = 2,
    /// Anything else (shown, never opened).
    Other = 3,
}

impl FileKind {
    fn from_u8(v: u8) -> Option<FileKind> {
        match v {
            1 => Some(FileKind::Regular),
            2 => Some(FileKind::Directory),
            3 => Some(FileKind::Other),
            _ => None,
        }
    }
}

/// Metadata of a remote path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileStat {
    /// What it is.
    pub kind: FileKind,
    /// Bytes.
    pub size: u64,
    /// Modification time, seconds since 1970.
    pub mtime: u64,
    /// Permission bits (`& 0o7777`).
    pub mode: u16,
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    /// The name (a plain name).
    pub name: String,
    /// What it is.
    pub kind: FileKind,
    /// Bytes.
    pub size: u64,
}

/// One request (each field is described on its variant).
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// `storage.stat`.
    Stat { path: &'a str },
    /// `storage.open` with [`open`] flags.
    Open { path: &'a str, flags: u8 },
    /// `storage.read`: at most `len` ([`MAX_IO`]) bytes at `offset`.
    Read { path: &'a str, offset: u64, len: u32 },
    /// `storage.write`: `data` at `offset`, or at the end when `None`.
    Write { path: &'a str, offset: Option<u64>, data: &'a [u8] },
    /// `storage.readdir`: entries from index `start` of the sorted listing.
    ReadDir { path: &'a str, start: u32 },
    /// `storage.mkdir`.
    Mkdir { path: &'a str },
    /// `storage.remove`: a file, or with `dir` an empty directory.
    Remove { path: &'a str, dir: bool },
    /// `storage.rename`.
    Rename { from: &'a str, to: &'a str },
    /// `storage.truncate`.
    Truncate { path: &'a str, size: u64 },
    /// `storage.sync`.
    Sync { path: &'a str },
}

/// One successful answer (each field is described on its variant).
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// To `Stat` and `Open`.
    Stat(FileStat),
    /// To `Read`: the bytes (fewer than asked at the end of the file).
    Data(Vec<u8>),
    /// To `Write`: bytes written and the file's length after it.
    Written { len: u32, end: u64 },
    /// To `ReadDir`: entries, and whether more follow.
    Entries { entries: Vec<Entry>, more: bool },
    /// To the rest.
    Done,
}

/// Whether `path` is `""` or plain names joined by `/`, within the length limits.
pub fn check_path(path: &str) -> Result<(), FileError> {
    if path.len() > PATH_MAX {
        return Err(FileError::NameTooLong);
    }
    if path.is_empty() {
        return Ok(());
    }
    for name in path.split('/') {
        if name.is_empty() || name == "." || name == ".." || name.contains('\0') {
            return Err(FileError::InvalidPath);
        }
        if name.len() > NAME_MAX {
            return Err(FileError::NameTooLong);
        }
    }
    Ok(())
}

/// A path that must name something inside the shared directory (not the directory itself).
fn check_named(path: &str) -> Result<(), FileError> {
    check_path(path)?;
    if path.is_empty() {
        return Err(FileError::InvalidPath);
    }
    Ok(())
}

fn put_path(out: &mut Vec<u8>, path: &str) {
    out.extend_from_slice(&(path.len() as u16).to_le_bytes());
    out.extend_from_slice(path.as_bytes());
}

/// A reader over a payload; every short read is `InvalidArgument`.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FileError> {
        if self.0.len() < n {
            return Err(FileError::InvalidArgument);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, FileError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, FileError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, FileError> {
        let mut b = [0; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn u64(&mut self) -> Result<u64, FileError> {
        let mut b = [0; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn path(&mut self) -> Result<&'a str, FileError> {
        let len = self.u16()? as usize;
        let path = core::str::from_utf8(self.take(len)?).map_err(|_| FileError::InvalidPath)?;
        check_path(path)?;
        Ok(path)
    }

    fn end(&self) -> Result<(), FileError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(FileError::InvalidArgument)
        }
    }
}

impl<'a> Request<'a> {
    /// The method this request is sent as.
    pub fn method(&self) -> &'static str {
        match self {
            Request::Stat { .. } => method::STAT,
            Request::Open { .. } => method::OPEN,
            Request::Read { .. } => method::READ,
            Request::Write { .. } => method::WRITE,
            Request::ReadDir { .. } => method::READDIR,
            Request::Mkdir { .. } => method::MKDIR,
            Request::Remove { .. } => method::REMOVE,
            Request::Rename { .. } => method::RENAME,
            Request::Truncate { .. } => method::TRUNCATE,
            Request::Sync { .. } => method::SYNC,
        }
    }

    /// The payload (docs/softbus/wire.md, "Remote files").
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        match *self {
            Request::Stat { path } | Request::Mkdir { path } | Request::Sync { path } => put_path(&mut out, path),
            Request::Open { path, flags } => {
                put_path(&mut out, path);
                out.push(flags);
            }
            Request::Read { path, offset, len } => {
                put_path(&mut out, path);
                out.extend_from_slice(&offset.to_le_bytes());
                out.extend_from_slice(&len.to_le_bytes());
            }
            Request::Write { path, offset, data } => {
                put_path(&mut out, path);
                match offset {
                    Some(at) => {
                        out.push(0);
                        out.extend_from_slice(&at.to_le_bytes());
                    }
                    None => out.push(1),
                }
                out.extend_from_slice(data);
            }
            Request::ReadDir { path, start } => {
                put_path(&mut out, path);
                out.extend_from_slice(&start.to_le_bytes());
            }
            Request::Remove { path, dir } => {
                put_path(&mut out, path);
                out.push(dir as u8);
            }
            Request::Rename { from, to } => {
                put_path(&mut out, from);
                put_path(&mut out, to);
            }
            Request::Truncate { path, size } => {
                put_path(&mut out, path);
                out.extend_from_slice(&size.to_le_bytes());
            }
        }
        out
    }

    /// Decodes the payload of `method`; `None` if `method` is not one of these. Every field is
    /// checked (paths, flags, lengths), trailing bytes are refused.
    pub fn decode(method: &str, payload: &'a [u8]) -> Option<Result<Request<'a>, FileError>> {
        let mut c = Cursor(payload);
        let decoded = (|| {
            let request = match method {
                method::STAT => Request::Stat { path: c.path()? },
                method::OPEN => {
                    let path = c.path()?;
                    let flags = c.u8()?;
                    if flags & !open::ALL != 0 {
                        return Err(FileError::InvalidArgument);
                    }
                    Request::Open { path, flags }
                }
                method::READ => {
                    let path = c.path()?;
                    let offset = c.u64()?;
                    let len = c.u32()?;
                    if len as usize > MAX_IO {
                        return Err(FileError::TooBig);
                    }
                    Request::Read { path, offset, len }
                }
                method::WRITE => {
                    let path = c.path()?;
                    let offset = match c.u8()? {
                        0 => Some(c.u64()?),
                        1 => None,
                        _ => return Err(FileError::InvalidArgument),
                    };
                    let data = core::mem::take(&mut c.0);
                    if data.len() > MAX_IO {
                        return Err(FileError::TooBig);
                    }
                    Request::Write { path, offset, data }
                }
                method::READDIR => {
                    let path = c.path()?;
                    Request::ReadDir { path, start: c.u32()? }
                }
                method::MKDIR => Request::Mkdir { path: c.path()? },
                method::REMOVE => {
                    let path = c.path()?;
                    let dir = match c.u8()? {
                        0 => false,
                        1 => true,
                        _ => return Err(FileError::InvalidArgument),
                    };
                    Request::Remove { path, dir }
                }
                method::RENAME => {
                    let from = c.path()?;
                    Request::Rename { from, to: c.path()? }
                }
                method::TRUNCATE => {
                    let path = c.path()?;
                    Request::Truncate { path, size: c.u64()? }
                }
                method::SYNC => Request::Sync { path: c.path()? },
                _ => return Ok(None),
            };
            c.end()?;
            Ok(Some(request))
        })();
        match decoded {
            Ok(Some(request)) => Some(Ok(request)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}

fn put_stat(out: &mut Vec<u8>, s: &FileStat) {
    out.push(s.kind as u8);
    out.extend_from_slice(&s.size.to_le_bytes());
    out.extend_from_slice(&s.mtime.to_le_bytes());
    out.extend_from_slice(&(s.mode & 0o7777).to_le_bytes());
}

fn get_stat(c: &mut Cursor<'_>) -> Result<FileStat, FileError> {
    let kind = FileKind::from_u8(c.u8()?).ok_or(FileError::InvalidArgument)?;
    let size = c.u64()?;
    let mtime = c.u64()?;
    let mode = c.u16()?;
    if mode & !0o7777 != 0 {
        return Err(FileError::InvalidArgument);
    }
    Ok(FileStat { kind, size, mtime, mode })
}

/// The reply payload: status 0 and the answer, or the error's status byte alone.
pub fn encode_reply(reply: &Result<Reply, FileError>) -> Vec<u8> {
    let mut out = Vec::new();
    match reply {
        Err(e) => out.push(*e as u8),
        Ok(reply) => {
            out.push(0);
            match reply {
                Reply::Stat(s) => put_stat(&mut out, s),
                Reply::Data(bytes) => out.extend_from_slice(bytes),
                Reply::Written { len, end } => {
                    out.extend_from_slice(&len.to_le_bytes());
                    out.extend_from_slice(&end.to_le_bytes());
                }
                Reply::Entries { entries, more } => {
                    out.push(*more as u8);
                    out.extend_from_slice(&(entries.len() as u16).to_le_bytes());
                    for e in entries {
                        out.push(e.kind as u8);
                        out.extend_from_slice(&e.size.to_le_bytes());
                        out.push(e.name.len() as u8);
                        out.extend_from_slice(e.name.as_bytes());
                    }
                }
                Reply::Done => {}
            }
        }
    }
    out
}

/// What the reply to a request must be: its kind and limits, all [`decode_reply`] needs (a
/// caller keeps this while the call is out instead of the request and its data). Fields are
/// described on their variants.
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Asked {
    /// A stat (`Stat`, `Open`).
    Stat,
    /// At most `len` bytes (`Read`).
    Data { len: u32 },
    /// At most `len` bytes written (`Write` of `len` bytes).
    Written { len: u32 },
    /// A page of entries (`ReadDir`).
    Entries,
    /// Nothing (the rest).
    Done,
}

impl Request<'_> {
    /// What its reply must be.
    pub fn asked(&self) -> Asked {
        match self {
            Request::Stat { .. } | Request::Open { .. } => Asked::Stat,
            Request::Read { len, .. } => Asked::Data { len: *len },
            Request::Write { data, .. } => Asked::Written { len: data.len() as u32 },
            Request::ReadDir { .. } => Asked::Entries,
            _ => Asked::Done,
        }
    }
}

/// Decodes the reply to a request that `asked` describes. An answer that does not fit (a stat
/// where data was asked, more data than asked, a name that is not a plain name) is
/// `InvalidArgument`: the serving device is as hostile as any other input.
pub fn decode_reply(asked: Asked, payload: &[u8]) -> Result<Reply, FileError> {
    let mut c = Cursor(payload);
    let status = c.u8()?;
    if status != 0 {
        return Err(FileError::from_code(status).unwrap_or(FileError::Io));
    }
    let reply = match asked {
        Asked::Stat => Reply::Stat(get_stat(&mut c)?),
        Asked::Data { len } => {
            let data = core::mem::take(&mut c.0);
            if data.len() > len as usize {
                return Err(FileError::InvalidArgument);
            }
            Reply::Data(data.to_vec())
        }
        Asked::Written { len: asked } => {
            let len = c.u32()?;
            let end = c.u64()?;
            if len > asked {
                return Err(FileError::InvalidArgument);
            }
            Reply::Written { len, end }
        }
        Asked::Entries => {
            let more = match c.u8()? {
                0 => false,
                1 => true,
                _ => return Err(FileError::InvalidArgument),
            };
            let count = c.u16()? as usize;
            if count > ENTRIES_MAX {
                return Err(FileError::InvalidArgument);
            }
            let mut entries = Vec::with_capacity(count);
            for _ in 0..count {
                let kind = FileKind::from_u8(c.u8()?).ok_or(FileError::InvalidArgument)?;
                let size = c.u64()?;
                let len = c.u8()? as usize;
                let name = core::str::from_utf8(c.take(len)?).map_err(|_| FileError::InvalidArgument)?;
                if name.is_empty() || name.contains('/') || check_path(name).is_err() {
                    return Err(FileError::InvalidArgument);
                }
                entries.push(Entry { name: name.into(), kind, size });
            }
            Reply::Entries { entries, more }
        }
        Asked::Done => Reply::Done,
    };
    c.end()?;
    Ok(reply)
}

/// A shared directory, as the serving device's file system sees it. Paths are checked
/// (plain names, [`check_path`]) before a backend is called; a backend refuses symbolic
/// links on the way itself, since only it can see them.
pub trait Backend {
    /// Metadata of `path` (`""`: the shared directory).
    fn stat(&mut self, path: &str) -> Result<FileStat, FileError>;
    /// Creates `path` as an empty regular file (the parent must exist); `Exists` if it does.
    fn create(&mut self, path: &str) -> Result<(), FileError>;
    /// At most `len` bytes at `offset`.
    fn read(&mut self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>, FileError>;
    /// Writes `data` at `offset` (the end when `None`): bytes written, the length after.
    fn write(&mut self, path: &str, offset: Option<u64>, data: &[u8]) -> Result<(u32, u64), FileError>;
    /// Every entry of the directory `path`, in any order.
    fn list(&mut self, path: &str) -> Result<Vec<Entry>, FileError>;
    /// Makes the directory `path`.
    fn mkdir(&mut self, path: &str) -> Result<(), FileError>;
    /// Removes the file (or, with `dir`, the empty directory) `path`.
    fn remove(&mut self, path: &str, dir: bool) -> Result<(), FileError>;
    /// Renames `from` to `to` (replacing a file there).
    fn rename(&mut self, from: &str, to: &str) -> Result<(), FileError>;
    /// Sets the length of the file `path`.
    fn truncate(&mut self, path: &str, size: u64) -> Result<(), FileError>;
    /// Makes what was written to `path` durable.
    fn sync(&mut self, path: &str) -> Result<(), FileError>;
}

fn regular(s: &FileStat) -> Result<(), FileError> {
    match s.kind {
        FileKind::Regular => Ok(()),
        FileKind::Directory => Err(FileError::IsDirectory),
        FileKind::Other => Err(FileError::Unsupported),
    }
}

/// Serves one request on `backend`.
pub fn handle(backend: &mut dyn Backend, request: &Request<'_>) -> Result<Reply, FileError> {
    match *request {
        Request::Stat { path } => backend.stat(path).map(Reply::Stat),
        Request::Open { path, flags } => {
            let stat = match backend.stat(path) {
                Ok(_) if flags & open::CREATE != 0 && flags & open::EXCLUSIVE != 0 => return Err(FileError::Exists),
                Ok(stat) => stat,
                Err(FileError::NotFound) if flags & open::CREATE != 0 => {
                    check_named(path)?;
                    backend.create(path)?;
                    backend.stat(path)?
                }
                Err(e) => return Err(e),
            };
            match stat.kind {
                FileKind::Directory if flags & open::TRUNCATE != 0 => return Err(FileError::IsDirectory),
                FileKind::Directory => {}
                _ if flags & open::DIRECTORY != 0 => return Err(FileError::NotDirectory),
                FileKind::Other => return Err(FileError::Unsupported),
                FileKind::Regular => {}
            }
            if flags & open::TRUNCATE != 0 && stat.size != 0 {
                backend.truncate(path, 0)?;
                return backend.stat(path).map(Reply::Stat);
            }
            Ok(Reply::Stat(stat))
        }
        Request::Read { path, offset, len } => {
            regular(&backend.stat(path)?)?;
            let data = backend.read(path, offset, (len as usize).min(MAX_IO))?;
            if data.len() > len as usize {
                return Err(FileError::Io);
            }
            Ok(Reply::Data(data))
        }
        Request::Write { path, offset, data } => {
            check_named(path)?;
            regular(&backend.stat(path)?)?;
            let (len, end) = backend.write(path, offset, data)?;
            Ok(Reply::Written { len: len.min(data.len() as u32), end })
        }
        Request::ReadDir { path, start } => {
            if backend.stat(path)?.kind != FileKind::Directory {
                return Err(FileError::NotDirectory);
            }
            let mut all = backend.list(path)?;
            all.retain(|e| check_path(&e.name).is_ok() && !e.name.is_empty() && !e.name.contains('/'));
            all.sort_by(|a, b| a.name.cmp(&b.name));
            let start = (start as usize).min(all.len());
            let end = (start + ENTRIES_MAX).min(all.len());
            let more = end < all.len();
            let entries = all.drain(start..end).collect();
            Ok(Reply::Entries { entries, more })
        }
        Request::Mkdir { path } => {
            check_named(path)?;
            backend.mkdir(path).map(|()| Reply::Done)
        }
        Request::Remove { path, dir } => {
            check_named(path)?;
            backend.remove(path, dir).map(|()| Reply::Done)
        }
        Request::Rename { from, to } => {
            check_named(from)?;
            check_named(to)?;
            if to.starts_with(from) && to.as_bytes().get(from.len()) == Some(&b'/') {
                return Err(FileError::InvalidArgument);
            }
            backend.rename(from, to).map(|()| Reply::Done)
        }
        Request::Truncate { path, size } => {
            check_named(path)?;
            regular(&backend.stat(path)?)?;
            backend.truncate(path, size).map(|()| Reply::Done)
        }
        Request::Sync { path } => backend.sync(path).map(|()| Reply::Done),
    }
}

/// Serves `method` with `payload` if it is one of these methods: the reply payload (file
/// errors inside it), or `None` for another method.
pub fn serve(backend: &mut dyn Backend, method: &str, payload: &[u8]) -> Option<Vec<u8>> {
    let request = Request::decode(method, payload)?;
    let reply = request.and_then(|r| handle(backend, &r));
    Some(encode_reply(&reply))
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeMap;
    use alloc::vec;

    /// A directory tree in memory.
    #[derive(Default)]
    struct Memory {
        files: BTreeMap<String, Vec<u8>>,
        dirs: Vec<String>,
    }

    impl Memory {
        fn parent_exists(&self, path: &str) -> Result<(), FileError> {
            match path.rsplit_once('/') {
                None => Ok(()),
                Some((dir, _)) if self.dirs.iter().any(|d| d == dir) => Ok(()),
                Some(_) => Err(FileError::NotFound),
            }
        }
    }

    impl Backend for Memory {
        fn stat(&mut self, path: &str) -> Result<FileStat, FileError> {
            if path.is_empty() || self.dirs.iter().any(|d| d == path) {
                return Ok(FileStat { kind: FileKind::Directory, size: 0, mtime: 0, mode: 0o755 });
            }
            let f = self.files.get(path).ok_or(FileError::NotFound)?;
            Ok(FileStat { kind: FileKind::Regular, size: f.len() as u64, mtime: 0, mode: 0o644 })
        }
        fn create(&mut self, path: &str) -> Result<(), FileError> {
            self.parent_exists(path)?;
            self.files.insert(path.into(), Vec::new());
            Ok(())
        }
        fn read(&mut self, path: &str, offset: u64, len: usize) -> Result<Vec<u8>, FileError> {
            let f = self.files.get(path).ok_or(FileError::NotFound)?;
            let start = (offset as usize).min(f.len());
            Ok(f[start..(start + len).min(f.len())].to_vec())
        }
        fn write(&mut self, path: &str, offset: Option<u64>, data: &[u8]) -> Result<(u32, u64), FileError> {
            let f = self.files.get_mut(path).ok_or(FileError::NotFound)?;
            let at = offset.map_or(f.len(), |o| o as usize);
            if f.len() < at + data.len() {
                f.resize(at + data.len(), 0);
            }
            f[at..at + data.len()].copy_from_slice(data);
            Ok((data.len() as u32, f.len() as u64))
        }
        fn list(&mut self, path: &str) -> Result<Vec<Entry>, FileError> {
            let prefix = if path.is_empty() { String::new() } else { alloc::format!("{path}/") };
            let direct = |p: &String| p.strip_prefix(&prefix).filter(|r| !r.contains('/')).map(String::from);
            let mut out: Vec<Entry> = self
                .files
                .iter()
                .filter_map(|(p, f)| {
                    direct(p).map(|name| Entry { name, kind: FileKind::Regular, size: f.len() as u64 })
                })
                .collect();
            out.extend(
                self.dirs
                    .iter()
                    .filter_map(|d| direct(d).map(|name| Entry { name, kind: FileKind::Directory, size: 0 })),
            );
            Ok(out)
        }
        fn mkdir(&mut self, path: &str) -> Result<(), FileError> {
            self.parent_exists(path)?;
            if self.stat(path).is_ok() {
                return Err(FileError::Exists);
            }
            self.dirs.push(path.into());
            Ok(())
        }
        fn remove(&mut self, path: &str, dir: bool) -> Result<(), FileError> {
            if dir {
                let i = self.dirs.iter().position(|d| d == path).ok_or(FileError::NotFound)?;
                if !self.list(path)?.is_empty() {
                    return Err(FileError::NotEmpty);
                }
                self.dirs.remove(i);
                Ok(())
            } else {
                self.files.remove(path).map(|_| ()).ok_or(FileError::NotFound)
            }
        }
        fn rename(&mut self, from: &str, to: &str) -> Result<(), FileError> {
            let f = self.files.remove(from).ok_or(FileError::NotFound)?;
            self.files.insert(to.into(), f);
            Ok(())
        }
        fn truncate(&mut self, path: &str, size: u64) -> Result<(), FileError> {
            self.files.get_mut(path).ok_or(FileError::NotFound)?.resize(size as usize, 0);
            Ok(())
        }
        fn sync(&mut self, _: &str) -> Result<(), FileError> {
            Ok(())
        }
    }

    /// Sends `request` through encode, serve and decode, as two devices would.
    fn call(m: &mut Memory, request: Request<'_>) -> Result<Reply, FileError> {
        let payload = request.encode();
        assert_eq!(Request::decode(request.method(), &payload), Some(Ok(request.clone())));
        let reply = serve(m, request.method(), &payload).expect("a storage method");
        decode_reply(request.asked(), &reply)
    }

    #[test]
    fn a_file_lives_through_the_methods() {
        let mut m = Memory::default();
        assert_eq!(call(&mut m, Request::Mkdir { path: "docs" }), Ok(Reply::Done));
        let created = call(&mut m, Request::Open { path: "docs/a.txt", flags: open::CREATE | open::EXCLUSIVE });
        assert!(matches!(created, Ok(Reply::Stat(FileStat { kind: FileKind::Regular, size: 0, .. }))));
        assert_eq!(
            call(&mut m, Request::Open { path: "docs/a.txt", flags: open::CREATE | open::EXCLUSIVE }),
            Err(FileError::Exists)
        );
        let w = call(&mut m, Request::Write { path: "docs/a.txt", offset: Some(0), data: b"hello" });
        assert_eq!(w, Ok(Reply::Written { len: 5, end: 5 }));
        let w = call(&mut m, Request::Write { path: "docs/a.txt", offset: None, data: b" world" });
        assert_eq!(w, Ok(Reply::Written { len: 6, end: 11 }));
        let r = call(&mut m, Request::Read { path: "docs/a.txt", offset: 6, len: 100 });
        assert_eq!(r, Ok(Reply::Data(b"world".to_vec())));
        assert_eq!(call(&mut m, Request::Read { path: "docs", offset: 0, len: 1 }), Err(FileError::IsDirectory));
        assert_eq!(call(&mut m, Request::Remove { path: "docs", dir: true }), Err(FileError::NotEmpty));
        assert_eq!(call(&mut m, Request::Rename { from: "docs/a.txt", to: "docs/b.txt" }), Ok(Reply::Done));
        assert_eq!(call(&mut m, Request::Truncate { path: "docs/b.txt", size: 2 }), Ok(Reply::Done));
        let listed = call(&mut m, Request::ReadDir { path: "docs", start: 0 });
        let entry = Entry { name: "b.txt".into(), kind: FileKind::Regular, size: 2 };
        assert_eq!(listed, Ok(Reply::Entries { entries: vec![entry], more: false }));
        let opened = call(&mut m, Request::Open { path: "docs/b.txt", flags: open::TRUNCATE });
        assert!(matches!(opened, Ok(Reply::Stat(FileStat { size: 0, .. }))));
        assert_eq!(
            call(&mut m, Request::Open { path: "docs/b.txt", flags: open::DIRECTORY }),
            Err(FileError::NotDirectory)
        );
        assert_eq!(call(&mut m, Request::Open { path: "nope/x", flags: open::CREATE }), Err(FileError::NotFound));
        assert_eq!(call(&mut m, Request::Remove { path: "docs/b.txt", dir: false }), Ok(Reply::Done));
        assert_eq!(call(&mut m, Request::Remove { path: "docs", dir: true }), Ok(Reply::Done));
        assert_eq!(call(&mut m, Request::Stat { path: "docs" }), Err(FileError::NotFound));
    }

    #[test]
    fn listings_come_in_pages() {
        let mut m = Memory::default();
        for i in 0..300 {
            m.files.insert(alloc::format!("f{i:03}"), vec![0; i]);
        }
        let mut names = Vec::new();
        let mut start = 0;
        loop {
            let Ok(Reply::Entries { entries, more }) = call(&mut m, Request::ReadDir { path: "", start }) else {
                panic!("no page")
            };
            start += entries.len() as u32;
            names.extend(entries.into_iter().map(|e| e.name));
            if !more {
                break;
            }
        }
        assert_eq!(names.len(), 300);
        assert!(names.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn bad_paths_and_payloads_are_refused() {
        let mut m = Memory::default();
        for bad in ["/etc/passwd", "..", "a/../b", "a//b", "./a", "a/", "a\0b"] {
            let request = Request::Stat { path: bad };
            let reply = serve(&mut m, method::STAT, &request.encode()).unwrap();
            assert_eq!(reply, [FileError::InvalidPath as u8], "{bad:?}");
        }
        let long = "x".repeat(NAME_MAX + 1);
        assert_eq!(check_path(&long), Err(FileError::NameTooLong));
        assert_eq!(call(&mut m, Request::Mkdir { path: "" }), Err(FileError::InvalidPath));
        assert_eq!(call(&mut m, Request::Rename { from: "a", to: "a/b" }), Err(FileError::InvalidArgument));
        // Truncated, oversized and trailing payloads.
        assert_eq!(Request::decode(method::READ, &[1, 0, b'a']), Some(Err(FileError::InvalidArgument)));
        let mut big = Request::Read { path: "a", offset: 0, len: 0 }.encode();
        big[11..15].copy_from_slice(&(MAX_IO as u32 + 1).to_le_bytes());
        assert_eq!(Request::decode(method::READ, &big), Some(Err(FileError::TooBig)));
        let mut trailing = Request::Stat { path: "a" }.encode();
        trailing.push(0);
        assert_eq!(Request::decode(method::STAT, &trailing), Some(Err(FileError::InvalidArgument)));
        assert_eq!(Request::decode("storage.get", b"{}"), None);
        // A serving device that answers more than asked.
        let asked = Request::Read { path: "a", offset: 0, len: 2 }.asked();
        assert_eq!(decode_reply(asked, &[0, 1, 2, 3]), Err(FileError::InvalidArgument));
        assert_eq!(decode_reply(asked, &[200]), Err(FileError::Io));
        assert_eq!(decode_reply(asked, &[]), Err(FileError::InvalidArgument));
        let listing = Request::ReadDir { path: "", start: 0 }.asked();
        let evil = encode_reply(&Ok(Reply::Entries {
            entries: vec![Entry { name: "..".into(), kind: FileKind::Directory, size: 0 }],
            more: false,
        }));
        assert_eq!(decode_reply(listing, &evil), Err(FileError::InvalidArgument));
    }
}
