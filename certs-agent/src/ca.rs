//! The trust domain's root CA as kept on disk: `ca.pem`, `ca_key.pem` (0600) and `bundle.pem`.
//!
//! `bundle.pem` lists every root currently trusted. Today it holds just the one root; CA rotation (a later
//! issue) will put the old and the new root in it side by side, which is why it is a file of its own rather
//! than a copy of `ca.pem` made at issue time.
//!
//! The root never carries name constraints: rustls-webpki rejects every chain that contains a URI name
//! constraint (RUSTSEC-2026-0098), and SPIFFE only defines URI ones.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use policy::{SpiffeId, TrustDomain};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, string::Ia5String,
};
use rustls_pki_types::CertificateDer;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    cert_facts::{self, CertFacts},
    files::{self, CERT_MODE, FsError, KEY_MODE},
    pem,
    serial::{Serial, SerialError},
    validity,
};

/// File names inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca_key.pem";
pub const BUNDLE_FILE: &str = "bundle.pem";

/// Why a CA could not be created or loaded. Every variant names the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("a CA already exists: {} is present (refusing to overwrite it)", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("CA file {} is missing (create the CA with `certs-agent ca init`)", path.display())]
    Missing { path: PathBuf },
    #[error("CA certificate {} is unusable: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("CA key {} is unreadable: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("CA key {} has mode {mode:04o}: it must not be accessible by group or others (chmod 600)", path.display())]
    KeyTooOpen { path: PathBuf, mode: u32 },
    #[error("CA key {} does not match the certificate {} (different public keys)", key.display(), cert.display())]
    KeyMismatch { key: PathBuf, cert: PathBuf },
    #[error("trust bundle {} is unusable: {reason}", path.display())]
    BadBundle { path: PathBuf, reason: String },
    #[error("trust bundle {} does not contain the CA certificate {}: SVIDs it signs would not verify", bundle.display(), cert.display())]
    CertNotInBundle { bundle: PathBuf, cert: PathBuf },
    #[error("CA lifetime {} is too long to represent in a certificate", crate::ttl::human(*ttl))]
    TtlTooLong { ttl: Duration },
    #[error("cannot generate the root certificate: {0}")]
    Generate(String),
    #[error(transparent)]
    Serial(#[from] SerialError),
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// The paths of a CA directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaDir {
    dir: PathBuf,
}

impl CaDir {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        CaDir { dir: dir.into() }
    }
    pub fn path(&self) -> &Path {
        &self.dir
    }
    pub fn cert(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }
    pub fn key(&self) -> PathBuf {
        self.dir.join(CA_KEY_FILE)
    }
    pub fn bundle(&self) -> PathBuf {
        self.dir.join(BUNDLE_FILE)
    }
}

/// A loaded, consistent CA: its certificate, the matching key, and the bundle that trusts it.
pub struct Ca {
    dir: CaDir,
    trust_domain: TrustDomain,
    cert_der: CertificateDer<'static>,
    facts: CertFacts,
    key: KeyPair,
    bundle_pem: String,
    bundle_len: usize,
}

