//! Mounting, inodes, and the file and namespace operations of [`Fs`].

use alloc::vec;
use alloc::vec::Vec;

use crate::cache::{Cache, Kind};
use crate::dir::NAME_MAX;
use crate::inode::{Inode, INODE_BASE, LINK_MAX, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG};
use crate::layout::{self, field, metadata_ranges, parse_groups, parse_superblock, SUPERBLOCK_OFFSET, SUPERBLOCK_SIZE};
use crate::le::{get16, get32, put16, put32};
use crate::{BlockDevice, DirEntry, Error, FileType, Fs, Ino, Stat, StatFs, ROOT};

/// Blocks the cache holds unless told otherwise.
pub const DEFAULT_CACHE_BLOCKS: usize = 64;
/// Most blocks moved by one device call when reading or writing whole blocks of a file.
const MAX_RUN: usize = 64;
/// Pending frees beyond which an operation ends with a sync (bounds their memory).
const MAX_PENDING: usize = 256;
/// Deepest directory nesting followed when checking a rename.
const MAX_DEPTH: u32 = 4096;
/// Magic number of an extended attribute block.
const XATTR_MAGIC: u32 = 0xEA02_0000;
/// File sizes above this need the `large_file` feature.
const SMALL_FILE_MAX: u64 = 0x7FFF_FFFF;

fn check_name(name: &[u8]) -> Result<(), Error> {
    if name.len() > NAME_MAX {
        return Err(Error::NameTooLong);
    }
    if name.is_empty() || name.contains(&b'/') || name.contains(&0) {
        return Err(Error::InvalidName);
    }
    Ok(())
}

fn is_dot(name: &[u8]) -> bool {
    name == b"." || name == b".."
}

impl<D: BlockDevice> Fs<D> {
    /// Mounts the ext2 file system on `dev` with a cache of [`DEFAULT_CACHE_BLOCKS`] blocks.
    /// Refuses features it does not implement with `Unsupported`; read-only-compatible
    /// features it does not maintain allow a read-only mount only.
    pub fn mount(dev: D, read_only: bool) -> Result<Self, Error> {
        Self::mount_with_cache(dev, read_only, DEFAULT_CACHE_BLOCKS)
    }

    /// Mounts with a cache of `cache_blocks` blocks (at least 8).
    pub fn mount_with_cache(mut dev: D, read_only: bool, cache_blocks: usize) -> Result<Self, Error> {
        let device_size = dev.size();
        if device_size < SUPERBLOCK_OFFSET + SUPERBLOCK_SIZE as u64 {
            return Err(Error::Corrupt("device too small for a superblock"));
        }
        let mut sb = vec![0u8; SUPERBLOCK_SIZE];
        dev.read(SUPERBLOCK_OFFSET, &mut sb).map_err(|_| Error::Device)?;
        let geo = parse_superblock(&sb, device_size, read_only)?;
        let bs = u64::from(geo.block_size);
        let mut gdt = vec![0u8; geo.gdt_blocks as usize * geo.block_size as usize];
        dev.read((u64::from(geo.first_data_block) + 1) * bs, &mut gdt).map_err(|_| Error::Device)?;
        let groups = parse_groups(&geo, &gdt)?;
        let meta = metadata_ranges(&geo, &groups);
        let cache = Cache::new(cache_blocks, geo.block_size as usize);
        let mut fs = Fs {
            dev,
            geo,
            sb,
            gdt,
            groups,
            meta,
            cache,
            read_only,
            clock: 0,
            pending_blocks: Vec::new(),
            pending_block_count: 0,
            pending_inodes: Vec::new(),
            super_dirty: false,
            generation: 0,
        };
        let root = fs.load_inode(ROOT)?;
        if !root.is_dir() || root.links() == 0 {
            return Err(Error::Corrupt("root is not a directory"));
        }
        if !read_only {
            let count = get16(&fs.sb, field::MNT_COUNT).wrapping_add(1);
            put16(&mut fs.sb, field::MNT_COUNT, count);
            fs.super_dirty = true;
        }
        Ok(fs)
    }

    /// Sets the time (Unix seconds) given to later changes.
    pub fn set_clock(&mut self, unix_seconds: u32) {
        self.clock = unix_seconds;
        if self.generation == 0 {
            self.generation = unix_seconds;
        }
    }

