//! Byte streams over a session, with credit-based flow control.
//!
//! Design: a stream is one-way. The sending side runs a [`StreamSender`], the receiving side a
//! [`StreamReceiver`]; both know the stream by its id. Data travels as `StreamData` messages
//! carrying their offset in the stream; the receiver grants credit with `WindowUpdate`
//! messages naming the offset below which it accepts bytes. A stream starts with the limit
//! `start + INITIAL_STREAM_WINDOW` on both sides, so the first bytes need no round trip. The
//! direction of a message says which side it concerns (data goes to a receiver, window
//! updates to a sender), so both peers can pick stream ids freely without colliding.
//!
//! The receiver holds at most one window of bytes: data beyond the limit is a protocol
//! violation ([`StreamError::FlowControl`]), not something to buffer. Data that arrives
//! early (records may be reordered) is kept until the gap fills; data seen already is
//! dropped. A sender buffers at most `max_buffered` bytes; [`StreamSender::write`] takes what
//! fits, so a slow receiver slows the writer instead of growing memory.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec as Bytes;
use alloc::vec::Vec;
use core::fmt;

use crate::wire::{encode_messages, ChannelMessage};

/// Bytes a receiver accepts before its first window update.
pub const INITIAL_STREAM_WINDOW: u64 = 256 * 1024;
/// Largest data of one `StreamData` message (it fits one record with room to spare).
pub const MAX_CHUNK: usize = 60 * 1024;
/// Bytes a sender buffers by default.
pub const DEFAULT_SEND_BUFFER: usize = 256 * 1024;

/// Why a stream refused its peer's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamError {
    /// The peer sent bytes at or beyond the limit it was granted.
    FlowControl {
        /// Where its data ended.
        end: u64,
        /// The limit.
        limit: u64,
    },
    /// The peer changed the end of the stream, or sent bytes past it.
    FinalSize {
        /// The end announced first.
        announced: u64,
        /// The offset that contradicts it.
        got: u64,
    },
    /// An offset plus a length overflows.
    Overflow,
}

impl fmt::Display for StreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::FlowControl { end, limit } => {
                write!(f, "stream data up to {end} exceeds the granted limit {limit}")
            }
            Self::FinalSize { announced, got } => {
                write!(f, "stream ends at {announced} but the peer sent data up to {got}")
            }
            Self::Overflow => f.write_str("stream offset overflows"),
        }
    }
}

impl core::error::Error for StreamError {}

/// A byte queue: appends at the back, reads and consumes at the front, with `memcpy`s
/// rather than byte-by-byte work; the consumed front is reclaimed when it is the larger half.
#[derive(Debug, Default)]
struct Queue {
    bytes: Bytes<u8>,
    start: usize,
}

impl Queue {
    fn len(&self) -> usize {
        self.bytes.len() - self.start
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(&mut self, data: &[u8]) {
        if self.start > 0 && self.start >= self.bytes.len() / 2 {
            self.bytes.drain(..self.start);
            self.start = 0;
        }
        self.bytes.extend_from_slice(data);
    }

    /// The first `n` bytes (fewer if there are fewer).
    fn front(&self, n: usize) -> &[u8] {
        let end = self.start.saturating_add(n).min(self.bytes.len());
        self.bytes.get(self.start..end).unwrap_or(&[])
    }

    fn consume(&mut self, n: usize) {
        self.start = self.start.saturating_add(n).min(self.bytes.len());
        if self.start == self.bytes.len() {
            self.bytes.clear();
            self.start = 0;
        }
    }
}

/// The sending side of one stream.
#[derive(Debug)]
pub struct StreamSender {
    stream_id: u32,
    /// Offset of the first buffered byte (everything before it was sent).
    offset: u64,
    /// The peer accepts bytes below this.
    limit: u64,
    buffer: Queue,
    max_buffered: usize,
    finishing: bool,
    fin_sent: bool,
}

impl StreamSender {
    /// A stream `stream_id` whose first byte has offset `start` (0, or where a resumed file
    /// transfer goes on).
    pub fn new(stream_id: u32, start: u64) -> Self {
        Self {
            stream_id,
            offset: start,
            limit: start.saturating_add(INITIAL_STREAM_WINDOW),
            buffer: Queue::default(),
            max_buffered: DEFAULT_SEND_BUFFER,
            finishing: false,
            fin_sent: false,
        }
    }

