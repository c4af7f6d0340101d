//! The local API between `tutti` (or any script) and `tuttid`: newline-delimited JSON over the
//! Unix socket `tuttid.sock` in the state directory.
//!
//! Design: a client writes one [`Request`] as a JSON object on one line and reads one
//! [`Response`] line back; a connection may carry any number of requests in turn. Requests are
//! tagged by `"cmd"`; responses are `{"ok":true,"result":...}` or
//! `{"ok":false,"error":{"kind":...,"message":...}}` with a stable [`ErrorKind`] for scripts
//! and a message for people. Documented in `docs/softbus/daemon.md`.

use serde::{Deserialize, Serialize};

/// Longest request line the daemon reads, in bytes.
pub const MAX_REQUEST_LINE: usize = 1 << 20;

/// One request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "cmd", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// This daemon's identity, name and ports.
    Status,
    /// The devices discovered on the network.
    Devices,
    /// Shows a new pairing code on this device.
    PairShow,
    /// Pairs with `device`, which shows `code`.
    Pair {
        /// Device id, unique id prefix, or name.
        device: String,
        /// The code shown on the other device.
        code: String,
    },
    /// The trusted devices.
    TrustList,
    /// Stops trusting `device` and closes its sessions.
    TrustRevoke {
        /// Device id, unique id prefix, or name.
        device: String,
    },
    /// Calls `method` (`service.method`) on `device` with a JSON payload.
    Call {
        /// Device id, unique id prefix, or name.
        device: String,
        /// `service.method`.
        method: String,
        /// The argument, sent as its JSON text.
        #[serde(default)]
        payload: serde_json::Value,
        /// Deadline in milliseconds; the daemon's default if absent.
        #[serde(default)]
        timeout_ms: Option<u64>,
    },
    /// The capabilities `device` offers (its answer to `caps.list`).
    Caps {
        /// Device id, unique id prefix, or name.
        device: String,
    },
    /// Sets what `device` may do with `capability` on this device.
    PolicySet {
        /// Device id, unique id prefix, or name.
        device: String,
        /// `display`, `storage`, `compute`, `camera`, `speaker`, `sensor`, or a custom name.
        capability: String,
        /// `allow`, `deny` or `ask`.
        decision: String,
        /// For this many seconds; until changed if absent.
        #[serde(default)]
        for_s: Option<u64>,
    },
    /// The permission rules of this device.
    PolicyList,
    /// Makes this connection a prompt client: the daemon writes `{"prompt": PromptInfo}`
    /// lines on it whenever the policy says `ask`; answer each with `prompt_answer`.
    Prompts,
    /// Answers prompt `id`.
    PromptAnswer {
        /// The prompt's id.
        id: u64,
        /// Whether to allow the call.
        allow: bool,
        /// Remember the answer for this many seconds; this call only if absent.
        #[serde(default)]
        for_s: Option<u64>,
    },
    /// Publishes `message` on `topic` to every connected device that subscribed to it.
    Pub {
        /// The topic.
        topic: String,
        /// The message (text).
        message: String,
    },
    /// Subscribes to `topic` on every trusted device: the daemon writes `{"message":…}`
    /// lines on this connection until it closes.
    Sub {
        /// The topic.
        topic: String,
    },
    /// Sends the file at `path` (on this host) to `device`; progress lines
    /// (`{"progress":…}`) come before the response. Resumes a broken transfer.
    Send {
        /// Device id, unique id prefix, or name.
        device: String,
        /// The file, an absolute path.
        path: String,
    },
    /// Makes this connection the provider of display and storage: the daemon writes
    /// `{"request":…}` lines; answer each with `serve_reply`.
    Serve {
        /// Serve `display.show`.
        #[serde(default)]
        display: bool,
        /// Share this directory through `storage.*` and receive files into it.
        #[serde(default)]
        storage: Option<String>,
    },
    /// Answers forwarded request `id` with `result`, or with `error`.
    ServeReply {
        /// The request's id.
        id: u64,
        /// The JSON result.
        #[serde(default)]
        result: Option<serde_json::Value>,
        /// Or the failure.
        #[serde(default)]
        error: Option<ServeError>,
    },
}

