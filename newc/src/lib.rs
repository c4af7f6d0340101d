//! cpio archives in the "newc" format (magic `070701`, or `070702` with checksums).
//!
//! This is the format of Tutti's boot archive (QEMU `-initrd`) and of Linux initramfs images.
//! The reader works on a byte slice without allocating and treats the archive as hostile: every
//! length is checked against the slice, every header field is validated, and a bad archive gives
//! an [`Error`] saying what is wrong and at which byte offset. The writer (feature `alloc`)
//! builds archives for the host tools.
//!
//! Layout of one entry: a 110-byte ASCII header (magic, then thirteen 8-digit hex fields), the
//! NUL-terminated name padded so that header + name is a multiple of 4 bytes, then the data
//! padded to a multiple of 4. The archive ends with an entry named `TRAILER!!!`.
#![no_std]

#[cfg(feature = "alloc")]
extern crate alloc;

#[cfg(feature = "alloc")]
mod write;
#[cfg(feature = "alloc")]
pub use write::Writer;

use core::fmt;

/// The size of an entry header.
pub const HEADER_LEN: usize = 110;
/// The name of the entry that ends an archive.
pub const TRAILER: &str = "TRAILER!!!";
/// The largest name the reader accepts, including its NUL (Linux's PATH_MAX).
pub const MAX_NAME: usize = 4096;

/// File type bits of `mode`.
pub const S_IFMT: u32 = 0o170000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFLNK: u32 = 0o120000;

/// What is wrong with an archive, and where (byte offset from the start).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The archive is empty.
    Empty,
    /// No `070701`/`070702` magic where a header must start.
    BadMagic { offset: usize },
    /// A header field is not 8 hexadecimal digits.
    BadField { offset: usize, field: &'static str },
    /// A header, name or data runs past the end of the archive.
    Truncated { offset: usize },
    /// The name size is 0 or larger than [`MAX_NAME`].
    BadNameSize { offset: usize, size: u32 },
    /// The name does not end in its NUL or is not UTF-8.
    BadName { offset: usize },
    /// The archive ends without a `TRAILER!!!` entry.
    NoTrailer,
    /// Bytes other than zero padding follow the trailer.
    TrailingGarbage { offset: usize },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::Empty => write!(f, "the archive is empty"),
            Error::BadMagic { offset } => {
                write!(f, "no cpio newc magic (070701) at offset {offset}: not a cpio newc archive, or corrupt")
            }
            Error::BadField { offset, field } => write!(f, "header at offset {offset}: field `{field}` is not hex"),
            Error::Truncated { offset } => write!(f, "entry at offset {offset} runs past the end of the archive"),
            Error::BadNameSize { offset, size } => write!(f, "header at offset {offset}: bad name size {size}"),
            Error::BadName { offset } => write!(f, "entry at offset {offset}: name is not NUL-terminated UTF-8"),
            Error::NoTrailer => write!(f, "the archive has no TRAILER!!! entry (truncated?)"),
            Error::TrailingGarbage { offset } => write!(f, "non-zero bytes after the trailer at offset {offset}"),
        }
    }
}

/// One entry of an archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The path inside the archive, as stored (usually without a leading `/`).
    pub name: &'a str,
    /// File type and permission bits.
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: u32,
    /// Device numbers of a device node.
    pub rdev_major: u32,
    pub rdev_minor: u32,
    /// The file's contents (the target of a symbolic link).
    pub data: &'a [u8],
    /// Where the entry's header starts in the archive.
    pub offset: usize,
}

impl Entry<'_> {
    pub fn is_file(&self) -> bool {
        self.mode & S_IFMT == S_IFREG
    }
    pub fn is_dir(&self) -> bool {
        self.mode & S_IFMT == S_IFDIR
    }
}

/// A cpio newc archive over a byte slice.
#[derive(Clone, Copy, Debug)]
pub struct Archive<'a> {
    bytes: &'a [u8],
}

