//! Pipes and readiness: `pipe`/`pipe2`, reading and writing a pipe's ends (a call that would
//! block is parked and served again when something changed), and `poll`, `ppoll`, `select`,
//! `pselect6` over every kind of descriptor.

use super::*;
use lpx::pipe::{Outcome, Pipe};

/// One end of a pipe: an open file description. Closing its last descriptor (dropping it)
/// closes the end.
pub(crate) struct PipeEnd {
    pub(crate) pipe: Rc<RefCell<Pipe>>,
    pub(crate) write: bool,
    /// `O_NONBLOCK` and the access mode, as `F_GETFL` shows them.
    pub(crate) flags: u64,
}

impl Drop for PipeEnd {
    fn drop(&mut self) {
        let mut pipe = self.pipe.borrow_mut();
        if self.write {
            pipe.writers -= 1;
        } else {
            pipe.readers -= 1;
        }
    }
}

impl PipeEnd {
    fn nonblocking(&self) -> bool {
        self.flags & o::NONBLOCK != 0
    }

    /// Reads up to `len` bytes: `BLOCK` while the pipe is empty and has writers.
    pub(crate) fn read(&self, len: usize) -> Result<Vec<u8>, Errno> {
        if self.write {
            return Err(EBADF);
        }
        // Only what is there is copied (a waiting reader is retried often: no big buffer then).
        let queued = self.pipe.borrow().len();
        let mut out = alloc::vec![0u8; len.min(IO_MAX).min(queued.max(1))];
        match self.pipe.borrow_mut().read(&mut out) {
            Outcome::Done(n) => {
                out.truncate(n);
                Ok(out)
            }
            Outcome::WouldBlock if self.nonblocking() => Err(EAGAIN),
            Outcome::WouldBlock => Err(BLOCK),
            Outcome::Broken => Err(EIO),
        }
    }

    /// Writes what fits of `data` (all of at most `PIPE_BUF` bytes): `BLOCK` while full,
    /// `EPIPE` without readers (the caller sends `SIGPIPE`).
    pub(crate) fn write(&self, data: &[u8]) -> Result<usize, Errno> {
        if !self.write {
            return Err(EBADF);
        }
        match self.pipe.borrow_mut().write(data) {
            Outcome::Done(n) => Ok(n),
            Outcome::WouldBlock if self.nonblocking() => Err(EAGAIN),
            Outcome::WouldBlock => Err(BLOCK),
            Outcome::Broken => Err(EPIPE),
        }
    }

    /// How many bytes of a write of `len` to this end can be taken now: `Ok(0)` never; the
    /// error the write would give when it must wait (`BLOCK`, or `EAGAIN` when non-blocking).
    /// Lets the caller copy only that much out of the process.
    pub(crate) fn accepts(&self, len: usize) -> Result<usize, Errno> {
        if !self.write {
            return Err(EBADF);
        }
        match self.pipe.borrow().accepts(len) {
            0 if len > 0 && self.nonblocking() => Err(EAGAIN),
            0 if len > 0 => Err(BLOCK),
            n => Ok(n),
        }
    }

    /// `poll` events now: `POLLIN` with data, `POLLHUP` on a read end without writers;
    /// `POLLOUT` with room, `POLLERR` on a write end without readers.
    fn events(&self) -> i16 {
        let pipe = self.pipe.borrow();
        if self.write {
            let mut e = if pipe.writable() { POLLOUT | POLLWRNORM } else { 0 };
            if pipe.readers == 0 {
                e |= POLLERR;
            }
            e
        } else {
            let mut e = if pipe.is_empty() { 0 } else { POLLIN | POLLRDNORM };
            if pipe.writers == 0 {
                e |= POLLHUP;
            }
            e
        }
    }
}

