//! `certs-agent inspect`: what a certificate says and whether it is a valid X.509-SVID (and why not).
//!
//! The certificate's fields, the SPIFFE leaf rules and the chain check all come from the `policy` crate, so
//! inspect reads and judges exactly as the sidecar does; on top, it reports what the X509-SVID spec requires
//! but a peer does not enforce (key usage marked critical, a critical SAN when the subject is empty) and the
//! validity period.
//!
//! A certificate is valid only when its chain verified against a trust bundle (`--bundle`, or the
//! `svid_bundle.pem` beside the certificate) and every rule holds: without a bundle nothing says who issued it,
//! and a forger's certificate follows the leaf rules as well as a real one.
//!
//! Every violation names the certificate field as a path (`extensions.keyUsage`, `validity.notAfter`, ...), says
//! what is wrong with it, and cites the rule it breaks, e.g.
//! `extensions.keyUsage: keyCertSign is set (X509-SVID §4.3: a leaf must not set keyCertSign)`.

use std::{
    fmt,
    path::{Path, PathBuf},
};

use policy::{
    LeafDetails, Role, SpiffeId, TrustBundle,
    svid::{self, SvidError, SvidRule},
};
use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;

use crate::{
    duration::human,
    files::{self, FsError},
    pem, publish, spiffe_bundle,
    validity::{self, rfc3339},
};

/// Why inspect could not judge at all (exit status 2).
#[derive(Debug, thiserror::Error)]
pub enum InspectError {
    #[error(transparent)]
    Fs(#[from] FsError),
    #[error("{}: {reason}", path.display())]
    Pem { path: PathBuf, reason: pem::PemError },
    #[error("{}: the first certificate does not parse: {reason}", path.display())]
    Malformed { path: PathBuf, reason: String },
    #[error("trust bundle {}: {reason}", path.display())]
    Bundle { path: PathBuf, reason: String },
}

/// One broken rule: the certificate field concerned (a path such as `extensions.keyUsage`) and what is wrong
/// with it, ending with the rule it breaks in parentheses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub field: &'static str,
    pub rule: String,
}

/// Where the trust bundle came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleSource {
    /// `--bundle FILE`.
    Flag,
    /// The `svid_bundle.pem` in the certificate's directory.
    Beside,
}

/// How the chain check went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    /// Verified for both serverAuth and clientAuth against the bundle.
    Verified { bundle: PathBuf, roots: usize },
    /// Checked; the failures are among the violations.
    Failed { bundle: PathBuf },
    /// Not checked, and why.
    Skipped(&'static str),
}

/// Everything `inspect` prints.
#[derive(Debug, Clone)]
pub struct Report {
    pub cert_file: PathBuf,
    /// The trust bundle used, if any.
    pub bundle: Option<(PathBuf, BundleSource)>,
    pub facts: LeafDetails,
    /// The leaf's SPIFFE ID, or why it has none.
    pub spiffe_id: Result<SpiffeId, String>,
    pub intermediates: usize,
    pub now: OffsetDateTime,
    pub chain: ChainCheck,
    pub violations: Vec<Violation>,
}

impl Report {
    /// A valid X.509-SVID: the chain verified against a trust bundle, and every rule holds.
    pub fn is_valid(&self) -> bool {
        self.violations.is_empty() && matches!(self.chain, ChainCheck::Verified { .. })
    }
}

/// The chain check's reason when there is no bundle to check against.
const NO_BUNDLE: &str = "no trust bundle (no --bundle, and no svid_bundle.pem beside the certificate)";

