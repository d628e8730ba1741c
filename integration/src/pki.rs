//! Certificates: a trust domain's CA and workload identities made by the real `certs-agent`, plus rcgen
//! fixtures for what certs-agent would never issue (bad SVIDs, expired leaves, foreign CAs).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use time::OffsetDateTime;

use crate::bins::bins;

/// A trust domain's CA directory made by `certs-agent ca init`.
#[derive(Debug, Clone)]
pub struct Pki {
    pub trust_domain: String,
    pub ca_dir: PathBuf,
}

/// An identity directory (`svid.pem`, `svid_key.pem`, `svid_bundle.pem`).
#[derive(Debug, Clone)]
pub struct Identity {
    pub id: String,
    pub dir: PathBuf,
}

/// Runs certs-agent with `args`; fails with its stderr when it fails.
pub fn certs_agent(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(&bins().certs_agent).args(args).output().context("running certs-agent")?;
    if !out.status.success() {
        bail!("certs-agent {args:?} failed: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl Pki {
    /// `certs-agent ca init --trust-domain TD --dir ROOT/ca-TD`.
    pub fn init(root: &Path, trust_domain: &str) -> anyhow::Result<Self> {
        let ca_dir = root.join(format!("ca-{trust_domain}"));
        certs_agent(&["ca", "init", "--trust-domain", trust_domain, "--dir", path_str(&ca_dir)?])?;
        Ok(Self { trust_domain: trust_domain.to_string(), ca_dir })
    }

    /// `certs-agent issue` for `spiffe://TD{path}` into `dir`.
    pub fn issue(&self, path: &str, dir: &Path, ttl: &str) -> anyhow::Result<Identity> {
        let id = format!("spiffe://{}{}", self.trust_domain, path);
        certs_agent(&[
            "issue",
            "--ca-dir",
            path_str(&self.ca_dir)?,
            "--id",
            &id,
            "--out",
            path_str(dir)?,
            "--ttl",
            ttl,
        ])?;
        Ok(Identity { id, dir: dir.to_path_buf() })
    }

    pub fn bundle_pem(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.ca_dir.join("bundle.pem"))?)
    }

    /// The CA as an rcgen issuer, to sign fixtures certs-agent would refuse to make.
    pub fn issuer(&self) -> anyhow::Result<Issuer<'static, KeyPair>> {
        let key = KeyPair::from_pem(&std::fs::read_to_string(self.ca_dir.join("ca_key.pem"))?)?;
        let cert = std::fs::read_to_string(self.ca_dir.join("ca.pem"))?;
        Ok(Issuer::from_ca_cert_pem(&cert, key)?)
    }
}

fn path_str(p: &Path) -> anyhow::Result<&str> {
    p.to_str().context("non-UTF-8 path")
}

/// How a fixture leaf differs from a valid X.509-SVID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeafSpec {
    pub uri_sans: Vec<String>,
    pub dns_sans: Vec<String>,
    pub is_ca: bool,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub ekus: Vec<ExtendedKeyUsagePurpose>,
    /// Validity relative to now: (not_before offset, not_after offset); negative is in the past.
    pub valid_from: i64,
    pub valid_until: i64,
}

impl LeafSpec {
    /// A valid X.509-SVID for `id`, valid from a minute ago for an hour.
    pub fn svid(id: &str) -> Self {
        Self {
            uri_sans: vec![id.to_string()],
            dns_sans: vec![],
            is_ca: false,
            key_usages: vec![KeyUsagePurpose::DigitalSignature],
            ekus: vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth],
            valid_from: -60,
            valid_until: 3600,
        }
    }
}

/// Signs a leaf per `spec` with `issuer` and writes an identity directory (plain files, key 0600) whose bundle
/// is `bundle_pem`.
pub fn write_fixture(
    issuer: &Issuer<'_, KeyPair>,
    spec: &LeafSpec,
    bundle_pem: &str,
    dir: &Path,
) -> anyhow::Result<Identity> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "fixture");
    params.distinguished_name = dn;
    params.subject_alt_names = spec
        .uri_sans
        .iter()
        .map(|u| Ok(SanType::URI(u.as_str().try_into()?)))
        .chain(spec.dns_sans.iter().map(|d| Ok(SanType::DnsName(d.as_str().try_into()?))))
        .collect::<anyhow::Result<_>>()?;
    params.is_ca = if spec.is_ca { IsCa::Ca(BasicConstraints::Unconstrained) } else { IsCa::ExplicitNoCa };
    params.key_usages = spec.key_usages.clone();
    params.extended_key_usages = spec.ekus.clone();
    let now = OffsetDateTime::now_utc();
    params.not_before = now + time::Duration::seconds(spec.valid_from);
    params.not_after = now + time::Duration::seconds(spec.valid_until);
    let cert = params.signed_by(&key, issuer)?;
    write_identity(dir, &cert.pem(), &key.serialize_pem(), bundle_pem)?;
    Ok(Identity { id: spec.uri_sans.first().cloned().unwrap_or_default(), dir: dir.to_path_buf() })
}

/// A self-signed CA for `trust_domain` made with rcgen (a CA the sidecars do not trust).
pub fn foreign_ca(trust_domain: &str) -> anyhow::Result<(Issuer<'static, KeyPair>, String)> {
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, format!("foreign root for {trust_domain}"));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{trust_domain}").as_str().try_into()?)];
    let cert = params.self_signed(&key)?;
    let pem = cert.pem();
    Ok((Issuer::new(params, key), pem))
}

/// Writes an identity directory of plain files; the key gets mode 0600.
pub fn write_identity(dir: &Path, cert_pem: &str, key_pem: &str, bundle_pem: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("svid.pem"), cert_pem)?;
    let key_path = dir.join("svid_key.pem");
    std::fs::write(&key_path, key_pem)?;
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600))?;
    std::fs::write(dir.join("svid_bundle.pem"), bundle_pem)?;
    Ok(())
}
