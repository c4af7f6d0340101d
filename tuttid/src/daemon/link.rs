//! Session tasks: one TCP connection carrying one `softbus::connection::Connection`, with an
//! RPC client (calls made from this device) and an RPC server (the built-in services) on it.
//!
//! Design: the task owns the socket and the sans-IO machines and loops: handle the events of
//! the connection, serve requests, hand finished calls back to their waiters, write what the
//! machines yield, then wait for bytes, a command or the next timer. Once established, the
//! task registers a command channel under the peer's device id so calls reuse the session.
//! When the connection ends, every waiting call gets the reason as a typed error.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use softbus::connection::{first_frame_type, CloseReason, Connection, ConnectionEvent, FrameReader};
use softbus::file::FileOffer;
use softbus::identity::DeviceId;
use softbus::pubsub::{PubSub, PubSubEvent};
use softbus::rpc::{RpcClient, RpcError, RpcOutcome, RpcServer, ServerEvent};
use softbus::session::SessionError;
use softbus::wire::{messages, FileStatus, FrameType, RpcErrorCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::files::{self, Files};
use super::permissions::{self, Verdict};
use super::provider;
use super::{lock, LinkCommand, Shared};
use crate::api::{ApiError, ErrorKind};
use crate::services;

/// How long a TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

type Ready = oneshot::Sender<Result<mpsc::Sender<LinkCommand>, ApiError>>;

/// Reads the first frame of an incoming connection and starts a session or a pairing.
pub(super) async fn handle_incoming(shared: Arc<Shared>, mut stream: TcpStream, from: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut reader = FrameReader::new();
    let limit = Duration::from_millis(shared.config.session.handshake_timeout_ms);
    let first = match tokio::time::timeout(limit, read_frame(&mut stream, &mut reader)).await {
        Ok(Ok(frame)) => frame,
        Ok(Err(e)) => {
            tracing::debug!(%from, error = %e, "incoming connection dropped");
            return;
        }
        Err(_) => {
            tracing::debug!(%from, "incoming connection sent no frame in time");
            return;
        }
    };
    match first_frame_type(&first) {
        Ok(FrameType::Handshake) => {
            let config = shared.config.session.connection_config();
            match Connection::accept(&shared.identity, &first, shared.now(), config, &mut shared.rng()) {
                Ok(conn) => {
                    let leftover = reader.take_buffered();
                    run(shared, stream, conn, leftover, None, None).await;
                }
                Err(e) => tracing::warn!(%from, error = %e, "refused a session handshake"),
            }
        }
        Ok(FrameType::Pairing) => super::pairing::answer(shared, stream, first, reader, from).await,
        Ok(other) => tracing::warn!(%from, frame = ?other, "a TCP connection started with a non-session frame"),
        Err(e) => tracing::warn!(%from, error = %e, "a TCP connection started with a malformed frame"),
    }
}

/// Reads from `stream` until `reader` holds one whole frame.
pub(super) async fn read_frame(stream: &mut TcpStream, reader: &mut FrameReader) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 4096];
    loop {
        match reader.next_frame() {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(e) => return Err(format!("malformed frame: {e}")),
        }
        match stream.read(&mut buf).await {
            Ok(0) => return Err("the peer closed the connection".into()),
            Ok(n) => reader.push(buf.get(..n).unwrap_or(&[])),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Opens a session to `id` (or returns the one open), ready for calls.
pub(super) async fn session_to(shared: &Arc<Shared>, id: DeviceId) -> Result<mpsc::Sender<LinkCommand>, ApiError> {
    let open = || lock(&shared.links).get(&id).filter(|tx| !tx.is_closed()).cloned();
    if let Some(tx) = open() {
        return Ok(tx);
    }
    let _dialing = shared.dialing.lock().await;
    if let Some(tx) = open() {
        return Ok(tx);
    }
    let addr = shared.address(&id)?;
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return Err(ApiError::new(ErrorKind::Unreachable, format!("cannot connect to {id} at {addr}: {e}")))
        }
        Err(_) => return Err(ApiError::new(ErrorKind::Unreachable, format!("connecting to {id} at {addr} timed out"))),
    };
    let _ = stream.set_nodelay(true);
    let config = shared.config.session.connection_config();
    let conn = Connection::connect(&shared.identity, shared.now(), config, &mut shared.rng())
        .map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
    let (ready_tx, ready_rx) = oneshot::channel();
    tokio::spawn(run(shared.clone(), stream, conn, Vec::new(), Some(ready_tx), Some(id)));
    ready_rx.await.unwrap_or_else(|_| Err(ApiError::new(ErrorKind::Internal, "the session task ended unexpectedly")))
}

