//! X.509-SVID validation against fixtures generated with rcgen: one valid leaf and one leaf per broken rule.
#![allow(clippy::unwrap_used)] // Test fixtures: a failure to build one should panic loudly.

use policy::{
    Role, SpiffeId, SvidError, SvidErrorKind, TrustBundle, TrustDomain,
    svid::{BundleError, SvidRule, leaf_details, leaf_rule_violations, spiffe_id_of_leaf},
};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType, date_time_ymd,
};
use rustls_pki_types::{CertificateDer, UnixTime};

const TD: &str = "example.org";
const ID: &str = "spiffe://example.org/ns/web/sa/frontend";
/// 2030-01-01T00:00:00Z: inside the default leaf validity (2020..2040).
const NOW_SECS: u64 = 1_893_456_000;

fn now() -> UnixTime {
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(NOW_SECS))
}

struct Ca {
    params: CertificateParams,
    key: KeyPair,
    der: CertificateDer<'static>,
    pem: String,
}

impl Ca {
    fn new(td: &str) -> Ca {
        Self::with(td, |_| {})
    }

    fn with(td: &str, edit: impl FnOnce(&mut CertificateParams)) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, format!("{td} root"));
        params.subject_alt_names = vec![uri(&format!("spiffe://{td}"))];
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2050, 1, 1);
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Ca { params, key, der: cert.der().clone(), pem: cert.pem() }
    }

    fn bundle(&self) -> TrustBundle {
        TrustBundle::new(TrustDomain::parse(TD).unwrap(), vec![self.der.clone()]).unwrap()
    }

    /// Issues a leaf from the valid template after `edit`.
    fn issue(&self, edit: impl FnOnce(&mut CertificateParams)) -> CertificateDer<'static> {
        let mut params = valid_leaf_params();
        edit(&mut params);
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        params.signed_by(&key, &issuer).unwrap().der().clone()
    }
}

fn uri(s: &str) -> SanType {
    SanType::URI(s.try_into().unwrap())
}

/// One URI SAN, CA=false, key usage digitalSignature (critical), EKU serverAuth + clientAuth.
fn valid_leaf_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.subject_alt_names = vec![uri(ID)];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.not_before = date_time_ymd(2020, 1, 1);
    params.not_after = date_time_ymd(2040, 1, 1);
    params
}

fn verify(ca: &Ca, leaf: &CertificateDer<'_>, role: Role) -> Result<SpiffeId, SvidError> {
    ca.bundle().verify(leaf, &[], now(), role)
}

fn rule_of(result: Result<SpiffeId, SvidError>) -> SvidRule {
    match result {
        Err(SvidError::Rule(rule)) => rule,
        other => panic!("expected a rule violation, got {other:?}"),
    }
}

#[test]
fn valid_leaf_verifies_for_both_roles() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|_| {});
    for role in [Role::Client, Role::Server] {
        let id = verify(&ca, &leaf, role).unwrap();
        assert_eq!(id.as_str(), ID);
    }
    assert_eq!(spiffe_id_of_leaf(&leaf).unwrap().as_str(), ID);
    assert_eq!(leaf_rule_violations(&leaf, None).unwrap(), vec![]);
}

#[test]
fn leaf_without_eku_verifies() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.extended_key_usages.clear());
    verify(&ca, &leaf, Role::Client).unwrap();
    assert_eq!(leaf_rule_violations(&leaf, None).unwrap(), vec![]);
}

#[test]
fn verifies_through_an_intermediate() {
    let root = Ca::new(TD);
    let mut params = root.params.clone();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, "intermediate");
    let key = KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &Issuer::from_params(&root.params, &root.key)).unwrap();
    let intermediate = Ca { params, key, der: cert.der().clone(), pem: cert.pem() };
    let leaf = intermediate.issue(|_| {});
    let bundle = root.bundle();
    assert_eq!(
        bundle.verify(&leaf, std::slice::from_ref(&intermediate.der), now(), Role::Client).unwrap().as_str(),
        ID
    );
    let err = bundle.verify(&leaf, &[], now(), Role::Client).unwrap_err();
    assert_eq!(err.kind(), SvidErrorKind::Untrusted, "{err}");
}