    /// Sizes and free space. Space freed since the last sync counts as free.
    pub fn statfs(&self) -> StatFs {
        let free_blocks: u64 = self.groups.iter().map(|g| u64::from(g.free_blocks)).sum();
        let free_inodes: u32 = self.groups.iter().map(|g| g.free_inodes).sum();
        StatFs {
            block_size: self.geo.block_size,
            blocks: u64::from(self.geo.blocks_count),
            free_blocks: free_blocks + self.pending_block_count,
            inodes: self.geo.inodes_count,
            free_inodes: free_inodes.saturating_add(self.pending_inodes.len() as u32),
        }
    }

    /// Whether the file system was mounted read-only.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    /// The device, without syncing (call [`Fs::sync`] first to keep changes).
    pub fn into_device(self) -> D {
        self.dev
    }

    // ----- inodes -----

    fn inode_location(&self, ino: Ino) -> Result<(u32, usize), Error> {
        if ino == 0 || ino > self.geo.inodes_count {
            return Err(Error::Corrupt("inode number out of range"));
        }
        let index = ino - 1;
        let group = &self.groups[(index / self.geo.inodes_per_group) as usize];
        let byte = u64::from(index % self.geo.inodes_per_group) * u64::from(self.geo.inode_size);
        let bs = u64::from(self.geo.block_size);
        Ok((group.inode_table + (byte / bs) as u32, (byte % bs) as usize))
    }

    /// Reads inode `ino` as stored (no check that it is in use).
    pub(crate) fn load_inode(&mut self, ino: Ino) -> Result<Inode, Error> {
        let (block, off) = self.inode_location(ino)?;
        let i = self.cache.get(&mut self.dev, block, Kind::InodeTable)?;
        let mut raw = [0u8; INODE_BASE];
        raw.copy_from_slice(&self.cache.data(i)[off..off + INODE_BASE]);
        Ok(Inode(raw))
    }

    /// Writes inode `ino`'s first 128 bytes back, keeping the rest of its record.
    pub(crate) fn store_inode(&mut self, ino: Ino, inode: &Inode) -> Result<(), Error> {
        let (block, off) = self.inode_location(ino)?;
        let i = self.cache.get(&mut self.dev, block, Kind::InodeTable)?;
        self.cache.data_mut(i)[off..off + INODE_BASE].copy_from_slice(&inode.0);
        Ok(())
    }

    /// Clears inode `ino`'s whole record and writes `inode` (for a new or freed inode).
    fn init_inode(&mut self, ino: Ino, inode: &Inode, new: bool) -> Result<(), Error> {
        let (block, off) = self.inode_location(ino)?;
        let size = self.geo.inode_size as usize;
        let extra = self.geo.extra_isize;
        let now = self.clock;
        let i = self.cache.get(&mut self.dev, block, Kind::InodeTable)?;
        let record = &mut self.cache.data_mut(i)[off..off + size];
        record.fill(0);
        record[..INODE_BASE].copy_from_slice(&inode.0);
        if new && extra > 0 {
            put16(record, INODE_BASE, extra);
            if extra >= 28 {
                put32(record, INODE_BASE + 16, now); // i_crtime
            }
        }
        Ok(())
    }

    /// Inode `ino` as named by a caller: it must exist and be in use.
    fn open(&mut self, ino: Ino) -> Result<Inode, Error> {
        if ino == 0 || ino > self.geo.inodes_count || (ino < self.geo.first_ino && ino != ROOT) || self.is_pending(ino)
        {
            return Err(Error::NotFound);
        }
        let inode = self.load_inode(ino)?;
        if inode.links() == 0 || inode.mode() == 0 {
            return Err(Error::NotFound);
        }
        Ok(inode)
    }

    fn open_dir(&mut self, ino: Ino) -> Result<Inode, Error> {
        let inode = self.open(ino)?;
        if !inode.is_dir() {
            return Err(Error::NotDirectory);
        }
        Ok(inode)
    }

    fn writable(&self) -> Result<(), Error> {
        if self.read_only {
            Err(Error::ReadOnly)
        } else {
            Ok(())
        }
    }

