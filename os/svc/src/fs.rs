//! The file-system service's protocol (`svc_fs`, docs/fs.md) and its client helpers.
//!
//! A client looks `fs` up in the name service and sends `Attach`: the answer is a **session**,
//! an endpoint capability badged by the server for this client alone. On the session it asks
//! for a shared buffer (`Buffer`), through which paths go in and data, `Stat` records,
//! directory entries and mount records come out. Requests name byte ranges of the buffer
//! ([`BufRange`]); results are written at offset 0 of the buffer. Open files are handles of the
//! session (at most [`OPEN_MAX`] at a time).
//!
//! [`Fs`] wraps all of this: it connects, reconnects when the server restarted (calls fail with
//! `PeerDied`), and then reports handles opened before the restart as [`Error::Stale`].

use crate::names::Names;
use alloc::string::String;
use alloc::vec::Vec;
use core::cell::RefCell;
use rt::ipc::{BufRange, BufferError, Cap, Client, DecodeError, IpcError, Reader, SharedBuffer, Wire, Writer};
use rt::sys::{self, Handle};

/// The longest path (bytes, after the server's normalisation it may only get shorter).
pub const PATH_MAX: usize = 1024;
/// The longest path component.
pub const NAME_MAX: usize = 255;
/// Open handles per session.
pub const OPEN_MAX: usize = 32;
/// The smallest and largest buffer a session may ask for.
pub const BUFFER_MIN: u64 = 4096;
pub const BUFFER_MAX: u64 = 64 * 1024;
/// The buffer [`Fs`] asks for.
pub const BUFFER_DEFAULT: u64 = 16 * 1024;
/// How long [`Fs`] waits for the service to (re)appear in the name service.
pub const CONNECT_WAIT_NS: u64 = 5_000_000_000;
/// The buffer [`Fs`] asks the soft bus server for (the most one remote call moves).
pub const REMOTE_BUFFER: u64 = 32 * 1024;
/// How long [`Fs`] waits for the soft bus server when a path leads into a remote mount.
pub const REMOTE_CONNECT_WAIT_NS: u64 = 2_000_000_000;
/// The timeout of one request.
pub const CALL_TIMEOUT_NS: u64 = 30_000_000_000;

/// `Open` flags.
pub mod flags {
    pub const READ: u32 = 1;
    pub const WRITE: u32 = 2;
    /// Create the file if it does not exist (with the request's `mode`).
    pub const CREATE: u32 = 4;
    /// With `CREATE`: fail with `Exists` if it exists.
    pub const EXCLUSIVE: u32 = 8;
    /// Cut the file to length 0 (needs `WRITE`).
    pub const TRUNCATE: u32 = 16;
    /// Every write goes to the end of the file.
    pub const APPEND: u32 = 32;
    /// The path must name a directory (open for `ReadDir`).
    pub const DIRECTORY: u32 = 64;
    /// Do not follow a symbolic link in the last component (it gives `Loop`).
    pub const NOFOLLOW: u32 = 128;
    /// Every flag the server knows.
    pub const ALL: u32 = 255;
}

/// `Seek` origins.
pub mod whence {
    pub const SET: u8 = 0;
    pub const CURRENT: u8 = 1;
    pub const END: u8 = 2;
}

/// Why a file-system operation failed. Each has a Linux errno ([`Error::errno`]); the codes
/// on the wire are the discriminants. `Unavailable`, `TimedOut` and `Protocol` are made by the
/// client and never sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u16)]
pub enum Error {
    NotFound = 1,
    Exists = 2,
    NotDirectory = 3,
    IsDirectory = 4,
    NotEmpty = 5,
    /// The file system (or tmpfs's quota) is full.
    NoSpace = 6,
    /// A component longer than [`NAME_MAX`] or a path longer than [`PATH_MAX`].
    NameTooLong = 7,
    /// Not an absolute path, not valid bytes (NUL), or an operation on `/` itself.
    InvalidPath = 8,
    /// A read-only mount (the boot archive) or handle.
    ReadOnly = 9,
    /// Past the largest file size.
    TooBig = 10,
    InvalidArgument = 11,
    /// A mount point cannot be removed or renamed.
    Busy = 12,
    /// No such open handle, or not open for this operation.
    BadHandle = 13,
    /// The session has [`OPEN_MAX`] handles open.
    TooManyOpen = 14,
    /// Too many symbolic links (or `NOFOLLOW` on one).
    Loop = 15,
    /// The disk failed.
    Io = 16,
    /// The file system's metadata is inconsistent; the operation was refused.
    Corrupt = 17,
    /// The file system cannot do this (a feature it lacks).
    Unsupported = 18,
    /// A handle of an earlier server incarnation, or of a file that was deleted meanwhile.
    Stale = 19,
    /// A rename between two mounts.
    CrossDevice = 20,
    /// The request needs a session (`Attach`), or a buffer (`Buffer`) first.
    NoSession = 21,
    /// A range outside the session's buffer.
    OutOfRange = 22,
    /// The server is out of memory.
    NoMemory = 23,
    /// The service cannot be reached (client side).
    Unavailable = 24,
    /// The service did not answer in time (client side).
    TimedOut = 25,
    /// The service answered something this client does not understand (client side).
    Protocol = 26,
    /// The entry is not a symbolic link (`Readlink`).
    NotSymlink = 27,
    /// The path leads into a mount another server serves (client side: [`Fs`] follows it).
    Redirected = 28,
    /// The remote device's policy, or its user, refused (remote mounts).
    PermissionDenied = 29,
}

