//! Threads and futexes: `clone` with `CLONE_THREAD` (a new thread in the process's task,
//! sharing its memory, descriptors and signal dispositions), the thread's end (`exit`, with
//! `CLONE_CHILD_CLEARTID`'s write and wake), `set_tid_address`, and `futex` (wait, wake,
//! requeue, with bitsets and timeouts).
//!
//! Every thread of a process sends its system calls and faults with the process's badge; the
//! kernel puts the thread's number in the message, and [`Server::thread_ids`] maps it to the
//! process and thread ids. The state of the thread being served is in the [`Process`] itself
//! (`tid`, `thread`, `clear_tid`, `signals.thread`); [`Process::switch_to`] swaps another
//! thread's record in.

use super::*;
use signals::ThreadSignals;

/// At most this many threads in one process.
const THREADS_MAX: usize = 64;

/// `futex` operations (the command in the low bits) and flags.
mod futex {
    pub const WAIT: u64 = 0;
    pub const WAKE: u64 = 1;
    pub const REQUEUE: u64 = 3;
    pub const CMP_REQUEUE: u64 = 4;
    pub const WAIT_BITSET: u64 = 9;
    pub const WAKE_BITSET: u64 = 10;
    pub const PRIVATE: u64 = 128;
    pub const CLOCK_REALTIME: u64 = 256;
    pub const COMMAND: u64 = !(PRIVATE | CLOCK_REALTIME);
}

/// A thread of a process other than the one being served.
pub(crate) struct Thread {
    pub(crate) tid: u32,
    pub(crate) handle: Handle,
    /// The word `CLONE_CHILD_CLEARTID` or `set_tid_address` named: zeroed and woken at its end.
    pub(crate) clear_tid: u64,
    pub(crate) signals: ThreadSignals,
}

impl Process {
    /// Makes `tid` the thread being served; false if the process has no such thread.
    pub(crate) fn switch_to(&mut self, tid: u32) -> bool {
        if self.tid == tid {
            return true;
        }
        let Some(t) = self.others.iter_mut().find(|t| t.tid == tid) else { return false };
        core::mem::swap(&mut self.tid, &mut t.tid);
        core::mem::swap(&mut self.thread, &mut t.handle);
        core::mem::swap(&mut self.clear_tid, &mut t.clear_tid);
        core::mem::swap(&mut self.signals.thread, &mut t.signals);
        true
    }

    /// Every thread id of the process.
    pub(crate) fn tids(&self) -> Vec<u32> {
        core::iter::once(self.tid).chain(self.others.iter().map(|t| t.tid)).collect()
    }

    /// Whether thread `tid` blocks `signal`.
    pub(crate) fn blocks(&self, tid: u32, signal: u32) -> bool {
        let blocked = if tid == self.tid {
            self.signals.thread.blocked
        } else {
            self.others.iter().find(|t| t.tid == tid).map_or(u64::MAX, |t| t.signals.blocked)
        };
        blocked & lpx::proc::bit(signal) != 0
    }

    /// Forgets `signal` wherever it is pending (it became ignored).
    pub(crate) fn clear_pending(&mut self, signal: u32) {
        let b = lpx::proc::bit(signal);
        self.signals.pending &= !b;
        self.signals.thread.pending &= !b;
        for t in &mut self.others {
            t.signals.pending &= !b;
        }
    }

    /// Closes the handles of the threads other than the current one (their task has gone or is
    /// going) and forgets them.
    pub(crate) fn drop_other_threads(&mut self) {
        for t in self.others.drain(..) {
            let _ = sys::cap_close(t.handle);
        }
    }
}

impl Server {
    /// The process and thread of a message from thread `number` with badge pid `badge`: a
    /// thread linuxd made in an existing task (a thread, or a `vfork` child in its parent's
    /// task), else the task's first thread.
    pub(crate) fn thread_ids(&self, number: u32, badge: u32) -> (u32, u32) {
        self.thread_pids.get(&number).copied().unwrap_or((badge, badge))
    }

    /// `clone` with `CLONE_THREAD`: a thread of `pid` starting on `stack` as if returning 0
    /// from the call, with thread-local storage `tls` (`CLONE_SETTLS`). Returns its id.
    pub(crate) fn clone_thread(
        &mut self,
        pid: u32,
        flags: u64,
        stack: u64,
        parent_tid: u64,
        child_tid: u64,
        tls: u64,
    ) -> Result<u64, Errno> {
        use procs::clone;
        let needs = clone::VM | clone::SIGHAND;
        if flags & needs != needs {
            return Err(EINVAL);
        }
        let tid = self.next_pid;
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        if p.lent_by.is_some() {
            // A vfork child runs in its parent's task until it execs; it makes no threads.
            return Err(EINVAL);
        }
        if p.others.len() + 1 >= THREADS_MAX {
            rt::log::warn!("pid {pid}: clone refused: {THREADS_MAX} threads already");
            return Err(EAGAIN);
        }
        let mut regs = sys::thread_regs(p.thread).map_err(|_| EFAULT)?;
        regs[regs::RAX] = 0;
        regs[regs::RSP] = stack;
        if flags & clone::SETTLS != 0 {
            regs[regs::FS_BASE] = tls;
        }
        let handle = sys::thread_create_in(p.task, regs[regs::RIP], stack, PROCESS_PRIORITY, 0).map_err(|e| {
            rt::log::warn!("pid {pid}: no thread: {e}");
            EAGAIN
        })?;
        let number = match sys::thread_number(handle) {
            Ok(n) if sys::set_thread_regs(handle, &regs).is_ok() => n,
            _ => {
                let _ = sys::cap_revoke(handle);
                let _ = sys::cap_close(handle);
                return Err(EAGAIN);
            }
        };
        let id = tid.to_le_bytes();
        if flags & clone::PARENT_SETTID != 0 {
            let _ = p.write_mem(parent_tid, &id);
        }
        if flags & clone::CHILD_SETTID != 0 {
            let _ = p.write_mem(child_tid, &id);
        }
        let clear_tid = if flags & clone::CHILD_CLEARTID != 0 { child_tid } else { 0 };
        let signals = ThreadSignals::new(p.signals.thread.blocked);
        p.others.push(Thread { tid, handle, clear_tid, signals });
        self.thread_pids.insert(number, (pid, tid));
        self.next_pid += 1;
        rt::log::debug!("pid {pid}: thread {tid}");
        Ok(tid as u64)
    }

