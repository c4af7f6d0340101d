//! A process's memory: chunks committed on first touch (memory objects charged to the
//! process, mirrored here read-write), copying in and out of it, `brk`, `mmap`, teardown.

use super::*;

impl Process {
    /// Commits `[start, start + len)` (a chunk of a region): a memory object charged to the
    /// process, mapped there with `prot` and here read-write.
    pub(crate) fn commit(&mut self, start: u64, len: u64, prot: u32) -> Result<Chunk, Errno> {
        let (memory, mirror) = new_object(len)?;
        if sys::memory_map(memory, self.task, start, 0, len, perms(prot)).is_err() {
            free_memory(memory);
            return Err(ENOMEM);
        }
        let chunk = Chunk { start, len, mirror, memory, cow: false };
        self.space.commit(chunk);
        Ok(chunk)
    }

    /// Maps `chunk`, a read-only chunk of another process (a `fork` parent's), into this one
    /// too: the same memory object, freed when the last process using it lets go.
    pub(crate) fn share(&mut self, chunk: Chunk, prot: u32) -> Result<(), Errno> {
        debug_assert!(prot & PROT_WRITE == 0);
        sys::memory_map(chunk.memory, self.task, chunk.start, 0, chunk.len, perms(prot)).map_err(|_| ENOMEM)?;
        *shares().entry(chunk.memory).or_insert(0) += 1;
        self.space.commit(chunk);
        Ok(())
    }

    /// `fork`'s copy-on-write: the writable `chunk` of this process becomes shared with a child
    /// (which maps it too): mapped read-only here from now on, one more reference.
    pub(crate) fn share_cow(&mut self, chunk: Chunk, prot: u32) -> Result<Chunk, Errno> {
        let cow = Chunk { cow: true, ..chunk };
        if !chunk.cow {
            let _ = sys::memory_unmap(self.task, chunk.start);
            sys::memory_map(chunk.memory, self.task, chunk.start, 0, chunk.len, perms(prot & !PROT_WRITE))
                .map_err(|_| ENOMEM)?;
            self.space.commit(cow);
        }
        *shares().entry(chunk.memory).or_insert(0) += 1;
        Ok(cow)
    }

    /// Maps another process's copy-on-write `chunk` into this one (read-only until written).
    pub(crate) fn map_cow(&mut self, chunk: Chunk, prot: u32) -> Result<(), Errno> {
        sys::memory_map(chunk.memory, self.task, chunk.start, 0, chunk.len, perms(prot & !PROT_WRITE))
            .map_err(|_| ENOMEM)?;
        self.space.commit(chunk);
        Ok(())
    }

    /// Before a write at `addr`: a copy-on-write chunk there becomes this process's own (a copy
    /// if others still use the memory, else the same memory mapped writable). `Ok(false)` if
    /// there was nothing to do.
    pub(crate) fn break_cow(&mut self, addr: u64) -> Result<bool, Errno> {
        let Some(c) = self.space.chunk_at(addr).filter(|c| c.cow) else { return Ok(false) };
        let prot = self.space.prot_at(addr).unwrap_or(0);
        if prot & PROT_WRITE == 0 {
            return Ok(false);
        }
        let shared = shares().contains_key(&c.memory);
        let own = if shared {
            let (memory, mirror) = new_object(c.len)?;
            // Safety: both mirrors are mapped read-write here for `c.len` bytes, distinct objects.
            unsafe { core::ptr::copy_nonoverlapping(c.mirror as *const u8, mirror as *mut u8, c.len as usize) };
            Chunk { start: c.start, len: c.len, mirror, memory, cow: false }
        } else {
            Chunk { cow: false, ..c }
        };
        let _ = sys::memory_unmap(self.task, c.start);
        if sys::memory_map(own.memory, self.task, c.start, 0, c.len, perms(prot)).is_err() {
            if shared {
                free_memory(own.memory);
            }
            return Err(ENOMEM);
        }
        if shared {
            free_memory(c.memory);
        }
        self.space.commit(own);
        Ok(true)
    }

    /// Gives this process its own copies of the copy-on-write chunks that overlap
    /// `[start, start + len)` without lying inside it (their part in the range is about to be
    /// zeroed through the mirror).
    fn break_cow_at_edges(&mut self, start: u64, len: u64) {
        // Only the chunks holding the range's first and last byte can straddle its edges.
        let end = start.saturating_add(len);
        for at in [start, end.saturating_sub(1)] {
            let straddles =
                self.space.chunk_at(at).is_some_and(|c| c.cow && !(start <= c.start && c.start + c.len <= end));
            if straddles {
                let _ = self.break_cow(at);
            }
        }
    }

