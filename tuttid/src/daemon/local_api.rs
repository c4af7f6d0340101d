//! The local API server: newline-delimited JSON requests and responses on the Unix socket
//! `tuttid.sock` in the state directory (see [`crate::api`] and `docs/softbus/daemon.md`).
//!
//! Design: the socket file is created with mode 0600 inside the 0700 state directory, so only
//! the owner can talk to the daemon. Each client connection is its own task and may send any
//! number of requests, one per line; a line longer than [`MAX_REQUEST_LINE`] or not a valid
//! request gets a `bad_request` response (and an over-long line ends the connection).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};

use super::{link, lock, pairing, DaemonError, LinkCommand, Shared};
use crate::api::{ApiError, DeviceInfo, ErrorKind, Request, Response, TrustedInfo, MAX_REQUEST_LINE};
use crate::services;

/// Binds the API socket, replacing a stale socket file left by a daemon that died.
pub(super) fn bind(path: &Path) -> Result<UnixListener, DaemonError> {
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(DaemonError::Socket(
            format!("API socket {}", path.display()),
            std::io::Error::new(std::io::ErrorKind::AddrInUse, "another tuttid is running on this state directory"),
        ));
    }
    let _ = std::fs::remove_file(path);
    let listener =
        UnixListener::bind(path).map_err(|e| DaemonError::Socket(format!("API socket {}", path.display()), e))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| DaemonError::Socket(format!("API socket {}", path.display()), e))?;
    Ok(listener)
}

/// Serves API clients until the task is aborted.
pub(super) async fn serve(shared: Arc<Shared>, listener: UnixListener) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(client(shared.clone(), stream));
            }
            Err(e) => {
                tracing::warn!(error = %e, "API accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn client(shared: Arc<Shared>, stream: UnixStream) {
    let (rd, mut wr) = stream.into_split();
    let mut reader = BufReader::new(rd);
    loop {
        let mut line = Vec::new();
        let limit = u64::try_from(MAX_REQUEST_LINE).unwrap_or(u64::MAX);
        match (&mut reader).take(limit).read_until(b'\n', &mut line).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(error = %e, "API read failed");
                return;
            }
        }
        let too_long = !line.ends_with(b"\n") && line.len() >= MAX_REQUEST_LINE;
        let result = if too_long {
            Err(ApiError::new(ErrorKind::BadRequest, format!("request longer than {MAX_REQUEST_LINE} bytes")))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(request) => handle(&shared, request).await,
                Err(e) => Err(ApiError::new(ErrorKind::BadRequest, format!("not a valid request: {e}"))),
            }
        };
        let mut out = serde_json::to_vec(&Response::from_result(result)).unwrap_or_else(|_| {
            br#"{"ok":false,"error":{"kind":"internal","message":"cannot encode the response"}}"#.to_vec()
        });
        out.push(b'\n');
        if wr.write_all(&out).await.is_err() || too_long {
            return;
        }
    }
}

async fn handle(shared: &Arc<Shared>, request: Request) -> Result<serde_json::Value, ApiError> {
    match request {
        Request::Status => Ok(serde_json::json!({
            "device": shared.identity.device_id().to_string(),
            "name": shared.name,
            "session_port": shared.session_port,
            "discovery_port": shared.discovery_port,
            "state_dir": shared.state.root().display().to_string(),
            "services": services::METHODS,
        })),
        Request::Devices => Ok(devices(shared)),
        Request::PairShow => Ok(pairing::show(shared)),
        Request::Pair { device, code } => pairing::pair_with(shared, &device, &code).await,
        Request::TrustList => Ok(trust_list(shared)),
        Request::TrustRevoke { device } => revoke(shared, &device),
        Request::Call { device, method, payload, timeout_ms } => {
            let id = shared.resolve(&device)?;
            let timeout = Duration::from_millis(timeout_ms.unwrap_or(shared.config.session.call_timeout_ms));
            let bytes =
                serde_json::to_vec(&payload).map_err(|e| ApiError::new(ErrorKind::BadRequest, e.to_string()))?;
            let started = tokio::time::Instant::now();
            let answer = link::call(shared, id, method.clone(), bytes, timeout).await?;
            let response = serde_json::from_slice::<serde_json::Value>(&answer)
                .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&answer).into_owned()));
            Ok(serde_json::json!({
                "device": id.to_string(),
                "method": method,
                "response": response,
                "elapsed_us": u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            }))
        }
    }
}

fn devices(shared: &Shared) -> serde_json::Value {
    let now = shared.now();
    let trust = lock(&shared.trust).clone();
    let addrs = lock(&shared.addrs).clone();
    let links = lock(&shared.links).clone();
    let list: Vec<DeviceInfo> = lock(&shared.discovery)
        .peers()
        .map(|p| DeviceInfo {
            id: p.device_id.to_string(),
            name: p.advertisement.name.clone(),
            kind: format!("{:?}", p.advertisement.kind).to_lowercase(),
            address: addrs.get(&p.device_id).map(ToString::to_string),
            trusted: trust.get(&p.device_id).is_some(),
            connected: links.get(&p.device_id).is_some_and(|tx| !tx.is_closed()),
            last_seen_ms: now.saturating_duration_since(p.last_seen).as_millis().try_into().unwrap_or(u64::MAX),
        })
        .collect();
    serde_json::json!({ "devices": list })
}

fn trust_list(shared: &Shared) -> serde_json::Value {
    let list: Vec<TrustedInfo> = lock(&shared.trust)
        .list()
        .map(|d| TrustedInfo {
            id: d.device_id.to_string(),
            name: d.name.clone(),
            paired_at: d.paired_at,
            signing_key: services::hex(&d.signing_public),
            noise_key: services::hex(&d.noise_static),
        })
        .collect();
    serde_json::json!({ "trusted": list })
}

fn revoke(shared: &Shared, device: &str) -> Result<serde_json::Value, ApiError> {
    let id = shared.resolve(device)?;
    let removed = {
        let mut trust = lock(&shared.trust);
        let removed = trust.revoke(&id).map_err(|e| ApiError::new(ErrorKind::NotFound, e.to_string()))?;
        shared.state.save_trust(&trust).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))?;
        removed
    };
    if let Some(tx) = lock(&shared.links).remove(&id) {
        let _ = tx.try_send(LinkCommand::Close);
    }
    tracing::info!(device = %id, name = %removed.name, "trust revoked");
    Ok(serde_json::json!({ "device": id.to_string(), "name": removed.name }))
}
