//! A `no_std` ext2 file system, read and write, over any [`BlockDevice`]: the persistent
//! storage of Tutti's file-system service. docs/ext2.md describes what is supported, what is
//! refused, and the cache and crash guarantees.
//!
//! Everything read from the disk is treated as hostile: a damaged image gives
//! [`Error::Corrupt`] for the operation that meets the damage, never a panic, a hang or an
//! allocation sized by a disk value.
#![no_std]

extern crate alloc;

mod allocator;
mod blockmap;
mod cache;
mod dir;
mod fs;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
mod inode;
mod layout;
mod le;

use alloc::vec::Vec;
use core::fmt;

pub use fs::DEFAULT_CACHE_BLOCKS;

/// A disk addressed in bytes.
pub trait BlockDevice {
    /// Reads buf.len() bytes at byte offset `offset`; both multiples of 512.
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError>;
    /// Writes buf at byte offset `offset`; both multiples of 512.
    fn write(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError>;
    /// Makes every completed write durable (virtio-blk FLUSH).
    fn flush(&mut self) -> Result<(), DeviceError>;
    /// The device's size in bytes.
    fn size(&self) -> u64;
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceError;

pub type Ino = u32;
pub const ROOT: Ino = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileType {
    Regular,
    Directory,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
    Unknown,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ino: Ino,
    pub file_type: FileType,
    pub mode: u16,
    pub nlink: u16,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub atime: u32,
    pub mtime: u32,
    pub ctime: u32,
    pub blocks: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    pub ino: Ino,
    pub file_type: FileType,
    pub name: Vec<u8>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatFs {
    pub block_size: u32,
    pub blocks: u64,
    pub free_blocks: u64,
    pub inodes: u32,
    pub free_inodes: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    Device,
    Corrupt(&'static str),
    Unsupported(&'static str),
    NotFound,
    Exists,
    NotDirectory,
    IsDirectory,
    NotEmpty,
    NoSpace,
    NameTooLong,
    InvalidName,
    ReadOnly,
    TooBig,
    InvalidArgument,
    Busy,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Device => f.write_str("device error"),
            Error::Corrupt(what) => write!(f, "corrupt file system: {what}"),
            Error::Unsupported(what) => write!(f, "unsupported file system feature: {what}"),
            Error::NotFound => f.write_str("no such file or directory"),
            Error::Exists => f.write_str("file exists"),
            Error::NotDirectory => f.write_str("not a directory"),
            Error::IsDirectory => f.write_str("is a directory"),
            Error::NotEmpty => f.write_str("directory not empty"),
            Error::NoSpace => f.write_str("no space left on the file system"),
            Error::NameTooLong => f.write_str("name too long"),
            Error::InvalidName => f.write_str("invalid name"),
            Error::ReadOnly => f.write_str("read-only file system"),
            Error::TooBig => f.write_str("file or link count too large"),
            Error::InvalidArgument => f.write_str("invalid argument"),
            Error::Busy => f.write_str("resource busy"),
        }
    }
}

/// A mounted ext2 file system on a device `D`.
pub struct Fs<D: BlockDevice> {
    dev: D,
    geo: layout::Geometry,
    /// The primary superblock as read, updated at sync.
    sb: Vec<u8>,
    /// The group descriptor table as read, updated at sync.
    gdt: Vec<u8>,
    groups: Vec<layout::Group>,
    /// Sorted metadata block ranges, never given to files.
    meta: Vec<(u32, u32)>,
    cache: cache::Cache,
    read_only: bool,
    clock: u32,
    /// Blocks freed since the last sync, as (first, count) runs; still set in the bitmaps.
    pending_blocks: Vec<(u32, u32)>,
    pending_block_count: u64,
    /// Inodes unlinked since the last sync (and whether each is a directory).
    pending_inodes: Vec<(Ino, bool)>,
    /// The superblock changed since mount (mount count, features).
    super_dirty: bool,
    generation: u32,
}
