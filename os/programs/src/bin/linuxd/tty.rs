//! Console input for Linux programs (docs/linux.md, "The console"): `read` on a descriptor of
//! the console, Ctrl-C as `SIGINT` to the foreground process group, `TIOCGPGRP`/`TIOCSPGRP`.
//!
//! The console service gives whole lines (it edits and echoes them itself) and one reader at a
//! time, and its `ReadLine` blocks. linuxd must never block, so a second thread of linuxd, the
//! *reader*, makes the calls: while some process waits for input (`WANTED`), it asks for a
//! line with `ReadLineFor` (a bounded wait, so the console is free again for the native shell
//! soon after the Linux programs stop reading), leaves it in `LINE` and signals the
//! notification bound to linuxd's main thread, whose `Recv` then returns a `NOTIFY` message;
//! the main thread queues the line for `read` and retries the parked calls.

use super::*;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use svc::console::LINE_MAX;

/// Where in linuxd's console buffer the reader's lines arrive (writes use the start).
pub(crate) const INPUT_OFFSET: u64 = 3072;
/// How long one `ReadLineFor` waits before the reader checks whether input is still wanted.
const READ_SLICE_MS: u64 = 200;
/// The main thread's notification bit for "a line (or Ctrl-C) is in `LINE`" (the network
/// service signals the same notification with `svc::net::READY_BIT`, 1).
pub(crate) const INPUT_BIT: u64 = 2;
/// The reader's stack and priority (below linuxd's main thread, above the processes).
const READER_STACK: usize = 16 << 10;
const READER_PRIORITY: u8 = 20;

/// What the reader left: `LINE_LEN` bytes in `LINE` (the line and its `\n`), or
/// `CANCELLED`; `FULL` says it is there and not yet taken by the main thread.
struct Slot(UnsafeCell<[u8; LINE_MAX + 1]>);
// Safety: the reader writes the slot only while `FULL` is false and the main thread reads it
// only while `FULL` is true; the flag's release/acquire orders the bytes.
unsafe impl Sync for Slot {}
static LINE: Slot = Slot(UnsafeCell::new([0; LINE_MAX + 1]));
static LINE_LEN: AtomicUsize = AtomicUsize::new(0);
static CANCELLED: AtomicBool = AtomicBool::new(false);
static FULL: AtomicBool = AtomicBool::new(false);
/// Whether a process waits for console input (set and cleared by the main thread).
static WANTED: AtomicBool = AtomicBool::new(false);
/// The console endpoint, the buffer's address in linuxd, the reader's wake-up notification
/// and the main thread's bound notification (set before the reader starts).
static CONSOLE: AtomicU64 = AtomicU64::new(0);
static BUFFER_AT: AtomicU64 = AtomicU64::new(0);
static WAKE: AtomicU64 = AtomicU64::new(0);
static READY: AtomicU64 = AtomicU64::new(0);

/// The console-input state of the main thread.
#[derive(Default)]
pub(crate) struct Tty {
    /// Typed bytes not yet read, lines ending in `\n`.
    pub(crate) input: VecDeque<u8>,
    /// The foreground process group (`TIOCSPGRP`), 0 for none: it gets `SIGINT` for Ctrl-C.
    pub(crate) foreground: u32,
    /// The group of the process a client started last: the foreground while no process set
    /// one (a program run from the native shell).
    pub(crate) started_group: u32,
    /// Whether the reader thread runs.
    started: bool,
}

