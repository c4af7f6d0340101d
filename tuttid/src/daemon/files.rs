//! File transfers of one session: the file I/O around `softbus::file`'s sans-IO machines.
//!
//! Design: a [`Files`] value lives in each session task. Outgoing transfers read the local
//! file from the offset the receiver asked for, as the stream's credit allows; incoming ones
//! write into a partial file named after the content's SHA-256 (`.tutti-partial-<hex>`) in
//! the receive directory, so a transfer broken with its session resumes where it stopped
//! when the same content is offered again; the receiver hashes the partial prefix and hands
//! the state to `FileReceiver::accept`. A finished, verified file is renamed to its offered
//! name (only the last path component, never starting with a dot; an existing file is not
//! overwritten: ` (1)`, ` (2)`, ... are appended). A file whose hash does not match is
//! deleted. Progress of outgoing transfers goes to the waiting `tutti send`.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use softbus::file::{FileEvent, FileOffer, FileReceiver, FileSender};
use softbus::wire::{ChannelMessage, FileStatus};
use tokio::sync::mpsc;

use crate::services::hex;

/// Incoming transfers at once on one session; more offers are refused.
const MAX_INCOMING: usize = 8;

/// What an outgoing transfer tells its waiter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SendProgress {
    /// The receiver holds the bytes before `offset` already.
    Accepted { offset: u64 },
    /// Bytes handed to the session so far (including a resumed prefix).
    Sent { bytes: u64 },
    /// The receiver's verdict.
    Done(FileStatus),
    /// The transfer failed here.
    Failed(String),
}

struct Outgoing {
    sender: FileSender,
    file: File,
    progress: mpsc::UnboundedSender<SendProgress>,
    reported: u64,
}

struct Incoming {
    receiver: FileReceiver,
    file: File,
    partial: PathBuf,
    dir: PathBuf,
}

/// The transfers of one session.
#[derive(Default)]
pub(crate) struct Files {
    next_stream: u32,
    outgoing: HashMap<u32, Outgoing>,
    incoming: HashMap<u32, Incoming>,
    /// Plaintexts to send that are not produced by a machine (refusals).
    extra: Vec<Vec<u8>>,
}

/// The only acceptable form of an offered name: one plain path component, no leading dot.
pub(crate) fn safe_name(name: &str) -> Option<&str> {
    busvc::safe_file_name(name).then_some(name)
}

impl Files {
    /// Starts sending `path`, already open as `file`, of `size` bytes and hash `sha256`.
    pub(crate) fn send(
        &mut self,
        name: String,
        file: File,
        size: u64,
        sha256: [u8; 32],
        progress: mpsc::UnboundedSender<SendProgress>,
    ) {
        self.next_stream = self.next_stream.wrapping_add(1);
        let stream_id = self.next_stream;
        match FileSender::new(FileOffer { stream_id, size, sha256, name }) {
            Ok(sender) => {
                self.outgoing.insert(stream_id, Outgoing { sender, file, progress, reported: 0 });
            }
            Err(e) => {
                let _ = progress.send(SendProgress::Failed(e.to_string()));
            }
        }
    }

    /// Refuses an offer with `status`.
    pub(crate) fn refuse(&mut self, stream_id: u32, status: FileStatus) {
        if let Ok(bytes) = FileReceiver::refusal(stream_id, status) {
            self.extra.push(bytes);
        }
    }

    /// Accepts `offer` into `dir`, resuming from a partial file of the same content.
    pub(crate) fn accept(&mut self, offer: FileOffer, dir: &Path) {
        let stream_id = offer.stream_id;
        if self.incoming.len() >= MAX_INCOMING || self.incoming.contains_key(&stream_id) {
            tracing::warn!(name = %offer.name, "refused a file: too many transfers at once, or a stream id in use");
            self.refuse(stream_id, FileStatus::REFUSED);
            return;
        }
        match self.open_incoming(offer, dir) {
            Ok(incoming) => {
                self.incoming.insert(stream_id, incoming);
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot receive a file");
                self.refuse(stream_id, FileStatus::FAILED);
            }
        }
    }

