//! Files other devices send to this one (`tutti send <device> <file>`): the file I/O around
//! `softbus::file::FileReceiver`, on the file-system service.
//!
//! Design (as `tuttid`'s receiving side): an accepted transfer writes into a partial file named
//! after the content's SHA-256 (`.tutti-partial-<hex>`) in the receive directory, so a transfer
//! broken with its session resumes where it stopped when the same content is offered again
//! (the prefix is hashed and handed to `FileReceiver::accept`). A verified file is renamed to
//! its offered name (a plain name: `busvc::safe_file_name`; an existing file is never
//! overwritten: ` (1)`, ` (2)`, ... are appended), and the file system is synced; a file whose
//! hash does not match is deleted. At most two transfers per session at once.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use sha2::{Digest, Sha256};
use softbus::file::{FileEvent, FileOffer, FileReceiver, FileSender};
use svc::softbus::failure;

use crate::{Bus, Failure, Waiter};
use softbus::wire::{ChannelMessage, FileStatus};
use svc::fs::{self, Fs};

/// Transfers one session receives at once.
const MAX_INCOMING: usize = 2;

struct Outgoing {
    sender: FileSender,
    file: fs::File<'static>,
    waiter: Option<Waiter>,
    /// The receiver's name and the file's, for the answer.
    to: String,
    name: String,
}

struct Incoming {
    receiver: FileReceiver,
    file: fs::File<'static>,
    partial: String,
}

/// The incoming transfers of one session.
#[derive(Default)]
pub struct Files {
    incoming: BTreeMap<u32, Incoming>,
    outgoing: BTreeMap<u32, Outgoing>,
    next_stream: u32,
    /// Records to send (accepts, flow-control updates, ends, refusals).
    transmits: Vec<Vec<u8>>,
}

impl Files {
    /// Takes `offer` into `dir` (made if missing), or refuses it.
    pub fn accept(&mut self, fs: &'static Fs, dir: &str, offer: FileOffer) {
        let stream_id = offer.stream_id;
        if !busvc::safe_file_name(&offer.name) {
            rt::log::warn!("refused a file with an unsafe name {:?}", offer.name);
            return self.refuse(stream_id, FileStatus::REFUSED);
        }
        if self.incoming.len() >= MAX_INCOMING || self.incoming.contains_key(&stream_id) {
            rt::log::warn!("refused {}: too many transfers at once, or a stream id in use", offer.name);
            return self.refuse(stream_id, FileStatus::REFUSED);
        }
        match open(fs, dir, offer) {
            Ok(mut incoming) => {
                while let Some(bytes) = incoming.receiver.poll_transmit() {
                    self.transmits.push(bytes);
                }
                self.incoming.insert(stream_id, incoming);
            }
            Err(e) => {
                rt::log::warn!("cannot receive a file: {e}");
                self.refuse(stream_id, FileStatus::FAILED);
            }
        }
    }

    /// Refuses stream `stream_id` with `status`.
    pub fn refuse(&mut self, stream_id: u32, status: FileStatus) {
        if let Ok(bytes) = FileReceiver::refusal(stream_id, status) {
            self.transmits.push(bytes);
        }
    }

