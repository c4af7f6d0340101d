//! The local API requests that outlive one response: `sub` (message lines until the client
//! leaves), `send` (progress lines, then the response; a broken session is resumed), `serve`
//! (forwarded requests and their replies), and `pub`.
//!
//! Design: each takes over its API connection. Lines the daemon writes are either a response
//! (`{"ok":…}`) or an event object with one key (`message`, `progress`, `request`), so a
//! client tells them apart by the key. A subscriber keeps sessions open to every trusted
//! device it discovered (retrying every 2 s), so publishers find it subscribed.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use softbus::wire::{FileStatus, RpcErrorCode};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, oneshot};

use super::files::SendProgress;
use super::provider::{Provider, Served};
use super::{link, lock, LinkCommand, Shared};
use crate::api::{ApiError, ErrorKind, Request, Response, MAX_REQUEST_LINE};
use crate::services::hex;

/// How often a failed transfer is tried again, at most.
const SEND_ATTEMPTS: u32 = 5;

async fn write_line(wr: &mut OwnedWriteHalf, value: &serde_json::Value) -> bool {
    let mut out = serde_json::to_vec(value).unwrap_or_default();
    out.push(b'\n');
    wr.write_all(&out).await.is_ok()
}

async fn respond(wr: &mut OwnedWriteHalf, result: Result<serde_json::Value, ApiError>) -> bool {
    let value = serde_json::to_value(Response::from_result(result)).unwrap_or_default();
    write_line(wr, &value).await
}

/// Opens sessions to the trusted, discovered devices that have none.
fn connect_trusted(shared: &Arc<Shared>) {
    let discovered: Vec<_> = lock(&shared.discovery).peers().map(|p| p.device_id).collect();
    let links = lock(&shared.links).clone();
    let trust = lock(&shared.trust).clone();
    for id in discovered {
        if trust.get(&id).is_some() && links.get(&id).is_none_or(|tx| tx.is_closed()) {
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = link::session_to(&shared, id).await {
                    tracing::debug!(device = %id, error = %e, "subscriber could not connect");
                }
            });
        }
    }
}

/// `sub`: delivers the messages of `topic` on this connection until the client leaves.
pub(super) async fn subscribe(
    shared: &Arc<Shared>,
    reader: &mut BufReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    topic: String,
) {
    if topic.is_empty() || topic.len() > 255 {
        respond(wr, Err(ApiError::new(ErrorKind::BadRequest, "a topic has 1 to 255 bytes"))).await;
        return;
    }
    let (tx, mut rx) = mpsc::channel(1024);
    lock(&shared.topics).entry(topic.clone()).or_default().push(tx);
    let links: Vec<_> = lock(&shared.links).values().cloned().collect();
    for link in links {
        let _ = link.try_send(LinkCommand::Subscribe { topic: topic.clone() });
    }
    tracing::info!(%topic, "a local client subscribed");
    if !respond(wr, Ok(serde_json::json!({ "subscribed": topic }))).await {
        return;
    }
    connect_trusted(shared);
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    let mut ignored = Vec::new();
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(line) => if !write_line(wr, &line).await { break },
                None => break,
            },
            read = reader.read_until(b'\n', &mut ignored) => match read {
                Ok(0) | Err(_) => break,
                Ok(_) => ignored.clear(),
            },
            _ = tick.tick() => connect_trusted(shared),
        }
    }
    drop(rx);
    let mut topics = lock(&shared.topics);
    if let Some(list) = topics.get_mut(&topic) {
        list.retain(|tx| !tx.is_closed());
        if list.is_empty() {
            topics.remove(&topic);
        }
    }
}

/// `pub`: publishes on every open session whose peer subscribed to `topic`.
pub(super) async fn publish(shared: &Arc<Shared>, topic: &str, payload: Vec<u8>) -> serde_json::Value {
    let links: Vec<_> = lock(&shared.links).iter().map(|(id, tx)| (*id, tx.clone())).collect();
    let mut delivered = Vec::new();
    for (id, tx) in links {
        let (reply, answer) = oneshot::channel();
        let command = LinkCommand::Publish { topic: topic.to_string(), payload: payload.clone(), reply };
        if tx.send(command).await.is_err() {
            continue;
        }
        if let Ok(Ok(true)) = tokio::time::timeout(Duration::from_secs(2), answer).await {
            delivered.push(id.to_string());
        }
    }
    serde_json::json!({ "topic": topic, "delivered_to": delivered })
}

/// Size and SHA-256 of the file at `path`.
fn measure(path: &Path) -> std::io::Result<(u64, [u8; 32])> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(buf.get(..n).unwrap_or(&[]));
        size += n as u64;
    }
    Ok((size, hasher.finalize().into()))
}

/// `send`: sends a file, trying again (and so resuming) when the session breaks.
pub(super) async fn send_file(shared: &Arc<Shared>, wr: &mut OwnedWriteHalf, device: &str, path: &str) {
    let result = send_file_inner(shared, wr, device, path).await;
    respond(wr, result).await;
}

