//! Processes: `fork`, `vfork` and `clone` (a copy of the address space, the descriptors and
//! the signal dispositions in a new task), `execve` (a new image in a new task for the same
//! process, with `#!` scripts), `wait4` and `waitid` over zombies, process groups and
//! sessions.

use super::*;
use lpx::proc::{WaitFor, SIGCHLD};

/// `clone` flags linuxd understands.
pub(crate) mod clone {
    pub const CSIGNAL: u64 = 0xff;
    pub const VM: u64 = 0x100;
    pub const FS: u64 = 0x200;
    pub const FILES: u64 = 0x400;
    pub const SIGHAND: u64 = 0x800;
    pub const VFORK: u64 = 0x4000;
    pub const THREAD: u64 = 0x10000;
    pub const SETTLS: u64 = 0x80000;
    pub const PARENT_SETTID: u64 = 0x100000;
    pub const CHILD_CLEARTID: u64 = 0x200000;
    pub const CHILD_SETTID: u64 = 0x1000000;
}

/// `wait4`/`waitid` options.
const WNOHANG: u64 = 1;
const WUNTRACED: u64 = 2;
const WEXITED: u64 = 4;
const WCONTINUED: u64 = 8;
const WNOWAIT: u64 = 0x0100_0000;
const WAIT_ALL_FLAGS: u64 = 0xe000_0000;

/// `fork` shares writable chunks of at least this size copy-on-write (`mmap`'s large chunks,
/// big heaps) and copies smaller ones at once.
const COW_MIN: u64 = 256 << 10;
/// At most this many arguments and environment strings, and bytes in all, for `execve`.
const EXEC_STRINGS_MAX: usize = 4096;
const EXEC_BYTES_MAX: usize = 256 << 10;
/// Nested `#!` interpreters followed at most (Linux allows 4 as well).
const SCRIPT_DEPTH: usize = 4;

impl Server {
    /// `fork`, `vfork` and `clone` without `CLONE_VM`: a new process that is a copy of `pid`,
    /// returning from the same call with 0. Returns the child's pid.
    pub(crate) fn fork(
        &mut self,
        pid: u32,
        flags: u64,
        parent_tid: u64,
        child_tid: u64,
        tls: u64,
    ) -> Result<u64, Errno> {
        if flags & (clone::VM | clone::THREAD | clone::SIGHAND | clone::FS | clone::FILES) != 0 {
            // Threads and shared address spaces are not supported yet (docs/linux.md).
            return Err(ENOSYS);
        }
        let child_pid = self.next_pid;
        let parent = self.procs.get(&pid).ok_or(ESRCH)?;
        let mut regs = sys::thread_regs(parent.thread).map_err(|_| EFAULT)?;
        let chunks: Vec<(Chunk, u32)> = parent.space.chunks_with_prot().map(|(c, prot)| (*c, prot)).collect();
        let copied = |c: &Chunk, prot: u32| prot & PROT_WRITE != 0 && c.len < COW_MIN && !c.cow;
        let needed: u64 = chunks.iter().filter(|(c, prot)| copied(c, *prot)).map(|(c, _)| c.len).sum();
        if !memory::room_for(needed + PROCESS_TASK_QUOTA) {
            rt::log::warn!("pid {pid}: fork refused: {needed} bytes to copy, linuxd's quota is exhausted");
            return Err(ENOMEM);
        }
        let mut child = parent.child(child_pid);
        child.space = parent.space.layout();
        let name = task_name(&child.exe);
        child.task = sys::task_create(PROCESS_TASK_QUOTA, 64, PROCESS_PRIORITY, name).map_err(|_| ENOMEM)?;
        let made = (|| -> Result<(), Errno> {
            for &(chunk, prot) in &chunks {
                if prot & PROT_WRITE == 0 {
                    // Read-only (program text, constants): the same memory, no copy.
                    child.share(chunk, prot)?;
                    continue;
                }
                if copied(&chunk, prot) {
                    // Small and writable: copied now (cheaper than the faults copy-on-write
                    // would take; `cargo xtask bench linux`, fork + exec).
                    let copy = child.commit(chunk.start, chunk.len, prot)?;
                    // Safety: both mirrors are mapped read-write here for `len` bytes (chunks of
                    // two live processes, released only by linuxd) and are distinct objects.
                    unsafe {
                        core::ptr::copy_nonoverlapping(
                            chunk.mirror as *const u8,
                            copy.mirror as *mut u8,
                            chunk.len as usize,
                        )
                    };
                    continue;
                }
                // Large and writable: shared copy-on-write, read-only in both until one writes.
                let parent = self.procs.get_mut(&pid).ok_or(ESRCH)?;
                let cow = parent.share_cow(chunk, prot)?;
                if let Err(e) = child.map_cow(cow, prot) {
                    memory::free_memory(cow.memory);
                    return Err(e);
                }
            }
            self.attach(child.task, child_pid).map_err(|_| ENOMEM)?;
            regs[regs::RAX] = 0;
            if flags & clone::SETTLS != 0 {
                regs[regs::FS_BASE] = tls;
            }
            child.thread = sys::thread_create_in(child.task, regs[regs::RIP], regs[regs::RSP], PROCESS_PRIORITY, 0)
                .map_err(|_| ENOMEM)?;
            sys::set_thread_regs(child.thread, &regs).map_err(|_| EFAULT)?;
            if flags & clone::CHILD_SETTID != 0 {
                child.write_mem(child_tid, &child_pid.to_le_bytes())?;
            }
            Ok(())
        })();
        if let Err(e) = made {
            child.teardown_task();
            return Err(e);
        }
        if flags & clone::PARENT_SETTID != 0 {
            let parent = self.procs.get_mut(&pid).expect("present");
            let _ = parent.write_mem(parent_tid, &child_pid.to_le_bytes());
        }
        self.next_pid += 1;
        self.procs.insert(child_pid, child);
        rt::log::debug!("pid {pid}: forked pid {child_pid}");
        Ok(child_pid as u64)
    }

