//! Allocation of blocks and inodes from the group bitmaps, and their deferred release.
//!
//! A freed block or inode is not cleared in its bitmap at once: it joins a pending list and
//! its bitmap bit stays set until `sync` has written every change that dropped references to
//! it. So nothing that the last synced state still uses is reused before the next sync, and a
//! crash can only leak what was freed since then.

use alloc::vec::Vec;

use crate::cache::Kind;
use crate::layout::in_ranges;
use crate::{BlockDevice, Error, Fs, Ino};

/// Finds the first clear bit of `bitmap` in `[from, to)` for which `usable` holds.
fn find_clear(bitmap: &[u8], from: u32, to: u32, usable: impl Fn(u32) -> bool) -> Option<u32> {
    let mut bit = from;
    while bit < to {
        let byte = bitmap[(bit / 8) as usize];
        if byte == 0xFF && bit.is_multiple_of(8) {
            bit += 8;
            continue;
        }
        if byte & (1 << (bit % 8)) == 0 && usable(bit) {
            return Some(bit);
        }
        bit += 1;
    }
    None
}

impl<D: BlockDevice> Fs<D> {
    /// Whether `block` can belong to a file: inside the file system and not metadata.
    pub(crate) fn is_data_block(&self, block: u32) -> bool {
        self.geo.in_range(block) && !in_ranges(&self.meta, block)
    }

    /// Allocates a block, the first free one at or after `goal` (wrapping around).
    pub(crate) fn alloc_block(&mut self, goal: u32) -> Result<u32, Error> {
        if let Some(b) = self.try_alloc_block(goal)? {
            return Ok(b);
        }
        if !self.pending_blocks.is_empty() || !self.pending_inodes.is_empty() {
            // Space freed since the last sync becomes usable once that sync is done.
            self.sync()?;
            if let Some(b) = self.try_alloc_block(goal)? {
                return Ok(b);
            }
        }
        Err(Error::NoSpace)
    }

    fn try_alloc_block(&mut self, goal: u32) -> Result<Option<u32>, Error> {
        let geo = &self.geo;
        let goal = if geo.in_range(goal) { goal } else { geo.first_data_block };
        let g0 = (goal - geo.first_data_block) / geo.blocks_per_group;
        let start = (goal - geo.first_data_block) % geo.blocks_per_group;
        let groups = geo.groups;
        for step in 0..=groups {
            let g = (g0 + step) % groups;
            let n = self.geo.blocks_in_group(g);
            let (from, to) = match step {
                0 => (start, n),
                s if s == groups => (0, start.min(n)),
                _ => (0, n),
            };
            if from >= to || self.groups[g as usize].free_blocks == 0 {
                continue;
            }
            let i = self.cache.get(&mut self.dev, self.groups[g as usize].block_bitmap, Kind::Bitmap)?;
            let base = self.geo.group_start(g);
            let meta = &self.meta;
            let Some(bit) = find_clear(self.cache.data(i), from, to, |bit| !in_ranges(meta, base + bit)) else {
                continue;
            };
            self.cache.data_mut(i)[(bit / 8) as usize] |= 1 << (bit % 8);
            let group = &mut self.groups[g as usize];
            group.free_blocks = group.free_blocks.saturating_sub(1);
            return Ok(Some(base + bit));
        }
        Ok(None)
    }

    /// Frees `block` at the next sync; it must be a data block.
    pub(crate) fn free_block(&mut self, block: u32) -> Result<(), Error> {
        if !self.is_data_block(block) {
            return Err(Error::Corrupt("freeing a block that is not a data block"));
        }
        self.cache.discard(block);
        self.pending_block_count += 1;
        match self.pending_blocks.last_mut() {
            Some((start, len)) if u64::from(*start) + u64::from(*len) == u64::from(block) => *len += 1,
            _ => self.pending_blocks.push((block, 1)),
        }
        Ok(())
    }

    /// Allocates an inode for a child of `parent`: files near their directory, directories
    /// in a group with many free blocks.
    pub(crate) fn alloc_inode(&mut self, parent: Ino, dir: bool) -> Result<Ino, Error> {
        if let Some(ino) = self.try_alloc_inode(parent, dir)? {
            return Ok(ino);
        }
        if !self.pending_inodes.is_empty() {
            self.sync()?;
            if let Some(ino) = self.try_alloc_inode(parent, dir)? {
                return Ok(ino);
            }
        }
        Err(Error::NoSpace)
    }