const POLLIN: i16 = 0x1;
const POLLPRI: i16 = 0x2;
const POLLOUT: i16 = 0x4;
const POLLERR: i16 = 0x8;
const POLLHUP: i16 = 0x10;
const POLLNVAL: i16 = 0x20;
const POLLRDNORM: i16 = 0x40;
const POLLWRNORM: i16 = 0x100;
/// Readiness `select` counts for its read, write and exception sets.
const SELECT_READ: i16 = POLLIN | POLLRDNORM | POLLHUP | POLLERR;
const SELECT_WRITE: i16 = POLLOUT | POLLWRNORM | POLLERR;
const SELECT_EXCEPT: i16 = POLLPRI;
/// `select`'s sets hold at most this many descriptors (`FD_SETSIZE`).
const FD_SETSIZE: u64 = 1024;

/// A timeout argument: `None` waits forever, `Some(0)` not at all.
pub(crate) fn timespec_ns(p: &mut Process, addr: u64, micros: bool) -> Result<Option<u64>, Errno> {
    if addr == 0 {
        return Ok(None);
    }
    let mut ts = [0u8; 16];
    p.read_mem(addr, &mut ts)?;
    let (secs, frac) = structs::read_two_words(&ts);
    let (limit, scale) = if micros { (1_000_000, 1000) } else { (1_000_000_000, 1) };
    if (secs as i64) < 0 || frac >= limit {
        return Err(EINVAL);
    }
    Ok(Some(secs.saturating_mul(1_000_000_000).saturating_add(frac * scale)))
}

impl Process {
    /// The `poll` events of descriptor `fd` now (`POLLNVAL` if it is not open).
    fn poll_events(&self, fd: i32) -> i16 {
        let Ok(file) = self.fds.get(fd as i64) else { return POLLNVAL };
        let mut open = file.borrow_mut();
        match &mut *open {
            Open::Pipe(end) => end.events(),
            Open::Socket(s) => s.events(),
            // The console's reads see the end of input, files and /dev/null never block.
            Open::Console { .. } | Open::Null { .. } | Open::File(_) | Open::Proc(_) => {
                POLLIN | POLLRDNORM | POLLOUT | POLLWRNORM
            }
        }
    }

    /// `pipe2(fds, flags)`.
    pub(crate) fn pipe2(&mut self, fds: u64, flags: u64) -> Result<u64, Errno> {
        const O_DIRECT: u64 = 0o40000;
        if flags & !(o::CLOEXEC | o::NONBLOCK | O_DIRECT) != 0 {
            return Err(EINVAL);
        }
        self.check(fds, 8, true)?;
        let pipe = Rc::new(RefCell::new(Pipe::new()));
        let status = flags & o::NONBLOCK;
        let read = PipeEnd { pipe: pipe.clone(), write: false, flags: status | o::RDONLY };
        let write = PipeEnd { pipe, write: true, flags: status | o::WRONLY };
        let cloexec = flags & o::CLOEXEC != 0;
        let r = self.fds.insert(Rc::new(RefCell::new(Open::Pipe(read))), cloexec)?;
        let w = match self.fds.insert(Rc::new(RefCell::new(Open::Pipe(write))), cloexec) {
            Ok(w) => w,
            Err(e) => {
                let _ = self.fds.remove(r as i64);
                return Err(e);
            }
        };
        let mut bytes = [0u8; 8];
        bytes[..4].copy_from_slice(&r.to_le_bytes());
        bytes[4..].copy_from_slice(&w.to_le_bytes());
        self.write_mem(fds, &bytes)?;
        Ok(0)
    }
}

