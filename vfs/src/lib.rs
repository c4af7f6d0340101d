//! The logic of Tutti's file-system service (`svc_fs`, docs/fs.md), kept free of system calls
//! so it is tested on the host: path checks ([`path`]), the [`FileSystem`] trait each mounted
//! file system implements, an in-memory file system with a byte quota ([`tmpfs`]), the boot
//! archive read-only ([`bootfs`]), ext2 through the `ext2fs` crate ([`ext2`]), and [`Vfs`]:
//! the mount table and path resolution across mounts and symbolic links.
//!
//! Every input is treated as hostile: paths are bounded and checked, offsets and sizes are
//! checked with overflow checks, and failures are typed [`Error`]s, never panics.
#![no_std]

extern crate alloc;

pub mod bootfs;
pub mod ext2;
pub mod path;
pub mod tmpfs;

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// A node of one file system (its inode number, or an index).
pub type NodeId = u64;

/// The most symbolic links one resolution follows.
pub const SYMLINK_MAX: usize = 8;

/// Why an operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    NotFound,
    Exists,
    NotDirectory,
    IsDirectory,
    NotEmpty,
    NoSpace,
    NameTooLong,
    /// Not absolute, a NUL byte, or `.`/`..`/`/` where a name is needed.
    InvalidPath,
    ReadOnly,
    TooBig,
    InvalidArgument,
    /// A mount point.
    Busy,
    Loop,
    Io,
    /// Inconsistent metadata, and what is wrong.
    Corrupt(&'static str),
    Unsupported(&'static str),
    CrossDevice,
    NoMemory,
    NotSymlink,
    /// The path continues in a forwarded mount, which another server serves: what to ask it
    /// is [`Vfs::take_forward`].
    Forwarded,
}

impl core::fmt::Display for Error {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Error::Corrupt(what) => write!(f, "corrupt: {what}"),
            Error::Unsupported(what) => write!(f, "unsupported: {what}"),
            other => write!(f, "{other:?}"),
        }
    }
}

pub type Result<T> = core::result::Result<T, Error>;

/// What a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Unknown,
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// A node's metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: u64,
    pub kind: Kind,
    /// Permission bits (`0o7777`).
    pub mode: u16,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    /// 512-byte units.
    pub blocks: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
}

/// A directory entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: u64,
    pub kind: Kind,
    pub name: Vec<u8>,
}

/// Space of a file system.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub files: u64,
    pub free_files: u64,
}

/// A mounted file system. Names are single components (checked by [`Vfs`]: not empty, no `/`,
/// not `.` or `..`, at most [`path::NAME_MAX`] bytes). The mutating methods default to
/// `ReadOnly`.
pub trait FileSystem {
    /// `tmpfs`, `bootfs`, `ext2`.
    fn fs_type(&self) -> &'static str;
    fn root(&self) -> NodeId;
    fn read_only(&self) -> bool;
    fn statfs(&mut self) -> StatFs;
    /// The current time (seconds since 1970) for timestamps.
    fn set_clock(&mut self, _now: u64) {}
    /// `NotDirectory` if `dir` is not a directory.
    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<NodeId>;
    fn stat(&mut self, node: NodeId) -> Result<Stat>;
    /// Bytes read at `offset` (0 at or past the end); `IsDirectory` for a directory.
    fn read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize>;
    /// The entry after `cookie` (0: the first) and the cookie of the one returned; `None` at
    /// the end. Without `.` and `..`.
    fn readdir(&mut self, dir: NodeId, cookie: u64) -> Result<Option<(DirEntry, u64)>>;
    fn readlink(&mut self, node: NodeId) -> Result<Vec<u8>>;

    fn write(&mut self, _node: NodeId, _offset: u64, _data: &[u8]) -> Result<usize> {
        Err(Error::ReadOnly)
    }
    fn truncate(&mut self, _node: NodeId, _size: u64) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn create(&mut self, _dir: NodeId, _name: &[u8], _mode: u16) -> Result<NodeId> {
        Err(Error::ReadOnly)
    }
    fn mkdir(&mut self, _dir: NodeId, _name: &[u8], _mode: u16) -> Result<NodeId> {
        Err(Error::ReadOnly)
    }
    fn symlink(&mut self, _dir: NodeId, _name: &[u8], _target: &[u8]) -> Result<NodeId> {
        Err(Error::ReadOnly)
    }
    fn unlink(&mut self, _dir: NodeId, _name: &[u8]) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn rmdir(&mut self, _dir: NodeId, _name: &[u8]) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn rename(&mut self, _from_dir: NodeId, _from: &[u8], _to_dir: NodeId, _to: &[u8]) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn set_mode(&mut self, _node: NodeId, _mode: u16) -> Result<()> {
        Err(Error::ReadOnly)
    }
    fn set_times(&mut self, _node: NodeId, _atime: u64, _mtime: u64) -> Result<()> {
        Err(Error::ReadOnly)
    }
    /// Makes everything written durable.
    fn sync(&mut self) -> Result<()> {
        Ok(())
    }
    /// Why the latest `Corrupt` error happened, once (for the server's log).
    fn take_problem(&mut self) -> Option<&'static str> {
        None
    }
}

