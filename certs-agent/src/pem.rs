//! PEM certificate lists (chains and bundles): parsed with `rustls-pki-types`, written by [`encode_certificate`]
//! in one canonical form (64-column base64, `\n` line ends), so that files derived from the same certificates
//! are byte-for-byte equal and a comparison can tell whether a file is up to date.

use base64::{Engine, engine::general_purpose::STANDARD};
use rustls_pki_types::{CertificateDer, pem::PemObject};

/// Why a PEM text did not yield certificates.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PemError {
    #[error("no CERTIFICATE block found")]
    NoCertificates,
    #[error("malformed PEM: {0}")]
    Malformed(String),
}

/// Every `CERTIFICATE` block of `pem`, in file order (other block types are skipped).
pub fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::Malformed(e.to_string()))?;
    if certs.is_empty() {
        return Err(PemError::NoCertificates);
    }
    Ok(certs)
}

/// One `CERTIFICATE` PEM block for `der`, ending with a newline.
pub fn encode_certificate(der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        // base64 output is ASCII, so every chunk is valid UTF-8.
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// The PEM text of several certificates, in order.
pub fn encode_certificates<'a>(ders: impl IntoIterator<Item = &'a CertificateDer<'a>>) -> String {
    ders.into_iter().map(|der| encode_certificate(der)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_round_trips_and_wraps_at_64_columns() {
        let der: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let text = encode_certificate(&der);
        assert!(text.lines().all(|l| l.len() <= 64), "{text}");
        assert!(text.ends_with("-----END CERTIFICATE-----\n"));
        let back = certificates(text.as_bytes()).unwrap();
        assert_eq!(back.len(), 1);
        assert_eq!(back[0].as_ref(), der.as_slice());
        let two = encode_certificates([&back[0], &back[0]]);
        assert_eq!(certificates(two.as_bytes()).unwrap().len(), 2);
    }

    #[test]
    fn no_certificates_is_an_error() {
        assert_eq!(certificates(b"hello"), Err(PemError::NoCertificates));
    }
}