    /// The stream id.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Buffers as much of `data` as fits and returns how many bytes it took; 0 after
    /// [`StreamSender::finish`].
    pub fn write(&mut self, data: &[u8]) -> usize {
        if self.finishing {
            return 0;
        }
        let n = data.len().min(self.writable());
        self.buffer.push(data.get(..n).unwrap_or(&[]));
        n
    }

    /// Bytes [`StreamSender::write`] would take now.
    pub fn writable(&self) -> usize {
        if self.finishing {
            0
        } else {
            self.max_buffered.saturating_sub(self.buffer.len())
        }
    }

    /// Ends the stream after the buffered bytes.
    pub fn finish(&mut self) {
        self.finishing = true;
    }

    /// Offset of the next byte [`StreamSender::write`] takes.
    pub fn write_offset(&self) -> u64 {
        self.offset.saturating_add(self.buffer.len() as u64)
    }

    /// Whether everything, the end included, was handed out to send.
    pub fn is_done(&self) -> bool {
        self.fin_sent
    }

    /// Whether buffered bytes wait for credit from the receiver.
    pub fn is_blocked(&self) -> bool {
        !self.buffer.is_empty() && self.offset >= self.limit
    }

    /// Takes in a message from the receiver: a window update for this stream raises the limit.
    pub fn handle_message(&mut self, message: &ChannelMessage<'_>) {
        if let ChannelMessage::WindowUpdate { stream_id, max_offset } = *message {
            if stream_id == self.stream_id {
                self.limit = self.limit.max(max_offset);
            }
        }
    }

    /// The next `StreamData` plaintext the credit allows.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        let credit = usize::try_from(self.limit.saturating_sub(self.offset)).unwrap_or(usize::MAX);
        let n = self.buffer.len().min(credit).min(MAX_CHUNK);
        let fin = self.finishing && n == self.buffer.len();
        if n == 0 && (!fin || self.fin_sent) {
            return None;
        }
        let message = ChannelMessage::StreamData {
            stream_id: self.stream_id,
            offset: self.offset,
            fin,
            data: self.buffer.front(n),
        };
        let bytes = encode_messages(&[message]).ok()?;
        self.buffer.consume(n);
        self.offset = self.offset.saturating_add(n as u64);
        self.fin_sent |= fin;
        Some(bytes)
    }
}

/// The receiving side of one stream.
#[derive(Debug)]
pub struct StreamReceiver {
    stream_id: u32,
    window: u64,
    /// Offset of the first byte not yet read by the application.
    read_offset: u64,
    /// Bytes received in order and not read yet.
    ready: Queue,
    /// Bytes that arrived ahead of a gap, by offset.
    early: BTreeMap<u64, Vec<u8>>,
    /// Bytes in `early`: at most one window, however the peer overlaps its data.
    early_bytes: u64,
    /// The limit granted to the sender.
    limit: u64,
    final_size: Option<u64>,
    transmits: VecDeque<Vec<u8>>,
}

impl StreamReceiver {
    /// Receives stream `stream_id` from offset `start`, granting `INITIAL_STREAM_WINDOW`.
    pub fn new(stream_id: u32, start: u64) -> Self {
        Self {
            stream_id,
            window: INITIAL_STREAM_WINDOW,
            read_offset: start,
            ready: Queue::default(),
            early: BTreeMap::new(),
            early_bytes: 0,
            limit: start.saturating_add(INITIAL_STREAM_WINDOW),
            final_size: None,
            transmits: VecDeque::new(),
        }
    }

    /// The stream id.
    pub fn stream_id(&self) -> u32 {
        self.stream_id
    }

    /// Offset just past the bytes received in order.
    fn received_offset(&self) -> u64 {
        self.read_offset.saturating_add(self.ready.len() as u64)
    }

