//! Capabilities: what a task may do, as handles in its own table.
//!
//! A task names kernel objects only through handles, indexes into its capability table. Each
//! capability carries the object it designates, the rights it confers and a badge (a word the
//! holder cannot see or change, delivered to the receiver of a message sent through it, so a
//! server can tell its clients apart). A handle is the slot's index and generation packed into
//! 32 bits: a handle of a closed slot stays invalid even after the slot is reused (for 2^12
//! reuses), so a stale handle is an error, never another object.

use alloc::vec::Vec;
use core::fmt;

/// Rights a capability confers. Operations list the rights they need in docs/abi.md.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Rights(pub u32);

impl Rights {
    pub const NONE: Rights = Rights(0);
    /// Read a memory object (map readable).
    pub const READ: Rights = Rights(abi::syscall::rights::READ);
    /// Write a memory object (map writable).
    pub const WRITE: Rights = Rights(abi::syscall::rights::WRITE);
    /// Execute from a memory object (map executable).
    pub const EXECUTE: Rights = Rights(abi::syscall::rights::EXECUTE);
    /// Call an endpoint; signal a notification.
    pub const SEND: Rights = Rights(abi::syscall::rights::SEND);
    /// Receive on an endpoint; wait on a notification.
    pub const RECEIVE: Rights = Rights(abi::syscall::rights::RECEIVE);
    /// Transfer capabilities in messages through an endpoint.
    pub const GRANT: Rights = Rights(abi::syscall::rights::GRANT);
    /// Make copies of the capability (always with at most its rights).
    pub const DUPLICATE: Rights = Rights(abi::syscall::rights::DUPLICATE);
    /// Destroy the object for every holder.
    pub const REVOKE: Rights = Rights(abi::syscall::rights::REVOKE);
    /// Control a task or thread: start, stop, change priority, read and write registers.
    pub const CONTROL: Rights = Rights(abi::syscall::rights::CONTROL);
    pub const ALL: Rights = Rights(abi::syscall::rights::ALL);

    pub const fn contains(self, other: Rights) -> bool {
        self.0 & other.0 == other.0
    }
    pub const fn intersect(self, other: Rights) -> Rights {
        Rights(self.0 & other.0)
    }
    pub const fn union(self, other: Rights) -> Rights {
        Rights(self.0 | other.0)
    }
    /// Rights from a user-supplied word; unknown bits are dropped.
    pub const fn from_bits_truncate(bits: u64) -> Rights {
        Rights(bits as u32 & Rights::ALL.0)
    }
}

impl core::ops::BitOr for Rights {
    type Output = Rights;
    fn bitor(self, other: Rights) -> Rights {
        self.union(other)
    }
}

impl fmt::Debug for Rights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 9] = ["r", "w", "x", "send", "recv", "grant", "dup", "revoke", "ctl"];
        let mut first = true;
        for (i, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << i) != 0 {
                write!(f, "{}{name}", if first { "" } else { "+" })?;
                first = false;
            }
        }
        if first {
            write!(f, "none")?;
        }
        Ok(())
    }
}

/// A user-visible capability handle. 0 is never a valid handle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Handle(pub u32);

impl Handle {
    pub const NULL: Handle = Handle(0);
}

const INDEX_BITS: u32 = 20;
const INDEX_MASK: u32 = (1 << INDEX_BITS) - 1;
const GENERATION_MASK: u32 = (1 << (32 - INDEX_BITS)) - 1;
/// The most slots a table can ever have (slot numbers 1 ..= MAX_SLOTS).
pub const MAX_SLOTS: usize = INDEX_MASK as usize;

impl Handle {
    /// The handle of slot `index` at `generation` (tests build handles they expect).
    #[cfg(test)]
    pub const fn new_for_tests(index: usize, generation: u32) -> Handle {
        Handle((index as u32 + 1) | (generation & GENERATION_MASK) << INDEX_BITS)
    }
    fn new(index: usize, generation: u32) -> Handle {
        Handle((index as u32 + 1) | (generation & GENERATION_MASK) << INDEX_BITS)
    }
    fn index(self) -> Option<usize> {
        (self.0 & INDEX_MASK).checked_sub(1).map(|i| i as usize)
    }
    fn generation(self) -> u32 {
        self.0 >> INDEX_BITS
    }
}

/// A capability: an object, rights, a badge.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Capability<O> {
    pub object: O,
    pub rights: Rights,
    pub badge: u64,
}

