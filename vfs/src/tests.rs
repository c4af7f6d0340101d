//! Host tests of the VFS: tmpfs, the boot archive, mounts, symbolic links, limits.

extern crate std;

use super::*;
use crate::bootfs::Bootfs;
use crate::tmpfs::Tmpfs;
use alloc::boxed::Box;
use alloc::vec::Vec;

fn archive() -> &'static [u8] {
    let mut w = newc::Writer::new();
    w.file("etc/version", 0o644, b"tutti 0.1\n");
    w.dir("etc", 0o755);
    w.file("bin/init", 0o755, b"\x7fELF...");
    w.file("./lib/deep/x", 0o600, b"x");
    w.file("../evil", 0o644, b"no");
    Box::leak(w.finish().into_boxed_slice())
}

fn vfs() -> Vfs {
    let mut root = Tmpfs::new(64 * 1024, 256);
    root.mkdir(root.root(), b"boot", 0o755).unwrap();
    let mut v = Vfs::new(Box::new(root));
    v.mount(b"/boot", Box::new(Bootfs::new(archive()).unwrap())).unwrap();
    v
}

const RW: OpenOptions = OpenOptions {
    read: true,
    write: true,
    create: true,
    exclusive: false,
    truncate: false,
    directory: false,
    nofollow: false,
};

fn names(v: &mut Vfs, path: &[u8]) -> Vec<Vec<u8>> {
    let (loc, _) = v.open(path, OpenOptions { read: true, directory: true, ..Default::default() }, 0).unwrap();
    let mut out = Vec::new();
    let mut cookie = 0;
    while let Some((e, next)) = v.readdir(loc, cookie).unwrap() {
        out.push(e.name);
        cookie = next;
    }
    out
}

#[test]
fn paths_are_checked_and_normalised() {
    assert_eq!(path::components(b"relative"), Err(Error::InvalidPath));
    assert_eq!(path::components(b""), Err(Error::InvalidPath));
    assert_eq!(path::components(b"/a\0b"), Err(Error::InvalidPath));
    assert_eq!(path::components(&[b'/'; 1025]), Err(Error::NameTooLong));
    let mut long = b"/".to_vec();
    long.extend([b'a'; 256]);
    assert_eq!(path::components(&long), Err(Error::NameTooLong));
    assert_eq!(path::components(b"//a/./b//").unwrap(), [b"a".to_vec(), b"b".to_vec()]);
    assert_eq!(path::normalize(b"/a/../../b/.").unwrap(), b"/b");
    assert_eq!(path::normalize(b"/..").unwrap(), b"/");
}

#[test]
fn tmpfs_files_directories_rename_truncate() {
    let mut v = vfs();
    v.mkdir(b"/d", 0o755).unwrap();
    assert_eq!(v.mkdir(b"/d", 0o755), Err(Error::Exists));
    let (f, st) = v.open(b"/d/f", RW, 0o644).unwrap();
    assert_eq!((st.kind, st.size, st.mode), (Kind::Regular, 0, 0o644));
    assert_eq!(v.write(f, 0, b"hello world").unwrap(), 11);
    assert_eq!(v.write(f, 20, b"!").unwrap(), 1);
    let mut buf = [0xffu8; 32];
    assert_eq!(v.read(f, 0, &mut buf).unwrap(), 21);
    assert_eq!(&buf[..21], b"hello world\0\0\0\0\0\0\0\0\0!");
    assert_eq!(v.read(f, 100, &mut buf).unwrap(), 0);
    v.truncate(b"/d/f", 5).unwrap();
    assert_eq!(v.stat(b"/d/f", true).unwrap().size, 5);
    v.rename(b"/d/f", b"/d/g").unwrap();
    assert_eq!(v.stat(b"/d/f", true), Err(Error::NotFound));
    assert_eq!(v.stat(b"/d/./g/", true).unwrap().size, 5);
    assert_eq!(v.stat(b"/d/../d/g", true).unwrap().ino, f.node);
    assert_eq!(v.rmdir(b"/d"), Err(Error::NotEmpty));
    assert_eq!(v.unlink(b"/d"), Err(Error::IsDirectory));
    assert_eq!(v.rmdir(b"/d/g"), Err(Error::NotDirectory));
    assert_eq!(v.open(b"/d/g/x", RW, 0o644).map(|_| ()), Err(Error::NotDirectory));
    assert_eq!(v.open(b"/d", RW, 0o644).map(|_| ()), Err(Error::IsDirectory));
    let excl = OpenOptions { exclusive: true, ..RW };
    assert_eq!(v.open(b"/d/g", excl, 0o644).map(|_| ()), Err(Error::Exists));
    let dir_only = OpenOptions { read: true, directory: true, ..Default::default() };
    assert_eq!(v.open(b"/d/g", dir_only, 0).map(|_| ()), Err(Error::NotDirectory));
    v.mkdir(b"/d/sub", 0o700).unwrap();
    assert_eq!(v.rename(b"/d", b"/d/sub/x"), Err(Error::InvalidArgument), "into itself");
    assert_eq!(names(&mut v, b"/d"), [b"g".to_vec(), b"sub".to_vec()]);
    v.unlink(b"/d/g").unwrap();
    v.rmdir(b"/d/sub").unwrap();
    v.rmdir(b"/d").unwrap();
    assert_eq!(names(&mut v, b"/"), [b"boot".to_vec()]);
    assert_eq!(v.rmdir(b"/"), Err(Error::InvalidPath));
    // the truncate flag
    let (f, _) = v.open(b"/t", RW, 0o600).unwrap();
    v.write(f, 0, b"abc").unwrap();
    let (_, st) = v.open(b"/t", OpenOptions { truncate: true, ..RW }, 0).unwrap();
    assert_eq!(st.size, 0);
    v.chmod(b"/t", 0o4755).unwrap();
    assert_eq!(v.stat(b"/t", true).unwrap().mode, 0o4755);
}