    /// `clone(flags, stack, parent_tid, child_tid, tls)` of a new process (`CLONE_VFORK`
    /// without `CLONE_VM` is a `vfork`). `CLONE_CHILD_CLEARTID` needs nothing: a process's
    /// memory goes with it when it ends.
    pub(crate) fn clone(
        &mut self,
        pid: u32,
        flags: u64,
        stack: u64,
        parent_tid: u64,
        more: [u64; 3],
    ) -> Result<Option<u64>, Errno> {
        let [child_tid, tls, _] = more;
        if flags & clone::THREAD != 0 {
            return self.clone_thread(pid, flags, stack, parent_tid, child_tid, tls).map(Some);
        }
        if flags & (clone::VM | clone::VFORK | clone::THREAD | clone::SIGHAND) == clone::VM | clone::VFORK {
            return self.vfork_shared(pid, flags, stack, tls);
        }
        if stack != 0 || flags & clone::CSIGNAL != SIGCHLD as u64 && flags & clone::CSIGNAL != 0 {
            // A fork with another stack or another exit signal.
            return Err(ENOSYS);
        }
        if flags & clone::VFORK != 0 && flags & clone::VM == 0 {
            return self.vfork(pid);
        }
        let flags = flags & !(clone::CSIGNAL | clone::CHILD_CLEARTID);
        self.fork(pid, flags, parent_tid, child_tid, tls).map(Some)
    }

