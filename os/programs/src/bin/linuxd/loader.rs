//! The loader: static x86_64 ELF programs (non-PIE and static-PIE) into a new task, with
//! the System V initial stack.

use super::*;

/// Where a spawned program's standard input and output are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stdio {
    /// The console, input included (the foreground program of the console).
    Console,
    /// The console for output; input reads as `/dev/null`.
    Output,
    /// Output and error into a pipe the client reads (`Output`); input `/dev/null`.
    Captured,
}

impl Server {
    // ---- The loader ----

    /// Starts the program at `path` for a client: a new process with the console as its
    /// standard output and error, and as its standard input with `input` (else input reads as
    /// `/dev/null`: a program run without anyone at the console sees the end of its input).
    pub(crate) fn spawn(
        &mut self,
        client: u64,
        path: &str,
        cwd: &str,
        argv: &[&[u8]],
        envp: &[&[u8]],
        stdio: Stdio,
    ) -> Result<u32, Refusal> {
        let cwd = if cwd.starts_with('/') { lpx::path::normalise(cwd) } else { String::from("/") };
        let path = lpx::path::join(&cwd, path);
        let pid = self.next_pid;
        let mut process = Process::blank(pid, client, cwd);
        let captured = match stdio {
            Stdio::Captured => {
                // The read end stays here for the client; the write end is fds 1 and 2.
                let pipe = Rc::new(RefCell::new(lpx::pipe::Pipe::new()));
                let read = pipes::PipeEnd { pipe: pipe.clone(), write: false, flags: o::RDONLY | o::NONBLOCK };
                let write = pipes::PipeEnd { pipe, write: true, flags: o::WRONLY };
                Some((read, Rc::new(RefCell::new(Open::Pipe(write)))))
            }
            _ => None,
        };
        for fd in 0..3 {
            let open = match (&captured, fd) {
                (Some((_, write)), 1 | 2) => write.clone(),
                (_, 0) if stdio != Stdio::Console => {
                    Rc::new(RefCell::new(Open::Null { flags: o::RDONLY, dev: files::Dev::Null }))
                }
                _ => Rc::new(RefCell::new(Open::Console { flags: 2 })),
            };
            process.fds.insert(open, false).map_err(|e| Refusal(e, String::from("fds")))?;
        }
        self.exec_image(&mut process, &path, argv, envp)?;
        self.next_pid += 1;
        rt::log::debug!("pid {pid}: {path} started");
        self.procs.insert(pid, process);
        if let Some((read, _)) = captured {
            self.captured.insert(pid, (client, read));
        }
        Ok(pid)
    }