#[test]
fn tmpfs_quota_gives_no_space_and_frees_on_unlink() {
    let mut v = vfs();
    let (f, _) = v.open(b"/big", RW, 0o644).unwrap();
    let chunk = [7u8; 4096];
    let mut written = 0;
    let err = loop {
        match v.write(f, written, &chunk) {
            Ok(n) => written += n as u64,
            Err(e) => break e,
        }
    };
    assert_eq!(err, Error::NoSpace);
    assert!(written > 50 * 1024 && written <= 64 * 1024);
    assert_eq!(v.write(f, u64::MAX - 1, b"xx"), Err(Error::TooBig));
    assert_eq!(v.write(f, 1 << 29, b"xx"), Err(Error::NoSpace), "a sparse write is charged");
    assert_eq!(v.open(b"/other", RW, 0o644).map(|_| ()), Ok(()), "small nodes still fit");
    v.unlink(b"/big").unwrap();
    assert_eq!(v.stat_loc(f), Err(Error::NotFound), "the node is gone");
    let (g, _) = v.open(b"/again", RW, 0o644).unwrap();
    v.write(g, 0, &[1; 32 * 1024]).unwrap();
    let mount = &v.mounts()[0];
    assert_eq!(mount.fs.fs_type(), "tmpfs");
}

#[test]
fn the_boot_archive_reads_and_refuses_writes() {
    let mut v = vfs();
    let (f, st) = v.open(b"/boot/etc/version", OpenOptions { read: true, ..Default::default() }, 0).unwrap();
    assert_eq!((st.kind, st.mode, st.size), (Kind::Regular, 0o644, 10));
    let mut buf = [0; 64];
    let n = v.read(f, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"tutti 0.1\n");
    assert_eq!(v.write(f, 0, b"x"), Err(Error::ReadOnly));
    assert_eq!(v.open(b"/boot/etc/version", RW, 0).map(|_| ()), Err(Error::ReadOnly));
    assert_eq!(v.open(b"/boot/new", RW, 0).map(|_| ()), Err(Error::ReadOnly));
    assert_eq!(v.mkdir(b"/boot/etc/x", 0o755), Err(Error::ReadOnly));
    assert_eq!(v.unlink(b"/boot/etc/version"), Err(Error::ReadOnly));
    assert_eq!(v.unlink(b"/boot"), Err(Error::Busy));
    assert_eq!(v.rmdir(b"/boot"), Err(Error::Busy));
    assert_eq!(v.rename(b"/boot", b"/x"), Err(Error::Busy));
    assert_eq!(v.rename(b"/boot/etc/version", b"/v"), Err(Error::CrossDevice));
    assert_eq!(names(&mut v, b"/boot"), [b"etc".to_vec(), b"bin".to_vec(), b"lib".to_vec()]);
    assert_eq!(v.stat(b"/boot/lib/deep/x", true).unwrap().mode, 0o600);
    assert_eq!(v.stat(b"/boot/evil", true), Err(Error::NotFound));
    assert_eq!(v.stat(b"/boot/../boot/etc/..", true).unwrap().kind, Kind::Directory);
    assert_eq!(v.mount_of(b"/boot/etc").unwrap(), 1);
    assert_eq!(v.mount_of(b"/boot/..").unwrap(), 0);
    assert!(Bootfs::new(b"not an archive").is_err());
}