/// Why a capability operation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapError {
    /// Not a handle of a capability in this table.
    InvalidHandle,
    /// The capability lacks rights the operation needs.
    MissingRights { has: Rights, needs: Rights },
    /// The table is full (its limit is reached).
    TableFull,
}

impl fmt::Display for CapError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CapError::InvalidHandle => write!(f, "invalid capability handle"),
            CapError::MissingRights { has, needs } => write!(f, "capability has rights {has:?}, needs {needs:?}"),
            CapError::TableFull => write!(f, "capability table full"),
        }
    }
}

struct Entry<O> {
    generation: u32,
    cap: Option<Capability<O>>,
}

/// A task's capability table, with a limit on its size.
pub struct CapTable<O> {
    entries: Vec<Entry<O>>,
    free: Vec<usize>,
    len: usize,
    limit: usize,
}

impl<O: Copy> CapTable<O> {
    /// An empty table that holds at most `limit` capabilities.
    pub fn new(limit: usize) -> CapTable<O> {
        CapTable { entries: Vec::new(), free: Vec::new(), len: 0, limit: limit.min(MAX_SLOTS) }
    }

    /// How many capabilities the table holds.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds a capability and returns its handle.
    pub fn insert(&mut self, cap: Capability<O>) -> Result<Handle, CapError> {
        if self.len >= self.limit {
            return Err(CapError::TableFull);
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None => {
                self.entries.push(Entry { generation: 0, cap: None });
                self.entries.len() - 1
            }
        };
        let entry = &mut self.entries[index];
        entry.cap = Some(cap);
        self.len += 1;
        Ok(Handle::new(index, entry.generation))
    }

    fn entry(&self, handle: Handle) -> Option<usize> {
        let index = handle.index()?;
        let entry = self.entries.get(index)?;
        (entry.cap.is_some() && entry.generation & GENERATION_MASK == handle.generation()).then_some(index)
    }

    /// The capability behind `handle`.
    pub fn get(&self, handle: Handle) -> Result<&Capability<O>, CapError> {
        self.entry(handle).and_then(|i| self.entries[i].cap.as_ref()).ok_or(CapError::InvalidHandle)
    }

    /// The capability behind `handle`, which must have at least `needs`.
    pub fn check(&self, handle: Handle, needs: Rights) -> Result<&Capability<O>, CapError> {
        let cap = self.get(handle)?;
        if !cap.rights.contains(needs) {
            return Err(CapError::MissingRights { has: cap.rights, needs });
        }
        Ok(cap)
    }

    /// Copies the capability behind `handle` into a new slot with rights restricted to `mask`
    /// and, if the original has no badge, the given badge. Needs the `DUPLICATE` right.
    pub fn duplicate(&mut self, handle: Handle, mask: Rights, badge: Option<u64>) -> Result<Handle, CapError> {
        let cap = *self.check(handle, Rights::DUPLICATE)?;
        let badge = match (cap.badge, badge) {
            (0, Some(b)) => b,
            (b, _) => b,
        };
        self.insert(Capability { object: cap.object, rights: cap.rights.intersect(mask), badge })
    }

    /// Removes the capability behind `handle` (closes the handle) and returns it.
    pub fn remove(&mut self, handle: Handle) -> Result<Capability<O>, CapError> {
        let index = self.entry(handle).ok_or(CapError::InvalidHandle)?;
        Ok(self.free_entry(index))
    }

    fn free_entry(&mut self, index: usize) -> Capability<O> {
        let entry = &mut self.entries[index];
        let cap = entry.cap.take().expect("entry() checked it is occupied");
        entry.generation = entry.generation.wrapping_add(1);
        self.free.push(index);
        self.len -= 1;
        cap
    }

    /// Removes every capability for which `keep` says false.
    pub fn retain(&mut self, mut keep: impl FnMut(&Capability<O>) -> bool) {
        for index in 0..self.entries.len() {
            if self.entries[index].cap.as_ref().is_some_and(|c| !keep(c)) {
                self.free_entry(index);
            }
        }
    }

