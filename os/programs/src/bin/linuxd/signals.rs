//! Signals: dispositions, masks and pending sets per process; sending (`kill`, `SIGCHLD`,
//! `SIGPIPE`, faults); delivery on the way back from a system call (or a fault) by writing a
//! Linux signal frame on the process's stack and pointing its registers at the handler;
//! `rt_sigreturn`; interrupting a waiting call (`EINTR`, or a restart with `SA_RESTART`).
//!
//! Delivery happens when linuxd answers a system call or a fault of the process, or at once
//! when the process waits in linuxd. A process computing without system calls sees a caught
//! signal at its next call; a signal whose action is to terminate ends it at once.

use super::*;
use lpx::proc::{
    bit, build_frame, default_action, frame_of_sigreturn, restore, Action, AltStack, SigAction, SigInfo, NSIG,
    RESTORE_LEN, SA_NODEFER, SA_ONSTACK, SA_RESETHAND, SA_RESTART, SIGKILL, SIG_DFL, SIG_IGN, SI_TKILL, UNBLOCKABLE,
};

/// The flags `rt_sigreturn` may restore (Linux's FIX_EFLAGS).
const RESTORABLE_FLAGS: u64 = 0x50dd5;
/// `sigaltstack` flags.
const SS_ONSTACK: u32 = 1;
const SS_DISABLE: u32 = 2;

/// A process's signal state: the dispositions and process-directed pending signals, shared by
/// its threads, and the state of the thread being served (`thread`; the others' is kept in
/// their [`Thread`] records and swapped in by [`Process::switch_to`]).
#[derive(Clone)]
pub(crate) struct Signals {
    actions: [SigAction; NSIG as usize],
    /// Signals sent to the process (any thread not blocking one may take it).
    pub(crate) pending: u64,
    info: BTreeMap<u32, SigInfo>,
    pub(crate) thread: ThreadSignals,
}

/// One thread's signal state.
#[derive(Clone, Copy)]
pub(crate) struct ThreadSignals {
    pub(crate) blocked: u64,
    /// Signals sent to this thread (`tgkill`, its own faults).
    pub(crate) pending: u64,
    pub(crate) altstack: AltStack,
    /// The mask before `rt_sigsuspend` (restored after its handler).
    pub(crate) suspended_from: u64,
    restore_mask: Option<u64>,
}

impl ThreadSignals {
    /// A new thread's: the creator's mask, nothing pending, no alternate stack.
    pub(crate) fn new(blocked: u64) -> ThreadSignals {
        ThreadSignals {
            blocked,
            pending: 0,
            altstack: AltStack { sp: 0, flags: SS_DISABLE, size: 0 },
            suspended_from: 0,
            restore_mask: None,
        }
    }
}

impl Signals {
    pub(crate) fn new() -> Signals {
        Signals {
            actions: [SigAction::default(); NSIG as usize],
            pending: 0,
            info: BTreeMap::new(),
            thread: ThreadSignals::new(0),
        }
    }

    pub(crate) fn action(&self, signal: u32) -> SigAction {
        self.actions[(signal - 1) as usize]
    }

    /// A `fork` child's: the same dispositions, the calling thread's mask and alternate stack,
    /// nothing pending.
    pub(crate) fn forked(&self) -> Signals {
        let thread = ThreadSignals { pending: 0, restore_mask: None, ..self.thread };
        Signals { pending: 0, info: BTreeMap::new(), thread, ..self.clone() }
    }

    /// After `execve`: handlers go back to the default (ignored signals stay ignored), no
    /// alternate stack; the mask and pending signals stay.
    pub(crate) fn exec(&mut self) {
        for a in self.actions.iter_mut() {
            if a.is_handler() {
                *a = SigAction::default();
            }
        }
        self.thread.altstack = AltStack { sp: 0, flags: SS_DISABLE, size: 0 };
    }

    /// The lowest signal pending for the current thread (sent to it or to the process) that
    /// it does not block.
    fn deliverable(&self) -> Option<u32> {
        let ready = (self.pending | self.thread.pending) & !self.thread.blocked;
        (ready != 0).then(|| ready.trailing_zeros() + 1)
    }

    /// Signals pending for the current thread.
    pub(crate) fn pending_here(&self) -> u64 {
        self.pending | self.thread.pending
    }