const FIELDS: [&str; 13] = [
    "ino",
    "mode",
    "uid",
    "gid",
    "nlink",
    "mtime",
    "filesize",
    "devmajor",
    "devminor",
    "rdevmajor",
    "rdevminor",
    "namesize",
    "check",
];

impl<'a> Archive<'a> {
    /// Wraps `bytes` and checks the whole archive once, so that later iteration cannot fail.
    pub fn new(bytes: &'a [u8]) -> Result<Archive<'a>, Error> {
        if bytes.is_empty() {
            return Err(Error::Empty);
        }
        let archive = Archive { bytes };
        let mut entries = archive.raw_entries();
        for entry in &mut entries {
            entry?;
        }
        let end = entries.end.ok_or(Error::NoTrailer)?;
        if let Some(i) = bytes[end..].iter().position(|&b| b != 0) {
            return Err(Error::TrailingGarbage { offset: end + i });
        }
        Ok(archive)
    }

    /// The entries, in archive order, without the trailer.
    pub fn entries(&self) -> impl Iterator<Item = Entry<'a>> + 'a {
        // `new` checked every entry, so none of these is an error.
        self.raw_entries().map_while(Result::ok)
    }

    /// The entry with this name (a leading `/` is ignored on both sides).
    pub fn find(&self, name: &str) -> Option<Entry<'a>> {
        let name = name.trim_start_matches('/');
        self.entries().find(|e| e.name.trim_start_matches('/') == name)
    }

    fn raw_entries(&self) -> RawEntries<'a> {
        RawEntries { bytes: self.bytes, offset: 0, end: None, failed: false }
    }
}

struct RawEntries<'a> {
    bytes: &'a [u8],
    offset: usize,
    /// Where the trailer entry ends, once it was read.
    end: Option<usize>,
    failed: bool,
}

impl<'a> RawEntries<'a> {
    fn parse(&mut self) -> Result<Option<Entry<'a>>, Error> {
        let at = self.offset;
        let header = self.bytes.get(at..at + HEADER_LEN).ok_or(Error::Truncated { offset: at })?;
        if &header[..6] != b"070701" && &header[..6] != b"070702" {
            return Err(Error::BadMagic { offset: at });
        }
        let mut f = [0u32; 13];
        for (i, field) in f.iter_mut().enumerate() {
            let digits = &header[6 + 8 * i..14 + 8 * i];
            *field = parse_hex(digits).ok_or(Error::BadField { offset: at, field: FIELDS[i] })?;
        }
        let (mode, filesize, namesize) = (f[1], f[6] as usize, f[11]);
        if namesize == 0 || namesize as usize > MAX_NAME {
            return Err(Error::BadNameSize { offset: at, size: namesize });
        }
        let name_start = at + HEADER_LEN;
        let name_end = name_start + namesize as usize;
        let raw_name = self.bytes.get(name_start..name_end).ok_or(Error::Truncated { offset: at })?;
        let name = raw_name
            .split_last()
            .filter(|(nul, _)| **nul == 0)
            .and_then(|(_, name)| core::str::from_utf8(name).ok())
            .filter(|name| !name.contains('\0'))
            .ok_or(Error::BadName { offset: at })?;
        let data_start = name_end.next_multiple_of(4);
        let data_end = data_start.checked_add(filesize).ok_or(Error::Truncated { offset: at })?;
        let data = self.bytes.get(data_start..data_end).ok_or(Error::Truncated { offset: at })?;
        let next = data_end.next_multiple_of(4);
        if name == TRAILER {
            self.end = Some(next.min(self.bytes.len()));
            return Ok(None);
        }
        self.offset = next;
        Ok(Some(Entry {
            name,
            mode,
            uid: f[2],
            gid: f[3],
            mtime: f[5],
            rdev_major: f[9],
            rdev_minor: f[10],
            data,
            offset: at,
        }))
    }
}

