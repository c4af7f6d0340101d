//! An in-memory file system bounded by a byte quota and a node count: file data, names and a
//! fixed charge per node count against the quota; past it writes and creations fail with
//! `NoSpace` (never an allocation failure of the server). Directory entries keep the order
//! of creation, and a `readdir` cookie is the serial of an entry, so it stays valid while the
//! directory changes. A node is freed when its last name is removed (there are no hard links,
//! so at once): handles to it then fail (the server reports them `Stale`).

use crate::{DirEntry, Error, FileSystem, Kind, NodeId, Result, Stat, StatFs};
use alloc::collections::BTreeMap;
use alloc::vec::Vec;

/// What each node costs besides its data and name.
const NODE_COST: u64 = 128;
const ROOT: NodeId = 1;
/// The largest file.
pub const FILE_MAX: u64 = 1 << 30;

enum Body {
    File(Vec<u8>),
    Dir {
        /// serial -> (name, node)
        entries: BTreeMap<u64, (Vec<u8>, NodeId)>,
        by_name: BTreeMap<Vec<u8>, u64>,
        next_serial: u64,
    },
    Link(Vec<u8>),
}

struct Node {
    mode: u16,
    atime: u64,
    mtime: u64,
    ctime: u64,
    body: Body,
}

impl Node {
    fn kind(&self) -> Kind {
        match self.body {
            Body::File(_) => Kind::Regular,
            Body::Dir { .. } => Kind::Directory,
            Body::Link(_) => Kind::Symlink,
        }
    }
}

/// The file system.
pub struct Tmpfs {
    nodes: BTreeMap<NodeId, Node>,
    next: NodeId,
    used: u64,
    quota: u64,
    nodes_max: u64,
    now: u64,
}

impl Tmpfs {
    /// An empty file system (just `/`) of at most `quota` bytes and `nodes_max` nodes.
    pub fn new(quota: u64, nodes_max: u64) -> Tmpfs {
        let mut fs = Tmpfs { nodes: BTreeMap::new(), next: ROOT + 1, used: NODE_COST, quota, nodes_max, now: 0 };
        fs.nodes.insert(ROOT, Node { mode: 0o755, atime: 0, mtime: 0, ctime: 0, body: empty_dir() });
        fs
    }

    /// Bytes charged.
    pub fn used(&self) -> u64 {
        self.used
    }

    fn node(&mut self, id: NodeId) -> Result<&mut Node> {
        self.nodes.get_mut(&id).ok_or(Error::NotFound)
    }

    fn charge(&mut self, bytes: u64) -> Result<()> {
        let total = self.used.checked_add(bytes).ok_or(Error::NoSpace)?;
        if total > self.quota {
            return Err(Error::NoSpace);
        }
        self.used = total;
        Ok(())
    }

    fn release(&mut self, bytes: u64) {
        self.used = self.used.saturating_sub(bytes);
    }

    fn dir_lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<Option<NodeId>> {
        match &self.node(dir)?.body {
            Body::Dir { entries, by_name, .. } => Ok(by_name.get(name).and_then(|s| entries.get(s)).map(|(_, id)| *id)),
            _ => Err(Error::NotDirectory),
        }
    }

    /// Adds a new node named `name` in `dir`.
    fn add(&mut self, dir: NodeId, name: &[u8], mode: u16, body: Body) -> Result<NodeId> {
        if self.dir_lookup(dir, name)?.is_some() {
            return Err(Error::Exists);
        }
        if self.nodes.len() as u64 >= self.nodes_max {
            return Err(Error::NoSpace);
        }
        let size = match &body {
            Body::Link(t) => t.len() as u64,
            _ => 0,
        };
        self.charge(NODE_COST + name.len() as u64 + size)?;
        let id = self.next;
        self.next += 1;
        let now = self.now;
        self.nodes.insert(id, Node { mode, atime: now, mtime: now, ctime: now, body });
        self.link(dir, name, id);
        Ok(id)
    }

    /// Puts `name -> id` into `dir` (which exists and lacks the name).
    fn link(&mut self, dir: NodeId, name: &[u8], id: NodeId) {
        let now = self.now;
        if let Some(Node { body: Body::Dir { entries, by_name, next_serial }, mtime, ctime, .. }) =
            self.nodes.get_mut(&dir)
        {
            *next_serial += 1;
            entries.insert(*next_serial, (name.to_vec(), id));
            by_name.insert(name.to_vec(), *next_serial);
            *mtime = now;
            *ctime = now;
        }
    }

    /// Takes `name` out of `dir`; the node it named.
    fn unlink_name(&mut self, dir: NodeId, name: &[u8]) -> Option<NodeId> {
        let now = self.now;
        if let Some(Node { body: Body::Dir { entries, by_name, .. }, mtime, ctime, .. }) = self.nodes.get_mut(&dir) {
            let serial = by_name.remove(name)?;
            *mtime = now;
            *ctime = now;
            return entries.remove(&serial).map(|(_, id)| id);
        }
        None
    }