    /// A fresh in-memory inode of type `mode`.
    fn new_inode(&mut self, mode: u16, links: u16) -> Inode {
        let mut inode = Inode([0; INODE_BASE]);
        inode.set_mode(mode);
        inode.set_links(links);
        inode.set_atime(self.clock);
        inode.set_ctime(self.clock);
        inode.set_mtime(self.clock);
        self.generation = self.generation.wrapping_add(1);
        inode.set_generation(self.generation);
        inode
    }

    /// The first block of `ino`'s group: where its first data block is sought.
    fn home_block(&self, ino: Ino) -> u32 {
        self.geo.group_start(((ino - 1) / self.geo.inodes_per_group).min(self.geo.groups - 1))
    }

    /// Ends a changing operation: syncs when too many frees are pending.
    fn settle(&mut self) -> Result<(), Error> {
        if self.pending_blocks.len() > MAX_PENDING || self.pending_inodes.len() > MAX_PENDING {
            self.sync()?;
        }
        Ok(())
    }

    fn max_file_size(&self) -> u64 {
        let limit = self.max_blocks() * u64::from(self.geo.block_size);
        if self.geo.dynamic_rev {
            limit
        } else {
            limit.min(SMALL_FILE_MAX)
        }
    }

    /// Notes a regular file of `size` bytes: sizes above 2 GiB set `large_file`.
    fn note_size(&mut self, size: u64) {
        let ro_compat = get32(&self.sb, field::RO_COMPAT);
        if size > SMALL_FILE_MAX && ro_compat & layout::RO_COMPAT_LARGE_FILE == 0 {
            put32(&mut self.sb, field::RO_COMPAT, ro_compat | layout::RO_COMPAT_LARGE_FILE);
            self.super_dirty = true;
        }
    }

    // ----- queries -----

    /// The inode called `name` in directory `dir`.
    pub fn lookup(&mut self, dir: Ino, name: &[u8]) -> Result<Ino, Error> {
        check_name(name)?;
        let d = self.open_dir(dir)?;
        self.find_entry(&d, name)?.map(|f| f.ino).ok_or(Error::NotFound)
    }

    /// The attributes of `ino`.
    pub fn stat(&mut self, ino: Ino) -> Result<Stat, Error> {
        let inode = self.open(ino)?;
        Ok(Stat {
            ino,
            file_type: inode.file_type(),
            mode: inode.mode() & 0o7777,
            nlink: inode.links(),
            uid: inode.uid(),
            gid: inode.gid(),
            size: inode.size(),
            atime: inode.atime(),
            mtime: inode.mtime(),
            ctime: inode.ctime(),
            blocks: u64::from(inode.sectors()),
        })
    }

    fn open_file(&mut self, ino: Ino) -> Result<Inode, Error> {
        let inode = self.open(ino)?;
        match inode.file_type() {
            FileType::Regular => Ok(inode),
            FileType::Directory => Err(Error::IsDirectory),
            _ => Err(Error::InvalidArgument),
        }
    }

    /// Reads from regular file `ino` at `offset`; returns fewer bytes than `buf` holds at
    /// the end of the file. Holes read as zeros.
    pub fn read(&mut self, ino: Ino, offset: u64, buf: &mut [u8]) -> Result<usize, Error> {
        let inode = self.open_file(ino)?;
        let size = inode.size();
        if offset >= size {
            return Ok(0);
        }
        let len = (size - offset).min(buf.len() as u64) as usize;
        let bs = self.geo.block_size as usize;
        let mut done = 0;
        while done < len {
            let pos = offset + done as u64;
            let lblock = pos / bs as u64;
            let within = (pos % bs as u64) as usize;
            let n = (bs - within).min(len - done);
            let Some(block) = self.map_block(&inode, lblock)? else {
                buf[done..done + n].fill(0);
                done += n;
                continue;
            };
            if within != 0 || n < bs || self.cache.contains(block) {
                let i = self.cache.get(&mut self.dev, block, Kind::Data)?;
                buf[done..done + n].copy_from_slice(&self.cache.data(i)[within..within + n]);
                done += n;
                continue;
            }
            // A run of whole, contiguous, uncached blocks: one device call.
            let mut run = 1;
            while run < MAX_RUN && done + (run + 1) * bs <= len {
                match self.map_block(&inode, lblock + run as u64)? {
                    Some(b) if b == block + run as u32 && !self.cache.contains(b) => run += 1,
                    _ => break,
                }
            }
            let bytes = run * bs;
            self.dev.read(u64::from(block) * bs as u64, &mut buf[done..done + bytes]).map_err(|_| Error::Device)?;
            done += bytes;
        }
        Ok(len)
    }