/// Inspects `path`: a PEM file (leaf first) or an identity directory (its `svid.pem`). The chain is verified
/// against `bundle`, else the `svid_bundle.pem` in the certificate's directory when present.
pub fn inspect(path: &Path, bundle: Option<&Path>, now: OffsetDateTime) -> Result<Report, InspectError> {
    let (cert_file, bundle_file) = input_files(path, bundle);
    let chain = read_chain(&cert_file)?;
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| InspectError::Pem { path: cert_file.clone(), reason: pem::PemError::NoCertificates })?;
    let facts = svid::leaf_details(leaf).map_err(|e| InspectError::Malformed {
        path: cert_file.clone(),
        reason: match e {
            SvidError::Malformed(reason) => reason,
            other => other.to_string(),
        },
    })?;
    let spiffe_id = spiffe_id(&facts);

    let mut violations = Violations::default();
    leaf_rules(leaf, &mut violations);
    if facts.key_usage.as_ref().is_some_and(|ku| !ku.critical) {
        violations.push(
            "extensions.keyUsage.critical",
            "the extension is not marked critical (X509-SVID §4.3: key usage must be critical)".into(),
        );
    }
    if facts.subject.is_empty() && facts.san_critical == Some(false) {
        violations.push(
            "extensions.subjectAltName.critical",
            "the subject is empty and the extension is not critical (X509-SVID §3.1, RFC 5280 §4.1.2.6: with an \
             empty subject the SAN must be critical)"
                .into(),
        );
    }
    validity_rules(&facts, now, &mut violations);
    let chain = match (&bundle_file, &spiffe_id) {
        (None, _) => ChainCheck::Skipped(NO_BUNDLE),
        (Some(_), Err(_)) => ChainCheck::Skipped("the leaf has no valid SPIFFE ID to pick a trust domain"),
        (Some((file, _)), Ok(id)) => {
            let bundle = read_bundle(file, id)?;
            match chain_rules(&bundle, leaf, intermediates, now, &mut violations) {
                ChainOutcome::Verified => ChainCheck::Verified { bundle: file.clone(), roots: bundle.roots().len() },
                ChainOutcome::Failed => ChainCheck::Failed { bundle: file.clone() },
                ChainOutcome::Undetermined(why) => ChainCheck::Skipped(why),
            }
        }
    };

    Ok(Report {
        cert_file,
        bundle: bundle_file,
        facts,
        spiffe_id,
        intermediates: intermediates.len(),
        now,
        chain,
        violations: violations.list,
    })
}

/// The certificate file and the bundle file (if any) that `path` and `--bundle` stand for: `--bundle`, else
/// the `svid_bundle.pem` in the certificate's directory (whether `path` named the directory or a file in it).
fn input_files(path: &Path, bundle: Option<&Path>) -> (PathBuf, Option<(PathBuf, BundleSource)>) {
    let cert_file = if path.is_dir() { path.join(publish::CERT_FILE) } else { path.to_path_buf() };
    if let Some(bundle) = bundle {
        return (cert_file, Some((bundle.to_path_buf(), BundleSource::Flag)));
    }
    let beside = files::parent_of(&cert_file).join(publish::BUNDLE_FILE);
    // A certificate is not its own trust bundle.
    let usable = beside.is_file() && !same_file(&beside, &cert_file);
    (cert_file, usable.then_some((beside, BundleSource::Beside)))
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(a), Ok(b)) if a == b)
}

fn read_chain(file: &Path) -> Result<Vec<CertificateDer<'static>>, InspectError> {
    pem::certificates(&files::read(file)?).map_err(|reason| InspectError::Pem { path: file.to_path_buf(), reason })
}

/// The bundle for the leaf's trust domain, from a PEM file or a SPIFFE bundle (JSON).
fn read_bundle(file: &Path, id: &SpiffeId) -> Result<TrustBundle, InspectError> {
    let bytes = files::read(file)?;
    let bad = |reason: String| InspectError::Bundle { path: file.to_path_buf(), reason };
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{') {
        let parsed = spiffe_bundle::parse(&bytes).map_err(|e| bad(e.to_string()))?;
        return TrustBundle::new(id.trust_domain(), parsed.roots).map_err(|e| bad(e.to_string()));
    }
    TrustBundle::from_pem(id.trust_domain(), &bytes).map_err(|e| bad(e.to_string()))
}

/// Violations in order, without duplicates (the leaf rules and the chain check can report the same one).
#[derive(Default)]
struct Violations {
    list: Vec<Violation>,
}

impl Violations {
    fn push(&mut self, field: &'static str, rule: String) {
        let v = Violation { field, rule };
        if !self.list.contains(&v) {
            self.list.push(v);
        }
    }
}

