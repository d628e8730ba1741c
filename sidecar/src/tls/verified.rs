//! A bounded memory of peer certificate chains a verifier has already verified, so that the chain's
//! signatures and the SVID rules are checked once per certificate rather than once per handshake.
//!
//! A workload presents the same SVID on every connection until it rotates, so nearly every handshake
//! re-verifies bytes verified a moment ago: one ECDSA verification and two certificate parses per handshake,
//! about a fifth of the server's handshake CPU. What is remembered and why it stays correct:
//! - the key is the exact DER of the leaf and, compared byte for byte, the intermediates: no hash, no
//!   "same serial": a different certificate is a different entry;
//! - an entry answers only inside the chain's validity window (`[max notBefore, min notAfter]` of leaf and
//!   intermediates), the same bounds webpki checks; outside it the full verification runs and reports the
//!   real reason (expired, not yet valid);
//! - only successes are stored; a verifier's memory dies with it, and verifiers are rebuilt with every
//!   identity or trust bundle change, so a removed root is never vouched for by a stale entry;
//! - what is not skipped: the proof of possession (the peer's CertificateVerify signature over this
//!   handshake) is checked on every handshake by rustls, and authorization runs on every connection.
//!
//! Bounded: at most [`CAPACITY`] chains; when full, expired entries go first, then everything (a workload
//! talks to far fewer distinct peers than that, so this only happens under churn or abuse).

use std::{collections::HashMap, sync::RwLock};

use rustls::pki_types::{CertificateDer, UnixTime};

/// The most chains one verifier remembers.
pub const CAPACITY: usize = 1024;

#[derive(Debug)]
struct Entry {
    intermediates: Box<[Box<[u8]>]>,
    not_before: u64,
    not_after: u64,
}

/// Chains verified by one verifier. Lookups take a shared lock and allocate nothing.
#[derive(Debug, Default)]
pub struct VerifiedChains {
    by_leaf: RwLock<HashMap<Box<[u8]>, Entry>>,
}

impl VerifiedChains {
    /// Whether exactly this chain was verified before and `now` is inside its validity window.
    pub fn contains(&self, leaf: &CertificateDer<'_>, intermediates: &[CertificateDer<'_>], now: UnixTime) -> bool {
        let Ok(map) = self.by_leaf.read() else { return false };
        let Some(entry) = map.get(leaf.as_ref()) else { return false };
        let now = now.as_secs();
        entry.not_before <= now
            && now <= entry.not_after
            && entry.intermediates.len() == intermediates.len()
            && entry.intermediates.iter().zip(intermediates).all(|(a, b)| **a == *b.as_ref())
    }

    /// Remembers a chain that has just verified; `validity` is [`policy::svid::chain_validity`] of it.
    pub fn insert(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        validity: (i64, i64),
        now: UnixTime,
    ) {
        let (Ok(not_before), Ok(not_after)) = (u64::try_from(validity.0), u64::try_from(validity.1)) else {
            return;
        };
        let Ok(mut map) = self.by_leaf.write() else { return };
        if map.len() >= CAPACITY && !map.contains_key(leaf.as_ref()) {
            let now = now.as_secs();
            map.retain(|_, entry| entry.not_after >= now);
            if map.len() >= CAPACITY {
                map.clear();
            }
        }
        let intermediates = intermediates.iter().map(|c| Box::<[u8]>::from(c.as_ref())).collect();
        map.insert(Box::from(leaf.as_ref()), Entry { intermediates, not_before, not_after });
    }

    /// How many chains are remembered.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.by_leaf.read().map(|map| map.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn der(bytes: &[u8]) -> CertificateDer<'static> {
        CertificateDer::from(bytes.to_vec())
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))
    }

    #[test]
    fn answers_only_for_the_same_bytes_inside_the_window() {
        let chains = VerifiedChains::default();
        let (leaf, inter) = (der(b"leaf"), der(b"intermediate"));
        chains.insert(&leaf, std::slice::from_ref(&inter), (100, 200), at(150));
        assert!(chains.contains(&leaf, std::slice::from_ref(&inter), at(100)));
        assert!(chains.contains(&leaf, std::slice::from_ref(&inter), at(200)));
        assert!(!chains.contains(&leaf, std::slice::from_ref(&inter), at(99)), "not yet valid");
        assert!(!chains.contains(&leaf, std::slice::from_ref(&inter), at(201)), "expired");
        assert!(!chains.contains(&leaf, &[], at(150)), "intermediates differ in number");
        assert!(!chains.contains(&leaf, &[der(b"intermediatf")], at(150)), "intermediates differ in bytes");
        assert!(!chains.contains(&der(b"leag"), std::slice::from_ref(&inter), at(150)), "another leaf");
    }

    #[test]
    fn stays_bounded_dropping_expired_entries_first() {
        let chains = VerifiedChains::default();
        for i in 0..CAPACITY {
            let not_after = if i % 2 == 0 { 10 } else { 1000 };
            chains.insert(&der(format!("leaf {i}").as_bytes()), &[], (0, not_after), at(5));
        }
        assert_eq!(chains.len(), CAPACITY);
        chains.insert(&der(b"one more"), &[], (0, 1000), at(500));
        assert_eq!(chains.len(), CAPACITY / 2 + 1, "the expired half went, the live half stayed");
        assert!(chains.contains(&der(b"leaf 1"), &[], at(500)));
        for i in 0..CAPACITY {
            chains.insert(&der(format!("new {i}").as_bytes()), &[], (0, 1000), at(500));
        }
        assert!(chains.len() <= CAPACITY);
    }
}
