//! Open files of a process: the console, `/dev/null`, pipes, files of the file-system service;
//! `open`, `read`, `lseek`, `getdents64`, `readlink`, `fcntl`, `ioctl` and the stat family.

use super::*;

/// An open file description.
pub(crate) enum Open {
    /// The console service (fds 0-2): writes go to it, reads get typed lines (`tty.rs`).
    Console {
        flags: u64,
    },
    /// `/dev/null`, `/dev/zero`, `/dev/urandom` (`/dev/random`): writes are taken and dropped.
    Null {
        flags: u64,
        dev: Dev,
    },
    File(FileDesc),
    Pipe(pipes::PipeEnd),
    /// A file or directory of `/proc` (`procfs.rs`).
    Proc(procfs::ProcOpen),
    /// A socket (`sockets.rs`).
    Socket(sockets::Sock),
}

/// What a read of `Open::Null` gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dev {
    /// `/dev/null`: the end of file.
    Null,
    /// `/dev/zero`: zeros.
    Zero,
    /// `/dev/urandom` and `/dev/random`: linuxd's generator (as `getrandom`; not
    /// cryptographic, docs/linux.md).
    Random,
}

impl Dev {
    fn path(self) -> &'static str {
        match self {
            Dev::Null => "/dev/null",
            Dev::Zero => "/dev/zero",
            Dev::Random => "/dev/urandom",
        }
    }
}

/// The generator behind `/dev/urandom`, seeded on first use and stirred with the time-stamp
/// counter on every read (only linuxd's main thread uses it).
fn random_fill(out: &mut [u8]) {
    struct Cell(core::cell::UnsafeCell<Option<lpx::rng::Rng>>);
    // Safety: only the main thread reads devices.
    unsafe impl Sync for Cell {}
    static RNG: Cell = Cell(core::cell::UnsafeCell::new(None));
    // Safety: main thread only (above); no other reference to it lives across this call.
    let rng = unsafe { &mut *RNG.0.get() }.get_or_insert_with(|| lpx::rng::Rng::new(seed()));
    rng.stir(rt::rdtsc());
    rng.fill(out);
}

pub(crate) struct FileDesc {
    pub(crate) file: fs::File<'static>,
    pub(crate) path: String,
    pub(crate) flags: u64,
    pub(crate) directory: bool,
    /// `getdents64` state: entries not yet returned, where the server continues, the offset.
    pub(crate) pending: VecDeque<(u64, u8, Vec<u8>)>,
    pub(crate) cookie: u64,
    pub(crate) started: bool,
    pub(crate) done: bool,
    pub(crate) offset: u64,
}

pub(crate) type Fd = Rc<RefCell<Open>>;

impl Process {
    /// The absolute path named by `dirfd` and the string at `addr`.
    pub(crate) fn path_arg(&mut self, dirfd: i64, addr: u64) -> Result<String, Errno> {
        let bytes = self.read_cstr(addr)?;
        if bytes.is_empty() {
            return Err(ENOENT);
        }
        let path = String::from_utf8(bytes).map_err(|_| EINVAL)?;
        if path.starts_with('/') || dirfd == AT_FDCWD {
            return Ok(lpx::path::join(&self.cwd, &path));
        }
        let fd = self.fds.get(dirfd)?.clone();
        let open = fd.borrow();
        match &*open {
            Open::File(f) if f.directory => Ok(lpx::path::join(&f.path, &path)),
            Open::Proc(d) if d.entries.is_some() => Ok(lpx::path::join(&d.path, &path)),
            _ => Err(ENOTDIR),
        }
    }

    pub(crate) fn stat_path(&mut self, fs: Option<&'static Fs>, path: &str, follow: bool) -> Result<FileStat, Errno> {
        if let Some(st) = device_stat(path) {
            return Ok(st);
        }
        let fs = need(fs)?;
        let s = if follow { fs.stat(path) } else { fs.lstat(path) }.map_err(fs_errno)?;
        Ok(stat_of(&s))
    }

    pub(crate) fn stat_at(
        &mut self,
        fs: Option<&'static Fs>,
        dirfd: i64,
        addr: u64,
        flags: u64,
    ) -> Result<FileStat, Errno> {
        const AT_EMPTY_PATH: u64 = 0x1000;
        let bytes = self.read_cstr(addr)?;
        if bytes.is_empty() {
            if flags & AT_EMPTY_PATH != 0 {
                return self.fstat(dirfd);
            }
            return Err(ENOENT);
        }
        let path = self.path_arg(dirfd, addr)?;
        self.stat_path(fs, &path, flags & AT_SYMLINK_NOFOLLOW == 0)
    }

