//! A pipe's buffer and its ends' counts: what `read` and `write` on a pipe do, without the
//! blocking (the server parks a call that would block and retries it when the pipe changes).

use alloc::collections::VecDeque;

/// Bytes a pipe holds (Linux's default capacity).
pub const CAPACITY: usize = 64 * 1024;
/// Writes of at most this many bytes are atomic: all or (when full) nothing.
pub const PIPE_BUF: usize = 4096;

/// What a read or write can do now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// This many bytes moved (0 on a read: end of file).
    Done(usize),
    /// Nothing can move yet: block, or `EAGAIN` for a non-blocking descriptor.
    WouldBlock,
    /// Writing with no reader left: `EPIPE` and `SIGPIPE`.
    Broken,
}

/// The buffer and how many open read and write ends it has.
#[derive(Debug, Default)]
pub struct Pipe {
    data: VecDeque<u8>,
    pub readers: usize,
    pub writers: usize,
}

impl Pipe {
    /// A pipe with one read end and one write end open.
    pub fn new() -> Pipe {
        Pipe { data: VecDeque::new(), readers: 1, writers: 1 }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Moves up to `out.len()` bytes out.
    pub fn read(&mut self, out: &mut [u8]) -> Outcome {
        if out.is_empty() {
            return Outcome::Done(0);
        }
        if self.data.is_empty() {
            return if self.writers == 0 { Outcome::Done(0) } else { Outcome::WouldBlock };
        }
        let n = out.len().min(self.data.len());
        // The queue is at most two slices (it wraps around once): two copies, not n moves.
        let (front, back) = self.data.as_slices();
        let first = n.min(front.len());
        out[..first].copy_from_slice(&front[..first]);
        out[first..n].copy_from_slice(&back[..n - first]);
        self.data.drain(..n);
        Outcome::Done(n)
    }

    /// How many bytes of a write of `len` would go in now (`write` would move them): 0 if it
    /// would wait, `len` without readers (the write fails).
    pub fn accepts(&self, len: usize) -> usize {
        let room = CAPACITY - self.data.len();
        if self.readers == 0 {
            len
        } else if room == 0 || (len <= PIPE_BUF && room < len) {
            0
        } else {
            len.min(room)
        }
    }

    /// Moves what fits of `data` in (all of a write of at most `PIPE_BUF` bytes, or nothing).
    pub fn write(&mut self, data: &[u8]) -> Outcome {
        if self.readers == 0 {
            return Outcome::Broken;
        }
        if data.is_empty() {
            return Outcome::Done(0);
        }
        let room = CAPACITY - self.data.len();
        if room == 0 || (data.len() <= PIPE_BUF && room < data.len()) {
            return Outcome::WouldBlock;
        }
        let n = data.len().min(room);
        self.data.extend(&data[..n]);
        Outcome::Done(n)
    }

    /// `poll`: readable (data, or no writer: end of file), writable (room, or no reader).
    pub fn readable(&self) -> bool {
        !self.data.is_empty() || self.writers == 0
    }

    pub fn writable(&self) -> bool {
        self.readers == 0 || self.data.len() + PIPE_BUF <= CAPACITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn bytes_come_out_in_order_then_end_of_file_when_writers_close() {
        let mut p = Pipe::new();
        let mut buf = [0u8; 4];
        assert_eq!(p.read(&mut buf), Outcome::WouldBlock);
        assert_eq!(p.write(b"hello"), Outcome::Done(5));
        assert_eq!(p.read(&mut buf), Outcome::Done(4));
        assert_eq!(&buf, b"hell");
        p.writers = 0;
        assert_eq!(p.read(&mut buf), Outcome::Done(1));
        assert_eq!(buf[0], b'o');
        assert_eq!(p.read(&mut buf), Outcome::Done(0));
        assert!(p.readable());
    }

    #[test]
    fn a_full_pipe_blocks_small_writes_whole_and_takes_part_of_large_ones() {
        let mut p = Pipe::new();
        assert_eq!(p.write(&vec![1u8; CAPACITY - 100]), Outcome::Done(CAPACITY - 100));
        assert!(!p.writable());
        assert_eq!(p.write(&[2u8; 200]), Outcome::WouldBlock, "atomic: all or nothing");
        assert_eq!(p.accepts(PIPE_BUF), 0, "small: all or nothing");
        assert_eq!(p.accepts(PIPE_BUF + 1), 100);
        assert_eq!(p.write(&vec![3u8; PIPE_BUF + 1]), Outcome::Done(100), "large: what fits");
        assert_eq!(p.write(&[4u8]), Outcome::WouldBlock);
        assert_eq!(p.len(), CAPACITY);
        p.readers = 0;
        assert_eq!(p.write(&[4u8]), Outcome::Broken);
        assert!(p.writable());
    }
}