/// A node somewhere in the tree: which mount, which node of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Loc {
    pub mount: usize,
    pub node: NodeId,
}

/// One mount.
pub struct Mount {
    /// Where: `/`, `/boot`...
    pub path: Vec<u8>,
    pub fs: Box<dyn FileSystem>,
    /// The directory it covers and its name there (`None` for `/`).
    covers: Option<(Loc, Vec<u8>)>,
    /// Served elsewhere ([`Vfs::mount_forward`]).
    pub forward: bool,
}

/// Where a path led into a forwarded mount.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Forward {
    /// The mount.
    pub mount: usize,
    /// The rest of the path inside it, absolute from its root (`/` for the root itself),
    /// `.` and `..` applied.
    pub path: Vec<u8>,
    /// The second path of a rename, when both lead into the same forwarded mount.
    pub second: Option<Vec<u8>>,
}

/// The stand-in of a forwarded mount: an empty read-only directory (what `Mounts` and
/// `StatFs` show; no operation reaches it, since resolution stops at its root).
struct Elsewhere(&'static str);

impl FileSystem for Elsewhere {
    fn fs_type(&self) -> &'static str {
        self.0
    }
    fn root(&self) -> NodeId {
        1
    }
    fn read_only(&self) -> bool {
        true
    }
    fn statfs(&mut self) -> StatFs {
        StatFs::default()
    }
    fn lookup(&mut self, _dir: NodeId, _name: &[u8]) -> Result<NodeId> {
        Err(Error::NotFound)
    }
    fn stat(&mut self, node: NodeId) -> Result<Stat> {
        Ok(Stat {
            ino: node,
            kind: Kind::Directory,
            mode: 0o755,
            nlink: 2,
            uid: 0,
            gid: 0,
            size: 0,
            blocks: 0,
            atime: 0,
            mtime: 0,
            ctime: 0,
        })
    }
    fn read(&mut self, _node: NodeId, _offset: u64, _buf: &mut [u8]) -> Result<usize> {
        Err(Error::IsDirectory)
    }
    fn readdir(&mut self, _dir: NodeId, _cookie: u64) -> Result<Option<(DirEntry, u64)>> {
        Ok(None)
    }
    fn readlink(&mut self, _node: NodeId) -> Result<Vec<u8>> {
        Err(Error::NotSymlink)
    }
}

/// `Open` options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OpenOptions {
    pub read: bool,
    pub write: bool,
    pub create: bool,
    pub exclusive: bool,
    pub truncate: bool,
    pub directory: bool,
    pub nofollow: bool,
}

/// The mount table and path resolution.
pub struct Vfs {
    mounts: Vec<Mount>,
    /// Set when a resolution ended in a forwarded mount (`Error::Forwarded`).
    forwarded: Option<Forward>,
}

/// The longest chain of components a resolution works through (symbolic links add theirs).
const PENDING_MAX: usize = 4096;

impl Vfs {
    /// A tree with `root` mounted at `/`.
    pub fn new(root: Box<dyn FileSystem>) -> Vfs {
        Vfs {
            mounts: alloc::vec![Mount { path: b"/".to_vec(), fs: root, covers: None, forward: false }],
            forwarded: None,
        }
    }

    /// Mounts `fs` on the directory `path` (which must exist); its index.
    pub fn mount(&mut self, path: &[u8], fs: Box<dyn FileSystem>) -> Result<usize> {
        let (dir, name) = self.parent(path)?;
        let node = self.lookup_in(dir, &name)?;
        if self.kind(node)? != Kind::Directory {
            return Err(Error::NotDirectory);
        }
        if self.mounts.iter().any(|m| m.covers.as_ref().is_some_and(|(d, n)| *d == dir && *n == name)) {
            return Err(Error::Busy);
        }
        let normal = path::normalize(path)?;
        self.mounts.push(Mount { path: normal, fs, covers: Some((dir, name)), forward: false });
        Ok(self.mounts.len() - 1)
    }