    /// The mirror address of `addr` and the contiguous bytes there, committing if needed.
    pub(crate) fn locate(&mut self, addr: u64, write: bool) -> Result<(u64, u64), Errno> {
        for _ in 0..2 {
            match self.space.access(addr, write) {
                Access::Committed { cow: true, .. } if write => {
                    self.break_cow(addr)?;
                }
                Access::Committed { mirror, len, .. } => return Ok((mirror, len)),
                Access::Commit { start, len, prot } => {
                    self.commit(start, len, prot)?;
                }
                Access::Fault => return Err(EFAULT),
            }
        }
        Err(EFAULT)
    }

    /// Checks that `[addr, addr + len)` is accessible (committing what it must).
    pub(crate) fn check(&mut self, addr: u64, len: u64, write: bool) -> Result<(), Errno> {
        let end = addr.checked_add(len).ok_or(EFAULT)?;
        let mut at = addr;
        while at < end {
            let (_, n) = self.locate(at, write)?;
            at += n;
        }
        Ok(())
    }

    pub(crate) fn read_mem(&mut self, addr: u64, out: &mut [u8]) -> Result<(), Errno> {
        addr.checked_add(out.len() as u64).ok_or(EFAULT)?;
        let mut done = 0;
        while done < out.len() {
            let (mirror, n) = self.locate(addr + done as u64, false)?;
            let n = (n as usize).min(out.len() - done);
            // Safety: `locate` found `n` committed bytes at `mirror`, mapped read-write in this
            // task for as long as the chunk exists (only linuxd releases chunks).
            unsafe { core::ptr::copy_nonoverlapping(mirror as *const u8, out[done..].as_mut_ptr(), n) };
            done += n;
        }
        Ok(())
    }

    pub(crate) fn write_mem(&mut self, addr: u64, data: &[u8]) -> Result<(), Errno> {
        self.check(addr, data.len() as u64, true)?;
        let mut done = 0;
        while done < data.len() {
            let (mirror, n) = self.locate(addr + done as u64, true)?;
            let n = (n as usize).min(data.len() - done);
            // Safety: as in `read_mem`; the region allows writing.
            unsafe { core::ptr::copy_nonoverlapping(data[done..].as_ptr(), mirror as *mut u8, n) };
            done += n;
        }
        Ok(())
    }

    /// `len` bytes (at most `IO_MAX`) of the process at `addr`.
    pub(crate) fn read_user(&mut self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        let mut out = alloc::vec![0u8; len.min(IO_MAX)];
        self.read_mem(addr, &mut out)?;
        Ok(out)
    }

    /// A NUL-terminated string at `addr` (at most `PATH_MAX` bytes).
    pub(crate) fn read_cstr(&mut self, addr: u64) -> Result<Vec<u8>, Errno> {
        self.read_string(addr, lpx::path::PATH_MAX)
    }

    /// Sets the name (`comm`): at most 15 bytes of `name`.
    pub(crate) fn set_comm(&mut self, name: &[u8]) {
        let n = name.len().min(15);
        self.comm = [0; 16];
        self.comm[..n].copy_from_slice(&name[..n]);
    }

    /// The fourth to sixth system-call arguments (r10, r8, r9) of the thread being served.
    pub(crate) fn more_args(&self) -> Result<[u64; 3], Errno> {
        let r = sys::thread_regs(self.thread).map_err(|_| EFAULT)?;
        Ok([r[regs::R10], r[regs::R8], r[regs::R9]])
    }

    /// The 8-byte word at `addr`.
    pub(crate) fn read_u64(&mut self, addr: u64) -> Result<u64, Errno> {
        let mut word = [0u8; 8];
        self.read_mem(addr, &mut word)?;
        Ok(u64::from_le_bytes(word))
    }

    /// A NUL-terminated string at `addr` of fewer than `max` bytes (`ENAMETOOLONG` otherwise).
    pub(crate) fn read_string(&mut self, addr: u64, max: usize) -> Result<Vec<u8>, Errno> {
        let mut out = Vec::new();
        let mut at = addr;
        loop {
            let (mirror, n) = self.locate(at, false)?;
            let n = (n as usize).min(max - out.len());
            // Safety: as in `read_mem`.
            let bytes = unsafe { core::slice::from_raw_parts(mirror as *const u8, n) };
            if let Some(end) = bytes.iter().position(|b| *b == 0) {
                out.extend_from_slice(&bytes[..end]);
                return Ok(out);
            }
            out.extend_from_slice(bytes);
            if out.len() >= max {
                return Err(ENAMETOOLONG);
            }
            at += n as u64;
        }
    }

