//! X.509-SVID validation (SPEC §4): the chain verifies (rustls-webpki) to a root of the trust bundle of the
//! peer's trust domain, and the leaf obeys the SPIFFE rules that webpki does not check: exactly one URI SAN
//! that is a SPIFFE ID with a path, not a CA, key usage present with digitalSignature and without
//! keyCertSign/cRLSign, extended key usage (when present) including the role.
//!
//! Only the SPIFFE ID returned here may be used for policy, metrics and logs: never a DNS SAN or the subject.

mod details;
mod leaf;

use rustls_pki_types::{CertificateDer, TrustAnchor, UnixTime, pem::PemObject};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::extensions::GeneralName;

pub use self::details::{ExtendedKeyUsageDetails, KeyUsageDetails, LeafDetails, chain_validity, leaf_details};
use self::leaf::Leaf;
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
    ///
    /// Refuses an empty bundle (it would reject every peer, which is never what a file meant) and a root with
    /// URI name constraints (rustls-webpki rejects every chain under it, so failing here names the cause).
    pub fn new(trust_domain: TrustDomain, roots: Vec<CertificateDer<'static>>) -> Result<Self, BundleError> {
        if roots.is_empty() {
            return Err(BundleError::Empty);
        }
        let mut anchors = Vec::with_capacity(roots.len());
        for (index, root) in roots.iter().enumerate() {
            let bad_root = |reason: String| BundleError::BadRoot { index, reason };
            if has_uri_name_constraints(root).map_err(bad_root)? {
                return Err(BundleError::UriNameConstraints { index });
            }
            let anchor = webpki::anchor_from_trusted_cert(root).map_err(|e| bad_root(format!("{e:?}")))?;
            anchors.push(anchor.to_owned());
        }
        Ok(TrustBundle { trust_domain, roots, anchors })
    }

    /// Builds a bundle from concatenated PEM certificates (non-certificate PEM sections are ignored).
    pub fn from_pem(trust_domain: TrustDomain, pem: &[u8]) -> Result<Self, BundleError> {
        let roots = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| BundleError::Pem(pem_reason(&e)))?;
        Self::new(trust_domain, roots)
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
    ///
    /// Order: the chain first (rustls-webpki, against this bundle's roots only), then the SPIFFE ID and the
    /// leaf rules webpki does not check. Trust comes first so that every reason after it describes a
    /// certificate this bundle vouches for: a forged certificate is `Untrusted` whatever it claims, and its
    /// author cannot pick the label an operator sees (`expired`, `bad_svid`, ...).
    pub fn verify(
        &self,
        leaf: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: Role,
    ) -> Result<SpiffeId, SvidError> {
        let parsed = Leaf::parse(leaf.as_ref())?;
        let end_entity = EndEntityCert::try_from(leaf).map_err(|e| SvidError::Malformed(webpki_reason(&e)))?;
        self.verify_chain(&end_entity, intermediates, now, role)?;
        let id = parsed.spiffe_id()?;
        if id.trust_domain_str() != self.trust_domain.as_str() {
            return Err(SvidError::ForeignTrustDomain { found: id.trust_domain(), trusted: self.trust_domain.clone() });
        }
        if let Some(rule) = parsed.rule_violations(false)?.into_iter().next() {
            return Err(SvidError::Rule(rule));
        }
        Ok(id)
    }

    /// Chain verification. webpki checks a leaf's dates and extended key usage before its signature, so an
    /// error of that kind is only reported as such when the chain verifies without it (at a time inside the
    /// leaf's validity, or for the other role); otherwise the certificate is simply untrusted.
    #[allow(deprecated)] // `RequiredEkuNotFound` is deprecated but still a variant webpki may return.
    fn verify_chain(
        &self,
        end_entity: &EndEntityCert<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        role: Role,
    ) -> Result<(), SvidError> {
        let check = |at: UnixTime, role: Role| {
            end_entity
                .verify_for_usage(
                    webpki::ALL_VERIFICATION_ALGS,
                    &self.anchors,
                    intermediates,
                    at,
                    usage(role),
                    None,
                    None,
                )
                .map(|_| ())
        };
        let err = match check(now, role) {
            Ok(()) => return Ok(()),
            Err(err) => err,
        };
        let vouched = match &err {
            webpki::Error::CertExpired { not_after, .. } => check(*not_after, role).is_ok(),
            webpki::Error::CertNotValidYet { not_before, .. } => check(*not_before, role).is_ok(),
            webpki::Error::RequiredEkuNotFound
            | webpki::Error::RequiredEkuNotFoundContext(_)
            | webpki::Error::EmptyEkuExtension => check(now, role.other()).is_ok(),
            // webpki refuses to build a path from a CA certificate used as a leaf at all.
            webpki::Error::CaUsedAsEndEntity => true,
            _ => false,
        };
        Err(if vouched { chain_error(err, role) } else { SvidError::Untrusted(webpki_reason(&err)) })
    }
}