/// A provider's failure answer: an RPC error code and a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServeError {
    /// RPC error code (1 not found, 2 invalid argument, 5 permission denied, 8 internal, …).
    pub code: u16,
    /// For people.
    pub message: String,
}

/// A question to the local user, written to prompt clients.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptInfo {
    /// Answer with this id.
    pub id: u64,
    /// The calling device's id.
    pub device: String,
    /// Its name in the trust store.
    pub name: String,
    /// The capability it wants.
    pub capability: String,
    /// The method it called.
    pub method: String,
}

/// What kind of failure, for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request is malformed.
    BadRequest,
    /// No such device (not discovered, not trusted).
    NotFound,
    /// The device name or prefix matches several devices.
    Ambiguous,
    /// The device is not trusted, or does not trust this one: pair first.
    Untrusted,
    /// Pairing failed (wrong code, no code shown, expired, ...).
    PairingFailed,
    /// The device could not be reached or the connection broke.
    Unreachable,
    /// The deadline passed.
    Timeout,
    /// The remote service answered with an error.
    Remote,
    /// The remote device's policy refused the call (RPC error 5).
    PermissionDenied,
    /// Something failed inside the daemon.
    Internal,
}

/// A failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    /// What kind.
    pub kind: ErrorKind,
    /// For people.
    pub message: String,
}

impl ApiError {
    /// A failure of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// One response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    /// Whether the request succeeded.
    pub ok: bool,
    /// The result, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
    /// The failure, when it did not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ApiError>,
}

impl Response {
    /// A response for `result`.
    pub fn from_result(result: Result<serde_json::Value, ApiError>) -> Self {
        match result {
            Ok(v) => Self { ok: true, result: Some(v), error: None },
            Err(e) => Self { ok: false, result: None, error: Some(e) },
        }
    }

    /// The result or the failure.
    pub fn into_result(self) -> Result<serde_json::Value, ApiError> {
        match (self.ok, self.result, self.error) {
            (true, result, _) => Ok(result.unwrap_or(serde_json::Value::Null)),
            (false, _, Some(e)) => Err(e),
            (false, _, None) => Err(ApiError::new(ErrorKind::Internal, "the daemon failed without a reason")),
        }
    }
}

/// A discovered device, as `devices` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceInfo {
    /// Device id.
    pub id: String,
    /// Name it announces.
    pub name: String,
    /// Kind it announces.
    pub kind: String,
    /// Session address (`ip:port`), if it accepts sessions.
    pub address: Option<String>,
    /// Whether this device trusts it.
    pub trusted: bool,
    /// Whether a session with it is open now.
    pub connected: bool,
    /// Milliseconds since it was last heard from.
    pub last_seen_ms: u64,
}

/// A trusted device, as `trust list` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedInfo {
    /// Device id.
    pub id: String,
    /// Name it gave at pairing.
    pub name: String,
    /// When it was paired, seconds since the Unix epoch.
    pub paired_at: u64,
    /// Ed25519 public key, hexadecimal.
    pub signing_key: String,
    /// X25519 static key, hexadecimal.
    pub noise_key: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_responses_have_the_documented_shape() {
        let r: Request =
            serde_json::from_str(r#"{"cmd":"call","device":"b","method":"echo.echo","payload":[1]}"#).unwrap();
        assert_eq!(
            r,
            Request::Call {
                device: "b".into(),
                method: "echo.echo".into(),
                payload: serde_json::json!([1]),
                timeout_ms: None
            }
        );
        assert_eq!(serde_json::to_string(&Request::TrustList).unwrap(), r#"{"cmd":"trust_list"}"#);
        let ok = Response::from_result(Ok(serde_json::json!({"a": 1})));
        assert_eq!(serde_json::to_string(&ok).unwrap(), r#"{"ok":true,"result":{"a":1}}"#);
        let err = Response::from_result(Err(ApiError::new(ErrorKind::Untrusted, "no")));
        assert_eq!(serde_json::to_string(&err).unwrap(), r#"{"ok":false,"error":{"kind":"untrusted","message":"no"}}"#);
        assert!(serde_json::from_str::<Request>(r#"{"cmd":"reboot"}"#).is_err());
    }
}
