//! The built-in services every soft bus device serves to its trusted peers, the same on a
//! Linux host (`tuttid`) and inside Tutti (`softbusd`).
//!
//! Design: a service method is a pure function from request payload bytes to response bytes
//! or an RPC error; payloads are JSON text (what `tutti call` sends). `no_std` + `alloc`.
//!
//! - `caps.list`: the capability list (`softbus::capability`, binary), never policy-checked;
//!   built by the caller, which knows what else it offers (see [`capabilities`]);
//! - `echo.echo`: answers the payload unchanged;
//! - `compute.sha256`: hashes the data: a JSON string payload is hashed as its UTF-8 bytes,
//!   any other payload as its raw bytes; answers `{"sha256": "<hex>", "bytes": <n>}`;
//! - `compute.transform`: `{"op": "upper"|"lower"|"reverse", "text": …}` → `{"text": …}`.
//!
//! `display.show` is served where there is something to show text on (a `tutti serve`
//! terminal, the Tutti console); [`display_text`] turns its payload into the text to show and
//! [`display_capability`] describes it.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

pub mod policy;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use serde_json::Value;
use sha2::{Digest, Sha256};
use softbus::capability::{Capability, CapabilityDescriptor};
use softbus::wire::RpcErrorCode;

/// The method every device answers without a policy check.
pub const CAPS_METHOD: &str = "caps.list";

/// The methods [`serve`] answers, for error messages and `status`.
pub const METHODS: &[&str] = &["caps.list", "echo.echo", "compute.sha256", "compute.transform"];

/// An RPC error: its code and message.
pub type ServiceError = (RpcErrorCode, String);

/// The capabilities [`serve`] offers (compute and echo).
pub fn capabilities() -> Vec<CapabilityDescriptor> {
    vec![
        CapabilityDescriptor::new(Capability::Compute)
            .with("algorithms", "sha256")
            .with("methods", "compute.sha256 compute.transform")
            .with("transforms", "upper lower reverse"),
        CapabilityDescriptor::new(Capability::Custom("echo".into())).with("methods", "echo.echo"),
    ]
}

/// The descriptor of a text display of `kind` (`terminal`, `console`).
pub fn display_capability(kind: &str) -> CapabilityDescriptor {
    CapabilityDescriptor::new(Capability::Display).with("kind", kind).with("methods", "display.show")
}

/// Serves one request to the built-in services.
pub fn serve(method: &str, payload: &[u8]) -> Result<Vec<u8>, ServiceError> {
    match method {
        CAPS_METHOD => {
            softbus::capability::encode_list(&capabilities()).map_err(|e| (RpcErrorCode::INTERNAL, e.to_string()))
        }
        "echo.echo" => Ok(payload.to_vec()),
        "compute.sha256" => {
            let data = match serde_json::from_slice::<Value>(payload) {
                Ok(Value::String(s)) => s.into_bytes(),
                _ => payload.to_vec(),
            };
            let digest = Sha256::digest(&data);
            let answer = serde_json::json!({ "sha256": hex(&digest), "bytes": data.len() });
            serde_json::to_vec(&answer).map_err(|e| (RpcErrorCode::INTERNAL, e.to_string()))
        }
        "compute.transform" => {
            let request: Value = serde_json::from_slice(payload)
                .map_err(|e| (RpcErrorCode::INVALID_ARGUMENT, format!("the payload is not JSON: {e}")))?;
            let text = request.get("text").and_then(Value::as_str).ok_or_else(|| {
                (
                    RpcErrorCode::INVALID_ARGUMENT,
                    "expected {\"op\": \"upper\"|\"lower\"|\"reverse\", \"text\": …}".to_string(),
                )
            })?;
            let out: String = match request.get("op").and_then(Value::as_str) {
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

/// The text a `display.show` payload asks to show (a JSON string, `{"text": …}`, else the
/// JSON itself), with control characters other than newline escaped: a peer must not drive
/// the terminal.
pub fn display_text(payload: &Value) -> String {
    let shown = match payload {
        Value::String(s) => s.clone(),
        other => other.get("text").and_then(Value::as_str).map_or_else(|| other.to_string(), str::to_string),
    };
    let mut safe = String::with_capacity(shown.len());
    for c in shown.chars() {
        if c.is_control() && c != '\n' {
            safe.extend(c.escape_default());
        } else {
            safe.push(c);
        }
    }
    safe
}

/// The answer to a shown `display.show`: `{"shown": true, "chars": n}`.
pub fn display_answer(text: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({ "shown": true, "chars": text.chars().count() })).unwrap_or_default()
}

/// Whether `name` may be the name of a received file: one plain path component, not hidden
/// (so never `.` or `..`), without `/`, `\\` or NUL, at most 255 bytes.
pub fn safe_file_name(name: &str) -> bool {
    !name.is_empty() && name.len() <= 255 && !name.starts_with('.') && !name.contains(['/', '\\', '\0'])
}

/// Lowercase hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_services() {
        assert_eq!(serve("echo.echo", b"[1,2]").unwrap(), b"[1,2]");
        let out: Value = serde_json::from_slice(&serve("compute.sha256", br#""hello""#).unwrap()).unwrap();
        assert_eq!(out["sha256"], "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
        assert_eq!(out["bytes"], 5);
        let out: Value =
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
        let list = softbus::capability::decode_list(&serve(CAPS_METHOD, b"").unwrap()).unwrap();
        assert_eq!(list, capabilities());
    }

    #[test]
    fn display_text_escapes_control_characters() {
        assert_eq!(display_text(&Value::String("a\u{1b}[2Jb\nc".into())), "a\\u{1b}[2Jb\nc");
        assert_eq!(display_text(&serde_json::json!({"text": "hi"})), "hi");
        assert_eq!(display_text(&serde_json::json!([1])), "[1]");
        assert_eq!(display_answer("héllo"), br#"{"chars":5,"shown":true}"#);
        assert_eq!(hex(&[0, 0xab, 0x10]), "00ab10");
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a\0b", &"x".repeat(256)] {
            assert!(!safe_file_name(bad), "{bad:?}");
        }
        assert!(safe_file_name("photo (1).jpg"));
    }
}