    /// Loads the program at `path` (absolute) into a new task for `p` (whose `task`,
    /// `thread`, `space`, `exe` and `brk` it sets); on failure that task is gone again.
    pub(crate) fn exec_image(
        &mut self,
        p: &mut Process,
        path: &str,
        argv: &[&[u8]],
        envp: &[&[u8]],
    ) -> Result<(), Refusal> {
        let path = String::from(path);
        let fs = self.fs().ok_or_else(|| Refusal(EIO, String::from("the file-system service is unavailable")))?;
        let mut file = fs.open(&path, fs::flags::READ, 0).map_err(|e| Refusal(fs_errno(e), String::from(e.text())))?;
        if file.kind() != fs::Kind::Regular {
            return Err(Refusal(EACCES, String::from("not a regular file")));
        }
        let size = file.size_at_open();
        let mut head = alloc::vec![0u8; (size as usize).min(HEAD_MAX)];
        read_full(&mut file, 0, &mut head).map_err(|e| Refusal(fs_errno(e), String::from(e.text())))?;
        let elf = match elf::Elf::parse_with_len(&head, size) {
            Ok(elf) => elf,
            Err(elf::ElfError::Dynamic) => {
                let interp = elf::interpreter(&head).map(|p| String::from_utf8_lossy(p).into_owned());
                let interp = interp.unwrap_or_else(|| String::from("(unreadable)"));
                let present = fs.stat(&interp).is_ok();
                let why = if present {
                    format!("a dynamically linked program (interpreter {interp}); only static programs run")
                } else {
                    format!(
                        "a dynamically linked program whose interpreter {interp} is missing; only static programs run"
                    )
                };
                return Err(Refusal(ENOEXEC, why));
            }
            Err(e) => return Err(Refusal(ENOEXEC, format!("{e}"))),
        };
        let bias = if elf.position_independent { PIE_BASE } else { 0 };
        let mut image_end = 0u64;
        for s in elf.segments() {
            let end = s.vaddr.checked_add(s.mem_len).and_then(|e| e.checked_add(bias));
            match end {
                Some(e) if e <= MMAP_FLOOR => image_end = image_end.max(e),
                _ => return Err(Refusal(ENOEXEC, String::from("a segment lies outside the program area"))),
            }
        }
        let name = procs::task_name(&path);
        if !memory::room_for(PROCESS_TASK_QUOTA) {
            return Err(Refusal(ENOMEM, String::from("linuxd's quota is exhausted")));
        }
        p.task = sys::task_create(PROCESS_TASK_QUOTA, 64, PROCESS_PRIORITY, name)?;
        p.set_comm(path.rsplit('/').next().unwrap_or("").as_bytes());
        p.exe = path;
        p.cmdline = argv.iter().flat_map(|a| a.iter().copied().chain([0])).collect();
        p.space = Space::new();
        let loaded = self.load(p, &mut file, &elf, bias, image_end, argv, envp);
        if loaded.is_err() {
            p.teardown_task();
        }
        loaded
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn load(
        &mut self,
        p: &mut Process,
        file: &mut fs::File<'static>,
        elf: &elf::Elf,
        bias: u64,
        image_end: u64,
        argv: &[&[u8]],
        envp: &[&[u8]],
    ) -> Result<(), Refusal> {
        let identity = file.stat().ok().map(|s| (s.mount, s.ino, s.size, s.mtime, s.ctime));
        // Segments sharing pages form one region with the union of their permissions.
        let mut groups: Vec<(u64, u64, u32, Vec<elf::Segment>)> = Vec::new();
        for s in elf.segments() {
            let (start, end) = s.pages();
            match groups.last_mut() {
                Some(g) if start + bias < g.1 => {
                    g.1 = g.1.max(end + bias);
                    g.2 |= s.flags;
                    g.3.push(s);
                }
                _ => groups.push((start + bias, end + bias, s.flags, alloc::vec![s])),
            }
        }
        for (start, end, flags, segments) in &groups {
            let mut prot = 0;
            if flags & elf::PF_R != 0 {
                prot |= PROT_READ;
            }
            if flags & elf::PF_W != 0 {
                prot |= PROT_WRITE | PROT_READ;
            }
            if flags & elf::PF_X != 0 {
                prot |= PROT_EXEC | PROT_READ;
            }
            // The pages with file bytes are committed now; the zero pages after them (.bss)
            // are a region of their own, committed on first touch like the heap.
            let file_end = segments
                .iter()
                .map(|s| (s.vaddr + bias + s.file_len).next_multiple_of(PAGE))
                .max()
                .unwrap_or(*start)
                .clamp(*start, *end);
            let misplaced = |_| Refusal(ENOEXEC, String::from("overlapping or misplaced segments"));
            if file_end < *end {
                p.space.add(file_end, end - file_end, prot, Kind::Anonymous, BSS_CHUNK).map_err(misplaced)?;
            }
            if file_end == *start {
                continue;
            }
            p.space.add(*start, file_end - start, prot, Kind::Image, 0).map_err(misplaced)?;
            // Read-only groups come from (and go to) the image cache.
            let key = identity
                .filter(|_| prot & PROT_WRITE == 0)
                .map(|(mount, ino, size, mtime, ctime)| (mount, ino, size, mtime, ctime, *start, file_end - start));
            if let Some(cached) = key.as_ref().and_then(memory::cached_image) {
                p.share(cached, prot).map_err(|e| Refusal(e, String::from("out of memory")))?;
                continue;
            }
            let chunk =
                p.commit(*start, file_end - start, prot).map_err(|e| Refusal(e, String::from("out of memory")))?;
            for s in segments {
                let at = chunk.mirror + (s.vaddr + bias - start);
                // Safety: the mirror of this chunk is mapped read-write here for `file_end -
                // start` bytes, and the segment's file bytes lie inside them (checked by `elf`).
                let dest = unsafe { core::slice::from_raw_parts_mut(at as *mut u8, s.file_len as usize) };
                read_full(file, s.offset, dest).map_err(|e| Refusal(fs_errno(e), String::from(e.text())))?;
            }
            if let Some(key) = key {
                memory::cache_image(key, chunk);
            }
        }
        // The brk heap after the program, the stack at the top.
        p.brk_start = image_end.next_multiple_of(PAGE);
        p.brk = p.brk_start;
        p.space
            .add(p.brk_start, BRK_MAX, PROT_READ | PROT_WRITE, Kind::Brk, BRK_CHUNK)
            .map_err(|_| Refusal(ENOEXEC, String::from("no room for the heap")))?;
        p.space.set_limit(p.brk_start, p.brk_start);
        p.space
            .add(STACK_TOP - STACK_SIZE, STACK_SIZE, PROT_READ | PROT_WRITE, Kind::Stack, STACK_CHUNK)
            .map_err(|_| Refusal(ENOEXEC, String::from("no room for the stack")))?;
        let mut random = [0u8; 16];
        self.rng.stir(rt::rdtsc());
        self.rng.fill(&mut random);
        let (_, phnum) = elf.program_headers();
        let phdr = elf.phdr_vaddr().map_or(0, |v| v + bias);
        let entry = elf.entry + bias;
        let auxv = [
            (lpx::stack::AT_PHDR, phdr),
            (lpx::stack::AT_PHENT, 56),
            (lpx::stack::AT_PHNUM, phnum as u64),
            (lpx::stack::AT_PAGESZ, PAGE),
            (lpx::stack::AT_BASE, 0),
            (lpx::stack::AT_FLAGS, 0),
            (lpx::stack::AT_ENTRY, entry),
            (lpx::stack::AT_UID, 0),
            (lpx::stack::AT_EUID, 0),
            (lpx::stack::AT_GID, 0),
            (lpx::stack::AT_EGID, 0),
            (lpx::stack::AT_SECURE, 0),
            (lpx::stack::AT_CLKTCK, 100),
            (lpx::stack::AT_HWCAP, self.hwcap),
            (lpx::stack::AT_HWCAP2, 0),
        ];
        let spec =
            lpx::stack::StackSpec { argv, envp, execfn: p.exe.as_bytes(), platform: b"x86_64", random, auxv: &auxv };
        let stack = lpx::stack::build(STACK_TOP, STACK_SIZE / 4, &spec)
            .map_err(|_| Refusal(E2BIG, String::from("arguments and environment too long")))?;
        p.write_mem(stack.base, &stack.bytes).map_err(|e| Refusal(e, String::from("cannot write the stack")))?;
        self.attach(p.task, p.pid)?;
        p.thread = sys::thread_create_in(p.task, entry, stack.rsp, PROCESS_PRIORITY, 0)?;
        Ok(())
    }

    /// Makes linuxd the personality and the fault supervisor of `task`, process `pid`.
    pub(crate) fn attach(&self, task: Handle, pid: u32) -> Result<(), sys::Error> {
        let personality = sys::cap_duplicate(self.endpoint, rights::SEND, BADGE_SYSCALL | pid as u64)?;
        let set = sys::task_set_personality(task, personality);
        let _ = sys::cap_close(personality);
        set?;
        let supervisor = sys::cap_duplicate(self.endpoint, rights::SEND, BADGE_FAULT | pid as u64)?;
        let set = sys::task_set_supervisor(task, supervisor);
        let _ = sys::cap_close(supervisor);
        set
    }
}
