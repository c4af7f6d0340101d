//! Memory objects and tasks made from user space.
//!
//! A memory object is a list of physical frames (zeroed when created) that can be mapped into
//! any number of address spaces, with permissions bounded by the rights of the capability used
//! to map it. It belongs to (and is charged to) one task and dies with it: it is then unmapped
//! from every address space, as on revocation. The kernel keeps each mapping in two places
//! (the object's list and the task's), so both "unmap everywhere" and "tear down a task" are
//! direct. The boot archive is a memory object over frames the kernel does not own.

use super::{cost, Kernel, Machine, MemoryId, Object, Task, TaskId};
use crate::cap::{Capability, Handle, Rights};
use crate::sched::MAX_PRIORITY;
use abi::syscall::{map, memory_flags, Error, ObjectType, Return, TASK_NAME_MAX};
use alloc::string::String;
use alloc::vec::Vec;
use elf::USER_END;

const PAGE: u64 = 4096;
/// The largest memory object: 1 GiB.
const MAX_OBJECT: u64 = 1 << 30;
/// The largest physically contiguous memory object: 4 MiB (DMA buffers and rings).
const MAX_CONTIGUOUS: u64 = 4 << 20;

/// How a page is mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub writable: bool,
    pub executable: bool,
    /// Device memory: uncached.
    pub device: bool,
}

/// Why a page could not be mapped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapFailure {
    /// Something is mapped there already.
    InUse,
    /// No frame for a page table.
    NoMemory,
}

/// What a memory object's pages are.
enum Backing {
    /// Frames from the allocator, owned by the object (freed with it); `contiguous` ones (for
    /// device DMA) follow each other physically.
    Frames { frames: Vec<u64>, contiguous: bool },
    /// A physical range the object does not own (the boot archive; device memory, mapped
    /// uncached); never freed.
    Physical { start: u64, device: bool },
}

/// A memory object.
pub struct MemoryObject {
    backing: Backing,
    pages: u64,
    /// Its size in bytes (the pages may be a little more).
    pub size: u64,
    /// Where it is mapped: (task, address, first page of the object, pages).
    mappings: Vec<(TaskId, u64, u64, u64)>,
    /// The task it is charged to and how much: given back when it is destroyed before its
    /// owner ends (`CapRevoke`). `None` for the boot objects.
    charged: Option<(TaskId, u64)>,
}

impl MemoryObject {
    /// An object over the physical range `[start, start + len)` (`start` page-aligned), whose
    /// frames stay with their owner; `device` memory maps uncached.
    pub fn physical(start: u64, len: u64, device: bool) -> MemoryObject {
        MemoryObject {
            backing: Backing::Physical { start, device },
            pages: len.div_ceil(PAGE),
            size: len,
            mappings: Vec::new(),
            charged: None,
        }
    }

    /// The object charged to `owner` for `charge` bytes of quota.
    pub(super) fn charged_to(self, owner: TaskId, charge: u64) -> MemoryObject {
        MemoryObject { charged: Some((owner, charge)), ..self }
    }

    fn frame(&self, page: u64) -> u64 {
        match &self.backing {
            Backing::Frames { frames, .. } => frames[page as usize],
            Backing::Physical { start, .. } => start + page * PAGE,
        }
    }

    pub(super) fn is_device(&self) -> bool {
        matches!(self.backing, Backing::Physical { device: true, .. })
    }

    /// The physical base of a physical or contiguous object (what a device's DMA needs).
    pub fn physical_base(&self) -> Option<u64> {
        match &self.backing {
            Backing::Physical { start, .. } => Some(*start),
            Backing::Frames { frames, contiguous: true } => frames.first().copied(),
            Backing::Frames { .. } => None,
        }
    }

    pub(super) fn is_physical(&self) -> bool {
        matches!(self.backing, Backing::Physical { .. })
    }
}

type Outcome = Result<Option<Return>, Error>;

fn ok1(r0: u64) -> Outcome {
    Ok(Some(Return::ok([r0, 0, 0, 0, 0, 0, 0])))
}

