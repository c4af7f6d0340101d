//! The entry point of the cargo-fuzz target in `ext2fs/fuzz/` (and of the corruption tests):
//! mount an arbitrary image, walk the whole tree, change it, sync, and walk it again read-only.
//! Nothing here may panic or hang whatever the image holds; errors are expected. This module
//! exists only in tests and with the `fuzzing` feature.

use alloc::vec;
use alloc::vec::Vec;

use crate::{BlockDevice, DeviceError, FileType, Fs, Ino, ROOT};

/// A device in memory whose size is fixed; accesses past the end fail.
pub struct MemDevice {
    pub data: Vec<u8>,
}

impl BlockDevice for MemDevice {
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        assert!(offset.is_multiple_of(512) && buf.len().is_multiple_of(512), "unaligned read");
        let start = usize::try_from(offset).map_err(|_| DeviceError)?;
        let src = self.data.get(start..start + buf.len()).ok_or(DeviceError)?;
        buf.copy_from_slice(src);
        Ok(())
    }

    fn write(&mut self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        assert!(offset.is_multiple_of(512) && buf.len().is_multiple_of(512), "unaligned write");
        let start = usize::try_from(offset).map_err(|_| DeviceError)?;
        let dst = self.data.get_mut(start..start + buf.len()).ok_or(DeviceError)?;
        dst.copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// Most inodes one walk visits.
const WALK_LIMIT: usize = 2000;
/// Most entries read from one directory.
const ENTRY_LIMIT: usize = 5000;

/// Visits every directory, file and link below the root (within limits); returns the
/// regular files and directories seen.
pub fn walk<D: BlockDevice>(fs: &mut Fs<D>) -> (Vec<Ino>, Vec<Ino>) {
    let mut files = Vec::new();
    let mut dirs = vec![ROOT];
    let mut stack = vec![ROOT];
    let mut visited = 0;
    let mut buf = vec![0u8; 8192];
    while let Some(dir) = stack.pop() {
        let mut cookie = 0;
        for _ in 0..ENTRY_LIMIT {
            let Ok(Some((entry, next))) = fs.readdir(dir, cookie) else { break };
            cookie = next;
            if entry.name == b"." || entry.name == b".." {
                continue;
            }
            visited += 1;
            if visited > WALK_LIMIT {
                return (files, dirs);
            }
            let _ = fs.lookup(dir, &entry.name);
            let Ok(stat) = fs.stat(entry.ino) else { continue };
            match stat.file_type {
                FileType::Directory if !dirs.contains(&entry.ino) => {
                    dirs.push(entry.ino);
                    stack.push(entry.ino);
                }
                FileType::Regular => {
                    files.push(entry.ino);
                    let mut offset = 0;
                    while offset < 1 << 20 {
                        match fs.read(entry.ino, offset, &mut buf) {
                            Ok(n) if n > 0 => offset += n as u64,
                            _ => break,
                        }
                    }
                }
                FileType::Symlink => {
                    let _ = fs.readlink(entry.ino);
                }
                _ => {}
            }
        }
    }
    (files, dirs)
}

/// Changes the tree: creates, writes, renames, links, truncates and removes.
pub fn change<D: BlockDevice>(fs: &mut Fs<D>, files: &[Ino], dirs: &[Ino]) {
    fs.set_clock(1_700_000_000);
    let data: Vec<u8> = (0..20_000u32).map(|i| (i * 7 + 3) as u8).collect();
    for (k, &dir) in dirs.iter().take(8).enumerate() {
        let name = [b'f', b'0' + k as u8];
        if let Ok(ino) = fs.create(dir, &name, 0o644) {
            let _ = fs.write(ino, 0, &data);
            let _ = fs.write(ino, 70_000, &data[..100]);
            let _ = fs.truncate(ino, 5000);
        }
        let _ = fs.mkdir(dir, b"d", 0o755);
        let _ = fs.symlink(dir, b"s", &data[..100]);
        let _ = fs.rename(dir, &name, ROOT, b"moved");
        let _ = fs.rename(dir, b"d", ROOT, b"moved-dir");
    }
    for &file in files.iter().take(8) {
        let _ = fs.write(file, 100, &data[..3000]);
        let _ = fs.truncate(file, 10);
        let _ = fs.link(file, ROOT, b"hard");
        let _ = fs.set_mode(file, 0o600);
    }
    let _ = fs.unlink(ROOT, b"moved");
    let _ = fs.unlink(ROOT, b"hard");
    let _ = fs.rmdir(ROOT, b"moved-dir");
    for &dir in dirs.iter().take(4) {
        let _ = fs.rename(ROOT, b"lost+found", dir, b"lf");
    }
    let _ = fs.statfs();
    let _ = fs.sync();
}

/// Mounts `image`, walks it, changes it, syncs, and walks it again read-only.
pub fn exercise(image: &[u8]) {
    let dev = MemDevice { data: image.to_vec() };
    let Ok(mut fs) = Fs::mount_with_cache(dev, false, 16) else {
        let dev = MemDevice { data: image.to_vec() };
        if let Ok(mut fs) = Fs::mount(dev, true) {
            walk(&mut fs);
        }
        return;
    };
    let (files, dirs) = walk(&mut fs);
    change(&mut fs, &files, &dirs);
    let dev = fs.into_device();
    if let Ok(mut fs) = Fs::mount(dev, true) {
        walk(&mut fs);
    }
}
