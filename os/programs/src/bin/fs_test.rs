//! Test program of the file-system service (systests/tests/fs.rs), run as a manifest service
//! with `endpoint fs`; its `arg` picks the scenario:
//!
//! - `tree`: tmpfs operations, the boot archive read-only, mounts, symbolic links;
//! - `hostile`: raw requests with bad sessions, ranges, lengths, handles and paths;
//! - `ext2`: reads the host's files on `/disk`, writes, renames, truncates, deletes;
//! - `durable-write`: writes and fsyncs `/disk/durable.bin`, then keeps writing other files
//!   until the harness kills the machine; `durable-check` reads it back after the reboot;
//! - `corrupt`: `/disk` is unusable, everything else works.
//!
//! Each check prints `fs_test: <what>: <result>`; the last line is `fs_test: ok` or
//! `fs_test: FAILED`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use rt::ipc::{BufRange, Client, SharedBuffer};
use rt::sys;
use svc::fs::{flags, whence, Error, FileSystem, Fs, Kind, Request, Response};

rt::entry!(main);

struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: impl core::fmt::Debug) {
        rt::println!("fs_test: {what}: {} ({detail:?})", if ok { "ok" } else { "WRONG" });
        if !ok {
            self.failed.push(what.into());
        }
    }
}

fn main() -> i32 {
    let mode = svc::arguments().ok().and_then(|a| a.into_iter().next()).unwrap_or_default();
    let mut c = Checks { failed: Vec::new() };
    let fs = match Fs::connect() {
        Ok(fs) => fs,
        Err(e) => {
            rt::println!("fs_test: cannot connect: {e:?}");
            return svc::exit(1);
        }
    };
    match mode.as_str() {
        "tree" => tree(&fs, &mut c),
        "hostile" => hostile(&fs, &mut c),
        "ext2" => ext2(&fs, &mut c),
        "durable-write" => durable_write(&fs, &mut c),
        "durable-check" => durable_check(&fs, &mut c),
        "corrupt" => corrupt(&fs, &mut c),
        other => c.check("mode", false, other),
    }
    if c.failed.is_empty() {
        rt::println!("fs_test: ok");
        svc::exit(0)
    } else {
        rt::println!("fs_test: FAILED: {:?}", c.failed);
        svc::exit(1)
    }
}

fn names(fs: &Fs, path: &str) -> Vec<String> {
    let mut v: Vec<String> = fs.read_dir(path).unwrap_or_default().iter().map(|e| e.name_str()).collect();
    v.sort();
    v
}