impl<M: Machine> Kernel<M> {
    /// `MemoryCreate`.
    pub(super) fn memory_create(&mut self, task: TaskId, handle: Handle, bytes: u64, flags: u64) -> Outcome {
        let owner = self.target_task(task, handle)?;
        let contiguous = flags & memory_flags::CONTIGUOUS != 0;
        let limit = if contiguous { MAX_CONTIGUOUS } else { MAX_OBJECT };
        if bytes == 0 || bytes > limit || flags & !memory_flags::CONTIGUOUS != 0 {
            return Err(Error::InvalidArgument);
        }
        let pages = bytes.div_ceil(PAGE);
        let charge = pages * cost::PAGE + cost::MEMORY;
        self.task_mut(owner).ok_or(Error::InvalidHandle)?.charge(charge)?;
        let mut frames = Vec::new();
        if contiguous {
            match self.machine.alloc_contiguous(pages) {
                Some(start) => frames.extend((0..pages).map(|i| start + i * PAGE)),
                None => {
                    if let Some(t) = self.task_mut(owner) {
                        t.refund(charge);
                    }
                    return Err(Error::OutOfMemory);
                }
            }
        }
        for _ in frames.len() as u64..pages {
            match self.machine.alloc_frame() {
                Some(f) => frames.push(f),
                None => {
                    for f in frames {
                        self.machine.free_frame(f);
                    }
                    if let Some(t) = self.task_mut(owner) {
                        t.refund(charge);
                    }
                    return Err(Error::OutOfMemory);
                }
            }
        }
        let id = self.memory.insert(MemoryObject {
            backing: Backing::Frames { frames, contiguous },
            pages,
            size: bytes,
            mappings: Vec::new(),
            charged: Some((owner, charge)),
        });
        self.task_mut(owner).expect("checked above").owned.push(Object::Memory(id));
        let cap = Capability { object: Object::Memory(id), rights: Rights::ALL, badge: 0 };
        match self.insert_cap(task, cap) {
            Ok(h) => ok1(h.0 as u64),
            Err(e) => {
                self.destroy_memory(id);
                Err(e)
            }
        }
    }

    /// `MemoryMap`.
    pub(super) fn memory_map(&mut self, task: TaskId, handle: Handle, a: [u64; 7]) -> Outcome {
        let (vaddr, offset, len, perms) = (a[1], a[2], a[3], a[4]);
        let target = self.target_task(task, Handle(a[0] as u32))?;
        let needs = rights_for(perms);
        if perms & !(map::READ | map::WRITE | map::EXECUTE) != 0 || perms == 0 {
            return Err(Error::InvalidArgument);
        }
        let id = match self.lookup(task, handle, needs, ObjectType::Memory)? {
            Object::Memory(m) => m,
            _ => return Err(Error::WrongType),
        };
        let object = self.memory.get(id).ok_or(Error::InvalidHandle)?;
        let aligned = vaddr % PAGE == 0 && offset % PAGE == 0 && len % PAGE == 0 && len > 0;
        let end = vaddr.checked_add(len).filter(|e| *e <= USER_END);
        let object_end = offset.checked_add(len).filter(|e| *e <= object.pages * PAGE);
        if !aligned || end.is_none() || object_end.is_none() || vaddr == 0 {
            return Err(Error::InvalidArgument);
        }
        let (first, pages) = (offset / PAGE, len / PAGE);
        let access = Access {
            writable: perms & map::WRITE != 0,
            executable: perms & map::EXECUTE != 0,
            device: object.is_device(),
        };
        self.task_mut(target).ok_or(Error::InvalidHandle)?.charge(cost::MAPPING)?;
        let object = self.memory.get(id).expect("looked up above");
        let t = self.tasks.get_mut(target).expect("charged above");
        for i in 0..pages {
            let at = vaddr + i * PAGE;
            if let Err(failure) = self.machine.map_page(&mut t.space, at, object.frame(first + i), access) {
                for j in 0..i {
                    self.machine.unmap_page(&mut t.space, vaddr + j * PAGE);
                }
                t.refund(cost::MAPPING);
                return Err(match failure {
                    MapFailure::InUse => Error::AddressInUse,
                    MapFailure::NoMemory => Error::OutOfMemory,
                });
            }
        }
        t.mappings.push((id, vaddr, pages));
        self.memory.get_mut(id).expect("looked up above").mappings.push((target, vaddr, first, pages));
        Ok(Some(Return::ok([0; 7])))
    }

    /// `MemoryUnmap`: removes the mapping starting at `vaddr`.
    pub(super) fn memory_unmap(&mut self, task: TaskId, target: Handle, vaddr: u64) -> Outcome {
        let target = self.target_task(task, target)?;
        let t = self.task(target).ok_or(Error::InvalidHandle)?;
        let at = t.mappings.iter().position(|(_, v, _)| *v == vaddr).ok_or(Error::InvalidArgument)?;
        let (id, _, _) = t.mappings[at];
        self.remove_mapping(target, id, vaddr);
        Ok(Some(Return::ok([0; 7])))
    }

