//! The accept loop shared by inbound and outbound listeners: wait for identity, accept, enforce the
//! connection limit, spawn the connection task, back off on accept errors (e.g. out of file descriptors)
//! instead of spinning a core.

use std::{future::Future, sync::Arc, time::Duration};

use tokio::{sync::Semaphore, time::Instant};
use tracing::{info, warn};

use crate::log_limit::LogKind;

use crate::{
    addr::ClientAddr,
    metrics::ListenerMetrics,
    state::Shared,
    transport::{Listener, Stream},
};

const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Counts a connection as open from accept to drop, and observes its lifetime.
pub struct OpenConnection<'m> {
    metrics: &'m ListenerMetrics,
    since: Instant,
}

impl<'m> OpenConnection<'m> {
    pub fn new(metrics: &'m ListenerMetrics) -> Self {
        metrics.open.inc();
        Self { metrics, since: Instant::now() }
    }
}

impl Drop for OpenConnection<'_> {
    fn drop(&mut self) {
        self.metrics.open.dec();
        self.metrics.duration.observe(self.since.elapsed().as_secs_f64());
    }
}

/// Runs until shutdown. `serve` handles one accepted connection; it runs on the shared task tracker so that
/// shutdown can wait for it, and holds one of the listener's `limits.max_connections` slots while it lives.
/// Each listener has its own slots, so a flood on one (say, unauthenticated callers on an inbound port)
/// cannot starve another (the local app's outbound calls).
pub async fn run<F, Fut>(shared: Arc<Shared>, listener: Listener, metrics: Arc<ListenerMetrics>, serve: F)
where
    F: Fn(Stream, ClientAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    tokio::select! {
        _ = shared.readiness.wait_for_identity() => {}
        _ = shared.shutdown.cancelled() => return,
    }
    let limit = Arc::new(Semaphore::new(shared.config.limits.max_connections));
    let name: Arc<str> = metrics.listener().into();
    info!(listener = %metrics.listener(), direction = metrics.direction.as_str(), "accepting connections");
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, client)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                metrics.total.inc();
                let Ok(permit) = limit.clone().try_acquire_owned() else {
                    // Refuse now rather than leave the caller hanging in the backlog.
                    metrics.refused("limit");
                    if let Some(suppressed) = shared.log_limit.admit(&name, LogKind::Limit) {
                        warn!(direction = %metrics.direction.as_str(), listener = %metrics.listener(), peer.addr = %client, reason = %"limit", max_connections = shared.config.limits.max_connections, suppressed, "connection refused: listener at its connection limit");
                    }
                    drop(stream);
                    continue;
                };
                let task = serve(stream, client);
                shared.tasks.spawn(async move {
                    task.await;
                    drop(permit);
                });
            }
            Err(e) => {
                metrics.refused("accept_error");
                if let Some(suppressed) = shared.log_limit.admit(&name, LogKind::Accept) {
                    warn!(listener = %metrics.listener(), error = %e, backoff = ?backoff, suppressed, "accept failed; backing off");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff) => {}
                    _ = shared.shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
            }
        }
    }
    info!(listener = %metrics.listener(), "stopped accepting");
}