fn tree(fs: &Fs, c: &mut Checks) {
    let mounts = fs.mounts();
    let summary: Vec<String> = mounts
        .iter()
        .flatten()
        .map(|m| format!("{} {} {}", m.path, m.fs_type, if m.read_only { "ro" } else { "rw" }))
        .collect();
    c.check(
        "mounts",
        summary.iter().any(|m| m == "/ tmpfs rw") && summary.iter().any(|m| m == "/boot bootfs ro"),
        &summary,
    );

    // tmpfs
    c.check("mkdir", fs.mkdir("/tmp/dir", 0o755).is_ok(), ());
    c.check("mkdir again", fs.mkdir("/tmp/dir", 0o755) == Err(Error::Exists), ());
    c.check("write_file", fs.write_file("/tmp/dir/a.txt", b"hello tmpfs\n").is_ok(), ());
    let back = fs.read_file("/tmp/dir/a.txt");
    c.check("read_file", back.as_deref() == Ok(&b"hello tmpfs\n"[..]), &back);
    c.check("append", fs.append_file("/tmp/dir/a.txt", b"more\n").is_ok(), ());
    let st = fs.stat("/tmp/dir/a.txt");
    c.check("stat", st.is_ok_and(|s| s.size == 17 && s.kind == Kind::Regular && s.mode == 0o644), st);
    let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    c.check("write 100 KB", fs.write_file("/tmp/big", &big).is_ok(), ());
    let read = fs.read_file("/tmp/big");
    c.check("read 100 KB", read.as_ref().is_ok_and(|r| *r == big), read.as_ref().map(|r| r.len()));
    if let Ok(mut f) = fs.open("/tmp/big", flags::READ | flags::WRITE, 0) {
        let pos = f.seek(whence::SET, 99_990);
        let mut buf = [0u8; 32];
        let n = f.read(&mut buf);
        c.check("seek and short read", pos == Ok(99_990) && n == Ok(10) && buf[..10] == big[99_990..], (pos, n));
        let end = f.seek(whence::END, -1);
        let neg = f.seek(whence::SET, -5);
        c.check(
            "seek from the end, negative refused",
            end == Ok(99_999) && neg == Err(Error::InvalidArgument),
            (end, neg),
        );
        let w = f.write_at(5, b"XY");
        let mut two = [0u8; 2];
        let r = f.read_at(5, &mut two);
        c.check("pwrite/pread", w == Ok(2) && r == Ok(2) && two == *b"XY", (w, r));
        c.check("ftruncate", f.truncate(10).is_ok() && f.stat().is_ok_and(|s| s.size == 10), ());
        c.check("fsync (tmpfs)", f.fsync().is_ok(), ());
        c.check("close", f.close().is_ok(), ());
    }
    c.check("rename", fs.rename("/tmp/dir/a.txt", "/tmp/b.txt").is_ok(), ());
    c.check("old name gone", fs.stat("/tmp/dir/a.txt") == Err(Error::NotFound), ());
    c.check(
        "truncate",
        fs.truncate("/tmp/b.txt", 5).is_ok() && fs.read_file("/tmp/b.txt").as_deref() == Ok(b"hello"),
        (),
    );
    c.check("symlink", fs.symlink("/tmp/b.txt", "/tmp/link").is_ok(), ());
    c.check("readlink", fs.readlink("/tmp/link").as_deref() == Ok(b"/tmp/b.txt"), ());
    c.check("through the link", fs.read_file("/tmp/link").as_deref() == Ok(b"hello"), ());
    c.check("lstat", fs.lstat("/tmp/link").is_ok_and(|s| s.kind == Kind::Symlink), ());
    c.check("readdir", names(fs, "/tmp") == ["b.txt", "big", "dir", "link"], names(fs, "/tmp"));
    c.check("root lists the mount points", names(fs, "/") == ["boot", "disk", "tmp"], names(fs, "/"));
    c.check("rmdir non-empty", fs.rmdir("/tmp") == Err(Error::NotEmpty), ());
    c.check("unlink", fs.unlink("/tmp/b.txt").is_ok() && fs.stat("/tmp/link") == Err(Error::NotFound), ());
    c.check("rmdir", fs.rmdir("/tmp/dir").is_ok(), ());
    c.check("chmod", fs.chmod("/tmp/big", 0o600).is_ok() && fs.stat("/tmp/big").is_ok_and(|s| s.mode == 0o600), ());
    let odd = fs.stat("//tmp/.//big/");
    c.check("normalised path", odd.is_ok_and(|s| s.size == 10), odd);
    let dotdot = fs.stat("/boot/etc/../etc/./version");
    c.check("dot-dot", dotdot.is_ok_and(|s| s.size > 0), dotdot);
    c.check("dot-dot through a missing directory", fs.stat("/tmp/missing/../big") == Err(Error::NotFound), ());
    // a deleted file's handle is stale
    let _ = fs.write_file("/tmp/gone", b"x");
    if let Ok(mut f) = fs.open("/tmp/gone", flags::READ, 0) {
        let _ = fs.unlink("/tmp/gone");
        let mut b = [0u8; 4];
        c.check("handle of a deleted file", f.read(&mut b) == Err(Error::Stale), ());
    }
    // tmpfs is bounded
    let chunk = alloc::vec![0u8; 16 * 1024];
    let mut result = Ok(0);
    if let Ok(mut f) = fs.open("/tmp/fill", flags::WRITE | flags::CREATE, 0o644) {
        for _ in 0..64 {
            result = f.write(&chunk);
            if result.is_err() {
                break;
            }
        }
    }
    c.check("tmpfs quota", result == Err(Error::NoSpace), result);
    c.check(
        "space back after unlink",
        fs.unlink("/tmp/fill").is_ok() && fs.write_file("/tmp/after", &chunk).is_ok(),
        (),
    );
    let space = fs.statfs("/tmp");
    c.check("statfs", space.as_ref().is_ok_and(|m| m.fs_type == "tmpfs" && m.free_bytes < m.total_bytes), &space);

    // the boot archive
    let version = fs.read_file("/boot/etc/version");
    let text = version.as_ref().map(|v| String::from_utf8_lossy(v).into_owned());
    c.check("read /boot/etc/version", text.as_ref().is_ok_and(|t| !t.is_empty()), &text);
    c.check("write in /boot refused", fs.write_file("/boot/etc/version", b"x") == Err(Error::ReadOnly), ());
    c.check("create in /boot refused", fs.write_file("/boot/new", b"x") == Err(Error::ReadOnly), ());
    c.check("mkdir in /boot refused", fs.mkdir("/boot/d", 0o755) == Err(Error::ReadOnly), ());
    c.check("unlink in /boot refused", fs.unlink("/boot/etc/version") == Err(Error::ReadOnly), ());
    c.check("mount point busy", fs.rmdir("/boot") == Err(Error::Busy), ());
    c.check("rename across mounts", fs.rename("/boot/etc/version", "/tmp/v") == Err(Error::CrossDevice), ());
    c.check("/boot/bin lists programs", names(fs, "/boot/bin").iter().any(|n| n == "svc_fs"), ());
    c.check("read a directory", fs.read_file("/boot/etc").map(|_| ()) == Err(Error::IsDirectory), ());
    c.check("missing file", fs.read_file("/boot/nope") == Err(Error::NotFound), ());
}