    /// Unmaps one mapping and forgets it on both sides.
    fn remove_mapping(&mut self, task: TaskId, id: MemoryId, vaddr: u64) {
        let Some(t) = self.tasks.get_mut(task) else { return };
        let Some(at) = t.mappings.iter().position(|(m, v, _)| *m == id && *v == vaddr) else { return };
        let (_, _, pages) = t.mappings.swap_remove(at);
        for i in 0..pages {
            self.machine.unmap_page(&mut t.space, vaddr + i * PAGE);
        }
        t.refund(cost::MAPPING);
        if let Some(object) = self.memory.get_mut(id) {
            object.mappings.retain(|(tk, v, _, _)| !(*tk == task && *v == vaddr));
        }
    }

    /// Removes every mapping of `task` (before it ends).
    pub(super) fn unmap_all(&mut self, task: TaskId) {
        let mappings: Vec<(MemoryId, u64)> =
            self.task(task).map_or(Vec::new(), |t| t.mappings.iter().map(|(m, v, _)| (*m, *v)).collect());
        for (id, vaddr) in mappings {
            self.remove_mapping(task, id, vaddr);
        }
    }

    /// Destroys a memory object: unmapped from every task, frames freed, its charge given
    /// back to its owner (if the owner lives on).
    pub(super) fn destroy_memory(&mut self, id: MemoryId) {
        let Some(object) = self.memory.get(id) else { return };
        let mappings: Vec<(TaskId, u64)> = object.mappings.iter().map(|(t, v, _, _)| (*t, *v)).collect();
        for (task, vaddr) in mappings {
            self.remove_mapping(task, id, vaddr);
        }
        let Some(object) = self.memory.remove(id) else { return };
        if let Some((owner, charge)) = object.charged {
            if let Some(t) = self.task_mut(owner) {
                t.refund(charge);
                if let Some(at) = t.owned.iter().position(|o| *o == Object::Memory(id)) {
                    t.owned.swap_remove(at);
                }
            }
        }
        if let Backing::Frames { frames, .. } = object.backing {
            for frame in frames {
                self.machine.free_frame(frame);
            }
        }
    }

    /// `TaskCreate`.
    pub(super) fn task_create(&mut self, task: TaskId, a: [u64; 7]) -> Outcome {
        let (quota, cap_limit, priority, name_ptr, name_len) = (a[0], a[1], a[2], a[3], a[4]);
        let creator = self.tasks.get(task).ok_or(Error::InvalidHandle)?;
        if priority > creator.max_priority as u64 || priority > MAX_PRIORITY as u64 {
            return Err(Error::InvalidArgument);
        }
        if name_len > TASK_NAME_MAX as u64 || cap_limit == 0 || cap_limit > crate::cap::MAX_SLOTS as u64 {
            return Err(Error::InvalidArgument);
        }
        let mut name = [0u8; TASK_NAME_MAX];
        let name = &mut name[..name_len as usize];
        self.machine.read_user(&creator.space, name_ptr, name).map_err(|_| Error::BadAddress)?;
        let name = String::from(core::str::from_utf8(name).map_err(|_| Error::InvalidArgument)?);
        let charge = quota.checked_add(cost::TASK).ok_or(Error::QuotaExceeded)?;
        self.task_mut(task).expect("looked up above").charge(charge)?;
        let Some(space) = self.machine.new_space() else {
            self.task_mut(task).expect("looked up above").refund(charge);
            return Err(Error::OutOfMemory);
        };
        let child = self.tasks.insert(Task {
            name,
            space,
            caps: crate::cap::CapTable::new(cap_limit as usize),
            quota,
            used: 0,
            threads: Vec::new(),
            owned: Vec::new(),
            max_priority: priority as u8,
            supervisor: None,
            personality: None,
            parent: Some((task, quota)),
            mappings: Vec::new(),
            watchers: Vec::new(),
            detached: Vec::new(),
        });
        // The child belongs to its creator: it ends when the creator ends.
        self.task_mut(task).expect("looked up above").owned.push(Object::Task(child));
        match self.insert_cap(task, Capability { object: Object::Task(child), rights: Rights::ALL, badge: 0 }) {
            Ok(h) => ok1(h.0 as u64),
            Err(e) => {
                self.end_task(child, -1);
                Err(e)
            }
        }
    }
}

/// The capability rights mapping with `perms` needs.
fn rights_for(perms: u64) -> Rights {
    let mut r = Rights::NONE;
    if perms & map::READ != 0 {
        r = r | Rights::READ;
    }
    if perms & map::WRITE != 0 {
        r = r | Rights::WRITE;
    }
    if perms & map::EXECUTE != 0 {
        r = r | Rights::EXECUTE;
    }
    r
}
