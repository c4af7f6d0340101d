//! `/proc`, served by linuxd itself (docs/linux.md, "/proc"): the path-taking system calls
//! (`open`, the `stat` family, `access`, `readlink`, `chdir`) on a path under `/proc` come here
//! before the file-system service. A file's text is made when it is opened (a snapshot, read
//! and seeked like a regular file); a directory's entries likewise. The layout and the texts
//! are `lpx::procfs`.

use super::*;
use lpx::procfs::{self as pfs, Node, ProcInfo, System};

/// An open `/proc` file or directory.
pub(crate) struct ProcOpen {
    pub(crate) path: String,
    pub(crate) stat: FileStat,
    /// A file's text.
    pub(crate) data: Vec<u8>,
    /// A directory's entries (inode, type, name), or `None` for a file.
    pub(crate) entries: Option<Vec<(u64, u8, Vec<u8>)>>,
    /// The read position (the next entry's index in a directory).
    pub(crate) offset: u64,
    pub(crate) flags: u64,
}

/// `/proc`'s device number in `st_dev`.
const PROC_DEV: u64 = 0x16;

impl ProcOpen {
    /// `read` of a file.
    pub(crate) fn read(&mut self, len: usize, at: Option<u64>) -> Result<Vec<u8>, Errno> {
        if self.entries.is_some() {
            return Err(EISDIR);
        }
        let from = at.unwrap_or(self.offset).min(self.data.len() as u64) as usize;
        let n = len.min(self.data.len() - from);
        if at.is_none() {
            self.offset = (from + n) as u64;
        }
        Ok(self.data[from..from + n].to_vec())
    }

    /// `lseek`: anywhere in a file (past the end reads nothing); only to the start of a
    /// directory.
    pub(crate) fn seek(&mut self, offset: i64, whence: u64) -> Result<u64, Errno> {
        if self.entries.is_some() {
            return if offset == 0 && whence == 0 {
                self.offset = 0;
                Ok(0)
            } else {
                Err(EINVAL)
            };
        }
        let base = match whence {
            0 => 0,
            1 => self.offset as i64,
            2 => self.data.len() as i64,
            _ => return Err(EINVAL),
        };
        let to = base.checked_add(offset).filter(|t| *t >= 0).ok_or(EINVAL)?;
        self.offset = to as u64;
        Ok(self.offset)
    }

    /// `getdents64` of a directory into at most `room` bytes.
    pub(crate) fn getdents(&mut self, room: usize) -> Result<Vec<u8>, Errno> {
        let entries = self.entries.as_ref().ok_or(ENOTDIR)?;
        let mut out = Vec::new();
        while let Some((ino, dtype, name)) = entries.get(self.offset as usize) {
            if !structs::dirent64(&mut out, room, *ino, self.offset + 1, *dtype, name) {
                if out.is_empty() {
                    return Err(EINVAL);
                }
                break;
            }
            self.offset += 1;
        }
        Ok(out)
    }
}

/// `path` (absolute, normalised) with every symbolic link in it followed (at most 40); a
/// component that cannot be read as a link is kept as it is.
fn realpath(fs: &Fs, path: &str) -> String {
    let mut pending: VecDeque<String> = path.split('/').filter(|c| !c.is_empty()).map(String::from).collect();
    let mut done = String::new();
    let mut links = 0;
    while let Some(part) = pending.pop_front() {
        let next = lpx::path::normalise(&format!("{done}/{part}"));
        match fs.readlink(&next) {
            Ok(target) if links < 40 => {
                links += 1;
                let target = String::from_utf8_lossy(&target).into_owned();
                if target.starts_with('/') {
                    done.clear();
                }
                for c in target.split('/').filter(|c| !c.is_empty()).rev() {
                    pending.push_front(String::from(c));
                }
            }
            _ => done = next,
        }
    }
    if done.is_empty() {
        String::from("/")
    } else {
        done
    }
}