#[test]
fn two_uri_sans_are_refused() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.subject_alt_names.push(uri("spiffe://example.org/other")));
    assert_eq!(rule_of(verify(&ca, &leaf, Role::Client)), SvidRule::MultipleUriSans { count: 2 });
    assert!(matches!(spiffe_id_of_leaf(&leaf), Err(SvidError::Rule(SvidRule::MultipleUriSans { count: 2 }))));
}

#[test]
fn dns_san_only_is_refused() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.subject_alt_names = vec![SanType::DnsName("web.example.org".try_into().unwrap())]);
    let err = verify(&ca, &leaf, Role::Client).unwrap_err();
    assert_eq!(err.kind(), SvidErrorKind::BadSvid);
    assert!(matches!(err, SvidError::Rule(SvidRule::NoUriSan)), "{err}");
}

#[test]
fn dns_san_beside_the_uri_is_allowed_but_ignored() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.subject_alt_names.push(SanType::DnsName("evil.example".try_into().unwrap())));
    assert_eq!(verify(&ca, &leaf, Role::Server).unwrap().as_str(), ID);
}

#[test]
fn ca_leaf_is_refused() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
    assert_eq!(rule_of(verify(&ca, &leaf, Role::Client)), SvidRule::IsCa);
    assert!(leaf_rule_violations(&leaf, None).unwrap().contains(&SvidRule::IsCa));
}

#[test]
fn key_cert_sign_is_refused() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign));
    assert_eq!(rule_of(verify(&ca, &leaf, Role::Client)), SvidRule::KeyCertSign);
}

#[test]
fn crl_sign_is_refused() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.key_usages.push(KeyUsagePurpose::CrlSign));
    assert_eq!(rule_of(verify(&ca, &leaf, Role::Client)), SvidRule::CrlSign);
}

#[test]
fn missing_key_usage_is_refused() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.key_usages.clear());
    assert_eq!(rule_of(verify(&ca, &leaf, Role::Client)), SvidRule::NoKeyUsage);
}

#[test]
fn key_usage_without_digital_signature_is_refused() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.key_usages = vec![KeyUsagePurpose::KeyAgreement]);
    assert_eq!(rule_of(verify(&ca, &leaf, Role::Client)), SvidRule::NoDigitalSignature);
}

#[test]
fn id_without_path_is_refused() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.subject_alt_names = vec![uri("spiffe://example.org")]);
    assert!(matches!(rule_of(verify(&ca, &leaf, Role::Client)), SvidRule::NoPath { .. }));
}

#[test]
fn invalid_spiffe_id_is_refused() {
    let ca = Ca::new(TD);
    for bad in ["https://example.org/a", "spiffe://Example.org/a", "spiffe://example.org/a/"] {
        let leaf = ca.issue(|p| p.subject_alt_names = vec![uri(bad)]);
        match rule_of(verify(&ca, &leaf, Role::Client)) {
            SvidRule::InvalidId { uri, .. } => assert_eq!(uri, bad),
            other => panic!("{bad}: {other:?}"),
        }
    }
}

#[test]
fn expired_leaf_maps_to_expired() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| {
        p.not_before = date_time_ymd(2021, 1, 1);
        p.not_after = date_time_ymd(2022, 1, 1);
    });
    let err = verify(&ca, &leaf, Role::Client).unwrap_err();
    assert_eq!(err.kind(), SvidErrorKind::Expired);
    assert!(matches!(err, SvidError::Expired { not_after: 1_640_995_200, now: NOW_SECS }), "{err:?}");
}

#[test]
fn future_leaf_maps_to_not_yet_valid() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| {
        p.not_before = date_time_ymd(2031, 1, 1);
        p.not_after = date_time_ymd(2032, 1, 1);
    });
    let err = verify(&ca, &leaf, Role::Client).unwrap_err();
    assert_eq!(err.kind(), SvidErrorKind::NotYetValid);
    assert!(matches!(err, SvidError::NotYetValid { not_before: 1_924_992_000, now: NOW_SECS }), "{err:?}");
}

#[test]
fn leaf_of_another_ca_is_untrusted() {
    let ca = Ca::new(TD);
    let other = Ca::new(TD);
    let leaf = other.issue(|_| {});
    let err = verify(&ca, &leaf, Role::Client).unwrap_err();
    assert_eq!(err.kind(), SvidErrorKind::Untrusted);
    assert!(matches!(err, SvidError::Untrusted(_)), "{err:?}");
}

