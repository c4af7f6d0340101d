//! Crash and reconnection tests of the file-system service (systests/tests/fs.rs), run as a
//! manifest service with `admin` and `endpoint fs`; its `arg` picks the scenario:
//!
//! - `crash-idle`: a writer thread writes files `/disk/crash/f<i>` (every third one fsync'ed
//!   and recorded only once `fsync` returned `Ok`); the main thread asks init to `Kill` the
//!   `fs` service three times while the writer is parked between files;
//! - `crash-busy`: the same, but the kills come from a timer while the writer streams, so they
//!   land in the middle of requests (mostly while the server is writing to the disk);
//! - `reconnect`: handles on `/disk` and tmpfs are open while fs is killed (then restarted with
//!   `Restart`): old handles give `Stale`, new opens work, `/disk` keeps its data, tmpfs loses
//!   its files.
//!
//! After the crashes every recorded file is read back byte for byte, and the status of every
//! service is checked (fs restarted exactly once per kill, nothing else ended). Each fsync'ed
//! file is listed as `fs_crash: synced f<i> <len>` for the host to check the image. Each check
//! prints `fs_crash: <what>: ok|WRONG`; the last line is `fs_crash: ok` or `fs_crash: FAILED`.
#![no_std]
#![no_main]

extern crate alloc;

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use rt::sync::SpinLock;
use rt::sys;
use svc::boot::{state, Request as Boot, Response as BootReply};
use svc::fs::{flags, Error, Fs};

rt::entry!(main);

/// Kills of the fs service per crash scenario.
const KILLS: u32 = 3;
/// fsync'ed files the writer must add before each kill and after the last.
const PROGRESS: usize = 4;
/// How long the main thread waits for the writer to make progress.
const WAIT_NS: u64 = 60_000_000_000;
const MS: u64 = 1_000_000;

/// Files the writer fsync'ed: (index, length), in order.
static SYNCED: SpinLock<Vec<(u32, u32)>> = SpinLock::new(Vec::new());
/// Errors the writer saw that a crash explains (`Stale`, `Unavailable`), and others.
static CRASH_ERRORS: AtomicU32 = AtomicU32::new(0);
static OTHER_ERRORS: SpinLock<Vec<String>> = SpinLock::new(Vec::new());
/// Main thread to writer: park between files / stop; writer to main: parked / stopped.
static PARK: AtomicBool = AtomicBool::new(false);
static PARKED: AtomicBool = AtomicBool::new(false);
static STOP: AtomicBool = AtomicBool::new(false);
static STOPPED: AtomicBool = AtomicBool::new(false);

struct Checks {
    failed: Vec<String>,
}

impl Checks {
    fn check(&mut self, what: &str, ok: bool, detail: impl core::fmt::Debug) {
        rt::println!("fs_crash: {what}: {} ({detail:?})", if ok { "ok" } else { "WRONG" });
        if !ok {
            self.failed.push(what.into());
        }
    }
}

/// Byte `pos` of file `index` (the host's check computes the same).
pub fn content_byte(index: u32, pos: u32) -> u8 {
    ((pos.wrapping_mul(31).wrapping_add(index.wrapping_mul(17))) % 251) as u8 ^ index as u8
}

/// The length of file `index`: 1,000 to 40,999 bytes, so most take several requests.
fn file_len(index: u32) -> u32 {
    1000 + index.wrapping_mul(7919) % 40_000
}

fn content(index: u32) -> Vec<u8> {
    (0..file_len(index)).map(|p| content_byte(index, p)).collect()
}

fn main() -> i32 {
    let mode = svc::arguments().ok().and_then(|a| a.into_iter().next()).unwrap_or_default();
    let mut c = Checks { failed: Vec::new() };
    let fs = match Fs::connect() {
        Ok(fs) => fs,
        Err(e) => {
            rt::println!("fs_crash: cannot connect: {e:?}");
            return svc::exit(1);
        }
    };
    match service_index("fs") {
        Some(index) => match mode.as_str() {
            "crash-idle" => crash(&fs, index, false, &mut c),
            "crash-busy" => crash(&fs, index, true, &mut c),
            "reconnect" => reconnect(&fs, index, &mut c),
            other => c.check("mode", false, other),
        },
        None => c.check("fs in the manifest", false, ()),
    }
    if c.failed.is_empty() {
        rt::println!("fs_crash: ok");
        svc::exit(0)
    } else {
        rt::println!("fs_crash: FAILED: {:?}", c.failed);
        svc::exit(1)
    }
}