    /// Mounts a tree served by another server on the directory `path`: every operation whose
    /// path leads into it fails with [`Error::Forwarded`], and [`Vfs::take_forward`] says what
    /// to ask that server. `fs_type` is what `Mounts` shows.
    pub fn mount_forward(&mut self, path: &[u8], fs_type: &'static str) -> Result<usize> {
        let index = self.mount(path, Box::new(Elsewhere(fs_type)))?;
        self.mounts[index].forward = true;
        Ok(index)
    }

    /// Where the last `Error::Forwarded` led (once).
    pub fn take_forward(&mut self) -> Option<Forward> {
        self.forwarded.take()
    }

    pub fn mounts(&self) -> &[Mount] {
        &self.mounts
    }

    /// The mount `index`.
    pub fn mount_fs(&mut self, index: usize) -> Option<&mut dyn FileSystem> {
        match self.mounts.get_mut(index) {
            Some(m) => Some(&mut *m.fs),
            None => None,
        }
    }

    /// Sets every mount's clock.
    pub fn set_clock(&mut self, now: u64) {
        for m in &mut self.mounts {
            m.fs.set_clock(now);
        }
    }

    fn fs(&mut self, loc: Loc) -> &mut dyn FileSystem {
        &mut *self.mounts[loc.mount].fs
    }

    fn root(&self) -> Loc {
        Loc { mount: 0, node: self.mounts[0].fs.root() }
    }

    fn kind(&mut self, loc: Loc) -> Result<Kind> {
        Ok(self.fs(loc).stat(loc.node)?.kind)
    }

    /// `name` in the directory `dir`, crossing into a mount mounted there.
    fn lookup_in(&mut self, dir: Loc, name: &[u8]) -> Result<Loc> {
        if let Some(i) = self.mounts.iter().position(|m| m.covers.as_ref().is_some_and(|(d, n)| *d == dir && n == name))
        {
            return Ok(Loc { mount: i, node: self.mounts[i].fs.root() });
        }
        let node = self.fs(dir).lookup(dir.node, name)?;
        Ok(Loc { mount: dir.mount, node })
    }

    /// Whether `name` in `dir` is a mount point.
    fn is_mount_point(&self, dir: Loc, name: &[u8]) -> bool {
        self.mounts.iter().any(|m| m.covers.as_ref().is_some_and(|(d, n)| *d == dir && n == name))
    }

    /// Walks `components` from the root; `follow_last`: follow a symbolic link at the end.
    fn walk(&mut self, components: Vec<Vec<u8>>, follow_last: bool) -> Result<Loc> {
        let mut stack = alloc::vec![self.root()];
        let mut pending: VecDeque<Vec<u8>> = components.into();
        let mut links = 0;
        while let Some(c) = pending.pop_front() {
            if c == b"." {
                continue;
            }
            if c == b".." {
                if stack.len() > 1 {
                    stack.pop();
                }
                continue;
            }
            let top = *stack.last().ok_or(Error::InvalidPath)?;
            let next = self.lookup_in(top, &c)?;
            if self.mounts[next.mount].forward {
                if self.forward_rest(next.mount, &mut pending) {
                    return Err(Error::Forwarded);
                }
                // A `..` led out of it again: on from the directory it is mounted in.
                continue;
            }
            let last = pending.is_empty();
            if (!last || follow_last) && next.mount == top.mount && self.kind(next)? == Kind::Symlink {
                links += 1;
                if links > SYMLINK_MAX {
                    return Err(Error::Loop);
                }
                let target = self.fs(next).readlink(next.node)?;
                if target.first() == Some(&b'/') {
                    stack.truncate(1);
                }
                let parts = path::split_target(&target)?;
                if pending.len() + parts.len() > PENDING_MAX {
                    return Err(Error::NameTooLong);
                }
                for p in parts.into_iter().rev() {
                    pending.push_front(p);
                }
                continue;
            }
            if !last && self.kind(next)? != Kind::Directory {
                return Err(Error::NotDirectory);
            }
            stack.push(next);
        }
        stack.last().copied().ok_or(Error::InvalidPath)
    }

