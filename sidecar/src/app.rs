//! Wiring and lifecycle of `sidecar run`: load configuration and policy, bind every listener, start the
//! admin server and the identity loader, serve, and drain on shutdown (SPEC §8).

use std::{path::Path, process::ExitCode, sync::Arc, time::Duration};

use tokio::{
    signal::unix::{SignalKind, signal},
    task::JoinSet,
};
use tracing::{error, info, warn};

use crate::{
    accept,
    admin::AdminServer,
    authz::PolicyStore,
    config::Config,
    inbound::Inbound,
    log_limit,
    metrics::Metrics,
    outbound::Outbound,
    state::Shared,
    status::ListenerStatus,
    transport::{BindError, Listener},
    watch,
};

/// Exit status when connections were still open at the end of the drain period and had to be closed.
pub const EXIT_DRAIN_TIMEOUT: u8 = 3;

/// How long the admin server may take to finish responses in flight at exit.
const ADMIN_LINGER: Duration = Duration::from_secs(1);

/// Why the sidecar could not start. Each names the file or address and the reason.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("configuration: {0}")]
    Config(#[from] crate::config::ConfigError),
    #[error("policy: {0}")]
    Policy(#[from] policy::LoadError),
    #[error("listener {name}: {source}")]
    Bind { name: String, source: BindError },
    #[error("admin: {0}")]
    Admin(BindError),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("signals: {0}")]
    Signals(std::io::Error),
}

/// Runs the sidecar until it is told to stop; returns the process exit status.
pub async fn run(config_path: &Path, file_watch: watch::FileWatch) -> Result<ExitCode, StartError> {
    let config = Config::load(config_path)?;
    let policy = PolicyStore::load(config.policy.clone())?;
    let shared = Arc::new(Shared::new(config, Metrics::new()?, policy));
    let _ = shared.runtime.set(tokio::runtime::Handle::current());
    shared.record_initial_policy();

    let mut terminate = signal(SignalKind::terminate()).map_err(StartError::Signals)?;
    let mut interrupt = signal(SignalKind::interrupt()).map_err(StartError::Signals)?;
    let mut hangup = signal(SignalKind::hangup()).map_err(StartError::Signals)?;

    let mut accepting = start_listeners(&shared).await?;
    let admin = AdminServer::spawn(shared.config.admin.clone(), shared.clone()).await.map_err(StartError::Admin)?;
    shared.readiness.listeners_bound();
    info!(admin = %admin.addr.map(|a| a.to_string()).unwrap_or_else(|| shared.config.admin.to_string()), "sidecar started");
    tokio::spawn(watch::run(shared.clone(), file_watch));
    tokio::spawn(log_limit::summarize_suppressed(shared.log_limit.clone(), shared.shutdown.clone()));

    // Whether a signal started the drain: only a second signal closes connections at once. A SIGTERM that
    // follows `POST /shutdown` (a preStop hook, then the kubelet's signal) is the first signal, not a second.
    let mut signalled = false;
    let mut listener_died = false;
    loop {
        tokio::select! {
            biased;
            _ = shared.shutdown.cancelled() => break,
            // An accept loop only ends on shutdown; one that ends before (a panic) leaves a port that refuses
            // everything while /ready says 200. Stop, loudly, so the orchestrator restarts us.
            Some(ended) = accepting.join_next(), if !shared.shutdown.is_cancelled() => {
                error!(outcome = ?ended.map(|_| "returned"), "a listener stopped accepting unexpectedly; shutting down");
                listener_died = true;
                shared.shutdown.cancel();
            }
            _ = terminate.recv() => { info!("SIGTERM: draining"); signalled = true; shared.shutdown.cancel(); }
            _ = interrupt.recv() => { info!("SIGINT: draining"); signalled = true; shared.shutdown.cancel(); }
            _ = hangup.recv() => reload_now(&shared),
        }
    }
    let code = drain(&shared, signalled, &mut terminate, &mut interrupt, &mut hangup).await;
    admin.stop(ADMIN_LINGER).await;
    Ok(if listener_died { ExitCode::FAILURE } else { code })
}

/// SIGHUP: re-read identity and policy now, on the blocking pool (file reads, signature checks, parsing).
fn reload_now(shared: &Arc<Shared>) {
    info!("SIGHUP: reloading identity and policy");
    let shared = shared.clone();
    tokio::task::spawn_blocking(move || {
        if let Err(e) = shared.reload_identity() {
            warn!(error = %e, "identity reload failed; keeping the identity in force");
        }
        let _ = shared.reload_policy(true);
    });
}

