//! Building newc archives (host tools: the boot archive, Linux initramfs images).

use crate::{S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, TRAILER};
use alloc::vec::Vec;
use core::fmt::Write as _;

/// Builds a cpio newc archive in memory. Entries are written in the order they are added;
/// add a directory before its contents.
#[derive(Default)]
pub struct Writer {
    out: Vec<u8>,
    next_ino: u32,
}

impl Writer {
    pub fn new() -> Writer {
        Writer { out: Vec::new(), next_ino: 1 }
    }

    /// A regular file with permission bits `perm` (e.g. `0o644`).
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> &mut Writer {
        self.entry(name, S_IFREG | (perm & 0o7777), (0, 0), data)
    }

    /// A directory.
    pub fn dir(&mut self, name: &str, perm: u32) -> &mut Writer {
        self.entry(name, S_IFDIR | (perm & 0o7777), (0, 0), b"")
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Writer {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes())
    }

    /// A character device node.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> &mut Writer {
        self.entry(name, S_IFCHR | (perm & 0o7777), (major, minor), b"")
    }

    /// Ends the archive with its trailer and returns the bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry(TRAILER, 0, (0, 0), b"");
        self.out
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) -> &mut Writer {
        let ino = if name == TRAILER { 0 } else { self.next_ino };
        self.next_ino += 1;
        let nlink = if mode & S_IFMT == S_IFDIR { 2 } else { 1 };
        let size = u32::try_from(data.len()).expect("cpio newc entries are at most 4 GiB");
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, name.len() as u32 + 1, 0];
        let mut header = alloc::string::String::from("070701");
        for f in fields {
            write!(header, "{f:08X}").expect("writing to a String cannot fail");
        }
        self.out.extend_from_slice(header.as_bytes());
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
        self
    }

    fn pad(&mut self) {
        let len = self.out.len().next_multiple_of(4);
        self.out.resize(len, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Archive;

    #[test]
    fn round_trips_through_the_reader() {
        let mut w = Writer::new();
        w.dir("dev", 0o755)
            .char_device("dev/console", 0o600, 5, 1)
            .file("init", 0o755, b"\x7fELF")
            .symlink("bin/sh", "busybox");
        let bytes = w.finish();
        let a = Archive::new(&bytes).unwrap();
        let e: alloc::vec::Vec<_> = a.entries().collect();
        assert_eq!(e.len(), 4);
        assert_eq!((e[1].rdev_major, e[1].rdev_minor, e[1].mode & crate::S_IFMT), (5, 1, S_IFCHR));
        assert_eq!(e[2].data, b"\x7fELF");
        assert_eq!(e[2].mode, S_IFREG | 0o755);
        assert_eq!(e[3].data, b"busybox");
    }
}
