//! The physical frame allocator: one bit per 4 KiB frame over the span of usable memory.
//!
//! A bitmap is small (32 KiB per GiB), has no per-frame metadata to corrupt, answers "is this
//! frame free?" exactly (so a double free is caught, not absorbed), and allocates in bounded
//! time. Allocation scans from a rotating hint; contiguous allocation (for DMA buffers and the
//! kernel heap) scans for a run of clear bits.

use crate::memmap::{Region, PAGE_SIZE};
use core::fmt;

/// Why a frame could not be freed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameError {
    /// The address is not the start of a frame.
    Misaligned(u64),
    /// The address is outside the memory this allocator manages.
    OutOfRange(u64),
    /// The frame is already free.
    DoubleFree(u64),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FrameError::Misaligned(a) => write!(f, "frame address {a:#x} is not page-aligned"),
            FrameError::OutOfRange(a) => write!(f, "frame address {a:#x} is outside managed memory"),
            FrameError::DoubleFree(a) => write!(f, "frame {a:#x} is already free"),
        }
    }
}

/// A bitmap frame allocator. A set bit means the frame is in use (or is not RAM).
pub struct FrameAllocator<'a> {
    base: u64,
    frames: usize,
    bits: &'a mut [u64],
    free: usize,
    hint: usize,
}

impl<'a> FrameAllocator<'a> {
    /// How many `u64` words of bitmap are needed to cover `span` bytes.
    pub const fn words_for(span: u64) -> usize {
        (span / PAGE_SIZE).div_ceil(64) as usize
    }