const ERRORS: [Error; 29] = [
    Error::NotFound,
    Error::Exists,
    Error::NotDirectory,
    Error::IsDirectory,
    Error::NotEmpty,
    Error::NoSpace,
    Error::NameTooLong,
    Error::InvalidPath,
    Error::ReadOnly,
    Error::TooBig,
    Error::InvalidArgument,
    Error::Busy,
    Error::BadHandle,
    Error::TooManyOpen,
    Error::Loop,
    Error::Io,
    Error::Corrupt,
    Error::Unsupported,
    Error::Stale,
    Error::CrossDevice,
    Error::NoSession,
    Error::OutOfRange,
    Error::NoMemory,
    Error::Unavailable,
    Error::TimedOut,
    Error::Protocol,
    Error::NotSymlink,
    Error::Redirected,
    Error::PermissionDenied,
];

impl Error {
    /// The error with wire code `code`.
    pub fn from_code(code: u16) -> Option<Error> {
        ERRORS.iter().copied().find(|e| *e as u16 == code)
    }

    /// The Linux errno (docs/fs.md).
    pub fn errno(self) -> i32 {
        match self {
            Error::NotFound => 2,                                                  // ENOENT
            Error::Exists => 17,                                                   // EEXIST
            Error::NotDirectory => 20,                                             // ENOTDIR
            Error::IsDirectory => 21,                                              // EISDIR
            Error::NotEmpty => 39,                                                 // ENOTEMPTY
            Error::NoSpace => 28,                                                  // ENOSPC
            Error::NameTooLong => 36,                                              // ENAMETOOLONG
            Error::InvalidPath | Error::InvalidArgument | Error::NotSymlink => 22, // EINVAL
            Error::ReadOnly => 30,                                                 // EROFS
            Error::TooBig => 27,                                                   // EFBIG
            Error::Busy => 16,                                                     // EBUSY
            Error::BadHandle | Error::NoSession => 9,                              // EBADF
            Error::TooManyOpen => 24,                                              // EMFILE
            Error::Loop => 40,                                                     // ELOOP
            Error::Io | Error::Corrupt | Error::Unavailable | Error::Protocol | Error::Redirected => 5, // EIO
            Error::Unsupported => 95,                                              // EOPNOTSUPP
            Error::Stale => 116,                                                   // ESTALE
            Error::CrossDevice => 18,                                              // EXDEV
            Error::OutOfRange => 14,                                               // EFAULT
            Error::NoMemory => 12,                                                 // ENOMEM
            Error::TimedOut => 110,                                                // ETIMEDOUT
            Error::PermissionDenied => 13,                                         // EACCES
        }
    }

    /// A short description.
    pub fn text(self) -> &'static str {
        match self {
            Error::NotFound => "no such file or directory",
            Error::Exists => "file exists",
            Error::NotDirectory => "not a directory",
            Error::IsDirectory => "is a directory",
            Error::NotEmpty => "directory not empty",
            Error::NoSpace => "no space left",
            Error::NameTooLong => "name too long",
            Error::InvalidPath => "invalid path",
            Error::ReadOnly => "read-only",
            Error::TooBig => "file too large",
            Error::InvalidArgument => "invalid argument",
            Error::Busy => "busy (a mount point)",
            Error::BadHandle => "bad handle",
            Error::TooManyOpen => "too many open files",
            Error::Loop => "too many symbolic links",
            Error::Io => "input/output error",
            Error::Corrupt => "file system corrupt",
            Error::Unsupported => "not supported",
            Error::Stale => "stale handle",
            Error::CrossDevice => "across mounts",
            Error::NoSession => "no session",
            Error::OutOfRange => "range outside the buffer",
            Error::NoMemory => "out of memory",
            Error::Unavailable => "file service unavailable",
            Error::TimedOut => "file service timed out",
            Error::Protocol => "protocol error",
            Error::NotSymlink => "not a symbolic link",
            Error::Redirected => "served by another server",
            Error::PermissionDenied => "permission denied",
        }
    }
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.text())
    }
}

impl Wire for Error {
    const SIZE: usize = 2;
    fn put(&self, w: &mut Writer) {
        (*self as u16).put(w);
    }
    fn get(r: &mut Reader) -> Result<Self, DecodeError> {
        Error::from_code(u16::get(r)?).ok_or(DecodeError::InvalidValue)
    }
}

