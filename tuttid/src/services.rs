//! The built-in services every daemon serves to its trusted peers.
//!
//! Design: a service method is a pure function from request payload bytes to response bytes
//! or an RPC error; payloads are JSON text (what `tutti call` sends). This landing has:
//!
//! - `caps.list`: the capability list (`softbus::capability`, binary), never policy-checked;
//! - `echo.echo`: answers the payload unchanged;
//! - `compute.sha256`: hashes the data: a JSON string payload is hashed as its UTF-8 bytes,
//!   any other payload as its raw bytes; answers `{"sha256": "<hex>", "bytes": <n>}`;
//! - `compute.transform`: `{"op": "upper"|"lower"|"reverse", "text": …}` → `{"text": …}`.
//!
//! `display.*` and `storage.*` are served by a `tutti serve` client when one is connected
//! (see `crate::daemon`), not here.

use sha2::{Digest, Sha256};
use softbus::capability::{encode_list, Capability, CapabilityDescriptor};
use softbus::wire::RpcErrorCode;

/// The methods served, for error messages and `status`.
pub const METHODS: &[&str] = &["caps.list", "echo.echo", "compute.sha256", "compute.transform"];

/// The capabilities every daemon offers.
pub fn capabilities() -> Vec<CapabilityDescriptor> {
    vec![
        CapabilityDescriptor::new(Capability::Compute)
            .with("algorithms", "sha256")
            .with("methods", "compute.sha256 compute.transform")
            .with("transforms", "upper lower reverse"),
        CapabilityDescriptor::new(Capability::Custom("echo".into())).with("methods", "echo.echo"),
    ]
}

/// Serves one request.
pub fn serve(method: &str, payload: &[u8]) -> Result<Vec<u8>, (RpcErrorCode, String)> {
    match method {
        "caps.list" => encode_list(&capabilities()).map_err(|e| (RpcErrorCode::INTERNAL, e.to_string())),
        "echo.echo" => Ok(payload.to_vec()),
        "compute.sha256" => {
            let data = match serde_json::from_slice::<serde_json::Value>(payload) {
                Ok(serde_json::Value::String(s)) => s.into_bytes(),
                _ => payload.to_vec(),
            };
            let digest = Sha256::digest(&data);
            let answer = serde_json::json!({ "sha256": hex(&digest), "bytes": data.len() });
            serde_json::to_vec(&answer).map_err(|e| (RpcErrorCode::INTERNAL, e.to_string()))
        }
        "compute.transform" => {
            let request: serde_json::Value = serde_json::from_slice(payload)
                .map_err(|e| (RpcErrorCode::INVALID_ARGUMENT, format!("the payload is not JSON: {e}")))?;
            let text = request.get("text").and_then(serde_json::Value::as_str).ok_or_else(|| {
                (
                    RpcErrorCode::INVALID_ARGUMENT,
                    "expected {\"op\": \"upper\"|\"lower\"|\"reverse\", \"text\": …}".to_string(),
                )
            })?;
            let out: String = match request.get("op").and_then(serde_json::Value::as_str) {
                Some("upper") => text.to_uppercase(),
                Some("lower") => text.to_lowercase(),
                Some("reverse") => text.chars().rev().collect(),
                other => {
                    return Err((
                        RpcErrorCode::INVALID_ARGUMENT,
                        format!("unknown op {other:?}: upper, lower or reverse"),
                    ))
                }
            };
            serde_json::to_vec(&serde_json::json!({ "text": out })).map_err(|e| (RpcErrorCode::INTERNAL, e.to_string()))
        }
        other => Err((RpcErrorCode::NOT_FOUND, format!("no method {other:?} here; served: {}", METHODS.join(", ")))),
    }
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_services() {
        assert_eq!(serve("echo.echo", b"[1,2]").unwrap(), b"[1,2]");
        let out: serde_json::Value = serde_json::from_slice(&serve("compute.sha256", br#""hello""#).unwrap()).unwrap();
        assert_eq!(out["sha256"], "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(out["bytes"], 5);
        let out: serde_json::Value =
            serde_json::from_slice(&serve("compute.transform", br#"{"op":"reverse","text":"abc"}"#).unwrap()).unwrap();
        assert_eq!(out["text"], "cba");
        assert_eq!(serve("compute.transform", b"[]").unwrap_err().0, RpcErrorCode::INVALID_ARGUMENT);
        assert_eq!(
            serve("compute.transform", br#"{"op":"x","text":""}"#).unwrap_err().0,
            RpcErrorCode::INVALID_ARGUMENT
        );
        let (code, message) = serve("nope.nope", b"").unwrap_err();
        assert_eq!(code, RpcErrorCode::NOT_FOUND);
        assert!(message.contains("echo.echo"));
    }
}
