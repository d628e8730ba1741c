//! The identity in use, swapped atomically. Handshakes load it once at their start (a pointer read) and keep
//! that value to the end; a swap affects only handshakes that start after it.

use std::sync::Arc;

use arc_swap::ArcSwapOption;

use super::Credentials;
use crate::tls::TlsConfigs;

/// One identity and the TLS configurations built from it.
#[derive(Debug)]
pub struct ActiveIdentity {
    pub creds: Credentials,
    pub tls: TlsConfigs,
}

/// Holds the current identity, or none before the first successful load.
#[derive(Debug, Default)]
pub struct IdentityStore {
    current: ArcSwapOption<ActiveIdentity>,
}

impl IdentityStore {
    pub fn current(&self) -> Option<Arc<ActiveIdentity>> {
        self.current.load_full()
    }

    pub fn swap(&self, next: ActiveIdentity) {
        self.current.store(Some(Arc::new(next)));
    }
}