    /// Takes in one `StreamData` of this stream. A violation is an error, and the stream
    /// (and, for the caller, the session) cannot be trusted any more.
    pub fn handle_data(&mut self, offset: u64, data: &[u8], fin: bool) -> Result<(), StreamError> {
        let end = offset.checked_add(data.len() as u64).ok_or(StreamError::Overflow)?;
        if end > self.limit {
            return Err(StreamError::FlowControl { end, limit: self.limit });
        }
        match self.final_size {
            Some(announced) if end > announced || (fin && end != announced) => {
                return Err(StreamError::FinalSize { announced, got: end });
            }
            None if fin => {
                if end < self.received_offset() {
                    return Err(StreamError::FinalSize { announced: end, got: self.received_offset() });
                }
                self.final_size = Some(end);
            }
            _ => {}
        }
        let have = self.received_offset();
        if end <= have {
            return Ok(()); // seen already
        }
        if offset > have {
            let len = data.len() as u64;
            if self.early_bytes.saturating_add(len) > self.window {
                return Err(StreamError::FlowControl { end: self.early_bytes.saturating_add(len), limit: self.window });
            }
            if let Some(old) = self.early.insert(offset, data.to_vec()) {
                self.early_bytes = self.early_bytes.saturating_sub(old.len() as u64);
            }
            self.early_bytes += len;
            return Ok(());
        }
        let skip = usize::try_from(have - offset).unwrap_or(usize::MAX);
        self.ready.push(data.get(skip..).unwrap_or(&[]));
        while let Some((&at, first)) = self.early.first_key_value() {
            let len = first.len() as u64;
            let have = self.received_offset();
            if at > have {
                break;
            }
            let Some(bytes) = self.early.remove(&at) else { break };
            self.early_bytes = self.early_bytes.saturating_sub(len);
            if at.saturating_add(len) > have {
                let skip = usize::try_from(have - at).unwrap_or(usize::MAX);
                self.ready.push(bytes.get(skip..).unwrap_or(&[]));
            }
        }
        Ok(())
    }

    /// Takes in a message from the sender: data of this stream; others are ignored.
    pub fn handle_message(&mut self, message: &ChannelMessage<'_>) -> Result<(), StreamError> {
        match *message {
            ChannelMessage::StreamData { stream_id, offset, fin, data } if stream_id == self.stream_id => {
                self.handle_data(offset, data, fin)
            }
            _ => Ok(()),
        }
    }

    /// Bytes ready to read.
    pub fn readable(&self) -> usize {
        self.ready.len()
    }

    /// Reads at most `max` bytes in order; grants more credit once half the window is read.
    pub fn read(&mut self, max: usize) -> Vec<u8> {
        let n = max.min(self.ready.len());
        let out = self.ready.front(n).to_vec();
        self.ready.consume(n);
        self.read_offset = self.read_offset.saturating_add(n as u64);
        let granted_ahead = self.limit.saturating_sub(self.read_offset);
        if granted_ahead <= self.window / 2 && self.final_size.is_none_or(|f| self.limit < f) {
            self.limit = self.read_offset.saturating_add(self.window);
            let update = ChannelMessage::WindowUpdate { stream_id: self.stream_id, max_offset: self.limit };
            if let Ok(bytes) = encode_messages(&[update]) {
                self.transmits.push_back(bytes);
            }
        }
        out
    }

    /// Offset of the next byte [`StreamReceiver::read`] returns.
    pub fn read_offset(&self) -> u64 {
        self.read_offset
    }

    /// Whether the sender ended the stream and every byte was read.
    pub fn is_finished(&self) -> bool {
        self.final_size == Some(self.read_offset)
    }

    /// The end of the stream, once the sender announced it.
    pub fn final_size(&self) -> Option<u64> {
        self.final_size
    }

    /// The next window update to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages;
    use alloc::vec;