rt::protocol! {
    /// The file-system service.
    pub protocol FileSystem {
        request Request {
            /// A session for the caller: an endpoint badged for it alone.
            Attach = 1,
            /// The session's shared buffer of `len` bytes (once per session).
            Buffer { len: u64 } = 2,
            /// Opens `path` with `flags` (module [`flags`]); `mode` for a new file.
            Open { path: BufRange, flags: u32, mode: u16 } = 3,
            Close { handle: u32 } = 4,
            /// Reads up to `len` bytes at `at` (or the handle's position, which advances) to
            /// buffer offset 0.
            Read { handle: u32, len: u32, at: Option<u64> } = 5,
            /// Writes `len` bytes from buffer offset 0 at `at` (or the position / the end with
            /// `APPEND`).
            Write { handle: u32, len: u32, at: Option<u64> } = 6,
            Seek { handle: u32, whence: u8, offset: i64 } = 7,
            /// A [`Stat`] record; `follow`: follow a symbolic link in the last component.
            Stat { path: BufRange, follow: bool } = 8,
            FStat { handle: u32 } = 9,
            /// Directory entries from `cookie` (0: the start) of a handle opened with
            /// `DIRECTORY`, as many whole records as fit in the buffer.
            ReadDir { handle: u32, cookie: u64 } = 10,
            Mkdir { path: BufRange, mode: u16 } = 11,
            Unlink { path: BufRange } = 12,
            Rmdir { path: BufRange } = 13,
            Rename { from: BufRange, to: BufRange } = 14,
            Truncate { path: BufRange, size: u64 } = 15,
            FTruncate { handle: u32, size: u64 } = 16,
            /// Makes the file (on ext2: the whole file system) durable.
            Fsync { handle: u32 } = 17,
            Symlink { target: BufRange, path: BufRange } = 18,
            /// The link's target to buffer offset 0.
            Readlink { path: BufRange } = 19,
            /// Sets the permission bits (`mode & 0o7777`).
            Chmod { path: BufRange, mode: u16 } = 20,
            /// The `index`-th mount as a [`MountInfo`] record (or `NoMore`).
            Mounts { index: u32 } = 21,
            /// The [`MountInfo`] of the mount holding `path`.
            StatFs { path: BufRange } = 22,
            /// Access and modification times (seconds since 1970).
            SetTimes { path: BufRange, atime: u64, mtime: u64 } = 23,
            /// Makes every mount durable.
            Sync = 24,
        }
        response Response {
            Done = 1,
            Session { endpoint: Cap } = 2,
            Buffer { memory: Cap, len: u64 } = 3,
            Opened { handle: u32, kind: u8, size: u64 } = 4,
            /// `len` bytes at buffer offset 0 (0 at the end of the file).
            Data { len: u64 } = 5,
            Written { len: u64 } = 6,
            Position { pos: u64 } = 7,
            /// A record of `len` bytes at buffer offset 0.
            Record { len: u32 } = 8,
            /// `count` directory records (`len` bytes) at buffer offset 0; continue from
            /// `cookie`. `count` 0: the end.
            Entries { count: u32, len: u32, cookie: u64 } = 9,
            NoMore = 10,
            Failed { error: Error } = 11,
            /// The path leads into a mount served by the soft bus server (`/remote`): ask it,
            /// with the path(s) inside that mount at these ranges (`second` is empty but for a
            /// rename). See docs/fs.md, "Remote mounts".
            Redirect { path: BufRange, second: BufRange } = 12,
        }
    }
}

/// A free slot of a server's handle table (the first empty one, or a new one up to
/// [`OPEN_MAX`]): its index, or `TooManyOpen`.
pub fn free_slot<T>(files: &mut Vec<Option<T>>) -> Result<usize, Error> {
    match files.iter().position(Option::is_none) {
        Some(i) => Ok(i),
        None if files.len() < OPEN_MAX => {
            files.push(None);
            Ok(files.len() - 1)
        }
        None => Err(Error::TooManyOpen),
    }
}

/// What a directory entry or file is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Unknown = 0,
    Regular = 1,
    Directory = 2,
    Symlink = 3,
    CharDevice = 4,
    BlockDevice = 5,
    Fifo = 6,
    Socket = 7,
}

impl Kind {
    pub fn from_u8(v: u8) -> Kind {
        match v {
            1 => Kind::Regular,
            2 => Kind::Directory,
            3 => Kind::Symlink,
            4 => Kind::CharDevice,
            5 => Kind::BlockDevice,
            6 => Kind::Fifo,
            7 => Kind::Socket,
            _ => Kind::Unknown,
        }
    }

    /// The `S_IFMT` bits of a POSIX mode.
    pub fn mode_bits(self) -> u32 {
        match self {
            Kind::Regular => 0o100000,
            Kind::Directory => 0o040000,
            Kind::Symlink => 0o120000,
            Kind::CharDevice => 0o020000,
            Kind::BlockDevice => 0o060000,
            Kind::Fifo => 0o010000,
            Kind::Socket => 0o140000,
            Kind::Unknown => 0,
        }
    }

    /// The `d_type` of `getdents64`.
    pub fn dtype(self) -> u8 {
        match self {
            Kind::Fifo => 1,
            Kind::CharDevice => 2,
            Kind::Directory => 4,
            Kind::BlockDevice => 6,
            Kind::Regular => 8,
            Kind::Symlink => 10,
            Kind::Socket => 12,
            Kind::Unknown => 0,
        }
    }
}

/// A file's metadata (a `Stat` record).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    /// The inode number within its mount.
    pub ino: u64,
    /// Which mount (index in `Mounts`): `st_dev`.
    pub mount: u32,
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte units allocated.
    pub blocks: u64,
    /// Seconds since 1970.
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
}

/// Bytes of a `Stat` record.
pub const STAT_LEN: usize = 72;

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

impl Stat {
    /// The full POSIX `st_mode` (type and permission bits).
    pub fn st_mode(&self) -> u32 {
        self.kind.mode_bits() | (self.mode as u32 & 0o7777)
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Directory
    }

    pub fn encode(&self) -> [u8; STAT_LEN] {
        let mut b = [0; STAT_LEN];
        b[0..8].copy_from_slice(&self.ino.to_le_bytes());
        b[8..16].copy_from_slice(&self.size.to_le_bytes());
        b[16..24].copy_from_slice(&self.blocks.to_le_bytes());
        b[24..32].copy_from_slice(&self.atime.to_le_bytes());
        b[32..40].copy_from_slice(&self.mtime.to_le_bytes());
        b[40..48].copy_from_slice(&self.ctime.to_le_bytes());
        b[48..52].copy_from_slice(&self.nlink.to_le_bytes());
        b[52..56].copy_from_slice(&self.uid.to_le_bytes());
        b[56..60].copy_from_slice(&self.gid.to_le_bytes());
        b[60..64].copy_from_slice(&self.mount.to_le_bytes());
        b[64..66].copy_from_slice(&self.mode.to_le_bytes());
        b[66] = self.kind as u8;
        b
    }