    /// Writes `data` to regular file `ino` at `offset`, extending it (a gap before `offset`
    /// becomes a hole). Returns the bytes written, fewer than asked only if space ran out.
    pub fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<usize, Error> {
        self.writable()?;
        let mut inode = self.open_file(ino)?;
        if data.is_empty() {
            return Ok(0);
        }
        let end = offset.checked_add(data.len() as u64).ok_or(Error::TooBig)?;
        if end > self.max_file_size() {
            return Err(Error::TooBig);
        }
        let (done, error) = self.write_blocks(ino, &mut inode, offset, data);
        let new_end = offset + done as u64;
        if new_end > inode.size() {
            inode.set_size(new_end);
            self.note_size(new_end);
        }
        if done > 0 {
            inode.set_mtime(self.clock);
            inode.set_ctime(self.clock);
        }
        self.store_inode(ino, &inode)?;
        match error {
            Some(Error::NoSpace | Error::TooBig) if done > 0 => Ok(done),
            Some(e) => Err(e),
            None => Ok(done),
        }
    }

    /// The block loop of `write`: the bytes placed (in the cache or on the device), and the
    /// error that stopped it early, if any.
    fn write_blocks(&mut self, ino: Ino, inode: &mut Inode, offset: u64, data: &[u8]) -> (usize, Option<Error>) {
        let bs = self.geo.block_size as usize;
        let goal = match offset / bs as u64 {
            0 => Ok(self.home_block(ino)),
            l => self.map_block(inode, l - 1).map(|b| b.map_or(self.home_block(ino), |b| b.saturating_add(1))),
        };
        let mut goal = match goal {
            Ok(g) => g,
            Err(e) => return (0, Some(e)),
        };
        // Whole blocks waiting for one device write: (first block, offset in data, count).
        let mut run: Option<(u32, usize, usize)> = None;
        let mut done = 0;
        let mut error = None;
        while done < data.len() {
            let pos = offset + done as u64;
            let lblock = pos / bs as u64;
            let within = (pos % bs as u64) as usize;
            let n = (bs - within).min(data.len() - done);
            let step = self.map_block_alloc(inode, lblock, goal).and_then(|(block, new)| {
                if n == bs {
                    self.cache.discard(block);
                    return Ok(block);
                }
                let i = if new {
                    self.cache.get_zeroed(&mut self.dev, block, Kind::Data)?
                } else {
                    self.cache.get(&mut self.dev, block, Kind::Data)?
                };
                self.cache.data_mut(i)[within..within + n].copy_from_slice(&data[done..done + n]);
                Ok(block)
            });
            let block = match step {
                Ok(b) => b,
                Err(e) => {
                    error = Some(e);
                    break;
                }
            };
            goal = block.saturating_add(1);
            if n == bs {
                match run {
                    Some((first, start, count)) if count < MAX_RUN && block == first + count as u32 => {
                        run = Some((first, start, count + 1));
                    }
                    _ => {
                        if let Err(e) = self.flush_run(run.take(), data) {
                            return (0, Some(e));
                        }
                        run = Some((block, done, 1));
                    }
                }
            }
            done += n;
        }
        if let Err(e) = self.flush_run(run.take(), data) {
            return (0, Some(e));
        }
        (done, error)
    }

    /// Writes a run of whole blocks of `data` straight to the device.
    fn flush_run(&mut self, run: Option<(u32, usize, usize)>, data: &[u8]) -> Result<(), Error> {
        let Some((first, start, count)) = run else { return Ok(()) };
        let bs = self.geo.block_size as usize;
        let bytes = &data[start..start + count * bs];
        self.dev.write(u64::from(first) * bs as u64, bytes).map_err(|_| Error::Device)
    }

