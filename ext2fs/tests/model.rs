//! Seeded random operation sequences checked against an in-memory model of the tree, with
//! remounts along the way; every final image must be e2fsck-clean.

mod common;

use std::collections::{BTreeMap, HashMap};

use common::*;
use ext2fs::{Error, FileType, Fs, Ino, ROOT};

#[derive(Clone, Debug)]
enum Node {
    File(Vec<u8>),
    Dir(BTreeMap<Vec<u8>, Ino>),
    Link(Vec<u8>),
}

struct Model {
    nodes: HashMap<Ino, Node>,
    parent: HashMap<Ino, Ino>,
}

impl Model {
    fn dir(&self, ino: Ino) -> &BTreeMap<Vec<u8>, Ino> {
        match &self.nodes[&ino] {
            Node::Dir(d) => d,
            _ => unreachable!(),
        }
    }
    fn dir_mut(&mut self, ino: Ino) -> &mut BTreeMap<Vec<u8>, Ino> {
        match self.nodes.get_mut(&ino).unwrap() {
            Node::Dir(d) => d,
            _ => unreachable!(),
        }
    }
    fn dirs(&self) -> Vec<Ino> {
        let mut v: Vec<Ino> = self.nodes.iter().filter(|(_, n)| matches!(n, Node::Dir(_))).map(|(&i, _)| i).collect();
        v.sort();
        v
    }
    fn files(&self) -> Vec<Ino> {
        let mut v: Vec<Ino> = self.nodes.iter().filter(|(_, n)| matches!(n, Node::File(_))).map(|(&i, _)| i).collect();
        v.sort();
        v
    }
    fn is_dir(&self, ino: Ino) -> bool {
        matches!(self.nodes[&ino], Node::Dir(_))
    }
    fn nlink(&self, ino: Ino) -> u16 {
        if self.is_dir(ino) {
            2 + self.dir(ino).values().filter(|&&c| self.is_dir(c)).count() as u16
        } else {
            self.dirs().iter().map(|&d| self.dir(d).values().filter(|&&c| c == ino).count() as u16).sum()
        }
    }
    /// Drops one name of `ino` (already removed from its directory).
    fn forget(&mut self, ino: Ino) {
        if self.is_dir(ino) || self.nlink(ino) == 0 {
            self.nodes.remove(&ino);
            self.parent.remove(&ino);
        }
    }
    fn within(&self, mut dir: Ino, ancestor: Ino) -> bool {
        loop {
            if dir == ancestor {
                return true;
            }
            if dir == ROOT {
                return false;
            }
            dir = self.parent[&dir];
        }
    }
}

const NAMES: [&[u8]; 6] = [b"a", b"b", b"c", b"dd", b"a-much-longer-name-for-variety", b"f"];

fn check(fs: &mut Fs<MemDevice>, model: &Model, seed: u64, step: usize) {
    for dir in model.dirs() {
        let mut listed: BTreeMap<Vec<u8>, Ino> = list(fs, dir).into_iter().collect();
        assert_eq!(listed.remove(b".".as_slice()), Some(dir), "seed {seed} step {step}");
        let dotdot = if dir == ROOT { ROOT } else { model.parent[&dir] };
        assert_eq!(listed.remove(b"..".as_slice()), Some(dotdot), "seed {seed} step {step}");
        assert_eq!(&listed, model.dir(dir), "seed {seed} step {step} dir {dir}");
    }
    for (&ino, node) in &model.nodes {
        let st = fs.stat(ino).unwrap();
        assert_eq!(st.nlink, model.nlink(ino), "seed {seed} step {step} ino {ino}");
        match node {
            Node::File(data) => {
                assert_eq!(st.file_type, FileType::Regular);
                assert_eq!(&read_all(fs, ino), data, "seed {seed} step {step} ino {ino}");
            }
            Node::Link(target) => assert_eq!(&fs.readlink(ino).unwrap(), target),
            Node::Dir(_) => assert_eq!(st.file_type, FileType::Directory),
        }
    }
}