/// The manifest index of service `name`.
fn service_index(name: &str) -> Option<u32> {
    (0..32).find(|&index| {
        matches!(svc::init().call(&Boot::Status { index }, WAIT_NS),
            Ok(BootReply::Service { name: n, .. }) if svc::name_str(&n) == name)
    })
}

/// (name, state, restarts, exit kind) of every service.
fn services() -> Vec<(String, u8, u32, u8)> {
    let mut out = Vec::new();
    for index in 0..32 {
        match svc::init().call(&Boot::Status { index }, WAIT_NS) {
            Ok(BootReply::Service { name, state, restarts, exit_kind, .. }) => {
                out.push((String::from(svc::name_str(&name)), state, restarts, exit_kind))
            }
            _ => break,
        }
    }
    out
}

fn ask_init(request: Boot) -> bool {
    matches!(svc::init().call(&request, WAIT_NS), Ok(BootReply::Done))
}

/// Waits (sleeping) until `done()`, at most [`WAIT_NS`].
fn wait_until(done: impl Fn() -> bool) -> bool {
    let deadline = sys::time_now() + WAIT_NS;
    while !done() {
        if sys::time_now() > deadline {
            return false;
        }
        sys::sleep(MS);
    }
    true
}

fn synced_count() -> usize {
    SYNCED.lock().len()
}

/// Writes file `index` (fsync'ed if `sync`) and closes it.
fn write_one(fs: &Fs, index: u32, sync: bool) -> Result<(), Error> {
    let mut file = fs.open(&format!("/disk/crash/f{index}"), flags::WRITE | flags::CREATE | flags::TRUNCATE, 0o644)?;
    file.write(&content(index))?;
    if sync {
        file.fsync()?;
    }
    file.close()
}

/// The writer thread: its own connection, files in order until told to stop.
extern "C" fn writer(_: u64) -> ! {
    let fs = loop {
        match Fs::connect() {
            Ok(fs) => break fs,
            Err(_) => sys::sleep(10 * MS),
        }
    };
    let mut index = 0u32;
    while !STOP.load(Ordering::Acquire) {
        while PARK.load(Ordering::Acquire) && !STOP.load(Ordering::Acquire) {
            PARKED.store(true, Ordering::Release);
            sys::sleep(MS);
        }
        PARKED.store(false, Ordering::Release);
        let sync = index.is_multiple_of(3);
        match write_one(&fs, index, sync) {
            Ok(()) if sync => SYNCED.lock().push((index, file_len(index))),
            Ok(()) => {}
            Err(Error::Stale | Error::Unavailable) => {
                CRASH_ERRORS.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => OTHER_ERRORS.lock().push(format!("f{index}: {e:?}")),
        }
        index += 1;
    }
    STOPPED.store(true, Ordering::Release);
    sys::park()
}

fn crash(fs: &Fs, fs_index: u32, busy: bool, c: &mut Checks) {
    let _ = fs.mkdir("/disk/crash", 0o755);
    let before = services();
    let Some(stack) = rt::stack(64 * 1024) else { return c.check("writer stack", false, ()) };
    // Below fs (30) and this thread: it runs while neither does, as a client would.
    if let Err(e) = sys::thread_create(writer, stack, 10, 0) {
        return c.check("writer thread", false, e);
    }
    c.check("writer makes progress", wait_until(|| synced_count() >= PROGRESS), synced_count());
    let mut seed = 0x9e37_79b9u32;
    for round in 0..KILLS {
        if busy {
            // A pseudo-random moment while the writer streams: mostly inside a request.
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            sys::sleep((5 + seed as u64 % 40) * MS);
        } else {
            PARK.store(true, Ordering::Release);
            c.check("writer parked", wait_until(|| PARKED.load(Ordering::Acquire)), round);
        }
        c.check("Kill fs", ask_init(Boot::Kill { index: fs_index }), round);
        let start = synced_count();
        PARK.store(false, Ordering::Release);
        let progressed = wait_until(|| synced_count() >= start + PROGRESS);
        c.check("writer goes on after the restart", progressed, (round, synced_count()));
        if !progressed {
            break;
        }
    }
    STOP.store(true, Ordering::Release);
    c.check("writer stopped", wait_until(|| STOPPED.load(Ordering::Acquire)), ());
    rt::println!(
        "fs_crash: writer: {} files fsync'ed, {} operations failed by the crashes",
        synced_count(),
        CRASH_ERRORS.load(Ordering::Relaxed)
    );
    let others = OTHER_ERRORS.lock().clone();
    c.check("no other errors", others.is_empty(), &others);

    // Every fsync'ed file reads back whole through this thread's (reconnected) client.
    let synced = SYNCED.lock().clone();
    let mut bad = Vec::new();
    for &(index, len) in &synced {
        let back = fs.read_file(&format!("/disk/crash/f{index}"));
        if !back.as_ref().is_ok_and(|b| *b == content(index)) {
            bad.push((index, back.map(|b| b.len())));
        }
        rt::println!("fs_crash: synced f{index} {len}");
    }
    c.check("every fsync'ed file intact", bad.is_empty(), &bad);
    check_services(c, &before, fs_index, KILLS);
}

/// fs restarted `kills` times more than `before` and runs; every other service is as before.
fn check_services(c: &mut Checks, before: &[(String, u8, u32, u8)], fs_index: u32, kills: u32) {
    let after = services();
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        let ok = if i == fs_index as usize {
            a.1 == state::RUNNING && a.2 == b.2 + kills
        } else {
            a.1 == b.1 && a.2 == b.2 && a.3 == b.3
        };
        c.check(&format!("service {} afterwards", a.0), ok, (state::text(a.1), a.2, a.3));
    }
}

