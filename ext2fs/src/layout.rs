//! The on-disk layout: the superblock (checked field by field, features accepted or refused),
//! the geometry derived from it, and the group descriptor table.

use alloc::vec::Vec;

use crate::le::{get16, get32, put16};
use crate::Error;

/// Byte offset of the primary superblock on the device.
pub const SUPERBLOCK_OFFSET: u64 = 1024;
/// Size of the superblock record.
pub const SUPERBLOCK_SIZE: usize = 1024;
const MAGIC: u16 = 0xEF53;
/// Size of one group descriptor (the 64bit feature, with larger ones, is refused).
const DESC_SIZE: usize = 32;
/// The largest group descriptor table we keep in memory.
const MAX_GDT_BYTES: u64 = 1 << 20;

const COMPAT_HAS_JOURNAL: u32 = 0x4;
const INCOMPAT_FILETYPE: u32 = 0x2;
const INCOMPAT_FLEX_BG: u32 = 0x200;
const RO_COMPAT_SPARSE_SUPER: u32 = 0x1;
pub const RO_COMPAT_LARGE_FILE: u32 = 0x2;

/// Incompatible features we do not implement, with the name e2fsprogs gives them.
const INCOMPAT_NAMES: [(u32, &str); 14] = [
    (0x1, "compression"),
    (0x4, "needs_recovery"),
    (0x8, "journal_dev"),
    (0x10, "meta_bg"),
    (0x40, "extents"),
    (0x80, "64bit"),
    (0x100, "mmp"),
    (0x400, "ea_inode"),
    (0x1000, "dirdata"),
    (0x2000, "metadata_csum_seed"),
    (0x4000, "large_dir"),
    (0x8000, "inline_data"),
    (0x10000, "encrypt"),
    (0x20000, "casefold"),
];

/// Read-only-compatible features we do not maintain: such a file system mounts read-only.
const RO_COMPAT_NAMES: [(u32, &str); 11] = [
    (0x4, "btree_dir"),
    (0x8, "huge_file"),
    (0x10, "uninit_bg"),
    (0x20, "dir_nlink"),
    (0x40, "extra_isize"),
    (0x100, "quota"),
    (0x400, "metadata_csum"),
    (0x1000, "read-only"),
    (0x2000, "project"),
    (0x8000, "verity"),
    (0x10000, "orphan_present"),
];
const RO_COMPAT_BIGALLOC: u32 = 0x200;

/// Everything about the file system's shape, derived from a checked superblock.
#[derive(Clone, Debug)]
pub struct Geometry {
    pub block_size: u32,
    pub blocks_count: u32,
    pub first_data_block: u32,
    pub blocks_per_group: u32,
    pub inodes_per_group: u32,
    pub inodes_count: u32,
    pub inode_size: u32,
    pub first_ino: u32,
    pub groups: u32,
    pub gdt_blocks: u32,
    pub reserved_gdt_blocks: u32,
    pub itable_blocks: u32,
    pub dynamic_rev: bool,
    pub filetype: bool,
    pub sparse_super: bool,
    /// The `i_extra_isize` given to inodes we create (0 with 128-byte inodes).
    pub extra_isize: u16,
}

impl Geometry {
    /// Block pointers per indirect block.
    pub fn ptrs_per_block(&self) -> u64 {
        u64::from(self.block_size / 4)
    }

    /// First block of group `g`.
    pub fn group_start(&self, g: u32) -> u32 {
        // Cannot overflow: groups * blocks_per_group covers at most blocks_count (checked).
        self.first_data_block + g * self.blocks_per_group
    }

    /// Number of blocks in group `g` (the last group may be short).
    pub fn blocks_in_group(&self, g: u32) -> u32 {
        let start = self.group_start(g);
        (self.blocks_count - start).min(self.blocks_per_group)
    }

    /// Whether group `g` holds a superblock backup (and a group descriptor table copy).
    pub fn has_super(&self, g: u32) -> bool {
        if g <= 1 || !self.sparse_super {
            return true;
        }
        [3u32, 5, 7].iter().any(|&base| {
            let mut p = base;
            while p < g {
                match p.checked_mul(base) {
                    Some(n) => p = n,
                    None => return false,
                }
            }
            p == g
        })
    }

    /// Whether `block` may hold file data: inside the file system's data area.
    pub fn in_range(&self, block: u32) -> bool {
        block >= self.first_data_block && block < self.blocks_count
    }
}

