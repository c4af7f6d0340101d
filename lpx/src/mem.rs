//! The bookkeeping of a Linux process's address space: regions (the program's segments, the
//! stack, the `brk` heap, `mmap`s) and, inside each, the chunks that are committed (a memory
//! object mapped into the process at the chunk's address and into the server at `mirror`,
//! where the server copies system-call data in and out).
//!
//! Regions are reserved without memory; a chunk is committed on first touch (the process's
//! page fault, or the server copying to or from it), so an 8 MiB stack or a large `brk`
//! reservation costs only what is used. [`Space::access`] tells the server, for an address,
//! whether it is committed (and where its mirror is), must be committed first (and which
//! chunk), or is not accessible at all (`EFAULT`, or `SIGSEGV` for a fault).

use alloc::collections::BTreeMap;
use alloc::vec::Vec;

pub const PAGE: u64 = 4096;
pub const PROT_READ: u32 = 1;
pub const PROT_WRITE: u32 = 2;
pub const PROT_EXEC: u32 = 4;

/// What a region holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Segments of the program, committed at load.
    Image,
    Stack,
    /// The `brk` heap: accessible up to its `limit`.
    Brk,
    Anonymous,
    /// A private file mapping (copied at `mmap`).
    File,
}

/// A committed piece of a region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// Where it is in the process, and its length (page multiples).
    pub start: u64,
    pub len: u64,
    /// Where it is mapped in the server.
    pub mirror: u64,
    /// The server's handle of its memory object.
    pub memory: u32,
    /// Copy-on-write: the memory may be another process's too (after `fork`), so it is mapped
    /// read-only even in a writable region; the first write gets the process its own copy.
    pub cow: bool,
}

/// A reserved range of the process's address space.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Region {
    pub start: u64,
    /// The reservation's end.
    pub end: u64,
    /// Accessible below this (`end` except for the `brk` heap).
    pub limit: u64,
    pub prot: u32,
    pub kind: Kind,
    /// Chunks are `chunk` bytes, aligned on `base` (the region's first start).
    base: u64,
    chunk: u64,
    chunks: BTreeMap<u64, Chunk>,
}

/// What an address is, for an access.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Committed: the server's address of it, how many bytes from it are contiguous there, and
    /// whether its chunk is copy-on-write (a write must get the process its own copy first).
    Committed { mirror: u64, len: u64, cow: bool },
    /// Reserved but not committed: commit `[start, start + len)` with `prot`, then ask again.
    Commit { start: u64, len: u64, prot: u32 },
    /// Not mapped, or not with that permission.
    Fault,
}

/// Why a region cannot be added.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpaceError {
    /// Unaligned, empty, wrapping, or outside the user half.
    Invalid,
    /// Overlaps another region.
    Overlap,
}

/// What [`Space::unmap`] and [`Space::set_limit`] leave for the server to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    /// Chunks no longer part of the space: unmap from both sides and destroy.
    pub chunks: Vec<Chunk>,
    /// Server addresses and lengths to zero (pages given up inside a chunk that stays).
    pub zero: Vec<(u64, u64)>,
}

/// A process's regions.
#[derive(Clone, Debug, Default)]
pub struct Space {
    regions: BTreeMap<u64, Region>,
}

/// The end of the user half of the address space.
pub const USER_END: u64 = 1 << 47;

impl Space {
    pub fn new() -> Space {
        Space::default()
    }

    /// Whether `[start, start + len)` overlaps no region.
    pub fn is_free(&self, start: u64, len: u64) -> bool {
        let Some(end) = start.checked_add(len) else { return false };
        !self.regions.values().any(|r| r.start < end && start < r.end)
    }

    /// Reserves `[start, start + len)` with chunks of `chunk` bytes (0: one chunk for all).
    pub fn add(&mut self, start: u64, len: u64, prot: u32, kind: Kind, chunk: u64) -> Result<(), SpaceError> {
        let end = start.checked_add(len).ok_or(SpaceError::Invalid)?;
        if len == 0
            || !start.is_multiple_of(PAGE)
            || !len.is_multiple_of(PAGE)
            || end > USER_END
            || start == 0
            || !chunk.is_multiple_of(PAGE)
        {
            return Err(SpaceError::Invalid);
        }
        if !self.is_free(start, len) {
            return Err(SpaceError::Overlap);
        }
        let chunk = if chunk == 0 { len } else { chunk };
        let region = Region { start, end, limit: end, prot, kind, base: start, chunk, chunks: BTreeMap::new() };
        self.regions.insert(start, region);
        Ok(())
    }