/// Raw protocol requests a broken or hostile client might send.
fn hostile(fs: &Fs, c: &mut Checks) {
    let mut names = match svc::names() {
        Ok(n) => n,
        Err(e) => return c.check("names", false, e),
    };
    let endpoint = match svc::lookup(&mut names, "fs", 5_000_000_000) {
        Ok(e) => e,
        Err(e) => return c.check("lookup", false, e),
    };
    let root = Client::<FileSystem>::new(endpoint);
    let call = |client: &Client<FileSystem>, r: Request| client.call(&r, 5_000_000_000);
    let failed = |e: Error| Ok(Response::Failed { error: e });
    let r = call(&root, Request::Open { path: BufRange { offset: 0, len: 1 }, flags: 1, mode: 0 });
    c.check("no session", r == failed(Error::NoSession), &r);
    let session = match call(&root, Request::Attach) {
        Ok(Response::Session { endpoint }) => Client::<FileSystem>::new(endpoint.0),
        other => return c.check("attach", false, other),
    };
    let r = call(&session, Request::Stat { path: BufRange { offset: 0, len: 1 }, follow: true });
    c.check("no buffer yet", r == failed(Error::NoSession), &r);
    let r = call(&session, Request::Buffer { len: 1 << 40 });
    c.check("huge buffer", r == failed(Error::InvalidArgument), &r);
    let buffer = match call(&session, Request::Buffer { len: 8192 }) {
        Ok(Response::Buffer { memory, .. }) => SharedBuffer::map(memory.0).ok(),
        _ => None,
    };
    let Some(buffer) = buffer else { return c.check("buffer", false, ()) };
    let r = call(&session, Request::Buffer { len: 8192 });
    c.check("second buffer", r == failed(Error::Exists), &r);
    let far = BufRange { offset: u64::MAX - 1, len: 10 };
    let r = call(&session, Request::Stat { path: far, follow: true });
    c.check("range overflowing", r == failed(Error::OutOfRange), &r);
    let r = call(&session, Request::Stat { path: BufRange { offset: 8000, len: 500 }, follow: true });
    c.check("range past the buffer", r == failed(Error::OutOfRange), &r);
    let r = call(&session, Request::Stat { path: BufRange { offset: 0, len: 5000 }, follow: true });
    c.check("path too long", r == failed(Error::NameTooLong), &r);
    let _ = buffer.write(0, b"relative/path");
    let r = call(&session, Request::Stat { path: BufRange { offset: 0, len: 13 }, follow: true });
    c.check("relative path", r == failed(Error::InvalidPath), &r);
    let _ = buffer.write(0, b"/boot\0/etc");
    let r = call(&session, Request::Stat { path: BufRange { offset: 0, len: 10 }, follow: true });
    c.check("NUL in a path", r == failed(Error::InvalidPath), &r);
    let mut long = alloc::vec![b'/'];
    long.extend([b'a'; 300]);
    let _ = buffer.write(0, &long);
    let r = call(&session, Request::Stat { path: BufRange { offset: 0, len: long.len() as u64 }, follow: true });
    c.check("component too long", r == failed(Error::NameTooLong), &r);
    let r = call(&session, Request::Read { handle: 7, len: 10, at: None });
    c.check("bad handle", r == failed(Error::BadHandle), &r);
    let r = call(&session, Request::Close { handle: u32::MAX });
    c.check("close a bad handle", r == failed(Error::BadHandle), &r);
    let _ = buffer.write(0, b"/boot/etc/version");
    let path = BufRange { offset: 0, len: 17 };
    let r = call(&session, Request::Open { path, flags: 0xffff_0000, mode: 0 });
    c.check("unknown flags", r == failed(Error::InvalidArgument), &r);
    let handle = match call(&session, Request::Open { path, flags: flags::READ, mode: 0 }) {
        Ok(Response::Opened { handle, .. }) => handle,
        other => return c.check("open", false, other),
    };
    let r = call(&session, Request::Read { handle, len: u32::MAX, at: None });
    c.check("huge read", r == failed(Error::OutOfRange), &r);
    let r = call(&session, Request::Read { handle, len: 100, at: Some(u64::MAX) });
    c.check("read far past the end", r == Ok(Response::Data { len: 0 }), &r);
    let r = call(&session, Request::Write { handle, len: 1, at: None });
    c.check("write on a read-only handle", r == failed(Error::BadHandle), &r);
    let r = call(&session, Request::Seek { handle, whence: 9, offset: 0 });
    c.check("bad whence", r == failed(Error::InvalidArgument), &r);
    let r = call(&session, Request::Seek { handle, whence: whence::CURRENT, offset: i64::MIN });
    c.check("seek before the start", r == failed(Error::InvalidArgument), &r);
    let r = call(&session, Request::ReadDir { handle, cookie: 0 });
    c.check("readdir on a file", r == failed(Error::NotDirectory), &r);
    let mut opened = 1;
    let full = loop {
        match call(&session, Request::Open { path, flags: flags::READ, mode: 0 }) {
            Ok(Response::Opened { .. }) if opened < 100 => opened += 1,
            other => break other,
        }
    };
    c.check("open files are bounded", full == failed(Error::TooManyOpen) && opened == 32, (&full, opened));
    // An undecodable message is rejected, and the server serves on.
    let raw = sys::call(session.endpoint(), &sys::Message::new(9999, [0; 4]), 5_000_000_000);
    c.check("unknown request rejected", raw.is_ok_and(|m| m.label == rt::ipc::REJECTED), ());
    let r = fs.read_file("/boot/etc/version");
    c.check("still serving", r.is_ok(), r.map(|v| v.len()));
}