fn reconnect(fs: &Fs, fs_index: u32, c: &mut Checks) {
    let before = services();
    let disk_data = content(7);
    let opened = (|| {
        let mut disk =
            fs.open("/disk/kept.bin", flags::READ | flags::WRITE | flags::CREATE | flags::TRUNCATE, 0o644)?;
        disk.write(&disk_data)?;
        disk.fsync()?;
        let mut tmp = fs.open("/tmp/lost.txt", flags::READ | flags::WRITE | flags::CREATE, 0o644)?;
        tmp.write(b"only in memory")?;
        Ok::<_, Error>((disk, tmp))
    })();
    let Ok((disk, tmp)) = opened else { return c.check("open and write", false, opened.err()) };
    let mut buf = [0u8; 16];

    c.check("Kill fs", ask_init(Boot::Kill { index: fs_index }), ());
    let old = disk.read_at(0, &mut buf).map(drop);
    c.check("old /disk handle is Stale", old == Err(Error::Stale), old);
    let old = tmp.read_at(0, &mut buf).map(drop);
    c.check("old tmpfs handle is Stale", old == Err(Error::Stale), old);
    after_restart(fs, c, "Kill", &disk_data);
    // The first buffer this task mapped (at the window's start) was the killed server's. A
    // stray access there (as a copy that raced the kill would make) is repaired by init with a
    // zeroed page instead of a fault.
    // Safety: the address lies in this task's shared-buffer window, where nothing of this
    // program lives any more; it is read as a plain byte.
    let stray = unsafe { core::ptr::read_volatile(rt::ipc::SHARED_WINDOW.start as *const u8) };
    c.check("a stray read of the dead server's buffer gives 0", stray == 0, stray);

    let again = fs.open("/disk/kept.bin", flags::READ, 0);
    c.check("a handle of the second incarnation", again.is_ok(), again.as_ref().map(|f| f.handle()).ok());
    c.check("Restart fs", ask_init(Boot::Restart { index: fs_index }), ());
    if let Ok(f) = again {
        let old = f.read_at(0, &mut buf).map(drop);
        c.check("handle from before Restart is Stale", old == Err(Error::Stale), old);
    }
    after_restart(fs, c, "Restart", &disk_data);
    check_services(c, &before, fs_index, 2);
}

/// After fs came back: `/disk/kept.bin` holds `disk_data`, tmpfs is empty, opens work.
fn after_restart(fs: &Fs, c: &mut Checks, how: &str, disk_data: &[u8]) {
    let back = fs.read_file("/disk/kept.bin");
    c.check(&format!("/disk data intact after {how}"), back.as_deref() == Ok(disk_data), back.map(|b| b.len()));
    let lost = fs.stat("/tmp/lost.txt").map(|s| s.size);
    c.check(&format!("tmpfs content lost after {how}"), lost == Err(Error::NotFound), lost);
    let fresh = fs.write_file("/tmp/lost.txt", b"again").and_then(|_| fs.read_file("/tmp/lost.txt"));
    c.check(&format!("new opens work after {how}"), fresh.as_deref() == Ok(&b"again"[..]), fresh);
}
