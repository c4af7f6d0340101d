//! Files through Rust's std: create, write, append, read back, seek, set_len, metadata,
//! directories listed and removed recursively, rename, copy, symlinks, and the error kinds of
//! missing and existing paths. Usage: `rfs <scratch directory>`. Prints `R ` lines, ends with
//! `R done`.

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::Path;

fn main() {
    let base = std::env::args().nth(1).expect("usage: rfs <scratch directory>");
    let dir = Path::new(&base).join("rfs");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(dir.join("a/b/c")).unwrap();
    println!("R create_dir_all: {}", dir.join("a/b/c").is_dir());

    let file = dir.join("a/notes.txt");
    fs::write(&file, "first line\n").unwrap();
    let mut f = OpenOptions::new().append(true).open(&file).unwrap();
    writeln!(f, "second line").unwrap();
    f.sync_all().unwrap();
    drop(f);
    let text = fs::read_to_string(&file).unwrap();
    println!("R read back {} bytes, {} lines, last {:?}", text.len(), text.lines().count(), text.lines().last());

    let mut f = OpenOptions::new().read(true).write(true).open(&file).unwrap();
    f.seek(SeekFrom::Start(6)).unwrap();
    f.write_all(b"LINE").unwrap();
    f.seek(SeekFrom::End(-5)).unwrap();
    let mut tail = String::new();
    f.read_to_string(&mut tail).unwrap();
    f.set_len(10).unwrap();
    let len = f.metadata().unwrap().len();
    drop(f);
    println!("R seek and overwrite: {:?}, tail {:?}, after set_len {}", fs::read_to_string(&file).unwrap(), tail, len);

    let big: Vec<u8> = (0..60_000u32).map(|i| (i * 7 % 251) as u8).collect();
    fs::write(dir.join("big"), &big).unwrap();
    let back = fs::read(dir.join("big")).unwrap();
    let sum: u64 = back.iter().map(|b| *b as u64).sum();
    println!("R 60000 bytes: read {} equal {} sum {}", back.len(), back == big, sum);

    let copied = fs::copy(dir.join("big"), dir.join("a/b/big-copy")).unwrap();
    println!("R copy: {} bytes, equal {}", copied, fs::read(dir.join("a/b/big-copy")).unwrap() == big);
    fs::rename(dir.join("a/b/big-copy"), dir.join("a/b/c/moved")).unwrap();
    println!(
        "R rename: old exists {}, new is a file {}",
        dir.join("a/b/big-copy").exists(),
        dir.join("a/b/c/moved").is_file()
    );

    std::os::unix::fs::symlink("notes.txt", dir.join("a/link")).unwrap();
    let target = fs::read_link(dir.join("a/link")).unwrap();
    let through = fs::read_to_string(dir.join("a/link")).unwrap();
    let meta = fs::symlink_metadata(dir.join("a/link")).unwrap();
    println!(
        "R symlink: target {:?}, read through {:?}, is a symlink {}",
        target,
        through,
        meta.file_type().is_symlink()
    );

    for i in 0..5 {
        File::create(dir.join(format!("a/b/file{i}"))).unwrap().write_all(&vec![b'x'; i * 10]).unwrap();
    }
    let mut names: Vec<(String, u64, bool)> = fs::read_dir(dir.join("a/b"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            (e.file_name().to_string_lossy().into_owned(), if m.is_dir() { 0 } else { m.len() }, m.is_dir())
        })
        .collect();
    names.sort();
    println!("R read_dir: {names:?}");

    let missing = fs::read(dir.join("nope")).unwrap_err();
    println!("R missing file: {:?}", missing.kind());
    let exists = OpenOptions::new().write(true).create_new(true).open(&file).unwrap_err();
    println!("R create_new on an existing file: {:?}", exists.kind());
    let not_empty = fs::remove_dir(dir.join("a")).unwrap_err();
    println!("R remove_dir of a full directory: {}", not_empty.kind() != ErrorKind::NotFound);
    let not_dir = fs::read_dir(&file).unwrap_err();
    println!("R read_dir of a file: {:?}", not_dir.raw_os_error());

    fs::remove_dir_all(&dir).unwrap();
    println!("R remove_dir_all: exists {}", dir.exists());
    println!("R done");
}