    /// Frees a node that has no name any more.
    fn free(&mut self, id: NodeId, name_len: usize) {
        if let Some(node) = self.nodes.remove(&id) {
            let data = match &node.body {
                Body::File(d) => d.len() as u64,
                Body::Link(t) => t.len() as u64,
                Body::Dir { .. } => 0,
            };
            self.release(NODE_COST + name_len as u64 + data);
        }
    }

    fn is_empty_dir(&self, id: NodeId) -> Result<bool> {
        match &self.nodes.get(&id).ok_or(Error::NotFound)?.body {
            Body::Dir { entries, .. } => Ok(entries.is_empty()),
            _ => Err(Error::NotDirectory),
        }
    }

    /// Whether `ancestor` is `node` or contains it.
    fn contains(&self, ancestor: NodeId, node: NodeId) -> bool {
        if ancestor == node {
            return true;
        }
        // Directories form a tree: search `ancestor`'s subtree (bounded by the node count).
        let mut stack = alloc::vec![ancestor];
        let mut seen = 0;
        while let Some(id) = stack.pop() {
            seen += 1;
            if seen > self.nodes.len() {
                break;
            }
            if let Some(Node { body: Body::Dir { entries, .. }, .. }) = self.nodes.get(&id) {
                for (_, child) in entries.values() {
                    if *child == node {
                        return true;
                    }
                    stack.push(*child);
                }
            }
        }
        false
    }
}

fn empty_dir() -> Body {
    Body::Dir { entries: BTreeMap::new(), by_name: BTreeMap::new(), next_serial: 0 }
}

