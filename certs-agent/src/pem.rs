//! PEM certificate lists (chains and bundles), parsed with `rustls-pki-types`.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_certificates_is_an_error() {
        assert_eq!(certificates(b"hello"), Err(PemError::NoCertificates));
    }
}