    fn try_alloc_inode(&mut self, parent: Ino, dir: bool) -> Result<Option<Ino>, Error> {
        let groups = self.geo.groups;
        let ipg = self.geo.inodes_per_group;
        let parent_group = (parent.saturating_sub(1) / ipg).min(groups - 1);
        let mut first = parent_group;
        if dir {
            let total: u64 = self.groups.iter().map(|g| u64::from(g.free_inodes)).sum();
            let average = total / u64::from(groups);
            let best = (0..groups)
                .map(|s| (parent_group + s) % groups)
                .filter(|&g| {
                    let free = u64::from(self.groups[g as usize].free_inodes);
                    free > 0 && free >= average
                })
                .max_by_key(|&g| (self.groups[g as usize].free_blocks, core::cmp::Reverse(g)));
            if let Some(g) = best {
                first = g;
            }
        }
        for step in 0..groups {
            let g = (first + step) % groups;
            if self.groups[g as usize].free_inodes == 0 {
                continue;
            }
            let i = self.cache.get(&mut self.dev, self.groups[g as usize].inode_bitmap, Kind::Bitmap)?;
            let base = g * ipg + 1;
            let first_ino = self.geo.first_ino;
            let Some(bit) = find_clear(self.cache.data(i), 0, ipg, |bit| base + bit >= first_ino) else {
                continue;
            };
            self.cache.data_mut(i)[(bit / 8) as usize] |= 1 << (bit % 8);
            let group = &mut self.groups[g as usize];
            group.free_inodes = group.free_inodes.saturating_sub(1);
            if dir {
                group.used_dirs += 1;
            }
            return Ok(Some(base + bit));
        }
        Ok(None)
    }

    /// Clears the bitmap bits of every pending block and inode in `inodes`, updating the
    /// group counts. Called by `sync` once nothing on disk refers to them any more.
    pub(crate) fn release(&mut self, inodes: &[(Ino, bool)]) -> Result<(), Error> {
        let mut ranges = core::mem::take(&mut self.pending_blocks);
        self.pending_block_count = 0;
        ranges.sort_unstable();
        for (start, len) in ranges {
            for block in start..start.saturating_add(len) {
                let g = (block - self.geo.first_data_block) / self.geo.blocks_per_group;
                let bit = (block - self.geo.first_data_block) % self.geo.blocks_per_group;
                let i = self.cache.get(&mut self.dev, self.groups[g as usize].block_bitmap, Kind::Bitmap)?;
                let mask = 1u8 << (bit % 8);
                if self.cache.data(i)[(bit / 8) as usize] & mask != 0 {
                    self.cache.data_mut(i)[(bit / 8) as usize] &= !mask;
                    self.groups[g as usize].free_blocks += 1;
                }
            }
        }
        for &(ino, dir) in inodes {
            let g = (ino - 1) / self.geo.inodes_per_group;
            let bit = (ino - 1) % self.geo.inodes_per_group;
            let i = self.cache.get(&mut self.dev, self.groups[g as usize].inode_bitmap, Kind::Bitmap)?;
            let mask = 1u8 << (bit % 8);
            if self.cache.data(i)[(bit / 8) as usize] & mask != 0 {
                self.cache.data_mut(i)[(bit / 8) as usize] &= !mask;
                let group = &mut self.groups[g as usize];
                group.free_inodes += 1;
                if dir {
                    group.used_dirs = group.used_dirs.saturating_sub(1);
                }
            }
        }
        Ok(())
    }

    /// Whether `ino` is unlinked and waiting for the next sync to be freed.
    pub(crate) fn is_pending(&self, ino: Ino) -> bool {
        self.pending_inodes.iter().any(|&(i, _)| i == ino)
    }

    /// Takes the pending inode list (for `sync`).
    pub(crate) fn take_pending_inodes(&mut self) -> Vec<(Ino, bool)> {
        core::mem::take(&mut self.pending_inodes)
    }
}
