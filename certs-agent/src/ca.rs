//! The trust domain's root CA: the CA directory's layout, creating a root, and [`Ca`], a snapshot of the CA at
//! one instant (the root that signs, and every root trusted) taken by [`crate::store::CaStore`].
//!
//! # The CA directory
//!
//! ```text
//! CA_DIR/                          mode 0700
//!   ca.pem                         the root that signs SVIDs now                         (view)
//!   ca_key.pem                     its private key, 0600                                  (view)
//!   bundle.pem                     every root currently trusted, PEM, oldest first        (view)
//!   bundle.spiffe.json             the same roots as a SPIFFE bundle (JWKS)               (view)
//!   roots.json                     the root set: phases, activation times, issuance record (source of truth)
//!   roots/<serial>.pem             each root's certificate                                (source of truth)
//!   roots/<serial>_key.pem         each root's private key, 0600 (absent for trust-only roots)
//!   .lock                          flock(2)-ed by every certs-agent command using the directory
//! ```
//!
//! `roots.json` and `roots/` are what certs-agent reads. The four *views* are derived from them and rewritten
//! (atomically, under the lock) by any certs-agent command that finds them out of date, so `ca.pem`,
//! `ca_key.pem` and `bundle.pem` keep the meaning SPEC §1 gives them for other tools, through rotations. Edit
//! the root set with `ca rotate` / `ca retire`, not by editing the views.
//!
//! `ca init` writes `ca.pem`, `ca_key.pem` and `bundle.pem` (the layout of SPEC §1) and then *adopts* them:
//! the first certs-agent command that finds a directory without `roots.json` checks those three files (the
//! key private and matching the certificate, the bundle containing it), copies them into `roots/`, and writes
//! `roots.json`, with the roots of `bundle.pem` other than `ca.pem` as trust-only roots. A CA made with other
//! tools (`openssl`, an existing PKI) is adopted the same way.
//!
//! # Rotation (SPEC §1)
//!
//! 1. `ca rotate` makes root B, adds it to the set as *pending* and rewrites the bundle to A+B at once. It
//!    activates at `--activate-after` (default: when the last SVID issued so far expires, so every workload has
//!    renewed, and so fetched the A+B bundle, before any B-signed leaf exists).
//! 2. From then on every issuance is signed by B; activation is decided by the clock, with no write, so all
//!    issuers agree. `certs-agent run` notices the new bundle and the new signing root within a poll interval
//!    and re-issues at once.
//! 3. `ca retire` drops A from the bundle once every SVID A signed has expired (the issuance record in
//!    `roots.json` keeps, per root, the latest notAfter it signed), or at once with `--force`; it deletes A's
//!    key. Runs notice the new bundle and re-publish.
//!
//! Every root ever in the set is in the bundle, and a root leaves only when it has no live SVID, so the bundle
//! always overlaps the roots that signed live SVIDs.
//!
//! # Writes
//!
//! Every write is a temporary file fsync-ed then renamed over its name, then the directory fsync-ed, made under
//! the lock. `roots.json` is the commit point of a change: a crash before it leaves unreferenced files in
//! `roots/` (removed by the next command), a crash after it leaves stale views (rewritten by the next command).
//!
//! Roots never carry name constraints: rustls-webpki rejects every chain that contains a URI name constraint
//! (RUSTSEC-2026-0098), and SPIFFE only defines URI ones.

use std::{
    io,
    path::{Path, PathBuf},
    time::Duration,
};

use policy::{LeafDetails, SpiffeId, TrustDomain, svid};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, KeyPair, KeyUsagePurpose,
    PKCS_ECDSA_P256_SHA256, PublicKeyData, SanType, string::Ia5String,
};
use rustls_pki_types::CertificateDer;
use time::{OffsetDateTime, format_description::well_known::Rfc3339};

use crate::{
    files::{self, CERT_MODE, FsError, KEY_MODE},
    pem,
    serial::{Serial, SerialError},
    spiffe_bundle, validity,
};

/// File names inside a CA directory.
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca_key.pem";
pub const BUNDLE_FILE: &str = "bundle.pem";
pub const SPIFFE_BUNDLE_FILE: &str = "bundle.spiffe.json";
pub const ROOTS_FILE: &str = "roots.json";
pub const ROOTS_DIR: &str = "roots";
pub const LOCK_FILE: &str = ".lock";

