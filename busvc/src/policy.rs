//! The permission policy file (`policy.json`, docs/softbus/daemon.md): the rules of a
//! `softbus::capability::Policy` as JSON, the same file on a Linux host and on Tutti.
//!
//! `{"rules": [{"device": "<id>", "capability": "display", "decision": "allow"|"deny"|"ask",
//! "until": <unix seconds, optional>}]}`; unknown fields are refused.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::{Deserialize, Serialize};
use softbus::capability::{Capability, Decision, Policy, Rule};
use softbus::identity::DeviceId;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    rules: Vec<PolicyFileRule>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFileRule {
    device: String,
    capability: String,
    decision: String,
    #[serde(default)]
    until: Option<u64>,
}

/// The policy in `bytes` over `default`; what is wrong with it otherwise.
pub fn from_json(bytes: &[u8], default: Decision) -> Result<Policy, String> {
    let file: PolicyFile = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    let mut policy = Policy::new(default);
    for r in file.rules {
        let peer = r.device.parse::<DeviceId>().map_err(|e| format!("device {:?}: {e}", r.device))?;
        let capability = Capability::parse(&r.capability).map_err(|e| e.to_string())?;
        let decision = Decision::parse(&r.decision).ok_or_else(|| format!("decision {:?}", r.decision))?;
        policy.set(Rule { peer, capability, decision, until: r.until }).map_err(|e| e.to_string())?;
    }
    Ok(policy)
}

/// The rules of `policy` as the file's JSON (pretty, with a final newline).
pub fn to_json(policy: &Policy) -> Vec<u8> {
    let rules = policy
        .rules()
        .map(|r| PolicyFileRule {
            device: r.peer.to_string(),
            capability: r.capability.as_str().to_string(),
            decision: r.decision.as_str().to_string(),
            until: r.until,
        })
        .collect();
    let mut text = serde_json::to_vec_pretty(&PolicyFile { rules }).unwrap_or_default();
    text.push(b'\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_and_bad_files_are_refused() {
        let peer = DeviceId::from_signing_public(&[3; 32]);
        let mut policy = Policy::new(Decision::Allow);
        policy.set(Rule { peer, capability: Capability::Display, decision: Decision::Ask, until: Some(99) }).unwrap();
        let back = from_json(&to_json(&policy), Decision::Allow).unwrap();
        assert_eq!(back, policy);
        assert!(from_json(b"{\"rules\": [], \"x\": 1}", Decision::Allow).is_err());
        assert!(from_json(
            b"{\"rules\": [{\"device\": \"nope\", \"capability\": \"display\", \"decision\": \"allow\"}]}",
            Decision::Allow
        )
        .is_err());
        assert!(from_json(b"not json", Decision::Allow).is_err());
    }
}