#[test]
fn other_trust_domain_is_foreign() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| p.subject_alt_names = vec![uri("spiffe://other.org/ns/web/sa/frontend")]);
    let err = verify(&ca, &leaf, Role::Client).unwrap_err();
    assert_eq!(err.kind(), SvidErrorKind::Untrusted);
    match err {
        SvidError::ForeignTrustDomain { found, trusted } => {
            assert_eq!(found.as_str(), "other.org");
            assert_eq!(trusted.as_str(), TD);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn eku_must_include_the_role() {
    let ca = Ca::new(TD);
    let server_only = ca.issue(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth]);
    verify(&ca, &server_only, Role::Server).unwrap();
    assert_eq!(rule_of(verify(&ca, &server_only, Role::Client)), SvidRule::MissingEku { role: Role::Client });
    assert_eq!(leaf_rule_violations(&server_only, None).unwrap(), vec![SvidRule::MissingEku { role: Role::Client }]);
    assert_eq!(leaf_rule_violations(&server_only, Some(Role::Server)).unwrap(), vec![]);
}

#[test]
fn violations_lists_every_broken_rule() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| {
        p.subject_alt_names.push(uri("spiffe://example.org/b"));
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
    });
    assert_eq!(
        leaf_rule_violations(&leaf, None).unwrap(),
        vec![
            SvidRule::MultipleUriSans { count: 2 },
            SvidRule::IsCa,
            SvidRule::NoDigitalSignature,
            SvidRule::KeyCertSign,
            SvidRule::CrlSign,
            SvidRule::MissingEku { role: Role::Server },
            SvidRule::MissingEku { role: Role::Client },
        ]
    );
}

#[test]
fn garbage_is_malformed() {
    let ca = Ca::new(TD);
    let junk = CertificateDer::from(vec![0x30, 0x03, 0x01, 0x02, 0x03]);
    let err = verify(&ca, &junk, Role::Client).unwrap_err();
    assert!(matches!(err, SvidError::Malformed(_)), "{err:?}");
    assert_eq!(err.kind(), SvidErrorKind::BadSvid);
    assert!(spiffe_id_of_leaf(&junk).is_err());
    assert!(leaf_rule_violations(&junk, None).is_err());
}

#[test]
fn bundle_refuses_empty_and_uri_name_constraints() {
    let td = TrustDomain::parse(TD).unwrap();
    assert!(matches!(TrustBundle::new(td.clone(), vec![]), Err(BundleError::Empty)));
    assert!(matches!(TrustBundle::from_pem(td.clone(), b""), Err(BundleError::Empty)));

    // NameConstraints { permittedSubtrees [0] { GeneralSubtree { uniformResourceIdentifier [6] "example.org" } } }
    let host = b"example.org";
    let mut der = vec![0x30, (host.len() + 6) as u8, 0xa0, (host.len() + 4) as u8, 0x30, (host.len() + 2) as u8];
    der.extend([0x86, host.len() as u8]);
    der.extend(host);
    let good = Ca::new(TD);
    let constrained = Ca::with(TD, |p| {
        let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 30], der);
        ext.set_criticality(true);
        p.custom_extensions.push(ext);
    });
    let err = TrustBundle::new(td, vec![good.der.clone(), constrained.der.clone()]).unwrap_err();
    assert!(matches!(err, BundleError::UriNameConstraints { index: 1 }), "{err:?}");
}

#[test]
fn bundle_from_pem_skips_other_sections() {
    let a = Ca::new(TD);
    let b = Ca::new(TD);
    let key = KeyPair::generate().unwrap().serialize_pem();
    let pem = format!("{}{key}{}", a.pem, b.pem);
    let bundle = TrustBundle::from_pem(TrustDomain::parse(TD).unwrap(), pem.as_bytes()).unwrap();
    assert_eq!(bundle.roots().len(), 2);
    assert_eq!(bundle.anchors().len(), 2);
    let leaf = b.issue(|_| {});
    assert_eq!(bundle.verify(&leaf, &[], now(), Role::Client).unwrap().as_str(), ID);
}

