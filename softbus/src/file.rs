//! File transfer over a stream, resumable after a break, checked by SHA-256.
//!
//! Design: the sender offers a file (`FileOffer`: stream id, size, SHA-256 of the whole file,
//! name). The receiver answers `FileAccept` with the number of bytes it already holds from an
//! earlier, broken transfer of the same content (the application finds them, e.g. a partial
//! file named after the hash, and passes the SHA-256 state over them); the bytes from that
//! offset travel on the stream with flow control ([`crate::stream`]), whose offsets are file
//! offsets. The receiver hashes every byte in order, prefix included, and ends with
//! `FileDone`: `COMPLETE` when the hash matches the offer, `HASH_MISMATCH` when it does not.
//! A transfer that breaks (the session ends) leaves the receiver with a prefix; offering the
//! same file again resumes there. The machines do no file I/O: the sender's application
//! writes the file's bytes from [`FileSender::next_offset`], the receiver's writes the
//! [`FileEvent::Data`] it is given.

use alloc::collections::VecDeque;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use sha2::{Digest, Sha256};

use crate::stream::{StreamError, StreamReceiver, StreamSender};
use crate::wire::{encode_messages, ChannelMessage, FileStatus, WireError};

/// Why a transfer failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileError {
    /// A message could not be encoded (a name longer than 255 bytes).
    Encode(WireError),
    /// The peer broke the stream's rules.
    Stream(StreamError),
    /// The receiver asked to resume beyond the end of the file.
    BadOffset {
        /// The offset asked for.
        offset: u64,
        /// The file's size.
        size: u64,
    },
    /// The stream ended at another size than offered.
    WrongSize {
        /// Offered.
        offered: u64,
        /// Received.
        got: u64,
    },
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Encode(e) => write!(f, "cannot encode the file message: {e}"),
            Self::Stream(e) => write!(f, "{e}"),
            Self::BadOffset { offset, size } => write!(f, "resume offset {offset} is beyond the file size {size}"),
            Self::WrongSize { offered, got } => {
                write!(f, "the file was offered with {offered} bytes but {got} arrived")
            }
        }
    }
}

impl core::error::Error for FileError {}

impl From<StreamError> for FileError {
    fn from(e: StreamError) -> Self {
        Self::Stream(e)
    }
}

/// What a transfer reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileEvent {
    /// (Sender) the receiver accepted and holds the bytes before `offset` already.
    Accepted {
        /// Where the sender starts.
        offset: u64,
    },
    /// (Receiver) bytes to write at `offset`, in order.
    Data {
        /// Their offset in the file.
        offset: u64,
        /// The bytes.
        bytes: Vec<u8>,
    },
    /// The transfer ended: on the receiver when the last byte was checked, on the sender when
    /// the receiver's `FileDone` arrived.
    Done(FileStatus),
}

/// What was offered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOffer {
    /// The stream of the transfer.
    pub stream_id: u32,
    /// Bytes in the file.
    pub size: u64,
    /// SHA-256 of the whole file.
    pub sha256: [u8; 32],
    /// Its name (no directories: the receiver decides where it goes).
    pub name: String,
}

impl FileOffer {
    /// The offer in `message`, if it is one.
    pub fn from_message(message: &ChannelMessage<'_>) -> Option<Self> {
        match *message {
            ChannelMessage::FileOffer { stream_id, size, sha256, name } => {
                Some(Self { stream_id, size, sha256, name: String::from(name) })
            }
            _ => None,
        }
    }
}

/// The sending side of one transfer.
#[derive(Debug)]
pub struct FileSender {
    offer: FileOffer,
    stream: Option<StreamSender>,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<FileEvent>,
    done: Option<FileStatus>,
}

impl FileSender {
    /// Offers `offer`; the offer is ready to send.
    pub fn new(offer: FileOffer) -> Result<Self, FileError> {
        let message = ChannelMessage::FileOffer {
            stream_id: offer.stream_id,
            size: offer.size,
            sha256: offer.sha256,
            name: &offer.name,
        };
        let bytes = encode_messages(&[message]).map_err(FileError::Encode)?;
        Ok(Self { offer, stream: None, transmits: VecDeque::from([bytes]), events: VecDeque::new(), done: None })
    }

    /// The offset of the next file bytes to [`FileSender::write`], once accepted.
    pub fn next_offset(&self) -> Option<u64> {
        self.stream.as_ref().filter(|_| self.done.is_none()).map(StreamSender::write_offset)
    }

    /// Bytes [`FileSender::write`] would take now.
    pub fn writable(&self) -> usize {
        let left = self.next_offset().map_or(0, |at| self.offer.size.saturating_sub(at));
        self.stream.as_ref().map_or(0, |s| s.writable().min(usize::try_from(left).unwrap_or(usize::MAX)))
    }

    /// Whether buffered bytes wait for credit from the receiver (writing more would only
    /// fill the buffer).
    pub fn is_blocked(&self) -> bool {
        self.stream.as_ref().is_some_and(StreamSender::is_blocked)
    }