    fn take(&mut self, signal: u32) -> SigInfo {
        if self.thread.pending & bit(signal) != 0 {
            self.thread.pending &= !bit(signal);
        } else {
            self.pending &= !bit(signal);
        }
        self.info.remove(&signal).unwrap_or(SigInfo { signo: signal, ..SigInfo::default() })
    }

    /// Whether `signal` would do nothing now (ignored, or a default of ignore/stop/continue:
    /// there is no job control).
    fn ignores(&self, signal: u32) -> bool {
        let a = self.action(signal);
        a.handler == SIG_IGN
            || (a.handler == SIG_DFL
                && matches!(default_action(signal), Action::Ignore | Action::Stop | Action::Continue))
    }
}

fn regs_of(r: &[u64; regs::COUNT]) -> lpx::proc::Regs {
    lpx::proc::Regs {
        r8: r[regs::R8],
        r9: r[regs::R9],
        r10: r[regs::R10],
        r11: r[regs::R11],
        r12: r[regs::R12],
        r13: r[regs::R13],
        r14: r[regs::R14],
        r15: r[regs::R15],
        rdi: r[regs::RDI],
        rsi: r[regs::RSI],
        rbp: r[regs::RBP],
        rbx: r[regs::RBX],
        rdx: r[regs::RDX],
        rax: r[regs::RAX],
        rcx: r[regs::RCX],
        rsp: r[regs::RSP],
        rip: r[regs::RIP],
        rflags: r[regs::RFLAGS],
    }
}

fn set_regs(r: &mut [u64; regs::COUNT], v: &lpx::proc::Regs) {
    r[regs::R8] = v.r8;
    r[regs::R9] = v.r9;
    r[regs::R10] = v.r10;
    r[regs::R11] = v.r11;
    r[regs::R12] = v.r12;
    r[regs::R13] = v.r13;
    r[regs::R14] = v.r14;
    r[regs::R15] = v.r15;
    r[regs::RDI] = v.rdi;
    r[regs::RSI] = v.rsi;
    r[regs::RBP] = v.rbp;
    r[regs::RBX] = v.rbx;
    r[regs::RDX] = v.rdx;
    r[regs::RAX] = v.rax;
    r[regs::RCX] = v.rcx;
    r[regs::RSP] = v.rsp;
    r[regs::RIP] = v.rip;
    r[regs::RFLAGS] = (r[regs::RFLAGS] & !RESTORABLE_FLAGS) | (v.rflags & RESTORABLE_FLAGS);
}

impl Server {
    /// `SIGPIPE` for `pid`, which wrote to a pipe or socket nobody reads any more.
    pub(crate) fn send_sigpipe(&mut self, pid: u32) {
        let info = SigInfo { signo: lpx::proc::SIGPIPE, pid, ..SigInfo::default() };
        self.send_signal(pid, info);
    }

    /// Sends `info.signo` to process `pid`.
    pub(crate) fn send_signal(&mut self, pid: u32, info: SigInfo) {
        self.signal_to(pid, None, info)
    }

    /// Sends `info.signo` to process `pid`, or to its thread `tid`: dropped if ignored;
    /// pending; then, unless every thread that may take it blocks it, the process ended if its
    /// action is to terminate, or a waiting call of such a thread interrupted for the handler.
    pub(crate) fn signal_to(&mut self, pid: u32, tid: Option<u32>, info: SigInfo) {
        let signal = info.signo;
        let Some(p) = self.procs.get_mut(&pid) else { return };
        if signal == SIGKILL {
            rt::log::info!("pid {pid} ({}) killed by SIGKILL", p.exe);
            self.end(pid, Status::Killed(signal));
            return;
        }
        if p.signals.ignores(signal) {
            return;
        }
        let takers = match tid {
            Some(tid) => {
                if !p.switch_to(tid) {
                    return;
                }
                p.signals.thread.pending |= bit(signal);
                Vec::from([tid])
            }
            None => {
                p.signals.pending |= bit(signal);
                p.tids()
            }
        };
        p.signals.info.insert(signal, info);
        let open: Vec<u32> = takers.into_iter().filter(|t| !p.blocks(*t, signal)).collect();
        if open.is_empty() {
            return;
        }
        if !p.signals.action(signal).is_handler() {
            rt::log::debug!("pid {pid} ({}) killed by {}", p.exe, signal_name(signal));
            self.end(pid, Status::Killed(signal));
            return;
        }
        self.interrupt(pid, &open);
    }

