//! A bounded write-back cache of metadata blocks (and of data blocks written partially).
//!
//! Every entry carries the kind of block it holds. Dirty entries are written in kind order —
//! file data, bitmaps, indirect and attribute blocks, inode tables, directories — so a block
//! is on disk before the metadata that points to it and bitmaps mark a block used before any
//! pointer to it reaches the disk. When every entry is dirty and a slot is needed, the whole
//! cache is written back in that order; a single dirty block is never written out of turn.

use alloc::vec;
use alloc::vec::Vec;

use crate::{BlockDevice, Error};

/// What a cached block holds; the order is the write-back order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Data,
    Bitmap,
    Indirect,
    InodeTable,
    Directory,
}

const KINDS: [Kind; 5] = [Kind::Data, Kind::Bitmap, Kind::Indirect, Kind::InodeTable, Kind::Directory];

struct Entry {
    block: Option<u32>,
    data: Vec<u8>,
    dirty: bool,
    kind: Kind,
    used: u64,
}

/// The block cache. Entry indices returned by `get` stay valid until the next `get`,
/// `get_zeroed` or `discard`.
pub struct Cache {
    entries: Vec<Entry>,
    capacity: usize,
    block_size: usize,
    tick: u64,
}

impl Cache {
    pub fn new(capacity: usize, block_size: usize) -> Cache {
        Cache { entries: Vec::new(), capacity: capacity.max(8), block_size, tick: 0 }
    }

    fn find(&self, block: u32) -> Option<usize> {
        self.entries.iter().position(|e| e.block == Some(block))
    }

    pub fn contains(&self, block: u32) -> bool {
        self.find(block).is_some()
    }

    fn touch(&mut self, i: usize, kind: Kind) {
        self.tick += 1;
        self.entries[i].used = self.tick;
        // A block's role can change (a freed indirect block reused for data): keep the latest.
        self.entries[i].kind = kind;
    }

    /// The entry holding `block`, read from the device if it is not cached.
    pub fn get<D: BlockDevice>(&mut self, dev: &mut D, block: u32, kind: Kind) -> Result<usize, Error> {
        if let Some(i) = self.find(block) {
            self.touch(i, kind);
            return Ok(i);
        }
        let i = self.slot(dev)?;
        let offset = u64::from(block) * self.block_size as u64;
        if dev.read(offset, &mut self.entries[i].data).is_err() {
            return Err(Error::Device);
        }
        self.entries[i].block = Some(block);
        self.entries[i].dirty = false;
        self.touch(i, kind);
        Ok(i)
    }

    /// The entry for `block` filled with zeros and dirty, without reading the device (for a
    /// newly allocated block).
    pub fn get_zeroed<D: BlockDevice>(&mut self, dev: &mut D, block: u32, kind: Kind) -> Result<usize, Error> {
        let i = match self.find(block) {
            Some(i) => i,
            None => self.slot(dev)?,
        };
        self.entries[i].data.fill(0);
        self.entries[i].block = Some(block);
        self.entries[i].dirty = true;
        self.touch(i, kind);
        Ok(i)
    }

    pub fn data(&self, i: usize) -> &[u8] {
        &self.entries[i].data
    }

    /// The entry's bytes for changing; marks it dirty.
    pub fn data_mut(&mut self, i: usize) -> &mut [u8] {
        self.entries[i].dirty = true;
        &mut self.entries[i].data
    }

    /// Forgets `block` without writing it (it was freed, or is being overwritten directly).
    pub fn discard(&mut self, block: u32) {
        if let Some(i) = self.find(block) {
            self.entries[i].block = None;
            self.entries[i].dirty = false;
        }
    }

    /// A free slot: a new one below capacity, else the least recently used clean entry,
    /// after writing everything back if every entry is dirty.
    fn slot<D: BlockDevice>(&mut self, dev: &mut D) -> Result<usize, Error> {
        if let Some(i) = self.entries.iter().position(|e| e.block.is_none()) {
            return Ok(i);
        }
        if self.entries.len() < self.capacity {
            self.entries.push(Entry {
                block: None,
                data: vec![0; self.block_size],
                dirty: false,
                kind: Kind::Data,
                used: 0,
            });
            return Ok(self.entries.len() - 1);
        }
        if self.entries.iter().all(|e| e.dirty) {
            self.write_back(dev)?;
        }
        let i = (0..self.entries.len())
            .filter(|&i| !self.entries[i].dirty)
            .min_by_key(|&i| self.entries[i].used)
            .ok_or(Error::Device)?;
        self.entries[i].block = None;
        Ok(i)
    }

    /// Writes every dirty entry, kind by kind in write-back order, each kind by ascending
    /// block number.
    pub fn write_back<D: BlockDevice>(&mut self, dev: &mut D) -> Result<(), Error> {
        for kind in KINDS {
            let mut dirty: Vec<usize> =
                (0..self.entries.len()).filter(|&i| self.entries[i].dirty && self.entries[i].kind == kind).collect();
            dirty.sort_unstable_by_key(|&i| self.entries[i].block);
            for i in dirty {
                let Some(block) = self.entries[i].block else { continue };
                let offset = u64::from(block) * self.block_size as u64;
                dev.write(offset, &self.entries[i].data).map_err(|_| Error::Device)?;
                self.entries[i].dirty = false;
            }
        }
        Ok(())
    }
}