/// Why a CA could not be created, loaded or changed. Every variant names the file concerned.
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
    #[error("root set {} is unusable: {reason}", path.display())]
    BadRootSet { path: PathBuf, reason: String },
    #[error("no root of {} signs at this time (every root is pending or trust-only)", path.display())]
    NoSigningRoot { path: PathBuf },
    #[error(
        "a rotation is already in progress: root {serial} starts signing at {} (run `certs-agent ca rotate` again after that)",
        validity::rfc3339(*activate_at)
    )]
    RotationInProgress { serial: String, activate_at: OffsetDateTime },
    #[error("--activate-after {} would activate the new root after it expires", crate::duration::human(*activate_after))]
    ActivatesAfterExpiry { activate_after: Duration },
    #[error("CA lifetime {} is too long to represent in a certificate", crate::duration::human(*ttl))]
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
    pub fn spiffe_bundle(&self) -> PathBuf {
        self.dir.join(SPIFFE_BUNDLE_FILE)
    }
    pub fn roots_file(&self) -> PathBuf {
        self.dir.join(ROOTS_FILE)
    }
    pub fn roots_dir(&self) -> PathBuf {
        self.dir.join(ROOTS_DIR)
    }
    pub fn root_cert(&self, serial: &str) -> PathBuf {
        self.roots_dir().join(format!("{serial}.pem"))
    }
    pub fn root_key(&self, serial: &str) -> PathBuf {
        self.roots_dir().join(format!("{serial}_key.pem"))
    }
    pub fn lock(&self) -> PathBuf {
        self.dir.join(LOCK_FILE)
    }
}

/// The CA at one instant: the root that signs (certificate and key) and every root trusted, with the bundle's
/// sequence number. Taken under the directory lock by [`crate::store::CaStore::snapshot`].
pub struct Ca {
    dir: CaDir,
    trust_domain: TrustDomain,
    cert_der: CertificateDer<'static>,
    facts: LeafDetails,
    key: KeyPair,
    bundle: Vec<CertificateDer<'static>>,
    bundle_pem: String,
    sequence: u64,
}

