//! Processes and signals: wait statuses and which children a `wait4` target matches, signal
//! numbers and their default actions, `struct sigaction` as `rt_sigaction` passes it, signal
//! sets, and the x86_64 signal frame (`struct rt_sigframe`: return address, `ucontext` with the
//! saved registers and mask, `siginfo`) that a handler runs on and `rt_sigreturn` reads back.

use alloc::vec::Vec;

pub const SIGHUP: u32 = 1;
pub const SIGINT: u32 = 2;
pub const SIGQUIT: u32 = 3;
pub const SIGILL: u32 = 4;
pub const SIGTRAP: u32 = 5;
pub const SIGABRT: u32 = 6;
pub const SIGBUS: u32 = 7;
pub const SIGFPE: u32 = 8;
pub const SIGKILL: u32 = 9;
pub const SIGUSR1: u32 = 10;
pub const SIGSEGV: u32 = 11;
pub const SIGUSR2: u32 = 12;
pub const SIGPIPE: u32 = 13;
pub const SIGALRM: u32 = 14;
pub const SIGTERM: u32 = 15;
pub const SIGCHLD: u32 = 17;
pub const SIGCONT: u32 = 18;
pub const SIGSTOP: u32 = 19;
pub const SIGTSTP: u32 = 20;
pub const SIGTTIN: u32 = 21;
pub const SIGTTOU: u32 = 22;
pub const SIGURG: u32 = 23;
pub const SIGWINCH: u32 = 28;
/// Signals are 1..=64.
pub const NSIG: u32 = 64;

/// `sa_handler` values.
pub const SIG_DFL: u64 = 0;
pub const SIG_IGN: u64 = 1;
/// `sa_flags` bits.
pub const SA_NOCLDSTOP: u64 = 1;
pub const SA_NOCLDWAIT: u64 = 2;
pub const SA_SIGINFO: u64 = 4;
pub const SA_RESTORER: u64 = 0x0400_0000;
pub const SA_ONSTACK: u64 = 0x0800_0000;
pub const SA_RESTART: u64 = 0x1000_0000;
pub const SA_NODEFER: u64 = 0x4000_0000;
pub const SA_RESETHAND: u64 = 0x8000_0000;

/// `si_code` values.
pub const SI_USER: i32 = 0;
pub const SI_KERNEL: i32 = 0x80;
/// Sent by `tkill`/`tgkill`.
pub const SI_TKILL: i32 = -6;
pub const CLD_EXITED: i32 = 1;
pub const CLD_KILLED: i32 = 2;
pub const CLD_DUMPED: i32 = 3;
pub const SEGV_MAPERR: i32 = 1;

/// How a process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    Exited(i32),
    Killed(u32),
}

impl Ended {
    /// The `wait4` status word: `WIFEXITED`/`WEXITSTATUS` or `WIFSIGNALED`/`WTERMSIG`
    /// (with the core-dump bit for signals that dump core by default).
    pub fn wait_status(self) -> u32 {
        match self {
            Ended::Exited(code) => ((code as u32) & 0xff) << 8,
            Ended::Killed(signal) => {
                let core = if default_action(signal) == Action::Core { 0x80 } else { 0 };
                (signal & 0x7f) | core
            }
        }
    }

    /// `si_code` and `si_status` of the `SIGCHLD` it causes.
    pub fn child_info(self) -> (i32, i32) {
        match self {
            Ended::Exited(code) => (CLD_EXITED, code & 0xff),
            Ended::Killed(signal) if default_action(signal) == Action::Core => (CLD_DUMPED, signal as i32),
            Ended::Killed(signal) => (CLD_KILLED, signal as i32),
        }
    }
}

/// Which children a `wait4(pid, ...)` waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitFor {
    /// `pid > 0`.
    Pid(u32),
    /// `pid == 0`: the caller's process group; `pid < -1`: group `-pid`.
    Group(u32),
    /// `pid == -1`.
    Any,
}

impl WaitFor {
    /// The target of `wait4`'s `pid` argument, for a caller in process group `own_group`.
    pub fn new(pid: i32, own_group: u32) -> WaitFor {
        match pid {
            -1 => WaitFor::Any,
            0 => WaitFor::Group(own_group),
            p if p < 0 => WaitFor::Group(p.unsigned_abs()),
            p => WaitFor::Pid(p as u32),
        }
    }

