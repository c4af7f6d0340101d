//! Byte layouts of the Linux x86_64 structures the server reads from and writes into a
//! process: `struct stat`, `struct statx`, `linux_dirent64`, `struct utsname`, `struct
//! termios`, `struct winsize`, `struct timespec`, `struct timeval`, `struct rlimit`, and
//! `struct iovec` arrays. Each encoder returns the exact bytes (little-endian, padded as the
//! C ABI pads them).

use alloc::vec::Vec;

/// What the server knows of a file, in the units Linux reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileStat {
    pub dev: u64,
    pub ino: u64,
    /// Type and permission bits (`S_IFMT | 0o7777`).
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u64,
    pub size: u64,
    pub blksize: u32,
    /// 512-byte units.
    pub blocks: u64,
    /// Seconds since 1970.
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
}

pub const S_IFMT: u32 = 0o170000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFCHR: u32 = 0o020000;
pub const S_IFIFO: u32 = 0o010000;
pub const S_IFREG: u32 = 0o100000;
pub const S_IFLNK: u32 = 0o120000;

/// Bytes of `struct stat` on x86_64.
pub const STAT_LEN: usize = 144;
/// Bytes of `struct statx`.
pub const STATX_LEN: usize = 256;
/// `STATX_BASIC_STATS`: the fields [`statx`] fills.
pub const STATX_BASIC_STATS: u32 = 0x7ff;

fn put(b: &mut [u8], at: usize, v: &[u8]) {
    b[at..at + v.len()].copy_from_slice(v);
}

/// `struct stat` (x86_64: dev, ino, nlink u64; mode, uid, gid u32; pad; rdev, size, blksize,
/// blocks; three timespecs; 3 reserved words).
pub fn stat(s: &FileStat) -> [u8; STAT_LEN] {
    let mut b = [0u8; STAT_LEN];
    put(&mut b, 0, &s.dev.to_le_bytes());
    put(&mut b, 8, &s.ino.to_le_bytes());
    put(&mut b, 16, &(s.nlink as u64).to_le_bytes());
    put(&mut b, 24, &s.mode.to_le_bytes());
    put(&mut b, 28, &s.uid.to_le_bytes());
    put(&mut b, 32, &s.gid.to_le_bytes());
    put(&mut b, 40, &s.rdev.to_le_bytes());
    put(&mut b, 48, &s.size.to_le_bytes());
    put(&mut b, 56, &(s.blksize as u64).to_le_bytes());
    put(&mut b, 64, &s.blocks.to_le_bytes());
    put(&mut b, 72, &s.atime.to_le_bytes());
    put(&mut b, 88, &s.mtime.to_le_bytes());
    put(&mut b, 104, &s.ctime.to_le_bytes());
    b
}

/// `struct statx` with the basic fields (`stx_mask` = [`STATX_BASIC_STATS`]).
pub fn statx(s: &FileStat) -> [u8; STATX_LEN] {
    let mut b = [0u8; STATX_LEN];
    put(&mut b, 0, &STATX_BASIC_STATS.to_le_bytes());
    put(&mut b, 4, &s.blksize.to_le_bytes());
    put(&mut b, 16, &s.nlink.to_le_bytes());
    put(&mut b, 20, &s.uid.to_le_bytes());
    put(&mut b, 24, &s.gid.to_le_bytes());
    put(&mut b, 28, &(s.mode as u16).to_le_bytes());
    put(&mut b, 32, &s.ino.to_le_bytes());
    put(&mut b, 40, &s.size.to_le_bytes());
    put(&mut b, 48, &s.blocks.to_le_bytes());
    // Timestamps: atime 0x40, btime 0x50 (not reported), ctime 0x60, mtime 0x70.
    put(&mut b, 0x40, &s.atime.to_le_bytes());
    put(&mut b, 0x60, &s.ctime.to_le_bytes());
    put(&mut b, 0x70, &s.mtime.to_le_bytes());
    put(&mut b, 0x80, &((s.rdev >> 8) as u32 & 0xfff).to_le_bytes());
    put(&mut b, 0x84, &(s.rdev as u32 & 0xff).to_le_bytes());
    put(&mut b, 0x88, &((s.dev >> 8) as u32 & 0xfff).to_le_bytes());
    put(&mut b, 0x8c, &(s.dev as u32 & 0xff).to_le_bytes());
    b
}

/// Appends one `linux_dirent64` record (ino, off, reclen, type, name, NUL, padded to 8) if it
/// fits in `room` bytes; returns whether it did.
pub fn dirent64(out: &mut Vec<u8>, room: usize, ino: u64, off: u64, dtype: u8, name: &[u8]) -> bool {
    let reclen = (19 + name.len() + 1).next_multiple_of(8);
    if out.len() + reclen > room || reclen > u16::MAX as usize {
        return false;
    }
    let start = out.len();
    out.extend_from_slice(&ino.to_le_bytes());
    out.extend_from_slice(&off.to_le_bytes());
    out.extend_from_slice(&(reclen as u16).to_le_bytes());
    out.push(dtype);
    out.extend_from_slice(name);
    out.resize(start + reclen, 0);
    true
}

/// Bytes of one `struct utsname` field.
pub const UTS_FIELD: usize = 65;

/// `struct utsname`: sysname, nodename, release, version, machine, domainname (each cut to 64
/// bytes and NUL-terminated).
pub fn utsname(fields: [&str; 6]) -> [u8; UTS_FIELD * 6] {
    let mut b = [0u8; UTS_FIELD * 6];
    for (i, f) in fields.iter().enumerate() {
        let bytes = &f.as_bytes()[..f.len().min(UTS_FIELD - 1)];
        put(&mut b, i * UTS_FIELD, bytes);
    }
    b
}