    /// A waiting call of one of the threads `tids` of `pid` ends for a signal handler: `EINTR`,
    /// or (a call other than a sleep or poll, with `SA_RESTART`) made again after the handler.
    fn interrupt(&mut self, pid: u32, tids: &[u32]) {
        // A `vfork` parent waits for its child whatever signals arrive.
        let Some(i) = self
            .parked
            .iter()
            .position(|p| p.pid == pid && tids.contains(&p.tid) && !matches!(p.wait, Wait::Vfork { .. }))
        else {
            return;
        };
        let tid = self.parked[i].tid;
        let Some(p) = self.procs.get_mut(&pid).and_then(|p| p.switch_to(tid).then_some(p)) else { return };
        let Some(signal) = p.signals.deliverable() else { return };
        let restart_flag = p.signals.action(signal).flags & SA_RESTART != 0;
        let parked = self.parked.remove(i);
        let restart = match parked.wait {
            Wait::Sleep | Wait::Vfork { .. } | Wait::Futex { .. } => None,
            Wait::Suspend { mask } => {
                p.signals.thread.restore_mask = Some(mask);
                None
            }
            Wait::Retry { number, .. } => {
                let never = matches!(number, nr::POLL | nr::PPOLL | nr::SELECT | nr::PSELECT6 | nr::WAIT4);
                (restart_flag && !never).then_some(number)
            }
        };
        match restart {
            Some(number) => {
                // Back to the `syscall` instruction with the number in rax: the call runs again
                // when the handler returns.
                let moved = sys::thread_regs(p.thread).and_then(|mut r| {
                    r[regs::RIP] -= 2;
                    sys::set_thread_regs(p.thread, &r)
                });
                let rax = if moved.is_ok() { number } else { EINTR.to_rax() };
                self.finish(parked, rax);
            }
            None => self.finish(parked, EINTR.to_rax()),
        }
    }

    /// Before `rax` goes back to thread `tid` of `pid`: runs the handler of a deliverable
    /// signal (the value for rax then is the handler's), ends the process for a fatal one
    /// (`None`).
    pub(crate) fn on_return(&mut self, pid: u32, tid: u32, rax: u64) -> Option<u64> {
        loop {
            let p = self.procs.get_mut(&pid).and_then(|p| p.switch_to(tid).then_some(p))?;
            let Some(signal) = p.signals.deliverable() else { return Some(rax) };
            let info = p.signals.take(signal);
            let action = p.signals.action(signal);
            if action.is_handler() {
                return match self.push_frame(pid, info, action, rax) {
                    Ok(()) => Some(0),
                    Err(_) => {
                        rt::log::warn!("pid {pid}: no room for a signal frame: killed by SIGSEGV");
                        self.end(pid, Status::Killed(SIGSEGV));
                        None
                    }
                };
            }
            if !p.signals.ignores(signal) {
                self.end(pid, Status::Killed(signal));
                return None;
            }
        }
    }

    /// A fault's signal to a handler, if the process has one and does not block it.
    pub(crate) fn deliver_fault(&mut self, pid: u32, info: SigInfo) -> bool {
        let Some(p) = self.procs.get(&pid) else { return false };
        let action = p.signals.action(info.signo);
        if !action.is_handler() || p.signals.thread.blocked & bit(info.signo) != 0 {
            return false;
        }
        let Ok(r) = sys::thread_regs(p.thread) else { return false };
        self.push_frame(pid, info, action, r[regs::RAX]).is_ok()
    }

