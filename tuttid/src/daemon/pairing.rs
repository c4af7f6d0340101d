//! Pairing over TCP: as the device where the code was typed (`tutti pair <device> --code`), and
//! as the device showing it (`tutti pair --show`).
//!
//! Design: a pairing takes its own TCP connection to the session port; the listener recognises
//! it by its first frame. The showing side spends one attempt of its offer per connection
//! (`PairingOffer::begin_attempt`), refuses with an abort frame when it has no usable offer,
//! and drops the offer after a success (one pairing per shown code). The typing side checks
//! that the device that answered is the one the user named, and only then trusts it. Each
//! side bounds the whole exchange with [`PAIRING_TIMEOUT`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use softbus::connection::FrameReader;
use softbus::pairing::{AbortReason, Pairing, PairingCode, PairingError, PairingLimits, PairingOffer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::link::read_frame;
use super::{lock, Shared};
use crate::api::{ApiError, ErrorKind};

/// The longest a pairing exchange may take, on either side.
pub(super) const PAIRING_TIMEOUT: Duration = Duration::from_secs(15);

/// Shows a new code on this device: the previous one, if any, is dropped.
pub(super) fn show(shared: &Shared) -> serde_json::Value {
    let limits = PairingLimits {
        lifetime: Duration::from_secs(shared.config.pairing.code_lifetime_s),
        max_attempts: shared.config.pairing.max_attempts,
    };
    let offer = PairingOffer::new(shared.now(), limits, &mut shared.rng());
    let code = offer.code().to_string();
    *lock(&shared.offer) = Some(offer);
    tracing::info!("pairing code shown (valid {} s, {} attempts)", limits.lifetime.as_secs(), limits.max_attempts);
    serde_json::json!({
        "code": code,
        "device": shared.identity.device_id().to_string(),
        "name": shared.name,
        "expires_in_s": limits.lifetime.as_secs(),
        "attempts": limits.max_attempts,
    })
}

fn pairing_error(e: &PairingError) -> ApiError {
    let kind = match e {
        PairingError::BadCode => ErrorKind::BadRequest,
        PairingError::Wire(_) | PairingError::Protocol(_) | PairingError::BadIdentity => ErrorKind::PairingFailed,
        _ => ErrorKind::PairingFailed,
    };
    ApiError::new(kind, format!("pairing failed: {e}"))
}

/// Pairs with `device`, which shows `code`; on success both devices trust each other.
pub(super) async fn pair_with(shared: &Arc<Shared>, device: &str, code: &str) -> Result<serde_json::Value, ApiError> {
    let code = PairingCode::parse(code).map_err(|e| pairing_error(&e))?;
    let id = shared.resolve(device)?;
    let addr = shared.address(&id)?;
    let exchange = async {
        let mut stream = TcpStream::connect(addr)
            .await
            .map_err(|e| ApiError::new(ErrorKind::Unreachable, format!("cannot connect to {id} at {addr}: {e}")))?;
        let _ = stream.set_nodelay(true);
        let mut pairing = Pairing::initiate(&shared.identity, &shared.name, &code, &mut shared.rng())
            .map_err(|e| pairing_error(&e))?;
        flush(&mut stream, &mut pairing).await?;
        let mut reader = FrameReader::new();
        let answer = read_frame(&mut stream, &mut reader)
            .await
            .map_err(|e| ApiError::new(ErrorKind::PairingFailed, format!("pairing failed: {e}")))?;
        let result = pairing.handle_frame(&shared.identity, &answer);
        flush(&mut stream, &mut pairing).await?;
        let peer = match result {
            Ok(Some(peer)) => peer,
            Ok(None) => return Err(ApiError::new(ErrorKind::Internal, "pairing ended without a result")),
            Err(e) => return Err(pairing_error(&e)),
        };
        if peer.device_id != id {
            return Err(ApiError::new(
                ErrorKind::PairingFailed,
                format!("pairing failed: the device that answered is {}, not {id}", peer.device_id),
            ));
        }
        // The responder closes the connection when it accepted step 3, or aborts.
        match read_frame(&mut stream, &mut reader).await {
            Ok(frame) => {
                let err = pairing.handle_frame(&shared.identity, &frame).err().unwrap_or(PairingError::Finished);
                Err(pairing_error(&err))
            }
            Err(_) => Ok(peer),
        }
    };
    let peer = tokio::time::timeout(PAIRING_TIMEOUT, exchange)
        .await
        .map_err(|_| ApiError::new(ErrorKind::Timeout, "pairing failed: the other device did not answer in time"))??;
    let name = peer.name.clone();
    shared.trust_paired(peer)?;
    tracing::info!(device = %id, %name, "paired");
    Ok(serde_json::json!({ "device": id.to_string(), "name": name }))
}

async fn flush(stream: &mut TcpStream, pairing: &mut Pairing) -> Result<(), ApiError> {
    while let Some(frame) = pairing.poll_transmit() {
        stream
            .write_all(&frame)
            .await
            .map_err(|e| ApiError::new(ErrorKind::Unreachable, format!("pairing failed: {e}")))?;
    }
    Ok(())
}

/// Answers a pairing that another device started on this connection.
pub(super) async fn answer(
    shared: Arc<Shared>,
    mut stream: TcpStream,
    first: Vec<u8>,
    mut reader: FrameReader,
    from: SocketAddr,
) {
    let attempt = match lock(&shared.offer).as_mut() {
        None => Err(AbortReason::NoOffer),
        Some(offer) => offer.begin_attempt(shared.now()).map_err(|e| match e {
            PairingError::NotOffered(reason) => reason,
            _ => AbortReason::Protocol,
        }),
    };
    let code = match attempt {
        Ok(code) => code,
        Err(reason) => {
            tracing::warn!(%from, %reason, "pairing attempt refused");
            if let Ok(abort) = Pairing::refuse(&first, reason) {
                let _ = stream.write_all(&abort).await;
            }
            return;
        }
    };
    let exchange = async {
        let mut pairing = Pairing::respond(&shared.identity, &shared.name, &code, &first, &mut shared.rng())
            .map_err(|e| pairing_error(&e))?;
        flush(&mut stream, &mut pairing).await?;
        let frame = read_frame(&mut stream, &mut reader)
            .await
            .map_err(|e| ApiError::new(ErrorKind::PairingFailed, format!("pairing failed: {e}")))?;
        let result = pairing.handle_frame(&shared.identity, &frame);
        flush(&mut stream, &mut pairing).await?;
        match result {
            Ok(Some(peer)) => Ok(peer),
            Ok(None) => Err(ApiError::new(ErrorKind::Internal, "pairing ended without a result")),
            Err(e) => Err(pairing_error(&e)),
        }
    };
    match tokio::time::timeout(PAIRING_TIMEOUT, exchange).await {
        Ok(Ok(peer)) => {
            let (id, name) = (peer.device_id, peer.name.clone());
            match shared.trust_paired(peer) {
                Ok(()) => {
                    *lock(&shared.offer) = None;
                    tracing::info!(device = %id, %name, %from, "paired");
                }
                Err(e) => tracing::error!(error = %e, "could not save the trust store"),
            }
        }
        Ok(Err(e)) => {
            let left = lock(&shared.offer).as_ref().map_or(0, PairingOffer::attempts_left);
            tracing::warn!(%from, error = %e, attempts_left = left, "pairing attempt failed");
        }
        Err(_) => tracing::warn!(%from, "pairing attempt timed out"),
    }
    let _ = stream.shutdown().await;
}
