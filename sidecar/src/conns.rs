//! Open inbound connections, by caller, so that a policy reload can close the ones whose caller it no longer
//! allows (`on_revoke: close`).
//!
//! A connection registers *before* its authorization decision. The reloader swaps the policy first and scans
//! second, so every connection is either seen by the scan or decides under the new policy: none slips
//! between the two.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
};

use policy::{Policy, SpiffeId, Verdict};
use tokio_util::sync::CancellationToken;

use crate::config::ListenerName;

struct Entry {
    listener: ListenerName,
    peer: SpiffeId,
    revoke: CancellationToken,
}

/// Every open inbound connection that has a verified caller.
#[derive(Default)]
pub struct InboundConnections {
    next_id: AtomicU64,
    open: Mutex<HashMap<u64, Entry>>,
}

/// One connection's registration; unregisters on drop.
pub struct Registration {
    id: u64,
    registry: Arc<InboundConnections>,
    revoke: CancellationToken,
}

/// A connection closed by a revocation scan.
#[derive(Debug, Clone)]
pub struct Revoked {
    pub listener: ListenerName,
    pub peer: SpiffeId,
}

impl InboundConnections {
    /// Registers a connection from `peer` on `listener`.
    pub fn register(self: &Arc<Self>, listener: &ListenerName, peer: &SpiffeId) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let revoke = CancellationToken::new();
        let entry = Entry { listener: listener.clone(), peer: peer.clone(), revoke: revoke.clone() };
        self.lock().insert(id, entry);
        Registration { id, registry: self.clone(), revoke }
    }

    /// Signals every open connection that `policy` now denies (audit-mode denials stay open) and returns
    /// them. The connections close themselves and count the revocation.
    pub fn revoke_denied(&self, policy: &Policy) -> Vec<Revoked> {
        // Decide outside the lock: with thousands of open connections, new ones must not wait on the scan. A
        // connection registered after this snapshot decides under `policy` itself (it was swapped in first).
        let open: Vec<(ListenerName, SpiffeId, CancellationToken)> =
            self.lock().values().map(|e| (e.listener.clone(), e.peer.clone(), e.revoke.clone())).collect();
        open.into_iter()
            .filter(|(listener, peer, revoke)| {
                !revoke.is_cancelled() && policy.decide(listener.as_str(), peer).verdict == Verdict::Deny
            })
            .map(|(listener, peer, revoke)| {
                revoke.cancel();
                Revoked { listener, peer }
            })
            .collect()
    }

    /// How many connections are registered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent (single insert/remove), so a
        // poisoned lock is still usable.
        self.open.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl Registration {
    /// Resolves when a policy reload revoked this connection.
    pub async fn revoked(&self) {
        self.revoke.cancelled().await
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}