fn run(seed: u64, block_size: u32, inode_size: u32, steps: usize) {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut fs = mount(fresh(block_size, inode_size, 4096));
    let mut model = Model { nodes: HashMap::new(), parent: HashMap::new() };
    let lf = fs.lookup(ROOT, b"lost+found").unwrap();
    model.nodes.insert(ROOT, Node::Dir(BTreeMap::from([(b"lost+found".to_vec(), lf)])));
    model.nodes.insert(lf, Node::Dir(BTreeMap::new()));
    model.parent.insert(lf, ROOT);
    for step in 0..steps {
        let dirs = model.dirs();
        let files = model.files();
        let dir = dirs[rng.below(dirs.len() as u64) as usize];
        let name = NAMES[rng.below(NAMES.len() as u64) as usize];
        let existing = model.dir(dir).get(name).copied();
        match rng.below(100) {
            0..=14 => match (fs.create(dir, name, 0o644), existing) {
                (Err(Error::Exists), Some(_)) => {}
                (Ok(ino), None) => {
                    assert!(!model.nodes.contains_key(&ino));
                    model.nodes.insert(ino, Node::File(Vec::new()));
                    model.dir_mut(dir).insert(name.to_vec(), ino);
                }
                other => panic!("seed {seed} step {step}: create {other:?}"),
            },
            15..=22 => match (fs.mkdir(dir, name, 0o755), existing) {
                (Err(Error::Exists), Some(_)) => {}
                (Ok(ino), None) => {
                    model.nodes.insert(ino, Node::Dir(BTreeMap::new()));
                    model.parent.insert(ino, dir);
                    model.dir_mut(dir).insert(name.to_vec(), ino);
                }
                other => panic!("seed {seed} step {step}: mkdir {other:?}"),
            },
            23..=44 if !files.is_empty() => {
                let f = files[rng.below(files.len() as u64) as usize];
                let range = if rng.below(4) == 0 { 300_000 } else { 20_000 };
                let off = rng.below(range);
                let len = rng.below(30_000) as usize + 1;
                let data = rng.bytes(len);
                assert_eq!(fs.write(f, off, &data).unwrap(), data.len(), "seed {seed} step {step}");
                let Node::File(content) = model.nodes.get_mut(&f).unwrap() else { unreachable!() };
                let end = off as usize + data.len();
                if content.len() < end {
                    content.resize(end, 0);
                }
                content[off as usize..end].copy_from_slice(&data);
            }
            45..=52 if !files.is_empty() => {
                let f = files[rng.below(files.len() as u64) as usize];
                let size = rng.below(200_000);
                fs.truncate(f, size).unwrap();
                let Node::File(content) = model.nodes.get_mut(&f).unwrap() else { unreachable!() };
                content.resize(size as usize, 0);
            }
            53..=60 => {
                let expect = match existing {
                    None => Err(Error::NotFound),
                    Some(i) if model.is_dir(i) => Err(Error::IsDirectory),
                    Some(_) => Ok(()),
                };
                assert_eq!(fs.unlink(dir, name), expect, "seed {seed} step {step}");
                if expect.is_ok() {
                    let ino = model.dir_mut(dir).remove(name).unwrap();
                    model.forget(ino);
                }
            }
            61..=67 => {
                let expect = match existing {
                    None => Err(Error::NotFound),
                    Some(i) if !model.is_dir(i) => Err(Error::NotDirectory),
                    Some(i) if !model.dir(i).is_empty() => Err(Error::NotEmpty),
                    Some(_) => Ok(()),
                };
                assert_eq!(fs.rmdir(dir, name), expect, "seed {seed} step {step}");
                if expect.is_ok() {
                    let ino = model.dir_mut(dir).remove(name).unwrap();
                    model.forget(ino);
                }
            }
            68..=72 if !files.is_empty() => {
                let f = files[rng.below(files.len() as u64) as usize];
                let expect = if existing.is_some() { Err(Error::Exists) } else { Ok(()) };
                assert_eq!(fs.link(f, dir, name), expect, "seed {seed} step {step}");
                if expect.is_ok() {
                    model.dir_mut(dir).insert(name.to_vec(), f);
                }
            }
            73..=86 => {
                let to_dir = dirs[rng.below(dirs.len() as u64) as usize];
                let to = NAMES[rng.below(NAMES.len() as u64) as usize];
                let dst = model.dir(to_dir).get(to).copied();
                let expect = match (existing, dst) {
                    (None, _) => Err(Error::NotFound),
                    (Some(s), Some(d)) if s == d => Ok(()),
                    (Some(s), _) if model.is_dir(s) && dir != to_dir && model.within(to_dir, s) => {
                        Err(Error::InvalidArgument)
                    }
                    (Some(s), Some(d)) if model.is_dir(s) && !model.is_dir(d) => Err(Error::NotDirectory),
                    (Some(s), Some(d)) if !model.is_dir(s) && model.is_dir(d) => Err(Error::IsDirectory),
                    (Some(_), Some(d)) if model.is_dir(d) && !model.dir(d).is_empty() => Err(Error::NotEmpty),
                    _ => Ok(()),
                };
                assert_eq!(fs.rename(dir, name, to_dir, to), expect, "seed {seed} step {step}");
                if let (Ok(()), Some(s)) = (&expect, existing) {
                    if dst != Some(s) {
                        model.dir_mut(dir).remove(name);
                        if let Some(d) = model.dir_mut(to_dir).insert(to.to_vec(), s) {
                            model.forget(d);
                        }
                        if model.is_dir(s) {
                            model.parent.insert(s, to_dir);
                        }
                    }
                }
            }
            87..=91 => {
                let target = vec![b't'; rng.below(200) as usize + 1];
                match (fs.symlink(dir, name, &target), existing) {
                    (Err(Error::Exists), Some(_)) => {}
                    (Ok(ino), None) => {
                        model.nodes.insert(ino, Node::Link(target));
                        model.dir_mut(dir).insert(name.to_vec(), ino);
                    }
                    other => panic!("seed {seed} step {step}: symlink {other:?}"),
                }
            }
            92..=95 => fs.sync().unwrap(),
            96..=97 => {
                let image = unmount(fs);
                fs = mount(image);
            }
            _ => check(&mut fs, &model, seed, step),
        }
    }
    check(&mut fs, &model, seed, steps);
    let image = unmount(fs);
    let (code, text) = fsck_output(&image);
    assert_eq!(code, 0, "seed {seed}: e2fsck -fn:\n{text}");
}