impl std::fmt::Debug for Ca {
    /// Never prints the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("dir", &self.dir)
            .field("trust_domain", &self.trust_domain)
            .field("serial", &self.facts.serial_hex)
            .field("not_after", &self.not_after())
            .field("bundle_len", &self.bundle.len())
            .field("sequence", &self.sequence)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// Creates a self-signed ECDSA P-256 root for `trust_domain` valid from `now` (back-dated by
    /// [`validity::BACKDATE`]) for `ttl`, writes `ca.pem`, `ca_key.pem` and `bundle.pem` into `dir` (created with
    /// mode 0700 if missing), and adopts them (see the module docs). Refuses if any CA file already exists.
    pub fn init(dir: &Path, trust_domain: &TrustDomain, ttl: Duration, now: OffsetDateTime) -> Result<Ca, CaError> {
        let ca_dir = CaDir::new(dir);
        files::create_private_dir(dir)?;
        for path in [ca_dir.key(), ca_dir.cert(), ca_dir.bundle(), ca_dir.roots_file()] {
            if path.symlink_metadata().is_ok() {
                return Err(CaError::AlreadyExists { path });
            }
        }
        let (cert_der, key) = new_root(trust_domain, ttl, now)?;
        let cert_pem = pem::encode_certificate(&cert_der);
        // The key goes first: `write_new_file` cannot overwrite, so of two concurrent `ca init`s only the one
        // that created the key goes on to write a certificate.
        let key_pem = key.serialize_pem();
        for (path, contents, mode) in [
            (ca_dir.key(), key_pem.as_str(), KEY_MODE),
            (ca_dir.cert(), cert_pem.as_str(), CERT_MODE),
            (ca_dir.bundle(), cert_pem.as_str(), CERT_MODE),
        ] {
            files::write_new_file(&path, contents.as_bytes(), mode).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => CaError::AlreadyExists { path: path.clone() },
                _ => CaError::Fs(e),
            })?;
        }
        Ca::load(dir)
    }

    /// The CA in `dir` as it stands now (adopting a directory without `roots.json`; see the module docs).
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        crate::store::CaStore::open(dir)?.snapshot(OffsetDateTime::now_utc())
    }

    pub(crate) fn from_parts(
        dir: CaDir,
        trust_domain: TrustDomain,
        signing: (CertificateDer<'static>, LeafDetails, KeyPair),
        bundle: Vec<CertificateDer<'static>>,
        sequence: u64,
    ) -> Ca {
        let (cert_der, facts, key) = signing;
        let bundle_pem = pem::encode_certificates(&bundle);
        Ca { dir, trust_domain, cert_der, facts, key, bundle, bundle_pem, sequence }
    }

    pub fn dir(&self) -> &CaDir {
        &self.dir
    }
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }
    /// The signing root's certificate.
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }
    /// What the signing root's certificate says.
    pub fn facts(&self) -> &LeafDetails {
        &self.facts
    }
    /// The signing root's serial.
    pub fn serial(&self) -> Serial {
        Serial::from_be_bytes(&self.facts.serial)
    }
    pub fn not_before(&self) -> OffsetDateTime {
        validity::from_unix(self.facts.not_before)
    }
    pub fn not_after(&self) -> OffsetDateTime {
        validity::from_unix(self.facts.not_after)
    }
    /// Every root currently trusted, oldest first.
    pub fn bundle(&self) -> &[CertificateDer<'static>] {
        &self.bundle
    }
    /// The PEM text of [`Ca::bundle`] (what `bundle.pem` holds).
    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
    }
    /// How many roots the bundle holds.
    pub fn bundle_len(&self) -> usize {
        self.bundle.len()
    }
    /// The bundle's version: `spiffe_sequence` of the SPIFFE bundle.
    pub fn sequence(&self) -> u64 {
        self.sequence
    }
    /// The bundle in SPIFFE bundle format.
    pub fn spiffe_bundle_json(&self) -> Result<String, spiffe_bundle::SpiffeBundleError> {
        spiffe_bundle::to_json(&self.bundle, self.sequence)
    }
    /// How long the signing root stays valid after `now` (zero once expired).
    pub fn remaining(&self, now: OffsetDateTime) -> Duration {
        validity::remaining(now, self.not_after())
    }

    /// An rcgen signer for leaves under the signing root (issuer name and key identifier from its certificate).
    pub(crate) fn signer(&self) -> Result<rcgen::Issuer<'static, &KeyPair>, rcgen::Error> {
        rcgen::Issuer::from_ca_cert_der(&self.cert_der, &self.key)
    }
}

/// A new self-signed root for `trust_domain`: its certificate and key.
pub(crate) fn new_root(
    trust_domain: &TrustDomain,
    ttl: Duration,
    now: OffsetDateTime,
) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| CaError::Generate(e.to_string()))?;
    let params = root_params(trust_domain, ttl, now, &Serial::random()?)?;
    let cert = params.self_signed(&key).map_err(|e| CaError::Generate(e.to_string()))?;
    Ok((cert.der().clone(), key))
}

