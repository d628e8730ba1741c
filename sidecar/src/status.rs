//! `GET /status` (SPEC §6): what an operator asks first when something is off. Which identity is served,
//! until when, which roots are trusted, which policy is in force, how the last reloads went, and what each
//! listener is doing.

use std::{
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{metrics::ListenerMetrics, reload::ReloadOutcome, state::Shared, watch::WatchMode};

/// A listener as `/status` shows it, registered once its socket is bound.
pub struct ListenerStatus {
    pub name: String,
    /// The bound address (with the real port when the configuration said 0).
    pub listen: String,
    /// `forward` (inbound) or `connect` (outbound).
    pub target: String,
    /// Outbound only: the identity the peer must prove.
    pub server_id: Option<String>,
    pub metrics: Arc<ListenerMetrics>,
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn outcome(o: Option<ReloadOutcome>) -> Value {
    match o {
        Some(o) => json!({ "at": unix(o.at), "ok": o.ok, "message": o.message }),
        None => Value::Null,
    }
}

/// The JSON document served at `/status`.
pub fn snapshot(shared: &Shared) -> Value {
    let now = SystemTime::now();
    let identity = match shared.identity.current() {
        Some(active) => {
            let c = &active.creds;
            let anchors: Vec<String> =
                c.bundle.roots().iter().map(|r| hex::encode(Sha256::digest(r.as_ref()))).collect();
            json!({
                "spiffe_id": c.id.as_str(),
                "serial": c.serial,
                "not_before": c.not_before,
                "not_after": c.not_after,
                "expires_in_seconds": c.not_after - unix(now) as i64,
                "trust_domain": c.bundle.trust_domain().as_str(),
                "trust_anchors_sha256": anchors,
            })
        }
        None => Value::Null,
    };
    let loaded = shared.policy.current();
    let policy = json!({
        "path": shared.policy.path().display().to_string(),
        "generation": loaded.generation,
        "sha256": loaded.policy.sha256(),
        "mode": format!("{:?}", loaded.policy.mode()).to_lowercase(),
        "on_revoke": format!("{:?}", loaded.policy.on_revoke()).to_lowercase(),
        "rules": loaded.policy.rule_names().count(),
        "loaded_at": unix(loaded.loaded_at),
    });
    let listeners: Vec<Value> = shared
        .listeners
        .get()
        .map(|ls| {
            ls.iter()
                .map(|l| {
                    json!({
                        "name": l.name,
                        "direction": l.metrics.direction.as_str(),
                        "listen": l.listen,
                        "target": l.target,
                        "server_id": l.server_id,
                        "open_connections": l.metrics.open.get(),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let pending = shared.readiness.pending(&shared.identity, now);
    let watch = match shared.watch.get() {
        WatchMode::Starting => json!({ "mode": "starting" }),
        WatchMode::Events => json!({ "mode": "inotify" }),
        WatchMode::Polling { reason } => json!({ "mode": "polling", "reason": reason }),
    };
    json!({
        "ready": pending.is_empty(),
        "pending": pending,
        "identity": identity,
        "policy": policy,
        "reloads": {
            "identity": outcome(shared.reloads.last(crate::metrics::ReloadKind::Identity)),
            "policy": outcome(shared.reloads.last(crate::metrics::ReloadKind::Policy)),
        },
        "listeners": listeners,
        "watcher": watch,
        "open_inbound_callers": shared.callers.len(),
    })
}