    /// At the root of the forwarded mount `mount`, with `pending` components left: records
    /// the rest (`.` and `..` applied as text: the other server has no symbolic links for
    /// this one to follow) and returns true, or, if a `..` climbs out of the mount, consumes
    /// the components up to it and returns false.
    fn forward_rest(&mut self, mount: usize, pending: &mut VecDeque<Vec<u8>>) -> bool {
        let mut rest: Vec<&[u8]> = Vec::new();
        let mut out_at = None;
        for (i, c) in pending.iter().enumerate() {
            if c == b"." {
                continue;
            }
            if c == b".." {
                if rest.pop().is_none() {
                    out_at = Some(i);
                    break;
                }
                continue;
            }
            rest.push(c);
        }
        if let Some(i) = out_at {
            pending.drain(..=i);
            return false;
        }
        let mut path = Vec::new();
        for c in &rest {
            path.push(b'/');
            path.extend_from_slice(c);
        }
        if path.is_empty() {
            path.push(b'/');
        }
        pending.clear();
        self.forwarded = Some(Forward { mount, path, second: None });
        true
    }

    /// The node `path` names.
    pub fn resolve(&mut self, path: &[u8], follow: bool) -> Result<Loc> {
        let components = path::components(path)?;
        self.walk(components, follow)
    }

    /// The directory holding the last component of `path`, and that component.
    fn parent(&mut self, path: &[u8]) -> Result<(Loc, Vec<u8>)> {
        let mut components = path::components(path)?;
        let name = components.pop().ok_or(Error::InvalidPath)?;
        if name == b"." || name == b".." {
            return Err(Error::InvalidPath);
        }
        let dir = match self.walk(components, true) {
            Err(Error::Forwarded) => {
                if let Some(f) = self.forwarded.as_mut() {
                    if f.path != b"/" {
                        f.path.push(b'/');
                    }
                    f.path.extend_from_slice(&name);
                }
                return Err(Error::Forwarded);
            }
            other => other?,
        };
        if self.kind(dir)? != Kind::Directory {
            return Err(Error::NotDirectory);
        }
        Ok((dir, name))
    }

    /// Metadata of `loc`.
    pub fn stat_loc(&mut self, loc: Loc) -> Result<Stat> {
        self.fs(loc).stat(loc.node)
    }

    pub fn stat(&mut self, path: &[u8], follow: bool) -> Result<Stat> {
        let loc = self.resolve(path, follow)?;
        self.stat_loc(loc)
    }

    /// Opens `path`: the node and its metadata (after creating or truncating it).
    pub fn open(&mut self, path: &[u8], o: OpenOptions, mode: u16) -> Result<(Loc, Stat)> {
        let loc = match self.resolve(path, !o.nofollow) {
            Ok(loc) => {
                if o.create && o.exclusive {
                    return Err(Error::Exists);
                }
                loc
            }
            Err(Error::NotFound) if o.create => {
                let (dir, name) = self.parent(path)?;
                if self.mounts[dir.mount].fs.read_only() {
                    return Err(Error::ReadOnly);
                }
                let node = self.fs(dir).create(dir.node, &name, mode & 0o7777)?;
                Loc { mount: dir.mount, node }
            }
            Err(e) => return Err(e),
        };
        let stat = self.stat_loc(loc)?;
        match stat.kind {
            Kind::Symlink => return Err(Error::Loop),
            Kind::Directory if o.write || o.truncate => return Err(Error::IsDirectory),
            Kind::Directory => {}
            _ if o.directory => return Err(Error::NotDirectory),
            _ => {}
        }
        if (o.write || o.truncate) && self.mounts[loc.mount].fs.read_only() {
            return Err(Error::ReadOnly);
        }
        if o.truncate && stat.size != 0 {
            if !o.write {
                return Err(Error::InvalidArgument);
            }
            self.fs(loc).truncate(loc.node, 0)?;
            return Ok((loc, self.stat_loc(loc)?));
        }
        Ok((loc, stat))
    }

    pub fn read(&mut self, loc: Loc, offset: u64, buf: &mut [u8]) -> Result<usize> {
        self.fs(loc).read(loc.node, offset, buf)
    }

    pub fn write(&mut self, loc: Loc, offset: u64, data: &[u8]) -> Result<usize> {
        self.writable(loc)?;
        self.fs(loc).write(loc.node, offset, data)
    }

    pub fn truncate_loc(&mut self, loc: Loc, size: u64) -> Result<()> {
        self.writable(loc)?;
        if self.kind(loc)? == Kind::Directory {
            return Err(Error::IsDirectory);
        }
        self.fs(loc).truncate(loc.node, size)
    }

    pub fn readdir(&mut self, loc: Loc, cookie: u64) -> Result<Option<(DirEntry, u64)>> {
        self.fs(loc).readdir(loc.node, cookie)
    }

    pub fn sync_mount(&mut self, mount: usize) -> Result<()> {
        match self.mounts.get_mut(mount) {
            Some(m) => m.fs.sync(),
            None => Err(Error::InvalidArgument),
        }
    }