    /// Feeds a channel message to the transfers; `from` names the sender in the log.
    pub fn handle_message(&mut self, fs: &'static Fs, dir: &str, message: &ChannelMessage<'_>, from: &str) {
        for o in self.outgoing.values_mut() {
            if let Err(e) = o.sender.handle_message(message) {
                rt::log::warn!("sending a file to {from} failed: {e}");
            }
        }
        let mut ended = Vec::new();
        for (&id, t) in self.incoming.iter_mut() {
            if let Err(e) = t.receiver.handle_message(message) {
                rt::log::warn!("a file from {from} failed: {e}");
                ended.push((id, Some(FileStatus::FAILED)));
                continue;
            }
            while let Some(event) = t.receiver.poll_event() {
                match event {
                    FileEvent::Data { offset, bytes } => {
                        if let Err(e) = write_all(&t.file, offset, &bytes) {
                            rt::log::warn!("cannot write {}: {}", t.partial, e.text());
                            ended.push((id, Some(FileStatus::FAILED)));
                            break;
                        }
                    }
                    FileEvent::Done(status) => {
                        ended.push((id, if status == FileStatus::COMPLETE { None } else { Some(status) }))
                    }
                    FileEvent::Accepted { .. } => {}
                }
            }
            while let Some(bytes) = t.receiver.poll_transmit() {
                self.transmits.push(bytes);
            }
        }
        for (id, failed) in ended {
            let Some(t) = self.incoming.remove(&id) else { continue };
            let name = t.receiver.offer().name.clone();
            let size = t.receiver.offer().size;
            let _ = t.file.fsync();
            let _ = t.file.close();
            match failed {
                None => match finish(fs, dir, &t.partial, &name) {
                    Ok(path) => rt::println!("softbus: received {path} ({size} bytes) from {from}"),
                    Err(e) => rt::log::warn!("cannot keep {name}: {e}"),
                },
                Some(status) => {
                    if status == FileStatus::HASH_MISMATCH {
                        rt::log::warn!("{name} from {from} did not match its SHA-256; deleted");
                        let _ = fs.unlink(&t.partial);
                    }
                    self.refuse(id, FileStatus::FAILED);
                }
            }
        }
    }

    /// Starts sending the file at `path` to `to`; `waiter` learns how it ended.
    pub fn send(&mut self, fs: &'static Fs, path: &str, to: String, waiter: Waiter) -> Result<(), (Waiter, Failure)> {
        let fail = |e: fs::Error| Failure::new(failure::NOT_FOUND, format!("{path}: {}", e.text()));
        let file = match fs.open(path, fs::flags::READ, 0) {
            Ok(f) => f,
            Err(e) => return Err((waiter, fail(e))),
        };
        let name = path.rsplit('/').next().unwrap_or(path).to_string();
        if !busvc::safe_file_name(&name) {
            return Err((
                waiter,
                Failure::new(failure::BAD_REQUEST, format!("{name:?} cannot be sent: not a plain file name")),
            ));
        }
        let (size, sha256) = match hash(&file) {
            Ok(h) => h,
            Err(e) => return Err((waiter, fail(e))),
        };
        self.next_stream = self.next_stream.wrapping_add(1);
        let stream_id = self.next_stream;
        match FileSender::new(FileOffer { stream_id, size, sha256, name: name.clone() }) {
            Ok(sender) => {
                self.outgoing.insert(stream_id, Outgoing { sender, file, waiter: Some(waiter), to, name });
                Ok(())
            }
            Err(e) => Err((waiter, Failure::new(failure::BAD_REQUEST, format!("{e}")))),
        }
    }

    /// Moves outgoing files along as the receivers' credit allows; answers finished senders.
    pub fn pump(&mut self, bus: &Bus) {
        let mut finished = Vec::new();
        for (&id, o) in self.outgoing.iter_mut() {
            if let Some(at) = o.sender.next_offset() {
                let want = o.sender.writable().min(32 * 1024);
                if want > 0 {
                    let mut buf = alloc::vec![0u8; want];
                    match o.file.read_at(at, &mut buf) {
                        Ok(n) => {
                            o.sender.write(&buf[..n]);
                        }
                        Err(e) => {
                            if let Some(w) = o.waiter.take() {
                                bus.fail(w, Failure::new(failure::INTERNAL, format!("reading the file: {}", e.text())));
                            }
                            finished.push(id);
                            continue;
                        }
                    }
                }
            }
            while let Some(bytes) = o.sender.poll_transmit() {
                self.transmits.push(bytes);
            }
            while let Some(event) = o.sender.poll_event() {
                if let FileEvent::Done(status) = event {
                    let name = &o.name;
                    if let Some(w) = o.waiter.take() {
                        match status {
                            FileStatus::COMPLETE => bus.answer_text(w, &format!("sent {name} to {}\n", o.to)),
                            FileStatus::REFUSED => bus
                                .fail(w, Failure::new(failure::PERMISSION_DENIED, format!("{} refused {name}", o.to))),
                            other => bus.fail(
                                w,
                                Failure::new(
                                    failure::REMOTE,
                                    format!("{} could not keep {name} (status {})", o.to, other.0),
                                ),
                            ),
                        }
                    }
                    finished.push(id);
                }
            }
        }
        for id in finished {
            self.outgoing.remove(&id);
        }
    }