    pub fn decode(b: &[u8]) -> Option<Stat> {
        if b.len() < STAT_LEN {
            return None;
        }
        Some(Stat {
            ino: u64_at(b, 0),
            size: u64_at(b, 8),
            blocks: u64_at(b, 16),
            atime: u64_at(b, 24),
            mtime: u64_at(b, 32),
            ctime: u64_at(b, 40),
            nlink: u32_at(b, 48),
            uid: u32_at(b, 52),
            gid: u32_at(b, 56),
            mount: u32_at(b, 60),
            mode: u16::from_le_bytes([b[64], b[65]]),
            kind: Kind::from_u8(b[66]),
        })
    }
}

/// One directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: Vec<u8>,
}

/// Bytes before the name in a directory record: ino (8), kind (1), name length (1).
pub const DIRENT_HEADER: usize = 10;

impl DirEntry {
    /// Appends the record (`name` at most [`NAME_MAX`] bytes).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let name = &self.name[..self.name.len().min(NAME_MAX)];
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.push(self.kind as u8);
        out.push(name.len() as u8);
        out.extend_from_slice(name);
    }

    /// Appends the record if `out` stays within `room` bytes (a `ReadDir` answer that must fit
    /// the session's buffer); whether it did.
    pub fn encode_within(&self, out: &mut Vec<u8>, room: usize) -> bool {
        let before = out.len();
        self.encode_into(out);
        if out.len() > room {
            out.truncate(before);
            return false;
        }
        true
    }

    /// The first record of `b` and the bytes it takes.
    pub fn decode(b: &[u8]) -> Option<(DirEntry, usize)> {
        if b.len() < DIRENT_HEADER {
            return None;
        }
        let len = b[9] as usize;
        let name = b.get(DIRENT_HEADER..DIRENT_HEADER + len)?.to_vec();
        Some((DirEntry { ino: u64_at(b, 0), kind: Kind::from_u8(b[8]), name }, DIRENT_HEADER + len))
    }

    /// The name as text (lossy).
    pub fn name_str(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// A mount (a `Mounts` or `StatFs` record).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountInfo {
    pub path: String,
    /// `tmpfs`, `bootfs` or `ext2`.
    pub fs_type: String,
    pub read_only: bool,
    pub block_size: u32,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub files: u64,
    pub free_files: u64,
}

impl MountInfo {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        for v in [self.total_bytes, self.free_bytes, self.files, self.free_files] {
            b.extend_from_slice(&v.to_le_bytes());
        }
        b.extend_from_slice(&self.block_size.to_le_bytes());
        b.push(self.read_only as u8);
        let t = &self.fs_type.as_bytes()[..self.fs_type.len().min(255)];
        let p = &self.path.as_bytes()[..self.path.len().min(PATH_MAX)];
        b.push(t.len() as u8);
        b.extend_from_slice(&(p.len() as u16).to_le_bytes());
        b.extend_from_slice(t);
        b.extend_from_slice(p);
        b
    }

    pub fn decode(b: &[u8]) -> Option<MountInfo> {
        let header = 40;
        let tl = *b.get(37)? as usize;
        let pl = u16::from_le_bytes([*b.get(38)?, *b.get(39)?]) as usize;
        let t = b.get(header..header + tl)?;
        let p = b.get(header + tl..header + tl + pl)?;
        Some(MountInfo {
            total_bytes: u64_at(b, 0),
            free_bytes: u64_at(b, 8),
            files: u64_at(b, 16),
            free_files: u64_at(b, 24),
            block_size: u32_at(b, 32),
            read_only: b[36] != 0,
            fs_type: String::from_utf8_lossy(t).into_owned(),
            path: String::from_utf8_lossy(p).into_owned(),
        })
    }
}

/// A connection to the file-system service.
struct Conn {
    session: Handle,
    buffer: SharedBuffer,
    /// Counts (re)connections: handles remember the one they were opened in.
    generation: u64,
    /// The paths of the latest `Redirect` answer.
    redirect: RefCell<Option<(String, Option<String>)>>,
}

/// Builds a request on a connection from its path(s) (put into that connection's buffer).
type MakeRequest<'a> = dyn Fn(&Conn, &[&str]) -> Result<Request, Error> + 'a;

/// Which server a handle belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// The file-system service.
    Local,
    /// The soft bus server, for paths under a remote mount (`/remote`).
    Remote,
}

impl Drop for Conn {
    fn drop(&mut self) {
        let _ = sys::cap_close(self.session);
    }
}

/// A client of the file-system service: connects through the name service, reconnects when the
/// service restarted. Single-threaded (interior mutability for reconnection).
pub struct Fs {
    names: RefCell<Option<Client<Names>>>,
    conn: RefCell<Conn>,
    /// The soft bus server's file session, made at the first redirect.
    remote: RefCell<Option<Conn>>,
    /// Remote connections made so far (the generation of the next one).
    remote_generation: core::cell::Cell<u64>,
}

