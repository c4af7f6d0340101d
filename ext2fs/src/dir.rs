//! Directories: linear lists of variable-length entries packed into whole blocks. Parsing
//! checks every entry (record length, name length, inode number) against its block; changes
//! keep every block fully covered by entries, as ext2 requires. Hash-tree indexes are not
//! maintained: a directory we change loses its index flag and stays a valid linear directory.

use crate::cache::Kind;
use crate::inode::{Inode, INDEX_FL};
use crate::le::{get16, get32, put16, put32};
use crate::{BlockDevice, DirEntry, Error, FileType, Fs, Ino};

/// The longest name a directory entry holds.
pub const NAME_MAX: usize = 255;

/// One entry of a directory block.
#[derive(Clone, Copy, Debug)]
pub struct Slot {
    pub off: usize,
    pub ino: Ino,
    pub rec_len: usize,
    pub name_len: usize,
    pub type_byte: u8,
}

/// The record length an entry with a name of `len` bytes needs.
pub fn rec_len_for(len: usize) -> usize {
    (8 + len + 3) & !3
}

/// Parses and checks the entry at `off` of a directory block.
pub fn parse_slot(block: &[u8], off: usize, filetype: bool, inodes_count: u32) -> Result<Slot, Error> {
    if off + 8 > block.len() {
        return Err(Error::Corrupt("directory entry crosses its block"));
    }
    let ino = get32(block, off);
    let rec_len = usize::from(get16(block, off + 4));
    let (name_len, type_byte) =
        if filetype { (usize::from(block[off + 6]), block[off + 7]) } else { (usize::from(get16(block, off + 6)), 0) };
    if rec_len < 8 || rec_len % 4 != 0 || off + rec_len > block.len() || 8 + name_len > rec_len {
        return Err(Error::Corrupt("directory entry length"));
    }
    if ino > inodes_count || (ino != 0 && (name_len == 0 || name_len > NAME_MAX)) {
        return Err(Error::Corrupt("directory entry"));
    }
    Ok(Slot { off, ino, rec_len, name_len, type_byte })
}

/// Writes an entry at `off`; `type_byte` is 0 without the `filetype` feature.
fn write_slot(data: &mut [u8], off: usize, rec_len: usize, name: &[u8], ino: Ino, type_byte: u8) {
    put32(data, off, ino);
    put16(data, off + 4, rec_len as u16);
    data[off + 6] = name.len() as u8;
    data[off + 7] = type_byte;
    data[off + 8..off + 8 + name.len()].copy_from_slice(name);
}

/// A located entry: the disk block and offset, the previous entry in that block, its inode.
#[derive(Clone, Copy, Debug)]
pub struct Found {
    pub block: u32,
    pub off: usize,
    pub prev: Option<usize>,
    pub ino: Ino,
}

impl<D: BlockDevice> Fs<D> {
    /// Number of blocks of directory `dir`, checked against its size.
    pub(crate) fn dir_blocks(&self, dir: &Inode) -> Result<u64, Error> {
        let size = dir.size();
        let bs = u64::from(self.geo.block_size);
        if !size.is_multiple_of(bs) || size / bs > u64::from(self.geo.blocks_count) {
            return Err(Error::Corrupt("directory size"));
        }
        Ok(size / bs)
    }

    /// The disk block of directory block `n`; directories have no holes.
    fn dir_block(&mut self, dir: &Inode, n: u64) -> Result<u32, Error> {
        self.map_block(dir, n)?.ok_or(Error::Corrupt("hole in a directory"))
    }

    /// Finds the entry called `name` in `dir`.
    pub(crate) fn find_entry(&mut self, dir: &Inode, name: &[u8]) -> Result<Option<Found>, Error> {
        let (filetype, inodes) = (self.geo.filetype, self.geo.inodes_count);
        for n in 0..self.dir_blocks(dir)? {
            let block = self.dir_block(dir, n)?;
            let i = self.cache.get(&mut self.dev, block, Kind::Directory)?;
            let data = self.cache.data(i);
            let mut off = 0;
            let mut prev = None;
            while off < data.len() {
                let s = parse_slot(data, off, filetype, inodes)?;
                if s.ino != 0 && &data[off + 8..off + 8 + s.name_len] == name {
                    return Ok(Some(Found { block, off, prev, ino: s.ino }));
                }
                prev = Some(off);
                off += s.rec_len;
            }
        }
        Ok(None)
    }

