//! X.509-SVID validation (SPEC §4): the chain verifies (rustls-webpki) to a root of the trust bundle of the
//! peer's trust domain, and the leaf obeys the SPIFFE rules that webpki does not check: exactly one URI SAN
//! that is a SPIFFE ID with a path, not a CA, key usage present with digitalSignature and without
//! keyCertSign/cRLSign, extended key usage (when present) including the role.
//!
//! Only the SPIFFE ID returned here may be used for policy, metrics and logs: never a DNS SAN or the subject.

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime};

use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

/// The role a certificate is used in, which decides the extended key usage it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A caller (TLS client): needs clientAuth when EKU is present.
    Client,
    /// A server: needs serverAuth when EKU is present.
    Server,
}

/// The roots trusted for one trust domain, parsed once at load time.
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

/// One SPIFFE leaf rule that a certificate breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidRule {
    #[error("no URI SAN (an X.509-SVID has exactly one, its SPIFFE ID)")]
    NoUriSan,
    #[error("{count} URI SANs (an X.509-SVID has exactly one)")]
    MultipleUriSans { count: usize },
    #[error("URI SAN {uri:?} is not a SPIFFE ID: {reason}")]
    InvalidId { uri: String, reason: SpiffeIdError },
    #[error("SPIFFE ID {id} has no path (a workload SVID needs one)")]
    NoPath { id: SpiffeId },
    #[error("basic constraints say CA=true (a leaf SVID must not be a CA)")]
    IsCa,
    #[error("no key usage extension (an X.509-SVID must have one)")]
    NoKeyUsage,
    #[error("key usage lacks digitalSignature")]
    NoDigitalSignature,
    #[error("key usage has keyCertSign (not allowed in a leaf SVID)")]
    KeyCertSign,
    #[error("key usage has cRLSign (not allowed in a leaf SVID)")]
    CrlSign,
    #[error("extended key usage lacks {}", match role { Role::Client => "clientAuth", Role::Server => "serverAuth" })]
    MissingEku { role: Role },
}

/// Why a certificate chain is not an acceptable X.509-SVID.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SvidError {
    #[error("certificate does not parse: {0}")]
    Malformed(String),
    #[error("not a valid X.509-SVID: {0}")]
    Rule(SvidRule),
    #[error("trust domain {found} has no trust bundle here (trusted: {trusted})")]
    ForeignTrustDomain { found: TrustDomain, trusted: TrustDomain },
    #[error("chain does not verify to a trusted root: {0}")]
    Untrusted(String),
    #[error("certificate expired at {not_after} (unix seconds; now {now})")]
    Expired { not_after: u64, now: u64 },
    #[error("certificate not valid before {not_before} (unix seconds; now {now})")]
    NotYetValid { not_before: u64, now: u64 },
}

/// A coarse classification of [`SvidError`], for metric labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SvidErrorKind {
    BadSvid,
    Untrusted,
    Expired,
    NotYetValid,
}

/// Why a trust bundle could not be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BundleError {
    #[error("no certificates in the trust bundle")]
    Empty,
    #[error("PEM: {0}")]
    Pem(String),
    #[error("root #{index} cannot be a trust anchor: {reason}")]
    BadRoot { index: usize, reason: String },
    #[error("root #{index} carries URI name constraints, which rustls-webpki rejects in every chain")]
    UriNameConstraints { index: usize },
}

impl SvidError {
    pub fn kind(&self) -> SvidErrorKind {
        match self {
            SvidError::Malformed(_) | SvidError::Rule(_) => SvidErrorKind::BadSvid,
            SvidError::ForeignTrustDomain { .. } | SvidError::Untrusted(_) => SvidErrorKind::Untrusted,
            SvidError::Expired { .. } => SvidErrorKind::Expired,
            SvidError::NotYetValid { .. } => SvidErrorKind::NotYetValid,
        }
    }
}

impl TrustBundle {
    /// Builds a bundle from DER roots (each becomes a trust anchor).
    pub fn new(trust_domain: TrustDomain, roots: Vec<CertificateDer<'static>>) -> Result<Self, BundleError> {
        let _ = (trust_domain, roots);
        todo!("policy helper")
    }

    /// Builds a bundle from concatenated PEM certificates (non-certificate PEM sections are ignored).
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, BundleError> {
        let _ = (trust_domain, pem);
        todo!("policy helper")
    }

    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// Verifies `leaf` (with `intermediates`) as an X.509-SVID for `role` at `now` and returns its SPIFFE ID.
    pub fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: Role,
    ) -> Result<SpiffeId, SvidError> {
        let _ = (leaf, intermediates, now, role);
        todo!("policy helper")
    }
}

/// The SPIFFE ID of an already verified leaf (exactly one URI SAN, valid, with a path). Cheap enough for the
/// per-connection path after a handshake whose verifier already ran [`TrustBundle::verify`].
pub fn spiffe_id_of_leaf(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    let _ = leaf;
    todo!("policy helper")
}

/// Every SPIFFE leaf rule `leaf` breaks (empty when compliant), for `certs-agent inspect`; `role` None checks
/// that EKU, when present, has both serverAuth and clientAuth.
pub fn leaf_rule_violations(leaf: &CertificateDer<'_>, role: Option<Role>) -> Result<Vec<SvidRule>, SvidError> {
    let _ = (leaf, role);
    todo!("policy helper")
}
