//! The map of free physical memory, built from the firmware's memory map.
//!
//! The firmware reports RAM as a list of ranges, in any order, possibly overlapping. The kernel
//! then takes out what is already in use (the low megabyte, its own image, the boot archive, the
//! boot information) and what it carves for itself (the frame bitmap). What is left, cut to
//! whole pages, is handed to the frame allocator. Fixed capacity, no allocation: this runs
//! before the kernel has a heap.

use core::fmt;

/// The size of a page and of a physical frame.
pub const PAGE_SIZE: u64 = 4096;

/// A half-open range of physical addresses `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Region {
    pub start: u64,
    pub end: u64,
}

impl Region {
    pub const fn new(start: u64, end: u64) -> Region {
        Region { start, end }
    }

    pub const fn len(&self) -> u64 {
        self.end.saturating_sub(self.start)
    }

    pub const fn is_empty(&self) -> bool {
        self.end <= self.start
    }
}

/// The map has no room for another region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooManyRegions;

impl fmt::Display for TooManyRegions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the physical memory map has too many regions")
    }
}

/// A set of disjoint, sorted, page-aligned free regions, with room for `N` of them.
#[derive(Clone, Debug)]
pub struct FreeMap<const N: usize> {
    regions: [Region; N],
    len: usize,
}

impl<const N: usize> Default for FreeMap<N> {
    fn default() -> Self {
        FreeMap { regions: [Region::new(0, 0); N], len: 0 }
    }
}

impl<const N: usize> FreeMap<N> {
    /// The free regions, sorted by address, disjoint and not touching.
    pub fn regions(&self) -> &[Region] {
        &self.regions[..self.len]
    }

    /// The total number of free bytes.
    pub fn total(&self) -> u64 {
        self.regions().iter().map(Region::len).sum()
    }

    /// Adds a range of RAM. The range is cut to whole pages; overlapping and adjacent
    /// regions merge.
    pub fn add(&mut self, start: u64, len: u64) -> Result<(), TooManyRegions> {
        let end = start.saturating_add(len) & !(PAGE_SIZE - 1);
        let start = start.checked_next_multiple_of(PAGE_SIZE).unwrap_or(u64::MAX);
        if start >= end {
            return Ok(());
        }
        let mut new = Region::new(start, end);
        // Absorb every region that overlaps or touches the new one.
        let mut i = 0;
        while i < self.len {
            let r = self.regions[i];
            if r.end >= new.start && r.start <= new.end {
                new = Region::new(new.start.min(r.start), new.end.max(r.end));
                self.remove_at(i);
            } else {
                i += 1;
            }
        }
        self.insert_sorted(new)
    }

    /// Takes a range out of the free map (it is in use). Partial pages count as used.
    pub fn reserve(&mut self, start: u64, len: u64) -> Result<(), TooManyRegions> {
        let start = start & !(PAGE_SIZE - 1);
        let end = start.saturating_add(len).checked_next_multiple_of(PAGE_SIZE).unwrap_or(u64::MAX);
        let end = if len == 0 { start } else { end };
        if start >= end {
            return Ok(());
        }
        let mut i = 0;
        while i < self.len {
            let r = self.regions[i];
            if r.end <= start || r.start >= end {
                i += 1;
                continue;
            }
            self.remove_at(i);
            let below = Region::new(r.start, start.max(r.start));
            let above = Region::new(end.min(r.end), r.end);
            for part in [below, above] {
                if !part.is_empty() {
                    self.insert_sorted(part)?;
                }
            }
            // The pieces sort at or after `i`; none of them overlaps the reserved range.
        }
        Ok(())
    }

    /// Finds and reserves `len` bytes (rounded up to pages) aligned to `align` (a power of two,
    /// at least a page) below `limit`, taking the lowest such place.
    pub fn take(&mut self, len: u64, align: u64, limit: u64) -> Option<u64> {
        let len = len.checked_next_multiple_of(PAGE_SIZE)?;
        let align = align.max(PAGE_SIZE);
        let found = self.regions().iter().find_map(|r| {
            let start = r.start.checked_next_multiple_of(align)?;
            let end = start.checked_add(len)?;
            (end <= r.end && end <= limit).then_some(start)
        })?;
        // Reserving inside one region splits it into at most two: room was there for one.
        self.reserve(found, len).ok()?;
        Some(found)
    }