    /// The region holding `addr`.
    pub fn region(&self, addr: u64) -> Option<&Region> {
        self.regions.range(..=addr).next_back().map(|(_, r)| r).filter(|r| addr < r.end)
    }

    fn region_mut(&mut self, addr: u64) -> Option<&mut Region> {
        self.regions.range_mut(..=addr).next_back().map(|(_, r)| r).filter(|r| addr < r.end)
    }

    /// What `addr` is for a read (`write` false) or a write.
    pub fn access(&self, addr: u64, write: bool) -> Access {
        let Some(r) = self.region(addr) else { return Access::Fault };
        let needed = if write { PROT_WRITE } else { PROT_READ };
        if addr >= r.limit || r.prot & needed == 0 {
            return Access::Fault;
        }
        let cstart = r.base + (addr - r.base) / r.chunk * r.chunk;
        if let Some((_, c)) = r.chunks.range(..=addr).next_back() {
            if addr < c.start + c.len {
                let end = (c.start + c.len).min(r.limit);
                return Access::Committed { mirror: c.mirror + (addr - c.start), len: end - addr, cow: c.cow };
            }
        }
        let start = cstart.max(r.start);
        let len = (cstart + r.chunk).min(r.end) - start;
        Access::Commit { start, len, prot: r.prot }
    }

    /// The committed chunk holding `addr`, if any.
    pub fn chunk_at(&self, addr: u64) -> Option<Chunk> {
        let r = self.region(addr)?;
        let (_, c) = r.chunks.range(..=addr).next_back()?;
        (addr < c.start + c.len).then_some(*c)
    }

    /// The protection of the region holding `addr`.
    pub fn prot_at(&self, addr: u64) -> Option<u32> {
        self.region(addr).map(|r| r.prot)
    }

    /// Records a committed chunk (as [`Access::Commit`] described it); one already at its start
    /// is replaced.
    pub fn commit(&mut self, chunk: Chunk) {
        if let Some(r) = self.region_mut(chunk.start) {
            r.chunks.insert(chunk.start, chunk);
        }
    }

    /// Sets the accessible end of the region starting at `start` (the `brk`); chunks wholly
    /// above the new limit are released, the part of one that straddles it is zeroed.
    pub fn set_limit(&mut self, start: u64, limit: u64) -> Released {
        let mut out = Released::default();
        let Some(r) = self.regions.get_mut(&start) else { return out };
        let limit = limit.clamp(r.start, r.end);
        if limit < r.limit {
            let keep_to = limit.next_multiple_of(PAGE);
            let gone: Vec<u64> = r.chunks.range(keep_to..).map(|(a, _)| *a).collect();
            for a in gone {
                if let Some(c) = r.chunks.remove(&a) {
                    out.chunks.push(c);
                }
            }
            if let Some((_, c)) = r.chunks.range(..keep_to).next_back() {
                let end = c.start + c.len;
                if end > keep_to {
                    out.zero.push((c.mirror + (keep_to - c.start), end - keep_to));
                }
            }
        }
        r.limit = limit;
        out
    }

    /// Removes `[start, start + len)`: whole regions go, regions cut at a chunk boundary are
    /// split, and pages inside a chunk that must stay are only zeroed (they remain mapped:
    /// docs/linux.md, "Limits").
    pub fn unmap(&mut self, start: u64, len: u64) -> Released {
        let mut out = Released::default();
        let end = start.saturating_add(len);
        let hit: Vec<u64> = self.regions.values().filter(|r| r.start < end && start < r.end).map(|r| r.start).collect();
        for key in hit {
            let Some(mut r) = self.regions.remove(&key) else { continue };
            let (cut_lo, cut_hi) = (start.max(r.start), end.min(r.end));
            // Chunks wholly inside the cut are released; a chunk straddling an edge of the cut
            // stays (zeroed where cut), and so does the region around it.
            let (mut lo, mut hi) = (cut_lo, cut_hi);
            let mut kept = BTreeMap::new();
            for (a, c) in core::mem::take(&mut r.chunks) {
                let c_end = c.start + c.len;
                if c.start >= cut_lo && c_end <= cut_hi {
                    out.chunks.push(c);
                    continue;
                }
                if c.start < cut_hi && cut_lo < c_end {
                    let (z_lo, z_hi) = (c.start.max(cut_lo), c_end.min(cut_hi));
                    out.zero.push((c.mirror + (z_lo - c.start), z_hi - z_lo));
                    if c.start < cut_lo {
                        lo = lo.max(c_end.min(cut_hi));
                    }
                    if c_end > cut_hi {
                        hi = hi.min(c.start.max(cut_lo));
                    }
                }
                kept.insert(a, c);
            }
            r.chunks = kept;
            if lo >= hi {
                self.regions.insert(r.start, r);
                continue;
            }
            // What stays: [r.start, lo) and [hi, r.end).
            let upper_chunks = r.chunks.split_off(&hi);
            if hi < r.end {
                let mut upper = r.clone();
                upper.start = hi;
                upper.limit = upper.limit.max(hi);
                upper.chunks = upper_chunks;
                self.regions.insert(hi, upper);
            }
            if r.start < lo {
                r.end = lo;
                r.limit = r.limit.min(lo);
                self.regions.insert(r.start, r);
            }
        }
        out
    }