impl<'a> Iterator for RawEntries<'a> {
    type Item = Result<Entry<'a>, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.end.is_some() {
            return None;
        }
        if self.offset >= self.bytes.len() {
            self.failed = true;
            return Some(Err(Error::NoTrailer));
        }
        let result = self.parse();
        self.failed = result.is_err();
        result.transpose()
    }
}

fn parse_hex(digits: &[u8]) -> Option<u32> {
    digits.iter().try_fold(0u32, |acc, &d| Some((acc << 4) | (d as char).to_digit(16)?))
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec::Vec;

    fn entry(name: &str, mode: u32, data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let fields = [1, mode, 0, 0, 1, 0, data.len() as u32, 0, 0, 0, 0, name.len() as u32 + 1, 0];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(std::format!("{f:08X}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out.extend_from_slice(data);
        while out.len() % 4 != 0 {
            out.push(0);
        }
        out
    }

    fn archive(entries: &[(&str, u32, &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        for (n, m, d) in entries {
            out.extend(entry(n, *m, d));
        }
        out.extend(entry(TRAILER, 0, b""));
        out
    }

    #[test]
    fn reads_entries() {
        let bytes = archive(&[("etc", S_IFDIR | 0o755, b""), ("etc/motd", S_IFREG | 0o644, b"hello\n")]);
        let a = Archive::new(&bytes).unwrap();
        let names: Vec<_> = a.entries().map(|e| e.name).collect();
        assert_eq!(names, ["etc", "etc/motd"]);
        let motd = a.find("/etc/motd").unwrap();
        assert!(motd.is_file());
        assert_eq!(motd.data, b"hello\n");
        assert!(a.find("etc").unwrap().is_dir());
    }

    #[test]
    fn accepts_zero_padding_after_trailer_only() {
        let mut bytes = archive(&[("a", S_IFREG, b"x")]);
        bytes.extend_from_slice(&[0; 512]);
        assert!(Archive::new(&bytes).is_ok());
        let n = bytes.len();
        bytes[n - 3] = 7;
        assert_eq!(Archive::new(&bytes).unwrap_err(), Error::TrailingGarbage { offset: n - 3 });
    }

    #[test]
    fn reports_corruption_with_offsets() {
        assert_eq!(Archive::new(b"").unwrap_err(), Error::Empty);
        assert_eq!(Archive::new(&[0x7f; 200]).unwrap_err(), Error::BadMagic { offset: 0 });
        let good = archive(&[("a", S_IFREG, b"abc"), ("b", S_IFREG, b"defg")]);
        let second = entry("a", S_IFREG, b"abc").len();
        // Truncated anywhere: a clear error, never a panic.
        for cut in 1..good.len() {
            assert!(Archive::new(&good[..cut]).is_err(), "cut at {cut} accepted");
        }
        let mut bad = good.clone();
        bad[second + 6 + 8 * 6] = b'z';
        assert_eq!(Archive::new(&bad).unwrap_err(), Error::BadField { offset: second, field: "filesize" });
        let mut no_trailer = good.clone();
        no_trailer.truncate(second + entry("b", S_IFREG, b"defg").len());
        assert_eq!(Archive::new(&no_trailer).unwrap_err(), Error::NoTrailer);
        let mut huge = good;
        huge[6 + 8 * 6..6 + 8 * 7].copy_from_slice(b"FFFFFFFF");
        assert_eq!(Archive::new(&huge).unwrap_err(), Error::Truncated { offset: 0 });
    }

    proptest::proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..600)) {
            let _ = Archive::new(&bytes);
        }

        #[test]
        fn mutated_archives_never_panic(i in 0usize..400, b in proptest::prelude::any::<u8>()) {
            let mut bytes = archive(&[("dir", S_IFDIR, b""), ("dir/file", S_IFREG, b"0123456789")]);
            let i = i % bytes.len();
            bytes[i] = b;
            if let Ok(a) = Archive::new(&bytes) {
                for e in a.entries() { let _ = e.data.len(); }
            }
        }
    }
}