/// The certificate template of a root: CA (critical basic constraints, no path length limit, so a later
/// intermediate stays possible), keyCertSign + cRLSign (critical), URI SAN `spiffe://<td>`, no name
/// constraints, a subject that tells roots of the same trust domain apart (creation time and serial prefix).
fn root_params(
    trust_domain: &TrustDomain,
    ttl: Duration,
    now: OffsetDateTime,
    serial: &Serial,
) -> Result<CertificateParams, CaError> {
    let now = validity::whole_seconds(now);
    let not_after = validity::add(now, ttl).ok_or(CaError::TtlTooLong { ttl })?;
    let stamp = now.format(&Rfc3339).map_err(|e| CaError::Generate(e.to_string()))?;
    let tag: String = serial.to_hex().chars().take(8).collect();
    let mut cn = format!("{trust_domain} root {stamp} {tag}");
    if cn.len() > 64 {
        // X.520 caps commonName at 64 characters; the trust domain is in the SAN anyway.
        cn = format!("root {stamp} {tag}");
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

/// Parses a root certificate file's first certificate and checks it is a SPIFFE root; returns it, what it says
/// and its trust domain.
pub(crate) fn parse_root(
    path: &Path,
    bytes: &[u8],
) -> Result<(CertificateDer<'static>, LeafDetails, TrustDomain), CaError> {
    let bad_cert = |reason: String| CaError::BadCertificate { path: path.to_path_buf(), reason };
    let der = pem::certificates(bytes).map_err(|e| bad_cert(e.to_string()))?.swap_remove(0);
    let facts = svid::leaf_details(&der).map_err(|e| bad_cert(e.to_string()))?;
    let trust_domain = root_trust_domain(&facts).map_err(&bad_cert)?;
    Ok((der, facts, trust_domain))
}

/// The trust domain a root stands for: it must be a CA whose single URI SAN is `spiffe://<td>` (no path).
pub(crate) fn root_trust_domain(facts: &LeafDetails) -> Result<TrustDomain, String> {
    if !facts.is_ca {
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

/// Reads a root's key file: private to its owner, parsable, matching `facts` (the certificate at `cert_path`).
/// Returns the key and the file's bytes.
pub(crate) fn load_key(key_path: &Path, cert_path: &Path, facts: &LeafDetails) -> Result<(KeyPair, Vec<u8>), CaError> {
    let mode = files::mode_of(key_path).map_err(|e| missing_or(e, key_path))?;
    if files::is_group_or_world_accessible(mode) {
        return Err(CaError::KeyTooOpen { path: key_path.to_path_buf(), mode });
    }
    let bytes = read_ca_file(key_path)?;
    let key = std::str::from_utf8(&bytes)
        .map_err(|e| e.to_string())
        .and_then(|text| KeyPair::from_pem(text).map_err(|e| e.to_string()))
        .map_err(|reason| CaError::BadKey { path: key_path.to_path_buf(), reason })?;
    if key.subject_public_key_info() != facts.spki_der {
        return Err(CaError::KeyMismatch { key: key_path.to_path_buf(), cert: cert_path.to_path_buf() });
    }
    Ok((key, bytes))
}

pub(crate) fn read_ca_file(path: &Path) -> Result<Vec<u8>, CaError> {
    files::read(path).map_err(|e| missing_or(e, path))
}

pub(crate) fn missing_or(e: FsError, path: &Path) -> CaError {
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

    /// Turns an initialized CA directory back into the plain SPEC §1 layout (as another tool would make it).
    fn plain_layout(dir: &Path) {
        fs::remove_file(dir.join(ROOTS_FILE)).unwrap();
        fs::remove_dir_all(dir.join(ROOTS_DIR)).unwrap();
        let _ = fs::remove_file(dir.join(SPIFFE_BUNDLE_FILE));
    }

    #[test]
    fn init_writes_a_spiffe_root() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("ca");
        let now = OffsetDateTime::now_utc();
        let ca = Ca::init(&dir, &td(), DAY, now).unwrap();
        assert_eq!(ca.trust_domain(), &td());

        let facts = svid::leaf_details(ca.cert_der()).unwrap();
        assert!(facts.is_ca && facts.has_basic_constraints);
        assert_eq!(facts.uri_sans, vec!["spiffe://example.org".to_owned()]);
        assert!(facts.dns_sans.is_empty());
        assert!(!facts.has_name_constraints);
        let ku = facts.key_usage.clone().unwrap();
        assert!(ku.critical);
        assert_eq!(ku.usages, vec!["keyCertSign", "cRLSign"]);
        assert!(facts.extended_key_usage.is_none());
        assert_eq!(facts.key_algorithm, "ECDSA P-256");
        assert!(facts.subject.contains("O=certs-agent"), "{}", facts.subject);
        assert!(facts.subject.contains("example.org root "), "{}", facts.subject);
        assert!(facts.subject.contains(&facts.serial_hex[..8]), "{}", facts.subject);
        assert_eq!(facts.subject, facts.issuer);
        assert_eq!(ca.not_before(), validity::whole_seconds(now) - validity::BACKDATE);
        assert_eq!(ca.not_after(), validity::whole_seconds(now) + DAY);
        assert_eq!(facts.not_after, ca.not_after().unix_timestamp());
        assert_eq!(ca.serial().to_hex(), facts.serial_hex);
        assert_eq!(facts.serial[0] & 0x80, 0);

        assert_eq!(fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        assert_eq!(files::mode_of(&dir.join(CA_KEY_FILE)).unwrap(), 0o600);
        assert_eq!(fs::read(dir.join(BUNDLE_FILE)).unwrap(), fs::read(dir.join(CA_CERT_FILE)).unwrap());
        assert_eq!(ca.bundle_len(), 1);
        assert_eq!(ca.sequence(), 1);

        // The full layout: the root set and its files, and the SPIFFE bundle view.
        let serial = facts.serial_hex.clone();
        assert_eq!(
            fs::read(dir.join(ROOTS_DIR).join(format!("{serial}.pem"))).unwrap(),
            fs::read(dir.join(CA_CERT_FILE)).unwrap()
        );
        assert_eq!(files::mode_of(&dir.join(ROOTS_DIR).join(format!("{serial}_key.pem"))).unwrap(), 0o600);
        assert_eq!(
            fs::read(dir.join(ROOTS_DIR).join(format!("{serial}_key.pem"))).unwrap(),
            fs::read(dir.join(CA_KEY_FILE)).unwrap()
        );
        let set: crate::roots::RootSet = serde_json::from_slice(&fs::read(dir.join(ROOTS_FILE)).unwrap()).unwrap();
        assert_eq!(set.roots.len(), 1);
        assert_eq!(set.roots[0].serial, serial);
        let json = spiffe_bundle::parse(&fs::read(dir.join(SPIFFE_BUNDLE_FILE)).unwrap()).unwrap();
        assert_eq!(json.roots, vec![ca.cert_der().clone()]);
        assert_eq!(json.sequence, Some(1));
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

        // Any one of the files is enough to refuse.
        for name in [BUNDLE_FILE, ROOTS_FILE] {
            let other = tempfile::tempdir().unwrap();
            fs::write(other.path().join(name), "x").unwrap();
            let err = Ca::init(other.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
            assert!(!other.path().join(CA_KEY_FILE).exists());
        }
    }

    #[test]
    fn load_reports_missing_files() {
        let tmp = tempfile::tempdir().unwrap();
        let err = Ca::load(tmp.path()).unwrap_err();
        assert!(matches!(err, CaError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
        let err = Ca::load(&tmp.path().join("nowhere")).unwrap_err();
        assert!(matches!(err, CaError::Missing { .. }), "{err}");
        assert!(err.to_string().contains("ca.pem"), "{err}");
    }

    #[test]
    fn adoption_refuses_a_key_that_does_not_match() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Ca::init(a.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        Ca::init(b.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        plain_layout(a.path());
        fs::remove_file(a.path().join(CA_KEY_FILE)).unwrap();
        fs::copy(b.path().join(CA_KEY_FILE), a.path().join(CA_KEY_FILE)).unwrap();
        let err = Ca::load(a.path()).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("does not match") && err.to_string().contains("ca_key.pem"), "{err}");
        assert!(!a.path().join(ROOTS_FILE).exists(), "nothing adopted");
    }

    #[test]
    fn a_root_key_that_does_not_match_is_refused_after_adoption_too() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let ca = Ca::init(a.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        Ca::init(b.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        let key = CaDir::new(a.path()).root_key(&ca.serial().to_hex());
        files::write_replace(&key, &fs::read(b.path().join(CA_KEY_FILE)).unwrap(), KEY_MODE).unwrap();
        let err = Ca::load(a.path()).unwrap_err();
        assert!(matches!(err, CaError::KeyMismatch { .. }), "{err}");
        assert!(err.to_string().contains("_key.pem"), "{err}");
    }

    #[test]
    fn adoption_refuses_an_unreadable_or_open_key() {
        let tmp = tempfile::tempdir().unwrap();
        Ca::init(tmp.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        plain_layout(tmp.path());
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
    fn adoption_refuses_a_bundle_without_the_ca() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        Ca::init(a.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        Ca::init(b.path(), &td(), DAY, OffsetDateTime::now_utc()).unwrap();
        plain_layout(a.path());
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