/// Opens the session to `id` again after it was lost, waiting `reconnect_min_ms` first and
/// doubling the wait after each failure up to `reconnect_max_ms`, while `id` is trusted and no
/// session to it is open (one such task per device).
fn reconnect(shared: Arc<Shared>, id: DeviceId) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
    // Boxed: the session task this starts may start this again.
    Box::pin(reconnect_loop(shared, id))
}

async fn reconnect_loop(shared: Arc<Shared>, id: DeviceId) {
    let (min, max) = (shared.config.session.reconnect_min_ms, shared.config.session.reconnect_max_ms);
    if min == 0 || !lock(&shared.reconnecting).insert(id) {
        return;
    }
    let mut wait = Duration::from_millis(min);
    let mut attempts = 0u32;
    loop {
        tokio::time::sleep(wait).await;
        let open = lock(&shared.links).get(&id).is_some_and(|tx| !tx.is_closed());
        if open || lock(&shared.trust).get(&id).is_none() {
            break;
        }
        attempts += 1;
        match session_to(&shared, id).await {
            Ok(_) => {
                tracing::info!(peer = %id, attempts, "session opened again");
                break;
            }
            Err(e) => {
                tracing::debug!(peer = %id, attempts, error = %e.message, "reconnecting failed; trying again");
                wait = (wait * 2).min(Duration::from_millis(max.max(min)));
            }
        }
    }
    lock(&shared.reconnecting).remove(&id);
}

