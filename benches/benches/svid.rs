//! SVID verification: the certificate work an inbound sidecar does for every new connection, inside the
//! handshake (rustls calls `SvidClientVerifier`, which calls `TrustBundle::verify`), plus the SPIFFE ID
//! extraction it repeats after the handshake for the policy decision.
//!
//! Why it matters: with resumption off, every connection pays this on top of the handshake's own signature
//! and key exchange. The chain check is one ECDSA P-256 verify per certificate above the leaf (~50-100 us
//! each), so it is a measurable share of the ~0.44 ms a server-side handshake costs; the ID extraction is
//! parsing and should take a few microseconds. A certificate from a CA outside the bundle (another trust
//! domain's) is refused without any signature check: there is no issuer to check it against, which keeps
//! refusing strangers cheap.
//!
//! Fixtures are made here with rcgen: a P-256 root (and an intermediate), and a leaf with one URI SAN,
//! CA=false, key usage digitalSignature, extended key usage serverAuth + clientAuth: what certs-agent issues.

#![allow(clippy::unwrap_used)] // fixture setup: a failure should stop the bench loudly

mod support;

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use policy::{Role, TrustBundle, TrustDomain, svid};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls_pki_types::{CertificateDer, UnixTime};
use support::BenchClock;

const ID: &str = "spiffe://example.org/ns/web/sa/frontend";

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn leaf_params(id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params
}

/// A trust bundle, a leaf SVID, and the intermediates between them.
struct Chain {
    bundle: TrustBundle,
    leaf: CertificateDer<'static>,
    intermediates: Vec<CertificateDer<'static>>,
}

/// Root -> leaf, or root -> intermediate -> leaf; all keys P-256 (rcgen's default).
fn chain(trust_domain: &str, id: &str, with_intermediate: bool) -> Chain {
    let root_key = KeyPair::generate().unwrap();
    let root_params = ca_params(&format!("bench root of {trust_domain}"));
    let root = root_params.self_signed(&root_key).unwrap();
    let root_issuer = Issuer::new(root_params, root_key);
    let leaf_key = KeyPair::generate().unwrap();
    let (leaf, intermediates) = if with_intermediate {
        let key = KeyPair::generate().unwrap();
        let params = ca_params("bench intermediate");
        let cert = params.signed_by(&key, &root_issuer).unwrap();
        let issuer = Issuer::new(params, key);
        (leaf_params(id).signed_by(&leaf_key, &issuer).unwrap(), vec![cert.der().clone()])
    } else {
        (leaf_params(id).signed_by(&leaf_key, &root_issuer).unwrap(), vec![])
    };
    let bundle = TrustBundle::new(TrustDomain::parse(trust_domain).unwrap(), vec![root.der().clone()]).unwrap();
    Chain { bundle, leaf: leaf.der().clone(), intermediates }
}

fn bench(c: &mut Criterion<BenchClock>) {
    let now = UnixTime::now();
    let mut group = c.benchmark_group("svid");

    // The inbound verifier's whole job for a caller signed directly by the root: parse, ID, trust domain,
    // one chain signature, leaf rules.
    let direct = chain("example.org", ID, false);
    assert!(direct.bundle.verify(&direct.leaf, &direct.intermediates, now, Role::Client).is_ok());
    group.bench_function("verify/root-leaf", |b| {
        b.iter(|| direct.bundle.verify(black_box(&direct.leaf), &direct.intermediates, now, Role::Client))
    });

    // The same with one intermediate CA: one more signature to check.
    let deep = chain("example.org", ID, true);
    assert!(deep.bundle.verify(&deep.leaf, &deep.intermediates, now, Role::Client).is_ok());
    group.bench_function("verify/root-intermediate-leaf", |b| {
        b.iter(|| deep.bundle.verify(black_box(&deep.leaf), &deep.intermediates, now, Role::Client))
    });

    // A valid SVID of another trust domain, from its own CA: no issuer in our bundle, so no signature to
    // check.
    let foreign = chain("other.org", "spiffe://other.org/ns/web/sa/frontend", false);
    assert!(direct.bundle.verify(&foreign.leaf, &[], now, Role::Client).is_err());
    group.bench_function("verify/unknown-issuer-refused", |b| {
        b.iter(|| direct.bundle.verify(black_box(&foreign.leaf), &[], now, Role::Client))
    });

    // After the handshake, `inbound::authorize` reads the caller's ID from its leaf again for the policy.
    assert_eq!(svid::spiffe_id_of_leaf(&direct.leaf).unwrap().as_str(), ID);
    group.bench_function("spiffe_id_of_leaf", |b| b.iter(|| svid::spiffe_id_of_leaf(black_box(&direct.leaf))));
    group.finish();
}

criterion_group! {
    name = benches;
    config = support::criterion();
    targets = bench
}
criterion_main!(benches);