fn usage(role: Role) -> KeyUsage {
    match role {
        Role::Client => KeyUsage::client_auth(),
        Role::Server => KeyUsage::server_auth(),
    }
}

impl Role {
    /// The other role: a caller's certificate checked as a server's, and the reverse.
    pub fn other(self) -> Role {
        match self {
            Role::Client => Role::Server,
            Role::Server => Role::Client,
        }
    }
}

/// Whether `root` carries a URI-type name constraint (permitted or excluded).
fn has_uri_name_constraints(root: &CertificateDer<'_>) -> Result<bool, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(root.as_ref()).map_err(|e| e.to_string())?;
    let Some(constraints) = cert.name_constraints().map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    let subtrees = [&constraints.value.permitted_subtrees, &constraints.value.excluded_subtrees];
    Ok(subtrees.into_iter().flatten().flatten().any(|subtree| matches!(subtree.base, GeneralName::URI(_))))
}

/// Maps a webpki chain verification error of a certificate the bundle vouches for to ours: validity and the
/// leaf rules webpki happens to check get their specific variants (they have their own metric reasons).
#[allow(deprecated)] // `RequiredEkuNotFound` is deprecated but still a variant webpki may return.
fn chain_error(err: webpki::Error, role: Role) -> SvidError {
    match err {
        webpki::Error::CertExpired { time, not_after } => {
            SvidError::Expired { not_after: not_after.as_secs(), now: time.as_secs() }
        }
        webpki::Error::CertNotValidYet { time, not_before } => {
            SvidError::NotYetValid { not_before: not_before.as_secs(), now: time.as_secs() }
        }
        webpki::Error::CaUsedAsEndEntity => SvidError::Rule(SvidRule::IsCa),
        webpki::Error::RequiredEkuNotFound
        | webpki::Error::RequiredEkuNotFoundContext(_)
        | webpki::Error::EmptyEkuExtension => SvidError::Rule(SvidRule::MissingEku { role }),
        other => SvidError::Untrusted(webpki_reason(&other)),
    }
}

/// A readable reason for a webpki error (its Display is its Debug).
fn webpki_reason(err: &webpki::Error) -> String {
    match err {
        webpki::Error::UnknownIssuer => "no chain to a root of the trust bundle (unknown issuer)".into(),
        webpki::Error::InvalidSignatureForPublicKey => "a signature in the chain does not verify".into(),
        webpki::Error::NameConstraintViolation => {
            "name constraints violated (rustls-webpki rejects any URI name constraint)".into()
        }
        webpki::Error::BadDer => "certificate DER does not parse".into(),
        other => format!("{other:?}"),
    }
}

/// The SPIFFE ID of an already verified leaf (exactly one URI SAN, valid, with a path). Cheap enough for the
/// per-connection path after a handshake whose verifier already ran [`TrustBundle::verify`].
pub fn spiffe_id_of_leaf(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    Leaf::parse(leaf.as_ref())?.spiffe_id()
}

/// Every SPIFFE leaf rule `leaf` breaks (empty when compliant), for `certs-agent inspect`; `role` None checks
/// that EKU, when present, has both serverAuth and clientAuth.
///
/// Covers the URI SAN rules (at most one of them: a leaf without a usable ID has no further ID rules), the CA
/// flag, key usage, and extended key usage. Chain and validity need a bundle and a time: that is
/// [`TrustBundle::verify`].
pub fn leaf_rule_violations(leaf: &CertificateDer<'_>, role: Option<Role>) -> Result<Vec<SvidRule>, SvidError> {
    let parsed = Leaf::parse(leaf.as_ref())?;
    let mut found = Vec::new();
    if let Err(rule) = leaf::spiffe_id_of(&parsed.uri_sans()?) {
        found.push(rule);
    }
    found.extend(parsed.rule_violations(true)?);
    let roles: &[Role] = match &role {
        Some(role) => std::slice::from_ref(role),
        None => &[Role::Server, Role::Client],
    };
    found.extend(parsed.missing_eku(roles)?);
    Ok(found)
}

/// A readable reason for a PEM error: rustls-pki-types prints the offending marker as a byte list.
pub fn pem_reason(err: &rustls_pki_types::pem::Error) -> String {
    use rustls_pki_types::pem::Error;
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).chars().take(80).collect::<String>();
    match err {
        Error::MissingSectionEnd { end_marker } => {
            format!("truncated PEM: no {:?} line (was the file cut short?)", text(end_marker))
        }
        Error::IllegalSectionStart { line } => format!("malformed PEM BEGIN line {:?}", text(line)),
        Error::Base64Decode(e) => format!("PEM body is not valid base64: {e}"),
        Error::NoItemsFound => "no PEM item of the expected kind".into(),
        other => other.to_string(),
    }
}