async fn send_file_inner(
    shared: &Arc<Shared>,
    wr: &mut OwnedWriteHalf,
    device: &str,
    path: &str,
) -> Result<serde_json::Value, ApiError> {
    let id = shared.resolve(device)?;
    let path = PathBuf::from(path);
    let bad = |e: String| ApiError::new(ErrorKind::BadRequest, format!("{}: {e}", path.display()));
    let name =
        path.file_name().and_then(|n| n.to_str()).map(str::to_string).ok_or_else(|| bad("no file name".into()))?;
    let measured = {
        let path = path.clone();
        tokio::task::spawn_blocking(move || measure(&path)).await
    };
    let (size, sha256) = match measured {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => return Err(bad(e.to_string())),
        Err(e) => return Err(ApiError::new(ErrorKind::Internal, e.to_string())),
    };
    let mut resumed_from = None;
    let mut last_error = ApiError::new(ErrorKind::Unreachable, "no attempt made");
    for attempt in 1..=SEND_ATTEMPTS {
        if attempt > 1 {
            tracing::info!(device = %id, %name, attempt, error = %last_error, "sending again: the transfer resumes");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let tx = match link::session_to(shared, id).await {
            Ok(tx) => tx,
            Err(e) => {
                last_error = e;
                continue;
            }
        };
        let file = std::fs::File::open(&path).map_err(|e| bad(e.to_string()))?;
        let (progress, mut updates) = mpsc::unbounded_channel();
        let command = LinkCommand::SendFile { name: name.clone(), file, size, sha256, progress };
        if tx.send(command).await.is_err() {
            last_error = ApiError::new(ErrorKind::Unreachable, format!("the session with {id} has ended"));
            continue;
        }
        while let Some(update) = updates.recv().await {
            match update {
                SendProgress::Accepted { offset } => {
                    resumed_from.get_or_insert(offset);
                    let line = serde_json::json!({ "progress": { "sent": offset, "size": size, "attempt": attempt } });
                    let _ = write_line(wr, &line).await;
                }
                SendProgress::Sent { bytes } => {
                    let _ = write_line(wr, &serde_json::json!({ "progress": { "sent": bytes, "size": size } })).await;
                }
                SendProgress::Done(FileStatus::COMPLETE) => {
                    return Ok(serde_json::json!({
                        "device": id.to_string(), "name": name, "bytes": size, "sha256": hex(&sha256),
                        "resumed_from": resumed_from.unwrap_or(0), "attempts": attempt,
                    }));
                }
                SendProgress::Done(status) => {
                    let what = match status {
                        FileStatus::HASH_MISMATCH => "the file arrived damaged (hash mismatch)".to_string(),
                        FileStatus::REFUSED => "the device refused the file".to_string(),
                        other => format!("the device could not store the file (status {})", other.0),
                    };
                    return Err(ApiError::new(ErrorKind::Remote, what));
                }
                SendProgress::Failed(reason) => {
                    last_error = ApiError::new(ErrorKind::Unreachable, reason);
                    break;
                }
            }
        }
    }
    Err(last_error)
}

/// `serve`: this connection provides display and storage until it closes.
pub(super) async fn serve(
    shared: &Arc<Shared>,
    reader: &mut BufReader<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    display: bool,
    storage: Option<String>,
) {
    let storage = match storage.map(|dir| Path::new(&dir).canonicalize().map_err(|e| (dir, e))).transpose() {
        Ok(dir) => dir,
        Err((dir, e)) => {
            respond(wr, Err(ApiError::new(ErrorKind::BadRequest, format!("storage directory {dir}: {e}")))).await;
            return;
        }
    };
    let (tx, mut rx) = mpsc::channel(16);
    let id = {
        let mut next = lock(&shared.next_prompt);
        *next += 1;
        *next
    };
    *lock(&shared.provider) = Some(Provider { id, tx, display, storage: storage.clone() });
    let shows_text = display;
    tracing::info!(shows_text, storage = ?storage, "a `tutti serve` client provides services");
    let serving = serde_json::json!({ "serving": { "display": display, "storage": storage } });
    if !respond(wr, Ok(serving)).await {
        return;
    }
    let mut pending: HashMap<u64, oneshot::Sender<Served>> = HashMap::new();
    let mut next = 0u64;
    let mut line = Vec::new();
    loop {
        tokio::select! {
            call = rx.recv() => {
                let Some(call) = call else { break };
                next += 1;
                pending.insert(next, call.reply);
                let mut request = call.request;
                request["id"] = serde_json::json!(next);
                if !write_line(wr, &serde_json::json!({ "request": request })).await {
                    break;
                }
            }
            read = reader.read_until(b'\n', &mut line) => {
                match read {
                    Ok(0) | Err(_) => break,
                    Ok(_) if line.len() > MAX_REQUEST_LINE => break,
                    Ok(_) => {}
                }
                let reply = match serde_json::from_slice::<Request>(&line) {
                    Ok(Request::ServeReply { id, result, error }) => match pending.remove(&id) {
                        Some(waiter) => {
                            let served = match (result, error) {
                                (_, Some(e)) => Err((RpcErrorCode(e.code), e.message)),
                                (result, None) => serde_json::to_vec(&result.unwrap_or_default())
                                    .map_err(|e| (RpcErrorCode::INTERNAL, e.to_string())),
                            };
                            let _ = waiter.send(served);
                            Ok(serde_json::json!({ "id": id }))
                        }
                        None => Err(ApiError::new(ErrorKind::NotFound, format!("no request {id} is waiting"))),
                    },
                    Ok(_) => Err(ApiError::new(ErrorKind::BadRequest, "a serving connection takes only serve_reply")),
                    Err(e) => Err(ApiError::new(ErrorKind::BadRequest, format!("not a valid request: {e}"))),
                };
                line.clear();
                if !respond(wr, reply).await {
                    break;
                }
            }
        }
    }
    let mut provider = lock(&shared.provider);
    if provider.as_ref().is_some_and(|p| p.id == id) {
        *provider = None;
    }
    tracing::info!("the `tutti serve` client left");
}