/// Bytes of the kernel's `struct termios` (`TCGETS`).
pub const TERMIOS_LEN: usize = 36;

/// A `struct termios` of a cooked terminal at 38400 baud: ICRNL|IXON, OPOST|ONLCR,
/// CS8|CREAD|B38400, ISIG|ICANON|ECHOE|ECHOK|ECHOCTL|ECHOKE|IEXTEN, the usual control
/// characters. `ECHO` is clear: Tutti's console driver edits and echoes lines itself, and a
/// line editor such as busybox's that sees `ECHO` set would switch to raw mode (which the
/// console cannot give) and echo everything a second time (docs/linux.md, "The console").
pub fn termios() -> [u8; TERMIOS_LEN] {
    let mut b = [0u8; TERMIOS_LEN];
    put(&mut b, 0, &0o2400u32.to_le_bytes()); // c_iflag: ICRNL | IXON
    put(&mut b, 4, &0o5u32.to_le_bytes()); // c_oflag: OPOST | ONLCR
    put(&mut b, 8, &0o277u32.to_le_bytes()); // c_cflag: B38400 | CS8 | CREAD
    put(&mut b, 12, &0o105063u32.to_le_bytes()); // c_lflag
                                                 // c_line at 16, c_cc[19] from 17: VINTR ^C, VQUIT ^\, VERASE DEL, VKILL ^U, VEOF ^D, VMIN 1.
    put(&mut b, 17, &[3, 28, 127, 21, 4, 0, 1]);
    b
}

/// `struct winsize`: rows, columns, then two unused pixel sizes.
pub fn winsize(rows: u16, cols: u16) -> [u8; 8] {
    let mut b = [0u8; 8];
    put(&mut b, 0, &rows.to_le_bytes());
    put(&mut b, 2, &cols.to_le_bytes());
    b
}

/// A `struct timespec` (or `timeval` with microseconds) of two 64-bit words.
pub fn two_words(a: u64, b: u64) -> [u8; 16] {
    let mut out = [0u8; 16];
    put(&mut out, 0, &a.to_le_bytes());
    put(&mut out, 8, &b.to_le_bytes());
    out
}

/// Reads the two 64-bit words of a `timespec`/`rlimit`/`iovec`.
pub fn read_two_words(b: &[u8; 16]) -> (u64, u64) {
    let mut x = [0u8; 8];
    let mut y = [0u8; 8];
    x.copy_from_slice(&b[..8]);
    y.copy_from_slice(&b[8..]);
    (u64::from_le_bytes(x), u64::from_le_bytes(y))
}

/// `struct iovec` entries from their bytes: (base, len) pairs.
pub fn iovecs(bytes: &[u8]) -> Vec<(u64, u64)> {
    bytes
        .chunks_exact(16)
        .map(|c| {
            let mut w = [0u8; 16];
            w.copy_from_slice(c);
            read_two_words(&w)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_sit_where_glibc_reads_them() {
        let s = FileStat {
            dev: 3,
            ino: 77,
            mode: S_IFREG | 0o644,
            nlink: 1,
            size: 5000,
            blocks: 16,
            mtime: 99,
            ..Default::default()
        };
        let b = stat(&s);
        assert_eq!(u64::from_le_bytes(b[8..16].try_into().unwrap()), 77);
        assert_eq!(u32::from_le_bytes(b[24..28].try_into().unwrap()), 0o100644);
        assert_eq!(u64::from_le_bytes(b[48..56].try_into().unwrap()), 5000);
        assert_eq!(u64::from_le_bytes(b[88..96].try_into().unwrap()), 99);
        let x = statx(&s);
        assert_eq!(u16::from_le_bytes(x[28..30].try_into().unwrap()), 0o100644);
        assert_eq!(u64::from_le_bytes(x[40..48].try_into().unwrap()), 5000);
        assert_eq!(u64::from_le_bytes(x[0x70..0x78].try_into().unwrap()), 99);
    }

    #[test]
    fn dirents_are_padded_to_eight_and_stop_when_full() {
        let mut out = Vec::new();
        assert!(dirent64(&mut out, 64, 5, 1, 8, b"hello"));
        assert_eq!(out.len(), 32);
        assert_eq!(u16::from_le_bytes([out[16], out[17]]), 32);
        assert_eq!(out[18], 8);
        assert_eq!(&out[19..25], b"hello\0");
        assert!(!dirent64(&mut out, 64, 6, 2, 8, b"a-much-longer-name-here"));
        assert_eq!(out.len(), 32);
    }

    #[test]
    fn utsname_fields_are_65_bytes_and_terminated() {
        let u = utsname(["Linux", "tutti", "6.1.0", "#1", "x86_64", "(none)"]);
        assert_eq!(&u[..6], b"Linux\0");
        assert_eq!(&u[UTS_FIELD * 4..UTS_FIELD * 4 + 7], b"x86_64\0");
        let long = "x".repeat(100);
        let u = utsname([&long, "", "", "", "", ""]);
        assert_eq!(u[64], 0);
    }

    #[test]
    fn iovecs_decode_pairs() {
        let mut b = Vec::new();
        b.extend_from_slice(&two_words(0x1000, 5));
        b.extend_from_slice(&two_words(0x2000, 7));
        assert_eq!(iovecs(&b), [(0x1000, 5), (0x2000, 7)]);
    }
}