fn node_stat(node: Node, size: u64) -> FileStat {
    let mode = match node {
        Node::Root | Node::PidDir(_) => structs::S_IFDIR | 0o555,
        Node::SelfLink | Node::Exe(_) | Node::Cwd(_) => structs::S_IFLNK | 0o777,
        Node::Top(_) | Node::PidFile(..) => structs::S_IFREG | 0o444,
    };
    let nlink = if mode & structs::S_IFMT == structs::S_IFDIR { 2 } else { 1 };
    FileStat { dev: PROC_DEV, ino: pfs::ino(node), mode, nlink, size, blksize: 1024, ..Default::default() }
}

impl Server {
    /// A path-taking call `number` of `pid` on a path under `/proc`: `Some` with its result,
    /// `None` if the path is elsewhere (or the call takes no path) and the usual code serves it.
    pub(crate) fn proc_path_call(
        &mut self,
        pid: u32,
        number: u64,
        [a0, a1, a2]: [u64; 3],
    ) -> Option<Result<u64, Errno>> {
        let (dirfd, addr) = match number {
            nr::OPEN | nr::STAT | nr::LSTAT | nr::ACCESS | nr::READLINK | nr::CHDIR => (AT_FDCWD, a0),
            nr::OPENAT | nr::NEWFSTATAT | nr::STATX | nr::FACCESSAT | nr::FACCESSAT2 | nr::READLINKAT => {
                (a0 as i32 as i64, a1)
            }
            _ => return None,
        };
        let p = self.procs.get_mut(&pid)?;
        // An empty path (`AT_EMPTY_PATH`) names the descriptor, served as usual.
        if p.read_cstr(addr).map_or(true, |b| b.is_empty()) {
            return None;
        }
        let path = match p.path_arg(dirfd, addr) {
            Ok(path) => lpx::path::normalise(&path),
            Err(e) => return Some(Err(e)),
        };
        if !pfs::is_proc(&path) {
            return None;
        }
        let [r10, r8, _] = p.more_args().unwrap_or([0; 3]);
        Some(match number {
            nr::OPEN => self.proc_open(pid, &path, a1),
            nr::OPENAT => self.proc_open(pid, &path, a2),
            nr::STAT | nr::LSTAT => self.proc_stat_to(pid, &path, number == nr::STAT, a1, false),
            nr::NEWFSTATAT => self.proc_stat_to(pid, &path, r10 & AT_SYMLINK_NOFOLLOW == 0, a2, false),
            nr::STATX => self.proc_stat_to(pid, &path, a2 & AT_SYMLINK_NOFOLLOW == 0, r8, true),
            nr::ACCESS | nr::FACCESSAT | nr::FACCESSAT2 => self.proc_node(pid, &path, true).map(|_| 0),
            nr::READLINK => self.proc_readlink(pid, &path, a1, a2),
            nr::READLINKAT => self.proc_readlink(pid, &path, a2, r10),
            nr::CHDIR => match self.proc_node(pid, &path, true) {
                Ok(Node::Root | Node::PidDir(_)) => {
                    let target = match pfs::resolve(&path, pid) {
                        Some(Node::SelfLink) => format!("/proc/{pid}"),
                        _ => path,
                    };
                    self.procs.get_mut(&pid).expect("present").cwd = target;
                    Ok(0)
                }
                Ok(_) => Err(ENOTDIR),
                Err(e) => Err(e),
            },
            _ => unreachable!("numbers matched above"),
        })
    }

    /// The node `path` names for `pid`, following the `self` link if `follow` (the `exe` and
    /// `cwd` links are followed by the callers that need it); `ENOENT` if it names nothing.
    fn proc_node(&self, pid: u32, path: &str, follow: bool) -> Result<Node, Errno> {
        let node = pfs::resolve(path, pid).ok_or(ENOENT)?;
        let exists = |pid: u32| self.procs.contains_key(&pid);
        match node {
            Node::SelfLink if follow => Ok(Node::PidDir(pid)),
            Node::PidDir(p) | Node::PidFile(p, _) | Node::Exe(p) | Node::Cwd(p) if !exists(p) => Err(ENOENT),
            other => Ok(other),
        }
    }