    pub(crate) fn fstat(&mut self, fd: i64) -> Result<FileStat, Errno> {
        let fd = self.fds.get(fd)?.clone();
        let open = fd.borrow();
        match &*open {
            Open::Console { .. } => Ok(device_stat("/dev/console").expect("known")),
            Open::Null { dev, .. } => Ok(device_stat(dev.path()).expect("known")),
            Open::Socket(s) => Ok(s.stat()),
            Open::File(f) => f.file.stat().map(|s| stat_of(&s)).map_err(fs_errno),
            Open::Proc(f) => Ok(f.stat),
            Open::Pipe(end) => Ok(FileStat {
                dev: 6,
                ino: Rc::as_ptr(&end.pipe) as u64,
                mode: structs::S_IFIFO | 0o600,
                nlink: 1,
                blksize: 4096,
                ..Default::default()
            }),
        }
    }

    pub(crate) fn open(
        &mut self,
        fs: Option<&'static Fs>,
        dirfd: i64,
        addr: u64,
        flags: u64,
        mode: u32,
    ) -> Result<i32, Errno> {
        let path = self.path_arg(dirfd, addr)?;
        self.open_path(fs, path, flags, mode)
    }

    /// `open` of the absolute `path`.
    pub(crate) fn open_path(
        &mut self,
        fs: Option<&'static Fs>,
        path: String,
        flags: u64,
        mode: u32,
    ) -> Result<i32, Errno> {
        let cloexec = flags & o::CLOEXEC != 0;
        let norm = lpx::path::normalise(&path);
        match norm.as_str() {
            "/dev/null" | "/dev/zero" | "/dev/urandom" | "/dev/random" => {
                let dev = match norm.as_str() {
                    "/dev/null" => Dev::Null,
                    "/dev/zero" => Dev::Zero,
                    _ => Dev::Random,
                };
                return self.fds.insert(Rc::new(RefCell::new(Open::Null { flags, dev })), cloexec);
            }
            "/dev/tty" | "/dev/console" | "/dev/stdout" | "/dev/stderr" => {
                return self.fds.insert(Rc::new(RefCell::new(Open::Console { flags })), cloexec)
            }
            _ => {}
        }
        let target = path;
        let fs = need(fs)?;
        let acc = flags & o::ACCMODE;
        let mut f = 0;
        if acc != o::WRONLY {
            f |= fs::flags::READ;
        }
        if acc != o::RDONLY {
            f |= fs::flags::WRITE;
        }
        if flags & o::CREAT != 0 {
            f |= fs::flags::CREATE;
        }
        if flags & o::EXCL != 0 {
            f |= fs::flags::EXCLUSIVE;
        }
        if flags & o::TRUNC != 0 && acc != o::RDONLY {
            f |= fs::flags::TRUNCATE;
        }
        if flags & o::APPEND != 0 {
            f |= fs::flags::APPEND;
        }
        if flags & o::DIRECTORY != 0 {
            f |= fs::flags::DIRECTORY;
        }
        if flags & o::NOFOLLOW != 0 {
            f |= fs::flags::NOFOLLOW;
        }
        let mode = (mode & 0o7777 & !self.umask) as u16;
        let file = match fs.open(&target, f, mode) {
            Err(fs::Error::IsDirectory) if acc == o::RDONLY => {
                fs.open(&target, f | fs::flags::DIRECTORY, mode).map_err(fs_errno)?
            }
            other => other.map_err(fs_errno)?,
        };
        let directory = file.kind() == fs::Kind::Directory;
        let desc = FileDesc {
            file,
            path: lpx::path::normalise(&target),
            flags: flags & !o::CLOEXEC,
            directory,
            pending: VecDeque::new(),
            cookie: 0,
            started: false,
            done: false,
            offset: 0,
        };
        self.fds.insert(Rc::new(RefCell::new(Open::File(desc))), cloexec)
    }