#[test]
fn symbolic_links_resolve_with_a_bound() {
    let mut v = vfs();
    v.mkdir(b"/d", 0o755).unwrap();
    v.symlink(b"/boot/etc", b"/etc").unwrap();
    v.symlink(b"../etc/version", b"/d/v").unwrap();
    assert_eq!(v.stat(b"/etc/version", true).unwrap().size, 10);
    assert_eq!(v.stat(b"/d/v", true).unwrap().size, 10);
    assert_eq!(v.stat(b"/d/v", false).unwrap().kind, Kind::Symlink);
    assert_eq!(v.readlink(b"/d/v").unwrap(), b"../etc/version");
    assert_eq!(v.readlink(b"/d"), Err(Error::NotSymlink));
    v.symlink(b"/loop2", b"/loop1").unwrap();
    v.symlink(b"/loop1", b"/loop2").unwrap();
    assert_eq!(v.stat(b"/loop1", true), Err(Error::Loop));
    assert_eq!(v.stat(b"/loop1", false).unwrap().kind, Kind::Symlink);
    let nofollow = OpenOptions { read: true, nofollow: true, ..Default::default() };
    assert_eq!(v.open(b"/d/v", nofollow, 0).map(|_| ()), Err(Error::Loop));
    v.symlink(b"missing", b"/dangling").unwrap();
    assert_eq!(v.stat(b"/dangling", true), Err(Error::NotFound));
    v.unlink(b"/dangling").unwrap();
    assert_eq!(v.symlink(b"", b"/empty"), Err(Error::InvalidPath));
}

/// The forwarded path of an operation that must be forwarded.
fn forwarded<T: core::fmt::Debug>(v: &mut Vfs, result: Result<T>) -> (Vec<u8>, Option<Vec<u8>>) {
    assert_eq!(result.map(|_| ()).unwrap_err(), Error::Forwarded);
    let f = v.take_forward().expect("a forward");
    assert_eq!(f.mount, 2);
    (f.path, f.second)
}

#[test]
fn a_forwarded_mount_hands_its_paths_on() {
    let mut v = vfs();
    v.mkdir(b"/remote", 0o755).unwrap();
    v.mkdir(b"/local", 0o755).unwrap();
    assert_eq!(v.mount_forward(b"/remote", "softbus").unwrap(), 2);
    assert_eq!(v.mounts()[2].fs.fs_type(), "softbus");
    let p = |path: &[u8]| path.to_vec();
    let r = v.stat(b"/remote", true);
    assert_eq!(forwarded(&mut v, r), (p(b"/"), None));
    let r = v.stat(b"/remote/b/x", true);
    assert_eq!(forwarded(&mut v, r), (p(b"/b/x"), None));
    let r = v.stat(b"//remote/./b/../c/", true);
    assert_eq!(forwarded(&mut v, r), (p(b"/c"), None));
    // A `..` out of the mount goes on locally.
    assert_eq!(v.stat(b"/remote/../local", true).unwrap().kind, Kind::Directory);
    assert_eq!(v.stat(b"/remote/b/../../boot/etc/version", true).unwrap().size, 10);
    assert!(v.take_forward().is_none());
    // Through a symbolic link, and for the operations that name a parent.
    v.symlink(b"/remote/b", b"/local/b").unwrap();
    let r = v.open(b"/local/b/new", RW, 0o644);
    assert_eq!(forwarded(&mut v, r), (p(b"/b/new"), None));
    let r = v.mkdir(b"/remote/b/d", 0o755);
    assert_eq!(forwarded(&mut v, r), (p(b"/b/d"), None));
    let r = v.unlink(b"/remote/x");
    assert_eq!(forwarded(&mut v, r), (p(b"/x"), None));
    let r = v.rename(b"/remote/b/1", b"/local/b/2");
    assert_eq!(forwarded(&mut v, r), (p(b"/b/1"), Some(p(b"/b/2"))));
    // The mount point itself is not the other server's to remove; across mounts is refused.
    assert_eq!(v.rmdir(b"/remote"), Err(Error::Busy));
    assert_eq!(v.mkdir(b"/remote", 0o755), Err(Error::Exists));
    v.open(b"/local/f", RW, 0o644).unwrap();
    assert_eq!(v.rename(b"/local/f", b"/remote/f"), Err(Error::CrossDevice));
    assert_eq!(v.rename(b"/remote/f", b"/local/g"), Err(Error::CrossDevice));
    assert!(v.take_forward().is_none());
    assert_eq!(names(&mut v, b"/"), [b"boot".to_vec(), b"remote".to_vec(), b"local".to_vec()]);
}

