//! Readiness: a latch released by identity. Listeners are bound at start but accept nothing until the first
//! valid identity is loaded, so no unauthenticated traffic ever passes (SPEC §6). `/ready` names what is
//! still pending.

use std::{
    sync::atomic::{AtomicBool, Ordering},
    time::SystemTime,
};

use tokio::sync::watch;

use crate::identity::IdentityStore;

/// What `/ready` waits for.
#[derive(Debug)]
pub struct Readiness {
    identity_loaded: watch::Sender<bool>,
    listeners_bound: AtomicBool,
    draining: AtomicBool,
}

impl Default for Readiness {
    fn default() -> Self {
        Self {
            identity_loaded: watch::Sender::new(false),
            listeners_bound: AtomicBool::new(false),
            draining: AtomicBool::new(false),
        }
    }
}

impl Readiness {
    /// Called after every successful identity load.
    pub fn identity_loaded(&self) {
        self.identity_loaded.send_if_modified(|loaded| !std::mem::replace(loaded, true));
    }

    pub fn listeners_bound(&self) {
        self.listeners_bound.store(true, Ordering::Release);
    }

    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::Release);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    /// Resolves once an identity has been loaded (immediately if one already was).
    pub async fn wait_for_identity(&self) {
        let mut rx = self.identity_loaded.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we are borrowed.
        let _ = rx.wait_for(|loaded| *loaded).await;
    }

    /// What is still pending, empty when ready. Identity counts only while its certificate is valid now.
    pub fn pending(&self, identity: &IdentityStore, now: SystemTime) -> Vec<&'static str> {
        let mut pending = Vec::new();
        match identity.current() {
            None => pending.push("identity"),
            Some(active) if !active.creds.is_valid_at(now) => pending.push("identity (certificate expired)"),
            Some(_) => {}
        }
        if !self.listeners_bound.load(Ordering::Acquire) {
            pending.push("listeners");
        }
        if self.is_draining() {
            pending.push("draining");
        }
        pending
    }
}
