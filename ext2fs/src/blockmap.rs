//! The map from a file's logical blocks to disk blocks: 12 direct pointers, then single,
//! double and triple indirect blocks. Lookup, allocation along a path, and freeing the tail
//! of a file. Every pointer read from disk is checked to be a data block before it is used.

use alloc::vec::Vec;

use crate::cache::Kind;
use crate::inode::Inode;
use crate::le::{get32, put32};
use crate::{BlockDevice, Error, Fs};

/// Where a logical block's pointer lives: the slot in `i_block`, the number of indirect
/// levels below it, and the index at each level.
struct Path {
    slot: usize,
    depth: usize,
    index: [usize; 3],
}

impl<D: BlockDevice> Fs<D> {
    /// The number of logical blocks a file can have.
    pub(crate) fn max_blocks(&self) -> u64 {
        let p = self.geo.ptrs_per_block();
        12 + p + p * p + p * p * p
    }

    fn path(&self, n: u64) -> Result<Path, Error> {
        let p = self.geo.ptrs_per_block();
        if n < 12 {
            return Ok(Path { slot: n as usize, depth: 0, index: [0; 3] });
        }
        let n = n - 12;
        if n < p {
            return Ok(Path { slot: 12, depth: 1, index: [n as usize, 0, 0] });
        }
        let n = n - p;
        if n < p * p {
            return Ok(Path { slot: 13, depth: 2, index: [(n / p) as usize, (n % p) as usize, 0] });
        }
        let n = n - p * p;
        if n < p * p * p {
            return Ok(Path {
                slot: 14,
                depth: 3,
                index: [(n / (p * p)) as usize, ((n / p) % p) as usize, (n % p) as usize],
            });
        }
        Err(Error::TooBig)
    }

    fn check_ptr(&self, block: u32) -> Result<u32, Error> {
        if self.is_data_block(block) {
            Ok(block)
        } else {
            Err(Error::Corrupt("block pointer outside the data area"))
        }
    }

    /// The disk block holding logical block `n` of `inode`, `None` for a hole.
    pub(crate) fn map_block(&mut self, inode: &Inode, n: u64) -> Result<Option<u32>, Error> {
        let path = self.path(n)?;
        let mut ptr = inode.block(path.slot);
        for level in 0..path.depth {
            if ptr == 0 {
                return Ok(None);
            }
            self.check_ptr(ptr)?;
            let i = self.cache.get(&mut self.dev, ptr, Kind::Indirect)?;
            ptr = get32(self.cache.data(i), path.index[level] * 4);
        }
        if ptr == 0 {
            return Ok(None);
        }
        self.check_ptr(ptr).map(Some)
    }

    /// Counts one more block in the inode's `i_blocks`.
    fn add_sectors(&self, inode: &mut Inode) -> Result<(), Error> {
        let per_block = self.geo.block_size / 512;
        let sectors = inode.sectors().checked_add(per_block).ok_or(Error::TooBig)?;
        inode.set_sectors(sectors);
        Ok(())
    }

    fn alloc_counted(&mut self, inode: &mut Inode, goal: u32) -> Result<u32, Error> {
        let per_block = self.geo.block_size / 512;
        if inode.sectors().checked_add(per_block).is_none() {
            return Err(Error::TooBig);
        }
        let block = self.alloc_block(goal)?;
        self.add_sectors(inode)?;
        Ok(block)
    }