    /// Whether a child `pid` in process group `group` is one of them.
    pub fn matches(self, pid: u32, group: u32) -> bool {
        match self {
            WaitFor::Any => true,
            WaitFor::Pid(p) => p == pid,
            WaitFor::Group(g) => g == group,
        }
    }
}

/// What a signal does when its disposition is `SIG_DFL`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Terminate,
    /// Terminate "with a core dump" (the wait status says so; no file is written).
    Core,
    Ignore,
    Stop,
    Continue,
}

pub fn default_action(signal: u32) -> Action {
    match signal {
        SIGCHLD | SIGURG | SIGWINCH => Action::Ignore,
        SIGCONT => Action::Continue,
        SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU => Action::Stop,
        SIGQUIT | SIGILL | SIGTRAP | SIGABRT | SIGBUS | SIGFPE | SIGSEGV | 24 | 25 | 31 => Action::Core,
        _ => Action::Terminate,
    }
}

/// A signal's bit in a 64-bit signal set (`signal` in 1..=64).
pub fn bit(signal: u32) -> u64 {
    1u64 << ((signal - 1) & 63)
}

/// Signals that can be neither caught, blocked nor ignored.
pub const UNBLOCKABLE: u64 = (1 << (SIGKILL - 1)) | (1 << (SIGSTOP - 1));

/// `struct sigaction` as the kernel takes it (`rt_sigaction`, 32 bytes).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigAction {
    pub handler: u64,
    pub flags: u64,
    pub restorer: u64,
    pub mask: u64,
}

impl SigAction {
    pub const SIZE: usize = 32;

    pub fn decode(bytes: &[u8; 32]) -> SigAction {
        let word = |i: usize| u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        SigAction { handler: word(0), flags: word(1), restorer: word(2), mask: word(3) }
    }

    pub fn encode(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for (i, w) in [self.handler, self.flags, self.restorer, self.mask].iter().enumerate() {
            out[i * 8..i * 8 + 8].copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Whether the signal runs a handler (not the default action, not ignored).
    pub fn is_handler(&self) -> bool {
        self.handler != SIG_DFL && self.handler != SIG_IGN
    }
}

/// What a signal's delivery carries in its `siginfo`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SigInfo {
    pub signo: u32,
    pub code: i32,
    /// Sender (`kill`) or child (`SIGCHLD`).
    pub pid: u32,
    /// `SIGCHLD`: the child's exit code or signal.
    pub status: i32,
    /// Faults: the address.
    pub addr: u64,
}

impl SigInfo {
    pub const SIZE: usize = 128;

    /// `siginfo_t`: signo, errno (0), code, then the union at offset 16.
    pub fn encode(&self) -> [u8; 128] {
        let mut out = [0u8; 128];
        out[0..4].copy_from_slice(&self.signo.to_le_bytes());
        out[8..12].copy_from_slice(&self.code.to_le_bytes());
        match self.signo {
            // A positive code: the kernel's (a fault); zero or negative: sent by a process.
            SIGSEGV | SIGBUS | SIGILL | SIGFPE | SIGTRAP if self.code > 0 => {
                out[16..24].copy_from_slice(&self.addr.to_le_bytes());
            }
            _ => {
                out[16..20].copy_from_slice(&self.pid.to_le_bytes());
                // si_uid stays 0; SIGCHLD's si_status follows.
                out[24..28].copy_from_slice(&self.status.to_le_bytes());
            }
        }
        out
    }
}

/// The user registers a signal frame saves, in `struct sigcontext` order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Regs {
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rbp: u64,
    pub rbx: u64,
    pub rdx: u64,
    pub rax: u64,
    pub rcx: u64,
    pub rsp: u64,
    pub rip: u64,
    pub rflags: u64,
}

impl Regs {
    fn words(&self) -> [u64; 18] {
        [
            self.r8,
            self.r9,
            self.r10,
            self.r11,
            self.r12,
            self.r13,
            self.r14,
            self.r15,
            self.rdi,
            self.rsi,
            self.rbp,
            self.rbx,
            self.rdx,
            self.rax,
            self.rcx,
            self.rsp,
            self.rip,
            self.rflags,
        ]
    }

    fn from_words(w: &[u64; 18]) -> Regs {
        Regs {
            r8: w[0],
            r9: w[1],
            r10: w[2],
            r11: w[3],
            r12: w[4],
            r13: w[5],
            r14: w[6],
            r15: w[7],
            rdi: w[8],
            rsi: w[9],
            rbp: w[10],
            rbx: w[11],
            rdx: w[12],
            rax: w[13],
            rcx: w[14],
            rsp: w[15],
            rip: w[16],
            rflags: w[17],
        }
    }
}