    /// `clone3(args, size)`: `struct clone_args` turned into `clone`'s arguments.
    pub(crate) fn clone3(&mut self, pid: u32, args: u64, size: u64) -> Result<Option<u64>, Errno> {
        const VER0: u64 = 64;
        const KNOWN: usize = 88;
        if !(VER0..=PAGE).contains(&size) {
            return Err(EINVAL);
        }
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let bytes = p.read_user(args, size as usize)?;
        if bytes.iter().skip(KNOWN).any(|b| *b != 0) {
            return Err(E2BIG);
        }
        let mut all = [0u8; KNOWN];
        all[..bytes.len().min(KNOWN)].copy_from_slice(&bytes[..bytes.len().min(KNOWN)]);
        let word = |i: usize| u64::from_le_bytes(all[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let (flags, child_tid, parent_tid, exit_signal, stack, stack_size, tls) =
            (word(0), word(2), word(3), word(4), word(5), word(6), word(7));
        let (set_tid_size, cgroup) = (word(9), word(10));
        if exit_signal > 0xff || flags & clone::CSIGNAL != 0 || (stack == 0) != (stack_size == 0) {
            return Err(EINVAL);
        }
        if set_tid_size != 0 || cgroup != 0 {
            // Choosing ids and cgroups needs privileges linuxd does not give.
            return Err(EPERM);
        }
        let top = if stack == 0 { 0 } else { stack.checked_add(stack_size).ok_or(EINVAL)? };
        self.clone(pid, flags | exit_signal, top, parent_tid, [child_tid, tls, 0])
    }

    /// `vfork` (and `clone` with `CLONE_VFORK`): a forked child; the parent waits (parked with
    /// [`Wait::Vfork`]) until the child execs or ends.
    pub(crate) fn vfork(&mut self, pid: u32) -> Result<Option<u64>, Errno> {
        let child = self.fork(pid, 0, 0, 0, 0)? as u32;
        self.vfork_child = Some(child);
        Err(BLOCK)
    }

    /// `clone(CLONE_VM | CLONE_VFORK, stack)` (`posix_spawn`, `popen`): a child that runs on
    /// `stack` in the parent's task and memory while the parent waits, until it execs or ends.
    fn vfork_shared(&mut self, pid: u32, flags: u64, stack: u64, tls: u64) -> Result<Option<u64>, Errno> {
        let child_pid = self.next_pid;
        let parent = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let mut regs = sys::thread_regs(parent.thread).map_err(|_| EFAULT)?;
        let mut child = parent.child(child_pid);
        regs[regs::RAX] = 0;
        regs[regs::RSP] = stack;
        if flags & clone::SETTLS != 0 {
            regs[regs::FS_BASE] = tls;
        }
        let thread = sys::thread_create_in(parent.task, regs[regs::RIP], stack, PROCESS_PRIORITY, 0).map_err(|e| {
            rt::log::warn!("pid {pid}: no thread for a vfork child: {e}");
            ENOMEM
        })?;
        let number = sys::thread_number(thread);
        if number.is_err() || sys::set_thread_regs(thread, &regs).is_err() {
            rt::log::warn!("pid {pid}: cannot start a vfork child");
            let _ = sys::cap_revoke(thread);
            let _ = sys::cap_close(thread);
            return Err(ENOMEM);
        }
        child.task = parent.task;
        child.thread = thread;
        child.space = core::mem::replace(&mut parent.space, Space::new());
        child.lent_by = Some(pid);
        self.thread_pids.insert(number.expect("checked"), (child_pid, child_pid));
        self.next_pid += 1;
        self.procs.insert(child_pid, child);
        self.vfork_child = Some(child_pid);
        rt::log::debug!("pid {pid}: vfork (shared memory) pid {child_pid}");
        Err(BLOCK)
    }

    /// Frees what a process ran in: its own task, thread and memory, or, for a child running
    /// in `lent_by`'s task, only its thread, the memory going back to that parent (or freed if
    /// it has ended).
    pub(crate) fn drop_image(&mut self, pid: u32, lent_by: Option<u32>, task: Handle, thread: Handle, space: Space) {
        let Some(owner) = lent_by else { return memory::free_image(task, thread, space) };
        self.thread_pids.retain(|_, (p, _)| *p != pid);
        let _ = sys::cap_revoke(thread);
        let _ = sys::cap_close(thread);
        match self.procs.get_mut(&owner) {
            Some(parent) => parent.space = space,
            None => memory::free_image(0, 0, space),
        }
    }

    /// Answers the parent waiting in `vfork` for `child`.
    pub(crate) fn release_vfork(&mut self, child: u32) {
        if let Some(i) = self.parked.iter().position(|p| matches!(p.wait, Wait::Vfork { child: c } if c == child)) {
            let parked = self.parked.remove(i);
            self.finish(parked, child as u64);
        }
    }

    /// `execve(path, argv, envp)`: the process keeps its pid, parent, groups, working
    /// directory, descriptors (but the close-on-exec ones) and ignored signals; everything else
    /// is the new program's. On success there is no answer: the calling thread is gone.
    pub(crate) fn execve(&mut self, pid: u32, path: u64, argv: u64, envp: u64) -> Result<Option<u64>, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let mut path = p.path_arg(AT_FDCWD, path)?;
        // The name (`comm`) is the last component of the path the caller gave, as on Linux
        // (`exe` for `/proc/self/exe`, which busybox then renames to the applet).
        let named = String::from(path.rsplit('/').next().unwrap_or(""));
        // `/proc/<pid>/exe` (busybox re-runs itself that way): the program's file.
        if let Some(target) = self.proc_exe(pid, &path) {
            path = target;
        }
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let mut budget = EXEC_BYTES_MAX;
        let args = p.string_array(argv, &mut budget)?;
        let env = p.string_array(envp, &mut budget)?;
        let cwd = p.cwd.clone();
        let (path, args) = self.interpreter(&cwd, path, args)?;
        let mut p = self.procs.remove(&pid).expect("present");
        let old = (p.task, p.thread, core::mem::replace(&mut p.space, Space::new()), p.exe.clone());
        let (old_brk_start, old_brk) = (p.brk_start, p.brk);
        p.task = 0;
        p.thread = 0;
        let argv: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
        let envp: Vec<&[u8]> = env.iter().map(|a| a.as_slice()).collect();
        match self.exec_image(&mut p, &path, &argv, &envp) {
            Ok(()) => {
                let (task, thread, space, _) = old;
                let lent_by = p.lent_by.take();
                self.drop_image(pid, lent_by, task, thread, space);
                // The other threads went with the old task; the caller's id becomes the pid's.
                p.drop_other_threads();
                self.thread_pids.retain(|_, (owner, _)| *owner != pid);
                self.parked.retain(|parked| {
                    if parked.pid == pid {
                        let _ = sys::cap_close(parked.reply);
                    }
                    parked.pid != pid
                });
                (p.tid, p.clear_tid) = (pid, 0);
                drop(p.fds.close_on_exec());
                p.signals.exec();
                p.execed = true;
                p.set_comm(named.as_bytes());
                rt::log::debug!("pid {pid}: exec {path}");
                self.procs.insert(pid, p);
                self.release_vfork(pid);
                Ok(None)
            }
            Err(Refusal(errno, message)) => {
                rt::log::debug!("pid {pid}: execve {path}: {message}");
                (p.task, p.thread, p.space, p.exe) = old;
                (p.brk_start, p.brk) = (old_brk_start, old_brk);
                self.procs.insert(pid, p);
                Err(errno)
            }
        }
    }

    /// The program that runs `path` with `args`: the file itself, or for a `#!` script its
    /// interpreter with the optional argument, the script's path and the arguments after the
    /// first (followed up to `SCRIPT_DEPTH` times).
    fn interpreter(
        &mut self,
        cwd: &str,
        mut path: String,
        mut args: Vec<Vec<u8>>,
    ) -> Result<(String, Vec<Vec<u8>>), Errno> {
        for _ in 0..SCRIPT_DEPTH {
            let fs = need(self.fs())?;
            let file = fs.open(&path, fs::flags::READ, 0).map_err(fs_errno)?;
            let mut head = [0u8; 256];
            let n = file.read_at(0, &mut head).map_err(fs_errno)?;
            let Some(line) = lpx::path::shebang(&head[..n]) else { return Ok((path, args)) };
            let mut new_args = Vec::from([line.interpreter.clone()]);
            new_args.extend(line.argument);
            new_args.push(Vec::from(path.as_bytes()));
            new_args.extend(args.into_iter().skip(1));
            args = new_args;
            path = lpx::path::join(cwd, core::str::from_utf8(&line.interpreter).map_err(|_| ENOEXEC)?);
        }
        Err(ELOOP)
    }

    /// Finds an ended child of `pid` that `target` matches: `Ok(Some)` with it (reaped unless
    /// `keep`), `Ok(None)` if only running ones match, `ECHILD` if none does.
    fn reap(&mut self, pid: u32, target: WaitFor, keep: bool) -> Result<Option<(u32, Status)>, Errno> {
        let found = self.zombies.iter().find(|(zpid, z)| z.ppid == pid && target.matches(**zpid, z.pgid));
        if let Some((&zpid, z)) = found {
            let status = z.status;
            if !keep {
                self.zombies.remove(&zpid);
            }
            return Ok(Some((zpid, status)));
        }
        if self.procs.values().any(|c| c.ppid == pid && target.matches(c.pid, c.pgid)) {
            return Ok(None);
        }
        Err(ECHILD)
    }

    /// `wait4(target, status, options, rusage)`.
    pub(crate) fn wait4(
        &mut self,
        pid: u32,
        target: i32,
        status: u64,
        options: u64,
        rusage: u64,
    ) -> Result<u64, Errno> {
        if options & !(WNOHANG | WUNTRACED | WCONTINUED | WAIT_ALL_FLAGS) != 0 {
            return Err(EINVAL);
        }
        let own_group = self.procs.get(&pid).ok_or(ESRCH)?.pgid;
        match self.reap(pid, WaitFor::new(target, own_group), false)? {
            Some((child, ended)) => {
                let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
                if status != 0 {
                    p.write_mem(status, &ended.wait_status().to_le_bytes())?;
                }
                if rusage != 0 {
                    p.write_mem(rusage, &[0u8; 144])?;
                }
                Ok(child as u64)
            }
            None if options & WNOHANG != 0 => Ok(0),
            None => Err(BLOCK),
        }
    }

    /// `waitid(idtype, id, info, options)`.
    pub(crate) fn waitid(&mut self, pid: u32, idtype: u64, id: u64, info: u64, options: u64) -> Result<u64, Errno> {
        const P_ALL: u64 = 0;
        const P_PID: u64 = 1;
        const P_PGID: u64 = 2;
        if options & !(WNOHANG | WUNTRACED | WEXITED | WCONTINUED | WNOWAIT | WAIT_ALL_FLAGS) != 0
            || options & (WEXITED | WUNTRACED | WCONTINUED) == 0
        {
            return Err(EINVAL);
        }
        let own_group = self.procs.get(&pid).ok_or(ESRCH)?.pgid;
        let target = match idtype {
            P_ALL => WaitFor::Any,
            P_PID if id as i32 > 0 => WaitFor::Pid(id as u32),
            P_PGID => WaitFor::Group(if id == 0 { own_group } else { id as u32 }),
            _ => return Err(EINVAL),
        };
        let found = if options & WEXITED != 0 { self.reap(pid, target, options & WNOWAIT != 0)? } else { None };
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        match found {
            Some((child, ended)) => {
                if info != 0 {
                    let (code, status) = ended.child_info();
                    let si = lpx::proc::SigInfo { signo: SIGCHLD, code, pid: child, status, addr: 0 };
                    p.write_mem(info, &si.encode())?;
                }
                Ok(0)
            }
            None if options & WNOHANG != 0 => {
                if info != 0 {
                    p.write_mem(info, &[0u8; lpx::proc::SigInfo::SIZE])?;
                }
                Ok(0)
            }
            None => Err(BLOCK),
        }
    }

    /// The process `target` (0: the caller) as seen by `pid`.
    fn process_of(&self, pid: u32, target: u64) -> Result<&Process, Errno> {
        let target = if target == 0 { pid } else { target as u32 };
        self.procs.get(&target).ok_or(ESRCH)
    }

    pub(crate) fn getpgid(&self, pid: u32, target: u64) -> Result<u64, Errno> {
        Ok(self.process_of(pid, target)?.pgid as u64)
    }

    pub(crate) fn getsid(&self, pid: u32, target: u64) -> Result<u64, Errno> {
        Ok(self.process_of(pid, target)?.sid as u64)
    }

    /// `setpgid(target, group)`: the caller or one of its children joins or leads a group of
    /// the caller's session.
    pub(crate) fn setpgid(&mut self, pid: u32, target: u64, group: u64) -> Result<u64, Errno> {
        if group as i32 as i64 > i32::MAX as i64 || (group as i32) < 0 {
            return Err(EINVAL);
        }
        let caller_sid = self.procs.get(&pid).ok_or(ESRCH)?.sid;
        let t = self.process_of(pid, target)?;
        let tpid = t.pid;
        if tpid != pid && t.ppid != pid {
            return Err(ESRCH);
        }
        if tpid != pid && (t.sid != caller_sid) {
            return Err(EPERM);
        }
        if tpid != pid && t.execed {
            return Err(EACCES);
        }
        if t.sid == tpid {
            return Err(EPERM);
        }
        let group = if group == 0 { tpid } else { group as u32 };
        if group != tpid && !self.procs.values().any(|q| q.pgid == group && q.sid == caller_sid) {
            return Err(EPERM);
        }
        self.procs.get_mut(&tpid).expect("found above").pgid = group;
        Ok(0)
    }

    /// `setsid()`: a new session and group led by the caller, unless it leads a group.
    pub(crate) fn setsid(&mut self, pid: u32) -> Result<u64, Errno> {
        if self.procs.values().any(|q| q.pgid == pid) {
            return Err(EPERM);
        }
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        p.sid = pid;
        p.pgid = pid;
        Ok(pid as u64)
    }
}

impl Process {
    /// A new process `pid` forked from this one, with no task yet: the same parent-visible
    /// state (groups, program, descriptors, working directory, heap bounds, umask, signal
    /// dispositions and mask).
    fn child(&self, pid: u32) -> Process {
        let mut child = Process::blank(pid, self.client, self.cwd.clone());
        child.ppid = self.pid;
        child.pgid = self.pgid;
        child.sid = self.sid;
        child.exe = self.exe.clone();
        child.comm = self.comm;
        child.cmdline = self.cmdline.clone();
        child.fds = self.fds.clone();
        child.brk_start = self.brk_start;
        child.brk = self.brk;
        child.umask = self.umask;
        child.signals = self.signals.forked();
        child
    }

    /// A NULL-terminated array of strings at `addr` (`argv`, `envp`; NULL is an empty one),
    /// charged to `budget` bytes.
    pub(crate) fn string_array(&mut self, addr: u64, budget: &mut usize) -> Result<Vec<Vec<u8>>, Errno> {
        let mut out = Vec::new();
        if addr == 0 {
            return Ok(out);
        }
        for i in 0.. {
            if i >= EXEC_STRINGS_MAX {
                return Err(E2BIG);
            }
            let mut word = [0u8; 8];
            self.read_mem(addr + i as u64 * 8, &mut word)?;
            let at = u64::from_le_bytes(word);
            if at == 0 {
                break;
            }
            let s = self.read_string(at, *budget).map_err(|e| if e == ENAMETOOLONG { E2BIG } else { e })?;
            *budget = budget.saturating_sub(s.len() + 1);
            out.push(s);
        }
        Ok(out)
    }
}

/// A task's name for the program at `path` (its file name).
pub(crate) fn task_name(path: &str) -> &str {
    let name = path.rsplit('/').next().unwrap_or("linux");
    let mut end = name.len().min(abi::syscall::TASK_NAME_MAX);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}