    fn remove_at(&mut self, i: usize) {
        self.regions.copy_within(i + 1..self.len, i);
        self.len -= 1;
    }

    fn insert_sorted(&mut self, r: Region) -> Result<(), TooManyRegions> {
        if self.len == N {
            return Err(TooManyRegions);
        }
        let at = self.regions().partition_point(|x| x.start < r.start);
        self.regions.copy_within(at..self.len, at + 1);
        self.regions[at] = r;
        self.len += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::vec::Vec;

    const M: u64 = 1 << 20;

    #[test]
    fn merges_overlapping_and_adjacent_ram() {
        let mut m = FreeMap::<8>::default();
        m.add(0x10_0000, M).unwrap();
        m.add(0x20_0000, M).unwrap();
        m.add(0x18_0000, 0x10).unwrap();
        assert_eq!(m.regions(), &[Region::new(0x10_0000, 0x30_0000)]);
    }

    #[test]
    fn cuts_to_whole_pages() {
        let mut m = FreeMap::<8>::default();
        m.add(0x1001, 0x3000).unwrap();
        assert_eq!(m.regions(), &[Region::new(0x2000, 0x4000)]);
        m.add(0x10_0000, 0xfff).unwrap();
        assert_eq!(m.regions().len(), 1);
    }

    #[test]
    fn reserve_splits_and_rounds_outwards() {
        let mut m = FreeMap::<8>::default();
        m.add(0, 16 * M).unwrap();
        m.reserve(0, M).unwrap();
        m.reserve(4 * M + 1, 10).unwrap();
        assert_eq!(m.regions(), &[Region::new(M, 4 * M), Region::new(4 * M + PAGE_SIZE, 16 * M)]);
        m.reserve(0, 100 * M).unwrap();
        assert!(m.regions().is_empty());
    }

    #[test]
    fn take_respects_alignment_and_limit() {
        let mut m = FreeMap::<8>::default();
        m.add(PAGE_SIZE, 8 * M).unwrap();
        assert_eq!(m.take(M, 2 * M, u64::MAX), Some(2 * M));
        assert_eq!(m.take(10 * M, PAGE_SIZE, u64::MAX), None);
        assert_eq!(m.take(PAGE_SIZE, PAGE_SIZE, PAGE_SIZE), None);
        assert_eq!(m.take(PAGE_SIZE, PAGE_SIZE, 2 * PAGE_SIZE), Some(PAGE_SIZE));
        assert_eq!(m.total(), 8 * M - M - PAGE_SIZE);
    }

    #[test]
    fn overflow_is_an_error_not_a_panic() {
        let mut m = FreeMap::<2>::default();
        m.add(0, M).unwrap();
        m.add(2 * M, M).unwrap();
        assert_eq!(m.add(4 * M, M), Err(TooManyRegions));
        assert_eq!(m.reserve(PAGE_SIZE, PAGE_SIZE), Err(TooManyRegions));
        m.add(u64::MAX - 5, 100).unwrap();
    }

    proptest! {
        /// Against a model: one bool per page over a small address space.
        #[test]
        fn matches_page_model(ops in proptest::collection::vec((any::<bool>(), 0u64..64, 0u64..20), 0..40)) {
            let mut m = FreeMap::<64>::default();
            let mut model = [false; 96];
            for (is_add, page, pages) in ops {
                let (start, len) = (page * PAGE_SIZE, pages * PAGE_SIZE);
                if is_add {
                    m.add(start, len).unwrap();
                } else {
                    m.reserve(start, len).unwrap();
                }
                for p in page..page + pages {
                    model[p as usize] = is_add;
                }
            }
            let mut got = [false; 96];
            let regions: Vec<Region> = m.regions().to_vec();
            for w in regions.windows(2) {
                prop_assert!(w[0].end < w[1].start, "regions must be sorted, disjoint and not touching");
            }
            for r in regions {
                for p in r.start / PAGE_SIZE..r.end / PAGE_SIZE {
                    got[p as usize] = true;
                }
            }
            prop_assert_eq!(got, model);
        }
    }
}
