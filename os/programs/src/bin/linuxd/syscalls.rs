//! The system calls: Linux numbers to their implementations.

use super::*;

impl Server {
    // ---- System calls ----

    /// Serves a system call of thread `tid` of `pid`; the value for its rax, or `None` to not
    /// answer (the thread or process ended, or the answer comes later).
    pub(crate) fn syscall(&mut self, pid: u32, tid: u32, [number, a0, a1, a2]: [u64; 4]) -> Option<u64> {
        if !self.procs.get_mut(&pid).is_some_and(|p| p.switch_to(tid)) {
            return None;
        }
        self.block = Block::default();
        self.vfork_child = None;
        let result = self.dispatch(pid, number, [a0, a1, a2]);
        let rax = match result {
            Ok(Some(v)) => v,
            Ok(None) => return None,
            Err(BLOCK) => {
                let wait = match (self.vfork_child.take(), number) {
                    (Some(child), _) => Wait::Vfork { child },
                    (None, _) if self.block.wait.is_some() => self.block.wait.take().expect("checked"),
                    (None, nr::NANOSLEEP | nr::CLOCK_NANOSLEEP | nr::SCHED_YIELD) => Wait::Sleep,
                    (None, nr::RT_SIGSUSPEND | nr::PAUSE) => {
                        let p = self.procs.get_mut(&pid).and_then(|p| p.switch_to(tid).then_some(p));
                        let mask = p.map_or(0, |p| p.signals.thread.suspended_from);
                        Wait::Suspend { mask }
                    }
                    (None, _) => Wait::Retry { number, args: [a0, a1, a2] },
                };
                self.park(pid, tid, wait);
                return None;
            }
            Err(e) => {
                if e == ENOSYS {
                    *self.counts.entry(number).or_insert(0) += 1;
                }
                e.to_rax()
            }
        };
        self.on_return(pid, tid, rax)
    }

