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

use softbus::capability::{decode_list, Capability, Decision, Rule};
use tokio::sync::mpsc;

use super::permissions::{self, PendingPrompt, PromptAnswer};
use super::streams;
use super::{link, lock, pairing, unix_now, DaemonError, LinkCommand, Shared};
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
    let mut prompts: Option<mpsc::Receiver<PendingPrompt>> = None;
    // Kept across `select!` rounds: a read interrupted by a prompt keeps what it read.
    let mut line = Vec::new();
    loop {
        let limit = u64::try_from(MAX_REQUEST_LINE.saturating_sub(line.len())).unwrap_or(u64::MAX);
        let next_prompt = async {
            match prompts.as_mut() {
                Some(rx) => rx.recv().await,
                None => std::future::pending().await,
            }
        };
        let mut limited = (&mut reader).take(limit);
        tokio::select! {
            read = limited.read_until(b'\n', &mut line) => {
                match read {
                    Ok(0) if line.is_empty() => return,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "API read failed");
                        return;
                    }
                }
            }
            prompt = next_prompt => {
                let Some(prompt) = prompt else { return };
                lock(&shared.pending_prompts).insert(prompt.info.id, prompt.answer);
                let mut out = serde_json::to_vec(&serde_json::json!({ "prompt": prompt.info })).unwrap_or_default();
                out.push(b'\n');
                if wr.write_all(&out).await.is_err() {
                    return;
                }
                continue;
            }
        }
        let too_long = !line.ends_with(b"\n") && line.len() >= MAX_REQUEST_LINE;
        let result = if too_long {
            Err(ApiError::new(ErrorKind::BadRequest, format!("request longer than {MAX_REQUEST_LINE} bytes")))
        } else {
            match serde_json::from_slice::<Request>(&line) {
                Ok(Request::Sub { topic }) => {
                    streams::subscribe(&shared, &mut reader, &mut wr, topic).await;
                    return;
                }
                Ok(Request::Send { device, path }) => {
                    streams::send_file(&shared, &mut wr, &device, &path).await;
                    return;
                }
                Ok(Request::Serve { display, storage }) => {
                    streams::serve(&shared, &mut reader, &mut wr, display, storage).await;
                    return;
                }
                Ok(Request::Prompts) => {
                    prompts = Some(permissions::register_prompter(&shared));
                    tracing::info!("a prompt client connected");
                    Ok(serde_json::json!({ "prompts": true }))
                }
                Ok(request) => handle(&shared, request).await,
                Err(e) => Err(ApiError::new(ErrorKind::BadRequest, format!("not a valid request: {e}"))),
            }
        };
        line.clear();
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
            "prompters": permissions::prompters(shared),
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
        Request::Caps { device } => caps(shared, &device).await,
        Request::PolicySet { device, capability, decision, for_s } => {
            policy_set(shared, &device, &capability, &decision, for_s)
        }
        Request::PolicyList => Ok(policy_list(shared)),
        Request::Prompts | Request::Sub { .. } | Request::Send { .. } | Request::Serve { .. } => {
            Err(ApiError::new(ErrorKind::Internal, "this request is handled by its connection"))
        }
        Request::ServeReply { id, .. } => Err(ApiError::new(
            ErrorKind::BadRequest,
            format!("serve_reply {id} on a connection that is not serving (send `serve` first)"),
        )),
        Request::Pub { topic, message } => Ok(streams::publish(shared, &topic, message.into_bytes()).await),
        Request::PromptAnswer { id, allow, for_s } => {
            let waiter = lock(&shared.pending_prompts).remove(&id).ok_or_else(|| {
                ApiError::new(ErrorKind::NotFound, format!("no prompt {id} is waiting (answered or timed out)"))
            })?;
            let _ = waiter.send(PromptAnswer { allow, for_s });
            Ok(serde_json::json!({ "id": id, "allow": allow }))
        }
    }
}

async fn caps(shared: &Arc<Shared>, device: &str) -> Result<serde_json::Value, ApiError> {
    let id = shared.resolve(device)?;
    let timeout = Duration::from_millis(shared.config.session.call_timeout_ms);
    let bytes = link::call(shared, id, permissions::CAPS_METHOD.to_string(), Vec::new(), timeout).await?;
    let list = decode_list(&bytes)
        .map_err(|e| ApiError::new(ErrorKind::Remote, format!("device {id} sent a bad capability list: {e}")))?;
    let caps: Vec<serde_json::Value> = list
        .iter()
        .map(|d| serde_json::json!({ "capability": d.capability.as_str(), "attributes": d.attributes }))
        .collect();
    Ok(serde_json::json!({ "device": id.to_string(), "capabilities": caps }))
}

fn policy_set(
    shared: &Shared,
    device: &str,
    capability: &str,
    decision: &str,
    for_s: Option<u64>,
) -> Result<serde_json::Value, ApiError> {
    let peer = shared.resolve(device)?;
    let capability = Capability::parse(capability).map_err(|e| ApiError::new(ErrorKind::BadRequest, e.to_string()))?;
    let decision = Decision::parse(decision).ok_or_else(|| {
        ApiError::new(ErrorKind::BadRequest, format!("{decision:?} is not a decision: use allow, deny or ask"))
    })?;
    let until = for_s.map(|s| unix_now().saturating_add(s));
    let result = serde_json::json!({
        "device": peer.to_string(),
        "capability": capability.as_str(),
        "decision": decision.as_str(),
        "until": until,
    });
    permissions::set_rule(shared, Rule { peer, capability, decision, until })?;
    tracing::info!(device = %peer, rule = %result, "policy changed");
    Ok(result)
}

fn policy_list(shared: &Shared) -> serde_json::Value {
    let now = unix_now();
    let trust = lock(&shared.trust).clone();
    let mut policy = lock(&shared.policy);
    if policy.expire(now) > 0 {
        if let Err(e) = shared.state.save_policy(&policy) {
            tracing::warn!(error = %e, "could not save the policy");
        }
    }
    let rules: Vec<serde_json::Value> = policy
        .rules()
        .map(|r| {
            serde_json::json!({
                "device": r.peer.to_string(),
                "name": trust.get(&r.peer).map(|d| d.name.clone()),
                "capability": r.capability.as_str(),
                "decision": r.decision.as_str(),
                "until": r.until,
                "expires_in_s": r.until.map(|u| u.saturating_sub(now)),
            })
        })
        .collect();
    serde_json::json!({ "default": policy.default_decision().as_str(), "rules": rules })
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
    {
        let mut policy = lock(&shared.policy);
        policy.forget(&id);
        if let Err(e) = shared.state.save_policy(&policy) {
            tracing::warn!(error = %e, "could not save the policy");
        }
    }
    if let Some(tx) = lock(&shared.links).remove(&id) {
        let _ = tx.try_send(LinkCommand::Close);
    }
    tracing::info!(device = %id, name = %removed.name, "trust revoked");
    Ok(serde_json::json!({ "device": id.to_string(), "name": removed.name }))
}