/// A disk in memory, shared with the test.
struct Mem(std::rc::Rc<core::cell::RefCell<Vec<u8>>>);

impl ext2fs::BlockDevice for Mem {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> core::result::Result<(), ext2fs::DeviceError> {
        let at = offset as usize;
        buf.copy_from_slice(self.0.borrow().get(at..at + buf.len()).ok_or(ext2fs::DeviceError)?);
        Ok(())
    }
    fn write(&mut self, offset: u64, buf: &[u8]) -> core::result::Result<(), ext2fs::DeviceError> {
        let at = offset as usize;
        self.0.borrow_mut().get_mut(at..at + buf.len()).ok_or(ext2fs::DeviceError)?.copy_from_slice(buf);
        Ok(())
    }
    fn flush(&mut self) -> core::result::Result<(), ext2fs::DeviceError> {
        Ok(())
    }
    fn size(&self) -> u64 {
        self.0.borrow().len() as u64
    }
}

/// An ext2 image made by the host's `mke2fs` from a directory, or `None` without e2fsprogs.
fn mke2fs(name: &str) -> Option<(std::path::PathBuf, Vec<u8>)> {
    let dir = std::env::temp_dir().join(std::format!("vfs-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("src/sub")).unwrap();
    std::fs::write(dir.join("src/hello.txt"), b"hello from the host\n").unwrap();
    std::fs::write(dir.join("src/sub/big"), (0..200_000u32).map(|i| i as u8).collect::<Vec<u8>>()).unwrap();
    let img = dir.join("img");
    let status = std::process::Command::new("mke2fs")
        .args(["-q", "-t", "ext2", "-b", "1024", "-d"])
        .arg(dir.join("src"))
        .arg("-F")
        .arg(&img)
        .arg("4M")
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let bytes = std::fs::read(&img).unwrap();
    Some((img, bytes))
}

#[test]
fn ext2_mounts_under_the_tree_and_e2fsck_is_clean_after() {
    let Some((img, bytes)) = mke2fs("ext2") else {
        std::eprintln!("mke2fs not installed: skipped");
        return;
    };
    let mut v = vfs();
    v.mkdir(b"/disk", 0o755).unwrap();
    let disk = std::rc::Rc::new(core::cell::RefCell::new(bytes));
    let ext2 = ext2::Ext2::mount(Mem(disk.clone()), false).unwrap();
    let m = v.mount(b"/disk", Box::new(ext2)).unwrap();
    let (f, st) = v.open(b"/disk/hello.txt", OpenOptions { read: true, ..Default::default() }, 0).unwrap();
    assert_eq!(st.size, 20);
    let mut buf = [0; 64];
    let n = v.read(f, 0, &mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello from the host\n");
    let (big, st) = v.open(b"/disk/sub/big", OpenOptions { read: true, ..Default::default() }, 0).unwrap();
    assert_eq!(st.size, 200_000);
    let mut chunk = std::vec![0; 4096];
    assert_eq!(v.read(big, 100_000, &mut chunk).unwrap(), 4096);
    assert!(chunk.iter().enumerate().all(|(i, &b)| b == (100_000 + i) as u8));
    v.mkdir(b"/disk/new", 0o755).unwrap();
    let (g, _) = v.open(b"/disk/new/file", RW, 0o644).unwrap();
    v.write(g, 0, b"written by the vfs").unwrap();
    v.rename(b"/disk/new/file", b"/disk/new/renamed").unwrap();
    v.symlink(b"new/renamed", b"/disk/link").unwrap();
    assert_eq!(v.stat(b"/disk/link", true).unwrap().size, 18);
    assert_eq!(v.rename(b"/disk/hello.txt", b"/hello"), Err(Error::CrossDevice));
    let mut found = names(&mut v, b"/disk");
    found.sort();
    assert!(found.contains(&b"hello.txt".to_vec()) && found.contains(&b"new".to_vec()), "{found:?}");
    assert!(!found.contains(&b".".to_vec()));
    v.sync_mount(m).unwrap();
    std::fs::write(&img, &*disk.borrow()).unwrap();
    let fsck = std::process::Command::new("e2fsck").arg("-fn").arg(&img).output().unwrap();
    assert!(
        fsck.status.success(),
        "e2fsck: {}{}",
        std::string::String::from_utf8_lossy(&fsck.stdout),
        std::string::String::from_utf8_lossy(&fsck.stderr)
    );
}