    /// Syncs every mount; the first error.
    pub fn sync_all(&mut self) -> Result<()> {
        let mut result = Ok(());
        for m in &mut self.mounts {
            if let Err(e) = m.fs.sync() {
                result = result.and(Err(e));
            }
        }
        result
    }

    fn writable(&self, loc: Loc) -> Result<()> {
        if self.mounts[loc.mount].fs.read_only() {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// The parent directory of `path` on a writable mount, and the name.
    fn parent_writable(&mut self, path: &[u8]) -> Result<(Loc, Vec<u8>)> {
        let (dir, name) = self.parent(path)?;
        self.writable(dir)?;
        Ok((dir, name))
    }

    pub fn mkdir(&mut self, path: &[u8], mode: u16) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        if self.is_mount_point(dir, &name) {
            return Err(Error::Exists);
        }
        self.writable(dir)?;
        self.fs(dir).mkdir(dir.node, &name, mode & 0o7777).map(|_| ())
    }

    /// The node `unlink`/`rmdir`/`rename` of `path` would remove (to find open handles).
    pub fn target(&mut self, path: &[u8]) -> Result<Loc> {
        let (dir, name) = self.parent(path)?;
        self.lookup_in(dir, &name)
    }

    pub fn unlink(&mut self, path: &[u8]) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        if self.is_mount_point(dir, &name) {
            return Err(Error::Busy);
        }
        self.writable(dir)?;
        self.fs(dir).unlink(dir.node, &name)
    }

    pub fn rmdir(&mut self, path: &[u8]) -> Result<()> {
        let (dir, name) = self.parent(path)?;
        if self.is_mount_point(dir, &name) {
            return Err(Error::Busy);
        }
        self.writable(dir)?;
        self.fs(dir).rmdir(dir.node, &name)
    }

    pub fn rename(&mut self, from: &[u8], to: &[u8]) -> Result<()> {
        let first = self.parent(from);
        let first_forward = self.forwarded.take();
        let second = self.parent(to);
        let second_forward = self.forwarded.take();
        match (first_forward, second_forward) {
            (Some(mut a), Some(b)) if a.mount == b.mount => {
                a.second = Some(b.path);
                self.forwarded = Some(a);
                return Err(Error::Forwarded);
            }
            (None, None) => {}
            // One side elsewhere (or two different servers).
            _ => return Err(Error::CrossDevice),
        }
        let ((from_dir, from_name), (to_dir, to_name)) = (first?, second?);
        if self.is_mount_point(from_dir, &from_name) || self.is_mount_point(to_dir, &to_name) {
            return Err(Error::Busy);
        }
        if from_dir.mount != to_dir.mount {
            return Err(Error::CrossDevice);
        }
        self.writable(from_dir)?;
        self.fs(from_dir).rename(from_dir.node, &from_name, to_dir.node, &to_name)
    }

    pub fn truncate(&mut self, path: &[u8], size: u64) -> Result<()> {
        let loc = self.resolve(path, true)?;
        self.truncate_loc(loc, size)
    }

    pub fn symlink(&mut self, target: &[u8], path: &[u8]) -> Result<()> {
        if target.is_empty() || target.len() > path::PATH_MAX || target.contains(&0) {
            return Err(if target.len() > path::PATH_MAX { Error::NameTooLong } else { Error::InvalidPath });
        }
        let (dir, name) = self.parent_writable(path)?;
        if self.is_mount_point(dir, &name) {
            return Err(Error::Exists);
        }
        self.fs(dir).symlink(dir.node, &name, target).map(|_| ())
    }

    pub fn readlink(&mut self, path: &[u8]) -> Result<Vec<u8>> {
        let loc = self.resolve(path, false)?;
        if self.kind(loc)? != Kind::Symlink {
            return Err(Error::NotSymlink);
        }
        self.fs(loc).readlink(loc.node)
    }

    pub fn chmod(&mut self, path: &[u8], mode: u16) -> Result<()> {
        let loc = self.resolve(path, true)?;
        self.writable(loc)?;
        self.fs(loc).set_mode(loc.node, mode & 0o7777)
    }

    pub fn set_times(&mut self, path: &[u8], atime: u64, mtime: u64) -> Result<()> {
        let loc = self.resolve(path, true)?;
        self.writable(loc)?;
        self.fs(loc).set_times(loc.node, atime, mtime)
    }

    /// The mount holding `path`.
    pub fn mount_of(&mut self, path: &[u8]) -> Result<usize> {
        Ok(self.resolve(path, true)?.mount)
    }
}

#[cfg(test)]
mod tests;
