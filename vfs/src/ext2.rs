//! ext2 through the `ext2fs` crate: the [`FileSystem`] adapter and the error mapping. The
//! adapter remembers the last "corrupt metadata" reason so the server can log it once.

use crate::{DirEntry, Error, FileSystem, Kind, NodeId, Result, Stat, StatFs};
use alloc::vec::Vec;
use ext2fs::{BlockDevice, Fs};

/// A mounted ext2 file system over `D`.
pub struct Ext2<D: BlockDevice> {
    fs: Fs<D>,
    /// The reason of the latest `Corrupt` error, until taken.
    problem: Option<&'static str>,
}

fn kind(t: ext2fs::FileType) -> Kind {
    use ext2fs::FileType as T;
    match t {
        T::Regular => Kind::Regular,
        T::Directory => Kind::Directory,
        T::Symlink => Kind::Symlink,
        T::CharDevice => Kind::CharDevice,
        T::BlockDevice => Kind::BlockDevice,
        T::Fifo => Kind::Fifo,
        T::Socket => Kind::Socket,
        T::Unknown => Kind::Unknown,
    }
}

/// The VFS error for an ext2 error.
pub fn map_error(e: &ext2fs::Error) -> Error {
    use ext2fs::Error as E;
    match e {
        E::Device => Error::Io,
        E::Corrupt(what) => Error::Corrupt(what),
        E::Unsupported(what) => Error::Unsupported(what),
        E::NotFound => Error::NotFound,
        E::Exists => Error::Exists,
        E::NotDirectory => Error::NotDirectory,
        E::IsDirectory => Error::IsDirectory,
        E::NotEmpty => Error::NotEmpty,
        E::NoSpace => Error::NoSpace,
        E::NameTooLong => Error::NameTooLong,
        E::InvalidName => Error::InvalidPath,
        E::ReadOnly => Error::ReadOnly,
        E::TooBig => Error::TooBig,
        E::InvalidArgument => Error::InvalidArgument,
        E::Busy => Error::Busy,
    }
}

impl<D: BlockDevice> Ext2<D> {
    /// Mounts the file system on `dev`.
    pub fn mount(dev: D, read_only: bool) -> core::result::Result<Ext2<D>, ext2fs::Error> {
        Ok(Ext2 { fs: Fs::mount(dev, read_only)?, problem: None })
    }

    fn check<T>(&mut self, r: core::result::Result<T, ext2fs::Error>) -> Result<T> {
        r.map_err(|e| {
            if let ext2fs::Error::Corrupt(what) = e {
                self.problem = Some(what);
            }
            map_error(&e)
        })
    }

    fn ino(node: NodeId) -> Result<ext2fs::Ino> {
        ext2fs::Ino::try_from(node).map_err(|_| Error::NotFound)
    }
}