    /// Reads up to `len` bytes from `fd` (at `at`, or the position).
    pub(crate) fn read_fd(&mut self, fd: i64, len: usize, at: Option<u64>) -> Result<Vec<u8>, Errno> {
        let fd = self.fds.get(fd)?.clone();
        let mut open = fd.borrow_mut();
        match &mut *open {
            Open::Console { flags } | Open::Null { flags, .. } if *flags & o::ACCMODE == o::WRONLY => Err(EBADF),
            Open::Console { .. } | Open::Null { dev: Dev::Null, .. } => Ok(Vec::new()),
            Open::Null { dev: Dev::Zero, .. } => Ok(alloc::vec![0u8; len.min(IO_MAX)]),
            Open::Null { dev: Dev::Random, .. } => {
                let mut out = alloc::vec![0u8; len.min(IO_MAX)];
                random_fill(&mut out);
                Ok(out)
            }
            Open::Socket(s) if at.is_none() => s.recv(len.min(IO_MAX), 0).map(|(data, _)| data),
            Open::Socket(_) => Err(ESPIPE),
            Open::Pipe(end) => end.read(len),
            Open::Proc(f) => f.read(len.min(IO_MAX), at),
            Open::File(f) => {
                if f.directory {
                    return Err(EISDIR);
                }
                if f.flags & o::ACCMODE == o::WRONLY {
                    return Err(EBADF);
                }
                let mut out = alloc::vec![0u8; len.min(IO_MAX)];
                let mut done = 0;
                while done < out.len() {
                    let n = match at {
                        Some(offset) => f.file.read_at(offset + done as u64, &mut out[done..]),
                        None => f.file.read(&mut out[done..]),
                    }
                    .map_err(fs_errno)?;
                    if n == 0 {
                        break;
                    }
                    done += n;
                }
                out.truncate(done);
                Ok(out)
            }
        }
    }

    pub(crate) fn read(&mut self, fd: i64, buf: u64, len: usize, at: Option<u64>) -> Result<usize, Errno> {
        let len = len.min(IO_MAX);
        self.check(buf, len as u64, true)?;
        let data = self.read_fd(fd, len, at)?;
        self.write_mem(buf, &data)?;
        Ok(data.len())
    }

    pub(crate) fn lseek(&mut self, fd: i64, offset: i64, whence: u64) -> Result<u64, Errno> {
        let fd = self.fds.get(fd)?.clone();
        let mut open = fd.borrow_mut();
        match &mut *open {
            Open::Console { .. } | Open::Pipe(_) | Open::Socket(_) => Err(ESPIPE),
            Open::Null { .. } => Ok(0),
            Open::Proc(f) => f.seek(offset, whence),
            Open::File(f) if f.directory => {
                if whence == 0 && offset == 0 {
                    f.pending.clear();
                    f.cookie = 0;
                    f.started = false;
                    f.done = false;
                    f.offset = 0;
                    Ok(0)
                } else {
                    Err(EINVAL)
                }
            }
            Open::File(f) => {
                let whence = match whence {
                    0 => fs::whence::SET,
                    1 => fs::whence::CURRENT,
                    2 => fs::whence::END,
                    _ => return Err(EINVAL),
                };
                f.file.seek(whence, offset).map_err(fs_errno)
            }
        }
    }

    pub(crate) fn getdents(&mut self, fd: i64, buf: u64, room: usize) -> Result<usize, Errno> {
        let fd = self.fds.get(fd)?.clone();
        let mut open = fd.borrow_mut();
        if let Open::Proc(d) = &mut *open {
            let out = d.getdents(room.min(IO_MAX))?;
            drop(open);
            self.write_mem(buf, &out)?;
            return Ok(out.len());
        }
        let Open::File(f) = &mut *open else { return Err(ENOTDIR) };
        if !f.directory {
            return Err(ENOTDIR);
        }
        if !f.started {
            f.started = true;
            f.pending.push_back((1, 4, Vec::from(&b"."[..])));
            f.pending.push_back((1, 4, Vec::from(&b".."[..])));
        }
        let room = room.min(IO_MAX);
        let mut out = Vec::new();
        loop {
            if f.pending.is_empty() && !f.done {
                let (entries, next) = f.file.read_dir_from(f.cookie).map_err(fs_errno)?;
                if entries.is_empty() {
                    f.done = true;
                }
                f.cookie = next;
                for e in entries {
                    f.pending.push_back((e.ino.max(1), e.kind.dtype(), e.name));
                }
            }
            let Some((ino, dtype, name)) = f.pending.front() else { break };
            if !structs::dirent64(&mut out, room, *ino, f.offset + 1, *dtype, name) {
                if out.is_empty() {
                    return Err(EINVAL);
                }
                break;
            }
            f.offset += 1;
            f.pending.pop_front();
        }
        drop(open);
        self.write_mem(buf, &out)?;
        Ok(out.len())
    }

    pub(crate) fn readlink(
        &mut self,
        fs: Option<&'static Fs>,
        dirfd: i64,
        addr: u64,
        buf: u64,
        size: u64,
    ) -> Result<usize, Errno> {
        let path = self.path_arg(dirfd, addr)?;
        // `/proc` links are `procfs.rs`'s.
        let target = need(fs)?.readlink(&path).map_err(fs_errno)?;
        if (size as i64) <= 0 {
            return Err(EINVAL);
        }
        let n = target.len().min(size as usize);
        self.write_mem(buf, &target[..n])?;
        Ok(n)
    }