    /// `exit(code)` of the thread being served: the process ends with its last thread;
    /// otherwise the thread goes, its `clear_tid` word is zeroed and woken.
    pub(crate) fn exit_thread(&mut self, pid: u32, code: i32) {
        let Some(p) = self.procs.get_mut(&pid) else { return };
        let Some(next) = p.others.pop() else {
            self.end(pid, Status::Exited(code));
            return;
        };
        let (old, handle, clear_tid) = (p.tid, p.thread, p.clear_tid);
        (p.tid, p.thread, p.clear_tid, p.signals.thread) = (next.tid, next.handle, next.clear_tid, next.signals);
        self.thread_pids.retain(|_, ids| *ids != (pid, old));
        let _ = sys::cap_revoke(handle);
        let _ = sys::cap_close(handle);
        if clear_tid != 0 && p.write_mem(clear_tid, &0u32.to_le_bytes()).is_ok() {
            self.futex_wake(pid, clear_tid, 1, u32::MAX);
        }
    }

    /// `futex(addr, op, val, timeout, addr2, val3)`.
    pub(crate) fn futex(&mut self, pid: u32, addr: u64, op: u64, val: u64, more: [u64; 3]) -> Result<u64, Errno> {
        let [timeout, addr2, val3] = more;
        if !addr.is_multiple_of(4) {
            return Err(EINVAL);
        }
        let realtime_base = self.realtime_base;
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let word = |p: &mut Process, at: u64| -> Result<u32, Errno> {
            let mut bytes = [0u8; 4];
            p.read_mem(at, &mut bytes)?;
            Ok(u32::from_le_bytes(bytes))
        };
        match op & futex::COMMAND {
            command @ (futex::WAIT | futex::WAIT_BITSET) => {
                let bitset = if command == futex::WAIT { u32::MAX } else { val3 as u32 };
                if bitset == 0 {
                    return Err(EINVAL);
                }
                if word(p, addr)? != val as u32 {
                    return Err(EAGAIN);
                }
                if let Some(ns) = pipes::timespec_ns(p, timeout, false)? {
                    let now = sys::time_now();
                    // FUTEX_WAIT's timeout is relative, FUTEX_WAIT_BITSET's an absolute time.
                    let deadline = match (command, op & futex::CLOCK_REALTIME != 0) {
                        (futex::WAIT, _) => now.saturating_add(ns),
                        (_, true) => ns.saturating_sub(realtime_base),
                        (_, false) => ns,
                    };
                    if deadline <= now {
                        return Err(ETIMEDOUT);
                    }
                    self.block.deadline = Some((deadline, ETIMEDOUT.to_rax()));
                }
                self.block.wait = Some(Wait::Futex { addr, bitset });
                Err(BLOCK)
            }
            futex::WAKE => Ok(self.futex_wake(pid, addr, val as usize, u32::MAX) as u64),
            futex::WAKE_BITSET => {
                if val3 as u32 == 0 {
                    return Err(EINVAL);
                }
                Ok(self.futex_wake(pid, addr, val as usize, val3 as u32) as u64)
            }
            command @ (futex::REQUEUE | futex::CMP_REQUEUE) => {
                if !addr2.is_multiple_of(4) || (val as i32) < 0 || (timeout as i32) < 0 {
                    return Err(EINVAL);
                }
                if command == futex::CMP_REQUEUE && word(p, addr)? != val3 as u32 {
                    return Err(EAGAIN);
                }
                let woken = self.futex_wake(pid, addr, val as usize, u32::MAX);
                let mut moved = 0;
                for parked in self.parked.iter_mut().filter(|w| w.pid == pid) {
                    if moved == timeout as u32 as usize {
                        break;
                    }
                    if let Wait::Futex { addr: a, .. } = &mut parked.wait {
                        if *a == addr {
                            *a = addr2;
                            moved += 1;
                        }
                    }
                }
                Ok((woken + moved) as u64)
            }
            _ => Err(ENOSYS),
        }
    }

    /// Wakes up to `n` threads of `pid` waiting on the futex at `addr` with a bitset meeting
    /// `bitset`, oldest first; returns how many.
    pub(crate) fn futex_wake(&mut self, pid: u32, addr: u64, n: usize, bitset: u32) -> usize {
        let mut woken = 0;
        while woken < n {
            let found = self.parked.iter().position(|w| {
                w.pid == pid && matches!(w.wait, Wait::Futex { addr: a, bitset: b } if a == addr && b & bitset != 0)
            });
            let Some(i) = found else { break };
            let parked = self.parked.remove(i);
            self.finish(parked, 0);
            woken += 1;
        }
        woken
    }
}
