//! rustls certificate verifiers that accept a peer only as an X.509-SVID of our trust domain (SPEC §4).
//!
//! Both directions delegate to [`policy::TrustBundle::verify`] (webpki chain verification plus the SPIFFE leaf
//! rules). The outbound verifier then requires the exact SPIFFE ID the route names: there is no DNS name
//! check anywhere. A refusal travels out of rustls as a [`PeerRejected`] inside
//! `CertificateError::Other`, so the handshake error keeps its typed reason and the peer's ID all the
//! way to the metric label and the log line.
//!
//! Each verifier remembers the chains it has accepted ([`VerifiedChains`]): a peer presenting the same
//! certificate again, inside its validity, skips the chain signatures and SVID parsing (never the
//! handshake's proof of possession, which rustls checks through `verify_tls13_signature`).

use std::{fmt, sync::Arc};

use super::verified::VerifiedChains;
use policy::{Role, SpiffeId, SvidError, SvidErrorKind, TrustBundle, svid};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    crypto::{WebPkiSupportedAlgorithms, verify_tls12_signature, verify_tls13_signature},
    pki_types::{CertificateDer, ServerName, UnixTime},
    server::danger::{ClientCertVerified, ClientCertVerifier},
};

/// Why a peer's certificate was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Svid(#[from] SvidError),
    #[error("peer is {found}, but this route requires {expected}")]
    WrongPeerId { expected: SpiffeId, found: SpiffeId },
}

/// The SPIFFE ID of a refused certificate, for the log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefusedId {
    /// Our trust bundle vouches for the certificate (it is expired, breaks an SVID rule, or is the wrong
    /// peer): the ID is who it really is.
    Vouched(SpiffeId),
    /// The certificate does not chain to our bundle: the ID is only what it claims.
    Claimed(SpiffeId),
}

/// A refused peer certificate: the reason, and the SPIFFE ID in it when it has one (for logs only).
#[derive(Debug, thiserror::Error)]
#[error("{refusal}")]
pub struct PeerRejected {
    pub refusal: Refusal,
    pub id: Option<RefusedId>,
}

impl PeerRejected {
    fn into_rustls(self) -> rustls::Error {
        rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(self))))
    }
}

/// Verifies callers (inbound): a client certificate is mandatory and must be an SVID with clientAuth.
pub struct SvidClientVerifier {
    bundle: Arc<TrustBundle>,
    algs: WebPkiSupportedAlgorithms,
    verified: VerifiedChains,
}

/// Verifies the server we dial (outbound): an SVID with serverAuth whose SPIFFE ID is exactly `expected`.
pub struct SvidServerVerifier {
    bundle: Arc<TrustBundle>,
    expected: SpiffeId,
    algs: WebPkiSupportedAlgorithms,
    /// Only chains whose ID is `expected`.
    verified: VerifiedChains,
}

impl SvidClientVerifier {
    pub fn new(bundle: Arc<TrustBundle>, algs: WebPkiSupportedAlgorithms) -> Self {
        Self { bundle, algs, verified: VerifiedChains::default() }
    }
}

impl SvidServerVerifier {
    pub fn new(bundle: Arc<TrustBundle>, expected: SpiffeId, algs: WebPkiSupportedAlgorithms) -> Self {
        Self { bundle, expected, algs, verified: VerifiedChains::default() }
    }
}

/// Remembers a chain that has just verified (a certificate whose dates cannot be read is simply not
/// remembered: it was verified, and will be again next time).
fn remember(
    verified: &VerifiedChains,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
) {
    if let Ok(validity) = svid::chain_validity(end_entity, intermediates) {
        verified.insert(end_entity, intermediates, validity, now);
    }
}

fn verify(
    bundle: &TrustBundle,
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    role: Role,
) -> Result<SpiffeId, PeerRejected> {
    bundle.verify(end_entity, intermediates, now, role).map_err(|e| {
        let id = svid::spiffe_id_of_leaf(end_entity).ok().map(|id| match e.kind() {
            SvidErrorKind::Untrusted => RefusedId::Claimed(id),
            _ => RefusedId::Vouched(id),
        });
        PeerRejected { refusal: e.into(), id }
    })
}

impl ClientCertVerifier for SvidClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    /// No CA names are advertised: peers present their SVID whatever issued it.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if !self.verified.contains(end_entity, intermediates, now) {
            verify(&self.bundle, end_entity, intermediates, now, Role::Client).map_err(PeerRejected::into_rustls)?;
            remember(&self.verified, end_entity, intermediates, now);
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl ServerCertVerifier for SvidServerVerifier {
    /// `server_name` is ignored on purpose: the peer is identified by its SPIFFE ID, not a DNS name.
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.verified.contains(end_entity, intermediates, now) {
            return Ok(ServerCertVerified::assertion());
        }
        let found =
            verify(&self.bundle, end_entity, intermediates, now, Role::Server).map_err(PeerRejected::into_rustls)?;
        if found != self.expected {
            let refusal = Refusal::WrongPeerId { expected: self.expected.clone(), found: found.clone() };
            return Err(PeerRejected { refusal, id: Some(RefusedId::Vouched(found)) }.into_rustls());
        }
        remember(&self.verified, end_entity, intermediates, now);
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.algs)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algs)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

