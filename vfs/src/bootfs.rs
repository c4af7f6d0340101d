//! The boot archive (cpio newc) as a read-only file system. The archive is checked once by
//! `newc`; an index of its entries is built at mount (directories implied by paths, so an
//! archive without directory entries works), and file data is read from the archive in place.
//! Entry names are cleaned (`./` and leading `/` dropped); entries with `..`, empty or too long
//! components are skipped. Node numbers are indices in the index (the root is 0, `ino` 1).

use crate::path::NAME_MAX;
use crate::{DirEntry, Error, FileSystem, Kind, NodeId, Result, Stat, StatFs};
use alloc::vec::Vec;

struct Node {
    name: Vec<u8>,
    kind: Kind,
    mode: u16,
    uid: u32,
    gid: u32,
    mtime: u64,
    data: &'static [u8],
    children: Vec<usize>,
}

/// The archive's file system.
pub struct Bootfs {
    nodes: Vec<Node>,
    bytes: u64,
}

/// The most entries indexed (the rest are skipped).
pub const ENTRIES_MAX: usize = 4096;

fn kind_of(mode: u32) -> Kind {
    match mode & newc::S_IFMT {
        newc::S_IFREG => Kind::Regular,
        newc::S_IFDIR => Kind::Directory,
        newc::S_IFLNK => Kind::Symlink,
        newc::S_IFCHR => Kind::CharDevice,
        0o060000 => Kind::BlockDevice,
        0o010000 => Kind::Fifo,
        0o140000 => Kind::Socket,
        _ => Kind::Unknown,
    }
}

impl Bootfs {
    /// Indexes `archive`; an error if it is not a valid cpio newc archive.
    pub fn new(archive: &'static [u8]) -> core::result::Result<Bootfs, newc::Error> {
        let parsed = newc::Archive::new(archive)?;
        let mut fs = Bootfs { nodes: alloc::vec![Bootfs::dir(b"")], bytes: archive.len() as u64 };
        for entry in parsed.entries().take(ENTRIES_MAX) {
            let parts: Vec<&[u8]> =
                entry.name.as_bytes().split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".").collect();
            if parts.is_empty() || parts.iter().any(|c| *c == b".." || c.len() > NAME_MAX) {
                continue;
            }
            let mut dir = 0;
            let (last, parents) = parts.split_last().expect("not empty");
            let mut ok = true;
            for p in parents {
                dir = match fs.child(dir, p) {
                    Some(d) if fs.nodes[d].kind == Kind::Directory => d,
                    Some(_) => {
                        ok = false;
                        break;
                    }
                    None => fs.push(dir, Bootfs::dir(p)),
                };
            }
            if !ok {
                continue;
            }
            let kind = kind_of(entry.mode);
            let node = Node {
                name: last.to_vec(),
                kind,
                mode: (entry.mode & 0o7777) as u16,
                uid: entry.uid,
                gid: entry.gid,
                mtime: entry.mtime as u64,
                data: entry.data,
                children: Vec::new(),
            };
            match fs.child(dir, last) {
                // A directory entry after files inside it were seen: take its metadata.
                Some(existing) if kind == Kind::Directory && fs.nodes[existing].kind == Kind::Directory => {
                    let e = &mut fs.nodes[existing];
                    e.mode = node.mode;
                    e.uid = node.uid;
                    e.gid = node.gid;
                    e.mtime = node.mtime;
                }
                Some(_) => {}
                None => {
                    fs.push(dir, node);
                }
            }
        }
        Ok(fs)
    }

    /// Entries indexed (with implied directories, without the root).
    pub fn entries(&self) -> usize {
        self.nodes.len() - 1
    }

    fn dir(name: &[u8]) -> Node {
        Node {
            name: name.to_vec(),
            kind: Kind::Directory,
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: 0,
            data: &[],
            children: Vec::new(),
        }
    }

    fn child(&self, dir: usize, name: &[u8]) -> Option<usize> {
        self.nodes[dir].children.iter().copied().find(|&c| self.nodes[c].name == name)
    }

    fn push(&mut self, dir: usize, node: Node) -> usize {
        self.nodes.push(node);
        let id = self.nodes.len() - 1;
        self.nodes[dir].children.push(id);
        id
    }

    fn get(&self, id: NodeId) -> Result<&Node> {
        usize::try_from(id).ok().and_then(|i| self.nodes.get(i)).ok_or(Error::NotFound)
    }
}

impl FileSystem for Bootfs {
    fn fs_type(&self) -> &'static str {
        "bootfs"
    }

    fn root(&self) -> NodeId {
        0
    }

    fn read_only(&self) -> bool {
        true
    }

    fn statfs(&mut self) -> StatFs {
        StatFs {
            block_size: 512,
            total_bytes: self.bytes,
            free_bytes: 0,
            files: self.nodes.len() as u64,
            free_files: 0,
        }
    }

    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<NodeId> {
        let d = self.get(dir)?;
        if d.kind != Kind::Directory {
            return Err(Error::NotDirectory);
        }
        d.children.iter().copied().find(|&c| self.nodes[c].name == name).map(|c| c as NodeId).ok_or(Error::NotFound)
    }

    fn stat(&mut self, id: NodeId) -> Result<Stat> {
        let n = self.get(id)?;
        let size = match n.kind {
            Kind::Directory => n.children.len() as u64,
            _ => n.data.len() as u64,
        };
        let subdirs = n.children.iter().filter(|&&c| self.nodes[c].kind == Kind::Directory).count() as u32;
        Ok(Stat {
            ino: id + 1,
            kind: n.kind,
            mode: n.mode,
            nlink: if n.kind == Kind::Directory { 2 + subdirs } else { 1 },
            uid: n.uid,
            gid: n.gid,
            size,
            blocks: (n.data.len() as u64).div_ceil(512),
            atime: n.mtime,
            mtime: n.mtime,
            ctime: n.mtime,
        })
    }

    fn read(&mut self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        let n = self.get(id)?;
        match n.kind {
            Kind::Directory => return Err(Error::IsDirectory),
            Kind::Regular => {}
            _ => return Err(Error::InvalidArgument),
        }
        let Ok(start) = usize::try_from(offset) else { return Ok(0) };
        if start >= n.data.len() {
            return Ok(0);
        }
        let len = buf.len().min(n.data.len() - start);
        buf[..len].copy_from_slice(&n.data[start..start + len]);
        Ok(len)
    }

    fn readdir(&mut self, dir: NodeId, cookie: u64) -> Result<Option<(DirEntry, u64)>> {
        let d = self.get(dir)?;
        if d.kind != Kind::Directory {
            return Err(Error::NotDirectory);
        }
        let Some(&child) = usize::try_from(cookie).ok().and_then(|i| d.children.get(i)) else { return Ok(None) };
        let c = &self.nodes[child];
        Ok(Some((DirEntry { ino: child as u64 + 1, kind: c.kind, name: c.name.clone() }, cookie + 1)))
    }

    fn readlink(&mut self, id: NodeId) -> Result<Vec<u8>> {
        let n = self.get(id)?;
        if n.kind != Kind::Symlink {
            return Err(Error::NotSymlink);
        }
        Ok(n.data.to_vec())
    }
}