impl std::fmt::Debug for Ca {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("trust_domain", &self.trust_domain)
            .field("serial", &self.facts.serial)
            .field("not_after", &self.facts.not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a self-signed ECDSA P-256 root for `trust_domain` valid from `now` (back-dated by
    /// [`validity::BACKDATE`]) for `ttl`, and writes it to `dir` (created with mode 0700 if missing).
    /// Refuses if any of the three CA files already exists.
    pub fn init(dir: &Path, trust_domain: &TrustDomain, ttl: Duration, now: OffsetDateTime) -> Result<Ca, CaError> {
        let ca_dir = CaDir::new(dir);
        files::create_private_dir(dir)?;
        for path in [ca_dir.key(), ca_dir.cert(), ca_dir.bundle()] {
            if path.symlink_metadata().is_ok() {
                return Err(CaError::AlreadyExists { path });
            }
        }
        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::Generate(e.to_string()))?;
        let params = root_params(trust_domain, ttl, now, &Serial::random()?)?;
        let cert = params.self_signed(&key).map_err(|e| CaError::Generate(e.to_string()))?;
        // The key goes first: `write_new_file` cannot overwrite, so of two concurrent `ca init`s only the one
        // that created the key goes on to write a certificate.
        let key_pem = key.serialize_pem();
        for (path, contents, mode) in [
            (ca_dir.key(), key_pem.as_str(), KEY_MODE),
            (ca_dir.cert(), cert.pem().as_str(), CERT_MODE),
            (ca_dir.bundle(), cert.pem().as_str(), CERT_MODE),
        ] {
            files::write_new_file(&path, contents.as_bytes(), mode).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => CaError::AlreadyExists { path: path.clone() },
                _ => CaError::Fs(e),
            })?;
        }
        Ca::load(dir)
    }

    /// Loads the CA in `dir`, checking that the certificate is a SPIFFE root (CA, one `spiffe://<td>` URI SAN),
    /// that the key is private to its owner and matches the certificate, and that the bundle trusts it.
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let ca_dir = CaDir::new(dir);
        let (cert_path, key_path, bundle_path) = (ca_dir.cert(), ca_dir.key(), ca_dir.bundle());

        let cert_pem = read_ca_file(&cert_path)?;
        let bad_cert = |reason: String| CaError::BadCertificate { path: cert_path.clone(), reason };
        let cert_der = pem::certificates(&cert_pem).map_err(|e| bad_cert(e.to_string()))?.swap_remove(0);
        let facts = cert_facts::parse(&cert_der).map_err(&bad_cert)?;
        let trust_domain = root_trust_domain(&facts).map_err(&bad_cert)?;

        let mode = files::mode_of(&key_path).map_err(|e| missing_or(e, &key_path))?;
        if files::is_group_or_world_accessible(mode) {
            return Err(CaError::KeyTooOpen { path: key_path, mode });
        }
        let key_pem = read_ca_file(&key_path)?;
        let key = std::str::from_utf8(&key_pem)
            .map_err(|e| e.to_string())
            .and_then(|text| KeyPair::from_pem(text).map_err(|e| e.to_string()))
            .map_err(|reason| CaError::BadKey { path: key_path.clone(), reason })?;
        if key.subject_public_key_info() != facts.spki_der {
            return Err(CaError::KeyMismatch { key: key_path, cert: cert_path });
        }

        let bundle_bytes = read_ca_file(&bundle_path)?;
        let bad_bundle = |reason: String| CaError::BadBundle { path: bundle_path.clone(), reason };
        let roots = pem::certificates(&bundle_bytes).map_err(|e| bad_bundle(e.to_string()))?;
        if !roots.iter().any(|root| root == &cert_der) {
            return Err(CaError::CertNotInBundle { bundle: bundle_path, cert: cert_path });
        }
        let bundle_pem = String::from_utf8(bundle_bytes).map_err(|_| bad_bundle("not ASCII PEM text".into()))?;

        Ok(Ca { dir: ca_dir, trust_domain, cert_der, facts, key, bundle_len: roots.len(), bundle_pem })
    }

    pub fn dir(&self) -> &CaDir {
        &self.dir
    }
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
    pub fn facts(&self) -> &CertFacts {
        &self.facts
    }
    pub fn serial(&self) -> &Serial {
        &self.facts.serial
    }
    pub fn not_before(&self) -> OffsetDateTime {
        self.facts.not_before
    }
    pub fn not_after(&self) -> OffsetDateTime {
        self.facts.not_after
    }
    /// The PEM text of `bundle.pem`: every root currently trusted.
    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
    }
    /// How many roots `bundle.pem` holds.
    pub fn bundle_len(&self) -> usize {
        self.bundle_len
    }
    /// How long the CA certificate stays valid after `now` (zero once expired).
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        validity::remaining(now, self.facts.not_after)
    }

    /// An rcgen signer for leaves under this root (issuer name and key identifier taken from the certificate).
    pub(crate) fn signer(&self) -> Result<rcgen::Issuer<'static, &KeyPair>, rcgen::Error> {
        rcgen::Issuer::from_ca_cert_der(&self.cert_der, &self.key)
    }
}