    /// Writes the frame for `info` on the process's stack and points its thread at the handler;
    /// the interrupted state has `rax` in rax.
    fn push_frame(&mut self, pid: u32, info: SigInfo, action: SigAction, rax: u64) -> Result<(), Errno> {
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let mut r = sys::thread_regs(p.thread).map_err(|_| EFAULT)?;
        let mut saved = regs_of(&r);
        saved.rax = rax;
        let mask = p.signals.thread.restore_mask.take().unwrap_or(p.signals.thread.blocked);
        let alt = p.signals.thread.altstack;
        let on_alt = alt.flags & SS_DISABLE == 0 && saved.rsp.wrapping_sub(alt.sp) < alt.size;
        let top = if action.flags & SA_ONSTACK != 0 && alt.flags & SS_DISABLE == 0 && !on_alt {
            alt.sp + alt.size
        } else {
            saved.rsp.wrapping_sub(128)
        };
        let frame = build_frame(&saved, mask, &info, action.restorer, top, alt);
        p.write_mem(frame.at, &frame.bytes)?;
        r[regs::RIP] = action.handler;
        r[regs::RSP] = frame.at;
        r[regs::RDI] = info.signo as u64;
        r[regs::RSI] = frame.info;
        r[regs::RDX] = frame.uc;
        r[regs::RAX] = 0;
        // The direction and trap flags are clear in a handler.
        r[regs::RFLAGS] &= !0x500;
        sys::set_thread_regs(p.thread, &r).map_err(|_| EFAULT)?;
        let own = if action.flags & SA_NODEFER != 0 { 0 } else { bit(info.signo) };
        p.signals.thread.blocked = (p.signals.thread.blocked | action.mask | own) & !UNBLOCKABLE;
        if action.flags & SA_RESETHAND != 0 {
            p.signals.actions[(info.signo - 1) as usize] = SigAction::default();
        }
        Ok(())
    }

