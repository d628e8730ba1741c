//! Inbound: mutual TLS from a peer sidecar, authorization of its SPIFFE ID, plaintext to the local app.
//!
//! Order matters: the app is dialed only after the handshake verified the caller and the policy allowed it,
//! so a refused caller never reaches the app, and never gets a byte from it.

use std::sync::Arc;

use policy::{SpiffeId, Verdict, svid};
use tokio::io::AsyncWriteExt;
use tokio_rustls::{TlsAcceptor, server::TlsStream};
use tracing::{debug, info, warn};

use crate::{
    accept::OpenConnection,
    addr::{ClientAddr, ConnectAddr},
    config::{InboundConfig, ListenerName},
    duplex::{self, DuplexError, Ended, Flow, Side},
    log_limit::LogKind,
    metrics::ListenerMetrics,
    read_ahead::ReadAhead,
    state::Shared,
    tls::timed_handshake,
    transport::{self, Stream, TlsTransport},
};

/// One inbound listener.
pub struct Inbound {
    name: ListenerName,
    forward: ConnectAddr,
    pub metrics: Arc<ListenerMetrics>,
    shared: Arc<Shared>,
}

impl Inbound {
    pub fn new(config: &InboundConfig, shared: Arc<Shared>) -> Self {
        let metrics = Arc::new(shared.metrics.listener(crate::metrics::Direction::Inbound, config.name.as_str()));
        Self { name: config.name.clone(), forward: config.forward.clone(), metrics, shared }
    }

    /// Serves one accepted connection to its end.
    pub async fn serve(self: Arc<Self>, stream: Stream, client: ClientAddr) {
        let _open = OpenConnection::new(&self.metrics);
        // Boxed: the handshake's state (rustls' and the timeout's) is large and needed only until it completes;
        // inline, it would size the task of every open connection for its whole life.
        let Some(tls) = Box::pin(self.handshake(stream, client)).await else { return };
        let Some(peer) = self.caller(&tls, client) else {
            close_quietly(tls).await;
            return;
        };
        // Registered before the decision, so a policy swap racing with it cannot miss this connection.
        let registration = self.shared.callers.register(&self.name, &peer);
        if !self.authorize(&peer, client) {
            close_quietly(tls).await;
            return;
        }
        let timeouts = self.shared.config.timeouts;
        // A revocation that lands while the app is dialed wins: the app never sees the caller.
        let dialed = tokio::select! {
            biased;
            _ = registration.revoked() => None,
            dialed = transport::connect(&self.forward, timeouts.connect) => Some(dialed),
        };
        let mut app = match dialed {
            Some(Ok(app)) => app,
            Some(Err(e)) => {
                self.metrics.connect_error(e.reason());
                if let Some(suppressed) = self.shared.log_limit.admit(&self.name.0, LogKind::Connect) {
                    warn!(direction = %"inbound", listener = %self.name, peer.addr = %client, peer.id = %peer, forward = %self.forward, reason = %e.reason(), error = %e, suppressed, "cannot reach the local app");
                }
                close_quietly(tls).await;
                return;
            }
            None => {
                self.revoked(&peer, client);
                transport::abort(tls.get_ref().0.get_ref());
                return;
            }
        };
        let mut tls = tls;
        let m = &self.metrics;
        let ended = tokio::select! {
            biased;
            _ = registration.revoked() => Ended::Revoked,
            _ = self.shared.force_close.cancelled() => Ended::DrainOver,
            r = duplex::proxy(&mut tls, &mut app, &m.from_peer, &m.to_peer, timeouts.half_close_idle) => Ended::Copied(r),
        };
        if !matches!(ended, Ended::Copied(Ok(_))) {
            // Cut off rather than finished: reset both ends, so neither takes a truncated stream for a
            // complete one.
            transport::abort(tls.get_ref().0.get_ref());
            transport::abort(&app);
        }
        match ended {
            Ended::Copied(Ok(t)) => {
                debug!(listener = %self.name, peer.id = %peer, from_peer = t.a_to_b, to_peer = t.b_to_a, "connection closed")
            }
            // The app accepted, then reset before answering: as good as unreachable, and counted so.
            Ended::Copied(Err(e)) if app_reset_before_answering(&e) => {
                m.connect_error("reset");
                if let Some(suppressed) = self.shared.log_limit.admit(&self.name.0, LogKind::Connect) {
                    warn!(direction = %"inbound", listener = %self.name, peer.addr = %client, peer.id = %peer, forward = %self.forward, reason = %"reset", suppressed, "the local app reset the connection before answering");
                }
            }
            Ended::Copied(Err(e)) => debug!(listener = %self.name, peer.id = %peer, error = %e, "connection ended"),
            Ended::Revoked => self.revoked(&peer, client),
            Ended::DrainOver => debug!(listener = %self.name, peer.id = %peer, "closed at the end of the drain period"),
        }
    }

    fn revoked(&self, peer: &SpiffeId, client: ClientAddr) {
        self.metrics.revoked.inc();
        let generation = self.shared.policy.current().generation;
        warn!(direction = %"inbound", listener = %self.name, peer.addr = %client, peer.id = %peer, reason = %"revoked", generation, "connection closed: the policy no longer allows this caller");
    }