    /// Sets the protection of `[start, start + len)`: regions partly inside are split at its
    /// edges, so only the range changes. A committed chunk straddling an edge cannot be split
    /// (it is one mapping): it keeps its protection and the edge moves to the chunk's end
    /// (docs/linux.md, "Limits"). Returns the committed chunks whose protection changed (to be
    /// mapped again with it) and whether any region was touched.
    pub fn protect(&mut self, start: u64, len: u64, prot: u32) -> (Vec<Chunk>, bool) {
        let end = start.saturating_add(len);
        let hit: Vec<u64> = self.regions.values().filter(|r| r.start < end && start < r.end).map(|r| r.start).collect();
        let mut changed = Vec::new();
        for key in &hit {
            let Some(mut r) = self.regions.remove(key) else { continue };
            let (mut lo, mut hi) = (start.max(r.start), end.min(r.end));
            for c in r.chunks.values() {
                let c_end = c.start + c.len;
                if c.start < lo && lo < c_end {
                    lo = c_end;
                }
                if c.start < hi && hi < c_end {
                    hi = c.start;
                }
            }
            if lo >= hi || r.prot == prot {
                self.regions.insert(r.start, r);
                continue;
            }
            let mut upper_chunks = r.chunks.split_off(&hi);
            let middle_chunks = r.chunks.split_off(&lo);
            if hi < r.end {
                let mut upper = r.clone();
                upper.start = hi;
                upper.limit = r.limit.clamp(hi, r.end);
                upper.chunks = core::mem::take(&mut upper_chunks);
                self.regions.insert(hi, upper);
            }
            let mut middle = r.clone();
            middle.start = lo;
            middle.end = hi;
            middle.limit = r.limit.clamp(lo, hi);
            middle.prot = prot;
            changed.extend(middle_chunks.values().copied());
            middle.chunks = middle_chunks;
            self.regions.insert(lo, middle);
            if r.start < lo {
                r.end = lo;
                r.limit = r.limit.min(lo);
                self.regions.insert(r.start, r);
            }
        }
        if !changed.is_empty() || !hit.is_empty() {
            self.merge();
        }
        (changed, !hit.is_empty())
    }

    /// Joins neighbouring regions that differ only in their bounds (pieces `protect` split
    /// and gave the same protection again), so repeated `mprotect`s keep the count small.
    fn merge(&mut self) {
        let starts: Vec<u64> = self.regions.keys().copied().collect();
        let mut prev: Option<u64> = None;
        for at in starts {
            let joins = prev.and_then(|p| self.regions.get(&p)).zip(self.regions.get(&at)).is_some_and(|(a, b)| {
                a.end == b.start
                    && a.limit == a.end
                    && (a.prot, a.kind, a.base, a.chunk) == (b.prot, b.kind, b.base, b.chunk)
            });
            if joins {
                let b = self.regions.remove(&at).expect("present");
                let a = self.regions.get_mut(&prev.expect("joins")).expect("present");
                a.end = b.end;
                a.limit = b.limit;
                a.chunks.extend(b.chunks);
            } else {
                prev = Some(at);
            }
        }
    }

    /// The highest `len`-byte free range ending at or below `top` and starting at or above
    /// `floor` (for `mmap` without an address).
    pub fn find_free_below(&self, top: u64, floor: u64, len: u64) -> Option<u64> {
        let mut hi = top;
        for r in self.regions.values().rev() {
            if r.start >= hi {
                continue;
            }
            if r.end <= hi && hi - r.end >= len {
                break;
            }
            hi = hi.min(r.start);
        }
        let start = hi.checked_sub(len)?;
        (start >= floor).then_some(start)
    }