    /// Takes file bytes that start at [`FileSender::next_offset`]; returns how many it took.
    /// The stream ends by itself after the last byte of the file.
    pub fn write(&mut self, bytes: &[u8]) -> usize {
        let take = bytes.len().min(self.writable());
        let size = self.offer.size;
        let Some(stream) = self.stream.as_mut() else { return 0 };
        let n = stream.write(bytes.get(..take).unwrap_or(&[]));
        if stream.write_offset() >= size {
            stream.finish();
        }
        n
    }

    /// Takes in a message from the receiver.
    pub fn handle_message(&mut self, message: &ChannelMessage<'_>) -> Result<(), FileError> {
        let id = self.offer.stream_id;
        match *message {
            ChannelMessage::FileAccept { stream_id, offset } if stream_id == id && self.stream.is_none() => {
                if offset > self.offer.size {
                    return Err(FileError::BadOffset { offset, size: self.offer.size });
                }
                let mut stream = StreamSender::new(id, offset);
                if offset == self.offer.size {
                    stream.finish();
                }
                self.stream = Some(stream);
                self.events.push_back(FileEvent::Accepted { offset });
            }
            ChannelMessage::FileDone { stream_id, status } if stream_id == id && self.done.is_none() => {
                self.done = Some(status);
                self.stream = None;
                self.events.push_back(FileEvent::Done(status));
            }
            ChannelMessage::WindowUpdate { .. } => {
                if let Some(stream) = self.stream.as_mut() {
                    stream.handle_message(message);
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// How the transfer ended, once the receiver said so.
    pub fn status(&self) -> Option<FileStatus> {
        self.done
    }

    /// The next plaintext to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front().or_else(|| self.stream.as_mut().and_then(StreamSender::poll_transmit))
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<FileEvent> {
        self.events.pop_front()
    }
}

/// The receiving side of one transfer.
#[derive(Debug)]
pub struct FileReceiver {
    offer: FileOffer,
    stream: StreamReceiver,
    hasher: Sha256,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<FileEvent>,
    done: Option<FileStatus>,
}

impl FileReceiver {
    /// Accepts `offer`, holding its first `have` bytes already, whose SHA-256 state is
    /// `prefix` (a fresh `Sha256` when `have` is 0). The acceptance is ready to send.
    pub fn accept(offer: FileOffer, have: u64, prefix: Sha256) -> Result<Self, FileError> {
        if have > offer.size {
            return Err(FileError::BadOffset { offset: have, size: offer.size });
        }
        let accept = ChannelMessage::FileAccept { stream_id: offer.stream_id, offset: have };
        let bytes = encode_messages(&[accept]).map_err(FileError::Encode)?;
        let mut receiver = Self {
            stream: StreamReceiver::new(offer.stream_id, have),
            offer,
            hasher: prefix,
            transmits: VecDeque::from([bytes]),
            events: VecDeque::new(),
            done: None,
        };
        if have == receiver.offer.size {
            receiver.finish();
        }
        Ok(receiver)
    }

    /// The `FileDone` that refuses an offer on `stream_id` (or reports a local failure).
    pub fn refusal(stream_id: u32, status: FileStatus) -> Result<Vec<u8>, FileError> {
        encode_messages(&[ChannelMessage::FileDone { stream_id, status }]).map_err(FileError::Encode)
    }

    /// The offer being received.
    pub fn offer(&self) -> &FileOffer {
        &self.offer
    }

    /// Takes in a message from the sender. An error means the sender broke the rules; the
    /// transfer is over (the caller should end the session).
    pub fn handle_message(&mut self, message: &ChannelMessage<'_>) -> Result<(), FileError> {
        if self.done.is_some() {
            return Ok(());
        }
        self.stream.handle_message(message)?;
        if let Some(end) = self.stream.final_size().filter(|&end| end != self.offer.size) {
            return Err(FileError::WrongSize { offered: self.offer.size, got: end });
        }
        let end = self.stream.read_offset().saturating_add(self.stream.readable() as u64);
        if end > self.offer.size {
            return Err(FileError::WrongSize { offered: self.offer.size, got: end });
        }
        while self.stream.readable() > 0 {
            let offset = self.stream.read_offset();
            let bytes = self.stream.read(usize::MAX);
            self.hasher.update(&bytes);
            self.events.push_back(FileEvent::Data { offset, bytes });
        }
        while let Some(update) = self.stream.poll_transmit() {
            self.transmits.push_back(update);
        }
        if self.stream.is_finished() {
            self.finish();
        }
        Ok(())
    }

    fn finish(&mut self) {
        let digest: [u8; 32] = self.hasher.clone().finalize().into();
        let status = if digest == self.offer.sha256 { FileStatus::COMPLETE } else { FileStatus::HASH_MISMATCH };
        self.done = Some(status);
        if let Ok(bytes) = Self::refusal(self.offer.stream_id, status) {
            self.transmits.push_back(bytes);
        }
        self.events.push_back(FileEvent::Done(status));
    }

    /// Where the next byte goes: the bytes held so far.
    pub fn received(&self) -> u64 {
        self.stream.read_offset()
    }

    /// How the transfer ended, once it did.
    pub fn status(&self) -> Option<FileStatus> {
        self.done
    }

    /// The next plaintext to send.
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<FileEvent> {
        self.events.pop_front()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::messages;

    fn file(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 253) as u8).collect()
    }

    fn offer_of(data: &[u8]) -> FileOffer {
        FileOffer { stream_id: 7, size: data.len() as u64, sha256: Sha256::digest(data).into(), name: "f.bin".into() }
    }

    /// Runs a transfer of `data` to a receiver holding `disk` already, until done or until
    /// `cut_after` bytes reached the receiver in this session. Returns the receiver's disk.
    fn session(data: &[u8], mut disk: Vec<u8>, cut_after: Option<usize>) -> (Vec<u8>, Option<FileStatus>) {
        let mut tx = FileSender::new(offer_of(data)).unwrap();
        let offer_bytes = tx.poll_transmit().unwrap();
        let offer = messages(&offer_bytes).next().and_then(|m| FileOffer::from_message(&m.unwrap())).unwrap();
        let mut prefix = Sha256::new();
        prefix.update(&disk);
        let mut rx = FileReceiver::accept(offer, disk.len() as u64, prefix).unwrap();
        let mut got_here = 0;
        for _ in 0..10_000 {
            while let Some(p) = rx.poll_transmit() {
                for m in messages(&p) {
                    tx.handle_message(&m.unwrap()).unwrap();
                }
            }
            if let Some(at) = tx.next_offset() {
                let at = usize::try_from(at).unwrap();
                tx.write(&data[at..]);
            }
            while let Some(p) = tx.poll_transmit() {
                for m in messages(&p) {
                    rx.handle_message(&m.unwrap()).unwrap();
                }
                while let Some(e) = rx.poll_event() {
                    if let FileEvent::Data { offset, bytes } = e {
                        assert_eq!(offset as usize, disk.len());
                        got_here += bytes.len();
                        disk.extend(bytes);
                    }
                }
                if cut_after.is_some_and(|cut| got_here >= cut) {
                    return (disk, None); // the session breaks here
                }
            }
            if tx.status().is_some() {
                break;
            }
        }
        assert_eq!(tx.status(), rx.status());
        (disk, tx.status())
    }

    #[test]
    fn a_transfer_completes_and_checks_the_hash() {
        let data = file(700_000);
        let (disk, status) = session(&data, Vec::new(), None);
        assert_eq!(status, Some(FileStatus::COMPLETE));
        assert_eq!(disk, data);
        let (_, status) = session(&[], Vec::new(), None);
        assert_eq!(status, Some(FileStatus::COMPLETE), "an empty file");
    }

    #[test]
    fn a_broken_transfer_resumes_where_it_stopped() {
        let data = file(500_000);
        let (partial, status) = session(&data, Vec::new(), Some(200_000));
        assert_eq!(status, None);
        assert!(partial.len() >= 200_000 && partial.len() < data.len());
        let (disk, status) = session(&data, partial.clone(), None);
        assert_eq!(status, Some(FileStatus::COMPLETE));
        assert_eq!(disk, data);
        // A damaged prefix is caught by the hash.
        let mut damaged = partial;
        damaged[10] ^= 1;
        let (_, status) = session(&data, damaged, None);
        assert_eq!(status, Some(FileStatus::HASH_MISMATCH));
    }

    #[test]
    fn bad_offsets_and_sizes_are_errors() {
        let data = file(10);
        let mut tx = FileSender::new(offer_of(&data)).unwrap();
        assert_eq!(
            tx.handle_message(&ChannelMessage::FileAccept { stream_id: 7, offset: 11 }),
            Err(FileError::BadOffset { offset: 11, size: 10 })
        );
        assert!(matches!(FileReceiver::accept(offer_of(&data), 11, Sha256::new()), Err(FileError::BadOffset { .. })));
        let mut rx = FileReceiver::accept(offer_of(&data), 0, Sha256::new()).unwrap();
        let short = ChannelMessage::StreamData { stream_id: 7, offset: 0, fin: true, data: b"abc" };
        assert_eq!(rx.handle_message(&short), Err(FileError::WrongSize { offered: 10, got: 3 }));
        let mut rx = FileReceiver::accept(offer_of(&data), 0, Sha256::new()).unwrap();
        let past_the_end = ChannelMessage::StreamData { stream_id: 7, offset: 8, fin: false, data: b"abc" };
        rx.handle_message(&ChannelMessage::StreamData { stream_id: 7, offset: 0, fin: false, data: &[0; 8] }).unwrap();
        assert_eq!(rx.handle_message(&past_the_end), Err(FileError::WrongSize { offered: 10, got: 11 }));
        let long = FileOffer { name: "n".repeat(256), ..offer_of(&data) };
        assert!(matches!(FileSender::new(long), Err(FileError::Encode(_))));
    }
}