#[test]
fn random_operations_match_the_model_1k_blocks() {
    for seed in 1..=12 {
        run(seed, 1024, 128, 400);
    }
}

#[test]
fn random_operations_match_the_model_4k_blocks() {
    for seed in 100..=111 {
        run(seed, 4096, 256, 400);
    }
}

#[test]
fn random_operations_with_a_tiny_cache() {
    for seed in 200..=205 {
        let mut rng = Rng(seed);
        let mut fs = Fs::mount_with_cache(MemDevice { data: fresh(1024, 256, 4096) }, false, 8).unwrap();
        let mut expect = Vec::new();
        let f = fs.create(ROOT, b"f", 0o644).unwrap();
        for _ in 0..100 {
            let off = rng.below(400_000) as usize;
            let len = rng.below(5000) as usize + 1;
            let data = rng.bytes(len);
            fs.write(f, off as u64, &data).unwrap();
            if expect.len() < off + data.len() {
                expect.resize(off + data.len(), 0);
            }
            expect[off..off + data.len()].copy_from_slice(&data);
            let d = format!("d{}", rng.below(20));
            let _ = fs.mkdir(ROOT, d.as_bytes(), 0o755);
        }
        assert_eq!(read_all(&mut fs, f), expect);
        fs.sync().unwrap();
        let image = fs.into_device().data;
        assert_clean(&image);
        assert_eq!(debugfs(&image, "cat /f"), expect);
    }
}