    /// Every committed chunk (to tear the process down).
    pub fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.regions.values().flat_map(|r| r.chunks.values())
    }

    /// Every region.
    pub fn regions(&self) -> impl Iterator<Item = &Region> {
        self.regions.values()
    }

    /// Every committed chunk with the protection of its region (to copy a process: `fork`).
    pub fn chunks_with_prot(&self) -> impl Iterator<Item = (&Chunk, u32)> {
        self.regions.values().flat_map(|r| r.chunks.values().map(move |c| (c, r.prot)))
    }

    /// The same regions (reservations, limits, protections, chunk sizes) with nothing committed:
    /// the child of a `fork` commits its copies of the chunks into it.
    pub fn layout(&self) -> Space {
        let regions =
            self.regions.iter().map(|(at, r)| (*at, Region { chunks: BTreeMap::new(), ..r.clone() })).collect();
        Space { regions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layout_copy_keeps_regions_and_limits_but_no_chunks() {
        let mut s = Space::new();
        s.add(0x40_0000, 0x2000, PROT_READ | PROT_EXEC, Kind::Image, 0).unwrap();
        s.add(0x60_0000, 0x10_0000, RW, Kind::Brk, 0x1_0000).unwrap();
        s.set_limit(0x60_0000, 0x60_3000);
        s.commit(Chunk { start: 0x40_0000, len: 0x2000, mirror: 0x3000_0000_0000, memory: 1, cow: false });
        commit(&mut s, 0x60_1000, 0x3000_0001_0000);
        let with: alloc::vec::Vec<(u64, u32)> = s.chunks_with_prot().map(|(c, p)| (c.start, p)).collect();
        assert_eq!(with, [(0x40_0000, PROT_READ | PROT_EXEC), (0x60_0000, RW)]);
        let copy = s.layout();
        assert_eq!(copy.chunks().count(), 0);
        assert_eq!(copy.regions().count(), 2);
        assert_eq!(copy.access(0x60_2000, true), Access::Commit { start: 0x60_0000, len: 0x1_0000, prot: RW });
        assert_eq!(copy.access(0x60_3000, true), Access::Fault, "the brk limit is kept");
    }

    const RW: u32 = PROT_READ | PROT_WRITE;

    fn commit(s: &mut Space, addr: u64, mirror: u64) -> Chunk {
        let Access::Commit { start, len, .. } = s.access(addr, true) else { panic!("{:?}", s.access(addr, true)) };
        let c = Chunk { start, len, mirror, memory: 1, cow: false };
        s.commit(c);
        c
    }

    #[test]
    fn chunks_are_committed_on_demand_and_found_again() {
        let mut s = Space::new();
        s.add(0x10000, 0x40000, RW, Kind::Stack, 0x10000).unwrap();
        assert_eq!(s.access(0xffff, false), Access::Fault);
        assert_eq!(s.access(0x25000, true), Access::Commit { start: 0x20000, len: 0x10000, prot: RW });
        commit(&mut s, 0x25000, 0x9000_0000);
        assert_eq!(s.access(0x25008, true), Access::Committed { mirror: 0x9000_5008, len: 0xaff8, cow: false });
        assert_eq!(s.add(0x40000, 0x1000, RW, Kind::Anonymous, 0), Err(SpaceError::Overlap));
        assert_eq!(s.add(0x1001, 0x1000, RW, Kind::Anonymous, 0), Err(SpaceError::Invalid));
        assert_eq!(s.add(USER_END - 0x1000, 0x2000, RW, Kind::Anonymous, 0), Err(SpaceError::Invalid));
    }

    #[test]
    fn protect_splits_a_region_at_the_range_and_joins_it_again() {
        let mut s = Space::new();
        // A thread stack as glibc makes it: all PROT_NONE, then all but the guard page RW.
        s.add(0x100_0000, 0x10_0000, 0, Kind::Anonymous, 0x4_0000).unwrap();
        let (changed, touched) = s.protect(0x100_1000, 0xf_f000, RW);
        assert!(changed.is_empty() && touched);
        assert_eq!(s.regions().count(), 2);
        assert_eq!(s.access(0x100_0800, true), Access::Fault, "the guard page");
        assert_eq!(s.access(0x10f_fff8, true), Access::Commit { start: 0x10c_0000, len: 0x4_0000, prot: RW });
        assert_eq!(s.access(0x100_1000, true), Access::Commit { start: 0x100_1000, len: 0x3_f000, prot: RW });
        let c = commit(&mut s, 0x10f_fff8, 0x9000_0000);
        // Back to read-only: the committed chunk is reported to be mapped again.
        let (changed, _) = s.protect(0x10c_0000, 0x4_0000, PROT_READ);
        assert_eq!(changed, [c]);
        assert_eq!(s.access(0x10f_fff8, true), Access::Fault);
        assert_eq!(s.regions().count(), 3);
        // RW again: the pieces join.
        s.protect(0x10c_0000, 0x4_0000, RW);
        assert_eq!(s.regions().count(), 2);
        assert_eq!(s.access(0x10f_fff8, true), Access::Committed { mirror: 0x9003_fff8, len: 8, cow: false });
        // A chunk straddling an edge keeps its protection; the rest of the range changes.
        let (changed, _) = s.protect(0x10d_0000, 0x3_0000, PROT_READ);
        assert!(changed.is_empty(), "the chunk [0x10c0000, 0x1100000) straddles 0x10d0000");
        assert!(matches!(s.access(0x10f_fff8, true), Access::Committed { .. }));
        let (changed, touched) = s.protect(0x200_0000, 0x1000, RW);
        assert!(changed.is_empty() && !touched, "nothing mapped there");
    }

    #[test]
    fn permissions_are_checked() {
        let mut s = Space::new();
        s.add(0x400000, 0x2000, PROT_READ | PROT_EXEC, Kind::Image, 0).unwrap();
        assert_eq!(s.access(0x400010, true), Access::Fault);
        assert!(matches!(s.access(0x400010, false), Access::Commit { .. }));
        s.add(0x500000, 0x1000, 0, Kind::Anonymous, 0).unwrap();
        assert_eq!(s.access(0x500000, false), Access::Fault);
    }

    #[test]
    fn brk_limit_moves_and_releases() {
        let mut s = Space::new();
        s.add(0x600000, 0x100000, RW, Kind::Brk, 0x10000).unwrap();
        s.set_limit(0x600000, 0x600000);
        assert_eq!(s.access(0x600000, true), Access::Fault);
        s.set_limit(0x600000, 0x625000);
        let a = commit(&mut s, 0x600000, 0x1_0000_0000);
        let b = commit(&mut s, 0x615000, 0x1_0001_0000);
        commit(&mut s, 0x620000, 0x1_0002_0000);
        assert_eq!(s.access(0x625000, true), Access::Fault);
        let r = s.set_limit(0x600000, 0x612345);
        assert_eq!(r.chunks.len(), 1);
        assert_eq!(r.zero, [(b.mirror + 0x3000, 0xd000)]);
        assert_eq!(s.access(0x600000, true), Access::Committed { mirror: a.mirror, len: 0x10000, cow: false });
    }

    #[test]
    fn unmap_whole_split_and_partial() {
        let mut s = Space::new();
        s.add(0x100000, 0x40000, RW, Kind::Anonymous, 0x10000).unwrap();
        for (i, a) in [0x100000u64, 0x110000, 0x120000, 0x130000].iter().enumerate() {
            commit(&mut s, *a, 0x1000_0000 * (i as u64 + 1));
        }
        // The middle two chunks: split into two regions.
        let r = s.unmap(0x110000, 0x20000);
        assert_eq!(r.chunks.len(), 2);
        assert!(r.zero.is_empty());
        assert_eq!(s.access(0x115000, false), Access::Fault);
        assert!(matches!(s.access(0x105000, false), Access::Committed { .. }));
        assert!(matches!(s.access(0x135000, false), Access::Committed { .. }));
        // A page inside a chunk: zeroed, stays.
        let r = s.unmap(0x131000, 0x1000);
        assert_eq!(r.zero, [(0x4000_1000, 0x1000)]);
        assert!(r.chunks.is_empty());
        // Everything.
        let r = s.unmap(0, USER_END);
        assert_eq!(r.chunks.len(), 2);
        assert_eq!(s.regions().count(), 0);
    }

    #[test]
    fn free_ranges_are_found_top_down() {
        let mut s = Space::new();
        assert_eq!(s.find_free_below(0x100000, 0x1000, 0x2000), Some(0xfe000));
        s.add(0xfe000, 0x2000, RW, Kind::Anonymous, 0).unwrap();
        assert_eq!(s.find_free_below(0x100000, 0x1000, 0x2000), Some(0xfc000));
        assert!(s.is_free(0xfc000, 0x2000));
        s.add(0x2000, 0xfc000, RW, Kind::Anonymous, 0).unwrap();
        assert_eq!(s.find_free_below(0x100000, 0x1000, 0x2000), None);
    }
}