fn spiffe_id(facts: &LeafDetails) -> Result<SpiffeId, String> {
    match facts.uri_sans.as_slice() {
        [] => Err("none (no URI SAN)".into()),
        [uri] => SpiffeId::parse(uri).map_err(|e| format!("none ({uri:?} is not a SPIFFE ID: {e})")),
        many => Err(format!("ambiguous ({} URI SANs)", many.len())),
    }
}

/// The SPIFFE leaf rules, as the policy crate checks them.
fn leaf_rules(leaf: &CertificateDer<'_>, out: &mut Violations) {
    match svid::leaf_rule_violations(leaf, None) {
        Ok(rules) => rules.iter().for_each(|r| {
            let (field, text) = describe(r);
            out.push(field, text);
        }),
        Err(e) => out.push("certificate", e.to_string()),
    }
}

fn validity_rules(facts: &LeafDetails, now: OffsetDateTime, out: &mut Violations) {
    let (not_before, not_after) = (validity::from_unix(facts.not_before), validity::from_unix(facts.not_after));
    if now < not_before {
        out.push(
            "validity.notBefore",
            format!(
                "not valid yet: notBefore is {} ({} from now) (RFC 5280 §4.1.2.5)",
                rfc3339(not_before),
                human(validity::remaining(now, not_before))
            ),
        );
    }
    if now > not_after {
        out.push(
            "validity.notAfter",
            format!(
                "expired: notAfter was {} ({} ago) (RFC 5280 §4.1.2.5)",
                rfc3339(not_after),
                human(validity::remaining(not_after, now))
            ),
        );
    }
}

