//! What a certificate says, gathered in one parse: for people (`certs-agent inspect`, the sidecar's
//! `/status`) and for the checks certs-agent makes on its own certificates (is `ca.pem` a usable root, does a
//! key match it).
//!
//! This is the project's one reading of a certificate's fields, with the same parser and the same strictness
//! as the SPIFFE rules ([`super::leaf`]): trailing bytes after the certificate and duplicate extensions are
//! malformed. Nothing here decides trust: [`super::TrustBundle::verify`] does.

use rustls_pki_types::CertificateDer;
use x509_parser::{extensions::GeneralName, public_key::PublicKey};

use super::{SvidError, leaf::Leaf};

/// What one certificate says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafDetails {
    /// The serial number's value as lowercase hex without separators or DER sign byte (as openssl shows it).
    pub serial_hex: String,
    /// The same value as big-endian bytes (without the DER sign byte).
    pub serial: Vec<u8>,
    /// RFC 4514-style issuer and subject names (may be empty: SVIDs often have no subject).
    pub issuer: String,
    pub subject: String,
    /// Validity bounds in unix seconds (negative before 1970, which only a broken issuer produces).
    pub not_before: i64,
    pub not_after: i64,
    /// The subject public key algorithm, e.g. `ECDSA P-256`, `RSA 2048`, `Ed25519`.
    pub key_algorithm: String,
    /// The DER SubjectPublicKeyInfo, to match a private key against the certificate.
    pub spki_der: Vec<u8>,
    /// Every URI SAN in certificate order (an X.509-SVID has exactly one).
    pub uri_sans: Vec<String>,
    /// Every DNS SAN in certificate order (allowed, never used for identity).
    pub dns_sans: Vec<String>,
    /// Whether the subjectAltName extension is critical; None when it is absent.
    pub san_critical: Option<bool>,
    /// basicConstraints CA flag (false when the extension is absent).
    pub is_ca: bool,
    /// Whether the basicConstraints extension is present at all.
    pub has_basic_constraints: bool,
    /// The key usage extension, when present.
    pub key_usage: Option<KeyUsageDetails>,
    /// The extended key usage extension, when present.
    pub extended_key_usage: Option<ExtendedKeyUsageDetails>,
    /// Whether a name constraints extension is present (certs-agent never issues one; rustls-webpki rejects
    /// URI name constraints).
    pub has_name_constraints: bool,
}

/// The key usage extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsageDetails {
    /// X.509-SVID requires key usage to be critical; shown so `inspect` can point out when it is not.
    pub critical: bool,
    /// The set bits by RFC 5280 name (`digitalSignature`, `keyCertSign`, ...), in bit order.
    pub usages: Vec<&'static str>,
}

/// The extended key usage extension.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtendedKeyUsageDetails {
    pub critical: bool,
    /// Purposes by RFC 5280 name (`serverAuth`, `clientAuth`, ...), unknown ones as dotted OIDs.
    pub purposes: Vec<String>,
}

impl KeyUsageDetails {
    /// Whether the bit named `usage` (RFC 5280 name) is set.
    pub fn has(&self, usage: &str) -> bool {
        self.usages.contains(&usage)
    }
}

impl ExtendedKeyUsageDetails {
    /// Whether `purpose` (RFC 5280 name or dotted OID) is listed.
    pub fn has(&self, purpose: &str) -> bool {
        self.purposes.iter().any(|p| p == purpose)
    }
}

/// The time window in which every certificate of a presented chain (the leaf and its intermediates; trust
/// anchors carry no validity for webpki) is inside its own validity: `[max notBefore, min notAfter]`, unix
/// seconds. A chain that verified once stays verifiable exactly inside this window, which is what lets a
/// cache of verified chains ([`super::TrustBundle::verify`] results) answer without redoing the signatures.
pub fn chain_validity(
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Result<(i64, i64), SvidError> {
    let mut window = (i64::MIN, i64::MAX);
    for cert in std::iter::once(leaf).chain(intermediates) {
        let parsed = Leaf::parse(cert.as_ref())?;
        let validity = parsed.cert.validity();
        window.0 = window.0.max(validity.not_before.timestamp());
        window.1 = window.1.min(validity.not_after.timestamp());
    }
    Ok(window)
}

/// Reads what `cert` says (any certificate, not only a valid SVID). Fails only when it is malformed.
pub fn leaf_details(cert: &CertificateDer<'_>) -> Result<LeafDetails, SvidError> {
    let leaf = Leaf::parse(cert.as_ref())?;
    let validity = leaf.cert.validity();
    let san = leaf.subject_alt_name()?;
    let mut uri_sans = Vec::new();
    let mut dns_sans = Vec::new();
    for name in san.iter().flat_map(|ext| &ext.value.general_names) {
        match name {
            GeneralName::URI(uri) => uri_sans.push((*uri).to_owned()),
            GeneralName::DNSName(dns) => dns_sans.push((*dns).to_owned()),
            _ => {}
        }
    }
    let basic_constraints = leaf.basic_constraints()?;
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
        let purposes = known.chain(eku.other.iter().map(|oid| oid.to_id_string())).collect();
        ExtendedKeyUsageDetails { critical: ext.critical, purposes }
    });
    let serial = significant(leaf.cert.raw_serial()).to_vec();
    Ok(LeafDetails {
        serial_hex: hex::encode(&serial),
        serial,
        issuer: leaf.cert.issuer().to_string(),
        subject: leaf.cert.subject().to_string(),
        not_before: validity.not_before.timestamp(),
        not_after: validity.not_after.timestamp(),
        key_algorithm: key_algorithm(&leaf),
        spki_der: leaf.cert.public_key().raw.to_vec(),
        uri_sans,
        dns_sans,
        san_critical: san.map(|ext| ext.critical),
        is_ca: basic_constraints.as_ref().is_some_and(|ext| ext.value.ca),
        has_basic_constraints: basic_constraints.is_some(),
        key_usage,
        extended_key_usage,
        has_name_constraints: leaf.name_constraints()?.is_some(),
    })
}

/// `raw` is a DER INTEGER's content: leading zero bytes only carry the sign (a zero keeps one byte).
fn significant(raw: &[u8]) -> &[u8] {
    raw.iter().position(|&b| b != 0).map_or(&raw[raw.len().saturating_sub(1)..], |i| &raw[i..])
}

/// RFC 5280 §4.2.1.3 names, indexed by bit (x509-parser numbers bit 0 = digitalSignature). Bit 1 has the
/// current name, `contentCommitment` (formerly nonRepudiation).
const KEY_USAGE_NAMES: [&str; 9] = [
    "digitalSignature",
    "contentCommitment",
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
                None => "ECDSA (unnamed curve)".into(),
            }
        }
        "1.2.840.113549.1.1.1" => match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => format!("RSA {}", rsa.key_size()),
            _ => "RSA (unparsable key)".into(),
        },
        "1.2.840.113549.1.1.10" => "RSA-PSS".into(),
        "1.3.101.112" => "Ed25519".into(),
        "1.3.101.113" => "Ed448".into(),
        other => format!("unknown ({other})"),
    }
}