    pub(crate) fn iovecs(&mut self, addr: u64, count: u64) -> Result<Vec<(u64, u64)>, Errno> {
        if count > 1024 {
            return Err(EINVAL);
        }
        let bytes = self.read_user(addr, count as usize * 16)?;
        Ok(structs::iovecs(&bytes))
    }

    /// `brk`: the new break, or the old one when the request cannot be met.
    pub(crate) fn set_brk(&mut self, addr: u64) -> u64 {
        if addr < self.brk_start || addr > self.brk_start + BRK_MAX {
            return self.brk;
        }
        self.break_cow_at_edges(addr, self.brk.saturating_sub(addr).max(1));
        let released = self.space.set_limit(self.brk_start, addr);
        self.release(released);
        self.brk = addr;
        addr
    }

    pub(crate) fn release(&mut self, released: lpx::mem::Released) {
        for c in released.chunks {
            free_memory(c.memory);
        }
        for (mirror, len) in released.zero {
            // Safety: a mirror range of a chunk that stays committed and mapped here.
            unsafe { core::ptr::write_bytes(mirror as *mut u8, 0, len as usize) };
        }
    }

    pub(crate) fn release_range(&mut self, start: u64, len: u64) {
        self.break_cow_at_edges(start, len);
        let released = self.space.unmap(start, len);
        self.release(released);
    }

    /// `mremap(old, old_len, new_len, flags, new_addr)`: shrinking keeps the start and frees
    /// the tail; growing with `MREMAP_MAYMOVE` makes a new anonymous mapping with the same
    /// protection, copies what was committed and frees the old one (no growing in place, and
    /// no `MREMAP_FIXED`: `ENOMEM` / `EINVAL`, which callers such as glibc's `realloc` handle).
    pub(crate) fn mremap(&mut self, old: u64, old_len: u64, new_len: u64, flags: u64) -> Result<u64, Errno> {
        const MREMAP_MAYMOVE: u64 = 1;
        const MREMAP_FIXED: u64 = 2;
        const MAP_PRIVATE: u64 = 2;
        const MAP_ANONYMOUS: u64 = 0x20;
        if !old.is_multiple_of(PAGE) || new_len == 0 || flags & !(MREMAP_MAYMOVE | MREMAP_FIXED) != 0 {
            return Err(EINVAL);
        }
        if flags & MREMAP_FIXED != 0 {
            return Err(EINVAL);
        }
        let (old_len, new_len) = (old_len.next_multiple_of(PAGE), new_len.next_multiple_of(PAGE));
        let region = self.space.regions().find(|r| r.start <= old && old < r.end).map(|r| (r.end, r.prot, r.kind));
        let Some((end, prot, kind)) = region else { return Err(EFAULT) };
        if old.saturating_add(old_len) > end || kind != Kind::Anonymous {
            return Err(EFAULT);
        }
        if new_len <= old_len {
            if new_len < old_len {
                self.release_range(old + new_len, old_len - new_len);
            }
            return Ok(old);
        }
        if flags & MREMAP_MAYMOVE == 0 {
            return Err(ENOMEM);
        }
        let new = self.mmap(0, new_len, prot, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)?;
        let old_end = old + old_len;
        let committed: Vec<Chunk> =
            self.space.chunks().filter(|c| c.start < old_end && old < c.start + c.len).copied().collect();
        for c in committed {
            let (from, to) = (c.start.max(old), (c.start + c.len).min(old_end));
            // Safety: the chunk's mirror is mapped read-write in linuxd for `c.len` bytes while
            // it is committed (it is, until the old range is released below); [from, to) lies
            // within the chunk.
            let bytes = unsafe {
                core::slice::from_raw_parts((c.mirror + (from - c.start)) as *const u8, (to - from) as usize)
            };
            let bytes = bytes.to_vec();
            if let Err(e) = self.write_mem(new + (from - old), &bytes) {
                self.release_range(new, new_len);
                return Err(e);
            }
        }
        self.release_range(old, old_len);
        Ok(new)
    }