/// Offsets in `struct rt_sigframe`: `pretcode` at 0, `ucontext` at 8 (flags, link, `stack_t`
/// at 16, `sigcontext` at 40, the signal mask at 296), `siginfo` at 304.
const UC: usize = 8;
const MCONTEXT: usize = UC + 40;
const SIGMASK: usize = UC + 296;
const INFO: usize = UC + 304;
/// The frame's size.
pub const FRAME_SIZE: usize = INFO + SigInfo::SIZE;
/// The `sigcontext` offset of `oldmask` (after 18 registers and the cs/gs/fs/ss word, err,
/// trapno) and of the floating-point state pointer (left 0: not saved).
const OLDMASK: usize = MCONTEXT + 18 * 8 + 8 + 16;
const CR2: usize = OLDMASK + 8;

/// A signal frame to write into a process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Where the frame goes: the handler's `rsp`.
    pub at: u64,
    pub bytes: Vec<u8>,
    /// The handler's `rsi` and `rdx` (`&info`, `&uc`).
    pub info: u64,
    pub uc: u64,
}

/// The alternate signal stack (`sigaltstack`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AltStack {
    pub sp: u64,
    pub flags: u32,
    pub size: u64,
}

/// The frame for a handler of `info.signo` interrupting `regs`, restoring `mask` on return,
/// placed below `stack_top` (the interrupted `rsp` minus the 128-byte red zone, or the
/// alternate stack's top), with `restorer` as the handler's return address.
pub fn build_frame(regs: &Regs, mask: u64, info: &SigInfo, restorer: u64, stack_top: u64, alt: AltStack) -> Frame {
    let mut bytes = alloc::vec![0u8; FRAME_SIZE];
    bytes[0..8].copy_from_slice(&restorer.to_le_bytes());
    // uc_flags 0, uc_link 0, uc_stack: the alternate stack's description.
    bytes[UC + 16..UC + 24].copy_from_slice(&alt.sp.to_le_bytes());
    bytes[UC + 24..UC + 28].copy_from_slice(&alt.flags.to_le_bytes());
    bytes[UC + 32..UC + 40].copy_from_slice(&alt.size.to_le_bytes());
    for (i, w) in regs.words().iter().enumerate() {
        bytes[MCONTEXT + i * 8..MCONTEXT + i * 8 + 8].copy_from_slice(&w.to_le_bytes());
    }
    // cs = 0x33 (64-bit user code), ss = 0x2b, as Linux reports them.
    bytes[MCONTEXT + 144..MCONTEXT + 146].copy_from_slice(&0x33u16.to_le_bytes());
    bytes[MCONTEXT + 150..MCONTEXT + 152].copy_from_slice(&0x2bu16.to_le_bytes());
    bytes[OLDMASK..OLDMASK + 8].copy_from_slice(&mask.to_le_bytes());
    bytes[CR2..CR2 + 8].copy_from_slice(&info.addr.to_le_bytes());
    bytes[SIGMASK..SIGMASK + 8].copy_from_slice(&mask.to_le_bytes());
    bytes[INFO..INFO + SigInfo::SIZE].copy_from_slice(&info.encode());
    // At the handler's entry `rsp + 8` is 16-byte aligned, as after a call.
    let at = ((stack_top - FRAME_SIZE as u64) & !15) - 8;
    Frame { at, bytes, info: at + INFO as u64, uc: at + UC as u64 }
}

/// Where `rt_sigreturn` finds its frame: the handler returned (popping `pretcode`), so the
/// frame starts 8 bytes below `rsp`.
pub fn frame_of_sigreturn(rsp: u64) -> u64 {
    rsp.wrapping_sub(8)
}

/// The registers and signal mask a frame (read back from the process) restores.
pub fn restore(bytes: &[u8]) -> Option<(Regs, u64)> {
    if bytes.len() < SIGMASK + 8 {
        return None;
    }
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    let mut w = [0u64; 18];
    for (i, v) in w.iter_mut().enumerate() {
        *v = word(MCONTEXT + i * 8);
    }
    Some((Regs::from_words(&w), word(SIGMASK)))
}