    /// Sets regular file `ino`'s size: shrinking frees the blocks past the end, growing
    /// leaves a hole.
    pub fn truncate(&mut self, ino: Ino, size: u64) -> Result<(), Error> {
        self.writable()?;
        let mut inode = self.open_file(ino)?;
        if size > self.max_file_size() {
            return Err(Error::TooBig);
        }
        let bs = u64::from(self.geo.block_size);
        let old = inode.size();
        // The bytes past the end of the last block read as zeros after a later grow.
        let edge = size.min(old);
        if edge % bs != 0 {
            if let Some(block) = self.map_block(&inode, edge / bs)? {
                let i = self.cache.get(&mut self.dev, block, Kind::Data)?;
                self.cache.data_mut(i)[(edge % bs) as usize..].fill(0);
            }
        }
        let result = if size < old { self.free_blocks_from(&mut inode, size.div_ceil(bs)) } else { Ok(()) };
        inode.set_size(size);
        self.note_size(size);
        inode.set_mtime(self.clock);
        inode.set_ctime(self.clock);
        self.store_inode(ino, &inode)?;
        result?;
        self.settle()
    }

    // ----- namespace -----

    /// Allocates and links a new inode of `mode` called `name` in `dir`; `fill` sets up its
    /// contents before it is linked.
    fn make_node(
        &mut self,
        dir: Ino,
        name: &[u8],
        mode: u16,
        fill: impl FnOnce(&mut Self, Ino, &mut Inode) -> Result<(), Error>,
    ) -> Result<Ino, Error> {
        self.writable()?;
        check_name(name)?;
        let mut parent = self.open_dir(dir)?;
        if self.find_entry(&parent, name)?.is_some() {
            return Err(Error::Exists);
        }
        let is_dir = mode & S_IFMT == S_IFDIR;
        if is_dir && parent.links() >= LINK_MAX {
            return Err(Error::TooBig);
        }
        let ino = self.alloc_inode(dir, is_dir)?;
        let mut inode = self.new_inode(mode, if is_dir { 2 } else { 1 });
        let made = fill(self, ino, &mut inode);
        self.init_inode(ino, &inode, true)?;
        let linked = made.and_then(|()| {
            // The parent may have changed on disk while filling (not its entry list).
            parent = self.load_inode(dir)?;
            self.add_entry(&mut parent, name, ino, FileType::from_mode(mode))
        });
        if let Err(e) = linked {
            self.pending_inodes.push((ino, is_dir));
            return Err(e);
        }
        if is_dir {
            parent.set_links(parent.links() + 1);
        }
        self.store_inode(dir, &parent)?;
        Ok(ino)
    }

    /// Creates an empty regular file `name` in `dir` with permissions `mode`.
    pub fn create(&mut self, dir: Ino, name: &[u8], mode: u16) -> Result<Ino, Error> {
        self.make_node(dir, name, S_IFREG | (mode & 0o7777), |_, _, _| Ok(()))
    }

    /// Creates directory `name` in `dir` with permissions `mode`.
    pub fn mkdir(&mut self, dir: Ino, name: &[u8], mode: u16) -> Result<Ino, Error> {
        self.make_node(dir, name, S_IFDIR | (mode & 0o7777), |fs, ino, inode| {
            let goal = fs.home_block(ino);
            let (block, _) = fs.map_block_alloc(inode, 0, goal)?;
            let bs = fs.geo.block_size as usize;
            let type_byte = if fs.geo.filetype { FileType::Directory.to_dirent() } else { 0 };
            let i = fs.cache.get_zeroed(&mut fs.dev, block, Kind::Directory)?;
            let d = fs.cache.data_mut(i);
            put32(d, 0, ino);
            put16(d, 4, 12);
            d[6] = 1;
            d[7] = type_byte;
            d[8] = b'.';
            put32(d, 12, dir);
            put16(d, 16, (bs - 12) as u16);
            d[18] = 2;
            d[19] = type_byte;
            d[20..22].copy_from_slice(b"..");
            inode.set_size(bs as u64);
            Ok(())
        })
    }

    /// Creates symbolic link `name` in `dir` pointing at `target`: kept in the inode when
    /// shorter than 60 bytes, else in a block.
    pub fn symlink(&mut self, dir: Ino, name: &[u8], target: &[u8]) -> Result<Ino, Error> {
        if target.is_empty() {
            return Err(Error::InvalidArgument);
        }
        if target.len() >= self.geo.block_size as usize {
            return Err(Error::NameTooLong);
        }
        self.make_node(dir, name, S_IFLNK | 0o777, |fs, ino, inode| {
            if target.len() < 60 {
                inode.block_bytes_mut()[..target.len()].copy_from_slice(target);
            } else {
                let goal = fs.home_block(ino);
                let (block, _) = fs.map_block_alloc(inode, 0, goal)?;
                let i = fs.cache.get_zeroed(&mut fs.dev, block, Kind::Data)?;
                fs.cache.data_mut(i)[..target.len()].copy_from_slice(target);
            }
            inode.set_size(target.len() as u64);
            Ok(())
        })
    }