/// Checks a superblock and derives the geometry. `read_only` allows features we can only read.
pub fn parse_superblock(sb: &[u8], device_size: u64, read_only: bool) -> Result<Geometry, Error> {
    if sb.len() < SUPERBLOCK_SIZE || get16(sb, 56) != MAGIC {
        return Err(Error::Corrupt("no ext2 superblock (bad magic)"));
    }
    let inodes_count = get32(sb, 0);
    let blocks_count = get32(sb, 4);
    let first_data_block = get32(sb, 20);
    let log_block = get32(sb, 24);
    let blocks_per_group = get32(sb, 32);
    let inodes_per_group = get32(sb, 40);
    let rev = get32(sb, 76);
    if log_block > 2 {
        return Err(Error::Unsupported("block size above 4096"));
    }
    let block_size = 1024u32 << log_block;
    if rev > 1 {
        return Err(Error::Unsupported("superblock revision above 1"));
    }
    let dynamic_rev = rev == 1;
    let (compat, incompat, ro_compat) =
        if dynamic_rev { (get32(sb, 92), get32(sb, 96), get32(sb, 100)) } else { (0, 0, 0) };
    for (bit, name) in INCOMPAT_NAMES {
        if incompat & bit != 0 {
            return Err(Error::Unsupported(name));
        }
    }
    if incompat & !(INCOMPAT_FILETYPE | INCOMPAT_FLEX_BG) != 0 {
        return Err(Error::Unsupported("unknown incompatible feature"));
    }
    if ro_compat & RO_COMPAT_BIGALLOC != 0 {
        return Err(Error::Unsupported("bigalloc"));
    }
    if !read_only {
        for (bit, name) in RO_COMPAT_NAMES {
            if ro_compat & bit != 0 {
                return Err(Error::Unsupported(name));
            }
        }
        if ro_compat & !(RO_COMPAT_SPARSE_SUPER | RO_COMPAT_LARGE_FILE) != 0 {
            return Err(Error::Unsupported("unknown read-only-compatible feature"));
        }
        if compat & COMPAT_HAS_JOURNAL != 0 {
            return Err(Error::Unsupported("has_journal (ext3 mounts read-only)"));
        }
    }
    let (inode_size, first_ino) = if dynamic_rev { (u32::from(get16(sb, 88)), get32(sb, 84)) } else { (128, 11) };
    if inode_size < 128 || !inode_size.is_power_of_two() || inode_size > block_size {
        return Err(Error::Corrupt("inode size"));
    }
    if first_data_block != u32::from(block_size == 1024) {
        return Err(Error::Corrupt("first data block"));
    }
    if blocks_per_group == 0 || blocks_per_group > 8 * block_size || !blocks_per_group.is_multiple_of(8) {
        return Err(Error::Corrupt("blocks per group"));
    }
    if inodes_per_group == 0 || inodes_per_group > 8 * block_size {
        return Err(Error::Corrupt("inodes per group"));
    }
    if blocks_count <= first_data_block {
        return Err(Error::Corrupt("block count"));
    }
    if u64::from(blocks_count) * u64::from(block_size) > device_size {
        return Err(Error::Corrupt("file system larger than the device"));
    }
    let groups = (blocks_count - first_data_block).div_ceil(blocks_per_group);
    if u64::from(groups) * u64::from(inodes_per_group) != u64::from(inodes_count) {
        return Err(Error::Corrupt("inode count"));
    }
    if first_ino <= 2 || first_ino > inodes_count {
        return Err(Error::Corrupt("first inode"));
    }
    let gdt_bytes = u64::from(groups) * DESC_SIZE as u64;
    if gdt_bytes > MAX_GDT_BYTES {
        return Err(Error::Unsupported("too many block groups"));
    }
    let gdt_blocks = gdt_bytes.div_ceil(u64::from(block_size)) as u32;
    let reserved_gdt_blocks = if dynamic_rev { u32::from(get16(sb, 206)) } else { 0 };
    let itable_blocks = (u64::from(inodes_per_group) * u64::from(inode_size)).div_ceil(u64::from(block_size)) as u32;
    // The superblock, descriptor table and reserved descriptor blocks must fit in group 0.
    if u64::from(first_data_block) + 1 + u64::from(gdt_blocks) + u64::from(reserved_gdt_blocks)
        > u64::from(blocks_count)
    {
        return Err(Error::Corrupt("group descriptor table size"));
    }
    let extra_isize = if inode_size > 128 {
        let want = get16(sb, 0x15E).max(get16(sb, 0x15C)).max(32);
        if u32::from(want) > inode_size - 128 || !want.is_multiple_of(4) {
            32.min((inode_size - 128) as u16)
        } else {
            want
        }
    } else {
        0
    };
    Ok(Geometry {
        block_size,
        blocks_count,
        first_data_block,
        blocks_per_group,
        inodes_per_group,
        inodes_count,
        inode_size,
        first_ino,
        groups,
        gdt_blocks,
        reserved_gdt_blocks,
        itable_blocks,
        dynamic_rev,
        filetype: incompat & INCOMPAT_FILETYPE != 0,
        sparse_super: ro_compat & RO_COMPAT_SPARSE_SUPER != 0,
        extra_isize,
    })
}

