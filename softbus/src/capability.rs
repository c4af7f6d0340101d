//! Capabilities and permissions: what a device offers, described with typed attributes, and
//! which peer may use which capability (allow, deny, or ask the local user, for a time).
//!
//! Design: a [`Capability`] is a class of service (display, storage, compute, camera,
//! speaker, sensor) or a custom one named by the device; a [`CapabilityDescriptor`] adds
//! attributes (`resolution=1920x1080`, `free_bytes=…`). A device describes its capabilities
//! with a capability list, a small versioned byte format ([`encode_list`] and
//! [`decode_list`], layout in `docs/softbus/wire.md`, "Capability list") that travels as the
//! answer of the `caps.list` RPC. A service method belongs to the capability named before its
//! dot (`display.show` to display, `echo.echo` to the custom capability `echo`).
//!
//! A [`Policy`] decides, for a peer and a capability, [`Decision::Allow`], [`Decision::Deny`]
//! or [`Decision::Ask`] (the daemon asks the local user). Rules may end at a time (a grant
//! for ten minutes); after that the default decision applies again. Times are seconds since
//! the Unix epoch in the caller's clock, because grants outlive a daemon's run. The policy
//! is a pure table: the daemon stores it and enforces it for every incoming call.

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::identity::DeviceId;
use crate::wire::cursor::{Reader, Writer};
use crate::wire::WireError;

/// Version byte of the capability list.
pub const LIST_VERSION: u8 = 1;
/// Most descriptors in one list.
pub const MAX_DESCRIPTORS: usize = 32;
/// Most attributes in one descriptor.
pub const MAX_ATTRIBUTES: usize = 32;
/// Longest custom capability name, attribute key or attribute value, in bytes.
pub const MAX_TEXT: usize = 255;
/// Most rules a policy holds.
pub const MAX_RULES: usize = 4096;

const CUSTOM: u8 = 0xff;

/// A class of service a device may offer.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Capability {
    /// Shows things.
    Display,
    /// Stores files.
    Storage,
    /// Computes (hashes, transforms data).
    Compute,
    /// Takes pictures.
    Camera,
    /// Plays sound.
    Speaker,
    /// Measures things.
    Sensor,
    /// Anything else, named by the device: 1 to 32 bytes of `a-z`, `0-9`, `_`, `-`.
    Custom(String),
}

/// Why a capability name or list was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CapabilityError {
    /// A custom name that is empty, too long or has other characters than `a-z0-9_-`.
    BadName(String),
    /// The list did not decode.
    Wire(WireError),
    /// Attribute keys out of increasing order, or repeated (the format is canonical).
    UnsortedAttributes,
    /// Too many descriptors or attributes.
    TooMany,
}

impl fmt::Display for CapabilityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadName(n) => write!(f, "{n:?} is not a capability name (1-32 of a-z, 0-9, _ and -)"),
            Self::Wire(e) => write!(f, "malformed capability list: {e}"),
            Self::UnsortedAttributes => f.write_str("capability attributes are not in increasing key order"),
            Self::TooMany => {
                write!(f, "too many capabilities or attributes (at most {MAX_DESCRIPTORS} and {MAX_ATTRIBUTES})")
            }
        }
    }
}

impl core::error::Error for CapabilityError {}

impl From<WireError> for CapabilityError {
    fn from(e: WireError) -> Self {
        Self::Wire(e)
    }
}