    /// Sectors `inode` holds for an extended attribute block.
    fn xattr_sectors(&self, inode: &Inode) -> u32 {
        if inode.file_acl() != 0 {
            self.geo.block_size / 512
        } else {
            0
        }
    }

    /// Whether a symlink keeps its target inside the inode.
    fn is_fast_symlink(&self, inode: &Inode) -> bool {
        inode.size() < 60 && inode.sectors() <= self.xattr_sectors(inode)
    }

    /// The target of symbolic link `ino`.
    pub fn readlink(&mut self, ino: Ino) -> Result<Vec<u8>, Error> {
        let inode = self.open(ino)?;
        if inode.file_type() != FileType::Symlink {
            return Err(Error::InvalidArgument);
        }
        let size = inode.size();
        if size == 0 || size >= u64::from(self.geo.block_size) {
            return Err(Error::Corrupt("symlink length"));
        }
        let len = size as usize;
        if self.is_fast_symlink(&inode) {
            return Ok(inode.block_bytes()[..len].to_vec());
        }
        let block = self.map_block(&inode, 0)?.ok_or(Error::Corrupt("symlink without a block"))?;
        let i = self.cache.get(&mut self.dev, block, Kind::Data)?;
        Ok(self.cache.data(i)[..len].to_vec())
    }

    /// Adds the name `name` in `dir` for the existing non-directory `ino`.
    pub fn link(&mut self, ino: Ino, dir: Ino, name: &[u8]) -> Result<(), Error> {
        self.writable()?;
        check_name(name)?;
        let mut inode = self.open(ino)?;
        if inode.is_dir() {
            return Err(Error::IsDirectory);
        }
        if inode.links() >= LINK_MAX {
            return Err(Error::TooBig);
        }
        let mut parent = self.open_dir(dir)?;
        if self.find_entry(&parent, name)?.is_some() {
            return Err(Error::Exists);
        }
        inode.set_links(inode.links() + 1);
        inode.set_ctime(self.clock);
        self.store_inode(ino, &inode)?;
        if let Err(e) = self.add_entry(&mut parent, name, ino, inode.file_type()) {
            inode.set_links(inode.links() - 1);
            self.store_inode(ino, &inode)?;
            return Err(e);
        }
        self.store_inode(dir, &parent)
    }

    /// Drops one link of `ino`; at zero the inode is freed at the next sync (its on-disk
    /// record is left as it was until then, so a crash only leaks it).
    fn drop_link(&mut self, ino: Ino, mut inode: Inode) -> Result<(), Error> {
        let links = inode.links().saturating_sub(1);
        if links == 0 || inode.is_dir() {
            if !self.is_pending(ino) {
                self.pending_inodes.push((ino, inode.is_dir()));
            }
            return Ok(());
        }
        inode.set_links(links);
        inode.set_ctime(self.clock);
        self.store_inode(ino, &inode)
    }

    /// Removes the name `name` (not a directory) from `dir`.
    pub fn unlink(&mut self, dir: Ino, name: &[u8]) -> Result<(), Error> {
        self.writable()?;
        check_name(name)?;
        let mut parent = self.open_dir(dir)?;
        let found = self.find_entry(&parent, name)?.ok_or(Error::NotFound)?;
        let inode = self.load_inode(found.ino)?;
        if inode.is_dir() {
            return Err(Error::IsDirectory);
        }
        self.remove_entry(&mut parent, &found)?;
        self.store_inode(dir, &parent)?;
        self.drop_link(found.ino, inode)?;
        self.settle()
    }

    /// Removes the empty directory `name` from `dir`.
    pub fn rmdir(&mut self, dir: Ino, name: &[u8]) -> Result<(), Error> {
        self.writable()?;
        check_name(name)?;
        if name == b"." {
            return Err(Error::InvalidArgument);
        }
        if name == b".." {
            return Err(Error::NotEmpty);
        }
        let mut parent = self.open_dir(dir)?;
        let found = self.find_entry(&parent, name)?.ok_or(Error::NotFound)?;
        if found.ino == ROOT {
            return Err(Error::Busy);
        }
        let target = self.load_inode(found.ino)?;
        if !target.is_dir() {
            return Err(Error::NotDirectory);
        }
        if !self.dir_is_empty(&target)? {
            return Err(Error::NotEmpty);
        }
        self.remove_entry(&mut parent, &found)?;
        parent.set_links(parent.links().saturating_sub(1).max(2));
        self.store_inode(dir, &parent)?;
        self.drop_link(found.ino, target)?;
        self.settle()
    }

