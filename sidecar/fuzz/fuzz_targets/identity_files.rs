//! The identity loader, `Credentials::from_files`, on arbitrary bytes: the input is split at its first two NUL
//! bytes (PEM never contains one) into the certificate chain, the private key (PKCS#8, SEC1 or PKCS#1 PEM)
//! and the trust bundle. Never panics; an accepted identity is consistent with its own leaf and valid now.
#![no_main]

use std::{
    path::PathBuf,
    sync::{Arc, LazyLock},
    time::{Duration, SystemTime},
};

use libfuzzer_sys::fuzz_target;
use rustls::crypto::CryptoProvider;
use sidecar::{
    config::IdentityPaths,
    identity::{Credentials, IdentityFiles},
};

static PROVIDER: LazyLock<Arc<CryptoProvider>> = LazyLock::new(sidecar::tls::provider);

/// Inside the seed identities' validity (see FUZZING.md), so a valid seed loads.
const NOW: u64 = 1_800_000_000;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |b| *b == 0);
    let files = IdentityFiles {
        cert: parts.next().unwrap_or_default().to_vec(),
        key: parts.next().unwrap_or_default().to_vec(),
        bundle: parts.next().unwrap_or_default().to_vec(),
    };
    let paths = IdentityPaths {
        dir: None,
        cert: PathBuf::from("svid.pem"),
        key: PathBuf::from("svid_key.pem"),
        bundle: PathBuf::from("svid_bundle.pem"),
    };
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    match Credentials::from_files(&files, &paths, &PROVIDER, now) {
        Ok(creds) => {
            let leaf = creds.certified.end_entity_cert().expect("a loaded identity has a leaf");
            assert_eq!(policy::svid::spiffe_id_of_leaf(leaf).ok().as_ref(), Some(&creds.id));
            assert!(creds.is_valid_at(now));
            assert_eq!(creds.content_hash, sidecar::identity::content_hash(&files));
            assert_eq!(creds.bundle.trust_domain().as_str(), creds.id.trust_domain_str());
        }
        Err(e) => {
            // Every refusal names a file and never prints key material.
            let message = e.to_string();
            assert!(!message.contains("PRIVATE KEY-----\n"), "{message}");
        }
    }
});
