//! Permissions: the policy check of every incoming call, and the `ask` prompt.
//!
//! Design: a request's method names its capability (`softbus::capability::Capability::
//! of_method`); the policy (`policy.json`, `softbus::capability::Policy`) decides allow, deny
//! or ask for the calling peer. `caps.list` is always answered: describing the device is what
//! pairing is for. An `ask` goes to the newest prompt client (`tutti prompt` or `tutti
//! serve`, which sent `{"cmd":"prompts"}` on the local API): the daemon writes the prompt on
//! that connection and waits up to `policy.ask_timeout_ms` for a `prompt_answer`. Nobody
//! connected, nobody answering in time, or a closed prompt client means no. An answer may
//! carry a duration, which becomes a time-limited rule (a grant, or a refusal).

use std::sync::Arc;
use std::time::Duration;

use softbus::capability::{Capability, Decision, Rule};
use softbus::identity::DeviceId;
use tokio::sync::{mpsc, oneshot};

use super::{lock, unix_now, Shared};
use crate::api::{ApiError, ErrorKind, PromptInfo};

/// The method every daemon answers without a policy check.
pub(crate) use busvc::CAPS_METHOD;

/// What to do with one incoming request.
pub(crate) enum Verdict {
    /// Serve it.
    Serve,
    /// Refuse it with this message.
    Deny(String),
    /// Ask the local user about this capability.
    Ask(Capability),
}

/// The policy's verdict on `peer` calling `method` now.
pub(crate) fn check(shared: &Shared, peer: &DeviceId, method: &str) -> Verdict {
    if method == CAPS_METHOD {
        return Verdict::Serve;
    }
    // A method without a valid capability name is not served anyway (not found).
    let Ok(capability) = Capability::of_method(method) else { return Verdict::Serve };
    match lock(&shared.policy).decide(peer, &capability, unix_now()) {
        Decision::Allow => Verdict::Serve,
        Decision::Deny => Verdict::Deny(format!("{} does not allow this device to use {capability}", shared.name)),
        Decision::Ask => Verdict::Ask(capability),
    }
}

/// A prompt on its way to a prompt client, with the channel of its answer.
pub(crate) struct PendingPrompt {
    pub(crate) info: PromptInfo,
    pub(crate) answer: oneshot::Sender<PromptAnswer>,
}

/// What the user answered.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PromptAnswer {
    pub(crate) allow: bool,
    /// Remember the answer this many seconds (a rule until then); `None`: this call only.
    pub(crate) for_s: Option<u64>,
}

/// Registers a prompt client; prompts arrive on the returned channel.
pub(crate) fn register_prompter(shared: &Shared) -> mpsc::Receiver<PendingPrompt> {
    let (tx, rx) = mpsc::channel(16);
    lock(&shared.prompters).push(tx);
    rx
}

/// Prompt clients connected now.
pub(crate) fn prompters(shared: &Shared) -> usize {
    let mut list = lock(&shared.prompters);
    list.retain(|tx| !tx.is_closed());
    list.len()
}

/// Asks the local user whether `peer` may use `capability` through `method`; `false` when
/// nobody answers within `policy.ask_timeout_ms`.
pub(crate) async fn ask(shared: Arc<Shared>, peer: DeviceId, capability: Capability, method: String) -> bool {
    let name = lock(&shared.trust).get(&peer).map(|d| d.name.clone()).unwrap_or_default();
    let id = {
        let mut next = lock(&shared.next_prompt);
        *next += 1;
        *next
    };
    let info = PromptInfo { id, device: peer.to_string(), name, capability: capability.as_str().to_string(), method };
    let (answer_tx, answer_rx) = oneshot::channel();
    let prompter = {
        let mut list = lock(&shared.prompters);
        list.retain(|tx| !tx.is_closed());
        list.last().cloned()
    };
    let Some(prompter) = prompter else {
        tracing::info!(peer = %peer, %capability, "asking: no prompt client is connected; refused");
        return false;
    };
    tracing::info!(peer = %peer, %capability, prompt = id, "asking the local user");
    if prompter.send(PendingPrompt { info, answer: answer_tx }).await.is_err() {
        return false;
    }
    let limit = Duration::from_millis(shared.config.policy.ask_timeout_ms);
    let answer = match tokio::time::timeout(limit, answer_rx).await {
        Ok(Ok(answer)) => answer,
        Ok(Err(_)) => {
            tracing::info!(prompt = id, "the prompt client went away; refused");
            return false;
        }
        Err(_) => {
            tracing::info!(prompt = id, "nobody answered in time; refused");
            return false;
        }
    };
    if let Some(seconds) = answer.for_s {
        let decision = if answer.allow { Decision::Allow } else { Decision::Deny };
        let rule = Rule { peer, capability, decision, until: Some(unix_now().saturating_add(seconds)) };
        if let Err(e) = set_rule(&shared, rule) {
            tracing::warn!(error = %e, "could not remember the answer");
        }
    }
    tracing::info!(prompt = id, allow = answer.allow, "the local user answered");
    answer.allow
}

/// Sets a rule and saves the policy.
pub(crate) fn set_rule(shared: &Shared, rule: Rule) -> Result<(), ApiError> {
    let mut policy = lock(&shared.policy);
    policy.expire(unix_now());
    policy.set(rule).map_err(|e| ApiError::new(ErrorKind::BadRequest, e.to_string()))?;
    shared.state.save_policy(&policy).map_err(|e| ApiError::new(ErrorKind::Internal, e.to_string()))
}