    /// Whether `dir` is `ancestor` or lies below it.
    fn is_within(&mut self, mut dir: Ino, ancestor: Ino) -> Result<bool, Error> {
        for _ in 0..MAX_DEPTH {
            if dir == ancestor {
                return Ok(true);
            }
            if dir == ROOT {
                return Ok(false);
            }
            let inode = self.open_dir(dir)?;
            dir = self.find_entry(&inode, b"..")?.ok_or(Error::Corrupt("directory without .."))?.ino;
        }
        Err(Error::Corrupt("directory nesting too deep or looping"))
    }

    /// Renames `from` in `from_dir` to `to` in `to_dir`, replacing a non-directory target or
    /// an empty directory target.
    pub fn rename(&mut self, from_dir: Ino, from: &[u8], to_dir: Ino, to: &[u8]) -> Result<(), Error> {
        self.writable()?;
        check_name(from)?;
        check_name(to)?;
        if is_dot(from) || is_dot(to) {
            return Err(Error::InvalidArgument);
        }
        let fd = self.open_dir(from_dir)?;
        let src = self.find_entry(&fd, from)?.ok_or(Error::NotFound)?;
        let mut src_inode = self.load_inode(src.ino)?;
        let src_is_dir = src_inode.is_dir();
        let mut td = self.open_dir(to_dir)?;
        let dst = self.find_entry(&td, to)?;
        if let Some(d) = dst {
            if d.ino == src.ino {
                return Ok(());
            }
        }
        let moving_dir = src_is_dir && from_dir != to_dir;
        if moving_dir && self.is_within(to_dir, src.ino)? {
            return Err(Error::InvalidArgument);
        }
        let dst_inode = match dst {
            Some(d) => {
                let inode = self.load_inode(d.ino)?;
                if src_is_dir && !inode.is_dir() {
                    return Err(Error::NotDirectory);
                }
                if !src_is_dir && inode.is_dir() {
                    return Err(Error::IsDirectory);
                }
                if inode.is_dir() && !self.dir_is_empty(&inode)? {
                    return Err(Error::NotEmpty);
                }
                Some(inode)
            }
            None => {
                if moving_dir && td.links() >= LINK_MAX {
                    return Err(Error::TooBig);
                }
                None
            }
        };
        let ft = src_inode.file_type();
        match dst {
            Some(d) => self.retarget_entry(&mut td, &d, src.ino, ft)?,
            None => self.add_entry(&mut td, to, src.ino, ft)?,
        }
        self.store_inode(to_dir, &td)?;
        // The source entry, found again: adding the new name may have moved nothing, but
        // the directory inode may be the same one.
        let mut fd = self.load_inode(from_dir)?;
        let src_now = self.find_entry(&fd, from)?.ok_or(Error::Corrupt("renamed entry vanished"))?;
        self.remove_entry(&mut fd, &src_now)?;
        if moving_dir {
            fd.set_links(fd.links().saturating_sub(1).max(2));
        }
        self.store_inode(from_dir, &fd)?;
        let mut td = self.load_inode(to_dir)?;
        if moving_dir {
            td.set_links(td.links() + 1);
        }
        if let (Some(d), Some(inode)) = (dst, dst_inode) {
            if inode.is_dir() {
                td.set_links(td.links().saturating_sub(1).max(2));
            }
            self.store_inode(to_dir, &td)?;
            self.drop_link(d.ino, inode)?;
        } else {
            self.store_inode(to_dir, &td)?;
        }
        if moving_dir {
            let dotdot = self.find_entry(&src_inode, b"..")?.ok_or(Error::Corrupt("directory without .."))?;
            let mut scratch = src_inode.clone();
            self.retarget_entry(&mut scratch, &dotdot, to_dir, FileType::Directory)?;
            src_inode.set_flags(scratch.flags());
        }
        src_inode.set_ctime(self.clock);
        self.store_inode(src.ino, &src_inode)?;
        self.settle()
    }