impl<D: BlockDevice> FileSystem for Ext2<D> {
    fn fs_type(&self) -> &'static str {
        "ext2"
    }

    fn root(&self) -> NodeId {
        ext2fs::ROOT as NodeId
    }

    fn read_only(&self) -> bool {
        self.fs.read_only()
    }

    fn statfs(&mut self) -> StatFs {
        let s = self.fs.statfs();
        let bs = s.block_size as u64;
        StatFs {
            block_size: s.block_size,
            total_bytes: s.blocks.saturating_mul(bs),
            free_bytes: s.free_blocks.saturating_mul(bs),
            files: s.inodes as u64,
            free_files: s.free_inodes as u64,
        }
    }

    fn set_clock(&mut self, now: u64) {
        self.fs.set_clock(now.min(u32::MAX as u64) as u32);
    }

    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<NodeId> {
        let r = self.fs.lookup(Self::ino(dir)?, name);
        self.check(r).map(|i| i as NodeId)
    }

    fn stat(&mut self, node: NodeId) -> Result<Stat> {
        let r = self.fs.stat(Self::ino(node)?);
        let s = self.check(r)?;
        Ok(Stat {
            ino: s.ino as u64,
            kind: kind(s.file_type),
            mode: s.mode & 0o7777,
            nlink: s.nlink as u32,
            uid: s.uid,
            gid: s.gid,
            size: s.size,
            blocks: s.blocks,
            atime: s.atime as u64,
            mtime: s.mtime as u64,
            ctime: s.ctime as u64,
        })
    }

    fn read(&mut self, node: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let r = self.fs.read(Self::ino(node)?, offset, buf);
        self.check(r)
    }

    fn readdir(&mut self, dir: NodeId, cookie: u64) -> Result<Option<(DirEntry, u64)>> {
        let ino = Self::ino(dir)?;
        let mut cookie = cookie;
        // Skip `.` and `..` (bounded: a directory has one of each).
        for _ in 0..3 {
            let r = self.fs.readdir(ino, cookie);
            match self.check(r)? {
                None => return Ok(None),
                Some((e, next)) if e.name == b"." || e.name == b".." => {
                    if next == cookie {
                        return Ok(None);
                    }
                    cookie = next;
                }
                Some((e, next)) => {
                    return Ok(Some((DirEntry { ino: e.ino as u64, kind: kind(e.file_type), name: e.name }, next)))
                }
            }
        }
        Err(Error::Corrupt("directory with repeated . or .. entries"))
    }

    fn readlink(&mut self, node: NodeId) -> Result<Vec<u8>> {
        let r = self.fs.readlink(Self::ino(node)?);
        self.check(r)
    }

    fn write(&mut self, node: NodeId, offset: u64, data: &[u8]) -> Result<usize> {
        let r = self.fs.write(Self::ino(node)?, offset, data);
        self.check(r)
    }

    fn truncate(&mut self, node: NodeId, size: u64) -> Result<()> {
        let r = self.fs.truncate(Self::ino(node)?, size);
        self.check(r)
    }

    fn create(&mut self, dir: NodeId, name: &[u8], mode: u16) -> Result<NodeId> {
        let r = self.fs.create(Self::ino(dir)?, name, mode);
        self.check(r).map(|i| i as NodeId)
    }

    fn mkdir(&mut self, dir: NodeId, name: &[u8], mode: u16) -> Result<NodeId> {
        let r = self.fs.mkdir(Self::ino(dir)?, name, mode);
        self.check(r).map(|i| i as NodeId)
    }

    fn symlink(&mut self, dir: NodeId, name: &[u8], target: &[u8]) -> Result<NodeId> {
        let r = self.fs.symlink(Self::ino(dir)?, name, target);
        self.check(r).map(|i| i as NodeId)
    }

    fn unlink(&mut self, dir: NodeId, name: &[u8]) -> Result<()> {
        let r = self.fs.unlink(Self::ino(dir)?, name);
        self.check(r)
    }

    fn rmdir(&mut self, dir: NodeId, name: &[u8]) -> Result<()> {
        let r = self.fs.rmdir(Self::ino(dir)?, name);
        self.check(r)
    }

    fn rename(&mut self, from_dir: NodeId, from: &[u8], to_dir: NodeId, to: &[u8]) -> Result<()> {
        let r = self.fs.rename(Self::ino(from_dir)?, from, Self::ino(to_dir)?, to);
        self.check(r)
    }

    fn set_mode(&mut self, node: NodeId, mode: u16) -> Result<()> {
        let r = self.fs.set_mode(Self::ino(node)?, mode);
        self.check(r)
    }

    fn set_times(&mut self, node: NodeId, atime: u64, mtime: u64) -> Result<()> {
        let clamp = |t: u64| t.min(u32::MAX as u64) as u32;
        let r = self.fs.set_times(Self::ino(node)?, clamp(atime), clamp(mtime));
        self.check(r)
    }

    fn sync(&mut self) -> Result<()> {
        let r = self.fs.sync();
        self.check(r)
    }

    fn take_problem(&mut self) -> Option<&'static str> {
        self.problem.take()
    }
}
