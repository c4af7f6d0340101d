//! The entry point of the cargo-fuzz target in `lpx/fuzz/` (and of a test over random inputs):
//! what linuxd decodes from a process's memory (signal actions, signal frames, `#!` lines,
//! paths, `/proc` paths) from arbitrary bytes, and arbitrary sequences of operations on an
//! address space, a pipe and a descriptor table, as a hostile process can drive them. Nothing
//! here may panic; the structures' invariants are checked after every step. Exists only in
//! tests and with `fuzzing`.

use crate::fd::FdTable;
use crate::mem::{Access, Chunk, Kind, Space};
use crate::pipe::{Outcome, Pipe, CAPACITY};
use crate::{path, proc, procfs};
use alloc::string::String;
use alloc::vec;

/// Reads little-endian words out of the input, zeros once it runs out.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn byte(&mut self) -> u8 {
        let (b, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        b
    }
    fn word(&mut self) -> u64 {
        (0..8).fold(0, |w, i| w | (self.byte() as u64) << (i * 8))
    }
    fn done(&self) -> bool {
        self.0.is_empty()
    }
}

/// Runs everything over `data`.
pub fn exercise(data: &[u8]) {
    decoders(data);
    space(Input(data));
    pipe(Input(data));
    fds(Input(data));
}

fn decoders(data: &[u8]) {
    let mut action = [0u8; proc::SigAction::SIZE];
    let n = data.len().min(action.len());
    action[..n].copy_from_slice(&data[..n]);
    let a = proc::SigAction::decode(&action);
    assert_eq!(proc::SigAction::decode(&a.encode()), a);
    let _ = proc::restore(data);
    let _ = path::shebang(data);
    let text = String::from_utf8_lossy(data);
    let normal = path::normalise(&text);
    assert!(normal.starts_with('/'), "a normalised path is absolute: {normal:?}");
    assert_eq!(path::normalise(&normal), normal, "normalising is idempotent");
    let _ = path::join("/base", &text);
    if let Some(node) = procfs::resolve(&normal, 7) {
        let _ = procfs::ino(node);
    }
}

/// Regions added, unmapped, protected and limited at addresses from the input, with chunks
/// committed where an access asks for them.
fn space(mut input: Input<'_>) {
    let mut s = Space::new();
    let mut mirror = 0x3000_0000_0000u64;
    let addr = |w: u64| (w % (1 << 36)) & !0xfff;
    let mut steps = 0;
    while !input.done() && steps < 256 {
        steps += 1;
        let (op, a, b) = (input.byte(), addr(input.word()), input.word() % (1 << 24));
        let prot = (input.byte() & 7) as u32;
        match op % 6 {
            0 => {
                let kind = [Kind::Anonymous, Kind::Stack, Kind::Brk, Kind::File][(b % 4) as usize];
                let _ = s.add(a, b.next_multiple_of(4096).max(4096), prot, kind, 1 << (12 + b % 8));
            }
            1 => {
                let _ = s.unmap(a, b);
            }
            2 => {
                let _ = s.protect(a, b, prot);
            }
            3 => {
                let _ = s.set_limit(a, a + b);
            }
            4 => {
                if let Access::Commit { start, len, .. } = s.access(a + b % 4096, prot & 2 != 0) {
                    assert!(len > 0, "an empty commit");
                    s.commit(Chunk { start, len, mirror, memory: 1, cow: mirror.is_multiple_of(3) });
                    assert_eq!(s.chunk_at(start).map(|c| c.start), Some(start));
                    mirror += len + 4096;
                }
            }
            _ => {
                let _ = s.find_free_below(a.max(4096), 0, b.max(4096));
            }
        }
        // Chunks never overlap and every chunk lies in a region.
        let mut chunks: vec::Vec<Chunk> = s.chunks().copied().collect();
        chunks.sort_by_key(|c| c.start);
        for pair in chunks.windows(2) {
            assert!(pair[0].start + pair[0].len <= pair[1].start, "overlapping chunks {pair:?}");
        }
        for c in &chunks {
            assert!(s.regions().any(|r| r.start <= c.start && c.start + c.len <= r.end), "a chunk outside its region");
        }
    }
    let _ = s.layout();
}

/// Reads and writes of sizes from the input; the pipe never holds more than its capacity and
/// gives back the bytes in order.
fn pipe(mut input: Input<'_>) {
    let mut p = Pipe::new();
    let (mut written, mut read) = (0u64, 0u64);
    let mut steps = 0;
    while !input.done() && steps < 256 {
        steps += 1;
        let len = (input.word() % (CAPACITY as u64 * 2)) as usize;
        if input.byte().is_multiple_of(2) {
            let data: vec::Vec<u8> = (0..len).map(|i| (written + i as u64) as u8).collect();
            let accepts = p.accepts(len);
            if let Outcome::Done(n) = p.write(&data) {
                assert_eq!(n, accepts.min(len), "accepts() said how much a write takes");
                written += n as u64;
            }
        } else {
            let mut out = vec![0u8; len];
            if let Outcome::Done(n) = p.read(&mut out) {
                for (i, b) in out[..n].iter().enumerate() {
                    assert_eq!(*b, (read + i as u64) as u8, "bytes come out in order");
                }
                read += n as u64;
            }
        }
        assert!(p.len() <= CAPACITY && written - read == p.len() as u64);
    }
}

/// Inserts, dups and removes at descriptors from the input.
fn fds(mut input: Input<'_>) {
    let mut t: FdTable<u8> = FdTable::new();
    let mut steps = 0;
    while !input.done() && steps < 256 {
        steps += 1;
        let (op, fd) = (input.byte(), input.word() as i64 % 2048 - 16);
        match op % 4 {
            0 => {
                let _ = t.insert(op, op & 1 == 1);
            }
            1 => {
                let _ = t.dup(fd, (input.byte() as usize) * 4, op & 2 == 2);
            }
            2 => {
                let _ = t.remove(fd);
            }
            _ => {
                if let Ok(v) = t.get(fd) {
                    let _ = *v;
                }
            }
        }
    }
    drop(t.close_on_exec());
}

#[cfg(test)]
mod tests {
    #[test]
    fn random_inputs_break_nothing() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut data = alloc::vec::Vec::new();
        for round in 0..1500 {
            data.clear();
            for _ in 0..(round % 97) * 8 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                data.push(seed as u8);
            }
            super::exercise(&data);
        }
        super::exercise(b"#!/bin/sh -x\n");
        super::exercise(b"/proc/self/../1/stat");
    }
}
