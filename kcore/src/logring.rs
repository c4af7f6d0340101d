//! The kernel log: the last `N` bytes printed on the console (the kernel's own messages and
//! what tasks wrote with `DebugWrite`), kept so `dmesg` can read them back with `LogRead`.
//!
//! Bytes are numbered from boot: byte `p` of the log is at `p % N` while `p` is among the last
//! `N` written. A reader keeps the position it has read up to; if it falls behind by more than
//! `N`, it continues at the oldest byte still held.

/// A ring of the last `N` bytes written.
pub struct LogRing<const N: usize> {
    bytes: [u8; N],
    /// Bytes written since boot.
    total: u64,
}

impl<const N: usize> LogRing<N> {
    pub const fn new() -> Self {
        LogRing { bytes: [0; N], total: 0 }
    }

    /// Appends `data` (only its last `N` bytes matter).
    pub fn push(&mut self, data: &[u8]) {
        let skip = data.len().saturating_sub(N);
        self.total += skip as u64;
        for &b in &data[skip..] {
            self.bytes[(self.total % N as u64) as usize] = b;
            self.total += 1;
        }
    }

    /// Bytes written since boot: the position after the newest byte.
    pub fn end(&self) -> u64 {
        self.total
    }

    /// Copies bytes from position `from` (or the oldest byte held, if `from` is older) into
    /// `out`; returns the position of the first byte copied and the count.
    pub fn read(&self, from: u64, out: &mut [u8]) -> (u64, usize) {
        let oldest = self.total.saturating_sub(N as u64);
        let start = from.clamp(oldest, self.total);
        let n = ((self.total - start) as usize).min(out.len());
        for (i, slot) in out[..n].iter_mut().enumerate() {
            *slot = self.bytes[((start + i as u64) % N as u64) as usize];
        }
        (start, n)
    }
}

impl<const N: usize> Default for LogRing<N> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::LogRing;

    fn read_all<const N: usize>(ring: &LogRing<N>, from: u64) -> (u64, std::vec::Vec<u8>) {
        let mut out = [0u8; 64];
        let (start, n) = ring.read(from, &mut out);
        (start, out[..n].to_vec())
    }

    #[test]
    fn reads_back_what_was_written_from_any_position() {
        let mut ring = LogRing::<16>::new();
        ring.push(b"hello ");
        ring.push(b"world");
        assert_eq!(ring.end(), 11);
        assert_eq!(read_all(&ring, 0), (0, b"hello world".to_vec()));
        assert_eq!(read_all(&ring, 6), (6, b"world".to_vec()));
        assert_eq!(read_all(&ring, 11), (11, b"".to_vec()));
        assert_eq!(read_all(&ring, 99), (11, b"".to_vec()), "a position past the end reads nothing");
    }

    #[test]
    fn a_reader_that_fell_behind_continues_at_the_oldest_byte() {
        let mut ring = LogRing::<8>::new();
        ring.push(b"0123456789");
        assert_eq!(read_all(&ring, 0), (2, b"23456789".to_vec()));
        ring.push(b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(ring.end(), 36);
        assert_eq!(read_all(&ring, 5), (28, b"stuvwxyz".to_vec()));
        assert_eq!(read_all(&ring, 33), (33, b"xyz".to_vec()));
    }

    #[test]
    fn a_short_buffer_gets_the_oldest_part_first() {
        let mut ring = LogRing::<32>::new();
        ring.push(b"abcdef");
        let mut out = [0u8; 4];
        assert_eq!(ring.read(1, &mut out), (1, 4));
        assert_eq!(&out, b"bcde");
    }
}