    pub(crate) fn fcntl(&mut self, fd: i64, cmd: u64, arg: u64) -> Result<u64, Errno> {
        const F_DUPFD: u64 = 0;
        const F_GETFD: u64 = 1;
        const F_SETFD: u64 = 2;
        const F_GETFL: u64 = 3;
        const F_SETFL: u64 = 4;
        const F_DUPFD_CLOEXEC: u64 = 1030;
        match cmd {
            F_DUPFD | F_DUPFD_CLOEXEC => Ok(self.fds.dup(fd, arg as usize, cmd == F_DUPFD_CLOEXEC)? as u64),
            F_GETFD => Ok(self.fds.cloexec(fd)? as u64),
            F_SETFD => {
                self.fds.set_cloexec(fd, arg & 1 != 0)?;
                Ok(0)
            }
            F_GETFL => {
                let file = self.fds.get(fd)?.clone();
                let open = file.borrow();
                Ok(match &*open {
                    Open::Console { flags } | Open::Null { flags, .. } => *flags,
                    Open::Pipe(end) => end.flags,
                    Open::Socket(s) => s.flags,
                    Open::Proc(f) => f.flags | if f.entries.is_some() { o::DIRECTORY } else { 0 },
                    Open::File(f) => f.flags | if f.directory { o::DIRECTORY } else { 0 },
                })
            }
            F_SETFL => {
                // Only the status flags change (O_APPEND, O_NONBLOCK); recorded, and O_APPEND
                // keeps what the file was opened with on the server (docs/linux.md).
                let file = self.fds.get(fd)?.clone();
                let mut open = file.borrow_mut();
                let settable = o::APPEND | o::NONBLOCK;
                match &mut *open {
                    Open::Console { flags } | Open::Null { flags, .. } => {
                        *flags = (*flags & !settable) | (arg & settable)
                    }
                    Open::Pipe(end) => end.flags = (end.flags & !o::NONBLOCK) | (arg & o::NONBLOCK),
                    Open::Proc(f) => f.flags = (f.flags & !settable) | (arg & settable),
                    Open::Socket(s) => s.flags = (s.flags & !o::NONBLOCK) | (arg & o::NONBLOCK),
                    Open::File(f) => f.flags = (f.flags & !settable) | (arg & settable),
                }
                Ok(0)
            }
            _ => Err(EINVAL),
        }
    }

    /// Whether `fd` is open on the console.
    pub(crate) fn is_console(&self, fd: i64) -> bool {
        self.fds.get(fd).is_ok_and(|f| matches!(&*f.borrow(), Open::Console { .. }))
    }

    /// The path a descriptor was opened with (`fchmod`, `futimens`): a file or directory.
    pub(crate) fn fd_path(&mut self, fd: i64) -> Result<String, Errno> {
        match &*self.fds.get(fd)?.borrow() {
            Open::File(f) => Ok(f.path.clone()),
            Open::Proc(_) => Err(EPERM),
            Open::Pipe(_) | Open::Console { .. } | Open::Null { .. } | Open::Socket(_) => Err(EINVAL),
        }
    }

    /// `utimensat(dirfd, path, times, flags)` (`path` NULL: the descriptor's file, as
    /// `futimens`): whole seconds (the file system keeps no more); `UTIME_NOW`, `UTIME_OMIT`.
    pub(crate) fn utimensat(
        &mut self,
        fs: Option<&'static Fs>,
        dirfd: i64,
        path: u64,
        times: u64,
        flags: u64,
        realtime_base: u64,
    ) -> Result<u64, Errno> {
        const UTIME_NOW: u64 = (1 << 30) - 1;
        const UTIME_OMIT: u64 = (1 << 30) - 2;
        if flags & !AT_SYMLINK_NOFOLLOW != 0 {
            return Err(EINVAL);
        }
        let path = if path == 0 { self.fd_path(dirfd)? } else { self.path_arg(dirfd, path)? };
        let now = (realtime_base + sys::time_now()) / 1_000_000_000;
        let mut pick = [(now, false); 2];
        if times != 0 {
            let mut bytes = [0u8; 32];
            self.read_mem(times, &mut bytes)?;
            for (i, slot) in pick.iter_mut().enumerate() {
                let (secs, nanos) = structs::read_two_words(bytes[i * 16..i * 16 + 16].try_into().expect("16 bytes"));
                *slot = match nanos {
                    UTIME_NOW => (now, false),
                    UTIME_OMIT => (0, true),
                    n if n >= 1_000_000_000 => return Err(EINVAL),
                    _ => (secs, false),
                };
            }
        }
        let st = self.stat_path(fs, &path, flags & AT_SYMLINK_NOFOLLOW == 0)?;
        let atime = if pick[0].1 { st.atime } else { pick[0].0 };
        let mtime = if pick[1].1 { st.mtime } else { pick[1].0 };
        need(fs)?.set_times(&path, atime, mtime).map_err(fs_errno)?;
        Ok(0)
    }