impl Capability {
    /// Its name: `display`, …, or the custom name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Display => "display",
            Self::Storage => "storage",
            Self::Compute => "compute",
            Self::Camera => "camera",
            Self::Speaker => "speaker",
            Self::Sensor => "sensor",
            Self::Custom(name) => name,
        }
    }

    /// The capability called `name`; names other than the standard ones are custom.
    pub fn parse(name: &str) -> Result<Self, CapabilityError> {
        Ok(match name {
            "display" => Self::Display,
            "storage" => Self::Storage,
            "compute" => Self::Compute,
            "camera" => Self::Camera,
            "speaker" => Self::Speaker,
            "sensor" => Self::Sensor,
            other => {
                let ok = (1..=32).contains(&other.len())
                    && other.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
                if !ok {
                    return Err(CapabilityError::BadName(String::from(other)));
                }
                Self::Custom(String::from(other))
            }
        })
    }

    /// The capability a method (`service.method`) belongs to: the part before the first dot.
    pub fn of_method(method: &str) -> Result<Self, CapabilityError> {
        Self::parse(method.split('.').next().unwrap_or(method))
    }

    fn kind_byte(&self) -> u8 {
        match self {
            Self::Display => 0,
            Self::Storage => 1,
            Self::Compute => 2,
            Self::Camera => 3,
            Self::Speaker => 4,
            Self::Sensor => 5,
            Self::Custom(_) => CUSTOM,
        }
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A capability and its attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapabilityDescriptor {
    /// What it is.
    pub capability: Capability,
    /// Attributes, e.g. `lines=40`, `algorithms=sha256`.
    pub attributes: BTreeMap<String, String>,
}

impl CapabilityDescriptor {
    /// A descriptor without attributes.
    pub fn new(capability: Capability) -> Self {
        Self { capability, attributes: BTreeMap::new() }
    }

    /// The descriptor with one more attribute.
    pub fn with(mut self, key: &str, value: &str) -> Self {
        self.attributes.insert(String::from(key), String::from(value));
        self
    }
}

fn text_len(s: &str) -> Result<u8, WireError> {
    u8::try_from(s.len()).map_err(|_| WireError::Oversized { len: s.len(), max: MAX_TEXT })
}

/// Encodes a capability list (see `docs/softbus/wire.md`, "Capability list").
pub fn encode_list(descriptors: &[CapabilityDescriptor]) -> Result<Vec<u8>, CapabilityError> {
    if descriptors.len() > MAX_DESCRIPTORS || descriptors.iter().any(|d| d.attributes.len() > MAX_ATTRIBUTES) {
        return Err(CapabilityError::TooMany);
    }
    let mut len = 2;
    for d in descriptors {
        len += 2 + if matches!(d.capability, Capability::Custom(_)) { 1 + d.capability.as_str().len() } else { 0 };
        len += d.attributes.iter().map(|(k, v)| 2 + k.len() + v.len()).sum::<usize>();
    }
    let mut out = alloc::vec![0u8; len];
    let mut w = Writer::new(&mut out);
    w.u8(LIST_VERSION)?;
    w.u8(u8::try_from(descriptors.len()).map_err(|_| CapabilityError::TooMany)?)?;
    for d in descriptors {
        w.u8(d.capability.kind_byte())?;
        if let Capability::Custom(name) = &d.capability {
            Capability::parse(name)?;
            w.u8(text_len(name)?)?;
            w.put(name.as_bytes())?;
        }
        w.u8(u8::try_from(d.attributes.len()).map_err(|_| CapabilityError::TooMany)?)?;
        for (k, v) in &d.attributes {
            w.u8(text_len(k)?)?;
            w.put(k.as_bytes())?;
            w.u8(text_len(v)?)?;
            w.put(v.as_bytes())?;
        }
    }
    Ok(out)
}

/// Decodes a capability list; every malformed, unknown or non-canonical input is an error.
pub fn decode_list(bytes: &[u8]) -> Result<Vec<CapabilityDescriptor>, CapabilityError> {
    let mut r = Reader::new(bytes);
    let version = r.u8()?;
    if version != LIST_VERSION {
        return Err(WireError::UnknownVersion(version).into());
    }
    let count = usize::from(r.u8()?);
    if count > MAX_DESCRIPTORS {
        return Err(CapabilityError::TooMany);
    }
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let capability = match r.u8()? {
            0 => Capability::Display,
            1 => Capability::Storage,
            2 => Capability::Compute,
            3 => Capability::Camera,
            4 => Capability::Speaker,
            5 => Capability::Sensor,
            CUSTOM => {
                let len = usize::from(r.u8()?);
                match Capability::parse(r.text(len)?)? {
                    c @ Capability::Custom(_) => c,
                    // A standard name sent as custom would not re-encode the same way.
                    _ => return Err(CapabilityError::Wire(WireError::BadValue("custom capability name"))),
                }
            }
            _ => return Err(CapabilityError::Wire(WireError::BadValue("capability kind"))),
        };
        let attrs = usize::from(r.u8()?);
        if attrs > MAX_ATTRIBUTES {
            return Err(CapabilityError::TooMany);
        }
        let mut attributes = BTreeMap::new();
        let mut last: Option<&str> = None;
        for _ in 0..attrs {
            let klen = usize::from(r.u8()?);
            let key = r.text(klen)?;
            let vlen = usize::from(r.u8()?);
            let value = r.text(vlen)?;
            if last.is_some_and(|l| l >= key) {
                return Err(CapabilityError::UnsortedAttributes);
            }
            last = Some(key);
            attributes.insert(String::from(key), String::from(value));
        }
        out.push(CapabilityDescriptor { capability, attributes });
    }
    r.finish()?;
    Ok(out)
}