    /// The entry of `dir` at position `cookie` (0 for the first), with the cookie of the
    /// next one; `None` past the last. `.` and `..` are included.
    pub fn readdir(&mut self, dir: Ino, cookie: u64) -> Result<Option<(DirEntry, u64)>, Error> {
        let d = self.open_dir(dir)?;
        self.entry_at(&d, cookie)
    }

    /// Sets the permission bits (0o7777) of `ino`.
    pub fn set_mode(&mut self, ino: Ino, mode: u16) -> Result<(), Error> {
        self.writable()?;
        let mut inode = self.open(ino)?;
        inode.set_mode((inode.mode() & S_IFMT) | (mode & 0o7777));
        inode.set_ctime(self.clock);
        self.store_inode(ino, &inode)
    }

    /// Sets the access and modification times of `ino`.
    pub fn set_times(&mut self, ino: Ino, atime: u32, mtime: u32) -> Result<(), Error> {
        self.writable()?;
        let mut inode = self.open(ino)?;
        inode.set_atime(atime);
        inode.set_mtime(mtime);
        inode.set_ctime(self.clock);
        self.store_inode(ino, &inode)
    }

    // ----- durability -----

    /// Frees a pending inode's blocks and attribute block and clears its record.
    fn destroy_inode(&mut self, ino: Ino) -> Result<(), Error> {
        let mut inode = self.load_inode(ino)?;
        let has_blocks = match inode.file_type() {
            FileType::Regular | FileType::Directory => true,
            FileType::Symlink => !self.is_fast_symlink(&inode),
            _ => false,
        };
        if has_blocks {
            self.free_blocks_from(&mut inode, 0)?;
        }
        let acl = inode.file_acl();
        if acl != 0 && self.is_data_block(acl) {
            let i = self.cache.get(&mut self.dev, acl, Kind::Indirect)?;
            let data = self.cache.data(i);
            if get32(data, 0) == XATTR_MAGIC {
                let refs = get32(data, 4);
                if refs > 1 {
                    put32(self.cache.data_mut(i), 4, refs - 1);
                } else {
                    self.free_block(acl)?;
                }
            }
        }
        let mut dead = Inode([0; INODE_BASE]);
        dead.set_dtime(self.clock.max(1));
        self.init_inode(ino, &dead, false)
    }

    /// Makes every change durable: writes the cache in order, then frees what was unlinked
    /// (records cleared before bitmaps), then the descriptors and superblock, then flushes.
    pub fn sync(&mut self) -> Result<(), Error> {
        if self.read_only {
            return Ok(());
        }
        self.cache.write_back(&mut self.dev)?;
        let pending = self.take_pending_inodes();
        let mut first_error = None;
        let mut freed = Vec::new();
        if !pending.is_empty() || !self.pending_blocks.is_empty() {
            self.dev.flush().map_err(|_| Error::Device)?;
            for (ino, dir) in pending {
                match self.destroy_inode(ino) {
                    Ok(()) => freed.push((ino, dir)),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            self.cache.write_back(&mut self.dev)?;
            self.dev.flush().map_err(|_| Error::Device)?;
            self.release(&freed)?;
            self.cache.write_back(&mut self.dev)?;
        }
        layout::store_groups(&self.groups, &mut self.gdt);
        let bs = u64::from(self.geo.block_size);
        self.dev.write((u64::from(self.geo.first_data_block) + 1) * bs, &self.gdt).map_err(|_| Error::Device)?;
        let free_blocks: u32 = self.groups.iter().map(|g| g.free_blocks).sum();
        let free_inodes: u32 = self.groups.iter().map(|g| g.free_inodes).sum();
        put32(&mut self.sb, field::FREE_BLOCKS, free_blocks);
        put32(&mut self.sb, field::FREE_INODES, free_inodes);
        if self.clock != 0 {
            put32(&mut self.sb, field::WTIME, self.clock);
            if self.super_dirty {
                put32(&mut self.sb, field::MTIME, self.clock);
            }
        }
        self.super_dirty = false;
        self.dev.write(SUPERBLOCK_OFFSET, &self.sb).map_err(|_| Error::Device)?;
        self.dev.flush().map_err(|_| Error::Device)?;
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