/// Binds every listener (a port in use is a start error) and starts its accept loop, which waits for the
/// identity before accepting.
async fn start_listeners(shared: &Arc<Shared>) -> Result<JoinSet<()>, StartError> {
    let mut accepting = JoinSet::new();
    let mut statuses = Vec::new();
    for config in &shared.config.inbound {
        let listener = bind(config.name.as_str(), &config.listen).await?;
        let inbound = Arc::new(Inbound::new(config, shared.clone()));
        statuses.push(ListenerStatus {
            name: config.name.to_string(),
            listen: bound_addr(&listener, &config.listen),
            target: config.forward.to_string(),
            server_id: None,
            metrics: inbound.metrics.clone(),
        });
        let metrics = inbound.metrics.clone();
        let serve = move |stream, client| inbound.clone().serve(stream, client);
        accepting.spawn(accept::run(shared.clone(), listener, metrics, serve));
    }
    for (route, config) in shared.config.outbound.iter().enumerate() {
        let listener = bind(config.name.as_str(), &config.listen).await?;
        let outbound = Arc::new(Outbound::new(route, config, shared.clone()));
        statuses.push(ListenerStatus {
            name: config.name.to_string(),
            listen: bound_addr(&listener, &config.listen),
            target: config.connect.to_string(),
            server_id: Some(config.server_id.to_string()),
            metrics: outbound.metrics.clone(),
        });
        let metrics = outbound.metrics.clone();
        let serve = move |stream, client| outbound.clone().serve(stream, client);
        accepting.spawn(accept::run(shared.clone(), listener, metrics, serve));
    }
    for s in &statuses {
        info!(listener = %s.name, direction = s.metrics.direction.as_str(), listen = %s.listen, upstream = %s.target, "listener bound");
    }
    let _ = shared.listeners.set(statuses);
    Ok(accepting)
}

async fn bind(name: &str, addr: &crate::addr::ListenAddr) -> Result<Listener, StartError> {
    Listener::bind(addr).await.map_err(|source| StartError::Bind { name: name.to_string(), source })
}

fn bound_addr(listener: &Listener, configured: &crate::addr::ListenAddr) -> String {
    listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|| configured.to_string())
}

/// Stop accepting (the accept loops watch the same token), report not-ready, let open connections finish
/// for up to `timeouts.drain`, then close the rest. SIGHUP during the drain still reloads; a second
/// SIGTERM/SIGINT closes everything at once.
async fn drain(
    shared: &Arc<Shared>,
    mut signalled: bool,
    terminate: &mut tokio::signal::unix::Signal,
    interrupt: &mut tokio::signal::unix::Signal,
    hangup: &mut tokio::signal::unix::Signal,
) -> ExitCode {
    shared.readiness.start_draining();
    shared.tasks.close();
    let open = shared.tasks.len();
    info!(open_connections = open, drain = ?shared.config.timeouts.drain, "draining");
    let deadline = tokio::time::sleep(shared.config.timeouts.drain);
    tokio::pin!(deadline);
    let why = loop {
        // Biased: once every connection has finished, a signal arriving at the same moment changes nothing.
        tokio::select! {
            biased;
            _ = shared.tasks.wait() => break None,
            _ = &mut deadline => break Some("drain period over"),
            _ = terminate.recv() => match std::mem::replace(&mut signalled, true) {
                true => break Some("second SIGTERM"),
                false => info!("SIGTERM: already draining; a second one closes open connections at once"),
            },
            _ = interrupt.recv() => match std::mem::replace(&mut signalled, true) {
                true => break Some("second SIGINT"),
                false => info!("SIGINT: already draining; a second one closes open connections at once"),
            },
            _ = hangup.recv() => reload_now(shared),
        }
    };
    let left = shared.tasks.len();
    // Nothing left to close (the last connection ended as the deadline or a signal came): a clean drain.
    let Some(why) = why.filter(|_| left > 0) else {
        info!("drained; exiting");
        return ExitCode::SUCCESS;
    };
    shared.force_close.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(2), shared.tasks.wait()).await;
    error!(closed_connections = left, "{why}: closed connections that were still open");
    ExitCode::from(EXIT_DRAIN_TIMEOUT)
}