/// What the policy says about a use of a capability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Decision {
    /// Serve it.
    Allow,
    /// Refuse it (`PERMISSION_DENIED`).
    Deny,
    /// Ask the local user; refuse if nobody answers in time.
    Ask,
}

impl Decision {
    /// `allow`, `deny` or `ask`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
            Self::Ask => "ask",
        }
    }

    /// The decision called `text`.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "allow" => Some(Self::Allow),
            "deny" => Some(Self::Deny),
            "ask" => Some(Self::Ask),
            _ => None,
        }
    }
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The peer.
    pub peer: DeviceId,
    /// The capability.
    pub capability: Capability,
    /// What to do.
    pub decision: Decision,
    /// Until when (seconds since the Unix epoch, exclusive); `None`: until changed.
    pub until: Option<u64>,
}

/// Why a policy refused a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyError {
    /// The policy holds `MAX_RULES` rules already.
    Full,
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Full => write!(f, "the policy holds {MAX_RULES} rules already"),
        }
    }
}

impl core::error::Error for PolicyError {}

/// Decisions per peer and capability, with a default for everything else.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    default: Decision,
    rules: BTreeMap<(DeviceId, Capability), Rule>,
}

impl Policy {
    /// A policy that decides `default` where no rule applies.
    pub fn new(default: Decision) -> Self {
        Self { default, rules: BTreeMap::new() }
    }

    /// The default decision.
    pub fn default_decision(&self) -> Decision {
        self.default
    }

    /// Sets the rule for `rule.peer` and `rule.capability`, replacing an earlier one.
    pub fn set(&mut self, rule: Rule) -> Result<(), PolicyError> {
        let key = (rule.peer, rule.capability.clone());
        if !self.rules.contains_key(&key) && self.rules.len() >= MAX_RULES {
            return Err(PolicyError::Full);
        }
        self.rules.insert(key, rule);
        Ok(())
    }

    /// Removes the rule for `peer` and `capability`, if any.
    pub fn remove(&mut self, peer: &DeviceId, capability: &Capability) -> Option<Rule> {
        self.rules.remove(&(*peer, capability.clone()))
    }

    /// Removes every rule of `peer` (it was revoked).
    pub fn forget(&mut self, peer: &DeviceId) {
        self.rules.retain(|(p, _), _| p != peer);
    }

    /// What to do when `peer` uses `capability` at `now` (seconds since the Unix epoch): its
    /// rule while that lasts, else the default.
    pub fn decide(&self, peer: &DeviceId, capability: &Capability, now: u64) -> Decision {
        match self.rules.get(&(*peer, capability.clone())) {
            Some(rule) if rule.until.is_none_or(|until| now < until) => rule.decision,
            _ => self.default,
        }
    }

    /// Drops the rules that ended by `now`; returns how many.
    pub fn expire(&mut self, now: u64) -> usize {
        let before = self.rules.len();
        self.rules.retain(|_, r| r.until.is_none_or(|until| now < until));
        before - self.rules.len()
    }

    /// The rules, by peer and capability.
    pub fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.values()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn sample() -> Vec<CapabilityDescriptor> {
        vec![
            CapabilityDescriptor::new(Capability::Display).with("lines", "40").with("columns", "120"),
            CapabilityDescriptor::new(Capability::Compute).with("algorithms", "sha256"),
            CapabilityDescriptor::new(Capability::parse("echo").unwrap()),
            CapabilityDescriptor::new(Capability::Sensor).with("kind", "temperature"),
        ]
    }

