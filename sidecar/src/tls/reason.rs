//! Why a handshake failed, classified once into the `reason` label of `sidecar_tls_handshakes_total`
//! (SPEC §7). The same value goes into the refusal log line.

use std::{fmt, io};

use policy::SvidErrorKind;
use rustls::{CertificateError, Error as TlsError};

use super::verify::{PeerRejected, Refusal, RefusedId};

/// The `reason` label of a handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandshakeReason {
    Ok,
    Timeout,
    NoClientCert,
    Untrusted,
    Expired,
    NotYetValid,
    BadSvid,
    WrongPeerId,
    /// The peer sent a fatal alert: it refused us (e.g. our certificate) or gave up.
    PeerAlert,
    ProtocolError,
    Io,
}

impl HandshakeReason {
    pub const ALL: [HandshakeReason; 11] = [
        HandshakeReason::Ok,
        HandshakeReason::Timeout,
        HandshakeReason::NoClientCert,
        HandshakeReason::Untrusted,
        HandshakeReason::Expired,
        HandshakeReason::NotYetValid,
        HandshakeReason::BadSvid,
        HandshakeReason::WrongPeerId,
        HandshakeReason::PeerAlert,
        HandshakeReason::ProtocolError,
        HandshakeReason::Io,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeReason::Ok => "ok",
            HandshakeReason::Timeout => "timeout",
            HandshakeReason::NoClientCert => "no_client_cert",
            HandshakeReason::Untrusted => "untrusted",
            HandshakeReason::Expired => "expired",
            HandshakeReason::NotYetValid => "not_yet_valid",
            HandshakeReason::BadSvid => "bad_svid",
            HandshakeReason::WrongPeerId => "wrong_peer_id",
            HandshakeReason::PeerAlert => "peer_alert",
            HandshakeReason::ProtocolError => "protocol_error",
            HandshakeReason::Io => "io",
        }
    }

    /// Index into per-reason metric handle arrays (same order as [`HandshakeReason::ALL`]).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for HandshakeReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed handshake, classified.
#[derive(Debug)]
pub struct HandshakeFailure {
    pub reason: HandshakeReason,
    /// The SPIFFE ID in the peer's certificate, when it got that far, and whether our bundle vouches for it.
    pub id: Option<RefusedId>,
    /// A human-readable detail for the log.
    pub detail: String,
}

impl HandshakeFailure {
    pub fn timeout(after: std::time::Duration) -> Self {
        Self { reason: HandshakeReason::Timeout, id: None, detail: format!("no handshake within {after:?}") }
    }

    /// Classifies the error tokio-rustls returned from a handshake.
    pub fn from_io(e: &io::Error) -> Self {
        if let Some(tls) = e.get_ref().and_then(|inner| inner.downcast_ref::<TlsError>()) {
            return Self::from_tls(tls);
        }
        Self { reason: HandshakeReason::Io, id: None, detail: bounded(e.to_string()) }
    }

    fn from_tls(e: &TlsError) -> Self {
        let detail = bounded(e.to_string());
        if let TlsError::InvalidCertificate(CertificateError::Other(other)) = e
            && let Some(rejected) = other.0.downcast_ref::<PeerRejected>()
        {
            let reason = match &rejected.refusal {
                Refusal::WrongPeerId { .. } => HandshakeReason::WrongPeerId,
                Refusal::Svid(svid) => match svid.kind() {
                    SvidErrorKind::BadSvid => HandshakeReason::BadSvid,
                    SvidErrorKind::Untrusted => HandshakeReason::Untrusted,
                    SvidErrorKind::Expired => HandshakeReason::Expired,
                    SvidErrorKind::NotYetValid => HandshakeReason::NotYetValid,
                },
            };
            return Self { reason, id: rejected.id.clone(), detail: bounded(rejected.to_string()) };
        }
        let reason = match e {
            TlsError::NoCertificatesPresented => HandshakeReason::NoClientCert,
            TlsError::InvalidCertificate(c) => match c {
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => HandshakeReason::Expired,
                CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
                    HandshakeReason::NotYetValid
                }
                CertificateError::UnknownIssuer | CertificateError::BadSignature => HandshakeReason::Untrusted,
                _ => HandshakeReason::BadSvid,
            },
            TlsError::AlertReceived(_) => HandshakeReason::PeerAlert,
            _ => HandshakeReason::ProtocolError,
        };
        Self { reason, id: None, detail }
    }
}

/// How long a peer-supplied ID may be in a log line: a certificate may carry an ID of kilobytes.
const LOGGED_ID_MAX: usize = 256;

impl HandshakeFailure {
    /// (`peer.id`, `peer.claimed_id`) for the log line: the first only when our bundle vouches for the
    /// certificate, the second (shortened) when it merely claims an ID. "-" when absent.
    pub fn log_ids(&self) -> (&str, String) {
        match &self.id {
            Some(RefusedId::Vouched(id)) => (id.as_str(), "-".into()),
            Some(RefusedId::Claimed(id)) => {
                let s = id.as_str();
                let cut = (0..=LOGGED_ID_MAX.min(s.len())).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                ("-", if cut < s.len() { format!("{}...", &s[..cut]) } else { s.to_string() })
            }
            None => ("-", "-".into()),
        }
    }
}

/// The longest `detail` a refusal carries into its log line. The peer controls what goes in it (a URI SAN of
/// 10,000 bytes quotes itself whole), and one refusal must stay one readable line.
pub const MAX_DETAIL: usize = 512;

/// `detail`, cut at [`MAX_DETAIL`] bytes (on a character boundary) with the original length noted.
fn bounded(mut detail: String) -> String {
    if detail.len() > MAX_DETAIL {
        let total = detail.len();
        let mut cut = MAX_DETAIL;
        while !detail.is_char_boundary(cut) {
            cut -= 1;
        }
        detail.truncate(cut);
        detail.push_str(&format!("... ({total} bytes)"));
    }
    detail
}

#[cfg(test)]
mod tests {
    use super::*;
    use policy::{SpiffeId, SvidError, SvidRule};

    use crate::tls::verify::Refusal;

    #[test]
    fn a_refusal_quoting_a_huge_uri_san_stays_short() {
        let uri = format!("spiffe://example.org/{}", "a".repeat(10_000));
        let reason = SpiffeId::parse(&uri).expect_err("too long");
        let refusal = Refusal::Svid(SvidError::Rule(SvidRule::InvalidId { uri, reason }));
        let rejected = PeerRejected { refusal, id: None };
        let e =
            TlsError::InvalidCertificate(CertificateError::Other(rustls::OtherError(std::sync::Arc::new(rejected))));
        let failure = HandshakeFailure::from_tls(&e);
        assert_eq!(failure.reason, HandshakeReason::BadSvid);
        assert!(failure.detail.len() <= MAX_DETAIL + 32, "{} bytes", failure.detail.len());
        assert!(failure.detail.ends_with("bytes)"), "{}", failure.detail);
    }

    #[test]
    fn bounded_cuts_on_a_character_boundary() {
        let text = "é".repeat(MAX_DETAIL);
        let cut = bounded(text);
        assert!(cut.starts_with('é') && cut.ends_with(&format!("({} bytes)", 2 * MAX_DETAIL)));
        assert_eq!(bounded("short".into()), "short");
    }
}
