//! Outbound: plaintext from the local app, mutual TLS to the peer sidecar, which must prove exactly the
//! route's `server_id`. If it cannot, the local connection is closed without a byte.

use std::sync::Arc;

use rustls_pki_types::ServerName;
use tokio::io::AsyncReadExt;
use tokio_rustls::{TlsConnector, client::TlsStream};
use tracing::{debug, warn};

use crate::{
    accept::OpenConnection,
    addr::{ClientAddr, ConnectAddr},
    config::{ListenerName, OutboundConfig},
    duplex::{self, DuplexError, Ended},
    log_limit::LogKind,
    metrics::{Direction, ListenerMetrics},
    read_ahead::ReadAhead,
    state::Shared,
    tls::timed_handshake,
    transport::{self, Stream, TlsTransport},
};

/// The TLS server name we pass to rustls. The verifier ignores it (the peer is identified by SPIFFE ID) and
/// SNI is off, so it never leaves this process.
const UNUSED_SERVER_NAME: &str = "peer.sidecar.invalid";

/// How long to look for a refusal alert after a connection failed before the peer sent anything.
const REFUSAL_READ: std::time::Duration = std::time::Duration::from_millis(200);

/// One outbound listener (a route to one peer).
pub struct Outbound {
    name: ListenerName,
    /// Index of this route's client config in [`crate::tls::TlsConfigs::clients`].
    route: usize,
    connect: ConnectAddr,
    server_id: policy::SpiffeId,
    pub metrics: Arc<ListenerMetrics>,
    shared: Arc<Shared>,
}

impl Outbound {
    pub fn new(route: usize, config: &OutboundConfig, shared: Arc<Shared>) -> Self {
        let metrics = Arc::new(shared.metrics.listener(Direction::Outbound, config.name.as_str()));
        Self {
            name: config.name.clone(),
            route,
            connect: config.connect.clone(),
            server_id: config.server_id.clone(),
            metrics,
            shared,
        }
    }

    /// Serves one accepted local connection to its end.
    pub async fn serve(self: Arc<Self>, mut local: Stream, client: ClientAddr) {
        let _open = OpenConnection::new(&self.metrics);
        let timeouts = self.shared.config.timeouts;
        let remote = match transport::connect(&self.connect, timeouts.connect).await {
            Ok(remote) => remote,
            Err(e) => {
                self.metrics.connect_error(e.reason());
                if let Some(suppressed) = self.shared.log_limit.admit(&self.name.0, LogKind::Connect) {
                    warn!(direction = %"outbound", listener = %self.name, local.addr = %client, connect = %self.connect, reason = %e.reason(), error = %e, suppressed, "cannot reach the peer sidecar");
                }
                return;
            }
        };
        // Boxed, as inbound: the handshake's large state must not size the task for the connection's life.
        let Some(mut tls) = Box::pin(self.handshake(remote, client)).await else { return };
        let m = &self.metrics;
        let ended = tokio::select! {
            biased;
            _ = self.shared.force_close.cancelled() => Ended::DrainOver,
            r = duplex::proxy(&mut local, &mut tls, &m.to_peer, &m.from_peer, timeouts.half_close_idle) => Ended::Copied(r),
        };
        // Nothing came back from the peer: did it refuse us? In TLS 1.3 the server checks our certificate
        // after our side of the handshake is done, so its refusal is an alert we may not have read yet (our
        // write can fail first, on the socket it closed).
        let refused = match &ended {
            Ended::Copied(Err(DuplexError::Io { moved, source, .. })) if moved.b_to_a == 0 => {
                match peer_alert(source) {
                    Some(alert) => Some(alert),
                    None => peer_refusal(&mut tls).await,
                }
            }
            _ => None,
        };
        if !matches!(ended, Ended::Copied(Ok(_))) {
            // Cut off rather than finished: reset both ends, so neither takes a truncated stream for a
            // complete one.
            transport::abort(&local);
            transport::abort(tls.get_ref().0.get_ref());
        }
        match (ended, refused) {
            (_, Some(alert)) => {
                self.metrics.connect_error("rejected");
                if let Some(suppressed) = self.shared.log_limit.admit(&self.name.0, LogKind::Rejected) {
                    warn!(direction = %"outbound", listener = %self.name, local.addr = %client, connect = %self.connect, expected = %self.server_id, reason = %"rejected", alert = ?alert, suppressed, "the peer sidecar refused this connection after the handshake (does it trust our certificate?)");
                }
            }
            (Ended::Copied(Ok(t)), None) => {
                debug!(listener = %self.name, to_peer = t.a_to_b, from_peer = t.b_to_a, "connection closed")
            }
            (Ended::Copied(Err(e)), None) => debug!(listener = %self.name, error = %e, "connection ended"),
            (Ended::DrainOver | Ended::Revoked, None) => {
                debug!(listener = %self.name, "closed at the end of the drain period")
            }
        }
    }

    async fn handshake(&self, remote: Stream, client: ClientAddr) -> Option<TlsStream<TlsTransport>> {
        let config = self.shared.identity.current()?.tls.clients.get(self.route)?.clone();
        let name = ServerName::try_from(UNUSED_SERVER_NAME).ok()?;
        let connect = TlsConnector::from(config).connect(name, ReadAhead::new(remote)).into_fallible();
        let (failure, _socket) =
            match timed_handshake(connect, self.shared.config.timeouts.handshake, &self.metrics.handshakes).await {
                Ok(tls) => return Some(tls),
                Err(failed) => failed,
            };
        let suppressed = self.shared.log_limit.admit(&self.name.0, LogKind::Handshake(failure.reason))?;
        let (id, claimed) = failure.log_ids();
        warn!(direction = %"outbound", listener = %self.name, local.addr = %client, connect = %self.connect, expected = %self.server_id, peer.id = %id, peer.claimed_id = %claimed, reason = %failure.reason, detail = %failure.detail, suppressed, "connection refused: handshake with the peer failed");
        None
    }
}

/// The alert the peer sent, if it refused us: read what is left on the connection, briefly.
async fn peer_refusal(tls: &mut TlsStream<TlsTransport>) -> Option<rustls::AlertDescription> {
    let mut byte = [0u8; 1];
    match tokio::time::timeout(REFUSAL_READ, tls.read(&mut byte)).await {
        Ok(Err(e)) => peer_alert(&e),
        _ => None,
    }
}

/// The alert the peer sent, when `e` is rustls reporting one.
fn peer_alert(e: &std::io::Error) -> Option<rustls::AlertDescription> {
    match e.get_ref()?.downcast_ref::<rustls::Error>()? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}