/// The `restore` needs this many bytes from the frame's start.
pub const RESTORE_LEN: usize = SIGMASK + 8;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_match_the_c_macros() {
        // WIFEXITED(s) = (s & 0x7f) == 0, WEXITSTATUS(s) = (s >> 8) & 0xff.
        let s = Ended::Exited(3).wait_status();
        assert_eq!((s & 0x7f, (s >> 8) & 0xff), (0, 3));
        assert_eq!(Ended::Exited(256 + 7).wait_status() >> 8, 7);
        // WIFSIGNALED, WTERMSIG = s & 0x7f, WCOREDUMP = s & 0x80.
        assert_eq!(Ended::Killed(SIGTERM).wait_status(), 15);
        assert_eq!(Ended::Killed(SIGSEGV).wait_status(), 11 | 0x80);
        assert_eq!(Ended::Killed(SIGKILL).child_info(), (CLD_KILLED, 9));
        assert_eq!(Ended::Exited(2).child_info(), (CLD_EXITED, 2));
    }

    #[test]
    fn wait_targets() {
        assert_eq!(WaitFor::new(-1, 5), WaitFor::Any);
        assert_eq!(WaitFor::new(0, 5), WaitFor::Group(5));
        assert_eq!(WaitFor::new(-7, 5), WaitFor::Group(7));
        assert!(WaitFor::new(9, 5).matches(9, 1));
        assert!(!WaitFor::new(9, 5).matches(8, 1));
        assert!(WaitFor::new(0, 5).matches(8, 5));
        assert!(!WaitFor::new(0, 5).matches(8, 6));
    }

    #[test]
    fn default_actions_and_sets() {
        assert_eq!(default_action(SIGCHLD), Action::Ignore);
        assert_eq!(default_action(SIGPIPE), Action::Terminate);
        assert_eq!(default_action(SIGSEGV), Action::Core);
        assert_eq!(default_action(SIGTSTP), Action::Stop);
        assert_eq!(default_action(40), Action::Terminate);
        assert_eq!(bit(1), 1);
        assert_eq!(bit(64), 1 << 63);
        assert_eq!(UNBLOCKABLE, bit(SIGKILL) | bit(SIGSTOP));
    }

    #[test]
    fn sigaction_round_trips() {
        let a = SigAction { handler: 0x401000, flags: SA_SIGINFO | SA_RESTORER, restorer: 0x402000, mask: bit(2) };
        assert_eq!(SigAction::decode(&a.encode()), a);
        assert!(a.is_handler());
        assert!(!SigAction::default().is_handler());
    }

    #[test]
    fn a_frame_is_aligned_and_restores_what_it_saved() {
        let regs = Regs { rax: 1, rbx: 2, rsp: 0x7fff_f000, rip: 0x40_1234, rflags: 0x246, r15: 15, ..Regs::default() };
        let info = SigInfo { signo: SIGUSR1, code: SI_USER, pid: 7, ..SigInfo::default() };
        let f = build_frame(&regs, bit(SIGUSR2), &info, 0x40_9000, regs.rsp - 128, AltStack::default());
        assert_eq!((f.at + 8) % 16, 0, "rsp + 8 aligned at entry");
        assert!(f.at + FRAME_SIZE as u64 <= regs.rsp - 128, "below the red zone");
        assert_eq!(u64::from_le_bytes(f.bytes[0..8].try_into().unwrap()), 0x40_9000);
        assert_eq!(f.info - f.at, 312);
        assert_eq!(f.uc - f.at, 8);
        // The handler returns: `ret` pops pretcode, rt_sigreturn sees rsp = frame + 8.
        assert_eq!(frame_of_sigreturn(f.at + 8), f.at);
        let (back, mask) = restore(&f.bytes).unwrap();
        assert_eq!(back, regs);
        assert_eq!(mask, bit(SIGUSR2));
        // glibc's view: gregs[REG_RIP = 16] in uc_mcontext at uc + 40.
        let rip_at = 8 + 40 + 16 * 8;
        assert_eq!(u64::from_le_bytes(f.bytes[rip_at..rip_at + 8].try_into().unwrap()), 0x40_1234);
        // siginfo: signo, code, pid.
        let i = 312;
        assert_eq!(u32::from_le_bytes(f.bytes[i..i + 4].try_into().unwrap()), SIGUSR1);
        assert_eq!(u32::from_le_bytes(f.bytes[i + 16..i + 20].try_into().unwrap()), 7);
        assert!(restore(&f.bytes[..100]).is_none());
    }

    #[test]
    fn fault_info_carries_the_address() {
        let info = SigInfo { signo: SIGSEGV, code: SEGV_MAPERR, addr: 0xdead_0000, ..SigInfo::default() };
        let b = info.encode();
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 0xdead_0000);
    }
}
