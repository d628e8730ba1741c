//! Issuing X.509-SVIDs under a [`Ca`]: a fresh P-256 key per SVID, generated here and never sent anywhere.
//!
//! The leaf follows X509-SVID §2-§4 exactly: one URI SAN (the SPIFFE ID), CA=false, key usage
//! digitalSignature (critical), EKU serverAuth + clientAuth, a non-empty subject (so the SAN need not be
//! critical), a random serial, notBefore back-dated, and a notAfter that never passes the CA's.
//!
//! Lifetimes: X.509 times are whole seconds, so notAfter is `now + ttl` rounded *up*: an SVID is valid for at
//! least `ttl` after issuance (at most a second more), which keeps short TTLs meaningful. A TTL that would end
//! after the signing root is refused ([`TtlBeyondCa::Refuse`], `issue` and the start of `run`) or clamped to the
//! root's notAfter ([`TtlBeyondCa::Clamp`], renewals of `run` once the root nears its end).

use std::time::Duration;

use policy::{
    Role, SpiffeId, SpiffeIdError, TrustBundle, TrustDomain,
    svid::{self, SvidError},
};
use rcgen::{
    CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, string::Ia5String,
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::{
    ca::{Ca, CaError},
    duration::human,
    pem,
    publish::Payload,
    serial::{Serial, SerialError},
    spiffe_bundle, validity,
};

/// What to do with a TTL that would outlive the signing root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlBeyondCa {
    /// Refuse to issue ([`IssueError::OutlivesCa`]).
    Refuse,
    /// Issue a leaf that ends with the root ([`IssuedSvid::clamped`] says so).
    Clamp,
}

/// Why an SVID was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("invalid SPIFFE ID {text:?}: {reason}")]
    InvalidId {
        text: String,
        #[source]
        reason: SpiffeIdError,
    },
    #[error("SPIFFE ID {id} has no path; a workload SVID needs one (e.g. {id}/ns/default/sa/web)")]
    NoPath { id: SpiffeId },
    #[error("SPIFFE ID {id} is outside the CA's trust domain {ca_trust_domain}")]
    ForeignTrustDomain { id: SpiffeId, ca_trust_domain: TrustDomain },
    #[error(
        "TTL {} would outlive the CA: it expires at {} ({} left); use a shorter --ttl or rotate the CA",
        human(*ttl), validity::rfc3339(*ca_not_after), human(*ca_remaining)
    )]
    OutlivesCa { ttl: Duration, ca_remaining: Duration, ca_not_after: OffsetDateTime },
    #[error("the CA expired at {}; rotate it before issuing", validity::rfc3339(*ca_not_after))]
    CaExpired { ca_not_after: OffsetDateTime },
    #[error("cannot generate the SVID: {0}")]
    Generate(String),
    #[error("the issued SVID does not verify under the CA's bundle ({role:?} role): {reason}")]
    SelfCheck {
        role: Role,
        #[source]
        reason: SvidError,
    },
    #[error("the CA's bundle cannot be used to check the issued SVID: {0}")]
    Bundle(String),
    #[error("the issued SVID is inconsistent, not publishing it: {0}")]
    Inconsistent(String),
    #[error(transparent)]
    Serial(#[from] SerialError),
    #[error(transparent)]
    Ca(#[from] CaError),
}

impl IssueError {
    /// Whether the error is in what the caller asked for (exit status 2) rather than in the CA or the system.
    pub fn is_usage(&self) -> bool {
        matches!(self, IssueError::InvalidId { .. } | IssueError::NoPath { .. } | IssueError::ForeignTrustDomain { .. })
    }
}

/// One issued SVID, ready to publish.
#[derive(Clone)]
pub struct IssuedSvid {
    pub id: SpiffeId,
    /// Leaf first, then intermediates (none while the root signs directly).
    pub chain_pem: String,
    /// PKCS#8 `PRIVATE KEY` PEM.
    pub key_pem: String,
    /// Every root currently trusted (the CA's `bundle.pem`).
    pub bundle_pem: String,
    /// The same roots in SPIFFE bundle format.
    pub spiffe_bundle_json: String,
    /// The bundle's version (`spiffe_sequence`).
    pub bundle_sequence: u64,
    pub leaf_der: CertificateDer<'static>,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// When it was signed (not back-dated): the SVID's useful life runs from here to `not_after`.
    pub issued_at: OffsetDateTime,
    /// The root that signed it, and when that root expires.
    pub signing_root: Serial,
    pub signing_root_not_after: OffsetDateTime,
    /// Whether `not_after` was cut short to end with the signing root ([`TtlBeyondCa::Clamp`]).
    pub clamped: bool,
}

impl std::fmt::Debug for IssuedSvid {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedSvid")
            .field("id", &self.id)
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("signing_root", &self.signing_root)
            .finish_non_exhaustive()
    }
}