impl fmt::Debug for SvidClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidClientVerifier").field("trust_domain", self.bundle.trust_domain()).finish()
    }
}

impl fmt::Debug for SvidServerVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SvidServerVerifier")
            .field("trust_domain", self.bundle.trust_domain())
            .field("expected", &self.expected)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
        date_time_ymd,
    };

    struct Pki {
        bundle: Arc<TrustBundle>,
        leaf: CertificateDer<'static>,
    }

    /// A root and one SVID for `id` valid through 2029, as certs-agent issues them.
    fn pki(id: &str) -> Pki {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::default();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca.not_before = date_time_ymd(2020, 1, 1);
        ca.not_after = date_time_ymd(2040, 1, 1);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = Issuer::from_ca_cert_der(ca_cert.der(), &ca_key).unwrap();
        let mut leaf = CertificateParams::default();
        leaf.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
        leaf.is_ca = IsCa::ExplicitNoCa;
        leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        leaf.not_before = date_time_ymd(2021, 1, 1);
        leaf.not_after = date_time_ymd(2030, 1, 1);
        let leaf = leaf.signed_by(&KeyPair::generate().unwrap(), &issuer).unwrap();
        let td = policy::TrustDomain::parse("example.org").unwrap();
        let bundle = Arc::new(TrustBundle::new(td, vec![ca_cert.der().clone()]).unwrap());
        Pki { bundle, leaf: leaf.der().clone() }
    }

    fn year(y: u64) -> UnixTime {
        UnixTime::since_unix_epoch(std::time::Duration::from_secs((y - 1970) * 365 * 86_400))
    }

    fn reason(err: rustls::Error) -> String {
        match err {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => other.0.to_string(),
            other => panic!("not a peer refusal: {other:?}"),
        }
    }

    fn algs() -> WebPkiSupportedAlgorithms {
        super::super::provider().signature_verification_algorithms
    }

    #[test]
    fn a_remembered_chain_is_accepted_only_inside_its_validity() {
        let Pki { bundle, leaf } = pki("spiffe://example.org/ns/web/sa/web");
        let verifier = SvidClientVerifier::new(bundle, algs());
        assert_eq!(verifier.verified.len(), 0);
        verifier.verify_client_cert(&leaf, &[], year(2026)).unwrap();
        assert_eq!(verifier.verified.len(), 1, "the verified chain is remembered");
        verifier.verify_client_cert(&leaf, &[], year(2027)).unwrap();
        // After notAfter the full verification runs again and names the real reason.
        let expired = reason(verifier.verify_client_cert(&leaf, &[], year(2031)).unwrap_err());
        assert!(expired.contains("expired"), "{expired}");
        let early = verifier.verify_client_cert(&leaf, &[], year(2020)).unwrap_err();
        assert!(!reason(early).is_empty());
    }

    #[test]
    fn another_bundle_does_not_inherit_what_one_verifier_remembered() {
        let Pki { bundle, leaf } = pki("spiffe://example.org/ns/web/sa/web");
        SvidClientVerifier::new(bundle, algs()).verify_client_cert(&leaf, &[], year(2026)).unwrap();
        // The bundle changed (our root removed): the rebuilt verifier starts empty and refuses.
        let other = pki("spiffe://example.org/ns/web/sa/web").bundle;
        let rebuilt = SvidClientVerifier::new(other, algs());
        let untrusted = reason(rebuilt.verify_client_cert(&leaf, &[], year(2026)).unwrap_err());
        assert_eq!(rebuilt.verified.len(), 0, "{untrusted}");
    }

    #[test]
    fn the_server_verifier_remembers_only_the_expected_peer() {
        let Pki { bundle, leaf } = pki("spiffe://example.org/ns/api/sa/api");
        let name = ServerName::try_from("api").unwrap();
        let wrong = SpiffeId::parse("spiffe://example.org/ns/api/sa/other").unwrap();
        let verifier = SvidServerVerifier::new(bundle.clone(), wrong, algs());
        for _ in 0..2 {
            let refused = reason(verifier.verify_server_cert(&leaf, &[], &name, &[], year(2026)).unwrap_err());
            assert!(refused.contains("requires"), "{refused}");
        }
        assert_eq!(verifier.verified.len(), 0);
        let right = SpiffeId::parse("spiffe://example.org/ns/api/sa/api").unwrap();
        let verifier = SvidServerVerifier::new(bundle, right, algs());
        verifier.verify_server_cert(&leaf, &[], &name, &[], year(2026)).unwrap();
        verifier.verify_server_cert(&leaf, &[], &name, &[], year(2026)).unwrap();
        assert_eq!(verifier.verified.len(), 1);
    }
}