/// `Attach` and a `Buffer` of `len` bytes on `endpoint` (which the caller keeps).
fn attach(endpoint: Handle, generation: u64, len: u64) -> Result<Conn, Error> {
    let root = Client::<FileSystem>::new(endpoint);
    let session = match root.call(&Request::Attach, CALL_TIMEOUT_NS).map_err(ipc_error)? {
        Response::Session { endpoint } => endpoint.0,
        Response::Failed { error } => return Err(error),
        _ => return Err(Error::Protocol),
    };
    let client = Client::<FileSystem>::new(session);
    let buffer = match client.call(&Request::Buffer { len }, CALL_TIMEOUT_NS) {
        Ok(Response::Buffer { memory, .. }) => SharedBuffer::map(memory.0).map_err(|_| Error::NoMemory),
        Ok(Response::Failed { error }) => Err(error),
        Ok(_) => Err(Error::Protocol),
        Err(e) => Err(ipc_error(e)),
    };
    match buffer {
        Ok(buffer) => Ok(Conn { session, buffer, generation, redirect: RefCell::new(None) }),
        Err(e) => {
            let _ = sys::cap_close(session);
            Err(e)
        }
    }
}

fn ipc_error(e: IpcError) -> Error {
    match e {
        IpcError::Kernel(sys::Error::PeerDied | sys::Error::InvalidHandle) => Error::Unavailable,
        IpcError::Kernel(sys::Error::TimedOut) => Error::TimedOut,
        IpcError::Kernel(_) => Error::Unavailable,
        IpcError::Rejected(_) | IpcError::BadReply(_) => Error::Protocol,
    }
}

/// A refused access to the session's buffer: `Unavailable` (so the caller reconnects) when the
/// server died and took its buffer with it, else `other`.
fn buffer_error(e: BufferError, other: Error) -> Error {
    match e {
        BufferError::Gone => Error::Unavailable,
        BufferError::OutOfRange | BufferError::ReadOnly => other,
    }
}

fn lookup(names: &mut Client<Names>) -> Result<Handle, Error> {
    crate::lookup(names, "fs", CONNECT_WAIT_NS).map_err(|_| Error::Unavailable)
}

impl Fs {
    /// Looks `fs` up in the name service (waiting up to [`CONNECT_WAIT_NS`]) and attaches. The
    /// manifest entry of the caller needs `endpoint fs`.
    pub fn connect() -> Result<Fs, Error> {
        let mut names = crate::names().map_err(|_| Error::Unavailable)?;
        let endpoint = lookup(&mut names)?;
        let conn = attach(endpoint, 1, BUFFER_DEFAULT);
        let _ = sys::cap_close(endpoint);
        Ok(Fs::with_conn(Some(names), conn?))
    }

    /// Attaches through `endpoint` (the service's endpoint, which the caller keeps), without
    /// the name service: no reconnection after a restart.
    pub fn with_endpoint(endpoint: Handle) -> Result<Fs, Error> {
        Ok(Fs::with_conn(None, attach(endpoint, 1, BUFFER_DEFAULT)?))
    }

    fn with_conn(names: Option<Client<Names>>, conn: Conn) -> Fs {
        Fs {
            names: RefCell::new(names),
            conn: RefCell::new(conn),
            remote: RefCell::new(None),
            remote_generation: core::cell::Cell::new(0),
        }
    }

    /// The size of the shared buffer: the most bytes one request moves.
    pub fn buffer_len(&self) -> usize {
        self.conn.borrow().buffer.len()
    }

    /// A new connection after the service restarted.
    fn reconnect(&self) -> Result<(), Error> {
        let mut names = self.names.borrow_mut();
        let Some(names) = names.as_mut() else { return Err(Error::Unavailable) };
        let endpoint = lookup(names)?;
        let generation = self.conn.borrow().generation + 1;
        let conn = attach(endpoint, generation, BUFFER_DEFAULT);
        let _ = sys::cap_close(endpoint);
        *self.conn.borrow_mut() = conn?;
        Ok(())
    }

    /// Runs `op` on the connection; if the service is gone, reconnects and runs it once more.
    fn retry<T>(&self, op: impl Fn(&Conn) -> Result<T, Error>) -> Result<T, Error> {
        let first = op(&self.conn.borrow());
        match first {
            Err(Error::Unavailable) => {
                self.reconnect()?;
                op(&self.conn.borrow())
            }
            other => other,
        }
    }

    /// Runs `op` for a handle of connection `generation` of `route`: `Stale` if that
    /// connection is gone.
    fn on_handle<T>(
        &self,
        route: Route,
        generation: u64,
        op: impl FnOnce(&Conn) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let result = match route {
            Route::Local => {
                let conn = self.conn.borrow();
                if conn.generation != generation {
                    return Err(Error::Stale);
                }
                op(&conn)
            }
            Route::Remote => {
                let remote = self.remote.borrow();
                match remote.as_ref() {
                    Some(conn) if conn.generation == generation => op(conn),
                    _ => return Err(Error::Stale),
                }
            }
        };
        match result {
            Err(Error::Unavailable) => {
                // Later path operations work again; this handle does not.
                match route {
                    Route::Local => {
                        let _ = self.reconnect();
                    }
                    Route::Remote => *self.remote.borrow_mut() = None,
                }
                Err(Error::Stale)
            }
            Err(Error::Redirected) => Err(Error::Protocol),
            other => other,
        }
    }

    /// A file session with the soft bus server (docs/fs.md, "Remote mounts"): `softbus` from
    /// the name service (the caller's manifest entry needs `endpoint softbus`), its `Files`
    /// endpoint, `Attach` and `Buffer` there.
    fn connect_remote(&self) -> Result<(), Error> {
        use crate::softbus::{Request as BusRequest, Response as BusResponse, SoftBus};
        let mut names = self.names.borrow_mut();
        let Some(names) = names.as_mut() else { return Err(Error::Unavailable) };
        let bus = crate::lookup(names, "softbus", REMOTE_CONNECT_WAIT_NS).map_err(|_| Error::Unavailable)?;
        let files = Client::<SoftBus>::new(bus).call(&BusRequest::Files, CALL_TIMEOUT_NS);
        let _ = sys::cap_close(bus);
        let endpoint = match files.map_err(ipc_error)? {
            BusResponse::Files { endpoint } => endpoint.0,
            _ => return Err(Error::Unavailable),
        };
        let generation = self.remote_generation.get() + 1;
        self.remote_generation.set(generation);
        // Each remote read or write is a network round trip: move as much as a call takes.
        let conn = attach(endpoint, generation, REMOTE_BUFFER);
        let _ = sys::cap_close(endpoint);
        *self.remote.borrow_mut() = Some(conn?);
        Ok(())
    }