    /// Adds the entry `name` → `ino` to directory `dir` (whose inode the caller stores),
    /// in the first gap large enough or in a new block at the end.
    pub(crate) fn add_entry(&mut self, dir: &mut Inode, name: &[u8], ino: Ino, ft: FileType) -> Result<(), Error> {
        let need = rec_len_for(name.len());
        let type_byte = if self.geo.filetype { ft.to_dirent() } else { 0 };
        let (filetype, inodes) = (self.geo.filetype, self.geo.inodes_count);
        let blocks = self.dir_blocks(dir)?;
        let mut last = 0;
        for n in 0..blocks {
            let block = self.dir_block(dir, n)?;
            last = block;
            let i = self.cache.get(&mut self.dev, block, Kind::Directory)?;
            let data = self.cache.data(i);
            let mut off = 0;
            let mut gap = None;
            while off < data.len() {
                let s = parse_slot(data, off, filetype, inodes)?;
                let used = if s.ino == 0 { 0 } else { rec_len_for(s.name_len) };
                if s.rec_len - used >= need {
                    gap = Some((s, used));
                    break;
                }
                off += s.rec_len;
            }
            if let Some((s, used)) = gap {
                let data = self.cache.data_mut(i);
                if used == 0 {
                    write_slot(data, s.off, s.rec_len, name, ino, type_byte);
                } else {
                    put16(data, s.off + 4, used as u16);
                    write_slot(data, s.off + used, s.rec_len - used, name, ino, type_byte);
                }
                self.touch_dir(dir);
                return Ok(());
            }
        }
        let bs = u64::from(self.geo.block_size);
        let new_size = dir.size() + bs;
        if new_size > u64::from(u32::MAX) {
            return Err(Error::TooBig);
        }
        let (block, _) = self.map_block_alloc(dir, blocks, last.saturating_add(1))?;
        let i = self.cache.get_zeroed(&mut self.dev, block, Kind::Directory)?;
        let rec_len = self.geo.block_size as usize;
        let data = self.cache.data_mut(i);
        write_slot(data, 0, rec_len, name, ino, type_byte);
        dir.set_size(new_size);
        self.touch_dir(dir);
        Ok(())
    }

    /// Removes the entry `found` from its directory `dir` (whose inode the caller stores).
    pub(crate) fn remove_entry(&mut self, dir: &mut Inode, found: &Found) -> Result<(), Error> {
        let (filetype, inodes) = (self.geo.filetype, self.geo.inodes_count);
        let i = self.cache.get(&mut self.dev, found.block, Kind::Directory)?;
        let data = self.cache.data(i);
        let s = parse_slot(data, found.off, filetype, inodes)?;
        match found.prev {
            Some(p) => {
                let prev = parse_slot(data, p, filetype, inodes)?;
                let merged = prev.rec_len + s.rec_len;
                put16(self.cache.data_mut(i), p + 4, merged as u16);
            }
            None => put32(self.cache.data_mut(i), found.off, 0),
        }
        self.touch_dir(dir);
        Ok(())
    }

    /// Points the entry `found` at `ino` (rename over an existing name).
    pub(crate) fn retarget_entry(
        &mut self,
        dir: &mut Inode,
        found: &Found,
        ino: Ino,
        ft: FileType,
    ) -> Result<(), Error> {
        let i = self.cache.get(&mut self.dev, found.block, Kind::Directory)?;
        let filetype = self.geo.filetype;
        let data = self.cache.data_mut(i);
        put32(data, found.off, ino);
        if filetype {
            data[found.off + 7] = ft.to_dirent();
        }
        self.touch_dir(dir);
        Ok(())
    }

    /// Marks a directory changed: new times, and no hash-tree index any more.
    fn touch_dir(&self, dir: &mut Inode) {
        dir.set_flags(dir.flags() & !INDEX_FL);
        dir.set_mtime(self.clock);
        dir.set_ctime(self.clock);
    }

    /// Whether directory `dir` holds nothing but `.` and `..`.
    pub(crate) fn dir_is_empty(&mut self, dir: &Inode) -> Result<bool, Error> {
        let (filetype, inodes) = (self.geo.filetype, self.geo.inodes_count);
        for n in 0..self.dir_blocks(dir)? {
            let block = self.dir_block(dir, n)?;
            let i = self.cache.get(&mut self.dev, block, Kind::Directory)?;
            let data = self.cache.data(i);
            let mut off = 0;
            while off < data.len() {
                let s = parse_slot(data, off, filetype, inodes)?;
                let name = &data[off + 8..off + 8 + s.name_len];
                if s.ino != 0 && name != b"." && name != b".." {
                    return Ok(false);
                }
                off += s.rec_len;
            }
        }
        Ok(true)
    }

    /// The first entry of `dir` at or after byte position `cookie`, with the position after it.
    pub(crate) fn entry_at(&mut self, dir: &Inode, cookie: u64) -> Result<Option<(DirEntry, u64)>, Error> {
        let (filetype, inodes) = (self.geo.filetype, self.geo.inodes_count);
        let bs = u64::from(self.geo.block_size);
        let blocks = self.dir_blocks(dir)?;
        let mut n = cookie / bs;
        let mut from = (cookie % bs) as usize;
        while n < blocks {
            let block = self.dir_block(dir, n)?;
            let i = self.cache.get(&mut self.dev, block, Kind::Directory)?;
            let data = self.cache.data(i);
            let mut off = 0;
            let mut hit = None;
            while off < data.len() {
                let s = parse_slot(data, off, filetype, inodes)?;
                if s.ino != 0 && off >= from {
                    hit = Some((s, data[off + 8..off + 8 + s.name_len].to_vec()));
                    break;
                }
                off += s.rec_len;
            }
            if let Some((s, name)) = hit {
                let mut file_type = FileType::from_dirent(s.type_byte);
                if !filetype || file_type == FileType::Unknown {
                    file_type = match self.load_inode(s.ino) {
                        Ok(inode) => inode.file_type(),
                        Err(_) => FileType::Unknown,
                    };
                }
                let next = n * bs + (s.off + s.rec_len) as u64;
                return Ok(Some((DirEntry { ino: s.ino, file_type, name }, next)));
            }
            n += 1;
            from = 0;
        }
        Ok(None)
    }
}