/// Signs SVIDs with one CA.
#[derive(Debug)]
pub struct Issuer {
    ca: Ca,
}

impl Issuer {
    pub fn new(ca: Ca) -> Self {
        Issuer { ca }
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    /// Parses `text` as the SPIFFE ID of a workload this CA may issue for: valid syntax, a path, and the
    /// CA's trust domain.
    pub fn workload_id(&self, text: &str) -> Result<SpiffeId, IssueError> {
        let id = SpiffeId::parse(text).map_err(|reason| IssueError::InvalidId { text: text.to_owned(), reason })?;
        self.check_id(&id)?;
        Ok(id)
    }

    /// Issues an SVID for `id` valid from `now` (back-dated, but never before the CA's notBefore) for `ttl`.
    /// Refuses a `ttl` that would end after the CA does.
    pub fn issue(&self, id: &SpiffeId, ttl: Duration, now: OffsetDateTime) -> Result<IssuedSvid, IssueError> {
        self.issue_with(id, ttl, now, TtlBeyondCa::Refuse)
    }

    /// Checks that `ttl` fits in the signing root's remaining life at `now` (what [`TtlBeyondCa::Refuse`] checks).
    pub fn check_ttl(&self, ttl: Duration, now: OffsetDateTime) -> Result<(), IssueError> {
        self.end_of(ttl, now).map(|_| ())
    }

    /// Issues an SVID for `id`; `beyond_ca` says what to do when `ttl` would outlive the signing root.
    pub fn issue_with(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        now: OffsetDateTime,
        beyond_ca: TtlBeyondCa,
    ) -> Result<IssuedSvid, IssueError> {
        self.check_id(id)?;
        let (not_after, clamped) = match (self.end_of(ttl, now), beyond_ca) {
            (Ok(end), _) => (end, false),
            (Err(IssueError::OutlivesCa { .. }), TtlBeyondCa::Clamp) => (self.ca.not_after(), true),
            (Err(e), _) => return Err(e),
        };
        let not_before = (validity::whole_seconds(now) - validity::BACKDATE).max(self.ca.not_before());

        let serial = Serial::random()?;
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| IssueError::Generate(e.to_string()))?;
        let params = leaf_params(id, &serial, not_before, not_after)?;
        let signer = self.ca.signer().map_err(|e| IssueError::Generate(format!("CA certificate: {e}")))?;
        let leaf = params.signed_by(&key, &signer).map_err(|e| IssueError::Generate(e.to_string()))?;
        let spiffe_bundle_json = self.ca.spiffe_bundle_json().map_err(|e| IssueError::Bundle(e.to_string()))?;

        Ok(IssuedSvid {
            id: id.clone(),
            chain_pem: pem::encode_certificate(leaf.der()),
            key_pem: key.serialize_pem(),
            bundle_pem: self.ca.bundle_pem().to_owned(),
            spiffe_bundle_json,
            bundle_sequence: self.ca.sequence(),
            leaf_der: leaf.der().clone(),
            serial,
            not_before,
            not_after,
            issued_at: now,
            signing_root: self.ca.serial(),
            signing_root_not_after: self.ca.not_after(),
            clamped,
        })
    }

    /// The notAfter of an SVID issued at `now` for `ttl`: `now + ttl` rounded up to a whole second, or an error
    /// if the CA has expired or would expire first (compared at whole-second resolution, so a TTL ending in the
    /// CA's last second is accepted and ends with it).
    fn end_of(&self, ttl: Duration, now: OffsetDateTime) -> Result<OffsetDateTime, IssueError> {
        let ca_not_after = self.ca.not_after();
        if ca_not_after <= now {
            return Err(IssueError::CaExpired { ca_not_after });
        }
        let outlives = || IssueError::OutlivesCa {
            ttl,
            ca_remaining: self.ca.remaining(validity::whole_seconds(now)),
            ca_not_after,
        };
        let truncated_end = validity::add(validity::whole_seconds(now), ttl).ok_or_else(outlives)?;
        if truncated_end > ca_not_after {
            return Err(outlives());
        }
        let end = validity::add(now, ttl).map(validity::ceil_seconds).ok_or_else(outlives)?;
        Ok(end.min(ca_not_after))
    }

