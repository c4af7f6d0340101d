//! mDNS/DNS-SD: the daemon answers queries for the `_tutti._udp` service, so standard tools
//! (`avahi-browse -r _tutti._udp`, `dns-sd -B _tutti._udp`) list Tutti devices.
//!
//! Design: the `mdns-sd` crate does the protocol (its own thread and socket on port 5353,
//! probing, announcing, answering PTR/SRV/TXT/A queries). The instance is the device name
//! (made a valid DNS label), the host `tutti-<first 4 hex digits of the id>.local.`, the port
//! the discovery port, and the TXT record carries `id` (the device id), `name`, `kind`,
//! `caps` (the capability summary) and `session` (the TCP session port). Nothing is taken
//! from mDNS answers: discovery of peers stays the soft bus's own (docs/softbus/daemon.md);
//! mDNS is for other tools. If mDNS cannot start (the port taken by a daemon that does not
//! share it, no multicast interface), the daemon logs why and runs without it. Off with
//! `discovery.mdns = false` (`--no-mdns`) and whenever multicast is off (`--no-multicast`).

use mdns_sd::{ServiceDaemon, ServiceInfo};

use super::Shared;

/// The DNS-SD service type.
pub(crate) const SERVICE_TYPE: &str = "_tutti._udp.local.";

/// The running responder; stopped when dropped.
pub(super) struct Mdns(ServiceDaemon);

impl Drop for Mdns {
    fn drop(&mut self) {
        let _ = self.0.shutdown();
    }
}

/// `name` as one DNS label: dots become dashes, at most 63 bytes, never empty.
fn label(name: &str) -> String {
    let mut out: String = name.chars().map(|c| if c == '.' || c.is_control() { '-' } else { c }).collect();
    while out.len() > 63 {
        out.pop();
    }
    if out.is_empty() {
        out.push_str("tutti");
    }
    out
}

/// Starts answering for this device when `discovery.mdns` is on.
pub(super) fn start(shared: &Shared, kind: &str, capabilities: &str) -> Option<Mdns> {
    if !shared.config.discovery.mdns || !shared.config.discovery.multicast {
        return None;
    }
    let id = shared.identity.device_id().to_string();
    let host = format!("tutti-{}.local.", &id[..4]);
    let session = shared.session_port.to_string();
    let properties = [
        ("id", id.as_str()),
        ("name", shared.name.as_str()),
        ("kind", kind),
        ("caps", capabilities),
        ("session", session.as_str()),
    ];
    let started = ServiceDaemon::new().and_then(|daemon| {
        let info =
            ServiceInfo::new(SERVICE_TYPE, &label(&shared.name), &host, "", shared.discovery_port, &properties[..])?
                .enable_addr_auto();
        let fullname = info.get_fullname().to_string();
        daemon.register(info)?;
        Ok((daemon, fullname))
    });
    match started {
        Ok((daemon, fullname)) => {
            tracing::info!(%fullname, "answering mDNS/DNS-SD queries");
            Some(Mdns(daemon))
        }
        Err(e) => {
            tracing::warn!(error = %e, "mDNS/DNS-SD is off: cannot start the responder");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(label("laptop"), "laptop");
        assert_eq!(label("my.laptop"), "my-laptop");
        assert_eq!(label(""), "tutti");
        assert_eq!(label(&"x".repeat(80)).len(), 63);
    }
}
