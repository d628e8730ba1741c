//! rustls certificate verifiers that accept a peer only as an X.509-SVID of our trust domain (SPEC §4).
//!
//! Both directions delegate to [`policy::TrustBundle::verify`] (webpki chain verification plus the SPIFFE leaf
//! rules). The outbound verifier then requires the exact SPIFFE ID the route names: there is no DNS name
//! check anywhere. A refusal travels out of rustls as a [`PeerRejected`] inside
//! `CertificateError::Other`, so the handshake error keeps its typed reason and the peer's ID all the
//! way to the metric label and the log line.

use std::{fmt, sync::Arc};

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
}

/// Verifies the server we dial (outbound): an SVID with serverAuth whose SPIFFE ID is exactly `expected`.
pub struct SvidServerVerifier {
    bundle: Arc<TrustBundle>,
    expected: SpiffeId,
    algs: WebPkiSupportedAlgorithms,
}

impl SvidClientVerifier {
    pub fn new(bundle: Arc<TrustBundle>, algs: WebPkiSupportedAlgorithms) -> Self {
        Self { bundle, algs }
    }
}

impl SvidServerVerifier {
    pub fn new(bundle: Arc<TrustBundle>, expected: SpiffeId, algs: WebPkiSupportedAlgorithms) -> Self {
        Self { bundle, expected, algs }
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
        verify(&self.bundle, end_entity, intermediates, now, Role::Client)
            .map(|_| ClientCertVerified::assertion())
            .map_err(PeerRejected::into_rustls)
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
        let found =
            verify(&self.bundle, end_entity, intermediates, now, Role::Server).map_err(PeerRejected::into_rustls)?;
        if found != self.expected {
            let refusal = Refusal::WrongPeerId { expected: self.expected.clone(), found: found.clone() };
            return Err(PeerRejected { refusal, id: Some(RefusedId::Vouched(found)) }.into_rustls());
        }
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