extern "C" fn reader(_: u64) -> ! {
    let (wake, ready) = (WAKE.load(Ordering::Acquire) as Handle, READY.load(Ordering::Acquire) as Handle);
    loop {
        // The main thread may have connected again (the console service restarted).
        let console = Client::<Console>::new(CONSOLE.load(Ordering::Acquire) as Handle);
        if !WANTED.load(Ordering::Acquire) || FULL.load(Ordering::Acquire) {
            let _ = sys::wait(wake, FOREVER_NS);
            continue;
        }
        let request = ConsoleRequest::ReadLineFor { offset: INPUT_OFFSET, wait_ms: READ_SLICE_MS };
        match console.call(&request, FOREVER_NS) {
            Ok(ConsoleResponse::Line { len }) if !WANTED.load(Ordering::Acquire) => {
                // Read ahead for a program that is gone: the line goes back to the console, for
                // the next reader (the native shell).
                let range = BufRange { offset: INPUT_OFFSET, len: len.min(LINE_MAX as u64) };
                let _ = console.call(&ConsoleRequest::Unread { range }, FOREVER_NS);
            }
            Ok(ConsoleResponse::Line { len }) => {
                let len = (len as usize).min(LINE_MAX);
                // Safety: the main thread does not touch the slot while FULL is false (checked
                // above; only this thread sets it); the console buffer is mapped in this task at
                // BUFFER_AT for 4096 bytes and its input part is written only by the console
                // during this thread's call, which has returned.
                unsafe {
                    let from = (BUFFER_AT.load(Ordering::Acquire) + INPUT_OFFSET) as *const u8;
                    let slot = &mut *LINE.0.get();
                    core::ptr::copy_nonoverlapping(from, slot.as_mut_ptr(), len);
                    slot[len] = b'\n';
                }
                LINE_LEN.store(len + 1, Ordering::Relaxed);
                CANCELLED.store(false, Ordering::Relaxed);
                FULL.store(true, Ordering::Release);
                let _ = sys::signal(ready, INPUT_BIT);
            }
            Ok(ConsoleResponse::Cancelled) => {
                CANCELLED.store(true, Ordering::Relaxed);
                FULL.store(true, Ordering::Release);
                let _ = sys::signal(ready, INPUT_BIT);
            }
            Ok(ConsoleResponse::NoLine) => {}
            // Another reader (the native shell) or a restarting console: try again shortly.
            _ => sys::sleep(50_000_000),
        }
    }
}

/// The notification bound to linuxd's main thread (made and bound on first use, which must be
/// on the main thread): its signals end the main thread's `Recv` with a `NOTIFY` message. The
/// console reader and the network service signal it.
pub(crate) fn main_notification() -> Option<Handle> {
    static BOUND: AtomicU64 = AtomicU64::new(0);
    match BOUND.load(Ordering::Acquire) {
        0 => {
            let n = sys::notification_create().ok()?;
            if sys::notification_bind(n).is_err() {
                let _ = sys::cap_close(n);
                return None;
            }
            BOUND.store(n as u64, Ordering::Release);
            Some(n)
        }
        n => Some(n as Handle),
    }
}

impl Server {
    /// Starts the reader thread once (with the console connected); false if it cannot run.
    fn start_reader(&mut self) -> bool {
        if self.tty.started {
            return true;
        }
        if self.console.is_none() {
            self.reconnect_console();
        }
        let Some((console, buffer)) = &self.console else { return false };
        let (Ok(wake), Some(ready)) = (sys::notification_create(), main_notification()) else {
            return false;
        };
        CONSOLE.store(console.endpoint() as u64, Ordering::Release);
        BUFFER_AT.store(buffer.addr(), Ordering::Release);
        WAKE.store(wake as u64, Ordering::Release);
        READY.store(ready as u64, Ordering::Release);
        // The reader's stack, made once (only when a program reads the console) and never freed.
        let stack: &'static mut [u8] = alloc::vec![0u8; READER_STACK].leak();
        match sys::thread_create(reader, stack, READER_PRIORITY, 0) {
            Ok(_) => {
                self.tty.started = true;
                true
            }
            Err(e) => {
                rt::log::warn!("no console reader thread: {e}");
                false
            }
        }
    }

    /// Connects to the console service again (after it failed), telling the reader.
    pub(crate) fn reconnect_console(&mut self) {
        self.console = connect_console();
        if let Some((console, buffer)) = &self.console {
            CONSOLE.store(console.endpoint() as u64, Ordering::Release);
            BUFFER_AT.store(buffer.addr(), Ordering::Release);
        }
    }

    /// Forgets a console connection that failed. With the reader running its buffer stays
    /// mapped (leaked): the reader may be copying a line out of it.
    pub(crate) fn drop_console(&mut self) {
        if let Some(old) = self.console.take() {
            if self.tty.started {
                core::mem::forget(old);
            }
        }
    }