/// What the chain check established.
enum ChainOutcome {
    Verified,
    Failed,
    /// The verifier stopped before the chain (a leaf rule or the validity period), so it is unknown.
    Undetermined(&'static str),
}

/// Verifies the chain in both roles. Time and leaf-rule failures are already reported by the rules above;
/// only chain failures are added here.
fn chain_rules(
    bundle: &TrustBundle,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: OffsetDateTime,
    out: &mut Violations,
) -> ChainOutcome {
    let mut outcome = ChainOutcome::Verified;
    for role in [Role::Server, Role::Client] {
        match bundle.verify(leaf, intermediates, validity::unix_time(now), role) {
            Ok(_) => {}
            Err(SvidError::Expired { .. } | SvidError::NotYetValid { .. }) => {
                if matches!(outcome, ChainOutcome::Verified) {
                    outcome = ChainOutcome::Undetermined("the leaf is outside its validity period");
                }
            }
            Err(SvidError::Rule(rule)) => {
                let (field, text) = describe(&rule);
                out.push(field, text);
                if matches!(outcome, ChainOutcome::Verified) {
                    outcome = ChainOutcome::Undetermined("the leaf breaks the SPIFFE leaf rules");
                }
            }
            Err(e) => {
                outcome = ChainOutcome::Failed;
                out.push("chain", format!("{e} (X509-SVID §5.1: the chain must verify to a root of the trust bundle)"));
            }
        }
    }
    outcome
}

/// The certificate field a leaf rule is about, and what is wrong with it, citing the X509-SVID clause. A new
/// rule in the policy crate is a compile error here until it is described.
fn describe(rule: &SvidRule) -> (&'static str, String) {
    const SAN: &str = "extensions.subjectAltName";
    const KU: &str = "extensions.keyUsage";
    match rule {
        SvidRule::NoUriSan => (SAN, "no URI SAN (X509-SVID §2: exactly one URI SAN, the SPIFFE ID)".into()),
        SvidRule::MultipleUriSans { count } => {
            (SAN, format!("{count} URI SANs (X509-SVID §2: exactly one URI SAN, the SPIFFE ID)"))
        }
        SvidRule::InvalidId { uri, reason } => {
            (SAN, format!("URI SAN {uri:?} is not a SPIFFE ID: {reason} (SPIFFE-ID §2, X509-SVID §2)"))
        }
        SvidRule::NoPath { id } => {
            (SAN, format!("SPIFFE ID {id} has no path (X509-SVID §3.1: a leaf's SPIFFE ID must have a path)"))
        }
        SvidRule::IsCa => {
            ("extensions.basicConstraints.cA", "cA is TRUE (X509-SVID §4.1: a leaf must have cA=FALSE)".into())
        }
        SvidRule::NoKeyUsage => (KU, "the extension is absent (X509-SVID §4.3: key usage must be present)".into()),
        SvidRule::NoDigitalSignature => {
            (KU, "digitalSignature is not set (X509-SVID §4.3: a leaf must set digitalSignature)".into())
        }
        SvidRule::KeyCertSign => (KU, "keyCertSign is set (X509-SVID §4.3: a leaf must not set keyCertSign)".into()),
        SvidRule::CrlSign => (KU, "cRLSign is set (X509-SVID §4.3: a leaf must not set cRLSign)".into()),
        SvidRule::MissingEku { role } => {
            let name = match role {
                Role::Client => "clientAuth",
                Role::Server => "serverAuth",
            };
            (
                "extensions.extendedKeyUsage",
                format!(
                    "{name} is missing (X509-SVID §4.4: when present, extended key usage must include both \
                     serverAuth and clientAuth)"
                ),
            )
        }
    }
}

fn list_or_none(items: &[String]) -> String {
    if items.is_empty() { "(none)".into() } else { items.join(", ") }
}

/// One `label: value` line of the report.
fn line(f: &mut fmt::Formatter<'_>, label: &str, value: &dyn fmt::Display) -> fmt::Result {
    writeln!(f, "{label:<16}{value}")
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let facts = &self.facts;
        line(f, "file:", &self.cert_file.display())?;
        match &self.spiffe_id {
            Ok(id) => line(f, "SPIFFE ID:", id)?,
            Err(why) => line(f, "SPIFFE ID:", why)?,
        }
        line(f, "subject:", &facts.subject)?;
        line(f, "issuer:", &facts.issuer)?;
        line(f, "serial:", &facts.serial_hex)?;
        let (not_before, not_after) = (validity::from_unix(facts.not_before), validity::from_unix(facts.not_after));
        line(f, "not before:", &rfc3339(not_before))?;
        let left = if self.now > not_after {
            format!("expired {} ago", human(validity::remaining(not_after, self.now)))
        } else {
            format!("{} left", human(validity::remaining(self.now, not_after)))
        };
        line(f, "not after:", &format!("{} ({left})", rfc3339(not_after)))?;
        line(f, "key type:", &facts.key_algorithm)?;
        line(f, "URI SANs:", &list_or_none(&facts.uri_sans))?;
        line(f, "DNS SANs:", &list_or_none(&facts.dns_sans))?;
        let ca = if facts.has_basic_constraints { facts.is_ca.to_string() } else { "(no basic constraints)".into() };
        line(f, "CA:", &ca)?;
        let ku = match &facts.key_usage {
            Some(ku) => {
                format!("{}{}", ku.usages.join(", "), if ku.critical { " (critical)" } else { " (not critical)" })
            }
            None => "(none)".into(),
        };
        line(f, "key usage:", &ku)?;
        let eku = match &facts.extended_key_usage {
            Some(eku) => format!("{}{}", eku.purposes.join(", "), if eku.critical { " (critical)" } else { "" }),
            None => "(none)".into(),
        };
        line(f, "ext key usage:", &eku)?;
        line(f, "intermediates:", &self.intermediates)?;
        self.fmt_chain_and_verdict(f)
    }
}