    /// Every (handle, capability).
    pub fn iter(&self) -> impl Iterator<Item = (Handle, &Capability<O>)> {
        self.entries.iter().enumerate().filter_map(|(i, e)| Some((Handle::new(i, e.generation), e.cap.as_ref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::vec::Vec;

    fn cap(object: u32, rights: Rights) -> Capability<u32> {
        Capability { object, rights, badge: 0 }
    }

    #[test]
    fn handles_are_nonzero_and_rights_are_enforced() {
        let mut t = CapTable::new(8);
        let h = t.insert(cap(7, Rights::SEND | Rights::DUPLICATE)).unwrap();
        assert_ne!(h, Handle::NULL);
        assert_eq!(t.check(h, Rights::SEND).unwrap().object, 7);
        assert_eq!(
            t.check(h, Rights::RECEIVE),
            Err(CapError::MissingRights { has: Rights::SEND | Rights::DUPLICATE, needs: Rights::RECEIVE })
        );
        assert_eq!(t.get(Handle::NULL), Err(CapError::InvalidHandle));
        assert_eq!(t.get(Handle(u32::MAX)), Err(CapError::InvalidHandle));
    }

    #[test]
    fn duplicates_never_gain_rights_and_keep_badges() {
        let mut t = CapTable::new(8);
        let h = t.insert(cap(1, Rights::SEND | Rights::DUPLICATE)).unwrap();
        let d = t.duplicate(h, Rights::ALL, Some(42)).unwrap();
        assert_eq!(t.get(d).unwrap().rights, Rights::SEND | Rights::DUPLICATE);
        assert_eq!(t.get(d).unwrap().badge, 42);
        // A badged capability keeps its badge.
        let dd = t.duplicate(d, Rights::SEND, Some(7)).unwrap();
        assert_eq!((t.get(dd).unwrap().badge, t.get(dd).unwrap().rights), (42, Rights::SEND));
        assert_eq!(
            t.duplicate(dd, Rights::ALL, None),
            Err(CapError::MissingRights { has: Rights::SEND, needs: Rights::DUPLICATE })
        );
    }

    #[test]
    fn stale_handles_stay_invalid_after_slot_reuse() {
        let mut t = CapTable::new(4);
        let h = t.insert(cap(1, Rights::ALL)).unwrap();
        t.remove(h).unwrap();
        let h2 = t.insert(cap(2, Rights::ALL)).unwrap();
        assert_ne!(h, h2);
        assert_eq!(t.get(h), Err(CapError::InvalidHandle));
        assert_eq!(t.remove(h), Err(CapError::InvalidHandle));
        assert_eq!(t.get(h2).unwrap().object, 2);
    }

    #[test]
    fn the_limit_holds() {
        let mut t = CapTable::new(2);
        t.insert(cap(1, Rights::ALL)).unwrap();
        t.insert(cap(2, Rights::ALL)).unwrap();
        assert_eq!(t.insert(cap(3, Rights::ALL)), Err(CapError::TableFull));
    }

    proptest! {
        /// Against a model: arbitrary insert/remove/duplicate/lookup of arbitrary handles.
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u8..4, any::<u32>(), 0usize..16), 1..200)) {
            let mut t = CapTable::new(16);
            let mut model: HashMap<Handle, Capability<u32>> = HashMap::new();
            let mut seen: Vec<Handle> = Vec::new();
            for (op, raw, pick) in ops {
                let handle = if seen.is_empty() || raw % 3 == 0 { Handle(raw) } else { seen[pick % seen.len()] };
                match op {
                    0 => match t.insert(cap(raw, Rights::from_bits_truncate(raw as u64))) {
                        Ok(h) => { prop_assert!(model.insert(h, cap(raw, Rights::from_bits_truncate(raw as u64))).is_none()); seen.push(h); }
                        Err(e) => { prop_assert_eq!(e, CapError::TableFull); prop_assert_eq!(model.len(), 16); }
                    },
                    1 => prop_assert_eq!(t.remove(handle).ok(), model.remove(&handle)),
                    2 => match t.duplicate(handle, Rights::from_bits_truncate(raw as u64), None) {
                        Ok(h) => {
                            let orig = model[&handle];
                            prop_assert!(orig.rights.contains(Rights::DUPLICATE));
                            let copy = t.get(h).unwrap();
                            prop_assert!(orig.rights.contains(copy.rights));
                            model.insert(h, *copy);
                            seen.push(h);
                        }
                        Err(_) => prop_assert!(model.get(&handle).is_none_or(|c| !c.rights.contains(Rights::DUPLICATE)) || model.len() == 16),
                    },
                    _ => prop_assert_eq!(t.get(handle).ok(), model.get(&handle)),
                }
                prop_assert_eq!(t.len(), model.len());
            }
        }
    }
}