    /// `read` of up to `len` bytes from the console for `pid`: the rest of the current line
    /// (a read returns at most one line, as in canonical mode), or a wait for the next.
    pub(crate) fn console_read(&mut self, pid: u32, fd: i64, len: usize) -> Result<Vec<u8>, Errno> {
        if len == 0 {
            return Ok(Vec::new());
        }
        if !self.tty.input.is_empty() {
            let line_end = self.tty.input.iter().position(|b| *b == b'\n').map_or(self.tty.input.len(), |i| i + 1);
            let n = len.min(line_end);
            return Ok(self.tty.input.drain(..n).collect());
        }
        if !self.start_reader() {
            // No console to read from: end of file, as before there was input.
            return Ok(Vec::new());
        }
        let nonblocking = self.procs.get(&pid).is_some_and(|p| {
            p.fds.get(fd).is_ok_and(|f| matches!(&*f.borrow(), Open::Console { flags } if flags & o::NONBLOCK != 0))
        });
        if nonblocking {
            return Err(EAGAIN);
        }
        // The reader is told after this call is parked (`update_console_reader`).
        Err(BLOCK)
    }

    /// The main thread's `NOTIFY`: takes what the reader left (a line for the waiting readers,
    /// or Ctrl-C: `SIGINT` to the foreground group).
    pub(crate) fn console_input(&mut self) {
        if !FULL.load(Ordering::Acquire) {
            return;
        }
        if CANCELLED.load(Ordering::Relaxed) {
            self.tty.input.clear();
            let group = self.foreground();
            let targets: Vec<u32> =
                self.procs.values().filter(|p| group != 0 && p.pgid == group).map(|p| p.pid).collect();
            for pid in targets {
                let info =
                    lpx::proc::SigInfo { signo: lpx::proc::SIGINT, code: lpx::proc::SI_KERNEL, ..Default::default() };
                self.send_signal(pid, info);
            }
        } else {
            let len = LINE_LEN.load(Ordering::Relaxed).min(LINE_MAX + 1);
            // Safety: FULL is true, so the reader does not write the slot until it is cleared.
            let line: &[u8] = unsafe { &(&*LINE.0.get())[..len] };
            self.tty.input.extend(line.iter().copied());
        }
        FULL.store(false, Ordering::Release);
        let _ = sys::signal(WAKE.load(Ordering::Acquire) as Handle, 1);
    }

    /// The foreground process group: the one set with `TIOCSPGRP` while it has processes,
    /// else the group of the process a client started last while it has processes, else 0.
    pub(crate) fn foreground(&self) -> u32 {
        let alive = |g: u32| g != 0 && self.procs.values().any(|p| p.pgid == g);
        [self.tty.foreground, self.tty.started_group].into_iter().find(|g| alive(*g)).unwrap_or(0)
    }

    /// After every message: the reader reads while a process waits for console input or a
    /// foreground group exists (so Ctrl-C reaches it while it runs), and stops soon after
    /// (the console is the native shell's again).
    pub(crate) fn update_console_reader(&mut self) {
        // The common case, cheaply: nothing waits, nothing is in the foreground, no reader.
        if !self.tty.started && self.parked.is_empty() && self.tty.foreground == 0 && self.tty.started_group == 0 {
            return;
        }
        let waiting = || {
            self.parked.iter().any(
                |w| matches!(w.wait, Wait::Retry { number, args } if is_console_read(self, w.pid, number, args[0])),
            )
        };
        let wanted = self.foreground() != 0 || waiting();
        if wanted == WANTED.load(Ordering::Relaxed) {
            return;
        }
        if wanted && !self.start_reader() {
            return;
        }
        WANTED.store(wanted, Ordering::Release);
        if wanted {
            let _ = sys::signal(WAKE.load(Ordering::Acquire) as Handle, 1);
        } else {
            self.give_back_input();
        }
    }

    /// Typed lines no process read go back to the console (last first, each in front), so
    /// the native shell reads them as if linuxd had never looked.
    fn give_back_input(&mut self) {
        let input: Vec<u8> = self.tty.input.drain(..).collect();
        let Some((console, buffer)) = &self.console else { return };
        if input.is_empty() {
            return;
        }
        let mut lines: Vec<&[u8]> = input.split(|b| *b == b'\n').collect();
        if input.last() == Some(&b'\n') {
            lines.pop();
        }
        for line in lines.into_iter().rev() {
            let line = &line[..line.len().min(LINE_MAX)];
            let range = BufRange { offset: 0, len: line.len() as u64 };
            if buffer.write(0, line).is_ok() {
                let _ = console.call(&ConsoleRequest::Unread { range }, FOREVER_NS);
            }
        }
    }
}

/// Whether a parked call is a read of the console.
fn is_console_read(server: &Server, pid: u32, number: u64, fd: u64) -> bool {
    matches!(number, nr::READ | nr::READV) && server.procs.get(&pid).is_some_and(|p| p.is_console(fd as i32 as i64))
}