    fn proc_stat_to(&mut self, pid: u32, path: &str, follow: bool, buf: u64, statx: bool) -> Result<u64, Errno> {
        let node = self.proc_node(pid, path, follow)?;
        let st = match node {
            Node::Exe(t) | Node::Cwd(t) if follow => {
                let target = self.proc_link(pid, node, t)?;
                let fs = self.fs;
                self.procs.get_mut(&pid).ok_or(ESRCH)?.stat_path(fs, &target, true)?
            }
            _ => node_stat(node, 0),
        };
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        let bytes = if statx { structs::statx(&st).to_vec() } else { structs::stat(&st).to_vec() };
        p.write_mem(buf, &bytes)?;
        Ok(0)
    }

    /// The program file `path` names if it is a `/proc/<pid>/exe` link (followed).
    pub(crate) fn proc_exe(&self, caller: u32, path: &str) -> Option<String> {
        let path = lpx::path::normalise(path);
        if !pfs::is_proc(&path) {
            return None;
        }
        match self.proc_node(caller, &path, true) {
            Ok(node @ Node::Exe(t)) => self.proc_link(caller, node, t).ok(),
            _ => None,
        }
    }

    /// Where a link node points.
    fn proc_link(&self, caller: u32, node: Node, target: u32) -> Result<String, Errno> {
        let p = self.procs.get(&target).ok_or(ENOENT)?;
        match node {
            Node::SelfLink => Ok(format!("{caller}")),
            // The program's file with every link followed, as Linux shows it.
            Node::Exe(_) => Ok(self.fs.map_or_else(|| p.exe.clone(), |fs| realpath(fs, &p.exe))),
            Node::Cwd(_) => Ok(p.cwd.clone()),
            _ => Err(EINVAL),
        }
    }

    fn proc_readlink(&mut self, pid: u32, path: &str, buf: u64, size: u64) -> Result<u64, Errno> {
        let node = self.proc_node(pid, path, false)?;
        let target = match node {
            Node::SelfLink => format!("{pid}"),
            Node::Exe(t) | Node::Cwd(t) => self.proc_link(pid, node, t)?,
            _ => return Err(EINVAL),
        };
        if (size as i64) <= 0 {
            return Err(EINVAL);
        }
        let n = target.len().min(size as usize);
        self.procs.get_mut(&pid).ok_or(ESRCH)?.write_mem(buf, &target.as_bytes()[..n])?;
        Ok(n as u64)
    }

    /// `open` of a `/proc` path: read-only; `exe` opens the program's file.
    fn proc_open(&mut self, pid: u32, path: &str, flags: u64) -> Result<u64, Errno> {
        if flags & o::ACCMODE != o::RDONLY || flags & (o::CREAT | o::TRUNC) != 0 {
            return Err(EACCES);
        }
        let node = self.proc_node(pid, path, flags & o::NOFOLLOW == 0)?;
        let (data, entries) = match node {
            Node::Exe(t) | Node::Cwd(t) => {
                if flags & o::NOFOLLOW != 0 {
                    return Err(ELOOP);
                }
                let target = self.proc_link(pid, node, t)?;
                let fs = self.fs;
                let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
                return p.open_path(fs, target, flags, 0).map(|fd| fd as u64);
            }
            Node::SelfLink => return Err(ELOOP),
            Node::Root => (Vec::new(), Some(self.proc_root_entries())),
            Node::PidDir(t) => {
                let mut entries =
                    Vec::from([(pfs::ino(node), pfs::DT_DIR, b".".to_vec()), (1, pfs::DT_DIR, b"..".to_vec())]);
                for (name, dtype) in pfs::pid_entries() {
                    let ino = pfs::resolve(&format!("/proc/{t}/{name}"), pid).map_or(0, pfs::ino);
                    entries.push((ino, dtype, name.as_bytes().to_vec()));
                }
                (Vec::new(), Some(entries))
            }
            Node::PidFile(t, file) => (pfs::pid_file(&self.proc_info(t).ok_or(ENOENT)?, file), None),
            Node::Top(file) => (pfs::top_file(&self.proc_system(), file), None),
        };
        if flags & o::DIRECTORY != 0 && entries.is_none() {
            return Err(ENOTDIR);
        }
        let stat = node_stat(node, 0);
        let open = ProcOpen { path: String::from(path), stat, data, entries, offset: 0, flags: flags & !o::CLOEXEC };
        let p = self.procs.get_mut(&pid).ok_or(ESRCH)?;
        p.fds.insert(Rc::new(RefCell::new(Open::Proc(open))), flags & o::CLOEXEC != 0).map(|fd| fd as u64)
    }

