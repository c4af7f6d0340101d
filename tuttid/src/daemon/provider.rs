//! Services provided by a `tutti serve` client: display and storage.
//!
//! Design: the daemon itself serves only what needs no terminal and no shared directory
//! (`caps.list`, `echo.*`, `compute.*`). A `tutti serve` client connects to the local API
//! with `{"cmd":"serve","display":B,"storage":DIR}`; while it stays connected, the daemon
//! announces its capabilities in `caps.list`, forwards `display.*` and `storage.*` requests
//! to it as `{"request":{"id","device","name","method","payload"}}` lines and waits (up to
//! the call timeout) for its `serve_reply`. Received files (`tutti send`) go to its storage
//! directory. Without a provider those methods answer `UNAVAILABLE`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use softbus::capability::{encode_list, Capability, CapabilityDescriptor};
use softbus::identity::DeviceId;
use softbus::wire::RpcErrorCode;
use tokio::sync::{mpsc, oneshot};

use super::permissions::CAPS_METHOD;
use super::{lock, Shared};
use crate::services;
use crate::storage::Storage;

/// The result of serving one request: response bytes, or an RPC error.
pub(crate) type Served = Result<Vec<u8>, (RpcErrorCode, String)>;

/// A request forwarded to the provider.
pub(crate) struct ServeCall {
    pub(crate) request: serde_json::Value,
    pub(crate) reply: oneshot::Sender<Served>,
}

/// The connected `tutti serve` client.
pub(crate) struct Provider {
    pub(crate) id: u64,
    pub(crate) tx: mpsc::Sender<ServeCall>,
    pub(crate) display: bool,
    pub(crate) storage: Option<PathBuf>,
}

/// Whether `method` is served by the provider rather than the daemon.
pub(crate) fn is_provided(method: &str) -> bool {
    method.starts_with("display.") || method.starts_with("storage.")
}

/// Every capability this device offers now.
pub(crate) fn capabilities(shared: &Shared) -> Vec<CapabilityDescriptor> {
    let mut list = services::capabilities();
    if let Some(p) = lock(&shared.provider).as_ref().filter(|p| !p.tx.is_closed()) {
        if p.display {
            list.push(services::display_capability("terminal"));
        }
        if p.storage.is_some() {
            list.push(
                CapabilityDescriptor::new(Capability::Storage)
                    .with("methods", "storage.get storage.list storage.put, remote files (storage.stat ...)")
                    .with("files", "tutti send"),
            );
        }
    }
    list
}

/// Where received files go: the provider's storage directory, else `received/` in the state
/// directory.
pub(crate) fn receive_dir(shared: &Shared) -> PathBuf {
    lock(&shared.provider)
        .as_ref()
        .filter(|p| !p.tx.is_closed())
        .and_then(|p| p.storage.clone())
        .unwrap_or_else(|| shared.state.file("received"))
}

/// Serves a request that passed the policy: built-in services here, display and storage
/// through the provider.
pub(crate) async fn serve(shared: Arc<Shared>, peer: DeviceId, method: String, payload: Vec<u8>) -> Served {
    if method == CAPS_METHOD {
        return encode_list(&capabilities(&shared)).map_err(|e| (RpcErrorCode::INTERNAL, e.to_string()));
    }
    if !is_provided(&method) {
        return services::serve(&method, &payload);
    }
    // Remote file access (binary `storage.*`): served here on the directory the provider shares.
    if softbus::storage::method::is_one(&method) {
        let dir = lock(&shared.provider).as_ref().filter(|p| !p.tx.is_closed()).and_then(|p| p.storage.clone());
        let Some(dir) = dir else {
            return Err((RpcErrorCode::UNAVAILABLE, format!("{} shares no storage directory", shared.name)));
        };
        let served = tokio::task::spawn_blocking(move || {
            let mut storage = Storage::new(&dir).map_err(|e| (RpcErrorCode::UNAVAILABLE, e.to_string()))?;
            Ok(softbus::storage::serve(&mut storage, &method, &payload).unwrap_or_default())
        });
        return served.await.unwrap_or_else(|e| Err((RpcErrorCode::INTERNAL, e.to_string())));
    }
    let tx = lock(&shared.provider).as_ref().filter(|p| !p.tx.is_closed()).map(|p| p.tx.clone());
    let Some(tx) = tx else {
        return Err((RpcErrorCode::UNAVAILABLE, format!("{} runs no `tutti serve` for {method}", shared.name)));
    };
    let name = lock(&shared.trust).get(&peer).map(|d| d.name.clone()).unwrap_or_default();
    let payload_json = serde_json::from_slice::<serde_json::Value>(&payload)
        .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&payload).into_owned()));
    let request = serde_json::json!({
        "device": peer.to_string(), "name": name, "method": method, "payload": payload_json,
    });
    let (reply, answer) = oneshot::channel();
    if tx.send(ServeCall { request, reply }).await.is_err() {
        return Err((RpcErrorCode::UNAVAILABLE, "the `tutti serve` client went away".into()));
    }
    let limit = Duration::from_millis(shared.config.session.call_timeout_ms);
    match tokio::time::timeout(limit, answer).await {
        Ok(Ok(served)) => served,
        Ok(Err(_)) => Err((RpcErrorCode::UNAVAILABLE, "the `tutti serve` client went away".into())),
        Err(_) => Err((RpcErrorCode::DEADLINE_EXCEEDED, "the `tutti serve` client did not answer in time".into())),
    }
}
