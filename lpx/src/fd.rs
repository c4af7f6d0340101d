//! A process's file-descriptor table: the lowest free number for a new descriptor, the
//! close-on-exec flag per descriptor, `dup`/`dup2`/`dup3`/`F_DUPFD`. Entries are shared open
//! file descriptions (`T` is typically an `Rc`), so duplicates share offset and flags.

use crate::errno::{Errno, EBADF, EINVAL, EMFILE};
use alloc::vec::Vec;

/// The most descriptors a process may have (`RLIMIT_NOFILE`).
pub const MAX_FDS: usize = 256;

#[derive(Clone)]
struct Slot<T> {
    file: T,
    cloexec: bool,
}

/// Descriptors 0.. to open files `T` (a clone is `fork`'s copy: the same files).
#[derive(Clone)]
pub struct FdTable<T> {
    slots: Vec<Option<Slot<T>>>,
}

impl<T: Clone> Default for FdTable<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Clone> FdTable<T> {
    pub fn new() -> Self {
        FdTable { slots: Vec::new() }
    }

    /// Installs `file` at the lowest free descriptor `>= min`.
    pub fn insert_from(&mut self, min: usize, file: T, cloexec: bool) -> Result<i32, Errno> {
        let fd = (min..MAX_FDS).find(|&fd| self.slots.get(fd).is_none_or(|s| s.is_none())).ok_or(EMFILE)?;
        self.put(fd, file, cloexec);
        Ok(fd as i32)
    }

    /// Installs `file` at the lowest free descriptor.
    pub fn insert(&mut self, file: T, cloexec: bool) -> Result<i32, Errno> {
        self.insert_from(0, file, cloexec)
    }

    fn put(&mut self, fd: usize, file: T, cloexec: bool) {
        if self.slots.len() <= fd {
            self.slots.resize_with(fd + 1, || None);
        }
        self.slots[fd] = Some(Slot { file, cloexec });
    }

    fn index(fd: i64) -> Result<usize, Errno> {
        usize::try_from(fd).ok().filter(|&f| f < MAX_FDS).ok_or(EBADF)
    }

    /// The open file of `fd`.
    pub fn get(&self, fd: i64) -> Result<&T, Errno> {
        let fd = Self::index(fd)?;
        self.slots.get(fd).and_then(|s| s.as_ref()).map(|s| &s.file).ok_or(EBADF)
    }

    /// Closes `fd`, returning its file.
    pub fn remove(&mut self, fd: i64) -> Result<T, Errno> {
        let fd = Self::index(fd)?;
        self.slots.get_mut(fd).and_then(|s| s.take()).map(|s| s.file).ok_or(EBADF)
    }

    /// `dup`/`F_DUPFD`: a new descriptor `>= min` for the file of `fd`.
    pub fn dup(&mut self, fd: i64, min: usize, cloexec: bool) -> Result<i32, Errno> {
        let file = self.get(fd)?.clone();
        if min >= MAX_FDS {
            return Err(EINVAL);
        }
        self.insert_from(min, file, cloexec)
    }

    /// `dup2`/`dup3`: `new` refers to the file of `old` (closing what `new` was); the file
    /// `new` held before, if any, is returned so the caller can drop it.
    pub fn dup_to(&mut self, old: i64, new: i64, cloexec: bool) -> Result<Option<T>, Errno> {
        let file = self.get(old)?.clone();
        let new = Self::index(new)?;
        let before = self.slots.get_mut(new).and_then(|s| s.take()).map(|s| s.file);
        self.put(new, file, cloexec);
        Ok(before)
    }

    /// The close-on-exec flag of `fd`.
    pub fn cloexec(&self, fd: i64) -> Result<bool, Errno> {
        let fd = Self::index(fd)?;
        self.slots.get(fd).and_then(|s| s.as_ref()).map(|s| s.cloexec).ok_or(EBADF)
    }

    pub fn set_cloexec(&mut self, fd: i64, on: bool) -> Result<(), Errno> {
        let fd = Self::index(fd)?;
        let slot = self.slots.get_mut(fd).and_then(|s| s.as_mut()).ok_or(EBADF)?;
        slot.cloexec = on;
        Ok(())
    }

    /// `execve`: closes the close-on-exec descriptors, returning their files.
    pub fn close_on_exec(&mut self) -> Vec<T> {
        let mut closed = Vec::new();
        for slot in self.slots.iter_mut() {
            if slot.as_ref().is_some_and(|s| s.cloexec) {
                closed.extend(slot.take().map(|s| s.file));
            }
        }
        closed
    }

    /// Every open descriptor and its file.
    pub fn iter(&self) -> impl Iterator<Item = (i32, &T)> {
        self.slots.iter().enumerate().filter_map(|(fd, s)| s.as_ref().map(|s| (fd as i32, &s.file)))
    }

    /// Closes every descriptor, returning the files.
    pub fn clear(&mut self) -> Vec<T> {
        self.slots.drain(..).flatten().map(|s| s.file).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::errno::EBADF;

    #[test]
    fn lowest_free_descriptor_and_dups() {
        let mut t: FdTable<u32> = FdTable::new();
        assert_eq!(t.insert(10, false), Ok(0));
        assert_eq!(t.insert(11, false), Ok(1));
        assert_eq!(t.insert(12, false), Ok(2));
        assert_eq!(t.remove(1), Ok(11));
        assert_eq!(t.insert(13, true), Ok(1));
        assert_eq!(t.cloexec(1), Ok(true));
        assert_eq!(t.dup(0, 0, false), Ok(3));
        assert_eq!(t.get(3), Ok(&10));
        assert_eq!(t.dup(0, 10, false), Ok(10));
        assert_eq!(t.dup_to(2, 1, false), Ok(Some(13)));
        assert_eq!(t.get(1), Ok(&12));
        assert_eq!(t.dup_to(2, 40, true), Ok(None));
        assert_eq!(t.cloexec(40), Ok(true));
        assert_eq!(t.get(-1), Err(EBADF));
        assert_eq!(t.get(1 << 40), Err(EBADF));
        assert_eq!(t.remove(7), Err(EBADF));
        assert_eq!(t.dup(99, 0, false), Err(EBADF));
        let mut copy = t.clone();
        assert_eq!(copy.close_on_exec(), [12]);
        assert_eq!(copy.iter().map(|(fd, _)| fd).collect::<Vec<_>>(), [0, 1, 2, 3, 10]);
        assert_eq!(t.get(40), Ok(&12), "the original keeps its descriptors");
    }

    #[test]
    fn the_table_is_bounded() {
        let mut t: FdTable<u8> = FdTable::new();
        for _ in 0..MAX_FDS {
            t.insert(1, false).unwrap();
        }
        assert_eq!(t.insert(1, false), Err(EMFILE));
        assert_eq!(t.clear().len(), MAX_FDS);
    }
}