/// The host made the image with `hello.txt`, `sub/big` (200000 bytes, i % 251) and
/// `remove-me`.
fn ext2(fs: &Fs, c: &mut Checks) {
    let m = fs.statfs("/disk");
    c.check("/disk is ext2", m.as_ref().is_ok_and(|m| m.fs_type == "ext2" && !m.read_only), &m);
    let hello = fs.read_file("/disk/hello.txt");
    c.check("host file", hello.as_deref() == Ok(&b"hello from the host\n"[..]), &hello);
    let big = fs.read_file("/disk/sub/big");
    let pattern_ok =
        big.as_ref().is_ok_and(|b| b.len() == 200_000 && b.iter().enumerate().all(|(i, &x)| x == (i % 251) as u8));
    c.check("host's big file", pattern_ok, big.as_ref().map(|b| b.len()));
    c.check("host listing", names(fs, "/disk").iter().any(|n| n == "sub"), names(fs, "/disk"));
    let data: Vec<u8> = (0..50_000u32).map(|i| (i * 7 % 256) as u8).collect();
    c.check("write", fs.write_file("/disk/guest.bin", &data).is_ok(), ());
    c.check("read back", fs.read_file("/disk/guest.bin").as_ref() == Ok(&data), ());
    c.check("mkdir", fs.mkdir("/disk/made-by-tutti", 0o755).is_ok(), ());
    c.check("write in it", fs.write_file("/disk/made-by-tutti/note.txt", b"written by tutti\n").is_ok(), ());
    c.check("rename", fs.rename("/disk/made-by-tutti/note.txt", "/disk/made-by-tutti/renamed.txt").is_ok(), ());
    c.check("truncate", fs.truncate("/disk/guest.bin", 12_345).is_ok(), ());
    c.check(
        "size after truncate",
        fs.stat("/disk/guest.bin").is_ok_and(|s| s.size == 12_345),
        fs.stat("/disk/guest.bin"),
    );
    c.check("unlink", fs.unlink("/disk/remove-me").is_ok() && fs.stat("/disk/remove-me") == Err(Error::NotFound), ());
    c.check("symlink", fs.symlink("made-by-tutti/renamed.txt", "/disk/link").is_ok(), ());
    c.check("through the link", fs.read_file("/disk/link").as_deref() == Ok(b"written by tutti\n"), ());
    c.check("mkdir, rmdir", fs.mkdir("/disk/tmpdir", 0o700).is_ok() && fs.rmdir("/disk/tmpdir").is_ok(), ());
    c.check("rmdir non-empty", fs.rmdir("/disk/made-by-tutti") == Err(Error::NotEmpty), ());
    c.check("chmod", fs.chmod("/disk/guest.bin", 0o600).is_ok(), ());
    let st = fs.stat("/disk/guest.bin");
    c.check("timestamps from the clock", st.is_ok_and(|s| s.mtime > 1_600_000_000), st);
    if let Ok(f) = fs.open("/disk/guest.bin", flags::READ | flags::WRITE, 0) {
        c.check("fsync", f.fsync().is_ok(), ());
    }
    c.check("sync", fs.sync().is_ok(), ());
}