    /// The session ended: every sender waiting hears `failure`.
    pub fn session_lost(&mut self, bus: &Bus, failure: &Failure) {
        for (_, mut o) in core::mem::take(&mut self.outgoing) {
            if let Some(w) = o.waiter.take() {
                bus.fail(w, failure.clone());
            }
        }
    }

    /// Records waiting to be sent.
    pub fn take_transmits(&mut self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.transmits)
    }
}

/// The SHA-256 state over the first `limit` bytes of `file` (or all of it, if shorter), read
/// through once, and how many bytes that was.
fn hash_prefix(file: &fs::File<'static>, limit: u64) -> Result<(u64, Sha256), fs::Error> {
    let mut hasher = Sha256::new();
    let mut buf = alloc::vec![0u8; 16 * 1024];
    let mut at = 0u64;
    while at < limit {
        let n = file.read_at(at, &mut buf)?;
        if n == 0 {
            break;
        }
        let n = n.min(usize::try_from(limit - at).unwrap_or(usize::MAX));
        hasher.update(&buf[..n]);
        at += n as u64;
    }
    Ok((at, hasher))
}

/// The size and SHA-256 of `file`.
fn hash(file: &fs::File<'static>) -> Result<(u64, [u8; 32]), fs::Error> {
    let (size, hasher) = hash_prefix(file, u64::MAX)?;
    Ok((size, hasher.finalize().into()))
}

fn write_all(file: &fs::File<'static>, mut offset: u64, mut bytes: &[u8]) -> Result<(), fs::Error> {
    while !bytes.is_empty() {
        let n = file.write_at(offset, bytes)?;
        if n == 0 {
            return Err(fs::Error::NoSpace);
        }
        offset += n as u64;
        bytes = &bytes[n..];
    }
    Ok(())
}

/// Opens (creating) the partial file of `offer` and hashes what it already holds.
fn open(fs: &'static Fs, dir: &str, offer: FileOffer) -> Result<Incoming, String> {
    match fs.mkdir(dir, 0o755) {
        Ok(()) | Err(fs::Error::Exists) => {}
        Err(e) => return Err(format!("{dir}: {}", e.text())),
    }
    let partial = format!("{dir}/.tutti-partial-{}", busvc::hex(&offer.sha256));
    let fail = |e: fs::Error| format!("{partial}: {}", e.text());
    let file = fs.open(&partial, fs::flags::READ | fs::flags::WRITE | fs::flags::CREATE, 0o644).map_err(fail)?;
    let mut have = file.stat().map_err(fail)?.size;
    if have > offer.size {
        file.truncate(0).map_err(fail)?;
        have = 0;
    }
    let (have, prefix) = hash_prefix(&file, have).map_err(fail)?;
    if have > 0 {
        rt::log::info!("resuming {} at {have} of {} bytes", offer.name, offer.size);
    }
    let receiver = FileReceiver::accept(offer, have, prefix).map_err(|e| format!("{e}"))?;
    Ok(Incoming { receiver, file, partial })
}

/// Renames the verified partial file to `name` in `dir` (never over an existing file) and
/// syncs; the final path.
fn finish(fs: &'static Fs, dir: &str, partial: &str, name: &str) -> Result<String, String> {
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => (&name[..i], &name[i..]),
        _ => (name, ""),
    };
    for n in 0..1000u32 {
        let candidate = if n == 0 { format!("{dir}/{name}") } else { format!("{dir}/{stem} ({n}){ext}") };
        match fs.lstat(&candidate) {
            Err(fs::Error::NotFound) => {
                fs.rename(partial, &candidate).map_err(|e| format!("{candidate}: {}", e.text()))?;
                fs.sync().map_err(|e| format!("sync: {}", e.text()))?;
                return Ok(candidate);
            }
            Ok(_) => continue,
            Err(e) => return Err(format!("{candidate}: {}", e.text())),
        }
    }
    Err(format!("{name}: 1000 files of that name already"))
}