#[test]
fn details_describe_the_leaf() {
    let ca = Ca::new(TD);
    let leaf = ca.issue(|p| {
        p.subject_alt_names.push(SanType::DnsName("web.example.org".try_into().unwrap()));
        p.serial_number = Some(vec![0x00, 0x8f, 0x01].into());
    });
    let details = leaf_details(&leaf).unwrap();
    assert_eq!(details.serial_hex, "8f01");
    assert_eq!(details.uri_sans, vec![ID.to_owned()]);
    assert_eq!(details.dns_sans, vec!["web.example.org".to_owned()]);
    assert_eq!(details.key_algorithm, "ECDSA P-256");
    assert_eq!(details.not_before, 1_577_836_800);
    assert_eq!(details.not_after, 2_208_988_800);
    assert!(!details.is_ca);
    assert!(details.issuer.contains("example.org root"), "{}", details.issuer);
    let ku = details.key_usage.unwrap();
    assert!(ku.critical);
    assert_eq!(ku.usages, vec!["digitalSignature"]);
    let eku = details.extended_key_usage.unwrap();
    assert_eq!(eku.purposes, vec!["serverAuth".to_owned(), "clientAuth".to_owned()]);
    assert!(!eku.critical && eku.has("clientAuth") && !eku.has("codeSigning"));
    assert_eq!(details.serial, vec![0x8f, 0x01]);
    assert_eq!(details.san_critical, Some(true), "rcgen marks the SAN critical when the subject is empty");
    assert!(details.has_basic_constraints);
    assert!(!details.has_name_constraints);

    let ca_details = leaf_details(&ca.der).unwrap();
    assert!(ca_details.is_ca);
    let ku = ca_details.key_usage.unwrap();
    assert_eq!(ku.usages, vec!["keyCertSign", "cRLSign"]);
    assert!(ku.has("keyCertSign") && !ku.has("digitalSignature"));
    assert_eq!(ca_details.extended_key_usage, None);
    let spki = rcgen::PublicKeyData::subject_public_key_info(&ca.key);
    assert_eq!(ca_details.spki_der, spki, "the key matches its certificate");
}

#[test]
fn details_name_every_key_usage_bit_once_and_see_name_constraints() {
    let ca = Ca::with(TD, |p| {
        p.key_usages.push(KeyUsagePurpose::ContentCommitment);
        p.name_constraints = Some(rcgen::NameConstraints {
            permitted_subtrees: vec![rcgen::GeneralSubtree::DnsName("example.org".into())],
            excluded_subtrees: vec![],
        });
    });
    let details = leaf_details(&ca.der).unwrap();
    assert_eq!(details.key_usage.unwrap().usages, vec!["contentCommitment", "keyCertSign", "cRLSign"]);
    assert!(details.has_name_constraints);
    let plain = leaf_details(&ca.issue(|p| p.is_ca = IsCa::NoCa)).unwrap();
    assert!(!plain.has_basic_constraints && !plain.is_ca);
}

#[test]
fn trailing_bytes_after_the_certificate_are_malformed_everywhere() {
    let ca = Ca::new(TD);
    let mut der = ca.issue(|_| {}).to_vec();
    der.extend_from_slice(b"garbage");
    let der = CertificateDer::from(der);
    for err in [leaf_details(&der).unwrap_err(), spiffe_id_of_leaf(&der).unwrap_err()] {
        assert!(matches!(&err, SvidError::Malformed(m) if m.contains("7 bytes after the certificate")), "{err}");
    }
}

/// A forged certificate is untrusted whatever else is wrong with it: its author must not be able to choose
/// the reason an operator sees (expired, not yet valid, bad SVID, missing EKU).
#[test]
fn a_forged_certificate_is_untrusted_whatever_else_it_breaks() {
    let ca = Ca::new(TD);
    let forger = Ca::new(TD);
    let forged: [(&str, CertificateDer<'static>); 5] = [
        (
            "expired",
            forger.issue(|p| {
                p.not_before = date_time_ymd(2021, 1, 1);
                p.not_after = date_time_ymd(2022, 1, 1);
            }),
        ),
        (
            "not yet valid",
            forger.issue(|p| {
                p.not_before = date_time_ymd(2031, 1, 1);
                p.not_after = date_time_ymd(2032, 1, 1);
            }),
        ),
        ("two URI SANs", forger.issue(|p| p.subject_alt_names.push(uri("spiffe://example.org/x")))),
        ("no path", forger.issue(|p| p.subject_alt_names = vec![uri("spiffe://example.org")])),
        ("server EKU only", forger.issue(|p| p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth])),
    ];
    for (what, leaf) in forged {
        let err = verify(&ca, &leaf, Role::Client).unwrap_err();
        assert!(matches!(err, SvidError::Untrusted(_)), "{what}: {err:?}");
    }
}