impl Report {
    fn fmt_chain_and_verdict(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bundle = match &self.bundle {
            Some((file, BundleSource::Flag)) => format!("{} (--bundle)", file.display()),
            Some((file, BundleSource::Beside)) => format!("{} (beside the certificate)", file.display()),
            None => "(none)".into(),
        };
        line(f, "trust bundle:", &bundle)?;
        let chain = match &self.chain {
            ChainCheck::Verified { bundle, roots } => {
                let plural = if *roots == 1 { "" } else { "s" };
                format!("verified for serverAuth and clientAuth against {} ({roots} root{plural})", bundle.display())
            }
            ChainCheck::Failed { bundle } => format!("does not verify against {}", bundle.display()),
            ChainCheck::Skipped(why) => format!("NOT verified: {why}"),
        };
        line(f, "chain:", &chain)?;
        if self.is_valid() {
            return line(f, "verdict:", &"valid X.509-SVID");
        }
        if self.violations.is_empty() {
            // Without a bundle nothing says who issued it: a forger's certificate follows the leaf rules too.
            let verdict = "NOT verified: the leaf follows the X.509-SVID rules, but its chain was NOT verified \
                           (give --bundle, or keep svid_bundle.pem beside the certificate)";
            return line(f, "verdict:", &verdict);
        }
        line(f, "verdict:", &"NOT a valid X.509-SVID")?;
        for v in &self.violations {
            line(f, "violation:", &format!("{}: {}", v.field, v.rule))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ca::Ca,
        issuer::{IssuedSvid, Issuer},
    };
    use policy::TrustDomain;
    use rcgen::{CertificateParams, CustomExtension, ExtendedKeyUsagePurpose, KeyPair, SanType, string::Ia5String};
    use std::time::Duration;

    /// A leaf signed by a fresh CA from `params`, written with the CA bundle into `dir`.
    fn write_leaf(dir: &Path, params: CertificateParams) -> (PathBuf, PathBuf) {
        let td = TrustDomain::parse("example.org").unwrap();
        let now = OffsetDateTime::now_utc();
        let ca = Ca::init(&dir.join("ca"), &td, Duration::from_secs(3600), now).unwrap();
        let key = KeyPair::generate().unwrap();
        let leaf = params.signed_by(&key, &ca.signer().unwrap()).unwrap();
        let cert = dir.join("leaf.pem");
        std::fs::write(&cert, leaf.pem()).unwrap();
        (cert, ca.dir().bundle())
    }

    fn uri(s: &str) -> SanType {
        SanType::URI(Ia5String::try_from(s).unwrap())
    }

    /// A fresh CA in `ca_dir`, its issuer, and an SVID for `spiffe://example.org/w` valid for an hour.
    fn issued(ca_dir: &Path) -> (Issuer, IssuedSvid, OffsetDateTime) {
        let td = TrustDomain::parse("example.org").unwrap();
        let now = OffsetDateTime::now_utc();
        let issuer = Issuer::new(Ca::init(ca_dir, &td, Duration::from_secs(7200), now).unwrap());
        let svid = issuer.issue(&w(), Duration::from_secs(3600), now).unwrap();
        (issuer, svid, now)
    }

    fn w() -> SpiffeId {
        SpiffeId::parse("spiffe://example.org/w").unwrap()
    }

    #[test]
    fn a_good_svid_is_valid() {
        let tmp = tempfile::tempdir().unwrap();
        let (issuer, svid, now) = issued(tmp.path());
        let cert = tmp.path().join("svid.pem");
        std::fs::write(&cert, &svid.chain_pem).unwrap();
        let report = inspect(&cert, Some(&issuer.ca().dir().bundle()), now).unwrap();
        assert!(report.is_valid(), "{report}");
        assert!(matches!(report.chain, ChainCheck::Verified { roots: 1, .. }));
        assert_eq!(report.spiffe_id.unwrap(), w());
    }

    #[test]
    fn without_a_bundle_the_verdict_says_the_chain_was_not_verified() {
        let tmp = tempfile::tempdir().unwrap();
        let (issuer, svid, now) = issued(&tmp.path().join("ca"));
        let cert = tmp.path().join("leaf.pem");
        std::fs::write(&cert, &svid.chain_pem).unwrap();
        let report = inspect(&cert, None, now).unwrap();
        assert!(matches!(report.chain, ChainCheck::Skipped(NO_BUNDLE)), "{report}");
        assert!(report.violations.is_empty(), "{report}");
        assert!(!report.is_valid(), "an unverified chain is not a valid SVID");
        let text = report.to_string();
        assert!(text.contains("chain was NOT verified"), "{text}");
        assert!(text.contains("trust bundle:   (none)"), "{text}");
        assert!(!text.contains("verdict:        valid X.509-SVID"), "{text}");

        // The same file beside an svid_bundle.pem: that bundle is used.
        std::fs::write(tmp.path().join(publish::BUNDLE_FILE), issuer.ca().bundle_pem()).unwrap();
        let report = inspect(&cert, None, now).unwrap();
        assert!(report.is_valid(), "{report}");
        assert_eq!(report.bundle, Some((tmp.path().join(publish::BUNDLE_FILE), BundleSource::Beside)));
        assert!(report.to_string().contains("(beside the certificate)"), "{report}");
    }

    #[test]
    fn a_certificate_with_trailing_bytes_is_malformed() {
        let tmp = tempfile::tempdir().unwrap();
        let (issuer, svid, now) = issued(tmp.path());
        let mut der = svid.leaf_der.to_vec();
        der.extend_from_slice(&[0, 0]);
        let cert = tmp.path().join("svid.pem");
        std::fs::write(&cert, pem::encode_certificate(&der)).unwrap();
        let err = inspect(&cert, Some(&issuer.ca().dir().bundle()), now).unwrap_err();
        assert!(matches!(err, InspectError::Malformed { .. }), "{err}");
        assert!(
            err.to_string().ends_with("the first certificate does not parse: 2 bytes after the certificate"),
            "{err}"
        );
    }

    #[test]
    fn every_broken_rule_is_listed_with_its_field() {
        let tmp = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![uri("spiffe://example.org/a"), uri("spiffe://example.org/b")];
        // Key usage written by hand, not critical (rcgen always marks its own critical).
        let mut ku = CustomExtension::from_oid_content(&[2, 5, 29, 15], vec![0x03, 0x02, 0x07, 0x80]);
        ku.set_criticality(false);
        params.custom_extensions = vec![ku];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let (cert, bundle) = write_leaf(tmp.path(), params);

        let report = inspect(&cert, Some(&bundle), OffsetDateTime::now_utc()).unwrap();
        assert!(!report.is_valid());
        let fields: Vec<&str> = report.violations.iter().map(|v| v.field).collect();
        assert!(fields.contains(&"extensions.subjectAltName"), "{report}");
        assert!(fields.contains(&"extensions.extendedKeyUsage"), "{report}");
        assert!(
            report
                .violations
                .iter()
                .any(|v| v.field == "extensions.keyUsage.critical" && v.rule.contains("not marked critical")),
            "{report}"
        );
        // Every violation cites the rule it breaks.
        assert!(report.violations.iter().all(|v| v.rule.ends_with(')') && v.rule.contains('§')), "{report}");
        assert!(matches!(report.chain, ChainCheck::Skipped(_)), "{report}");
        let text = report.to_string();
        assert!(text.contains("NOT a valid X.509-SVID"), "{text}");
        assert!(text.contains("ambiguous (2 URI SANs)"), "{text}");
        assert!(text.contains("digitalSignature (not critical)"), "{text}");
        // One line per violation.
        assert_eq!(text.matches("violation:").count(), report.violations.len());
    }

    /// A leaf signed by a fresh CA with `tweak` applied to a valid SVID template; returns its report.
    fn report_for(tweak: impl FnOnce(&mut CertificateParams)) -> Report {
        let tmp = tempfile::tempdir().unwrap();
        let mut params = CertificateParams::default();
        params.subject_alt_names = vec![uri("spiffe://example.org/w")];
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        tweak(&mut params);
        let (cert, bundle) = write_leaf(tmp.path(), params);
        inspect(&cert, Some(&bundle), OffsetDateTime::now_utc()).unwrap()
    }

    fn only_violation(report: &Report) -> (&'static str, String) {
        assert_eq!(report.violations.len(), 1, "{report}");
        (report.violations[0].field, report.violations[0].rule.clone())
    }

    #[test]
    fn each_rule_names_its_field_and_cites_its_clause() {
        use rcgen::KeyUsagePurpose::*;
        type Tweak = Box<dyn FnOnce(&mut CertificateParams)>;
        let cases: Vec<(Tweak, &str, &str)> = vec![
            (
                Box::new(|p| p.key_usages.push(KeyCertSign)),
                "extensions.keyUsage",
                "keyCertSign is set (X509-SVID §4.3: a leaf must not set keyCertSign)",
            ),
            (Box::new(|p| p.key_usages.push(CrlSign)), "extensions.keyUsage", "cRLSign is set (X509-SVID §4.3"),
            (
                Box::new(|p| p.key_usages = vec![KeyEncipherment]),
                "extensions.keyUsage",
                "digitalSignature is not set (X509-SVID §4.3",
            ),
            (Box::new(|p| p.key_usages.clear()), "extensions.keyUsage", "the extension is absent (X509-SVID §4.3"),
            (
                Box::new(|p| p.subject_alt_names = vec![uri("spiffe://example.org")]),
                "extensions.subjectAltName",
                "has no path (X509-SVID §3.1",
            ),
            (Box::new(|p| p.subject_alt_names.clear()), "extensions.subjectAltName", "no URI SAN (X509-SVID §2"),
            (
                Box::new(|p| p.subject_alt_names = vec![uri("spiffe://example.org/a/../b")]),
                "extensions.subjectAltName",
                "is not a SPIFFE ID",
            ),
            (
                Box::new(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]),
                "extensions.extendedKeyUsage",
                "serverAuth is missing (X509-SVID §4.4",
            ),
            (
                Box::new(|p| p.not_after = OffsetDateTime::now_utc() - time::Duration::minutes(1)),
                "validity.notAfter",
                "expired: notAfter was ",
            ),
            (
                Box::new(|p| p.not_before = OffsetDateTime::now_utc() + time::Duration::minutes(10)),
                "validity.notBefore",
                "not valid yet: notBefore is ",
            ),
        ];
        for (tweak, field, text) in cases {
            let report = report_for(tweak);
            let (got_field, got_text) = only_violation(&report);
            assert_eq!(got_field, field, "{report}");
            assert!(got_text.contains(text), "expected {text:?} in {got_text:?}");
            assert!(report.to_string().contains(&format!("violation:      {field}: ")), "{report}");
        }
        // A CA used as a leaf breaks two rules at once; both are listed.
        let report = report_for(|p| {
            p.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
            p.key_usages.push(KeyCertSign);
        });
        let fields: Vec<&str> = report.violations.iter().map(|v| v.field).collect();
        assert!(
            fields.contains(&"extensions.basicConstraints.cA") && fields.contains(&"extensions.keyUsage"),
            "{report}"
        );
    }