    pub(crate) fn dispatch(&mut self, pid: u32, number: u64, [a0, a1, a2]: [u64; 3]) -> Result<Option<u64>, Errno> {
        let more = Process::more_args;
        if let Some(result) = self.proc_path_call(pid, number, [a0, a1, a2]) {
            return result.map(Some);
        }
        let fs = self.fs;
        let realtime_base = self.realtime_base;
        let Some(p) = self.procs.get_mut(&pid) else { return Ok(None) };
        let ok = |v: u64| Ok(Some(v));
        match number {
            nr::EXIT => {
                self.exit_thread(pid, a0 as u8 as i32);
                Ok(None)
            }
            nr::EXIT_GROUP => {
                self.end(pid, Status::Exited(a0 as u8 as i32));
                Ok(None)
            }
            nr::READ if p.is_console(a0 as i32 as i64) => {
                let len = (a2 as usize).min(IO_MAX);
                p.check(a1, len as u64, true)?;
                let data = self.console_read(pid, a0 as i32 as i64, len)?;
                self.procs.get_mut(&pid).ok_or(ESRCH)?.write_mem(a1, &data)?;
                ok(data.len() as u64)
            }
            nr::READ => ok(p.read(a0 as i32 as i64, a1, a2 as usize, None)? as u64),
            nr::WRITE => {
                let fd = a0 as i32 as i64;
                // A pipe's writer copies only what the pipe takes now (nothing while it waits).
                let len = match &*p.fds.get(fd)?.borrow() {
                    Open::Pipe(end) => end.accepts((a2 as usize).min(IO_MAX))?,
                    _ => a2 as usize,
                };
                let data = p.read_user(a1, len)?;
                let n = self.write_fd(pid, fd, &data, None)?;
                ok(n as u64)
            }
            nr::PREAD64 => {
                let [off, ..] = more(p)?;
                ok(p.read(a0 as i32 as i64, a1, a2 as usize, Some(off))? as u64)
            }
            nr::PWRITE64 => {
                let [off, ..] = more(p)?;
                let data = p.read_user(a1, a2 as usize)?;
                ok(self.write_fd(pid, a0 as i32 as i64, &data, Some(off))? as u64)
            }
            nr::READV => {
                let iov = p.iovecs(a1, a2)?;
                let total: usize = iov.iter().map(|v| v.1 as usize).sum::<usize>().min(IO_MAX);
                for (base, len) in &iov {
                    p.check(*base, *len, true)?;
                }
                let data = if p.is_console(a0 as i32 as i64) {
                    self.console_read(pid, a0 as i32 as i64, total)?
                } else {
                    p.read_fd(a0 as i32 as i64, total, None)?
                };
                let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
                let mut at = 0;
                for (base, len) in iov {
                    let n = (len as usize).min(data.len() - at);
                    p.write_mem(base, &data[at..at + n])?;
                    at += n;
                    if at == data.len() {
                        break;
                    }
                }
                ok(data.len() as u64)
            }
            nr::WRITEV => {
                let iov = p.iovecs(a1, a2)?;
                let mut data = Vec::new();
                for (base, len) in iov {
                    let room = IO_MAX.saturating_sub(data.len());
                    data.extend_from_slice(&p.read_user(base, (len as usize).min(room))?);
                }
                ok(self.write_fd(pid, a0 as i32 as i64, &data, None)? as u64)
            }
            nr::OPEN => ok(p.open(fs, AT_FDCWD, a0, a1, a2 as u32)? as u64),
            nr::OPENAT => {
                let [mode, ..] = more(p)?;
                ok(p.open(fs, a0 as i32 as i64, a1, a2, mode as u32)? as u64)
            }
            nr::CREAT => ok(p.open(fs, AT_FDCWD, a0, o::CREAT | o::WRONLY | o::TRUNC, a1 as u32)? as u64),
            nr::CLOSE => {
                p.fds.remove(a0 as i32 as i64)?;
                ok(0)
            }
            nr::LSEEK => ok(p.lseek(a0 as i32 as i64, a1 as i64, a2)?),
            nr::FSTAT => {
                let st = p.fstat(a0 as i32 as i64)?;
                p.write_mem(a1, &structs::stat(&st))?;
                ok(0)
            }
            nr::STAT | nr::LSTAT => {
                let path = p.path_arg(AT_FDCWD, a0)?;
                let st = p.stat_path(fs, &path, number == nr::STAT)?;
                p.write_mem(a1, &structs::stat(&st))?;
                ok(0)
            }
            nr::NEWFSTATAT => {
                let [flags, ..] = more(p)?;
                let st = p.stat_at(fs, a0 as i32 as i64, a1, flags)?;
                p.write_mem(a2, &structs::stat(&st))?;
                ok(0)
            }
            nr::STATX => {
                let [_mask, buf, ..] = more(p)?;
                let st = p.stat_at(fs, a0 as i32 as i64, a1, a2)?;
                p.write_mem(buf, &structs::statx(&st))?;
                ok(0)
            }
            nr::GETDENTS64 => ok(p.getdents(a0 as i32 as i64, a1, a2 as usize)? as u64),
            nr::MKDIR | nr::MKDIRAT => {
                let (dirfd, path, mode) =
                    if number == nr::MKDIR { (AT_FDCWD, a0, a1) } else { (a0 as i32 as i64, a1, a2) };
                let path = p.path_arg(dirfd, path)?;
                let mode = (mode as u32 & 0o7777 & !p.umask) as u16;
                need(fs)?.mkdir(&path, mode).map_err(fs_errno)?;
                ok(0)
            }
            nr::UNLINK | nr::RMDIR => {
                let path = p.path_arg(AT_FDCWD, a0)?;
                let fs = need(fs)?;
                if number == nr::UNLINK { fs.unlink(&path) } else { fs.rmdir(&path) }.map_err(fs_errno)?;
                ok(0)
            }
            nr::UNLINKAT => {
                let path = p.path_arg(a0 as i32 as i64, a1)?;
                let fs = need(fs)?;
                if a2 & 0x200 != 0 { fs.rmdir(&path) } else { fs.unlink(&path) }.map_err(fs_errno)?;
                ok(0)
            }
            nr::RENAME => {
                let (from, to) = (p.path_arg(AT_FDCWD, a0)?, p.path_arg(AT_FDCWD, a1)?);
                need(fs)?.rename(&from, &to).map_err(fs_errno)?;
                ok(0)
            }
            nr::RENAMEAT | nr::RENAMEAT2 => {
                let [to, flags, ..] = more(p)?;
                if number == nr::RENAMEAT2 && flags != 0 {
                    return Err(EINVAL);
                }
                let (from, to) = (p.path_arg(a0 as i32 as i64, a1)?, p.path_arg(a2 as i32 as i64, to)?);
                need(fs)?.rename(&from, &to).map_err(fs_errno)?;
                ok(0)
            }
            nr::SYMLINK | nr::SYMLINKAT => {
                let (target, dirfd, path) =
                    if number == nr::SYMLINK { (a0, AT_FDCWD, a1) } else { (a0, a1 as i32 as i64, a2) };
                let target = String::from_utf8(p.read_cstr(target)?).map_err(|_| EINVAL)?;
                if target.is_empty() {
                    return Err(ENOENT);
                }
                let path = p.path_arg(dirfd, path)?;
                need(fs)?.symlink(&target, &path).map_err(fs_errno)?;
                ok(0)
            }
            nr::CHMOD | nr::FCHMODAT => {
                let (dirfd, path, mode) =
                    if number == nr::CHMOD { (AT_FDCWD, a0, a1) } else { (a0 as i32 as i64, a1, a2) };
                let path = p.path_arg(dirfd, path)?;
                need(fs)?.chmod(&path, (mode & 0o7777) as u16).map_err(fs_errno)?;
                ok(0)
            }
            nr::FCHMOD => {
                let path = p.fd_path(a0 as i32 as i64)?;
                need(fs)?.chmod(&path, (a1 & 0o7777) as u16).map_err(fs_errno)?;
                ok(0)
            }
            nr::CHOWN | nr::LCHOWN | nr::FCHOWNAT => {
                // Every process is root and owners are not kept: the file must exist.
                let (dirfd, path, follow) = match number {
                    nr::FCHOWNAT => (a0 as i32 as i64, a1, more(p)?[1] & AT_SYMLINK_NOFOLLOW == 0),
                    _ => (AT_FDCWD, a0, number == nr::CHOWN),
                };
                let path = p.path_arg(dirfd, path)?;
                p.stat_path(fs, &path, follow)?;
                ok(0)
            }
            nr::FCHOWN => {
                p.fds.get(a0 as i32 as i64)?;
                ok(0)
            }
            nr::UTIMENSAT => {
                let [flags, ..] = more(p)?;
                ok(p.utimensat(fs, a0 as i32 as i64, a1, a2, flags, realtime_base)?)
            }
            nr::PRCTL => ok(p.prctl(a0, a1)?),
            nr::READLINK => ok(p.readlink(fs, AT_FDCWD, a0, a1, a2)? as u64),
            nr::READLINKAT => {
                let [size, ..] = more(p)?;
                ok(p.readlink(fs, a0 as i32 as i64, a1, a2, size)? as u64)
            }
            nr::ACCESS => {
                let path = p.path_arg(AT_FDCWD, a0)?;
                p.stat_path(fs, &path, true)?;
                ok(0)
            }
            nr::FACCESSAT | nr::FACCESSAT2 => {
                let path = p.path_arg(a0 as i32 as i64, a1)?;
                p.stat_path(fs, &path, true)?;
                ok(0)
            }
            nr::CHDIR => {
                let path = p.path_arg(AT_FDCWD, a0)?;
                let st = p.stat_path(fs, &path, true)?;
                if st.mode & structs::S_IFMT != structs::S_IFDIR {
                    return Err(ENOTDIR);
                }
                p.cwd = lpx::path::normalise(&path);
                ok(0)
            }
            nr::FCHDIR => {
                let fd = p.fds.get(a0 as i32 as i64)?.clone();
                let path = match &*fd.borrow() {
                    Open::File(f) if f.directory => f.path.clone(),
                    Open::File(_) => return Err(ENOTDIR),
                    _ => return Err(ENOTDIR),
                };
                p.cwd = lpx::path::normalise(&path);
                ok(0)
            }
            nr::GETCWD => {
                let mut bytes = Vec::from(p.cwd.as_bytes());
                bytes.push(0);
                if (a1 as usize) < bytes.len() {
                    return Err(ERANGE);
                }
                p.write_mem(a0, &bytes)?;
                ok(bytes.len() as u64)
            }
            nr::FTRUNCATE => {
                let fd = p.fds.get(a0 as i32 as i64)?.clone();
                let result = match &*fd.borrow() {
                    Open::File(f) if !f.directory => f.file.truncate(a1).map_err(fs_errno),
                    Open::File(_) => Err(EISDIR),
                    _ => Err(EINVAL),
                };
                result?;
                ok(0)
            }
            nr::FSYNC | nr::FDATASYNC => {
                let fd = p.fds.get(a0 as i32 as i64)?.clone();
                let result = match &*fd.borrow() {
                    Open::File(f) => f.file.fsync().map_err(fs_errno),
                    _ => Ok(()),
                };
                result?;
                ok(0)
            }
            nr::DUP => ok(p.fds.dup(a0 as i32 as i64, 0, false)? as u64),
            nr::DUP2 => {
                if a0 == a1 {
                    p.fds.get(a0 as i32 as i64)?;
                    return ok(a1);
                }
                p.fds.dup_to(a0 as i32 as i64, a1 as i32 as i64, false)?;
                ok(a1)
            }
            nr::DUP3 => {
                if a0 == a1 || a2 & !o::CLOEXEC != 0 {
                    return Err(EINVAL);
                }
                p.fds.dup_to(a0 as i32 as i64, a1 as i32 as i64, a2 & o::CLOEXEC != 0)?;
                ok(a1)
            }
            nr::FCNTL => p.fcntl(a0 as i32 as i64, a1, a2).map(Some),
            nr::IOCTL if p.is_console(a0 as i32 as i64) && matches!(a1, TIOCGPGRP | TIOCSPGRP) => {
                // The terminal's foreground group: Ctrl-C sends it SIGINT.
                if a1 == TIOCGPGRP {
                    let own = p.pgid;
                    let group = match self.foreground() {
                        0 => own,
                        g => g,
                    };
                    self.procs.get_mut(&pid).ok_or(ESRCH)?.write_mem(a2, &group.to_le_bytes())?;
                    return ok(0);
                }
                let group = p.read_u64(a2)? as u32;
                let sid = p.sid;
                if (group as i32) <= 0 {
                    return Err(EINVAL);
                }
                if !self.procs.values().any(|q| q.pgid == group && q.sid == sid) {
                    return Err(EPERM);
                }
                self.tty.foreground = group;
                ok(0)
            }
            nr::IOCTL => p.ioctl(a0 as i32 as i64, a1, a2).map(Some),
            nr::BRK => ok(p.set_brk(a0)),
            nr::MMAP => {
                let [flags, fd, offset] = more(p)?;
                ok(p.mmap(a0, a1, a2 as u32, flags, fd as i32 as i64, offset)?)
            }
            nr::MUNMAP => {
                if !a0.is_multiple_of(PAGE) || a1 == 0 {
                    return Err(EINVAL);
                }
                p.release_range(a0, a1.next_multiple_of(PAGE));
                ok(0)
            }
            nr::MPROTECT => {
                if !a0.is_multiple_of(PAGE) {
                    return Err(EINVAL);
                }
                ok(p.mprotect(a0, a1, a2)?)
            }
            nr::MADVISE => ok(0),
            nr::MREMAP => {
                let [flags, ..] = more(p)?;
                ok(p.mremap(a0, a1, a2, flags)?)
            }
            nr::ARCH_PRCTL => {
                const ARCH_SET_FS: u64 = 0x1002;
                const ARCH_GET_FS: u64 = 0x1003;
                match a0 {
                    ARCH_SET_FS => {
                        let mut r = sys::thread_regs(p.thread).map_err(|_| EPERM)?;
                        r[regs::FS_BASE] = a1;
                        sys::set_thread_regs(p.thread, &r).map_err(|_| EPERM)?;
                        ok(0)
                    }
                    ARCH_GET_FS => {
                        let r = sys::thread_regs(p.thread).map_err(|_| EPERM)?;
                        p.write_mem(a1, &r[regs::FS_BASE].to_le_bytes())?;
                        ok(0)
                    }
                    _ => Err(EINVAL),
                }
            }
            nr::SET_TID_ADDRESS => {
                p.clear_tid = a0;
                ok(p.tid as u64)
            }
            nr::FUTEX => {
                let more = more(p)?;
                ok(self.futex(pid, a0, a1, a2, more)?)
            }
            nr::SCHED_GETAFFINITY => {
                // One CPU: a mask with bit 0, as long as the caller's buffer allows (Linux
                // answers with the size of its own mask, 8 bytes here).
                if a1 < 8 || !a1.is_multiple_of(8) {
                    return Err(EINVAL);
                }
                p.write_mem(a2, &1u64.to_le_bytes())?;
                ok(8)
            }
            nr::SCHED_SETAFFINITY => ok(0),
            nr::SET_ROBUST_LIST => ok(0),
            nr::PRLIMIT64 => {
                let [old, ..] = more(p)?;
                if a0 != 0 && a0 != pid as u64 {
                    return Err(ESRCH);
                }
                if old != 0 {
                    p.write_mem(old, &rlimit(a1))?;
                }
                ok(0)
            }
            nr::GETRLIMIT => {
                p.write_mem(a1, &rlimit(a0))?;
                ok(0)
            }
            nr::SETRLIMIT => ok(0),
            nr::GETRANDOM => {
                let len = (a1 as usize).min(IO_MAX);
                p.check(a0, len as u64, true)?;
                let mut bytes = alloc::vec![0u8; len];
                self.rng.stir(rt::rdtsc());
                self.rng.fill(&mut bytes);
                let p = self.procs.get_mut(&pid).expect("present");
                p.write_mem(a0, &bytes)?;
                ok(len as u64)
            }
            nr::SYSINFO => {
                // struct sysinfo: uptime, loads, memory (linuxd's quota as the RAM), processes.
                let me = sys::task_info(0).ok();
                let (total, free) = me.map_or((0, 0), |m| (m.quota, m.quota.saturating_sub(m.used)));
                let mut b = [0u8; 112];
                b[0..8].copy_from_slice(&(sys::time_now() / 1_000_000_000).to_le_bytes());
                b[32..40].copy_from_slice(&total.to_le_bytes());
                b[40..48].copy_from_slice(&free.to_le_bytes());
                b[80..82].copy_from_slice(&(self.procs.len().min(u16::MAX as usize) as u16).to_le_bytes());
                b[104..108].copy_from_slice(&1u32.to_le_bytes());
                self.procs.get_mut(&pid).ok_or(ESRCH)?.write_mem(a0, &b)?;
                ok(0)
            }
            nr::UNAME => {
                let u = structs::utsname(["Linux", "tutti", "6.1.0-tutti", "#1 Tutti linuxd", "x86_64", "(none)"]);
                p.write_mem(a0, &u)?;
                ok(0)
            }
            nr::GETPID => ok(pid as u64),
            nr::GETTID => ok(p.tid as u64),
            nr::GETPPID => ok(if p.ppid == 0 { 1 } else { p.ppid as u64 }),
            nr::GETUID | nr::GETEUID | nr::GETGID | nr::GETEGID => ok(0),
            nr::CLOCK_GETTIME => {
                let ns = clock(a0, realtime_base)?;
                p.write_mem(a1, &structs::two_words(ns / 1_000_000_000, ns % 1_000_000_000))?;
                ok(0)
            }
            nr::CLOCK_GETRES => {
                clock(a0, realtime_base)?;
                if a1 != 0 {
                    p.write_mem(a1, &structs::two_words(0, 1))?;
                }
                ok(0)
            }
            nr::GETTIMEOFDAY => {
                let ns = realtime_base + sys::time_now();
                if a0 != 0 {
                    p.write_mem(a0, &structs::two_words(ns / 1_000_000_000, ns % 1_000_000_000 / 1000))?;
                }
                ok(0)
            }
            nr::TIME => {
                let secs = (realtime_base + sys::time_now()) / 1_000_000_000;
                if a0 != 0 {
                    p.write_mem(a0, &secs.to_le_bytes())?;
                }
                ok(secs)
            }
            nr::NANOSLEEP | nr::CLOCK_NANOSLEEP => {
                let (req, abs) = if number == nr::NANOSLEEP { (a0, false) } else { (a2, a1 & 1 != 0) };
                let ns = pipes::timespec_ns(p, req, false)?.ok_or(EFAULT)?;
                let now = sys::time_now();
                let deadline = if abs {
                    let base = if number == nr::CLOCK_NANOSLEEP && a0 == 0 { realtime_base } else { 0 };
                    ns.saturating_sub(base)
                } else {
                    now.saturating_add(ns)
                };
                if deadline <= now {
                    return ok(0);
                }
                self.block.deadline = Some((deadline, 0));
                Err(BLOCK)
            }
            nr::SCHED_YIELD => {
                // The answer comes after linuxd has waited (a timeout already due): the other
                // ready threads of the processes' priority run first, as a yield lets them.
                if p.others.is_empty() && self.procs.len() == 1 {
                    return ok(0);
                }
                self.block.deadline = Some((sys::time_now(), 0));
                Err(BLOCK)
            }
            nr::RT_SIGACTION => {
                let [size, ..] = more(p)?;
                if size != 8 {
                    return Err(EINVAL);
                }
                ok(self.sigaction(pid, a0, a1, a2)?)
            }
            nr::RT_SIGPROCMASK => {
                let [size, ..] = more(p)?;
                ok(self.sigprocmask(pid, a0, a1, a2, size)?)
            }
            nr::RT_SIGRETURN => self.sigreturn(pid),
            nr::RT_SIGSUSPEND => {
                if a1 != 8 {
                    return Err(EINVAL);
                }
                self.sigsuspend(pid, Some(a0))
            }
            nr::PAUSE => self.sigsuspend(pid, None),
            nr::RT_SIGPENDING => {
                let pending = p.signals.pending_here() & p.signals.thread.blocked;
                p.write_mem(a0, &pending.to_le_bytes())?;
                ok(0)
            }
            nr::SIGALTSTACK => ok(self.sigaltstack(pid, a0, a1)?),
            nr::SENDFILE => {
                let [count, ..] = more(p)?;
                ok(self.sendfile(pid, a0 as i32 as i64, a1 as i32 as i64, a2, count)? as u64)
            }
            nr::COPY_FILE_RANGE => {
                let [out_offset, count, flags] = more(p)?;
                ok(self.copy_file_range(pid, [a0, a1, a2, out_offset, count, flags])? as u64)
            }
            nr::SOCKET => ok(p.socket(a0, a1, a2)?),
            nr::BIND => ok(p.bind(a0 as i32 as i64, a1, a2)?),
            nr::LISTEN => ok(p.listen(a0 as i32 as i64, a1)?),
            nr::ACCEPT => ok(p.accept(a0 as i32 as i64, a1, a2, 0)?),
            nr::ACCEPT4 => {
                let [flags, ..] = more(p)?;
                ok(p.accept(a0 as i32 as i64, a1, a2, flags)?)
            }
            nr::CONNECT => ok(p.connect(a0 as i32 as i64, a1, a2)?),
            nr::SHUTDOWN => ok(p.shutdown(a0 as i32 as i64, a1)?),
            nr::GETSOCKNAME | nr::GETPEERNAME => ok(p.sockname(a0 as i32 as i64, a1, a2, number == nr::GETPEERNAME)?),
            nr::SETSOCKOPT => {
                let [value, len, ..] = more(p)?;
                ok(p.setsockopt(a0 as i32 as i64, a1, a2, value, len)?)
            }
            nr::GETSOCKOPT => {
                let [value, len_at, ..] = more(p)?;
                ok(p.getsockopt(a0 as i32 as i64, a1, a2, value, len_at)?)
            }
            nr::SENDTO | nr::SENDMSG => {
                let [flags, addr, addrlen] = more(p)?;
                let sent = if number == nr::SENDTO {
                    p.sendto(a0 as i32 as i64, a1, a2, flags, Some((addr, addrlen)))
                } else {
                    p.sendmsg(a0 as i32 as i64, a1, a2)
                };
                let flags = if number == nr::SENDTO { flags } else { a2 };
                if sent == Err(EPIPE) && flags & sockets::MSG_NOSIGNAL == 0 {
                    self.send_sigpipe(pid);
                }
                ok(sent? as u64)
            }
            nr::RECVFROM => {
                let [flags, addr, len_at] = more(p)?;
                ok(p.recvfrom(a0 as i32 as i64, a1, a2, flags, (addr, len_at))? as u64)
            }
            nr::RECVMSG => ok(p.recvmsg(a0 as i32 as i64, a1, a2)? as u64),
            nr::PIPE => ok(p.pipe2(a0, 0)?),
            nr::PIPE2 => ok(p.pipe2(a0, a1)?),
            nr::POLL | nr::PPOLL | nr::SELECT | nr::PSELECT6 => {
                let more = more(p)?;
                ok(self.readiness_call(pid, number, [a0, a1, a2], more)?)
            }
            nr::FORK => ok(self.fork(pid, 0, 0, 0, 0)?),
            nr::VFORK => self.vfork(pid),
            nr::CLONE => {
                let more = more(p)?;
                self.clone(pid, a0, a1, a2, more)
            }
            nr::CLONE3 => self.clone3(pid, a0, a1),
            nr::EXECVE => self.execve(pid, a0, a1, a2),
            nr::WAIT4 => {
                let [rusage, ..] = more(p)?;
                ok(self.wait4(pid, a0 as i32, a1, a2, rusage)?)
            }
            nr::WAITID => {
                let [options, ..] = more(p)?;
                ok(self.waitid(pid, a0, a1, a2, options)?)
            }
            nr::GETPGID => ok(self.getpgid(pid, a0)?),
            nr::GETPGRP => ok(p.pgid as u64),
            nr::GETSID => ok(self.getsid(pid, a0)?),
            nr::SETPGID => ok(self.setpgid(pid, a0, a1)?),
            nr::SETSID => ok(self.setsid(pid)?),
            nr::UMASK => {
                let old = p.umask;
                p.umask = a0 as u32 & 0o777;
                ok(old as u64)
            }
            nr::KILL => ok(self.kill(pid, a0 as i32, a1)?),
            nr::TKILL | nr::TGKILL => {
                let (tgid, tid, signal) =
                    if number == nr::TGKILL { (a0 as i32, a1 as i32, a2) } else { (-1, a0 as i32, a1) };
                if tid <= 0 || tgid == 0 || tgid < -1 {
                    return Err(EINVAL);
                }
                ok(self.tgkill(pid, tgid, tid as u32, signal)?)
            }
            _ => Err(ENOSYS),
        }
    }

