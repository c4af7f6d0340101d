//! Changes made through `ext2fs` on mke2fs images: e2fsck must find them clean and debugfs
//! must read back what was written.

mod common;

use common::*;
use ext2fs::{Error, FileType, ROOT};

const GEOMETRIES: [(u32, u32); 4] = [(1024, 128), (1024, 256), (4096, 128), (4096, 256)];

#[test]
fn create_write_read_back_every_geometry() {
    for (bs, is) in GEOMETRIES {
        let mut fs = mount(fresh(bs, is, 8192));
        let ino = fs.create(ROOT, b"hello.txt", 0o644).unwrap();
        assert_eq!(fs.write(ino, 0, b"hello, tutti\n").unwrap(), 13);
        let big: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let big_ino = fs.create(ROOT, b"big", 0o600).unwrap();
        assert_eq!(fs.write(big_ino, 0, &big).unwrap(), big.len());
        assert_eq!(read_all(&mut fs, big_ino), big);
        let image = unmount(fs);
        assert_clean(&image);
        assert_eq!(debugfs(&image, "cat /hello.txt"), b"hello, tutti\n", "{bs}/{is}");
        assert_eq!(debugfs(&image, "cat /big"), big, "{bs}/{is}");
        let mut fs = mount(image);
        let ino = resolve(&mut fs, "big").unwrap();
        assert_eq!(read_all(&mut fs, ino), big);
        let st = fs.stat(ino).unwrap();
        assert_eq!((st.file_type, st.mode, st.nlink, st.size), (FileType::Regular, 0o600, 1, 300_000));
        assert_eq!(st.mtime, 1_700_000_000);
    }
}

#[test]
fn overwrite_append_and_holes() {
    for (bs, is) in GEOMETRIES {
        let mut fs = mount(fresh(bs, is, 8192));
        let ino = fs.create(ROOT, b"f", 0o644).unwrap();
        let mut model = vec![b'a'; 5000];
        fs.write(ino, 0, &model).unwrap();
        fs.write(ino, 100, &[b'b'; 3000]).unwrap();
        model[100..3100].fill(b'b');
        fs.write(ino, 5000, b"tail").unwrap();
        model.extend_from_slice(b"tail");
        // A hole of many blocks, then data in the double-indirect range.
        let far = 12 * bs as u64 + (bs as u64 / 4) * bs as u64 + 7;
        fs.write(ino, far, b"far away").unwrap();
        model.resize(far as usize, 0);
        model.extend_from_slice(b"far away");
        assert_eq!(read_all(&mut fs, ino), model);
        let st = fs.stat(ino).unwrap();
        assert!(st.blocks < 64 * (bs as u64 / 512), "holes must not be allocated: {}", st.blocks);
        let image = unmount(fs);
        assert_clean(&image);
        assert_eq!(debugfs(&image, "cat /f"), model);
    }
}

#[test]
fn truncate_shrinks_and_grows() {
    for (bs, is) in GEOMETRIES {
        let mut fs = mount(fresh(bs, is, 8192));
        let before = fs.statfs().free_blocks;
        let ino = fs.create(ROOT, b"t", 0o644).unwrap();
        let data: Vec<u8> = (0..2_000_000u32).map(|i| (i * 13) as u8).collect();
        fs.write(ino, 0, &data).unwrap();
        fs.truncate(ino, 1234).unwrap();
        fs.truncate(ino, 9000).unwrap();
        let mut model = data[..1234].to_vec();
        model.resize(9000, 0);
        assert_eq!(read_all(&mut fs, ino), model);
        fs.sync().unwrap();
        let image = unmount(fs);
        assert_clean(&image);
        assert_eq!(debugfs(&image, "cat /t"), model);
        let mut fs = mount(image);
        let ino = resolve(&mut fs, "t").unwrap();
        fs.truncate(ino, 0).unwrap();
        fs.unlink(ROOT, b"t").unwrap();
        fs.sync().unwrap();
        assert_eq!(fs.statfs().free_blocks, before);
        assert_clean(&unmount(fs));
    }
}