/// The certificate template of a root: CA (critical basic constraints, no path length limit, so a later
/// intermediate stays possible), keyCertSign + cRLSign (critical), URI SAN `spiffe://<td>`, no name
/// constraints, a subject that tells roots of the same trust domain apart.
fn root_params(
    trust_domain: &TrustDomain,
    ttl: Duration,
    now: OffsetDateTime,
    serial: &Serial,
) -> Result<CertificateParams, CaError> {
    let now = validity::whole_seconds(now);
    let not_after = validity::add(now, ttl).ok_or(CaError::TtlTooLong { ttl })?;
    let stamp = now.format(&Rfc3339).map_err(|e| CaError::Generate(e.to_string()))?;
    let mut cn = format!("{trust_domain} root {stamp}");
    if cn.len() > 64 {
        // X.520 caps commonName at 64 characters; the trust domain is in the SAN anyway.
        cn = format!("root {stamp}");
    }
    let mut name = DistinguishedName::new();
    name.push(DnType::OrganizationName, "certs-agent");
    name.push(DnType::CommonName, cn);
    let uri = Ia5String::try_from(trust_domain.id().as_str()).map_err(|e| CaError::Generate(e.to_string()))?;

    let mut params = CertificateParams::default();
    params.not_before = now - validity::BACKDATE;
    params.not_after = not_after;
    params.serial_number = Some(serial.to_rcgen());
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![SanType::URI(uri)];
    params.name_constraints = None;
    Ok(params)
}

/// The trust domain a root stands for: it must be a CA whose single URI SAN is `spiffe://<td>` (no path).
fn root_trust_domain(facts: &CertFacts) -> Result<TrustDomain, String> {
    if facts.is_ca != Some(true) {
        return Err("not a CA certificate (basic constraints CA=true missing)".into());
    }
    if !facts.key_usage.as_ref().is_some_and(|ku| ku.has("keyCertSign")) {
        return Err("key usage lacks keyCertSign".into());
    }
    let [uri] = facts.uri_sans.as_slice() else {
        return Err(format!("expected exactly one URI SAN spiffe://<trust-domain>, found {}", facts.uri_sans.len()));
    };
    let id = SpiffeId::parse(uri).map_err(|e| format!("URI SAN {uri:?} is not a SPIFFE ID: {e}"))?;
    if id.has_path() {
        return Err(format!("URI SAN {id} has a path; a CA's SPIFFE ID is just spiffe://<trust-domain>"));
    }
    Ok(id.trust_domain())
}

fn read_ca_file(path: &Path) -> Result<Vec<u8>, CaError> {
    files::read(path).map_err(|e| missing_or(e, path))
}