    fn check_id(&self, id: &SpiffeId) -> Result<(), IssueError> {
        if !id.has_path() {
            return Err(IssueError::NoPath { id: id.clone() });
        }
        if id.trust_domain() != *self.ca.trust_domain() {
            return Err(IssueError::ForeignTrustDomain {
                id: id.clone(),
                ca_trust_domain: self.ca.trust_domain().clone(),
            });
        }
        Ok(())
    }
}

impl IssuedSvid {
    /// The files to publish.
    pub fn payload(&self) -> Payload<'_> {
        Payload {
            chain_pem: self.chain_pem.as_bytes(),
            key_pem: self.key_pem.as_bytes(),
            bundle_pem: self.bundle_pem.as_bytes(),
            spiffe_bundle_json: self.spiffe_bundle_json.as_bytes(),
        }
    }

    /// How long the SVID is useful: from issuance to notAfter.
    pub fn lifetime(&self) -> Duration {
        validity::remaining(self.issued_at, self.not_after)
    }

    /// Checks the SVID the way a peer will (policy crate: chain to the bundle and the SPIFFE leaf rules, in
    /// both roles), and that the files to publish agree with each other: the key matches the leaf, the leaf ends
    /// no later than its root, and the SPIFFE bundle holds the same roots as the PEM bundle. A certificate that
    /// fails is never published.
    pub fn verify(&self, now: OffsetDateTime) -> Result<(), IssueError> {
        let bundle = TrustBundle::from_pem(self.id.trust_domain(), self.bundle_pem.as_bytes())
            .map_err(|e| IssueError::Bundle(e.to_string()))?;
        for role in [Role::Server, Role::Client] {
            bundle
                .verify(&self.leaf_der, &[], validity::unix_time(now), role)
                .map_err(|reason| IssueError::SelfCheck { role, reason })?;
        }
        let inconsistent = |what: String| IssueError::Inconsistent(what);
        let chain = pem::certificates(self.chain_pem.as_bytes()).map_err(|e| inconsistent(format!("chain: {e}")))?;
        if chain.first() != Some(&self.leaf_der) {
            return Err(inconsistent("the chain does not start with the leaf".into()));
        }
        let facts = svid::leaf_details(&self.leaf_der).map_err(|e| inconsistent(format!("leaf: {e}")))?;
        let key = KeyPair::from_pem(&self.key_pem).map_err(|e| inconsistent(format!("key: {e}")))?;
        if key.subject_public_key_info() != facts.spki_der {
            return Err(inconsistent("the private key does not match the leaf".into()));
        }
        if facts.not_after > self.signing_root_not_after.unix_timestamp() {
            return Err(inconsistent("the leaf would outlive its root".into()));
        }
        let json = spiffe_bundle::parse(self.spiffe_bundle_json.as_bytes())
            .map_err(|e| inconsistent(format!("SPIFFE bundle: {e}")))?;
        if json.roots != bundle.roots() {
            return Err(inconsistent("the SPIFFE bundle and the PEM bundle hold different roots".into()));
        }
        Ok(())
    }
}

