//! What a human wants to see about a certificate (`certs-agent inspect`), gathered in one parse.
//!
//! Nothing here decides trust: [`super::TrustBundle::verify`] does. These are facts for display.

use rustls_pki_types::CertificateDer;
use x509_parser::{extensions::GeneralName, public_key::PublicKey};

use super::{SvidError, leaf::Leaf};

/// Display facts about one certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafDetails {
    /// The serial number's value as lowercase hex without separators or DER sign byte (as openssl shows it).
    pub serial_hex: String,
    /// RFC 4514-style issuer and subject names (may be empty: SVIDs often have no subject).
    pub issuer: String,
    pub subject: String,
    /// Validity bounds in unix seconds (negative before 1970, which only a broken issuer produces).
    pub not_before: i64,
    pub not_after: i64,
    /// The subject public key algorithm, e.g. `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub key_algorithm: String,
    /// Every URI SAN in certificate order (an X.509-SVID has exactly one).
    pub uri_sans: Vec<String>,
    /// Every DNS SAN in certificate order (allowed, never used for identity).
    pub dns_sans: Vec<String>,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// The key usage extension, when present.
    pub key_usage: Option<KeyUsageDetails>,
    /// Extended key usage purposes (`serverAuth`, `clientAuth`, or a dotted OID), when the extension is present.
    pub extended_key_usage: Option<Vec<String>>,
}

/// The key usage extension as displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsageDetails {
    /// X.509-SVID requires key usage to be critical; shown so `inspect` can point out when it is not.
    pub critical: bool,
    /// The set bits by RFC 5280 name (`digitalSignature`, `keyCertSign`, ...), in bit order.
    pub usages: Vec<&'static str>,
}

/// Reads the display facts of `cert` (any certificate, not only a valid SVID). Fails only when it does
/// not parse.
pub fn leaf_details(cert: &CertificateDer<'_>) -> Result<LeafDetails, SvidError> {
    let leaf = Leaf::parse(cert.as_ref())?;
    let validity = leaf.cert.validity();
    let mut uri_sans = Vec::new();
    let mut dns_sans = Vec::new();
    for name in leaf.subject_alt_names()? {
        match name {
            GeneralName::URI(uri) => uri_sans.push(uri.to_owned()),
            GeneralName::DNSName(dns) => dns_sans.push(dns.to_owned()),
            _ => {}
        }
    }
    let key_usage = leaf.key_usage()?.map(|ext| KeyUsageDetails {
        critical: ext.critical,
        usages: KEY_USAGE_NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| ext.value.flags & (1 << bit) != 0)
            .map(|(_, name)| *name)
            .collect(),
    });
    let extended_key_usage = leaf.extended_key_usage()?.map(|ext| {
        let eku = ext.value;
        let known = [
            (eku.any, "anyExtendedKeyUsage"),
            (eku.server_auth, "serverAuth"),
            (eku.client_auth, "clientAuth"),
            (eku.code_signing, "codeSigning"),
            (eku.email_protection, "emailProtection"),
            (eku.time_stamping, "timeStamping"),
            (eku.ocsp_signing, "OCSPSigning"),
        ];
        let known = known.into_iter().filter(|(set, _)| *set).map(|(_, name)| name.to_owned());
        known.chain(eku.other.iter().map(|oid| oid.to_id_string())).collect()
    });
    Ok(LeafDetails {
        serial_hex: serial_hex(leaf.cert.raw_serial()),
        issuer: leaf.cert.issuer().to_string(),
        subject: leaf.cert.subject().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        key_algorithm: key_algorithm(&leaf),
        uri_sans,
        dns_sans,
        is_ca: leaf.is_ca()?,
        key_usage,
        extended_key_usage,
    })
}

/// `raw` is a DER INTEGER's content: leading zero bytes only carry the sign.
fn serial_hex(raw: &[u8]) -> String {
    let significant = raw.iter().position(|&b| b != 0).map_or(&raw[raw.len().saturating_sub(1)..], |i| &raw[i..]);
    hex::encode(significant)
}

/// RFC 5280 §4.2.1.3 names, indexed by bit (x509-parser numbers bit 0 = digitalSignature).
const KEY_USAGE_NAMES: [&str; 9] = [
    "digitalSignature",
    "nonRepudiation",
    "keyEncipherment",
    "dataEncipherment",
    "keyAgreement",
    "keyCertSign",
    "cRLSign",
    "encipherOnly",
    "decipherOnly",
];

fn key_algorithm(leaf: &Leaf<'_>) -> String {
    let spki = leaf.cert.public_key();
    let oid = spki.algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.10045.2.1" => {
            let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok()).map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ECDSA P-256".into(),
                Some("1.3.132.0.34") => "ECDSA P-384".into(),
                Some("1.3.132.0.35") => "ECDSA P-521".into(),
                Some(other) => format!("ECDSA (curve {other})"),
                None => "ECDSA".into(),
            }
        }
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
            _ => "RSA".into(),
        },
        "1.2.840.113549.1.1.10" => "RSA-PSS".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        other => format!("unknown ({other})"),
    }
}