const DURABLE: usize = 300_000;

fn durable_byte(i: usize) -> u8 {
    (i * 13 % 253) as u8 ^ 0x5a
}

fn durable_write(fs: &Fs, c: &mut Checks) {
    let data: Vec<u8> = (0..DURABLE).map(durable_byte).collect();
    let Ok(mut f) = fs.open("/disk/durable.bin", flags::WRITE | flags::CREATE | flags::TRUNCATE, 0o644) else {
        return c.check("open", false, ());
    };
    let w = f.write(&data);
    let s = f.fsync();
    c.check("durable.bin written", w == Ok(DURABLE) && s.is_ok(), (w, s));
    rt::println!("fs_test: durable.bin synced");
    // Keep writing (never syncing) until the harness kills the machine.
    let chunk = alloc::vec![0xa5u8; 8192];
    for n in 0.. {
        let path = format!("/disk/churn-{}", n % 8);
        let _ = fs.write_file(&path, &chunk);
        if n % 4 == 3 {
            let _ = fs.unlink(&path);
        }
        if n == 10_000 {
            break;
        }
    }
    sys::sleep(60_000_000_000);
}

fn durable_check(fs: &Fs, c: &mut Checks) {
    let back = fs.read_file("/disk/durable.bin");
    let ok =
        back.as_ref().is_ok_and(|b| b.len() == DURABLE && b.iter().enumerate().all(|(i, &x)| x == durable_byte(i)));
    c.check("durable.bin intact after the hard reset", ok, back.as_ref().map(|b| b.len()));
}

fn corrupt(fs: &Fs, c: &mut Checks) {
    let disk = fs.statfs("/disk").map(|m| m.fs_type);
    let listing = fs.read_dir("/disk").map(|v| v.len());
    let hello = fs.read_file("/disk/hello.txt").map(|v| v.len());
    let big = fs.stat("/disk/sub/big").map(|s| s.size);
    rt::println!("fs_test: /disk is {disk:?}, listing {listing:?}, hello.txt {hello:?}, sub/big {big:?}");
    let unusable = disk.as_deref() == Ok("tmpfs") || listing.is_err() || hello.is_err();
    c.check("/disk unusable", unusable, ());
    c.check(
        "tmpfs works",
        fs.write_file("/tmp/x", b"ok").is_ok() && fs.read_file("/tmp/x").as_deref() == Ok(b"ok"),
        (),
    );
    c.check("/boot works", fs.read_file("/boot/etc/version").is_ok(), ());
}