/// The leaf template (see the module docs).
fn leaf_params(
    id: &SpiffeId,
    serial: &Serial,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, IssueError> {
    let uri = Ia5String::try_from(id.as_str()).map_err(|e| IssueError::Generate(e.to_string()))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "SPIFFE");

    let mut params = CertificateParams::default();
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(serial.to_rcgen());
    params.distinguished_name = name;
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.is_ca = IsCa::ExplicitNoCa;
    // rcgen always marks key usage critical (checked by a test below).
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);

    fn issuer_with_ttl(dir: &std::path::Path, ca_ttl: Duration, now: OffsetDateTime) -> Issuer {
        let td = TrustDomain::parse("example.org").unwrap();
        Issuer::new(Ca::init(dir, &td, ca_ttl, now).unwrap())
    }

    fn web_id() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/ns/web/sa/frontend").unwrap()
    }

    #[test]
    fn leaf_has_the_x509_svid_profile() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc() - time::Duration::minutes(5);
        let issuer = issuer_with_ttl(tmp.path(), 24 * HOUR, now);
        let later = now + time::Duration::minutes(1);
        let svid = issuer.issue(&web_id(), HOUR, later).unwrap();

        let facts = svid::leaf_details(&svid.leaf_der).unwrap();
        assert_eq!(facts.uri_sans, vec![web_id().to_string()]);
        assert!(facts.dns_sans.is_empty());
        assert_eq!(facts.san_critical, Some(false), "subject is non-empty, so the SAN need not be critical");
        assert_eq!(facts.subject, "O=SPIFFE");
        assert_eq!(facts.issuer, issuer.ca().facts().subject);
        assert!(facts.has_basic_constraints && !facts.is_ca);
        let ku = facts.key_usage.clone().unwrap();
        assert!(ku.critical, "key usage must be critical (X509-SVID §4.3)");
        assert_eq!(ku.usages, vec!["digitalSignature"]);
        let eku = facts.extended_key_usage.clone().unwrap();
        assert!(eku.has("serverAuth") && eku.has("clientAuth"));
        assert_eq!(eku.purposes.len(), 2);
        assert!(!facts.has_name_constraints);
        assert_eq!(facts.key_algorithm, "ECDSA P-256");
        let not_before = validity::whole_seconds(later) - validity::BACKDATE;
        let not_after = validity::ceil_seconds(later + HOUR);
        assert_eq!((facts.not_before, facts.not_after), (not_before.unix_timestamp(), not_after.unix_timestamp()));
        assert!(svid.lifetime() >= HOUR && svid.lifetime() < HOUR + Duration::from_secs(1));
        assert_eq!((svid.not_before, svid.not_after), (not_before, not_after));
        assert_eq!(facts.serial_hex, svid.serial.to_hex());
        assert_eq!(facts.serial[0] & 0x80, 0, "serial must be positive");
        assert!(svid.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"), "PKCS#8 expected");
        assert_eq!(svid.bundle_pem, issuer.ca().bundle_pem());
        assert_eq!(svid.signing_root, issuer.ca().serial());
        assert_eq!(svid.issued_at, later);
        assert!(!svid.clamped);
        assert!(!format!("{svid:?}").contains("PRIVATE KEY"));
    }

    #[test]
    fn key_usage_extension_is_critical_in_the_der() {
        // Straight from x509-parser, independent of policy::svid.
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let svid = issuer_with_ttl(tmp.path(), 24 * HOUR, now).issue(&web_id(), HOUR, now).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(&svid.leaf_der).unwrap();
        let ku = cert.key_usage().unwrap().unwrap();
        assert!(ku.critical);
        assert!(ku.value.digital_signature() && !ku.value.key_cert_sign() && !ku.value.crl_sign());
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(!bc.value.ca);
        let uris = cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
            .iter()
            .filter(|n| matches!(n, x509_parser::extensions::GeneralName::URI(_)))
            .count();
        assert_eq!(uris, 1);
    }

    #[test]
    fn serials_and_keys_are_fresh_each_time() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let issuer = issuer_with_ttl(tmp.path(), 24 * HOUR, now);
        let a = issuer.issue(&web_id(), HOUR, now).unwrap();
        let b = issuer.issue(&web_id(), HOUR, now).unwrap();
        assert_ne!(a.serial, b.serial);
        assert_ne!(a.key_pem, b.key_pem);
        assert_ne!(a.serial, issuer.ca().serial());
    }

    #[test]
    fn not_before_never_precedes_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let issuer = issuer_with_ttl(tmp.path(), 24 * HOUR, now);
        // Issued the same second as the CA: back-dating stops at the CA's notBefore (also back-dated).
        let svid = issuer.issue(&web_id(), HOUR, now - validity::BACKDATE).unwrap();
        assert_eq!(svid.not_before, issuer.ca().not_before());
    }

    #[test]
    fn ttl_beyond_the_ca_is_refused_with_the_time_left() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let issuer = issuer_with_ttl(tmp.path(), 2 * HOUR, now);
        assert!(issuer.issue(&web_id(), 2 * HOUR, now).is_ok(), "ending exactly with the CA is fine");
        let err = issuer.issue(&web_id(), 3 * HOUR, now).unwrap_err();
        assert!(matches!(err, IssueError::OutlivesCa { .. }), "{err}");
        let text = err.to_string();
        assert!(text.contains("would outlive the CA") && text.contains("2h left"), "{text}");
        let err = issuer.issue(&web_id(), Duration::MAX, now).unwrap_err();
        assert!(matches!(err, IssueError::OutlivesCa { .. }), "{err}");
        assert!(matches!(issuer.check_ttl(3 * HOUR, now), Err(IssueError::OutlivesCa { .. })));
        issuer.check_ttl(HOUR, now).unwrap();
    }

    #[test]
    fn clamping_ends_the_leaf_with_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let issuer = issuer_with_ttl(tmp.path(), 2 * HOUR, now);
        let svid = issuer.issue_with(&web_id(), 3 * HOUR, now, TtlBeyondCa::Clamp).unwrap();
        assert!(svid.clamped);
        assert_eq!(svid.not_after, issuer.ca().not_after());
        svid.verify(now).unwrap();
        let fits = issuer.issue_with(&web_id(), HOUR, now, TtlBeyondCa::Clamp).unwrap();
        assert!(!fits.clamped);
    }

    #[test]
    fn short_ttls_are_never_cut_below_the_request() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let issuer = issuer_with_ttl(tmp.path(), 2 * HOUR, now);
        for ms in [1, 250, 999, 1000, 1001] {
            let ttl = Duration::from_millis(ms);
            let svid = issuer.issue(&web_id(), ttl, now).unwrap();
            assert!(svid.lifetime() >= ttl, "{ms} ms -> {:?}", svid.lifetime());
            assert!(svid.lifetime() < ttl + Duration::from_secs(1));
        }
    }

    #[test]
    fn verify_catches_a_key_that_does_not_match_and_a_bundle_mismatch() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let issuer = issuer_with_ttl(tmp.path(), 2 * HOUR, now);
        let a = issuer.issue(&web_id(), HOUR, now).unwrap();
        let b = issuer.issue(&web_id(), HOUR, now).unwrap();
        let mut swapped = a.clone();
        swapped.key_pem = b.key_pem.clone();
        assert!(matches!(swapped.verify(now), Err(IssueError::Inconsistent(_))));
        let mut json = a.clone();
        json.spiffe_bundle_json = r#"{"keys": []}"#.into();
        assert!(matches!(json.verify(now), Err(IssueError::Inconsistent(_))));
        a.verify(now).unwrap();
    }

    #[test]
    fn an_expired_ca_issues_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let past = OffsetDateTime::now_utc() - time::Duration::hours(3);
        let issuer = issuer_with_ttl(tmp.path(), HOUR, past);
        let err = issuer.issue(&web_id(), Duration::from_secs(60), OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(err, IssueError::CaExpired { .. }), "{err}");
    }

    #[test]
    fn ids_are_checked_against_the_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let issuer = issuer_with_ttl(tmp.path(), 2 * HOUR, OffsetDateTime::now_utc());
        assert_eq!(issuer.workload_id("spiffe://example.org/a").unwrap().as_str(), "spiffe://example.org/a");
        assert!(matches!(issuer.workload_id("spiffe://example.org"), Err(IssueError::NoPath { .. })));
        assert!(matches!(issuer.workload_id("spiffe://other.org/a"), Err(IssueError::ForeignTrustDomain { .. })));
        let err = issuer.workload_id("spiffe://Example.org/a").unwrap_err();
        assert!(matches!(err, IssueError::InvalidId { .. }), "{err}");
        assert!(err.to_string().contains("lowercase"), "{err}");
        let other = SpiffeId::parse("spiffe://other.org/a").unwrap();
        assert!(matches!(
            issuer.issue(&other, HOUR, OffsetDateTime::now_utc()),
            Err(IssueError::ForeignTrustDomain { .. })
        ));
    }

    #[test]
    fn issued_svid_verifies_under_the_bundle_in_both_roles() {
        let tmp = tempfile::tempdir().unwrap();
        let now = OffsetDateTime::now_utc();
        let svid = issuer_with_ttl(tmp.path(), 24 * HOUR, now).issue(&web_id(), HOUR, now).unwrap();
        svid.verify(now).unwrap();
        // And not under another root of the same trust domain.
        let other = tempfile::tempdir().unwrap();
        let foreign = issuer_with_ttl(other.path(), 24 * HOUR, now);
        let mut mixed = svid.clone();
        mixed.bundle_pem = foreign.ca().bundle_pem().to_owned();
        assert!(matches!(mixed.verify(now), Err(IssueError::SelfCheck { .. })));
    }
}