    fn open_incoming(&mut self, offer: FileOffer, dir: &Path) -> Result<Incoming, String> {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let partial = dir.join(format!(".tutti-partial-{}", hex(&offer.sha256)));
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&partial)
            .map_err(|e| format!("{}: {e}", partial.display()))?;
        let mut have = file.metadata().map_err(|e| e.to_string())?.len();
        if have > offer.size {
            file.set_len(0).map_err(|e| e.to_string())?;
            have = 0;
        }
        let mut prefix = Sha256::new();
        file.seek(SeekFrom::Start(0)).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = have;
        while left > 0 {
            let n = file.read(&mut buf).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            let n = n.min(usize::try_from(left).unwrap_or(usize::MAX));
            prefix.update(buf.get(..n).unwrap_or(&[]));
            left -= n as u64;
        }
        if have > 0 {
            tracing::info!(name = %offer.name, resumed_at = have, "resuming a file transfer");
        }
        let receiver = FileReceiver::accept(offer, have, prefix).map_err(|e| e.to_string())?;
        Ok(Incoming { receiver, file, partial, dir: dir.to_path_buf() })
    }

    /// Takes in a channel message of the session. Returns an offer that needs a decision.
    pub(crate) fn handle_message(&mut self, message: &ChannelMessage<'_>) -> Option<FileOffer> {
        match *message {
            ChannelMessage::FileOffer { .. } => return FileOffer::from_message(message),
            ChannelMessage::FileAccept { stream_id, .. }
            | ChannelMessage::FileDone { stream_id, .. }
            | ChannelMessage::WindowUpdate { stream_id, .. } => {
                if let Some(out) = self.outgoing.get_mut(&stream_id) {
                    if let Err(e) = out.sender.handle_message(message) {
                        let _ = out.progress.send(SendProgress::Failed(e.to_string()));
                        self.outgoing.remove(&stream_id);
                    }
                }
            }
            ChannelMessage::StreamData { stream_id, .. } => {
                if let Some(inc) = self.incoming.get_mut(&stream_id) {
                    if let Err(e) = inc.receiver.handle_message(message) {
                        tracing::warn!(error = %e, "a file transfer broke the stream rules");
                        let _ = std::fs::remove_file(&inc.partial);
                        self.incoming.remove(&stream_id);
                        self.refuse(stream_id, FileStatus::FAILED);
                    }
                }
            }
            _ => {}
        }
        None
    }

    /// Moves data: reads files for outgoing transfers, writes received data, reports events;
    /// returns the plaintexts to send.
    pub(crate) fn pump(&mut self) -> Vec<Vec<u8>> {
        let mut out = std::mem::take(&mut self.extra);
        let mut finished = Vec::new();
        for (&id, o) in &mut self.outgoing {
            if let Some(at) = o.sender.next_offset() {
                let want = o.sender.writable().min(256 * 1024);
                if want > 0 {
                    let mut buf = vec![0u8; want];
                    let read = o.file.seek(SeekFrom::Start(at)).and_then(|_| o.file.read(&mut buf));
                    match read {
                        Ok(n) => {
                            o.sender.write(buf.get(..n).unwrap_or(&[]));
                        }
                        Err(e) => {
                            let _ = o.progress.send(SendProgress::Failed(format!("reading the file: {e}")));
                            finished.push(id);
                            continue;
                        }
                    }
                }
                if at >= o.reported.saturating_add(256 * 1024) {
                    o.reported = at;
                    let _ = o.progress.send(SendProgress::Sent { bytes: at });
                }
            }
            while let Some(p) = o.sender.poll_transmit() {
                out.push(p);
            }
            while let Some(event) = o.sender.poll_event() {
                match event {
                    FileEvent::Accepted { offset } => {
                        let _ = o.progress.send(SendProgress::Accepted { offset });
                    }
                    FileEvent::Done(status) => {
                        let _ = o.progress.send(SendProgress::Done(status));
                        finished.push(id);
                    }
                    FileEvent::Data { .. } => {}
                }
            }
        }
        for id in finished {
            self.outgoing.remove(&id);
        }
        let mut done = Vec::new();
        for (&id, inc) in &mut self.incoming {
            while let Some(event) = inc.receiver.poll_event() {
                match event {
                    FileEvent::Data { bytes, .. } => {
                        if let Err(e) = inc.file.write_all(&bytes) {
                            tracing::warn!(error = %e, "cannot write a received file");
                            done.push((id, None));
                            break;
                        }
                    }
                    FileEvent::Done(status) => done.push((id, Some(status))),
                    FileEvent::Accepted { .. } => {}
                }
            }
            while let Some(p) = inc.receiver.poll_transmit() {
                out.push(p);
            }
        }
        for (id, status) in done {
            let Some(inc) = self.incoming.remove(&id) else { continue };
            finish_incoming(inc, status);
        }
        out
    }

    /// Whether an outgoing transfer could go on at once (file bytes to read, buffer space,
    /// credit): the session task then loops again instead of waiting for input.
    pub(crate) fn busy(&self) -> bool {
        self.outgoing.values().any(|o| o.sender.writable() > 0 && !o.sender.is_blocked())
    }

    /// When the session ends: outgoing waiters learn it; partial files stay for a resume.
    pub(crate) fn session_lost(&mut self, reason: &str) {
        for (_, o) in self.outgoing.drain() {
            let _ = o.progress.send(SendProgress::Failed(reason.to_string()));
        }
        for (_, inc) in self.incoming.drain() {
            tracing::info!(name = %inc.receiver.offer().name, held = inc.receiver.received(), "file transfer broken; it resumes when offered again");
        }
    }
}

fn finish_incoming(inc: Incoming, status: Option<FileStatus>) {
    let name = inc.receiver.offer().name.clone();
    match status {
        Some(FileStatus::COMPLETE) => {
            let _ = inc.file.sync_all();
            let mut dest = inc.dir.join(&name);
            let mut n = 1;
            while dest.exists() {
                dest = inc.dir.join(format!("{name} ({n})"));
                n += 1;
            }
            match std::fs::rename(&inc.partial, &dest) {
                Ok(()) => tracing::info!(file = %dest.display(), bytes = inc.receiver.offer().size, "received a file"),
                Err(e) => tracing::warn!(error = %e, "cannot move a received file into place"),
            }
        }
        other => {
            tracing::warn!(%name, status = ?other, "a received file failed its check; deleted");
            let _ = std::fs::remove_file(&inc.partial);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::safe_name;

    #[test]
    fn offered_names_are_single_plain_components() {
        assert_eq!(safe_name("photo.jpg"), Some("photo.jpg"));
        for bad in ["", ".hidden", "../x", "a/b", "/etc/passwd", "..", "a\\b", "x\0"] {
            assert_eq!(safe_name(bad), None, "{bad:?}");
        }
    }
}