impl Server {
    /// `poll(fds, count, timeout)` and `ppoll` (`timeout` in nanoseconds, `None` forever):
    /// the number of ready entries, or `BLOCK` until one is or the time is up.
    pub(crate) fn poll(&mut self, pid: u32, fds: u64, count: u64, timeout: Option<u64>) -> Result<u64, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        if count > lpx::fd::MAX_FDS as u64 {
            return Err(EINVAL);
        }
        let mut entries = p.read_user(fds, count as usize * 8)?;
        let mut ready = 0;
        for entry in entries.chunks_mut(8) {
            let fd = i32::from_le_bytes(entry[0..4].try_into().expect("4 bytes"));
            let events = i16::from_le_bytes(entry[4..6].try_into().expect("2 bytes"));
            let revents = if fd < 0 { 0 } else { p.poll_events(fd) & (events | POLLERR | POLLHUP | POLLNVAL) };
            entry[6..8].copy_from_slice(&revents.to_le_bytes());
            ready += (revents != 0) as u64;
        }
        p.write_mem(fds, &entries)?;
        if ready > 0 || timeout == Some(0) {
            return Ok(ready);
        }
        self.block_for(timeout, 0, Vec::new())
    }

    /// `select(count, read, write, except, timeout)` and `pselect6`: the sets are rewritten
    /// with the ready descriptors; `BLOCK` until one is (the sets are cleared if the time runs
    /// out).
    pub(crate) fn select(&mut self, pid: u32, count: u64, sets: [u64; 3], timeout: Option<u64>) -> Result<u64, Errno> {
        if count as i32 as i64 > FD_SETSIZE as i64 || (count as i32) < 0 {
            return Err(EINVAL);
        }
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let bytes = (count as usize).div_ceil(64) * 8;
        let mut read_sets = [Vec::new(), Vec::new(), Vec::new()];
        for (set, &addr) in read_sets.iter_mut().zip(&sets) {
            if addr != 0 {
                *set = p.read_user(addr, bytes)?;
            }
        }
        let wanted = [SELECT_READ, SELECT_WRITE, SELECT_EXCEPT];
        let mut out = read_sets.clone();
        let mut ready = 0;
        for fd in 0..count as usize {
            let (byte, bit) = (fd / 8, 1u8 << (fd % 8));
            let asked = read_sets.iter().any(|s| s.get(byte).is_some_and(|b| b & bit != 0));
            if !asked {
                continue;
            }
            let events = p.poll_events(fd as i32);
            if events & POLLNVAL != 0 {
                return Err(EBADF);
            }
            for (set, want) in out.iter_mut().zip(wanted) {
                if let Some(b) = set.get_mut(byte) {
                    if *b & bit != 0 {
                        if events & want != 0 {
                            ready += 1;
                        } else {
                            *b &= !bit;
                        }
                    }
                }
            }
        }
        if ready > 0 || timeout == Some(0) {
            for (set, &addr) in out.iter().zip(&sets) {
                if addr != 0 {
                    p.write_mem(addr, set)?;
                }
            }
            return Ok(ready);
        }
        let clear = sets.iter().filter(|a| **a != 0).map(|a| (*a, bytes)).collect();
        self.block_for(timeout, 0, clear)
    }

    /// `BLOCK`, ending after `timeout` nanoseconds (if any) with `on_timeout` and `clear`.
    fn block_for(&mut self, timeout: Option<u64>, on_timeout: u64, clear: Vec<(u64, usize)>) -> Result<u64, Errno> {
        if let Some(ns) = timeout {
            self.block.deadline = Some((sys::time_now().saturating_add(ns), on_timeout));
            self.block.clear = clear;
        }
        Err(BLOCK)
    }

    /// The `poll`, `ppoll`, `select` and `pselect6` system calls.
    pub(crate) fn readiness_call(
        &mut self,
        pid: u32,
        number: u64,
        [a0, a1, a2]: [u64; 3],
        more: [u64; 3],
    ) -> Result<u64, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        match number {
            nr::POLL => {
                let timeout = (a2 as i32 >= 0).then(|| a2 as i32 as u64 * 1_000_000);
                self.poll(pid, a0, a1, timeout)
            }
            nr::PPOLL => {
                let timeout = timespec_ns(p, a2, false)?;
                self.poll(pid, a0, a1, timeout)
            }
            nr::SELECT => {
                let [except, tv, _] = more;
                let timeout = timespec_ns(p, tv, true)?;
                self.select(pid, a0, [a1, a2, except], timeout)
            }
            _ => {
                let [except, ts, _] = more;
                let timeout = timespec_ns(p, ts, false)?;
                self.select(pid, a0, [a1, a2, except], timeout)
            }
        }
    }
}