    /// Moves data from sender to receiver and window updates back, reading `read_per_round`
    /// bytes each round; returns what was read.
    fn transfer(total: usize, read_per_round: usize) -> (Vec<u8>, usize) {
        let data: Vec<u8> = (0..total).map(|i| (i % 251) as u8).collect();
        let (mut tx, mut rx) = (StreamSender::new(3, 0), StreamReceiver::new(3, 0));
        let mut written = 0;
        let mut out = Vec::new();
        let mut rounds = 0;
        while !rx.is_finished() {
            rounds += 1;
            assert!(rounds < 100_000, "stuck");
            written += tx.write(data.get(written..).unwrap_or(&[]));
            if written == total {
                tx.finish();
            }
            while let Some(p) = tx.poll_transmit() {
                for m in messages(&p) {
                    rx.handle_message(&m.unwrap()).unwrap();
                }
            }
            out.extend(rx.read(read_per_round));
            while let Some(p) = rx.poll_transmit() {
                for m in messages(&p) {
                    tx.handle_message(&m.unwrap());
                }
            }
        }
        assert_eq!(out, data);
        (out, rounds)
    }

    #[test]
    fn a_megabyte_flows_through_a_smaller_window() {
        let (out, _) = transfer(1 << 20, 64 * 1024);
        assert_eq!(out.len(), 1 << 20);
    }

    #[test]
    fn a_slow_reader_blocks_the_sender_instead_of_growing_memory() {
        let mut tx = StreamSender::new(1, 0);
        let big = vec![0u8; 1 << 20];
        assert_eq!(tx.write(&big), DEFAULT_SEND_BUFFER, "the buffer is bounded");
        let mut sent = 0;
        while let Some(p) = tx.poll_transmit() {
            sent += p.len();
        }
        assert!(sent as u64 <= INITIAL_STREAM_WINDOW + 16 * 8);
        assert!(!tx.is_blocked(), "everything buffered fit the first window");
        assert_eq!(tx.write(&big), DEFAULT_SEND_BUFFER);
        while tx.poll_transmit().is_some() {}
        assert!(tx.is_blocked());
        tx.handle_message(&ChannelMessage::WindowUpdate { stream_id: 9, max_offset: u64::MAX });
        assert!(tx.is_blocked(), "another stream's credit does not count");
        tx.handle_message(&ChannelMessage::WindowUpdate { stream_id: 1, max_offset: INITIAL_STREAM_WINDOW + 10 });
        assert_eq!(tx.poll_transmit().map(|p| p.len()), Some(16 + 10));
        // The small transfer too, with a reader that takes 1 KiB at a time.
        transfer(10_000, 1024);
    }

    #[test]
    fn reordered_duplicated_and_violating_data() {
        let mut rx = StreamReceiver::new(1, 100);
        rx.handle_data(105, b"fghij", false).unwrap();
        assert_eq!(rx.readable(), 0, "a gap holds data back");
        rx.handle_data(100, b"abcdefg", false).unwrap();
        assert_eq!(rx.read(100), b"abcdefghij");
        rx.handle_data(100, b"abc", false).unwrap();
        assert_eq!(rx.readable(), 0, "copies are dropped");
        rx.handle_data(110, b"k", true).unwrap();
        assert_eq!(rx.handle_data(111, b"x", false), Err(StreamError::FinalSize { announced: 111, got: 112 }));
        assert_eq!(rx.read(10), b"k");
        assert!(rx.is_finished());
        let mut rx = StreamReceiver::new(1, 0);
        assert_eq!(
            rx.handle_data(INITIAL_STREAM_WINDOW, b"x", false),
            Err(StreamError::FlowControl { end: INITIAL_STREAM_WINDOW + 1, limit: INITIAL_STREAM_WINDOW })
        );
        assert_eq!(rx.handle_data(u64::MAX, b"xy", false), Err(StreamError::Overflow));
    }

    #[test]
    fn an_empty_stream_sends_only_its_end() {
        let mut tx = StreamSender::new(2, 0);
        tx.finish();
        let p = tx.poll_transmit().unwrap();
        assert_eq!(
            messages(&p).next().unwrap().unwrap(),
            ChannelMessage::StreamData { stream_id: 2, offset: 0, fin: true, data: &[] }
        );
        assert!(tx.is_done() && tx.poll_transmit().is_none());
        assert_eq!(tx.write(b"late"), 0);
    }
}
