//! What a certificate says, read once with `x509-parser` into plain values.
//!
//! Shared by the CA loader (is `ca.pem` a usable root?), `inspect` (print everything) and the tests (check
//! what we issued). It only reports; judging what is acceptable is the caller's job.

use time::OffsetDateTime;
use x509_parser::{certificate::X509Certificate, extensions::GeneralName, prelude::FromDer, public_key::PublicKey};

use crate::serial::Serial;

/// The facts of one certificate that certs-agent cares about.
#[derive(Debug, Clone)]
pub struct CertFacts {
    pub subject: String,
    pub issuer: String,
    pub serial: Serial,
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    /// DER SubjectPublicKeyInfo, to match a private key against the certificate.
    pub spki_der: Vec<u8>,
    /// e.g. `ECDSA P-256`, `RSA 2048`.
    pub key_type: String,
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    /// Whether the SAN extension is critical (None when absent).
    pub san_critical: Option<bool>,
    /// `cA` from basic constraints; None when the extension is absent.
    pub is_ca: Option<bool>,
    pub key_usage: Option<KeyUsageFacts>,
    pub ext_key_usage: Option<ExtKeyUsageFacts>,
    /// Whether a name constraints extension is present (certs-agent never issues one).
    pub has_name_constraints: bool,
}

/// The key usage extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsageFacts {
    pub critical: bool,
    /// Set bits by RFC 5280 name, e.g. `digitalSignature`.
    pub names: Vec<&'static str>,
}

/// The extended key usage extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtKeyUsageFacts {
    pub critical: bool,
    /// Purposes by RFC 5280 name (`serverAuth`, `clientAuth`, ...), unknown ones as dotted OIDs.
    pub names: Vec<String>,
}

impl KeyUsageFacts {
    pub fn has(&self, name: &str) -> bool {
        self.names.contains(&name)
    }
}

impl ExtKeyUsageFacts {
    pub fn has(&self, name: &str) -> bool {
        self.names.iter().any(|n| n == name)
    }
}

/// Parses one DER certificate. The error is x509-parser's reason.
pub fn parse(der: &[u8]) -> Result<CertFacts, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    let (uri_sans, dns_sans, san_critical) = sans(&cert)?;
    Ok(CertFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial: Serial::from_be_bytes(cert.raw_serial()),
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        spki_der: cert.public_key().raw.to_vec(),
        key_type: key_type(&cert),
        uri_sans,
        dns_sans,
        san_critical,
        is_ca: cert.basic_constraints().map_err(|e| format!("basic constraints: {e}"))?.map(|bc| bc.value.ca),
        key_usage: key_usage(&cert)?,
        ext_key_usage: ext_key_usage(&cert)?,
        has_name_constraints: cert.name_constraints().map_err(|e| format!("name constraints: {e}"))?.is_some(),
    })
}

/// URI SANs, DNS SANs, and whether the extension is critical (None when absent).
type Sans = (Vec<String>, Vec<String>, Option<bool>);

fn sans(cert: &X509Certificate<'_>) -> Result<Sans, String> {
    let Some(ext) = cert.subject_alternative_name().map_err(|e| format!("subject alternative name: {e}"))? else {
        return Ok((Vec::new(), Vec::new(), None));
    };
    let (mut uris, mut dns) = (Vec::new(), Vec::new());
    for name in &ext.value.general_names {
        match name {
            GeneralName::URI(u) => uris.push((*u).to_owned()),
            GeneralName::DNSName(d) => dns.push((*d).to_owned()),
            _ => {}
        }
    }
    Ok((uris, dns, Some(ext.critical)))
}

fn key_usage(cert: &X509Certificate<'_>) -> Result<Option<KeyUsageFacts>, String> {
    let Some(ext) = cert.key_usage().map_err(|e| format!("key usage: {e}"))? else {
        return Ok(None);
    };
    let ku = ext.value;
    let bits = [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "contentCommitment"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ];
    Ok(Some(KeyUsageFacts {
        critical: ext.critical,
        names: bits.iter().filter(|(set, _)| *set).map(|(_, name)| *name).collect(),
    }))
}

fn ext_key_usage(cert: &X509Certificate<'_>) -> Result<Option<ExtKeyUsageFacts>, String> {
    let Some(ext) = cert.extended_key_usage().map_err(|e| format!("extended key usage: {e}"))? else {
        return Ok(None);
    };
    let eku = ext.value;
    let known = [
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
        (eku.any, "anyExtendedKeyUsage"),
    ];
    let mut names: Vec<String> = known.iter().filter(|(set, _)| *set).map(|(_, name)| (*name).to_owned()).collect();
    names.extend(eku.other.iter().map(|oid| oid.to_id_string()));
    Ok(Some(ExtKeyUsageFacts { critical: ext.critical, names }))
}

fn key_type(cert: &X509Certificate<'_>) -> String {
    let spki = cert.public_key();
    let alg = spki.algorithm.algorithm.to_id_string();
    match alg.as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|oid| oid.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".to_owned(),
                Some("1.3.132.0.34") => "ECDSA P-384".to_owned(),
                Some("1.3.132.0.35") => "ECDSA P-521".to_owned(),
                Some(other) => format!("ECDSA (curve {other})"),
                None => "ECDSA (unknown curve)".to_owned(),
            }
        }
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(key @ PublicKey::RSA(_)) => format!("RSA {}", key.key_size()),
            _ => "RSA (unparsable key)".to_owned(),
        },
        "1.3.101.112" => "Ed25519".to_owned(),
        "1.3.101.113" => "Ed448".to_owned(),
        other => format!("unknown ({other})"),
    }
}
