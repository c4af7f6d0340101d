//! Shared test support: images made by mke2fs, checked by e2fsck and read back by debugfs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};

pub use ext2fs::fuzz::MemDevice;
use ext2fs::{Error, Fs, Ino, ROOT};

/// A scratch directory unique to this call.
pub fn scratch(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("ext2fs-test-{}-{tag}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn tool(name: &str) -> Command {
    for dir in ["/sbin", "/usr/sbin", "/usr/local/sbin"] {
        let path = Path::new(dir).join(name);
        if path.exists() {
            return Command::new(path);
        }
    }
    if Command::new(name).arg("-V").output().is_ok() {
        return Command::new(name);
    }
    panic!("`{name}` not found: install e2fsprogs (apt-get install e2fsprogs) to run the ext2fs tests");
}

/// An image made by `mke2fs` (`-t ext2` unless `extra` names a type) with `extra` options, `size_kib` KiB large,
/// pre-populated from `populate` if given.
pub fn mkfs(extra: &[&str], size_kib: u64, populate: Option<&Path>) -> Vec<u8> {
    let dir = scratch("mkfs");
    let img = dir.join("fs.img");
    let mut cmd = tool("mke2fs");
    cmd.args(["-q", "-F"]);
    if !extra.contains(&"-t") {
        cmd.args(["-t", "ext2"]);
    }
    cmd.args(extra);
    if let Some(p) = populate {
        cmd.arg("-d").arg(p);
    }
    cmd.arg(&img).arg(format!("{size_kib}k"));
    cmd.env("MKE2FS_CONFIG", "/etc/mke2fs.conf").env("E2FSPROGS_FAKE_TIME", "1700000000");
    let out = cmd.output().expect("run mke2fs");
    assert!(out.status.success(), "mke2fs failed: {}", String::from_utf8_lossy(&out.stderr));
    let image = std::fs::read(&img).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    image
}

/// A fresh file system: `mke2fs -b block_size -I inode_size`.
pub fn fresh(block_size: u32, inode_size: u32, size_kib: u64) -> Vec<u8> {
    mkfs(&["-b", &block_size.to_string(), "-I", &inode_size.to_string()], size_kib, None)
}

/// Runs `e2fsck -fn` on `image`: its exit status and output.
pub fn fsck_output(image: &[u8]) -> (i32, String) {
    let dir = scratch("fsck");
    let img = dir.join("fs.img");
    std::fs::write(&img, image).unwrap();
    let out = tool("e2fsck").arg("-fn").arg(&img).output().expect("run e2fsck");
    let _ = std::fs::remove_dir_all(&dir);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.code().unwrap_or(-1), text)
}

/// Fails the test unless `e2fsck -fn` finds `image` clean.
pub fn assert_clean(image: &[u8]) {
    let (code, text) = fsck_output(image);
    assert_eq!(code, 0, "e2fsck -fn reports problems:\n{text}");
}

/// Runs one debugfs request on `image` and returns its output.
pub fn debugfs(image: &[u8], request: &str) -> Vec<u8> {
    let dir = scratch("debugfs");
    let img = dir.join("fs.img");
    std::fs::write(&img, image).unwrap();
    let out = tool("debugfs").arg("-R").arg(request).arg(&img).output().expect("run debugfs");
    let _ = std::fs::remove_dir_all(&dir);
    out.stdout
}

pub fn mount(image: Vec<u8>) -> Fs<MemDevice> {
    let mut fs = Fs::mount(MemDevice { data: image }, false).expect("mount");
    fs.set_clock(1_700_000_000);
    fs
}

/// Syncs and returns the image.
pub fn unmount(mut fs: Fs<MemDevice>) -> Vec<u8> {
    fs.sync().expect("sync");
    fs.into_device().data
}

/// Resolves a slash-separated path from the root.
pub fn resolve<D: ext2fs::BlockDevice>(fs: &mut Fs<D>, path: &str) -> Result<Ino, Error> {
    let mut ino = ROOT;
    for part in path.split('/').filter(|p| !p.is_empty()) {
        ino = fs.lookup(ino, part.as_bytes())?;
    }
    Ok(ino)
}

/// The whole contents of regular file `ino`.
pub fn read_all<D: ext2fs::BlockDevice>(fs: &mut Fs<D>, ino: Ino) -> Vec<u8> {
    let size = fs.stat(ino).unwrap().size as usize;
    let mut buf = vec![0u8; size + 10];
    let n = fs.read(ino, 0, &mut buf).unwrap();
    assert_eq!(n, size);
    buf.truncate(n);
    buf
}

/// Every name in directory `dir`, `.` and `..` included, in directory order.
pub fn list<D: ext2fs::BlockDevice>(fs: &mut Fs<D>, dir: Ino) -> Vec<(Vec<u8>, Ino)> {
    let mut out = Vec::new();
    let mut cookie = 0;
    while let Some((e, next)) = fs.readdir(dir, cookie).unwrap() {
        assert!(next > cookie);
        out.push((e.name, e.ino));
        cookie = next;
    }
    out
}

/// Deterministic pseudo-random numbers (xorshift).
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}