    #[test]
    fn names_and_methods() {
        assert_eq!(Capability::of_method("display.show").unwrap(), Capability::Display);
        assert_eq!(Capability::of_method("echo.echo").unwrap(), Capability::Custom("echo".into()));
        assert_eq!(Capability::parse("camera").unwrap().as_str(), "camera");
        assert!(matches!(Capability::parse("Bad Name"), Err(CapabilityError::BadName(_))));
        assert!(Capability::parse("").is_err());
        assert!(Capability::parse(&"x".repeat(33)).is_err());
        assert_eq!(Decision::parse("ask"), Some(Decision::Ask));
        assert_eq!(Decision::parse("maybe"), None);
    }

    #[test]
    fn lists_round_trip_and_layout_is_as_documented() {
        let list = sample();
        let bytes = encode_list(&list).unwrap();
        assert_eq!(decode_list(&bytes).unwrap(), list);
        let one = encode_list(&[CapabilityDescriptor::new(Capability::Custom("ab".into())).with("k", "v")]).unwrap();
        assert_eq!(one, [1, 1, 0xff, 2, b'a', b'b', 1, 1, b'k', 1, b'v']);
        assert_eq!(encode_list(&[]).unwrap(), [1, 0]);
    }

    #[test]
    fn bad_lists_are_typed_errors() {
        assert_eq!(decode_list(&[2, 0]), Err(CapabilityError::Wire(WireError::UnknownVersion(2))));
        assert_eq!(decode_list(&[1, 33]), Err(CapabilityError::TooMany));
        assert!(matches!(decode_list(&[1, 1, 9, 0]), Err(CapabilityError::Wire(WireError::BadValue(_)))));
        assert!(matches!(decode_list(&[1, 1, 0]), Err(CapabilityError::Wire(WireError::Truncated { .. }))));
        assert!(matches!(decode_list(&[1, 0, 0]), Err(CapabilityError::Wire(WireError::TrailingBytes(1)))));
        let unsorted = [1, 1, 0, 2, 1, b'b', 0, 1, b'a', 0];
        assert_eq!(decode_list(&unsorted), Err(CapabilityError::UnsortedAttributes));
        let standard_as_custom = [1, 1, 0xff, 7, b'd', b'i', b's', b'p', b'l', b'a', b'y', 0];
        assert!(decode_list(&standard_as_custom).is_err());
        let long = CapabilityDescriptor::new(Capability::Display).with("k", &"v".repeat(256));
        assert!(matches!(encode_list(&[long]), Err(CapabilityError::Wire(WireError::Oversized { .. }))));
    }

    #[test]
    fn policy_rules_grants_and_expiry() {
        let (a, b) = (DeviceId::from_bytes([1; 16]), DeviceId::from_bytes([2; 16]));
        let mut p = Policy::new(Decision::Ask);
        assert_eq!(p.decide(&a, &Capability::Display, 100), Decision::Ask);
        p.set(Rule { peer: a, capability: Capability::Display, decision: Decision::Allow, until: Some(700) }).unwrap();
        p.set(Rule { peer: a, capability: Capability::Storage, decision: Decision::Deny, until: None }).unwrap();
        assert_eq!(p.decide(&a, &Capability::Display, 699), Decision::Allow);
        assert_eq!(p.decide(&a, &Capability::Display, 700), Decision::Ask, "the grant ended");
        assert_eq!(p.decide(&b, &Capability::Display, 100), Decision::Ask, "rules are per peer");
        assert_eq!(p.decide(&a, &Capability::Storage, u64::MAX), Decision::Deny);
        assert_eq!(p.expire(700), 1);
        assert_eq!(p.rules().count(), 1);
        p.forget(&a);
        assert_eq!(p.rules().count(), 0);
        for i in 0..MAX_RULES {
            let name = alloc::format!("c{i}");
            let rule = Rule { peer: a, capability: Capability::Custom(name), decision: Decision::Deny, until: None };
            p.set(rule).unwrap();
        }
        let one_more = Rule { peer: b, capability: Capability::Camera, decision: Decision::Deny, until: None };
        assert_eq!(p.set(one_more), Err(PolicyError::Full));
    }
}