    /// `sendfile(out, in, offset, count)`: from a regular file (at `*offset`, updated, or at
    /// its position, advanced) to any descriptor; at most `IO_MAX` bytes, and only what was
    /// written is consumed (a write that must wait leaves everything in place).
    fn sendfile(&mut self, pid: u32, out: i64, input: i64, offset: u64, count: u64) -> Result<usize, Errno> {
        self.copy_range(pid, input, offset, out, None, count)
    }

    /// `copy_file_range(in, in_offset, out, out_offset, count, flags)`: between regular files,
    /// each at `*offset` (updated) or at its position (advanced).
    fn copy_file_range(&mut self, pid: u32, args: [u64; 6]) -> Result<usize, Errno> {
        let [input, in_offset, out, out_offset, count, flags] = args;
        if flags != 0 {
            return Err(EINVAL);
        }
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        if !matches!(&*p.fds.get(out as i32 as i64)?.borrow(), Open::File(f) if !f.directory) {
            return Err(EINVAL);
        }
        let out_at = match out_offset {
            0 => None,
            at => Some((at, p.read_u64(at)?)),
        };
        self.copy_range(pid, input as i32 as i64, in_offset, out as i32 as i64, out_at, count)
    }

    /// Copies up to `count` (at most `IO_MAX`) bytes from the regular file `input` (at the
    /// offset stored at `in_offset`, or its position if 0) to `out` (at the given offset, whose
    /// word at the given address is then updated, or at its position); the offsets advance by
    /// what was written.
    fn copy_range(
        &mut self,
        pid: u32,
        input: i64,
        in_offset: u64,
        out: i64,
        out_at: Option<(u64, u64)>,
        count: u64,
    ) -> Result<usize, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        if !matches!(&*p.fds.get(input)?.borrow(), Open::File(f) if !f.directory) {
            return Err(EINVAL);
        }
        let from = match in_offset {
            0 => p.lseek(input, 0, 1)?,
            at => p.read_u64(at)?,
        };
        let data = p.read_fd(input, count as usize, Some(from))?;
        if data.is_empty() {
            return Ok(0);
        }
        let written = self.write_fd(pid, out, &data, out_at.map(|(_, off)| off))?;
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        match in_offset {
            0 => p.lseek(input, (from + written as u64) as i64, 0).map(|_| ())?,
            at => p.write_mem(at, &(from + written as u64).to_le_bytes())?,
        }
        if let Some((at, off)) = out_at {
            p.write_mem(at, &(off + written as u64).to_le_bytes())?;
        }
        Ok(written)
    }

    /// `write` on `fd` of `pid`: the console service, `/dev/null`, or a file.
    pub(crate) fn write_fd(&mut self, pid: u32, fd: i64, data: &[u8], at: Option<u64>) -> Result<usize, Errno> {
        let p = self.procs.get_mut(&pid).ok_or(EBADF)?;
        let fd = p.fds.get(fd)?.clone();
        let open = fd.borrow();
        match &*open {
            Open::Console { flags } | Open::Null { flags, .. } if flags & o::ACCMODE == o::RDONLY => Err(EBADF),
            Open::Console { .. } => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                self.console_write(data);
                Ok(data.len())
            }
            Open::Null { .. } => Ok(data.len()),
            Open::Proc(_) => Err(EBADF),
            Open::Socket(_) if at.is_some() => Err(ESPIPE),
            Open::Socket(_) => {
                drop(open);
                let written = match &mut *fd.borrow_mut() {
                    Open::Socket(s) => s.send(data, 0, None),
                    _ => Err(EBADF),
                };
                if written == Err(EPIPE) {
                    self.send_sigpipe(pid);
                }
                written
            }
            Open::Pipe(end) => {
                if at.is_some() {
                    return Err(ESPIPE);
                }
                let written = end.write(data);
                drop(open);
                if written == Err(EPIPE) {
                    self.send_sigpipe(pid);
                }
                written
            }
            Open::File(f) => {
                if f.directory {
                    return Err(EISDIR);
                }
                if f.flags & o::ACCMODE == o::RDONLY {
                    return Err(EBADF);
                }
                drop(open);
                let mut open = fd.borrow_mut();
                let Open::File(f) = &mut *open else { return Err(EBADF) };
                match at {
                    Some(offset) => f.file.write_at(offset, data),
                    None => f.file.write(data),
                }
                .map_err(fs_errno)
            }
        }
    }

    pub(crate) fn console_write(&mut self, data: &[u8]) {
        if self.console.is_none() {
            self.reconnect_console();
        }
        if let Some((console, buffer)) = &self.console {
            // The buffer's end is where the console reader's lines arrive (`tty.rs`).
            let sent = data.chunks(buffer.len().min(tty::INPUT_OFFSET as usize)).all(|chunk| {
                let range = BufRange { offset: 0, len: chunk.len() as u64 };
                buffer.write(0, chunk).is_ok()
                    && matches!(
                        console.call(&ConsoleRequest::WriteBuffer { range }, FOREVER_NS),
                        Ok(ConsoleResponse::Done)
                    )
            });
            if sent {
                return;
            }
            self.drop_console();
        }
        rt::print!("{}", String::from_utf8_lossy(data));
    }
}