    /// `prctl(option, arg)`: the process's name (`PR_SET_NAME`, `PR_GET_NAME`), and the
    /// options a runtime sets and reads back harmlessly.
    pub(crate) fn prctl(&mut self, option: u64, arg: u64) -> Result<u64, Errno> {
        const PR_SET_PDEATHSIG: u64 = 1;
        const PR_GET_PDEATHSIG: u64 = 2;
        const PR_GET_DUMPABLE: u64 = 3;
        const PR_SET_DUMPABLE: u64 = 4;
        const PR_SET_NAME: u64 = 15;
        const PR_GET_NAME: u64 = 16;
        match option {
            PR_SET_NAME => {
                let name = self.read_string(arg, 4096)?;
                self.set_comm(&name);
                Ok(0)
            }
            PR_GET_NAME => self.write_mem(arg, &self.comm.clone()).map(|()| 0),
            PR_SET_PDEATHSIG if arg <= lpx::proc::NSIG as u64 => Ok(0),
            PR_GET_PDEATHSIG => self.write_mem(arg, &0u32.to_le_bytes()).map(|()| 0),
            PR_GET_DUMPABLE => Ok(1),
            PR_SET_DUMPABLE if arg <= 1 => Ok(0),
            _ => Err(EINVAL),
        }
    }

    pub(crate) fn ioctl(&mut self, fd: i64, request: u64, arg: u64) -> Result<u64, Errno> {
        const TCGETS: u64 = 0x5401;
        const TCSETS: u64 = 0x5402;
        const TCSETSW: u64 = 0x5403;
        const TCSETSF: u64 = 0x5404;
        const TIOCGWINSZ: u64 = 0x5413;
        const FIONREAD: u64 = 0x541b;
        const FIONBIO: u64 = 0x5421;
        const FIONCLEX: u64 = 0x5450;
        const FIOCLEX: u64 = 0x5451;
        let file = self.fds.get(fd)?.clone();
        // The requests every descriptor takes: close-on-exec, and non-blocking as `F_SETFL`.
        match request {
            FIOCLEX | FIONCLEX => return self.fds.set_cloexec(fd, request == FIOCLEX).map(|()| 0),
            FIONBIO => {
                let mut on = [0u8; 4];
                self.read_mem(arg, &mut on)?;
                let flags = self.fcntl(fd, 3, 0)?;
                let flags = if on != [0; 4] { flags | o::NONBLOCK } else { flags & !o::NONBLOCK };
                return self.fcntl(fd, 4, flags);
            }
            _ => {}
        }
        if let (Open::Pipe(end), FIONREAD) = (&*file.borrow(), request) {
            let queued = end.pipe.borrow().len() as u32;
            return self.write_mem(arg, &queued.to_le_bytes()).map(|()| 0);
        }
        if !matches!(&*file.borrow(), Open::Console { .. }) {
            return Err(ENOTTY);
        }
        match request {
            TCGETS => self.write_mem(arg, &structs::termios()).map(|()| 0),
            TCSETS | TCSETSW | TCSETSF => Ok(0),
            TIOCGWINSZ => self.write_mem(arg, &structs::winsize(24, 80)).map(|()| 0),
            _ => Err(EINVAL),
        }
    }
}

/// The metadata of the device files linuxd serves itself.
pub(crate) fn device_stat(path: &str) -> Option<FileStat> {
    let (rdev, mode) = match lpx::path::normalise(path).as_str() {
        "/dev/null" => ((1 << 8) | 3, structs::S_IFCHR | 0o666),
        "/dev/zero" => ((1 << 8) | 5, structs::S_IFCHR | 0o666),
        "/dev/random" => ((1 << 8) | 8, structs::S_IFCHR | 0o666),
        "/dev/urandom" => ((1 << 8) | 9, structs::S_IFCHR | 0o666),
        "/dev/console" | "/dev/tty" => ((5 << 8) | 1, structs::S_IFCHR | 0o620),
        _ => return None,
    };
    Some(FileStat { dev: 5, ino: rdev, mode, nlink: 1, rdev, blksize: 1024, ..Default::default() })
}