    #[test]
    fn an_empty_subject_needs_a_critical_san() {
        let report = report_for(|p| {
            p.distinguished_name = rcgen::DistinguishedName::new();
            p.subject_alt_names.clear();
            // SAN written by hand, not critical: SEQUENCE { [6] "spiffe://example.org/w" }.
            let id = b"spiffe://example.org/w";
            let mut der = vec![0x30, (id.len() + 2) as u8, 0x86, id.len() as u8];
            der.extend_from_slice(id);
            let mut san = CustomExtension::from_oid_content(&[2, 5, 29, 17], der);
            san.set_criticality(false);
            p.custom_extensions = vec![san];
        });
        let (field, text) = only_violation(&report);
        assert_eq!(field, "extensions.subjectAltName.critical", "{report}");
        assert!(text.contains("X509-SVID §3.1"), "{text}");
    }

    #[test]
    fn a_spiffe_bundle_can_stand_for_the_pem_bundle() {
        let tmp = tempfile::tempdir().unwrap();
        let (issuer, svid, now) = issued(tmp.path());
        let cert = tmp.path().join("svid.pem");
        std::fs::write(&cert, &svid.chain_pem).unwrap();
        let report = inspect(&cert, Some(&issuer.ca().dir().spiffe_bundle()), now).unwrap();
        assert!(report.is_valid(), "{report}");
        assert!(matches!(report.chain, ChainCheck::Verified { roots: 1, .. }));
        let other = tempfile::tempdir().unwrap();
        Ca::init(other.path(), &TrustDomain::parse("example.org").unwrap(), Duration::from_secs(7200), now).unwrap();
        let report = inspect(&cert, Some(&other.path().join(crate::ca::SPIFFE_BUNDLE_FILE)), now).unwrap();
        let (field, text) = only_violation(&report);
        assert_eq!(field, "chain");
        assert!(text.contains("X509-SVID §5.1"), "{text}");
    }
}
