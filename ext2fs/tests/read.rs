//! Reading trees that mke2fs built from a host directory (`mke2fs -d`).

mod common;

use std::os::unix::fs::symlink;

use common::*;
use ext2fs::{Error, FileType, Fs, ROOT};

/// Builds the host tree and returns its root, with the big file's contents.
fn host_tree() -> (std::path::PathBuf, Vec<u8>) {
    let root = scratch("tree");
    let tree = root.join("tree");
    std::fs::create_dir_all(tree.join("a/b/c")).unwrap();
    std::fs::write(tree.join("small.txt"), b"small file\n").unwrap();
    std::fs::write(tree.join("a/b/c/deep.txt"), b"deep").unwrap();
    // Large enough for double indirect blocks with 1 KiB blocks (12 + 256 blocks).
    let big: Vec<u8> = (0..1_500_000u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect();
    std::fs::write(tree.join("big.bin"), &big).unwrap();
    // A sparse file: data, a hole, data.
    let sparse = std::fs::File::create(tree.join("sparse")).unwrap();
    use std::io::{Seek, SeekFrom, Write};
    let mut sparse = sparse;
    sparse.write_all(b"start").unwrap();
    sparse.seek(SeekFrom::Start(3_000_000)).unwrap();
    sparse.write_all(b"end").unwrap();
    drop(sparse);
    std::fs::write(tree.join("n".repeat(255)), b"long name").unwrap();
    symlink("small.txt", tree.join("fast-link")).unwrap();
    symlink("x".repeat(200), tree.join("slow-link")).unwrap();
    std::fs::create_dir(tree.join("many")).unwrap();
    for i in 0..300 {
        std::fs::write(tree.join(format!("many/file-{i}")), format!("{i}")).unwrap();
    }
    (tree, big)
}

#[test]
fn reads_a_host_made_tree_in_every_geometry() {
    let (tree, big) = host_tree();
    for (bs, is) in [(1024, 128), (1024, 256), (2048, 256), (4096, 128), (4096, 256)] {
        let image = mkfs(&["-b", &bs.to_string(), "-I", &is.to_string()], 16 * 1024, Some(&tree));
        let mut fs = Fs::mount(MemDevice { data: image }, true).unwrap();
        let small = resolve(&mut fs, "small.txt").unwrap();
        assert_eq!(read_all(&mut fs, small), b"small file\n");
        let deep = resolve(&mut fs, "a/b/c/deep.txt").unwrap();
        assert_eq!(read_all(&mut fs, deep), b"deep");
        let b = resolve(&mut fs, "big.bin").unwrap();
        assert_eq!(read_all(&mut fs, b), big, "{bs}/{is}");
        // Unaligned reads across block boundaries.
        let mut buf = vec![0; 5000];
        assert_eq!(fs.read(b, 1021, &mut buf).unwrap(), 5000);
        assert_eq!(buf, big[1021..6021]);
        assert_eq!(fs.read(b, big.len() as u64 - 10, &mut buf).unwrap(), 10);
        assert_eq!(fs.read(b, big.len() as u64 + 10, &mut buf).unwrap(), 0);
        let sparse = resolve(&mut fs, "sparse").unwrap();
        let content = read_all(&mut fs, sparse);
        assert_eq!(content.len(), 3_000_003);
        assert_eq!(&content[..5], b"start");
        assert!(content[5..3_000_000].iter().all(|&x| x == 0));
        assert_eq!(&content[3_000_000..], b"end");
        assert!(fs.stat(sparse).unwrap().blocks < 64);
        let long = resolve(&mut fs, &"n".repeat(255)).unwrap();
        assert_eq!(read_all(&mut fs, long), b"long name");
        let fast = resolve(&mut fs, "fast-link").unwrap();
        assert_eq!(fs.stat(fast).unwrap().file_type, FileType::Symlink);
        assert_eq!(fs.readlink(fast).unwrap(), b"small.txt");
        let slow = resolve(&mut fs, "slow-link").unwrap();
        assert_eq!(fs.readlink(slow).unwrap(), "x".repeat(200).as_bytes());
        let many = resolve(&mut fs, "many").unwrap();
        let names = list(&mut fs, many);
        assert_eq!(names.len(), 302);
        for i in [0, 150, 299] {
            let f = fs.lookup(many, format!("file-{i}").as_bytes()).unwrap();
            assert_eq!(read_all(&mut fs, f), format!("{i}").as_bytes());
        }
        let root = list(&mut fs, ROOT);
        assert_eq!(&root[0].0, b".");
        assert_eq!(&root[1].0, b"..");
        assert_eq!(fs.readdir(ROOT, u64::MAX).unwrap(), None);
        assert_eq!(fs.create(ROOT, b"x", 0o644), Err(Error::ReadOnly));
    }
}

#[test]
fn changes_a_host_made_tree() {
    let (tree, big) = host_tree();
    for bs in [1024u32, 4096] {
        let image = mkfs(&["-b", &bs.to_string()], 16 * 1024, Some(&tree));
        let mut fs = mount(image);
        let many = resolve(&mut fs, "many").unwrap();
        for i in 0..300 {
            if i % 2 == 0 {
                fs.unlink(many, format!("file-{i}").as_bytes()).unwrap();
            }
        }
        let b = resolve(&mut fs, "big.bin").unwrap();
        fs.truncate(b, 700_000).unwrap();
        fs.write(b, 700_000, b"appended").unwrap();
        let c = resolve(&mut fs, "a/b/c").unwrap();
        fs.rename(c, b"deep.txt", many, b"moved").unwrap();
        fs.rename(ROOT, b"a", many, b"a").unwrap();
        let image = unmount(fs);
        assert_clean(&image);
        let mut expect = big[..700_000].to_vec();
        expect.extend_from_slice(b"appended");
        assert_eq!(debugfs(&image, "cat /big.bin"), expect);
        assert_eq!(debugfs(&image, "cat /many/moved"), b"deep");
        assert_eq!(debugfs(&image, "cat /many/file-7"), b"7");
    }
}

#[test]
fn revision_0_file_systems() {
    let mut fs = mount(mkfs(&["-r", "0", "-b", "1024"], 4096, None));
    let d = fs.mkdir(ROOT, b"dir", 0o755).unwrap();
    let f = fs.create(d, b"f", 0o644).unwrap();
    fs.write(f, 0, &[7; 100_000]).unwrap();
    assert_eq!(fs.readdir(d, 0).unwrap().unwrap().0.file_type, FileType::Directory);
    let image = unmount(fs);
    assert_clean(&image);
    assert_eq!(debugfs(&image, "cat /dir/f"), vec![7; 100_000]);
}

#[test]
fn without_filetype_in_directory_entries() {
    let mut fs = mount(mkfs(&["-O", "^filetype", "-b", "1024"], 4096, None));
    let d = fs.mkdir(ROOT, b"dir", 0o755).unwrap();
    fs.symlink(d, b"l", b"target").unwrap();
    let entries: Vec<_> = {
        let mut out = Vec::new();
        let mut cookie = 0;
        while let Some((e, next)) = fs.readdir(d, cookie).unwrap() {
            out.push((e.name, e.file_type));
            cookie = next;
        }
        out
    };
    assert_eq!(
        entries,
        vec![
            (b".".to_vec(), FileType::Directory),
            (b"..".to_vec(), FileType::Directory),
            (b"l".to_vec(), FileType::Symlink)
        ]
    );
    assert_clean(&unmount(fs));
}

#[test]
fn refuses_what_it_does_not_implement() {
    let ext4 = mkfs(&["-t", "ext4"], 8192, None);
    assert!(matches!(Fs::mount(MemDevice { data: ext4.clone() }, true), Err(Error::Unsupported(_))));
    let ext3 = mkfs(&["-t", "ext3", "-b", "1024"], 8192, None);
    assert_eq!(
        Fs::mount(MemDevice { data: ext3.clone() }, false).err(),
        Some(Error::Unsupported("has_journal (ext3 mounts read-only)"))
    );
    let mut fs = Fs::mount(MemDevice { data: ext3 }, true).unwrap();
    assert_eq!(list(&mut fs, ROOT).len(), 3);
    let uninit = mkfs(&["-O", "uninit_bg", "-b", "1024"], 8192, None);
    assert_eq!(Fs::mount(MemDevice { data: uninit.clone() }, false).err(), Some(Error::Unsupported("uninit_bg")));
    assert!(Fs::mount(MemDevice { data: uninit }, true).is_ok());
    assert!(matches!(Fs::mount(MemDevice { data: vec![0; 65536] }, true), Err(Error::Corrupt(_))));
    let mut small = fresh(1024, 128, 4096);
    small.truncate(2 * 1024 * 1024);
    assert_eq!(
        Fs::mount(MemDevice { data: small }, true).err(),
        Some(Error::Corrupt("file system larger than the device"))
    );
}