    async fn handshake(&self, stream: Stream, client: ClientAddr) -> Option<TlsStream<TlsTransport>> {
        let config = self.shared.identity.current()?.tls.server.clone();
        let accept = TlsAcceptor::from(config).accept(ReadAhead::new(stream)).into_fallible();
        let (failure, socket) =
            match timed_handshake(accept, self.shared.config.timeouts.handshake, &self.metrics.handshakes).await {
                Ok(tls) => return Some(tls),
                Err(failed) => failed,
            };
        if let Some(suppressed) = self.shared.log_limit.admit(&self.name.0, LogKind::Handshake(failure.reason)) {
            let (id, claimed) = failure.log_ids();
            warn!(direction = %"inbound", listener = %self.name, peer.addr = %client, peer.id = %id, peer.claimed_id = %claimed, reason = %failure.reason, detail = %failure.detail, suppressed, "connection refused: handshake failed");
        }
        // rustls has sent its alert; close so that the caller reads it (a close with its unread request still
        // queued would be a reset, which can overtake the alert). Within this task, so the listener's
        // connection limit bounds lingering sockets too.
        if let Some(socket) = socket {
            transport::linger_close(socket.into_inner()).await;
        }
        None
    }

    /// The caller's SPIFFE ID, from the leaf the verifier already accepted.
    fn caller(&self, tls: &TlsStream<TlsTransport>, client: ClientAddr) -> Option<SpiffeId> {
        let leaf = tls.get_ref().1.peer_certificates().and_then(|chain| chain.first());
        match leaf.map(svid::spiffe_id_of_leaf) {
            Some(Ok(id)) => Some(id),
            // The verifier already required exactly this; reaching here means a bug, so fail closed.
            other => {
                let detail = match other {
                    Some(Err(e)) => e.to_string(),
                    _ => "no peer certificate".into(),
                };
                warn!(direction = %"inbound", listener = %self.name, peer.addr = %client, reason = %"bad_svid", detail = %detail, "connection refused: no SPIFFE ID");
                None
            }
        }
    }

    /// Whether the policy in force lets `peer` in (audit mode lets a denied caller through, logged).
    fn authorize(&self, peer: &SpiffeId, client: ClientAddr) -> bool {
        let policy = self.shared.policy.current();
        let decision = policy.policy.decide(self.name.as_str(), peer);
        self.metrics.authz_decision(decision.verdict.as_str(), decision.rule);
        match decision.verdict {
            Verdict::Allow => true,
            Verdict::AuditDeny => {
                if let Some(suppressed) = self.shared.log_limit.admit(&self.name.0, LogKind::Audit) {
                    info!(direction = %"inbound", listener = %self.name, peer.addr = %client, peer.id = %peer, rule = decision.rule, generation = policy.generation, suppressed, "audit: policy would deny this caller; allowed in audit mode");
                }
                true
            }
            Verdict::Deny => {
                if let Some(suppressed) = self.shared.log_limit.admit(&self.name.0, LogKind::Denied) {
                    warn!(direction = %"inbound", listener = %self.name, peer.addr = %client, peer.id = %peer, reason = %"denied", rule = decision.rule, generation = policy.generation, suppressed, "connection refused: caller not allowed by policy");
                }
                false
            }
        }
    }
}

/// Whether the app reset the connection before sending a byte: seen reading from it, or writing the caller's
/// request to it (whichever the proxy happened to try first after the reset arrived).
fn app_reset_before_answering(e: &DuplexError) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
    match e {
        DuplexError::Io { flow, side, source, moved } => {
            let on_the_app = matches!((flow, side), (Flow::BToA, Side::Read) | (Flow::AToB, Side::Write));
            on_the_app && moved.b_to_a == 0 && matches!(source.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
        }
        DuplexError::HalfCloseIdle(_) => false,
    }
}

/// Ends a TLS connection we refuse: close_notify, then close, without waiting on a peer that stalls.
async fn close_quietly(mut tls: TlsStream<TlsTransport>) {
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), tls.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use std::io::{Error, ErrorKind};

    use super::*;
    use crate::duplex::Transferred;

    fn io(flow: Flow, side: Side, kind: ErrorKind, answered: u64) -> DuplexError {
        DuplexError::Io { flow, side, source: Error::from(kind), moved: Transferred { a_to_b: 5, b_to_a: answered } }
    }

    #[test]
    fn an_app_reset_before_answering_is_recognized_on_either_side_of_the_app_socket() {
        assert!(app_reset_before_answering(&io(Flow::BToA, Side::Read, ErrorKind::ConnectionReset, 0)));
        // The reset arrived before the proxy wrote the request: the write fails first.
        assert!(app_reset_before_answering(&io(Flow::AToB, Side::Write, ErrorKind::ConnectionReset, 0)));
        assert!(app_reset_before_answering(&io(Flow::AToB, Side::Write, ErrorKind::BrokenPipe, 0)));
        // Not before answering, or not the app.
        assert!(!app_reset_before_answering(&io(Flow::BToA, Side::Read, ErrorKind::ConnectionReset, 10)));
        assert!(!app_reset_before_answering(&io(Flow::AToB, Side::Read, ErrorKind::ConnectionReset, 0)));
        assert!(!app_reset_before_answering(&io(Flow::BToA, Side::Write, ErrorKind::ConnectionReset, 0)));
        assert!(!app_reset_before_answering(&DuplexError::HalfCloseIdle(std::time::Duration::from_secs(1))));
    }
}
