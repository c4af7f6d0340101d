//! The on-disk inode: a typed view over its first 128 bytes (the fields every revision has).
//! Bytes we do not interpret are kept as read, so writing an inode back preserves them.

use crate::le::{get16, get32, put16, put32};
use crate::FileType;

/// Size of the part of an inode record every revision has.
pub const INODE_BASE: usize = 128;
/// Number of block pointers in an inode: 12 direct, then single, double, triple indirect.
pub const N_BLOCKS: usize = 15;
/// `i_flags` bit: the directory has a hash-tree index (which we do not maintain).
pub const INDEX_FL: u32 = 0x1000;
/// The largest link count ext2 allows.
pub const LINK_MAX: u16 = 32000;

pub const S_IFMT: u16 = 0xF000;
pub const S_IFSOCK: u16 = 0xC000;
pub const S_IFLNK: u16 = 0xA000;
pub const S_IFREG: u16 = 0x8000;
pub const S_IFBLK: u16 = 0x6000;
pub const S_IFDIR: u16 = 0x4000;
pub const S_IFCHR: u16 = 0x2000;
pub const S_IFIFO: u16 = 0x1000;

/// One inode's first 128 bytes.
#[derive(Clone)]
pub struct Inode(pub [u8; INODE_BASE]);

impl Inode {
    pub fn mode(&self) -> u16 {
        get16(&self.0, 0)
    }
    pub fn set_mode(&mut self, v: u16) {
        put16(&mut self.0, 0, v)
    }
    pub fn file_type(&self) -> FileType {
        FileType::from_mode(self.mode())
    }
    pub fn is_dir(&self) -> bool {
        self.mode() & S_IFMT == S_IFDIR
    }
    pub fn uid(&self) -> u32 {
        u32::from(get16(&self.0, 2)) | u32::from(get16(&self.0, 120)) << 16
    }
    pub fn gid(&self) -> u32 {
        u32::from(get16(&self.0, 24)) | u32::from(get16(&self.0, 122)) << 16
    }
    /// File size; the high half (`i_size_high`) counts for regular files only.
    pub fn size(&self) -> u64 {
        let lo = u64::from(get32(&self.0, 4));
        if self.mode() & S_IFMT == S_IFREG {
            lo | u64::from(get32(&self.0, 108)) << 32
        } else {
            lo
        }
    }
    pub fn set_size(&mut self, v: u64) {
        put32(&mut self.0, 4, v as u32);
        if self.mode() & S_IFMT == S_IFREG {
            put32(&mut self.0, 108, (v >> 32) as u32);
        }
    }
    pub fn atime(&self) -> u32 {
        get32(&self.0, 8)
    }
    pub fn set_atime(&mut self, v: u32) {
        put32(&mut self.0, 8, v)
    }
    pub fn ctime(&self) -> u32 {
        get32(&self.0, 12)
    }
    pub fn set_ctime(&mut self, v: u32) {
        put32(&mut self.0, 12, v)
    }
    pub fn mtime(&self) -> u32 {
        get32(&self.0, 16)
    }
    pub fn set_mtime(&mut self, v: u32) {
        put32(&mut self.0, 16, v)
    }
    pub fn set_dtime(&mut self, v: u32) {
        put32(&mut self.0, 20, v)
    }
    pub fn links(&self) -> u16 {
        get16(&self.0, 26)
    }
    pub fn set_links(&mut self, v: u16) {
        put16(&mut self.0, 26, v)
    }
    /// `i_blocks`: 512-byte sectors held, indirect and attribute blocks included.
    pub fn sectors(&self) -> u32 {
        get32(&self.0, 28)
    }
    pub fn set_sectors(&mut self, v: u32) {
        put32(&mut self.0, 28, v)
    }
    pub fn flags(&self) -> u32 {
        get32(&self.0, 32)
    }
    pub fn set_flags(&mut self, v: u32) {
        put32(&mut self.0, 32, v)
    }
    pub fn block(&self, i: usize) -> u32 {
        get32(&self.0, 40 + 4 * i)
    }
    pub fn set_block(&mut self, i: usize, v: u32) {
        put32(&mut self.0, 40 + 4 * i, v)
    }
    /// The 60 bytes of `i_block`, where a fast symlink keeps its target.
    pub fn block_bytes(&self) -> &[u8] {
        &self.0[40..40 + 4 * N_BLOCKS]
    }
    pub fn block_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0[40..40 + 4 * N_BLOCKS]
    }
    pub fn set_generation(&mut self, v: u32) {
        put32(&mut self.0, 100, v)
    }
    /// `i_file_acl`: the extended attribute block, 0 if none.
    pub fn file_acl(&self) -> u32 {
        get32(&self.0, 104)
    }
}

impl FileType {
    /// The type encoded in an inode's mode.
    pub fn from_mode(mode: u16) -> FileType {
        match mode & S_IFMT {
            S_IFREG => FileType::Regular,
            S_IFDIR => FileType::Directory,
            S_IFLNK => FileType::Symlink,
            S_IFCHR => FileType::CharDevice,
            S_IFBLK => FileType::BlockDevice,
            S_IFIFO => FileType::Fifo,
            S_IFSOCK => FileType::Socket,
            _ => FileType::Unknown,
        }
    }

    /// The type byte of a directory entry (the `filetype` feature).
    pub fn from_dirent(t: u8) -> FileType {
        match t {
            1 => FileType::Regular,
            2 => FileType::Directory,
            3 => FileType::CharDevice,
            4 => FileType::BlockDevice,
            5 => FileType::Fifo,
            6 => FileType::Socket,
            7 => FileType::Symlink,
            _ => FileType::Unknown,
        }
    }

    /// This type as a directory entry's type byte.
    pub fn to_dirent(self) -> u8 {
        match self {
            FileType::Unknown => 0,
            FileType::Regular => 1,
            FileType::Directory => 2,
            FileType::CharDevice => 3,
            FileType::BlockDevice => 4,
            FileType::Fifo => 5,
            FileType::Socket => 6,
            FileType::Symlink => 7,
        }
    }
}
