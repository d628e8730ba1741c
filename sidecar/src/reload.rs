//! Reloading identity and policy: read, validate, swap, count, remember the outcome for `/status`. Any
//! failure keeps what is in force. Triggers (start, SIGHUP, file events, the periodic re-read) all end here.

use std::{sync::Mutex, time::SystemTime};

use policy::{LoadError, OnRevoke};
use tracing::{info, warn};

use crate::{
    authz::PolicyReload,
    identity::{ActiveIdentity, Credentials, IdentityError, files},
    metrics::ReloadKind,
    state::Shared,
    tls::TlsConfigs,
};

/// The outcome of the last reload of one kind, for `/status`.
#[derive(Debug, Clone)]
pub struct ReloadOutcome {
    pub at: SystemTime,
    pub ok: bool,
    pub message: String,
}

/// The last outcome per kind.
#[derive(Debug, Default)]
pub struct ReloadLog {
    identity: Mutex<Option<ReloadOutcome>>,
    policy: Mutex<Option<ReloadOutcome>>,
}

impl ReloadLog {
    fn slot(&self, kind: ReloadKind) -> &Mutex<Option<ReloadOutcome>> {
        match kind {
            ReloadKind::Identity => &self.identity,
            ReloadKind::Policy => &self.policy,
        }
    }

    pub fn record(&self, kind: ReloadKind, ok: bool, message: String) {
        let outcome = ReloadOutcome { at: SystemTime::now(), ok, message };
        if let Ok(mut slot) = self.slot(kind).lock() {
            *slot = Some(outcome);
        }
    }

    pub fn last(&self, kind: ReloadKind) -> Option<ReloadOutcome> {
        self.slot(kind).lock().ok().and_then(|slot| slot.clone())
    }
}

/// What an identity reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityReload {
    /// A new identity is in force (its serial).
    Changed { serial: String },
    /// The files hold the identity already in force.
    Unchanged,
}

fn unix_now() -> f64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Shared {
    /// Re-reads the identity files; swaps in a new identity if they changed and are valid.
    pub fn reload_identity(&self) -> Result<IdentityReload, IdentityError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.try_reload_identity();
        match &result {
            Ok(IdentityReload::Unchanged) => {}
            Ok(IdentityReload::Changed { serial }) => {
                let message = format!("loaded certificate serial {serial}");
                self.metrics.record_reload(ReloadKind::Identity, true, unix_now());
                self.reloads.record(ReloadKind::Identity, true, message);
            }
            // Not yet issued (the sidecar may start before its identity): pending, not a failed reload.
            Err(IdentityError::Read(e)) if e.is_missing() && self.identity.current().is_none() => {
                self.reloads.record(ReloadKind::Identity, false, format!("waiting for identity files: {e}"));
            }
            Err(e) => {
                self.metrics.record_reload(ReloadKind::Identity, false, unix_now());
                self.reloads.record(ReloadKind::Identity, false, e.to_string());
            }
        }
        result
    }

    fn try_reload_identity(&self) -> Result<IdentityReload, IdentityError> {
        let paths = &self.config.identity;
        let raw = files::read(paths)?;
        let hash = crate::identity::content_hash(&raw);
        if let Some(active) = self.identity.current()
            && active.creds.content_hash == hash
        {
            return Ok(IdentityReload::Unchanged);
        }
        let creds = Credentials::from_files(&raw, paths, &self.provider, SystemTime::now())?;
        let tls = TlsConfigs::build(&creds, &self.provider, &self.server_ids)
            .map_err(|e| IdentityError::Key { path: paths.key.display().to_string(), reason: e.to_string() })?;
        let serial = creds.serial.clone();
        info!(id = %creds.id, serial = %serial, not_after = creds.not_after, trust_anchors = creds.bundle.roots().len(), "identity loaded");
        self.metrics.cert_expiry.set(creds.not_after as f64);
        self.metrics.trust_anchors.set(creds.bundle.roots().len() as i64);
        self.identity.swap(ActiveIdentity { creds, tls });
        self.readiness.identity_loaded();
        Ok(IdentityReload::Changed { serial })
    }

    /// Re-reads the policy file; swaps in the new policy if it is valid, then (with `on_revoke: close`)
    /// closes open connections whose caller it no longer allows. `force` re-reports a file that already
    /// failed (SIGHUP).
    pub fn reload_policy(&self, force: bool) -> Result<PolicyReload, LoadError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|p| p.into_inner());
        let result = self.policy.reload(force);
        match &result {
            Ok(PolicyReload::Changed { generation }) => {
                let loaded = self.policy.current();
                let sha = loaded.policy.sha256().to_string();
                info!(path = %self.policy.path().display(), generation, sha256 = %sha, rules = loaded.policy.rule_count(), "policy loaded");
                self.metrics.policy_generation.set(*generation as i64);
                self.metrics.record_reload(ReloadKind::Policy, true, unix_now());
                self.reloads.record(ReloadKind::Policy, true, format!("generation {generation}, sha256 {sha}"));
                self.warn_unknown_listeners(&loaded.policy);
                if loaded.policy.on_revoke() == OnRevoke::Close {
                    let revoked = self.callers.revoke_denied(&loaded.policy);
                    if !revoked.is_empty() {
                        info!(
                            generation,
                            connections = revoked.len(),
                            "closing connections whose caller the new policy denies"
                        );
                    }
                }
            }
            Ok(PolicyReload::Restored) => {
                let generation = self.policy.current().generation;
                info!(path = %self.policy.path().display(), generation, "policy file is valid again: it holds the policy in force");
                self.metrics.record_reload(ReloadKind::Policy, true, unix_now());
                self.reloads.record(
                    ReloadKind::Policy,
                    true,
                    format!("back to the policy in force (generation {generation})"),
                );
            }
            Ok(PolicyReload::Unchanged | PolicyReload::StillInvalid) => {}
            Err(e) => {
                warn!(error = %e, "policy reload failed; keeping the policy in force");
                self.metrics.record_reload(ReloadKind::Policy, false, unix_now());
                self.reloads.record(ReloadKind::Policy, false, e.to_string());
            }
        }
        result
    }

    /// A rule scoped to a listener this sidecar does not have never applies here; for a `deny` rule that
    /// fails open, so say so loudly (it is usually a typo).
    fn warn_unknown_listeners(&self, policy: &policy::Policy) {
        if self.config.inbound.is_empty() {
            return; // an outbound-only sidecar authorizes nobody: the policy does not apply to it
        }
        for name in policy.scoped_listeners() {
            if !self.config.inbound.iter().any(|l| l.name.as_str() == name) {
                warn!(listener = name, path = %self.policy.path().display(), "the policy scopes rules to a listener this sidecar does not have; those rules never apply here (typo?)");
            }
        }
    }

    /// Records the policy loaded at start as the first successful policy load.
    pub fn record_initial_policy(&self) {
        let loaded = self.policy.current();
        self.warn_unknown_listeners(&loaded.policy);
        self.metrics.policy_generation.set(loaded.generation as i64);
        self.metrics.record_reload(ReloadKind::Policy, true, unix_now());
        let message = format!("generation {}, sha256 {}", loaded.generation, loaded.policy.sha256());
        self.reloads.record(ReloadKind::Policy, true, message);
    }
}