    /// An allocator for the frames of `span` starting at `span.start` (page-aligned), with every
    /// frame in use. `bits` must hold at least `words_for(span.len())` words.
    pub fn new(span: Region, bits: &'a mut [u64]) -> FrameAllocator<'a> {
        let frames = (span.len() / PAGE_SIZE) as usize;
        assert!(span.start.is_multiple_of(PAGE_SIZE) && bits.len() >= frames.div_ceil(64), "bitmap too small for span");
        bits.fill(u64::MAX);
        FrameAllocator { base: span.start, frames, bits, free: 0, hint: 0 }
    }

    /// Marks the whole pages of `region` as free. Pages outside the span are ignored.
    pub fn release(&mut self, region: Region) {
        let end = region.end.min(self.base + self.frames as u64 * PAGE_SIZE);
        let mut addr = region.start.max(self.base).next_multiple_of(PAGE_SIZE);
        while addr + PAGE_SIZE <= end {
            let i = self.index(addr);
            if self.is_used(i) {
                self.clear(i);
                self.free += 1;
            }
            addr += PAGE_SIZE;
        }
    }

    /// The number of free frames.
    pub fn free_frames(&self) -> usize {
        self.free
    }

    /// Allocates one frame, returning its physical address.
    pub fn alloc(&mut self) -> Option<u64> {
        if self.free == 0 {
            return None;
        }
        let words = self.bits.len();
        let start_word = self.hint / 64;
        for k in 0..words {
            let w = (start_word + k) % words;
            let word = self.bits[w];
            if word != u64::MAX {
                let i = w * 64 + (!word).trailing_zeros() as usize;
                if i < self.frames {
                    self.set(i);
                    self.free -= 1;
                    self.hint = i;
                    return Some(self.addr(i));
                }
            }
        }
        None
    }

    /// Allocates `count` physically contiguous frames whose first address is a multiple of
    /// `align` (a power of two; at least a page), lowest address first.
    pub fn alloc_contiguous(&mut self, count: usize, align: u64) -> Option<u64> {
        if count == 0 || count > self.free {
            return None;
        }
        let step = (align.max(PAGE_SIZE) / PAGE_SIZE) as usize;
        let first = (self.base.next_multiple_of(align.max(PAGE_SIZE)) - self.base) / PAGE_SIZE;
        let mut i = first as usize;
        while i + count <= self.frames {
            match (i..i + count).rev().find(|&j| self.is_used(j)) {
                // Skip past the used frame, to the next aligned start.
                Some(used) => i = (used + 1).next_multiple_of(step).max(i + step),
                None => {
                    (i..i + count).for_each(|j| self.set(j));
                    self.free -= count;
                    return Some(self.addr(i));
                }
            }
        }
        None
    }

    /// Returns a frame.
    pub fn free(&mut self, addr: u64) -> Result<(), FrameError> {
        if !addr.is_multiple_of(PAGE_SIZE) {
            return Err(FrameError::Misaligned(addr));
        }
        if addr < self.base || addr >= self.base + self.frames as u64 * PAGE_SIZE {
            return Err(FrameError::OutOfRange(addr));
        }
        let i = self.index(addr);
        if !self.is_used(i) {
            return Err(FrameError::DoubleFree(addr));
        }
        self.clear(i);
        self.free += 1;
        Ok(())
    }

    fn index(&self, addr: u64) -> usize {
        ((addr - self.base) / PAGE_SIZE) as usize
    }
    fn addr(&self, i: usize) -> u64 {
        self.base + i as u64 * PAGE_SIZE
    }
    fn is_used(&self, i: usize) -> bool {
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }
    fn set(&mut self, i: usize) {
        self.bits[i / 64] |= 1 << (i % 64);
    }
    fn clear(&mut self, i: usize) {
        self.bits[i / 64] &= !(1 << (i % 64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::vec;

    const M: u64 = 1 << 20;

    fn with_alloc<R>(span: Region, f: impl FnOnce(&mut FrameAllocator) -> R) -> R {
        let mut bits = vec![0u64; FrameAllocator::words_for(span.len())];
        let mut a = FrameAllocator::new(span, &mut bits);
        f(&mut a)
    }

    #[test]
    fn allocates_only_released_frames_and_catches_double_free() {
        with_alloc(Region::new(M, 2 * M), |a| {
            assert_eq!(a.alloc(), None);
            a.release(Region::new(M + 8 * PAGE_SIZE, M + 10 * PAGE_SIZE));
            assert_eq!(a.free_frames(), 2);
            let x = a.alloc().unwrap();
            let y = a.alloc().unwrap();
            assert_eq!(BTreeSet::from([x, y]), BTreeSet::from([M + 8 * PAGE_SIZE, M + 9 * PAGE_SIZE]));
            assert_eq!(a.alloc(), None);
            a.free(x).unwrap();
            assert_eq!(a.free(x), Err(FrameError::DoubleFree(x)));
            assert_eq!(a.free(x + 1), Err(FrameError::Misaligned(x + 1)));
            assert_eq!(a.free(0), Err(FrameError::OutOfRange(0)));
            assert_eq!(a.free(2 * M), Err(FrameError::OutOfRange(2 * M)));
        });
    }

    #[test]
    fn contiguous_allocation_is_aligned_and_skips_holes() {
        with_alloc(Region::new(0, 8 * M), |a| {
            a.release(Region::new(PAGE_SIZE, 8 * M));
            let p = a.alloc_contiguous(512, 2 * M).unwrap();
            assert_eq!(p, 2 * M);
            let q = a.alloc_contiguous(3, PAGE_SIZE).unwrap();
            assert_eq!(q, PAGE_SIZE);
            assert_eq!(a.alloc_contiguous(10_000, PAGE_SIZE), None);
            assert_eq!(a.free_frames(), 2047 - 512 - 3);
        });
    }

    proptest! {
        #[test]
        fn never_hands_out_a_frame_twice(ops in proptest::collection::vec((0u8..3, 0usize..300), 1..300)) {
            with_alloc(Region::new(0, M), |a| {
                a.release(Region::new(16 * PAGE_SIZE, M));
                let mut held: BTreeSet<u64> = BTreeSet::new();
                for (op, n) in ops {
                    match op {
                        0 => if let Some(f) = a.alloc() { prop_assert!(held.insert(f)); prop_assert!(f >= 16 * PAGE_SIZE); },
                        1 => if let Some(f) = a.alloc_contiguous(n % 8 + 1, PAGE_SIZE) {
                            for k in 0..(n % 8 + 1) as u64 { prop_assert!(held.insert(f + k * PAGE_SIZE)); }
                        },
                        _ => if let Some(&f) = held.iter().nth(n % held.len().max(1)) {
                            held.remove(&f);
                            prop_assert_eq!(a.free(f), Ok(()));
                        },
                    }
                    prop_assert_eq!(a.free_frames() + held.len(), 256 - 16);
                }
                Ok(())
            })?;
        }
    }
}