    /// `rt_sigreturn`: the registers and mask of the frame the handler returned from.
    pub(crate) fn sigreturn(&mut self, pid: u32) -> Result<Option<u64>, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let mut r = sys::thread_regs(p.thread).map_err(|_| EFAULT)?;
        let frame = frame_of_sigreturn(r[regs::RSP]);
        let restored = p.read_user(frame, RESTORE_LEN).ok().and_then(|bytes| restore(&bytes));
        let Some((saved, mask)) = restored else {
            rt::log::warn!("pid {pid}: rt_sigreturn without a frame: killed by SIGSEGV");
            self.end(pid, Status::Killed(SIGSEGV));
            return Ok(None);
        };
        set_regs(&mut r, &saved);
        if sys::set_thread_regs(p.thread, &r).is_err() {
            rt::log::warn!("pid {pid}: rt_sigreturn to a bad context: killed by SIGSEGV");
            self.end(pid, Status::Killed(SIGSEGV));
            return Ok(None);
        }
        p.signals.thread.blocked = mask & !UNBLOCKABLE;
        Ok(Some(saved.rax))
    }

    /// `rt_sigaction(signal, act, oldact, size)`.
    pub(crate) fn sigaction(&mut self, pid: u32, signal: u64, act: u64, old: u64) -> Result<u64, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        if signal == 0 || signal > NSIG as u64 {
            return Err(EINVAL);
        }
        let signal = signal as u32;
        let new = if act != 0 {
            if bit(signal) & UNBLOCKABLE != 0 {
                return Err(EINVAL);
            }
            let mut bytes = [0u8; SigAction::SIZE];
            p.read_mem(act, &mut bytes)?;
            Some(SigAction::decode(&bytes))
        } else {
            None
        };
        if old != 0 {
            p.write_mem(old, &p.signals.action(signal).encode())?;
        }
        if let Some(mut a) = new {
            a.mask &= !UNBLOCKABLE;
            p.signals.actions[(signal - 1) as usize] = a;
            if p.signals.ignores(signal) {
                p.clear_pending(signal);
                p.signals.info.remove(&signal);
            }
        }
        Ok(0)
    }

    /// `rt_sigprocmask(how, set, oldset, size)`.
    pub(crate) fn sigprocmask(&mut self, pid: u32, how: u64, set: u64, old: u64, size: u64) -> Result<u64, Errno> {
        const SIG_BLOCK: u64 = 0;
        const SIG_UNBLOCK: u64 = 1;
        const SIG_SETMASK: u64 = 2;
        if size != 8 {
            return Err(EINVAL);
        }
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let new = if set != 0 {
            let mut bytes = [0u8; 8];
            p.read_mem(set, &mut bytes)?;
            Some(u64::from_le_bytes(bytes))
        } else {
            None
        };
        if old != 0 {
            p.write_mem(old, &p.signals.thread.blocked.to_le_bytes())?;
        }
        if let Some(set) = new {
            p.signals.thread.blocked = match how {
                SIG_BLOCK => p.signals.thread.blocked | set,
                SIG_UNBLOCK => p.signals.thread.blocked & !set,
                SIG_SETMASK => set,
                _ => return Err(EINVAL),
            } & !UNBLOCKABLE;
        }
        Ok(0)
    }

    /// `rt_sigsuspend(mask, size)` and `pause()`: waits for a signal with `mask` blocked.
    pub(crate) fn sigsuspend(&mut self, pid: u32, mask: Option<u64>) -> Result<Option<u64>, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let mask = match mask {
            Some(addr) => {
                let mut bytes = [0u8; 8];
                p.read_mem(addr, &mut bytes)?;
                u64::from_le_bytes(bytes) & !UNBLOCKABLE
            }
            None => p.signals.thread.blocked,
        };
        p.signals.thread.suspended_from = p.signals.thread.blocked;
        p.signals.thread.blocked = mask;
        if p.signals.deliverable().is_some() {
            // Already pending: the handler runs now, and the old mask comes back after it.
            p.signals.thread.restore_mask = Some(p.signals.thread.suspended_from);
            return Err(EINTR);
        }
        Err(BLOCK)
    }

    /// `sigaltstack(new, old)`.
    pub(crate) fn sigaltstack(&mut self, pid: u32, new: u64, old: u64) -> Result<u64, Errno> {
        const MINSIGSTKSZ: u64 = 2048;
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let current = p.signals.thread.altstack;
        let rsp = sys::thread_regs(p.thread).map(|r| r[regs::RSP]).unwrap_or(0);
        let on = current.flags & SS_DISABLE == 0 && rsp.wrapping_sub(current.sp) < current.size;
        if old != 0 {
            let mut bytes = [0u8; 24];
            bytes[0..8].copy_from_slice(&current.sp.to_le_bytes());
            let flags = if on { SS_ONSTACK } else { current.flags & SS_DISABLE };
            bytes[8..12].copy_from_slice(&flags.to_le_bytes());
            bytes[16..24].copy_from_slice(&current.size.to_le_bytes());
            p.write_mem(old, &bytes)?;
        }
        if new != 0 {
            let mut bytes = [0u8; 24];
            p.read_mem(new, &mut bytes)?;
            if on {
                return Err(EPERM);
            }
            let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
            let flags = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
            if flags & !(SS_DISABLE | (1 << 31)) != 0 {
                return Err(EINVAL);
            }
            p.signals.thread.altstack = if flags & SS_DISABLE != 0 {
                AltStack { sp: 0, flags: SS_DISABLE, size: 0 }
            } else {
                if word(16) < MINSIGSTKSZ {
                    return Err(ENOMEM);
                }
                AltStack { sp: word(0), flags: 0, size: word(16) }
            };
        }
        Ok(0)
    }

    /// `kill(target, signal)`: a process, the caller's group (0), every process (-1) or a
    /// group (< -1).
    pub(crate) fn kill(&mut self, pid: u32, target: i32, signal: u64) -> Result<u64, Errno> {
        if signal > NSIG as u64 {
            return Err(EINVAL);
        }
        let own_group = self.procs.get(&pid).map_or(0, |p| p.pgid);
        let targets: Vec<u32> = match target {
            t if t > 0 => self.procs.contains_key(&(t as u32)).then_some(t as u32).into_iter().collect(),
            0 => self.procs.values().filter(|p| p.pgid == own_group).map(|p| p.pid).collect(),
            -1 => self.procs.keys().copied().collect(),
            t => self.procs.values().filter(|p| p.pgid == t.unsigned_abs()).map(|p| p.pid).collect(),
        };
        if targets.is_empty() {
            return Err(ESRCH);
        }
        if signal != 0 {
            for t in targets {
                let info = SigInfo { signo: signal as u32, code: lpx::proc::SI_USER, pid, status: 0, addr: 0 };
                self.send_signal(t, info);
            }
        }
        Ok(0)
    }

    /// `tgkill(tgid, tid, signal)` (`tgid` -1: `tkill`, any process): the signal for thread
    /// `tid` of process `tgid`.
    pub(crate) fn tgkill(&mut self, pid: u32, tgid: i32, tid: u32, signal: u64) -> Result<u64, Errno> {
        if signal > NSIG as u64 {
            return Err(EINVAL);
        }
        let owner = self
            .procs
            .values()
            .find(|p| (tgid == -1 || p.pid == tgid as u32) && (p.tid == tid || p.others.iter().any(|t| t.tid == tid)))
            .map(|p| p.pid)
            .ok_or(ESRCH)?;
        if signal != 0 {
            let info = SigInfo { signo: signal as u32, code: SI_TKILL, pid, status: 0, addr: 0 };
            self.signal_to(owner, Some(tid), info);
        }
        Ok(0)
    }
}
