//! The state every part of a running sidecar shares: configuration, metrics, the identity and policy in
//! force, readiness and the shutdown signals. Built once at start; the data path only reads it.

use std::sync::{Arc, OnceLock};

use policy::SpiffeId;
use rustls::crypto::CryptoProvider;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    authz::PolicyStore, config::Config, conns::InboundConnections, identity::IdentityStore, log_limit::LogLimiter,
    metrics::Metrics, readiness::Readiness, reload::ReloadLog, status::ListenerStatus, watch::WatchState,
};

pub struct Shared {
    pub config: Config,
    pub provider: Arc<CryptoProvider>,
    pub metrics: Metrics,
    pub identity: IdentityStore,
    pub policy: PolicyStore,
    pub readiness: Readiness,
    pub reloads: ReloadLog,
    /// The outbound routes' required server IDs, in configuration order.
    pub server_ids: Vec<SpiffeId>,
    /// Cancelled when shutdown starts: stop accepting.
    pub shutdown: CancellationToken,
    /// Cancelled when the drain period is over: close what is still open.
    pub force_close: CancellationToken,
    /// Every connection task, so shutdown can wait for them.
    pub tasks: TaskTracker,
    /// Serializes reloads (the watcher and SIGHUP may ask at the same time).
    pub reloading: std::sync::Mutex<()>,
    /// Rate limits for per-connection warning lines.
    pub log_limit: Arc<LogLimiter>,
    /// The data-plane runtime, for its task count on `/metrics` (the admin server runs elsewhere).
    pub runtime: OnceLock<tokio::runtime::Handle>,
    /// How file changes are noticed, for `/status`.
    pub watch: WatchState,
    /// Open inbound connections by caller, for revocation on policy reload.
    pub callers: Arc<InboundConnections>,
    /// The bound listeners, for `/status`; set once at start.
    pub listeners: OnceLock<Vec<ListenerStatus>>,
}

impl Shared {
    pub fn new(config: Config, metrics: Metrics, policy: PolicyStore) -> Self {
        let server_ids = config.outbound.iter().map(|o| o.server_id.clone()).collect();
        Self {
            config,
            provider: crate::tls::provider(),
            metrics,
            identity: IdentityStore::default(),
            policy,
            readiness: Readiness::default(),
            reloads: ReloadLog::default(),
            server_ids,
            shutdown: CancellationToken::new(),
            force_close: CancellationToken::new(),
            tasks: TaskTracker::new(),
            listeners: OnceLock::new(),
            callers: Arc::default(),
            watch: WatchState::default(),
            log_limit: Arc::default(),
            reloading: std::sync::Mutex::new(()),
            runtime: OnceLock::new(),
        }
    }
}

impl Shared {
    /// The `/metrics` exposition, with the values sampled at scrape time filled in.
    pub fn render_metrics(&self) -> Result<Vec<u8>, prometheus::Error> {
        if let Some(runtime) = self.runtime.get() {
            self.metrics.runtime_tasks.set(runtime.metrics().num_alive_tasks() as i64);
        }
        self.metrics.render()
    }
}