    /// The disk block of logical block `n`, allocating it (and any missing indirect blocks,
    /// zeroed) near `goal` if it is a hole. Returns whether the data block is new; a new
    /// block's contents are undefined until the caller writes or zeroes it.
    pub(crate) fn map_block_alloc(&mut self, inode: &mut Inode, n: u64, goal: u32) -> Result<(u32, bool), Error> {
        let path = self.path(n)?;
        let mut ptr = inode.block(path.slot);
        let mut new = false;
        if ptr == 0 {
            ptr = self.alloc_counted(inode, goal)?;
            inode.set_block(path.slot, ptr);
            new = true;
            if path.depth > 0 {
                self.cache.get_zeroed(&mut self.dev, ptr, Kind::Indirect)?;
            }
        } else {
            self.check_ptr(ptr)?;
        }
        for level in 0..path.depth {
            let parent = ptr;
            let i = self.cache.get(&mut self.dev, parent, Kind::Indirect)?;
            let child = get32(self.cache.data(i), path.index[level] * 4);
            if child != 0 {
                ptr = self.check_ptr(child)?;
                new = false;
                continue;
            }
            ptr = self.alloc_counted(inode, goal)?;
            new = true;
            if level + 1 < path.depth {
                self.cache.get_zeroed(&mut self.dev, ptr, Kind::Indirect)?;
            }
            let i = self.cache.get(&mut self.dev, parent, Kind::Indirect)?;
            put32(self.cache.data_mut(i), path.index[level] * 4, ptr);
        }
        Ok((ptr, new))
    }

    /// Frees every block of `inode` from logical block `keep` on, with the indirect blocks
    /// that no longer map anything, and updates `i_blocks`.
    pub(crate) fn free_blocks_from(&mut self, inode: &mut Inode, keep: u64) -> Result<(), Error> {
        let p = self.geo.ptrs_per_block();
        // Visiting more pointers than the file system has blocks means a loop or garbage.
        let mut budget = u64::from(self.geo.blocks_count) * 2;
        let mut freed = 0u64;
        let result = (|| {
            for slot in 0..12usize {
                let b = inode.block(slot);
                if b != 0 && slot as u64 >= keep {
                    self.check_ptr(b)?;
                    self.free_block(b)?;
                    freed += 1;
                    inode.set_block(slot, 0);
                }
            }
            let mut first = 12u64;
            for (slot, level) in [(12usize, 1u32), (13, 2), (14, 3)] {
                let span = p.pow(level);
                let b = inode.block(slot);
                if b != 0 && first + span > keep && self.free_tree(b, level, first, keep, &mut budget, &mut freed)? {
                    inode.set_block(slot, 0);
                }
                first += span;
            }
            Ok(())
        })();
        let per_block = u64::from(self.geo.block_size / 512);
        let sectors = u64::from(inode.sectors()).saturating_sub(freed * per_block);
        inode.set_sectors(sectors as u32);
        result
    }

    /// Frees the part of the tree under `ptr` (at `level` indirections, mapping logical blocks
    /// from `first`) that lies at or after `keep`. Returns whether `ptr` itself was freed.
    fn free_tree(
        &mut self,
        ptr: u32,
        level: u32,
        first: u64,
        keep: u64,
        budget: &mut u64,
        freed: &mut u64,
    ) -> Result<bool, Error> {
        self.check_ptr(ptr)?;
        *budget = budget.checked_sub(1).ok_or(Error::Corrupt("indirect blocks form a loop"))?;
        if level == 0 {
            self.free_block(ptr)?;
            *freed += 1;
            return Ok(true);
        }
        let p = self.geo.ptrs_per_block();
        let span = p.pow(level - 1);
        let i = self.cache.get(&mut self.dev, ptr, Kind::Indirect)?;
        let children: Vec<u32> = self.cache.data(i).chunks_exact(4).map(|c| get32(c, 0)).collect();
        let whole = keep <= first;
        for (k, &child) in children.iter().enumerate() {
            let child_first = first + k as u64 * span;
            if child == 0 || child_first + span <= keep {
                continue;
            }
            let gone = self.free_tree(child, level - 1, child_first, keep, budget, freed)?;
            if gone && !whole {
                let i = self.cache.get(&mut self.dev, ptr, Kind::Indirect)?;
                put32(self.cache.data_mut(i), k * 4, 0);
            }
        }
        if whole {
            self.free_block(ptr)?;
            *freed += 1;
        }
        Ok(whole)
    }
}