    pub(crate) fn mmap(
        &mut self,
        addr: u64,
        len: u64,
        prot: u32,
        flags: u64,
        fd: i64,
        offset: u64,
    ) -> Result<u64, Errno> {
        const MAP_SHARED: u64 = 1;
        const MAP_PRIVATE: u64 = 2;
        const MAP_FIXED: u64 = 0x10;
        const MAP_ANONYMOUS: u64 = 0x20;
        const MAP_FIXED_NOREPLACE: u64 = 0x100000;
        if len == 0 || !offset.is_multiple_of(PAGE) || flags & (MAP_SHARED | MAP_PRIVATE) == 0 {
            return Err(EINVAL);
        }
        let len = len.checked_next_multiple_of(PAGE).filter(|l| *l <= (1 << 40)).ok_or(ENOMEM)?;
        let start = if flags & (MAP_FIXED | MAP_FIXED_NOREPLACE) != 0 {
            if !addr.is_multiple_of(PAGE) || addr == 0 {
                return Err(EINVAL);
            }
            if !self.space.is_free(addr, len) {
                if flags & MAP_FIXED_NOREPLACE != 0 {
                    return Err(EEXIST);
                }
                self.release_range(addr, len);
                if !self.space.is_free(addr, len) {
                    return Err(ENOMEM);
                }
            }
            addr
        } else {
            self.space.find_free_below(MMAP_TOP, MMAP_FLOOR, len).ok_or(ENOMEM)?
        };
        let chunk = if len <= 4 * MMAP_CHUNK { 0 } else { MMAP_CHUNK };
        if flags & MAP_ANONYMOUS != 0 {
            self.space.add(start, len, prot, Kind::Anonymous, chunk).map_err(|_| ENOMEM)?;
            return Ok(start);
        }
        // A file: copied into a private mapping (shared writable mappings are not supported).
        if flags & MAP_SHARED != 0 && prot & PROT_WRITE != 0 {
            return Err(ENODEV);
        }
        let file = self.fds.get(fd)?.clone();
        let mut open = file.borrow_mut();
        let Open::File(f) = &mut *open else { return Err(ENODEV) };
        if f.directory {
            return Err(ENODEV);
        }
        self.space.add(start, len, prot, Kind::File, 0).map_err(|_| ENOMEM)?;
        let chunk = match self.commit(start, len, prot) {
            Ok(c) => c,
            Err(e) => {
                self.space.unmap(start, len);
                return Err(e);
            }
        };
        // Safety: the mirror was just mapped read-write here for `len` bytes.
        let dest = unsafe { core::slice::from_raw_parts_mut(chunk.mirror as *mut u8, len as usize) };
        if let Err(e) = read_full(&mut f.file, offset, dest) {
            drop(open);
            self.release_range(start, len);
            return Err(fs_errno(e));
        }
        Ok(start)
    }

    /// `mprotect(start, len, prot)`: the regions' protection, and the mappings of what is
    /// committed there (a chunk made inaccessible is unmapped but kept).
    pub(crate) fn mprotect(&mut self, start: u64, len: u64, prot: u64) -> Result<u64, Errno> {
        const PROT_GROWSDOWN: u64 = 0x0100_0000;
        const PROT_GROWSUP: u64 = 0x0200_0000;
        let prot = prot & !(PROT_GROWSDOWN | PROT_GROWSUP);
        if prot & !u64::from(PROT_READ | PROT_WRITE | PROT_EXEC) != 0 || start.checked_add(len).is_none() {
            return Err(EINVAL);
        }
        let (changed, touched) = self.space.protect(start, len.next_multiple_of(PAGE), prot as u32);
        if !touched && len != 0 {
            return Err(ENOMEM);
        }
        for c in changed {
            let _ = sys::memory_unmap(self.task, c.start);
            // A copy-on-write chunk stays read-only until written.
            let prot = if c.cow { prot as u32 & !PROT_WRITE } else { prot as u32 };
            if prot != 0 {
                sys::memory_map(c.memory, self.task, c.start, 0, c.len, perms(prot)).map_err(|_| ENOMEM)?;
            }
        }
        Ok(0)
    }

    /// Ends the task and frees the memory (linuxd's objects), keeping the descriptors.
    pub(crate) fn teardown_task(&mut self) {
        free_image(self.task, self.thread, core::mem::replace(&mut self.space, Space::new()));
        self.task = 0;
        self.thread = 0;
    }

    /// A process with no task yet (the loader makes it), in its own group and session.
    pub(crate) fn blank(pid: u32, client: u64, cwd: String) -> Process {
        Process {
            pid,
            ppid: 0,
            pgid: pid,
            sid: pid,
            client,
            exe: String::new(),
            tid: pid,
            thread: 0,
            clear_tid: 0,
            others: Vec::new(),
            comm: [0; 16],
            cmdline: Vec::new(),
            started: sys::time_now(),
            task: 0,
            space: Space::new(),
            fds: FdTable::new(),
            cwd,
            brk_start: 0,
            brk: 0,
            umask: 0o022,
            signals: Signals::new(),
            execed: false,
            lent_by: None,
        }
    }
}