    /// `/proc`'s entries: its files, `self`, and a directory per process.
    fn proc_root_entries(&self) -> Vec<(u64, u8, Vec<u8>)> {
        let mut entries = Vec::from([(1, pfs::DT_DIR, b".".to_vec()), (1, pfs::DT_DIR, b"..".to_vec())]);
        for (name, dtype) in pfs::top_entries() {
            let ino = pfs::resolve(&format!("/proc/{name}"), 0).map_or(0, pfs::ino);
            entries.push((ino, dtype, name.as_bytes().to_vec()));
        }
        for p in self.procs.values() {
            entries.push((pfs::ino(Node::PidDir(p.pid)), pfs::DT_DIR, format!("{}", p.pid).into_bytes()));
        }
        entries
    }

    /// What `/proc/<pid>/` shows of process `pid`.
    fn proc_info(&self, pid: u32) -> Option<ProcInfo> {
        let p = self.procs.get(&pid)?;
        let comm_len = p.comm.iter().position(|b| *b == 0).unwrap_or(p.comm.len());
        let waiting = self.parked.iter().any(|w| w.pid == pid && w.tid == p.tid);
        let mut sets = [0u64; 2];
        for signal in 1..=lpx::proc::NSIG {
            let action = p.signals.action(signal);
            if action.handler == lpx::proc::SIG_IGN {
                sets[0] |= lpx::proc::bit(signal);
            } else if action.is_handler() {
                sets[1] |= lpx::proc::bit(signal);
            }
        }
        Some(ProcInfo {
            pid,
            ppid: if p.ppid == 0 { 1 } else { p.ppid },
            pgid: p.pgid,
            sid: p.sid,
            comm: p.comm[..comm_len].to_vec(),
            cmdline: p.cmdline.clone(),
            state: if waiting { b'S' } else { b'R' },
            threads: 1 + p.others.len() as u32,
            vsize: p.space.regions().map(|r| r.end - r.start).sum(),
            rss: p.space.chunks().map(|c| c.len).sum(),
            start_ticks: p.started / (1_000_000_000 / pfs::TICKS),
            exe: p.exe.clone(),
            cwd: p.cwd.clone(),
            sig_pending: p.signals.pending_here(),
            sig_blocked: p.signals.thread.blocked,
            sig_ignored: sets[0],
            sig_caught: sets[1],
        })
    }

    /// What `/proc`'s own files show.
    fn proc_system(&mut self) -> System {
        let mounts = self
            .fs()
            .and_then(|fs| fs.mounts().ok())
            .map(|all| all.into_iter().map(|m| (m.path, m.fs_type)).collect())
            .unwrap_or_default();
        let me = sys::task_info(0).ok();
        let running = self.procs.keys().filter(|pid| !self.parked.iter().any(|w| w.pid == **pid)).count();
        System {
            uptime_ns: sys::time_now(),
            processes: self.procs.len() as u32,
            running: running as u32,
            last_pid: self.next_pid - 1,
            mem_total: me.as_ref().map_or(0, |m| m.quota),
            mem_free: me.as_ref().map_or(0, |m| m.quota.saturating_sub(m.used)),
            boot_time: self.realtime_base / 1_000_000_000,
            mounts,
        }
    }
}