#[test]
fn directories_links_symlinks() {
    for (bs, is) in GEOMETRIES {
        let mut fs = mount(fresh(bs, is, 8192));
        let a = fs.mkdir(ROOT, b"a", 0o755).unwrap();
        let b = fs.mkdir(a, b"b", 0o700).unwrap();
        let f = fs.create(b, b"file", 0o644).unwrap();
        fs.write(f, 0, b"data").unwrap();
        fs.link(f, ROOT, b"hard").unwrap();
        assert_eq!(fs.stat(f).unwrap().nlink, 2);
        assert_eq!(fs.link(a, ROOT, b"x"), Err(Error::IsDirectory));
        assert_eq!(fs.create(a, b"b", 0o644), Err(Error::Exists));
        let fast = fs.symlink(ROOT, b"fast", b"a/b/file").unwrap();
        let long_target = vec![b'x'; 300];
        let slow = fs.symlink(ROOT, b"slow", &long_target).unwrap();
        assert_eq!(fs.readlink(fast).unwrap(), b"a/b/file");
        assert_eq!(fs.readlink(slow).unwrap(), long_target);
        assert_eq!(fs.stat(a).unwrap().nlink, 3);
        assert_eq!(fs.rmdir(ROOT, b"a"), Err(Error::NotEmpty));
        assert_eq!(fs.unlink(ROOT, b"a"), Err(Error::IsDirectory));
        assert_eq!(fs.rmdir(ROOT, b"hard"), Err(Error::NotDirectory));
        assert_eq!(fs.lookup(b, b".."), Ok(a));
        let image = unmount(fs);
        assert_clean(&image);
        let ls = String::from_utf8(debugfs(&image, "ls -l /")).unwrap();
        for name in ["a", "hard", "fast", "slow", "lost+found"] {
            assert!(ls.contains(name), "{name} missing from:\n{ls}");
        }
        assert_eq!(debugfs(&image, "cat /a/b/file"), b"data");
        let stat = String::from_utf8(debugfs(&image, "stat /fast")).unwrap();
        assert!(stat.contains("Fast link dest: \"a/b/file\""), "{stat}");
        let mut fs = mount(image);
        fs.unlink(b, b"file").unwrap();
        assert_eq!(fs.stat(f).unwrap().nlink, 1);
        fs.unlink(ROOT, b"hard").unwrap();
        assert_eq!(fs.stat(f), Err(Error::NotFound));
        fs.rmdir(a, b"b").unwrap();
        fs.rmdir(ROOT, b"a").unwrap();
        fs.unlink(ROOT, b"slow").unwrap();
        fs.unlink(ROOT, b"fast").unwrap();
        assert_eq!(fs.stat(ROOT).unwrap().nlink, 3);
        let image = unmount(fs);
        assert_clean(&image);
    }
}

