//! The workload's identity: its X.509-SVID, private key and trust bundle, checked together and held as one
//! immutable value. A new value replaces the old one whole; nothing ever mixes a new certificate with an old
//! key.

pub mod files;
pub mod store;

use std::{sync::Arc, time::SystemTime};

use policy::{Role, SpiffeId, TrustBundle, svid};
use rustls::{crypto::CryptoProvider, sign::CertifiedKey};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime, pem::PemObject};
use sha2::{Digest, Sha256};

use crate::config::IdentityPaths;
pub use files::{IdentityFiles, ReadError};
pub use store::{ActiveIdentity, IdentityStore};

/// A loaded, validated identity.
#[derive(Debug)]
pub struct Credentials {
    /// Our SPIFFE ID (the single URI SAN of our leaf).
    pub id: SpiffeId,
    /// Our chain and signing key, ready for rustls.
    pub certified: Arc<CertifiedKey>,
    /// The roots we trust for peers, for our own trust domain.
    pub bundle: Arc<TrustBundle>,
    /// Our leaf's serial number, lowercase hex.
    pub serial: String,
    /// Our leaf's validity, unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    /// sha256 over the three files, to tell a real change from a touch.
    pub content_hash: [u8; 32],
}

/// Why an identity was refused. The message names the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path}: no certificate in PEM")]
    NoCertificate { path: String },
    #[error("{path}: {reason}")]
    Pem { path: String, reason: String },
    #[error("{path}: no usable private key (PKCS#8, SEC1 or PKCS#1 PEM): {reason}")]
    Key { path: String, reason: String },
    #[error("{key}: private key does not match the certificate in {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("{path}: trust bundle: {reason}")]
    Bundle { path: String, reason: String },
    #[error("{path}: our own certificate is not a valid X.509-SVID under the bundle: {reason}")]
    Svid { path: String, reason: svid::SvidError },
}

impl Credentials {
    /// Reads and validates the identity at `paths` as of `now`.
    pub fn load(paths: &IdentityPaths, provider: &CryptoProvider, now: SystemTime) -> Result<Self, IdentityError> {
        let files = files::read(paths)?;
        Self::from_files(&files, paths, provider, now)
    }

    /// Validates identity bytes: the key matches the leaf, and the leaf is a valid SVID (for both roles)
    /// under the bundle of its own trust domain, now.
    pub fn from_files(
        files: &IdentityFiles,
        paths: &IdentityPaths,
        provider: &CryptoProvider,
        now: SystemTime,
    ) -> Result<Self, IdentityError> {
        let cert_path = paths.cert.display().to_string();
        let key_path = paths.key.display().to_string();
        let bundle_path = paths.bundle.display().to_string();

        let chain = CertificateDer::pem_slice_iter(&files.cert)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| IdentityError::Pem { path: cert_path.clone(), reason: svid::pem_reason(&e) })?;
        let leaf = chain.first().cloned().ok_or_else(|| IdentityError::NoCertificate { path: cert_path.clone() })?;
        let key = PrivateKeyDer::from_pem_slice(&files.key)
            .map_err(|e| IdentityError::Key { path: key_path.clone(), reason: svid::pem_reason(&e) })?;

        let id =
            svid::spiffe_id_of_leaf(&leaf).map_err(|reason| IdentityError::Svid { path: cert_path.clone(), reason })?;
        let bundle = TrustBundle::from_pem(id.trust_domain(), &files.bundle)
            .map_err(|e| IdentityError::Bundle { path: bundle_path, reason: e.to_string() })?;
        let unix_now = UnixTime::since_unix_epoch(now.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default());
        for role in [Role::Server, Role::Client] {
            bundle
                .verify(&leaf, &chain[1..], unix_now, role)
                .map_err(|reason| IdentityError::Svid { path: cert_path.clone(), reason })?;
        }
        let details =
            svid::leaf_details(&leaf).map_err(|reason| IdentityError::Svid { path: cert_path.clone(), reason })?;

        let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => {
                IdentityError::KeyMismatch { cert: cert_path.clone(), key: key_path.clone() }
            }
            other => IdentityError::Key { path: key_path.clone(), reason: other.to_string() },
        })?;

        Ok(Credentials {
            id,
            certified: Arc::new(certified),
            bundle: Arc::new(bundle),
            serial: details.serial_hex,
            not_before: details.not_before,
            not_after: details.not_after,
            content_hash: content_hash(files),
        })
    }

    /// Whether our certificate is within its validity period at `now`.
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        let secs = now.duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
        self.not_before <= secs && secs < self.not_after
    }
}

/// sha256 over the three files, length-prefixed so that moving bytes between files changes the hash.
pub fn content_hash(files: &IdentityFiles) -> [u8; 32] {
    let mut h = Sha256::new();
    for part in [&files.cert, &files.key, &files.bundle] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.finalize().into()
}