impl FileSystem for Tmpfs {
    fn fs_type(&self) -> &'static str {
        "tmpfs"
    }

    fn root(&self) -> NodeId {
        ROOT
    }

    fn read_only(&self) -> bool {
        false
    }

    fn statfs(&mut self) -> StatFs {
        StatFs {
            block_size: 1,
            total_bytes: self.quota,
            free_bytes: self.quota.saturating_sub(self.used),
            files: self.nodes_max,
            free_files: self.nodes_max.saturating_sub(self.nodes.len() as u64),
        }
    }

    fn set_clock(&mut self, now: u64) {
        self.now = now;
    }

    fn lookup(&mut self, dir: NodeId, name: &[u8]) -> Result<NodeId> {
        self.dir_lookup(dir, name)?.ok_or(Error::NotFound)
    }

    fn stat(&mut self, id: NodeId) -> Result<Stat> {
        let node = self.nodes.get(&id).ok_or(Error::NotFound)?;
        let (size, nlink) = match &node.body {
            Body::File(d) => (d.len() as u64, 1),
            Body::Link(t) => (t.len() as u64, 1),
            Body::Dir { entries, .. } => {
                let subdirs = entries
                    .values()
                    .filter(|(_, c)| matches!(self.nodes.get(c).map(|n| &n.body), Some(Body::Dir { .. })))
                    .count();
                (entries.len() as u64, 2 + subdirs as u32)
            }
        };
        Ok(Stat {
            ino: id,
            kind: node.kind(),
            mode: node.mode,
            nlink,
            uid: 0,
            gid: 0,
            size,
            blocks: size.div_ceil(512),
            atime: node.atime,
            mtime: node.mtime,
            ctime: node.ctime,
        })
    }

    fn read(&mut self, id: NodeId, offset: u64, buf: &mut [u8]) -> Result<usize> {
        match &self.node(id)?.body {
            Body::File(data) => {
                let Ok(start) = usize::try_from(offset) else { return Ok(0) };
                if start >= data.len() {
                    return Ok(0);
                }
                let n = buf.len().min(data.len() - start);
                buf[..n].copy_from_slice(&data[start..start + n]);
                Ok(n)
            }
            Body::Dir { .. } => Err(Error::IsDirectory),
            Body::Link(_) => Err(Error::InvalidArgument),
        }
    }

    fn readdir(&mut self, dir: NodeId, cookie: u64) -> Result<Option<(DirEntry, u64)>> {
        let Body::Dir { entries, .. } = &self.nodes.get(&dir).ok_or(Error::NotFound)?.body else {
            return Err(Error::NotDirectory);
        };
        let Some(start) = cookie.checked_add(1) else { return Ok(None) };
        let Some((serial, (name, id))) = entries.range(start..).next() else { return Ok(None) };
        let kind = self.nodes.get(id).map_or(Kind::Unknown, Node::kind);
        Ok(Some((DirEntry { ino: *id, kind, name: name.clone() }, *serial)))
    }

    fn readlink(&mut self, id: NodeId) -> Result<Vec<u8>> {
        match &self.node(id)?.body {
            Body::Link(t) => Ok(t.clone()),
            _ => Err(Error::NotSymlink),
        }
    }

    fn write(&mut self, id: NodeId, offset: u64, data: &[u8]) -> Result<usize> {
        let end = offset.checked_add(data.len() as u64).filter(|e| *e <= FILE_MAX).ok_or(Error::TooBig)?;
        let old = match &self.node(id)?.body {
            Body::File(d) => d.len() as u64,
            Body::Dir { .. } => return Err(Error::IsDirectory),
            Body::Link(_) => return Err(Error::InvalidArgument),
        };
        if end > old {
            self.charge(end - old)?;
        }
        let now = self.now;
        let node = self.node(id)?;
        let Body::File(d) = &mut node.body else { return Err(Error::InvalidArgument) };
        if end > old {
            if d.try_reserve_exact((end - old) as usize).is_err() {
                self.release(end - old);
                return Err(Error::NoSpace);
            }
            d.resize(end as usize, 0);
        }
        d[offset as usize..end as usize].copy_from_slice(data);
        node.mtime = now;
        node.ctime = now;
        Ok(data.len())
    }

    fn truncate(&mut self, id: NodeId, size: u64) -> Result<()> {
        if size > FILE_MAX {
            return Err(Error::TooBig);
        }
        let old = match &self.node(id)?.body {
            Body::File(d) => d.len() as u64,
            Body::Dir { .. } => return Err(Error::IsDirectory),
            Body::Link(_) => return Err(Error::InvalidArgument),
        };
        if size > old {
            self.charge(size - old)?;
        } else {
            self.release(old - size);
        }
        let now = self.now;
        let node = self.node(id)?;
        if let Body::File(d) = &mut node.body {
            if size > old && d.try_reserve_exact((size - old) as usize).is_err() {
                self.release(size - old);
                return Err(Error::NoSpace);
            }
            d.resize(size as usize, 0);
            if size < old {
                d.shrink_to_fit();
            }
        }
        let node = self.node(id)?;
        node.mtime = now;
        node.ctime = now;
        Ok(())
    }

    fn create(&mut self, dir: NodeId, name: &[u8], mode: u16) -> Result<NodeId> {
        self.add(dir, name, mode, Body::File(Vec::new()))
    }

    fn mkdir(&mut self, dir: NodeId, name: &[u8], mode: u16) -> Result<NodeId> {
        self.add(dir, name, mode, empty_dir())
    }

    fn symlink(&mut self, dir: NodeId, name: &[u8], target: &[u8]) -> Result<NodeId> {
        self.add(dir, name, 0o777, Body::Link(target.to_vec()))
    }

    fn unlink(&mut self, dir: NodeId, name: &[u8]) -> Result<()> {
        let id = self.lookup(dir, name)?;
        if matches!(self.node(id)?.body, Body::Dir { .. }) {
            return Err(Error::IsDirectory);
        }
        self.unlink_name(dir, name);
        self.free(id, name.len());
        Ok(())
    }

    fn rmdir(&mut self, dir: NodeId, name: &[u8]) -> Result<()> {
        let id = self.lookup(dir, name)?;
        if !self.is_empty_dir(id)? {
            return Err(Error::NotEmpty);
        }
        self.unlink_name(dir, name);
        self.free(id, name.len());
        Ok(())
    }

    fn rename(&mut self, from_dir: NodeId, from: &[u8], to_dir: NodeId, to: &[u8]) -> Result<()> {
        let id = self.lookup(from_dir, from)?;
        let moving_dir = matches!(self.node(id)?.body, Body::Dir { .. });
        if !matches!(self.node(to_dir)?.body, Body::Dir { .. }) {
            return Err(Error::NotDirectory);
        }
        if moving_dir && self.contains(id, to_dir) {
            return Err(Error::InvalidArgument);
        }
        if from_dir == to_dir && from == to {
            return Ok(());
        }
        if let Some(existing) = self.dir_lookup(to_dir, to)? {
            if existing == id {
                return Ok(());
            }
            let existing_dir = matches!(self.node(existing)?.body, Body::Dir { .. });
            match (moving_dir, existing_dir) {
                (false, true) => return Err(Error::IsDirectory),
                (true, false) => return Err(Error::NotDirectory),
                (true, true) if !self.is_empty_dir(existing)? => return Err(Error::NotEmpty),
                _ => {}
            }
            self.unlink_name(to_dir, to);
            self.free(existing, to.len());
        }
        // The name's charge moves with it.
        let grow = to.len() as u64;
        if grow > from.len() as u64 {
            self.charge(grow - from.len() as u64)?;
        } else {
            self.release(from.len() as u64 - grow);
        }
        self.unlink_name(from_dir, from);
        self.link(to_dir, to, id);
        let now = self.now;
        self.node(id)?.ctime = now;
        Ok(())
    }

    fn set_mode(&mut self, id: NodeId, mode: u16) -> Result<()> {
        let now = self.now;
        let node = self.node(id)?;
        node.mode = mode & 0o7777;
        node.ctime = now;
        Ok(())
    }

    fn set_times(&mut self, id: NodeId, atime: u64, mtime: u64) -> Result<()> {
        let now = self.now;
        let node = self.node(id)?;
        node.atime = atime;
        node.mtime = mtime;
        node.ctime = now;
        Ok(())
    }
}
