//! The discovery task: one UDP socket that drives `softbus::discovery::Discovery`.
//!
//! Design: every datagram the state machine yields goes to the multicast group (if enabled)
//! and to each configured unicast peer; every datagram received goes into the state machine.
//! A beacon also teaches the address book where its sender accepts sessions: the source IP of
//! the datagram and the session port it announces. The socket sets `SO_REUSEADDR` so several
//! daemons on one host can share the multicast port. Malformed datagrams are counted by the
//! state machine and logged at debug level (a flood must not flood the log).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use softbus::discovery::DiscoveryEvent;
use softbus::wire::{self, CapabilitySet, Datagram};
use tokio::net::UdpSocket;

use super::{lock, DaemonError, Shared};
use crate::config::DiscoveryConfig;

/// Opens the discovery socket: bound to `bind:port`, joined to the group if multicast is on.
pub(super) fn open_socket(config: &DiscoveryConfig) -> Result<UdpSocket, DaemonError> {
    let what = || format!("discovery socket {}:{}", config.bind, config.port);
    let socket =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| DaemonError::Socket(what(), e))?;
    socket.set_reuse_address(true).map_err(|e| DaemonError::Socket(what(), e))?;
    socket
        .bind(&SockAddr::from(SocketAddr::new(config.bind, config.port)))
        .map_err(|e| DaemonError::Socket(what(), e))?;
    if config.multicast {
        let interface = match config.bind {
            IpAddr::V4(ip) => ip,
            IpAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
        };
        socket.join_multicast_v4(&config.group, &interface).map_err(|e| DaemonError::Socket(what(), e))?;
        socket.set_multicast_loop_v4(true).map_err(|e| DaemonError::Socket(what(), e))?;
        socket.set_multicast_ttl_v4(1).map_err(|e| DaemonError::Socket(what(), e))?;
    }
    socket.set_nonblocking(true).map_err(|e| DaemonError::Socket(what(), e))?;
    UdpSocket::from_std(socket.into()).map_err(|e| DaemonError::Socket(what(), e))
}

/// Runs discovery until the task is aborted.
pub(super) async fn run(shared: Arc<Shared>, socket: UdpSocket) {
    let config = &shared.config.discovery;
    let mut targets: Vec<SocketAddr> = config.peers.clone();
    if config.multicast {
        targets.push(SocketAddr::new(IpAddr::V4(config.group), config.port));
    }
    lock(&shared.discovery).query(CapabilitySet::NONE);
    let mut buf = vec![0u8; 2048];
    let mut last_malformed = 0;
    loop {
        let (outgoing, next) = {
            let mut disc = lock(&shared.discovery);
            disc.poll(shared.now());
            let outgoing: Vec<Vec<u8>> = core::iter::from_fn(|| disc.poll_transmit()).collect();
            while let Some(event) = disc.poll_event() {
                log_event(&shared, event);
            }
            let malformed = disc.stats().malformed;
            if malformed != last_malformed {
                tracing::debug!(total = malformed, "malformed discovery datagrams dropped");
                last_malformed = malformed;
            }
            (outgoing, disc.poll_at())
        };
        for datagram in &outgoing {
            for target in &targets {
                if let Err(e) = socket.send_to(datagram, target).await {
                    tracing::debug!(%target, error = %e, "discovery send failed");
                }
            }
        }
        tokio::select! {
            received = socket.recv_from(&mut buf) => match received {
                Ok((n, from)) => on_datagram(&shared, buf.get(..n).unwrap_or(&[]), from),
                Err(e) => tracing::debug!(error = %e, "discovery receive failed"),
            },
            _ = tokio::time::sleep_until(shared.deadline(next)) => {}
        }
    }
}

fn on_datagram(shared: &Shared, bytes: &[u8], from: SocketAddr) {
    if let Err(e) = lock(&shared.discovery).handle_datagram(shared.now(), bytes) {
        tracing::trace!(%from, error = %e, "discovery datagram refused");
        return;
    }
    if let Ok(Datagram::Beacon(beacon)) = wire::decode_datagram(bytes) {
        if beacon.device_id != shared.identity.device_id() && beacon.session_port != 0 {
            let addr = SocketAddr::new(from.ip(), beacon.session_port);
            let too_many = {
                let mut addrs = lock(&shared.addrs);
                addrs.insert(beacon.device_id, addr);
                addrs.len() > softbus::discovery::DiscoveryConfig::default().max_peers
            };
            // Only devices discovery still knows (or trusted ones): a flood of fake ids, whose
            // evictions may outrun the bounded event queue, must not grow the map. (One lock at
            // a time: the discovery task takes discovery, then addresses.)
            if too_many {
                let known: std::collections::HashSet<_> =
                    lock(&shared.discovery).peers().map(|p| p.device_id).collect();
                let trusted: std::collections::HashSet<_> = lock(&shared.trust).list().map(|d| d.device_id).collect();
                lock(&shared.addrs).retain(|id, _| known.contains(id) || trusted.contains(id));
            }
        }
    }
}

fn log_event(shared: &Shared, event: DiscoveryEvent) {
    match event {
        DiscoveryEvent::PeerFound(p) => {
            tracing::info!(device = %p.device_id, name = %p.advertisement.name, "device found");
        }
        DiscoveryEvent::PeerUpdated(p) => {
            tracing::debug!(device = %p.device_id, name = %p.advertisement.name, "device updated");
        }
        DiscoveryEvent::PeerLost(id) => {
            tracing::info!(device = %id, "device lost");
            lock(&shared.addrs).remove(&id);
        }
    }
}