#[test]
fn rename_files_and_directories() {
    for (bs, is) in GEOMETRIES {
        let mut fs = mount(fresh(bs, is, 8192));
        let a = fs.mkdir(ROOT, b"a", 0o755).unwrap();
        let b = fs.mkdir(ROOT, b"b", 0o755).unwrap();
        let sub = fs.mkdir(a, b"sub", 0o755).unwrap();
        let f = fs.create(a, b"f", 0o644).unwrap();
        fs.write(f, 0, b"one").unwrap();
        let g = fs.create(b, b"g", 0o644).unwrap();
        fs.write(g, 0, b"two").unwrap();
        // A file within a directory, then over an existing file in another directory.
        fs.rename(a, b"f", a, b"f2").unwrap();
        fs.rename(a, b"f2", b, b"g").unwrap();
        assert_eq!(fs.lookup(b, b"g"), Ok(f));
        assert_eq!(fs.stat(g), Err(Error::NotFound));
        // A directory across directories updates `..` and link counts.
        fs.rename(a, b"sub", b, b"sub").unwrap();
        assert_eq!(fs.lookup(sub, b".."), Ok(b));
        assert_eq!(fs.stat(a).unwrap().nlink, 2);
        assert_eq!(fs.stat(b).unwrap().nlink, 3);
        // Into its own subtree: refused.
        assert_eq!(fs.rename(ROOT, b"b", sub, b"x"), Err(Error::InvalidArgument));
        assert_eq!(fs.rename(ROOT, b"b", b, b"x"), Err(Error::InvalidArgument));
        // Over an empty directory, and not over a non-empty one or a file.
        let e = fs.mkdir(ROOT, b"empty", 0o755).unwrap();
        assert_eq!(fs.rename(ROOT, b"a", ROOT, b"b"), Err(Error::NotEmpty));
        assert_eq!(fs.rename(b, b"sub", b, b"g"), Err(Error::NotDirectory));
        assert_eq!(fs.rename(b, b"g", ROOT, b"empty"), Err(Error::IsDirectory));
        fs.rename(b, b"sub", ROOT, b"empty").unwrap();
        assert_eq!(fs.stat(e), Err(Error::NotFound));
        assert_eq!(fs.lookup(sub, b".."), Ok(ROOT));
        assert_eq!(fs.stat(b).unwrap().nlink, 2);
        // Same inode: nothing happens.
        fs.link(f, b, b"alias").unwrap();
        fs.rename(b, b"g", b, b"alias").unwrap();
        assert_eq!(fs.lookup(b, b"g"), Ok(f));
        let image = unmount(fs);
        assert_clean(&image);
        assert_eq!(debugfs(&image, "cat /b/g"), b"one");
    }
}

#[test]
fn directory_with_hundreds_of_entries() {
    for (bs, is) in [(1024, 128), (4096, 256)] {
        let mut fs = mount(fresh(bs, is, 8192));
        let d = fs.mkdir(ROOT, b"many", 0o755).unwrap();
        let mut names = std::collections::BTreeSet::new();
        for i in 0..600 {
            let name = format!("entry-with-a-longish-name-{i:04}");
            fs.create(d, name.as_bytes(), 0o644).unwrap();
            names.insert(name.into_bytes());
        }
        for i in (0..600).step_by(3) {
            let name = format!("entry-with-a-longish-name-{i:04}");
            fs.unlink(d, name.as_bytes()).unwrap();
            names.remove(name.as_bytes());
        }
        let long = vec![b'L'; 255];
        fs.create(d, &long, 0o644).unwrap();
        names.insert(long.clone());
        assert_eq!(fs.create(d, &[b'L'; 256], 0o644), Err(Error::NameTooLong));
        let listed: std::collections::BTreeSet<Vec<u8>> =
            list(&mut fs, d).into_iter().map(|(n, _)| n).filter(|n| n != b"." && n != b"..").collect();
        assert_eq!(listed, names);
        let image = unmount(fs);
        assert_clean(&image);
        let ls = String::from_utf8(debugfs(&image, "ls /many")).unwrap();
        assert!(ls.contains("entry-with-a-longish-name-0599"));
        assert!(!ls.contains("entry-with-a-longish-name-0597 "));
    }
}