/// Calls `method` on `id` and waits for the outcome.
pub(super) async fn call(
    shared: &Arc<Shared>,
    id: DeviceId,
    method: String,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<Vec<u8>, ApiError> {
    let tx = session_to(shared, id).await?;
    let (reply, outcome) = oneshot::channel();
    tx.send(LinkCommand::Call { method, payload, timeout, reply })
        .await
        .map_err(|_| ApiError::new(ErrorKind::Unreachable, format!("the session with {id} has ended")))?;
    outcome
        .await
        .unwrap_or_else(|_| Err(ApiError::new(ErrorKind::Unreachable, format!("the session with {id} has ended"))))
}

/// The error waiting calls get when the connection ends.
fn close_error(reason: &CloseReason, peer: Option<DeviceId>, heard: bool) -> ApiError {
    match (reason, peer) {
        (CloseReason::Handshake(SessionError::Untrusted(id)), _) => ApiError::new(
            ErrorKind::Untrusted,
            format!("device {id} is not trusted by this device: pair with it first (`tutti pair {id}`)"),
        ),
        (CloseReason::PeerClosed, Some(id)) if !heard => ApiError::new(
            ErrorKind::Untrusted,
            format!(
                "device {id} closed the session right after the handshake: it does not trust this device (pair again)"
            ),
        ),
        (CloseReason::HandshakeTimeout, _) => ApiError::new(ErrorKind::Timeout, reason.to_string()),
        _ => ApiError::new(ErrorKind::Unreachable, format!("session ended: {reason}")),
    }
}

/// Answers `request_id` with what serving it gave.
fn answer(server: &mut RpcServer, request_id: u64, served: provider::Served) -> Result<(), RpcError> {
    match served {
        Ok(bytes) => server.respond(request_id, &bytes),
        Err((code, message)) => server.fail(request_id, code, &message),
    }
}

/// Hands a publication to the local subscribers of `topic`.
fn deliver(shared: &Shared, from: DeviceId, topic: &str, seq: u64, payload: &[u8]) {
    let line = serde_json::json!({ "message": {
        "topic": topic, "from": from.to_string(), "seq": seq, "payload": String::from_utf8_lossy(payload),
    }});
    let mut topics = lock(&shared.topics);
    if let Some(subscribers) = topics.get_mut(topic) {
        subscribers.retain(|tx| !tx.is_closed());
        for tx in subscribers.iter() {
            if tx.try_send(line.clone()).is_err() {
                tracing::warn!(%topic, "a local subscriber is too slow; a message was dropped for it");
            }
        }
    }
}

/// Decides about a file offer: the policy of the storage capability, the name, maybe a prompt.
fn decide_offer(
    shared: &Arc<Shared>,
    tx: &mpsc::Sender<LinkCommand>,
    files: &mut Files,
    peer: DeviceId,
    offer: FileOffer,
) {
    if files::safe_name(&offer.name).is_none() {
        tracing::warn!(%peer, name = ?offer.name, "refused a file with an unsafe name");
        files.refuse(offer.stream_id, FileStatus::REFUSED);
        return;
    }
    match permissions::check(shared, &peer, "storage.receive") {
        Verdict::Serve => files.accept(offer, &provider::receive_dir(shared)),
        Verdict::Deny(_) => {
            tracing::info!(%peer, name = %offer.name, "file refused by the policy");
            files.refuse(offer.stream_id, FileStatus::REFUSED);
        }
        Verdict::Ask(capability) => {
            let (shared, tx) = (shared.clone(), tx.clone());
            tokio::spawn(async move {
                let method = format!("storage.receive {}", offer.name);
                let allowed = permissions::ask(shared, peer, capability, method).await;
                let _ = tx.send(LinkCommand::OfferDecided { offer, allowed }).await;
            });
        }
    }
}

fn outcome_to_result(outcome: RpcOutcome) -> Result<Vec<u8>, ApiError> {
    match outcome {
        RpcOutcome::Response(bytes) => Ok(bytes),
        RpcOutcome::Error { code: RpcErrorCode::PERMISSION_DENIED, message } => {
            Err(ApiError::new(ErrorKind::PermissionDenied, format!("permission denied: {message}")))
        }
        RpcOutcome::Error { code, message } => {
            Err(ApiError::new(ErrorKind::Remote, format!("the service answered error {}: {message}", code.0)))
        }
        RpcOutcome::TimedOut => Err(ApiError::new(ErrorKind::Timeout, "no answer before the deadline")),
        RpcOutcome::Cancelled => Err(ApiError::new(ErrorKind::Internal, "the call was cancelled")),
    }
}

/// Drives one connection until it ends.
async fn run(
    shared: Arc<Shared>,
    stream: TcpStream,
    mut conn: Connection,
    leftover: Vec<u8>,
    mut ready: Option<Ready>,
    expected: Option<DeviceId>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let (tx, mut rx) = mpsc::channel::<LinkCommand>(64);
    let mut client = RpcClient::default();
    let mut server = RpcServer::default();
    let mut pubsub = PubSub::default();
    let mut files = Files::default();
    let mut pending: HashMap<u64, oneshot::Sender<Result<Vec<u8>, ApiError>>> = HashMap::new();
    let mut peer_id: Option<DeviceId> = None;
    let mut heard = false;
    let mut buf = vec![0u8; 64 * 1024];
    if !leftover.is_empty() {
        let _ = conn.handle_bytes(shared.now(), &leftover, &shared.trust_policy());
    }
    loop {
        while let Some(event) = conn.poll_event() {
            match event {
                ConnectionEvent::Established(peer) => {
                    if let Some(want) = expected.filter(|want| *want != peer.device_id) {
                        tracing::warn!(expected = %want, answered = %peer.device_id, "a different device answered");
                        if let Some(r) = ready.take() {
                            let msg = format!("the device that answered is {}, not {want}", peer.device_id);
                            let _ = r.send(Err(ApiError::new(ErrorKind::Unreachable, msg)));
                        }
                        conn.close_local();
                        continue;
                    }
                    tracing::info!(peer = %peer.device_id, "session established");
                    peer_id = Some(peer.device_id);
                    lock(&shared.links).insert(peer.device_id, tx.clone());
                    let topics: Vec<String> = lock(&shared.topics).keys().cloned().collect();
                    for topic in topics {
                        if let Err(e) = pubsub.subscribe(&topic) {
                            tracing::warn!(%topic, error = %e, "cannot subscribe");
                        }
                    }
                    if let Some(r) = ready.take() {
                        let _ = r.send(Ok(tx.clone()));
                    }
                }
                ConnectionEvent::Received(plaintext) => {
                    heard = true;
                    for message in messages(&plaintext) {
                        match message {
                            Ok(m) => {
                                client.handle_message(&m);
                                if let Err(e) = server.handle_message(&m) {
                                    tracing::debug!(error = %e, "request refused");
                                }
                                pubsub.handle_message(&m);
                                if let (Some(offer), Some(peer)) = (files.handle_message(&m), peer_id) {
                                    decide_offer(&shared, &tx, &mut files, peer, offer);
                                }
                            }
                            Err(e) => {
                                tracing::warn!(peer = ?peer_id, error = %e, "malformed channel message");
                                break;
                            }
                        }
                    }
                }
                ConnectionEvent::ConnectionLost(reason) => {
                    match (&reason, peer_id) {
                        (CloseReason::Handshake(e), _) => tracing::warn!(error = %e, "session refused"),
                        (_, Some(id)) => tracing::info!(peer = %id, %reason, "session ended"),
                        _ => tracing::debug!(%reason, "connection ended before the handshake completed"),
                    }
                    // A session this device opened comes back by itself when it was lost rather
                    // than closed on purpose (by this side, or refused in the handshake).
                    let lost = matches!(
                        reason,
                        CloseReason::PeerSilent { .. } | CloseReason::PeerClosed | CloseReason::Malformed(_)
                    );
                    if let (true, Some(id), Some(_)) = (lost, peer_id, expected) {
                        tokio::spawn(reconnect(shared.clone(), id));
                    }
                    let err = close_error(&reason, peer_id, heard);
                    files.session_lost(&err.message);
                    for (_, waiter) in pending.drain() {
                        let _ = waiter.send(Err(err.clone()));
                    }
                    if let Some(r) = ready.take() {
                        let _ = r.send(Err(err));
                    }
                    if let Some(id) = peer_id {
                        let mut links = lock(&shared.links);
                        if links.get(&id).is_some_and(|t| t.same_channel(&tx)) {
                            links.remove(&id);
                        }
                    }
                    let _ = wr.shutdown().await;
                    return;
                }
            }
        }
        while let Some(event) = server.poll_event() {
            let (ServerEvent::Request(req), Some(peer)) = (event, peer_id) else { continue };
            tracing::debug!(%peer, method = %req.method, bytes = req.payload.len(), "request");
            let verdict = permissions::check(&shared, &peer, &req.method);
            let answered = match verdict {
                Verdict::Serve if req.method != permissions::CAPS_METHOD && !provider::is_provided(&req.method) => {
                    answer(&mut server, req.request_id, services::serve(&req.method, &req.payload))
                }
                Verdict::Deny(message) => {
                    tracing::info!(%peer, method = %req.method, "refused by the policy");
                    server.fail(req.request_id, RpcErrorCode::PERMISSION_DENIED, &message)
                }
                Verdict::Serve | Verdict::Ask(_) => {
                    let (shared, tx) = (shared.clone(), tx.clone());
                    tokio::spawn(async move {
                        let allowed = match verdict {
                            Verdict::Ask(capability) => {
                                permissions::ask(shared.clone(), peer, capability, req.method.clone()).await
                            }
                            _ => true,
                        };
                        let served = if allowed {
                            provider::serve(shared.clone(), peer, req.method, req.payload).await
                        } else {
                            let message = format!("the user of {} did not allow this call", shared.name);
                            Err((RpcErrorCode::PERMISSION_DENIED, message))
                        };
                        let _ = tx.send(LinkCommand::Answer { request_id: req.request_id, served }).await;
                    });
                    Ok(())
                }
            };
            if let Err(e) = answered {
                tracing::warn!(error = %e, "could not answer a request");
            }
        }
        while let Some(event) = pubsub.poll_event() {
            if let (PubSubEvent::Message { topic, seq, payload }, Some(peer)) = (event, peer_id) {
                deliver(&shared, peer, &topic, seq, &payload);
            }
        }
        for plaintext in files.pump() {
            if let Err(e) = conn.send(&plaintext) {
                tracing::warn!(error = %e, "could not send a record");
            }
        }
        while let Some(event) = client.poll_event() {
            if let Some(waiter) = pending.remove(&event.request_id) {
                let _ = waiter.send(outcome_to_result(event.outcome));
            }
        }
        while let Some(plaintext) =
            client.poll_transmit().or_else(|| server.poll_transmit()).or_else(|| pubsub.poll_transmit())
        {
            if let Err(e) = conn.send(&plaintext) {
                tracing::warn!(error = %e, "could not send a record");
            }
        }
        let mut out = Vec::new();
        while let Some(frame) = conn.poll_transmit() {
            out.extend_from_slice(&frame);
        }
        if !out.is_empty() {
            if let Err(e) = wr.write_all(&out).await {
                tracing::debug!(error = %e, "write failed");
                conn.stream_ended();
                continue;
            }
        }
        if conn.is_closed() {
            continue;
        }
        let next = [conn.poll_at(), client.poll_at(), pubsub.poll_at()].into_iter().flatten().min();
        let wake =
            next.map_or_else(|| shared.deadline(shared.now()) + Duration::from_secs(3600), |at| shared.deadline(at));
        tokio::select! {
            read = rd.read(&mut buf) => match read {
                Ok(0) => conn.stream_ended(),
                Ok(n) => {
                    let _ = conn.handle_bytes(shared.now(), buf.get(..n).unwrap_or(&[]), &shared.trust_policy());
                }
                Err(e) => {
                    tracing::debug!(error = %e, "read failed");
                    conn.stream_ended();
                }
            },
            command = rx.recv() => match command {
                Some(LinkCommand::Call { method, payload, timeout, reply }) => {
                    match client.call(shared.now(), &method, &payload, Some(timeout)) {
                        Ok(id) => {
                            pending.insert(id, reply);
                        }
                        Err(e) => {
                            let _ = reply.send(Err(ApiError::new(ErrorKind::BadRequest, e.to_string())));
                        }
                    }
                }
                Some(LinkCommand::Answer { request_id, served }) => {
                    // The caller may have cancelled meanwhile: then there is nobody to answer.
                    if let Err(e) = answer(&mut server, request_id, served) {
                        tracing::debug!(error = %e, "late answer not sent");
                    }
                }
                Some(LinkCommand::Subscribe { topic }) => {
                    if let Err(e) = pubsub.subscribe(&topic) {
                        tracing::warn!(%topic, error = %e, "cannot subscribe");
                    }
                }
                Some(LinkCommand::Publish { topic, payload, reply }) => {
                    let published = pubsub.publish(shared.now(), &topic, &payload);
                    if let Err(e) = &published {
                        tracing::warn!(%topic, error = %e, "cannot publish");
                    }
                    let _ = reply.send(matches!(published, Ok(Some(_))));
                }
                Some(LinkCommand::SendFile { name, file, size, sha256, progress }) => {
                    files.send(name, file, size, sha256, progress);
                }
                Some(LinkCommand::OfferDecided { offer, allowed }) => {
                    if allowed {
                        files.accept(offer, &provider::receive_dir(&shared));
                    } else {
                        files.refuse(offer.stream_id, FileStatus::REFUSED);
                    }
                }
                Some(LinkCommand::Close) => conn.close_local(),
                None => {}
            },
            () = std::future::ready(()), if files.busy() => {}
            _ = tokio::time::sleep_until(wake) => {
                let now = shared.now();
                conn.poll(now);
                client.poll(now);
            }
        }
    }
}