    /// Sends the request `make` builds from `paths` to the file-system service (reconnecting
    /// once after a restart); if it redirects, to the soft bus server with the paths it gave
    /// (connecting, or reconnecting once after a restart). The answer, and which server gave it:
    /// that connection's buffer holds the answer's data ([`Fs::on`]).
    fn routed(&self, paths: &[&str], make: &MakeRequest<'_>) -> Result<(Response, Route), Error> {
        match self.retry(|c| c.call(&make(c, paths)?)) {
            Err(Error::Redirected) => {}
            other => return other.map(|r| (r, Route::Local)),
        }
        let (first, second) = self.conn.borrow().redirect.take().ok_or(Error::Protocol)?;
        let mut inside: Vec<&str> = alloc::vec![first.as_str()];
        inside.extend(second.as_deref());
        if inside.len() != paths.len() {
            return Err(Error::Protocol);
        }
        for attempt in 0..2 {
            if self.remote.borrow().is_none() {
                self.connect_remote()?;
            }
            let result = match self.remote.borrow().as_ref() {
                Some(conn) => make(conn, &inside).and_then(|request| conn.call(&request)),
                None => Err(Error::Unavailable),
            };
            match result {
                Err(Error::Unavailable | Error::NoSession) if attempt == 0 => *self.remote.borrow_mut() = None,
                Err(Error::Redirected) => return Err(Error::Protocol),
                other => return other.map(|r| (r, Route::Remote)),
            }
        }
        Err(Error::Unavailable)
    }

    /// Runs `f` on the connection of `route`, right after [`Fs::routed`] answered from it.
    fn on<T>(&self, route: Route, f: impl FnOnce(&Conn) -> Result<T, Error>) -> Result<T, Error> {
        match route {
            Route::Local => f(&self.conn.borrow()),
            Route::Remote => match self.remote.borrow().as_ref() {
                Some(conn) => f(conn),
                None => Err(Error::Stale),
            },
        }
    }