/// The mapping permissions of protection `prot`.
fn perms(prot: u32) -> u64 {
    let mut perms = map::READ;
    if prot & PROT_WRITE != 0 {
        perms |= map::WRITE;
    }
    if prot & PROT_EXEC != 0 {
        perms |= map::EXECUTE;
    }
    perms
}

/// How many users beyond the first each shared memory object has (read-only chunks shared by
/// `fork` and by the image cache).
struct Shares(RefCell<BTreeMap<Handle, u32>>);

// Safety: linuxd has one thread; the maps are only reached through `shares` and `images`,
// never across threads.
unsafe impl Sync for Shares {}

static SHARES: Shares = Shares(RefCell::new(BTreeMap::new()));

fn shares() -> core::cell::RefMut<'static, BTreeMap<Handle, u32>> {
    SHARES.0.borrow_mut()
}

/// A program file's read-only segment group: the file (mount, inode, size, modification and
/// change times) and the group's address and length.
pub(crate) type ImageKey = (u32, u64, u64, u64, u64, u64, u64);

/// The image cache: read-only segments of programs run before, kept (one reference each) so
/// that the next `execve` of the same file maps them instead of reading them again.
struct Images(RefCell<BTreeMap<ImageKey, Chunk>>);

// Safety: as for `Shares`.
unsafe impl Sync for Images {}

static IMAGES: Images = Images(RefCell::new(BTreeMap::new()));

/// The cached chunk for `key`, if any.
pub(crate) fn cached_image(key: &ImageKey) -> Option<Chunk> {
    IMAGES.0.borrow().get(key).copied()
}

/// Keeps `chunk` (just loaded, read-only) in the image cache.
pub(crate) fn cache_image(key: ImageKey, chunk: Chunk) {
    if IMAGES.0.borrow_mut().insert(key, chunk).is_none() {
        *shares().entry(chunk.memory).or_insert(0) += 1;
    }
}

/// Empties the image cache (memory is short): images no process uses are freed.
pub(crate) fn flush_images() -> bool {
    let images = core::mem::take(&mut *IMAGES.0.borrow_mut());
    let any = !images.is_empty();
    for chunk in images.into_values() {
        free_memory(chunk.memory);
    }
    any
}

/// Whether linuxd can give `bytes` more of its quota to processes (flushing the image cache
/// if that makes room).
pub(crate) fn room_for(bytes: u64) -> bool {
    let fits = || sys::task_info(0).is_ok_and(|me| me.quota.saturating_sub(me.used) >= bytes + LINUXD_RESERVE);
    fits() || (flush_images() && fits())
}

/// Lets go of a memory object of linuxd's: if no other process uses it, destroys it
/// (unmapping it from the process and from here, its quota back to linuxd) and closes the
/// handle. (A process that still maps it keeps its mapping until its task ends.)
/// A new memory object of `len` bytes, linuxd's (charged to its quota, of which what it keeps
/// for itself is never given out), mapped read-write here at a fresh mirror address.
fn new_object(len: u64) -> Result<(Handle, u64), Errno> {
    if !room_for(len) {
        return Err(ENOMEM);
    }
    let memory = sys::memory_create(0, len).map_err(|_| ENOMEM)?;
    let mirror = mirror_alloc(len).and_then(|mirror| {
        sys::memory_map(memory, 0, mirror, 0, len, map::READ | map::WRITE).map(|()| mirror).map_err(|_| ENOMEM)
    });
    match mirror {
        Ok(mirror) => Ok((memory, mirror)),
        Err(e) => {
            free_memory(memory);
            Err(e)
        }
    }
}

pub(crate) fn free_memory(memory: Handle) {
    {
        let mut shares = shares();
        if let Some(count) = shares.get_mut(&memory) {
            *count -= 1;
            if *count == 0 {
                shares.remove(&memory);
            }
            return;
        }
    }
    let _ = sys::cap_revoke(memory);
    let _ = sys::cap_close(memory);
}

/// Ends `task` (0: none) and frees `thread`'s handle and the memory of `space`.
pub(crate) fn free_image(task: Handle, thread: Handle, space: Space) {
    if task != 0 {
        let _ = sys::cap_revoke(task);
        let _ = sys::cap_close(task);
    }
    for c in space.chunks() {
        free_memory(c.memory);
    }
    if thread != 0 {
        let _ = sys::cap_close(thread);
    }
}
