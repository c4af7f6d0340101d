//! Damaged images: random bytes flipped in the superblock, group descriptors, inode tables,
//! directories and indirect blocks. Mounting, walking and changing such an image may fail
//! with errors but must never panic or hang.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::*;

fn u32_at(image: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(image[off..off + 4].try_into().unwrap())
}

/// Byte ranges worth damaging in `image`: (name, start, length).
fn targets(image: &[u8], inos: &[u32]) -> Vec<(&'static str, usize, usize)> {
    let bs = 1024usize << u32_at(image, 1024 + 24);
    let inode_size = u16::from_le_bytes([image[1024 + 88], image[1024 + 89]]) as usize;
    let ipg = u32_at(image, 1024 + 40) as usize;
    let gdt = (u32_at(image, 1024 + 20) as usize + 1) * bs;
    let mut out = vec![("superblock", 1024, 1024), ("group descriptors", gdt, 64)];
    let block_bitmap = u32_at(image, gdt) as usize * bs;
    out.push(("block bitmap", block_bitmap, bs));
    let inode_bitmap = u32_at(image, gdt + 4) as usize * bs;
    out.push(("inode bitmap", inode_bitmap, bs));
    let table = u32_at(image, gdt + 8) as usize * bs;
    for &ino in inos {
        let index = ino as usize - 1;
        if index >= ipg {
            continue;
        }
        let at = table + index * inode_size;
        out.push(("inode", at, 128));
        // Its first data or directory block, and its indirect blocks.
        for slot in [0usize, 12, 13] {
            let b = u32_at(image, at + 40 + 4 * slot) as usize;
            if b != 0 && (b + 1) * bs <= image.len() {
                out.push(("file block", b * bs, bs));
            }
        }
    }
    out
}

/// Runs `fuzz::exercise` on `image` in a thread and fails if it panics or takes too long.
fn survive(image: Vec<u8>, what: &str, seed: u64) {
    let (tx, rx) = mpsc::channel();
    let handle = std::thread::spawn(move || {
        ext2fs::fuzz::exercise(&image);
        let _ = tx.send(());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(()) => handle.join().unwrap(),
        Err(_) => {
            if handle.is_finished() {
                handle.join().unwrap_or_else(|_| panic!("panic with {what} damaged, seed {seed}"));
            }
            panic!("hang with {what} damaged, seed {seed}");
        }
    }
}

fn damage_many(image: &[u8], inos: &[u32], seeds: std::ops::Range<u64>) {
    let targets = targets(image, inos);
    for seed in seeds {
        let mut rng = Rng(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) | 1);
        let (what, start, len) = targets[rng.below(targets.len() as u64) as usize];
        let mut damaged = image.to_vec();
        for _ in 0..1 + rng.below(8) {
            let at = start + rng.below(len as u64) as usize;
            match rng.below(3) {
                0 => damaged[at] ^= 1 << rng.below(8),
                1 => damaged[at] = rng.next() as u8,
                _ => damaged[at] = [0, 0xFF, 0x80, 0x7F][rng.below(4) as usize],
            }
        }
        survive(damaged, what, seed);
    }
}

/// A populated image and the inode numbers of its root, directories and files.
fn populated(block_size: u32) -> (Vec<u8>, Vec<u32>) {
    let tree = scratch("corrupt-tree").join("tree");
    std::fs::create_dir_all(tree.join("dir/sub")).unwrap();
    std::fs::write(tree.join("small"), b"hello").unwrap();
    std::fs::write(tree.join("dir/big"), vec![0x42u8; 600_000]).unwrap();
    std::fs::write(tree.join("dir/sub/x"), b"x").unwrap();
    for i in 0..40 {
        std::fs::write(tree.join(format!("dir/f{i}")), format!("{i}")).unwrap();
    }
    std::os::unix::fs::symlink("y".repeat(100), tree.join("slow")).unwrap();
    std::os::unix::fs::symlink("small", tree.join("fast")).unwrap();
    let image = mkfs(&["-b", &block_size.to_string(), "-I", "256", "-N", "128"], 2048, Some(&tree));
    let mut fs = ext2fs::Fs::mount(MemDevice { data: image.clone() }, true).unwrap();
    let mut inos = vec![ext2fs::ROOT];
    for path in ["dir", "dir/sub", "dir/big", "small", "slow", "dir/f3", "lost+found"] {
        inos.push(resolve(&mut fs, path).unwrap());
    }
    (image, inos)
}

#[test]
fn damaged_1k_images_never_panic() {
    let (image, inos) = populated(1024);
    survive(image.clone(), "nothing", 0);
    damage_many(&image, &inos, 0..2000);
}

#[test]
fn damaged_4k_images_never_panic() {
    let (image, inos) = populated(4096);
    damage_many(&image, &inos, 10_000..12_000);
}

#[test]
fn random_garbage_never_panics() {
    let mut rng = Rng(77);
    for _ in 0..50 {
        let len = (rng.below(64) as usize + 1) * 1024;
        let mut image = rng.bytes(len);
        if len > 1100 {
            // Often a plausible magic, so parsing goes further.
            image[1024 + 56] = 0x53;
            image[1024 + 57] = 0xEF;
        }
        survive(image, "everything", 0);
    }
}