    /// Opens `path` with `flags` (module [`flags`]); `mode` for a file it creates.
    pub fn open(&self, path: &str, flags: u32, mode: u16) -> Result<File<'_>, Error> {
        let (response, route) =
            self.routed(&[path], &|c, p| Ok(Request::Open { path: c.put(0, p[0].as_bytes())?, flags, mode }))?;
        let Response::Opened { handle, kind, size } = response else { return Err(unexpected(response)) };
        let generation = self.on(route, |c| Ok(c.generation))?;
        Ok(File { fs: self, route, handle, generation, kind: Kind::from_u8(kind), size_at_open: size, open: true })
    }

    /// Metadata of `path` (following a symbolic link in the last component).
    pub fn stat(&self, path: &str) -> Result<Stat, Error> {
        self.stat_with(path, true)
    }

    /// Metadata of `path` itself (a symbolic link is not followed).
    pub fn lstat(&self, path: &str) -> Result<Stat, Error> {
        self.stat_with(path, false)
    }

    fn stat_with(&self, path: &str, follow: bool) -> Result<Stat, Error> {
        let (response, route) =
            self.routed(&[path], &|c, p| Ok(Request::Stat { path: c.put(0, p[0].as_bytes())?, follow }))?;
        self.on(route, |c| c.stat(response))
    }

    /// Every entry of the directory `path` (without `.` and `..`).
    pub fn read_dir(&self, path: &str) -> Result<Vec<DirEntry>, Error> {
        let dir = self.open(path, flags::READ | flags::DIRECTORY, 0)?;
        let mut out = Vec::new();
        let mut cookie = 0;
        loop {
            let (entries, next) = dir.read_dir_from(cookie)?;
            if entries.is_empty() {
                break;
            }
            out.extend(entries);
            cookie = next;
        }
        Ok(out)
    }

    /// A request on `paths` that answers `Done`.
    fn simple(&self, paths: &[&str], make: &MakeRequest<'_>) -> Result<(), Error> {
        match self.routed(paths, make)?.0 {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    pub fn mkdir(&self, path: &str, mode: u16) -> Result<(), Error> {
        self.simple(&[path], &|c, p| Ok(Request::Mkdir { path: c.put(0, p[0].as_bytes())?, mode }))
    }

    pub fn unlink(&self, path: &str) -> Result<(), Error> {
        self.simple(&[path], &|c, p| Ok(Request::Unlink { path: c.put(0, p[0].as_bytes())? }))
    }

    pub fn rmdir(&self, path: &str) -> Result<(), Error> {
        self.simple(&[path], &|c, p| Ok(Request::Rmdir { path: c.put(0, p[0].as_bytes())? }))
    }

    pub fn rename(&self, from: &str, to: &str) -> Result<(), Error> {
        self.simple(&[from, to], &|c, p| {
            let from = c.put(0, p[0].as_bytes())?;
            let to = c.put(from.len, p[1].as_bytes())?;
            Ok(Request::Rename { from, to })
        })
    }

    pub fn truncate(&self, path: &str, size: u64) -> Result<(), Error> {
        self.simple(&[path], &|c, p| Ok(Request::Truncate { path: c.put(0, p[0].as_bytes())?, size }))
    }

    /// Creates the symbolic link `path` pointing at `target`.
    pub fn symlink(&self, target: &str, path: &str) -> Result<(), Error> {
        self.simple(&[path], &|c, p| {
            let target = c.put(0, target.as_bytes())?;
            let path = c.put(target.len, p[0].as_bytes())?;
            Ok(Request::Symlink { target, path })
        })
    }

    pub fn readlink(&self, path: &str) -> Result<Vec<u8>, Error> {
        let (response, route) =
            self.routed(&[path], &|c, p| Ok(Request::Readlink { path: c.put(0, p[0].as_bytes())? }))?;
        match response {
            Response::Data { len } => self.on(route, |c| c.get(len)),
            other => Err(unexpected(other)),
        }
    }

    pub fn chmod(&self, path: &str, mode: u16) -> Result<(), Error> {
        self.simple(&[path], &|c, p| Ok(Request::Chmod { path: c.put(0, p[0].as_bytes())?, mode }))
    }

    pub fn set_times(&self, path: &str, atime: u64, mtime: u64) -> Result<(), Error> {
        self.simple(&[path], &|c, p| Ok(Request::SetTimes { path: c.put(0, p[0].as_bytes())?, atime, mtime }))
    }

    /// Makes every local mount durable (remote writes are made durable by `fsync`).
    pub fn sync(&self) -> Result<(), Error> {
        self.simple(&[], &|_, _| Ok(Request::Sync))
    }

    /// The mounts, in mount order.
    pub fn mounts(&self) -> Result<Vec<MountInfo>, Error> {
        let mut out = Vec::new();
        for index in 0..64 {
            let next = self.retry(|c| match c.call(&Request::Mounts { index })? {
                Response::Record { len } => c.mount(len).map(Some),
                Response::NoMore => Ok(None),
                other => Err(unexpected(other)),
            })?;
            match next {
                Some(m) => out.push(m),
                None => break,
            }
        }
        Ok(out)
    }

    /// The mount holding `path`.
    pub fn statfs(&self, path: &str) -> Result<MountInfo, Error> {
        self.retry(|c| {
            let path = c.put(0, path.as_bytes())?;
            match c.call(&Request::StatFs { path })? {
                Response::Record { len } => c.mount(len),
                other => Err(unexpected(other)),
            }
        })
    }

    /// The whole file (at most `limit` bytes, else `TooBig`).
    pub fn read_file_limited(&self, path: &str, limit: usize) -> Result<Vec<u8>, Error> {
        let mut file = self.open(path, flags::READ, 0)?;
        let mut out = Vec::new();
        let mut chunk = alloc::vec![0u8; self.buffer_len()];
        loop {
            let n = file.read(&mut chunk)?;
            if n == 0 {
                break;
            }
            if out.len() + n > limit {
                return Err(Error::TooBig);
            }
            out.extend_from_slice(&chunk[..n]);
        }
        file.close()?;
        Ok(out)
    }

    /// The whole file (at most 16 MiB).
    pub fn read_file(&self, path: &str) -> Result<Vec<u8>, Error> {
        self.read_file_limited(path, 16 << 20)
    }

    /// Creates or replaces the contents of `path` with `bytes` (mode 0o644 when new).
    pub fn write_file(&self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        let mut file = self.open(path, flags::WRITE | flags::CREATE | flags::TRUNCATE, 0o644)?;
        file.write(bytes)?;
        file.close()
    }

    /// Appends `bytes` to `path` (created when missing).
    pub fn append_file(&self, path: &str, bytes: &[u8]) -> Result<(), Error> {
        let mut file = self.open(path, flags::WRITE | flags::CREATE | flags::APPEND, 0o644)?;
        file.write(bytes)?;
        file.close()
    }
}

fn unexpected(response: Response) -> Error {
    match response {
        Response::Failed { error } => error,
        _ => Error::Protocol,
    }
}

impl Conn {
    /// One request; a `Redirect` answer is kept (for [`Fs::routed`]) and gives `Redirected`.
    fn call(&self, request: &Request) -> Result<Response, Error> {
        let client = Client::<FileSystem>::new(self.session);
        match client.call(request, CALL_TIMEOUT_NS).map_err(ipc_error)? {
            Response::Redirect { path, second } => {
                let text = |r: BufRange| -> Result<String, Error> {
                    let mut bytes = alloc::vec![0; usize::try_from(r.len).map_err(|_| Error::Protocol)?];
                    self.buffer.read(r.offset, &mut bytes).map_err(|e| buffer_error(e, Error::Protocol))?;
                    String::from_utf8(bytes).map_err(|_| Error::Protocol)
                };
                let first = text(path)?;
                let second = if second.len == 0 { None } else { Some(text(second)?) };
                *self.redirect.borrow_mut() = Some((first, second));
                Err(Error::Redirected)
            }
            other => Ok(other),
        }
    }

    /// Puts `bytes` into the buffer at `offset`.
    fn put(&self, offset: u64, bytes: &[u8]) -> Result<BufRange, Error> {
        self.buffer.write(offset, bytes).map_err(|e| buffer_error(e, Error::NameTooLong))?;
        Ok(BufRange { offset, len: bytes.len() as u64 })
    }

    /// The first `len` bytes of the buffer.
    fn get(&self, len: u64) -> Result<Vec<u8>, Error> {
        let len = usize::try_from(len).ok().filter(|l| *l <= self.buffer.len()).ok_or(Error::Protocol)?;
        let mut out = alloc::vec![0; len];
        self.buffer.read(0, &mut out).map_err(|e| buffer_error(e, Error::Protocol))?;
        Ok(out)
    }

    fn stat(&self, response: Response) -> Result<Stat, Error> {
        match response {
            Response::Record { len } if len as usize >= STAT_LEN => {
                Stat::decode(&self.get(STAT_LEN as u64)?).ok_or(Error::Protocol)
            }
            other => Err(unexpected(other)),
        }
    }

    fn mount(&self, len: u32) -> Result<MountInfo, Error> {
        MountInfo::decode(&self.get(len as u64)?).ok_or(Error::Protocol)
    }
}

/// An open file or directory. Closed on drop (errors ignored); [`File::close`] reports them.
pub struct File<'a> {
    fs: &'a Fs,
    route: Route,
    handle: u32,
    generation: u64,
    kind: Kind,
    size_at_open: u64,
    open: bool,
}