/// One block group's descriptor, as kept in memory.
#[derive(Clone, Copy, Debug)]
pub struct Group {
    pub block_bitmap: u32,
    pub inode_bitmap: u32,
    pub inode_table: u32,
    pub free_blocks: u32,
    pub free_inodes: u32,
    pub used_dirs: u32,
}

/// Parses and checks the group descriptor table `raw` (gdt_blocks whole blocks).
pub fn parse_groups(geo: &Geometry, raw: &[u8]) -> Result<Vec<Group>, Error> {
    let mut groups = Vec::new();
    for g in 0..geo.groups {
        let d = &raw[g as usize * DESC_SIZE..(g as usize + 1) * DESC_SIZE];
        let group = Group {
            block_bitmap: get32(d, 0),
            inode_bitmap: get32(d, 4),
            inode_table: get32(d, 8),
            free_blocks: u32::from(get16(d, 12)),
            free_inodes: u32::from(get16(d, 14)),
            used_dirs: u32::from(get16(d, 16)),
        };
        let table_end = u64::from(group.inode_table) + u64::from(geo.itable_blocks);
        if !geo.in_range(group.block_bitmap)
            || !geo.in_range(group.inode_bitmap)
            || !geo.in_range(group.inode_table)
            || table_end > u64::from(geo.blocks_count)
        {
            return Err(Error::Corrupt("group descriptor locations"));
        }
        if group.free_blocks > geo.blocks_in_group(g)
            || group.free_inodes > geo.inodes_per_group
            || group.used_dirs > geo.inodes_per_group
        {
            return Err(Error::Corrupt("group descriptor counts"));
        }
        groups.push(group);
    }
    Ok(groups)
}

/// Writes the counts of `groups` back into the raw descriptor table.
pub fn store_groups(groups: &[Group], raw: &mut [u8]) {
    for (g, group) in groups.iter().enumerate() {
        let d = &mut raw[g * DESC_SIZE..(g + 1) * DESC_SIZE];
        // Counts never exceed a group's size, which fits 16 bits (at most 8 * 4096).
        put16(d, 12, group.free_blocks as u16);
        put16(d, 14, group.free_inodes as u16);
        put16(d, 16, group.used_dirs as u16);
    }
}

/// The sorted, merged block ranges `[start, end)` that hold metadata: superblocks and their
/// backups, descriptor tables (with reserved blocks), bitmaps and inode tables. Such blocks
/// are never allocated to or freed from a file.
pub fn metadata_ranges(geo: &Geometry, groups: &[Group]) -> Vec<(u32, u32)> {
    let mut ranges = Vec::new();
    for (g, group) in groups.iter().enumerate() {
        let g = g as u32;
        if geo.has_super(g) {
            let start = geo.group_start(g);
            let len = 1 + geo.gdt_blocks + geo.reserved_gdt_blocks;
            ranges.push((start, start.saturating_add(len).min(geo.blocks_count)));
        }
        ranges.push((group.block_bitmap, group.block_bitmap + 1));
        ranges.push((group.inode_bitmap, group.inode_bitmap + 1));
        ranges.push((group.inode_table, group.inode_table + geo.itable_blocks));
    }
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::new();
    for (s, e) in ranges {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
}

/// Whether `block` lies in one of the sorted `ranges`.
pub fn in_ranges(ranges: &[(u32, u32)], block: u32) -> bool {
    let i = ranges.partition_point(|&(s, _)| s <= block);
    i > 0 && block < ranges[i - 1].1
}

/// Superblock fields the file system updates.
pub mod field {
    pub const FREE_BLOCKS: usize = 12;
    pub const FREE_INODES: usize = 16;
    pub const MTIME: usize = 44;
    pub const WTIME: usize = 48;
    pub const MNT_COUNT: usize = 52;
    pub const RO_COMPAT: usize = 100;
}