#[test]
fn fill_the_disk_then_reuse_the_space() {
    for (bs, is) in [(1024, 128), (4096, 256)] {
        let mut fs = mount(fresh(bs, is, 4096));
        let chunk = vec![0x5a; 64 * 1024];
        let mut files = Vec::new();
        'fill: for i in 0.. {
            let name = format!("fill{i}");
            let ino = match fs.create(ROOT, name.as_bytes(), 0o644) {
                Ok(ino) => ino,
                Err(Error::NoSpace) => break,
                Err(e) => panic!("{e}"),
            };
            files.push(name);
            let mut off = 0;
            for _ in 0..8 {
                match fs.write(ino, off, &chunk) {
                    Ok(n) if n == chunk.len() => off += n as u64,
                    Ok(_) | Err(Error::NoSpace) => break 'fill,
                    Err(e) => panic!("{e}"),
                }
            }
        }
        assert!(fs.statfs().free_blocks < 16, "{:?}", fs.statfs());
        let image = unmount(fs);
        assert_clean(&image);
        let mut fs = mount(image);
        for name in &files {
            fs.unlink(ROOT, name.as_bytes()).unwrap();
        }
        // The space comes back without an explicit sync: allocation syncs when it runs out.
        let ino = fs.create(ROOT, b"again", 0o644).unwrap();
        let mut written = 0u64;
        while written < 2 * 1024 * 1024 {
            written += fs.write(ino, written, &chunk).unwrap() as u64;
        }
        let image = unmount(fs);
        assert_clean(&image);
    }
}

#[test]
fn names_are_checked() {
    let mut fs = mount(fresh(1024, 128, 2048));
    assert_eq!(fs.create(ROOT, b"", 0o644), Err(Error::InvalidName));
    assert_eq!(fs.create(ROOT, b"a/b", 0o644), Err(Error::InvalidName));
    assert_eq!(fs.create(ROOT, b"a\0b", 0o644), Err(Error::InvalidName));
    assert_eq!(fs.create(ROOT, b".", 0o644), Err(Error::Exists));
    assert_eq!(fs.mkdir(ROOT, b"..", 0o755), Err(Error::Exists));
    assert_eq!(fs.rmdir(ROOT, b"."), Err(Error::InvalidArgument));
    assert_eq!(fs.rmdir(ROOT, b".."), Err(Error::NotEmpty));
    assert_eq!(fs.lookup(ROOT, b"missing"), Err(Error::NotFound));
    assert_eq!(fs.stat(12345), Err(Error::NotFound));
    assert_eq!(fs.stat(0), Err(Error::NotFound));
    assert_eq!(fs.read(ROOT, 0, &mut [0; 4]), Err(Error::IsDirectory));
    let f = fs.create(ROOT, b"f", 0o644).unwrap();
    assert_eq!(fs.readdir(f, 0), Err(Error::NotDirectory));
    assert_eq!(fs.readlink(f), Err(Error::InvalidArgument));
    assert_clean(&unmount(fs));
}

#[test]
fn read_only_mount_refuses_changes() {
    let image = fresh(1024, 128, 2048);
    let mut fs = ext2fs::Fs::mount(MemDevice { data: image.clone() }, true).unwrap();
    assert!(fs.read_only());
    assert_eq!(fs.create(ROOT, b"f", 0o644), Err(Error::ReadOnly));
    assert_eq!(fs.mkdir(ROOT, b"d", 0o755), Err(Error::ReadOnly));
    fs.sync().unwrap();
    assert_eq!(fs.into_device().data, image);
}

#[test]
fn attributes_and_statfs() {
    let mut fs = mount(fresh(4096, 256, 8192));
    let st = fs.statfs();
    assert_eq!(st.block_size, 4096);
    assert_eq!(st.blocks, 2048);
    let f = fs.create(ROOT, b"f", 0o644).unwrap();
    fs.set_mode(f, 0o4755).unwrap();
    fs.set_times(f, 1000, 2000).unwrap();
    let s = fs.stat(f).unwrap();
    assert_eq!((s.mode, s.atime, s.mtime, s.ctime), (0o4755, 1000, 2000, 1_700_000_000));
    assert_eq!(fs.statfs().free_inodes, st.free_inodes - 1);
    let image = unmount(fs);
    assert_clean(&image);
    let stat = String::from_utf8(debugfs(&image, "stat /f")).unwrap();
    assert!(stat.contains("Mode:  04755"), "{stat}");
}