fn missing_or(e: FsError, path: &Path) -> CaError {
    match e.kind() {
        io::ErrorKind::NotFound => CaError::Missing { path: path.to_path_buf() },
        _ => CaError::Fs(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{fs, os::unix::fs::PermissionsExt};

    const DAY: Duration = Duration::from_secs(86_400);

    fn td() -> TrustDomain {
        TrustDomain::parse("example.org").unwrap()
    }

    #[test]
    fn init_writes_a_spiffe_root() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let now = OffsetDateTime::now_utc();
        let ca = Ca::init(&dir, &td(), DAY, now).unwrap();
        assert_eq!(ca.trust_domain(), &td());

        let facts = cert_facts::parse(ca.cert_der()).unwrap();
        assert_eq!(facts.is_ca, Some(true));
        assert_eq!(facts.uri_sans, vec!["spiffe://example.org".to_owned()]);
        assert!(facts.dns_sans.is_empty());
        assert!(!facts.has_name_constraints);
        let ku = facts.key_usage.unwrap();
        assert!(ku.critical);
        assert_eq!(ku.names, vec!["keyCertSign", "cRLSign"]);
        assert!(facts.ext_key_usage.is_none());
        assert_eq!(facts.key_type, "ECDSA P-256");
        assert!(facts.subject.contains("O=certs-agent"), "{}", facts.subject);
        assert!(facts.subject.contains("example.org root "), "{}", facts.subject);
        assert_eq!(facts.subject, facts.issuer);
        assert_eq!(facts.not_before, validity::whole_seconds(now) - validity::BACKDATE);
        assert_eq!(facts.not_after, validity::whole_seconds(now) + DAY);
        assert_eq!(facts.serial.as_bytes()[0] & 0x80, 0);

        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(files::mode_of(&dir.join(CA_KEY_FILE)).unwrap(), 0o600);
        assert_eq!(fs::read(dir.join(BUNDLE_FILE)).unwrap(), fs::read(dir.join(CA_CERT_FILE)).unwrap());
        assert_eq!(ca.bundle_len(), 1);
    }

    #[test]
    fn basic_constraints_of_the_root_are_critical() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        let (_, cert) = x509_parser::parse_x509_certificate(ca.cert_der()).unwrap();
        let bc = cert.basic_constraints().unwrap().unwrap();
        assert!(bc.critical);
        assert!(bc.value.ca);
    }

    #[test]
    fn init_refuses_to_overwrite_and_names_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        Ca::init(tmp.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        let before = fs::read(tmp.path().join(CA_KEY_FILE)).unwrap();
        let err = Ca::init(tmp.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(err, CaError::AlreadyExists { .. }), "{err}");
        assert!(err.to_string().contains("ca_key.pem"), "{err}");
        assert_eq!(fs::read(tmp.path().join(CA_KEY_FILE)).unwrap(), before);

        // Any one of the three files is enough to refuse.
        let other = tempfile::tempdir().unwrap();
        fs::write(other.path().join(BUNDLE_FILE), "x").unwrap();
        let err = Ca::init(other.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap_err();
        assert!(err.to_string().contains("bundle.pem"), "{err}");
        assert!(!other.path().join(CA_KEY_FILE).exists());
    }

    #[test]
    fn load_reports_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Ca::load(tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn load_refuses_a_key_that_does_not_match() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Ca::init(a.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        Ca::init(b.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        fs::remove_file(a.path().join(CA_KEY_FILE)).unwrap();
        fs::copy(b.path().join(CA_KEY_FILE), a.path().join(CA_KEY_FILE)).unwrap();
        let err = Ca::load(a.path()).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn load_refuses_an_unreadable_or_open_key() {
        let tmp = tempfile::tempdir().unwrap();
        Ca::init(tmp.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        let key = tmp.path().join(CA_KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Ca::load(tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::KeyTooOpen { mode: 0o644, .. }), "{err}");

        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&key, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
        let err = Ca::load(tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::BadKey { .. }), "{err}");
    }

    #[test]
    fn load_refuses_a_bundle_without_the_ca() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Ca::init(a.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        Ca::init(b.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        fs::copy(b.path().join(BUNDLE_FILE), a.path().join(BUNDLE_FILE)).unwrap();
        let err = Ca::load(a.path()).unwrap_err();
        assert!(matches!(err, CaError::CertNotInBundle { .. }), "{err}");
    }

    #[test]
    fn long_trust_domains_keep_the_common_name_short() {
        let long = TrustDomain::parse(&format!("{}.example.org", "a".repeat(60))).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let ca = Ca::init(tmp.path(), &long, DAY, OffsetDateTime::now_utc()).unwrap();
        assert_eq!(ca.trust_domain(), &long);
        assert!(ca.facts().subject.contains("CN=root "), "{}", ca.facts().subject);
    }

    #[test]
    fn absurd_ttl_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let err =
            Ca::init(tmp.path(), &td(), Duration::from_secs(u64::MAX / 4), OffsetDateTime::now_utc()).unwrap_err();
        assert!(matches!(err, CaError::TtlTooLong { .. }), "{err}");
        // Nothing was written.
        assert!(!tmp.path().join(CA_KEY_FILE).exists());
    }
}