impl File<'_> {
    /// What was opened.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The size when it was opened.
    pub fn size_at_open(&self) -> u64 {
        self.size_at_open
    }

    /// The server's handle number.
    pub fn handle(&self) -> u32 {
        self.handle
    }

    fn read_op(&self, buf: &mut [u8], at: Option<u64>) -> Result<usize, Error> {
        let handle = self.handle;
        self.fs.on_handle(self.route, self.generation, |c| {
            let len = buf.len().min(c.buffer.len()) as u32;
            match c.call(&Request::Read { handle, len, at })? {
                Response::Data { len: got } if got <= len as u64 => {
                    c.buffer.read(0, &mut buf[..got as usize]).map_err(|e| buffer_error(e, Error::Protocol))?;
                    Ok(got as usize)
                }
                other => Err(unexpected(other)),
            }
        })
    }

    /// Reads up to `buf.len()` bytes (at most a buffer's worth) at the position; 0 at the end.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        self.read_op(buf, None)
    }

    /// Reads up to `buf.len()` bytes at `offset`, not moving the position.
    pub fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        self.read_op(buf, Some(offset))
    }

    fn write_op(&self, data: &[u8], at: Option<u64>) -> Result<usize, Error> {
        let handle = self.handle;
        let mut done = 0;
        while done < data.len() {
            let at = at.map(|a| a + done as u64);
            let n = self.fs.on_handle(self.route, self.generation, |c| {
                let chunk = &data[done..data.len().min(done + c.buffer.len())];
                c.buffer.write(0, chunk).map_err(|e| buffer_error(e, Error::Protocol))?;
                match c.call(&Request::Write { handle, len: chunk.len() as u32, at })? {
                    Response::Written { len } => Ok(len as usize),
                    other => Err(unexpected(other)),
                }
            })?;
            if n == 0 {
                return Err(Error::NoSpace);
            }
            done += n;
        }
        Ok(done)
    }

    /// Writes all of `data` at the position (or the end, for `APPEND`).
    pub fn write(&mut self, data: &[u8]) -> Result<usize, Error> {
        self.write_op(data, None)
    }

    /// Writes all of `data` at `offset`, not moving the position.
    pub fn write_at(&self, offset: u64, data: &[u8]) -> Result<usize, Error> {
        self.write_op(data, Some(offset))
    }

    /// Moves the position (module [`whence`]); the new position.
    pub fn seek(&mut self, whence: u8, offset: i64) -> Result<u64, Error> {
        let handle = self.handle;
        self.fs.on_handle(self.route, self.generation, |c| match c.call(&Request::Seek { handle, whence, offset })? {
            Response::Position { pos } => Ok(pos),
            other => Err(unexpected(other)),
        })
    }

    pub fn stat(&self) -> Result<Stat, Error> {
        let handle = self.handle;
        self.fs.on_handle(self.route, self.generation, |c| {
            let response = c.call(&Request::FStat { handle })?;
            c.stat(response)
        })
    }

    pub fn truncate(&self, size: u64) -> Result<(), Error> {
        self.done(Request::FTruncate { handle: self.handle, size })
    }

    /// Makes the file's data and metadata durable.
    pub fn fsync(&self) -> Result<(), Error> {
        self.done(Request::Fsync { handle: self.handle })
    }

    fn done(&self, request: Request) -> Result<(), Error> {
        self.fs.on_handle(self.route, self.generation, |c| match c.call(&request)? {
            Response::Done => Ok(()),
            other => Err(unexpected(other)),
        })
    }

    /// Entries of a directory handle from `cookie` (0: the start), and the cookie to continue
    /// from; no entries at the end.
    pub fn read_dir_from(&self, cookie: u64) -> Result<(Vec<DirEntry>, u64), Error> {
        let handle = self.handle;
        self.fs.on_handle(self.route, self.generation, |c| match c.call(&Request::ReadDir { handle, cookie })? {
            Response::Entries { count, len, cookie } => {
                let bytes = c.get(len as u64)?;
                let mut out = Vec::new();
                let mut at = 0;
                for _ in 0..count {
                    let (entry, used) = DirEntry::decode(&bytes[at..]).ok_or(Error::Protocol)?;
                    out.push(entry);
                    at += used;
                }
                Ok((out, cookie))
            }
            other => Err(unexpected(other)),
        })
    }

    /// Closes the handle.
    pub fn close(mut self) -> Result<(), Error> {
        self.open = false;
        self.done(Request::Close { handle: self.handle })
    }
}

impl Drop for File<'_> {
    fn drop(&mut self) {
        if self.open {
            let _ = self.done(Request::Close { handle: self.handle });
        }
    }
}
